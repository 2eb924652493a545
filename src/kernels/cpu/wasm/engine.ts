/**
 * The WebAssembly engine of the CPU backend: loads the kernel (assembly/kernel.ts, built into
 * binary.generated.ts), lays one call's buffers out in its memory, and runs the work list on
 * one or more threads. Browser-safe: nothing here imports a Node module; worker threads come
 * from node-threads.ts where the runtime has them.
 *
 * Loading: by default ('auto') the relaxed-SIMD build (its f32x4.relaxed_madd is a fused
 * multiply-add on x86-64 with FMA and on arm64) where the runtime validates it, on Node 20 after
 * turning on V8's flag for it (node-runtime.ts says why and what that changes); the plain SIMD
 * build where it does not, or where MAGI_ATTN_NO_RELAXED_SIMD is set; none at all without
 * WebAssembly SIMD (the backend then uses the TypeScript engine). A caller may ask for one build
 * by name (the tests and bench:cpu run both side by side: each has its own memory and threads).
 * The two builds round differently (one rounding per multiply-add or two), so their results
 * differ in the last bits; each is bit-reproducible for a given thread count. Memory is shared
 * (SharedArrayBuffer) where the runtime allows it, so threads can work on it; a browser page
 * that is not cross-origin isolated gets private memory and one thread. Compilation is
 * synchronous (Node and workers allow it for any size); a browser's main thread refuses modules
 * over 4 KB that way, so there `loadWasmKernel()` must be awaited first.
 *
 * Memory grows to the largest call seen and stays there (WebAssembly memory cannot shrink); a
 * call needs q, k, v, out (forward) or q, dout, dq, k, v, dk, dv plus one dQ buffer per thread
 * for one kv head's query heads (backward) in float32, token-major as the caller holds them, all
 * linear in the number of tokens. Inputs go in and results come out by block copies (row by row
 * only where D is not a multiple of 4 and rows are padded), so the part of a call that one thread
 * does alone stays small next to the threaded part. Calls that would need more than the 4 GiB a
 * 32-bit memory can address (or more than the runtime grants) run on the TypeScript engine.
 */
import { type WasmMemory, type WasmModule, wasmApi } from './api.js';
import { KERNEL_WASM } from './binary.generated.js';
import { CONTROL_BYTES, type HostImports, type KernelThreads, defaultThreadCount, makeHostImports, startKernelThreads } from './node-threads.js';
import { relaxedSimdOptedOut, setRelaxedSimdFlag } from './node-runtime.js';
import type { BackwardJob, CpuEngine, ForwardJob } from '../engine.js';
import { typescriptEngine } from '../engine.js';
import { gatherHeads, scatterHeads } from '../layout.js';
import { TILE_K, TILE_Q, type WorkList, assignStatic, costOrder } from '../work.js';

/** Job descriptor word indices: the same list as the J_* constants of assembly/kernel.ts. */
const J = {
  KIND: 0,
  THREADS: 1,
  NEXT: 48,
  TQ: 3,
  TK: 4,
  GROUP: 5,
  DIM: 6,
  DIMP: 7,
  SCALE: 8,
  SOFTCAP: 9,
  FINITE: 10,
  Q: 11,
  K: 12,
  V: 13,
  OUT: 14,
  LSE: 15,
  MAXL: 16,
  DOUT: 17,
  DELTA: 18,
  DQ: 19,
  DQ_STRIDE: 20,
  DK: 21,
  DV: 22,
  SCRATCH: 23,
  SCRATCH_STRIDE: 24,
  QT_START: 25,
  QT_ROWS: 26,
  QT_PIECES: 27,
  P_TILE: 28,
  P_SPAN_LO: 29,
  P_SPAN_HI: 30,
  P_ROW_OFF: 31,
  LO: 32,
  HI: 33,
  KT_START: 34,
  KT_COLS: 35,
  KT_PIECES: 36,
  K_PIECES: 37,
  ITEMS: 38,
  N_ITEMS: 39,
  THREAD_OFF: 40,
  ROWSUM: 42,
  HQ: 43,
  HKV: 44,
  NQT: 45,
  HK: 46,
  DQ_OUT: 47,
  CHECK: 49,
  CHECK_OUT: 57,
  HOST: 41,
  TILE_Q: 58,
  TILE_K: 59,
} as const;
const JOB_WORDS = 64;
const JOB_AT = CONTROL_BYTES;
const HEAP_AT = Math.ceil((JOB_AT + JOB_WORDS * 4) / 4096) * 4096;
const PAGE = 65536;
const MAX_BYTES = 65536 * PAGE;

const KIND_FORWARD = 1;
const KIND_BACKWARD = 2;
const KIND_SUM_DQ = 3;
const KIND_CHECK_FINITE = 4;

interface KernelExports {
  run(job: number, tid: number): void;
  scratchBytes(dimP: number, group: number, tileQ: number, tileK: number): number;
  maxlStride(headsQ: number): number;
}

/** A build of the kernel: relaxed SIMD (fused multiply-add) or plain SIMD (multiply, then add). */
export type WasmSimd = 'relaxed-simd' | 'simd';
/** A build by name, or 'auto': relaxed SIMD where the runtime has it and MAGI_ATTN_NO_RELAXED_SIMD is not set, plain SIMD otherwise. */
export type WasmSimdChoice = 'auto' | WasmSimd;

/** How the kernel was loaded. */
export interface WasmKernelInfo {
  /** 'relaxed-simd' (fused multiply-add) or 'simd'. */
  simd: WasmSimd;
  /** Whether its memory is shared, i.e. threads can be used. */
  shared: boolean;
  /** Whether it validated only after the loader turned on V8's relaxed-SIMD flag (Node 20; process-wide). */
  v8Flag: boolean;
}

interface Build extends WasmKernelInfo {
  bytes: Uint8Array;
}

/**
 * Dense tile products done by the host instead of the kernel's micro-kernel (the BLAS engine,
 * ../blas.ts): the kernel's `gemm` import, made on every thread of the instance.
 */
export interface HostProducts {
  /** Names the instance (one per build and `key`) and the engine: '<name> xT'. */
  key: string;
  name: string;
  /** Tiles the products are efficient on: work-list q tiles of tileQ rows and k tiles of tileK keys, forward steps of stepK keys along a piece (multiples of 4, stepK >= tileK). */
  tileQ: number;
  tileK: number;
  stepK: number;
  imports: HostImports;
}

interface Kernel extends WasmKernelInfo {
  memory: WasmMemory;
  exports: KernelExports;
  threads: KernelThreads | undefined;
  /** Whether jobs send the dense products to the host (J.HOST). */
  host: boolean;
  /** Keys of a forward step (J.TILE_K, with the work list's k tiles: the larger). */
  stepK: number;
}

function decode(base64: string): Uint8Array {
  const s = atob(base64);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return bytes;
}

function canShare(): boolean {
  if (typeof SharedArrayBuffer === 'undefined') return false;
  const g = globalThis as { crossOriginIsolated?: boolean; window?: unknown };
  return g.window === undefined || g.crossOriginIsolated === true;
}

const builds = new Map<WasmSimd, Build | null>(); // null: does not validate here

/**
 * The bytes of build `simd` for this runtime (shared memory where it can share), validated, or
 * null where it does not validate. Relaxed SIMD that does not validate as is gets V8's flag
 * turned on and one more try: asking for the relaxed build is what sets the flag.
 */
function build(simd: WasmSimd): Build | null {
  const known = builds.get(simd);
  if (known !== undefined) return known;
  let found: Build | null = null;
  if (wasmApi !== undefined) {
    const shared = canShare();
    const bytes = decode(KERNEL_WASM[`${simd === 'relaxed-simd' ? 'relaxed' : 'simd'}${shared ? 'Shared' : ''}` as keyof typeof KERNEL_WASM]);
    if (wasmApi.validate(bytes)) found = { simd, shared, v8Flag: false, bytes };
    else if (simd === 'relaxed-simd' && setRelaxedSimdFlag() && wasmApi.validate(bytes)) found = { simd, shared, v8Flag: true, bytes };
  }
  builds.set(simd, found);
  return found;
}

/** The build `choice` names here, or undefined where there is none (no WebAssembly SIMD). */
function pick(choice: WasmSimdChoice): WasmSimd | undefined {
  if (choice !== 'auto') return choice;
  if (!relaxedSimdOptedOut() && build('relaxed-simd') !== null) return 'relaxed-simd';
  return build('simd') === null ? undefined : 'simd';
}

function instantiate(b: Build, module: WasmModule, products?: HostProducts): Kernel {
  const api = wasmApi!;
  const memory = new api.Memory({ initial: 1, maximum: 65536, shared: b.shared });
  const env: Record<string, unknown> = {
    memory,
    gemm: () => {
      throw new Error('this kernel instance has no host tile products');
    },
  };
  if (products !== undefined) Object.assign(env, makeHostImports(products.imports, memory));
  const instance = new api.Instance(module, { env });
  const threads = b.shared ? startKernelThreads(module, memory, products?.imports) : undefined;
  return { simd: b.simd, shared: b.shared, v8Flag: b.v8Flag, memory, exports: instance.exports as unknown as KernelExports, threads, host: products !== undefined, stepK: products?.stepK ?? TILE_K };
}

// One instance (memory, threads) per build, and per build and host products.
const kernels = new Map<string, Kernel | null>(); // absent: not tried yet; null: not available (yet)
const pending = new Map<string, Promise<void>>();

function loadSync(choice: WasmSimdChoice, products?: HostProducts): Kernel | null {
  const simd = pick(choice);
  if (simd === undefined) return null;
  const key = products === undefined ? simd : `${simd}+${products.key}`;
  const known = kernels.get(key);
  if (known !== undefined) return known;
  const b = build(simd);
  if (b === null || wasmApi === undefined) {
    kernels.set(key, null);
    return null;
  }
  const api = wasmApi;
  let module: WasmModule;
  try {
    module = new api.Module(b.bytes);
  } catch {
    // A browser's main thread refuses to compile this size synchronously: compile in the
    // background, and run on the TypeScript engine until it is ready.
    kernels.set(key, null);
    if (!pending.has(key)) pending.set(key, api.compile(b.bytes).then((m) => void kernels.set(key, instantiate(b, m, products))));
    return null;
  }
  kernels.set(key, instantiate(b, module, products));
  return kernels.get(key) ?? null;
}

const info = (k: Kernel): WasmKernelInfo => ({ simd: k.simd, shared: k.shared, v8Flag: k.v8Flag });

/**
 * Loads the WebAssembly kernel (the build `simd` names). Node and workers load it on first use
 * without this; a browser's main thread must await it (until then the CPU backend runs on the
 * TypeScript engine). Resolves to how it was loaded, or undefined where the runtime lacks that build.
 */
export async function loadWasmKernel(simd: WasmSimdChoice = 'auto'): Promise<WasmKernelInfo | undefined> {
  loadSync(simd);
  const picked = pick(simd);
  const wait = picked === undefined ? undefined : pending.get(picked);
  if (wait !== undefined) await wait;
  const k = loadSync(simd);
  return k ? info(k) : undefined;
}

/** How the kernel (the build `simd` names) loaded here, loading it synchronously if needed, or undefined. */
export function wasmKernelInfo(simd: WasmSimdChoice = 'auto'): WasmKernelInfo | undefined {
  const k = loadSync(simd);
  return k ? info(k) : undefined;
}

/**
 * A bump allocator over the kernel's memory for one call; offsets in bytes, each block on its own
 * 64-byte cache lines (threads write neighbouring blocks).
 */
class Layout {
  private end = HEAP_AT;
  take(bytes: number): number {
    const at = this.end;
    this.end = (this.end + bytes + 63) & ~63;
    return at;
  }
  get bytes(): number {
    return this.end;
  }
}

/** Views of the memory, renewed after it grows. */
function views(k: Kernel) {
  const buf = k.memory.buffer;
  return { i32: new Int32Array(buf), f32: new Float32Array(buf), f64: new Float64Array(buf) };
}

/** Grows the memory to `bytes`; false where that is past 4 GiB or the runtime refuses it. */
function ensure(k: Kernel, bytes: number): boolean {
  const have = k.memory.buffer.byteLength;
  if (bytes <= have) return true;
  if (bytes > MAX_BYTES) return false;
  try {
    k.memory.grow(Math.ceil((bytes - have) / PAGE));
    return true;
  } catch {
    return false;
  }
}

type Placed = Array<[field: number, at: number, values: Int32Array]>;

/** Places the work list's arrays in the call's layout. */
function placeWork(lay: Layout, job: ForwardJob | BackwardJob): Placed {
  const w = job.work;
  const arrays: Array<[number, Int32Array]> = [
    [J.QT_START, w.qTileStart],
    [J.QT_ROWS, w.qTileRows],
    [J.QT_PIECES, w.qTilePieces],
    [J.P_TILE, w.pieceTile],
    [J.P_SPAN_LO, w.pieceSpanLo],
    [J.P_SPAN_HI, w.pieceSpanHi],
    [J.P_ROW_OFF, w.pieceRowOff],
    [J.LO, w.lo],
    [J.HI, w.hi],
    [J.KT_START, w.kTileStart],
    [J.KT_COLS, w.kTileCols],
    [J.KT_PIECES, w.kTilePieces],
    [J.K_PIECES, w.kPieces],
  ];
  return arrays.map(([field, values]) => [field, lay.take(4 * values.length + 4), values]);
}

/** Copies the placed arrays into the memory and their addresses into the job. */
function writeWork(i32: Int32Array, jobWords: Int32Array, placed: Placed): void {
  for (const [field, at, values] of placed) {
    i32.set(values, at / 4);
    jobWords[field] = at;
  }
}

/**
 * Writes the job descriptor: what every job has (shape, numerics, scratch, the work list), then
 * `fields`. Returns the descriptor's words (KIND and NEXT are set per run).
 */
function writeJob(
  k: Kernel,
  job: ForwardJob | BackwardJob,
  threads: number,
  placed: Placed,
  scratch: { at: number; stride: number },
  fields: Record<number, number>,
): Int32Array {
  const { i32, f32 } = views(k);
  const jw = i32.subarray(JOB_AT / 4, JOB_AT / 4 + JOB_WORDS);
  jw.fill(0);
  writeWork(i32, jw, placed);
  Object.assign(jw, {
    [J.THREADS]: threads,
    [J.TQ]: job.tokensQ,
    [J.TK]: job.tokensK,
    [J.GROUP]: job.headsQ / job.headsKv,
    [J.DIM]: job.dim,
    [J.DIMP]: pad4(job.dim),
    [J.HQ]: job.headsQ,
    [J.HKV]: job.headsKv,
    [J.SCRATCH]: scratch.at,
    [J.SCRATCH_STRIDE]: scratch.stride,
    [J.HOST]: k.host ? 1 : 0,
    [J.TILE_Q]: job.work.tileQ,
    [J.TILE_K]: stepK(k, job.work),
    ...fields,
  });
  f32[JOB_AT / 4 + J.SCALE] = job.scale;
  f32[JOB_AT / 4 + J.SOFTCAP] = job.softcap;
  return jw;
}

/** The kernel's TK: keys of a forward step and of the score tiles' rows, at least the work list's k tiles. */
const stepK = (k: Kernel, work: WorkList): number => Math.max(work.tileK, k.stepK);

/** Places one scratch area per thread. */
function placeScratch(k: Kernel, lay: Layout, threads: number, dimP: number, group: number, work: WorkList): { at: number; stride: number } {
  const stride = k.exports.scratchBytes(dimP, group, work.tileQ, stepK(k, work));
  return { at: lay.take(threads * stride), stride };
}

/** Runs the job at JOB_AT on `threads` threads. */
function runJob(k: Kernel, threads: number): void {
  if (threads > 1 && k.threads !== undefined) k.threads.run(threads, JOB_AT, () => k.exports.run(JOB_AT, 0));
  else k.exports.run(JOB_AT, 0);
}

const pad4 = (n: number): number => (n + 3) & ~3;

/**
 * The WebAssembly engine, build `simd`, with `threads` threads per call (default:
 * defaultThreadCount()), or undefined where the runtime lacks that build (or it is still compiling).
 * With `products`, the same kernel sends its dense tile products to the host (the BLAS engine).
 */
export function wasmEngine(threads?: number, simd: WasmSimdChoice = 'auto', products?: HostProducts): CpuEngine | undefined {
  const k = loadSync(simd, products);
  if (k === null) return undefined;
  const n = k.threads === undefined ? 1 : (threads ?? defaultThreadCount());
  return {
    name: `${products?.name ?? `wasm-${k.simd}`} x${n}`,
    threads: n,
    tileQ: products?.tileQ ?? TILE_Q,
    tileK: products?.tileK ?? TILE_K,
    forward: (job) => forward(k, n, job),
    backward: (job) => backward(k, n, job),
  };
}

/** Copies token-major rows of `dim` floats into the memory at float index `at`, rows padded to dimP with zeros. */
function copyIn(f32: Float32Array, at: number, src: Float32Array, rows: number, dim: number, dimP: number): void {
  if (dim === dimP) f32.set(src, at);
  else gatherHeads(f32, at, src, rows, 1, 0, 1, dim, dimP);
}

/** The inverse of copyIn. */
function copyOut(dst: Float32Array, f32: Float32Array, at: number, rows: number, dim: number, dimP: number): void {
  if (dim === dimP) dst.set(f32.subarray(at, at + rows * dim));
  else scatterHeads(dst, f32, at, rows, 1, 0, 1, dim, dimP);
}

/**
 * Whether the floats of `regions` ([byte offset, count] pairs, at most 4) are all finite: a job
 * of its own, the threads taking chunks of it. Leaves the check's words of the job at zero.
 */
function checkFinite(k: Kernel, threads: number, jw: Int32Array, flagAt: number, regions: Array<[number, number]>): boolean {
  regions.forEach(([at, n], r) => {
    jw[J.CHECK + 2 * r] = at;
    jw[J.CHECK + 2 * r + 1] = n;
  });
  const { i32 } = views(k);
  i32[flagAt / 4] = 1;
  jw[J.CHECK_OUT] = flagAt;
  jw[J.KIND] = KIND_CHECK_FINITE;
  jw[J.NEXT] = 0;
  runJob(k, threads);
  jw.fill(0, J.CHECK, J.CHECK_OUT + 1);
  return i32[flagAt / 4] === 1;
}

function forward(k: Kernel, threads: number, job: ForwardJob): void {
  const { tokensQ, tokensK, headsQ, headsKv, dim } = job;
  const group = headsQ / headsKv;
  const dimP = pad4(dim);
  const w = job.work;
  const nqt = w.qTileStart.length;
  const lay = new Layout();
  const placed = placeWork(lay, job);
  // (kv head, q tile) items, longest tiles first, each tile's heads together.
  const items = new Int32Array(nqt * headsKv);
  costOrder(w.qTileCost).forEach((t, i) => {
    for (let hk = 0; hk < headsKv; hk++) items[i * headsKv + hk] = hk * nqt + t;
  });
  const rows = tokensQ * headsQ;
  const itemsAt = lay.take(items.length * 4 + 4);
  const qAt = lay.take(rows * dimP * 4);
  const kAt = lay.take(tokensK * headsKv * dimP * 4);
  const vAt = lay.take(tokensK * headsKv * dimP * 4);
  const outAt = lay.take(rows * dimP * 4);
  const maxAt = lay.take(rows * 8);
  const sumAt = lay.take(rows * 8);
  const maxlStride = k.exports.maxlStride(headsQ);
  const maxlAt = lay.take(threads * maxlStride * 4);
  const flagAt = lay.take(4);
  const scratch = placeScratch(k, lay, threads, dimP, group, job.work);
  if (!ensure(k, lay.bytes)) return typescriptEngine.forward(job);
  const { i32, f32, f64 } = views(k);
  copyIn(f32, qAt / 4, job.q, rows, dim, dimP);
  copyIn(f32, kAt / 4, job.k, tokensK * headsKv, dim, dimP);
  copyIn(f32, vAt / 4, job.v, tokensK * headsKv, dim, dimP);
  const jw = writeJob(k, job, threads, placed, scratch, {
    [J.Q]: qAt,
    [J.K]: kAt,
    [J.V]: vAt,
    [J.OUT]: outAt,
    [J.LSE]: maxAt,
    [J.ROWSUM]: sumAt,
    [J.MAXL]: maxlAt,
    [J.ITEMS]: itemsAt,
    [J.N_ITEMS]: items.length,
    [J.NQT]: nqt,
  });
  i32.set(items, itemsAt / 4);
  jw[J.FINITE] = checkFinite(k, threads, jw, flagAt, [[qAt, rows * dimP], [kAt, tokensK * headsKv * dimP], [vAt, tokensK * headsKv * dimP]]) ? 1 : 0;
  // Tokens no q tile covers keep out 0 and sum 0 (lse -inf below).
  let end = 0;
  const gap = (t0: number, t1: number): void => void f32.fill(0, outAt / 4 + t0 * headsQ * dimP, outAt / 4 + t1 * headsQ * dimP);
  for (let t = 0; t < nqt; t++) {
    gap(end, w.qTileStart[t]);
    end = w.qTileStart[t] + w.qTileRows[t];
  }
  gap(end, tokensQ);
  f64.fill(0, sumAt / 8, sumAt / 8 + rows);
  jw[J.KIND] = KIND_FORWARD;
  f32.fill(-Infinity, maxlAt / 4, maxlAt / 4 + threads * maxlStride);
  jw[J.NEXT] = 0;
  runJob(k, threads);

  copyOut(job.out, f32, outAt / 4, rows, dim, dimP);
  for (let r = 0; r < rows; r++) {
    const l = f64[sumAt / 8 + r];
    job.lse[r] = l === 0 ? -Infinity : f64[maxAt / 8 + r] + Math.log(l);
  }
  for (let h = 0; h < headsQ; h++) {
    let m = job.maxLogits[h];
    for (let t = 0; t < threads; t++) m = Math.max(m, f32[maxlAt / 4 + t * maxlStride + h]);
    job.maxLogits[h] = m;
  }
}

function backward(k: Kernel, threads: number, job: BackwardJob): void {
  const { tokensQ, tokensK, headsQ, headsKv, dim } = job;
  const group = headsQ / headsKv;
  const dimP = pad4(dim);
  const lay = new Layout();
  const placed = placeWork(lay, job);
  const lists = assignStatic(job.work.kTileCost, threads);
  const items = Int32Array.from(lists.flat());
  const threadOff = Int32Array.from([0, ...lists.map((l, i) => lists.slice(0, i + 1).reduce((s, x) => s + x.length, 0))]);
  const rows = tokensQ * headsQ;
  const keys = tokensK * headsKv;
  const itemsAt = lay.take(items.length * 4 + 4);
  const offAt = lay.take(threadOff.length * 4);
  const qAt = lay.take(rows * dimP * 4);
  const doAt = lay.take(rows * dimP * 4);
  const dqOutAt = lay.take(rows * dimP * 4);
  const lseAt = lay.take(rows * 8);
  const deltaAt = lay.take(rows * 8);
  const kAt = lay.take(keys * dimP * 4);
  const vAt = lay.take(keys * dimP * 4);
  const dkAt = lay.take(keys * dimP * 4);
  const dvAt = lay.take(keys * dimP * 4);
  const dqStride = (group * tokensQ * dimP * 4 + 63) & ~63;
  const dqAt = lay.take(threads * dqStride);
  const flagAt = lay.take(4);
  const scratch = placeScratch(k, lay, threads, dimP, group, job.work);
  if (!ensure(k, lay.bytes)) return typescriptEngine.backward(job);
  const { i32, f32, f64 } = views(k);
  copyIn(f32, qAt / 4, job.q, rows, dim, dimP);
  copyIn(f32, doAt / 4, job.dout, rows, dim, dimP);
  copyIn(f32, kAt / 4, job.k, keys, dim, dimP);
  copyIn(f32, vAt / 4, job.v, keys, dim, dimP);
  f64.set(job.lse, lseAt / 8);
  f64.set(job.delta, deltaAt / 8);
  const jw = writeJob(k, job, threads, placed, scratch, {
    [J.Q]: qAt,
    [J.K]: kAt,
    [J.V]: vAt,
    [J.DOUT]: doAt,
    [J.LSE]: lseAt,
    [J.DELTA]: deltaAt,
    [J.DQ]: dqAt,
    [J.DQ_STRIDE]: dqStride,
    [J.DQ_OUT]: dqOutAt,
    [J.DK]: dkAt,
    [J.DV]: dvAt,
    [J.ITEMS]: itemsAt,
    [J.N_ITEMS]: items.length,
    [J.THREAD_OFF]: offAt,
  });
  i32.set(items, itemsAt / 4);
  i32.set(threadOff, offAt / 4);
  jw[J.FINITE] = checkFinite(k, threads, jw, flagAt, [[qAt, rows * dimP], [doAt, rows * dimP], [kAt, keys * dimP], [vAt, keys * dimP]]) ? 1 : 0;
  // Keys no k tile covers keep dk = dv = 0 (each thread zeroes its own dQ buffer).
  f32.fill(0, dkAt / 4, dkAt / 4 + keys * dimP);
  f32.fill(0, dvAt / 4, dvAt / 4 + keys * dimP);
  for (let hk = 0; hk < headsKv; hk++) {
    jw[J.HK] = hk;
    jw[J.KIND] = KIND_BACKWARD;
    runJob(k, threads);
    jw[J.KIND] = KIND_SUM_DQ;
    runJob(k, threads);
  }
  copyOut(job.dq, f32, dqOutAt / 4, rows, dim, dimP);
  copyOut(job.dk, f32, dkAt / 4, keys, dim, dimP);
  copyOut(job.dv, f32, dvAt / 4, keys, dim, dimP);
}
