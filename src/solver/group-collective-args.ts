/**
 * Planning the GroupCast arguments of a stage: what each rank passes to the group collective that
 * moves the stage's remote k/v (and, mirrored, sends partial dk/dv back). Built for all ranks at
 * once from every rank's stage buffer and the chunk owners, following the ordering contract of
 * comm/group-collective-args.ts.
 */
import type { GroupCastArgs } from '../comm/group-collective-args.js';
import { InvalidArgumentError } from '../errors.js';
import type { DispatchMeta } from './plan.js';

/** First index in [lo, hi) of the ascending `a` whose value is >= x (hi when none is). */
function lowerBound(a: Int32Array, lo: number, hi: number, x: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Sorts `values` (integers in [0, marks.length)) and drops repeats, in place; returns how many
 * distinct values lead the array. Many values over a short range (a dense mask: every receiver
 * cuts the sender's few chunks) are marked and read back in order; few are sorted.
 */
function sortDistinct(values: Int32Array, marks: Uint8Array): number {
  const n = values.length;
  if (8 * n < marks.length) {
    values.sort();
    let m = 0;
    for (let i = 0; i < n; i++) if (i === 0 || values[i] !== values[m - 1]) values[m++] = values[i];
    return m;
  }
  let lo = marks.length;
  let hi = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    marks[v] = 1;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  let m = 0;
  for (let v = lo; v <= hi; v++) {
    if (marks[v] === 1) {
      values[m++] = v;
      marks[v] = 0;
    }
  }
  return m;
}

/**
 * GroupCast arguments of every rank for one stage. Each sender's local buffer is cut at every
 * endpoint of the pieces its receivers take from it (atomic intervals, each with its sorted set of
 * receivers); stretches nobody takes become splits with no destination, fused between sent
 * splits. Adjacent splits with the same receivers are not fused, as in the reference, so the
 * receivers' output splits follow the sender's cut points exactly.
 *
 * Everything is built in receiver order: a receiver's pieces come in ascending global order (its
 * stage buffer is sorted), so its output splits need no sort, and receivers are added to the
 * intervals in ascending rank order, so every destination list comes out sorted. Counts come
 * first and every list is allocated at its final size: at 10M tokens and cp 1024 a dense mask has
 * millions of (piece, interval) pairs per stage, and growing arrays one push at a time left the
 * planner mostly collecting garbage.
 */
export function buildStageGroupCast(dispatch: DispatchMeta, stageBuffersPerRank: readonly Int32Array[]): GroupCastArgs[] {
  const P = dispatch.cpSize;
  const cs = dispatch.chunkSize;
  const owner = new Int32Array(dispatch.numChunks);
  const localChunk = new Int32Array(dispatch.numChunks);
  dispatch.partitions.forEach((part, r) => part.forEach((c, i) => {
    owner[c] = r;
    localChunk[c] = i;
  }));

  // Pieces, receiver by receiver: the receiver's buffer cut where the chunk owner changes, each
  // piece as [sender, start in the sender's local buffer, length]. Consecutive chunks of one
  // owner are consecutive in its local buffer (partitions are ascending), so a piece is one
  // local range. There are at most as many pieces as (range, chunk) overlaps.
  let capacity = 0;
  for (const buf of stageBuffersPerRank) for (let i = 0; i < buf.length; i += 2) capacity += Math.floor((buf[i + 1] - 1) / cs) - Math.floor(buf[i] / cs) + 1;
  const pSender = new Int32Array(capacity);
  const pLocal = new Int32Array(capacity);
  const pLength = new Int32Array(capacity);
  const piecesOf = new Int32Array(P + 1);
  const pointCount = new Int32Array(P + 1);
  let nPieces = 0;
  for (let r = 0; r < P; r++) {
    const buf = stageBuffersPerRank[r];
    for (let i = 0; i < buf.length; i += 2) {
      let a = buf[i];
      const e = buf[i + 1];
      let c = Math.floor(a / cs);
      const last = Math.floor((e - 1) / cs);
      while (c <= last) {
        const t = owner[c];
        let next = c + 1;
        while (next <= last && owner[next] === t) next++;
        const b = Math.min(e, next * cs);
        if (t === r) throw new InvalidArgumentError('stageBuffers', 'a rank never receives its own tokens', `rank ${r}, tokens [${a}, ${b})`);
        pSender[nPieces] = t;
        pLocal[nPieces] = localChunk[c] * cs + (a - c * cs);
        pLength[nPieces++] = b - a;
        pointCount[t + 1] += 2;
        a = b;
        c = next;
      }
    }
    piecesOf[r + 1] = nPieces;
  }

  // Atomic intervals of each sender: between consecutive distinct endpoints of its pieces, in
  // local coordinates. Sender t's distinct points are cuts[cutsOf[t], cutsOf[t + 1]); interval i
  // (a global id) spans [cuts[i], cuts[i + 1]).
  for (let t = 0; t < P; t++) pointCount[t + 1] += pointCount[t];
  const pointsOf = pointCount;
  const points = new Int32Array(pointsOf[P]);
  const fill = pointsOf.slice(0, P);
  for (let p = 0; p < nPieces; p++) {
    const t = pSender[p];
    points[fill[t]++] = pLocal[p];
    points[fill[t]++] = pLocal[p] + pLength[p];
  }
  const marks = new Uint8Array(dispatch.shardSeqlen + 1);
  const cutsOf = new Int32Array(P + 1);
  for (let t = 0; t < P; t++) cutsOf[t + 1] = cutsOf[t] + sortDistinct(points.subarray(pointsOf[t], pointsOf[t + 1]), marks);
  const cuts = new Int32Array(cutsOf[P]);
  for (let t = 0; t < P; t++) cuts.set(points.subarray(pointsOf[t], pointsOf[t] + cutsOf[t + 1] - cutsOf[t]), cutsOf[t]);

  // Each piece covers intervals [first, end); count receivers per interval and output splits per receiver.
  const firstInterval = new Int32Array(nPieces);
  const endInterval = new Int32Array(nPieces);
  const receiverCount = new Int32Array(cuts.length);
  const outputCount = new Int32Array(P);
  for (let r = 0; r < P; r++) {
    for (let p = piecesOf[r]; p < piecesOf[r + 1]; p++) {
      const t = pSender[p];
      const j0 = lowerBound(cuts, cutsOf[t], cutsOf[t + 1], pLocal[p]);
      const j1 = lowerBound(cuts, j0, cutsOf[t + 1], pLocal[p] + pLength[p]);
      firstInterval[p] = j0;
      endInterval[p] = j1;
      for (let j = j0; j < j1; j++) receiverCount[j]++;
      outputCount[r] += j1 - j0;
    }
  }

  const receivers: number[][] = new Array<number[]>(cuts.length);
  for (let j = 0; j < cuts.length; j++) if (receiverCount[j] > 0) receivers[j] = new Array<number>(receiverCount[j]);
  receiverCount.fill(0);
  const out: Array<{ outputSplitSizes: Int32Array; srcIndex: Int32Array }> = [];
  for (let r = 0; r < P; r++) {
    const outputSplitSizes = new Int32Array(outputCount[r]);
    const srcIndex = new Int32Array(outputCount[r]);
    let k = 0;
    for (let p = piecesOf[r]; p < piecesOf[r + 1]; p++) {
      const t = pSender[p];
      for (let j = firstInterval[p]; j < endInterval[p]; j++) {
        receivers[j][receiverCount[j]++] = r;
        outputSplitSizes[k] = cuts[j + 1] - cuts[j];
        srcIndex[k++] = t;
      }
    }
    out.push({ outputSplitSizes, srcIndex });
  }

  // Each sender's input splits: its intervals with receivers, in order, with the stretches between
  // them (and after the last) as splits sent nowhere.
  return out.map((o, t) => {
    const sizes: number[] = [];
    const dsts: number[][] = [];
    let cursor = 0; // next local position not yet covered by a split
    for (let j = cutsOf[t]; j + 1 < cutsOf[t + 1]; j++) {
      const list = receivers[j];
      if (list === undefined) continue;
      if (cuts[j] > cursor) {
        sizes.push(cuts[j] - cursor);
        dsts.push([]);
      }
      sizes.push(cuts[j + 1] - cuts[j]);
      dsts.push(list);
      cursor = cuts[j + 1];
    }
    if (cursor < dispatch.shardSeqlens[t]) {
      sizes.push(dispatch.shardSeqlens[t] - cursor);
      dsts.push([]);
    }
    return { inputSplitSizes: Int32Array.from(sizes), dstIndices: dsts, outputSplitSizes: o.outputSplitSizes, srcIndex: o.srcIndex };
  });
}
