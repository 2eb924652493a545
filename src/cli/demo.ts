/**
 * `magi-attn demo`: the README's main command. Builds a varlen block-causal mask (packed
 * documents drawn from the embedded length histogram, each block-causal like video frames), runs
 * flex-flash-attention forward and backward on the CPU, checks every output against the float64
 * dense reference, prints errors, time and GFLOP/s; then (with --cp P > 1) runs the same problem
 * distributed over P worker-thread ranks and checks it against the single-device result. Exits
 * non-zero if any check fails.
 */
import { Option, type Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { intAtLeast } from './flags.js';
import type { CliContext } from './program.js';
import { Tensor } from '../tensor.js';
import { DTYPES } from '../dtype.js';
import { blockCausalMask, cuSeqlensFromLengths, sampleDocLengths } from '../mask/helpers.js';
import { denseMaskCounts } from '../mask/dense.js';
import { sliceCount, sliceListArea } from '../mask/slice-list.js';
import { flexFlashAttn, flexFlashAttnBackward } from '../kernels/flex-flash-attn.js';
import type { CloseReport } from '../kernels/tolerance.js';
import { cpuEngineName } from '../kernels/cpu/index.js';
import { checkOnSample } from './demo-check.js';
import { Rng, freshSeed } from '../util/rng.js';
import type { SliceList } from '../mask/slice-list.js';
import { runDistributedDemo } from './demo-dist.js';
import type { GpuDemoOptions } from './demo-gpu.js';

interface DemoOptions extends GpuDemoOptions {
  gpu?: boolean;
}

const DEMO_DTYPES = DTYPES.filter((d) => d !== 'float64');

export function registerDemo(program: Command, ctx: CliContext): void {
  program
    .command('demo')
    .description('forward + backward on the CPU over a varlen block-causal mask, checked against a float64 reference')
    .option('--seqlen <n>', 'total tokens (at least 4096 for the README demo)', intAtLeast(1), 4096)
    .option('--heads-q <n>', 'query heads', intAtLeast(1), 8)
    .option('--heads-kv <n>', 'key/value heads (GQA)', intAtLeast(1), 2)
    .option('--head-dim <n>', 'head dimension', intAtLeast(1), 64)
    .option('--block <n>', 'block (frame) size of the block-causal mask', intAtLeast(1), 256)
    .addOption(new Option('--dtype <dtype>', 'input dtype').choices(DEMO_DTYPES).default('bfloat16'))
    .option('--seed <n>', 'random seed (default: fresh, printed)', intAtLeast(0))
    .option('--cp <n>', 'also run it distributed over this many worker-thread ranks (1: single device only)', intAtLeast(1), 4)
    .option('--degree <n>', 'overlap degree of the distributed run (remote stages)', intAtLeast(0), 2)
    .option('--gpu', 'run on the GPU (CUDA kernels; with --cp N, N cp ranks sharing the GPU)')
    .action(async (opts: DemoOptions) => {
      if (opts.headsQ % opts.headsKv !== 0) throw new InvalidArgumentError('--heads-kv', 'must divide --heads-q (GQA groups)', `${opts.headsQ} vs ${opts.headsKv}`);
      if (opts.gpu === true) {
        const { runGpuDemo } = await import('./demo-gpu.js');
        ctx.exitCode = (await runGpuDemo(opts)) ? 0 : 1;
        return;
      }
      const single = runDemo(opts);
      let ok = single.ok;
      if (opts.cp > 1) {
        console.log('');
        ok =
          (await runDistributedDemo({
            cp: opts.cp,
            seqlen: single.seqlen,
            headsQ: opts.headsQ,
            headsKv: opts.headsKv,
            headDim: opts.headDim,
            dtype: opts.dtype,
            seed: single.seed,
            slices: single.slices,
            degree: opts.degree,
          })) && ok;
      }
      ctx.exitCode = ok ? 0 : 1;
    });
}

function runDemo(opts: DemoOptions): { ok: boolean; seed: number; seqlen: number; slices: SliceList } {
  const { seqlen, headsQ: hq, headsKv: hkv, headDim: dim, block, dtype } = opts;
  const seed = opts.seed ?? freshSeed();
  const rng = new Rng(seed);

  const lengths = sampleDocLengths(seqlen, rng);
  const slices = blockCausalMask(cuSeqlensFromLengths(lengths), block);
  const area = sliceListArea(slices);
  console.log(`magi-attn demo: seed ${seed}, ${seqlen} tokens in ${lengths.length} documents, block-causal with ${block}-token blocks`);
  console.log(`  heads ${hq}:${hkv}, head dim ${dim}, ${dtype}; ${sliceCount(slices)} slices; mask area ${area} cells (${((100 * area) / seqlen ** 2).toFixed(1)}% of dense)`);
  if (seqlen <= 4096) {
    const step = Math.max(1, Math.ceil(seqlen / 64));
    console.log(`  mask, one character per ${step}x${step} cells (* = some cell unmasked):`);
    console.log(indent(maskPicture(denseMaskCounts(slices, seqlen, seqlen), seqlen, step), 4));
  }

  const randomTensor = (shape: number[]) => Tensor.fromValues(dtype, shape, rng.normals(shape.reduce((a, b) => a * b, 1)));
  const q = randomTensor([seqlen, hq, dim]);
  const k = randomTensor([seqlen, hkv, dim]);
  const v = randomTensor([seqlen, hkv, dim]);
  const dout = randomTensor([seqlen, hq, dim]);
  const mask = { qRanges: slices.qRanges, kRanges: slices.kRanges, maskTypes: slices.maskTypes };

  process.stdout.write('  forward on the CPU ... ');
  let t0 = performance.now();
  const { out, lse } = flexFlashAttn(q, k, v, mask);
  const fwdS = (performance.now() - t0) / 1000;
  console.log(`${fwdS.toFixed(2)} s`);
  process.stdout.write('  backward on the CPU ... ');
  t0 = performance.now();
  const { dq, dk, dv } = flexFlashAttnBackward(dout, q, k, v, out, lse, mask);
  const bwdS = (performance.now() - t0) / 1000;
  console.log(`${bwdS.toFixed(2)} s`);

  process.stdout.write('  float64 dense reference (same rounded inputs) on a sample ... ');
  t0 = performance.now();
  const sample = checkOnSample({ q, k, v, dout, slices, softmaxScale: 1 / Math.sqrt(dim), out, lse, dq, dk, dv }, rng);
  console.log(`${((performance.now() - t0) / 1000).toFixed(1)} s (${sample.rows} of ${sample.tokensQ} query rows, ${sample.keys} of ${sample.tokensK} keys, every head)`);
  const checks: CloseReport[] = sample.reports;
  console.log('\n  each tensor against float64, element-wise: |err| <= rtol·|ref| + atol·max|ref| (worst error as a fraction of that bound)');
  for (const c of checks) console.log(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.message}`);
  const flopsFwd = 4 * area * hq * dim;
  console.log(`\n  forward  ${fwdS.toFixed(2)} s  ${(flopsFwd / fwdS / 1e9).toFixed(2)} GFLOP/s`);
  console.log(`  backward ${bwdS.toFixed(2)} s  ${((2.5 * flopsFwd) / bwdS / 1e9).toFixed(2)} GFLOP/s   (FLOPs = 4·area·Hq·D, backward 2.5x; ${cpuEngineName()})`);
  const ok = checks.every((c) => c.ok);
  console.log(ok ? '\n  all checks passed' : '\n  CHECK FAILED: the kernel disagrees with the float64 reference beyond the stated tolerance');
  return { ok, seed, seqlen, slices };
}

/** One character per step x step block of the dense mask: '*' if any cell of it is unmasked. */
function maskPicture(counts: Uint8Array, n: number, step: number): string {
  const rows: string[] = [];
  for (let r = 0; r < n; r += step) {
    let row = '';
    for (let c = 0; c < n; c += step) {
      let any = false;
      for (let i = r; i < Math.min(r + step, n) && !any; i++) {
        for (let j = c; j < Math.min(c + step, n); j++) if (counts[i * n + j] !== 0) any = true;
      }
      row += any ? '*' : '.';
    }
    rows.push(row);
  }
  return rows.join('\n');
}

function indent(text: string, n: number): string {
  return text
    .split('\n')
    .map((l) => ' '.repeat(n) + l)
    .join('\n');
}
