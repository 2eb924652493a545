// RMSNorm, forward and backward (the GPU twin of layers/rmsnorm.ts).
//   forward:  r_t = rsqrt(mean_i x_ti^2 + eps),  out = bf16(w * (x * r)),  rstd[t] = r
//   backward: g = dout * w;  dx += r * (g - xhat * mean_i(g * xhat));  dw += sum_t dout * xhat
// x, w, dout, dx, dw are float32 (residual stream, master weight, gradients); out is bfloat16
// (it feeds a matmul). Forward: one block per row. Backward: a block walks `rowsPerBlock` rows,
// keeps its dw partial in shared memory (each thread owns fixed columns), then adds it once.
#include "llama_common.cuh"

extern "C" __global__ void llama_rmsnorm_fwd(__nv_bfloat16* __restrict__ out, float* __restrict__ rstd, const float* __restrict__ x, const float* __restrict__ w, int dim, float eps) {
  __shared__ float scratch[32];
  const size_t row = (size_t)blockIdx.x * dim;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = x[row + i];
    ss += v * v;
  }
  ss = llama::block_sum(ss, scratch);
  const float r = rsqrtf(ss / dim + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) out[row + i] = llama::to_bf(w[i] * (x[row + i] * r));
}

// Dynamic shared memory: dim floats.
extern "C" __global__ void llama_rmsnorm_bwd(float* __restrict__ dx, float* __restrict__ dw, const float* __restrict__ dout, const float* __restrict__ x,
                                             const float* __restrict__ w, const float* __restrict__ rstd, int rows, int dim, int rowsPerBlock) {
  extern __shared__ float dwAcc[];
  __shared__ float scratch[32];
  for (int i = threadIdx.x; i < dim; i += blockDim.x) dwAcc[i] = 0.f;
  const int first = blockIdx.x * rowsPerBlock;
  const int last = min(rows, first + rowsPerBlock);
  for (int t = first; t < last; t++) {
    const size_t row = (size_t)t * dim;
    const float r = rstd[t];
    float dot = 0.f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) dot += dout[row + i] * w[i] * x[row + i];
    const float mean = llama::block_sum(dot, scratch) * r / dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
      const float xh = x[row + i] * r;
      const float g = dout[row + i];
      dx[row + i] += r * (g * w[i] - xh * mean);
      dwAcc[i] += g * xh;
    }
  }
  for (int i = threadIdx.x; i < dim; i += blockDim.x) atomicAdd(dw + i, dwAcc[i]);
}
