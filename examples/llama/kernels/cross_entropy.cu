// Cross-entropy with its gradient, fused (the GPU twin of layers/cross-entropy.ts). One block per
// row of float32 logits [T, V]:
//   loss_t = logsumexp(z) - z_y,   dlogits = bf16((softmax(z) - onehot(y)) * scale)
// Rows whose target is -1 give loss 0 and a zero gradient. scale = 1 / (valid targets of the batch).
#include "llama_common.cuh"

extern "C" __global__ void llama_cross_entropy(__nv_bfloat16* __restrict__ dlogits, float* __restrict__ rowLoss, const float* __restrict__ logits,
                                               const int* __restrict__ targets, int vocab, float scale) {
  __shared__ float scratch[32];
  const size_t row = (size_t)blockIdx.x * vocab;
  const int y = targets[blockIdx.x];
  if (y < 0) {  // the whole block takes this branch
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) dlogits[row + i] = llama::to_bf(0.f);
    if (threadIdx.x == 0) rowLoss[blockIdx.x] = 0.f;
    return;
  }
  float m = LLAMA_NEG_INF;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) m = fmaxf(m, logits[row + i]);
  m = llama::block_max(m, scratch);
  float s = 0.f;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) s += expf(logits[row + i] - m);
  s = llama::block_sum(s, scratch);
  const float lse = m + logf(s);
  if (threadIdx.x == 0) rowLoss[blockIdx.x] = lse - logits[row + y];
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float p = expf(logits[row + i] - lse);
    dlogits[row + i] = llama::to_bf((p - (i == y ? 1.f : 0.f)) * scale);
  }
}
