// The masked softmax of the naive attention oracle (gpu/naive-attention.ts), float32. The
// products QK^T, PV, dO V^T, dS K, dS^T Q and P^T dO are cuBLAS GEMMs; these kernels apply the
// mask and the softmax to one head's [T, T] score matrix, one block per query row. Row i sees
// the keys of its intervals [keyStart[r], keyEnd[r]) for r in [rowStart[i], rowStart[i+1]).
//   softmax_fwd: P = softmax(scale * S) over the visible keys (0 elsewhere), lse saved
//   probs:       P = exp(scale * S - lse) (the backward's recomputation from the saved lse)
//   softmax_bwd: dS = P * (dP - sum_j P dP) * scale, in place over dP
#include "llama_common.cuh"

__device__ __forceinline__ bool llama_visible(const int* keyStart, const int* keyEnd, int r0, int r1, int j) {
  for (int r = r0; r < r1; r++)
    if (j >= keyStart[r] && j < keyEnd[r]) return true;
  return false;
}

extern "C" __global__ void llama_naive_softmax_fwd(float* __restrict__ S, float* __restrict__ lse, int lseStride, const int* __restrict__ rowStart,
                                                   const int* __restrict__ keyStart, const int* __restrict__ keyEnd, int cols, float scale) {
  __shared__ float scratch[32];
  float* s = S + (size_t)blockIdx.x * cols;
  const int r0 = rowStart[blockIdx.x];
  const int r1 = rowStart[blockIdx.x + 1];
  float m = LLAMA_NEG_INF;
  for (int r = r0; r < r1; r++)
    for (int j = keyStart[r] + threadIdx.x; j < keyEnd[r]; j += blockDim.x) m = fmaxf(m, s[j] * scale);
  m = llama::block_max(m, scratch);
  float sum = 0.f;
  if (m != LLAMA_NEG_INF)
    for (int r = r0; r < r1; r++)
      for (int j = keyStart[r] + threadIdx.x; j < keyEnd[r]; j += blockDim.x) sum += expf(s[j] * scale - m);
  sum = llama::block_sum(sum, scratch);
  const float L = sum > 0.f ? m + logf(sum) : LLAMA_NEG_INF;
  if (threadIdx.x == 0) lse[(size_t)blockIdx.x * lseStride] = L;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) s[j] = (L != LLAMA_NEG_INF && llama_visible(keyStart, keyEnd, r0, r1, j)) ? expf(s[j] * scale - L) : 0.f;
}

extern "C" __global__ void llama_naive_probs(float* __restrict__ S, const float* __restrict__ lse, int lseStride, const int* __restrict__ rowStart,
                                             const int* __restrict__ keyStart, const int* __restrict__ keyEnd, int cols, float scale) {
  float* s = S + (size_t)blockIdx.x * cols;
  const int r0 = rowStart[blockIdx.x];
  const int r1 = rowStart[blockIdx.x + 1];
  const float L = lse[(size_t)blockIdx.x * lseStride];
  for (int j = threadIdx.x; j < cols; j += blockDim.x) s[j] = (L != LLAMA_NEG_INF && llama_visible(keyStart, keyEnd, r0, r1, j)) ? expf(s[j] * scale - L) : 0.f;
}

extern "C" __global__ void llama_naive_softmax_bwd(float* __restrict__ dP, const float* __restrict__ P, int cols, float scale) {
  __shared__ float scratch[32];
  float* d = dP + (size_t)blockIdx.x * cols;
  const float* p = P + (size_t)blockIdx.x * cols;
  float delta = 0.f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) delta += p[j] * d[j];
  delta = llama::block_sum(delta, scratch);
  for (int j = threadIdx.x; j < cols; j += blockDim.x) d[j] = p[j] * (d[j] - delta) * scale;
}
