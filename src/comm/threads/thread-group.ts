/**
 * The worker-thread process group: every rank is a worker thread of one Node process, and each
 * pair of ranks shares a MessagePort. It is the CPU backend of the `ProcessGroup` interface, not
 * a general message-passing library: it knows only the collectives the interface lists.
 *
 * How bytes move. Every collective is an *exchange*: each rank posts one message per peer it
 * sends to and expects one message from each peer it receives from, all tagged with the
 * collective's sequence number (the i-th collective of every rank is the same call). Payloads up
 * to INLINE_MAX_BYTES travel inside the message as a transferred ArrayBuffer (no clone). Larger
 * payloads are written once into a SharedArrayBuffer (or, when the caller's array already lives in
 * one, not copied at all); the message carries a handle to it, the receiver copies straight into
 * its receive buffer and answers with an ack, and the sender recycles the staging buffer once every
 * reader has acked. So a large transfer costs one copy on each side and no serialisation.
 *
 * Nothing here blocks the event loop: there is no Atomics.wait. A collective returns at once;
 * incoming data is copied into place by message handlers whenever the rank yields, which is what
 * lets a rank compute while peers push to it. Messages that arrive before this rank reaches the
 * collective wait in a stash keyed by sequence number.
 *
 * Failure: each exchange has a timer (the group's timeout) and rejects naming the peers it still
 * waits for; a peer's port closing fails the exchanges that wait on it; `abort()` (called when the
 * launcher reports that another rank failed) rejects everything pending at once.
 *
 * Sub-groups (`split`) share the rank's ports: every message carries its group's channel, and the
 * rank's links hand it to that group, which keeps its own sequence numbers. A message for a
 * sub-group this rank has not made yet (a faster peer finished the split first) waits in the links.
 */
import type { MessagePort } from 'node:worker_threads';
import { CommAbortedError, CommMismatchError, CommTimeoutError } from '../errors.js';
import { checkSplitArgs, HostExchangeGroup, splitMembers, type SendItem } from '../exchange-group.js';
import type { HostArray } from '../process-group.js';

/** Payloads up to this size ride inside the message; above it they go through shared memory. */
export const INLINE_MAX_BYTES = 64 * 1024;

/** Staging memory a rank keeps for reuse. */
const POOL_MAX_BYTES = 512 * 2 ** 20;

interface DataMessage {
  readonly t: 'data';
  /** The group's channel ('' for the group the launcher made, a path for sub-groups). */
  readonly ch: string;
  readonly seq: number;
  /** The collective's label; must match on both sides. */
  readonly op: string;
  /** Element type (constructor name); must match on both sides. */
  readonly type: string;
  readonly count: number;
  readonly buf: ArrayBuffer | SharedArrayBuffer | null;
  readonly off: number;
  readonly bytes: number;
  /** The payload is in the sender's shared memory: ack once copied. */
  readonly shared: boolean;
}

interface AckMessage {
  readonly t: 'ack';
  readonly ch: string;
  readonly seq: number;
}

type PeerMessage = DataMessage | AckMessage;

interface Exchange {
  readonly seq: number;
  readonly op: string;
  readonly type: string;
  /** Where each expected peer's data lands (its length is the expected count). */
  readonly slots: ReadonlyMap<number, HostArray>;
  readonly waitingData: Set<number>;
  readonly waitingAck: Set<number>;
  staging: SharedArrayBuffer | null;
  timer: ReturnType<typeof setTimeout> | undefined;
  settled: boolean;
  resolve(): void;
  reject(e: Error): void;
}

export interface ThreadGroupInit {
  readonly rank: number;
  readonly size: number;
  readonly name: string;
  readonly timeoutMs: number;
  /** ports[p]: the port shared with rank p (null at this rank's own index). */
  readonly ports: readonly (MessagePort | null)[];
}

/**
 * A rank's ports to every other rank of the launch, shared by the group the launcher made and the
 * sub-groups split from it: routes each message to its channel's group.
 */
class ThreadLinks {
  private readonly groups = new Map<string, ThreadProcessGroup>();
  private readonly early = new Map<string, Array<[number, PeerMessage]>>();
  readonly pool = new SharedPool();

  constructor(readonly ports: readonly (MessagePort | null)[]) {
    ports.forEach((port, peer) => {
      if (port === null) return;
      port.on('message', (m: PeerMessage) => this.route(peer, m));
      port.on('close', () => this.peerGone(peer));
    });
  }

  register(ch: string, group: ThreadProcessGroup): void {
    this.groups.set(ch, group);
    const waiting = this.early.get(ch);
    this.early.delete(ch);
    for (const [peer, m] of waiting ?? []) group.receive(peer, m);
  }

  unregister(ch: string): void {
    this.groups.delete(ch);
  }

  send(peer: number, m: PeerMessage, transfer: ArrayBuffer[] = []): void {
    (this.ports[peer] as MessagePort).postMessage(m, transfer);
  }

  /** Every group on these links (the launcher's and its sub-groups). */
  all(): ThreadProcessGroup[] {
    return [...this.groups.values()];
  }

  close(): void {
    for (const port of this.ports) port?.close();
    this.pool.clear();
  }

  private route(peer: number, m: PeerMessage): void {
    const g = this.groups.get(m.ch);
    if (g !== undefined) {
      g.receive(peer, m);
      return;
    }
    let list = this.early.get(m.ch);
    if (list === undefined) this.early.set(m.ch, (list = []));
    list.push([peer, m]);
  }

  private peerGone(peer: number): void {
    for (const g of this.all()) g.peerGone(peer);
  }
}

/** Recycles staging buffers by power-of-two size class. */
class SharedPool {
  private readonly free = new Map<number, SharedArrayBuffer[]>();
  private retained = 0;

  acquire(bytes: number): SharedArrayBuffer {
    const size = Math.max(INLINE_MAX_BYTES, 2 ** Math.ceil(Math.log2(bytes)));
    const buf = this.free.get(size)?.pop();
    if (buf === undefined) return new SharedArrayBuffer(size);
    this.retained -= size;
    return buf;
  }

  release(buf: SharedArrayBuffer): void {
    const list = this.free.get(buf.byteLength) ?? [];
    // A few per class cover the collectives a rank keeps in flight; beyond that, or beyond the
    // byte cap, let GC have them.
    if (list.length >= 4 || this.retained + buf.byteLength > POOL_MAX_BYTES) return;
    list.push(buf);
    this.retained += buf.byteLength;
    this.free.set(buf.byteLength, list);
  }

  clear(): void {
    this.free.clear();
    this.retained = 0;
  }
}

const align8 = (n: number): number => (n + 7) & ~7;

function bytesOf(a: HostArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

const rankList = (ranks: Iterable<number>): string => [...ranks].sort((a, b) => a - b).join(', ');

/** A sub-group's place on its parent's links. */
interface SubGroupInit {
  readonly links: ThreadLinks;
  readonly ch: string;
  /** Launch rank of every member, by group rank. */
  readonly members: readonly number[];
  readonly rank: number;
  readonly name: string;
  readonly timeoutMs: number;
}

export class ThreadProcessGroup extends HostExchangeGroup {
  readonly backend = 'threads';
  private readonly links: ThreadLinks;
  private readonly ch: string;
  /** Launch rank of every member, by group rank (the identity for the launcher's group). */
  private readonly members: readonly number[];
  private readonly active = new Map<number, Exchange>();
  private readonly stash = new Map<number, Map<number, DataMessage>>();
  private readonly gone = new Set<number>();
  private failure: { rank: number; reason: string } | null = null;

  constructor(init: ThreadGroupInit | SubGroupInit) {
    const sub = 'links' in init;
    super(init.rank, sub ? init.members.length : init.size, init.name, init.timeoutMs);
    this.links = sub ? init.links : new ThreadLinks(init.ports);
    this.ch = sub ? init.ch : '';
    this.members = sub ? init.members : Array.from({ length: init.size }, (_, r) => r);
    this.links.register(this.ch, this);
  }

  /** Closing the launcher's group closes the ports (and so every sub-group); a sub-group only stops. */
  close(): void {
    if (this.ch === '') {
      for (const g of this.links.all()) g.stop('the group was closed on this rank');
      this.links.close();
    } else {
      this.stop('the group was closed on this rank');
    }
  }

  /**
   * Rejects every pending and future collective: rank `failedRank` failed for `reason`. On the
   * launcher's group it stops every sub-group too (the run is over).
   */
  abort(failedRank: number, reason: string): void {
    if (this.ch !== '') {
      this.stopWith(failedRank, reason);
      return;
    }
    for (const g of this.links.all()) g.stopWith(failedRank, reason);
  }

  /**
   * The sub-group of the ranks with the same `color` (by key, then rank), on the same ports: an
   * all-gather of every rank's (color, key), then a group on its own channel.
   */
  async split(color: number, key: number = this.rank): Promise<ThreadProcessGroup> {
    checkSplitArgs(color, key);
    const seq = this.nextSeq;
    const pairs = new Int32Array(2 * this.size);
    await this.allGather(Int32Array.of(color, key), pairs).wait();
    const members = splitMembers(pairs, color);
    return new ThreadProcessGroup({
      links: this.links,
      ch: `${this.ch}/${seq}.${color}`,
      members: members.map((r) => this.members[r]),
      rank: members.indexOf(this.rank),
      name: `${this.name}/${color}`,
      timeoutMs: this.timeoutMs,
    });
  }

  /** A message from launch rank `from` on this group's channel. */
  receive(from: number, m: PeerMessage): void {
    const peer = this.members.indexOf(from);
    if (peer >= 0) this.onMessage(peer, m);
  }

  /** Launch rank `from` left: fails the exchanges that wait on it. */
  peerGone(from: number): void {
    const peer = this.members.indexOf(from);
    if (peer >= 0) this.onPeerGone(peer);
  }

  private stop(reason: string): void {
    this.stopWith(-1, reason);
    this.links.unregister(this.ch);
  }

  private stopWith(failedRank: number, reason: string): void {
    if (this.failure === null) this.failure = { rank: failedRank, reason };
    for (const ex of [...this.active.values()]) this.fail(ex, this.abortError(ex.op, ex.seq));
    this.stash.clear();
  }

  // -------------------------------------------------------------------------------------------

  private abortError(op: string, seq: number): CommAbortedError {
    const f = this.failure ?? { rank: -1, reason: 'aborted' };
    const cause = f.rank >= 0 ? `rank ${f.rank} failed: ${f.reason}` : f.reason;
    return new CommAbortedError(f.rank, `${this.describe(op, seq)} aborted: ${cause}`);
  }

  /** Starts one exchange: posts `items`, expects one message per `slots` entry. */
  protected exchange(seq: number, op: string, type: string, items: readonly SendItem[], slots: ReadonlyMap<number, HostArray>): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.abortError(op, seq));
    const involved = new Set<number>([...slots.keys(), ...items.flatMap((i) => i.peers)]);
    const left = [...involved].filter((p) => this.gone.has(p));
    if (left.length > 0) {
      return Promise.reject(new CommAbortedError(left[0], `${this.describe(op, seq)} cannot run: ranks ${rankList(left)} left the group`));
    }
    return new Promise<void>((resolve, reject) => {
      const ex: Exchange = {
        seq,
        op,
        type,
        slots,
        waitingData: new Set(slots.keys()),
        waitingAck: new Set(),
        staging: null,
        timer: undefined,
        settled: false,
        resolve,
        reject,
      };
      this.active.set(seq, ex);
      this.post(ex, items);
      const early = this.stash.get(seq);
      if (early !== undefined) {
        this.stash.delete(seq);
        for (const [peer, m] of early) if (!ex.settled) this.deliver(ex, peer, m);
      }
      if (ex.settled) return;
      ex.timer = setTimeout(() => this.timeOut(ex), this.timeoutMs);
      this.maybeFinish(ex);
    });
  }

  private post(ex: Exchange, items: readonly SendItem[]): void {
    let staged = 0;
    for (const item of items) {
      if (item.src.byteLength > INLINE_MAX_BYTES && !(item.src.buffer instanceof SharedArrayBuffer)) staged += align8(item.src.byteLength);
    }
    if (staged > 0) ex.staging = this.links.pool.acquire(staged);
    let at = 0;
    for (const item of items) {
      const bytes = item.src.byteLength;
      const head = { t: 'data' as const, ch: this.ch, seq: ex.seq, op: ex.op, type: ex.type, count: item.src.length, bytes };
      if (bytes > INLINE_MAX_BYTES) {
        let buf: SharedArrayBuffer;
        let off: number;
        if (item.src.buffer instanceof SharedArrayBuffer) {
          buf = item.src.buffer;
          off = item.src.byteOffset;
        } else {
          buf = ex.staging as SharedArrayBuffer;
          off = at;
          new Uint8Array(buf, off, bytes).set(bytesOf(item.src));
          at += align8(bytes);
        }
        for (const p of item.peers) {
          ex.waitingAck.add(p);
          this.send(p, { ...head, buf, off, shared: true });
        }
      } else {
        for (const p of item.peers) {
          const copy = bytes > 0 ? bytesOf(item.src).slice() : null;
          this.send(p, { ...head, buf: copy === null ? null : copy.buffer, off: 0, shared: false }, copy === null ? [] : [copy.buffer]);
        }
      }
    }
  }

  private send(peer: number, m: PeerMessage, transfer: ArrayBuffer[] = []): void {
    this.links.send(this.members[peer], m, transfer);
  }

  private onMessage(peer: number, m: PeerMessage): void {
    const ex = this.active.get(m.seq);
    if (m.t === 'ack') {
      if (ex !== undefined) {
        ex.waitingAck.delete(peer);
        this.maybeFinish(ex);
      }
      return;
    }
    if (ex !== undefined) {
      this.deliver(ex, peer, m);
      this.maybeFinish(ex);
    } else if (m.seq >= this.nextSeq || this.reserved.has(m.seq)) {
      let bySender = this.stash.get(m.seq);
      if (bySender === undefined) this.stash.set(m.seq, (bySender = new Map()));
      bySender.set(peer, m);
    } else if (m.shared) {
      // The collective already failed here; free the sender's buffer anyway.
      this.send(peer, { t: 'ack', ch: this.ch, seq: m.seq });
    }
  }

  private deliver(ex: Exchange, peer: number, m: DataMessage): void {
    const slot = ex.slots.get(peer);
    let problem: string | null = null;
    if (m.op !== ex.op) problem = `rank ${peer} called ${m.op} as collective #${ex.seq}, rank ${this.rank} called ${ex.op}`;
    else if (slot === undefined || !ex.waitingData.has(peer)) problem = `rank ${peer} sent data that rank ${this.rank} does not expect from it`;
    else if (m.type !== ex.type) problem = `rank ${peer} sends ${m.type} data, rank ${this.rank} expects ${ex.type}`;
    else if (m.count !== slot.length) problem = `rank ${peer} sends ${m.count} elements to rank ${this.rank}, which expects ${slot.length}`;
    else if (m.bytes > 0) bytesOf(slot).set(new Uint8Array(m.buf as ArrayBuffer, m.off, m.bytes));
    if (m.shared) this.send(peer, { t: 'ack', ch: this.ch, seq: m.seq });
    if (problem !== null) {
      this.fail(ex, new CommMismatchError(`${this.describe(ex.op, ex.seq)}: ${problem}`));
      return;
    }
    ex.waitingData.delete(peer);
  }

  private maybeFinish(ex: Exchange): void {
    if (ex.settled || ex.waitingData.size > 0 || ex.waitingAck.size > 0) return;
    ex.settled = true;
    clearTimeout(ex.timer);
    this.active.delete(ex.seq);
    if (ex.staging !== null) this.links.pool.release(ex.staging);
    ex.resolve();
  }

  private fail(ex: Exchange, e: Error): void {
    if (ex.settled) return;
    ex.settled = true;
    clearTimeout(ex.timer);
    this.active.delete(ex.seq);
    // The staging buffer is not recycled: a slow peer may still be reading it.
    ex.reject(e);
  }

  private timeOut(ex: Exchange): void {
    const parts: string[] = [];
    if (ex.waitingData.size > 0) parts.push(`ranks ${rankList(ex.waitingData)} did not arrive`);
    if (ex.waitingAck.size > 0) parts.push(`ranks ${rankList(ex.waitingAck)} did not collect this rank's data`);
    const missing = [...new Set([...ex.waitingData, ...ex.waitingAck])].sort((a, b) => a - b);
    this.fail(ex, new CommTimeoutError(ex.op, this.rank, missing, `${this.describe(ex.op, ex.seq)} timed out after ${this.timeoutMs} ms: ${parts.join('; ')}`));
  }

  private onPeerGone(peer: number): void {
    this.gone.add(peer);
    for (const ex of [...this.active.values()]) {
      if (ex.waitingData.has(peer) || ex.waitingAck.has(peer)) {
        this.fail(ex, new CommAbortedError(peer, `${this.describe(ex.op, ex.seq)} aborted: rank ${peer} left the group`));
      }
    }
  }
}
