/**
 * Element types and the 16-bit float conversions. Node 20 has no Float16Array, so float16 and
 * bfloat16 values are stored as their raw bits in a Uint16Array and widened to float32 for
 * compute; narrowing rounds to nearest, ties to even, exactly as the GPU does.
 */

export type DType = 'float32' | 'float16' | 'bfloat16' | 'float64';

export type Storage = Float64Array | Float32Array | Uint16Array;

export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'float64'];

export function bytesPerElement(dtype: DType): number {
  return dtype === 'float64' ? 8 : dtype === 'float32' ? 4 : 2;
}

export function allocStorage(dtype: DType, length: number): Storage {
  switch (dtype) {
    case 'float64':
      return new Float64Array(length);
    case 'float32':
      return new Float32Array(length);
    default:
      return new Uint16Array(length);
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bf16BitsToFloat(bits: number): number {
  u32[0] = bits << 16;
  return f32[0];
}

export function floatToBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff; // keep NaN a (quiet) NaN
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

// float16 -> float32 through a 64 Ki-entry table: the hot path of every half-precision load.
const F16_TABLE = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) table[h] = sign * frac * 2 ** -24;
    else if (exp === 31) table[h] = frac === 0 ? sign * Infinity : NaN;
    else table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return table;
})();

export function f16BitsToFloat(bits: number): number {
  return F16_TABLE[bits & 0xffff];
}

export function floatToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00; // overflow to infinity
  if (e <= 0) {
    if (e < -10) return sign; // underflows to signed zero
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let out = mant >>> shift;
    if (rest > half || (rest === half && (out & 1) !== 0)) out++;
    return sign | out;
  }
  let out = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (out & 1) !== 0)) out++; // may carry into the exponent: correct
  return sign | out;
}

/** Widen a whole storage array to float32 (a copy for 16-bit types and float64, a view-free copy for float32). */
export function toFloat32Array(dtype: DType, data: Storage): Float32Array {
  const n = data.length;
  const out = new Float32Array(n);
  if (dtype === 'bfloat16') {
    const src = data as Uint16Array;
    const dst = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) dst[i] = src[i] << 16;
  } else if (dtype === 'float16') {
    const src = data as Uint16Array;
    for (let i = 0; i < n; i++) out[i] = F16_TABLE[src[i]];
  } else {
    out.set(data as Float32Array | Float64Array);
  }
  return out;
}

/** Narrow float values into storage of `dtype`, rounding to nearest even. */
export function fromNumbers(dtype: DType, values: ArrayLike<number>): Storage {
  const n = values.length;
  const out = allocStorage(dtype, n);
  if (dtype === 'bfloat16') for (let i = 0; i < n; i++) out[i] = floatToBf16Bits(values[i]);
  else if (dtype === 'float16') for (let i = 0; i < n; i++) out[i] = floatToF16Bits(values[i]);
  else for (let i = 0; i < n; i++) out[i] = values[i];
  return out;
}

/** Reads element i of a storage array as a number, whatever the dtype. */
export function readElement(dtype: DType, data: Storage, i: number): number {
  if (dtype === 'bfloat16') return bf16BitsToFloat(data[i]);
  if (dtype === 'float16') return F16_TABLE[data[i]];
  return data[i];
}

