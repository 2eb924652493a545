/**
 * The in-process backend: P ranks as concurrent async functions of one thread, meeting in memory.
 * There is no parallelism (ranks interleave at their awaits) and no start-up cost, so it is the
 * backend for unit tests of anything above the process group, and for running a whole cp group
 * in a browser tab. Each collective is a rendezvous: when the last rank arrives, the data move
 * with plain copies and every rank's handle resolves. Browser-safe.
 */
import { InvalidArgumentError } from '../errors.js';
import { CommAbortedError, CommMismatchError, CommTimeoutError, RankFailedError, serializeError, type RankOutcome } from './errors.js';
import { checkSplitArgs, ExchangeGroup, hostBuffers, splitMembers, type BufferKind, type SendItem } from './exchange-group.js';
import type { HostArray, ProcessGroup } from './process-group.js';

interface Arrival<B> {
  readonly op: string;
  readonly type: string;
  readonly items: readonly SendItem<B>[];
  readonly slots: ReadonlyMap<number, B>;
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * The shared state of one in-process world: the arrivals of every rank at every pending
 * collective. When the last rank arrives the data move by the buffer kind's copies (plain copies
 * for host arrays; queued device copies for device buffers).
 */
export class LocalWorld<B> {
  readonly pending = new Map<number, (Arrival<B> | undefined)[]>();
  failure: { rank: number; reason: string } | null = null;
  /** Worlds of the sub-groups split from this one (an abort here aborts them too). */
  readonly children: LocalWorld<B>[] = [];
  /** Splits in progress, by the collective number of their rendezvous: every rank's (color, key) and the sub-worlds made. */
  readonly splits = new Map<number, { pairs: Int32Array; worlds: Map<number, LocalWorld<B>>; left: number }>();

  constructor(
    readonly size: number,
    readonly kind: BufferKind<B>,
  ) {}

  arrive(group: { rank: number; name: string }, seq: number, a: Arrival<B>): void {
    let row = this.pending.get(seq);
    if (row === undefined) this.pending.set(seq, (row = new Array<Arrival<B> | undefined>(this.size).fill(undefined)));
    row[group.rank] = a;
    if (row.every((x) => x !== undefined)) {
      this.pending.delete(seq);
      this.complete(group, seq, row as Arrival<B>[]);
    }
  }

  /** Moves the data of a collective every rank has reached, or fails it on every rank. */
  private complete(group: { name: string }, seq: number, row: readonly Arrival<B>[]): void {
    const k = this.kind;
    for (const a of row) clearTimeout(a.timer);
    let problem: string | null = null;
    check: for (let r = 0; r < row.length; r++) {
      if (row[r].op !== row[0].op) {
        problem = `rank ${r} called ${row[r].op} as collective #${seq}, rank 0 called ${row[0].op}`;
        break;
      }
      for (const item of row[r].items) {
        for (const p of item.peers) {
          const slot = row[p].slots.get(r);
          if (slot === undefined) problem = `rank ${r} sends data that rank ${p} does not expect from it`;
          else if (row[p].type !== row[r].type) problem = `rank ${r} sends ${row[r].type} data, rank ${p} expects ${row[p].type}`;
          else if (k.length(slot) !== k.length(item.src)) problem = `rank ${r} sends ${k.length(item.src)} elements to rank ${p}, which expects ${k.length(slot)}`;
          if (problem !== null) break check;
        }
      }
    }
    for (let p = 0; p < row.length && problem === null; p++) {
      for (const r of row[p].slots.keys()) {
        if (!row[r].items.some((i) => i.peers.includes(p))) {
          problem = `rank ${p} expects data from rank ${r}, which sends it none`;
          break;
        }
      }
    }
    if (problem !== null) {
      const msg = problem;
      row.forEach((a, r) => a.reject(new CommMismatchError(`${row[r].op} (collective #${seq}) on rank ${r} of group '${group.name}': ${msg}`)));
      return;
    }
    for (let r = 0; r < row.length; r++) for (const item of row[r].items) for (const p of item.peers) k.copy(row[p].slots.get(r) as B, item.src);
    for (const a of row) a.resolve();
  }

  abort(rank: number, reason: string): void {
    if (this.failure === null) this.failure = { rank, reason };
    for (const child of this.children) child.abort(rank, reason);
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const row of pending) {
      for (const a of row) {
        if (a === undefined) continue;
        clearTimeout(a.timer);
        a.reject(new CommAbortedError(rank, `${a.op} aborted: rank ${rank} failed: ${reason}`));
      }
    }
  }
}

/** One rank of an in-process world. */
export class LocalExchangeGroup<B extends object> extends ExchangeGroup<B> {
  readonly backend: string = 'local';

  constructor(
    private readonly world: LocalWorld<B>,
    rank: number,
    name: string,
    timeoutMs: number,
    protected readonly emptyBuffer: B,
    private readonly bytesPerElement: (b: B) => number,
  ) {
    super(rank, world.size, name, timeoutMs, world.kind);
  }

  protected elementBytes(b: B): number {
    return this.bytesPerElement(b);
  }

  close(): void {
    this.world.abort(this.rank, 'the group was closed');
  }

  /**
   * Every rank leaves its (color, key) in the world, meets the others at a rendezvous, and the
   * ranks of one color share a new world (the first to get there makes it).
   */
  async split(color: number, key: number = this.rank): Promise<LocalExchangeGroup<B>> {
    checkSplitArgs(color, key);
    const seq = this.nextSeq;
    let info = this.world.splits.get(seq);
    if (info === undefined) this.world.splits.set(seq, (info = { pairs: new Int32Array(2 * this.size), worlds: new Map(), left: this.size }));
    info.pairs[2 * this.rank] = color;
    info.pairs[2 * this.rank + 1] = key;
    await this.rendezvous('split');
    const members = splitMembers(info.pairs, color);
    let world = info.worlds.get(color);
    if (world === undefined) {
      info.worlds.set(color, (world = new LocalWorld<B>(members.length, this.world.kind)));
      this.world.children.push(world);
    }
    if (--info.left === 0) this.world.splits.delete(seq);
    return this.subGroup(world, members.indexOf(this.rank), `${this.name}/${color}`);
  }

  /** This backend's group for rank `rank` of a sub-world (a device group keeps its device and streams). */
  protected subGroup(world: LocalWorld<B>, rank: number, name: string): LocalExchangeGroup<B> {
    return new LocalExchangeGroup<B>(world, rank, name, this.timeoutMs, this.emptyBuffer, this.bytesPerElement);
  }

  protected exchange(seq: number, op: string, type: string, items: readonly SendItem<B>[], slots: ReadonlyMap<number, B>): Promise<void> {
    const f = this.world.failure;
    if (f !== null) return Promise.reject(new CommAbortedError(f.rank, `${this.describe(op, seq)} aborted: rank ${f.rank} failed: ${f.reason}`));
    return new Promise<void>((resolve, reject) => {
      const a: Arrival<B> = { op, type, items, slots, resolve, reject, timer: undefined };
      a.timer = setTimeout(() => {
        const row = this.world.pending.get(seq);
        if (row === undefined || row[this.rank] !== a) return;
        // The arrival stays: a late peer still completes the exchange, as on the thread backend.
        const missing = row.flatMap((x, r) => (x === undefined && r !== this.rank ? [r] : []));
        reject(new CommTimeoutError(op, this.rank, missing, `${this.describe(op, seq)} timed out after ${this.timeoutMs} ms: ranks ${missing.join(', ')} did not arrive`));
      }, this.timeoutMs);
      this.world.arrive(this, seq, a);
    });
  }
}

export interface LocalRunOptions {
  /** Timeout of every collective, in milliseconds (default 60 000). */
  timeoutMs?: number;
  /** Group name used in error messages (default "local"). */
  name?: string;
}

/** The P groups of one in-process world, rank order; drive them concurrently or they deadlock. */
export function createLocalGroups(size: number, options: LocalRunOptions = {}): LocalProcessGroup[] {
  return makeWorld(size, options).groups;
}

/** The host in-process group (typed arrays). */
export type LocalProcessGroup = LocalExchangeGroup<HostArray>;

function makeWorld(size: number, options: LocalRunOptions): { world: LocalWorld<HostArray>; groups: LocalProcessGroup[] } {
  if (!Number.isInteger(size) || size < 1) throw new InvalidArgumentError('size', 'must be a positive integer', `got ${size}`);
  const world = new LocalWorld(size, hostBuffers);
  const groups = Array.from(
    { length: size },
    (_, r) => new LocalExchangeGroup<HostArray>(world, r, options.name ?? 'local', options.timeoutMs ?? 60_000, new Int32Array(0), (b) => b.BYTES_PER_ELEMENT),
  );
  return { world, groups };
}

/**
 * Runs `fn` on `size` in-process ranks concurrently and resolves with the results in rank order.
 * The first rank that throws aborts the others' collectives; the promise then rejects with a
 * RankFailedError naming it.
 */
export async function runLocalRanks<R>(size: number, fn: (group: ProcessGroup, rank: number) => R | Promise<R>, options: LocalRunOptions = {}): Promise<R[]> {
  const { world, groups } = makeWorld(size, options);
  return runRanksOf(world, groups, fn);
}

/** Runs `fn` on every group of an in-process world; the first rank that throws aborts the rest. */
export async function runRanksOf<G, R>(world: { abort(rank: number, reason: string): void }, groups: readonly G[], fn: (group: G, rank: number) => R | Promise<R>): Promise<R[]> {
  let rootCause = -1;
  const outcomes = await Promise.all(
    groups.map(async (g, rank): Promise<RankOutcome<R>> => {
      try {
        return { rank, status: 'ok', value: await fn(g, rank) };
      } catch (e) {
        const error = serializeError(e);
        const aborted = rootCause >= 0 && e instanceof CommAbortedError;
        if (!aborted && rootCause < 0) {
          rootCause = rank;
          world.abort(rank, `${error.name}: ${error.message}`);
        }
        return { rank, status: aborted ? 'aborted' : 'failed', error };
      }
    }),
  );
  if (rootCause >= 0) throw new RankFailedError(rootCause, outcomes);
  return outcomes.map((o) => (o as { value: R }).value);
}
