/**
 * A checker that proves a plan right, independently of how it was built:
 *   1. the dispatch is a partition of the chunks (equal counts unless the shard is uneven), the
 *      shard lengths add up, and its permutation is consistent;
 *   2. every slice lies inside its buffers, and stage buffers are disjoint from each other and
 *      from the host, with the remote ranges as their union;
 *   3. every GroupCast, run by the ordering contract alone, fills each stage buffer with exactly
 *      the global k ranges the plan says it holds, and each GroupReduce is its mirror;
 *   4. the host and remote slices of all ranks, mapped back to global coordinates, cover exactly
 *      the cells of the mask, each as many times as the mask does (once, for a disjoint mask);
 *   5. zero redundancy: every received token is read by some slice of its stage.
 *   3b. with a mesh, every stage's hierarchical GroupCast, its three collectives run by the
 *      ordering contract over their sub-groups and gathered into place, delivers exactly the
 *      flat GroupCast's rows, and no token crosses into a node more than once.
 *   6. at up to DENSE_ORACLE_MAX_TOKENS tokens, 4 again, cell by cell (dense-oracle.ts).
 * Coverage (4) is compared per run of rows with a fixed set of pieces, where a typed piece's row
 * interval has ends that are constant or move with the row; only runs that fail that symbolic
 * test are compared row by row (to report the first bad row), so 1M-token plans check quickly.
 *
 * What it shares with the builder: the band geometry (mask/geometry.ts: bandLo/bandHi, emitBand)
 * that turns slices into typed pieces for 4 and 5, the flat range algebra, and the GroupCast
 * matching rule (matchGroupCast). Step 6 shares nothing but the per-cell rule.
 */
import { sliceCount, type SliceList } from '../mask/slice-list.js';
import { bandHi, bandLo, CAUSAL, emitBand, INVCAUSAL, SliceBuffer } from '../mask/geometry.js';
import { localOffsets, mergeRanges, rangesLength, RangeBuffer } from '../mask/range-list.js';
import { matchGroupCast, type GroupCastArgs } from '../comm/group-collective-args.js';
import { chunkEnd } from './chunking.js';
import { DENSE_ORACLE_MAX_TOKENS, denseCounts, densePlanCounts } from './dense-oracle.js';
import type { HierGroupCastArgs } from './hier-group-collective.js';
import type { DistAttnPlan } from './plan.js';

export interface PlanCheckResult {
  readonly ok: boolean;
  /** Human-readable problems (at most maxErrors). */
  readonly errors: string[];
  /** Cells of the mask, counted with multiplicity. */
  readonly maskCells: number;
  /** Cells the plan computes, over all ranks and stages. */
  readonly planCells: number;
}

export function checkPlan(plan: DistAttnPlan, options: { maxErrors?: number } = {}): PlanCheckResult {
  const maxErrors = options.maxErrors ?? 20;
  const errors: string[] = [];
  const fail = (msg: string): void => {
    if (errors.length < maxErrors) errors.push(msg);
  };
  const d = plan.dispatch;
  const P = plan.cpSize;
  const cs = d.chunkSize;

  // 1. Dispatch.
  if (d.cpSize !== P || d.partitions.length !== P || plan.perRank.length !== P || d.shardSeqlens.length !== P) {
    fail(`cp size disagrees: plan ${P}, dispatch ${d.cpSize}, ${d.partitions.length} partitions, ${plan.perRank.length} rank plans, ${d.shardSeqlens.length} shard lengths`);
  }
  if (d.paddedSeqlen !== d.unpaddedSeqlen + d.padSize) fail('padding and lengths are inconsistent');
  if (d.unevenShard) {
    if (d.padSize !== 0 || d.numChunks !== Math.ceil(d.paddedSeqlen / cs)) fail('an uneven shard has no padding and ceil(N / chunkSize) chunks');
  } else {
    if (d.numChunks * cs !== d.paddedSeqlen || d.shardSeqlen * P !== d.paddedSeqlen) fail('chunk count, chunk size, padding and shard length are inconsistent');
    if (P > 1 && d.paddedSeqlen % (cs * P) !== 0) fail(`padded length ${d.paddedSeqlen} is not a multiple of chunkSize × cp = ${cs * P}`);
  }
  // Sizes that disagree end the check here: the loops below run over numChunks (a plan file
  // saying 2^31 - 1 chunks took 130 s to be found wrong).
  if (errors.length > 0) return { ok: false, errors, maskCells: 0, planCells: 0 };
  const owner = new Int32Array(d.numChunks).fill(-1);
  const localChunk = new Int32Array(d.numChunks);
  d.partitions.forEach((part, r) => {
    let rows = 0;
    for (const c of part) rows += chunkEnd(d, c) - c * cs;
    if (rows !== d.shardSeqlens[r]) fail(`rank ${r} holds ${rows} rows in ${part.length} chunks, its shard length says ${d.shardSeqlens[r]}`);
    if (part.length === 0) fail(`rank ${r} holds no chunk`);
    if (!d.unevenShard && part.length * cs !== d.shardSeqlen) fail(`rank ${r} holds ${part.length} chunks, expected ${d.shardSeqlen / cs}`);
    part.forEach((c, i) => {
      if (c < 0 || c >= d.numChunks) return fail(`rank ${r} holds chunk ${c}, outside [0, ${d.numChunks})`);
      if (owner[c] >= 0) fail(`chunk ${c} is on ranks ${owner[c]} and ${r}`);
      if (i > 0 && c <= part[i - 1]) fail(`rank ${r}'s chunks are not ascending`);
      owner[c] = r;
      localChunk[c] = i;
    });
  });
  for (let c = 0; c < d.numChunks; c++) {
    if (owner[c] < 0) fail(`chunk ${c} is on no rank`);
    if (d.permIdxs[d.unpermIdxs[c]] !== c) fail(`unpermIdxs is not the inverse of permIdxs at chunk ${c}`);
  }
  plan.perRank.forEach((rp, r) => {
    if (rp.rank !== r) fail(`perRank[${r}] says it is rank ${rp.rank}`);
  });
  if (errors.length > 0) return { ok: false, errors, maskCells: 0, planCells: 0 };

  // Global ranges of each rank's shard, from the partitions (not from the plan's own copy).
  const hostOf = d.partitions.map((part) => {
    const b = new RangeBuffer(part.length);
    for (const c of part) b.pushMerged(c * cs, chunkEnd(d, c));
    return b.toArray();
  });

  // 2. Buffers.
  for (const rp of plan.perRank) {
    const r = rp.rank;
    if (!sameRanges(rp.hostGlobalRanges, hostOf[r])) fail(`rank ${r}: hostGlobalRanges disagree with its partition`);
    const rows = d.shardSeqlens[r];
    checkSliceBox(rp.hostSlices, rows, rows, `rank ${r} host`, fail);
    if (rp.stages.length !== plan.overlapDegree) fail(`rank ${r} has ${rp.stages.length} stages, the plan's degree is ${plan.overlapDegree}`);
    const all: number[] = [];
    rp.stages.forEach((st, s) => {
      const buf = st.stageBufferGlobalKRanges;
      if (!isMerged(buf)) fail(`rank ${r} stage ${s}: stage buffer ranges are not sorted and merged`);
      if (rangesLength(buf) !== st.stageBufferLength) fail(`rank ${r} stage ${s}: stageBufferLength ${st.stageBufferLength} != ${rangesLength(buf)}`);
      checkSliceBox(st.remoteSlices, rows, st.stageBufferLength, `rank ${r} stage ${s} remote`, fail);
      all.push(...buf);
    });
    const union = mergeRanges(Int32Array.from(all));
    if (rangesLength(union) !== rangesLength(Int32Array.from(all))) fail(`rank ${r}: stage buffers overlap`);
    if (!sameRanges(union, rp.remoteGlobalKRanges)) fail(`rank ${r}: remoteGlobalKRanges is not the union of its stage buffers`);
    if (overlapLength(union, hostOf[r]) > 0) fail(`rank ${r}: receives tokens it already holds`);
  }

  // 3. Communication, stage by stage.
  for (let s = 0; s < plan.overlapDegree; s++) {
    const args = plan.perRank.map((rp) => rp.stages[s]?.groupCast);
    if (args.some((a) => a === undefined)) break;
    let ok = true;
    plan.perRank.forEach((rp, r) => {
      const gc = rp.stages[s].groupCast;
      const gr = rp.stages[s].groupReduce;
      if (sum(gc.inputSplitSizes) !== d.shardSeqlens[r]) {
        fail(`stage ${s} rank ${r}: GroupCast input splits add up to ${sum(gc.inputSplitSizes)}, not the shard length ${d.shardSeqlens[r]}`);
        ok = false;
      }
      if (sum(gc.outputSplitSizes) !== rp.stages[s].stageBufferLength) {
        fail(`stage ${s} rank ${r}: GroupCast output splits add up to ${sum(gc.outputSplitSizes)}, not the stage buffer length ${rp.stages[s].stageBufferLength}`);
        ok = false;
      }
      if (gc.dstIndices.length !== gc.inputSplitSizes.length || gc.srcIndex.length !== gc.outputSplitSizes.length) {
        fail(`stage ${s} rank ${r}: GroupCast list lengths disagree`);
        ok = false;
      }
      gc.dstIndices.forEach((dsts, i) => {
        for (let k = 0; k < dsts.length; k++) {
          if (k > 0 && dsts[k] <= dsts[k - 1]) fail(`stage ${s} rank ${r}: dstIndices[${i}] is not sorted and unique`);
          if (dsts[k] === r) fail(`stage ${s} rank ${r}: dstIndices[${i}] sends to itself`);
        }
      });
      if (!sameList(gr.inputSplitSizes, gc.outputSplitSizes) || !sameList(gr.outputSplitSizes, gc.inputSplitSizes) || !sameList(gr.dstIndex, gc.srcIndex) || !sameNested(gr.srcIndices, gc.dstIndices)) {
        fail(`stage ${s} rank ${r}: GroupReduce is not the mirror of GroupCast`);
      }
    });
    if (!ok) continue;
    let match: Array<Array<[number, number]>>;
    try {
      match = matchGroupCast(args as NonNullable<(typeof args)[number]>[]);
    } catch (e) {
      fail(`stage ${s}: GroupCast arguments break the ordering contract: ${(e as Error).message}`);
      continue;
    }
    const inOff = args.map((a) => prefixSums((a as NonNullable<typeof a>).inputSplitSizes));
    plan.perRank.forEach((rp, r) => {
      // What the collective delivers, in output order, as global ranges.
      const got = new RangeBuffer(8);
      for (const [src, i] of match[r]) {
        const h = hostOf[src];
        mapLocalToGlobal(h, localOffsets(h), inOff[src][i], inOff[src][i + 1], got);
      }
      if (!samePacked(got.toArray(), rp.stages[s].stageBufferGlobalKRanges)) {
        fail(`stage ${s} rank ${r}: GroupCast delivers ${fmt(got.toArray())}, the stage buffer holds ${fmt(rp.stages[s].stageBufferGlobalKRanges)}`);
      }
    });
  }
  if (errors.length === 0 && plan.mesh !== null) checkHierStages(plan, hostOf, fail);
  if (errors.length > 0) return { ok: false, errors, maskCells: 0, planCells: 0 };

  // 4. Coverage. Mask pieces count +1, plan pieces −1; every row must sum to nothing.
  const pieces = new SliceBuffer(1024);
  const signs: number[] = [];
  const m = plan.globalMask;
  let maskCells = 0;
  for (let b = 0; b < sliceCount(m); b++) {
    const t = m.maskTypes[b];
    const qs = m.qRanges[2 * b];
    const qe = m.qRanges[2 * b + 1];
    const ks = m.kRanges[2 * b];
    const ke = m.kRanges[2 * b + 1];
    const before = pieces.length;
    maskCells += emitBand(pieces, qs, qe, ks, ke, bandLo(t, qs, ks), bandHi(t, qe, ke), 0, 0, 0);
    for (let i = before; i < pieces.length; i++) signs.push(1);
  }
  let planCells = 0;
  for (const rp of plan.perRank) {
    const host = hostOf[rp.rank];
    planCells += mapSlices(rp.hostSlices, d.partitions[rp.rank], cs, host, pieces, signs);
    rp.stages.forEach((st, s) => {
      planCells += mapSlices(st.remoteSlices, d.partitions[rp.rank], cs, st.stageBufferGlobalKRanges, pieces, signs);
      // 5. Every received token is read by some remote slice of this stage.
      const tight = new SliceBuffer(8);
      const sl = st.remoteSlices;
      for (let b = 0; b < sliceCount(sl); b++) {
        const t = sl.maskTypes[b];
        emitBand(tight, sl.qRanges[2 * b], sl.qRanges[2 * b + 1], sl.kRanges[2 * b], sl.kRanges[2 * b + 1], bandLo(t, sl.qRanges[2 * b], sl.kRanges[2 * b]), bandHi(t, sl.qRanges[2 * b + 1], sl.kRanges[2 * b + 1]), 0, 0, 0);
      }
      const ks: number[] = [];
      for (let i = 0; i < tight.length; i++) ks.push(tight.k0[i], tight.k1[i]);
      const read = mergeRanges(Int32Array.from(ks));
      if (st.stageBufferLength > 0 && !(read.length === 2 && read[0] === 0 && read[1] === st.stageBufferLength)) {
        fail(`rank ${rp.rank} stage ${s}: received tokens that no slice reads (read ${fmt(read)} of [0, ${st.stageBufferLength}))`);
      }
    });
  }
  if (maskCells !== planCells) fail(`the plan computes ${planCells} cells, the mask has ${maskCells}`);
  compareCoverage(pieces, signs, fail);

  // 6. At small sizes, the same coverage again from the per-cell rule alone.
  const n = plan.totalSeqlenQ;
  if (errors.length === 0 && n <= DENSE_ORACLE_MAX_TOKENS) {
    const want = denseCounts(plan.globalMask, n);
    const got = densePlanCounts(plan, n);
    if (got.outside > 0) fail(`the plan computes ${got.outside} cells outside the ${n} x ${n} sequence (dense oracle)`);
    const bad = want.findIndex((c, i) => c !== got.counts[i]);
    if (bad >= 0) fail(`dense oracle: cell (q ${Math.floor(bad / n)}, k ${bad % n}) is covered ${got.counts[bad]} times by the plan, ${want[bad]} by the mask`);
  }
  return { ok: errors.length === 0, errors, maskCells, planCells };
}

/**
 * 3b: runs every stage's hierarchical GroupCast on the global ranges each buffer holds (sender
 * buffers: the shards; relay buffers: what the inter step delivered) and compares the gathered
 * result with the stage buffer.
 */
function checkHierStages(plan: DistAttnPlan, hostOf: readonly Int32Array[], fail: (msg: string) => void): void {
  const mesh = plan.mesh as NonNullable<DistAttnPlan['mesh']>;
  const P = plan.cpSize;
  const L = mesh.ranksPerNode;
  const M = mesh.nodes;
  if (M * L !== P) return fail(`mesh ${M} × ${L} does not tile cp ${P}`);
  const membersOfNode = (n: number): number[] => Array.from({ length: L }, (_, l) => n * L + l);
  const membersOfLocal = (l: number): number[] => Array.from({ length: M }, (_, n) => n * L + l);
  /** Runs one sub-collective over `members`; returns what each member receives, as packed global ranges. */
  const deliver = (members: number[], args: GroupCastArgs[], contents: readonly Int32Array[], where: string): Int32Array[] | null => {
    for (let m = 0; m < members.length; m++) {
      if (sum(args[m].inputSplitSizes) !== rangesLength(contents[members[m]])) {
        fail(`${where}, rank ${members[m]}: input splits add up to ${sum(args[m].inputSplitSizes)}, its buffer holds ${rangesLength(contents[members[m]])} rows`);
        return null;
      }
    }
    let match: Array<Array<[number, number]>>;
    try {
      match = matchGroupCast(args);
    } catch (e) {
      fail(`${where}: the arguments break the ordering contract: ${(e as Error).message}`);
      return null;
    }
    const inOff = args.map((a) => prefixSums(a.inputSplitSizes));
    return args.map((_, m) => {
      const got = new RangeBuffer(8);
      for (const [src, i] of match[m]) {
        const c = contents[members[src]];
        mapLocalToGlobal(c, localOffsets(c), inOff[src][i], inOff[src][i + 1], got);
      }
      return got.toArray();
    });
  };
  for (let s = 0; s < plan.overlapDegree; s++) {
    const hs = plan.perRank.map((rp) => rp.stages[s].hierGroupCast);
    const missing = hs.findIndex((h) => h === undefined);
    if (missing >= 0) {
      fail(`stage ${s} rank ${missing}: no hierarchical GroupCast, although the plan has a mesh`);
      continue;
    }
    const h = hs as HierGroupCastArgs[];
    const pre: Int32Array[] = new Array<Int32Array>(P);
    const relay: Int32Array[] = new Array<Int32Array>(P);
    const post: Int32Array[] = new Array<Int32Array>(P);
    let ok = true;
    for (let r = 0; r < P; r++) {
      h[r].inter.dstIndices.forEach((nodes, i) => {
        if (nodes.includes(Math.floor(r / L))) {
          fail(`stage ${s} rank ${r}: inter split ${i} is sent to the rank's own node`);
          ok = false;
        }
      });
    }
    for (let n = 0; n < M && ok; n++) {
      const members = membersOfNode(n);
      const got = deliver(members, members.map((r) => h[r].preIntra), hostOf, `stage ${s} node ${n} pre-intra`);
      if (got === null) ok = false;
      else members.forEach((r, m) => (pre[r] = got[m]));
    }
    for (let l = 0; l < L && ok; l++) {
      const members = membersOfLocal(l);
      const got = deliver(members, members.map((r) => h[r].inter), hostOf, `stage ${s} local index ${l} inter`);
      if (got === null) ok = false;
      else members.forEach((r, m) => (relay[r] = got[m]));
    }
    for (let n = 0; n < M && ok; n++) {
      const members = membersOfNode(n);
      const got = deliver(members, members.map((r) => h[r].postIntra), relay, `stage ${s} node ${n} post-intra`);
      if (got === null) ok = false;
      else members.forEach((r, m) => (post[r] = got[m]));
    }
    if (!ok) continue;
    for (let n = 0; n < M; n++) {
      const arrived = Int32Array.from(membersOfNode(n).flatMap((r) => Array.from(relay[r])));
      if (rangesLength(mergeRanges(arrived)) !== rangesLength(arrived)) fail(`stage ${s}: some tokens cross into node ${n} more than once`);
    }
    plan.perRank.forEach((rp, r) => {
      const both = Int32Array.from([...pre[r], ...post[r]]);
      const place = h[r].placeRanges;
      const total = rangesLength(both);
      const got = new RangeBuffer(8);
      const offsets = localOffsets(both);
      for (let i = 0; i < place.length; i += 2) {
        if (place[i] < 0 || place[i + 1] > total || place[i + 1] < place[i]) {
          fail(`stage ${s} rank ${r}: placeRanges [${place[i]}, ${place[i + 1]}) fall outside the ${total} received rows`);
          return;
        }
        mapLocalToGlobal(both, offsets, place[i], place[i + 1], got);
      }
      if (!samePacked(got.toArray(), rp.stages[s].stageBufferGlobalKRanges)) {
        fail(`stage ${s} rank ${r}: the hierarchical GroupCast delivers ${fmt(got.toArray())}, the stage buffer holds ${fmt(rp.stages[s].stageBufferGlobalKRanges)}`);
      }
    });
  }
}

/** Maps local slices to global typed pieces (sign −1); returns their cells. */
function mapSlices(sl: SliceList, part: Int32Array, cs: number, kGlobal: Int32Array, out: SliceBuffer, signs: number[]): number {
  const kLocal = localOffsets(kGlobal);
  const nK = kGlobal.length / 2;
  let cells = 0;
  for (let b = 0; b < sliceCount(sl); b++) {
    const t = sl.maskTypes[b];
    const q0 = sl.qRanges[2 * b];
    const q1 = sl.qRanges[2 * b + 1];
    const k0 = sl.kRanges[2 * b];
    const k1 = sl.kRanges[2 * b + 1];
    const dLo = bandLo(t, q0, k0);
    const dHi = bandHi(t, q1, k1);
    for (let a = q0; a < q1; ) {
      const li = Math.floor(a / cs);
      const e = Math.min(q1, (li + 1) * cs);
      const qShift = part[li] * cs - li * cs;
      for (let p = 0; p < nK; p++) {
        const ls = kLocal[p];
        const le = kLocal[p + 1];
        if (le <= k0 || ls >= k1) continue;
        const before = out.length;
        cells += emitBand(out, a, e, Math.max(k0, ls), Math.min(k1, le), dLo, dHi, qShift, kGlobal[2 * p] - ls, 0);
        for (let i = before; i < out.length; i++) signs.push(-1);
      }
      a = e;
    }
  }
  return cells;
}

/**
 * Compares the signed coverage of the pieces row run by row run. In a run where the same pieces
 * are active, each row interval end is a line (constant or slope 1 in the row); if the signed
 * weights cancel per line, every row of the run matches. Otherwise the run is checked row by row.
 */
function compareCoverage(p: SliceBuffer, signs: readonly number[], fail: (msg: string) => void): void {
  const n = p.length;
  const byStart = Array.from({ length: n }, (_, i) => i).sort((a, b) => p.q0[a] - p.q0[b]);
  const cuts = new Set<number>();
  for (let i = 0; i < n; i++) {
    cuts.add(p.q0[i]);
    cuts.add(p.q1[i]);
  }
  const points = [...cuts].sort((a, b) => a - b);
  let active: number[] = [];
  let next = 0;
  let reported = 0;
  for (let s = 0; s + 1 < points.length && reported < 3; s++) {
    const lo = points[s];
    const hi = points[s + 1];
    active = active.filter((i) => p.q1[i] > lo);
    while (next < n && p.q0[byStart[next]] === lo) active.push(byStart[next++]);
    if (active.length === 0) continue;
    const lines = new Map<number, number>();
    const add = (slope: number, intercept: number, w: number): void => {
      const key = intercept * 2 + slope;
      const v = (lines.get(key) ?? 0) + w;
      if (v === 0) lines.delete(key);
      else lines.set(key, v);
    };
    for (const i of active) {
      const t = p.type[i];
      const sg = signs[i];
      // Row q's interval: start = k0 (or q + k0 − q0 on an INVCAUSAL edge), end = k1 (or q + k1 − q1 on a CAUSAL edge).
      if ((t & INVCAUSAL) !== 0) add(1, p.k0[i] - p.q0[i], sg);
      else add(0, p.k0[i], sg);
      if ((t & CAUSAL) !== 0) add(1, p.k1[i] - p.q1[i], -sg);
      else add(0, p.k1[i], -sg);
    }
    if (lines.size === 0) continue;
    for (let q = lo; q < hi; q++) {
      const ev = new Map<number, number>();
      for (const i of active) {
        const t = p.type[i];
        const start = (t & INVCAUSAL) !== 0 ? q + p.k0[i] - p.q0[i] : p.k0[i];
        const end = (t & CAUSAL) !== 0 ? q + p.k1[i] - p.q1[i] : p.k1[i];
        ev.set(start, (ev.get(start) ?? 0) + signs[i]);
        ev.set(end, (ev.get(end) ?? 0) - signs[i]);
      }
      const bad = [...ev].filter(([, v]) => v !== 0).map(([x]) => x).sort((a, b) => a - b);
      if (bad.length > 0) {
        const mask = active.filter((i) => signs[i] > 0).map((i) => describe(p, i, q));
        const planned = active.filter((i) => signs[i] < 0).map((i) => describe(p, i, q));
        fail(`row ${q}: the plan covers keys ${planned.join(' ') || 'none'}, the mask ${mask.join(' ') || 'none'}`);
        reported++;
        break;
      }
    }
  }
}

function describe(p: SliceBuffer, i: number, q: number): string {
  const t = p.type[i];
  const start = (t & INVCAUSAL) !== 0 ? q + p.k0[i] - p.q0[i] : p.k0[i];
  const end = (t & CAUSAL) !== 0 ? q + p.k1[i] - p.q1[i] : p.k1[i];
  return `[${start}, ${end})`;
}

function checkSliceBox(sl: SliceList, rows: number, cols: number, where: string, fail: (msg: string) => void): void {
  for (let b = 0; b < sliceCount(sl); b++) {
    const q0 = sl.qRanges[2 * b];
    const q1 = sl.qRanges[2 * b + 1];
    const k0 = sl.kRanges[2 * b];
    const k1 = sl.kRanges[2 * b + 1];
    if (q0 < 0 || q1 < q0 || q1 > rows || k0 < 0 || k1 < k0 || k1 > cols || sl.maskTypes[b] > 3) {
      fail(`${where} slice ${b}: ([${q0}, ${q1}), [${k0}, ${k1}), type ${sl.maskTypes[b]}) lies outside its ${rows} x ${cols} buffers`);
    }
  }
}

/**
 * Appends, in order, the global ranges of positions [a, b) of a buffer that packs the given
 * global ranges end to end (a shard, a stage buffer, a relay buffer).
 */
function mapLocalToGlobal(global: Int32Array, local: Float64Array, a: number, b: number, out: RangeBuffer): void {
  for (let p = 0; p < global.length / 2 && a < b; p++) {
    const ls = local[p];
    const le = local[p + 1];
    if (le <= a) continue;
    const s = Math.max(a, ls);
    const e = Math.min(b, le);
    if (e > s) out.pushJoined(global[2 * p] + (s - ls), global[2 * p] + (e - ls));
    a = e;
  }
}

function isMerged(r: Int32Array): boolean {
  for (let i = 0; i < r.length; i += 2) {
    if (r[i + 1] <= r[i]) return false;
    if (i > 0 && r[i] <= r[i - 1]) return false;
  }
  return true;
}

/** Same tokens in the same order, however the ranges are cut. */
function samePacked(a: Int32Array, b: Int32Array): boolean {
  return sameRanges(mergeOrdered(a), mergeOrdered(b));
}

function mergeOrdered(a: Int32Array): Int32Array {
  const out = new RangeBuffer(a.length / 2 + 1);
  for (let i = 0; i < a.length; i += 2) {
    if (a[i + 1] <= a[i]) continue;
    if (out.length > 0 && out.data[2 * out.length - 1] === a[i]) out.data[2 * out.length - 1] = a[i + 1];
    else out.push(a[i], a[i + 1]);
  }
  return out.toArray();
}

function overlapLength(a: Int32Array, b: Int32Array): number {
  let n = 0;
  for (let i = 0, j = 0; i < a.length && j < b.length; ) {
    n += Math.max(0, Math.min(a[i + 1], b[j + 1]) - Math.max(a[i], b[j]));
    if (a[i + 1] < b[j + 1]) i += 2;
    else j += 2;
  }
  return n;
}

function sameRanges(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  return sameList(a, b);
}

function sameList(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameNested(a: readonly (readonly number[])[], b: readonly (readonly number[])[]): boolean {
  return a.length === b.length && a.every((x, i) => sameList(x, b[i]));
}

function sum(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

function prefixSums(a: ArrayLike<number>): number[] {
  const out = [0];
  for (let i = 0; i < a.length; i++) out.push(out[i] + a[i]);
  return out;
}

function fmt(r: Int32Array): string {
  const parts: string[] = [];
  for (let i = 0; i < r.length && i < 16; i += 2) parts.push(`[${r[i]}, ${r[i + 1]})`);
  return parts.join(' ') + (r.length > 16 ? ' ...' : '');
}
