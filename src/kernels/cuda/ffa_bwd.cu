// Flex-flash-attention backward, first CUDA version (sm_80+ tensor cores: mma.sync m16n8k16;
// on sm_90 the fp32 reductions use the vector red.global.add.v2.f32).
//
// Device code only: compiled at run time by NVRTC (src/kernels/cuda/ffa-backward.ts) and by nvcc
// in the CI check. The device helpers it shares with the forward (element types, cp.async,
// ldmatrix, swizzle, load_tile, Slice, red_add2) and the pieces it shares with ffa_bwd_sm90.cu
// (work-item prologue, P / dS, dK / dV epilogue) are in ffa_common.cuh.
//
// Layout (token-major): q/dq/out/dout [Tq, Hq, D], k/v/dk/dv [Tk, Hkv, D], lse [Tq, Hq] fp32.
// Query head h reads kv head h / G, G = Hq / Hkv.
//
// Math (04 §1.10), per head h, query t, key j, z = scale*s (or c*tanh(scale*s/c)):
//   Δ_t = Σ_d out·dout,  P = exp2(z·log2e − lse·log2e),  dV_j += Σ_t P dO_t,  dP = dO_t·v_j,
//   dS = P (dP − Δ_t) [·(1 − tanh²)],  dQ_t += scale Σ_j dS k_j,  dK_j += scale Σ_t dS q_t.
//
// Kernels:
//   1. ffa_bwd_pre_*  - Δ (fp32, from the 16-bit out and dout) and lseLog2 = lse·log2e, both
//                       stored [Hq, Tq]; lse = -inf (row with no key) becomes lseLog2 = +inf so
//                       that P = exp2(finite − inf) = 0 for every key (no NaN: the mask zeroes P
//                       itself instead of setting S to -inf). It also zeroes the fp32 dq.
//   2. ffa_bwd_*      - main kernel, FA-2 "LoopQ" with the CatGQA head loop. Block = NWARPS warps,
//                       one work item (slice, k tile of BN = 16·NWARPS keys, q rows [qLo, qHi)
//                       that see keys of the tile) × one kv head. Warp w owns keys 16w..16w+15:
//                       it computes Sᵀ = K_w·Qᵀ and dPᵀ = V_w·dOᵀ (keys on the mma M dim), so
//                       its dK/dV rows stay in registers over the inner loop, which runs over the
//                       G query heads of the group × the q tiles (BM = 64 rows) of [qLo, qHi).
//                       Q/dO/lseLog2/Δ tiles are double-buffered with cp.async. dSᵀ goes to
//                       shared memory (16-bit) and every warp then computes 16 q rows × D/NCG
//                       columns of dQ = dS·K, reduced into the fp32 dq buffer with atomics.
//                       After the loop dK (×scale) and dV are reduced into fp32 dk/dv with atomics
//                       (several slices may share k rows).
//   3. ffa_bwd_convert_* - fp32 dq/dk/dv -> input dtype.
//   4. ffa_bwd_dsink  - dsink[s, h] = −Σ_t exp(sink[s, h] − lse_t)·Δ_t (04 §1.8; the sink changes
//                       nothing else: out and lse given to the backward already include it).
// The fp32 dq/dk/dv buffers start at zero (dq zeroed by the pre-pass, dk/dv by the host), so keys
// no slice covers get dk = dv = 0 (with caller accumulators the host passes them instead,
// unzeroed, and skips their conversion).
// Deterministic mode is host-side: the work list is split and grouped so that no two items of
// one launch add into the same dq or dk/dv element (ffa-backward.ts).

#include "ffa_common.cuh"

namespace ffa_bwd {

using namespace ffa;

// --------------------------------------------------------------------------------------------
// 1. Pre-pass: each warp takes kPreRows consecutive (token, head) rows, each lane D / 32
// consecutive elements of a row of out and of dout in one vector load each (the rows are 128 or
// 256 bytes, 16-byte aligned as every kernel of this module needs), all rows' loads issued before
// any is used, to keep more bytes in flight. Measured on an H200 (16k, 64 heads, D 128), the pass
// without the zeroing still reads at ~2.7 TB/s, 0.20 ms, as the scalar one-row-per-warp form did:
// the form did not change its speed (bench/kernel/README.md, "Backward: the passes around the
// main kernel"). With dqZero (the host's fp32 dq accumulator; null for a caller's), the lane also
// zeroes its D / 32 floats of each row there, so that no separate pass over the largest buffer of
// the backward is needed. The host's FFA_BWD_PRE_ROWS_PER_BLOCK is kPreRows x 8 warps.
constexpr int kPreRows = 4;
// one load of N 16-bit elements
template <int N>
struct PreVec;
template <>
struct PreVec<4> {
  using T = uint2;
};
template <>
struct PreVec<2> {
  using T = unsigned;
};
template <typename E, int D>
__device__ __forceinline__ void pre_kernel(const typename E::T* __restrict__ out, const typename E::T* __restrict__ dout,
                                           const float* __restrict__ lse, float* __restrict__ lseLog2,
                                           float* __restrict__ delta, float* __restrict__ dqZero, int tokensQ, int headsQ) {
  static_assert(D == 64 || D == 128, "one 4- or 8-byte vector of 16-bit elements per lane");
  constexpr int kPer = D / 32;
  using T = typename E::T;
  using V = typename PreVec<kPer>::T;
  const int lane = threadIdx.x & 31;
  const long long rows = (long long)tokensQ * headsQ;
  const long long row0 = ((long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * kPreRows;
  V o[kPreRows], d[kPreRows];
#pragma unroll
  for (int r = 0; r < kPreRows; ++r) {
    const long long e0 = (row0 + r) * D + lane * kPer;
    if (row0 + r < rows) {
      o[r] = *reinterpret_cast<const V*>(out + e0);
      d[r] = *reinterpret_cast<const V*>(dout + e0);
    }
  }
#pragma unroll
  for (int r = 0; r < kPreRows; ++r) {
    const long long row = row0 + r;
    if (row >= rows) break;
    if (dqZero != nullptr) {
      float* z = dqZero + row * D + lane * kPer;
      if constexpr (kPer == 4) {
        *reinterpret_cast<float4*>(z) = make_float4(0.f, 0.f, 0.f, 0.f);
      } else {
        *reinterpret_cast<float2*>(z) = make_float2(0.f, 0.f);
      }
    }
    const T* oe = reinterpret_cast<const T*>(&o[r]);
    const T* de = reinterpret_cast<const T*>(&d[r]);
    float acc = 0.f;
#pragma unroll
    for (int i = 0; i < kPer; ++i) acc = fmaf(E::to_float(oe[i]), E::to_float(de[i]), acc);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) {
      const float l = lse[row];
      const long long idx = (long long)(row % headsQ) * tokensQ + row / headsQ;
      delta[idx] = acc;
      // 1.4426950408889634 = log2(e)
      lseLog2[idx] = l == FFA_NEG_INF ? FFA_POS_INF : l * 1.4426950408889634f;
    }
  }
}

// --------------------------------------------------------------------------------------------
// 2. Main kernel.
template <typename E, int D, int NWARPS, bool SOFTCAP>
__device__ __forceinline__ void bwd_kernel(const typename E::T* __restrict__ q, const typename E::T* __restrict__ k,
                                           const typename E::T* __restrict__ v, const typename E::T* __restrict__ dout,
                                           const float* __restrict__ lseLog2, const float* __restrict__ delta,
                                           float* __restrict__ dq, float* __restrict__ dk, float* __restrict__ dv,
                                           const int* __restrict__ qRanges, const int* __restrict__ kRanges,
                                           const int* __restrict__ types, const int* __restrict__ work, int headsQ,
                                           int headsKv, int tokensQ, float scaleLog2, float softmaxScale,
                                           float softcapScale) {
  using T = typename E::T;
  constexpr int BM = 64;            // q rows per inner step
  constexpr int BN = 16 * NWARPS;   // keys per block
  constexpr int NT = 32 * NWARPS;
  constexpr int RG = BM / 16;       // q row groups of the dQ step
  constexpr int NCG = NWARPS / RG;  // column groups of the dQ step
  constexpr int DQC = D / NCG;      // dQ columns per warp
  constexpr int DC = DQC < 64 ? DQC : 64;  // dQ columns per register chunk
  static_assert(NWARPS % RG == 0, "NWARPS must be a multiple of BM / 16");

  extern __shared__ __align__(128) unsigned char smemRaw[];
  T* sK = reinterpret_cast<T*>(smemRaw);
  T* sV = sK + BN * D;
  T* sQ = sV + BN * D;        // 2 stages
  T* sdO = sQ + 2 * BM * D;   // 2 stages
  T* sdSt = sdO + 2 * BM * D; // [BN keys][BM q]
  float* sL = reinterpret_cast<float*>(sdSt + BN * BM);  // 2 stages of BM
  float* sD = sL + 2 * BM;                               // 2 stages of BM

  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int g = lane >> 2;
  const int t = lane & 3;

  // work item -> (slice, k tile [n0, n1), q rows [qLo, qHi), kv head): shared with ffa_bwd_sm90.cu
  const BwdItem w = bwd_item<BM, BN>(work, qRanges, kRanges, types, headsQ, headsKv, 0);
  const Slice sl = w.sl;
  const int hk = w.hk, n0 = w.n0, n1 = w.n1, qLo = w.qLo, qHi = w.qHi, G = w.G, nQt = w.nQt, nSteps = w.nSteps;

  const long long ldq = (long long)headsQ * D;
  const long long ldk = (long long)headsKv * D;

  load_tile<BN, D, NT>(sK, k + (long long)n0 * ldk + (long long)hk * D, ldk, n1 - n0, tid);
  load_tile<BN, D, NT>(sV, v + (long long)n0 * ldk + (long long)hk * D, ldk, n1 - n0, tid);

  auto loadStep = [&](int s, int stage) {
    const int h = hk * G + s / nQt;
    const int m0 = qLo + (s % nQt) * BM;
    const int nValid = min(BM, qHi - m0);
    load_tile<BM, D, NT>(sQ + stage * BM * D, q + (long long)m0 * ldq + (long long)h * D, ldq, nValid, tid);
    load_tile<BM, D, NT>(sdO + stage * BM * D, dout + (long long)m0 * ldq + (long long)h * D, ldq, nValid, tid);
    for (int i = tid; i < 2 * BM; i += NT) {
      const int which = i / BM;
      const int r = i % BM;
      const bool valid = r < nValid;
      const float* src = (which ? delta : lseLog2) + (long long)h * tokensQ + m0 + (valid ? r : 0);
      cp_async_4(smem_u32((which ? sD : sL) + stage * BM + r), src, valid);
    }
  };

  float dKacc[D / 8][4];
  float dVacc[D / 8][4];
  zero_frags<D / 8>(dKacc);
  zero_frags<D / 8>(dVacc);

  loadStep(0, 0);
  cp_async_commit();

  for (int s = 0; s < nSteps; ++s) {
    const int stage = s & 1;
    if (s + 1 < nSteps) {
      loadStep(s + 1, stage ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    const int h = hk * G + s / nQt;
    const int m0 = qLo + (s % nQt) * BM;
    const int m1 = min(m0 + BM, qHi);
    const T* cQ = sQ + stage * BM * D;
    const T* cdO = sdO + stage * BM * D;
    const float* cL = sL + stage * BM;
    const float* cD = sD + stage * BM;

    // Sᵀ = K_w Qᵀ and dPᵀ = V_w dOᵀ: 16 keys x BM q rows per warp
    float st[BM / 8][4];
    float dp[BM / 8][4];
    zero_frags<BM / 8>(st);
    zero_frags<BM / 8>(dp);
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      unsigned ak[4], av[4];
      const int arow = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
      const int acol = ks * 16 + (lane >> 4) * 8;
      ldmatrix_x4(ak, smem_u32(sK + swz<D>(arow, acol)));
      ldmatrix_x4(av, smem_u32(sV + swz<D>(arow, acol)));
#pragma unroll
      for (int np = 0; np < BM / 16; ++np) {
        unsigned b[4];
        const int row = np * 16 + (lane & 7) + (lane >> 4) * 8;
        const int col = ks * 16 + ((lane >> 3) & 1) * 8;
        ldmatrix_x4(b, smem_u32(cQ + swz<D>(row, col)));
        E::mma(st[2 * np], ak, b[0], b[1]);
        E::mma(st[2 * np + 1], ak, b[2], b[3]);
        ldmatrix_x4(b, smem_u32(cdO + swz<D>(row, col)));
        E::mma(dp[2 * np], av, b[0], b[1]);
        E::mma(dp[2 * np + 1], av, b[2], b[3]);
      }
    }

    // P and dS (elementwise, shared with ffa_bwd_sm90.cu). Row (key) = n0 + 16w + g + 8(e>>1),
    // column (q) = m0 + 8j + 2t + (e&1). (The key base is passed as an expression, not a
    // variable live across the loop: that keeps ptxas's d128 spills at their old 44 bytes.)
    const bool full = (m1 - m0 == BM) && n0 >= sl.rowStart(m1 - 1) && n0 + BN <= sl.rowEnd(m0);
    bwd_p<BM / 8, SOFTCAP>(st, dp, cL, cD, full, sl, n0 + warp * 16 + g, m0, m1, t, scaleLog2, softcapScale);

    // dV += Pᵀ dO, dK += dSᵀ Q (16-bit P / dS from registers, k dim = q rows)
#pragma unroll
    for (int kk = 0; kk < BM / 16; ++kk) {
      unsigned ap[4], as[4];
      pack_a<E>(ap, st, kk);
      pack_a<E>(as, dp, kk);
      // dSᵀ to shared memory for the dQ step: row = key, col = q
      {
        const int r0 = warp * 16 + g;
        *reinterpret_cast<unsigned*>(sdSt + swz<BM>(r0, 16 * kk) + 2 * t) = as[0];
        *reinterpret_cast<unsigned*>(sdSt + swz<BM>(r0 + 8, 16 * kk) + 2 * t) = as[1];
        *reinterpret_cast<unsigned*>(sdSt + swz<BM>(r0, 16 * kk + 8) + 2 * t) = as[2];
        *reinterpret_cast<unsigned*>(sdSt + swz<BM>(r0 + 8, 16 * kk + 8) + 2 * t) = as[3];
      }
#pragma unroll
      for (int dd = 0; dd < D / 16; ++dd) {
        unsigned b[4];
        const int row = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        const int col = dd * 16 + (lane >> 4) * 8;
        ldmatrix_x4_trans(b, smem_u32(cdO + swz<D>(row, col)));
        E::mma(dVacc[2 * dd], ap, b[0], b[1]);
        E::mma(dVacc[2 * dd + 1], ap, b[2], b[3]);
        ldmatrix_x4_trans(b, smem_u32(cQ + swz<D>(row, col)));
        E::mma(dKacc[2 * dd], as, b[0], b[1]);
        E::mma(dKacc[2 * dd + 1], as, b[2], b[3]);
      }
    }
    __syncthreads();  // dSᵀ complete

    // dQ[BM, D] += dS[BM, BN] K[BN, D]: warp -> 16 q rows (rg) x DQC columns (cg)
    {
      const int rg = warp % RG;
      const int cg = warp / RG;
#pragma unroll
      for (int cc = cg * DQC; cc < (cg + 1) * DQC; cc += DC) {
        float acc[DC / 8][4];
#pragma unroll
        for (int j = 0; j < DC / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) {
          unsigned a[4];
          const int mat = lane >> 3;
          const int krow = kk * 16 + (mat >> 1) * 8 + (lane & 7);
          const int mcol = rg * 16 + (mat & 1) * 8;
          ldmatrix_x4_trans(a, smem_u32(sdSt + swz<BM>(krow, mcol)));
#pragma unroll
          for (int dd = 0; dd < DC / 16; ++dd) {
            unsigned b[4];
            const int row = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
            const int col = cc + dd * 16 + (lane >> 4) * 8;
            ldmatrix_x4_trans(b, smem_u32(sK + swz<D>(row, col)));
            E::mma(acc[2 * dd], a, b[0], b[1]);
            E::mma(acc[2 * dd + 1], a, b[2], b[3]);
          }
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int row = m0 + rg * 16 + g + 8 * r;
          if (row < m1) {
            float* dst = dq + (long long)row * ldq + (long long)h * D + cc + 2 * t;
#pragma unroll
            for (int j = 0; j < DC / 8; ++j)
              red_add2(dst + 8 * j, acc[j][2 * r] * softmaxScale, acc[j][2 * r + 1] * softmaxScale);
          }
        }
      }
    }
    // the next step's first __syncthreads orders these sdSt / sQ / sdO reads before any rewrite
  }
  cp_async_wait<0>();

  // epilogue: dK (x scale) and dV into the fp32 buffers (shared with ffa_bwd_sm90.cu)
  add_dkdv<D>(dKacc, dVacc, dk, dv, n0 + warp * 16 + g, n1, ldk, hk, t, softmaxScale);
}

// 3. fp32 -> input type.
template <typename E>
__device__ __forceinline__ void convert(const float* __restrict__ src, typename E::T* __restrict__ dst, long long n) {
  // four elements per thread and step (one 16-byte load, one 8-byte store: src is the host's
  // accumulator, dst whole rows of D 16-bit elements), then the n % 4 left one by one
  const long long n4 = n >> 2;
  const long long stride = (long long)gridDim.x * blockDim.x;
  const long long i0 = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  for (long long i = i0; i < n4; i += stride) {
    const float4 x = reinterpret_cast<const float4*>(src)[i];
    reinterpret_cast<uint2*>(dst)[i] = make_uint2(E::pack(x.x, x.y), E::pack(x.z, x.w));
  }
  for (long long i = 4 * n4 + i0; i < n; i += stride) dst[i] = E::from_float(src[i]);
}

// 4. dsink, one block per head: a fixed-order reduction (per-thread strided sums in double, then
// a shared-memory tree), so the result is bit-reproducible without atomics. Rows with lse = -inf
// (nothing seen, sink of -inf) contribute 0.
template <int NT>
__device__ __forceinline__ void dsink_kernel(const float* __restrict__ sink, int sinkCount, const float* __restrict__ lse,
                                             const float* __restrict__ delta, float* __restrict__ dsink, int tokensQ,
                                             int headsQ) {
  __shared__ double red[NT];
  const int h = blockIdx.x;
  const int tid = threadIdx.x;
  for (int s = 0; s < sinkCount; ++s) {
    const float sv = sink[(long long)s * headsQ + h];
    double acc = 0.0;
    for (int t = tid; t < tokensQ; t += NT) {
      const float l = lse[(long long)t * headsQ + h];
      if (l == FFA_NEG_INF) continue;
      acc += (double)expf(sv - l) * (double)delta[(long long)h * tokensQ + t];
    }
    red[tid] = acc;
    __syncthreads();
#pragma unroll
    for (int w = NT / 2; w > 0; w >>= 1) {
      if (tid < w) red[tid] += red[tid + w];
      __syncthreads();
    }
    if (tid == 0) dsink[(long long)s * headsQ + h] = (float)(-red[0]);
    __syncthreads();  // red[] is rewritten for the next sink
  }
}

}  // namespace ffa_bwd

// --------------------------------------------------------------------------------------------
// Entry points.
//   ffa_bwd_{bf16,fp16}_d{64,128}[_softcap]: block 32 * FFA_BWD_NWARPS threads, grid
//     numWorkItems * headsKv, dynamic smem (2 * BN * D + 4 * 64 * D + BN * 64) * 2 + 4 * 64 * 4
//     bytes with BN = 16 * FFA_BWD_NWARPS.
//   ffa_bwd_pre_{bf16,fp16}_d{64,128}: block 256 (8 warps of kPreRows rows), grid ceil(Tq * Hq / (8 kPreRows)).
//   ffa_bwd_convert_{bf16,fp16}: grid-stride.

#ifndef FFA_BWD_NWARPS
#define FFA_BWD_NWARPS 8
#endif

#define FFA_BWD_ENTRY(NAME, E, D, SOFTCAP)                                                                              \
  extern "C" __global__ void __launch_bounds__(32 * FFA_BWD_NWARPS, 1)                                                  \
      NAME(const E::T* __restrict__ q, const E::T* __restrict__ k, const E::T* __restrict__ v,                          \
           const E::T* __restrict__ dout, const float* __restrict__ lseLog2, const float* __restrict__ delta,           \
           float* __restrict__ dq, float* __restrict__ dk, float* __restrict__ dv, const int* __restrict__ qRanges,     \
           const int* __restrict__ kRanges, const int* __restrict__ types, const int* __restrict__ work, int headsQ,    \
           int headsKv, int tokensQ, float scaleLog2, float softmaxScale, float softcapScale) {                         \
    ffa_bwd::bwd_kernel<E, D, FFA_BWD_NWARPS, SOFTCAP>(q, k, v, dout, lseLog2, delta, dq, dk, dv, qRanges, kRanges,   \
                                                       types, work, headsQ, headsKv, tokensQ, scaleLog2, softmaxScale, \
                                                       softcapScale);                                                  \
  }

FFA_BWD_ENTRY(ffa_bwd_bf16_d128, ffa_bwd::Bf16, 128, false)
FFA_BWD_ENTRY(ffa_bwd_bf16_d128_softcap, ffa_bwd::Bf16, 128, true)
FFA_BWD_ENTRY(ffa_bwd_fp16_d128, ffa_bwd::Fp16, 128, false)
FFA_BWD_ENTRY(ffa_bwd_fp16_d128_softcap, ffa_bwd::Fp16, 128, true)
FFA_BWD_ENTRY(ffa_bwd_bf16_d64, ffa_bwd::Bf16, 64, false)
FFA_BWD_ENTRY(ffa_bwd_bf16_d64_softcap, ffa_bwd::Bf16, 64, true)
FFA_BWD_ENTRY(ffa_bwd_fp16_d64, ffa_bwd::Fp16, 64, false)
FFA_BWD_ENTRY(ffa_bwd_fp16_d64_softcap, ffa_bwd::Fp16, 64, true)

#define FFA_BWD_PRE_ENTRY(NAME, E, D)                                                                           \
  extern "C" __global__ void NAME(const E::T* __restrict__ out, const E::T* __restrict__ dout,                   \
                                  const float* __restrict__ lse, float* __restrict__ lseLog2,                    \
                                  float* __restrict__ delta, float* __restrict__ dqZero, int tokensQ,            \
                                  int headsQ) {                                                                  \
    ffa_bwd::pre_kernel<E, D>(out, dout, lse, lseLog2, delta, dqZero, tokensQ, headsQ);                          \
  }

FFA_BWD_PRE_ENTRY(ffa_bwd_pre_bf16_d128, ffa_bwd::Bf16, 128)
FFA_BWD_PRE_ENTRY(ffa_bwd_pre_fp16_d128, ffa_bwd::Fp16, 128)
FFA_BWD_PRE_ENTRY(ffa_bwd_pre_bf16_d64, ffa_bwd::Bf16, 64)
FFA_BWD_PRE_ENTRY(ffa_bwd_pre_fp16_d64, ffa_bwd::Fp16, 64)

extern "C" __global__ void ffa_bwd_convert_bf16(const float* src, __nv_bfloat16* dst, long long n) {
  ffa_bwd::convert<ffa_bwd::Bf16>(src, dst, n);
}
extern "C" __global__ void ffa_bwd_convert_fp16(const float* src, __half* dst, long long n) {
  ffa_bwd::convert<ffa_bwd::Fp16>(src, dst, n);
}

// ffa_bwd_dsink: block 256, grid Hq. lse [Tq, Hq] (the final one), delta [Hq, Tq] from the
// pre-pass, sink and dsink float32 [sinkCount, Hq] (dsink overwritten, not accumulated).
extern "C" __global__ void __launch_bounds__(256) ffa_bwd_dsink(const float* sink, int sinkCount, const float* lse,
                                                                const float* delta, float* dsink, int tokensQ, int headsQ) {
  ffa_bwd::dsink_kernel<256>(sink, sinkCount, lse, delta, dsink, tokensQ, headsQ);
}
