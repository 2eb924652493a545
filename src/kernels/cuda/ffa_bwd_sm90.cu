// Flex-flash-attention backward for Hopper (sm_90a): TMA loads, wgmma, warp specialisation.
//
// Device code only, compiled at run time by NVRTC (ffa-backward-sm90.ts) and by nvcc in the CI
// check. Same contract, math, work list (slice, k tile of 128 keys, q rows [qLo, qHi)) and
// pre-pass as ffa_bwd.cu (read that file's header first); the pre-pass and the fp32 -> 16-bit
// conversions are that module's kernels. Head dim 128 and 64, one template (kD): the shapes below
// are head dim 128's, where a step has 64 q rows; at head dim 64 a step has 128 (blockM), Sᵀ / dPᵀ
// are m64n128 wgmma, dV / dK m64n64, each consumer warpgroup's dQ block is 64 q rows x all 64
// columns, and Pᵀ waits for dPᵀ (kWaitDp: registers). The head-dim-128 entries compile to the same
// machine code as before head dim 64 was added (nvcc 13.0, .text sections compared).
//
//   block     = 3 warpgroups. Warpgroup 0 is the producer: warp 0 TMA-loads the K and V tile
//               once, then Q and dO tiles (64 q rows) into 2 stages; warp 1 copies the matching
//               lseLog2 and Δ rows into shared memory (rows past the item's q range get
//               lseLog2 = +inf and Δ = 0, so P = dS = 0 there); one thread of warp 2 sends the
//               consumers' dQ tiles to global memory. Warpgroups 1 and 2 own 64 keys each, with
//               their dK and dV in registers.
//   per step  = one (q head of the kv group, 64-row q tile):
//               Sᵀ = K_w Qᵀ and dPᵀ = V_w dOᵀ (wgmma, both operands K-major in shared memory);
//               Pᵀ = exp2(Sᵀ·scale·log2e − lseLog2), dSᵀ = Pᵀ ∘ (dPᵀ − Δ) in registers
//               (head dim 128 without softcap: p_tile, below, and Δ loaded before dPᵀ's wait);
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
//   integers  = kept few in the consumer loop, whose issue slots the tensor cores wait on: wgmma
//               descriptors are the block's base / 16 advanced by 32-bit adds (no shift, mask or
//               OR per wgmma), a step's q tile is counted rather than s % nQt, and the dQ staging
//               of a step whose 64 rows are all inside the q range has no row select (H200, 16k,
//               64:8, bf16, against the code before: +4.1% full, +3.7% causal, +0.7% varlen causal,
//               +1.8% sliding window, the last two within run-to-run drift; bench/kernel/README.md,
//               "Hopper backward schedule").
//   epilogue  = dK·scale and dV into the fp32 dk / dv with red.add (several slices may share k
//               rows).
//   grid      = one block per (item, kv head) in a split order (bwd_item, ffa_common.cuh): the
//               first kvMajorItems items kv-head-major (block b runs item b % kvMajorItems of kv
//               head b / kvMajorItems), so that the blocks running at once work on one or two kv
//               heads' q heads, whose Q, dO and dQ rows the L2 then holds for all of them; the
//               shortest items after them item-major (item b / headsKv of kv head b % headsKv),
//               so that the last wave is not the last kv heads' longest items. All kv-major
//               against all item-major (H200, 64:8, bf16, two readings each in alternating
//               processes): varlen causal +13.5% at 16k and +5.5% at 64k, full, varlen full and
//               varlen block-causal +2-3% at 64k (bench/kernel/README.md, "Backward: kv-head-major
//               blocks"); but causal at 4k (a grid of ~2 waves) lost 14%. The host picks the
//               split per plan (ffa-backward-order.ts), for the ordered entries over each of
//               their launches' items; the mma.sync kernel runs item-major.
//   registers = setmaxnreg: the producer drops to 24, the consumers rise to 240 (FlashAttention-3's
//               split for two consumer warpgroups; 24 is the least setmaxnreg takes, 240 the most
//               that fits 65,536 beside it). ptxas's "Used 168 registers" is only the launch cap:
//               the consumer code uses up to R237 (check-cuda.sh reads it off the cubin). Without
//               setmaxnreg it spills ~2 KB and serializes its wgmma; at a cap of 208 it spills; at
//               256 it compiles to the same instruction mix as at 240 (count per opcode, nvcc
//               13.0), so more registers would not change its code.

#include "ffa_common.cuh"
#include "ffa_sm90.cuh"

#ifdef FFA_BWD_SM90_TRACE
// Diagnostic build (-DFFA_BWD_SM90_TRACE, a module of its own: CudaFfaBackward's traceSteps
// option, bench/kernel/bwd-trace.ts): thread 0 of each consumer warpgroup of a sample of blocks
// (blockIdx.x % kTraceEvery == 0, the first kTraceBlocks of them) writes the low 32 bits of
// clock64() at the phase boundaries of its first kTraceSteps steps into ffa_bwd_trace; the host
// zeroes it before the launch. Head dim 128 default (not ORDERED) entries only: head dim 64 and
// the ordered entries record nothing. The stores and clock reads are instructions of their own, so
// the timings are diagnostic (the build is not the kernel that is timed), and ptxas may move
// independent arithmetic across a clock read: only the waits (wgmma, barriers) are hard edges.
// nvcc 13.0: consumer code up to R236 (R237 without the trace), no serialized wgmma, the clock
// reads in source order between the wgmma instructions of the cubin; since p_tile holds a step's
// 16 lseLog2 values at once, the trace's extra registers cost a 4-byte spill at head dim 128 (2
// local store and 2 local load instructions: check-cuda.sh prints them), a perturbation the
// timeline carries.
// Record of (sampled block b, consumer warpgroup w) at (2 b + w) * kTraceRecord: blockIdx.x + 1
// (0: never written), nSteps, clock at kernel start, clock after the epilogue, then kTraceEvents
// clocks per step, the FFA_BWD_TRACE(e) marks of the main loop in order (ffa-backward-trace.ts
// BWD_TRACE_PHASES names them; its BWD_TRACE mirrors these constants, which a unit test compares).
// After the records, from word kTraceTimeline, the block timeline of the default entries (either
// head dim): 4 words per block b < kTraceGridMax at kTraceTimeline + 4 b: its SM's %smid + 1 (0:
// not written), the low 32 bits of clock64() at its start and after its epilogue (the later of
// the two consumer warpgroups), its step count. Clocks of one SM are comparable, so the host
// reads per SM how long it was busy and how long it waited for blocks or for the grid's end.
namespace ffa {
namespace sm90bwd {
constexpr int kTraceEvery = 64;
constexpr int kTraceBlocks = 32;
constexpr int kTraceSteps = 256;
constexpr int kTraceEvents = 13;
constexpr int kTraceHeader = 4;
constexpr int kTraceRecord = kTraceHeader + kTraceSteps * kTraceEvents;
constexpr int kTraceTimeline = kTraceBlocks * 2 * kTraceRecord;
constexpr int kTraceGridMax = 8192;
}  // namespace sm90bwd
}  // namespace ffa
__device__ unsigned ffa_bwd_trace[ffa::sm90bwd::kTraceTimeline + 4 * ffa::sm90bwd::kTraceGridMax];
// event E of the current step (trStep: its first clock's index, or -1 when not recording)
#define FFA_BWD_TRACE(E) \
  if (trStep >= 0) ffa_bwd_trace[trStep + (E)] = (unsigned)clock64();
#else
#define FFA_BWD_TRACE(E)
#endif

namespace ffa {
namespace sm90bwd {

using namespace ffa::sm90;

constexpr int kBN = 128;  // keys per block (64 per consumer warpgroup)
constexpr int kThreads = 384;
// q rows per step: 64 at head dim 128; 128 at head dim 64, where dK and dV take half the
// registers (FlashAttention-3's backward tiles for head dim 64 are 128 x 128 too). A consumer
// warpgroup's dQ is then always a 64 x 64 block of the step's [kBM][D] tile: head-dim columns
// [64 wg, 64 wg + 64) at D 128, q rows [64 wg, 64 wg + 64) at D 64.
template <int D>
constexpr int blockM() {
  return D == 64 ? 128 : 64;
}

template <int D>
struct Smem {
  static constexpr int kBM = blockM<D>();
  static constexpr int kKV = kBN * D * 2;      // K or V: D / 64 [128][64] halves
  static constexpr int kQO = kBM * D * 2;      // one stage of Q or dO: D / 64 [kBM][64] halves
  static constexpr int kDS = kBN * kBM * 2;    // one dSᵀ buffer: kBM / 64 [128 keys][64 q] halves
  static constexpr int kK = 0;
  static constexpr int kV = kKV;
  static constexpr int kQ = 2 * kKV;           // 2 stages
  static constexpr int kO = kQ + 2 * kQO;      // 2 stages
  static constexpr int kS = kO + 2 * kQO;      // 2 buffers
  static constexpr int kL = kS + 2 * kDS;      // lseLog2, 2 stages of 64 floats
  static constexpr int kDl = kL + 2 * kBM * 4; // Δ, 2 stages
  static constexpr int kDQW = 64 * 64 * 4;       // one consumer warpgroup's staged 64 x 64 fp32 dQ: two SW128 boxes [64][32]
  static constexpr int kDQ = kDl + 2 * kBM * 4;  // 2 warpgroups (1024-aligned, as the swizzle needs)
  static constexpr int kBar = kDQ + 2 * kDQW;    // kv, full[2], empty[2], dqFull[2], dqEmpty[2]
  static constexpr int kBytes = kBar + 9 * 8;
  static constexpr int kRequest = kBytes + 1024;
};
static_assert(Smem<128>::kDQ % 1024 == 0 && Smem<64>::kDQ % 1024 == 0 && Smem<128>::kDQW % 1024 == 0, "SW128 dQ boxes need 1024-byte alignment");
// the host's smem size per head dim (ffa-backward-sm90.ts sm90BackwardSmemBytes; a unit test reads these two lines)
static_assert(Smem<128>::kRequest == 198728, "ffa-backward-sm90.ts sm90BackwardSmemBytes(128) must equal Smem<128>::kRequest");
static_assert(Smem<64>::kRequest == 199752, "ffa-backward-sm90.ts sm90BackwardSmemBytes(64) must equal Smem<64>::kRequest");

// Byte offset of element (row, col) in a SW128 [rows][64] 16-bit slab.
__device__ __forceinline__ unsigned sw128(int row, int col) {
  return row * 128 + ((((col >> 3) ^ (row & 7))) << 4) + (col & 7) * 2;
}

// Byte offset of dSᵀ element (key, q column) in a buffer of BM / 64 [128 keys][64] SW128 halves.
template <int BM>
__device__ __forceinline__ unsigned ds_off(int row, int col) {
  if constexpr (BM == 64) {
    return sw128(row, col);
  } else {
    return (col >> 6) * (kBN * 128) + sw128(row, col & 63);
  }
}

// A warpgroup's dQ accumulator (64 rows x 64 fp32 columns, times `scale`) into two SW128 boxes of
// [64][32] fp32 (8 KB each): 16-byte chunk c of row R at chunk c ^ (R % 8). Odd rows g store column
// block j ^ 2 where even ones store j, so that the 16 lanes of a half-warp hit 8 different chunks
// (all 32 banks) with their 8-byte stores. ROWCHECK: rows R with m0 + R >= m1 stored as zeros
// (without it, for a step whose rows are all inside the q range, no select per store); LOWER:
// rows with m0 + R < mLo too.
template <bool ROWCHECK, bool LOWER = false>
__device__ __forceinline__ void stage_dq(unsigned char* stg, const float (*dqa)[4], int warp, int g, int t, int m0, int m1, float scale, int mLo = 0) {
  const bool odd = (g & 1) != 0;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int R = warp * 16 + g + 8 * r;
    const bool valid = !ROWCHECK || (m0 + R < m1 && (!LOWER || m0 + R >= mLo));
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int jj = odd ? j ^ 2 : j;
      const float x0 = odd ? dqa[j ^ 2][2 * r] : dqa[j][2 * r];
      const float x1 = odd ? dqa[j ^ 2][2 * r + 1] : dqa[j][2 * r + 1];
      const int chunk = ((jj & 3) * 2 + (t >> 1)) ^ (R & 7);
      float2* dst = reinterpret_cast<float2*>(stg + (jj >> 2) * (64 * 32 * 4) + R * 128 + chunk * 16 + (t & 1) * 8);
      *dst = valid ? make_float2(x0 * scale, x1 * scale) : make_float2(0.f, 0.f);
    }
  }
}

// Pᵀ = exp2(Sᵀ·scaleLog2 − lseLog2) of a step without softcap (bwd_p's math, ffa_common.cuh),
// written for the Hopper consumer's schedule: the step's lseLog2 pairs are all loaded first and
// the exp2 of the 32 elements is straight-line code, so that the shared-memory loads overlap one
// another and the math of one column pair overlaps the next; the mask (rows past m1, keys
// outside a row's interval, LOWER: rows below mLo) is a separate pass that full tiles skip with
// one uniform branch. (bwd_p's per-element mask split each column pair into its own basic blocks:
// ncu showed each lseLog2 load waited for in turn, the load latency then being long because the
// wgmma operand reads keep shared memory busy: this phase was 34% of a step at 16k full, 1,640 of
// 4,760 cycles in bench/kernel/bwd-trace.ts's timeline. H200, 64:8, D 128, bf16, 16k, one
// machine session: full 469-474 -> 544-548 TFLOP/s, causal 419-430 -> 477-516, varlen causal 339
// -> 345-348, sliding window 325 -> 384-400; bench/kernel/README.md, "Hopper backward: the Pᵀ
// step".)
template <int NJ, bool LOWER>
__device__ __forceinline__ void p_tile(float (*st)[4], const float* cL, bool full, const Slice& sl, int keyBase, int m0,
                                       int m1, int t, float scaleLog2, int mLo) {
  float2 l2[NJ];
#pragma unroll
  for (int j = 0; j < NJ; ++j) l2[j] = *reinterpret_cast<const float2*>(cL + 8 * j + 2 * t);
#pragma unroll
  for (int j = 0; j < NJ; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) st[j][e] = fast_exp2(fmaf(st[j][e], scaleLog2, -((e & 1) ? l2[j].y : l2[j].x)));
  }
  if (!full) {
#pragma unroll
    for (int j = 0; j < NJ; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = keyBase + 8 * (e >> 1);
        const int qq = m0 + 8 * j + 2 * t + (e & 1);
        const bool ok = qq < m1 && (!LOWER || qq >= mLo) && key >= sl.rowStart(qq) && key < sl.rowEnd(qq);
        st[j][e] = ok ? st[j][e] : 0.f;
      }
    }
  }
}

// Ordered deterministic mode (ORDERED, entry points ffa_bwd_sm90_ordered_*), deterministic mode's
// schedule at head dim 128 (head dim 64 takes the host's grouped schedule on the default entry
// points): one launch in which every 64-row dQ tile of a q head receives its reduce-adds in a fixed
// order. The host (ffa-backward-ordered.ts) lays a grid of 64-row tiles over each group of
// overlapping slice q ranges, gives every tile a counter per q head (locks, zeroed before the
// launch) and every (item, tile) its rank: how many items before it in launch order add to that
// tile. The dQ thread waits until the tile's counter equals its rank, reduce-adds, waits for the
// adds to complete and increments the counter (release); items only wait for items launched before
// them (lower blockIdx, or an earlier launch: in the split order, as in the default's, a kv head's
// block of item i comes after its blocks of items 0..i-1, and counters are per q head, so blocks
// wait only within their kv head), so the lowest unfinished item never waits, whatever
// order each item visits its (tile, q head) pairs in. Steps walk the item's tiles from one end, in
// one of two orders the host picks per item (its record's walk; per group of overlapping q ranges,
// orderedWalkHeadsOuter): heads inner, step k · G + hh = (tile k, head hh), so that every block of
// a kv head visits the tiles in the same order and the block waited for is about one step ahead,
// not a whole head (causal items, aligned at the top and each shorter than the one before); or
// heads outer, step hh · tiles + k, so that items shifted against each other by a few tiles (the
// sliding window's band) touch a tile's Q, dO and dQ rows a few steps apart, not G times that (past
// the L2). A rank belongs to (item, tile), the same for every head and either walk. A step's rows
// outside [qLo, qHi) are masked like rows past qHi and staged as zeros (adding +0 commutes with
// every fp32 add, so those rows need no order).
struct OrderedItem {
  int mFirst;     // first step's row
  int dir;        // +1 / -1: tiles walked up or down
  int lockFirst;  // first step's tile counter (index within a q head's row of numLocks)
  int rankOff;    // the item's ranks: ranks[rankOff + k] for its k-th tile
  bool outer;     // the walk: heads outer (else inner)
};
// ORDERED work record: slice, n0, qLo, qHi, mFirst, lockFirst, rankOff, ±tiles, walk (0 heads
// inner, 1 heads outer); ORDERED_RECORD in ffa-backward-ordered.ts.
constexpr int kOrderedRecord = 9;
template <int BM, int BN>
__device__ __forceinline__ BwdItem ordered_item(const int* work, const int* qRanges, const int* kRanges, const int* types,
                                                int headsQ, int headsKv, unsigned kvMajorItems, OrderedItem& o) {
  BwdItem w;
  int item;
  split_item_head(headsKv, kvMajorItems, item, w.hk);
  const int* rec = work + kOrderedRecord * item;
  w.n0 = rec[1];
  w.qLo = rec[2];
  w.qHi = rec[3];
  o.mFirst = rec[4];
  o.lockFirst = rec[5];
  o.rankOff = rec[6];
  const int tiles = rec[7];
  o.dir = tiles < 0 ? -1 : 1;
  o.outer = rec[8] != 0;
  w.sl = load_slice(qRanges, kRanges, types, rec[0]);
  w.n1 = min(w.n0 + BN, w.sl.ke);
  w.G = headsQ / headsKv;
  w.nQt = tiles < 0 ? -tiles : tiles;
  w.nSteps = w.G * w.nQt;
  return w;
}
// ORDERED: step s as (tile k, head hh of the kv group), advanced one step at a time: the heads
// inner (hh fastest) or outer (k fastest), as the item's record says.
struct StepWalk {
  int hh = 0, k = 0;
  __device__ __forceinline__ void next(int G, int nQt, bool outer) {
    if (outer) {
      if (++k == nQt) {
        k = 0;
        ++hh;
      }
    } else if (++hh == G) {
      hh = 0;
      ++k;
    }
  }
};

// ORDERED: head dim 128 only (its 64-row steps are the host's dQ tiles).
template <typename E, int kD, bool SOFTCAP, bool ORDERED = false>
__device__ __forceinline__ void bwd_kernel(const TmaMap* tmQ, const TmaMap* tmK, const TmaMap* tmV, const TmaMap* tmO,
                                           const float* __restrict__ lseLog2, const float* __restrict__ delta, const TmaMap* tmDq,
                                           float* __restrict__ dk, float* __restrict__ dv,
                                           const int* __restrict__ qRanges, const int* __restrict__ kRanges,
                                           const int* __restrict__ types, const int* __restrict__ work, int headsQ,
                                           int headsKv, int tokensQ, float scaleLog2, float softmaxScale,
                                           float softcapScale, unsigned kvMajorItems, const int* __restrict__ ranks, int* __restrict__ locks,
                                           int numLocks) {
  using L = Smem<kD>;
  constexpr int kBM = L::kBM;
  constexpr int HALVES = kD / 64;  // 64-column SW128 halves of Q, K, V and dO
  // Pᵀ and dSᵀ in one pass once dPᵀ has landed (bwd_p), as softcap needs anyway, or
  // Pᵀ while dPᵀ runs and dSᵀ while dV runs. At kBM = 128 the Sᵀ and dPᵀ tiles are 64 registers
  // each, and the overlapped schedule spilled 48 bytes and serialized the wgmma (nvcc 13.0, 240
  // registers); so did computing dSᵀ after dPᵀ but before dV (no spill, wgmma serialized).
  constexpr bool kWaitDp = SOFTCAP || kBM == 128;
  static_assert(!ORDERED || kD == 128, "the ordered schedule's dQ tiles are head dim 128's 64-row steps");
  extern __shared__ unsigned char smemRaw[];
  const unsigned base = (smem_u32(smemRaw) + 1023u) & ~1023u;
  unsigned char* gen = smemRaw + (base - smem_u32(smemRaw));  // generic pointer to `base`
  const unsigned sK = base + L::kK;
  const unsigned sV = base + L::kV;
  const unsigned sQ = base + L::kQ;
  const unsigned sO = base + L::kO;
  float* sL = reinterpret_cast<float*>(gen + L::kL);
  float* sDl = reinterpret_cast<float*>(gen + L::kDl);
  const unsigned barKV = base + L::kBar;
  const unsigned full = barKV + 8;    // + 8 * stage
  const unsigned empty = barKV + 24;  // + 8 * stage
  const unsigned dqFull = barKV + 40;   // + 8 * consumer warpgroup: its dQ tile is staged
  const unsigned dqEmpty = barKV + 56;  // + 8 * consumer warpgroup: its staging buffer is free again

  const int tid = threadIdx.x;
#ifdef FFA_BWD_SM90_TRACE
  const unsigned trStart = (unsigned)clock64();
#endif
  // work item: ffa_bwd.cu's, shared (ffa_common.cuh)
  OrderedItem oi{};
  const BwdItem w = ORDERED ? ordered_item<kBM, kBN>(work, qRanges, kRanges, types, headsQ, headsKv, kvMajorItems, oi)
                            : bwd_item<kBM, kBN>(work, qRanges, kRanges, types, headsQ, headsKv, kvMajorItems);
  const Slice sl = w.sl;
  const int hk = w.hk, n0 = w.n0, n1 = w.n1, qLo = w.qLo, qHi = w.qHi, G = w.G, nQt = w.nQt, nSteps = w.nSteps;
#ifdef FFA_BWD_SM90_TRACE
  // this consumer warpgroup's record (its first word's index), or -1
  int trRec = -1;
  if (kD == 128 && !ORDERED && blockIdx.x % kTraceEvery == 0 && blockIdx.x / kTraceEvery < kTraceBlocks && tid >= 128 && (tid & 127) == 0) {
    trRec = (2 * (blockIdx.x / kTraceEvery) + (tid >> 7) - 1) * kTraceRecord;
    ffa_bwd_trace[trRec] = blockIdx.x + 1;
    ffa_bwd_trace[trRec + 1] = nSteps;
    ffa_bwd_trace[trRec + 2] = trStart;
  }
  if (!ORDERED && tid == 0 && blockIdx.x < kTraceGridMax) {
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    unsigned* tl = ffa_bwd_trace + kTraceTimeline + 4 * blockIdx.x;
    tl[0] = smid + 1;
    tl[1] = trStart;
    tl[3] = nSteps;
  }
#endif

  if (tid == 0) {
    mbar_init(barKV, 1);
    mbar_init(full, 2);  // the TMA thread's expect_tx arrival + the lse/Δ warp's arrival
    mbar_init(full + 8, 2);
    mbar_init(empty, 256);
    mbar_init(empty + 8, 256);
    mbar_init(dqFull, 128);  // every thread of the consumer warpgroup
    mbar_init(dqFull + 8, 128);
    mbar_init(dqEmpty, 1);  // the dQ thread
    mbar_init(dqEmpty + 8, 1);
    mbar_fence_init();
  }
  __syncthreads();

  // A step's q head and first row: head s / nQt and the (s % nQt)-th tile from qLo, or ORDERED
  // the walk's tile and head (StepWalk), which it then advances.
  const auto step_at = [&](int s, StepWalk& wk, int& h, int& m0) {
    if constexpr (ORDERED) {
      h = hk * G + wk.hh;
      m0 = oi.mFirst + oi.dir * kBM * wk.k;
      wk.next(G, nQt, oi.outer);
    } else {
      h = hk * G + s / nQt;
      m0 = qLo + (s % nQt) * kBM;
    }
  };

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
      for (int hf = 0; hf < HALVES; ++hf) {
        tma_load_3d(sK + hf * kBN * 128, tmK, barKV, hf * 64, hk, n0);
        tma_load_3d(sV + hf * kBN * 128, tmV, barKV, hf * 64, hk, n0);
      }
      StepWalk wk;
      for (int s = 0; s < nSteps; ++s) {
        const int stage = s & 1;
        if (s >= 2) mbar_wait(empty + 8 * stage, ((s >> 1) - 1) & 1);
        int h, m0;
        step_at(s, wk, h, m0);
        mbar_arrive_expect_tx(full + 8 * stage, 2 * L::kQO);
#pragma unroll
        for (int hf = 0; hf < HALVES; ++hf) {
          tma_load_3d(sQ + stage * L::kQO + hf * kBM * 128, tmQ, full + 8 * stage, hf * 64, h, m0);
          tma_load_3d(sO + stage * L::kQO + hf * kBM * 128, tmO, full + 8 * stage, hf * 64, h, m0);
        }
      }
    } else if (warp == 1) {
      StepWalk wk;
      for (int s = 0; s < nSteps; ++s) {
        const int stage = s & 1;
        if (s >= 2) mbar_wait(empty + 8 * stage, ((s >> 1) - 1) & 1);
        int h, m0;
        step_at(s, wk, h, m0);
#pragma unroll
        for (int r = lane; r < kBM; r += 32) {
          const int row = m0 + r;
          // Rows past the item's q range (another slice's, or past Tq) get P = 0 and Δ = 0: their
          // Δ may be NaN (a NaN row elsewhere), and 0 · NaN would leak it into this item's dK.
          const bool valid = (!ORDERED || row >= qLo) && row < qHi;
          const long long idx = (long long)h * tokensQ + row;
          sL[stage * kBM + r] = valid ? lseLog2[idx] : FFA_POS_INF;
          sDl[stage * kBM + r] = valid ? delta[idx] : 0.f;
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(full + 8 * stage);
      }
    } else if (tid == 64) {
      // The dQ thread (warp 2): each consumer warpgroup's staged dQ tile goes out as two TMA
      // tensor reduce-adds; the buffer is handed back once they have read it. ORDERED: it first
      // waits for the tile's turn (its counter equal to the step's rank) and passes the turn on
      // once the adds are complete.
      StepWalk wk;
      for (int s = 0; s < nSteps; ++s) {
        int h, m0;
        int* lock = nullptr;
        if constexpr (ORDERED) {
          lock = locks + (long long)(hk * G + wk.hh) * numLocks + oi.lockFirst + oi.dir * wk.k;
          const int rank = ranks[oi.rankOff + wk.k];
          step_at(s, wk, h, m0);
          while (ld_acquire_gpu(lock) != rank) {
          }
          fence_async_global();
        } else {
          step_at(s, wk, h, m0);
        }
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          // warpgroup c's 64 x 64 block: columns 64 c at D 128, rows 64 c at D 64
          const int x = kD == 128 ? c * 64 : 0;
          const int row = kBM == 128 ? m0 + c * 64 : m0;
          mbar_wait(dqFull + 8 * c, s & 1);
          tma_reduce_add_3d(tmDq, base + L::kDQ + c * L::kDQW, x, h, row);
          tma_reduce_add_3d(tmDq, base + L::kDQ + c * L::kDQW + L::kDQW / 2, x + 32, h, row);
          bulk_commit();
        }
        bulk_wait_read<1>();
        mbar_arrive(dqEmpty);
        bulk_wait_read<0>();
        mbar_arrive(dqEmpty + 8);
        if constexpr (ORDERED) {
          bulk_wait<0>();
          fence_async_global();
          red_release_gpu_add(lock, 1);
        }
      }
      bulk_wait<0>();  // the reduce-adds have landed before the block ends
    }
    return;
  }

  // ---------------------------------------------------------------------------------------------
  // Consumer warpgroups.
  regs_inc<240>();
  const int ct = tid - 128;
  // keys [64 wg, 64 wg + 64) of the tile. (Broadcasting it from lane 0, as CUTLASS does to make it
  // warp-uniform, made ptxas spill 8-60 bytes: the consumers are at 240 registers.)
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

  // A wgmma descriptor is (addr / 16) + (lbo / 16 << 16) in its low word and constants in its
  // high word (sbo, the swizzle mode); addr / 16 < 2^14 (shared addresses stay below 2^18 bytes),
  // so the low word of any operand is this block's base / 16 plus a per-warpgroup offset, a
  // per-stage offset and compile-time constants: 32-bit adds on uniform values, no shifts, masks
  // or ORs per wgmma.
  const unsigned b4 = base >> 4;
  const unsigned w4 = wg * (64 * 128 / 16);  // this warpgroup's first key row in K and V
  const auto ldesc = [](unsigned lo4, unsigned lbo, unsigned sbo) -> unsigned long long {
    return ((unsigned long long)((sbo >> 4) | (1u << 30)) << 32) | (unsigned long long)(lo4 + ((lbo >> 4) << 16));
  };

  float st[kBM / 8][4];
  float dp[kBM / 8][4];
  // acc = A_w Bᵀ over the head dim, one wgmma group: A is this warpgroup's rows of the K or V
  // tile (shared offset kvOff), B the Q or dO tile (qoOff) of step s's stage.
  const auto issue_kv_qo = [&](float (*acc)[4], unsigned kvOff, unsigned qoOff, int s) {
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kD / 16; ++ks) {
      const unsigned off = (ks & 3) * 32;
      const unsigned hfK = (ks >> 2) * kBN * 128 + off;
      const unsigned hfQ = (ks >> 2) * kBM * 128 + off;
      const unsigned long long da = ldesc(b4 + w4 + ((kvOff + hfK) >> 4), 16, 1024);
      const unsigned long long db = ldesc(b4 + (s & 1) * (L::kQO >> 4) + ((qoOff + hfQ) >> 4), 16, 1024);
      if constexpr (kBM == 64) {
        Wgmma<E>::ss64(acc, da, db, ks > 0 ? 1 : 0);
      } else {
        Wgmma<E>::ss128(acc, da, db, ks > 0 ? 1 : 0);
      }
    }
    wgmma_commit();
  };
  // acc += A B over the step's kBM q rows (the k dim), one wgmma group: A the packed fragments
  // ap or as (Pᵀ or dSᵀ), B the Q or dO tile (shared offset qoOff) of stage `stage`, read N-major.
  const auto issue_regs_qo = [&](float (*acc)[4], const unsigned (*a)[4], unsigned qoOff, int stage) {
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBM / 16; ++kk) {
      const unsigned long long db = ldesc(b4 + stage * (L::kQO >> 4) + ((qoOff + kk * 16 * 128) >> 4), kBM * 128, 1024);
      if constexpr (kD == 128) {
        Wgmma<E>::rs128(acc, a[kk], db);
      } else {
        Wgmma<E>::rs64(acc, a[kk], db);
      }
    }
    wgmma_commit();
  };
  // Sᵀ = K_w Qᵀ of step s into st (once the step's Q and dO have landed). The main loop also
  // issues it for s = nSteps, the step after the last, which waits for nothing.
  const auto issue_s = [&](int s) {
    if (s < nSteps) mbar_wait(full + 8 * (s & 1), (s >> 1) & 1);
    issue_kv_qo(st, L::kK, L::kQ, s);
  };
  // dPᵀ = V_w dOᵀ of step s into dp.
  const auto issue_dp = [&](int s) { issue_kv_qo(dp, L::kV, L::kO, s); };

  issue_s(0);
  wgmma_wait<0>();
  fence_regs<kBM / 8>(st);
  int qt = 0;  // the step's q tile, counted (s % nQt)
  StepWalk wk;  // ORDERED
  for (int s = 0; s < nSteps; ++s) {
    const int stage = s & 1;
    int m0;
    if constexpr (ORDERED) {
      m0 = oi.mFirst + oi.dir * kBM * wk.k;
      wk.next(G, nQt, oi.outer);
    } else {
      m0 = qLo + qt * kBM;
      if (++qt == nQt) qt = 0;
    }
    const int m1 = min(m0 + kBM, qHi);
    const float* cL = sL + stage * kBM;
    const float* cD = sDl + stage * kBM;
#ifdef FFA_BWD_SM90_TRACE
    const int trStep = trRec >= 0 && s < kTraceSteps ? trRec + kTraceHeader + s * kTraceEvents : -1;
#endif
    FFA_BWD_TRACE(0)

    // Sᵀ = K_w Qᵀ (issued behind the previous step's dQ, landed), dPᵀ = V_w dOᵀ: 64 keys x 64 q
    // rows per warpgroup. Pᵀ while dPᵀ still runs (softcap needs tanh' for dSᵀ: waits for it).
    issue_dp(s);
    FFA_BWD_TRACE(1)
    if (kWaitDp) {
      wgmma_wait<0>();
      fence_regs<kBM / 8>(dp);
    }

    // Pᵀ (and with softcap dSᵀ), ffa_bwd.cu's elementwise math (shared, ffa_common.cuh). Row (key)
    // = keyBase + 8 (e >> 1), column (q) = m0 + 8j + 2t + (e & 1).
    const bool fullTile = (m1 - m0 == kBM) && (!ORDERED || m0 >= qLo) && nw0 >= sl.rowStart(m1 - 1) && nw0 + 64 <= sl.rowEnd(m0);
    if constexpr (kWaitDp) {
      bwd_p<kBM / 8, SOFTCAP, ORDERED>(st, dp, cL, cD, fullTile, sl, keyBase, m0, m1, t, scaleLog2, softcapScale, qLo);
    } else {
      p_tile<kBM / 8, ORDERED>(st, cL, fullTile, sl, keyBase, m0, m1, t, scaleLog2, qLo);
    }
    unsigned ap[kBM / 16][4], as[kBM / 16][4];
#pragma unroll
    for (int kk = 0; kk < kBM / 16; ++kk) pack_a<E>(ap[kk], st, kk);
    FFA_BWD_TRACE(2)
    // dV += Pᵀ dO
    issue_regs_qo(dVacc, ap, L::kO, stage);
    FFA_BWD_TRACE(3)

    // dSᵀ = Pᵀ ∘ (dPᵀ − Δ) while dV runs
    if (!kWaitDp) {
      // Δ loaded before the wait, so that its shared-memory latency (long while the tensor cores
      // read their operands from shared memory) runs under dPᵀ and dV
      float2 d2[kBM / 8];
#pragma unroll
      for (int j = 0; j < kBM / 8; ++j) d2[j] = *reinterpret_cast<const float2*>(cD + 8 * j + 2 * t);
      wgmma_wait<1>();  // dPᵀ done
      fence_regs<kBM / 8>(dp);
      bwd_ds<kBM / 8>(st, dp, d2);
    }
    FFA_BWD_TRACE(4)
#pragma unroll
    for (int kk = 0; kk < kBM / 16; ++kk) pack_a<E>(as[kk], dp, kk);
    // dK += dSᵀ Q
    issue_regs_qo(dKacc, as, L::kQ, stage);
    FFA_BWD_TRACE(5)

    // dSᵀ to shared memory ([key][q], SW128, q in 64-column halves) while those run
    {
      const int r0 = wg * 64 + warp * 16 + g;
      unsigned char* dsGen = gen + L::kS + (s & 1) * L::kDS;
#pragma unroll
      for (int kk = 0; kk < kBM / 16; ++kk) {
        *reinterpret_cast<unsigned*>(dsGen + ds_off<kBM>(r0, 16 * kk + 2 * t)) = as[kk][0];
        *reinterpret_cast<unsigned*>(dsGen + ds_off<kBM>(r0 + 8, 16 * kk + 2 * t)) = as[kk][1];
        *reinterpret_cast<unsigned*>(dsGen + ds_off<kBM>(r0, 16 * kk + 8 + 2 * t)) = as[kk][2];
        *reinterpret_cast<unsigned*>(dsGen + ds_off<kBM>(r0 + 8, 16 * kk + 8 + 2 * t)) = as[kk][3];
      }
    }
    fence_async_smem();
    named_sync(1, 256);  // both warpgroups' dSᵀ written
    FFA_BWD_TRACE(6)

    // This warpgroup's 64 x 64 block of dQ = dS K over the 128 keys of the tile: columns
    // [64 wg, 64 wg + 64) at D 128 (K's half wg), rows [64 wg, 64 wg + 64) at D 64 (dSᵀ's half
    // wg). (A lambda called once, as in the code the GPU checks and timings ran: written inline,
    // NVVM numbers the loop's two counters the other way round and ptxas then emits ~430 of the
    // ~3,500 instructions differently, untested machine code.)
    float dqa[8][4];
    const auto issue_dq = [&]() {
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) {
        if constexpr (kD == 128) {
          Wgmma<E>::ss64tt(dqa, ldesc(b4 + (s & 1) * (L::kDS >> 4) + ((L::kS + kk * 16 * 128) >> 4), 64 * 128, 1024),
                           ldesc(b4 + wg * (kBN * 128 / 16) + ((L::kK + kk * 16 * 128) >> 4), kBN * 128, 1024), kk > 0 ? 1 : 0);
        } else {
          Wgmma<E>::ss64tt(dqa, ldesc(b4 + (s & 1) * (L::kDS >> 4) + wg * (kBN * 128 / 16) + ((L::kS + kk * 16 * 128) >> 4), 64 * 128, 1024),
                           ldesc(b4 + ((L::kK + kk * 16 * 128) >> 4), kBN * 128, 1024), kk > 0 ? 1 : 0);
        }
      }
      wgmma_commit();
    };
    issue_dq();
    FFA_BWD_TRACE(7)
    // dV and dK done (their register operands free, the stage's last readers of Q and dO), then
    // the next step's Sᵀ goes in behind this step's dQ. On the last step it reads a stale stage
    // and its result is dropped: issued unconditionally, the wgmma pipeline stays one ptxas does
    // not serialize.
    wgmma_wait<1>();
    fence_regs<kD / 8>(dVacc);
    fence_regs<kD / 8>(dKacc);
    mbar_arrive(empty + 8 * stage);
    FFA_BWD_TRACE(8)
    issue_s(s + 1);
    FFA_BWD_TRACE(9)
    wgmma_wait<1>();
    fence_regs<8>(dqa);
    FFA_BWD_TRACE(10)

    // dQ tile to shared memory once the dQ thread's last reduces have read it, then to that
    // thread (stage_dq: SW128 boxes, bank-conflict free). Rows past the step's q range go as
    // zeros.
    {
      unsigned char* stg = gen + L::kDQ + wg * L::kDQW;
      if (s >= 1) mbar_wait(dqEmpty + 8 * wg, (s - 1) & 1);
      const int r0 = kBM == 128 ? m0 + wg * 64 : m0;  // this block's first q row
      if (m1 - m0 == kBM && (!ORDERED || m0 >= qLo)) {
        stage_dq<false>(stg, dqa, warp, g, t, r0, m1, softmaxScale);
      } else {
        stage_dq<true, ORDERED>(stg, dqa, warp, g, t, r0, m1, softmaxScale, qLo);
      }
      fence_async_smem();
      mbar_arrive(dqFull + 8 * wg);
    }
    FFA_BWD_TRACE(11)
    wgmma_wait<0>();
    fence_regs<kBM / 8>(st);
    FFA_BWD_TRACE(12)
  }

  // epilogue: dK (x scale) and dV into the fp32 buffers
  add_dkdv<kD>(dKacc, dVacc, dk, dv, keyBase, n1, ldk, hk, t, softmaxScale);
#ifdef FFA_BWD_SM90_TRACE
  if (trRec >= 0) ffa_bwd_trace[trRec + 3] = (unsigned)clock64();
  if (!ORDERED && (tid == 128 || tid == 256) && blockIdx.x < kTraceGridMax) atomicMax(ffa_bwd_trace + kTraceTimeline + 4 * blockIdx.x + 2, (unsigned)clock64());
#endif
}

}  // namespace sm90bwd
}  // namespace ffa

// --------------------------------------------------------------------------------------------
// Entry points: ffa_bwd_sm90_{bf16,fp16}_d{128,64}[_softcap]. Block 384 threads, grid
// numWorkItems * headsKv, dynamic smem Smem<D>::kRequest bytes. q / k / v / dout as TMA maps
// (boxes of 64 columns x 1 head x blockM<D>() rows for q and dout, x 128 rows for k and v); the
// fp32 dq accumulator as one too, in the place of the mma.sync kernel's dq pointer (boxes of 32
// columns x 1 head x 64 rows, whatever D); last, kvMajorItems (0 to numWorkItems: the grid's
// split order, bwd_item).
// Compiled with -DFFA_BWD_SM90_ORDERED instead (a module of its own, compiled on the first
// deterministic launch at head dim 128, so the default module's code does not change):
// ffa_bwd_sm90_ordered_*_d128, the same arguments on the host's ordered work records
// (kOrderedRecord ints) but kvMajorItems, then ranks, the tile counters (int32 [Hq][numLocks],
// zero), numLocks and last kvMajorItems (the split order over this launch's items).
// Compiled with -DFFA_BWD_SM90_TRACE instead (a diagnostic module, CudaFfaBackward's traceSteps):
// the same entry points, the head-dim-128 ones also writing the step trace (ffa_bwd_trace, above).

#define FFA_BWD_SM90_PARAMS                                                                                                 \
  const __grid_constant__ ffa::sm90::TmaMap tmQ, const __grid_constant__ ffa::sm90::TmaMap tmK,                            \
      const __grid_constant__ ffa::sm90::TmaMap tmV, const __grid_constant__ ffa::sm90::TmaMap tmO,                        \
      const float* __restrict__ lseLog2, const float* __restrict__ delta, const __grid_constant__ ffa::sm90::TmaMap tmDq, \
      float* __restrict__ dk, float* __restrict__ dv, const int* __restrict__ qRanges, const int* __restrict__ kRanges,   \
      const int* __restrict__ types, const int* __restrict__ work, int headsQ, int headsKv, int tokensQ, float scaleLog2,  \
      float softmaxScale, float softcapScale
#define FFA_BWD_SM90_ARGS                                                                                                   \
  &tmQ, &tmK, &tmV, &tmO, lseLog2, delta, &tmDq, dk, dv, qRanges, kRanges, types, work, headsQ, headsKv, tokensQ,          \
      scaleLog2, softmaxScale, softcapScale

#ifndef FFA_BWD_SM90_ORDERED
#define FFA_BWD_SM90_ENTRY(NAME, E, D, SOFTCAP)                                                                          \
  extern "C" __global__ void __launch_bounds__(ffa::sm90bwd::kThreads, 1) NAME(FFA_BWD_SM90_PARAMS, int kvMajorItems) {  \
    ffa::sm90bwd::bwd_kernel<E, D, SOFTCAP>(FFA_BWD_SM90_ARGS, kvMajorItems, nullptr, nullptr, 0);                        \
  }

FFA_BWD_SM90_ENTRY(ffa_bwd_sm90_bf16_d128, ffa::Bf16, 128, false)
FFA_BWD_SM90_ENTRY(ffa_bwd_sm90_bf16_d128_softcap, ffa::Bf16, 128, true)
FFA_BWD_SM90_ENTRY(ffa_bwd_sm90_fp16_d128, ffa::Fp16, 128, false)
FFA_BWD_SM90_ENTRY(ffa_bwd_sm90_fp16_d128_softcap, ffa::Fp16, 128, true)
FFA_BWD_SM90_ENTRY(ffa_bwd_sm90_bf16_d64, ffa::Bf16, 64, false)
FFA_BWD_SM90_ENTRY(ffa_bwd_sm90_bf16_d64_softcap, ffa::Bf16, 64, true)
FFA_BWD_SM90_ENTRY(ffa_bwd_sm90_fp16_d64, ffa::Fp16, 64, false)
FFA_BWD_SM90_ENTRY(ffa_bwd_sm90_fp16_d64_softcap, ffa::Fp16, 64, true)
#else
#define FFA_BWD_SM90_ORDERED_ENTRY(NAME, E, SOFTCAP)                                                                     \
  extern "C" __global__ void __launch_bounds__(ffa::sm90bwd::kThreads, 1)                                                \
      NAME(FFA_BWD_SM90_PARAMS, const int* __restrict__ ranks, int* __restrict__ locks, int numLocks, int kvMajorItems) { \
    ffa::sm90bwd::bwd_kernel<E, 128, SOFTCAP, true>(FFA_BWD_SM90_ARGS, kvMajorItems, ranks, locks, numLocks);             \
  }

FFA_BWD_SM90_ORDERED_ENTRY(ffa_bwd_sm90_ordered_bf16_d128, ffa::Bf16, false)
FFA_BWD_SM90_ORDERED_ENTRY(ffa_bwd_sm90_ordered_bf16_d128_softcap, ffa::Bf16, true)
FFA_BWD_SM90_ORDERED_ENTRY(ffa_bwd_sm90_ordered_fp16_d128, ffa::Fp16, false)
FFA_BWD_SM90_ORDERED_ENTRY(ffa_bwd_sm90_ordered_fp16_d128_softcap, ffa::Fp16, true)
#endif
