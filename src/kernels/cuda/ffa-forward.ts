/**
 * The launcher of the first CUDA flex-flash-attention forward kernel (ffa_fwd.cu, compiled at run
 * time by NVRTC). It is the host half of the kernel's tile scheduler: it turns a SliceList into a
 * work list of (slice, q-tile start) pairs, decides whether the output rows can be stored directly
 * or must be LSE-merged under locks, uploads, launches, and (for now) hands back host Tensors.
 * It is not yet a KernelBackend: no sink, no accumulation buffers, no max_logits, no backward.
 *
 * Epilogue choice:
 *   direct - the q ranges of the slices that produce work are pairwise disjoint, so each output
 *            row is written by exactly one tile (out in the input type, lse fp32); rows that no
 *            tile covers are zero-filled (lse = -inf) by a small side kernel.
 *   merge  - q ranges overlap: tiles LSE-merge into an fp32 out buffer under a spin lock per
 *            (aligned 128-row block, head); lse starts at -inf; a finalize kernel casts to the
 *            output dtype and zero-fills rows whose lse stayed -inf. Output dtype float32 always
 *            takes this path.
 */
import { kernelArg, type CudaDevice, type DeviceBuffer, type Kernel, type Module, type Stream } from '../../device/device.js';
import { Tensor } from '../../tensor.js';
import type { DType } from '../../dtype.js';
import type { SliceList } from '../../mask/slice-list.js';
import { rowKeyEnd, rowKeyStart } from '../../mask/mask-type.js';
import { readKernelSource } from './source.js';
import type { FfaForwardArgs, FfaForwardResult } from '../backend.js';

/**
 * Default tile shape (ffa_fwd.cu's FFA_NWARPS = 8, FFA_BN = 64): 8 warps of 16 q rows each, so
 * BM = 128 q rows per block and BN = 64 keys per k tile. Other shapes compile with -D options.
 */
export const FFA_FWD_WARPS = 8;
export const FFA_FWD_BLOCK_M = 16 * FFA_FWD_WARPS;
export const FFA_FWD_BLOCK_N = 64;

/** Compile-time tile shape: `warps` warps of 16 q rows, `blockN` keys per k tile (multiple of 16). */
export interface FfaForwardTileConfig {
  warps: number;
  blockN: number;
}
export const FFA_FWD_HEAD_DIMS: readonly number[] = [64, 128];

/** Thrown for inputs this kernel does not handle (yet). */
export class FfaCudaUnsupportedError extends Error {
  constructor(what: string) {
    super(`cuda ffa forward: ${what}`);
    this.name = 'FfaCudaUnsupportedError';
  }
}

/**
 * The kernel source. Compiled output does not copy .cu files, so from dist/src/kernels/cuda/ the
 * file is read from the package's src/kernels/cuda/ (four levels up), from src/ it is next door.
 */
export function ffaForwardSource(): string {
  return readKernelSource('ffa_fwd.cu');
}

// ---------------------------------------------------------------------------------------------
// Tile scheduling (host side)

export interface FfaForwardPlan {
  /** Flat (slice index, q tile start) pairs in global q coordinates, most k tiles first. */
  readonly work: Int32Array;
  readonly numWork: number;
  /** Total k tiles over the work list (for one head): a cost measure. */
  readonly kTiles: number;
  /** True when the q ranges of slices with work overlap: the merge epilogue is needed. */
  readonly overlappingQ: boolean;
  /** Flat [start, end) q-row ranges that no work tile covers (zero-filled in direct mode). */
  readonly uncoveredRows: Int32Array;
}

/**
 * Builds the work list: every slice's q tiles (of `blockM` rows from the slice's q start) whose
 * rows see at least one key; longest (most k tiles) first, so the long causal tiles do not trail.
 */
export function planFfaForward(slices: SliceList, tokensQ: number, blockM = FFA_FWD_BLOCK_M, blockN = FFA_FWD_BLOCK_N): FfaForwardPlan {
  const items: Array<[number, number, number]> = []; // slice, m0, k tiles
  const spans: Array<[number, number]> = []; // covered row spans
  const sliceSpans: Array<[number, number]> = [];
  for (let b = 0; b < slices.types.length; b++) {
    const type = slices.types[b];
    const qs = slices.qRanges[2 * b];
    const qe = slices.qRanges[2 * b + 1];
    const ks = slices.kRanges[2 * b];
    const ke = slices.kRanges[2 * b + 1];
    if (qe > tokensQ || qs < 0) throw new RangeError(`cuda ffa forward: qRanges[${b}] = [${qs}, ${qe}) exceeds the ${tokensQ} query tokens`);
    let any = false;
    for (let m0 = qs; m0 < qe; m0 += blockM) {
      const m1 = Math.min(m0 + blockM, qe);
      const kLo = rowKeyStart(type, qs, ks, m0);
      const kHi = rowKeyEnd(type, qe, ke, m1 - 1);
      if (kHi <= kLo) continue;
      items.push([b, m0, Math.ceil((kHi - kLo) / blockN)]);
      spans.push([m0, m1]);
      any = true;
    }
    if (any) sliceSpans.push([qs, qe]);
  }
  items.sort((x, y) => y[2] - x[2] || x[0] - y[0] || x[1] - y[1]);
  const work = new Int32Array(items.length * 2);
  let kTiles = 0;
  items.forEach(([b, m0, n], i) => {
    work[2 * i] = b;
    work[2 * i + 1] = m0;
    kTiles += n;
  });

  sliceSpans.sort((x, y) => x[0] - y[0]);
  let overlappingQ = false;
  let reach = -1;
  for (const [s, e] of sliceSpans) {
    if (s < reach) overlappingQ = true;
    reach = Math.max(reach, e);
  }

  spans.sort((x, y) => x[0] - y[0]);
  const gaps: number[] = [];
  let cursor = 0;
  for (const [s, e] of spans) {
    if (s > cursor) gaps.push(cursor, s);
    cursor = Math.max(cursor, e);
  }
  if (cursor < tokensQ) gaps.push(cursor, tokensQ);
  return { work, numWork: items.length, kTiles, overlappingQ, uncoveredRows: Int32Array.from(gaps) };
}

// ---------------------------------------------------------------------------------------------
// Launching

export interface FfaForwardShape {
  tokensQ: number;
  tokensK: number;
  headsQ: number;
  headsKv: number;
  dim: number;
  /** Input dtype: bfloat16 or float16. */
  dtype: DType;
}

export interface FfaForwardLaunchOptions {
  /** Use the merge epilogue even when q ranges are disjoint (testing). */
  forceMerge?: boolean;
  /** Output dtype: the input dtype (default) or float32. */
  outDtype?: DType;
}

/** The compiled module; one per device. */
export class CudaFfaForward {
  readonly module: Module;
  readonly warps: number;
  readonly blockM: number;
  readonly blockN: number;
  private readonly configured = new Set<string>();

  constructor(
    readonly device: CudaDevice,
    options: { cacheDir?: string; tile?: Partial<FfaForwardTileConfig> } = {},
  ) {
    this.warps = options.tile?.warps ?? FFA_FWD_WARPS;
    this.blockN = options.tile?.blockN ?? FFA_FWD_BLOCK_N;
    if (![2, 4, 8].includes(this.warps)) throw new FfaCudaUnsupportedError(`tile warps must be 2, 4 or 8, got ${this.warps}`);
    if (![32, 64, 128].includes(this.blockN)) throw new FfaCudaUnsupportedError(`tile blockN must be 32, 64 or 128, got ${this.blockN}`);
    this.blockM = 16 * this.warps;
    const opts: { name: string; cacheDir?: string; options: string[] } = {
      name: 'ffa_fwd.cu',
      options: [`-DFFA_NWARPS=${this.warps}`, `-DFFA_BN=${this.blockN}`],
    };
    if (options.cacheDir !== undefined) opts.cacheDir = options.cacheDir;
    this.module = device.compile(ffaForwardSource(), opts);
  }

  /** Kernel of the main launch, with its dynamic shared memory opted in. */
  mainKernel(dtype: DType, dim: number, merge: boolean): { kernel: Kernel; smemBytes: number } {
    const t = dtype === 'bfloat16' ? 'bf16' : dtype === 'float16' ? 'fp16' : null;
    if (t === null) throw new FfaCudaUnsupportedError(`input dtype must be bfloat16 or float16, got ${dtype}`);
    if (!FFA_FWD_HEAD_DIMS.includes(dim)) throw new FfaCudaUnsupportedError(`head dim must be one of ${FFA_FWD_HEAD_DIMS.join(', ')}, got ${dim}`);
    const name = `ffa_fwd_${t}_d${dim}_${merge ? 'merge' : 'direct'}`;
    const kernel = this.module.kernel(name);
    const smemBytes = (this.blockM + 4 * this.blockN) * dim * 2;
    if (!this.configured.has(name)) {
      kernel.setMaxDynamicSharedMemory(smemBytes);
      this.configured.add(name);
    }
    return { kernel, smemBytes };
  }

  /** Device-resident plan and scratch for one (shape, slice list); launch it as often as needed. */
  prepare(shape: FfaForwardShape, slices: SliceList, options: FfaForwardLaunchOptions = {}): FfaForwardProblem {
    return new FfaForwardProblem(this, shape, slices, options);
  }

  /**
   * Host tensors in, host tensors out (uploads, runs, downloads). Sink, accumulation buffers and
   * max_logits are not implemented by this kernel yet.
   */
  forward(args: FfaForwardArgs<Tensor>, options: FfaForwardLaunchOptions & { poison?: boolean } = {}): FfaForwardResult<Tensor> {
    if (args.sink !== undefined) throw new FfaCudaUnsupportedError('sink is not implemented yet');
    if (args.outAcc !== undefined || args.lseAcc !== undefined) throw new FfaCudaUnsupportedError('accumulation buffers are not implemented yet');
    if (args.returnMaxLogits) throw new FfaCudaUnsupportedError('max_logits is not implemented yet');
    const { q, k, v } = args;
    const [tokensQ, headsQ, dim] = q.shape;
    const [tokensK, headsKv] = k.shape;
    if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3) throw new FfaCudaUnsupportedError('q, k, v must be [tokens, heads, dim]');
    if (k.shape[2] !== dim || v.shape.join() !== k.shape.join()) throw new FfaCudaUnsupportedError('k and v must be [Tk, Hkv, D] with q\'s D');
    if (headsQ % headsKv !== 0) throw new FfaCudaUnsupportedError(`Hq (${headsQ}) must be a multiple of Hkv (${headsKv})`);
    if (k.dtype !== q.dtype || v.dtype !== q.dtype) throw new FfaCudaUnsupportedError('q, k, v must share a dtype');
    const outDtype = options.outDtype ?? args.outDtype ?? q.dtype;
    if (outDtype !== q.dtype && outDtype !== 'float32') throw new FfaCudaUnsupportedError(`outDtype must be ${q.dtype} or float32, got ${outDtype}`);

    const shape: FfaForwardShape = { tokensQ, tokensK, headsQ, headsKv, dim, dtype: q.dtype };
    const problem = this.prepare(shape, args.slices, { ...options, outDtype });
    const dev = this.device;
    const dq = dev.upload(q.data);
    const dk = dev.upload(k.data);
    const dv = dev.upload(v.data);
    const outBytes = tokensQ * headsQ * dim * (outDtype === 'float32' ? 4 : 2);
    const dOut = dev.alloc(Math.max(outBytes, 4));
    const dLse = dev.alloc(Math.max(tokensQ * headsQ * 4, 4));
    if (options.poison) {
      // NaN bits everywhere: every output element must be written by the launch
      dOut.fill(0xff);
      dLse.fill(0xff);
      problem.poisonScratch();
    }
    problem.launch(dq, dk, dv, dOut, dLse, args.softmaxScale, args.softcap);
    const out = Tensor.zeros(outDtype, [tokensQ, headsQ, dim]);
    const lse = Tensor.zeros('float32', [tokensQ, headsQ]);
    if (outBytes > 0) dOut.download(out.data);
    if (tokensQ * headsQ > 0) dLse.download(lse.data);
    for (const b of [dq, dk, dv, dOut, dLse]) b.free();
    problem.free();
    return { out, lse };
  }
}

const { i32, ptr } = kernelArg;

/** A slice list planned and uploaded for one shape: work list, slices, lock and fp32 scratch. */
export class FfaForwardProblem {
  readonly plan: FfaForwardPlan;
  readonly merge: boolean;
  readonly outDtype: DType;
  private readonly qRanges: DeviceBuffer;
  private readonly kRanges: DeviceBuffer;
  private readonly types: DeviceBuffer;
  private readonly work: DeviceBuffer;
  private readonly uncovered: DeviceBuffer | null;
  private readonly locks: DeviceBuffer | null;
  private readonly acc: DeviceBuffer | null;

  constructor(
    readonly owner: CudaFfaForward,
    readonly shape: FfaForwardShape,
    readonly slices: SliceList,
    options: FfaForwardLaunchOptions = {},
  ) {
    const dev = owner.device;
    this.plan = planFfaForward(slices, shape.tokensQ, owner.blockM, owner.blockN);
    this.outDtype = options.outDtype ?? shape.dtype;
    this.merge = this.plan.overlappingQ || options.forceMerge === true || this.outDtype === 'float32';
    owner.mainKernel(shape.dtype, shape.dim, this.merge); // validates dtype / dim early
    const nonEmpty = (a: Int32Array): Int32Array => (a.length > 0 ? a : new Int32Array(2));
    this.qRanges = dev.upload(nonEmpty(slices.qRanges));
    this.kRanges = dev.upload(nonEmpty(slices.kRanges));
    this.types = dev.upload(nonEmpty(Int32Array.from(slices.types)));
    this.work = dev.upload(nonEmpty(this.plan.work));
    this.uncovered = !this.merge && this.plan.uncoveredRows.length > 0 ? dev.upload(this.plan.uncoveredRows) : null;
    const rows = shape.tokensQ * shape.headsQ;
    this.locks = this.merge ? dev.alloc(Math.max(4, (Math.ceil(shape.tokensQ / owner.blockM) + 1) * shape.headsQ * 4)) : null;
    // float32 output: the accumulator is the output buffer itself
    this.acc = this.merge && this.outDtype !== 'float32' ? dev.alloc(Math.max(4, rows * shape.dim * 4)) : null;
  }

  /** Fills the fp32 scratch with NaN bits (tests: the merge must never read unwritten rows). */
  poisonScratch(): void {
    this.acc?.fill(0xff);
  }

  /**
   * Enqueues the whole forward on `stream`: out [Tq, Hq, D] in outDtype, lse [Tq, Hq] fp32.
   * q/k/v are token-major device buffers of the input dtype.
   */
  launch(
    q: DeviceBuffer,
    k: DeviceBuffer,
    v: DeviceBuffer,
    out: DeviceBuffer,
    lse: DeviceBuffer,
    softmaxScale: number,
    softcap = 0,
    stream?: Stream,
  ): void {
    const { tokensQ, headsQ, headsKv, dim } = this.shape;
    const mod = this.owner.module;
    const rows = tokensQ * headsQ;
    const LOG2E = Math.LOG2E;
    const unit = softcap > 0 ? softcap : softmaxScale;
    const scaleLog2 = unit * LOG2E;
    const softcapScale = softcap > 0 ? softmaxScale / softcap : 0;
    const cfg = (grid: number | [number, number], block: number, sharedMemBytes = 0) =>
      stream === undefined ? { grid, block, sharedMemBytes } : { grid, block, sharedMemBytes, stream };

    if (this.merge) {
      this.locks!.fill(0, stream);
      if (rows > 0) {
        mod.kernel('ffa_fwd_lse_init').launch(cfg(Math.min(1024, Math.ceil(rows / 256)), 256), [ptr(lse), { type: 'i64', value: rows }]);
      }
    } else if (this.uncovered !== null) {
      const n = this.plan.uncoveredRows.length / 2;
      for (let r0 = 0; r0 < n; r0 += 65535) {
        const ny = Math.min(65535, n - r0);
        mod.kernel('ffa_fwd_fill_rows').launch(cfg([64, ny], 256), [
          ptr(out),
          ptr(lse),
          { type: 'ptr', value: this.uncovered.ptr + BigInt(r0 * 8) },
          i32(headsQ * dim),
          i32(headsQ),
        ]);
      }
    }

    if (this.plan.numWork > 0 && headsQ > 0) {
      const { kernel, smemBytes } = this.owner.mainKernel(this.shape.dtype, dim, this.merge);
      const accBuf = this.merge ? (this.acc ?? out) : out;
      kernel.launch(cfg(this.plan.numWork * headsQ, 32 * this.owner.warps, smemBytes), [
        ptr(q),
        ptr(k),
        ptr(v),
        ptr(accBuf),
        ptr(lse),
        ptr(this.qRanges),
        ptr(this.kRanges),
        ptr(this.types),
        ptr(this.work),
        ptr(this.locks),
        i32(headsQ),
        i32(headsKv),
        { type: 'f32', value: scaleLog2 },
        { type: 'f32', value: unit },
        { type: 'f32', value: softcapScale },
      ]);
    }

    if (this.merge && rows > 0) {
      const name = this.outDtype === 'float32' ? 'ffa_fwd_finalize_f32' : this.outDtype === 'bfloat16' ? 'ffa_fwd_finalize_bf16' : 'ffa_fwd_finalize_fp16';
      mod.kernel(name).launch(cfg(Math.min(4096, Math.ceil((rows * dim) / 256)), 256), [
        ptr(this.acc ?? out),
        ptr(out),
        ptr(lse),
        { type: 'i64', value: rows },
        i32(dim),
      ]);
    }
  }

  free(): void {
    for (const b of [this.qRanges, this.kRanges, this.types, this.work, this.uncovered, this.locks, this.acc]) b?.free();
  }
}
