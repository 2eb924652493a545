// The optimizer's kernels (the GPU twin of layers/adamw.ts), PyTorch's AdamW arithmetic:
//   g = grad * gradScale (the clip coefficient)
//   p = p * decay,  decay = 1 - lr * weightDecay
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p = p - stepSize * m / (sqrt(v) / bc2Sqrt + eps),  stepSize = lr / (1 - beta1^t),  bc2Sqrt = sqrt(1 - beta2^t)
// and the squared norm of the gradients for the clip: per-block partial sums in double, summed
// on the host in a fixed order (so the norm is bit-reproducible).
#include "llama_common.cuh"

extern "C" __global__ void llama_adamw(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m, float* __restrict__ v, long long n,
                                       float beta1, float beta2, float eps, float decay, float stepSize, float bc2Sqrt, float gradScale) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const float gi = g[i] * gradScale;
    const float mi = beta1 * m[i] + (1.f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - stepSize * mi / (sqrtf(vi) / bc2Sqrt + eps);
  }
}

extern "C" __global__ void llama_sum_squares(double* __restrict__ partial, const float* __restrict__ x, long long n) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const double v = x[i];
    s += v * v;
  }
  s = llama::block_sum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
