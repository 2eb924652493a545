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
//   overlap     = FlashAttention-3's schedule. Inside a warpgroup, S of k tile i + 1 is issued
//                 together with O += P V of tile i, and the softmax of tile i + 1 runs while
//                 P V is on the tensor cores (O is rescaled once it lands). Between the two
//                 consumer warpgroups, named barriers pass the right to issue wgmma back and
//                 forth (ping-pong), so one's softmax overlaps the other's GEMMs. On an H200 at
//                 16k tokens this took the forward from 562 to 615 TFLOP/s (full) and from
//                 540 to 637 (causal).
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
static_assert(kBN == 128, "S = Q K^T is issued as one m64n128 wgmma per k-step: BN must be 128");
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

  // ---- work item -> (slice, q tile, head): ffa_fwd.cu's, shared (ffa_common.cuh)
  const FwdItem w = fwd_item<kBM, kBN>(work, qRanges, kRanges, types, headsQ, headsKv);
  const Slice sl = w.sl;
  const int h = w.h, hk = w.hk, m0 = w.m0, m1 = w.m1, kLo = w.kLo, nTiles = w.nTiles;

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

  // the sub-range every row sees in full (FwdItem's allStart / allEnd, computed here: only the
  // consumers need them)
  const int allStart = sl.rowStart(m1 - 1);
  const int allEnd = sl.rowEnd(m0);
  int rs[2], re[2];
  row_intervals(sl, rowBase, rs, re);

  float o[D / 8][4];
  zero_frags<D / 8>(o);
  float rowMax[2] = {FFA_NEG_INF, FFA_NEG_INF};
  float rowSum[2] = {0.f, 0.f};

  const unsigned qRows = sQ + wg * 64 * 128;  // this warpgroup's 64 rows of each Q half
  mbar_wait(barQ, 0);

  // S = Q K^T for k tile `it` into s: D / 16 k-steps of 16 columns; 4 steps per 64-column half
  // (32 bytes apart inside the swizzled 128-byte rows). Issued, not waited for.
  auto issue_qk = [&](float (*s)[4], int it) {
    const unsigned kTile = sK + (it & 1) * L::kTileBytes;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      const unsigned off = (ks & 3) * 32;
      const unsigned long long da = wgmma_desc(qRows + (ks >> 2) * kBM * 128 + off, 16, 1024);
      const unsigned long long db = wgmma_desc(kTile + (ks >> 2) * kBN * 128 + off, 16, 1024);
      Wgmma<E>::ss128(s, da, db, ks > 0 ? 1 : 0);  // N = BN = 128 keys
    }
    wgmma_commit();
  };
  // O += P V for k tile `it`: BN / 16 k-steps of 16 keys (2048 bytes of V rows each). Issued.
  auto issue_pv = [&](unsigned (*p)[4], int it) {
    const unsigned vTile = sV + (it & 1) * L::kTileBytes;
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      const unsigned long long db = wgmma_desc(vTile + kk * 16 * 128, kBN * 128, 1024);
      if constexpr (D == 128) {
        Wgmma<E>::rs128(o, p[kk], db);
      } else {
        Wgmma<E>::rs64(o, p[kk], db);
      }
    }
    wgmma_commit();
  };
  // softcap and mask of tile `it` (mask only where some row of the tile does not see every key)
  auto mask_s = [&](float (*s)[4], int it) {
    const int n0 = kLo + it * kBN;
    if (softcapScale > 0.f) softcap_tile<kBN / 8>(s, softcapScale);
    if (n0 < allStart || n0 + kBN > allEnd) mask_tile<kBN>(s, n0, t, rs, re);
  };

  {
    // FA3's schedule. Inside a warpgroup: S of tile it+1 is issued together with O += P V of
    // tile it, and the softmax of tile it+1 runs while P V is still on the tensor cores (O is
    // rescaled after it lands). Between the two consumer warpgroups: named barriers 3 and 4 hand
    // the right to issue wgmma back and forth, so one's softmax overlaps the other's GEMMs.
    // Every warpgroup runs nTiles + 1 issue slots; warpgroup 1 pre-arrives on warpgroup 0's
    // barrier, and warpgroup 0 consumes warpgroup 1's last arrival at the end, so the counts match.
    const int myBar = 3 + wg;
    const int otherBar = 4 - wg;
    if (wg == 1) named_arrive(3, 256);
    float s[kBN / 8][4];
    unsigned p[kBN / 16][4];
    float alpha[2];
    // slot 0: S of tile 0
    mbar_wait(fullK, 0);
    named_sync(myBar, 256);
    wgmma_fence();
    issue_qk(s, 0);
    named_arrive(otherBar, 256);
    wgmma_wait<0>();
    fence_regs<kBN / 8>(s);
    mbar_arrive(emptyK);
    mask_s(s, 0);
    softmax_p<kBN>(s, rowMax, rowSum, scaleLog2, alpha);  // O is still 0: no rescale
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) pack_a<E>(p[kk], s, kk);
    // slots 1 .. nTiles - 1: S of tile it with P V of tile it - 1
    for (int it = 1; it < nTiles; ++it) {
      const int stage = it & 1;
      const int prev = (it - 1) & 1;
      mbar_wait(fullK + 8 * stage, (it >> 1) & 1);
      mbar_wait(fullV + 8 * prev, ((it - 1) >> 1) & 1);
      named_sync(myBar, 256);
      wgmma_fence();
      issue_qk(s, it);
      issue_pv(p, it - 1);
      named_arrive(otherBar, 256);
      wgmma_wait<1>();  // S landed; P V may still run
      fence_regs<kBN / 8>(s);
      mbar_arrive(emptyK + 8 * stage);
      mask_s(s, it);
      softmax_p<kBN>(s, rowMax, rowSum, scaleLog2, alpha);
      wgmma_wait<0>();  // P V of tile it - 1 landed: its p registers and V stage are free
      fence_regs<D / 8>(o);
      fence_regs_u<kBN / 16>(p);
      mbar_arrive(emptyV + 8 * prev);
      rescale_o<D>(o, alpha);
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) pack_a<E>(p[kk], s, kk);
    }
    // slot nTiles: P V of the last tile
    const int last = nTiles - 1;
    mbar_wait(fullV + 8 * (last & 1), (last >> 1) & 1);
    named_sync(myBar, 256);
    wgmma_fence();
    issue_pv(p, last);
    named_arrive(otherBar, 256);
    wgmma_wait<0>();
    fence_regs<D / 8>(o);
    fence_regs_u<kBN / 16>(p);
    mbar_arrive(emptyV + 8 * (last & 1));
    if (wg == 0) named_sync(3, 256);  // warpgroup 1's last arrival
  }

  // max_logits hook (ffa_fwd.cu's): rows past the tile's end saw other slices' q rows
  if (maxLogits != nullptr) warp_max_logits(rowMax[0], rowMax[1], rowBase < m1, rowBase + 8 < m1, unit, h, maxLogits);

  // ---- finalize and epilogues: ffa_fwd.cu's, shared (ffa_common.cuh)
  float rowLse[2];
  finalize_rows<D>(o, rowSum, rowMax, unit, rowLse);

  if (!kMerge) {
    store_rows<E, D>(o, rowLse, reinterpret_cast<T*>(outPtr), lse, rowBase, m1, h, headsQ, t);
    return;
  }

  // merge: each consumer warpgroup locks the aligned 64-row blocks its rows touch (lower index
  // first), LSE-merges into the fp32 out and lse, unlocks; its lead thread takes the locks and a
  // 128-thread named barrier stands for ffa_fwd.cu's __syncthreads. Lock array:
  // [ceil(Tq / 64) + 1, Hq].
  const int w0 = m0 + wg * 64;
  if (w0 >= m1) return;  // this warpgroup's rows are all past the tile's end
  const int w1 = min(w0 + 64, m1);
  merge_rows<D, 64>(o, rowLse, reinterpret_cast<float*>(outPtr), lse, locks, w0, w1, rowBase, h, headsQ, t,
                    (ct & 127) == 0, [wg] { named_sync(1 + wg, 128); });
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
