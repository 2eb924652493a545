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
    // Events: +receiver at start, -receiver at end, swept in position order. Each event is one
    // float key (position, then ends before starts, then event index) so a native numeric sort
    // replaces a comparator sort, which dominated for dense masks at large cp.
    const ev = new Float64Array(2 * n);
    for (let i = 0; i < n; i++) {
      ev[2 * i] = w[3 * i] * 2 + 1;
      ev[2 * i + 1] = w[3 * i + 1] * 2;
    }
    const order = orderByKey(ev);
    const posOf = (k: number): number => Math.floor(ev[order[k]] / 2);
    const active: number[] = [];
    let cursor = 0; // next local position not yet covered by a split
    let prevPos = -1;
    const emit = (gs: number, ge: number): void => {
      const c = Math.floor(gs / cs);
      const ls = localChunk[c] * cs + (gs - c * cs);
      if (ls > cursor) {
        inputSizes[t].push(ls - cursor);
        inputDst[t].push([]);
      }
      inputSizes[t].push(ge - gs);
      inputDst[t].push(active.slice());
      for (const d of active) recv[d].push(gs, ge - gs, t);
      cursor = ls + (ge - gs);
    };
    let k = 0;
    while (k < order.length) {
      const pos = posOf(k);
      if (active.length > 0 && pos > prevPos) emit(prevPos, pos);
      while (k < order.length && posOf(k) === pos) {
        const idx = order[k];
        const rcv = w[3 * (idx >> 1) + 2];
        if ((idx & 1) === 0) {
          let at = 0;
          while (at < active.length && active[at] < rcv) at++;
          active.splice(at, 0, rcv);
        } else {
          active.splice(active.indexOf(rcv), 1);
        }
        k++;
      }
      prevPos = pos;
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
