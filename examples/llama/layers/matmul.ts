/**
 * The CPU matrix product every linear layer uses (the CPU side of the one GEMM wrapper; the GPU
 * side is cuBLASLt, gpu/cublaslt.ts). Row-major, PyTorch's Linear layout in mind: y = x·Wᵀ is
 * matmul(y, x, W, transB), dx = dy·W is matmul(dx, dy, W), dW += dyᵀ·x is matmul(dW, dy, x,
 * transA, beta 1). Each output row is summed in float64 and rounded once.
 */
export type FloatArray = Float32Array | Float64Array;

export interface MatmulShape {
  /** Rows of C. */
  m: number;
  /** Columns of C. */
  n: number;
  /** The contracted dimension. */
  k: number;
  /** A is stored [k, m] and used transposed (else stored [m, k]). */
  transA?: boolean;
  /** B is stored [n, k] and used transposed (else stored [k, n]). */
  transB?: boolean;
  /** 1: add into C; 0: overwrite it. */
  beta?: 0 | 1;
}

/** C[m, n] = op(A)·op(B) + beta·C. */
export function matmul(c: FloatArray, a: FloatArray, b: FloatArray, s: MatmulShape): void {
  const { m, n, k } = s;
  const transA = s.transA ?? false;
  const transB = s.transB ?? false;
  const acc = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    if (s.beta === 1) for (let j = 0; j < n; j++) acc[j] = c[i * n + j];
    else acc.fill(0);
    if (!transB) {
      for (let p = 0; p < k; p++) {
        const aip = transA ? a[p * m + i] : a[i * k + p];
        if (aip === 0) continue;
        const row = p * n;
        for (let j = 0; j < n; j++) acc[j] += aip * b[row + j];
      }
    } else {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        const row = j * k;
        if (transA) for (let p = 0; p < k; p++) sum += a[p * m + i] * b[row + p];
        else for (let p = 0, ai = i * k; p < k; p++) sum += a[ai + p] * b[row + p];
        acc[j] += sum;
      }
    }
    for (let j = 0; j < n; j++) c[i * n + j] = acc[j];
  }
}
