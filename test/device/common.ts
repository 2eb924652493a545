/**
 * Shared pieces of the GPU check scripts in test/device/ (not a CI test and not a script itself):
 * argument parsing, seeded random inputs, the element-wise forward / backward checks against the
 * float64 reference with their stated tolerances, PASS/FAIL bookkeeping and CUDA-event timing.
 */
import { Command } from 'commander';
import { intAtLeast } from '../../src/cli/flags.js';
import { CudaDevice } from '../../src/device/index.js';
import { bf16BitsToFloat, f16BitsToFloat, floatToBf16Bits, floatToF16Bits, type DType } from '../../src/dtype.js';
import { cellMultiplicity } from '../../src/kernels/reference.js';
import { Tensor } from '../../src/tensor.js';
import type { FfaForwardShape } from '../../src/kernels/cuda/ffa-forward.js';
import { causalMask, fullMask, makeSliceList, slidingWindowMask, varlenCausalMask, type SliceList } from '../../src/mask/index.js';
import { Rng, freshSeed } from '../../src/util/rng.js';
import { medianEventMs } from '../../bench/kernel/timing.js';

/** The command line of a script: --seed N (random when absent), --only NAME, other flags. */
export interface ScriptArgs {
  readonly seed: number;
  /** Run only the cases whose name contains this (or one of its `|`-separated parts). */
  readonly only: string | undefined;
  /** mulberry32 seeded with `seed`, shared by everything the script draws. */
  readonly rng: Rng;
  /** Whether `--flag` is on the command line. */
  has(flag: string): boolean;
  /** The word after `--flag`, or `fallback`. */
  value(flag: string, fallback: string): string;
  /** Whether a case of this name runs under --only. */
  selects(name: string): boolean;
}

/** A flag read by a script must be registered in scriptProgram (else it could never be set). */
const registered = (flag: string): string => {
  if (!SCRIPT_FLAGS.includes(flag)) throw new Error(`GPU script reads ${flag}, which scriptProgram() in test/device/common.ts does not register`);
  return flag;
};

const camel = (flag: string): string => flag.replace(/^--/, '').replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());

/** The flags of the GPU scripts (commander: unknown flags are errors; --help lists them). */
function scriptProgram(): Command {
  return new Command()
    .option('--seed <n>', 'seed of every random draw (default: fresh, printed)', intAtLeast(0))
    .option('--only <name>', 'run only the cases whose name contains this (a|b: either)')
    .option('--json <file>', 'also write the results as JSON')
    .option('--warps <list>', 'ffa-bwd-gpu: warp counts to run, comma separated')
    .option('--dims <list>', 'ffa-bwd-gpu: head dims of the cases to run, comma separated')
    .option('--shard <k/n>', 'ffa-bwd-gpu: run the k-th of n interleaved shares of the cases (side-by-side processes)')
    .option('--det-schedule <name>', 'ffa-bwd-gpu: deterministic schedule of the option checks where the ordered one can run: ordered (default) or grouped')
    .option('--speed-dims <list>', 'ffa-bwd-gpu --speed: head dims to time, comma separated')
    .option('--tiles <list>', 'ffa-fwd-gpu: mma tile shapes WxN, comma separated')
    .option('--sm90', 'ffa-fwd-gpu: also run the Hopper kernel')
    .option('--speed', 'also time the kernels')
    .option('--speed-only', 'ffa-bwd-gpu: only the --speed part (no checks)')
    .option('--bench', 'ffa-bwd-gpu / range-ops-gpu: run the benchmark part')
    .option('--no-bench', 'range-ops-gpu: skip the benchmark part')
    .option('--bench-only', 'ffa-bwd-gpu: only the benchmark part');
}

/**
 * Every flag the GPU scripts accept (`--no-x` included). test/device-script-flags.test.ts checks
 * that each flag a script reads through `has` / `value` is one of them: a flag read but not
 * registered passes typecheck and CI and only fails on the GPU machine, as 'unknown option'.
 */
export const SCRIPT_FLAGS: readonly string[] = scriptProgram().options.map((o) => o.long ?? '');

/** Parses a GPU script's command line; prints the seed so a run can be replayed. */
export function scriptArgs(argv: readonly string[] = process.argv): ScriptArgs {
  const program = scriptProgram().parse([...argv]);
  const o = program.opts<Record<string, unknown>>();
  const seed = (o.seed as number | undefined) ?? freshSeed();
  const only = o.only as string | undefined;
  console.log(`seed ${seed}`);
  return {
    seed,
    only,
    rng: new Rng(seed),
    has: (flag) => (registered(flag).startsWith('--no-') ? o[camel(`--${flag.slice(5)}`)] === false : o[camel(flag)] === true),
    value: (flag, fallback) => (o[camel(registered(flag))] as string | undefined) ?? fallback,
    selects: (name) => only === undefined || only.split('|').some((part) => name.includes(part)),
  };
}

/** Opens device 0 and prints its name, compute capability and SM count. */
export function openDevice(): CudaDevice {
  const dev = CudaDevice.open(0);
  console.log(`device 0: ${dev.name}, cc ${dev.computeCapability.join('.')}, ${dev.smCount} SMs`);
  return dev;
}

/** Uniform in ±amp, never exactly 0 (|u| < 1e-3 becomes 1e-3), narrowed to `dtype`; one draw per element. */
export function randomTensor(rng: Rng, dtype: DType, shape: number[], amp: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = rng.next() * 2 - 1;
    values[i] = (Math.abs(u) < 1e-3 ? 1e-3 : u) * amp;
  }
  return Tensor.fromValues(dtype, shape, values);
}

/** One attention check: a named mask over tokensQ x tokensK with its heads, head dim, input dtype. */
export interface AttnCase extends FfaForwardShape {
  name: string;
  slices: SliceList;
  softcap?: number;
}

/** Fresh q (±3, so the softmax is peaked), k and v (±1) for a shape, drawn in that order. */
export function randomQkv(rng: Rng, c: FfaForwardShape): { q: Tensor; k: Tensor; v: Tensor } {
  const q = randomTensor(rng, c.dtype, [c.tokensQ, c.headsQ, c.dim], 3);
  const k = randomTensor(rng, c.dtype, [c.tokensK, c.headsKv, c.dim], 1);
  const v = randomTensor(rng, c.dtype, [c.tokensK, c.headsKv, c.dim], 1);
  return { q, k, v };
}

/**
 * Random slices with freely overlapping q ranges and mixed types; the last twentieth of the q rows
 * (`spare: 'q'`) or of the keys (`spare: 'k'`) is left to no slice.
 */
export function randomOverlappingSlices(rng: Rng, tokensQ: number, tokensK: number, n: number, spare: 'q' | 'k'): SliceList {
  const qLimit = tokensQ - (spare === 'q' ? Math.floor(tokensQ / 20) : 0);
  const kLimit = tokensK - (spare === 'k' ? Math.floor(tokensK / 20) : 0);
  const qr: Array<[number, number]> = [];
  const kr: Array<[number, number]> = [];
  const types: number[] = [];
  for (let i = 0; i < n; i++) {
    const qs = Math.floor(rng.next() * tokensQ * 0.9);
    const qe = Math.min(qLimit, qs + 1 + Math.floor(rng.next() * tokensQ * 0.6));
    const ks = Math.floor(rng.next() * tokensK * 0.8);
    const ke = Math.min(kLimit, ks + 1 + Math.floor(rng.next() * tokensK * 0.7));
    qr.push([qs, Math.max(qs, qe)]);
    kr.push([ks, Math.max(ks, ke)]);
    types.push(Math.floor(rng.next() * 4));
  }
  return makeSliceList(qr, kr, Uint8Array.from(types));
}

/**
 * `n` slices over nested, heavily overlapping q ranges [i·T/4n, T − i·T/8n) of `tokensQ` = T rows,
 * slice i on keys `kRange(i)`, types cycling full / causal / inv_causal / bi_causal.
 */
export function nestedQSlices(tokensQ: number, n: number, kRange: (i: number) => [number, number]): SliceList {
  return makeSliceList(
    Array.from({ length: n }, (_, i) => [Math.floor((i * tokensQ) / (4 * n)), tokensQ - Math.floor((i * tokensQ) / (8 * n))] as [number, number]),
    Array.from({ length: n }, (_, i) => kRange(i)),
    Uint8Array.from({ length: n }, (_, i) => i % 4),
  );
}

/** Key rows that no slice covers (1 = uncovered: their dk / dv must be exactly 0). */
export function uncoveredKeys(slices: SliceList, tokensK: number): Uint8Array {
  const covered = new Uint8Array(tokensK);
  for (let b = 0; b < slices.maskTypes.length; b++) covered.fill(1, slices.kRanges[2 * b], slices.kRanges[2 * b + 1]);
  return covered.map((c) => 1 - c);
}

/** Bit-for-bit equality of two tensors' storage. */
export function sameBits(x: Tensor, y: Tensor): boolean {
  return Buffer.compare(Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength), Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength)) === 0;
}

/** Whether the named tensors of two results have the same bits (one `a` lacks is skipped; one only `b` lacks differs). */
export function sameResults<T extends object>(a: T, b: T, names: ReadonlyArray<keyof T>): boolean {
  return names.every((name) => {
    const x = a[name] as Tensor | undefined;
    const y = b[name] as Tensor | undefined;
    return x === undefined || (y !== undefined && sameBits(x, y));
  });
}

/** sameResults of a second run against the first, noted in `parts` as 'second run bit-identical' / 'second run DIFFERS'. */
export function secondRunSame<T extends object>(got: T, again: T, names: ReadonlyArray<keyof T>, parts: string[]): boolean {
  const same = sameResults(got, again, names);
  parts.push(same ? 'second run bit-identical' : 'second run DIFFERS');
  return same;
}

/** A copy of a host tensor with its own storage. */
export function cloneTensor(t: Tensor): Tensor {
  return new Tensor(t.dtype, t.shape, t.data.slice());
}

/** What checkForward found: bad element count, first bad element, worst errors, empty rows. */
export interface ForwardCheck {
  ok: boolean;
  bad: number;
  firstBad: string;
  /** max |out − ref| over finite errors */
  outErr: number;
  /** max |lse − ref| over finite errors */
  lseErr: number;
  /** max |ref out| */
  maxRef: number;
  /** rows whose reference lse is -inf */
  emptyRows: number;
}

/**
 * Element-wise forward check: |out − ref| ≤ 2e-2·max|ref out|, |lse − ref| ≤ 1e-3·(1 + |ref lse|),
 * rows with reference lse = -inf exactly out = 0 and lse = -inf, no NaN (NaN fails every bound).
 */
export function checkForward(got: { out: Tensor; lse: Tensor }, ref: { out: Tensor; lse: Tensor }, dim: number): ForwardCheck {
  const o = got.out.toFloat64();
  const l = got.lse.toFloat64();
  const ro = ref.out.data as Float64Array;
  const rl = ref.lse.data as Float64Array;
  let maxRef = 0;
  for (let i = 0; i < ro.length; i++) maxRef = Math.max(maxRef, Math.abs(ro[i]));
  const outTol = 2e-2 * maxRef;
  let outErr = 0;
  let lseErr = 0;
  let bad = 0;
  let firstBad = '';
  let emptyRows = 0;
  for (let row = 0; row < rl.length; row++) {
    const refL = rl[row];
    if (refL === -Infinity) {
      emptyRows++;
      let ok = l[row] === -Infinity;
      for (let d = 0; d < dim; d++) if (o[row * dim + d] !== 0) ok = false;
      if (!ok && bad++ === 0) firstBad = `row ${row}: expected empty (lse ${l[row]}, out[0] ${o[row * dim]})`;
      continue;
    }
    const le = Math.abs(l[row] - refL);
    if (!(le <= 1e-3 * (1 + Math.abs(refL))) && bad++ === 0) firstBad = `row ${row}: lse ${l[row]} vs ${refL}`;
    if (Number.isFinite(le)) lseErr = Math.max(lseErr, le);
    for (let d = 0; d < dim; d++) {
      const e = Math.abs(o[row * dim + d] - ro[row * dim + d]);
      if (!(e <= outTol) && bad++ === 0) firstBad = `row ${row} d ${d}: out ${o[row * dim + d]} vs ${ro[row * dim + d]}`;
      if (Number.isFinite(e)) outErr = Math.max(outErr, e);
    }
  }
  return { ok: bad === 0, bad, firstBad, outErr, lseErr, maxRef, emptyRows };
}

/** The gradients a backward check compares. */
export interface Grads {
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
}

/** PASS/FAIL lines and the failure count of a script. */
export class Tally {
  failures = 0;
  checks = 0;

  /** Prints `PASS line` or `FAIL line` and counts it. */
  record(ok: boolean, line: string): boolean {
    this.checks++;
    if (!ok) this.failures++;
    console.log(`${ok ? 'PASS' : 'FAIL'} ${line}`);
    return ok;
  }

  /** Records a check that threw as `FAIL label: threw <stack>`. */
  threw(label: string, e: unknown): void {
    this.record(false, `${label}: threw ${(e as Error).stack ?? String(e)}`);
  }

  /** Runs `body` on each case `selects` keeps; a throw becomes `FAIL <prefix><name>: threw <stack>`. */
  forEach<C extends { name: string }>(cases: readonly C[], selects: (name: string) => boolean, prefix: string, body: (c: C) => void): void {
    for (const c of cases) {
      if (!selects(c.name)) continue;
      try {
        body(c);
      } catch (e) {
        this.threw(`${prefix}${c.name}`, e);
      }
    }
  }

  /** Prints ALL PASS / N FAILED (unless `quiet`) and exits 0 or 1. */
  exit(quiet = false): never {
    if (!quiet) console.log(this.failures === 0 ? 'ALL PASS' : `${this.failures} FAILED`);
    process.exit(this.failures === 0 ? 0 : 1);
  }
}

/** The speed read's problems: full, causal, varlen-causal and sliding-window (1024) masks at 16k tokens, 64:8 heads, D 128, bf16. */
export function speedCases(): Array<{ label: string; slices: SliceList; shape: FfaForwardShape }> {
  const S = 16384;
  const shape: FfaForwardShape = { tokensQ: S, tokensK: S, headsQ: 64, headsKv: 8, dim: 128, dtype: 'bfloat16' };
  return [
    { label: 'full', slices: fullMask(S), shape },
    { label: 'causal', slices: causalMask(S), shape },
    { label: 'varlen-causal', slices: varlenCausalMask([0, 3000, 5000, 9000, 9100, 14000, S]), shape },
    { label: 'sliding-window', slices: slidingWindowMask(S, [1024, 0]), shape },
  ];
}

/**
 * One entry of a speed-read line, `name <median> ms <T> TFLOP/s` (median of 10 event-timed launches
 * after 3 warm-ups, `flops` per launch), or `name threw <message>`; `prepare` builds the problem.
 */
export function speedEntry(dev: CudaDevice, name: string, flops: number, prepare: () => { launch: () => void; free: () => void }): string {
  try {
    const problem = prepare();
    const { median } = medianEventMs(dev, () => problem.launch());
    problem.free();
    return `${name} ${median.toFixed(2)} ms ${(flops / (median * 1e-3) / 1e12).toFixed(0)} TFLOP/s`;
  } catch (e) {
    return `${name} threw ${(e as Error).message}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Tolerances per dtype in the reference's two-criterion form (04 §4.3, 05 §4.2). For each output
// tensor X, with ref_hp the float64 reference and ref_lp the same dense attention computed in the
// input dtype (lowPrecisionReference):
//   1. norm:     ‖X − ref_hp‖∞ ≤ max(minNorm, 2 · ‖ref_lp − ref_hp‖∞);
//   2. mismatch: the fraction of elements with |X − ref_hp| > atol + rtol·|ref_hp| is at most
//                clamp(2 · (the same fraction for ref_lp), 0.005, 0.75).
// atol 1e-8; rtol out 0.05, lse 0.001, dq 0.3 (bf16) / 0.2 (fp16), dk 0.15 / 0.08, dv 0.05 (the
// reference's table); minNorm 1e-6 · max|ref_hp| (only matters where ref_lp is exact). NaN in X
// fails both. Exact parts stay exact: rows whose reference lse is -inf must be out = 0 and
// lse = -inf, key rows no slice covers dk = dv = 0.

/** rtol of the mismatch criterion per tensor and dtype (04 §4.3). */
export function twoCriterionRtol(name: 'out' | 'lse' | 'dq' | 'dk' | 'dv', dtype: DType): number {
  const fp16 = dtype === 'float16';
  return { out: 0.05, lse: 0.001, dq: fp16 ? 0.2 : 0.3, dk: fp16 ? 0.08 : 0.15, dv: 0.05 }[name];
}

/** One tensor's two-criterion verdict. */
export interface TwoCriterion {
  ok: boolean;
  /** ‖X − ref_hp‖∞ and ‖ref_lp − ref_hp‖∞ over the compared elements */
  err: number;
  lpErr: number;
  /** mismatch fractions of X and of ref_lp, and the allowed fraction */
  mismatch: number;
  lpMismatch: number;
  allowed: number;
  /** NaN elements in X */
  nan: number;
}

/** The two criteria over the elements `use` keeps (all when absent). */
export function twoCriterion(got: ArrayLike<number>, hp: ArrayLike<number>, lp: ArrayLike<number>, rtol: number, use?: (i: number) => boolean): TwoCriterion {
  const atol = 1e-8;
  let err = 0;
  let lpErr = 0;
  let maxRef = 0;
  let bad = 0;
  let lpBad = 0;
  let n = 0;
  let nan = 0;
  for (let i = 0; i < hp.length; i++) {
    if (use !== undefined && !use(i)) continue;
    n++;
    const r = hp[i];
    const e = Math.abs(got[i] - r);
    const el = Math.abs(lp[i] - r);
    if (Number.isNaN(e)) nan++;
    else err = Math.max(err, e);
    lpErr = Math.max(lpErr, el);
    maxRef = Math.max(maxRef, Math.abs(r));
    if (!(e <= atol + rtol * Math.abs(r))) bad++;
    if (!(el <= atol + rtol * Math.abs(r))) lpBad++;
  }
  const mismatch = n > 0 ? bad / n : 0;
  const lpMismatch = n > 0 ? lpBad / n : 0;
  const allowed = Math.min(0.75, Math.max(0.005, 2 * lpMismatch));
  const ok = nan === 0 && err <= Math.max(1e-6 * maxRef, 2 * lpErr) && mismatch <= allowed;
  return { ok, err, lpErr, mismatch, lpMismatch, allowed, nan };
}

/** `name err (lp err) mismatch (allowed)` for a PASS/FAIL line. */
export function describeTwoCriterion(name: string, c: TwoCriterion): string {
  return `${name} err ${c.err.toExponential(2)} (lp ${c.lpErr.toExponential(2)}) mism ${(100 * c.mismatch).toFixed(2)}% (≤ ${(100 * c.allowed).toFixed(2)}%)${c.nan ? ` ${c.nan} NaN` : ''}`;
}

/** Rounds a float64 to the nearest value of a 16-bit dtype (identity for float32 / float64). */
export function roundTo(dtype: DType, x: number): number {
  if (dtype === 'bfloat16') return bf16BitsToFloat(floatToBf16Bits(x));
  if (dtype === 'float16') return f16BitsToFloat(floatToF16Bits(x));
  return x;
}

/**
 * The low-precision reference (04 §4.2): the dense attention of the float64 reference computed
 * as a framework computes it in the input dtype (`dtype`): S = q kᵀ accumulated in fp32 and
 * rounded, logits scaled (softcapped) and rounded, P = softmax rounded, out = P v rounded; lse
 * from the rounded logits. With `dout`, the gradients of that graph, each product rounded as
 * autograd in the dtype rounds it: dP = dout vᵀ, dS = P (dP − Σ P dP), dq = dS k, dk = dSᵀ q,
 * dv = Pᵀ dout (a GQA group's dk / dv summed, then rounded). No sink or accumulation.
 */
export function lowPrecisionReference(
  a: { q: Tensor; k: Tensor; v: Tensor; dout?: Tensor; slices: SliceList; softmaxScale: number; softcap: number },
  dtype: DType,
): { out: Float64Array; lse: Float64Array; dq?: Float64Array; dk?: Float64Array; dv?: Float64Array } {
  const r = (x: number): number => roundTo(dtype, x);
  const [tokensQ, headsQ, dim] = a.q.shape;
  const [tokensK, headsKv] = a.k.shape;
  const group = headsQ / headsKv;
  const q = a.q.toFloat64();
  const k = a.k.toFloat64();
  const v = a.v.toFloat64();
  const dout = a.dout?.toFloat64();
  const mult = cellMultiplicity(a.slices, tokensQ, tokensK);
  const out = new Float64Array(tokensQ * headsQ * dim);
  const lse = new Float64Array(tokensQ * headsQ);
  const dq = dout ? new Float64Array(out.length) : undefined;
  const dk = dout ? new Float64Array(tokensK * headsKv * dim) : undefined;
  const dv = dout ? new Float64Array(tokensK * headsKv * dim) : undefined;
  const z = new Float64Array(tokensK);
  const slope = new Float64Array(tokensK);
  const p = new Float64Array(tokensK);
  const o = new Float64Array(dim);
  const dot = (x: Float64Array, xo: number, y: Float64Array, yo: number): number => {
    let s = 0;
    for (let d = 0; d < dim; d++) s += x[xo + d] * y[yo + d];
    return s;
  };
  for (let h = 0; h < headsQ; h++) {
    const hk = Math.floor(h / group);
    for (let t = 0; t < tokensQ; t++) {
      const row = t * headsQ + h;
      const qOff = row * dim;
      let m = -Infinity;
      for (let j = 0; j < tokensK; j++) {
        if (mult[t * tokensK + j] === 0) continue;
        const s = r(dot(q, qOff, k, (j * headsKv + hk) * dim));
        if (a.softcap > 0) {
          const th = Math.tanh(r(s * a.softmaxScale) / a.softcap);
          z[j] = r(a.softcap * th);
          slope[j] = a.softmaxScale * (1 - th * th);
        } else {
          z[j] = r(s * a.softmaxScale);
          slope[j] = a.softmaxScale;
        }
        if (z[j] > m) m = z[j];
      }
      o.fill(0);
      if (m === -Infinity) {
        lse[row] = -Infinity;
        out.set(o, qOff);
        continue;
      }
      let sum = 0;
      for (let j = 0; j < tokensK; j++) if (mult[t * tokensK + j] !== 0) sum += mult[t * tokensK + j] * Math.exp(z[j] - m);
      const l = m + Math.log(sum);
      lse[row] = l;
      for (let j = 0; j < tokensK; j++) {
        const n = mult[t * tokensK + j];
        if (n === 0) continue;
        p[j] = r(n * Math.exp(z[j] - l));
        const vOff = (j * headsKv + hk) * dim;
        for (let d = 0; d < dim; d++) o[d] += p[j] * v[vOff + d];
      }
      for (let d = 0; d < dim; d++) out[qOff + d] = r(o[d]);
      if (dout === undefined || dq === undefined || dk === undefined || dv === undefined) continue;
      // softmax backward: Σ_j P dP over the row, then dS = P (dP − Σ), each rounded
      let delta = 0;
      for (let j = 0; j < tokensK; j++) if (mult[t * tokensK + j] !== 0) delta += p[j] * (z[j] = r(dot(dout, qOff, v, (j * headsKv + hk) * dim)));
      for (let j = 0; j < tokensK; j++) {
        if (mult[t * tokensK + j] === 0) continue;
        const kOff = (j * headsKv + hk) * dim;
        const ds = r(r(p[j] * (z[j] - delta)) * slope[j]);
        for (let d = 0; d < dim; d++) {
          dq[qOff + d] += ds * k[kOff + d];
          dk[kOff + d] += ds * q[qOff + d];
          dv[kOff + d] += p[j] * dout[qOff + d];
        }
      }
      for (let d = 0; d < dim; d++) dq[qOff + d] = r(dq[qOff + d]);
    }
  }
  if (dk !== undefined && dv !== undefined) {
    for (let i = 0; i < dk.length; i++) {
      dk[i] = r(dk[i]);
      dv[i] = r(dv[i]);
    }
  }
  return { out, lse, dq, dk, dv };
}

/**
 * The forward two-criterion check: out (rows with a finite reference lse) and lse by twoCriterion,
 * rows with reference lse = -inf exactly out = 0 and lse = -inf.
 */
export function checkForwardTwoCriterion(
  got: { out: Tensor; lse: Tensor },
  hp: { out: Tensor; lse: Tensor },
  lp: { out: Float64Array; lse: Float64Array },
  dim: number,
  dtype: DType,
): { ok: boolean; line: string } {
  const o = got.out.toFloat64();
  const l = got.lse.toFloat64();
  const rl = hp.lse.data as Float64Array;
  let emptyBad = 0;
  let emptyRows = 0;
  for (let row = 0; row < rl.length; row++) {
    if (rl[row] !== -Infinity) continue;
    emptyRows++;
    let ok = l[row] === -Infinity;
    for (let d = 0; d < dim; d++) if (o[row * dim + d] !== 0) ok = false;
    if (!ok) emptyBad++;
  }
  const live = (i: number): boolean => rl[i] !== -Infinity;
  const co = twoCriterion(o, hp.out.data as Float64Array, lp.out, twoCriterionRtol('out', dtype), (i) => live(Math.floor(i / dim)));
  const cl = twoCriterion(l, rl, lp.lse, twoCriterionRtol('lse', dtype), live);
  const ok = co.ok && cl.ok && emptyBad === 0;
  return { ok, line: `${describeTwoCriterion('out', co)}; ${describeTwoCriterion('lse', cl)}; ${emptyRows} empty rows${emptyBad ? ` (${emptyBad} NOT empty)` : ''}` };
}

/** The backward two-criterion check of dq, dk, dv, and uncovered key rows exactly dk = dv = 0. */
export function checkBackwardTwoCriterion(got: Grads, hp: Grads, lp: { dq?: Float64Array; dk?: Float64Array; dv?: Float64Array }, dtype: DType, kvRowWidth: number, uncovered: Uint8Array): { ok: boolean; line: string } {
  let ok = true;
  const parts: string[] = [];
  for (const name of ['dq', 'dk', 'dv'] as const) {
    const g = got[name].toFloat64();
    const lpx = lp[name];
    if (lpx === undefined) throw new Error(`lowPrecisionReference gave no ${name}: pass dout`);
    const c = twoCriterion(g, hp[name].data as Float64Array, lpx, twoCriterionRtol(name, dtype));
    let zeroBad = 0;
    if (name !== 'dq') for (let i = 0; i < g.length; i++) if (uncovered[Math.floor(i / kvRowWidth)] === 1 && g[i] !== 0) zeroBad++;
    ok &&= c.ok && zeroBad === 0;
    parts.push(describeTwoCriterion(name, c) + (zeroBad ? ` (${zeroBad} uncovered-key elements not 0)` : ''));
  }
  return { ok, line: parts.join('; ') };
}
