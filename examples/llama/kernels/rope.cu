// Rotary position embedding, forward and backward (the GPU twin of layers/rope.ts): the halves
// (x1, x2) of each head vector rotate pairwise by the angle of (position, pair):
//   forward (in place, bf16):      y1 = x1 cos - x2 sin,  y2 = x2 cos + x1 sin
//   backward (float32 -> bf16):    dx1 = dy1 cos + dy2 sin,  dx2 = dy2 cos - dy1 sin
// cos/sin are float32 tables [maxPositions, half] built on the host; positions are the rows'
// global positions. One thread per (row, head, pair).
#include "llama_common.cuh"

// The (row·head, pair) this thread rotates and its angle's cos and sin; false past the end.
struct RopePair {
  long long vec;  // row * heads + head: which head vector
  int j;          // which pair (j, j + half)
  float c, s;
};

__device__ __forceinline__ bool rope_pair(const int* __restrict__ pos, const float* __restrict__ cosT, const float* __restrict__ sinT, int rows, int heads, int half, RopePair& r) {
  const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (long long)rows * heads * half) return false;
  r.j = (int)(idx % half);
  r.vec = idx / half;
  const size_t p = (size_t)pos[r.vec / heads] * half + r.j;
  r.c = cosT[p];
  r.s = sinT[p];
  return true;
}

extern "C" __global__ void llama_rope_fwd(__nv_bfloat16* __restrict__ x, const int* __restrict__ pos, const float* __restrict__ cosT, const float* __restrict__ sinT,
                                          int rows, int heads, int half) {
  RopePair r;
  if (!rope_pair(pos, cosT, sinT, rows, heads, half, r)) return;
  __nv_bfloat16* v = x + r.vec * 2 * half;
  const float x1 = llama::bf(v[r.j]);
  const float x2 = llama::bf(v[r.j + half]);
  v[r.j] = llama::to_bf(x1 * r.c - x2 * r.s);
  v[r.j + half] = llama::to_bf(x2 * r.c + x1 * r.s);
}

extern "C" __global__ void llama_rope_bwd(__nv_bfloat16* __restrict__ dst, const float* __restrict__ src, const int* __restrict__ pos, const float* __restrict__ cosT,
                                          const float* __restrict__ sinT, int rows, int heads, int half) {
  RopePair r;
  if (!rope_pair(pos, cosT, sinT, rows, heads, half, r)) return;
  const float* g = src + r.vec * 2 * half;
  __nv_bfloat16* d = dst + r.vec * 2 * half;
  const float g1 = g[r.j];
  const float g2 = g[r.j + half];
  d[r.j] = llama::to_bf(g1 * r.c + g2 * r.s);
  d[r.j + half] = llama::to_bf(g2 * r.c - g1 * r.s);
}
