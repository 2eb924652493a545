/**
 * The collectives of the ProcessGroup interface, written once on top of a single transport
 * primitive, the *exchange*: this rank sends some buffers to some peers and receives one buffer
 * from each of some peers, all under one sequence number. A backend only implements `exchange`
 * (how bytes reach another rank, when to give up); argument checks, layouts and the reduction
 * order live here. What a buffer is (a host typed array, a view of device memory) is a
 * `BufferKind`: the few operations the collectives need on it. Browser-safe.
 *
 * Reductions are deterministic: contributions are combined in rank order, 16-bit floats in
 * float32 and rounded once, so every rank ends with the same bits on every run.
 */
import { InvalidArgumentError } from '../errors.js';
import { bf16BitsToFloat, f16BitsToFloat, floatToBf16Bits, floatToF16Bits } from '../dtype.js';
import type { AllReduceOptions, CommWork, Counts, HalfType, HostArray, ProcessGroup, ReduceOp } from './process-group.js';

/** The same bytes, sent to each of `peers`. */
export interface SendItem<B = HostArray> {
  readonly peers: readonly number[];
  readonly src: B;
}

/**
 * What the collectives need of a buffer type. Copies and reductions may be queued (a device
 * kind queues them on its stream); everything is ordered as issued.
 */
export interface BufferKind<B> {
  length(b: B): number;
  /** The element type's name; both sides of an exchange must agree on it. */
  typeName(b: B): string;
  /** Elements [start, end) of b, sharing its memory. */
  subarray(b: B, start: number, end: number): B;
  /** A scratch buffer of b's element type; give it back with `release` when done. */
  alloc(like: B, length: number): B;
  release(b: B): void;
  /** dst[i] = src[i] for every element of src (equal types; dst at least as long). */
  copy(dst: B, src: B): void;
  /** dst = parts[0] op parts[1] op ... (P equal parts of parts, in rank order). */
  reduceInOrder(dst: B, parts: B, P: number, op: ReduceOp, halfType: HalfType | undefined): void;
  /** Whether reductions need `halfType` (16-bit raw storage). */
  isHalfStorage(b: B): boolean;
}

/** Host typed arrays. */
export const hostBuffers: BufferKind<HostArray> = {
  length: (b) => b.length,
  typeName: (b) => b.constructor.name,
  subarray: (b, start, end) => b.subarray(start, end),
  alloc: (like, length) => new (like.constructor as new (n: number) => HostArray)(length),
  release: () => undefined,
  copy: (dst, src) => dst.set(src),
  reduceInOrder: (dst, parts, P, op, half) => reduceInOrder(dst, parts, P, op, half),
  isHalfStorage: (b) => b instanceof Uint16Array,
};

/** allReduce moves buffers up to this size in one round (everyone reduces everything). */
export const ONE_ROUND_ALL_REDUCE_BYTES = 64 * 1024;

/** A handle over a promise; never lets an unwaited failure become an unhandled rejection. */
export class Work<T> implements CommWork<T> {
  completed = false;
  private readonly promise: Promise<T>;

  constructor(p: Promise<T>) {
    this.promise = p.then(
      (v) => {
        this.completed = true;
        return v;
      },
      (e: unknown) => {
        this.completed = true;
        throw e;
      },
    );
    this.promise.catch(() => undefined);
  }

  wait(): Promise<T> {
    return this.promise;
  }

  then<A = T, B = never>(onFulfilled?: ((value: T) => A | PromiseLike<A>) | null, onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.promise.then(onFulfilled, onRejected);
  }
}

function offsets(counts: Counts): number[] {
  const out = [0];
  for (let i = 0; i < counts.length; i++) out.push(out[i] + counts[i]);
  return out;
}

export abstract class ExchangeGroup<B extends object = HostArray> implements ProcessGroup<B> {
  abstract readonly backend: string;
  /** Sequence number of the next collective (the i-th collective of every rank is the same call). */
  protected nextSeq = 0;
  /** Numbers taken by a collective whose exchange starts later (allReduce's second round). */
  protected readonly reserved = new Set<number>();

  constructor(
    readonly rank: number,
    readonly size: number,
    readonly name: string,
    readonly timeoutMs: number,
    protected readonly kind: BufferKind<B>,
  ) {}

  /**
   * Sends each item to its peers and fills each slot (its length is the expected element count)
   * from its peer; resolves when both are done and the peers no longer need the sent buffers.
   * `type` is the element type's name, which both sides must agree on.
   */
  protected abstract exchange(seq: number, op: string, type: string, items: readonly SendItem<B>[], slots: ReadonlyMap<number, B>): Promise<void>;

  abstract close(): void;

  allToAllV<T extends B>(send: T, sendCounts: Counts, recv: T, recvCounts: Counts): CommWork<T> {
    const k = this.kind;
    this.checkCounts(sendCounts, 'sendCounts', k.length(send), 'send.length');
    this.checkCounts(recvCounts, 'recvCounts', k.length(recv), 'recv.length');
    this.checkSameType(send, recv);
    const me = this.rank;
    if (sendCounts[me] !== recvCounts[me]) {
      throw new InvalidArgumentError('recvCounts', `entry ${me} (this rank) must equal sendCounts[${me}]`, `${recvCounts[me]} vs ${sendCounts[me]}`);
    }
    const sOff = offsets(sendCounts);
    const rOff = offsets(recvCounts);
    const items: SendItem<B>[] = [];
    const slots = new Map<number, B>();
    for (let p = 0; p < this.size; p++) {
      if (p === me) continue;
      items.push({ peers: [p], src: k.subarray(send, sOff[p], sOff[p + 1]) });
      slots.set(p, k.subarray(recv, rOff[p], rOff[p + 1]));
    }
    k.copy(k.subarray(recv, rOff[me], rOff[me + 1]), k.subarray(send, sOff[me], sOff[me + 1]));
    return new Work(this.run(this.nextSeq++, 'allToAllV', send, items, slots).then(() => recv));
  }

  allGather<T extends B>(send: T, recv: T): CommWork<T> {
    const k = this.kind;
    if (k.length(recv) !== k.length(send) * this.size) {
      throw new InvalidArgumentError('recv.length', `must be size × send.length = ${this.size} × ${k.length(send)}`, `got ${k.length(recv)}`);
    }
    return this.allGatherV(send, recv, new Array<number>(this.size).fill(k.length(send)));
  }

  allGatherV<T extends B>(send: T, recv: T, recvCounts: Counts): CommWork<T> {
    const k = this.kind;
    this.checkCounts(recvCounts, 'recvCounts', k.length(recv), 'recv.length');
    this.checkSameType(send, recv);
    const me = this.rank;
    if (recvCounts[me] !== k.length(send)) throw new InvalidArgumentError('recvCounts', `entry ${me} (this rank) must equal send.length`, `${recvCounts[me]} vs ${k.length(send)}`);
    const rOff = offsets(recvCounts);
    const slots = new Map<number, B>();
    for (let p = 0; p < this.size; p++) if (p !== me) slots.set(p, k.subarray(recv, rOff[p], rOff[p + 1]));
    k.copy(k.subarray(recv, rOff[me], rOff[me + 1]), send);
    return new Work(this.run(this.nextSeq++, 'allGatherV', send, [{ peers: this.peers(), src: send }], slots).then(() => recv));
  }

  allReduce<T extends B>(data: T, op: ReduceOp, options: AllReduceOptions = {}): CommWork<T> {
    const k = this.kind;
    if (op !== 'sum' && op !== 'max') throw new InvalidArgumentError('op', "must be 'sum' or 'max'", `got ${String(op)}`);
    const half = options.halfType;
    if (k.isHalfStorage(data) && half !== 'bfloat16' && half !== 'float16') {
      throw new InvalidArgumentError('options.halfType', "must be 'bfloat16' or 'float16' for 16-bit data");
    }
    const n = k.length(data);
    const P = this.size;
    const label = `allReduce(${op})`;
    if (P === 1 || n * this.elementBytes(data) <= ONE_ROUND_ALL_REDUCE_BYTES || n < P) {
      const gathered = k.alloc(data, P * n);
      const slots = new Map<number, B>();
      for (let p = 0; p < P; p++) if (p !== this.rank) slots.set(p, k.subarray(gathered, p * n, (p + 1) * n));
      k.copy(k.subarray(gathered, this.rank * n, (this.rank + 1) * n), data);
      const done = this.run(this.nextSeq++, label, data, [{ peers: this.peers(), src: data }], slots)
        .then(() => {
          k.reduceInOrder(data, gathered, P, op, half);
          return data;
        })
        .finally(() => k.release(gathered));
      return new Work(done);
    }
    // Large: reduce-scatter then all-gather, so each rank reduces only its 1/P of the data. The
    // owner of a slice reduces it in rank order, so the bits match the one-round path.
    const seq1 = this.nextSeq++;
    const seq2 = this.nextSeq++;
    this.reserved.add(seq2);
    const bound = (r: number): number => Math.floor((r * n) / P);
    const lo = bound(this.rank);
    const len = bound(this.rank + 1) - lo;
    const mine = k.subarray(data, lo, lo + len);
    const parts = k.alloc(data, P * len);
    const items: SendItem<B>[] = [];
    const slots1 = new Map<number, B>();
    const slots2 = new Map<number, B>();
    for (let p = 0; p < P; p++) {
      if (p === this.rank) continue;
      items.push({ peers: [p], src: k.subarray(data, bound(p), bound(p + 1)) });
      slots1.set(p, k.subarray(parts, p * len, (p + 1) * len));
      slots2.set(p, k.subarray(data, bound(p), bound(p + 1)));
    }
    k.copy(k.subarray(parts, this.rank * len, (this.rank + 1) * len), mine);
    const done = (async (): Promise<T> => {
      try {
        await this.run(seq1, `${label} reduce-scatter`, data, items, slots1);
      } catch (e) {
        this.reserved.delete(seq2);
        k.release(parts);
        throw e;
      }
      k.reduceInOrder(mine, parts, P, op, half);
      k.release(parts);
      await this.run(seq2, `${label} all-gather`, data, [{ peers: this.peers(), src: mine }], slots2);
      return data;
    })();
    return new Work(done);
  }

  broadcast<T extends B>(data: T, root: number): CommWork<T> {
    if (!Number.isInteger(root) || root < 0 || root >= this.size) throw new InvalidArgumentError('root', `must be a rank in [0, ${this.size})`, `got ${root}`);
    const isRoot = this.rank === root;
    const items: SendItem<B>[] = isRoot ? [{ peers: this.peers(), src: data }] : [];
    const slots = new Map<number, B>(isRoot ? [] : [[root, data]]);
    return new Work(this.run(this.nextSeq++, `broadcast(root ${root})`, data, items, slots).then(() => data));
  }

  barrier(): CommWork<void> {
    return new Work(this.rendezvous('barrier'));
  }

  abstract split(color: number, key?: number): Promise<ProcessGroup<B>>;

  /** A barrier under the label `op` (a collective of its own, numbered like the others). */
  protected rendezvous(op: string): Promise<void> {
    const slots = new Map<number, B>(this.peers().map((p) => [p, this.emptyBuffer]));
    return this.run(this.nextSeq++, op, this.emptyBuffer, [{ peers: this.peers(), src: this.emptyBuffer }], slots);
  }

  /** A zero-length buffer of this kind (what a barrier exchanges). */
  protected abstract readonly emptyBuffer: B;

  /** Bytes per element of a buffer, for the one-round all-reduce threshold. */
  protected abstract elementBytes(b: B): number;

  // -------------------------------------------------------------------------------------------

  /** "op (collective #seq) on rank r of group 'name'": the prefix of every error message. */
  protected describe(op: string, seq: number): string {
    return `${op} (collective #${seq}) on rank ${this.rank} of group '${this.name}'`;
  }

  protected peers(): number[] {
    const out: number[] = [];
    for (let p = 0; p < this.size; p++) if (p !== this.rank) out.push(p);
    return out;
  }

  private run(seq: number, op: string, like: B, items: readonly SendItem<B>[], slots: ReadonlyMap<number, B>): Promise<void> {
    this.reserved.delete(seq);
    return this.exchange(seq, op, this.kind.typeName(like), items, slots);
  }

  private checkCounts(counts: Counts, what: string, total: number, totalName: string): void {
    if (counts.length !== this.size) throw new InvalidArgumentError(what, `must have one entry per rank (${this.size})`, `got ${counts.length}`);
    let sum = 0;
    for (let i = 0; i < counts.length; i++) {
      const c = counts[i];
      if (!Number.isInteger(c) || c < 0) throw new InvalidArgumentError(`${what}[${i}]`, 'must be a non-negative integer', `got ${c}`);
      sum += c;
    }
    if (sum !== total) throw new InvalidArgumentError(what, `must add up to ${totalName}`, `${sum} vs ${total}`);
  }

  private checkSameType(a: B, b: B): void {
    const ta = this.kind.typeName(a);
    const tb = this.kind.typeName(b);
    if (ta !== tb) throw new InvalidArgumentError('recv', 'must have the same element type as send', `${tb} vs ${ta}`);
  }
}

/** Throws unless (color, key) are valid split arguments. */
export function checkSplitArgs(color: number, key: number): void {
  if (!Number.isInteger(color) || color < 0 || color > 2 ** 31 - 1) throw new InvalidArgumentError('color', 'must be an integer in [0, 2^31)', `got ${color}`);
  if (!Number.isInteger(key) || Math.abs(key) > 2 ** 31 - 1) throw new InvalidArgumentError('key', 'must be an int32 integer', `got ${key}`);
}

/**
 * The members of a split: every rank's (color, key) as flat pairs, in rank order; returns the
 * ranks that chose `color`, ordered by key, then rank (their index is their rank in the sub-group).
 */
export function splitMembers(pairs: ArrayLike<number>, color: number): number[] {
  const members: number[] = [];
  for (let r = 0; 2 * r < pairs.length; r++) if (pairs[2 * r] === color) members.push(r);
  return members.sort((a, b) => pairs[2 * a + 1] - pairs[2 * b + 1] || a - b);
}

/** An exchange group over host typed arrays. */
export abstract class HostExchangeGroup extends ExchangeGroup<HostArray> {
  protected readonly emptyBuffer: HostArray = new Int32Array(0);

  constructor(rank: number, size: number, name: string, timeoutMs: number) {
    super(rank, size, name, timeoutMs, hostBuffers);
  }

  protected elementBytes(b: HostArray): number {
    return b.BYTES_PER_ELEMENT;
  }
}

/** Reduces the P equal parts of `parts` (rank order) element-wise into `dst`. */
function reduceInOrder(dst: HostArray, parts: HostArray, P: number, op: ReduceOp, halfType: HalfType | undefined): void {
  const n = dst.length;
  if (dst instanceof Uint16Array) {
    const widen = halfType === 'bfloat16' ? bf16BitsToFloat : f16BitsToFloat;
    const narrow = halfType === 'bfloat16' ? floatToBf16Bits : floatToF16Bits;
    const acc = new Float32Array(n);
    for (let i = 0; i < n; i++) acc[i] = widen(parts[i]);
    for (let p = 1; p < P; p++) {
      const base = p * n;
      if (op === 'sum') for (let i = 0; i < n; i++) acc[i] += widen(parts[base + i]);
      else for (let i = 0; i < n; i++) acc[i] = Math.max(acc[i], widen(parts[base + i]));
    }
    for (let i = 0; i < n; i++) dst[i] = narrow(acc[i]);
    return;
  }
  dst.set(parts.subarray(0, n));
  for (let p = 1; p < P; p++) {
    const base = p * n;
    if (op === 'sum') for (let i = 0; i < n; i++) dst[i] += parts[base + i];
    else for (let i = 0; i < n; i++) dst[i] = Math.max(dst[i], parts[base + i]);
  }
}
