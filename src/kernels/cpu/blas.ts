/**
 * The BLAS engine of the CPU backend: the WebAssembly kernel's loop (work list, masking, online
 * softmax, lse, softcap, NaN rules, threads: wasm/assembly/kernel.ts, unchanged) with its dense
 * tile products (forward S = QKᵀ and O += PV; backward the recomputed S, dP = dO·Vᵀ, dV += Pᵀ·dO,
 * dK += dSᵀ·Q, dQ += dS·K) sent to a native `cblas_sgemm` on float32 tiles in the kernel's
 * memory, reached through koffi. 128-bit WebAssembly SIMD cannot use a core's AVX2 or AVX-512
 * units; a BLAS can. The products of inputs holding NaN or Inf stay on the kernel's
 * visible-cells path (a BLAS would spread 0·Inf = NaN from masked cells).
 *
 * The library is looked up at run time, never installed: $MAGI_ATTN_BLAS (a path or soname)
 * alone when set, otherwise the common sonames in BLAS_SONAMES, the first that opens and exports
 * cblas_sgemm. Each of our threads calls the BLAS single-threaded (the library's own thread
 * count is set to 1: its threads would fight ours for the cores), so work is split exactly as in
 * the WebAssembly engine and results are bit-identical run to run for a given thread count.
 *
 * Node only (koffi is a native addon, loaded lazily here so that the backend still loads in a
 * browser); the engine is opt-in (`createCpuBackend({ engine: 'blas' })`, see the README).
 */
import type { LibraryHandle } from 'koffi';
import { BlasUnavailableError } from '../../errors.js';
import { environment, envVar } from '../../util/env.js';
import type { CpuEngine } from './engine.js';
import { nodeRequire } from './wasm/node-runtime.js';
import type { HostImports } from './wasm/node-threads.js';
import { type HostProducts, type WasmSimdChoice, wasmEngine } from './wasm/engine.js';

/** The environment variable naming the BLAS library to load (a path, or a name the dynamic loader finds). */
export const BLAS_ENV = 'MAGI_ATTN_BLAS';

/** Tried in this order when $MAGI_ATTN_BLAS is not set; libblas.so.3 only counts where it exports cblas_sgemm. */
export const BLAS_SONAMES = ['libopenblas.so.0', 'libopenblas.so', 'libmkl_rt.so.2', 'libmkl_rt.so', 'libblis.so.4', 'libblas.so.3'] as const;

/**
 * The BLAS engine's tiles: q tiles of 64 rows (as the micro-kernel's: the forward has as many
 * items to spread over threads), k tiles of BLAS_TILE_K keys and forward steps of BLAS_STEP_K
 * keys along a piece, so that a product is 64 x 256 x D (forward QKᵀ), 64 x D x 256 (PV) or
 * 64 x 128 x D and the like (backward): several times the work of the micro-kernel's 64 x 64
 * tiles per call, which keeps the call's fixed cost (koffi, the library's dispatch and packing:
 * about a microsecond) small next to it.
 */
const BLAS_TILE_Q = 64;
const BLAS_TILE_K = 128;
const BLAS_STEP_K = 256;

/** The BLAS the engine loaded. */
export interface BlasInfo {
  /** The path or soname it was loaded by. */
  library: string;
  /** The library's own description where it has one (openblas_get_config), else ''. */
  config: string;
  /** The call that set its thread count to 1, or 'none' (a library without threads of its own). */
  threadControl: string;
}

type Koffi = typeof import('koffi');

/** cblas_sgemm's parameters as koffi types (order, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); pointers as addresses. */
const SGEMM_PARAMS = ['int', 'int', 'int', 'int', 'int', 'int', 'float', 'uintptr_t', 'int', 'uintptr_t', 'int', 'float', 'uintptr_t', 'int'];

/**
 * The kernel's `gemm` import, made on every thread (wasm/node-threads.ts HostImports): loads the
 * library through koffi on that thread and calls cblas_sgemm (row-major) on pointers into the
 * kernel's shared memory, whose base address it reads once per buffer (a shared memory grows in
 * place, but its buffer object changes). Plain JavaScript in a string: worker threads run it too.
 */
const IMPORTS_SOURCE = `
const koffi = require(data.koffi);
const sgemm = koffi.load(data.library).func('cblas_sgemm', 'void', data.sgemmParams);
let buffer;
let base = 0;
return {
  gemm(transA, m, n, k, a, lda, b, ldb, beta, c, ldc) {
    const now = memory.buffer;
    if (now !== buffer) {
      buffer = now;
      base = Number(koffi.address(new Uint8Array(now)));
    }
    // CblasRowMajor 101, CblasNoTrans 111, CblasTrans 112
    sgemm(101, transA ? 112 : 111, 111, m, n, k, 1, base + a, lda, base + b, ldb, beta, base + c, ldc);
  },
};
`;

/** Environment variables by which BLAS libraries size their thread pools when they load. */
const THREAD_ENV = ['OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS', 'BLIS_NUM_THREADS'];

/** Calls that set a BLAS's own thread count, by library. */
const THREAD_SETTERS: Array<[name: string, type: string]> = [
  ['openblas_set_num_threads', 'int'],
  ['MKL_Set_Num_Threads', 'int'],
  ['bli_thread_set_num_threads', 'int64_t'],
];

interface Loaded {
  info: BlasInfo;
  products: HostProducts;
}
/** By the value of $MAGI_ATTN_BLAS when it loaded ('' unset). A failure is not kept: a later call looks again. */
const loaded = new Map<string, Loaded>();


/** Opens `name` with the BLAS libraries' own thread pools sized to one thread (the variables are restored after). */
function open(koffi: Koffi, name: string): LibraryHandle {
  const env = environment() ?? {};
  const saved = THREAD_ENV.map((v) => env[v]);
  for (const v of THREAD_ENV) env[v] ??= '1';
  try {
    return koffi.load(name);
  } finally {
    THREAD_ENV.forEach((v, i) => {
      if (saved[i] === undefined) delete env[v];
    });
  }
}

function tryLoad(fromEnv: string | undefined): Loaded {
  const req = nodeRequire();
  if (req === undefined) throw new BlasUnavailableError("engine 'blas' needs Node >= 20.16 (a native library through koffi); this runtime has no process.getBuiltinModule", []);
  const koffi = req('koffi') as Koffi;
  const candidates = fromEnv !== undefined && fromEnv !== '' ? [fromEnv] : [...BLAS_SONAMES];
  const tried: string[] = [];
  for (const name of candidates) {
    let lib: LibraryHandle;
    try {
      lib = open(koffi, name);
    } catch (e) {
      tried.push(`${name}: ${(e as Error).message}`);
      continue;
    }
    try {
      lib.func('cblas_sgemm', 'void', SGEMM_PARAMS);
    } catch {
      tried.push(`${name}: loads, but does not export cblas_sgemm`);
      continue;
    }
    let threadControl = 'none';
    for (const [setter, type] of THREAD_SETTERS) {
      let set: (n: number) => void;
      try {
        set = lib.func(setter, 'void', [type]) as (n: number) => void;
      } catch {
        continue;
      }
      set(1);
      threadControl = `${setter}(1)`;
      break;
    }
    let config = '';
    try {
      config = (lib.func('openblas_get_config', 'str', []) as () => string)();
    } catch {
      // not OpenBLAS
    }
    const data = { koffi: req.resolve('koffi'), library: name, sgemmParams: SGEMM_PARAMS };
    const imports: HostImports = { source: IMPORTS_SOURCE, data };
    return { info: { library: name, config, threadControl }, products: { key: `blas:${name}`, name: 'blas', tileQ: BLAS_TILE_Q, tileK: BLAS_TILE_K, stepK: BLAS_STEP_K, imports } };
  }
  const how =
    fromEnv !== undefined && fromEnv !== ''
      ? `${BLAS_ENV}=${fromEnv} did not load`
      : `none of ${candidates.join(', ')} loaded (set ${BLAS_ENV}=/path/to/libopenblas.so.0 to name one)`;
  throw new BlasUnavailableError(`engine 'blas' needs a CBLAS library exporting cblas_sgemm: ${how}. Install one, e.g. \`apt install libopenblas0\` (Debian, Ubuntu) or \`dnf install openblas\` (Fedora). Tried: ${tried.join('; ')}`, tried);
}

/** Loads the BLAS (once per process and value of $MAGI_ATTN_BLAS). Throws BlasUnavailableError where none loads. */
function load(): Loaded {
  const fromEnv = envVar(BLAS_ENV);
  const key = fromEnv ?? '';
  let l = loaded.get(key);
  if (l === undefined) loaded.set(key, (l = tryLoad(fromEnv)));
  return l;
}

/** Which BLAS the engine uses here, loading it if needed; throws BlasUnavailableError where none loads. */
export function blasInfo(): BlasInfo {
  return { ...load().info };
}

/**
 * The BLAS engine with `threads` threads per call (default: as the WebAssembly engine's), its
 * loop in WebAssembly build `simd`. Throws BlasUnavailableError where no BLAS loads, or where the
 * runtime has no WebAssembly SIMD (the loop lives there).
 */
export function blasEngine(threads?: number, simd: WasmSimdChoice = 'auto'): CpuEngine {
  const { products } = load();
  const engine = wasmEngine(threads, simd, products);
  if (engine === undefined) throw new BlasUnavailableError("engine 'blas' runs its loop in the WebAssembly kernel, and this runtime lacks WebAssembly SIMD", []);
  return engine;
}
