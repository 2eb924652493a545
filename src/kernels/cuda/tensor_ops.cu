// Element-wise device primitives of the distributed runtime and the device process groups:
// narrowing casts of float32 accumulators to the input dtype, the rank-ordered reduction of an
// all-reduce (P equal parts reduced in rank order, so every rank gets the same bits), fills, and
// counter-based random fills (benchmark inputs drawn on the device: see random_fill).
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

// Random fill: element i is a pure function of (seed, i) (splitmix64 of the pair), so any length
// is drawn in one launch, with no repetition along the tensor and no host work. `normal`: N(0, 1)
// by Box-Muller; else uniform on (-1, 1). The two uniforms are 23-bit odd half-steps, exact in
// float and strictly inside (0, 1) (no log(0)). Never zero: |x| below 2^-10 is raised to 2^-10
// with its sign (a shift of 0.08% of normal draws), so 16-bit types cannot underflow to 0 either.
__device__ __forceinline__ unsigned long long splitmix64(unsigned long long x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

template <typename T>
__device__ void random_fill(T* __restrict__ dst, unsigned long long seed, long long n, bool normal) {
  const unsigned long long key = splitmix64(seed);
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const unsigned long long h = splitmix64(key ^ (unsigned long long)i);
    const float u1 = ((float)(h >> 41) + 0.5f) * 0x1p-23f;
    const float u2 = ((float)((h >> 9) & 0x7fffffull) + 0.5f) * 0x1p-23f;
    float x = normal ? sqrtf(-2.f * logf(u1)) * cospif(2.f * u2) : 2.f * u1 - 1.f;
    if (fabsf(x) < 0x1p-10f) x = copysignf(0x1p-10f, x);
    dst[i] = narrow<T>(x);
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

__global__ void random_bf16(__nv_bfloat16* dst, unsigned long long seed, long long n, int normal) { tensor_ops::random_fill(dst, seed, n, normal != 0); }
__global__ void random_f16(__half* dst, unsigned long long seed, long long n, int normal) { tensor_ops::random_fill(dst, seed, n, normal != 0); }
__global__ void random_f32(float* dst, unsigned long long seed, long long n, int normal) { tensor_ops::random_fill(dst, seed, n, normal != 0); }

__global__ void scale_f32(float* x, float s, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) x[i] *= s;
}

}  // extern "C"
