// Flex-flash-attention backward for Hopper (sm_90a): TMA loads, wgmma, warp specialisation.
//
// Device code only, compiled at run time by NVRTC (ffa-backward-sm90.ts) and by nvcc in the CI
// check. Same contract, math, work list (slice, k tile of 128 keys, q rows [qLo, qHi)) and
// pre-pass as ffa_bwd.cu (read that file's header first); the pre-pass and the fp32 -> 16-bit
// conversions are that module's kernels. Head dim 128 only.
//
//   block     = 3 warpgroups. Warpgroup 0 is the producer: warp 0 TMA-loads the K and V tile
//               once, then Q and dO tiles (64 q rows) into 2 stages; warp 1 copies the matching
//               lseLog2 and Δ rows into shared memory (rows past the item's q range get
//               lseLog2 = +inf and Δ = 0, so P = dS = 0 there); one thread of warp 2 sends the
//               consumers' dQ tiles to global memory. Warpgroups 1 and 2 own 64 keys each, with
//               their dK and dV in registers.
//   per step  = one (q head of the kv group, 64-row q tile):
//               Sᵀ = K_w Qᵀ and dPᵀ = V_w dOᵀ (wgmma, both operands K-major in shared memory);
//               Pᵀ = exp2(Sᵀ·scale·log2e − lseLog2), dSᵀ = Pᵀ ∘ (dPᵀ − Δ) in registers;
//               dV_w += Pᵀ dO and dK_w += dSᵀ Q with Pᵀ / dSᵀ straight from registers;
//               dSᵀ also goes to shared memory (double-buffered), and after a barrier of the two
//               consumer warpgroups each computes dQ = dS K for 64 of the 128 head-dim columns
//               (dS read M-major, K read N-major). The next step's Sᵀ is issued right behind
//               that dQ, so the tensor cores work on it while the dQ tile goes out: staged in
//               shared memory as two SW128 boxes of 64 rows x 32 fp32 per warpgroup, handed to
//               the producer's dQ thread through an mbarrier, and added into the fp32 dq with two
//               TMA tensor reduce-adds (cp.reduce.async.bulk.tensor .add) per warpgroup, not 64
//               row copies (H200, 16k full: 420 vs 344 TFLOP/s with the two other changes). Rows
//               past the step's q range are staged as zeros (adding 0 changes nothing, also in
//               deterministic mode; rows past Tq are clipped by the tensor map).
//   epilogue  = dK·scale and dV into the fp32 dk / dv with red.add (several slices may share k
//               rows).

#include "ffa_common.cuh"
#include "ffa_sm90.cuh"

namespace ffa {
namespace sm90bwd {

using namespace ffa::sm90;

constexpr int kBM = 64;   // q rows per step
constexpr int kBN = 128;  // keys per block (64 per consumer warpgroup)
constexpr int kD = 128;
constexpr int kThreads = 384;

// EXPERIMENT (issue 11; to be removed once measured): schedule variants of this one kernel, a bit
// set chosen at compile time by -DFFA_BWD_SM90_VARIANT=N (ffa-backward-sm90.ts passes the
// FFA_BWD_SM90_VARIANT environment variable; default 0 = the kernel described above).
//   bit 0 OWN    - each consumer warpgroup computes dQ over its own 64 keys for all 128 head-dim
//                 columns (two m64n64 groups of 4 k-steps, the next step's Sᵀ issued between
//                 them; one m64n128 group made ptxas serialize the wgmma for want of registers,
//                 even with dV and dK waited for first), so the two warpgroups never meet at a named
//                 barrier (only a 128-thread one inside the warpgroup, its dSᵀ rows written) and
//                 one's Pᵀ / dSᵀ math can run under the other's GEMMs. The two partial 64 x 128
//                 tiles are pre-summed in shared memory (2 buffers of 4 SW128 boxes): per warp
//                 pair (warp w of both warpgroups holds the same fragment positions) a ticket
//                 (shared atomic) says who is first; the first stores its tile and arrives on the
//                 pair's mbarrier, the second waits on it, adds its own (a + b == b + a in fp32,
//                 so the sum is the same whoever comes first: deterministic mode holds) and
//                 arrives on dqFull; one producer thread sends the 4 boxes.
//   bit 1 GLOBAL - with OWN: no pre-sum; each warpgroup stages its partial tile and its own
//                 producer thread (warps 2 and 3) reduce-adds it (twice the dq reduce traffic;
//                 two fp32 adds per element and block in a varying order: NOT bit-reproducible
//                 in deterministic mode).
//   bit 2 LEAN   - less integer work in the consumer loop: wgmma descriptors as the block's
//                 base / 16 advanced by 32-bit adds (no shift / mask / OR per wgmma), the
//                 q tile of a step counted instead of s % nQt, no row-validity select in
//                 the dQ staging of steps whose 64 rows are all inside the q range.
//   bit 3 SKEW   - with OWN (pre-sum): warpgroup 1 starts once warpgroup 0 has issued its first dV
//                 (a one-time named barrier), so that the two start half a step apart and one's
//                 Pᵀ / dSᵀ math meets the other's GEMMs rather than its own math; nothing holds
//                 them apart afterwards (OWN only couples them through the 2 stages and the 2 dQ
//                 buffers).
// Variants run by bench/kernel/bwd-variants.sh: 0, 1, 3, 4, 5, 9, 13.
#ifndef FFA_BWD_SM90_VARIANT
#define FFA_BWD_SM90_VARIANT 0
#endif
constexpr int kVariant = FFA_BWD_SM90_VARIANT;
static_assert(kVariant >= 0 && kVariant < 16 && (kVariant & 3) != 2 && ((kVariant & 8) == 0 || (kVariant & 3) == 1),
              "FFA_BWD_SM90_VARIANT: bit 1 (GLOBAL) needs bit 0 (OWN); bit 3 (SKEW) needs OWN without GLOBAL");

template <int VARIANT>
struct Smem {
  static constexpr bool kOwn = (VARIANT & 1) != 0;
  static constexpr int kKV = kBN * kD * 2;     // K or V: two [128][64] halves
  static constexpr int kQO = kBM * kD * 2;     // one stage of Q or dO: two [64][64] halves
  static constexpr int kDS = kBN * kBM * 2;    // one dSᵀ buffer: [128 keys][64 q]
  static constexpr int kK = 0;
  static constexpr int kV = kKV;
  static constexpr int kQ = 2 * kKV;           // 2 stages
  static constexpr int kO = kQ + 2 * kQO;      // 2 stages
  static constexpr int kS = kO + 2 * kQO;      // 2 buffers
  static constexpr int kL = kS + 2 * kDS;      // lseLog2, 2 stages of 64 floats
  static constexpr int kDl = kL + 2 * kBM * 4; // Δ, 2 stages
  // One staged dQ tile: 64 rows x 64 fp32 (two SW128 boxes [64][32]) per consumer warpgroup in
  // the default schedule; 64 x 128 fp32 (four boxes) per buffer with OWN (2 buffers, or one per
  // warpgroup with GLOBAL).
  static constexpr int kDQW = kOwn ? kBM * kD * 4 : kBM * 64 * 4;
  static constexpr int kDQ = kDl + 2 * kBM * 4;  // 1024-aligned, as the swizzle needs
  static constexpr int kBar = kDQ + 2 * kDQW;    // kv, full[2], empty[2], dqFull[2], dqEmpty[2] (+ OWN: pair[2][2][4], tickets[2][2][4])
  static constexpr int kPair = kBar + 72;
  static constexpr int kTicket = kPair + 128;
  static constexpr int kBytes = kBar + (kOwn ? kTicket - kBar + 64 : 72);
  static constexpr int kRequest = kBytes + 1024;
};
static_assert(Smem<0>::kDQ % 1024 == 0 && Smem<0>::kDQW % 1024 == 0, "SW128 dQ boxes need 1024-byte alignment");
static_assert(Smem<0>::kRequest == 198728, "ffa-backward-sm90.ts smemBytes(0) must equal Smem<0>::kRequest");
static_assert(Smem<1>::kRequest == 231688, "ffa-backward-sm90.ts smemBytes(OWN) must equal Smem<1>::kRequest");
static_assert(Smem<1>::kRequest <= 232448, "227 KB of shared memory per block");

// Byte offset of element (row, col) in a SW128 [rows][64] 16-bit slab.
__device__ __forceinline__ unsigned sw128(int row, int col) {
  return row * 128 + ((((col >> 3) ^ (row & 7))) << 4) + (col & 7) * 2;
}

template <bool B>
struct BoolConst {
  static constexpr bool value = B;
};

// A dQ accumulator of NJ n8 blocks (64 rows x 8 NJ fp32 columns per warpgroup, times `scale`) into
// SW128 boxes of [64][32] fp32 (8 KB each): 16-byte chunk c of row R at chunk c ^ (R % 8). Odd rows
// g store column block j ^ 2 where even ones store j, so that the 16 lanes of a half-warp hit 8
// different chunks (all 32 banks) with their 8-byte stores. ADD: adds to what is there (the
// pre-sum's second warp). ROWCHECK: rows R with m0 + R >= m1 stored as zeros (with ADD: left as the
// first warp's zeros).
template <int NJ, bool ADD, bool ROWCHECK>
__device__ __forceinline__ void stage_dq(unsigned char* stg, const float (*dqa)[4], int warp, int g, int t, int m0, int m1, float scale) {
  const bool odd = (g & 1) != 0;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int R = warp * 16 + g + 8 * r;
    const bool valid = !ROWCHECK || m0 + R < m1;
#pragma unroll
    for (int j = 0; j < NJ; ++j) {
      const int jj = odd ? j ^ 2 : j;
      const float x0 = odd ? dqa[j ^ 2][2 * r] : dqa[j][2 * r];
      const float x1 = odd ? dqa[j ^ 2][2 * r + 1] : dqa[j][2 * r + 1];
      const int chunk = ((jj & 3) * 2 + (t >> 1)) ^ (R & 7);
      float2* dst = reinterpret_cast<float2*>(stg + (jj >> 2) * (kBM * 32 * 4) + R * 128 + chunk * 16 + (t & 1) * 8);
      if (ADD) {
        if (valid) {
          const float2 prev = *dst;
          *dst = make_float2(prev.x + x0 * scale, prev.y + x1 * scale);
        }
      } else {
        *dst = valid ? make_float2(x0 * scale, x1 * scale) : make_float2(0.f, 0.f);
      }
    }
  }
}

template <typename E, bool SOFTCAP, int VARIANT>
__device__ __forceinline__ void bwd_kernel(const TmaMap* tmQ, const TmaMap* tmK, const TmaMap* tmV, const TmaMap* tmO,
                                           const float* __restrict__ lseLog2, const float* __restrict__ delta, const TmaMap* tmDq,
                                           float* __restrict__ dk, float* __restrict__ dv,
                                           const int* __restrict__ qRanges, const int* __restrict__ kRanges,
                                           const int* __restrict__ types, const int* __restrict__ work, int headsQ,
                                           int headsKv, int tokensQ, float scaleLog2, float softmaxScale,
                                           float softcapScale) {
  using L = Smem<VARIANT>;
  constexpr bool OWN = (VARIANT & 1) != 0;
  constexpr bool GLOBAL = (VARIANT & 2) != 0;
  constexpr bool LEAN = (VARIANT & 4) != 0;
  constexpr bool SKEW = (VARIANT & 8) != 0;
  extern __shared__ unsigned char smemRaw[];
  const unsigned base = (smem_u32(smemRaw) + 1023u) & ~1023u;
  unsigned char* gen = smemRaw + (base - smem_u32(smemRaw));  // generic pointer to `base`
  const unsigned sK = base + L::kK;
  const unsigned sV = base + L::kV;
  const unsigned sQ = base + L::kQ;
  const unsigned sO = base + L::kO;
  const unsigned sS = base + L::kS;
  float* sL = reinterpret_cast<float*>(gen + L::kL);
  float* sDl = reinterpret_cast<float*>(gen + L::kDl);
  const unsigned barKV = base + L::kBar;
  const unsigned full = barKV + 8;    // + 8 * stage
  const unsigned empty = barKV + 24;  // + 8 * stage
  const unsigned dqFull = barKV + 40;   // + 8 * consumer warpgroup (OWN: + 8 * buffer): its dQ tile is staged
  const unsigned dqEmpty = barKV + 56;  // + 8 * consumer warpgroup (OWN: + 8 * buffer): its staging buffer is free again
  const unsigned pairBar = base + L::kPair;              // OWN pre-sum: + 8 * ((2 * buffer + half) * 4 + warp)
  int* tickets = reinterpret_cast<int*>(gen + L::kTicket);  // OWN pre-sum: [(2 * buffer + half) * 4 + warp]

  const int tid = threadIdx.x;
  // work item: ffa_bwd.cu's, shared (ffa_common.cuh)
  const BwdItem w = bwd_item<kBM, kBN>(work, qRanges, kRanges, types, headsQ, headsKv);
  const Slice sl = w.sl;
  const int hk = w.hk, n0 = w.n0, n1 = w.n1, qLo = w.qLo, qHi = w.qHi, G = w.G, nQt = w.nQt, nSteps = w.nSteps;

  if (tid == 0) {
    mbar_init(barKV, 1);
    mbar_init(full, 2);  // the TMA thread's expect_tx arrival + the lse/Δ warp's arrival
    mbar_init(full + 8, 2);
    mbar_init(empty, 256);
    mbar_init(empty + 8, 256);
    // every thread of the consumer warpgroup (OWN pre-sum: of the 4 second warps, per half)
    mbar_init(dqFull, OWN && !GLOBAL ? 256 : 128);
    mbar_init(dqFull + 8, OWN && !GLOBAL ? 256 : 128);
    mbar_init(dqEmpty, 1);  // the dQ thread
    mbar_init(dqEmpty + 8, 1);
    if (OWN && !GLOBAL) {
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        mbar_init(pairBar + 8 * i, 32);  // the first warp's lanes
        tickets[i] = 0;
      }
    }
    mbar_fence_init();
  }
  __syncthreads();

  // ---------------------------------------------------------------------------------------------
  // Producer warpgroup.
  if (tid < 128) {
    regs_dec<24>();
    const int warp = tid >> 5;
    const int lane = tid & 31;
    if (tid == 0) {
      tma_prefetch_map(tmQ);
      tma_prefetch_map(tmO);
      mbar_arrive_expect_tx(barKV, 2 * L::kKV);
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        tma_load_3d(sK + hf * kBN * 128, tmK, barKV, hf * 64, hk, n0);
        tma_load_3d(sV + hf * kBN * 128, tmV, barKV, hf * 64, hk, n0);
      }
      for (int s = 0; s < nSteps; ++s) {
        const int stage = s & 1;
        if (s >= 2) mbar_wait(empty + 8 * stage, ((s >> 1) - 1) & 1);
        const int h = hk * G + s / nQt;
        const int m0 = qLo + (s % nQt) * kBM;
        mbar_arrive_expect_tx(full + 8 * stage, 2 * L::kQO);
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          tma_load_3d(sQ + stage * L::kQO + hf * kBM * 128, tmQ, full + 8 * stage, hf * 64, h, m0);
          tma_load_3d(sO + stage * L::kQO + hf * kBM * 128, tmO, full + 8 * stage, hf * 64, h, m0);
        }
      }
    } else if (warp == 1) {
      for (int s = 0; s < nSteps; ++s) {
        const int stage = s & 1;
        if (s >= 2) mbar_wait(empty + 8 * stage, ((s >> 1) - 1) & 1);
        const int h = hk * G + s / nQt;
        const int m0 = qLo + (s % nQt) * kBM;
#pragma unroll
        for (int r = lane; r < kBM; r += 32) {
          const int row = m0 + r;
          // Rows past the item's q range (another slice's, or past Tq) get P = 0 and Δ = 0: their
          // Δ may be NaN (a NaN row elsewhere), and 0 · NaN would leak it into this item's dK.
          const bool valid = row < qHi;
          const long long idx = (long long)h * tokensQ + row;
          sL[stage * kBM + r] = valid ? lseLog2[idx] : FFA_POS_INF;
          sDl[stage * kBM + r] = valid ? delta[idx] : 0.f;
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(full + 8 * stage);
      }
    } else if (!OWN && tid == 64) {
      // The dQ thread (warp 2): each consumer warpgroup's staged dQ tile goes out as two TMA
      // tensor reduce-adds; the buffer is handed back once they have read it.
      for (int s = 0; s < nSteps; ++s) {
        const int h = hk * G + s / nQt;
        const int m0 = qLo + (s % nQt) * kBM;
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          mbar_wait(dqFull + 8 * c, s & 1);
          tma_reduce_add_3d(tmDq, base + L::kDQ + c * L::kDQW, c * 64, h, m0);
          tma_reduce_add_3d(tmDq, base + L::kDQ + c * L::kDQW + L::kDQW / 2, c * 64 + 32, h, m0);
          bulk_commit();
        }
        bulk_wait_read<1>();
        mbar_arrive(dqEmpty);
        bulk_wait_read<0>();
        mbar_arrive(dqEmpty + 8);
      }
      bulk_wait<0>();  // the reduce-adds have landed before the block ends
    } else if (OWN && !GLOBAL && tid == 64) {
      // OWN pre-sum: the summed 64 x 128 tile of step s (buffer s % 2) as four reduce-adds; the
      // buffer of step s - 1 is handed back once its reduce-adds have read it.
      for (int s = 0; s < nSteps; ++s) {
        const int b = s & 1;
        const int h = hk * G + s / nQt;
        const int m0 = qLo + (s % nQt) * kBM;
        mbar_wait(dqFull + 8 * b, (s >> 1) & 1);
#pragma unroll
        for (int x = 0; x < 4; ++x) tma_reduce_add_3d(tmDq, base + L::kDQ + b * L::kDQW + x * (kBM * 32 * 4), 32 * x, h, m0);
        bulk_commit();
        bulk_wait_read<1>();
        if (s >= 1) mbar_arrive(dqEmpty + 8 * (b ^ 1));
      }
      bulk_wait<0>();
    } else if (OWN && GLOBAL && (tid == 64 || tid == 96)) {
      // OWN, GLOBAL: consumer warpgroup c's partial tile (its own buffer), from its own thread.
      const int c = (tid - 64) >> 5;
      for (int s = 0; s < nSteps; ++s) {
        const int h = hk * G + s / nQt;
        const int m0 = qLo + (s % nQt) * kBM;
        mbar_wait(dqFull + 8 * c, s & 1);
#pragma unroll
        for (int x = 0; x < 4; ++x) tma_reduce_add_3d(tmDq, base + L::kDQ + c * L::kDQW + x * (kBM * 32 * 4), 32 * x, h, m0);
        bulk_commit();
        bulk_wait_read<0>();
        mbar_arrive(dqEmpty + 8 * c);
      }
      bulk_wait<0>();
    }
    return;
  }

  // ---------------------------------------------------------------------------------------------
  // Consumer warpgroups.
  regs_inc<240>();
  const int ct = tid - 128;
  // keys [64 wg, 64 wg + 64) of the tile. (Broadcasting it from lane 0, as CUTLASS does to make it
  // warp-uniform, made ptxas spill 8-60 bytes here with LEAN: the consumers are at 240 registers.)
  const int wg = ct >> 7;
  const int warp = (ct >> 5) & 3;  // 16 keys each
  const int lane = tid & 31;
  const int g = lane >> 2;
  const int t = lane & 3;
  const int nw0 = n0 + wg * 64;
  const int keyBase = nw0 + warp * 16 + g;  // this thread's keys: keyBase, keyBase + 8

  float dKacc[kD / 8][4];
  float dVacc[kD / 8][4];
  zero_frags<kD / 8>(dKacc);
  zero_frags<kD / 8>(dVacc);

  const long long ldk = (long long)headsKv * kD;
  mbar_wait(barKV, 0);

  // LEAN: a descriptor is (addr / 16) + (lbo / 16 << 16) in its low word and constants in its
  // high word (sbo, the swizzle mode); addr / 16 < 2^14 (shared addresses stay below 2^18 bytes),
  // so the low word of any operand is this block's base / 16 plus a per-warpgroup offset, a
  // per-stage offset and compile-time constants: 32-bit adds on uniform values, no shifts, masks
  // or ORs per wgmma.
  const unsigned b4 = base >> 4;
  const unsigned w4 = wg * (64 * 128 / 16);  // this warpgroup's first key row in K, V, dSᵀ
  const auto ldesc = [](unsigned lo4, unsigned lbo, unsigned sbo) -> unsigned long long {
    return ((unsigned long long)((sbo >> 4) | (1u << 30)) << 32) | (unsigned long long)(lo4 + ((lbo >> 4) << 16));
  };

  float st[kBM / 8][4];
  float dp[kBM / 8][4];
  // Sᵀ = K_w Qᵀ of step s into st (once the step's Q and dO have landed), one wgmma group. The
  // main loop also issues it for s = nSteps, the step after the last, which waits for nothing.
  const auto issue_s = [&](int s) {
    const unsigned cQ = sQ + (s & 1) * L::kQO;
    if (s < nSteps) mbar_wait(full + 8 * (s & 1), (s >> 1) & 1);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kD / 16; ++ks) {
      const unsigned off = (ks & 3) * 32;
      const unsigned hfK = (ks >> 2) * kBN * 128 + wg * 64 * 128 + off;
      const unsigned hfQ = (ks >> 2) * kBM * 128 + off;
      if (LEAN) {
        const unsigned hfK0 = (ks >> 2) * kBN * 128 + off;
        Wgmma<E>::ss64(st, ldesc(b4 + w4 + ((L::kK + hfK0) >> 4), 16, 1024), ldesc(b4 + (s & 1) * (L::kQO >> 4) + ((L::kQ + hfQ) >> 4), 16, 1024), ks > 0 ? 1 : 0);
      } else {
        Wgmma<E>::ss64(st, wgmma_desc(sK + hfK, 16, 1024), wgmma_desc(cQ + hfQ, 16, 1024), ks > 0 ? 1 : 0);
      }
    }
    wgmma_commit();
  };
  // dPᵀ = V_w dOᵀ of step s into dp, one wgmma group.
  const auto issue_dp = [&](int s) {
    const unsigned cO = sO + (s & 1) * L::kQO;
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kD / 16; ++ks) {
      const unsigned off = (ks & 3) * 32;
      const unsigned hfK = (ks >> 2) * kBN * 128 + wg * 64 * 128 + off;
      const unsigned hfQ = (ks >> 2) * kBM * 128 + off;
      if (LEAN) {
        const unsigned hfK0 = (ks >> 2) * kBN * 128 + off;
        Wgmma<E>::ss64(dp, ldesc(b4 + w4 + ((L::kV + hfK0) >> 4), 16, 1024), ldesc(b4 + (s & 1) * (L::kQO >> 4) + ((L::kO + hfQ) >> 4), 16, 1024), ks > 0 ? 1 : 0);
      } else {
        Wgmma<E>::ss64(dp, wgmma_desc(sV + hfK, 16, 1024), wgmma_desc(cO + hfQ, 16, 1024), ks > 0 ? 1 : 0);
      }
    }
    wgmma_commit();
  };

  // SKEW: barrier 4, warpgroup 0 arrives (after its first dV, or here with no step), 1 waits
  if (SKEW && wg == 1) named_sync(4, 256);
  if (SKEW && wg == 0 && nSteps == 0) named_arrive(4, 256);
  issue_s(0);
  wgmma_wait<0>();
  fence_regs<kBM / 8>(st);
  int qt = 0;  // LEAN: the step's q tile, counted
  for (int s = 0; s < nSteps; ++s) {
    const int stage = s & 1;
    const int m0 = qLo + (LEAN ? qt : s % nQt) * kBM;
    if (LEAN && ++qt == nQt) qt = 0;
    const int m1 = min(m0 + kBM, qHi);
    const unsigned cQ = sQ + stage * L::kQO;
    const unsigned cO = sO + stage * L::kQO;
    const unsigned cS = sS + (s & 1) * L::kDS;
    const float* cL = sL + stage * kBM;
    const float* cD = sDl + stage * kBM;

    // Sᵀ = K_w Qᵀ (issued behind the previous step's dQ, landed), dPᵀ = V_w dOᵀ: 64 keys x 64 q
    // rows per warpgroup. Pᵀ while dPᵀ still runs (softcap needs tanh' for dSᵀ: waits for it).
    issue_dp(s);
    if (SOFTCAP) {
      wgmma_wait<0>();
      fence_regs<kBM / 8>(dp);
    }

    // Pᵀ (and with softcap dSᵀ), ffa_bwd.cu's elementwise math (shared, ffa_common.cuh). Row (key)
    // = keyBase + 8 (e >> 1), column (q) = m0 + 8j + 2t + (e & 1).
    const bool fullTile = (m1 - m0 == kBM) && nw0 >= sl.rowStart(m1 - 1) && nw0 + 64 <= sl.rowEnd(m0);
    bwd_p<kBM / 8, SOFTCAP, SOFTCAP>(st, dp, cL, cD, fullTile, sl, keyBase, m0, m1, t, scaleLog2, softcapScale);
    unsigned ap[kBM / 16][4], as[kBM / 16][4];
#pragma unroll
    for (int kk = 0; kk < kBM / 16; ++kk) pack_a<E>(ap[kk], st, kk);
    // dV += Pᵀ dO (k dim = the 64 q rows; dO read N-major)
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBM / 16; ++kk)
      Wgmma<E>::rs128(dVacc, ap[kk], LEAN ? ldesc(b4 + stage * (L::kQO >> 4) + ((L::kO + kk * 16 * 128) >> 4), kBM * 128, 1024) : wgmma_desc(cO + kk * 16 * 128, kBM * 128, 1024));
    wgmma_commit();
    if (SKEW && wg == 0 && s == 0) named_arrive(4, 256);

    // dSᵀ = Pᵀ ∘ (dPᵀ − Δ) while dV runs
    if (!SOFTCAP) {
      wgmma_wait<1>();  // dPᵀ done
      fence_regs<kBM / 8>(dp);
      bwd_ds<kBM / 8>(st, dp, cD, t);
    }
#pragma unroll
    for (int kk = 0; kk < kBM / 16; ++kk) pack_a<E>(as[kk], dp, kk);
    // dK += dSᵀ Q (Q read N-major)
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBM / 16; ++kk)
      Wgmma<E>::rs128(dKacc, as[kk], LEAN ? ldesc(b4 + stage * (L::kQO >> 4) + ((L::kQ + kk * 16 * 128) >> 4), kBM * 128, 1024) : wgmma_desc(cQ + kk * 16 * 128, kBM * 128, 1024));
    wgmma_commit();

    // dSᵀ to shared memory ([key][q], SW128) while those run
    {
      const int r0 = wg * 64 + warp * 16 + g;
      unsigned char* dsGen = gen + L::kS + (s & 1) * L::kDS;
#pragma unroll
      for (int kk = 0; kk < kBM / 16; ++kk) {
        *reinterpret_cast<unsigned*>(dsGen + sw128(r0, 16 * kk + 2 * t)) = as[kk][0];
        *reinterpret_cast<unsigned*>(dsGen + sw128(r0 + 8, 16 * kk + 2 * t)) = as[kk][1];
        *reinterpret_cast<unsigned*>(dsGen + sw128(r0, 16 * kk + 8 + 2 * t)) = as[kk][2];
        *reinterpret_cast<unsigned*>(dsGen + sw128(r0 + 8, 16 * kk + 8 + 2 * t)) = as[kk][3];
      }
    }
    fence_async_smem();
    if (!OWN) {
      named_sync(1, 256);  // both warpgroups' dSᵀ written
    } else if (wg == 0) {
      named_sync(2, 128);  // this warpgroup's dSᵀ rows written
    } else {
      named_sync(3, 128);
    }

    // !OWN: dQ[:, 64 wg .. 64 wg + 63] = dS K over the 128 keys of the tile, one group.
    // OWN: dQ_w = dS_w K_w over this warpgroup's 64 keys, all 128 columns, as two groups of 64
    // columns (half 1 issued once half 0 is staged: one m64n128 accumulator next to dK, dV and
    // the next Sᵀ would not fit in 240 registers).
    float dqa[8][4];
    const auto issue_dq = [&](int hf) {
      if (!OWN) {
#pragma unroll
        for (int kk = 0; kk < kBN / 16; ++kk) {
          if (LEAN) {
            Wgmma<E>::ss64tt(dqa, ldesc(b4 + (s & 1) * (L::kDS >> 4) + ((L::kS + kk * 16 * 128) >> 4), 64 * 128, 1024),
                              ldesc(b4 + wg * (kBN * 128 / 16) + ((L::kK + kk * 16 * 128) >> 4), kBN * 128, 1024), kk > 0 ? 1 : 0);
          } else {
            Wgmma<E>::ss64tt(dqa, wgmma_desc(cS + kk * 16 * 128, 64 * 128, 1024), wgmma_desc(sK + wg * kBN * 128 + kk * 16 * 128, kBN * 128, 1024),
                             kk > 0 ? 1 : 0);
          }
        }
      } else {
#pragma unroll
        for (int kk = 0; kk < 64 / 16; ++kk) {
          const int row = wg * 64 + kk * 16;  // key row of dSᵀ and of K
          if (LEAN) {
            Wgmma<E>::ss64tt(dqa, ldesc(b4 + w4 + (s & 1) * (L::kDS >> 4) + ((L::kS + kk * 16 * 128) >> 4), 64 * 128, 1024),
                              ldesc(b4 + w4 + ((L::kK + hf * kBN * 128 + kk * 16 * 128) >> 4), kBN * 128, 1024), kk > 0 ? 1 : 0);
          } else {
            Wgmma<E>::ss64tt(dqa, wgmma_desc(cS + row * 128, 64 * 128, 1024), wgmma_desc(sK + hf * kBN * 128 + row * 128, kBN * 128, 1024),
                             kk > 0 ? 1 : 0);
          }
        }
      }
      wgmma_commit();
    };
    issue_dq(0);
    // dV and dK done (their register operands free, the stage's last readers of Q and dO), then
    // the next step's Sᵀ goes in behind this step's dQ. On the last step it reads a stale stage
    // and its result is dropped: issued unconditionally, the wgmma pipeline stays one ptxas does
    // not serialize.
    wgmma_wait<1>();
    fence_regs<kD / 8>(dVacc);
    fence_regs<kD / 8>(dKacc);
    mbar_arrive(empty + 8 * stage);
    issue_s(s + 1);
    wgmma_wait<1>();
    fence_regs<8>(dqa);

    // dQ tile to shared memory once the dQ thread's last reduces have read it, then to that
    // thread (stage_dq: SW128 boxes, bank-conflict free). Rows past the step's q range go as
    // zeros.
    const bool allRows = LEAN && m1 - m0 == kBM;
    const auto put = [&](unsigned char* dst, auto add) {
      if (allRows) {
        stage_dq<8, decltype(add)::value, false>(dst, dqa, warp, g, t, m0, m1, softmaxScale);
      } else {
        stage_dq<8, decltype(add)::value, true>(dst, dqa, warp, g, t, m0, m1, softmaxScale);
      }
    };
    using Store = BoolConst<false>;
    using Add = BoolConst<true>;
    if (!OWN) {
      unsigned char* stg = gen + L::kDQ + wg * L::kDQW;
      if (s >= 1) mbar_wait(dqEmpty + 8 * wg, (s - 1) & 1);
      put(stg, Store{});
      fence_async_smem();
      mbar_arrive(dqFull + 8 * wg);
    } else if (GLOBAL) {
      // this warpgroup's partial 64 x 128 tile, half by half, to its own dQ thread (the
      // warpgroup index re-read from threadIdx: kept in a register across the loop, ptxas spilled)
      const int me = (threadIdx.x >> 7) - 1;
      if (s >= 1) mbar_wait(dqEmpty + 8 * me, (s - 1) & 1);
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        if (hf == 1) {
          wgmma_fence();  // the staging reads of dqa before half 1 overwrites it
          issue_dq(1);
          wgmma_wait<0>();
          fence_regs<8>(dqa);
        }
        put(gen + L::kDQ + me * L::kDQW + hf * 2 * (kBM * 32 * 4), Store{});
      }
      fence_async_smem();
      mbar_arrive(dqFull + 8 * me);
    } else {
      // Pre-sum into buffer s % 2, per 64-column half: of this warp and its twin in the other
      // warpgroup, the one whose ticket comes first stores, the second adds once the first's
      // stores are done and arrives on dqFull (each half's 4 second warps: 256 arrivals a step).
      const int b = s & 1;
      unsigned char* stg = gen + L::kDQ + b * L::kDQW;
      if (s >= 2) mbar_wait(dqEmpty + 8 * b, ((s >> 1) - 1) & 1);
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        if (hf == 1) {
          wgmma_fence();  // the staging reads of dqa before half 1 overwrites it
          issue_dq(1);
          wgmma_wait<0>();
          fence_regs<8>(dqa);
        }
        const int pi = (2 * b + hf) * 4 + warp;
        int ticket = 0;
        if (lane == 0) ticket = atomicAdd(tickets + pi, 1);
        ticket = __shfl_sync(0xffffffffu, ticket, 0);
        unsigned char* dst = stg + hf * 2 * (kBM * 32 * 4);
        if (ticket == 0) {
          put(dst, Store{});
          // the second rewrites only rows inside the q range: the zeros of the others reach the
          // TMA read from here, so they are ordered for the async proxy by this thread too
          fence_async_smem();
          mbar_arrive(pairBar + 8 * pi);
        } else {
          mbar_wait(pairBar + 8 * pi, (s >> 1) & 1);
          // reset for the buffer's next use (which waits for dqEmpty, released after this
          // thread's dqFull arrival below)
          if (lane == 0) tickets[pi] = 0;
          put(dst, Add{});
          fence_async_smem();
          mbar_arrive(dqFull + 8 * b);
        }
      }
    }
    wgmma_wait<0>();
    fence_regs<kBM / 8>(st);
  }

  // epilogue: dK (x scale) and dV into the fp32 buffers
  add_dkdv<kD>(dKacc, dVacc, dk, dv, keyBase, n1, ldk, hk, t, softmaxScale);
}

}  // namespace sm90bwd
}  // namespace ffa

// --------------------------------------------------------------------------------------------
// Entry points: ffa_bwd_sm90_{bf16,fp16}_d128[_softcap]. Block 384 threads, grid
// numWorkItems * headsKv, dynamic smem Smem<kVariant>::kRequest bytes. q / k / v / dout as TMA maps
// (boxes of 64 columns x 1 head x 64 rows for q and dout, x 128 rows for k and v); the fp32 dq
// accumulator as one too, in the place of the mma.sync kernel's dq pointer (boxes of 32 columns
// x 1 head x 64 rows).

#define FFA_BWD_SM90_ENTRY(NAME, E, SOFTCAP)                                                                             \
  extern "C" __global__ void __launch_bounds__(ffa::sm90bwd::kThreads, 1)                                                \
      NAME(const __grid_constant__ ffa::sm90::TmaMap tmQ, const __grid_constant__ ffa::sm90::TmaMap tmK,                 \
           const __grid_constant__ ffa::sm90::TmaMap tmV, const __grid_constant__ ffa::sm90::TmaMap tmO,                 \
           const float* __restrict__ lseLog2, const float* __restrict__ delta,                                           \
           const __grid_constant__ ffa::sm90::TmaMap tmDq, float* __restrict__ dk, float* __restrict__ dv,               \
           const int* __restrict__ qRanges, const int* __restrict__ kRanges, const int* __restrict__ types,              \
           const int* __restrict__ work, int headsQ, int headsKv, int tokensQ, float scaleLog2, float softmaxScale,      \
           float softcapScale) {                                                                                         \
    ffa::sm90bwd::bwd_kernel<E, SOFTCAP, ffa::sm90bwd::kVariant>(&tmQ, &tmK, &tmV, &tmO, lseLog2, delta, &tmDq, dk, dv, qRanges, kRanges, types, \
                                         work, headsQ, headsKv, tokensQ, scaleLog2, softmaxScale, softcapScale);        \
  }

FFA_BWD_SM90_ENTRY(ffa_bwd_sm90_bf16_d128, ffa::Bf16, false)
FFA_BWD_SM90_ENTRY(ffa_bwd_sm90_bf16_d128_softcap, ffa::Bf16, true)
FFA_BWD_SM90_ENTRY(ffa_bwd_sm90_fp16_d128, ffa::Fp16, false)
FFA_BWD_SM90_ENTRY(ffa_bwd_sm90_fp16_d128_softcap, ffa::Fp16, true)
