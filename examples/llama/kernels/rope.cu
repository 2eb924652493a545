// Rotary position embedding, forward and backward (the GPU twin of layers/rope.ts): the halves
// (x1, x2) of each head vector rotate pairwise by the angle of (position, pair):
//   forward (in place, bf16):      y1 = x1 cos - x2 sin,  y2 = x2 cos + x1 sin
//   backward (float32 -> bf16):    dx1 = dy1 cos + dy2 sin,  dx2 = dy2 cos - dy1 sin
// cos/sin are float32 tables [maxPositions, half] built on the host; positions are the rows'
// global positions. One thread per (row, head, pair).
#include "llama_common.cuh"

extern "C" __global__ void llama_rope_fwd(__nv_bfloat16* __restrict__ x, const int* __restrict__ pos, const float* __restrict__ cosT, const float* __restrict__ sinT,
                                          int rows, int heads, int half) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)rows * heads * half) return;
  const int j = (int)(idx % half);
  const long long th = idx / half;
  const size_t p = (size_t)pos[th / heads] * half + j;
  const float c = cosT[p];
  const float s = sinT[p];
  __nv_bfloat16* v = x + th * 2 * half;
  const float x1 = llama::bf(v[j]);
  const float x2 = llama::bf(v[j + half]);
  v[j] = llama::to_bf(x1 * c - x2 * s);
  v[j + half] = llama::to_bf(x2 * c + x1 * s);
}

extern "C" __global__ void llama_rope_bwd(__nv_bfloat16* __restrict__ dst, const float* __restrict__ src, const int* __restrict__ pos, const float* __restrict__ cosT,
                                          const float* __restrict__ sinT, int rows, int heads, int half) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)rows * heads * half) return;
  const int j = (int)(idx % half);
  const long long th = idx / half;
  const size_t p = (size_t)pos[th / heads] * half + j;
  const float c = cosT[p];
  const float s = sinT[p];
  const float* g = src + th * 2 * half;
  __nv_bfloat16* d = dst + th * 2 * half;
  const float g1 = g[j];
  const float g2 = g[j + half];
  d[j] = llama::to_bf(g1 * c + g2 * s);
  d[j + half] = llama::to_bf(g2 * c - g1 * s);
}
