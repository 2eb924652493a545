/**
 * Benchmark inputs, shared by bench/kernel/run.ts, bench/kernel-fwd-gpu.ts, bench/dist-scaling.ts
 * and bench/kernel/fwd-gap.ts.
 *
 * Every element is drawn on the device (tensor_ops.cu random_fill: a pure function of seed and
 * index), N(0, 1) by default, because:
 *   - the baselines are timed on torch.randn (bench/kernel/baselines.py), and a tensor-core
 *     kernel's speed depends on its operands' bits through power and clocks (an 8k bf16 matrix
 *     product on the H200: 788 TFLOP/s on random data, 894 on zeros), so ours is timed on the
 *     same distribution;
 *   - nothing repeats along the sequence. The benches used to reuse data: bench:kernel one
 *     1M-element uniform ±1 pattern with a shifting offset (the same values every 128 q tokens,
 *     every 1024 k/v tokens), bench:dist-scaling one 4096-row block repeated exactly (so every
 *     row's running max stopped moving after the first block). No real input does that; today's
 *     kernels have no branch on values, but a benchmark should not rest on it;
 *   - no value is zero (|x| < 2^-10 is raised to 2^-10), and nothing is drawn on or copied from
 *     the host (the old host pattern cost a 1 GB array per 64k-token q).
 */
import type { CudaDevice } from '../../src/device/device.js';
import type { DeviceTensor } from '../../src/device/device-tensor.js';

export type InputDistribution = 'normal' | 'uniform';

/** A bfloat16 [shape] tensor of random values (see the file comment); queued on the default stream and waited for. */
export async function randomDeviceTensor(device: CudaDevice, shape: number[], seed: number, distribution: InputDistribution = 'normal'): Promise<DeviceTensor> {
  const { DeviceTensor, deviceArrayOf, tensorOpsFor } = await import('../../src/device/index.js');
  const t = DeviceTensor.empty(device, 'bfloat16', shape);
  tensorOpsFor(device).random(deviceArrayOf(t), seed, distribution, device.defaultStream);
  device.synchronize();
  return t;
}
