/**
 * Throughput of the CUDA flex-flash-attention forward (src/kernels/cuda/ffa_fwd.cu) on the GPU
 * machine: bf16, D = 128, 64:8 GQA heads, full and causal masks at 8k and 16k tokens (04 §3.1).
 *   node dist/bench/kernel-fwd-gpu.js [--iters N] [--seqlens 8192,16384] [--tiles 8x64,8x128,4x64]
 * (--tiles: warps x blockN tile shapes to compare; BM = 16 * warps.)
 * Per configuration: bench:kernel's timing with fixed counts (bench/kernel/timing.ts: one untimed
 * launch and 5 warm-ups, then N (default 20) launches each timed with its own pair of CUDA events); prints the
 * median and TFLOP/s = 4 · area · Hq · D / time (no L2 flush). Inputs: N(0, 1) drawn on the device
 * (bench/kernel/inputs.ts).
 */
import { CudaDevice } from '../src/device/index.js';
import { CudaFfaForward } from '../src/kernels/cuda/ffa-forward.js';
import { causalMask, fullMask, sliceListArea, varlenCausalMask, type SliceList } from '../src/mask/index.js';
import { randomDeviceTensor } from './kernel/inputs.js';
import { timeLaunches } from './kernel/timing.js';

const argv = process.argv;
const opt = (name: string, dflt: string): string => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const iters = Number(opt('--iters', '20'));
const seqlens = opt('--seqlens', '8192,16384').split(',').map(Number);
const tiles = opt('--tiles', '8x64').split(',').map((t) => t.split('x').map(Number) as [number, number]);
const headsQ = 64;
const headsKv = 8;
const dim = 128;


const dev = CudaDevice.open(0);
const kernels = tiles.map(([warps, blockN]) => new CudaFfaForward(dev, { tile: { warps, blockN } }));
console.log(`${dev.name} (${dev.smCount} SMs), bf16, D=${dim}, heads ${headsQ}:${headsKv}, ${iters} timed launches, median`);
console.log('| mask | seqlen | tile (BM x BN) | area (M cells) | work tiles | epilogue | median ms | TFLOP/s |');
console.log('|---|---|---|---|---|---|---|---|');

for (const seqlen of seqlens) {
  const [dq, dk, dv] = (await Promise.all([randomDeviceTensor(dev, [seqlen, headsQ, dim], 1), randomDeviceTensor(dev, [seqlen, headsKv, dim], 2), randomDeviceTensor(dev, [seqlen, headsKv, dim], 3)])).map((t) => t.buffer);
  const dOut = dev.alloc(seqlen * headsQ * dim * 2);
  const dLse = dev.alloc(seqlen * headsQ * 4);
  const docs = [0];
  while (docs[docs.length - 1] < seqlen) docs.push(Math.min(seqlen, docs[docs.length - 1] + 2048 + ((docs.length * 1237) % 2048)));
  const masks: Array<[string, SliceList]> = [
    ['full', fullMask(seqlen)],
    ['causal', causalMask(seqlen)],
    [`varlen causal (${docs.length - 1} docs)`, varlenCausalMask(docs)],
  ];
  for (const [name, slices] of masks) for (const ffa of kernels) {
    const problem = ffa.prepare({ tokensQ: seqlen, tokensK: seqlen, headsQ, headsKv, dim, dtype: 'bfloat16' }, slices);
    const run = (): void => problem.launch(dq, dk, dv, dOut, dLse, 1 / Math.sqrt(dim));
    const { ms } = timeLaunches(dev, run, iters, 5, { fixed: true });
    const area = sliceListArea(slices);
    const tflops = (4 * area * headsQ * dim) / (ms * 1e-3) / 1e12;
    console.log(
      `| ${name} | ${seqlen} | ${ffa.blockM} x ${ffa.blockN} | ${(area / 1e6).toFixed(1)} | ${problem.plan.numWork} | ${problem.merge ? 'merge' : 'direct'} | ${ms.toFixed(3)} | ${tflops.toFixed(1)} |`,
    );
    problem.free();
  }
  for (const b of [dq, dk, dv, dOut, dLse]) b.free();
}
dev.close();
