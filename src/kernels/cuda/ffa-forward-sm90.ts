/**
 * The Hopper main kernel of the forward (ffa_fwd_sm90.cu: TMA, wgmma, one producer and two
 * consumer warpgroups). CudaFfaForward (ffa-forward.ts) uses it instead of the mma.sync kernel
 * when the GPU is compute capability 9.0; everything around the main launch (work list, row
 * fill, lse init, finalize, sink / accumulation post-pass, deterministic grouping) is shared.
 * What differs: q, k and v reach the kernel as TMA descriptors instead of pointers, tiles are
 * 128 x 128, a block has 384 threads, and the merge epilogue locks 64-row blocks (one consumer
 * warpgroup's rows).
 */
import { CuTensorMap } from '../../device/cuda-driver.js';
import type { CudaDevice, DeviceBuffer, Kernel, KernelArg, Module } from '../../device/device.js';
import type { DType } from '../../dtype.js';
import { readKernelSource } from './source.js';
import { FfaCudaUnsupportedError } from './unsupported.js';

export const FFA_SM90_BLOCK_M = 128;
export const FFA_SM90_BLOCK_N = 128;
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

/** Compiles one of the Hopper kernel files; a clear error on a GPU that is not compute capability 9.0. */
export function compileSm90Module(device: CudaDevice, fileName: string, cacheDir?: string): Module {
  if (!sm90Available(device)) {
    throw new FfaCudaUnsupportedError(`the sm90 kernels need compute capability 9.0, ${device.name} has ${device.computeCapability.join('.')}`);
  }
  const opts: { name: string; cacheDir?: string; options: string[] } = { name: fileName, options: [] };
  if (cacheDir !== undefined) opts.cacheDir = cacheDir;
  return device.compile(readKernelSource(fileName), opts);
}

/** Q tile, 2 stages each of K and V, 9 barriers, and slack to align the base to 1024 bytes. */
function smemBytes(dim: number): number {
  return FFA_SM90_BLOCK_M * dim * 2 + 4 * FFA_SM90_BLOCK_N * dim * 2 + 9 * 8 + 1024;
}

export class Sm90ForwardMain {
  readonly module: Module;
  readonly blockM = FFA_SM90_BLOCK_M;
  readonly blockN = FFA_SM90_BLOCK_N;
  readonly lockRows = FFA_SM90_LOCK_ROWS;
  readonly threads = FFA_SM90_THREADS;

  constructor(
    readonly device: CudaDevice,
    cacheDir?: string,
  ) {
    this.module = compileSm90Module(device, 'ffa_fwd_sm90.cu', cacheDir);
  }

  mainKernel(tag: 'bf16' | 'fp16', dim: number, merge: boolean): { kernel: Kernel; smemBytes: number } {
    if (!FFA_SM90_HEAD_DIMS.includes(dim)) throw new FfaCudaUnsupportedError(`head dim must be one of ${FFA_SM90_HEAD_DIMS.join(', ')}, got ${dim}`);
    const name = `ffa_fwd_sm90_${tag}_d${dim}_${merge ? 'merge' : 'direct'}`;
    const kernel = this.module.kernel(name);
    const bytes = smemBytes(dim);
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
}
