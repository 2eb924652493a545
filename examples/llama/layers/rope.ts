/**
 * Rotary position embedding (the CPU twin of kernels/rope.cu), Hugging Face's convention: the
 * head vector's halves (x1, x2) rotate as pairs (x1_j, x2_j) by the angle pos·f_j,
 * f_j = theta^(-2j/D):  y1 = x1·cos − x2·sin,  y2 = x2·cos + x1·sin.
 * The backward is the inverse rotation. Positions are the dispatched global positions
 * (getPositionIds), so a context-parallel shard rotates exactly as the whole sequence would.
 */
import type { FloatArray } from './matmul.js';

/** cos and sin tables [maxPositions, headDim / 2]. */
export interface RopeTable {
  readonly maxPositions: number;
  readonly half: number;
  readonly cos: Float32Array;
  readonly sin: Float32Array;
}

/**
 * The tables, with the angle formed in float32 as transformers' LlamaRotaryEmbedding forms it
 * (float32 inverse frequencies times float32 positions), so the PyTorch twin rotates by the same
 * angles; cos and sin of that angle are then correctly rounded.
 */
export function ropeTable(maxPositions: number, headDim: number, theta: number): RopeTable {
  const half = headDim / 2;
  const cos = new Float32Array(maxPositions * half);
  const sin = new Float32Array(maxPositions * half);
  const invFreq = new Float32Array(half);
  for (let j = 0; j < half; j++) invFreq[j] = 1 / Math.fround(theta ** Math.fround((2 * j) / headDim));
  for (let p = 0; p < maxPositions; p++) {
    for (let j = 0; j < half; j++) {
      const angle = Math.fround(p * invFreq[j]);
      cos[p * half + j] = Math.cos(angle);
      sin[p * half + j] = Math.sin(angle);
    }
  }
  return { maxPositions, half, cos, sin };
}

/** Rotates x [T, H, D] in place by each row's position. */
export function ropeForward(x: FloatArray, positions: Int32Array, heads: number, table: RopeTable): void {
  rotate(x, x, positions, heads, table, 1);
}

/** dst = the inverse rotation of src (both [T, H, D]; they may be the same array). */
export function ropeBackward(dst: FloatArray, src: FloatArray, positions: Int32Array, heads: number, table: RopeTable): void {
  rotate(dst, src, positions, heads, table, -1);
}

function rotate(dst: FloatArray, src: FloatArray, positions: Int32Array, heads: number, table: RopeTable, sign: 1 | -1): void {
  const half = table.half;
  const dim = 2 * half;
  for (let t = 0; t < positions.length; t++) {
    const p = positions[t];
    for (let h = 0; h < heads; h++) {
      const o = (t * heads + h) * dim;
      for (let j = 0; j < half; j++) {
        const c = table.cos[p * half + j];
        const s = sign * table.sin[p * half + j];
        const x1 = src[o + j];
        const x2 = src[o + half + j];
        dst[o + j] = x1 * c - x2 * s;
        dst[o + half + j] = x2 * c + x1 * s;
      }
    }
  }
}
