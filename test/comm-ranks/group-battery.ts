/**
 * GroupCast / GroupReduce checked on one rank: the worked examples of reference 03 §1.1-1.3
 * exactly, and random arguments against a direct definition. The random arguments of all ranks
 * are drawn from one seed on every rank: each rank's input splits get random sizes (zero
 * included) and random destination sets; each receiver's output splits are the splits sent to it,
 * with the sources interleaved at random while each source's order is kept (the ordering
 * contract). The generator remembers which (source, split) fills every output split, which is
 * the direct definition the results are checked against.
 */
import { groupCast, groupReduce, prepareGroupCast, prepareGroupReduce } from '../../src/comm/group-collective.js';
import type { HostArray, ProcessGroup } from '../../src/comm/process-group.js';
import type { GroupCastArgs, GroupReduceArgs } from '../../src/solver/plan.js';
import { bf16BitsToFloat, floatToBf16Bits } from '../../src/dtype.js';
import { Rng } from '../../src/util/rng.js';
import type { BatteryResult } from './collective-battery.js';

export interface RandomCast {
  readonly args: GroupCastArgs[];
  /** sources[r][j] = [s, i]: rank r's output split j is rank s's input split i. */
  readonly sources: Array<Array<[number, number]>>;
}

export function randomGroupCast(rng: Rng, P: number, maxRows: number): RandomCast {
  const sizes: number[][] = [];
  const dsts: number[][][] = [];
  for (let s = 0; s < P; s++) {
    const n = rng.int(0, 6);
    sizes.push(Array.from({ length: n }, () => (rng.next() < 0.2 ? 0 : rng.int(1, maxRows))));
    dsts.push(Array.from({ length: n }, () => Array.from({ length: P }, (_, r) => r).filter(() => rng.next() < 0.45)));
  }
  const sources: Array<Array<[number, number]>> = [];
  const args: GroupCastArgs[] = [];
  for (let r = 0; r < P; r++) {
    const queues = dsts.map((d) => d.flatMap((list, i) => (list.includes(r) ? [i] : [])));
    const order: Array<[number, number]> = [];
    for (;;) {
      const open = queues.flatMap((q, s) => (q.length > 0 ? [s] : []));
      if (open.length === 0) break;
      const s = rng.pick(open);
      order.push([s, queues[s].shift() as number]);
    }
    sources.push(order);
  }
  for (let r = 0; r < P; r++) {
    args.push({
      inputSplitSizes: Int32Array.from(sizes[r]),
      dstIndices: dsts[r],
      outputSplitSizes: Int32Array.from(sources[r], ([s, i]) => sizes[s][i]),
      srcIndex: Int32Array.from(sources[r], ([s]) => s),
    });
  }
  return { args, sources };
}

/** The mirror of a cast: what was cast out is reduced back (03 §1.1, "Symmetry"). */
export function mirror(a: GroupCastArgs): GroupReduceArgs {
  return { inputSplitSizes: a.outputSplitSizes, dstIndex: a.srcIndex, outputSplitSizes: a.inputSplitSizes, srcIndices: a.dstIndices };
}

function offsets(sizes: Int32Array): number[] {
  const out = [0];
  sizes.forEach((s, i) => out.push(out[i] + s));
  return out;
}

const mix = (h: number, x: number): number => Math.imul(h ^ (x | 0), 0x85ebca6b) ^ (h >>> 13);

/** A hash of two to five integers (fixed arity, not rest parameters: it runs once per element checked, in every rank's cold isolate). */
function hash(a: number, b: number, c?: number, d?: number, e?: number): number {
  let h = mix(mix(0x9e3779b9, a), b);
  if (c !== undefined) h = mix(h, c);
  if (d !== undefined) h = mix(h, d);
  if (e !== undefined) h = mix(h, e);
  return h >>> 0;
}

/** A value in [-1, 1) exactly representable in float32 and bfloat16 (8 significant bits). */
const unit = (h: number): number => ((h % 256) - 128) / 128;

type Close = (what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number) => void;

/** A checker that records failures: |got - want| <= tol·(1 + |want|) element-wise (exact for tol 0). */
function checker(): { close: Close; result: BatteryResult } {
  const result: BatteryResult = { checks: 0, failures: [] };
  const close: Close = (what, got, want, tol) => {
    result.checks++;
    if (got.length !== want.length) {
      result.failures.push(`${what}: length ${got.length}, want ${want.length}`);
      return;
    }
    for (let k = 0; k < want.length; k++) {
      const g = got[k];
      const w = want[k];
      const ok = w === g || (Number.isFinite(w) && Math.abs(g - w) <= tol * (1 + Math.abs(w)));
      if (!ok) {
        result.failures.push(`${what}: [${k}] = ${g}, want ${w}`);
        return;
      }
    }
  };
  return { close, result };
}

/** 03 §1.1's GroupCast example (needs 4 ranks) and its mirrored GroupReduce. */
export async function workedCastExample(group: ProcessGroup): Promise<BatteryResult> {
  const { close, result } = checker();
  await castExample(group, close);
  return result;
}

/** 03 §1.3's avg and lse GroupReduce examples (need 2 ranks). */
export async function workedReduceExamples(group: ProcessGroup): Promise<BatteryResult> {
  const { close, result } = checker();
  await reduceExamples(group, close);
  return result;
}

/** Random GroupCast / GroupReduce cases (and, on 4 or 2 ranks, the worked examples). */
export async function groupBattery(group: ProcessGroup, seed: number, cases = 6): Promise<BatteryResult> {
  const P = group.size;
  const me = group.rank;
  const { close, result } = checker();
  const failures = result.failures;

  if (P === 4) await castExample(group, close);
  if (P === 2) await reduceExamples(group, close);

  for (let c = 0; c < cases; c++) {
    const rng = new Rng(hash(seed, c));
    const large = rng.next() < 0.25;
    const { args, sources } = randomGroupCast(rng, P, large ? 1500 : 5);
    const w = rng.int(1, 4) * (large ? 2 : 1);
    const tag = `seed ${seed} case ${c} rank ${me}/${P} rowWidth ${w}`;
    const cast = args[me];
    const red = mirror(cast);
    const inOff = args.map((a) => offsets(a.inputSplitSizes));
    const outOff = args.map((a) => offsets(a.outputSplitSizes));
    const inRows = inOff[me][inOff[me].length - 1];
    const outRows = outOff[me][outOff[me].length - 1];
    // Cast input element (rank s, row t, column x).
    const castIn = (s: number, t: number, x: number): number => hash(c, s, t, x);

    // GroupCast of raw 16-bit words and of float64 values, into a fresh and into a given output.
    for (const kind of ['u16', 'f64'] as const) {
      const mk = kind === 'u16' ? (n: number) => new Uint16Array(n) : (n: number) => new Float64Array(n);
      const conv = kind === 'u16' ? (v: number) => v & 0xffff : (v: number) => v + 0.5;
      const input = mk(inRows * w);
      for (let t = 0; t < inRows; t++) for (let x = 0; x < w; x++) input[t * w + x] = conv(castIn(me, t, x));
      const want: number[] = [];
      sources[me].forEach(([s, i]) => {
        for (let t = inOff[s][i]; t < inOff[s][i + 1]; t++) for (let x = 0; x < w; x++) want.push(conv(castIn(s, t, x)));
      });
      const given = rng.next() < 0.5 ? mk(outRows * w) : undefined;
      const out = await groupCast(group, input as HostArray, cast, w, given as HostArray | undefined).wait();
      close(`${tag} groupCast ${kind}`, out, want, 0);
      if (given !== undefined && out !== given) failures.push(`${tag} groupCast did not fill the given output`);
    }
    result.checks++;
    if (prepareGroupCast(cast, P) !== prepareGroupCast(cast, P) || prepareGroupReduce(red, P) !== prepareGroupReduce(red, P)) failures.push(`${tag}: lowering not cached`);

    // GroupReduce: partial rows live in cast-output layout on every rank; output in cast-input layout.
    const partial = (r: number, t: number, x: number): number => unit(hash(c, r, t, x, 1));
    const old = (t: number, x: number): number => unit(hash(c, me, t, x, 2));
    // contributions[t] for my output row t: [rank r, r's input row] in ascending r.
    const contributions: Array<Array<[number, number]>> = Array.from({ length: inRows }, () => []);
    for (let r = 0; r < P; r++) {
      sources[r].forEach(([s, i], j) => {
        if (s !== me) return;
        for (let d = 0; d < args[me].inputSplitSizes[i]; d++) contributions[inOff[me][i] + d].push([r, outOff[r][j] + d]);
      });
    }
    contributions.forEach((l) => l.sort((a, b) => a[0] - b[0]));
    const partIn = new Float64Array(outRows * w);
    for (let t = 0; t < outRows; t++) for (let x = 0; x < w; x++) partIn[t * w + x] = partial(me, t, x);

    for (const op of ['sum', 'avg'] as const) {
      const acc = new Float64Array(inRows * w);
      for (let t = 0; t < inRows; t++) for (let x = 0; x < w; x++) acc[t * w + x] = old(t, x);
      const want = new Float64Array(acc.length);
      for (let t = 0; t < inRows; t++) {
        for (let x = 0; x < w; x++) {
          let v = old(t, x);
          for (const [r, rt] of contributions[t]) v += partial(r, rt, x);
          want[t * w + x] = contributions[t].length > 0 && op === 'avg' ? v / (1 + contributions[t].length) : v;
        }
      }
      await groupReduce(group, partIn, acc, red, op, { rowWidth: w }).wait();
      close(`${tag} groupReduce(${op}) f64`, acc, want, 1e-14);
    }

    // Sum of bfloat16 partials: float32 accumulation, one rounding.
    {
      const acc = new Uint16Array(inRows * w);
      for (let t = 0; t < inRows; t++) for (let x = 0; x < w; x++) acc[t * w + x] = floatToBf16Bits(old(t, x));
      const input = Uint16Array.from(partIn, (v) => floatToBf16Bits(v));
      const want = new Float64Array(acc.length);
      for (let t = 0; t < inRows; t++) {
        for (let x = 0; x < w; x++) {
          let v = old(t, x);
          for (const [r, rt] of contributions[t]) v = Math.fround(v + partial(r, rt, x));
          want[t * w + x] = bf16BitsToFloat(floatToBf16Bits(v));
        }
      }
      await groupReduce(group, input, acc, red, 'sum', { rowWidth: w, halfType: 'bfloat16' }).wait();
      close(`${tag} groupReduce(sum) bf16`, Array.from(acc, bf16BitsToFloat), want, 0);
    }

    // LSE merge of (out, lse) pairs, some lse = -inf, float32 data.
    {
      const heads = rng.int(1, 2);
      const W = w * heads;
      const lseOf = (h: number): number => (h % 7 === 0 ? -Infinity : ((h % 1000) / 1000) * 6 - 3);
      const partLse = (r: number, t: number, hd: number): number => lseOf(hash(c, r, t, hd, 3));
      const oldLse = (t: number, hd: number): number => lseOf(hash(c, me, t, hd, 4) * 3);
      const pOut = (r: number, t: number, e: number): number => unit(hash(c, r, t, e, 5));
      const input = new Float32Array(outRows * W);
      const inLse = new Float32Array(outRows * heads);
      for (let t = 0; t < outRows; t++) {
        for (let e = 0; e < W; e++) input[t * W + e] = pOut(me, t, e);
        for (let hd = 0; hd < heads; hd++) inLse[t * heads + hd] = partLse(me, t, hd);
      }
      const acc = new Float32Array(inRows * W);
      const accLse = new Float32Array(inRows * heads);
      for (let t = 0; t < inRows; t++) {
        for (let e = 0; e < W; e++) acc[t * W + e] = unit(hash(c, me, t, e, 6));
        for (let hd = 0; hd < heads; hd++) accLse[t * heads + hd] = oldLse(t, hd);
      }
      const wantOut = Float64Array.from(acc);
      const wantLse = Float64Array.from(accLse);
      const dim = w;
      for (let t = 0; t < inRows; t++) {
        if (contributions[t].length === 0) continue;
        for (let hd = 0; hd < heads; hd++) {
          const terms: Array<[number, (d: number) => number]> = [[oldLse(t, hd), (d) => acc[(t * heads + hd) * dim + d]]];
          for (const [r, rt] of contributions[t]) terms.push([partLse(r, rt, hd), (d) => pOut(r, rt, hd * dim + d)]);
          const m = Math.max(...terms.map((x) => x[0]));
          const L = m === -Infinity ? -Infinity : m + Math.log(terms.reduce((a, x) => a + Math.exp(x[0] - m), 0));
          wantLse[t * heads + hd] = L;
          for (let d = 0; d < dim; d++) {
            wantOut[(t * heads + hd) * dim + d] = L === -Infinity ? 0 : terms.reduce((a, x) => a + (x[0] === -Infinity ? 0 : Math.exp(x[0] - L) * x[1](d)), 0);
          }
        }
      }
      await groupReduce(group, input, acc, red, 'lse', { rowWidth: W, heads, inputLse: inLse, outputLse: accLse }).wait();
      close(`${tag} groupReduce(lse) out`, acc, wantOut, 2e-6);
      close(`${tag} groupReduce(lse) lse`, accLse, wantLse, 2e-6);
    }

    // A cast and its mirrored reduce in flight together, reusing the cached lowerings.
    {
      const input = new Float64Array(inRows);
      for (let t = 0; t < inRows; t++) input[t] = t + 1000 * me;
      const castWork = groupCast(group, input, cast, 1);
      const acc = new Float64Array(inRows);
      const reduceWork = groupReduce(group, new Float64Array(outRows).fill(1), acc, red, 'sum', { rowWidth: 1 });
      await reduceWork.wait();
      await castWork.wait();
      close(`${tag} concurrent reduce counts contributors`, acc, Array.from({ length: inRows }, (_, t) => contributions[t].length), 0);
    }
  }
  return result;
}

/** 03 §1.1: the W=4 GroupCast of normal_group_cast_case1, then the mirrored GroupReduce (sum). */
async function castExample(group: ProcessGroup, close: Close): Promise<void> {
  const args: GroupCastArgs[] = [
    { inputSplitSizes: Int32Array.of(2, 1, 1), dstIndices: [[1], [1, 2], [2]], outputSplitSizes: Int32Array.of(1, 1, 1), srcIndex: Int32Array.of(3, 1, 2) },
    { inputSplitSizes: Int32Array.of(1, 1, 2), dstIndices: [[3], [0, 3], [2]], outputSplitSizes: Int32Array.of(2, 2, 1, 1, 1), srcIndex: Int32Array.of(0, 2, 0, 3, 3) },
    { inputSplitSizes: Int32Array.of(1, 1, 2), dstIndices: [[3], [0, 3], [1]], outputSplitSizes: Int32Array.of(1, 2, 1, 2), srcIndex: Int32Array.of(0, 3, 0, 1) },
    { inputSplitSizes: Int32Array.of(1, 1, 2), dstIndices: [[1], [0, 1], [2]], outputSplitSizes: Int32Array.of(1, 1, 1, 1), srcIndex: Int32Array.of(2, 1, 1, 2) },
  ];
  const outputs = [
    [13, 5, 9],
    [0, 1, 10, 11, 2, 12, 13], // the reference's stated result for rank 1
    [2, 14, 15, 3, 6, 7],
    [8, 4, 5, 9],
  ];
  const r = group.rank;
  const input = Float32Array.from({ length: 4 }, (_, k) => 4 * r + k);
  const out = await groupCast(group, input, args[r], 1).wait();
  close(`03 §1.1 cast example, rank ${r}`, out, outputs[r], 0);
  // Reduced back, each row collects one copy per destination: value × |dst of its split|.
  const sums = [
    [0, 1, 4, 3],
    [4, 10, 6, 7],
    [8, 18, 10, 11],
    [12, 26, 14, 15],
  ];
  const acc = new Float32Array(4);
  await groupReduce(group, out, acc, mirror(args[r]), 'sum', { rowWidth: 1 }).wait();
  close(`03 §1.1 cast example reduced back, rank ${r}`, acc, sums[r], 0);
}

/** 03 §1.3: normal_group_avg_reduce and normal_group_lse_reduce, W=2. */
async function reduceExamples(group: ProcessGroup, close: Close): Promise<void> {
  const r = group.rank;
  // avg: old [1, 2], contributions [3, 4] (rank 0 itself) and [5, 6] (rank 1) -> [3, 4].
  const avgArgs: GroupReduceArgs[] = [
    { inputSplitSizes: Int32Array.of(1), dstIndex: Int32Array.of(0), outputSplitSizes: Int32Array.of(1), srcIndices: [[0, 1]] },
    { inputSplitSizes: Int32Array.of(1), dstIndex: Int32Array.of(0), outputSplitSizes: Int32Array.of(), srcIndices: [] },
  ];
  const avgOut = r === 0 ? Float32Array.of(1, 2) : new Float32Array(0);
  await groupReduce(group, r === 0 ? Float32Array.of(3, 4) : Float32Array.of(5, 6), avgOut, avgArgs[r], 'avg', { rowWidth: 2 }).wait();
  close(`03 §1.3 avg example, rank ${r}`, avgOut, r === 0 ? [3, 4] : [], 0);

  // lse: rank 0's output split 0 (2 rows) from ranks {0, 1}, split 1 (1 row) from rank 1 alone;
  // old out 1 with lse -inf everywhere; contributions (3, lse -1) from rank 0, (5, lse 0.5) and
  // (19, lse 2.75) from rank 1. 2 heads × 3 dims per row.
  const heads = 2;
  const dim = 3;
  const lseArgs: GroupReduceArgs[] = [
    { inputSplitSizes: Int32Array.of(2), dstIndex: Int32Array.of(0), outputSplitSizes: Int32Array.of(2, 1), srcIndices: [[0, 1], [1]] },
    { inputSplitSizes: Int32Array.of(2, 1), dstIndex: Int32Array.of(0, 0), outputSplitSizes: Int32Array.of(), srcIndices: [] },
  ];
  const rowsIn = r === 0 ? [[3, -1], [3, -1]] : [[5, 0.5], [5, 0.5], [19, 2.75]];
  const input = Float32Array.from(rowsIn.flatMap(([v]) => new Array<number>(heads * dim).fill(v)));
  const inLse = Float32Array.from(rowsIn.flatMap(([, l]) => new Array<number>(heads).fill(l)));
  const rowsOut = r === 0 ? 3 : 0;
  const out = new Float32Array(rowsOut * heads * dim).fill(1);
  const outLse = new Float32Array(rowsOut * heads).fill(-Infinity);
  await groupReduce(group, input, out, lseArgs[r], 'lse', { rowWidth: heads * dim, heads, inputLse: inLse, outputLse: outLse }).wait();
  if (r === 0) {
    const L = Math.log(Math.exp(-1) + Math.exp(0.5));
    const o = Math.exp(-1 - L) * 3 + Math.exp(0.5 - L) * 5;
    // The reference's rounded figures, then the exact formula.
    close('03 §1.3 lse example, stated figures (lse)', outLse, [0.7014, 0.7014, 0.7014, 0.7014, 2.75, 2.75], 1e-4);
    close('03 §1.3 lse example, stated figures (out)', out, [...new Array<number>(12).fill(4.6351), ...new Array<number>(6).fill(19)], 1e-4);
    close('03 §1.3 lse example, formula (lse)', outLse, [L, L, L, L, 2.75, 2.75], 1e-6);
    close('03 §1.3 lse example, formula (out)', out, [...new Array<number>(12).fill(o), ...new Array<number>(6).fill(19)], 1e-6);
  }
}
