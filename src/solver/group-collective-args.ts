/**
 * GroupCast / GroupReduce arguments: what each rank passes to the group collectives that move
 * one stage's remote k/v (and, mirrored, send partial dk/dv back). Built for all ranks at once
 * from every rank's stage buffer and the chunk owners, following the ordering contract of
 * reference 03 §1.1: for any sender s and receiver r, the splits s sends to r, in s's input order,
 * are the splits r receives from s, in r's output order, size for size.
 *
 * Also here, as plain data: the lowering of both collectives onto one all-to-all-v (03 §1.4) and a
 * reference model of their semantics on small arrays, which the checker and the tests use.
 */
import { InvalidArgumentError } from '../errors.js';
import type { DispatchMeta, GroupCastArgs, GroupReduceArgs } from './plan.js';

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

/** The mirror of a GroupCast: what was cast out is reduced back, split for split. */
export function toGroupReduceArgs(cast: GroupCastArgs): GroupReduceArgs {
  return {
    inputSplitSizes: cast.outputSplitSizes,
    dstIndex: cast.srcIndex,
    outputSplitSizes: cast.inputSplitSizes,
    srcIndices: cast.dstIndices,
  };
}

// ---------------------------------------------------------------------------------------------
// The ordering contract as data, and a reference model of the semantics.

/**
 * For every rank r and output split j of a GroupCast, the source rank and the index of the
 * source's input split that fills it, found purely by the ordering contract. Throws when the
 * arguments of different ranks disagree (sizes, counts).
 */
export function matchGroupCast(args: readonly GroupCastArgs[]): Array<Array<[number, number]>> {
  const P = args.length;
  // queues[s][r]: s's input splits that list r, in input order.
  const queues: number[][][] = args.map((a) => {
    const q: number[][] = Array.from({ length: P }, () => []);
    a.dstIndices.forEach((dsts, i) => {
      for (const d of dsts) {
        if (!Number.isInteger(d) || d < 0 || d >= P) throw new InvalidArgumentError('dstIndices', `ranks must be in [0, ${P})`, `got ${d}`);
        q[d].push(i);
      }
    });
    return q;
  });
  const heads: number[][] = args.map(() => new Array<number>(P).fill(0));
  const result = args.map((a, r) =>
    Array.from(a.srcIndex, (s, j): [number, number] => {
      if (!Number.isInteger(s) || s < 0 || s >= P) throw new InvalidArgumentError(`rank ${r} srcIndex[${j}]`, `must be a rank in [0, ${P})`, `got ${s}`);
      const q = queues[s][r];
      const i = q[heads[s][r]++];
      if (i === undefined) throw new InvalidArgumentError(`rank ${r} srcIndex[${j}]`, `rank ${s} sends fewer splits to rank ${r} than it expects`);
      if (args[s].inputSplitSizes[i] !== a.outputSplitSizes[j]) {
        throw new InvalidArgumentError(`rank ${r} outputSplitSizes[${j}]`, `must equal the size of the matching input split ${i} of rank ${s}`, `${a.outputSplitSizes[j]} vs ${args[s].inputSplitSizes[i]}`);
      }
      return [s, i];
    }),
  );
  for (let s = 0; s < P; s++) {
    for (let r = 0; r < P; r++) {
      if (heads[s][r] !== queues[s][r].length) {
        throw new InvalidArgumentError(`rank ${s} dstIndices`, `sends ${queues[s][r].length} splits to rank ${r}, which expects ${heads[s][r]}`);
      }
    }
  }
  return result;
}

function prefix(sizes: ArrayLike<number>): number[] {
  const out = [0];
  for (let i = 0; i < sizes.length; i++) out.push(out[i] + sizes[i]);
  return out;
}

/** GroupCast on plain per-rank row arrays (any row values): the semantics, for tests and checks. */
export function simulateGroupCast<T>(inputs: readonly (readonly T[])[], args: readonly GroupCastArgs[]): T[][] {
  const match = matchGroupCast(args);
  const inOff = args.map((a) => prefix(a.inputSplitSizes));
  return args.map((a, r) => {
    const out: T[] = [];
    match[r].forEach(([s, i]) => {
      out.push(...inputs[s].slice(inOff[s][i], inOff[s][i + 1]));
    });
    if (out.length !== a.outputSplitSizes.reduce((x, y) => x + y, 0)) throw new InvalidArgumentError(`rank ${r}`, 'output splits must add up to the received rows');
    return out;
  });
}

/**
 * GroupReduce on per-rank arrays of one number per row: every input split is reduced into the
 * output split of its destination that the mirrored ordering contract matches. 'sum' adds onto
 * the old value; 'avg' averages with the old value counted as one contributor.
 */
export function simulateGroupReduce(
  inputs: readonly (readonly number[])[],
  outputs: readonly (readonly number[])[],
  args: readonly GroupReduceArgs[],
  op: 'sum' | 'avg' = 'sum',
): number[][] {
  // A GroupReduce is the reverse of the GroupCast with the transposed arguments.
  const cast: GroupCastArgs[] = args.map((a) => ({ inputSplitSizes: a.outputSplitSizes, dstIndices: a.srcIndices, outputSplitSizes: a.inputSplitSizes, srcIndex: a.dstIndex }));
  const match = matchGroupCast(cast);
  const inOff = args.map((a) => prefix(a.inputSplitSizes));
  const outOff = args.map((a) => prefix(a.outputSplitSizes));
  const result = outputs.map((o) => [...o]);
  const contributors = outputs.map((o) => new Array<number>(o.length).fill(0));
  // cast rank r's output split j (= reduce input split j of r) came from cast input split i of s
  // (= reduce output split i of s): reduce r's input split j into s's output split i.
  match.forEach((splits, r) =>
    splits.forEach(([s, i], j) => {
      for (let x = 0; x < args[r].inputSplitSizes[j]; x++) {
        result[s][outOff[s][i] + x] += inputs[r][inOff[r][j] + x];
        contributors[s][outOff[s][i] + x]++;
      }
    }),
  );
  if (op === 'avg') result.forEach((o, s) => o.forEach((v, x) => (o[x] = contributors[s][x] > 0 ? v / (1 + contributors[s][x]) : v)));
  return result;
}

/**
 * GroupReduce with op 'lse' on one (out, lse) pair per row: the log-sum-exp weighted merge of the
 * old (out, lse) with every contribution.
 */
export function simulateGroupReduceLse(
  inputs: readonly { out: readonly number[]; lse: readonly number[] }[],
  outputs: readonly { out: readonly number[]; lse: readonly number[] }[],
  args: readonly GroupReduceArgs[],
): Array<{ out: number[]; lse: number[] }> {
  const cast: GroupCastArgs[] = args.map((a) => ({ inputSplitSizes: a.outputSplitSizes, dstIndices: a.srcIndices, outputSplitSizes: a.inputSplitSizes, srcIndex: a.dstIndex }));
  const match = matchGroupCast(cast);
  const inOff = args.map((a) => prefix(a.inputSplitSizes));
  const outOff = args.map((a) => prefix(a.outputSplitSizes));
  const parts = outputs.map((o) => o.out.map((v, x) => [[v, o.lse[x]]] as Array<[number, number]>));
  match.forEach((splits, r) =>
    splits.forEach(([s, i], j) => {
      for (let x = 0; x < args[r].inputSplitSizes[j]; x++) parts[s][outOff[s][i] + x].push([inputs[r].out[inOff[r][j] + x], inputs[r].lse[inOff[r][j] + x]]);
    }),
  );
  return parts.map((rows) => {
    const out: number[] = [];
    const lse: number[] = [];
    for (const row of rows) {
      const m = Math.max(...row.map((p) => p[1]));
      if (m === -Infinity) {
        out.push(row[0][0]);
        lse.push(-Infinity);
        continue;
      }
      const L = m + Math.log(row.reduce((acc, p) => acc + Math.exp(p[1] - m), 0));
      out.push(row.reduce((acc, p) => acc + (p[1] === -Infinity ? 0 : Math.exp(p[1] - L) * p[0]), 0));
      lse.push(L);
    }
    return { out, lse };
  });
}

// ---------------------------------------------------------------------------------------------
// Lowering onto one all-to-all-v (03 §1.4), computed once per stage.

/**
 * One rank's side of a GroupCast run as an all-to-all-v:
 *   sendGather    input row ranges [start, end) to pack, in order, into the send buffer (grouped by
 *                 destination rank, input order inside a group; a row sent to m ranks is packed m times);
 *   sendCounts    rows packed for each rank;
 *   recvCounts    rows arriving from each rank (the receive buffer is in rank order);
 *   recvPlace     triples [receive offset, output offset, length] that move the rank-ordered
 *                 receive buffer into output split order.
 */
export interface A2AVLowering {
  readonly sendGather: Int32Array;
  readonly sendCounts: Int32Array;
  readonly recvCounts: Int32Array;
  readonly recvPlace: Int32Array;
}

export function lowerGroupCast(args: GroupCastArgs, worldSize: number): A2AVLowering {
  const inOff = prefix(args.inputSplitSizes);
  const sendCounts = new Int32Array(worldSize);
  const byDst: number[][] = Array.from({ length: worldSize }, () => []);
  args.dstIndices.forEach((dsts, i) => {
    for (const d of dsts) {
      byDst[d].push(inOff[i], inOff[i + 1]);
      sendCounts[d] += args.inputSplitSizes[i];
    }
  });
  const sendGather = Int32Array.from(byDst.flat());
  const outOff = prefix(args.outputSplitSizes);
  const recvCounts = new Int32Array(worldSize);
  const bySrc: number[][] = Array.from({ length: worldSize }, () => []);
  args.srcIndex.forEach((s, j) => {
    bySrc[s].push(j);
    recvCounts[s] += args.outputSplitSizes[j];
  });
  const place: number[] = [];
  let at = 0;
  for (let s = 0; s < worldSize; s++) {
    for (const j of bySrc[s]) {
      place.push(at, outOff[j], args.outputSplitSizes[j]);
      at += args.outputSplitSizes[j];
    }
  }
  return { sendGather, sendCounts, recvCounts, recvPlace: Int32Array.from(place) };
}

/**
 * One rank's side of a GroupReduce as an all-to-all-v: sendGather/sendCounts as for a cast (each
 * input split goes to its one destination); recvPlace triples [receive offset, output offset,
 * length] say where each received contribution is reduced into the output.
 */
export function lowerGroupReduce(args: GroupReduceArgs, worldSize: number): A2AVLowering {
  const inOff = prefix(args.inputSplitSizes);
  const sendCounts = new Int32Array(worldSize);
  const byDst: number[][] = Array.from({ length: worldSize }, () => []);
  args.dstIndex.forEach((d, i) => {
    byDst[d].push(inOff[i], inOff[i + 1]);
    sendCounts[d] += args.inputSplitSizes[i];
  });
  const outOff = prefix(args.outputSplitSizes);
  const recvCounts = new Int32Array(worldSize);
  const bySrc: number[][] = Array.from({ length: worldSize }, () => []);
  args.srcIndices.forEach((srcs, j) => {
    for (const s of srcs) {
      bySrc[s].push(j);
      recvCounts[s] += args.outputSplitSizes[j];
    }
  });
  const place: number[] = [];
  let at = 0;
  for (let s = 0; s < worldSize; s++) {
    for (const j of bySrc[s]) {
      place.push(at, outOff[j], args.outputSplitSizes[j]);
      at += args.outputSplitSizes[j];
    }
  }
  return { sendGather: Int32Array.from(byDst.flat()), sendCounts, recvCounts, recvPlace: Int32Array.from(place) };
}

/**
 * Runs lowered collectives on plain per-rank row arrays with an in-memory all-to-all-v; 'cast'
 * places rows, 'reduce' adds them onto `outputs`. For tests: it must agree with the simulators.
 */
export function runLoweredA2AV(lowerings: readonly A2AVLowering[], inputs: readonly (readonly number[])[], outputs: readonly (readonly number[])[], mode: 'cast' | 'reduce'): number[][] {
  const P = lowerings.length;
  const sendBufs = lowerings.map((l, r) => {
    const buf: number[] = [];
    for (let i = 0; i < l.sendGather.length; i += 2) buf.push(...inputs[r].slice(l.sendGather[i], l.sendGather[i + 1]));
    return buf;
  });
  const sendOff = lowerings.map((l) => prefix(l.sendCounts));
  return lowerings.map((l, r) => {
    const recvBuf: number[] = [];
    for (let s = 0; s < P; s++) {
      const rows = sendBufs[s].slice(sendOff[s][r], sendOff[s][r + 1]);
      if (rows.length !== l.recvCounts[s]) throw new InvalidArgumentError(`rank ${r} recvCounts[${s}]`, 'must equal what the sender packs for it', `${l.recvCounts[s]} vs ${rows.length}`);
      recvBuf.push(...rows);
    }
    const out = [...outputs[r]];
    for (let i = 0; i < l.recvPlace.length; i += 3) {
      for (let x = 0; x < l.recvPlace[i + 2]; x++) {
        if (mode === 'cast') out[l.recvPlace[i + 1] + x] = recvBuf[l.recvPlace[i] + x];
        else out[l.recvPlace[i + 1] + x] += recvBuf[l.recvPlace[i] + x];
      }
    }
    return out;
  });
}
