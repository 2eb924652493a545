/**
 * A small dense tensor: a shape, a dtype and row-major typed-array storage on the host.
 * Attention tensors are token-major: q/k/v/out are [tokens, heads, headDim], lse is
 * [tokens, heads] in float32. The CUDA backend will mirror this shape/dtype model on the device.
 */
import { ShapeError } from './errors.js';
import { type DType, type Storage, allocStorage, fromNumbers, readElement, toFloat32Array, DTYPES } from './dtype.js';

export class Tensor {
  readonly size: number;

  constructor(
    readonly dtype: DType,
    readonly shape: readonly number[],
    readonly data: Storage,
  ) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new ShapeError('shape', 'dimensions must be non-negative integers', `got [${shape.join(', ')}]`);
    }
    if (!DTYPES.includes(dtype)) throw new ShapeError('dtype', `must be one of ${DTYPES.join(', ')}`, `got ${String(dtype)}`);
    this.size = shape.reduce((a, b) => a * b, 1);
    if (data.length !== this.size) {
      throw new ShapeError('data', 'length must equal the product of the shape', `${data.length} vs [${shape.join(', ')}]`);
    }
    const expected = allocStorage(dtype, 0).constructor;
    if (data.constructor !== expected) throw new ShapeError('data', `${dtype} tensors are stored in a ${expected.name}`, `got ${data.constructor.name}`);
  }

  static zeros(dtype: DType, shape: readonly number[]): Tensor {
    return new Tensor(dtype, shape, allocStorage(dtype, shape.reduce((a, b) => a * b, 1)));
  }

  static full(dtype: DType, shape: readonly number[], value: number): Tensor {
    const t = Tensor.zeros(dtype, shape);
    t.data.fill(fromNumbers(dtype, [value])[0]);
    return t;
  }

  /** A tensor from float values, narrowed to `dtype` with round-to-nearest-even. */
  static fromValues(dtype: DType, shape: readonly number[], values: ArrayLike<number>): Tensor {
    return new Tensor(dtype, shape, fromNumbers(dtype, values));
  }

  get rank(): number {
    return this.shape.length;
  }

  /** Element at flat index i as a number. */
  at(i: number): number {
    return readElement(this.dtype, this.data, i);
  }

  /** All elements widened to float32 (a copy). */
  toFloat32(): Float32Array {
    return toFloat32Array(this.dtype, this.data);
  }

  /** All elements as float64 (a copy). */
  toFloat64(): Float64Array {
    return Float64Array.from(this.dtype === 'float64' ? (this.data as Float64Array) : this.toFloat32());
  }

  /** A copy converted to another dtype. */
  to(dtype: DType): Tensor {
    if (dtype === this.dtype) return this.clone();
    return Tensor.fromValues(dtype, this.shape, this.dtype === 'float64' ? (this.data as Float64Array) : this.toFloat32());
  }

  clone(): Tensor {
    return new Tensor(this.dtype, this.shape, this.data.slice());
  }

  /** Same storage, new shape (product must match). */
  reshape(shape: readonly number[]): Tensor {
    return new Tensor(this.dtype, shape, this.data);
  }
}
