/**
 * The process group: one narrow interface to the ranks of a context-parallel group. Think of it
 * as a connector to whatever moves bytes between ranks: worker threads sharing memory today, NCCL
 * over NVLink later. GroupCast / GroupReduce and the runtime talk only to this interface.
 *
 * It speaks buffers and element counts, never tensors: a collective reads and writes whole
 * contiguous buffers, and counts are in elements of that buffer's type, so the same calls fit
 * host typed arrays and device allocations. The buffer type is a parameter for that reason; the
 * host backends use typed arrays. Every collective starts at once and returns a `CommWork`
 * handle, so a rank can compute while the exchange runs and only await the handle when it needs
 * the result.
 *
 * Contract shared by all backends: every rank issues the same collectives in the same order (as
 * with MPI or NCCL); the i-th collective of one rank meets the i-th of every other. A collective
 * that does not complete within the group's timeout rejects, naming the ranks it still waits for.
 * Send buffers must not change, and receive buffers must not be read, until the handle resolves.
 *
 * This module is browser-safe: it imports nothing from Node.
 */

/** A host buffer: float32, float64, 16-bit floats (raw bits: bfloat16 or float16) or int32. */
export type HostArray = Float32Array | Float64Array | Uint16Array | Int32Array;

/** Per-rank element counts of a variable-size collective (length = group size). */
export type Counts = ArrayLike<number>;

/** Element-wise reductions of `allReduce`. */
export type ReduceOp = 'sum' | 'max';

/** What a Uint16Array holds when a collective must do arithmetic on it. */
export type HalfType = 'bfloat16' | 'float16';

/**
 * A started collective. It is awaitable itself (`await group.barrier()` waits for the barrier),
 * and `wait()` gives the same promise explicitly.
 */
export interface CommWork<T> extends PromiseLike<T> {
  /** Resolves with the result once this rank's part is done; rejects on timeout, mismatch or abort. Repeatable. */
  wait(): Promise<T>;
  /** Whether the collective has finished on this rank (wait() would settle without further exchange). */
  readonly completed: boolean;
}

export interface AllReduceOptions {
  /** Required for Uint16Array data: the 16-bit float format (arithmetic runs in float32). */
  halfType?: HalfType;
}

/** What every process group says about itself, whatever buffers it moves (what a runtime key holds). */
export interface GroupInfo {
  /** This rank's index, in [0, size). */
  readonly rank: number;
  /** Number of ranks in the group. */
  readonly size: number;
  /** Label used in error messages and logs. */
  readonly name: string;
  /** Which transport moves the data ("threads", "local", "local-device", "nccl"). */
  readonly backend: string;
  /** Collective timeout in milliseconds, the same on every rank. */
  readonly timeoutMs: number;
}

export interface ProcessGroup<B extends object = HostArray> extends GroupInfo {

  /**
   * All-to-all with variable counts: elements [Σ sendCounts[<r], +sendCounts[r]) of `send` go to
   * rank r, which receives them at [Σ recvCounts[<s], +recvCounts[s]) of its `recv` (rank order).
   */
  allToAllV<T extends B>(send: T, sendCounts: Counts, recv: T, recvCounts: Counts): CommWork<T>;
  /** Every rank's `send` (all of one length) concatenated in rank order into `recv` (size × length). */
  allGather<T extends B>(send: T, recv: T): CommWork<T>;
  /** Like allGather with per-rank lengths: rank s's `send` lands at [Σ recvCounts[<s], +recvCounts[s]). */
  allGatherV<T extends B>(send: T, recv: T, recvCounts: Counts): CommWork<T>;
  /** Reduces `data` element-wise over all ranks, in place; every rank gets bit-identical results. */
  allReduce<T extends B>(data: T, op: ReduceOp, options?: AllReduceOptions): CommWork<T>;
  /** Copies `data` of rank `root` into `data` of every other rank (same length everywhere). */
  broadcast<T extends B>(data: T, root: number): CommWork<T>;
  /** Resolves once every rank has entered the barrier. */
  barrier(): CommWork<void>;
  /**
   * A sub-group (a collective: every rank calls it): the ranks that pass the same `color` (an
   * integer >= 0), ranked by `key` (default: this rank), ties by rank. Its collectives are its
   * own sequence, independent of this group's: one row or column of a 2-D mesh (comm/mesh.ts).
   */
  split(color: number, key?: number): Promise<ProcessGroup<B>>;
  /** Rejects this rank's pending and future collectives and releases the transport; idempotent. */
  close(): void;
}
