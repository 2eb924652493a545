/**
 * Throughput of the CUDA flex-flash-attention forward (src/kernels/cuda/ffa_fwd.cu) on the GPU
 * machine: bf16, D = 128, 64:8 GQA heads, full and causal masks at 8k and 16k tokens (04 §3.1).
 *   node dist/bench/kernel-fwd-gpu.js [--iters N] [--seqlens 8192,16384] [--tiles 8x64,8x128,4x64]
 * (--tiles: warps x blockN tile shapes to compare; BM = 16 * warps.)
 * Per configuration: 5 warm-up launches, then N (default 20) launches each timed with its own
 * pair of CUDA events; prints the median and TFLOP/s = 4 · area · Hq · D / time (no L2 flush).
 */
import { CudaDevice } from '../src/device/index.js';
import { CudaFfaForward } from '../src/kernels/cuda/ffa-forward.js';
import { causalMask, fullMask, sliceListArea, varlenCausalMask, type SliceList } from '../src/mask/index.js';
import { randomBf16 } from './kernel/inputs.js';

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
  const dq = dev.upload(randomBf16(seqlen * headsQ * dim, 1));
  const dk = dev.upload(randomBf16(seqlen * headsKv * dim, 2));
  const dv = dev.upload(randomBf16(seqlen * headsKv * dim, 3));
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
    for (let i = 0; i < 5; i++) run();
    dev.synchronize();
    const times: number[] = [];
    const start = dev.createEvent();
    const end = dev.createEvent();
    for (let i = 0; i < iters; i++) {
      start.record();
      run();
      end.record();
      times.push(end.elapsedSince(start));
    }
    start.destroy();
    end.destroy();
    times.sort((a, b) => a - b);
    const ms = times[Math.floor(times.length / 2)];
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
