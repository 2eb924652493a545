/**
 * A dense tensor in GPU memory: the device-side twin of `Tensor` (src/tensor.ts), with the same
 * shape/dtype model (row-major, token-major attention layouts; float16 / bfloat16 elements are
 * their raw 16-bit patterns) so `fromHost` / `toHost` are plain byte copies. It is what the CUDA
 * kernel backend takes and returns. Node-only (it sits on the CUDA driver layer).
 */
import { ShapeError } from '../errors.js';
import { type DType, DTYPES, bytesPerElement } from '../dtype.js';
import { Tensor } from '../tensor.js';
import type { CudaDevice, DeviceBuffer } from './device.js';

export class DeviceTensor {
  readonly size: number;
  /** Where the memory lives: flexFlashAttn sends tensors of this location to the CUDA backend. */
  readonly location = 'cuda' as const;

  /** Wraps an existing buffer (it must hold at least size · bytesPerElement(dtype) bytes); the tensor owns it from then on. */
  constructor(
    readonly device: CudaDevice,
    readonly dtype: DType,
    readonly shape: readonly number[],
    readonly buffer: DeviceBuffer,
  ) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new ShapeError('shape', 'dimensions must be non-negative integers', `got [${shape.join(', ')}]`);
    }
    if (!DTYPES.includes(dtype)) throw new ShapeError('dtype', `must be one of ${DTYPES.join(', ')}`, `got ${String(dtype)}`);
    this.shape = Object.freeze([...shape]);
    this.size = shape.reduce((a, b) => a * b, 1);
    if (buffer.device !== device) throw new ShapeError('buffer', 'must live on the tensor\'s device');
    if (buffer.bytes < this.byteLength) {
      throw new ShapeError('buffer', 'must hold size · bytes per element', `${buffer.bytes} bytes for ${this.byteLength}`);
    }
  }

  /** A device copy of a host tensor (same dtype and shape). */
  static fromHost(device: CudaDevice, t: Tensor): DeviceTensor {
    const buf = device.alloc(t.data.byteLength);
    if (t.data.byteLength > 0) buf.upload(t.data);
    return new DeviceTensor(device, t.dtype, t.shape, buf);
  }

  /** An uninitialised device tensor. */
  static empty(device: CudaDevice, dtype: DType, shape: readonly number[]): DeviceTensor {
    if (!DTYPES.includes(dtype)) throw new ShapeError('dtype', `must be one of ${DTYPES.join(', ')}`, `got ${String(dtype)}`);
    const size = shape.reduce((a, b) => a * b, 1);
    const bytes = Number.isInteger(size) && size >= 0 ? size * bytesPerElement(dtype) : 0;
    return new DeviceTensor(device, dtype, shape, device.alloc(bytes));
  }

  get rank(): number {
    return this.shape.length;
  }

  /** Bytes of the elements (may be less than the buffer's). */
  get byteLength(): number {
    return this.size * bytesPerElement(this.dtype);
  }

  get isFreed(): boolean {
    return this.buffer.isFreed;
  }

  /** Downloads into a new host Tensor (synchronous on the legacy default stream). */
  toHost(): Tensor {
    const t = Tensor.zeros(this.dtype, this.shape);
    if (t.data.byteLength > 0) this.buffer.download(t.data);
    return t;
  }

  /** Gives the memory back to the device's caching allocator. */
  free(): void {
    this.buffer.free();
  }
}
