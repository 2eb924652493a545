// The SwiGLU gate, forward and backward (the GPU twin of layers/swiglu.ts), bf16 in and out,
// float32 arithmetic:
//   forward:  h = silu(a) * b,  silu(a) = a * sigmoid(a)
//   backward: da = dh * b * sigmoid(a) * (1 + a * (1 - sigmoid(a))),  db = dh * silu(a)
// Grid-stride over the elements.
#include "llama_common.cuh"

extern "C" __global__ void llama_swiglu_fwd(__nv_bfloat16* __restrict__ out, const __nv_bfloat16* __restrict__ a, const __nv_bfloat16* __restrict__ b, long long n) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const float x = llama::bf(a[i]);
    out[i] = llama::to_bf(x / (1.f + __expf(-x)) * llama::bf(b[i]));
  }
}

extern "C" __global__ void llama_swiglu_bwd(__nv_bfloat16* __restrict__ da, __nv_bfloat16* __restrict__ db, const __nv_bfloat16* __restrict__ dout,
                                            const __nv_bfloat16* __restrict__ a, const __nv_bfloat16* __restrict__ b, long long n) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const float x = llama::bf(a[i]);
    const float sig = 1.f / (1.f + __expf(-x));
    const float g = llama::bf(dout[i]);
    da[i] = llama::to_bf(g * llama::bf(b[i]) * sig * (1.f + x * (1.f - sig)));
    db[i] = llama::to_bf(g * x * sig);
  }
}
