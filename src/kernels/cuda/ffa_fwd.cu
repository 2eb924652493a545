// Flex-flash-attention forward, first CUDA version (sm_80+ tensor cores: mma.sync m16n8k16).
//
// Device code only: compiled at run time by NVRTC (src/kernels/cuda/ffa-forward.ts) and by nvcc in
// the CI check. No host code, no <cuda_runtime.h>-only features.
//
// Layout (token-major): q [Tq, Hq, D], k/v [Tk, Hkv, D], out [Tq, Hq, D], lse [Tq, Hq] fp32.
// Query head h reads kv head h / (Hq / Hkv).
//
// One launch covers the whole slice list. The pieces, in the FA3 shape:
//   1. tile scheduler  - the host builds a work list of (slice, q-tile start) pairs (empty tiles
//                        already dropped, longest first); block b runs work item b / Hq for
//                        q head b % Hq (consecutive blocks share a kv head: L2 reuse).
//   2. tile mask       - every q row sees one key interval [rowKeyStart, rowKeyEnd) per slice
//                        (mask-type.ts). The q tile iterates the k tiles between the first row's
//                        start and the last row's end; a k tile is masked only when it is not
//                        inside every row's interval (diagonal / boundary tiles).
//   3. main loop       - Q in registers (ldmatrix), K/V tiles double-buffered with cp.async into
//                        XOR-swizzled shared memory, S = Q K^T and O += P V with mma.sync
//                        (fp32 accumulation), online softmax in fp32 with exp2 and the scale
//                        folded into one FFMA, P rounded to the input type for P V.
//   4. epilogue        - kDirect: q ranges are pairwise disjoint, every output row is produced
//                        by exactly one tile: out (input type) and lse are stored directly.
//                        kMerge: q ranges may overlap: the tile takes a spin lock per
//                        (aligned BM-row block, head) and LSE-merges into an fp32 out buffer and
//                        lse; ffa_fwd_finalize_* then casts and zero-fills rows with lse = -inf.
//   5. side kernels    - ffa_fwd_fill_rows (rows no tile covers: out = 0, lse = -inf),
//                        ffa_fwd_lse_init (lse = -inf before a merge launch, max_logits = -inf
//                        before a fresh max), finalize; ffa_fwd_post_* (after everything above:
//                        LSE-merge into caller accumulators, then the sink) works on final
//                        out/lse buffers only, so it serves any main kernel.
//   max_logits         - with a non-null maxLogits pointer the main kernel max-merges each warp's
//                        row maxima into maxLogits[h] (warp_max_logits, ffa_common.cuh).
//
// -inf rules (04 §1.6/§1.7): a row with no key keeps max = -inf; exponents then use 0 as the
// max, so p = 0, sum = 0, out = 0, lse = -inf. In the merge, a side with lse = -inf has weight 0
// and its out is never read.

#include "ffa_common.cuh"

namespace ffa {

// --------------------------------------------------------------------------------------------
// 1 + 3 + 4. The forward kernel: BM = 16 * NWARPS q rows per block (16 per warp), BN keys per
// k tile, head dim D. The work-item prologue, the tile mask (2.; the per-row interval itself is
// Slice), the online softmax, the finalize and both epilogues are shared with ffa_fwd_sm90.cu and
// live in ffa_common.cuh.

template <typename E, int D, int BN, int NWARPS, bool kMerge>
__device__ __forceinline__ void fwd_kernel(const typename E::T* __restrict__ q, const typename E::T* __restrict__ k,
                                           const typename E::T* __restrict__ v, void* __restrict__ outPtr,
                                           float* __restrict__ lse, const int* __restrict__ qRanges,
                                           const int* __restrict__ kRanges, const int* __restrict__ types,
                                           const int* __restrict__ work, int* __restrict__ locks, int headsQ,
                                           int headsKv, float scaleLog2, float unit, float softcapScale,
                                           float* __restrict__ maxLogits) {
  using T = typename E::T;
  constexpr int BM = 16 * NWARPS;
  constexpr int NT = 32 * NWARPS;
  extern __shared__ __align__(128) unsigned char smemRaw[];
  T* sQ = reinterpret_cast<T*>(smemRaw);
  T* sK = sQ + BM * D;      // 2 stages
  T* sV = sK + 2 * BN * D;  // 2 stages

  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int g = lane >> 2;
  const int t = lane & 3;

  // ---- 1. work item -> (slice, q tile [m0, m1), head, k range [kLo, kHi) the tile's rows can see)
  const FwdItem w = fwd_item<BM, BN>(work, qRanges, kRanges, types, headsQ, headsKv);
  const Slice sl = w.sl;
  const int h = w.h, hk = w.hk, m0 = w.m0, m1 = w.m1, kLo = w.kLo, kHi = w.kHi, nTiles = w.nTiles;

  // this thread's two rows (rowBase, rowBase + 8) and their intervals
  const int rowBase = m0 + warp * 16 + g;
  int rs[2], re[2];
  row_intervals(sl, rowBase, rs, re);

  const long long ldq = (long long)headsQ * D;
  const long long ldk = (long long)headsKv * D;
  const T* gQ = q + (long long)m0 * ldq + (long long)h * D;
  const T* gK = k + (long long)kLo * ldk + (long long)hk * D;
  const T* gV = v + (long long)kLo * ldk + (long long)hk * D;

  float o[D / 8][4];
  zero_frags<D / 8>(o);
  float rowMax[2] = {FFA_NEG_INF, FFA_NEG_INF};
  float rowSum[2] = {0.f, 0.f};
  unsigned qf[D / 16][4];

  // ---- 3. main loop
  load_tile<BM, D, NT>(sQ, gQ, ldq, m1 - m0, tid);
  cp_async_commit();
  if (nTiles > 0) {
    load_tile<BN, D, NT>(sK, gK, ldk, kHi - kLo, tid);
    load_tile<BN, D, NT>(sV, gV, ldk, kHi - kLo, tid);
  }
  cp_async_commit();

  for (int it = 0; it < nTiles; ++it) {
    const int stage = it & 1;
    const int n0 = kLo + it * BN;
    if (it + 1 < nTiles) {
      const int off = (it + 1) * BN;
      load_tile<BN, D, NT>(sK + (stage ^ 1) * BN * D, gK + off * ldk, ldk, kHi - kLo - off, tid);
      load_tile<BN, D, NT>(sV + (stage ^ 1) * BN * D, gV + off * ldk, ldk, kHi - kLo - off, tid);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    if (it == 0) {
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        const int row = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        const int col = ks * 16 + (lane >> 4) * 8;
        ldmatrix_x4(qf[ks], smem_u32(sQ + swz<D>(row, col)));
      }
    }

    const T* cK = sK + stage * BN * D;
    const T* cV = sV + stage * BN * D;

    // S = Q K^T
    float s[BN / 8][4];
    zero_frags<BN / 8>(s);
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
      for (int np = 0; np < BN / 16; ++np) {
        unsigned b[4];
        const int key = np * 16 + (lane & 7) + (lane >> 4) * 8;
        const int col = ks * 16 + ((lane >> 3) & 1) * 8;
        ldmatrix_x4(b, smem_u32(cK + swz<D>(key, col)));
        E::mma(s[2 * np], qf[ks], b[0], b[1]);
        E::mma(s[2 * np + 1], qf[ks], b[2], b[3]);
      }
    }

    if (softcapScale > 0.f) softcap_tile<BN / 8>(s, softcapScale);

    // 2. mask only tiles that some row does not see in full
    if (n0 < w.allStart || n0 + BN > w.allEnd) mask_tile<BN>(s, n0, t, rs, re);

    // online softmax (row max in s units; p = exp2(s * scaleLog2 - max * scaleLog2))
    online_softmax<BN, D>(s, o, rowMax, rowSum, scaleLog2);

    // O += P V (P rounded to the input type)
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      unsigned a[4];
      pack_a<E>(a, s, kk);
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        unsigned b[4];
        const int key = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        const int col = dp * 16 + (lane >> 4) * 8;
        ldmatrix_x4_trans(b, smem_u32(cV + swz<D>(key, col)));
        E::mma(o[2 * dp], a, b[0], b[1]);
        E::mma(o[2 * dp + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // the next iteration's loads overwrite this stage
  }
  cp_async_wait<0>();  // nTiles == 0 never happens (the host drops empty tiles), but stay safe

  // max_logits: off (nullptr) costs one uniform branch after the main loop
  if (maxLogits != nullptr) {
    warp_max_logits(rowMax[0], rowMax[1], rowBase < m1, rowBase + 8 < m1, unit, h, maxLogits);
  }

  // ---- finalize: row sums across the quad, 1/sum, lse (natural log)
  float rowLse[2];
  finalize_rows<D>(o, rowSum, rowMax, unit, rowLse);

  // ---- 4. epilogue
  if (!kMerge) {
    store_rows<E, D>(o, rowLse, reinterpret_cast<T*>(outPtr), lse, rowBase, m1, h, headsQ, t);
    return;
  }
  // merge: lock the aligned BM-row blocks the tile touches, LSE-merge, unlock (the whole block)
  merge_rows<D, BM>(o, rowLse, reinterpret_cast<float*>(outPtr), lse, locks, m0, m1, rowBase, h, headsQ, t, tid == 0,
                    [] { __syncthreads(); });
}

// --------------------------------------------------------------------------------------------
// 5. Side kernels.

// lse = -inf everywhere (before a merge launch).
__device__ __forceinline__ void lse_init(float* lse, long long n) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    lse[i] = FFA_NEG_INF;
}

// Rows [ranges[2r], ranges[2r+1]) for r = blockIdx.y: out = 0 (16-bit elements), lse = -inf.
__device__ __forceinline__ void fill_rows(unsigned short* out, float* lse, const int* ranges, int rowElems, int headsQ) {
  const long long r0 = ranges[2 * blockIdx.y];
  const long long r1 = ranges[2 * blockIdx.y + 1];
  const long long nOut = (r1 - r0) * rowElems;
  const long long nLse = (r1 - r0) * headsQ;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < nOut; i += (long long)gridDim.x * blockDim.x)
    out[r0 * rowElems + i] = 0;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < nLse; i += (long long)gridDim.x * blockDim.x)
    lse[r0 * headsQ + i] = FFA_NEG_INF;
}

// fp32 merged out -> output type; rows with lse = -inf become 0 (they were never written, or
// every tile that covered them saw no key).
template <typename OutT>
__device__ __forceinline__ void finalize(const float* acc, OutT* out, const float* lse, long long rows, int dim) {
  const long long n = rows * dim;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const float l = lse[i / dim];
    const float x = l == FFA_NEG_INF ? 0.f : acc[i];
    if constexpr (sizeof(OutT) == 4) {
      out[i] = x;
    } else {
      out[i] = OutT(x);
    }
  }
}

// Post-pass on final (out, lse) rows, one warp per row (row = token * Hq + head):
//   1. partOut != nullptr: LSE-merge this call's (partOut, partLse) into the caller's (out, lse)
//      in place (mergeRow of cpu/merge.ts: a side with lse = -inf has weight 0 and is never read;
//      both -inf gives out = 0; a row this call did not reach keeps its exact bits);
//   2. sink != nullptr (float32 [sinkCount, Hq]): lse~ = logaddexp(lse, log Σ_s exp(sink[s, h])),
//      out *= exp(lse - lse~), out = 0 where lse was -inf (applySink of cpu/sink.ts).
// log_add_exp (ffa_common.cuh) keeps a NaN lse NaN, so a NaN row stays NaN through both.
template <typename P, typename A>
__device__ __forceinline__ void post(const P* __restrict__ partOut, const float* __restrict__ partLse, A* __restrict__ out,
                                     float* __restrict__ lse, const float* __restrict__ sink, int sinkCount,
                                     long long rows, int dim, int headsQ) {
  const int lane = threadIdx.x & 31;
  const long long step = (long long)gridDim.x * (blockDim.x >> 5);
  for (long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += step) {
    A* o = out + row * dim;
    float l = lse[row];
    if (partOut != nullptr) {
      const float lp = partLse[row];
      const P* p = partOut + row * dim;
      if (lp == FFA_NEG_INF) {
        if (l == FFA_NEG_INF)
          for (int d = lane; d < dim; d += 32) o[d] = A(0.f);
      } else if (l == FFA_NEG_INF) {
        for (int d = lane; d < dim; d += 32) o[d] = A(float(p[d]));
        l = lp;
      } else {
        const float merged = log_add_exp(l, lp);
        const float wa = expf(l - merged);
        const float wp = expf(lp - merged);
        for (int d = lane; d < dim; d += 32) o[d] = A(wa * float(o[d]) + wp * float(p[d]));
        l = merged;
      }
    }
    if (sink != nullptr) {
      const int h = (int)(row % headsQ);
      float ls = FFA_NEG_INF;
      for (int s = 0; s < sinkCount; ++s) ls = log_add_exp(ls, sink[(long long)s * headsQ + h]);
      const float merged = log_add_exp(l, ls);
      if (l == FFA_NEG_INF) {
        for (int d = lane; d < dim; d += 32) o[d] = A(0.f);
      } else {
        const float w = expf(l - merged);
        if (w != 1.f)
          for (int d = lane; d < dim; d += 32) o[d] = A(w * float(o[d]));
      }
      l = merged;
    }
    __syncwarp();  // every lane has read lse[row] before lane 0 overwrites it
    if (lane == 0) lse[row] = l;
  }
}

}  // namespace ffa

// --------------------------------------------------------------------------------------------
// Entry points. Name: ffa_fwd_{bf16,fp16}_d{64,128}_{direct,merge}. Block: 32 * FFA_NWARPS
// threads; dynamic smem: (BM + 4 * BN) * D * 2 bytes; grid: numWorkItems * headsQ. The last
// parameter, maxLogits (fp32 [Hq], nullptr = off), is max-merged into (initialise it to -inf
// with ffa_fwd_lse_init for a fresh max).

#ifndef FFA_NWARPS
#define FFA_NWARPS 8
#endif
#ifndef FFA_BN
#define FFA_BN 64
#endif

#define FFA_FWD_ENTRY(NAME, E, D, MERGE)                                                                              \
  extern "C" __global__ void __launch_bounds__(32 * FFA_NWARPS, 1)                                                    \
      NAME(const E::T* __restrict__ q, const E::T* __restrict__ k, const E::T* __restrict__ v, void* __restrict__ out, \
           float* __restrict__ lse, const int* __restrict__ qRanges, const int* __restrict__ kRanges,                  \
           const int* __restrict__ types, const int* __restrict__ work, int* __restrict__ locks, int headsQ,          \
           int headsKv, float scaleLog2, float unit, float softcapScale, float* __restrict__ maxLogits) {              \
    ffa::fwd_kernel<E, D, FFA_BN, FFA_NWARPS, MERGE>(q, k, v, out, lse, qRanges, kRanges, types, work, locks, headsQ, \
                                                     headsKv, scaleLog2, unit, softcapScale, maxLogits);               \
  }

FFA_FWD_ENTRY(ffa_fwd_bf16_d128_direct, ffa::Bf16, 128, false)
FFA_FWD_ENTRY(ffa_fwd_bf16_d128_merge, ffa::Bf16, 128, true)
FFA_FWD_ENTRY(ffa_fwd_fp16_d128_direct, ffa::Fp16, 128, false)
FFA_FWD_ENTRY(ffa_fwd_fp16_d128_merge, ffa::Fp16, 128, true)
FFA_FWD_ENTRY(ffa_fwd_bf16_d64_direct, ffa::Bf16, 64, false)
FFA_FWD_ENTRY(ffa_fwd_bf16_d64_merge, ffa::Bf16, 64, true)
FFA_FWD_ENTRY(ffa_fwd_fp16_d64_direct, ffa::Fp16, 64, false)
FFA_FWD_ENTRY(ffa_fwd_fp16_d64_merge, ffa::Fp16, 64, true)

extern "C" __global__ void ffa_fwd_lse_init(float* lse, long long n) { ffa::lse_init(lse, n); }

extern "C" __global__ void ffa_fwd_fill_rows(unsigned short* out, float* lse, const int* ranges, int rowElems,
                                             int headsQ) {
  ffa::fill_rows(out, lse, ranges, rowElems, headsQ);
}

extern "C" __global__ void ffa_fwd_finalize_bf16(const float* acc, __nv_bfloat16* out, const float* lse,
                                                 long long rows, int dim) {
  ffa::finalize(acc, out, lse, rows, dim);
}
extern "C" __global__ void ffa_fwd_finalize_fp16(const float* acc, __half* out, const float* lse, long long rows,
                                                 int dim) {
  ffa::finalize(acc, out, lse, rows, dim);
}
extern "C" __global__ void ffa_fwd_finalize_f32(const float* acc, float* out, const float* lse, long long rows,
                                                int dim) {
  ffa::finalize(acc, out, lse, rows, dim);
}

// ffa_fwd_post_{part}_{out}: see ffa::post. Block 256 (8 rows at a time), grid-stride over rows.
// partOut / partLse nullptr: sink only, in place on (out, lse).
#define FFA_FWD_POST_ENTRY(NAME, P, A)                                                                              \
  extern "C" __global__ void NAME(const P* partOut, const float* partLse, A* out, float* lse, const float* sink, \
                                  int sinkCount, long long rows, int dim, int headsQ) {                          \
    ffa::post<P, A>(partOut, partLse, out, lse, sink, sinkCount, rows, dim, headsQ);                             \
  }

FFA_FWD_POST_ENTRY(ffa_fwd_post_bf16_bf16, __nv_bfloat16, __nv_bfloat16)
FFA_FWD_POST_ENTRY(ffa_fwd_post_bf16_fp16, __nv_bfloat16, __half)
FFA_FWD_POST_ENTRY(ffa_fwd_post_bf16_f32, __nv_bfloat16, float)
FFA_FWD_POST_ENTRY(ffa_fwd_post_fp16_bf16, __half, __nv_bfloat16)
FFA_FWD_POST_ENTRY(ffa_fwd_post_fp16_fp16, __half, __half)
FFA_FWD_POST_ENTRY(ffa_fwd_post_fp16_f32, __half, float)
FFA_FWD_POST_ENTRY(ffa_fwd_post_f32_bf16, float, __nv_bfloat16)
FFA_FWD_POST_ENTRY(ffa_fwd_post_f32_fp16, float, __half)
FFA_FWD_POST_ENTRY(ffa_fwd_post_f32_f32, float, float)
