/**
 * `magi-attn demo --cp P`: the distributed pipeline on P worker-thread ranks of this process.
 * Every rank draws the same inputs from the seed, dispatches them, runs calcAttn and
 * calcAttnBackward with profiling, and undispatches the results; rank 0 compares them with
 * single-device flexFlashAttn on the whole sequence. Prints per-rank area, compute time, bytes
 * moved and time spent waiting on communication. Node only (it starts worker threads).
 *
 * This module is also the rank script: spawnRanks runs its default export on every rank. The
 * distributed benchmark (bench/dist-cpu.ts) drives the same `runDistributed`.
 */
import { spawnRanks } from '../comm/threads/index.js';
import { groupCast } from '../comm/group-collective.js';
import type { ProcessGroup } from '../comm/process-group.js';
import type { DType } from '../dtype.js';
import { flexFlashAttn, flexFlashAttnBackward } from '../kernels/flex-flash-attn.js';
import { compareClose, CPU_KERNEL_TOLERANCES, type Tolerance } from '../kernels/tolerance.js';
import { blockCausalMask, cuSeqlensFromLengths, sampleDocLengths } from '../mask/helpers.js';
import { sliceCount, sliceListArea, type SliceList } from '../mask/slice-list.js';
import { AttnTrace, calcAttn, calcAttnBackward, dispatch, magiAttnFlexKey, profileOf, undispatch, type CalcAttnProfile } from '../runtime/index.js';
import type { OverlapConfig } from '../solver/config.js';
import { Tensor } from '../tensor.js';
import { Rng, freshSeed } from '../util/rng.js';

/** What every rank runs: plain data, so it crosses into the worker threads. */
export interface DistRunSpec {
  cp: number;
  seqlen: number;
  headsQ: number;
  headsKv: number;
  headDim: number;
  dtype: DType;
  seed: number;
  /** The mask as flat arrays: [qs, qe, ...], [ks, ke, ...], type codes. */
  mask: { qRanges: number[]; kRanges: number[]; maskTypes: number[] };
  overlap: OverlapConfig;
  /** Timed forward + backward runs (the first one is timed too; pass 2+ to see a warm run). */
  repeats: number;
  /** Compare with single-device flexFlashAttn on rank 0. */
  compare: boolean;
}

export interface CheckLine {
  label: string;
  ok: boolean;
  worstRatio: number;
  message: string;
}

export interface RankRunResult {
  rank: number;
  area: number;
  stages: number;
  forward: CalcAttnProfile[];
  backward: CalcAttnProfile[];
  /** The forward's GroupCasts of all stages run back to back with no compute: the comm time to hide. */
  commOnlyMs: number;
  checks?: CheckLine[];
  /** Rank 0 with compare: single-device forward and backward time. */
  singleDeviceMs?: { forward: number; backward: number };
}

/**
 * Distributed vs single-device tolerances: the CPU kernel's own table (both sides run it) times
 * two, because stage merges and cross-rank sums round in a different order; 16-bit outputs may
 * also flip one rounding, which the kernel table's extra ulp already covers.
 */
export function distTolerances(dtype: DType): Record<'out' | 'lse' | 'maxLogits' | 'grad' | 'dsink', Tolerance> {
  const t = CPU_KERNEL_TOLERANCES[dtype];
  const x2 = (a: Tolerance, ulp: number): Tolerance => ({ rtol: 2 * a.rtol - ulp, atol: 2 * a.atol });
  const ulp = t.out.rtol - CPU_KERNEL_TOLERANCES.float32.out.rtol;
  return { out: x2(t.out, ulp), lse: x2(t.lse, 0), maxLogits: t.maxLogits, grad: x2(t.grad, ulp), dsink: x2(t.dsink, 0) };
}

function inputs(spec: DistRunSpec): { q: Tensor; k: Tensor; v: Tensor; dout: Tensor } {
  const rng = new Rng(spec.seed);
  const rand = (shape: number[]): Tensor => Tensor.fromValues(spec.dtype, shape, rng.normals(shape.reduce((a, b) => a * b, 1)));
  const q = rand([spec.seqlen, spec.headsQ, spec.headDim]);
  const k = rand([spec.seqlen, spec.headsKv, spec.headDim]);
  const v = rand([spec.seqlen, spec.headsKv, spec.headDim]);
  const dout = rand([spec.seqlen, spec.headsQ, spec.headDim]);
  return { q, k, v, dout };
}

/** The rank script: one rank's share of `runDistributed`. */
export default async function rankMain(group: ProcessGroup, spec: DistRunSpec): Promise<RankRunResult> {
  const { q, k, v, dout } = inputs(spec);
  const m = spec.mask;
  const key = magiAttnFlexKey({
    qRanges: Int32Array.from(m.qRanges),
    kRanges: Int32Array.from(m.kRanges),
    maskTypes: Uint8Array.from(m.maskTypes),
    totalSeqlenQ: spec.seqlen,
    numHeadsQ: spec.headsQ,
    numHeadsKv: spec.headsKv,
    headDim: spec.headDim,
    group,
    overlapConfig: spec.overlap,
  });
  const [ql, kl, vl, dl] = [q, k, v, dout].map((t) => dispatch(t, key));
  const rp = key.rankPlan;
  const result: RankRunResult = {
    rank: group.rank,
    area: rp.hostArea + rp.stages.reduce((a, s) => a + s.remoteArea, 0),
    stages: rp.stages.length,
    forward: [],
    backward: [],
    commOnlyMs: 0,
  };
  let last: { out: Tensor; lse: Tensor; dq: Tensor; dk: Tensor; dv: Tensor } | undefined;
  for (let r = 0; r < Math.max(1, spec.repeats); r++) {
    await group.barrier().wait();
    const [ft, bt] = [new AttnTrace(), new AttnTrace()];
    const fwd = await calcAttn(ql, kl, vl, key, { trace: ft });
    const g = await calcAttnBackward(dl, ql, kl, vl, fwd.out, fwd.lse, key, { trace: bt });
    result.forward.push(profileOf(ft.spans()));
    result.backward.push(profileOf(bt.spans()));
    last = { out: fwd.out, lse: fwd.lse, dq: g.dq, dk: g.dk, dv: g.dv };
  }

  await group.barrier().wait();
  const t0 = performance.now();
  const width = spec.headsKv * spec.headDim;
  for (const s of rp.stages) await Promise.all([groupCast(group, kl.data, s.groupCast, width).wait(), groupCast(group, vl.data, s.groupCast, width).wait()]);
  result.commOnlyMs = performance.now() - t0;

  if (spec.compare && last !== undefined) {
    const full = {
      out: await undispatch(last.out, key),
      lse: await undispatch(last.lse, key),
      dq: await undispatch(last.dq, key),
      dk: await undispatch(last.dk, key),
      dv: await undispatch(last.dv, key),
    };
    if (group.rank === 0) {
      const mask = { qRanges: key.plan.globalMask.qRanges, kRanges: key.plan.globalMask.kRanges, maskTypes: key.plan.globalMask.maskTypes };
      let t = performance.now();
      const ref = flexFlashAttn(q, k, v, mask);
      const fwdMs = performance.now() - t;
      t = performance.now();
      // Both backwards get the distributed forward's out and lse: with 16-bit inputs, out is
      // rounded once and a rounding that flips would otherwise pass into the gradients via rowsum(out·dout).
      const refG = flexFlashAttnBackward(dout, q, k, v, full.out, full.lse, mask);
      result.singleDeviceMs = { forward: fwdMs, backward: performance.now() - t };
      const tol = distTolerances(spec.dtype);
      result.checks = [
        compareClose(full.out, ref.out, tol.out, 'out'),
        compareClose(full.lse, ref.lse, tol.lse, 'lse'),
        compareClose(full.dq, refG.dq, tol.grad, 'dq'),
        compareClose(full.dk, refG.dk, tol.grad, 'dk'),
        compareClose(full.dv, refG.dv, tol.grad, 'dv'),
      ].map((c, i) => ({ label: ['out', 'lse', 'dq', 'dk', 'dv'][i], ok: c.ok, worstRatio: c.worstRatio, message: c.message }));
    }
  }
  return result;
}

/** Runs `spec` on spec.cp worker-thread ranks; results in rank order. */
export function runDistributed(spec: DistRunSpec, timeoutMs = 600_000): Promise<RankRunResult[]> {
  return spawnRanks<RankRunResult, DistRunSpec>(spec.cp, new URL(import.meta.url), spec, { timeoutMs, name: 'cp' });
}

export interface DistributedDemoOptions {
  cp: number;
  seqlen?: number;
  headsQ?: number;
  headsKv?: number;
  headDim?: number;
  dtype?: DType;
  seed?: number;
  /** The mask; default: packed documents from the length histogram, block-causal with `block`-token blocks. */
  slices?: SliceList;
  block?: number;
  /** Overlap degree (default 2). */
  degree?: number;
  /** Where lines go (default console.log). */
  log?: (line: string) => void;
}

export const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
const ms = (x: number): string => `${x.toFixed(0)} ms`;
const mib = (b: number): string => `${(b / 2 ** 20).toFixed(2)} MiB`;

/** Per-rank rows of one profile: compute, exposed wait, bytes. */
export function profileTotals(p: CalcAttnProfile): { computeMs: number; waitMs: number; sendBytes: number; recvBytes: number } {
  return {
    computeMs: sum(p.stages.map((s) => s.computeMs)),
    waitMs: sum(p.stages.map((s) => s.waitMs)) + p.finalWaitMs,
    sendBytes: sum(p.stages.map((s) => s.sendBytes)),
    recvBytes: sum(p.stages.map((s) => s.recvBytes)),
  };
}

/** The demo: prints the run and the comparison; resolves true when every check passed. */
export async function runDistributedDemo(options: DistributedDemoOptions): Promise<boolean> {
  const log = options.log ?? ((l: string) => console.log(l));
  const seqlen = options.seqlen ?? 4096;
  const seed = options.seed ?? freshSeed();
  const dtype = options.dtype ?? 'bfloat16';
  const block = options.block ?? 256;
  let slices = options.slices;
  let what = 'the given mask';
  if (slices === undefined) {
    const lengths = sampleDocLengths(seqlen, new Rng(seed ^ 0x5bd1e995));
    slices = blockCausalMask(cuSeqlensFromLengths(lengths), block);
    what = `${lengths.length} documents, block-causal with ${block}-token blocks`;
  }
  const spec: DistRunSpec = {
    cp: options.cp,
    seqlen,
    headsQ: options.headsQ ?? 8,
    headsKv: options.headsKv ?? 2,
    headDim: options.headDim ?? 64,
    dtype,
    seed,
    mask: { qRanges: Array.from(slices.qRanges), kRanges: Array.from(slices.kRanges), maskTypes: Array.from(slices.maskTypes) },
    overlap: { degree: options.degree ?? 2 },
    repeats: 1,
    compare: true,
  };
  log(`magi-attn demo --cp ${spec.cp}: seed ${seed}, ${seqlen} tokens, ${what}; ${sliceCount(slices)} slices, area ${sliceListArea(slices)} cells`);
  log(`  heads ${spec.headsQ}:${spec.headsKv}, head dim ${spec.headDim}, ${dtype}; overlap degree ${spec.overlap.degree}; ${spec.cp} worker-thread ranks`);
  const t0 = performance.now();
  const ranks = await runDistributed(spec);
  log(`  ran in ${ms(performance.now() - t0)} (worker start-up included)\n`);
  log('  rank   area (cells)  stages  fwd compute  fwd wait  bwd compute  bwd wait  sent (fwd+bwd)  received (fwd+bwd)');
  for (const r of ranks) {
    const f = profileTotals(r.forward[0]);
    const b = profileTotals(r.backward[0]);
    log(
      `  ${String(r.rank).padStart(4)}  ${String(r.area).padStart(13)}  ${String(r.stages).padStart(6)}  ${ms(f.computeMs).padStart(11)}  ${ms(f.waitMs).padStart(8)}` +
        `  ${ms(b.computeMs).padStart(11)}  ${ms(b.waitMs).padStart(8)}  ${mib(f.sendBytes + b.sendBytes).padStart(14)}  ${mib(f.recvBytes + b.recvBytes).padStart(18)}`,
    );
  }
  const r0 = ranks[0];
  if (r0.singleDeviceMs !== undefined) {
    log(`\n  single device (rank 0's thread): forward ${ms(r0.singleDeviceMs.forward)}, backward ${ms(r0.singleDeviceMs.backward)}`);
  }
  const checks = r0.checks ?? [];
  log('  distributed result against single-device flexFlashAttn (worst error as a fraction of the allowed bound):');
  // Both sides round float32 results that differ in their last bits to the same 16-bit dtype, so a
  // value can land one ulp apart; the bound allows exactly that, which reads as up to 0.998x (a flip at the bottom of a binade is exactly one ulp relative).
  if (dtype === 'bfloat16' || dtype === 'float16') log(`  (one ${dtype} rounding flip between the two, the most they may differ by, measures up to 0.998x)`);
  for (const c of checks) log(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.message}`);
  const ok = checks.length > 0 && checks.every((c) => c.ok);
  log(ok ? '\n  all checks passed' : '\n  CHECK FAILED: the distributed result disagrees with the single-device one');
  return ok;
}
