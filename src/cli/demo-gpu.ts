/**
 * `magi-attn demo --gpu [--cp N]`: the demo on the GPU. The same packed block-causal mask and
 * inputs as the CPU demo, run by the CUDA kernels (forward + backward, timed with CUDA events),
 * checked against the CPU kernel on the same rounded inputs; then the whole distributed pipeline
 * (dispatch, calcAttn, calcAttnBackward, undispatch) on N cp ranks sharing this GPU, checked
 * against the single-GPU result. Exits non-zero if a check fails. Node-only (loads the device layer).
 */
import type { DType } from '../dtype.js';
import { InvalidArgumentError } from '../errors.js';
import { flexFlashAttn, flexFlashAttnBackward } from '../kernels/flex-flash-attn.js';
import { compareClose, SIXTEEN_BIT_RUN_TOLERANCES } from '../kernels/tolerance.js';
import { blockCausalMask, cuSeqlensFromLengths, sampleDocLengths } from '../mask/helpers.js';
import { sliceCount, sliceListArea } from '../mask/slice-list.js';
import { calcAttn, calcAttnBackward, dispatch, magiAttnFlexKey, undispatch } from '../runtime/index.js';
import { Tensor } from '../tensor.js';
import { Rng, freshSeed } from '../util/rng.js';

export interface GpuDemoOptions {
  seqlen: number;
  headsQ: number;
  headsKv: number;
  headDim: number;
  block: number;
  dtype: DType;
  seed?: number;
  cp: number;
  degree: number;
}

// GPU vs CPU kernel on the same 16-bit inputs: both round the result once to the input dtype.
const TOL = SIXTEEN_BIT_RUN_TOLERANCES;

export async function runGpuDemo(o: GpuDemoOptions, log: (line: string) => void = console.log): Promise<boolean> {
  if (o.dtype !== 'bfloat16' && o.dtype !== 'float16') throw new InvalidArgumentError('--dtype', 'must be bfloat16 or float16 with --gpu (the GPU kernels take 16-bit inputs)', `got ${o.dtype}`);
  if (o.headDim !== 64 && o.headDim !== 128) throw new InvalidArgumentError('--head-dim', 'must be 64 or 128 with --gpu', `got ${o.headDim}`);
  const dev = await import('../device/index.js');
  const device = dev.CudaDevice.open(0);
  const seed = o.seed ?? freshSeed();
  const rng = new Rng(seed);
  const lengths = sampleDocLengths(o.seqlen, rng);
  const mask = blockCausalMask(cuSeqlensFromLengths(lengths), o.block);
  const area = sliceListArea(mask);
  log(`magi-attn demo --gpu: ${device.name}, seed ${seed}, ${o.seqlen} tokens in ${lengths.length} documents, block-causal (${o.block}-token blocks), ${sliceCount(mask)} slices`);
  log(`  heads ${o.headsQ}:${o.headsKv}, head dim ${o.headDim}, ${o.dtype}`);
  const randn = (h: number): Tensor => Tensor.fromValues(o.dtype, [o.seqlen, h, o.headDim], rng.normals(o.seqlen * h * o.headDim));
  const [q, k, v, dout] = [randn(o.headsQ), randn(o.headsKv), randn(o.headsKv), randn(o.headsQ)];
  const [gq, gk, gv, gdout] = [q, k, v, dout].map((t) => dev.DeviceTensor.fromHost(device, t));

  const timed = <R>(f: () => R): { r: R; ms: number } => {
    f(); // warm-up (compiles the kernels the first time)
    const e0 = device.createEvent().record();
    const r = f();
    const e1 = device.createEvent().record();
    return { r, ms: e1.elapsedSince(e0) };
  };
  const fwd = timed(() => flexFlashAttn(gq, gk, gv, mask));
  const bwd = timed(() => flexFlashAttnBackward(gdout, gq, gk, gv, fwd.r.out, fwd.r.lse, mask));
  const flops = 4 * area * o.headsQ * o.headDim;
  log(`  forward  ${fwd.ms.toFixed(3)} ms  ${(flops / fwd.ms / 1e9).toFixed(1)} TFLOP/s`);
  log(`  backward ${bwd.ms.toFixed(3)} ms  ${((2.5 * flops) / bwd.ms / 1e9).toFixed(1)} TFLOP/s   (FLOPs = 4·area·Hq·D, backward 2.5x)`);

  log('  checking against the CPU kernel on the same inputs ...');
  const cpu = flexFlashAttn(q, k, v, mask);
  const out = fwd.r.out.toHost();
  const lse = fwd.r.lse.toHost();
  const cpuG = flexFlashAttnBackward(dout, q, k, v, out, lse, mask);
  const checks = [
    compareClose(out, cpu.out, TOL.out, 'out'),
    compareClose(lse, cpu.lse, TOL.lse, 'lse'),
    compareClose(bwd.r.dq.toHost(), cpuG.dq, TOL.grad, 'dq'),
    compareClose(bwd.r.dk.toHost(), cpuG.dk, TOL.grad, 'dk'),
    compareClose(bwd.r.dv.toHost(), cpuG.dv, TOL.grad, 'dv'),
  ];
  for (const c of checks) log(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.message}`);
  let ok = checks.every((c) => c.ok);

  if (o.cp > 1) {
    log(`\n  the distributed pipeline on ${o.cp} cp ranks sharing this GPU (overlap degree ${o.degree}):`);
    const per = await dev.runLocalDeviceRanks(device, o.cp, async (group) => {
      const key = magiAttnFlexKey({ ...mask, totalSeqlenQ: o.seqlen, numHeadsQ: o.headsQ, numHeadsKv: o.headsKv, headDim: o.headDim, group, overlapConfig: { degree: o.degree } });
      const [lq, lk, lv, ld] = [gq, gk, gv, gdout].map((x) => dispatch(x, key));
      const f = await calcAttn(lq, lk, lv, key);
      const g = await calcAttnBackward(ld, lq, lk, lv, f.out, f.lse, key);
      const full = { out: await undispatch(f.out, key), dq: await undispatch(g.dq, key), dk: await undispatch(g.dk, key), dv: await undispatch(g.dv, key) };
      return { full, area: key.rankPlan.hostArea + key.rankPlan.stages.reduce((a, s) => a + s.remoteArea, 0), stages: key.plan.overlapDegree };
    });
    log(`  area per rank (cells): ${per.map((p) => p.area).join(', ')}; ${per[0].stages} remote stages`);
    const r0 = per[0].full;
    const dist = [
      compareClose(r0.out.toHost(), out, TOL.out, 'out'),
      compareClose(r0.dq.toHost(), bwd.r.dq.toHost(), TOL.grad, 'dq'),
      compareClose(r0.dk.toHost(), bwd.r.dk.toHost(), TOL.grad, 'dk'),
      compareClose(r0.dv.toHost(), bwd.r.dv.toHost(), TOL.grad, 'dv'),
    ];
    for (const c of dist) log(`  ${c.ok ? 'ok  ' : 'FAIL'} undispatched ${c.message} (against the single GPU)`);
    ok = ok && dist.every((c) => c.ok);
  }
  log(ok ? '\n  all checks passed' : '\n  CHECK FAILED');
  return ok;
}
