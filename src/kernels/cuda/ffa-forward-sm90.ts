/**
 * The Hopper main kernel of the forward (ffa_fwd_sm90.cu: TMA, wgmma, one producer and two
 * consumer warpgroups). CudaFfaForward (ffa-forward.ts) uses it instead of the mma.sync kernel
 * when the GPU is compute capability 9.0; everything around the main launch (work list, row
 * fill, lse init, finalize, sink / accumulation post-pass, deterministic grouping) is shared.
 * What differs: q, k and v reach the kernel as TMA descriptors instead of pointers, tiles are
 * 128 x 128, a block has 384 threads, and the merge epilogue locks 64-row blocks (one consumer
 * warpgroup's rows).
 * EXPERIMENT (issue 11): with FFA_SM90_FWD_PERSISTENT=1 (or `persistent: true`) the persistent
 * variant of the kernel instead: one block per SM walking the work list (ffa_fwd_sm90.cu's header).
 */
import { CuTensorMap } from '../../device/cuda-driver.js';
import type { CudaDevice, DeviceBuffer, Kernel, KernelArg, Module } from '../../device/device.js';
import type { DType } from '../../dtype.js';
import { InvalidArgumentError } from '../../errors.js';
import { readKernelSource } from './source.js';
import { FfaCudaUnsupportedError } from './unsupported.js';

export const FFA_SM90_BLOCK_M = 128;
export const FFA_SM90_BLOCK_N = 128;
/**
 * EXPERIMENT (issue 11; made the default or removed once measured): whether the FFA_SM90_FWD_PERSISTENT
 * environment variable asks for the persistent Hopper forward. '1': yes (the kernel compiles with
 * -DFFA_SM90_FWD_PERSISTENT=1, part of the compile-cache key); unset, '' or '0': the kernel as it
 * is. Every option of the forward runs on both (sink and accumulation are post-passes, max_logits
 * and softcap are per item, the deterministic grouping is per launch), so nothing falls back.
 */
export function sm90ForwardPersistentFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  const raw = env.FFA_SM90_FWD_PERSISTENT;
  if (raw === undefined || raw === '' || raw === '0') return false;
  if (raw === '1') return true;
  throw new InvalidArgumentError('FFA_SM90_FWD_PERSISTENT', "must be '1' (the persistent Hopper forward, an experiment), '0' or empty", `got ${JSON.stringify(raw)}`);
}

/** Rows one merge lock covers: one consumer warpgroup's share of the q tile. */
export const FFA_SM90_LOCK_ROWS = 64;
export const FFA_SM90_THREADS = 384;
export const FFA_SM90_HEAD_DIMS: readonly number[] = [64, 128];

/** Whether the Hopper kernels can run on `device` (sm_90a: compute capability exactly 9.0). */
export function sm90Available(device: CudaDevice): boolean {
  return device.computeCapability[0] === 9 && device.computeCapability[1] === 0;
}

/** Encoded TMA maps per device, keyed by address and geometry (a map holds nothing else). */
const tensorMaps = new WeakMap<CudaDevice, Map<string, Uint8Array>>();
const TENSOR_MAP_CACHE = 64;

/**
 * TMA descriptor of a token-major [tokens, heads, dim] tensor (16-bit, or the backward's fp32 dq
 * accumulator), in boxes of 128 bytes of columns (64 16-bit or 32 fp32 values) x 1 head x `rows`
 * tokens with the 128-byte swizzle the wgmma operands use. Cached by (address, dtype, geometry),
 * so a repeated launch on the same buffers encodes nothing.
 */
export function tokenMajorTensorMap(device: CudaDevice, buf: DeviceBuffer, dtype: DType, tokens: number, heads: number, dim: number, rows: number): Uint8Array {
  if (dtype !== 'bfloat16' && dtype !== 'float16' && dtype !== 'float32') throw new FfaCudaUnsupportedError(`TMA maps take bfloat16, float16 or float32, got ${dtype}`);
  let maps = tensorMaps.get(device);
  if (maps === undefined) tensorMaps.set(device, (maps = new Map()));
  const key = `${buf.ptr},${dtype},${tokens},${heads},${dim},${rows}`;
  const hit = maps.get(key);
  if (hit !== undefined) return hit;
  if (maps.size >= TENSOR_MAP_CACHE) maps.clear();
  const map = encodeTokenMajor(device, buf, dtype, tokens, heads, dim, rows);
  maps.set(key, map);
  return map;
}

function encodeTokenMajor(device: CudaDevice, buf: DeviceBuffer, dtype: 'bfloat16' | 'float16' | 'float32', tokens: number, heads: number, dim: number, rows: number): Uint8Array {
  const bytes = dtype === 'float32' ? 4 : 2;
  const type = { bfloat16: CuTensorMap.DATA_TYPE_BFLOAT16, float16: CuTensorMap.DATA_TYPE_FLOAT16, float32: CuTensorMap.DATA_TYPE_FLOAT32 }[dtype];
  return device.driver.cuTensorMapEncodeTiled(
    type,
    buf.ptr,
    [dim, heads, Math.max(tokens, 1)],
    [dim * bytes, heads * dim * bytes],
    [128 / bytes, 1, rows],
    CuTensorMap.SWIZZLE_128B,
    CuTensorMap.L2_PROMOTION_256B,
  );
}

/**
 * Compiles one of the Hopper kernel files (NVRTC `options`, e.g. -D defines: part of the compile
 * cache key); a clear error on a GPU that is not compute capability 9.0.
 */
export function compileSm90Module(device: CudaDevice, fileName: string, cacheDir?: string, options: readonly string[] = []): Module {
  if (!sm90Available(device)) {
    throw new FfaCudaUnsupportedError(`the sm90 kernels need compute capability 9.0, ${device.name} has ${device.computeCapability.join('.')}`);
  }
  const opts: { name: string; cacheDir?: string; options: string[] } = { name: fileName, options: [...options] };
  if (cacheDir !== undefined) opts.cacheDir = cacheDir;
  return device.compile(readKernelSource(fileName), opts);
}

/**
 * The kernel's Smem<D>::kRequest: the Q tile, 2 stages each of K and V, 9 barriers, and slack to
 * align the base to 1024 bytes; persistent: 2 Q stages, 12 barriers and 2 item slots of 32 bytes.
 */
export function sm90ForwardSmemBytes(dim: number, persistent: boolean): number {
  const q = FFA_SM90_BLOCK_M * dim * 2;
  const kv = 4 * FFA_SM90_BLOCK_N * dim * 2;
  return (persistent ? 2 * q + kv + 12 * 8 + 2 * 32 : q + kv + 9 * 8) + 1024;
}

/** Options of the Hopper forward main kernel. */
export interface Sm90ForwardOptions {
  cacheDir?: string;
  /** The persistent variant (experiment); default: the FFA_SM90_FWD_PERSISTENT environment variable. */
  persistent?: boolean;
  /**
   * Persistent only: at most this many blocks (tests: every block then walks many items, through
   * both directions of the schedule and a partial last round). Default: as many as fit at once.
   */
  maxBlocks?: number;
}

export class Sm90ForwardMain {
  readonly module: Module;
  readonly blockM = FFA_SM90_BLOCK_M;
  readonly blockN = FFA_SM90_BLOCK_N;
  readonly lockRows = FFA_SM90_LOCK_ROWS;
  readonly threads = FFA_SM90_THREADS;
  readonly persistent: boolean;
  /** Persistent only: the grid's cap (Sm90ForwardOptions.maxBlocks), or undefined. */
  readonly maxBlocks: number | undefined;
  /** Per kernel: blocks that fit on the GPU at once (persistent grids). */
  private readonly resident = new Map<Kernel, number>();

  constructor(
    readonly device: CudaDevice,
    options: Sm90ForwardOptions = {},
  ) {
    this.persistent = options.persistent ?? sm90ForwardPersistentFromEnv();
    if (options.maxBlocks !== undefined) {
      if (!this.persistent) throw new InvalidArgumentError('maxBlocks', 'applies to the persistent kernel only', 'persistent is off');
      if (!Number.isInteger(options.maxBlocks) || options.maxBlocks < 1) throw new InvalidArgumentError('maxBlocks', 'must be a positive integer', `got ${options.maxBlocks}`);
    }
    this.maxBlocks = options.maxBlocks;
    this.module = compileSm90Module(device, 'ffa_fwd_sm90.cu', options.cacheDir, this.persistent ? ['-DFFA_SM90_FWD_PERSISTENT=1'] : []);
  }

  mainKernel(tag: 'bf16' | 'fp16', dim: number, merge: boolean): { kernel: Kernel; smemBytes: number } {
    if (!FFA_SM90_HEAD_DIMS.includes(dim)) throw new FfaCudaUnsupportedError(`head dim must be one of ${FFA_SM90_HEAD_DIMS.join(', ')}, got ${dim}`);
    const name = `ffa_fwd_sm90_${tag}_d${dim}_${merge ? 'merge' : 'direct'}`;
    const kernel = this.module.kernel(name);
    const bytes = sm90ForwardSmemBytes(dim, this.persistent);
    kernel.setMaxDynamicSharedMemory(bytes);
    return { kernel, smemBytes: bytes };
  }

  /** The three leading kernel arguments: TMA maps of q (128-row boxes), k and v (128-row boxes). */
  inputArgs(q: DeviceBuffer, k: DeviceBuffer, v: DeviceBuffer, dtype: DType, tokensQ: number, tokensK: number, headsQ: number, headsKv: number, dim: number): KernelArg[] {
    return [
      { type: 'bytes', value: tokenMajorTensorMap(this.device, q, dtype, tokensQ, headsQ, dim, FFA_SM90_BLOCK_M) },
      { type: 'bytes', value: tokenMajorTensorMap(this.device, k, dtype, tokensK, headsKv, dim, FFA_SM90_BLOCK_N) },
      { type: 'bytes', value: tokenMajorTensorMap(this.device, v, dtype, tokensK, headsKv, dim, FFA_SM90_BLOCK_N) },
    ];
  }

  /**
   * Grid and trailing arguments of a launch over `blocks` virtual blocks (work items x Hq): one
   * block each, or (persistent) the blocks that fit at once, capped by `blocks` and maxBlocks,
   * with `blocks` passed last.
   */
  launchShape(kernel: Kernel, smemBytes: number, blocks: number): { grid: number; tail: KernelArg[] } {
    if (!this.persistent) return { grid: blocks, tail: [] };
    let fit = this.resident.get(kernel);
    if (fit === undefined) {
      fit = this.device.smCount * Math.max(1, kernel.maxActiveBlocksPerSM(this.threads, smemBytes));
      this.resident.set(kernel, fit);
    }
    return { grid: Math.min(blocks, fit, this.maxBlocks ?? fit), tail: [{ type: 'i32', value: blocks }] };
  }
}
