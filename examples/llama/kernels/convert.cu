// Precision conversions: float32 master weights and gradients to the bf16 copies the matmuls read,
// bf16 activations to float32 (the naive attention oracle computes in float32), and adding a
// bf16 or float32 tensor into a float32 one (partial gradients into their accumulators).
#include "llama_common.cuh"

extern "C" __global__ void llama_f32_to_bf16(__nv_bfloat16* __restrict__ dst, const float* __restrict__ src, long long n) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) dst[i] = llama::to_bf(src[i]);
}

extern "C" __global__ void llama_bf16_to_f32(float* __restrict__ dst, const __nv_bfloat16* __restrict__ src, long long n) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) dst[i] = llama::bf(src[i]);
}

extern "C" __global__ void llama_add_bf16_into_f32(float* __restrict__ dst, const __nv_bfloat16* __restrict__ src, long long n) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) dst[i] += llama::bf(src[i]);
}

extern "C" __global__ void llama_add_f32_into_f32(float* __restrict__ dst, const float* __restrict__ src, long long n) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) dst[i] += src[i];
}
