/**
 * The Hopper main kernel of the backward (ffa_bwd_sm90.cu: TMA, wgmma, one producer and two
 * consumer warpgroups; head dim 128). CudaFfaBackward (ffa-backward.ts) launches it instead of
 * the mma.sync kernel on compute capability 9.0 for head dim 128; the work list (128-key tiles,
 * 64-row q steps), pre-pass, zeroing, dsink, deterministic grouping and conversions are shared.
 * What differs: q, k, v and dout reach the kernel as TMA descriptors, and so does the fp32 dq
 * accumulator (the kernel adds its dQ tiles with TMA tensor reduce-adds); a block has 384 threads.
 */
import type { CudaDevice, DeviceBuffer, Kernel, KernelArg, Module } from '../../device/device.js';
import type { DType } from '../../dtype.js';
import { InvalidArgumentError } from '../../errors.js';
import { compileSm90Module, tokenMajorTensorMap } from './ffa-forward-sm90.js';
import { FfaCudaUnsupportedError } from './unsupported.js';

export const FFA_BWD_SM90_BLOCK_M = 64;
export const FFA_BWD_SM90_BLOCK_N = 128;
export const FFA_BWD_SM90_HEAD_DIMS: readonly number[] = [128];
export const FFA_BWD_SM90_THREADS = 384;
/**
 * EXPERIMENT (issue 11; to be removed once measured): schedule variants of the kernel, a bit set
 * compiled in as -DFFA_BWD_SM90_VARIANT (the kernel's header says what each bit does): 0 the
 * kernel as it is, 1 per-warpgroup dQ pre-summed in shared memory, 3 per-warpgroup dQ reduce-added
 * twice (not bit-reproducible in deterministic mode), 4 less integer work, 5 = 1 + 4, 9 = 1 with
 * the second warpgroup started half a step late, 13 = 9 + 4.
 * bench/kernel/bwd-variants.sh checks and times them side by side.
 */
export const FFA_BWD_SM90_VARIANTS: readonly number[] = [0, 1, 3, 4, 5, 9, 13];

/** The variant named by the FFA_BWD_SM90_VARIANT environment variable (0 when unset or empty). */
export function sm90BackwardVariantFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.FFA_BWD_SM90_VARIANT;
  if (raw === undefined || raw === '') return 0;
  const v = Number(raw);
  if (!/^\d+$/.test(raw) || !FFA_BWD_SM90_VARIANTS.includes(v)) {
    throw new InvalidArgumentError('FFA_BWD_SM90_VARIANT', `must be one of ${FFA_BWD_SM90_VARIANTS.join(', ')} (an experiment of the Hopper backward)`, `got ${JSON.stringify(raw)}`);
  }
  return v;
}

/**
 * K, V, 2 stages of Q and dO, 2 dSᵀ buffers, 2 stages of lseLog2 and Δ, the dQ staging, the
 * barriers, 1024 slack; the kernel's Smem<variant>::kRequest (static_asserts there hold them
 * equal). Staging: 2 tiles of 64 x 64 fp32 (9 barriers); with per-warpgroup dQ (bit 0) 2 of
 * 64 x 128 fp32 (9 barriers + 16 pair barriers + 16 tickets).
 */
export function sm90BackwardSmemBytes(variant: number): number {
  const common = 2 * 128 * 128 * 2 + 4 * 64 * 128 * 2 + 2 * 128 * 64 * 2 + 4 * 64 * 4 + 1024;
  return (variant & 1) === 0 ? common + 2 * 64 * 64 * 4 + 9 * 8 : common + 2 * 64 * 128 * 4 + 9 * 8 + 16 * 8 + 16 * 4;
}

export class Sm90BackwardMain {
  readonly module: Module;
  readonly blockM = FFA_BWD_SM90_BLOCK_M;
  readonly blockN = FFA_BWD_SM90_BLOCK_N;
  readonly threads = FFA_BWD_SM90_THREADS;

  readonly smemBytes: number;

  constructor(
    readonly device: CudaDevice,
    cacheDir?: string,
    /** The schedule variant (experiment, see FFA_BWD_SM90_VARIANTS); 0, the default kernel, compiles with no extra option. */
    readonly variant: number = sm90BackwardVariantFromEnv(),
  ) {
    if (!FFA_BWD_SM90_VARIANTS.includes(variant)) throw new InvalidArgumentError('variant', `must be one of ${FFA_BWD_SM90_VARIANTS.join(', ')}`, `got ${variant}`);
    this.smemBytes = sm90BackwardSmemBytes(variant);
    this.module = compileSm90Module(device, 'ffa_bwd_sm90.cu', cacheDir, variant === 0 ? [] : [`-DFFA_BWD_SM90_VARIANT=${variant}`]);
  }

  /** Whether this kernel takes the head dim (else the mma.sync backward runs). */
  supports(dim: number): boolean {
    return FFA_BWD_SM90_HEAD_DIMS.includes(dim);
  }

  mainKernel(tag: 'bf16' | 'fp16', dim: number, softcap: boolean): { kernel: Kernel; smemBytes: number } {
    if (!this.supports(dim)) throw new FfaCudaUnsupportedError(`the sm90 backward takes head dim 128 only, got ${dim}`);
    const name = `ffa_bwd_sm90_${tag}_d${dim}${softcap ? '_softcap' : ''}`;
    const kernel = this.module.kernel(name);
    kernel.setMaxDynamicSharedMemory(this.smemBytes);
    return { kernel, smemBytes: this.smemBytes };
  }

  /** The fifth kernel argument: the TMA map of the fp32 dq accumulator [tokensQ, headsQ, dim] (boxes of 32 columns x 1 head x 64 rows, SW128). */
  dqArg(dq: DeviceBuffer, tokensQ: number, headsQ: number, dim: number): KernelArg {
    return { type: 'bytes', value: tokenMajorTensorMap(this.device, dq, 'float32', tokensQ, headsQ, dim, FFA_BWD_SM90_BLOCK_M) };
  }

  /** The four leading kernel arguments: TMA maps of q and dout (64-row boxes), k and v (128-row boxes). */
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
    return [
      { type: 'bytes', value: tokenMajorTensorMap(d, b.q, dtype, tokensQ, headsQ, dim, FFA_BWD_SM90_BLOCK_M) },
      { type: 'bytes', value: tokenMajorTensorMap(d, b.k, dtype, tokensK, headsKv, dim, FFA_BWD_SM90_BLOCK_N) },
      { type: 'bytes', value: tokenMajorTensorMap(d, b.v, dtype, tokensK, headsKv, dim, FFA_BWD_SM90_BLOCK_N) },
      { type: 'bytes', value: tokenMajorTensorMap(d, b.dout, dtype, tokensQ, headsQ, dim, FFA_BWD_SM90_BLOCK_M) },
    ];
  }
}
