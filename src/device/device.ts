/**
 * A small object model over the CUDA driver: a device with its primary context, streams, events,
 * device buffers from a caching allocator, and kernels compiled by NVRTC and launched with typed
 * arguments. This is what the CUDA kernel backend is written against; it is not a tensor
 * library (shapes and dtypes live above it). Node-only.
 */

import koffi from 'koffi';
import {
  CU_EVENT_DEFAULT,
  CU_EVENT_DISABLE_TIMING,
  CU_STREAM_NON_BLOCKING,
  CuDeviceAttr,
  CuFuncAttr,
  CudaUnavailableError,
  cudaDriver,
  type CuDevicePtr,
  type CuHandle,
  type CudaDriver,
} from './cuda-driver.js';
import { archFor, compileCached, compileOptions, nvrtc, type CachedCompileResult } from './nvrtc.js';

/** One kernel argument, passed by value. `ptr` takes a device address or a DeviceBuffer. */
export type KernelArg =
  | { type: 'ptr'; value: CuDevicePtr | DeviceBuffer | null }
  | { type: 'i32'; value: number }
  | { type: 'u32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'u64'; value: bigint | number }
  | { type: 'i64'; value: bigint | number }
  /** A struct passed by value: its bytes laid out as the kernel's struct (aligned to 16). */
  | { type: 'bytes'; value: Uint8Array };

/** Shorthands for the common kernel arguments. */
export const kernelArg = {
  i32: (value: number): KernelArg => ({ type: 'i32', value }),
  u32: (value: number): KernelArg => ({ type: 'u32', value }),
  f32: (value: number): KernelArg => ({ type: 'f32', value }),
  ptr: (value: CuDevicePtr | DeviceBuffer | null): KernelArg => ({ type: 'ptr', value }),
};

type Dim3 = number | readonly [number, number?, number?];

function dim3(d: Dim3): [number, number, number] {
  if (typeof d === 'number') return [d, 1, 1];
  return [d[0], d[1] ?? 1, d[2] ?? 1];
}

/** A CUDA stream. `Stream.default` is the legacy default stream (null handle). */
export class Stream {
  private constructor(
    readonly device: CudaDevice,
    readonly handle: CuHandle,
  ) {}

  /** @internal */
  static create(device: CudaDevice, handle: CuHandle): Stream {
    return new Stream(device, handle);
  }

  /** Waits on the host until all work queued on this stream is done. */
  synchronize(): void {
    this.device.driver.cuStreamSynchronize(this.handle);
  }

  /** Work queued on this stream from now on starts only after `event` has completed (no host wait). */
  waitEvent(event: Event): void {
    this.device.driver.cuStreamWaitEvent(this.handle, event.handle);
  }

  /** Orders this stream after everything queued so far on `other` (an event in between; no host wait). */
  waitStream(other: Stream): void {
    if (other === this) return;
    const e = this.device.takeSyncEvent();
    e.record(other);
    this.waitEvent(e);
    this.device.returnSyncEvent(e);
  }

  /** Destroys a created stream (the default stream is left alone). */
  destroy(): void {
    if (this.handle !== null && this !== this.device.defaultStream) this.device.driver.cuStreamDestroy(this.handle);
  }
}

/** A CUDA event, for ordering and timing. */
export class Event {
  private destroyed = false;
  constructor(
    readonly device: CudaDevice,
    readonly handle: CuHandle,
  ) {}

  /** Records the event on `stream` (the default stream when omitted). */
  record(stream: Stream = this.device.defaultStream): this {
    this.device.driver.cuEventRecord(this.handle, stream.handle);
    return this;
  }

  /** Waits on the host until the event has completed. */
  synchronize(): void {
    this.device.driver.cuEventSynchronize(this.handle);
  }

  /** Whether the work before the event has completed (no wait). */
  query(): boolean {
    return this.device.driver.cuEventQuery(this.handle);
  }

  /** Milliseconds from `start` to this event; both must be recorded (this one is waited for). */
  elapsedSince(start: Event): number {
    this.synchronize();
    return this.device.driver.cuEventElapsedTime(start.handle, this.handle);
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.device.driver.cuEventDestroy(this.handle);
  }
}

/** Device memory: `ptr` bytes long; give it back with `free()` (it returns to the allocator's pool). */
export class DeviceBuffer {
  private freed = false;
  constructor(
    readonly device: CudaDevice,
    readonly ptr: CuDevicePtr,
    /** Bytes asked for. */
    readonly bytes: number,
    /** Bytes of the underlying block (its size class); 0 for a view. */
    readonly capacity: number,
    /** The buffer this one views (it owns the memory), or null. */
    readonly viewOf: DeviceBuffer | null = null,
  ) {}

  /** `bytes` bytes from `byteOffset`, sharing this buffer's memory; a view is never freed (free its owner). */
  view(byteOffset: number, bytes: number): DeviceBuffer {
    this.checkRange('view', byteOffset, bytes);
    return new DeviceBuffer(this.device, this.ptr + BigInt(byteOffset), bytes, 0, this.viewOf ?? this);
  }

  get isFreed(): boolean {
    return this.viewOf === null ? this.freed : this.viewOf.isFreed;
  }

  /** Copies a host typed array (or its first `bytes`) into this buffer at `offset` bytes. */
  upload(src: ArrayBufferView, stream?: Stream, offset = 0): void {
    const n = src.byteLength;
    this.checkRange('upload', offset, n);
    const dst = this.ptr + BigInt(offset);
    if (stream === undefined) this.device.driver.cuMemcpyHtoD(dst, src, n);
    else this.device.driver.cuMemcpyHtoDAsync(dst, src, n, stream.handle);
  }

  /** Copies this buffer (from `offset` bytes) into a host typed array, filling it. */
  download<T extends ArrayBufferView>(dst: T, stream?: Stream, offset = 0): T {
    const n = dst.byteLength;
    this.checkRange('download', offset, n);
    const src = this.ptr + BigInt(offset);
    if (stream === undefined) this.device.driver.cuMemcpyDtoH(dst, src, n);
    else this.device.driver.cuMemcpyDtoHAsync(dst, src, n, stream.handle);
    return dst;
  }

  /** Sets every byte to `value` (0 by default). */
  fill(value = 0, stream?: Stream): void {
    if (stream === undefined) this.device.driver.cuMemsetD8(this.ptr, value, this.bytes);
    else this.device.driver.cuMemsetD8Async(this.ptr, value, this.bytes, stream.handle);
  }

  /** Returns the block to the device's caching allocator (for reuse at once: no work may still use it). */
  free(): void {
    if (this.viewOf !== null) throw new Error('DeviceBuffer.free: a view shares its owner\'s memory; free the owner');
    if (this.freed) throw new Error('DeviceBuffer.free: buffer was already freed');
    this.freed = true;
    this.device.allocator.release(this, null);
  }

  /**
   * Returns the block to the allocator once everything queued so far on `streams` is done: work
   * still in flight may read or write it, and the block is handed out again only after that
   * (an event recorded on each stream guards it). The host does not wait.
   */
  freeAfter(...streams: Stream[]): void {
    if (this.viewOf !== null) throw new Error('DeviceBuffer.freeAfter: a view shares its owner\'s memory; free the owner');
    if (this.freed) throw new Error('DeviceBuffer.freeAfter: buffer was already freed');
    this.freed = true;
    const events = streams.map((s) => this.device.takeSyncEvent().record(s));
    this.device.allocator.release(this, events);
  }

  /** Copies `bytes` bytes of `src` (from `srcOffset`) into this buffer at `dstOffset`, queued on `stream`. */
  copyFrom(src: DeviceBuffer, bytes: number, stream: Stream, srcOffset = 0, dstOffset = 0): void {
    this.checkRange('copyFrom', dstOffset, bytes);
    src.checkRange('copyFrom', srcOffset, bytes);
    if (bytes === 0) return;
    this.device.driver.cuMemcpyDtoDAsync(this.ptr + BigInt(dstOffset), src.ptr + BigInt(srcOffset), bytes, stream.handle);
  }

  /** @internal */
  checkRange(what: string, offset: number, n: number): void {
    if (this.isFreed) throw new Error(`DeviceBuffer.${what}: buffer was freed`);
    if (offset < 0 || offset + n > this.bytes) {
      throw new RangeError(`DeviceBuffer.${what}: ${n} bytes at offset ${offset} exceed the buffer's ${this.bytes} bytes`);
    }
  }
}

/** Rounds a request up to its size class: 512 B granules below 1 MiB, then 2 MiB multiples. */
export function sizeClass(bytes: number): number {
  const n = Math.max(bytes, 1);
  if (n <= 1 << 20) return Math.ceil(n / 512) * 512;
  return Math.ceil(n / (2 << 20)) * (2 << 20);
}

/** A pooled block, and the events that must complete before it may be reused (none: at once). */
interface PooledBlock {
  readonly ptr: CuDevicePtr;
  readonly guards: Event[] | null;
}

/**
 * A caching allocator: freed blocks wait in a pool by size class and are handed out again for
 * requests of the same class once their guard events (freeAfter) have completed; when cuMemAlloc
 * runs out, the device is synchronised, the pool emptied and the call retried.
 */
export class CachingAllocator {
  private readonly pool = new Map<number, PooledBlock[]>();
  /** Bytes held by live buffers and by the pool. */
  allocatedBytes = 0;
  cachedBytes = 0;
  hits = 0;
  misses = 0;

  constructor(private readonly device: CudaDevice) {}

  alloc(bytes: number): DeviceBuffer {
    if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`alloc: bytes must be a non-negative integer (got ${bytes})`);
    const cls = sizeClass(bytes);
    const free = this.pool.get(cls);
    if (free !== undefined) {
      for (let i = free.length - 1; i >= 0; i--) {
        const block = free[i];
        if (block.guards !== null && !block.guards.every((e) => e.query())) continue;
        free.splice(i, 1);
        this.retire(block);
        this.hits++;
        this.cachedBytes -= cls;
        return new DeviceBuffer(this.device, block.ptr, bytes, cls);
      }
    }
    this.misses++;
    let ptr: CuDevicePtr;
    try {
      ptr = this.device.driver.cuMemAlloc(cls);
    } catch (e) {
      if (this.cachedBytes === 0) throw e;
      this.device.synchronize();
      this.emptyCache();
      ptr = this.device.driver.cuMemAlloc(cls);
    }
    this.allocatedBytes += cls;
    return new DeviceBuffer(this.device, ptr, bytes, cls);
  }

  /** @internal called by DeviceBuffer.free / freeAfter */
  release(buf: DeviceBuffer, guards: Event[] | null): void {
    let list = this.pool.get(buf.capacity);
    if (list === undefined) this.pool.set(buf.capacity, (list = []));
    list.push({ ptr: buf.ptr, guards });
    this.cachedBytes += buf.capacity;
  }

  private retire(block: PooledBlock): void {
    for (const e of block.guards ?? []) this.device.returnSyncEvent(e);
  }

  /** Gives every pooled block back to the driver (blocks still guarded by pending work are waited for). */
  emptyCache(): void {
    for (const [cls, blocks] of this.pool) {
      for (const b of blocks) {
        for (const e of b.guards ?? []) e.synchronize();
        this.retire(b);
        this.device.driver.cuMemFree(b.ptr);
        this.allocatedBytes -= cls;
      }
    }
    this.pool.clear();
    this.cachedBytes = 0;
  }
}

/**
 * Packs kernel arguments into native memory the way cuLaunchKernel wants them: one 16-byte
 * aligned slot per argument holding its value, and an array of pointers to those slots. The
 * memory is allocated once per kernel and reused (cuLaunchKernel copies the values at launch).
 */
class KernelArgPacker {
  private values: unknown = null;
  private valuesView: DataView | null = null;
  private valuesBase = 0n;
  private pointers: unknown = null;
  private pointersView: DataView | null = null;
  private capacity = 0;
  private pointerCapacity = 0;

  pack(args: readonly KernelArg[]): unknown {
    const offsets: number[] = [];
    let size = 0;
    for (const a of args) {
      const n = a.type === 'bytes' ? a.value.byteLength : 8;
      const align = a.type === 'bytes' ? 16 : 8;
      size = Math.ceil(size / align) * align;
      offsets.push(size);
      size += n;
    }
    this.reserve(Math.max(size, 8), Math.max(args.length, 1));
    const dv = this.valuesView!;
    const pv = this.pointersView!;
    args.forEach((a, i) => {
      const o = offsets[i]!;
      switch (a.type) {
        case 'ptr': {
          const v = a.value;
          dv.setBigUint64(o, v === null ? 0n : v instanceof DeviceBuffer ? v.ptr : v, true);
          break;
        }
        case 'i32':
          dv.setInt32(o, a.value, true);
          break;
        case 'u32':
          dv.setUint32(o, a.value, true);
          break;
        case 'f32':
          dv.setFloat32(o, a.value, true);
          break;
        case 'u64':
          dv.setBigUint64(o, BigInt(a.value), true);
          break;
        case 'i64':
          dv.setBigInt64(o, BigInt(a.value), true);
          break;
        case 'bytes':
          new Uint8Array(dv.buffer, o, a.value.byteLength).set(a.value);
          break;
        default:
          throw new TypeError(`kernel argument ${i}: unknown type ${(a as { type: string }).type}`);
      }
      pv.setBigUint64(i * 8, this.valuesBase + BigInt(o), true);
    });
    return this.pointers;
  }

  private reserve(bytes: number, count: number): void {
    if (bytes > this.capacity) {
      if (this.values !== null) koffi.free(this.values);
      this.capacity = Math.max(bytes, 256);
      this.values = koffi.alloc('uint8_t', this.capacity);
      this.valuesBase = koffi.address(this.values);
      this.valuesView = new DataView(koffi.view(this.values, this.capacity));
    }
    if (count > this.pointerCapacity) {
      if (this.pointers !== null) koffi.free(this.pointers);
      this.pointerCapacity = Math.max(count, 32);
      this.pointers = koffi.alloc('uint64_t', this.pointerCapacity);
      this.pointersView = new DataView(koffi.view(this.pointers, this.pointerCapacity * 8));
    }
  }
}

/** Launch geometry. `grid`/`block` are a number or [x, y?, z?]; `stream` defaults to the device's. */
export interface LaunchConfig {
  grid: Dim3;
  block: Dim3;
  sharedMemBytes?: number;
  stream?: Stream;
}

/** A `__global__` function of a loaded module. */
export class Kernel {
  private readonly packer = new KernelArgPacker();
  /** The dynamic shared memory this kernel may use (48 KiB needs no opt-in). */
  private maxDynamicSharedBytes = 48 * 1024;
  constructor(
    readonly module: Module,
    readonly name: string,
    readonly handle: CuHandle,
  ) {}

  /** Queues the kernel; errors the driver reports at launch throw CudaError. */
  launch(config: LaunchConfig, args: readonly KernelArg[]): void {
    const dev = this.module.device;
    const params = this.packer.pack(args);
    dev.driver.cuLaunchKernel(
      this.handle,
      dim3(config.grid),
      dim3(config.block),
      config.sharedMemBytes ?? 0,
      (config.stream ?? dev.defaultStream).handle,
      params,
    );
  }

  /** A CUfunction attribute (see CuFuncAttr), e.g. NUM_REGS or LOCAL_SIZE_BYTES (spills). */
  attribute(attr: number): number {
    return this.module.device.driver.cuFuncGetAttribute(attr, this.handle);
  }

  /**
   * Allows up to `bytes` of dynamic shared memory per block (needed before launches over 48 KiB).
   * Cheap to call before every launch: the driver is asked only when the limit must grow.
   */
  setMaxDynamicSharedMemory(bytes: number): void {
    if (bytes <= this.maxDynamicSharedBytes) return;
    this.module.device.driver.cuFuncSetAttribute(this.handle, CuFuncAttr.MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes);
    this.maxDynamicSharedBytes = bytes;
  }

  /** Blocks of `blockSize` threads that fit on one SM at once. */
  maxActiveBlocksPerSM(blockSize: number, dynamicSharedMemBytes = 0): number {
    return this.module.device.driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(this.handle, blockSize, dynamicSharedMemBytes);
  }
}

/** A loaded module (cubin or PTX) and how it was obtained. */
export class Module {
  private readonly kernels = new Map<string, Kernel>();
  constructor(
    readonly device: CudaDevice,
    readonly handle: CuHandle,
    readonly compiled: CachedCompileResult | null,
  ) {}

  /** The kernel named `name` (an `extern "C"` name, or a mangled one). */
  kernel(name: string): Kernel {
    let k = this.kernels.get(name);
    if (k === undefined) {
      k = new Kernel(this, name, this.device.driver.cuModuleGetFunction(this.handle, name));
      this.kernels.set(name, k);
    }
    return k;
  }

  /**
   * The module's `__device__` variable `name` (an unmangled name: global scope or `extern "C"`):
   * its device address and size in bytes, valid while the module is loaded. Throws CudaError
   * (CUDA_ERROR_NOT_FOUND) for a name the module lacks.
   */
  global(name: string): { ptr: CuDevicePtr; bytes: number } {
    return this.device.driver.cuModuleGetGlobal(this.handle, name);
  }

  unload(): void {
    this.device.driver.cuModuleUnload(this.handle);
    this.kernels.clear();
  }
}

/** Options for `CudaDevice.compile`. */
export interface CompileOptions {
  /** A name for logs and errors (default 'kernel.cu'). */
  name?: string;
  /** Options added after the defaults (arch, include dir, C++17, -default-device). */
  options?: readonly string[];
  /** Overrides the cache folder. */
  cacheDir?: string;
}

/** A GPU with its primary context made current; open with `CudaDevice.open(ordinal)`. */
export class CudaDevice {
  readonly name: string;
  /** [major, minor], e.g. [9, 0] for H100/H200. */
  readonly computeCapability: readonly [number, number];
  readonly smCount: number;
  readonly totalMemBytes: number;
  readonly maxSharedMemPerBlockOptin: number;
  /** NVRTC arch for this device, e.g. sm_90a. */
  readonly arch: string;
  readonly driverVersion: number;
  readonly defaultStream: Stream;
  readonly allocator: CachingAllocator;
  private closed = false;

  private constructor(
    readonly driver: CudaDriver,
    readonly ordinal: number,
    readonly cuDevice: number,
    readonly context: CuHandle,
  ) {
    const attr = (a: number): number => driver.cuDeviceGetAttribute(a, cuDevice);
    this.name = driver.cuDeviceGetName(cuDevice);
    this.computeCapability = [attr(CuDeviceAttr.COMPUTE_CAPABILITY_MAJOR), attr(CuDeviceAttr.COMPUTE_CAPABILITY_MINOR)];
    this.smCount = attr(CuDeviceAttr.MULTIPROCESSOR_COUNT);
    this.maxSharedMemPerBlockOptin = attr(CuDeviceAttr.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
    this.totalMemBytes = driver.cuDeviceTotalMem(cuDevice);
    this.arch = archFor(this.computeCapability[0], this.computeCapability[1]);
    this.driverVersion = driver.cuDriverGetVersion();
    this.defaultStream = Stream.create(this, null);
    this.allocator = new CachingAllocator(this);
  }

  /** Number of visible GPUs (throws CudaUnavailableError when there is no driver). */
  static count(): number {
    return cudaDriver().cuDeviceGetCount();
  }

  /** Opens GPU `ordinal`: retains its primary context and makes it current on this thread. */
  static open(ordinal = 0): CudaDevice {
    const driver = cudaDriver();
    const count = driver.cuDeviceGetCount();
    if (count === 0) throw new CudaUnavailableError('device', 'the CUDA driver reports no GPU');
    if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= count) {
      throw new RangeError(`CudaDevice.open: ordinal must be an integer in [0, ${count}) (got ${ordinal})`);
    }
    const dev = driver.cuDeviceGet(ordinal);
    const ctx = driver.cuDevicePrimaryCtxRetain(dev);
    driver.cuCtxSetCurrent(ctx);
    return new CudaDevice(driver, ordinal, dev, ctx);
  }

  /** Makes this device's context current (after another device was used on this thread). */
  makeCurrent(): void {
    this.driver.cuCtxSetCurrent(this.context);
  }

  /** Waits until all work on the device is done. */
  synchronize(): void {
    this.driver.cuCtxSynchronize();
  }

  /** [free, total] bytes of device memory. */
  memInfo(): [number, number] {
    return this.driver.cuMemGetInfo();
  }

  /**
   * A new stream. Non-blocking by default; a blocking one (`{ blocking: true }`) is also ordered
   * against the legacy default stream, so work queued there without a stream (synchronous
   * uploads, memsets of freshly planned kernels) can never race it.
   */
  createStream(options: { blocking?: boolean } = {}): Stream {
    return Stream.create(this, this.driver.cuStreamCreate(options.blocking === true ? 0 : CU_STREAM_NON_BLOCKING));
  }

  private readonly syncEvents: Event[] = [];

  /** @internal An event for ordering only (no timing), from a small pool. */
  takeSyncEvent(): Event {
    return this.syncEvents.pop() ?? new Event(this, this.driver.cuEventCreate(CU_EVENT_DISABLE_TIMING));
  }

  /** @internal Returns an event taken with takeSyncEvent (it may be re-recorded at once: a wait already queued keeps its snapshot). */
  returnSyncEvent(e: Event): void {
    this.syncEvents.push(e);
  }

  createEvent(): Event {
    return new Event(this, this.driver.cuEventCreate(CU_EVENT_DEFAULT));
  }

  /** Device memory of `bytes` bytes from the caching allocator (contents undefined). */
  alloc(bytes: number): DeviceBuffer {
    return this.allocator.alloc(bytes);
  }

  /** A new buffer holding a copy of `src`. */
  upload(src: ArrayBufferView): DeviceBuffer {
    const buf = this.alloc(src.byteLength);
    buf.upload(src);
    return buf;
  }

  /** Compiles CUDA C++ with NVRTC for this device (through the disk cache) and loads it. */
  compile(source: string, opts: CompileOptions = {}): Module {
    const options = compileOptions(this.arch, opts.options ?? []);
    const ctx: { driverVersion: number; arch: string; cacheDir?: string } = { driverVersion: this.driverVersion, arch: this.arch };
    if (opts.cacheDir !== undefined) ctx.cacheDir = opts.cacheDir;
    const compiled = compileCached(nvrtc(), source, opts.name ?? 'kernel.cu', options, ctx);
    return this.loadModule(compiled.kind === 'ptx' ? withNul(compiled.image) : compiled.image, compiled);
  }

  /** Loads a cubin / fatbin / NUL-terminated PTX image. */
  loadModule(image: Uint8Array, compiled: CachedCompileResult | null = null): Module {
    this.makeCurrent();
    return new Module(this, this.driver.cuModuleLoadData(image), compiled);
  }

  /** Frees pooled memory and releases the primary context. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.allocator.emptyCache();
    this.driver.cuDevicePrimaryCtxRelease(this.cuDevice);
  }
}

function withNul(image: Uint8Array): Uint8Array {
  if (image.length > 0 && image[image.length - 1] === 0) return image;
  const out = new Uint8Array(image.length + 1);
  out.set(image);
  return out;
}
