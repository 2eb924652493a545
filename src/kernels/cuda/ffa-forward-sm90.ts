/**
 * The launcher of the Hopper flex-flash-attention forward (ffa_fwd_sm90.cu: TMA, wgmma, one
 * producer and two consumer warpgroups). It keeps ffa-forward.ts's contract and reuses its host
 * tile scheduler (planFfaForward, with 128 x 128 tiles) and its side kernels (row fill, lse init,
 * finalize, from the ffa_fwd.cu module); only the main launch differs: q, k and v are handed to
 * the kernel as TMA descriptors instead of pointers, and the merge epilogue locks 64-row blocks
 * (one consumer warpgroup's rows) instead of 128-row ones.
 *
 * Runs on compute capability 9.0 only (sm_90a: wgmma, setmaxnreg); `sm90Available` says whether
 * a device qualifies.
 */
import { CuTensorMap } from '../../device/cuda-driver.js';
import { kernelArg, type CudaDevice, type DeviceBuffer, type Kernel, type Module, type Stream } from '../../device/device.js';
import type { DType } from '../../dtype.js';
import type { SliceList } from '../../mask/slice-list.js';
import { Tensor } from '../../tensor.js';
import type { FfaForwardArgs, FfaForwardResult } from '../backend.js';
import { CudaFfaForward, FfaCudaUnsupportedError, planFfaForward, type FfaForwardLaunchOptions, type FfaForwardPlan, type FfaForwardShape } from './ffa-forward.js';
import { readKernelSource } from './source.js';

export const FFA_SM90_BLOCK_M = 128;
export const FFA_SM90_BLOCK_N = 128;
/** Rows one merge lock covers: one consumer warpgroup's share of the q tile. */
export const FFA_SM90_LOCK_ROWS = 64;
const THREADS = 384;
export const FFA_SM90_HEAD_DIMS: readonly number[] = [64, 128];

/** Whether the Hopper kernels can run on `device` (sm_90a needs compute capability exactly 9.0). */
export function sm90Available(device: CudaDevice): boolean {
  return device.computeCapability[0] === 9 && device.computeCapability[1] === 0;
}

/** Shared memory the kernel asks for: Q tile, 2 stages each of K and V, 9 barriers, 1024 slack. */
function smemBytes(dim: number): number {
  const q = FFA_SM90_BLOCK_M * dim * 2;
  const tile = FFA_SM90_BLOCK_N * dim * 2;
  return q + 4 * tile + 9 * 8 + 1024;
}

export class CudaFfaForwardSm90 {
  readonly module: Module;
  /** The mma.sync forward, whose module supplies the side kernels. */
  readonly base: CudaFfaForward;
  readonly blockM = FFA_SM90_BLOCK_M;
  readonly blockN = FFA_SM90_BLOCK_N;
  private readonly configured = new Set<string>();

  constructor(
    readonly device: CudaDevice,
    options: { cacheDir?: string; base?: CudaFfaForward } = {},
  ) {
    if (!sm90Available(device)) {
      throw new FfaCudaUnsupportedError(`the sm90 kernel needs compute capability 9.0, ${device.name} has ${device.computeCapability.join('.')}`);
    }
    this.base = options.base ?? new CudaFfaForward(device, options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir });
    const opts: { name: string; cacheDir?: string; options: string[] } = { name: 'ffa_fwd_sm90.cu', options: [] };
    if (options.cacheDir !== undefined) opts.cacheDir = options.cacheDir;
    this.module = device.compile(readKernelSource('ffa_fwd_sm90.cu'), opts);
  }

  mainKernel(dtype: DType, dim: number, merge: boolean): { kernel: Kernel; smemBytes: number } {
    const t = dtype === 'bfloat16' ? 'bf16' : dtype === 'float16' ? 'fp16' : null;
    if (t === null) throw new FfaCudaUnsupportedError(`input dtype must be bfloat16 or float16, got ${dtype}`);
    if (!FFA_SM90_HEAD_DIMS.includes(dim)) throw new FfaCudaUnsupportedError(`head dim must be one of ${FFA_SM90_HEAD_DIMS.join(', ')}, got ${dim}`);
    const name = `ffa_fwd_sm90_${t}_d${dim}_${merge ? 'merge' : 'direct'}`;
    const kernel = this.module.kernel(name);
    const bytes = smemBytes(dim);
    if (!this.configured.has(name)) {
      kernel.setMaxDynamicSharedMemory(bytes);
      this.configured.add(name);
    }
    return { kernel, smemBytes: bytes };
  }

  /**
   * TMA descriptor of a token-major [tokens, heads, dim] 16-bit tensor, read in boxes of
   * 64 columns x 1 head x `rows` tokens with the 128-byte swizzle.
   */
  tensorMap(buf: DeviceBuffer, dtype: DType, tokens: number, heads: number, dim: number, rows: number): Uint8Array {
    const dataType = dtype === 'bfloat16' ? CuTensorMap.DATA_TYPE_BFLOAT16 : CuTensorMap.DATA_TYPE_FLOAT16;
    return this.device.driver.cuTensorMapEncodeTiled(
      dataType,
      buf.ptr,
      [dim, heads, Math.max(tokens, 1)],
      [dim * 2, heads * dim * 2],
      [64, 1, rows],
      CuTensorMap.SWIZZLE_128B,
      CuTensorMap.L2_PROMOTION_256B,
    );
  }

  prepare(shape: FfaForwardShape, slices: SliceList, options: FfaForwardLaunchOptions = {}): FfaForwardSm90Problem {
    return new FfaForwardSm90Problem(this, shape, slices, options);
  }

  /** Host tensors in, host tensors out; the same options as CudaFfaForward.forward. */
  forward(args: FfaForwardArgs<Tensor>, options: FfaForwardLaunchOptions & { poison?: boolean } = {}): FfaForwardResult<Tensor> {
    const { q, k, v } = args;
    const [tokensQ, headsQ, dim] = q.shape;
    const [tokensK, headsKv] = k.shape;
    const outDtype = options.outDtype ?? args.outDtype ?? q.dtype;
    const problem = this.prepare({ tokensQ, tokensK, headsQ, headsKv, dim, dtype: q.dtype }, args.slices, { ...options, outDtype });
    const dev = this.device;
    const dq = dev.upload(q.data);
    const dk = dev.upload(k.data);
    const dv = dev.upload(v.data);
    const outBytes = tokensQ * headsQ * dim * (outDtype === 'float32' ? 4 : 2);
    const dOut = dev.alloc(Math.max(outBytes, 4));
    const dLse = dev.alloc(Math.max(tokensQ * headsQ * 4, 4));
    if (options.poison) {
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

const { i32, ptr, f32 } = kernelArg;

/** One (shape, slice list) planned and uploaded for the sm90 kernel. */
export class FfaForwardSm90Problem {
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
    readonly owner: CudaFfaForwardSm90,
    readonly shape: FfaForwardShape,
    readonly slices: SliceList,
    options: FfaForwardLaunchOptions = {},
  ) {
    const dev = owner.device;
    this.plan = planFfaForward(slices, shape.tokensQ, owner.blockM, owner.blockN);
    this.outDtype = options.outDtype ?? shape.dtype;
    this.merge = this.plan.overlappingQ || options.forceMerge === true || this.outDtype === 'float32';
    owner.mainKernel(shape.dtype, shape.dim, this.merge);
    const nonEmpty = (a: Int32Array): Int32Array => (a.length > 0 ? a : new Int32Array(2));
    this.qRanges = dev.upload(nonEmpty(slices.qRanges));
    this.kRanges = dev.upload(nonEmpty(slices.kRanges));
    this.types = dev.upload(nonEmpty(Int32Array.from(slices.types)));
    this.work = dev.upload(nonEmpty(this.plan.work));
    this.uncovered = !this.merge && this.plan.uncoveredRows.length > 0 ? dev.upload(this.plan.uncoveredRows) : null;
    const rows = shape.tokensQ * shape.headsQ;
    this.locks = this.merge ? dev.alloc(Math.max(4, (Math.ceil(shape.tokensQ / FFA_SM90_LOCK_ROWS) + 1) * shape.headsQ * 4)) : null;
    this.acc = this.merge && this.outDtype !== 'float32' ? dev.alloc(Math.max(4, rows * shape.dim * 4)) : null;
  }

  poisonScratch(): void {
    this.acc?.fill(0xff);
  }

  /** Same contract as FfaForwardProblem.launch. */
  launch(q: DeviceBuffer, k: DeviceBuffer, v: DeviceBuffer, out: DeviceBuffer, lse: DeviceBuffer, softmaxScale: number, softcap = 0, stream?: Stream): void {
    const { tokensQ, tokensK, headsQ, headsKv, dim, dtype } = this.shape;
    const side = this.owner.base.module;
    const rows = tokensQ * headsQ;
    const unit = softcap > 0 ? softcap : softmaxScale;
    const scaleLog2 = unit * Math.LOG2E;
    const softcapScale = softcap > 0 ? softmaxScale / softcap : 0;
    const cfg = (grid: number | [number, number], block: number, sharedMemBytes = 0) =>
      stream === undefined ? { grid, block, sharedMemBytes } : { grid, block, sharedMemBytes, stream };

    if (this.merge) {
      this.locks!.fill(0, stream);
      if (rows > 0) side.kernel('ffa_fwd_lse_init').launch(cfg(Math.min(1024, Math.ceil(rows / 256)), 256), [ptr(lse), { type: 'i64', value: rows }]);
    } else if (this.uncovered !== null) {
      const n = this.plan.uncoveredRows.length / 2;
      for (let r0 = 0; r0 < n; r0 += 65535) {
        const ny = Math.min(65535, n - r0);
        side.kernel('ffa_fwd_fill_rows').launch(cfg([64, ny], 256), [
          ptr(out),
          ptr(lse),
          { type: 'ptr', value: this.uncovered.ptr + BigInt(r0 * 8) },
          i32(headsQ * dim),
          i32(headsQ),
        ]);
      }
    }

    if (this.plan.numWork > 0 && headsQ > 0) {
      const { kernel, smemBytes: smem } = this.owner.mainKernel(dtype, dim, this.merge);
      const tmQ = this.owner.tensorMap(q, dtype, tokensQ, headsQ, dim, FFA_SM90_BLOCK_M);
      const tmK = this.owner.tensorMap(k, dtype, tokensK, headsKv, dim, FFA_SM90_BLOCK_N);
      const tmV = this.owner.tensorMap(v, dtype, tokensK, headsKv, dim, FFA_SM90_BLOCK_N);
      kernel.launch(cfg(this.plan.numWork * headsQ, THREADS, smem), [
        { type: 'bytes', value: tmQ },
        { type: 'bytes', value: tmK },
        { type: 'bytes', value: tmV },
        ptr(this.merge ? (this.acc ?? out) : out),
        ptr(lse),
        ptr(this.qRanges),
        ptr(this.kRanges),
        ptr(this.types),
        ptr(this.work),
        ptr(this.locks),
        i32(headsQ),
        i32(headsKv),
        f32(scaleLog2),
        f32(unit),
        f32(softcapScale),
      ]);
    }

    if (this.merge && rows > 0) {
      const name = this.outDtype === 'float32' ? 'ffa_fwd_finalize_f32' : this.outDtype === 'bfloat16' ? 'ffa_fwd_finalize_bf16' : 'ffa_fwd_finalize_fp16';
      side.kernel(name).launch(cfg(Math.min(4096, Math.ceil((rows * dim) / 256)), 256), [
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
