// Token embedding, forward and backward (the GPU twin of layers/embedding.ts).
//   forward:  out[t] = table[tokens[t]]            (float32 master table, float32 residual stream)
//   backward: dtable[tokens[t]] += dout[t]           (atomic adds: tokens repeat)
// One block per row.
#include "llama_common.cuh"

extern "C" __global__ void llama_embedding_fwd(float* __restrict__ out, const int* __restrict__ tokens, const float* __restrict__ table, int dim) {
  const float* src = table + (size_t)tokens[blockIdx.x] * dim;
  float* dst = out + (size_t)blockIdx.x * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = src[i];
}

extern "C" __global__ void llama_embedding_bwd(float* __restrict__ dtable, const int* __restrict__ tokens, const float* __restrict__ dout, int dim) {
  float* dst = dtable + (size_t)tokens[blockIdx.x] * dim;
  const float* src = dout + (size_t)blockIdx.x * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) atomicAdd(dst + i, src[i]);
}
