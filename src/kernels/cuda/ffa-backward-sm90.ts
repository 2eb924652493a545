/**
 * The launcher of the Hopper flex-flash-attention backward (ffa_bwd_sm90.cu: TMA, wgmma, one
 * producer and two consumer warpgroups; head dim 128). It keeps ffa-backward.ts's contract and
 * reuses its host work list (planFfaBackward with 128-key tiles and 64-row q steps) and its
 * side kernels (the Δ / lseLog2 pre-pass and the fp32 -> 16-bit conversions, from the ffa_bwd.cu
 * module); only the main launch differs: q, k, v and dout go to the kernel as TMA descriptors.
 */
import { CuTensorMap } from '../../device/cuda-driver.js';
import { kernelArg, type CudaDevice, type DeviceBuffer, type Kernel, type Module, type Stream } from '../../device/device.js';
import type { DType } from '../../dtype.js';
import type { SliceList } from '../../mask/slice-list.js';
import { Tensor } from '../../tensor.js';
import type { FfaBackwardArgs, FfaBackwardResult } from '../backend.js';
import { CudaFfaBackward, planFfaBackward, type FfaBackwardBuffers, type FfaBackwardPlan, type FfaBackwardShape } from './ffa-backward.js';
import { FfaCudaUnsupportedError } from './ffa-forward.js';
import { sm90Available } from './ffa-forward-sm90.js';
import { readKernelSource } from './source.js';

export const FFA_BWD_SM90_BLOCK_M = 64;
export const FFA_BWD_SM90_BLOCK_N = 128;
export const FFA_BWD_SM90_HEAD_DIMS: readonly number[] = [128];
const THREADS = 384;
/** K, V, 2 stages of Q and dO, 2 dSᵀ buffers, 2 stages of lseLog2 and Δ, 5 barriers, 1024 slack. */
const SMEM_BYTES = 2 * 128 * 128 * 2 + 4 * 64 * 128 * 2 + 2 * 128 * 64 * 2 + 4 * 64 * 4 + 5 * 8 + 1024;

export class CudaFfaBackwardSm90 {
  readonly module: Module;
  readonly base: CudaFfaBackward;
  readonly blockM = FFA_BWD_SM90_BLOCK_M;
  readonly blockN = FFA_BWD_SM90_BLOCK_N;
  private readonly configured = new Set<string>();

  constructor(
    readonly device: CudaDevice,
    options: { cacheDir?: string; base?: CudaFfaBackward } = {},
  ) {
    if (!sm90Available(device)) {
      throw new FfaCudaUnsupportedError(`the sm90 kernel needs compute capability 9.0, ${device.name} has ${device.computeCapability.join('.')}`);
    }
    this.base = options.base ?? new CudaFfaBackward(device, options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir });
    const opts: { name: string; cacheDir?: string; options: string[] } = { name: 'ffa_bwd_sm90.cu', options: [] };
    if (options.cacheDir !== undefined) opts.cacheDir = options.cacheDir;
    this.module = device.compile(readKernelSource('ffa_bwd_sm90.cu'), opts);
  }

  /** Whether this kernel takes the shape (else use the mma.sync backward). */
  static supports(dim: number, dtype: DType): boolean {
    return FFA_BWD_SM90_HEAD_DIMS.includes(dim) && (dtype === 'bfloat16' || dtype === 'float16');
  }

  mainKernel(dtype: DType, dim: number, softcap: boolean): { kernel: Kernel; smemBytes: number } {
    const t = CudaFfaBackward.typeTag(dtype);
    if (!FFA_BWD_SM90_HEAD_DIMS.includes(dim)) throw new FfaCudaUnsupportedError(`the sm90 backward takes head dim 128 only, got ${dim}`);
    const name = `ffa_bwd_sm90_${t}_d${dim}${softcap ? '_softcap' : ''}`;
    const kernel = this.module.kernel(name);
    if (!this.configured.has(name)) {
      kernel.setMaxDynamicSharedMemory(SMEM_BYTES);
      this.configured.add(name);
    }
    return { kernel, smemBytes: SMEM_BYTES };
  }

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

  prepare(shape: FfaBackwardShape, slices: SliceList): FfaBackwardSm90Problem {
    return new FfaBackwardSm90Problem(this, shape, slices);
  }

  /** Host tensors in, host tensors out (dq, dk, dv in the input dtype). */
  backward(args: FfaBackwardArgs<Tensor>, options: { poison?: boolean } = {}): FfaBackwardResult<Tensor> {
    const { q, k, v, out, dout, lse } = args;
    const [tokensQ, headsQ, dim] = q.shape;
    const [tokensK, headsKv] = k.shape;
    const problem = this.prepare({ tokensQ, tokensK, headsQ, headsKv, dim, dtype: q.dtype }, args.slices);
    const dev = this.device;
    const bufs = [q, k, v, out, dout, lse].map((x) => dev.upload(x.data));
    const [dQ, dK, dV, dOut, dDout, dLse] = bufs;
    const qBytes = Math.max(4, tokensQ * headsQ * dim * 2);
    const kBytes = Math.max(4, tokensK * headsKv * dim * 2);
    const gq = dev.alloc(qBytes);
    const gk = dev.alloc(kBytes);
    const gv = dev.alloc(kBytes);
    if (options.poison) {
      for (const b of [gq, gk, gv]) b.fill(0xff);
      problem.poisonScratch();
    }
    problem.launch({ q: dQ, k: dK, v: dV, out: dOut, dout: dDout, lse: dLse, dq: gq, dk: gk, dv: gv }, args.softmaxScale, args.softcap);
    const dq = Tensor.zeros(q.dtype, [tokensQ, headsQ, dim]);
    const dk = Tensor.zeros(q.dtype, [tokensK, headsKv, dim]);
    const dv = Tensor.zeros(q.dtype, [tokensK, headsKv, dim]);
    if (dq.data.byteLength > 0) gq.download(dq.data);
    if (dk.data.byteLength > 0) gk.download(dk.data);
    if (dv.data.byteLength > 0) gv.download(dv.data);
    for (const b of [...bufs, gq, gk, gv]) b.free();
    problem.free();
    return { dq, dk, dv };
  }
}

const { i32, ptr, f32 } = kernelArg;

export class FfaBackwardSm90Problem {
  readonly plan: FfaBackwardPlan;
  private readonly qRanges: DeviceBuffer;
  private readonly kRanges: DeviceBuffer;
  private readonly types: DeviceBuffer;
  private readonly work: DeviceBuffer;
  readonly lseLog2: DeviceBuffer;
  readonly delta: DeviceBuffer;
  readonly dqAcc: DeviceBuffer;
  readonly dkAcc: DeviceBuffer;
  readonly dvAcc: DeviceBuffer;

  constructor(
    readonly owner: CudaFfaBackwardSm90,
    readonly shape: FfaBackwardShape,
    readonly slices: SliceList,
  ) {
    const dev = owner.device;
    this.plan = planFfaBackward(slices, shape.tokensQ, shape.tokensK, owner.blockN, owner.blockM);
    owner.mainKernel(shape.dtype, shape.dim, false);
    const nonEmpty = (a: Int32Array): Int32Array => (a.length > 0 ? a : new Int32Array(4));
    this.qRanges = dev.upload(nonEmpty(slices.qRanges));
    this.kRanges = dev.upload(nonEmpty(slices.kRanges));
    this.types = dev.upload(nonEmpty(Int32Array.from(slices.types)));
    this.work = dev.upload(nonEmpty(this.plan.work));
    const rows = shape.tokensQ * shape.headsQ;
    this.lseLog2 = dev.alloc(Math.max(4, rows * 4));
    this.delta = dev.alloc(Math.max(4, rows * 4));
    this.dqAcc = dev.alloc(Math.max(4, rows * shape.dim * 4));
    this.dkAcc = dev.alloc(Math.max(4, shape.tokensK * shape.headsKv * shape.dim * 4));
    this.dvAcc = dev.alloc(Math.max(4, shape.tokensK * shape.headsKv * shape.dim * 4));
  }

  poisonScratch(): void {
    for (const b of [this.lseLog2, this.delta, this.dqAcc, this.dkAcc, this.dvAcc]) b.fill(0xff);
  }

  /** Pre-pass, zeroing, main kernel and the conversions, on `stream`. */
  launch(b: FfaBackwardBuffers, softmaxScale: number, softcap = 0, stream?: Stream): void {
    this.launchMain(b, softmaxScale, softcap, stream);
    const { tokensQ, tokensK, headsQ, headsKv, dim } = this.shape;
    const t = CudaFfaBackward.typeTag(this.shape.dtype);
    const side = this.owner.base.module;
    const cfg = (grid: number, block: number) => (stream === undefined ? { grid, block } : { grid, block, stream });
    const conv = (src: DeviceBuffer, dst: DeviceBuffer, n: number): void => {
      if (n === 0) return;
      side.kernel(`ffa_bwd_convert_${t}`).launch(cfg(Math.min(8192, Math.ceil(n / 256)), 256), [ptr(src), ptr(dst), { type: 'i64', value: n }]);
    };
    conv(this.dqAcc, b.dq, tokensQ * headsQ * dim);
    conv(this.dkAcc, b.dk, tokensK * headsKv * dim);
    conv(this.dvAcc, b.dv, tokensK * headsKv * dim);
  }

  /** Everything but the conversions: fp32 results stay in dqAcc / dkAcc / dvAcc. */
  launchMain(b: FfaBackwardBuffers, softmaxScale: number, softcap = 0, stream?: Stream): void {
    const { tokensQ, tokensK, headsQ, headsKv, dim, dtype } = this.shape;
    const t = CudaFfaBackward.typeTag(dtype);
    const side = this.owner.base.module;
    const rows = tokensQ * headsQ;
    const cfg = (grid: number, block: number, sharedMemBytes = 0) =>
      stream === undefined ? { grid, block, sharedMemBytes } : { grid, block, sharedMemBytes, stream };
    for (const buf of [this.dqAcc, this.dkAcc, this.dvAcc]) buf.fill(0, stream);
    if (rows > 0) {
      side.kernel(`ffa_bwd_pre_${t}_d${dim}`).launch(cfg(Math.ceil(rows / 8), 256), [
        ptr(b.out),
        ptr(b.dout),
        ptr(b.lse),
        ptr(this.lseLog2),
        ptr(this.delta),
        i32(tokensQ),
        i32(headsQ),
      ]);
    }
    if (this.plan.numWork > 0 && headsKv > 0) {
      const useSoftcap = softcap > 0;
      const { kernel, smemBytes } = this.owner.mainKernel(dtype, dim, useSoftcap);
      const unit = useSoftcap ? softcap : softmaxScale;
      const o = this.owner;
      kernel.launch(cfg(this.plan.numWork * headsKv, THREADS, smemBytes), [
        { type: 'bytes', value: o.tensorMap(b.q, dtype, tokensQ, headsQ, dim, FFA_BWD_SM90_BLOCK_M) },
        { type: 'bytes', value: o.tensorMap(b.k, dtype, tokensK, headsKv, dim, FFA_BWD_SM90_BLOCK_N) },
        { type: 'bytes', value: o.tensorMap(b.v, dtype, tokensK, headsKv, dim, FFA_BWD_SM90_BLOCK_N) },
        { type: 'bytes', value: o.tensorMap(b.dout, dtype, tokensQ, headsQ, dim, FFA_BWD_SM90_BLOCK_M) },
        ptr(this.lseLog2),
        ptr(this.delta),
        ptr(this.dqAcc),
        ptr(this.dkAcc),
        ptr(this.dvAcc),
        ptr(this.qRanges),
        ptr(this.kRanges),
        ptr(this.types),
        ptr(this.work),
        i32(headsQ),
        i32(headsKv),
        i32(tokensQ),
        f32(unit * Math.LOG2E),
        f32(softmaxScale),
        f32(useSoftcap ? softmaxScale / softcap : 0),
      ]);
    }
  }

  free(): void {
    for (const b of [this.qRanges, this.kRanges, this.types, this.work, this.lseLog2, this.delta, this.dqAcc, this.dkAcc, this.dvAcc]) b.free();
  }
}
