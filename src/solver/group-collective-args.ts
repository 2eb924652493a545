/**
 * Planning the GroupCast arguments of a stage: what each rank passes to the group collective that
 * moves the stage's remote k/v (and, mirrored, sends partial dk/dv back). Built for all ranks at
 * once from every rank's stage buffer and the chunk owners, following the ordering contract of
 * comm/group-collective-args.ts.
 */
import type { GroupCastArgs } from '../comm/group-collective-args.js';
import { InvalidArgumentError } from '../errors.js';
import type { DispatchMeta } from './plan.js';

/**
 * GroupCast arguments of every rank for one stage. Each sender's local buffer is cut at every
 * endpoint of the pieces its receivers take from it (atomic intervals, each with its sorted set of
 * receivers); stretches nobody takes become splits with no destination, fused between sent
 * splits. Adjacent splits with the same receivers are not fused, as in the reference, so the
 * receivers' output splits follow the sender's cut points exactly.
 */
/**
 * Indices of `keys` (integers in [0, 2^32)) in ascending order, ties by index. Packing key and
 * index into one float lets the native numeric sort do the work; a comparator sort over index
 * arrays dominated the planner for dense masks at large cp.
 */
function orderByKey(keys: Float64Array): Int32Array {
  const n = keys.length;
  const slots = 2 ** 20;
  if (n > slots) return Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => keys[a] - keys[b] || a - b);
  const packed = new Float64Array(n);
  for (let i = 0; i < n; i++) packed[i] = keys[i] * slots + i;
  packed.sort();
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = packed[i] % slots;
  return order;
}

export function buildStageGroupCast(dispatch: DispatchMeta, stageBuffersPerRank: readonly Int32Array[]): GroupCastArgs[] {
  const P = dispatch.cpSize;
  const cs = dispatch.chunkSize;
  const owner = new Int32Array(dispatch.numChunks);
  const localChunk = new Int32Array(dispatch.numChunks);
  dispatch.partitions.forEach((part, r) => part.forEach((c, i) => {
    owner[c] = r;
    localChunk[c] = i;
  }));

  // Pieces each sender must provide: [global start, global end, receiver], from the receivers'
  // buffers cut where the chunk owner changes.
  const wanted: number[][] = Array.from({ length: P }, () => []);
  for (let r = 0; r < P; r++) {
    const buf = stageBuffersPerRank[r];
    for (let i = 0; i < buf.length; i += 2) {
      let a = buf[i];
      const e = buf[i + 1];
      while (a < e) {
        const t = owner[Math.floor(a / cs)];
        let b = Math.min(e, (Math.floor(a / cs) + 1) * cs);
        while (b < e && owner[Math.floor(b / cs)] === t) b = Math.min(e, b + cs);
        if (t === r) throw new InvalidArgumentError('stageBuffers', 'a rank never receives its own tokens', `rank ${r}, tokens [${a}, ${b})`);
        wanted[t].push(a, b, r);
        a = b;
      }
    }
  }

  const recv: number[][] = Array.from({ length: P }, () => []); // [global start, size, src] per receiver
  const inputSizes: number[][] = Array.from({ length: P }, () => []);
  const inputDst: number[][][] = Array.from({ length: P }, () => []);
  for (let t = 0; t < P; t++) {
    const w = wanted[t];
    const n = w.length / 3;
    // Atomic intervals lie between consecutive distinct endpoints of the pieces. Every piece adds
    // its receiver to the intervals it covers; receivers come in ascending order (the loop above
    // runs over them in order) and a receiver's pieces are disjoint, so each interval's list ends
    // up sorted without a sweep over an active set, which cost O(pieces x cp) for dense masks.
    const points = new Float64Array(2 * n);
    for (let i = 0; i < n; i++) {
      points[2 * i] = w[3 * i];
      points[2 * i + 1] = w[3 * i + 1];
    }
    points.sort();
    let m = 0;
    for (let i = 0; i < points.length; i++) if (i === 0 || points[i] !== points[m - 1]) points[m++] = points[i];
    const receivers: (number[] | undefined)[] = new Array(Math.max(0, m - 1));
    for (let i = 0; i < n; i++) {
      const a = w[3 * i];
      const b = w[3 * i + 1];
      let lo = 0;
      let hi = m;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (points[mid] < a) lo = mid + 1;
        else hi = mid;
      }
      for (let j = lo; points[j] < b; j++) (receivers[j] ??= []).push(w[3 * i + 2]);
    }
    let cursor = 0; // next local position not yet covered by a split
    for (let j = 0; j + 1 < m; j++) {
      const dsts = receivers[j];
      if (dsts === undefined) continue;
      const gs = points[j];
      const ge = points[j + 1];
      const c = Math.floor(gs / cs);
      const ls = localChunk[c] * cs + (gs - c * cs);
      if (ls > cursor) {
        inputSizes[t].push(ls - cursor);
        inputDst[t].push([]);
      }
      inputSizes[t].push(ge - gs);
      inputDst[t].push(dsts);
      for (const d of dsts) recv[d].push(gs, ge - gs, t);
      cursor = ls + (ge - gs);
    }
    if (cursor < dispatch.shardSeqlen) {
      inputSizes[t].push(dispatch.shardSeqlen - cursor);
      inputDst[t].push([]);
    }
  }

  const out: GroupCastArgs[] = [];
  for (let r = 0; r < P; r++) {
    const list = recv[r];
    const m = list.length / 3;
    const starts = new Float64Array(m);
    for (let i = 0; i < m; i++) starts[i] = list[3 * i];
    const order = orderByKey(starts);
    const outputSplitSizes = new Int32Array(m);
    const srcIndex = new Int32Array(m);
    order.forEach((i, j) => {
      outputSplitSizes[j] = list[3 * i + 1];
      srcIndex[j] = list[3 * i + 2];
    });
    out.push({ inputSplitSizes: Int32Array.from(inputSizes[r]), dstIndices: inputDst[r], outputSplitSizes, srcIndex });
  }
  return out;
}
