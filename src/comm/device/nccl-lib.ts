/**
 * libnccl through koffi: found like libcuda ($MAGI_ATTN_LIBNCCL, then the loader's search and the
 * usual paths; a clear error lists every path tried), every call's ncclResult_t checked, and the
 * communicator created non-blocking so that a hung peer can be detected and aborted instead of
 * hanging this process. Node-only.
 *
 * ABI notes: ncclUniqueId is a 128-byte struct passed BY VALUE to ncclCommInitRankConfig; the
 * config is NCCL 2.28's ncclConfig_t layout with `size` set, which NCCL >= 2.14 reads up to the
 * size it knows (older fields kept, newer left at their defaults).
 */
import { join } from 'node:path';
import koffi from 'koffi';
import { loadFirstLibrary } from '../../device/cuda-driver.js';
import type { CuHandle, CuDevicePtr } from '../../device/cuda-driver.js';

export const NcclResult = { Success: 0, UnhandledCudaError: 1, SystemError: 2, InternalError: 3, InvalidArgument: 4, InvalidUsage: 5, RemoteError: 6, InProgress: 7, Timeout: 8 } as const;
export const NcclDataType = { int32: 2, float16: 6, float32: 7, float64: 8, bfloat16: 9 } as const;
export const NcclRedOp = { sum: 0, max: 2 } as const;
const RESULT_NAMES = ['ncclSuccess', 'ncclUnhandledCudaError', 'ncclSystemError', 'ncclInternalError', 'ncclInvalidArgument', 'ncclInvalidUsage', 'ncclRemoteError', 'ncclInProgress', 'ncclTimeout'];
const CONFIG_UNDEF_INT = -2147483648;
const API_MAGIC = 0xcafebeef;

/** A failed NCCL call: names the call, NCCL's result and its last error text. */
export class NcclError extends Error {
  override name = 'NcclError';
  constructor(
    readonly call: string,
    readonly code: number,
    detail: string,
  ) {
    super(`${call} failed: ${RESULT_NAMES[code] ?? `ncclResult ${code}`} (${code})${detail ? `: ${detail}` : ''}`);
  }
}

/** Where libnccl is looked for, in order. */
export function defaultLibncclCandidates(): string[] {
  const out: string[] = [];
  if (process.env.MAGI_ATTN_LIBNCCL) out.push(process.env.MAGI_ATTN_LIBNCCL);
  out.push('libnccl.so.2', '/usr/lib/x86_64-linux-gnu/libnccl.so.2', '/usr/lib64/libnccl.so.2', '/usr/lib/aarch64-linux-gnu/libnccl.so.2');
  for (const home of [process.env.CUDA_HOME, '/usr/local/cuda']) if (home) out.push(join(home, 'lib64', 'libnccl.so.2'));
  out.push('libnccl.so');
  return out;
}

type Fn = (...args: unknown[]) => number;

const UniqueId = koffi.struct('magi_ncclUniqueId', { internal: koffi.array('uint8_t', 128, 'Typed') });
const Config = koffi.struct('magi_ncclConfig_v22800', {
  size: 'size_t',
  magic: 'uint',
  version: 'uint',
  blocking: 'int',
  cgaClusterSize: 'int',
  minCTAs: 'int',
  maxCTAs: 'int',
  netName: 'const char *',
  splitShare: 'int',
  trafficClass: 'int',
  commName: 'const char *',
  collnetEnable: 'int',
  CTAPolicy: 'int',
  shrinkShare: 'int',
  nvlsCTAs: 'int',
  nChannelsPerNetPeer: 'int',
  nvlinkCentricSched: 'int',
});

/** The loaded library: one checked method per call the NCCL process group uses. */
export class NcclLib {
  readonly path: string;
  /** NCCL's version code, e.g. 22803 for 2.28.3. */
  readonly version: number;
  private readonly f: Record<string, Fn> = {};
  private readonly errorString: (code: number) => string;
  private readonly lastError: (comm: CuHandle) => string;

  constructor(candidates: readonly string[] = defaultLibncclCandidates()) {
    const { lib, path } = loadFirstLibrary('libnccl', candidates, 'NCCL was not found (install libnccl2, or set MAGI_ATTN_LIBNCCL to the path of libnccl.so.2)');
    this.path = path;
    const P = 'void *';
    const OP = koffi.out(koffi.pointer('void *'));
    const OI = koffi.out(koffi.pointer('int'));
    const defs: Array<[string, unknown[]]> = [
      ['ncclGetVersion', [OI]],
      ['ncclGetUniqueId', [koffi.out(koffi.pointer(UniqueId))]],
      ['ncclCommInitRankConfig', [OP, 'int', UniqueId, 'int', koffi.pointer(Config)]],
      ['ncclCommGetAsyncError', [P, OI]],
      ['ncclCommAbort', [P]],
      ['ncclCommFinalize', [P]],
      ['ncclCommDestroy', [P]],
      ['ncclCommSplit', [P, 'int', 'int', OP, koffi.pointer(Config)]],
      ['ncclCommCount', [P, OI]],
      ['ncclCommUserRank', [P, OI]],
      ['ncclGroupStart', []],
      ['ncclGroupEnd', []],
      ['ncclSend', ['uint64_t', 'size_t', 'int', 'int', P, P]],
      ['ncclRecv', ['uint64_t', 'size_t', 'int', 'int', P, P]],
      ['ncclAllReduce', ['uint64_t', 'uint64_t', 'size_t', 'int', 'int', P, P]],
      ['ncclAllGather', ['uint64_t', 'uint64_t', 'size_t', 'int', P, P]],
      ['ncclBroadcast', ['uint64_t', 'uint64_t', 'size_t', 'int', 'int', P, P]],
    ];
    const func = lib.func.bind(lib) as unknown as (name: string, ret: string, args: unknown[]) => Fn;
    for (const [name, args] of defs) this.f[name] = func(name, 'int', args);
    this.errorString = lib.func('ncclGetErrorString', 'const char *', ['int']) as unknown as (code: number) => string;
    this.lastError = lib.func('ncclGetLastError', 'const char *', [P]) as unknown as (comm: CuHandle) => string;
    const v: [number] = [0];
    this.check('ncclGetVersion', this.f.ncclGetVersion!(v), null);
    this.version = v[0];
  }

  /** "2.28.3" from the version code. */
  get versionString(): string {
    const v = this.version;
    return v >= 10000 ? `${Math.floor(v / 10000)}.${Math.floor(v / 100) % 100}.${v % 100}` : `${Math.floor(v / 1000)}.${Math.floor(v / 100) % 10}.${v % 100}`;
  }

  /** Throws NcclError unless `rc` is ncclSuccess or (when allowed) ncclInProgress. */
  check(call: string, rc: number, comm: CuHandle | null, allowInProgress = false): number {
    if (rc === NcclResult.Success || (allowInProgress && rc === NcclResult.InProgress)) return rc;
    const detail = [this.errorString(rc), comm === null ? '' : this.lastError(comm)].filter((s) => s).join('; ');
    throw new NcclError(call, rc, detail);
  }

  getUniqueId(): Uint8Array {
    const out: [{ internal: Uint8Array } | null] = [null];
    this.check('ncclGetUniqueId', this.f.ncclGetUniqueId!(out), null);
    return Uint8Array.from((out[0] as { internal: Uint8Array }).internal);
  }

  private config(): Record<string, unknown> {
    return {
      size: koffi.sizeof(Config),
      magic: API_MAGIC,
      version: 22800,
      blocking: 0,
      cgaClusterSize: CONFIG_UNDEF_INT,
      minCTAs: CONFIG_UNDEF_INT,
      maxCTAs: CONFIG_UNDEF_INT,
      netName: null,
      splitShare: CONFIG_UNDEF_INT,
      trafficClass: CONFIG_UNDEF_INT,
      commName: null,
      collnetEnable: CONFIG_UNDEF_INT,
      CTAPolicy: CONFIG_UNDEF_INT,
      shrinkShare: CONFIG_UNDEF_INT,
      nvlsCTAs: CONFIG_UNDEF_INT,
      nChannelsPerNetPeer: CONFIG_UNDEF_INT,
      nvlinkCentricSched: CONFIG_UNDEF_INT,
    };
  }

  /** Starts a non-blocking communicator; poll `asyncError` until it is no longer in progress. */
  commInitRank(nranks: number, id: Uint8Array, rank: number): CuHandle {
    const out: [CuHandle] = [null];
    this.check('ncclCommInitRankConfig', this.f.ncclCommInitRankConfig!(out, nranks, { internal: id }, rank, this.config()), null, true);
    return out[0];
  }

  /** Splits a communicator (non-blocking config); NCCL_SPLIT_NOCOLOR is -1. */
  commSplit(comm: CuHandle, color: number, key: number): CuHandle {
    const out: [CuHandle] = [null];
    this.check('ncclCommSplit', this.f.ncclCommSplit!(comm, color, key, out, this.config()), comm, true);
    return out[0];
  }

  /** [rank, size] of a communicator. */
  rankAndSize(comm: CuHandle): [number, number] {
    const r: [number] = [0];
    const n: [number] = [0];
    this.check('ncclCommUserRank', this.f.ncclCommUserRank!(comm, r), comm);
    this.check('ncclCommCount', this.f.ncclCommCount!(comm, n), comm);
    return [r[0], n[0]];
  }

  /** The communicator's state: ncclSuccess, ncclInProgress, or the error that broke it. */
  asyncError(comm: CuHandle): number {
    const out: [number] = [0];
    this.check('ncclCommGetAsyncError', this.f.ncclCommGetAsyncError!(comm, out), comm);
    return out[0];
  }

  abort(comm: CuHandle): void {
    this.f.ncclCommAbort!(comm);
  }

  finalize(comm: CuHandle): void {
    this.check('ncclCommFinalize', this.f.ncclCommFinalize!(comm), comm, true);
  }

  destroy(comm: CuHandle): void {
    this.check('ncclCommDestroy', this.f.ncclCommDestroy!(comm), comm, true);
  }

  groupStart(): void {
    this.check('ncclGroupStart', this.f.ncclGroupStart!(), null);
  }

  groupEnd(comm: CuHandle): void {
    this.check('ncclGroupEnd', this.f.ncclGroupEnd!(), comm, true);
  }

  send(buf: CuDevicePtr, count: number, dtype: number, peer: number, comm: CuHandle, stream: CuHandle): void {
    this.check('ncclSend', this.f.ncclSend!(buf, count, dtype, peer, comm, stream), comm, true);
  }

  recv(buf: CuDevicePtr, count: number, dtype: number, peer: number, comm: CuHandle, stream: CuHandle): void {
    this.check('ncclRecv', this.f.ncclRecv!(buf, count, dtype, peer, comm, stream), comm, true);
  }

  allReduce(send: CuDevicePtr, recv: CuDevicePtr, count: number, dtype: number, op: number, comm: CuHandle, stream: CuHandle): void {
    this.check('ncclAllReduce', this.f.ncclAllReduce!(send, recv, count, dtype, op, comm, stream), comm, true);
  }

  allGather(send: CuDevicePtr, recv: CuDevicePtr, count: number, dtype: number, comm: CuHandle, stream: CuHandle): void {
    this.check('ncclAllGather', this.f.ncclAllGather!(send, recv, count, dtype, comm, stream), comm, true);
  }

  broadcast(send: CuDevicePtr, recv: CuDevicePtr, count: number, dtype: number, root: number, comm: CuHandle, stream: CuHandle): void {
    this.check('ncclBroadcast', this.f.ncclBroadcast!(send, recv, count, dtype, root, comm, stream), comm, true);
  }
}

let lib: NcclLib | undefined;

/** The process-wide libnccl (loaded on first use; throws CudaUnavailableError listing every path tried). */
export function ncclLib(): NcclLib {
  lib ??= new NcclLib();
  return lib;
}
