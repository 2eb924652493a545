/**
 * Shared pieces of the GPU check scripts in test/device/ (not a CI test and not a script itself):
 * argument parsing, seeded random inputs, the element-wise forward / backward checks against the
 * float64 reference with their stated tolerances, PASS/FAIL bookkeeping and CUDA-event timing.
 */
import { CudaDevice } from '../../src/device/index.js';
import type { DType } from '../../src/dtype.js';
import { Tensor } from '../../src/tensor.js';
import type { FfaForwardShape } from '../../src/kernels/cuda/ffa-forward.js';
import { causalMask, fullMask, makeSliceList, varlenCausalMask, type SliceList } from '../../src/mask/index.js';
import { Rng } from '../../src/util/rng.js';

/** The command line of a script: --seed N (random when absent), --only NAME, other flags. */
export interface ScriptArgs {
  readonly seed: number;
  /** Run only the cases whose name contains this. */
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

/** Parses --seed / --only (and gives access to the other flags); prints the seed so a run can be replayed. */
export function scriptArgs(argv: readonly string[] = process.argv): ScriptArgs {
  const valueOf = (flag: string): string | undefined => {
    const at = argv.indexOf(flag);
    return at >= 0 ? argv[at + 1] : undefined;
  };
  const seedArg = valueOf('--seed');
  const seed = seedArg !== undefined ? Number(seedArg) : (Date.now() ^ (process.pid << 8)) >>> 0;
  const only = valueOf('--only');
  console.log(`seed ${seed}`);
  return {
    seed,
    only,
    rng: new Rng(seed),
    has: (flag) => argv.includes(flag),
    value: (flag, fallback) => valueOf(flag) ?? fallback,
    selects: (name) => only === undefined || name.includes(only),
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

/** What checkBackward found: bad element count, first bad element, per-tensor worst error and max|ref|. */
export interface BackwardCheck {
  ok: boolean;
  bad: number;
  firstBad: string;
  tensors: Array<{ name: 'dq' | 'dk' | 'dv'; err: number; maxRef: number }>;
}

/**
 * Element-wise backward check, per tensor: |got − ref| ≤ 2e-2·max|ref|, no NaN, and key rows in
 * `uncovered` (see uncoveredKeys) exactly dk = dv = 0. `kvRowWidth` = headsKv · dim.
 */
export function checkBackward(got: Grads, ref: Grads, kvRowWidth: number, uncovered: Uint8Array): BackwardCheck {
  let bad = 0;
  let firstBad = '';
  const tensors: BackwardCheck['tensors'] = [];
  for (const [name, g, r, rowWidth] of [
    ['dq', got.dq, ref.dq, 0],
    ['dk', got.dk, ref.dk, kvRowWidth],
    ['dv', got.dv, ref.dv, kvRowWidth],
  ] as const) {
    const gd = g.toFloat64();
    const rd = r.data as Float64Array;
    let maxRef = 0;
    for (let i = 0; i < rd.length; i++) maxRef = Math.max(maxRef, Math.abs(rd[i]));
    const tol = 2e-2 * maxRef;
    let err = 0;
    for (let i = 0; i < rd.length; i++) {
      const e = Math.abs(gd[i] - rd[i]);
      const mustBeZero = rowWidth > 0 && uncovered[Math.floor(i / rowWidth)] === 1;
      if ((!(e <= tol) || (mustBeZero && gd[i] !== 0)) && bad++ === 0) {
        firstBad = `${name}[${i}] = ${gd[i]} vs ${rd[i]}${mustBeZero ? ' (uncovered key)' : ''}`;
      }
      if (Number.isFinite(e)) err = Math.max(err, e);
    }
    tensors.push({ name, err, maxRef });
  }
  return { ok: bad === 0, bad, firstBad, tensors };
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

/** Milliseconds per launch: `warmup` launches, then `reps` launches between two CUDA events, averaged. */
export function meanEventMs(dev: CudaDevice, launch: () => void, warmup: number, reps: number): number {
  for (let i = 0; i < warmup; i++) launch();
  const e0 = dev.createEvent().record();
  for (let i = 0; i < reps; i++) launch();
  const e1 = dev.createEvent().record();
  const ms = e1.elapsedSince(e0) / reps;
  e0.destroy();
  e1.destroy();
  return ms;
}

/** `warmup` launches, then `reps` launches each between its own CUDA events: median and min ms. */
export function medianEventMs(dev: CudaDevice, launch: () => void, warmup = 3, reps = 10): { median: number; min: number } {
  for (let i = 0; i < warmup; i++) launch();
  dev.synchronize();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const e0 = dev.createEvent().record();
    launch();
    const e1 = dev.createEvent().record();
    times.push(e1.elapsedSince(e0));
    e0.destroy();
    e1.destroy();
  }
  times.sort((a, b) => a - b);
  return { median: times[times.length >> 1], min: times[0] };
}

/** The speed read's problems: full, causal and varlen-causal masks at 16k tokens, 64:8 heads, D 128, bf16. */
export function speedCases(): Array<{ label: string; slices: SliceList; shape: FfaForwardShape }> {
  const S = 16384;
  const shape: FfaForwardShape = { tokensQ: S, tokensK: S, headsQ: 64, headsKv: 8, dim: 128, dtype: 'bfloat16' };
  return [
    { label: 'full', slices: fullMask(S), shape },
    { label: 'causal', slices: causalMask(S), shape },
    { label: 'varlen-causal', slices: varlenCausalMask([0, 3000, 5000, 9000, 9100, 14000, S]), shape },
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
