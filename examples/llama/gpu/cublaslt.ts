/**
 * The one GEMM wrapper of the GPU trainer: cuBLASLt through koffi (llm.c's matmul.cuh in our
 * setting). The library is found the way the device layer finds NVRTC ($MAGI_ATTN_LIBCUBLASLT,
 * the toolkit's lib dirs, the loader's search), and a missing one is a CudaUnavailableError that
 * lists every path tried. Every call's cublasStatus_t is checked; a failure names the call and
 * the library's own status name and text.
 *
 * Matrices are row-major as they sit in memory ([rows, cols] with a leading dimension ld >= cols);
 * cuBLASLt is column-major, so C = op(A)·op(B) is issued as Cᵀ = op(B)ᵀ·op(A)ᵀ, which reads the
 * same memory with no copy. Inputs are both bfloat16 or both float32; C is bfloat16 or float32;
 * compute and scale are float32 (CUBLAS_COMPUTE_32F: no TF32, so a float32 GEMM is a true SGEMM,
 * as the naive attention oracle needs). Work goes on the legacy default stream, ordered with the
 * device layer's launches and copies. Descriptors and the heuristic's algorithm are cached per
 * shape, layout and pointer alignment.
 *
 * Enum values and the heuristic result's layout are cublasLt.h's (CUDA 12/13); the GPU check
 * (gpu-check.sh) compares them with the header of the machine it runs on.
 */
import koffi from 'koffi';
import { CudaUnavailableError, loadFirstLibrary, toolkitLibraryCandidates, type CudaDevice, type DeviceBuffer } from 'magi-attention/device';
import { InvalidArgumentError } from 'magi-attention';

/** cublasLt.h / library_types.h values this wrapper uses. */
export const LT = {
  CUBLAS_COMPUTE_32F: 68,
  CUDA_R_32F: 0,
  CUDA_R_16BF: 14,
  CUBLAS_OP_N: 0,
  CUBLAS_OP_T: 1,
  CUBLASLT_MATMUL_DESC_TRANSA: 3,
  CUBLASLT_MATMUL_DESC_TRANSB: 4,
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: 1,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: 5,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: 6,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: 7,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: 8,
  /** sizeof(cublasLtMatmulHeuristicResult_t): algo (8 × uint64), workspaceSize, state, wavesCount, reserved[4]. */
  HEURISTIC_RESULT_BYTES: 96,
  /** sizeof(cublasLtMatmulAlgo_t). */
  ALGO_BYTES: 64,
} as const;

/** A cuBLASLt call failed: `call` names it, `status` is the cublasStatus_t. */
export class CublasLtError extends Error {
  override name = 'CublasLtError';
  constructor(
    readonly call: string,
    readonly status: number,
    readonly statusName: string,
    readonly description: string,
  ) {
    super(`${call} failed: ${statusName} (${status}): ${description}`);
  }
}

/** Where libcublasLt is looked for: $MAGI_ATTN_LIBCUBLASLT, the toolkit's lib dirs (newest first), the loader's search. */
export function defaultLibcublasLtCandidates(): string[] {
  return toolkitLibraryCandidates('libcublasLt', 'MAGI_ATTN_LIBCUBLASLT', ['libcublasLt.so.13', 'libcublasLt.so.12', 'libcublasLt.so']);
}

export type GemmDtype = 'bfloat16' | 'float32';

/** A row-major matrix in device memory: [rows, cols], row stride ld (default cols) elements. */
export interface GemmMatrix {
  ptr: bigint;
  dtype: GemmDtype;
  rows: number;
  cols: number;
  ld?: number;
}

export interface GemmCall {
  /** Output (and input when beta != 0), [m, n]. */
  c: GemmMatrix;
  /** [m, k], or [k, m] with transA. */
  a: GemmMatrix;
  /** [k, n], or [n, k] with transB. */
  b: GemmMatrix;
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
}

/** One operand of the column-major call: which of our matrices it is and how cuBLASLt must read it. */
export interface LtOperand {
  /** 'a', 'b' or 'c' of the GemmCall. */
  readonly from: 'a' | 'b' | 'c';
  readonly dtype: GemmDtype;
  /** Column-major rows, columns and leading dimension (a row-major [r, c] matrix is column-major [c, r], same ld). */
  readonly rows: number;
  readonly cols: number;
  readonly ld: number;
}

/** The cuBLASLt call computing a row-major GemmCall: Cᵀ = op(B)ᵀ·op(A)ᵀ in cuBLASLt's column-major terms. */
export interface LtCall {
  readonly m: number;
  readonly n: number;
  readonly k: number;
  /** CUBLASLT_MATMUL_DESC_TRANSA / TRANSB values. */
  readonly transa: number;
  readonly transb: number;
  /** cuBLASLt's A, B and C = D operands. */
  readonly A: LtOperand;
  readonly B: LtOperand;
  readonly C: LtOperand;
}

/** Checks a row-major GemmCall and maps it onto cuBLASLt's column-major call (no copies: the same memory, read transposed). */
export function ltCall(g: GemmCall): LtCall {
  const transA = g.transA ?? false;
  const transB = g.transB ?? false;
  const [m, kA] = transA ? [g.a.cols, g.a.rows] : [g.a.rows, g.a.cols];
  const [kB, n] = transB ? [g.b.cols, g.b.rows] : [g.b.rows, g.b.cols];
  if (kA !== kB) throw new InvalidArgumentError('b', 'inner dimensions of op(A) and op(B) must agree', `op(A) ${m}x${kA}, op(B) ${kB}x${n}`);
  if (g.c.rows !== m || g.c.cols !== n) throw new InvalidArgumentError('c', `must be [${m}, ${n}] = op(A)·op(B)`, `got [${g.c.rows}, ${g.c.cols}]`);
  if (g.a.dtype !== g.b.dtype) throw new InvalidArgumentError('b', "dtype must equal A's", `${g.b.dtype} vs ${g.a.dtype}`);
  if (g.a.dtype === 'float32' && g.c.dtype !== 'float32') throw new InvalidArgumentError('c', 'must be float32 when A and B are float32');
  const operand = (from: 'a' | 'b' | 'c', x: GemmMatrix): LtOperand => {
    const ld = x.ld ?? x.cols;
    if (!Number.isSafeInteger(x.rows) || !Number.isSafeInteger(x.cols) || x.rows < 1 || x.cols < 1 || !Number.isSafeInteger(ld) || ld < x.cols) {
      throw new InvalidArgumentError(from, 'must be a matrix with rows, cols >= 1 and ld >= cols', `[${x.rows}, ${x.cols}] ld ${ld}`);
    }
    return { from, dtype: x.dtype, rows: x.cols, cols: x.rows, ld };
  };
  return {
    m: n,
    n: m,
    k: kA,
    transa: transB ? LT.CUBLAS_OP_T : LT.CUBLAS_OP_N,
    transb: transA ? LT.CUBLAS_OP_T : LT.CUBLAS_OP_N,
    A: operand('b', g.b),
    B: operand('a', g.a),
    C: operand('c', g.c),
  };
}

type Fn = (...args: unknown[]) => unknown;

interface Plan {
  desc: unknown;
  layouts: unknown[];
  algo: Uint8Array;
}

const typeCode = (d: GemmDtype): number => (d === 'bfloat16' ? LT.CUDA_R_16BF : LT.CUDA_R_32F);

/** Largest power of two (up to 256) dividing the address: what the heuristic may assume. */
function alignment(ptr: bigint): number {
  let a = 1;
  while (a < 256 && ptr % BigInt(a * 2) === 0n) a *= 2;
  return a;
}

export class CublasLt {
  readonly libraryPath: string;
  /** cublasLtGetVersion(), e.g. 130100 for 13.1.0. */
  readonly version: number;
  private readonly f: Record<string, Fn> = {};
  private readonly handle: unknown;
  private readonly workspace: DeviceBuffer;
  private readonly plans = new Map<string, Plan>();
  private readonly alpha = new Float32Array(1);
  private readonly beta = new Float32Array(1);
  private disposed = false;

  /** Loads libcublasLt, creates a handle and a 32 MiB workspace on `device` (the size cuBLAS recommends for Hopper). */
  constructor(
    readonly device: CudaDevice,
    options: { candidates?: readonly string[]; workspaceBytes?: number } = {},
  ) {
    const { lib, path } = loadFirstLibrary(
      'libcublasLt',
      options.candidates ?? defaultLibcublasLtCandidates(),
      'cuBLASLt (part of the CUDA toolkit) is missing: install it, set CUDA_HOME, or set MAGI_ATTN_LIBCUBLASLT to its path',
    );
    this.libraryPath = path;
    const P = 'void *';
    const OP = koffi.out(koffi.pointer('void *'));
    const OI = koffi.out(koffi.pointer('int'));
    const U64 = 'uint64_t'; // device pointers: passed as the integer they are (the same registers as a void * on LP64)
    const defs: Array<[string, string, unknown[]]> = [
      ['cublasLtGetVersion', 'size_t', []],
      ['cublasLtGetStatusName', 'const char *', ['int']],
      ['cublasLtGetStatusString', 'const char *', ['int']],
      ['cublasLtCreate', 'int', [OP]],
      ['cublasLtDestroy', 'int', [P]],
      ['cublasLtMatmulDescCreate', 'int', [OP, 'int', 'int']],
      ['cublasLtMatmulDescDestroy', 'int', [P]],
      ['cublasLtMatmulDescSetAttribute', 'int', [P, 'int', P, 'size_t']],
      ['cublasLtMatrixLayoutCreate', 'int', [OP, 'int', 'uint64_t', 'uint64_t', 'int64_t']],
      ['cublasLtMatrixLayoutDestroy', 'int', [P]],
      ['cublasLtMatmulPreferenceCreate', 'int', [OP]],
      ['cublasLtMatmulPreferenceDestroy', 'int', [P]],
      ['cublasLtMatmulPreferenceSetAttribute', 'int', [P, 'int', P, 'size_t']],
      ['cublasLtMatmulAlgoGetHeuristic', 'int', [P, P, P, P, P, P, P, 'int', P, OI]],
      ['cublasLtMatmul', 'int', [P, P, P, U64, P, U64, P, P, U64, P, U64, P, P, U64, 'size_t', P]],
    ];
    const func = lib.func.bind(lib) as unknown as (name: string, ret: string, args: unknown[]) => Fn;
    for (const [name, ret, args] of defs) {
      try {
        this.f[name] = func(name, ret, args);
      } catch (e) {
        throw new CudaUnavailableError('libcublasLt', `${path} does not export ${name}: ${(e as Error).message}`);
      }
    }
    this.version = Number(this.f.cublasLtGetVersion!());
    device.makeCurrent(); // cuBLASLt uses the context current on this thread: the device's primary context
    const h: [unknown] = [null];
    this.check('cublasLtCreate', this.f.cublasLtCreate!(h));
    this.handle = h[0];
    this.workspace = device.alloc(options.workspaceBytes ?? 32 << 20);
  }

  private check(call: string, rc: unknown): void {
    if (rc === 0) return;
    const code = Number(rc);
    const name = this.f.cublasLtGetStatusName!(code);
    const text = this.f.cublasLtGetStatusString!(code);
    throw new CublasLtError(call, code, typeof name === 'string' ? name : `status ${code}`, typeof text === 'string' ? text : 'unknown error');
  }

  private create(call: string, ...args: unknown[]): unknown {
    const out: [unknown] = [null];
    this.check(call, this.f[call]!(out, ...args));
    return out[0];
  }

  /** C = alpha·op(A)·op(B) + beta·C on the legacy default stream. */
  gemm(g: GemmCall): void {
    if (this.disposed) throw new Error('CublasLt.gemm: the wrapper was disposed');
    const call = ltCall(g);
    const ptrs = { a: g.a.ptr, b: g.b.ptr, c: g.c.ptr };
    const [pA, pB, pC] = [ptrs[call.A.from], ptrs[call.B.from], ptrs[call.C.from]];
    const aligns = [pA, pB, pC].map(alignment);
    const key = JSON.stringify([call, aligns]);
    let plan = this.plans.get(key);
    if (plan === undefined) {
      plan = this.makePlan(call, aligns);
      this.plans.set(key, plan);
    }
    this.alpha[0] = g.alpha ?? 1;
    this.beta[0] = g.beta ?? 0;
    this.check(
      `cublasLtMatmul(${call.n}x${call.m}x${call.k} ${call.A.dtype}->${call.C.dtype}${g.transA ? ' Aᵀ' : ''}${g.transB ? ' Bᵀ' : ''})`,
      this.f.cublasLtMatmul!(this.handle, plan.desc, this.alpha, pA, plan.layouts[0], pB, plan.layouts[1], this.beta, pC, plan.layouts[2], pC, plan.layouts[2], plan.algo, this.workspace.ptr, this.workspace.bytes, null),
    );
  }

  private makePlan(call: LtCall, aligns: number[]): Plan {
    const desc = this.create('cublasLtMatmulDescCreate', LT.CUBLAS_COMPUTE_32F, LT.CUDA_R_32F);
    const setDesc = (attr: number, value: number): void =>
      this.check('cublasLtMatmulDescSetAttribute', this.f.cublasLtMatmulDescSetAttribute!(desc, attr, Int32Array.of(value), 4));
    setDesc(LT.CUBLASLT_MATMUL_DESC_TRANSA, call.transa);
    setDesc(LT.CUBLASLT_MATMUL_DESC_TRANSB, call.transb);
    const layout = (x: LtOperand): unknown => this.create('cublasLtMatrixLayoutCreate', typeCode(x.dtype), BigInt(x.rows), BigInt(x.cols), BigInt(x.ld));
    const layouts = [layout(call.A), layout(call.B), layout(call.C)];
    const pref = this.create('cublasLtMatmulPreferenceCreate');
    try {
      const setPref = (attr: number, value: ArrayBufferView, bytes: number): void =>
        this.check('cublasLtMatmulPreferenceSetAttribute', this.f.cublasLtMatmulPreferenceSetAttribute!(pref, attr, value, bytes));
      setPref(LT.CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, BigUint64Array.of(BigInt(this.workspace.bytes)), 8);
      // The heuristic assumes 256-byte aligned pointers unless told otherwise; say so only when one is less aligned.
      const alignPrefs: Array<[number, number]> = [
        [LT.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, aligns[0]],
        [LT.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, aligns[1]],
        [LT.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, aligns[2]],
        [LT.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, aligns[2]],
      ];
      for (const [attr, bytes] of alignPrefs) if (bytes < 256) setPref(attr, Uint32Array.of(bytes), 4);
      const results = new Uint8Array(LT.HEURISTIC_RESULT_BYTES);
      const count: [number] = [0];
      this.check(
        'cublasLtMatmulAlgoGetHeuristic',
        this.f.cublasLtMatmulAlgoGetHeuristic!(this.handle, desc, layouts[0], layouts[1], layouts[2], layouts[2], pref, 1, results, count),
      );
      if (count[0] < 1) {
        throw new CublasLtError('cublasLtMatmulAlgoGetHeuristic', 15, 'CUBLAS_STATUS_NOT_SUPPORTED', `no algorithm for ${JSON.stringify(call)}`);
      }
      return { desc, layouts, algo: results.slice(0, LT.ALGO_BYTES) };
    } finally {
      this.check('cublasLtMatmulPreferenceDestroy', this.f.cublasLtMatmulPreferenceDestroy!(pref));
    }
  }

  /** Frees the descriptors, the handle and the workspace. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const p of this.plans.values()) {
      for (const l of p.layouts) this.check('cublasLtMatrixLayoutDestroy', this.f.cublasLtMatrixLayoutDestroy!(l));
      this.check('cublasLtMatmulDescDestroy', this.f.cublasLtMatmulDescDestroy!(p.desc));
    }
    this.plans.clear();
    this.check('cublasLtDestroy', this.f.cublasLtDestroy!(this.handle));
    this.workspace.free();
  }
}
