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
constexpr int kThreads = 384;

// -DFFA_SM90_FWD_BN=176 builds the wide k tile (FlashAttention-3's forward tile for head dim 128
// without a causal edge): 27% fewer k tiles per item, so the per-tile costs that do not grow with
// the tile (O's rescale, the barriers and waits of a slot) are spread over more keys. The host
// compiles it as a module of its own and picks it per plan (ffa-forward-sm90.ts,
// sm90ForwardPicksWide): only for plans of full slices, where no tile is cut by a diagonal, whose
// rows are long (64+ tiles of 128 keys), and only on the one-block-per-item schedule (2 Q stages
// and 4 wide K / V stages do not fit).
#ifndef FFA_SM90_FWD_BN
#define FFA_SM90_FWD_BN 128
#endif
constexpr int kBN = FFA_SM90_FWD_BN;
static_assert(kBN == 128 || kBN == 176, "S = Q K^T is issued as one m64n128 or m64n176 wgmma per k-step");

// -DFFA_SM90_FWD_PERSISTENT=1 builds the persistent schedule (the host compiles both and picks per
// plan: ffa-forward-sm90.ts, sm90ForwardPicksPersistent): a grid of one block per SM, each block
// walking the work list's virtual blocks ((item, head) pairs, item-major: the host's
// longest-first order) as persistent_block() deals them, its producer loading the next item's Q, K
// and V while the consumers finish the current item (the last P V, finalize and epilogue). Without
// the define the kernel runs one block per (item, head), head-major: the blocks running at once
// share one kv head's K / V in the L2, which made full +2% at 16k and +5% at 64k, causal +1% and
// +3% (alternating A/B, bench/results/kernel-fwd-headmajor-2026-12-03.json). The persistent
// build stays item-major: head-major made it 1-2% slower on the sliding window and varlen causal
// masks, the ones it is picked for.
#ifndef FFA_SM90_FWD_PERSISTENT
#define FFA_SM90_FWD_PERSISTENT 0
#endif
constexpr bool kPersistent = FFA_SM90_FWD_PERSISTENT != 0;
static_assert(!(kPersistent && kBN != 128), "the persistent schedule runs 128-key tiles only (shared memory)");

template <int D>
struct Smem {
  static constexpr int kQBytes = kBM * D * 2;
  static constexpr int kTileBytes = kBN * D * 2;  // one stage of K or of V
  // Q: one stage, two in the persistent kernel (item r in stage r % 2, so that the next item's Q
  // loads while this one's runs)
  static constexpr int kQStages = kPersistent ? 2 : 1;
  static constexpr int kQ = 0;
  static constexpr int kK = kQStages * kQBytes;           // 2 stages
  static constexpr int kV = kK + 2 * kTileBytes;          // 2 stages
  static constexpr int kBar = kK + 4 * kTileBytes;
  // barriers: q, fullK[2], fullV[2], emptyK[2], emptyV[2]; persistent: + the second stage's q
  // (kBar + 72), emptyQ[2] (kBar + 80), then per Q stage the item the producer hands its
  // consumers with it (kItemInts ints, 8 apart)
  static constexpr int kBarQ1 = kBar + 72;
  static constexpr int kEmptyQ = kBar + 80;
  static constexpr int kItem = kBar + 12 * 8;
  static constexpr int kItemInts = 7;
  static constexpr int kBytes = kPersistent ? kItem + 2 * 8 * 4 : kBar + 9 * 8;
  // dynamic shared memory requested: the layout plus slack to align its base to 1024
  static constexpr int kRequest = kBytes + 1024;
};
// ffa-forward-sm90.ts (sm90ForwardSmemBytes) requests these; test/cuda-fwd-sm90-persistent.test.ts
// reads them from here
static_assert(Smem<128>::kRequest == (kPersistent ? 197792 : kBN == 176 ? 214088 : 164936) &&
                  Smem<64>::kRequest == (kPersistent ? 99488 : kBN == 176 ? 107592 : 83016),
              "the host's shared-memory request (sm90ForwardSmemBytes) must follow the layout");

// The persistent schedule: in round r, block b of G takes virtual block r G + b (even r) or
// r G + G - 1 - b (odd r), so that over the longest-first list the blocks that drew the longer
// items of one round draw the shorter ones of the next. -1 once the list is exhausted (only the
// last round is partial).
__device__ __forceinline__ int persistent_block(int r, int numBlocks) {
  const int g = gridDim.x;
  const int b = blockIdx.x;
  const int v = r * g + ((r & 1) ? g - 1 - b : b);
  return v < numBlocks ? v : -1;
}

template <typename E, int D, bool kMerge>
__device__ __forceinline__ void fwd_kernel(const TmaMap* tmQ, const TmaMap* tmK, const TmaMap* tmV, void* __restrict__ outPtr,
                                           float* __restrict__ lse, const int* __restrict__ qRanges,
                                           const int* __restrict__ kRanges, const int* __restrict__ types,
                                           const int* __restrict__ work, int* __restrict__ locks, int headsQ, int headsKv,
                                           float scaleLog2, float unit, float softcapScale, float* __restrict__ maxLogits,
                                           int numBlocks) {
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
  // persistent only: Q stage `slot`'s full and empty barriers and item (slice qs, qe, ks, ke,
  // type; head; q tile start)
  auto qFull = [&](int slot) { return slot == 0 ? barQ : base + L::kBarQ1; };
  const unsigned emptyQ = base + L::kEmptyQ;  // + 8 * slot
  int* const itemInfo = reinterpret_cast<int*>(smemRaw + (base - smem_u32(smemRaw)) + L::kItem);  // + 8 * slot

  const int tid = threadIdx.x;

  // ---- work item -> (slice, q tile, head): ffa_fwd.cu's, shared (ffa_common.cuh). Persistent:
  // per virtual block, in the loops below.
  FwdItem w1;
  if constexpr (!kPersistent)
    w1 = fwd_item<kBM, kBN, true>(work, qRanges, kRanges, types, headsQ, headsKv, blockIdx.x, gridDim.x);

  if (tid == 0) {
    mbar_init(barQ, 1);
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      mbar_init(fullK + 8 * s, 1);
      mbar_init(fullV + 8 * s, 1);
      mbar_init(emptyK + 8 * s, 256);
      mbar_init(emptyV + 8 * s, 256);
    }
    if constexpr (kPersistent) {
      mbar_init(base + L::kBarQ1, 1);
      mbar_init(emptyQ, 256);
      mbar_init(emptyQ + 8, 256);
    }
    mbar_fence_init();
  }
  __syncthreads();

  // ---------------------------------------------------------------------------------------------
  // Producer warpgroup: one thread streams Q, then K/V tiles, each into the stage its consumers
  // last released. `kt0`: K/V tiles loaded for earlier items (the stages and phases run on
  // across a persistent block's items).
  if (tid < 128) {
    regs_dec<24>();
    if (tid == 0) {
      tma_prefetch_map(tmQ);
      tma_prefetch_map(tmK);
      tma_prefetch_map(tmV);
      auto load_item = [&](const FwdItem& w, int kt0, int qSlot) {
        const unsigned bar = qFull(qSlot);
        mbar_arrive_expect_tx(bar, L::kQBytes);
#pragma unroll
        for (int hf = 0; hf < HALVES; ++hf) tma_load_3d(sQ + qSlot * L::kQBytes + hf * kBM * 128, tmQ, bar, hf * 64, w.h, w.m0);
        for (int it = 0; it < w.nTiles; ++it) {
          const int kt = kt0 + it;
          const int stage = kt & 1;
          const int n0 = w.kLo + it * kBN;
          if (kt >= 2) mbar_wait(emptyK + 8 * stage, ((kt >> 1) - 1) & 1);
          mbar_arrive_expect_tx(fullK + 8 * stage, L::kTileBytes);
#pragma unroll
          for (int hf = 0; hf < HALVES; ++hf)
            tma_load_3d(sK + stage * L::kTileBytes + hf * kBN * 128, tmK, fullK + 8 * stage, hf * 64, w.hk, n0);
          if (kt >= 2) mbar_wait(emptyV + 8 * stage, ((kt >> 1) - 1) & 1);
          mbar_arrive_expect_tx(fullV + 8 * stage, L::kTileBytes);
#pragma unroll
          for (int hf = 0; hf < HALVES; ++hf)
            tma_load_3d(sV + stage * L::kTileBytes + hf * kBN * 128, tmV, fullV + 8 * stage, hf * 64, w.hk, n0);
        }
      };
      if constexpr (kPersistent) {
        int kt = 0;
        for (int r = 0;; ++r) {
          const int vb = persistent_block(r, numBlocks);
          if (vb < 0) break;
          const FwdItem w = fwd_item<kBM, kBN, false>(work, qRanges, kRanges, types, headsQ, headsKv, vb, numBlocks);
          // Q stage r % 2 and its item slot are free once both consumer warpgroups have issued
          // item r - 2's last S = Q K^T and seen it land; the arrival on the stage's full barrier
          // publishes the item
          const int slot = r & 1;
          if (r >= 2) mbar_wait(emptyQ + 8 * slot, ((r >> 1) - 1) & 1);
          int* const info = itemInfo + 8 * slot;
          info[0] = w.sl.qs;
          info[1] = w.sl.qe;
          info[2] = w.sl.ks;
          info[3] = w.sl.ke;
          info[4] = w.sl.type;
          info[5] = w.h;
          info[6] = w.m0;
          load_item(w, kt, slot);
          kt += w.nTiles;
        }
      } else {
        load_item(w1, 0, 0);
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
  // FA3's schedule between the two consumer warpgroups (see the main loop below): named barriers
  // 3 and 4 hand the right to issue wgmma back and forth.
  const int myBar = 3 + wg;
  const int otherBar = 4 - wg;

  // One work item: the main loop, finalize and epilogue. `kt0`: K/V tiles consumed for earlier
  // items, `qSlot`: its Q stage (persistent).
  auto consume_item = [&](const FwdItem& w, int kt0, int qSlot) {
    const unsigned qRows = sQ + qSlot * L::kQBytes + wg * 64 * 128;  // this warpgroup's 64 rows of each Q half
    const Slice sl = w.sl;
    const int h = w.h, m0 = w.m0, m1 = w.m1, kLo = w.kLo, nTiles = w.nTiles;
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

    if constexpr (!kPersistent) mbar_wait(barQ, 0);

    // S = Q K^T for the k tile in `stage` into s: D / 16 k-steps of 16 columns; 4 steps per
    // 64-column half (32 bytes apart inside the swizzled 128-byte rows). Issued, not waited for.
    auto issue_qk = [&](float (*s)[4], int stage) {
      const unsigned kTile = sK + stage * L::kTileBytes;
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        const unsigned off = (ks & 3) * 32;
        const unsigned long long da = wgmma_desc(qRows + (ks >> 2) * kBM * 128 + off, 16, 1024);
        const unsigned long long db = wgmma_desc(kTile + (ks >> 2) * kBN * 128 + off, 16, 1024);
        if constexpr (kBN == 176) {
          Wgmma<E>::ss176(s, da, db, ks > 0 ? 1 : 0);
        } else {
          Wgmma<E>::ss128(s, da, db, ks > 0 ? 1 : 0);
        }
      }
      wgmma_commit();
    };
    // O += P V for the k tile in `stage`: BN / 16 k-steps of 16 keys (2048 bytes of V rows each).
    // Issued.
    auto issue_pv = [&](unsigned (*p)[4], int stage) {
      const unsigned vTile = sV + stage * L::kTileBytes;
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
      // rescaled after it lands). Between the two consumer warpgroups: named barriers 3 and 4
      // hand the right to issue wgmma back and forth, so one's softmax overlaps the other's
      // GEMMs. Every warpgroup runs nTiles + 1 issue slots; warpgroup 1 pre-arrives on warpgroup
      // 0's barrier, and warpgroup 0 consumes warpgroup 1's last arrival at the end, so the
      // counts match (persistent: once per block, around all its items, so that the hand-over
      // runs on from one item's last slot to the next item's first).
      // K/V tile it of this item is the block's (kt0 + it)-th: stage (kt0 + it) & 1.
      if constexpr (!kPersistent) {
        if (wg == 1) named_arrive(3, 256);
      }
      float s[kBN / 8][4];
      unsigned p[kBN / 16][4];
      float alpha[2];
      // slot 0: S of tile 0
      const int st0 = kt0 & 1;
      mbar_wait(fullK + 8 * st0, (kt0 >> 1) & 1);
      named_sync(myBar, 256);
      wgmma_fence();
      issue_qk(s, st0);
      named_arrive(otherBar, 256);
      wgmma_wait<0>();
      fence_regs<kBN / 8>(s);
      mbar_arrive(emptyK + 8 * st0);
      if constexpr (kPersistent) {
        if (nTiles == 1) mbar_arrive(emptyQ + 8 * qSlot);  // the item's last S = Q K^T has landed: Q is free
      }
      mask_s(s, 0);
      softmax_p<kBN>(s, rowMax, rowSum, scaleLog2, alpha);  // O is still 0: no rescale
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) pack_a<E>(p[kk], s, kk);
      // slots 1 .. nTiles - 1: S of tile it with P V of tile it - 1
      for (int it = 1; it < nTiles; ++it) {
        const int kt = kt0 + it;
        const int stage = kt & 1;
        const int prev = (kt - 1) & 1;
        mbar_wait(fullK + 8 * stage, (kt >> 1) & 1);
        mbar_wait(fullV + 8 * prev, ((kt - 1) >> 1) & 1);
        named_sync(myBar, 256);
        wgmma_fence();
        issue_qk(s, stage);
        issue_pv(p, prev);
        named_arrive(otherBar, 256);
        wgmma_wait<1>();  // S landed; P V may still run
        fence_regs<kBN / 8>(s);
        mbar_arrive(emptyK + 8 * stage);
        if constexpr (kPersistent) {
          if (it == nTiles - 1) mbar_arrive(emptyQ + 8 * qSlot);
        }
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
      const int last = kt0 + nTiles - 1;
      mbar_wait(fullV + 8 * (last & 1), (last >> 1) & 1);
      named_sync(myBar, 256);
      wgmma_fence();
      issue_pv(p, last & 1);
      named_arrive(otherBar, 256);
      wgmma_wait<0>();
      fence_regs<D / 8>(o);
      fence_regs_u<kBN / 16>(p);
      mbar_arrive(emptyV + 8 * (last & 1));
      if constexpr (!kPersistent) {
        if (wg == 0) named_sync(3, 256);  // warpgroup 1's last arrival
      }
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
  };

  if constexpr (kPersistent) {
    if (wg == 1) named_arrive(3, 256);
    int kt = 0;
    for (int r = 0;; ++r) {
      if (persistent_block(r, numBlocks) < 0) break;
      const int slot = r & 1;
      mbar_wait(qFull(slot), (r >> 1) & 1);
      const int* const info = itemInfo + 8 * slot;
      Slice sl;
      sl.qs = info[0];
      sl.qe = info[1];
      sl.ks = info[2];
      sl.ke = info[3];
      sl.type = info[4];
      const FwdItem w = fwd_item_of<kBM, kBN>(sl, info[5], info[6], headsQ, headsKv);
      consume_item(w, kt, slot);
      kt += w.nTiles;
    }
    if (wg == 0) named_sync(3, 256);  // warpgroup 1's last arrival
  } else {
    consume_item(w1, 0, 0);
  }
}

}  // namespace sm90
}  // namespace ffa

// --------------------------------------------------------------------------------------------
// Entry points: ffa_fwd_sm90_{bf16,fp16}_d{64,128}_{direct,merge}. Block: 384 threads; dynamic
// smem: Smem<D>::kRequest bytes; grid: numWorkItems * headsQ. Parameters as ffa_fwd.cu's entries
// with q / k / v replaced by their TMA maps; maxLogits (fp32 [Hq], nullptr = off) last.

#if FFA_SM90_FWD_PERSISTENT
// Persistent: grid = the blocks that fit at once (one per SM), at most numBlocks (= items x Hq),
// the count of virtual blocks, passed last.
#define FFA_FWD_SM90_PERSISTENT_PARAM , int numBlocks
#define FFA_FWD_SM90_PERSISTENT_ARG numBlocks
#else
#define FFA_FWD_SM90_PERSISTENT_PARAM
#define FFA_FWD_SM90_PERSISTENT_ARG 0
#endif
#define FFA_FWD_SM90_ENTRY(NAME, E, D, MERGE)                                                                             \
  extern "C" __global__ void __launch_bounds__(ffa::sm90::kThreads, 1)                                                    \
      NAME(const __grid_constant__ ffa::sm90::TmaMap tmQ, const __grid_constant__ ffa::sm90::TmaMap tmK,                  \
           const __grid_constant__ ffa::sm90::TmaMap tmV, void* __restrict__ out, float* __restrict__ lse,                \
           const int* __restrict__ qRanges, const int* __restrict__ kRanges, const int* __restrict__ types,               \
           const int* __restrict__ work, int* __restrict__ locks, int headsQ, int headsKv, float scaleLog2, float unit,   \
           float softcapScale, float* __restrict__ maxLogits FFA_FWD_SM90_PERSISTENT_PARAM) {                             \
    ffa::sm90::fwd_kernel<E, D, MERGE>(&tmQ, &tmK, &tmV, out, lse, qRanges, kRanges, types, work, locks, headsQ, headsKv, \
                                       scaleLog2, unit, softcapScale, maxLogits, FFA_FWD_SM90_PERSISTENT_ARG);            \
  }

FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_bf16_d128_direct, ffa::Bf16, 128, false)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_bf16_d128_merge, ffa::Bf16, 128, true)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_fp16_d128_direct, ffa::Fp16, 128, false)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_fp16_d128_merge, ffa::Fp16, 128, true)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_bf16_d64_direct, ffa::Bf16, 64, false)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_bf16_d64_merge, ffa::Bf16, 64, true)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_fp16_d64_direct, ffa::Fp16, 64, false)
FFA_FWD_SM90_ENTRY(ffa_fwd_sm90_fp16_d64_merge, ffa::Fp16, 64, true)
