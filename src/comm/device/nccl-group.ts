/**
 * The NCCL process group: one process per GPU, collectives on the group's communication stream.
 * A collective's handle resolves once NCCL has it queued (the host never waits for the device);
 * work ordered after the group's stream sees its data.
 *
 * Fail-fast, as torchrun's watchdog does: the communicator is non-blocking, every call's state is
 * polled against the group's deadline, and a watchdog follows each queued collective by an event:
 * one that has not completed within the timeout (a peer that died, hung, or never called it)
 * aborts the communicator (ncclCommAbort) and fails the group with an error naming the
 * collective and its sequence number; `onFatal` then decides (the launcher's rank bootstrap
 * exits, so the launcher can name the rank). A launcher that learns of a failed rank calls
 * `abort(rank, reason)`, which does the same and names that rank. Node-only.
 */
import { InvalidArgumentError } from '../../errors.js';
import type { CudaDevice, Event, Stream } from '../../device/device.js';
import type { CuHandle } from '../../device/cuda-driver.js';
import { type DeviceArray, deviceByteLength, devicePtr, deviceSubarray } from '../../device/device-array.js';
import { CommAbortedError, CommError, CommTimeoutError } from '../errors.js';
import { Work } from '../exchange-group.js';
import type { AllReduceOptions, CommWork, Counts, ReduceOp } from '../process-group.js';
import type { DeviceProcessGroup } from './device-buffers.js';
import { NcclDataType, NcclRedOp, NcclResult, ncclLib, type NcclLib } from './nccl-lib.js';

export interface NcclGroupOptions {
  readonly device: CudaDevice;
  readonly rank: number;
  readonly size: number;
  /** The 128-byte ncclUniqueId every rank received from rank 0. */
  readonly uniqueId: Uint8Array;
  /** Collective (and init) timeout in milliseconds (default 60 000). */
  readonly timeoutMs?: number;
  readonly name?: string;
  /** Called once when the group fails on its own (a collective timed out, NCCL reported an error). */
  readonly onFatal?: (error: Error) => void;
}

const WATCHDOG_MS = 50;

function dtypeOf(a: DeviceArray): number {
  const t = (NcclDataType as Record<string, number | undefined>)[a.dtype];
  if (t === undefined) throw new InvalidArgumentError('data', `NCCL moves int32, float16, bfloat16, float32 or float64 data`, `got ${a.dtype}`);
  return t;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface InFlight {
  readonly seq: number;
  readonly op: string;
  readonly event: Event;
  readonly since: number;
}

export class NcclProcessGroup implements DeviceProcessGroup {
  readonly backend = 'nccl';
  readonly stream: Stream;
  readonly computeStream: Stream;
  private seq = 0;
  private failure: CommError | null = null;
  private readonly inFlight: InFlight[] = [];
  private readonly watchdog: ReturnType<typeof setInterval>;
  private closed = false;
  private readonly barrierBuf: DeviceArray;

  private constructor(
    private readonly lib: NcclLib,
    private readonly comm: CuHandle,
    readonly device: CudaDevice,
    readonly rank: number,
    readonly size: number,
    readonly name: string,
    readonly timeoutMs: number,
    private readonly onFatal: ((e: Error) => void) | undefined,
    streams?: { readonly stream: Stream; readonly computeStream: Stream },
  ) {
    this.stream = streams?.stream ?? device.createStream({ blocking: true });
    this.computeStream = streams?.computeStream ?? device.createStream({ blocking: true });
    this.barrierBuf = { buffer: device.alloc(4), byteOffset: 0, length: 1, dtype: 'float32' };
    this.barrierBuf.buffer.fill(0);
    this.watchdog = setInterval(() => this.watch(), WATCHDOG_MS);
    this.watchdog.unref();
  }

  /** Joins the communicator of `size` ranks (every rank calls this with the same id). */
  static async create(options: NcclGroupOptions): Promise<NcclProcessGroup> {
    const { device, rank, size, uniqueId } = options;
    if (!Number.isInteger(size) || size < 1) throw new InvalidArgumentError('size', 'must be a positive integer', `got ${size}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= size) throw new InvalidArgumentError('rank', `must be in [0, ${size})`, `got ${rank}`);
    if (!(uniqueId instanceof Uint8Array) || uniqueId.length !== 128) throw new InvalidArgumentError('uniqueId', 'must be the 128 bytes of an ncclUniqueId');
    const lib = ncclLib();
    const timeoutMs = options.timeoutMs ?? 60_000;
    const name = options.name ?? 'nccl';
    device.makeCurrent();
    const comm = lib.commInitRank(size, uniqueId, rank);
    await settle(lib, comm, timeoutMs, () => `ncclCommInitRank on rank ${rank} of group '${name}' did not complete in ${timeoutMs} ms: a rank did not join`);
    return new NcclProcessGroup(lib, comm, device, rank, size, name, timeoutMs, options.onFatal);
  }

  /** NCCL's version, e.g. "2.28.3". */
  get ncclVersion(): string {
    return this.lib.versionString;
  }

  /**
   * A sub-group of the ranks that pass the same `color` (ordered by `key`), e.g. one row of a 2-D
   * mesh. It queues on this group's streams, so its collectives and this group's run in the order
   * they are issued (the distributed runtime mixes them in one call); every rank issues them in
   * the same order, so no rank waits on a collective that a peer queued behind another.
   */
  async split(color: number, key = this.rank): Promise<NcclProcessGroup> {
    this.throwIfFailed('split');
    const comm = this.lib.commSplit(this.comm, color, key);
    await settle(this.lib, comm, this.timeoutMs, () => `ncclCommSplit on rank ${this.rank} of group '${this.name}' did not complete in ${this.timeoutMs} ms`);
    const [r, n] = this.lib.rankAndSize(comm);
    return new NcclProcessGroup(this.lib, comm, this.device, r, n, `${this.name}/${color}`, this.timeoutMs, this.onFatal, { stream: this.stream, computeStream: this.computeStream });
  }

  allToAllV<T extends DeviceArray>(send: T, sendCounts: Counts, recv: T, recvCounts: Counts): CommWork<T> {
    this.checkCounts(sendCounts, 'sendCounts', send.length);
    this.checkCounts(recvCounts, 'recvCounts', recv.length);
    if (send.dtype !== recv.dtype) throw new InvalidArgumentError('recv', 'must have the same element type as send', `${recv.dtype} vs ${send.dtype}`);
    const me = this.rank;
    if (sendCounts[me] !== recvCounts[me]) throw new InvalidArgumentError('recvCounts', `entry ${me} (this rank) must equal sendCounts[${me}]`);
    return this.run('allToAllV', recv, () => {
      const dt = dtypeOf(send);
      let so = 0;
      let ro = 0;
      const parts: Array<() => void> = [];
      for (let p = 0; p < this.size; p++) {
        const s = deviceSubarray(send, so, so + sendCounts[p]);
        const r = deviceSubarray(recv, ro, ro + recvCounts[p]);
        so += sendCounts[p];
        ro += recvCounts[p];
        if (p === me) {
          r.buffer.copyFrom(s.buffer, deviceByteLength(s), this.stream, s.byteOffset, r.byteOffset);
          continue;
        }
        if (s.length > 0) parts.push(() => this.lib.send(devicePtr(s), s.length, dt, p, this.comm, this.stream.handle));
        if (r.length > 0) parts.push(() => this.lib.recv(devicePtr(r), r.length, dt, p, this.comm, this.stream.handle));
      }
      this.grouped(parts);
    });
  }

  allGather<T extends DeviceArray>(send: T, recv: T): CommWork<T> {
    if (recv.length !== send.length * this.size) throw new InvalidArgumentError('recv.length', `must be size × send.length = ${this.size} × ${send.length}`, `got ${recv.length}`);
    return this.run('allGather', recv, () => this.lib.allGather(devicePtr(send), devicePtr(recv), send.length, dtypeOf(send), this.comm, this.stream.handle));
  }

  allGatherV<T extends DeviceArray>(send: T, recv: T, recvCounts: Counts): CommWork<T> {
    this.checkCounts(recvCounts, 'recvCounts', recv.length);
    if (recvCounts[this.rank] !== send.length) throw new InvalidArgumentError('recvCounts', `entry ${this.rank} (this rank) must equal send.length`);
    return this.run('allGatherV', recv, () => {
      const dt = dtypeOf(send);
      const parts: Array<() => void> = [];
      let ro = 0;
      for (let p = 0; p < this.size; p++) {
        const r = deviceSubarray(recv, ro, ro + recvCounts[p]);
        ro += recvCounts[p];
        if (p === this.rank) {
          r.buffer.copyFrom(send.buffer, deviceByteLength(send), this.stream, send.byteOffset, r.byteOffset);
          continue;
        }
        if (send.length > 0) parts.push(() => this.lib.send(devicePtr(send), send.length, dt, p, this.comm, this.stream.handle));
        if (r.length > 0) parts.push(() => this.lib.recv(devicePtr(r), r.length, dt, p, this.comm, this.stream.handle));
      }
      this.grouped(parts);
    });
  }

  allReduce<T extends DeviceArray>(data: T, op: ReduceOp, options: AllReduceOptions = {}): CommWork<T> {
    void options;
    if (op !== 'sum' && op !== 'max') throw new InvalidArgumentError('op', "must be 'sum' or 'max'", `got ${String(op)}`);
    return this.run(`allReduce(${op})`, data, () => this.lib.allReduce(devicePtr(data), devicePtr(data), data.length, dtypeOf(data), NcclRedOp[op], this.comm, this.stream.handle));
  }

  broadcast<T extends DeviceArray>(data: T, root: number): CommWork<T> {
    if (!Number.isInteger(root) || root < 0 || root >= this.size) throw new InvalidArgumentError('root', `must be a rank in [0, ${this.size})`, `got ${root}`);
    return this.run(`broadcast(root ${root})`, data, () => this.lib.broadcast(devicePtr(data), devicePtr(data), data.length, dtypeOf(data), root, this.comm, this.stream.handle));
  }

  barrier(): CommWork<void> {
    const w = this.run('barrier', this.barrierBuf, () => this.lib.allReduce(devicePtr(this.barrierBuf), devicePtr(this.barrierBuf), 1, NcclDataType.float32, NcclRedOp.sum, this.comm, this.stream.handle));
    return new Work(w.wait().then(() => undefined));
  }

  /** Aborts the communicator because `rank` failed: pending and later collectives fail naming it. */
  abort(rank: number, reason: string): void {
    this.fail(new CommAbortedError(rank, `group '${this.name}' on rank ${this.rank} aborted: rank ${rank} failed: ${reason}`), false);
  }

  /** Finalizes and destroys the communicator once its queued work is done. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watchdog);
    if (this.failure !== null) return;
    try {
      this.stream.synchronize();
      this.lib.destroy(this.comm);
    } catch {
      this.lib.abort(this.comm);
    }
  }

  // -------------------------------------------------------------------------------------------

  private grouped(parts: ReadonlyArray<() => void>): void {
    if (parts.length === 0) return;
    this.lib.groupStart();
    try {
      for (const p of parts) p();
    } finally {
      this.lib.groupEnd(this.comm);
    }
  }

  /** Queues one collective; resolves once NCCL has it queued (its completion is watched). */
  private run<T>(op: string, result: T, enqueue: () => void): CommWork<T> {
    const seq = this.seq++;
    const describe = `${op} (collective #${seq}) on rank ${this.rank} of group '${this.name}'`;
    const done = (async (): Promise<T> => {
      this.throwIfFailed(describe);
      this.device.makeCurrent();
      enqueue();
      await settle(this.lib, this.comm, this.timeoutMs, () => `${describe} was not queued within ${this.timeoutMs} ms`, () => this.failure);
      this.inFlight.push({ seq, op, event: this.device.createEvent().record(this.stream), since: Date.now() });
      return result;
    })();
    return new Work(done);
  }

  private watch(): void {
    if (this.failure !== null || this.closed) return;
    const now = Date.now();
    while (this.inFlight.length > 0) {
      const f = this.inFlight[0];
      if (f.event.query()) {
        f.event.destroy();
        this.inFlight.shift();
        continue;
      }
      const state = this.lib.asyncError(this.comm);
      if (state !== NcclResult.Success && state !== NcclResult.InProgress) {
        this.fail(new CommError(`${f.op} (collective #${f.seq}) on rank ${this.rank} of group '${this.name}': NCCL reported error ${state}`), true);
      } else if (now - f.since > this.timeoutMs) {
        this.fail(new CommTimeoutError(f.op, this.rank, [], `${f.op} (collective #${f.seq}) on rank ${this.rank} of group '${this.name}' did not complete within ${this.timeoutMs} ms: a peer died, hung or did not call it; the communicator was aborted`), true);
      }
      return;
    }
  }

  private fail(e: CommError, own: boolean): void {
    if (this.failure !== null) return;
    this.failure = e;
    clearInterval(this.watchdog);
    this.lib.abort(this.comm);
    if (own) this.onFatal?.(e);
  }

  private throwIfFailed(what: string): void {
    if (this.failure !== null) throw this.failure instanceof CommAbortedError ? new CommAbortedError(this.failure.failedRank, `${what}: ${this.failure.message}`) : this.failure;
  }

  private checkCounts(counts: Counts, what: string, total: number): void {
    if (counts.length !== this.size) throw new InvalidArgumentError(what, `must have one entry per rank (${this.size})`, `got ${counts.length}`);
    let sum = 0;
    for (let i = 0; i < counts.length; i++) {
      if (!Number.isInteger(counts[i]) || counts[i] < 0) throw new InvalidArgumentError(`${what}[${i}]`, 'must be a non-negative integer', `got ${counts[i]}`);
      sum += counts[i];
    }
    if (sum !== total) throw new InvalidArgumentError(what, 'must add up to the buffer length', `${sum} vs ${total}`);
  }
}

/** Polls a non-blocking communicator until it is no longer in progress; aborts it past the deadline. */
async function settle(lib: NcclLib, comm: CuHandle, timeoutMs: number, timeoutMessage: () => string, failed: () => Error | null = () => null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const f = failed();
    if (f !== null) throw f;
    const state = lib.asyncError(comm);
    if (state === NcclResult.Success) return;
    if (state !== NcclResult.InProgress) lib.check('ncclCommGetAsyncError', state, comm);
    if (Date.now() > deadline) {
      lib.abort(comm);
      throw new CommTimeoutError('init', -1, [], timeoutMessage());
    }
    await sleep(1);
  }
}
