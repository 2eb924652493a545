// Device helpers shared by the flex-flash-attention kernels (ffa_fwd.cu, ffa_fwd_sm90.cu,
// ffa_bwd.cu, ffa_bwd_sm90.cu): element types, cp.async, ldmatrix, the shared-memory swizzle, tile
// loads, fp32 reductions, a slice's per-row key interval, and the register-level pieces of the
// kernels that the mma.sync and the Hopper versions have in common (work-item prologues, mask,
// online softmax, forward epilogues, backward P / dS). Included by all four; the launchers inline
// it into the source text they hand to NVRTC (src/kernels/cuda/source.ts), so the compile-cache key
// covers it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

// ±inf without <math.h> (NVRTC has no INFINITY macro).
#define FFA_POS_INF (__int_as_float(0x7f800000))
#define FFA_NEG_INF (__int_as_float(0xff800000))

namespace ffa {

// --------------------------------------------------------------------------------------------
// Element types: how to pack two floats and which mma to issue.

struct Bf16 {
  using T = __nv_bfloat16;
  static __device__ __forceinline__ float to_float(T x) { return __bfloat162float(x); }
  static __device__ __forceinline__ T from_float(float x) { return __float2bfloat16_rn(x); }
  static __device__ __forceinline__ unsigned pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&v);
  }
  static __device__ __forceinline__ void mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

struct Fp16 {
  using T = __half;
  static __device__ __forceinline__ float to_float(T x) { return __half2float(x); }
  static __device__ __forceinline__ T from_float(float x) { return __float2half_rn(x); }
  static __device__ __forceinline__ unsigned pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&v);
  }
  static __device__ __forceinline__ void mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// --------------------------------------------------------------------------------------------
// Shared-memory helpers: cp.async, ldmatrix, the XOR swizzle of 16-byte chunks.

__device__ __forceinline__ unsigned smem_u32(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async_16(unsigned dst, const void* src, bool valid) {
  int bytes = valid ? 16 : 0;  // 0 source bytes: the 16 destination bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
// The 4-byte variant, for fp32 rows (lse, Δ) of the backward.
__device__ __forceinline__ void cp_async_4(unsigned dst, const void* src, bool valid) {
  int bytes = valid ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// 2^x with the MUFU instruction (flush-to-zero; 2^-inf = +0), as FA does.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ void ldmatrix_x4(unsigned* r, unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned* r, unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// fp32 reduction of two adjacent floats (8-byte aligned) into global memory.
__device__ __forceinline__ void red_add2(float* p, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(p), "f"(a), "f"(b) : "memory");
#else
  atomicAdd(p, a);
  atomicAdd(p + 1, b);
#endif
}

// Element offset of (row, col) in a [rows][D] tile whose 16-byte chunks are XOR-swizzled by
// row % 8, so that the 8 rows an ldmatrix reads hit 8 different bank groups. col % 8 == 0.
template <int D>
__device__ __forceinline__ int swz(int row, int col) {
  return row * D + ((((col >> 3) ^ (row & 7))) << 3);
}

// Copies rows [0, ROWS) x [0, D) of a token-major tensor slab into a swizzled smem tile; rows at
// or past nValid are zero-filled (never read from global memory).
template <int ROWS, int D, int NT, typename T>
__device__ __forceinline__ void load_tile(T* smem, const T* g, long long ld, int nValid, int tid) {
  constexpr int CHUNKS = D / 8;
  static_assert((ROWS * CHUNKS) % NT == 0, "tile chunks must divide evenly among the threads");
#pragma unroll
  for (int i = 0; i < ROWS * CHUNKS / NT; ++i) {
    const int c = tid + i * NT;
    const int r = c / CHUNKS;
    const int ch = c % CHUNKS;
    const bool valid = r < nValid;
    const T* src = valid ? g + r * ld + ch * 8 : g;
    cp_async_16(smem_u32(smem + swz<D>(r, ch * 8)), src, valid);
  }
}

// --------------------------------------------------------------------------------------------
// The per-row key interval of a slice (mask-type.ts rowKeyStart / rowKeyEnd), clipped to the
// slice's k range. Empty when end <= start.

struct Slice {
  int qs, qe, ks, ke, type;
  __device__ __forceinline__ int rowStart(int q) const {
    int s = (type & 2) ? ks + (q - qs) : ks;
    return max(s, ks);
  }
  __device__ __forceinline__ int rowEnd(int q) const {
    int e = (type & 1) ? ke - (qe - q - 1) : ke;
    return min(e, ke);
  }
};

}  // namespace ffa

// --------------------------------------------------------------------------------------------
// max_logits (04 §1.9): the per-head max of the logit z over covered cells, max-merged into a
// global fp32 [Hq] buffer by every forward main kernel that is handed one.

namespace ffa {

// Float max through integer atomics, valid for any non-NaN value already in *addr (-inf
// included): non-negative floats order like their bits as signed ints, negative floats order
// reversed like their bits as unsigned ints, so one of the two integer atomics does the job.
__device__ __forceinline__ void atomic_max_float(float* addr, float v) {
  if (!(__float_as_int(v) & 0x80000000)) {
    atomicMax(reinterpret_cast<int*>(addr), __float_as_int(v));
  } else {
    atomicMin(reinterpret_cast<unsigned*>(addr), __float_as_uint(v));
  }
}

// Folds one warp's row maxima into maxLogits[head]. Layout of the mma C fragments: lane
// (g = lane/4) holds rows g and g+8 of the warp's 16-row slab (rowMax0, rowMax1), and after the
// online softmax's quad shuffles every lane of a quad holds its rows' full maxima. The maxima are
// in "s units" (raw q·k, or tanh(q·k·scale/cap) under softcap); `unit` (> 0: the softmax scale,
// or the cap) turns them into z, and max commutes with that positive scaling. rowValid0/1 must be
// false for rows past the tile's valid end (they see zero-filled q rows). Whole-warp call.
__device__ __forceinline__ void warp_max_logits(float rowMax0, float rowMax1, bool rowValid0, bool rowValid1, float unit,
                                                int head, float* maxLogits) {
  float m = fmaxf(rowValid0 ? rowMax0 : FFA_NEG_INF, rowValid1 ? rowMax1 : FFA_NEG_INF);
#pragma unroll
  for (int off = 16; off >= 4; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
  if ((threadIdx.x & 31) == 0 && m != FFA_NEG_INF) atomic_max_float(maxLogits + head, m * unit);
}

}  // namespace ffa

// --------------------------------------------------------------------------------------------
// Register-level pieces of the main kernels, shared because the mma.sync kernels (ffa_fwd.cu,
// ffa_bwd.cu) and the Hopper ones (ffa_fwd_sm90.cu, ffa_bwd_sm90.cu) run the same math on the
// same fragment layout. A warp's register tile is a set of m16n8 C fragments `float x[NJ][4]`:
// thread (g = lane/4, t = lane%4) holds rows g (e = 0, 1) and g + 8 (e = 2, 3), columns
// 8j + 2t + (e & 1). A thread's two rows are rowBase and rowBase + 8.

namespace ffa {

// Shared: every main kernel reads its slice from the same (qRanges, kRanges, types) table.
__device__ __forceinline__ Slice load_slice(const int* qRanges, const int* kRanges, const int* types, int idx) {
  Slice sl;
  sl.qs = qRanges[2 * idx];
  sl.qe = qRanges[2 * idx + 1];
  sl.ks = kRanges[2 * idx];
  sl.ke = kRanges[2 * idx + 1];
  sl.type = types[idx];
  return sl;
}

// Shared: block `block` of a grid of `blocks` = items x `heads` blocks as (item, head), in one of
// two orders. HEAD_MAJOR: item block % items of head block / items, so that the blocks running at
// once share heads (and so their K / V, or Q / dO rows, in the L2); else item block / heads of
// head block % heads.
template <bool HEAD_MAJOR>
__device__ __forceinline__ void block_item_head(unsigned block, unsigned blocks, int heads, int& item, int& head) {
  if constexpr (HEAD_MAJOR) {
    const unsigned items = blocks / heads;
    head = block / items;
    item = block % items;
  } else {
    head = block % heads;
    item = block / heads;
  }
}

// Shared: both forwards run the same host work list of (slice, q-tile start) pairs, one block per
// (item, q head) (fwd_item says in which order). q rows [m0, m1), keys [kLo, kHi) (what any row
// of the tile sees), [allStart, allEnd) (what every row sees: tiles inside need no mask).
struct FwdItem {
  Slice sl;
  int h, hk, m0, m1, kLo, kHi, allStart, allEnd, nTiles;
};
// The item of slice `sl`, q head h and q tile start m0 (the persistent Hopper forward's consumers
// get these three from their producer).
template <int BM, int BN>
__device__ __forceinline__ FwdItem fwd_item_of(const Slice& sl, int h, int m0, int headsQ, int headsKv) {
  FwdItem w;
  w.h = h;
  w.m0 = m0;
  w.sl = sl;
  w.m1 = min(w.m0 + BM, w.sl.qe);
  w.hk = w.h / (headsQ / headsKv);
  w.kLo = w.sl.rowStart(w.m0);
  w.kHi = w.sl.rowEnd(w.m1 - 1);
  w.allStart = w.sl.rowStart(w.m1 - 1);
  w.allEnd = w.sl.rowEnd(w.m0);
  w.nTiles = w.kHi > w.kLo ? (w.kHi - w.kLo + BN - 1) / BN : 0;
  return w;
}
// `block`: the block's index in the one-block-per-item launch (blockIdx.x), or the virtual block a
// persistent block is on, of `blocks` (items x headsQ), in block_item_head's order HEAD_MAJOR (the
// blocks running at once then share one kv head's K / V).
template <int BM, int BN, bool HEAD_MAJOR = false>
__device__ __forceinline__ FwdItem fwd_item(const int* work, const int* qRanges, const int* kRanges, const int* types,
                                            int headsQ, int headsKv, unsigned block, unsigned blocks) {
  int h, item;
  block_item_head<HEAD_MAJOR>(block, blocks, headsQ, item, h);
  const int sliceIdx = work[2 * item];
  const int m0 = work[2 * item + 1];
  return fwd_item_of<BM, BN>(load_slice(qRanges, kRanges, types, sliceIdx), h, m0, headsQ, headsKv);
}
template <int BM, int BN>
__device__ __forceinline__ FwdItem fwd_item(const int* work, const int* qRanges, const int* kRanges, const int* types,
                                            int headsQ, int headsKv) {
  return fwd_item<BM, BN>(work, qRanges, kRanges, types, headsQ, headsKv, blockIdx.x, gridDim.x);
}

// Shared: both backwards run the same host work list of (slice, k-tile start, qLo, qHi), one block
// per (item, kv head) (bwd_item says in which order) over G q heads x nQt q tiles of BM rows =
// nSteps steps.
struct BwdItem {
  Slice sl;
  int hk, n0, n1, qLo, qHi, G, nQt, nSteps;
};
// The backward's blocks in a split order: the first `kvMajorItems` items (the longest: the host
// sorts them longest first) kv-head-major (block_item_head's head-major order over blocks
// [0, kvMajorItems x headsKv): the blocks running at once share kv heads, and so q heads' rows in
// the L2), the rest item-major after them (item kvMajorItems + b / headsKv of kv head b % headsKv,
// longest first across kv heads, so that the grid's tail is short). kvMajorItems = items: all
// kv-major; 0: all item-major (a literal 0 compiles to item-major alone).
// This block's item and kv head in that order (also the ordered entries' blocks: an item's block
// comes after its kv head's blocks of every earlier item, whatever the split).
__device__ __forceinline__ void split_item_head(int headsKv, unsigned kvMajorItems, int& item, int& hk) {
  const unsigned kvMajorBlocks = kvMajorItems * headsKv;
  if (blockIdx.x < kvMajorBlocks) {
    block_item_head<true>(blockIdx.x, kvMajorBlocks, headsKv, item, hk);
  } else {
    block_item_head<false>(blockIdx.x - kvMajorBlocks, gridDim.x - kvMajorBlocks, headsKv, item, hk);
    item += kvMajorItems;
  }
}
template <int BM, int BN>
__device__ __forceinline__ BwdItem bwd_item(const int* work, const int* qRanges, const int* kRanges, const int* types,
                                            int headsQ, int headsKv, unsigned kvMajorItems) {
  BwdItem w;
  int item;
  split_item_head(headsKv, kvMajorItems, item, w.hk);
  const int sliceIdx = work[4 * item];
  w.n0 = work[4 * item + 1];
  w.qLo = work[4 * item + 2];
  w.qHi = work[4 * item + 3];
  w.sl = load_slice(qRanges, kRanges, types, sliceIdx);
  w.n1 = min(w.n0 + BN, w.sl.ke);
  w.G = headsQ / headsKv;
  w.nQt = (w.qHi - w.qLo + BM - 1) / BM;
  w.nSteps = w.G * w.nQt;
  return w;
}

// Shared: zero-initialised accumulators (O in the forwards, dK / dV in the backwards).
template <int NJ>
__device__ __forceinline__ void zero_frags(float (*x)[4]) {
#pragma unroll
  for (int j = 0; j < NJ; ++j) x[j][0] = x[j][1] = x[j][2] = x[j][3] = 0.f;
}

// Shared: the 16-bit A fragment (m16 x k16) of k-step kk from C fragments 2kk and 2kk + 1, how
// every kernel feeds P / dS from registers back into the tensor cores.
template <typename E>
__device__ __forceinline__ void pack_a(unsigned* a, const float (*c)[4], int kk) {
  a[0] = E::pack(c[2 * kk][0], c[2 * kk][1]);
  a[1] = E::pack(c[2 * kk][2], c[2 * kk][3]);
  a[2] = E::pack(c[2 * kk + 1][0], c[2 * kk + 1][1]);
  a[3] = E::pack(c[2 * kk + 1][2], c[2 * kk + 1][3]);
}

// --------------------------------------------------------------------------------------------
// Forward pieces (ffa_fwd.cu, ffa_fwd_sm90.cu): S is one warp's 16 x BN tile, O its 16 x D tile.

// Shared: this thread's two rows' key intervals.
__device__ __forceinline__ void row_intervals(const Slice& sl, int rowBase, int* rs, int* re) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    rs[r] = sl.rowStart(rowBase + 8 * r);
    re[r] = sl.rowEnd(rowBase + 8 * r);
  }
}

// Shared: s = tanh(s · softcapScale) over a tile (softcap; the cap itself is folded into `unit`).
template <int NJ>
__device__ __forceinline__ void softcap_tile(float (*s)[4], float softcapScale) {
#pragma unroll
  for (int j = 0; j < NJ; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[j][e] = tanhf(s[j][e] * softcapScale);
}

// Shared: sets S entries outside each row's interval [rs, re) to -inf; keyBase = the tile's first key.
template <int BN>
__device__ __forceinline__ void mask_tile(float (*s)[4], int keyBase, int t, const int* rs, const int* re) {
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = keyBase + j * 8 + 2 * t + (e & 1);
      const int r = e >> 1;
      if (key < rs[r] || key >= re[r]) s[j][e] = FFA_NEG_INF;
    }
  }
}

// Shared: one online-softmax step without touching O. Row max in s units over the quad; S becomes
// P = exp2(s · scaleLog2 − max · scaleLog2) in place; rowSum is rescaled by
// alpha = exp2((oldMax − max) · scaleLog2) (0 when the old max is -inf), which is returned in
// `alpha` for O (rescale_o). A row whose max is still -inf uses 0 as the max, so its p are 0.
// The Hopper forward rescales O later, once the P V product of the previous tile has landed.
template <int BN>
__device__ __forceinline__ void softmax_p(float (*s)[4], float* rowMax, float* rowSum, float scaleLog2, float* alpha) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = rowMax[r];
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float mUse = mx == FFA_NEG_INF ? 0.f : mx;
    alpha[r] = fast_exp2((rowMax[r] - mUse) * scaleLog2);  // 0 when the old max is -inf
    rowMax[r] = mx;
    const float mScaled = mUse * scaleLog2;
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
      const float p0 = fast_exp2(fmaf(s[j][2 * r], scaleLog2, -mScaled));
      const float p1 = fast_exp2(fmaf(s[j][2 * r + 1], scaleLog2, -mScaled));
      s[j][2 * r] = p0;
      s[j][2 * r + 1] = p1;
      sum += p0 + p1;
    }
    rowSum[r] = rowSum[r] * alpha[r] + sum;
  }
}

// Shared: O *= alpha per row (the factor softmax_p returned).
template <int D>
__device__ __forceinline__ void rescale_o(float (*o)[4], const float* alpha) {
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      o[j][2 * r] *= alpha[r];
      o[j][2 * r + 1] *= alpha[r];
    }
}

// Shared: one online-softmax step (softmax_p, then O rescaled at once).
template <int BN, int D>
__device__ __forceinline__ void online_softmax(float (*s)[4], float (*o)[4], float* rowMax, float* rowSum,
                                               float scaleLog2) {
  float alpha[2];
  softmax_p<BN>(s, rowMax, rowSum, scaleLog2, alpha);
  rescale_o<D>(o, alpha);
}

// Shared: finalize after the main loop. Row sums across the quad, O *= 1/sum, rowLse = natural-log
// lse (max in s units times `unit`); an empty row (sum exactly 0: no key seen) gets O = 0 and
// lse = -inf. A NaN sum (a NaN or an infinite logit among the row's keys) is not an empty row: it
// gives O = NaN and lse = NaN, as the arithmetic says (issue 9: a diverging run must see NaN).
template <int D>
__device__ __forceinline__ void finalize_rows(float (*o)[4], const float* rowSum, const float* rowMax, float unit,
                                              float* rowLse) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = rowSum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const bool empty = sum == 0.f;
    const float inv = empty ? 0.f : 1.f / sum;
    rowLse[r] = empty ? FFA_NEG_INF : rowMax[r] * unit + logf(sum);
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      o[j][2 * r] *= inv;
      o[j][2 * r + 1] *= inv;
    }
  }
}

// Shared: the direct epilogue (q ranges pairwise disjoint): out rows (input type) and lse stored
// as they are, rows at or past m1 skipped.
template <typename E, int D>
__device__ __forceinline__ void store_rows(const float (*o)[4], const float* rowLse, typename E::T* out, float* lse,
                                           int rowBase, int m1, int h, int headsQ, int t) {
  const long long ldq = (long long)headsQ * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = rowBase + 8 * r;
    if (row < m1) {
      typename E::T* dst = out + (long long)row * ldq + (long long)h * D + 2 * t;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) *reinterpret_cast<unsigned*>(dst + 8 * j) = E::pack(o[j][2 * r], o[j][2 * r + 1]);
      if (t == 0) lse[(long long)row * headsQ + h] = rowLse[r];
    }
  }
}

// Shared: log(exp(a) + exp(b)) without overflow; -inf is the identity, and a NaN on either side
// gives NaN (fmaxf / fminf alone would drop it).
__device__ __forceinline__ float log_add_exp(float a, float b) {
  if (a != a || b != b) return a + b;
  if (a == FFA_NEG_INF) return b;
  if (b == FFA_NEG_INF) return a;
  const float hi = fmaxf(a, b);
  const float lo = fminf(a, b);
  return hi + log1pf(expf(lo - hi));
}

// Shared: the merge epilogue (q ranges may overlap). The threads that `sync` joins cover rows
// [r0, r1); `leader` (one of them) takes the spin locks of the aligned LOCK_ROWS-row blocks those
// rows touch (lower index first; lock array [ceil(Tq / LOCK_ROWS) + 1, Hq]), then every thread
// LSE-merges its rows into the fp32 out and lse, and the leader unlocks. A side with lse = -inf
// has weight 0 and its out is never read.
template <int D, int LOCK_ROWS, typename Sync>
__device__ __forceinline__ void merge_rows(const float (*o)[4], const float* rowLse, float* out, float* lse, int* locks,
                                           int r0, int r1, int rowBase, int h, int headsQ, int t, bool leader,
                                           Sync sync) {
  const long long ldq = (long long)headsQ * D;
  int* lock0 = locks + (r0 / LOCK_ROWS) * headsQ + h;
  int* lock1 = locks + ((r1 - 1) / LOCK_ROWS) * headsQ + h;
  if (leader) {
    while (atomicCAS(lock0, 0, 1) != 0) {
    }
    if (lock1 != lock0) {
      while (atomicCAS(lock1, 0, 1) != 0) {
      }
    }
    __threadfence();
  }
  sync();
  float prevLse[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = rowBase + 8 * r;
    prevLse[r] = row < r1 ? __ldcg(lse + (long long)row * headsQ + h) : FFA_NEG_INF;
  }
  __syncwarp();  // the quad reads lse before its t == 0 thread overwrites it
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = rowBase + 8 * r;
    if (row >= r1 || rowLse[r] == FFA_NEG_INF) continue;  // nothing to add
    float* dst = out + (long long)row * ldq + (long long)h * D + 2 * t;
    const float lp = prevLse[r];
    const float lc = rowLse[r];
    if (lp == FFA_NEG_INF) {
#pragma unroll
      for (int j = 0; j < D / 8; ++j) __stcg(reinterpret_cast<float2*>(dst + 8 * j), make_float2(o[j][2 * r], o[j][2 * r + 1]));
      if (t == 0) __stcg(lse + (long long)row * headsQ + h, lc);
    } else {
      const float merged = log_add_exp(lp, lc);
      const float wp = expf(lp - merged);
      const float wc = expf(lc - merged);
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        const float2 prev = __ldcg(reinterpret_cast<const float2*>(dst + 8 * j));
        __stcg(reinterpret_cast<float2*>(dst + 8 * j),
               make_float2(wp * prev.x + wc * o[j][2 * r], wp * prev.y + wc * o[j][2 * r + 1]));
      }
      if (t == 0) __stcg(lse + (long long)row * headsQ + h, merged);
    }
  }
  __threadfence();
  sync();
  if (leader) {
    if (lock1 != lock0) atomicExch(lock1, 0);
    atomicExch(lock0, 0);
  }
}

// --------------------------------------------------------------------------------------------
// Backward pieces (ffa_bwd.cu, ffa_bwd_sm90.cu): Sᵀ / dPᵀ are one warp's 16 keys x (8 NJ) q
// columns; the thread's keys are keyBase and keyBase + 8, column c's q row is m0 + c; cL / cD
// are the step's lseLog2 / Δ rows in shared memory.

// Shared: Pᵀ = exp2(x · scaleLog2 − lseLog2) with x = s (tanh(s · softcapScale) under SOFTCAP),
// zeroed outside the mask unless the tile is `full`, and dSᵀ = P (dP − Δ) [(1 − x²)] into dp, in
// one pass once dPᵀ is there (the mma.sync kernel always; the Hopper one where it waits for dPᵀ
// first, under softcap and at head dim 64; otherwise it takes p_tile and bwd_ds, ffa_bwd_sm90.cu).
// LOWER: rows below mLo are outside the mask too (the Hopper kernel's ordered deterministic mode,
// whose 64-row steps need not start at the item's qLo).
template <int NJ, bool SOFTCAP, bool LOWER = false>
__device__ __forceinline__ void bwd_p(float (*st)[4], float (*dp)[4], const float* cL, const float* cD, bool full,
                                      const Slice& sl, int keyBase, int m0, int m1, int t, float scaleLog2,
                                      float softcapScale, int mLo = 0) {
#pragma unroll
  for (int j = 0; j < NJ; ++j) {
    // the two columns' lseLog2 (and Δ) in one 8-byte shared-memory load (cL / cD are 8-byte
    // aligned in both kernels and 8j + 2t is even)
    const float2 l2 = *reinterpret_cast<const float2*>(cL + 8 * j + 2 * t);
    const float2 d2 = *reinterpret_cast<const float2*>(cD + 8 * j + 2 * t);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int c = 8 * j + 2 * t + (e & 1);
      float x = st[j][e];
      if (SOFTCAP) x = tanhf(x * softcapScale);
      float p = fast_exp2(fmaf(x, scaleLog2, -((e & 1) ? l2.y : l2.x)));
      if (!full) {
        const int key = keyBase + 8 * (e >> 1);
        const int qq = m0 + c;
        const bool ok = qq < m1 && (!LOWER || qq >= mLo) && key >= sl.rowStart(qq) && key < sl.rowEnd(qq);
        if (!ok) p = 0.f;
      }
      st[j][e] = p;
      float ds = p * (dp[j][e] - ((e & 1) ? d2.y : d2.x));
      if (SOFTCAP) ds *= 1.f - x * x;
      dp[j][e] = ds;
    }
  }
}

// Shared: dSᵀ = Pᵀ ∘ (dPᵀ − Δ) into dp, for a tile whose Pᵀ is in st (no softcap); d2[j] holds
// the Δ of columns 8j + 2t and 8j + 2t + 1, loaded by the caller ahead of dPᵀ's wait.
template <int NJ>
__device__ __forceinline__ void bwd_ds(const float (*st)[4], float (*dp)[4], const float2 (&d2)[NJ]) {
#pragma unroll
  for (int j = 0; j < NJ; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) dp[j][e] = st[j][e] * (dp[j][e] - ((e & 1) ? d2[j].y : d2[j].x));
  }
}

// Shared: the backward epilogue. dK (x softmaxScale) and dV rows of this thread's keys below n1
// reduced into the fp32 dk / dv (row stride ldk = Hkv * D; several slices may share k rows).
template <int D>
__device__ __forceinline__ void add_dkdv(const float (*dKacc)[4], const float (*dVacc)[4], float* dk, float* dv,
                                         int keyBase, int n1, long long ldk, int hk, int t, float softmaxScale) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = keyBase + 8 * r;
    if (key < n1) {
      float* dkDst = dk + (long long)key * ldk + (long long)hk * D + 2 * t;
      float* dvDst = dv + (long long)key * ldk + (long long)hk * D + 2 * t;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        red_add2(dkDst + 8 * j, dKacc[j][2 * r] * softmaxScale, dKacc[j][2 * r + 1] * softmaxScale);
        red_add2(dvDst + 8 * j, dVacc[j][2 * r], dVacc[j][2 * r + 1]);
      }
    }
  }
}

}  // namespace ffa
