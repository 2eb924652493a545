// Flex-flash-attention forward for Hopper (sm_90a): TMA loads, wgmma, warp specialisation.
//
// Device code only, compiled at run time by NVRTC (ffa-forward-sm90.ts) and by nvcc in the CI
// check. Same contract, work list and epilogues as ffa_fwd.cu (read that file's header first);
// only the main loop's machinery differs:
//
//   block       = 3 warpgroups (384 threads). Warpgroup 0 is the producer: it gives most of its
//                 registers away (setmaxnreg) and one thread issues every TMA load. Warpgroups
//                 1 and 2 are consumers, 64 q rows each (BM = 128), with 240 registers a thread.
//   pipeline    = Q once; K and V tiles (BN = 128 keys) through 2 stages each. A full barrier
//                 per stage completes when its TMA bytes land; an empty barrier per stage
//                 completes when all 256 consumer threads have finished reading it. K and V have
//                 separate barriers, so S = Q K^T starts before V has arrived.
//   main loop   = S = Q K^T with wgmma (both operands in shared memory, K-major), mask and
//                 online softmax in registers as in ffa_fwd.cu, then O += P V with P straight
//                 from registers (the S accumulator layout is the A-fragment layout) and V
//                 read N-major from shared memory. fp32 accumulation throughout.
//   overlap     = the two consumer warpgroups run out of step, so one's softmax hides under the
//                 other's tensor-core work.
//
// TMA maps (built on the host, cuTensorMapEncodeTiled): 3-d views (column, head, token) of q, k
// and v with a box of (64, 1, rows) and the 128-byte swizzle. Rows past the tensor's end come in
// as zeros; rows of neighbouring slices come in as real data and are masked like any key outside
// a row's interval, or never stored (q rows past the tile's end).

#include "ffa_common.cuh"
#include "ffa_sm90.cuh"

namespace ffa {
namespace sm90 {

constexpr int kBM = 128;
constexpr int kBN = 128;
constexpr int kThreads = 384;

template <int D>
struct Smem {
  static constexpr int kQBytes = kBM * D * 2;
  static constexpr int kTileBytes = kBN * D * 2;  // one stage of K or of V
  static constexpr int kQ = 0;
  static constexpr int kK = kQBytes;                   // 2 stages
  static constexpr int kV = kQBytes + 2 * kTileBytes;  // 2 stages
  static constexpr int kBar = kQBytes + 4 * kTileBytes;
  // barriers: q, fullK[2], fullV[2], emptyK[2], emptyV[2]
  static constexpr int kBytes = kBar + 9 * 8;
  // dynamic shared memory requested: the layout plus slack to align its base to 1024
  static constexpr int kRequest = kBytes + 1024;
};

// Sets S entries outside each row's interval to -inf (the same rule as ffa_fwd.cu's apply_mask).
__device__ __forceinline__ void mask_tile(float (*s)[4], int keyBase, int t, const int* rs, const int* re) {
#pragma unroll
  for (int j = 0; j < kBN / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = keyBase + j * 8 + 2 * t + (e & 1);
      const int r = e >> 1;
      if (key < rs[r] || key >= re[r]) s[j][e] = FFA_NEG_INF;
    }
  }
}

template <typename E, int D>
__device__ __forceinline__ void wgmma_qk(float (*s)[4], unsigned long long descA, unsigned long long descB, int scaleD);
template <typename E, int D>
__device__ __forceinline__ void wgmma_pv(float (*o)[4], const unsigned* a, unsigned long long descB);

template <>
__device__ __forceinline__ void wgmma_qk<Bf16, 64>(float (*s)[4], unsigned long long a, unsigned long long b, int sc) {
  wgmma_ss_n128_bf16(s, a, b, sc);
}
template <>
__device__ __forceinline__ void wgmma_qk<Bf16, 128>(float (*s)[4], unsigned long long a, unsigned long long b, int sc) {
  wgmma_ss_n128_bf16(s, a, b, sc);
}
template <>
__device__ __forceinline__ void wgmma_qk<Fp16, 64>(float (*s)[4], unsigned long long a, unsigned long long b, int sc) {
  wgmma_ss_n128_f16(s, a, b, sc);
}
template <>
__device__ __forceinline__ void wgmma_qk<Fp16, 128>(float (*s)[4], unsigned long long a, unsigned long long b, int sc) {
  wgmma_ss_n128_f16(s, a, b, sc);
}
template <>
__device__ __forceinline__ void wgmma_pv<Bf16, 64>(float (*o)[4], const unsigned* a, unsigned long long b) {
  wgmma_rs_n64_bf16(o, a, b);
}
template <>
__device__ __forceinline__ void wgmma_pv<Bf16, 128>(float (*o)[4], const unsigned* a, unsigned long long b) {
  wgmma_rs_n128_bf16(o, a, b);
}
template <>
__device__ __forceinline__ void wgmma_pv<Fp16, 64>(float (*o)[4], const unsigned* a, unsigned long long b) {
  wgmma_rs_n64_f16(o, a, b);
}
template <>
__device__ __forceinline__ void wgmma_pv<Fp16, 128>(float (*o)[4], const unsigned* a, unsigned long long b) {
  wgmma_rs_n128_f16(o, a, b);
}

template <typename E, int D, bool kMerge>
__device__ __forceinline__ void fwd_kernel(const TmaMap* tmQ, const TmaMap* tmK, const TmaMap* tmV, void* __restrict__ outPtr,
                                           float* __restrict__ lse, const int* __restrict__ qRanges,
                                           const int* __restrict__ kRanges, const int* __restrict__ types,
                                           const int* __restrict__ work, int* __restrict__ locks, int headsQ, int headsKv,
                                           float scaleLog2, float unit, float softcapScale, float* __restrict__ maxLogits) {
  using T = typename E::T;
  using L = Smem<D>;
  constexpr int HALVES = D / 64;
  extern __shared__ unsigned char smemRaw[];
  const unsigned base = (smem_u32(smemRaw) + 1023u) & ~1023u;
  const unsigned sQ = base + L::kQ;
  const unsigned sK = base + L::kK;
  const unsigned sV = base + L::kV;
  const unsigned barQ = base + L::kBar;
  const unsigned fullK = barQ + 8;    // + 8 * stage
  const unsigned fullV = barQ + 24;   // + 8 * stage
  const unsigned emptyK = barQ + 40;  // + 8 * stage
  const unsigned emptyV = barQ + 56;  // + 8 * stage

  const int tid = threadIdx.x;

  // ---- work item -> (slice, q tile, head): identical to ffa_fwd.cu
  const int h = blockIdx.x % headsQ;
  const int item = blockIdx.x / headsQ;
  const int sliceIdx = work[2 * item];
  const int m0 = work[2 * item + 1];
  Slice sl;
  sl.qs = qRanges[2 * sliceIdx];
  sl.qe = qRanges[2 * sliceIdx + 1];
  sl.ks = kRanges[2 * sliceIdx];
  sl.ke = kRanges[2 * sliceIdx + 1];
  sl.type = types[sliceIdx];
  const int m1 = min(m0 + kBM, sl.qe);
  const int hk = h / (headsQ / headsKv);
  const int kLo = sl.rowStart(m0);
  const int kHi = sl.rowEnd(m1 - 1);
  const int nTiles = kHi > kLo ? (kHi - kLo + kBN - 1) / kBN : 0;

  if (tid == 0) {
    mbar_init(barQ, 1);
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      mbar_init(fullK + 8 * s, 1);
      mbar_init(fullV + 8 * s, 1);
      mbar_init(emptyK + 8 * s, 256);
      mbar_init(emptyV + 8 * s, 256);
    }
    mbar_fence_init();
  }
  __syncthreads();

  // ---------------------------------------------------------------------------------------------
  // Producer warpgroup: one thread streams Q, then K/V tiles, each into the stage its consumers
  // last released.
  if (tid < 128) {
    regs_dec<24>();
    if (tid == 0) {
      tma_prefetch_map(tmQ);
      tma_prefetch_map(tmK);
      tma_prefetch_map(tmV);
      mbar_arrive_expect_tx(barQ, L::kQBytes);
#pragma unroll
      for (int hf = 0; hf < HALVES; ++hf) tma_load_3d(sQ + hf * kBM * 128, tmQ, barQ, hf * 64, h, m0);
      for (int it = 0; it < nTiles; ++it) {
        const int stage = it & 1;
        const int n0 = kLo + it * kBN;
        if (it >= 2) mbar_wait(emptyK + 8 * stage, ((it >> 1) - 1) & 1);
        mbar_arrive_expect_tx(fullK + 8 * stage, L::kTileBytes);
#pragma unroll
        for (int hf = 0; hf < HALVES; ++hf)
          tma_load_3d(sK + stage * L::kTileBytes + hf * kBN * 128, tmK, fullK + 8 * stage, hf * 64, hk, n0);
        if (it >= 2) mbar_wait(emptyV + 8 * stage, ((it >> 1) - 1) & 1);
        mbar_arrive_expect_tx(fullV + 8 * stage, L::kTileBytes);
#pragma unroll
        for (int hf = 0; hf < HALVES; ++hf)
          tma_load_3d(sV + stage * L::kTileBytes + hf * kBN * 128, tmV, fullV + 8 * stage, hf * 64, hk, n0);
      }
    }
    return;
  }

  // ---------------------------------------------------------------------------------------------
  // Consumer warpgroups.
  regs_inc<240>();
  const int ct = tid - 128;
  const int wg = ct >> 7;             // 0 or 1: q rows [64 wg, 64 wg + 64) of the tile
  const int warp = (ct >> 5) & 3;     // warp within the warpgroup: 16 rows each
  const int lane = tid & 31;
  const int g = lane >> 2;
  const int t = lane & 3;
  const int rowBase = m0 + wg * 64 + warp * 16 + g;  // this thread's rows: rowBase, rowBase + 8

  const int allStart = sl.rowStart(m1 - 1);
  const int allEnd = sl.rowEnd(m0);
  int rs[2], re[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    rs[r] = sl.rowStart(rowBase + 8 * r);
    re[r] = sl.rowEnd(rowBase + 8 * r);
  }

  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float rowMax[2] = {FFA_NEG_INF, FFA_NEG_INF};
  float rowSum[2] = {0.f, 0.f};

  const unsigned qRows = sQ + wg * 64 * 128;  // this warpgroup's 64 rows of each Q half
  mbar_wait(barQ, 0);

  for (int it = 0; it < nTiles; ++it) {
    const int stage = it & 1;
    const unsigned parity = (it >> 1) & 1;
    const int n0 = kLo + it * kBN;
    const unsigned kTile = sK + stage * L::kTileBytes;
    const unsigned vTile = sV + stage * L::kTileBytes;

    // S = Q K^T: D / 16 k-steps of 16 columns; 4 steps per 64-column half (32 bytes apart
    // inside the swizzled 128-byte rows).
    float s[kBN / 8][4];
    mbar_wait(fullK + 8 * stage, parity);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      const unsigned off = (ks & 3) * 32;
      const unsigned long long da = wgmma_desc(qRows + (ks >> 2) * kBM * 128 + off, 16, 1024);
      const unsigned long long db = wgmma_desc(kTile + (ks >> 2) * kBN * 128 + off, 16, 1024);
      wgmma_qk<E, D>(s, da, db, ks > 0 ? 1 : 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs<kBN / 8>(s);
    mbar_arrive(emptyK + 8 * stage);

    if (softcapScale > 0.f) {
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[j][e] = tanhf(s[j][e] * softcapScale);
    }
    if (n0 < allStart || n0 + kBN > allEnd) mask_tile(s, n0, t, rs, re);

    // online softmax, exactly as ffa_fwd.cu
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = rowMax[r];
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mUse = mx == FFA_NEG_INF ? 0.f : mx;
      const float alpha = fast_exp2((rowMax[r] - mUse) * scaleLog2);
      rowMax[r] = mx;
      const float mScaled = mUse * scaleLog2;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j) {
        const float p0 = fast_exp2(fmaf(s[j][2 * r], scaleLog2, -mScaled));
        const float p1 = fast_exp2(fmaf(s[j][2 * r + 1], scaleLog2, -mScaled));
        s[j][2 * r] = p0;
        s[j][2 * r + 1] = p1;
        sum += p0 + p1;
      }
      rowSum[r] = rowSum[r] * alpha + sum;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        o[j][2 * r] *= alpha;
        o[j][2 * r + 1] *= alpha;
      }
    }

    unsigned p[kBN / 16][4];
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      p[kk][0] = E::pack(s[2 * kk][0], s[2 * kk][1]);
      p[kk][1] = E::pack(s[2 * kk][2], s[2 * kk][3]);
      p[kk][2] = E::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      p[kk][3] = E::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }

    // O += P V: BN / 16 k-steps of 16 keys (2048 bytes of V rows each).
    mbar_wait(fullV + 8 * stage, parity);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      const unsigned long long db = wgmma_desc(vTile + kk * 16 * 128, kBN * 128, 1024);
      wgmma_pv<E, D>(o, p[kk], db);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs<D / 8>(o);
    mbar_arrive(emptyV + 8 * stage);
  }

  // max_logits hook (ffa_fwd.cu's): rows past the tile's end saw other slices' q rows
  if (maxLogits != nullptr) warp_max_logits(rowMax[0], rowMax[1], rowBase < m1, rowBase + 8 < m1, unit, h, maxLogits);

  // ---- finalize: row sums across the quad, 1/sum, lse (natural log)
  float rowLse[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = rowSum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const bool empty = !(sum > 0.f);
    const float inv = empty ? 0.f : 1.f / sum;
    rowLse[r] = empty ? FFA_NEG_INF : rowMax[r] * unit + logf(sum);
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      o[j][2 * r] *= inv;
      o[j][2 * r + 1] *= inv;
    }
  }

  const long long ldq = (long long)headsQ * D;
  if (!kMerge) {
    T* out = reinterpret_cast<T*>(outPtr);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = rowBase + 8 * r;
      if (row < m1) {
        T* dst = out + (long long)row * ldq + (long long)h * D + 2 * t;
#pragma unroll
        for (int j = 0; j < D / 8; ++j) *reinterpret_cast<unsigned*>(dst + 8 * j) = E::pack(o[j][2 * r], o[j][2 * r + 1]);
        if (t == 0) lse[(long long)row * headsQ + h] = rowLse[r];
      }
    }
    return;
  }

  // merge: each consumer warpgroup locks the aligned 64-row blocks its rows touch (lower index
  // first), LSE-merges into the fp32 out and lse, unlocks. Lock array: [ceil(Tq / 64) + 1, Hq].
  const int w0 = m0 + wg * 64;
  if (w0 >= m1) return;  // this warpgroup's rows are all past the tile's end
  const int w1 = min(w0 + 64, m1);
  float* out = reinterpret_cast<float*>(outPtr);
  int* lock0 = locks + (w0 / 64) * headsQ + h;
  int* lock1 = locks + ((w1 - 1) / 64) * headsQ + h;
  if ((ct & 127) == 0) {
    while (atomicCAS(lock0, 0, 1) != 0) {
    }
    if (lock1 != lock0) {
      while (atomicCAS(lock1, 0, 1) != 0) {
      }
    }
    __threadfence();
  }
  named_sync(1 + wg, 128);
  float prevLse[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = rowBase + 8 * r;
    prevLse[r] = row < m1 ? __ldcg(lse + (long long)row * headsQ + h) : FFA_NEG_INF;
  }
  __syncwarp();
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = rowBase + 8 * r;
    if (row >= m1 || rowLse[r] == FFA_NEG_INF) continue;
    float* dst = out + (long long)row * ldq + (long long)h * D + 2 * t;
    const float lp = prevLse[r];
    const float lc = rowLse[r];
    if (lp == FFA_NEG_INF) {
#pragma unroll
      for (int j = 0; j < D / 8; ++j) __stcg(reinterpret_cast<float2*>(dst + 8 * j), make_float2(o[j][2 * r], o[j][2 * r + 1]));
      if (t == 0) __stcg(lse + (long long)row * headsQ + h, lc);
    } else {
      const float hi = fmaxf(lp, lc);
      const float lo = fminf(lp, lc);
      const float merged = hi + log1pf(expf(lo - hi));
      const float wp = expf(lp - merged);
      const float wc = expf(lc - merged);
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        const float2 prev = __ldcg(reinterpret_cast<const float2*>(dst + 8 * j));
        __stcg(reinterpret_cast<float2*>(dst + 8 * j), make_float2(wp * prev.x + wc * o[j][2 * r], wp * prev.y + wc * o[j][2 * r + 1]));
      }
      if (t == 0) __stcg(lse + (long long)row * headsQ + h, merged);
    }
  }
  __threadfence();
  named_sync(1 + wg, 128);
  if ((ct & 127) == 0) {
    if (lock1 != lock0) atomicExch(lock1, 0);
    atomicExch(lock0, 0);
  }
}

}  // namespace sm90
}  // namespace ffa

// --------------------------------------------------------------------------------------------
// Entry points: ffa_fwd_sm90_{bf16,fp16}_d{64,128}_{direct,merge}. Block: 384 threads; dynamic
// smem: Smem<D>::kRequest bytes; grid: numWorkItems * headsQ. Parameters as ffa_fwd.cu's entries
// with q / k / v replaced by their TMA maps; maxLogits (fp32 [Hq], nullptr = off) last.

#define FFA_FWD_SM90_ENTRY(NAME, E, D, MERGE)                                                                             \
  extern "C" __global__ void __launch_bounds__(ffa::sm90::kThreads, 1)                                                    \
      NAME(const __grid_constant__ ffa::sm90::TmaMap tmQ, const __grid_constant__ ffa::sm90::TmaMap tmK,                  \
           const __grid_constant__ ffa::sm90::TmaMap tmV, void* __restrict__ out, float* __restrict__ lse,                \
           const int* __restrict__ qRanges, const int* __restrict__ kRanges, const int* __restrict__ types,               \
           const int* __restrict__ work, int* __restrict__ locks, int headsQ, int headsKv, float scaleLog2, float unit,   \
           float softcapScale, float* __restrict__ maxLogits) {                                                           \
    ffa::sm90::fwd_kernel<E, D, MERGE>(&tmQ, &tmK, &tmV, out, lse, qRanges, kRanges, types, work, locks, headsQ, headsKv, \
                                       scaleLog2, unit, softcapScale, maxLogits);                                         \
  }

FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_bf16_d128_direct, ffa::Bf16, 128, false)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_bf16_d128_merge, ffa::Bf16, 128, true)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_fp16_d128_direct, ffa::Fp16, 128, false)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_fp16_d128_merge, ffa::Fp16, 128, true)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_bf16_d64_direct, ffa::Bf16, 64, false)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_bf16_d64_merge, ffa::Bf16, 64, true)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_fp16_d64_direct, ffa::Fp16, 64, false)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_fp16_d64_merge, ffa::Fp16, 64, true)
