/**
 * Planning the distributed roll (reference 1.1.1's `roll`): a cyclic shift of a dispatched tensor
 * along the sequence, y[g] = x[(g − shift) mod N] for every real row g < N, computed without
 * gathering the sequence. Each rank's rows move point to point to the rank that holds their new
 * position; the moves are one GroupCast (every piece has one destination, so any process group's
 * all-to-all-v runs it) followed by a local gather that puts the received rows in place.
 *
 * Padding rows (an even shard's rows past N) are not part of the roll: they stay where they are.
 * The reference wraps through its padded length instead; ours equals dispatching the rolled
 * unpadded sequence, which is what a label shift for multi-token prediction wants.
 * Pure and browser-safe.
 */
import type { GroupCastArgs } from '../comm/group-collective-args.js';
import { InvalidArgumentError } from '../errors.js';
import { RangeBuffer } from '../mask/range-list.js';
import { chunkEnd } from './chunking.js';
import type { DispatchMeta } from './plan.js';
import { chunkPlacement } from './shard-layout.js';

/** One rank's part of a roll. */
export interface RankRoll {
  /**
   * Input: the rank's shard in local order, cut into pieces, each sent to the one rank that holds
   * its rolled position (possibly itself). Output: the rows this rank receives, grouped by sender
   * in ascending rank order, each sender's rows in its local order (so both sides of every pair
   * list the pieces in one order, as the ordering contract asks).
   */
  readonly groupCast: GroupCastArgs;
  /** Ranges of the GroupCast's output, in the rolled shard's local order. */
  readonly placeRanges: Int32Array;
}

/** shift mod N in [0, N). */
export function normalizeShift(shift: number, n: number): number {
  if (!Number.isSafeInteger(shift)) throw new InvalidArgumentError('shift', 'must be an integer', `got ${String(shift)}`);
  return ((shift % n) + n) % n;
}

/** Every rank's GroupCast and placement for rolling by `shift` rows (any integer; taken mod N). */
export function planRoll(d: DispatchMeta, shift: number): RankRoll[] {
  const n = d.unpaddedSeqlen;
  const s = normalizeShift(shift, n);
  const cs = d.chunkSize;
  const P = d.cpSize;
  const { owner, localStart } = chunkPlacement(d);

  // Pieces in receiver order (rank, then local row): [receiver, its local row, sender, the sender's local row, length].
  const recv: number[] = [];
  const recvLocal: number[] = [];
  const send: number[] = [];
  const sendLocal: number[] = [];
  const len: number[] = [];
  const push = (r: number, rl: number, t: number, tl: number, l: number): void => {
    const k = len.length - 1;
    // Consecutive rows of one sender stay one piece.
    if (k >= 0 && recv[k] === r && send[k] === t && recvLocal[k] + len[k] === rl && sendLocal[k] + len[k] === tl) {
      len[k] += l;
      return;
    }
    recv.push(r);
    recvLocal.push(rl);
    send.push(t);
    sendLocal.push(tl);
    len.push(l);
  };
  for (let r = 0; r < P; r++) {
    d.partitions[r].forEach((c, i) => {
      const start = c * cs;
      const real = Math.min(chunkEnd(d, c), n);
      for (let g = start; g < real; ) {
        const src = g >= s ? g - s : g - s + n;
        const sc = Math.floor(src / cs);
        const l = Math.min(real - g, Math.min(chunkEnd(d, sc), n) - src);
        push(r, i * cs + (g - start), owner[sc], localStart[sc] + (src - sc * cs), l);
        g += l;
      }
      // Padding rows stay put: sent to this rank itself.
      const padFrom = Math.max(start, real);
      if (chunkEnd(d, c) > padFrom) push(r, i * cs + (padFrom - start), r, i * cs + (padFrom - start), chunkEnd(d, c) - padFrom);
    });
  }

  const m = len.length;
  const bySender = Array.from({ length: m }, (_, k) => k).sort((a, b) => send[a] - send[b] || sendLocal[a] - sendLocal[b]);
  const inputs: Array<{ sizes: number[]; dsts: number[][] }> = Array.from({ length: P }, () => ({ sizes: [], dsts: [] }));
  for (const k of bySender) {
    inputs[send[k]].sizes.push(len[k]);
    inputs[send[k]].dsts.push([recv[k]]);
  }
  // The receiver's output: its pieces by (sender, sender's local row); remember where each lands.
  const outAt = new Float64Array(m);
  const outputs: Array<{ sizes: number[]; srcs: number[] }> = Array.from({ length: P }, () => ({ sizes: [], srcs: [] }));
  const filled = new Float64Array(P);
  for (const k of bySender.slice().sort((a, b) => recv[a] - recv[b] || send[a] - send[b] || sendLocal[a] - sendLocal[b])) {
    const r = recv[k];
    outAt[k] = filled[r];
    filled[r] += len[k];
    outputs[r].sizes.push(len[k]);
    outputs[r].srcs.push(send[k]);
  }
  const place = Array.from({ length: P }, () => new RangeBuffer(4));
  for (let k = 0; k < m; k++) place[recv[k]].pushJoined(outAt[k], outAt[k] + len[k]);
  return Array.from({ length: P }, (_, r) => ({
    groupCast: {
      inputSplitSizes: Int32Array.from(inputs[r].sizes),
      dstIndices: inputs[r].dsts,
      outputSplitSizes: Int32Array.from(outputs[r].sizes),
      srcIndex: Int32Array.from(outputs[r].srcs),
    },
    placeRanges: place[r].toArray(),
  }));
}
