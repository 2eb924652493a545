/**
 * The launcher of tensor_ops.cu: element-wise device primitives the distributed runtime and the
 * device process groups need (narrowing casts, the rank-ordered reduction of an all-reduce,
 * fills, scaling) and a counter-based random fill for benchmark inputs. Every method queues on the stream it is given and checks its arguments.
 * One compiled module per device (`tensorOpsFor`).
 */
import { type CudaDevice, type Module, type Stream, kernelArg } from '../../device/device.js';
import { type DeviceArray, devicePtr } from '../../device/device-array.js';
import { InvalidArgumentError } from '../../errors.js';
import type { ReduceOp } from '../../comm/process-group.js';
import { readKernelSource } from './source.js';

const THREADS = 256;

function blocksFor(device: CudaDevice, n: number): number {
  return Math.max(1, Math.min(Math.ceil(n / THREADS), device.smCount * 16));
}

const DTYPE_TAG: Partial<Record<string, string>> = { float32: 'f32', bfloat16: 'bf16', float16: 'f16' };

export class CudaTensorOps {
  private readonly module: Module;

  constructor(readonly device: CudaDevice) {
    this.module = device.compile(readKernelSource('tensor_ops.cu'), { name: 'tensor_ops.cu' });
  }

  /** dst = src rounded to dst's dtype (bfloat16 or float16); src is float32 of the same length. */
  castFromF32(src: DeviceArray, dst: DeviceArray, stream: Stream): void {
    if (src.dtype !== 'float32') throw new InvalidArgumentError('src', 'must be float32', `got ${src.dtype}`);
    if (dst.dtype !== 'bfloat16' && dst.dtype !== 'float16') throw new InvalidArgumentError('dst', 'must be bfloat16 or float16', `got ${dst.dtype}`);
    if (src.length !== dst.length) throw new InvalidArgumentError('dst', 'must have as many elements as src', `${dst.length} vs ${src.length}`);
    this.launch(`cast_f32_${DTYPE_TAG[dst.dtype]}`, src.length, stream, [kernelArg.ptr(devicePtr(src)), kernelArg.ptr(devicePtr(dst)), { type: 'i64', value: src.length }]);
  }

  /** dst = parts[0] op ... op parts[P-1] (P equal parts, rank order), in float32, rounded once. */
  reduceParts(dst: DeviceArray, parts: DeviceArray, P: number, op: ReduceOp, stream: Stream): void {
    const tag = DTYPE_TAG[dst.dtype];
    if (tag === undefined) throw new InvalidArgumentError('data', 'a device reduction takes float32, bfloat16 or float16', `got ${dst.dtype}`);
    if (parts.dtype !== dst.dtype || parts.length !== P * dst.length) throw new InvalidArgumentError('parts', `must be ${P} parts of dst's length and dtype`);
    this.launch(`reduce_parts_${op}_${tag}`, dst.length, stream, [kernelArg.ptr(devicePtr(parts)), kernelArg.ptr(devicePtr(dst)), { type: 'i64', value: dst.length }, kernelArg.i32(P)]);
  }

  /** Every element of a float32 array set to `value` (-Infinity allowed). */
  fill(dst: DeviceArray, value: number, stream: Stream): void {
    if (dst.dtype !== 'float32') throw new InvalidArgumentError('dst', 'must be float32', `got ${dst.dtype}`);
    this.launch('fill_f32', dst.length, stream, [kernelArg.ptr(devicePtr(dst)), kernelArg.f32(value), { type: 'i64', value: dst.length }]);
  }

  /**
   * Fills `dst` (float32, bfloat16 or float16) with random values: element i depends only on
   * (seed, i), so a tensor of any length is drawn on the device in one launch without repeating
   * itself. 'normal': N(0, 1) (torch.randn's distribution); 'uniform': uniform on (-1, 1). No
   * value is zero (|x| < 2^-10 is raised to 2^-10).
   */
  random(dst: DeviceArray, seed: number, distribution: 'normal' | 'uniform', stream: Stream): void {
    const tag = DTYPE_TAG[dst.dtype];
    if (tag === undefined) throw new InvalidArgumentError('dst', 'must be float32, bfloat16 or float16', `got ${dst.dtype}`);
    if (!Number.isSafeInteger(seed) || seed < 0) throw new InvalidArgumentError('seed', 'must be a non-negative safe integer', `got ${seed}`);
    if (distribution !== 'normal' && distribution !== 'uniform') throw new InvalidArgumentError('distribution', "must be 'normal' or 'uniform'", `got ${String(distribution)}`);
    this.launch(`random_${tag}`, dst.length, stream, [kernelArg.ptr(devicePtr(dst)), { type: 'u64', value: seed }, { type: 'i64', value: dst.length }, kernelArg.i32(distribution === 'normal' ? 1 : 0)]);
  }

  /** x *= s, element-wise, float32. */
  scale(x: DeviceArray, s: number, stream: Stream): void {
    if (x.dtype !== 'float32') throw new InvalidArgumentError('x', 'must be float32', `got ${x.dtype}`);
    this.launch('scale_f32', x.length, stream, [kernelArg.ptr(devicePtr(x)), kernelArg.f32(s), { type: 'i64', value: x.length }]);
  }

  private launch(name: string, n: number, stream: Stream, args: Parameters<ReturnType<Module['kernel']>['launch']>[1]): void {
    if (n === 0) return;
    this.module.kernel(name).launch({ grid: blocksFor(this.device, n), block: THREADS, stream }, args);
  }
}

const byDevice = new WeakMap<CudaDevice, CudaTensorOps>();

/** The device's tensor ops (compiled on first use, through the NVRTC disk cache). */
export function tensorOpsFor(device: CudaDevice): CudaTensorOps {
  let ops = byDevice.get(device);
  if (ops === undefined) byDevice.set(device, (ops = new CudaTensorOps(device)));
  return ops;
}
