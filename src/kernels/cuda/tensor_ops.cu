// Element-wise device primitives of the distributed runtime and the device process groups:
// narrowing casts of float32 accumulators to the input dtype, the rank-ordered reduction of an
// all-reduce (P equal parts reduced in rank order, so every rank gets the same bits), and fills.
//
// Device code only: compiled at run time by NVRTC (src/kernels/cuda/tensor-ops.ts) and by nvcc in
// the CI check. Every kernel is a grid-stride loop over n elements; n fits in int64.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace tensor_ops {

__device__ __forceinline__ float widen(float x) { return x; }
__device__ __forceinline__ float widen(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float widen(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T narrow(float x);
template <> __device__ __forceinline__ float narrow<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half narrow<__half>(float x) { return __float2half_rn(x); }

template <typename Dst>
__device__ void cast_from_f32(const float* __restrict__ src, Dst* __restrict__ dst, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) dst[i] = narrow<Dst>(src[i]);
}

// dst[i] = parts[0][i] op parts[1][i] op ... op parts[P-1][i], folded in rank order in float32
// and rounded once to T. IEEE max: a NaN in any part makes the result NaN (as sum does).
template <typename T, bool kMax>
__device__ void reduce_parts(const T* __restrict__ parts, T* __restrict__ dst, long long n, int P) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float acc = widen(parts[i]);
    for (int p = 1; p < P; p++) {
      const float x = widen(parts[p * n + i]);
      if (kMax) acc = (x != x || acc != acc) ? __int_as_float(0x7fc00000) : fmaxf(acc, x);
      else acc += x;
    }
    dst[i] = narrow<T>(acc);
  }
}

}  // namespace tensor_ops

extern "C" {

__global__ void cast_f32_bf16(const float* src, __nv_bfloat16* dst, long long n) { tensor_ops::cast_from_f32(src, dst, n); }
__global__ void cast_f32_f16(const float* src, __half* dst, long long n) { tensor_ops::cast_from_f32(src, dst, n); }

__global__ void reduce_parts_sum_f32(const float* parts, float* dst, long long n, int P) { tensor_ops::reduce_parts<float, false>(parts, dst, n, P); }
__global__ void reduce_parts_max_f32(const float* parts, float* dst, long long n, int P) { tensor_ops::reduce_parts<float, true>(parts, dst, n, P); }
__global__ void reduce_parts_sum_bf16(const __nv_bfloat16* parts, __nv_bfloat16* dst, long long n, int P) { tensor_ops::reduce_parts<__nv_bfloat16, false>(parts, dst, n, P); }
__global__ void reduce_parts_max_bf16(const __nv_bfloat16* parts, __nv_bfloat16* dst, long long n, int P) { tensor_ops::reduce_parts<__nv_bfloat16, true>(parts, dst, n, P); }
__global__ void reduce_parts_sum_f16(const __half* parts, __half* dst, long long n, int P) { tensor_ops::reduce_parts<__half, false>(parts, dst, n, P); }
__global__ void reduce_parts_max_f16(const __half* parts, __half* dst, long long n, int P) { tensor_ops::reduce_parts<__half, true>(parts, dst, n, P); }

__global__ void fill_f32(float* dst, float value, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) dst[i] = value;
}

__global__ void scale_f32(float* x, float s, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) x[i] *= s;
}

}  // extern "C"
