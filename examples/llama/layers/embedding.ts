/**
 * Token embedding (the CPU twin of kernels/embedding.cu): out[t] = table[token_t]; the backward
 * scatters dout rows into the table's gradient (adds).
 */
import type { FloatArray } from './matmul.js';

export function embeddingForward(out: FloatArray, tokens: Int32Array, table: FloatArray, dim: number): void {
  for (let t = 0; t < tokens.length; t++) out.set(table.subarray(tokens[t] * dim, tokens[t] * dim + dim), t * dim);
}

export function embeddingBackward(dtable: FloatArray, tokens: Int32Array, dout: FloatArray, dim: number): void {
  for (let t = 0; t < tokens.length; t++) {
    const o = tokens[t] * dim;
    for (let i = 0; i < dim; i++) dtable[o + i] += dout[t * dim + i];
  }
}
