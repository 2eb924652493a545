/**
 * The Hopper main kernel of the forward (ffa_fwd_sm90.cu: TMA, wgmma, one producer and two
 * consumer warpgroups). CudaFfaForward (ffa-forward.ts) uses it instead of the mma.sync kernel
 * when the GPU is compute capability 9.0; everything around the main launch (work list, row
 * fill, lse init, finalize, sink / accumulation post-pass, deterministic grouping) is shared.
 * What differs: q, k and v reach the kernel as TMA descriptors instead of pointers, tiles are
 * 128 q rows x 128 keys (176 keys in the wide build, below), a block has 384 threads, and the
 * merge epilogue locks 64-row blocks (one consumer warpgroup's rows).
 * Three builds of the same kernel source (Sm90ForwardBuild), each its own module, compiled on
 * first use and picked per plan by sm90ForwardPicksBuild: 'block', one block per (work item,
 * head); 'persistent' (-DFFA_SM90_FWD_PERSISTENT=1: one block per SM walking the work list,
 * ffa_fwd_sm90.cu's header); 'wide', one block per item with 176-key k tiles
 * (-DFFA_SM90_FWD_BN=176). Work lists are planned with 128-key tiles either way (the k tile
 * count is the device's, per item).
 */
import { CuTensorMap } from '../../device/cuda-driver.js';
import type { CudaDevice, DeviceBuffer, Kernel, KernelArg, Module } from '../../device/device.js';
import type { DType } from '../../dtype.js';
import { FULL } from '../../mask/geometry.js';
import type { SliceList } from '../../mask/slice-list.js';
import type { FfaForwardPlan } from './ffa-forward.js';
import { InvalidArgumentError } from '../../errors.js';
import { readKernelSource } from './source.js';
import { FfaCudaUnsupportedError } from './unsupported.js';

export const FFA_SM90_BLOCK_M = 128;
export const FFA_SM90_BLOCK_N = 128;
/** Keys per k tile of the wide build (FFA_SM90_FWD_BN; FlashAttention-3's forward tile for D 128 without a causal edge). */
export const FFA_SM90_WIDE_BLOCK_N = 176;
/**
 * The persistent schedule is picked for plans whose work items average fewer k tiles (of 128
 * keys) than this. Below it the per-item pipeline fill (Q, first K / V) and epilogue are a large
 * share of an item, and the persistent walk hides them behind the previous item; above it there
 * is little to hide (and varlen block-causal at ~18 tiles lost 3-4% in both 16k runs, for a reason
 * not profiled).
 */
export const SM90_PERSISTENT_BELOW_MEAN_K_TILES = 16;

/**
 * Whether the Hopper forward runs `plan` on the persistent schedule for its short items: its work
 * items (planned with the Hopper 128 x 128 tiles) average fewer than 16 k tiles. Measured on an
 * H200, 16k tokens, 64:8 heads, D 128, bf16, two runs of 2026-12-02 (bench/kernel/README.md,
 * "Persistent Hopper forward"): sliding window (8.7 k tiles per item) +14-17% persistent, varlen
 * causal (11.9) +4-10%, varlen block-causal (17.9) -3-4%, causal (64.5) and full (128) within
 * ±1%; a third run at 4k and 8k (3.8-10.5 tiles per item, four short-item masks) +8-26% on every
 * one, at 32k the varlen masks (19-38 tiles) level either way. An empty plan launches no main
 * kernel: one block per item (nothing compiled for the persistent module).
 */
export function sm90ForwardPicksPersistent(plan: Pick<FfaForwardPlan, 'numWork' | 'kTiles'>): boolean {
  return plan.numWork > 0 && plan.kTiles < SM90_PERSISTENT_BELOW_MEAN_K_TILES * plan.numWork;
}

/**
 * The persistent schedule is also picked where the one-block-per-item grid is short: at most this
 * many blocks (work items x Hq) per SM.
 */
export const SM90_PERSISTENT_MAX_BLOCKS_PER_SM = 16;

/**
 * Whether the one-block-per-item grid of `plan` over `headsQ` heads is short on a GPU of `smCount`
 * SMs (at most 16 blocks per SM), so that the persistent walk wins on items of any length: its
 * blocks start once, it deals the items longest-first and its producer loads the next item during
 * the current one's epilogue. Measured on an H200 (64:8 heads, D 128, bf16, two readings each,
 * bench/kernel/README.md, "Forward: short grids on the persistent schedule"): at 4k tokens
 * (2,048 blocks, 15.5 per SM) causal (16.5 k tiles per item) +11-14% and full (32) +4-7%
 * persistent; at 8k (4,096 blocks, 31 per SM) causal (32.5) level and full (64, wide) 1-5% slower.
 */
export function sm90ForwardGridIsShort(plan: Pick<FfaForwardPlan, 'numWork'>, headsQ: number, smCount: number): boolean {
  return plan.numWork > 0 && plan.numWork * headsQ <= SM90_PERSISTENT_MAX_BLOCKS_PER_SM * smCount;
}

/** The wide k tile is picked for plans whose work items average at least this many 128-key k tiles. */
export const SM90_WIDE_FROM_MEAN_K_TILES = 64;

/**
 * Whether the Hopper forward runs a plan on 176-key k tiles (if the persistent rule has not taken
 * it: the persistent build keeps 128 keys, its two Q stages and four wide K / V stages would not
 * fit in shared memory): head dim 128, every slice full, so that no tile is cut by a diagonal or
 * a window edge (a wider tile there masks more of the keys it loaded: causal measured level,
 * varlen causal 3-8% slower), and items of at least 64 k tiles on average (rows of 8k keys and
 * more: the full mask gained 0-5% at 16k-64k, varlen full with documents of 3-6k tokens
 * nothing). H200 measurements: bench/kernel/README.md, "Wide k tiles in the forward".
 */
export function sm90ForwardPicksWide(slices: Pick<SliceList, 'maskTypes'>, plan: Pick<FfaForwardPlan, 'numWork' | 'kTiles'>, dim: number): boolean {
  return (
    dim === 128 &&
    plan.numWork > 0 &&
    plan.kTiles >= SM90_WIDE_FROM_MEAN_K_TILES * plan.numWork &&
    slices.maskTypes.every((t) => t === FULL)
  );
}

/**
 * A build of ffa_fwd_sm90.cu, each its own module: one block per (work item, head) on 128-key
 * k tiles ('block') or 176-key ones ('wide'), or one block per SM walking the items ('persistent').
 */
export type Sm90ForwardBuild = 'block' | 'wide' | 'persistent';
export const SM90_FORWARD_BUILDS: readonly Sm90ForwardBuild[] = ['block', 'wide', 'persistent'];

/** NVRTC defines of each build. */
const BUILD_DEFINES: Readonly<Record<Sm90ForwardBuild, readonly string[]>> = {
  block: [],
  wide: [`-DFFA_SM90_FWD_BN=${FFA_SM90_WIDE_BLOCK_N}`],
  persistent: ['-DFFA_SM90_FWD_PERSISTENT=1'],
};

/**
 * The build a plan over `headsQ` heads runs on, on a GPU of `smCount` SMs: persistent where its
 * items are short (sm90ForwardPicksPersistent), else wide where sm90ForwardPicksWide says so,
 * else persistent where its grid is short (sm90ForwardGridIsShort), else block.
 */
export function sm90ForwardPicksBuild(
  slices: Pick<SliceList, 'maskTypes'>,
  plan: Pick<FfaForwardPlan, 'numWork' | 'kTiles'>,
  dim: number,
  headsQ: number,
  smCount: number,
): Sm90ForwardBuild {
  if (sm90ForwardPicksPersistent(plan)) return 'persistent';
  if (sm90ForwardPicksWide(slices, plan, dim)) return 'wide';
  return sm90ForwardGridIsShort(plan, headsQ, smCount) ? 'persistent' : 'block';
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

/** A clear error on a GPU that is not compute capability 9.0 (the Hopper kernels are built for sm_90a). */
function requireSm90(device: CudaDevice): void {
  if (!sm90Available(device)) {
    throw new FfaCudaUnsupportedError(`the sm90 kernels need compute capability 9.0, ${device.name} has ${device.computeCapability.join('.')}`);
  }
}

/**
 * Compiles one of the Hopper kernel files (NVRTC `options`, e.g. -D defines: part of the compile
 * cache key); a clear error on a GPU that is not compute capability 9.0.
 */
export function compileSm90Module(device: CudaDevice, fileName: string, cacheDir?: string, options: readonly string[] = []): Module {
  requireSm90(device);
  const opts: { name: string; cacheDir?: string; options: string[] } = { name: fileName, options: [...options] };
  if (cacheDir !== undefined) opts.cacheDir = cacheDir;
  return device.compile(readKernelSource(fileName), opts);
}

/**
 * The kernel's Smem<D>::kRequest of `build`: the Q tile, 2 stages each of K and V (wide: of 176
 * keys), 9 barriers, and slack to align the base to 1024 bytes; persistent: 2 Q stages, 12
 * barriers and 2 item slots of 32 bytes.
 */
export function sm90ForwardSmemBytes(dim: number, build: Sm90ForwardBuild): number {
  const q = FFA_SM90_BLOCK_M * dim * 2;
  const kv = 4 * sm90ForwardBlockN(build) * dim * 2;
  return (build === 'persistent' ? 2 * q + kv + 12 * 8 + 2 * 32 : q + kv + 9 * 8) + 1024;
}

/** Keys per k tile of `build`. */
export function sm90ForwardBlockN(build: Sm90ForwardBuild): number {
  return build === 'wide' ? FFA_SM90_WIDE_BLOCK_N : FFA_SM90_BLOCK_N;
}

/** Options of the Hopper forward main kernel. */
export interface Sm90ForwardOptions {
  cacheDir?: string;
  /**
   * The build: 'auto' (default) picks per plan (sm90ForwardPicksBuild); a build's name forces it
   * on every plan (the GPU checks and fwd-persist.ts run each).
   */
  build?: Sm90ForwardBuild | 'auto';
  /**
   * With build 'persistent' only: at most this many blocks (tests: every block then walks many
   * items, through both directions of the schedule and a partial last round). Default: as many
   * as fit at once.
   */
  maxBlocks?: number;
}

export class Sm90ForwardMain {
  readonly blockM = FFA_SM90_BLOCK_M;
  readonly blockN = FFA_SM90_BLOCK_N;
  readonly lockRows = FFA_SM90_LOCK_ROWS;
  readonly threads = FFA_SM90_THREADS;
  /** The build asked for (Sm90ForwardOptions.build). */
  readonly build: Sm90ForwardBuild | 'auto';
  /** Persistent only: the grid's cap (Sm90ForwardOptions.maxBlocks), or undefined. */
  readonly maxBlocks: number | undefined;
  private readonly cacheDir: string | undefined;
  /** Each build's module, compiled on first use. */
  private readonly modules = new Map<Sm90ForwardBuild, Module>();
  /** Per kernel: blocks that fit on the GPU at once (persistent grids). */
  private readonly resident = new Map<Kernel, number>();

  constructor(
    readonly device: CudaDevice,
    options: Sm90ForwardOptions = {},
  ) {
    const build = options.build ?? 'auto';
    if (build !== 'auto' && !SM90_FORWARD_BUILDS.includes(build)) {
      throw new InvalidArgumentError('build', `must be 'auto' or one of ${SM90_FORWARD_BUILDS.map((b) => `'${b}'`).join(', ')}`, `got ${JSON.stringify(build)}`);
    }
    this.build = build;
    if (options.maxBlocks !== undefined) {
      if (build !== 'persistent') throw new InvalidArgumentError('maxBlocks', "applies to the persistent kernel only (build: 'persistent')", `build is ${JSON.stringify(build)}`);
      if (!Number.isInteger(options.maxBlocks) || options.maxBlocks < 1) throw new InvalidArgumentError('maxBlocks', 'must be a positive integer', `got ${options.maxBlocks}`);
    }
    this.maxBlocks = options.maxBlocks;
    this.cacheDir = options.cacheDir;
    requireSm90(device);
  }

  /** The build `plan` of `slices` over `headsQ` heads runs on: as forced, or by sm90ForwardPicksBuild on this GPU. */
  picksBuild(slices: Pick<SliceList, 'maskTypes'>, plan: Pick<FfaForwardPlan, 'numWork' | 'kTiles'>, dim: number, headsQ: number): Sm90ForwardBuild {
    return this.build === 'auto' ? sm90ForwardPicksBuild(slices, plan, dim, headsQ, this.device.smCount) : this.build;
  }

  /** The module of one build, compiled (or read from the compile cache) on first use. */
  module(build: Sm90ForwardBuild): Module {
    let m = this.modules.get(build);
    if (m === undefined) this.modules.set(build, (m = compileSm90Module(this.device, 'ffa_fwd_sm90.cu', this.cacheDir, BUILD_DEFINES[build])));
    return m;
  }

  mainKernel(tag: 'bf16' | 'fp16', dim: number, merge: boolean, build: Sm90ForwardBuild): { kernel: Kernel; smemBytes: number } {
    if (!FFA_SM90_HEAD_DIMS.includes(dim)) throw new FfaCudaUnsupportedError(`head dim must be one of ${FFA_SM90_HEAD_DIMS.join(', ')}, got ${dim}`);
    const name = `ffa_fwd_sm90_${tag}_d${dim}_${merge ? 'merge' : 'direct'}`;
    const kernel = this.module(build).kernel(name);
    const bytes = sm90ForwardSmemBytes(dim, build);
    kernel.setMaxDynamicSharedMemory(bytes);
    return { kernel, smemBytes: bytes };
  }

  /** The three leading kernel arguments: TMA maps of q (128-row boxes), k and v (boxes of one of `build`'s k tiles). */
  inputArgs(q: DeviceBuffer, k: DeviceBuffer, v: DeviceBuffer, dtype: DType, tokensQ: number, tokensK: number, headsQ: number, headsKv: number, dim: number, build: Sm90ForwardBuild): KernelArg[] {
    const n = sm90ForwardBlockN(build);
    return [
      { type: 'bytes', value: tokenMajorTensorMap(this.device, q, dtype, tokensQ, headsQ, dim, FFA_SM90_BLOCK_M) },
      { type: 'bytes', value: tokenMajorTensorMap(this.device, k, dtype, tokensK, headsKv, dim, n) },
      { type: 'bytes', value: tokenMajorTensorMap(this.device, v, dtype, tokensK, headsKv, dim, n) },
    ];
  }

  /**
   * Grid and trailing arguments of a launch over `blocks` virtual blocks (work items x Hq): one
   * block each, or (persistent) the blocks that fit at once, capped by `blocks` and maxBlocks,
   * with `blocks` passed last.
   */
  launchShape(kernel: Kernel, smemBytes: number, blocks: number, build: Sm90ForwardBuild): { grid: number; tail: KernelArg[] } {
    if (build !== 'persistent') return { grid: blocks, tail: [] };
    let fit = this.resident.get(kernel);
    if (fit === undefined) {
      fit = this.device.smCount * Math.max(1, kernel.maxActiveBlocksPerSM(this.threads, smemBytes));
      this.resident.set(kernel, fit);
    }
    return { grid: Math.min(blocks, fit, this.maxBlocks ?? fit), tail: [{ type: 'i32', value: blocks }] };
  }
}
