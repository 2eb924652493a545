/**
 * The CUDA driver API, reached through koffi (FFI). This module finds and loads libcuda, binds
 * the handful of driver calls the CUDA backend uses, and checks every result: a non-zero
 * CUresult throws a `CudaError` naming the call and the driver's own error name and string.
 *
 * It is the raw layer: handles are opaque values, device pointers are bigints, nothing is
 * reference-counted. `device.ts` builds the object model (device, stream, buffer, kernel) on it.
 * Node-only: it is imported by the CUDA backend, never by code that must run in a browser.
 */

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import koffi from 'koffi';
import type { LibraryHandle } from 'koffi';

/** An opaque driver handle (CUcontext, CUstream, CUevent, CUmodule, CUfunction); null is the default. */
export type CuHandle = unknown;
/** A device address (CUdeviceptr). */
export type CuDevicePtr = bigint;

/** A CUDA library or device cannot be used here: names what was looked for and where. */
export class CudaUnavailableError extends Error {
  override name = 'CudaUnavailableError';
  constructor(
    /** What is missing: 'libcuda', 'libnvrtc', 'libnccl', 'libcublasLt' or 'device'. */
    readonly missing: string,
    message: string,
    /** Every path or name tried, with why it failed. */
    readonly tried: readonly string[] = [],
  ) {
    super(tried.length === 0 ? message : `${message}\n  tried:\n    ${tried.join('\n    ')}`);
  }
}

/** A CUDA driver call returned an error. `call` names it; `code`/`codeName` are the CUresult. */
export class CudaError extends Error {
  override name = 'CudaError';
  constructor(
    readonly call: string,
    readonly code: number,
    readonly codeName: string,
    readonly description: string,
  ) {
    super(`${call} failed: ${codeName} (${code}): ${description}`);
  }
}

/** CUresult values the layer itself reacts to. */
export const CUresult = {
  SUCCESS: 0,
  INVALID_VALUE: 1,
  OUT_OF_MEMORY: 2,
  NOT_INITIALIZED: 3,
  STUB_LIBRARY: 34,
  INSUFFICIENT_DRIVER: 35,
  NO_DEVICE: 100,
  INVALID_DEVICE: 101,
  NOT_READY: 600,
} as const;

/** CUdevice_attribute values used here. */
export const CuDeviceAttr = {
  MAX_THREADS_PER_BLOCK: 1,
  WARP_SIZE: 10,
  CLOCK_RATE: 13,
  MULTIPROCESSOR_COUNT: 16,
  MEMORY_CLOCK_RATE: 36,
  GLOBAL_MEMORY_BUS_WIDTH: 37,
  L2_CACHE_SIZE: 38,
  COMPUTE_CAPABILITY_MAJOR: 75,
  COMPUTE_CAPABILITY_MINOR: 76,
  MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: 81,
  MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: 97,
} as const;

/** CUfunction_attribute values used here. */
export const CuFuncAttr = {
  MAX_THREADS_PER_BLOCK: 0,
  SHARED_SIZE_BYTES: 1,
  CONST_SIZE_BYTES: 2,
  LOCAL_SIZE_BYTES: 3,
  NUM_REGS: 4,
  PTX_VERSION: 5,
  BINARY_VERSION: 6,
  MAX_DYNAMIC_SHARED_SIZE_BYTES: 8,
} as const;

/** CUevent flags. */
/** cuda.h's CUtensorMapDataType, CUtensorMapSwizzle and CUtensorMapL2promotion values we use. */
export const CuTensorMap = {
  DATA_TYPE_FLOAT16: 6,
  DATA_TYPE_FLOAT32: 7,
  DATA_TYPE_BFLOAT16: 9,
  SWIZZLE_128B: 3,
  L2_PROMOTION_128B: 2,
  L2_PROMOTION_256B: 3,
} as const;

export const CU_EVENT_DEFAULT = 0;
export const CU_EVENT_DISABLE_TIMING = 2;
/** CUstream flags. */
export const CU_STREAM_NON_BLOCKING = 1;

/** Options for finding the libraries; the defaults search the standard places. */
export interface LibrarySearchOptions {
  /** Paths or bare names to try for libcuda, in order (replaces the default list). */
  libcudaCandidates?: readonly string[];
  /** Paths or bare names to try for libnvrtc, in order (replaces the default list). */
  libnvrtcCandidates?: readonly string[];
}

/** The CUDA toolkit root: $CUDA_HOME, $CUDA_PATH, or /usr/local/cuda. */
export function cudaHome(): string {
  return process.env.CUDA_HOME ?? process.env.CUDA_PATH ?? '/usr/local/cuda';
}

/** Where libcuda is looked for, in order: $MAGI_ATTN_LIBCUDA, the loader's search, standard paths. */
export function defaultLibcudaCandidates(): string[] {
  const out: string[] = [];
  if (process.env.MAGI_ATTN_LIBCUDA) out.push(process.env.MAGI_ATTN_LIBCUDA);
  out.push(
    'libcuda.so.1',
    '/usr/lib/x86_64-linux-gnu/libcuda.so.1',
    '/usr/lib64/libcuda.so.1',
    '/usr/lib/aarch64-linux-gnu/libcuda.so.1',
    '/usr/lib/wsl/lib/libcuda.so.1',
    '/usr/local/nvidia/lib64/libcuda.so.1',
    'libcuda.so',
  );
  return out;
}

/** Parses the numeric suffix of `libfoo.so.12.4.127` into [12, 4, 127] (empty for `libfoo.so`). */
function soVersion(file: string): number[] {
  const m = /\.so((?:\.\d+)*)$/.exec(file);
  return m && m[1] ? m[1].slice(1).split('.').map(Number) : [];
}

/** Versioned `stem` libraries in `dir`, newest first (libfoo.so.13 before libfoo.so.12, then libfoo.so). */
function globLibrary(dir: string, stem: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const pattern = new RegExp(`^${stem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.so(\\.\\d+)*$`);
  const libs = names.filter((n) => pattern.test(n));
  libs.sort((a, b) => {
    const va = soVersion(a);
    const vb = soVersion(b);
    for (let i = 0; i < Math.max(va.length, vb.length); i++) {
      const d = (vb[i] ?? -1) - (va[i] ?? -1);
      if (d !== 0) return d;
    }
    return 0;
  });
  return libs.map((n) => join(dir, n));
}

/**
 * Where a CUDA toolkit library (`stem`, e.g. 'libnvrtc' or 'libcublasLt') is looked for, in
 * order: the path in the environment variable `envVar`, the toolkit's lib dirs under $CUDA_HOME,
 * $CUDA_PATH and /usr/local/cuda (globbed, newest version first), the system lib dirs, then the
 * loader's own search for `bareNames`.
 */
export function toolkitLibraryCandidates(stem: string, envVar: string, bareNames: readonly string[]): string[] {
  const out: string[] = [];
  const fromEnv = process.env[envVar];
  if (fromEnv) out.push(fromEnv);
  const homes = [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda'].filter(
    (h): h is string => !!h,
  );
  const dirs: string[] = [];
  for (const h of new Set(homes)) dirs.push(join(h, 'lib64'), join(h, 'lib'), join(h, 'targets/x86_64-linux/lib'));
  dirs.push('/usr/lib/x86_64-linux-gnu', '/usr/lib64');
  for (const d of dirs) {
    const found = globLibrary(d, stem);
    if (found.length > 0) out.push(...found);
    else out.push(join(d, `${stem}.so*`));
  }
  out.push(...bareNames);
  return out;
}

/** Where libnvrtc is looked for: $MAGI_ATTN_LIBNVRTC, the toolkit's lib dirs (globbed), the loader's search. */
export function defaultLibnvrtcCandidates(): string[] {
  return toolkitLibraryCandidates('libnvrtc', 'MAGI_ATTN_LIBNVRTC', ['libnvrtc.so', 'libnvrtc.so.13', 'libnvrtc.so.12']);
}

/** Loads the first candidate that opens; otherwise throws CudaUnavailableError listing every try. */
export function loadFirstLibrary(
  what: 'libcuda' | 'libnvrtc' | 'libnccl' | 'libcublasLt',
  candidates: readonly string[],
  hint: string,
): { lib: LibraryHandle; path: string } {
  const tried: string[] = [];
  for (const c of candidates) {
    if (c.includes('*')) {
      tried.push(`${c}: no matching file`);
      continue;
    }
    if (c.includes('/') && !existsSync(c)) {
      tried.push(`${c}: no such file`);
      continue;
    }
    try {
      return { lib: koffi.load(c), path: c };
    } catch (e) {
      tried.push(`${c}: ${(e as Error).message}`);
    }
  }
  throw new CudaUnavailableError(what, `${what} could not be loaded: ${hint}`, tried);
}

type Fn = (...args: unknown[]) => unknown;

/** Binds the first exported name among `names` (e.g. a _v2 symbol, then the plain one). */
function bindAny(lib: LibraryHandle, names: readonly string[], ret: string, args: unknown[]): Fn {
  const func = lib.func.bind(lib) as unknown as (name: string, ret: string, args: unknown[]) => Fn;
  let last: unknown;
  for (const n of names) {
    try {
      return func(n, ret, args);
    } catch (e) {
      last = e;
    }
  }
  throw new CudaUnavailableError('libcuda', `libcuda does not export ${names.join(' / ')}: ${(last as Error)?.message}`);
}

/** Normalises a koffi integer (number or bigint) to bigint. */
function big(v: unknown): bigint {
  return typeof v === 'bigint' ? v : BigInt(v as number);
}

/**
 * The loaded driver: one method per driver call, each checked. Out-parameters come back as
 * return values. Get the process-wide instance with `cudaDriver()`.
 */
export class CudaDriver {
  readonly libraryPath: string;
  private readonly f: Record<string, Fn> = {};

  constructor(options: LibrarySearchOptions = {}) {
    const { lib, path } = loadFirstLibrary(
      'libcuda',
      options.libcudaCandidates ?? defaultLibcudaCandidates(),
      'no NVIDIA driver found (is there a GPU and a driver on this machine? set MAGI_ATTN_LIBCUDA to its path)',
    );
    this.libraryPath = path;
    const P = 'void *';
    const OP = koffi.out(koffi.pointer('void *'));
    const OI = koffi.out(koffi.pointer('int'));
    const OU64 = koffi.out(koffi.pointer('uint64_t'));
    const OSZ = koffi.out(koffi.pointer('size_t'));
    const OF = koffi.out(koffi.pointer('float'));
    const OS = koffi.out(koffi.pointer('const char *'));
    const defs: Array<[string, string[], unknown[]]> = [
      ['cuGetErrorName', ['cuGetErrorName'], ['int', OS]],
      ['cuGetErrorString', ['cuGetErrorString'], ['int', OS]],
      ['cuInit', ['cuInit'], ['uint']],
      ['cuDriverGetVersion', ['cuDriverGetVersion'], [OI]],
      ['cuDeviceGetCount', ['cuDeviceGetCount'], [OI]],
      ['cuDeviceGet', ['cuDeviceGet'], [OI, 'int']],
      ['cuDeviceGetName', ['cuDeviceGetName'], [P, 'int', 'int']],
      ['cuDeviceGetAttribute', ['cuDeviceGetAttribute'], [OI, 'int', 'int']],
      ['cuDeviceTotalMem', ['cuDeviceTotalMem_v2'], [OSZ, 'int']],
      ['cuDevicePrimaryCtxRetain', ['cuDevicePrimaryCtxRetain'], [OP, 'int']],
      ['cuDevicePrimaryCtxRelease', ['cuDevicePrimaryCtxRelease_v2', 'cuDevicePrimaryCtxRelease'], ['int']],
      ['cuCtxSetCurrent', ['cuCtxSetCurrent'], [P]],
      ['cuCtxSynchronize', ['cuCtxSynchronize'], []],
      ['cuStreamCreate', ['cuStreamCreate'], [OP, 'uint']],
      ['cuStreamDestroy', ['cuStreamDestroy_v2', 'cuStreamDestroy'], [P]],
      ['cuStreamSynchronize', ['cuStreamSynchronize'], [P]],
      ['cuEventCreate', ['cuEventCreate'], [OP, 'uint']],
      ['cuEventRecord', ['cuEventRecord'], [P, P]],
      ['cuEventQuery', ['cuEventQuery'], [P]],
      ['cuStreamWaitEvent', ['cuStreamWaitEvent'], [P, P, 'uint']],
      ['cuEventSynchronize', ['cuEventSynchronize'], [P]],
      ['cuEventElapsedTime', ['cuEventElapsedTime_v2', 'cuEventElapsedTime'], [OF, P, P]],
      ['cuEventDestroy', ['cuEventDestroy_v2', 'cuEventDestroy'], [P]],
      ['cuMemGetInfo', ['cuMemGetInfo_v2'], [OSZ, OSZ]],
      ['cuMemAlloc', ['cuMemAlloc_v2'], [OU64, 'size_t']],
      ['cuMemFree', ['cuMemFree_v2'], ['uint64_t']],
      ['cuMemAllocHost', ['cuMemAllocHost_v2'], [OP, 'size_t']],
      ['cuMemFreeHost', ['cuMemFreeHost'], [P]],
      ['cuMemcpyHtoD', ['cuMemcpyHtoD_v2'], ['uint64_t', P, 'size_t']],
      ['cuMemcpyDtoH', ['cuMemcpyDtoH_v2'], [P, 'uint64_t', 'size_t']],
      ['cuMemcpyDtoD', ['cuMemcpyDtoD_v2'], ['uint64_t', 'uint64_t', 'size_t']],
      ['cuMemcpyHtoDAsync', ['cuMemcpyHtoDAsync_v2'], ['uint64_t', P, 'size_t', P]],
      ['cuMemcpyDtoHAsync', ['cuMemcpyDtoHAsync_v2'], [P, 'uint64_t', 'size_t', P]],
      ['cuMemcpyDtoDAsync', ['cuMemcpyDtoDAsync_v2'], ['uint64_t', 'uint64_t', 'size_t', P]],
      ['cuMemsetD8', ['cuMemsetD8_v2'], ['uint64_t', 'uint8_t', 'size_t']],
      ['cuMemsetD8Async', ['cuMemsetD8Async'], ['uint64_t', 'uint8_t', 'size_t', P]],
      ['cuModuleLoadData', ['cuModuleLoadData'], [OP, P]],
      ['cuModuleUnload', ['cuModuleUnload'], [P]],
      ['cuModuleGetFunction', ['cuModuleGetFunction'], [OP, P, 'const char *']],
      ['cuModuleGetGlobal', ['cuModuleGetGlobal_v2'], [OU64, OSZ, P, 'const char *']],
      ['cuFuncGetAttribute', ['cuFuncGetAttribute'], [OI, 'int', P]],
      ['cuFuncSetAttribute', ['cuFuncSetAttribute'], [P, 'int', 'int']],
      ['cuOccupancyMaxActiveBlocksPerMultiprocessor', ['cuOccupancyMaxActiveBlocksPerMultiprocessor'], [OI, P, 'int', 'size_t']],
      [
        'cuTensorMapEncodeTiled',
        ['cuTensorMapEncodeTiled'],
        [P, 'int', 'uint', 'uint64_t', P, P, P, P, 'int', 'int', 'int', 'int'],
      ],
      [
        'cuLaunchKernel',
        ['cuLaunchKernel'],
        [P, 'uint', 'uint', 'uint', 'uint', 'uint', 'uint', 'uint', P, P, P],
      ],
    ];
    for (const [key, names, args] of defs) this.f[key] = bindAny(lib, names, 'int', args);
  }

  /** Throws CudaError when `rc` is not CUDA_SUCCESS. */
  check(call: string, rc: unknown): void {
    if (rc === 0) return;
    const code = Number(rc);
    throw new CudaError(call, code, this.errorName(code), this.errorString(code));
  }

  /** The driver's name for a CUresult (e.g. CUDA_ERROR_INVALID_VALUE). */
  errorName(code: number): string {
    const out: [string | null] = [null];
    return this.f.cuGetErrorName!(code, out) === 0 && out[0] ? String(out[0]) : `CUresult ${code}`;
  }

  /** The driver's description of a CUresult. */
  errorString(code: number): string {
    const out: [string | null] = [null];
    return this.f.cuGetErrorString!(code, out) === 0 && out[0] ? String(out[0]) : 'unknown error';
  }

  private call(name: string, ...args: unknown[]): void {
    this.check(name, this.f[name]!(...args));
  }

  private outInt(name: string, ...args: unknown[]): number {
    const out: [number] = [0];
    this.call(name, out, ...args);
    return Number(out[0]);
  }

  private outHandle(name: string, ...args: unknown[]): CuHandle {
    const out: [unknown] = [null];
    this.call(name, out, ...args);
    return out[0];
  }

  cuInit(flags = 0): void {
    this.call('cuInit', flags);
  }
  /** The installed driver's CUDA version, e.g. 13000 for 13.0. */
  cuDriverGetVersion(): number {
    return this.outInt('cuDriverGetVersion');
  }
  cuDeviceGetCount(): number {
    return this.outInt('cuDeviceGetCount');
  }
  cuDeviceGet(ordinal: number): number {
    return this.outInt('cuDeviceGet', ordinal);
  }
  cuDeviceGetName(dev: number): string {
    const buf = Buffer.alloc(256);
    this.call('cuDeviceGetName', buf, buf.length, dev);
    const end = buf.indexOf(0);
    return buf.toString('utf8', 0, end < 0 ? buf.length : end);
  }
  cuDeviceGetAttribute(attr: number, dev: number): number {
    return this.outInt('cuDeviceGetAttribute', attr, dev);
  }
  cuDeviceTotalMem(dev: number): number {
    return this.outInt('cuDeviceTotalMem', dev);
  }
  cuDevicePrimaryCtxRetain(dev: number): CuHandle {
    return this.outHandle('cuDevicePrimaryCtxRetain', dev);
  }
  cuDevicePrimaryCtxRelease(dev: number): void {
    this.call('cuDevicePrimaryCtxRelease', dev);
  }
  cuCtxSetCurrent(ctx: CuHandle): void {
    this.call('cuCtxSetCurrent', ctx);
  }
  cuCtxSynchronize(): void {
    this.call('cuCtxSynchronize');
  }
  cuStreamCreate(flags = 0): CuHandle {
    return this.outHandle('cuStreamCreate', flags);
  }
  cuStreamDestroy(stream: CuHandle): void {
    this.call('cuStreamDestroy', stream);
  }
  cuStreamSynchronize(stream: CuHandle): void {
    this.call('cuStreamSynchronize', stream);
  }
  cuEventCreate(flags = CU_EVENT_DEFAULT): CuHandle {
    return this.outHandle('cuEventCreate', flags);
  }
  cuEventRecord(event: CuHandle, stream: CuHandle): void {
    this.call('cuEventRecord', event, stream);
  }
  /** True when the event has completed, false while work before it is pending (never throws NOT_READY). */
  cuEventQuery(event: CuHandle): boolean {
    const rc = Number(this.f.cuEventQuery!(event));
    if (rc === CUresult.NOT_READY) return false;
    this.check('cuEventQuery', rc);
    return true;
  }
  /** Work queued on `stream` after this call waits until `event` has completed (on the device; the host does not wait). */
  cuStreamWaitEvent(stream: CuHandle, event: CuHandle): void {
    this.call('cuStreamWaitEvent', stream, event, 0);
  }
  cuEventSynchronize(event: CuHandle): void {
    this.call('cuEventSynchronize', event);
  }
  /** Milliseconds between two recorded, completed events. */
  cuEventElapsedTime(start: CuHandle, end: CuHandle): number {
    const out: [number] = [0];
    this.call('cuEventElapsedTime', out, start, end);
    return out[0];
  }
  cuEventDestroy(event: CuHandle): void {
    this.call('cuEventDestroy', event);
  }
  /** [free, total] bytes of device memory in the current context. */
  cuMemGetInfo(): [number, number] {
    const free: [number] = [0];
    const total: [number] = [0];
    this.call('cuMemGetInfo', free, total);
    return [Number(free[0]), Number(total[0])];
  }
  cuMemAlloc(bytes: number): CuDevicePtr {
    const out: [unknown] = [0];
    this.call('cuMemAlloc', out, bytes);
    return big(out[0]);
  }
  cuMemFree(ptr: CuDevicePtr): void {
    this.call('cuMemFree', ptr);
  }
  /** Page-locked host memory; view it with `koffi.view(ptr, bytes)`. */
  cuMemAllocHost(bytes: number): CuHandle {
    return this.outHandle('cuMemAllocHost', bytes);
  }
  cuMemFreeHost(ptr: CuHandle): void {
    this.call('cuMemFreeHost', ptr);
  }
  cuMemcpyHtoD(dst: CuDevicePtr, src: ArrayBufferView | CuHandle, bytes: number): void {
    this.call('cuMemcpyHtoD', dst, src, bytes);
  }
  cuMemcpyDtoH(dst: ArrayBufferView | CuHandle, src: CuDevicePtr, bytes: number): void {
    this.call('cuMemcpyDtoH', dst, src, bytes);
  }
  cuMemcpyDtoD(dst: CuDevicePtr, src: CuDevicePtr, bytes: number): void {
    this.call('cuMemcpyDtoD', dst, src, bytes);
  }
  /** Async from pageable memory returns once the source is staged; pinned memory is truly async. */
  cuMemcpyHtoDAsync(dst: CuDevicePtr, src: ArrayBufferView | CuHandle, bytes: number, stream: CuHandle): void {
    this.call('cuMemcpyHtoDAsync', dst, src, bytes, stream);
  }
  /** To pageable memory this returns only when the copy is done; to pinned memory it is async. */
  cuMemcpyDtoHAsync(dst: ArrayBufferView | CuHandle, src: CuDevicePtr, bytes: number, stream: CuHandle): void {
    this.call('cuMemcpyDtoHAsync', dst, src, bytes, stream);
  }
  cuMemcpyDtoDAsync(dst: CuDevicePtr, src: CuDevicePtr, bytes: number, stream: CuHandle): void {
    this.call('cuMemcpyDtoDAsync', dst, src, bytes, stream);
  }
  cuMemsetD8(dst: CuDevicePtr, value: number, count: number): void {
    this.call('cuMemsetD8', dst, value, count);
  }
  cuMemsetD8Async(dst: CuDevicePtr, value: number, count: number, stream: CuHandle): void {
    this.call('cuMemsetD8Async', dst, value, count, stream);
  }
  /** Loads a cubin, fatbin or NUL-terminated PTX image. */
  cuModuleLoadData(image: Uint8Array): CuHandle {
    return this.outHandle('cuModuleLoadData', image);
  }
  cuModuleUnload(mod: CuHandle): void {
    this.call('cuModuleUnload', mod);
  }
  cuModuleGetFunction(mod: CuHandle, name: string): CuHandle {
    const out: [unknown] = [null];
    const rc = this.f.cuModuleGetFunction!(out, mod, name);
    if (rc !== 0) {
      const code = Number(rc);
      throw new CudaError(`cuModuleGetFunction("${name}")`, code, this.errorName(code), this.errorString(code));
    }
    return out[0];
  }
  /** Address and size in bytes of the module's `__device__` variable `name` (its unmangled name, as for a kernel). */
  cuModuleGetGlobal(mod: CuHandle, name: string): { ptr: CuDevicePtr; bytes: number } {
    const ptr: [unknown] = [0];
    const bytes: [unknown] = [0];
    const rc = this.f.cuModuleGetGlobal!(ptr, bytes, mod, name);
    if (rc !== 0) {
      const code = Number(rc);
      throw new CudaError(`cuModuleGetGlobal("${name}")`, code, this.errorName(code), this.errorString(code));
    }
    return { ptr: big(ptr[0]), bytes: Number(bytes[0]) };
  }
  cuFuncGetAttribute(attr: number, fn: CuHandle): number {
    return this.outInt('cuFuncGetAttribute', attr, fn);
  }
  cuFuncSetAttribute(fn: CuHandle, attr: number, value: number): void {
    this.call('cuFuncSetAttribute', fn, attr, value);
  }
  cuOccupancyMaxActiveBlocksPerMultiprocessor(fn: CuHandle, blockSize: number, dynamicSmemBytes: number): number {
    return this.outInt('cuOccupancyMaxActiveBlocksPerMultiprocessor', fn, blockSize, dynamicSmemBytes);
  }
  /**
   * Encodes a TMA descriptor (CUtensorMap, 128 opaque bytes) for a tiled view of `address`.
   * `dims` innermost first; `stridesBytes` has rank - 1 entries (dims 1..rank-1). Enum values
   * are cuda.h's (CuTensorMap* constants below).
   */
  cuTensorMapEncodeTiled(
    dataType: number,
    address: CuDevicePtr,
    dims: readonly number[],
    stridesBytes: readonly number[],
    box: readonly number[],
    swizzle: number,
    l2Promotion: number,
  ): Uint8Array {
    const rank = dims.length;
    const map = new Uint8Array(128);
    const elementStrides = new Uint32Array(rank).fill(1);
    this.call(
      'cuTensorMapEncodeTiled',
      map,
      dataType,
      rank,
      address,
      BigUint64Array.from(dims.map((d) => BigInt(d))),
      BigUint64Array.from(stridesBytes.map((d) => BigInt(d))),
      Uint32Array.from(box),
      elementStrides,
      0, // CU_TENSOR_MAP_INTERLEAVE_NONE
      swizzle,
      l2Promotion,
      0, // CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE: out-of-bounds elements read as zeros
    );
    return map;
  }

  /** `params` is a native array of pointers to the argument values (see `KernelArgPacker` in device.ts). */
  cuLaunchKernel(
    fn: CuHandle,
    grid: readonly [number, number, number],
    block: readonly [number, number, number],
    sharedMemBytes: number,
    stream: CuHandle,
    params: CuHandle,
  ): void {
    this.call('cuLaunchKernel', fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], sharedMemBytes, stream, params, null);
  }
}

let driver: CudaDriver | undefined;

/**
 * The process-wide driver, loaded and cuInit'ed on first use. Throws CudaUnavailableError when
 * libcuda is missing or the driver finds no device; a later call tries again.
 */
export function cudaDriver(options: LibrarySearchOptions = {}): CudaDriver {
  if (driver !== undefined && options.libcudaCandidates === undefined) return driver;
  const d = new CudaDriver(options);
  try {
    d.cuInit(0);
  } catch (e) {
    if (
      e instanceof CudaError &&
      (e.code === CUresult.NO_DEVICE || e.code === CUresult.STUB_LIBRARY || e.code === CUresult.INSUFFICIENT_DRIVER)
    ) {
      throw new CudaUnavailableError('device', `libcuda loaded from ${d.libraryPath}, but cuInit failed: ${e.message}`);
    }
    throw e;
  }
  if (options.libcudaCandidates === undefined) driver = d;
  return d;
}
