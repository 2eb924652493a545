/**
 * The Hopper main kernel of the backward (ffa_bwd_sm90.cu: TMA, wgmma, one producer and two
 * consumer warpgroups; head dim 128 and 64). CudaFfaBackward (ffa-backward.ts) launches it instead
 * of the mma.sync kernel on compute capability 9.0; the work list (128-key tiles), pre-pass,
 * zeroing, dsink, deterministic grouping and conversions are shared. What differs: q, k, v and
 * dout reach the kernel as TMA descriptors, and so does the fp32 dq accumulator (the kernel adds
 * its dQ tiles with TMA tensor reduce-adds); a block has 384 threads; and the kernel walks each
 * item's q rows in steps of its own blockM (64 at head dim 128, 128 at head dim 64), which only
 * the q and dout TMA boxes need to know (a work item is (slice, k tile, qLo, qHi) whatever the step).
 */
import type { CudaDevice, DeviceBuffer, Kernel, KernelArg, Module, Stream } from '../../device/device.js';
import type { CuDevicePtr } from '../../device/cuda-driver.js';
import type { DType } from '../../dtype.js';
import { compileSm90Module, tokenMajorTensorMap } from './ffa-forward-sm90.js';
import { FfaCudaUnsupportedError } from './unsupported.js';
import { BWD_TRACE_SYMBOL, BWD_TRACE_WORDS } from './ffa-backward-trace.js';

export const FFA_BWD_SM90_BLOCK_N = 128;
export const FFA_BWD_SM90_HEAD_DIMS: readonly number[] = [64, 128];
export const FFA_BWD_SM90_THREADS = 384;
/** Rows of one dQ reduce-add box: a consumer warpgroup's 64 x 64 dQ block, whatever the head dim. */
const DQ_BOX_ROWS = 64;
/** The head dim of the ordered deterministic entry points (their 64-row dQ tiles are head dim 128's steps). */
export const ORDERED_HEAD_DIM = 128;

/** q rows per step of the Hopper backward at head dim `dim` (the kernel's blockM<D>()): 128 at 64, 64 at 128. */
export function sm90BackwardBlockM(dim: number): number {
  if (!FFA_BWD_SM90_HEAD_DIMS.includes(dim)) throw new FfaCudaUnsupportedError(`the sm90 backward takes head dim ${FFA_BWD_SM90_HEAD_DIMS.join(' or ')}, got ${dim}`);
  return dim === 64 ? 128 : 64;
}

/**
 * Dynamic shared memory of the Hopper backward at head dim `dim`: K, V, 2 stages of Q and dO, 2 dSᵀ
 * buffers, 2 stages of lseLog2 and Δ, 2 dQ staging tiles (64 x 64 fp32 each), 9 barriers, 1024
 * slack; the kernel's Smem<D>::kRequest (static_asserts there hold the two equal per head dim).
 */
export function sm90BackwardSmemBytes(dim: number): number {
  const bm = sm90BackwardBlockM(dim);
  const bn = FFA_BWD_SM90_BLOCK_N;
  return 2 * bn * dim * 2 + 4 * bm * dim * 2 + 2 * bn * bm * 2 + 4 * bm * 4 + 2 * 64 * 64 * 4 + 9 * 8 + 1024;
}

export class Sm90BackwardMain {
  readonly module: Module;
  readonly blockN = FFA_BWD_SM90_BLOCK_N;
  readonly threads = FFA_BWD_SM90_THREADS;

  /** The ordered deterministic entry points (ffa_bwd_sm90.cu with -DFFA_BWD_SM90_ORDERED), compiled on first use. */
  private ordered: Module | null = null;
  /** The trace module's `ffa_bwd_trace` array, looked up on first use. */
  private traceGlobal: { ptr: CuDevicePtr; bytes: number } | null = null;

  /**
   * `traced`: a diagnostic. `module` is then the step-trace build (-DFFA_BWD_SM90_TRACE:
   * ffa-backward-trace.ts), whose head-dim-128 default entries also write clocks at the phase
   * boundaries of a sample of blocks' steps; the ordered entry points stay untraced.
   */
  constructor(
    readonly device: CudaDevice,
    private readonly cacheDir?: string,
    readonly traced = false,
  ) {
    this.module = compileSm90Module(device, 'ffa_bwd_sm90.cu', cacheDir, traced ? ['-DFFA_BWD_SM90_TRACE'] : []);
  }

  /** The trace array's address and size (checked against the layout ffa-backward-trace.ts decodes). */
  private trace(): { ptr: CuDevicePtr; bytes: number } {
    if (!this.traced) throw new FfaCudaUnsupportedError('the step trace needs the trace build (CudaFfaBackward option traceSteps)');
    if (this.traceGlobal === null) {
      const g = this.module.global(BWD_TRACE_SYMBOL);
      if (g.bytes !== 4 * BWD_TRACE_WORDS) throw new Error(`${BWD_TRACE_SYMBOL} is ${g.bytes} bytes, the host's layout ${4 * BWD_TRACE_WORDS}: ffa-backward-trace.ts and ffa_bwd_sm90.cu disagree`);
      this.traceGlobal = g;
    }
    return this.traceGlobal;
  }

  /** Zeroes the trace (queued on `stream`, or at once on the legacy default stream), so that it holds only what the launches after it write. */
  clearTrace(stream?: Stream): void {
    const { ptr, bytes } = this.trace();
    if (stream === undefined) this.device.driver.cuMemsetD8(ptr, 0, bytes);
    else this.device.driver.cuMemsetD8Async(ptr, 0, bytes, stream.handle);
  }

  /** The trace as the kernel left it (waits for all work on the device first); decode with ffa-backward-trace.ts. */
  downloadTrace(): Uint32Array {
    const { ptr, bytes } = this.trace();
    this.device.synchronize();
    const out = new Uint32Array(bytes / 4);
    this.device.driver.cuMemcpyDtoH(out, ptr, bytes);
    return out;
  }

  /** Whether this kernel takes the head dim (else the mma.sync backward runs). */
  supports(dim: number): boolean {
    return FFA_BWD_SM90_HEAD_DIMS.includes(dim);
  }

  /**
   * The main kernel in one of two forms: 'default', the default entries (their last argument
   * kvMajorItems, the grid's split order: ffa-backward-order.ts); 'ordered', the ordered
   * deterministic twin (head dim 128 only), which takes three more arguments instead (ranks, the
   * tile counters, numLocks) and the work records of planOrderedBackward (ORDERED_RECORD ints each).
   */
  mainKernel(tag: 'bf16' | 'fp16', dim: number, softcap: boolean, form: 'default' | 'ordered' = 'default'): { kernel: Kernel; smemBytes: number } {
    const smemBytes = sm90BackwardSmemBytes(dim); // throws for a head dim the kernel lacks
    const ordered = form === 'ordered';
    if (ordered && dim !== ORDERED_HEAD_DIM) throw new FfaCudaUnsupportedError(`the ordered deterministic sm90 backward takes head dim ${ORDERED_HEAD_DIM} only, got ${dim}`);
    const name = `ffa_bwd_sm90_${ordered ? 'ordered_' : ''}${tag}_d${dim}${softcap ? '_softcap' : ''}`;
    const module = ordered ? (this.ordered ??= compileSm90Module(this.device, 'ffa_bwd_sm90.cu', this.cacheDir, ['-DFFA_BWD_SM90_ORDERED'])) : this.module;
    const kernel = module.kernel(name);
    kernel.setMaxDynamicSharedMemory(smemBytes);
    return { kernel, smemBytes };
  }

  /** The fifth kernel argument: the TMA map of the fp32 dq accumulator [tokensQ, headsQ, dim] (boxes of 32 columns x 1 head x 64 rows, SW128). */
  dqArg(dq: DeviceBuffer, tokensQ: number, headsQ: number, dim: number): KernelArg {
    return { type: 'bytes', value: tokenMajorTensorMap(this.device, dq, 'float32', tokensQ, headsQ, dim, DQ_BOX_ROWS) };
  }

  /** The four leading kernel arguments: TMA maps of q and dout (boxes of blockM rows), k and v (128-row boxes). */
  inputArgs(
    b: { q: DeviceBuffer; k: DeviceBuffer; v: DeviceBuffer; dout: DeviceBuffer },
    dtype: DType,
    tokensQ: number,
    tokensK: number,
    headsQ: number,
    headsKv: number,
    dim: number,
  ): KernelArg[] {
    const d = this.device;
    const bm = sm90BackwardBlockM(dim);
    return [
      { type: 'bytes', value: tokenMajorTensorMap(d, b.q, dtype, tokensQ, headsQ, dim, bm) },
      { type: 'bytes', value: tokenMajorTensorMap(d, b.k, dtype, tokensK, headsKv, dim, FFA_BWD_SM90_BLOCK_N) },
      { type: 'bytes', value: tokenMajorTensorMap(d, b.v, dtype, tokensK, headsKv, dim, FFA_BWD_SM90_BLOCK_N) },
      { type: 'bytes', value: tokenMajorTensorMap(d, b.dout, dtype, tokensQ, headsQ, dim, bm) },
    ];
  }
}
