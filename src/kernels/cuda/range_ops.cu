// Range gather / range reduce / range lse-merge: the row movement of the distributed runtime
// (GroupCast packs rows by ranges before the exchange; GroupReduce folds received rows back into
// the destination rows), on the GPU.
//
// Device code only: compiled at run time by NVRTC (src/kernels/cuda/range-ops.ts) and by nvcc in
// the CI check. No host code.
//
// A "row" is one token's contiguous elements of a token-major tensor ([T, rowElems]). The host
// turns every range list into a compact row space (the rows the launch produces, back to back)
// and an exclusive prefix over it, so a launch is one grid over that space whatever the range
// sizes:
//   gather: compact row r is output row r; it comes from input row ranges[2i] + (r - prefix[i]).
//   reduce / lse: the destination rows that receive anything are cut into segments (maximal runs
//           with the same ordered list of contributing ranges); compact row r is destination row
//           segDst[j] + (r - segPrefix[j]), and its contributions are the source rows
//           contribSrc[k] + (r - segPrefix[j]), k in [contribPrefix[j], contribPrefix[j+1]), in
//           the order the caller listed the ranges (the host's order, so results are
//           deterministic and sum/avg match the host bit for bit).
//
// Mapping: block b owns compact rows [b*R, (b+1)*R) (R chosen by the host so a block moves a few
// thousand vectors), and its threads walk those rows' vectors flat and in order, so consecutive
// threads touch consecutive 16-byte vectors (coalesced) and tiny or empty ranges cost nothing
// extra. Which range a row belongs to is a binary search over the prefix, but only inside the
// window of ranges that the block's first and last rows fall in (found once per block): large
// ranges give a window of one and no search at all; many small ranges give a short search over
// entries that sit in L1. A (range, chunk) grid would instead idle whole blocks on short ranges
// and need a launch dimension per range list.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define RANGE_NEG_INF (__int_as_float(0xff800000))

namespace range_ops {

constexpr int kThreads = 256;
// Vectors each thread has in flight per step: loads are issued before the stores they feed.
constexpr int kUnroll = 4;

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// The largest i in [lo, hi] with prefix[i] <= row: the range holding compact row `row` (empty
// ranges share their successor's offset and are skipped by taking the largest).
__device__ __forceinline__ int find_range(const int* __restrict__ prefix, int lo, int hi, int row) {
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (__ldg(prefix + mid) <= row) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// The block's row window and the range window its rows fall in.
struct Window {
  int rowBegin, rows, lo, hi;
};

__device__ __forceinline__ Window block_window(const int* __restrict__ prefix, int numRanges, int totalRows, int rowsPerBlock) {
  __shared__ int s_lo, s_hi;
  Window w;
  w.rowBegin = blockIdx.x * rowsPerBlock;
  w.rows = min(rowsPerBlock, totalRows - w.rowBegin);
  if (threadIdx.x == 0) {
    const int lo = find_range(prefix, 0, numRanges - 1, w.rowBegin);
    s_lo = lo;
    s_hi = find_range(prefix, lo, numRanges - 1, w.rowBegin + w.rows - 1);
  }
  __syncthreads();
  w.lo = s_lo;
  w.hi = s_hi;
  return w;
}

__device__ __forceinline__ int range_of(const int* __restrict__ prefix, const Window& w, int row) {
  return w.lo == w.hi ? w.lo : find_range(prefix, w.lo, w.hi, row);
}

// --------------------------------------------------------------------------------------------
// Gather: out[prefix[i] + j] = in[ranges[2i] + j] for j in [0, ranges[2i+1] - ranges[2i]).
// Rows are copied as U-sized units (16 bytes when the row size and the pointers allow it), so
// the dtype does not matter.

template <typename U>
__device__ __forceinline__ void gather(const U* __restrict__ in, U* __restrict__ out, const int* __restrict__ ranges,
                                       const int* __restrict__ prefix, int numRanges, int totalRows, int rowUnits,
                                       int rowsPerBlock) {
  const Window w = block_window(prefix, numRanges, totalRows, rowsPerBlock);
  const int units = w.rows * rowUnits;
  for (int base = 0; base < units; base += kThreads * kUnroll) {
    U v[kUnroll];
    long long dst[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int l = base + u * kThreads + threadIdx.x;
      dst[u] = -1;
      if (l < units) {
        const int r = l / rowUnits;
        const int c = l - r * rowUnits;
        const int row = w.rowBegin + r;
        const int i = range_of(prefix, w, row);
        const long long srcRow = __ldg(ranges + 2 * i) + (row - __ldg(prefix + i));
        v[u] = in[srcRow * rowUnits + c];
        dst[u] = static_cast<long long>(row) * rowUnits + c;
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (dst[u] >= 0) out[dst[u]] = v[u];
  }
}

// --------------------------------------------------------------------------------------------
// Element conversions (accumulation is fp32).

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }

// --------------------------------------------------------------------------------------------
// Reduce (sum / avg) of source rows into destination rows, per element in fp32:
//   sum: dst = dst + c_1 + c_2 + ...   (left to right, in the caller's range order)
//   avg: dst = (dst + c_1 + ... + c_n) / (1 + n)
// rounded once to T. Rows that receive nothing are not touched. Same arithmetic as the host's
// GroupReduce (src/comm/group-collective.ts), so fp32 and 16-bit results are bit-identical.

struct Segments {
  const int* dst;            // [m] first destination row of each segment
  const int* prefix;         // [m + 1] exclusive prefix of segment rows (the compact row space)
  const int* contribPrefix;  // [m + 1] CSR offsets into contribSrc
  const int* contribSrc;     // [K] source row of each contribution at the segment's first row
  int count;                 // m
  int totalRows;             // prefix[m]
};

template <typename T, int N, bool kAvg>
__device__ __forceinline__ void reduce(const T* __restrict__ src, T* __restrict__ dstData, const Segments& sg,
                                       int rowVecs, int rowsPerBlock) {
  using V = Vec<T, N>;
  const V* in = reinterpret_cast<const V*>(src);
  V* out = reinterpret_cast<V*>(dstData);
  const Window w = block_window(sg.prefix, sg.count, sg.totalRows, rowsPerBlock);
  const int units = w.rows * rowVecs;
  for (int l = threadIdx.x; l < units; l += kThreads) {
    const int r = l / rowVecs;
    const int c = l - r * rowVecs;
    const int row = w.rowBegin + r;
    const int j = range_of(sg.prefix, w, row);
    const int off = row - __ldg(sg.prefix + j);
    const long long at = static_cast<long long>(__ldg(sg.dst + j) + off) * rowVecs + c;
    const V d = out[at];
    float acc[N];
#pragma unroll
    for (int e = 0; e < N; ++e) acc[e] = to_f32(d.v[e]);
    const int k0 = __ldg(sg.contribPrefix + j);
    const int k1 = __ldg(sg.contribPrefix + j + 1);
    for (int k = k0; k < k1; ++k) {
      const V p = in[static_cast<long long>(__ldg(sg.contribSrc + k) + off) * rowVecs + c];
#pragma unroll
      for (int e = 0; e < N; ++e) acc[e] += to_f32(p.v[e]);
    }
    V o;
    if (kAvg) {
      const float n = static_cast<float>(1 + k1 - k0);
#pragma unroll
      for (int e = 0; e < N; ++e) o.v[e] = from_f32<T>(__fdiv_rn(acc[e], n));
    } else {
#pragma unroll
      for (int e = 0; e < N; ++e) o.v[e] = from_f32<T>(acc[e]);
    }
    out[at] = o;
  }
}

// --------------------------------------------------------------------------------------------
// LSE merge of (out, lse) pairs: out rows [*, H, D] fp32, lse rows [*, H] fp32. For every
// destination (row, head), the contributions are folded in the caller's order by
//   part lse = -inf          -> weight 0, part never read; if the accumulator lse is -inf too,
//                               its out becomes 0 (and lse stays -inf)
//   accumulator lse = -inf   -> out = part, lse = part lse (the accumulator out is never read)
//   otherwise                -> lse' = logaddexp(lse, plse); out = e^(lse-lse') out + e^(plse-lse') part,
//                               the weights taken as 1/(1+g), g/(1+g) with g = e^-|lse-plse|
// (the rules of src/kernels/cpu/merge.ts mergeRow). G lanes of one warp share a (row, head), each
// holding D/(G*N) vectors; they all read the destination lse before lane 0 writes the merged one,
// hence the __syncwarp, and every thread runs the same number of steps so the warp is converged.

template <int N>
__device__ __forceinline__ void lse_merge(const float* __restrict__ srcOut, const float* __restrict__ srcLse,
                                          float* __restrict__ dstOut, float* __restrict__ dstLse, const Segments& sg,
                                          int heads, int dimVecs, int lanes, int rowsPerBlock) {
  using V = Vec<float, N>;
  const V* in = reinterpret_cast<const V*>(srcOut);
  V* out = reinterpret_cast<V*>(dstOut);
  const Window w = block_window(sg.prefix, sg.count, sg.totalRows, rowsPerBlock);
  const int items = w.rows * heads;
  const int groups = kThreads / lanes;
  const int lane = threadIdx.x % lanes;
  for (int base = 0; base < items; base += groups) {
    const int item = base + threadIdx.x / lanes;
    float merged = RANGE_NEG_INF;
    long long lseAt = -1;
    if (item < items) {
      const int r = item / heads;
      const int h = item - r * heads;
      const int row = w.rowBegin + r;
      const int j = range_of(sg.prefix, w, row);
      const int off = row - __ldg(sg.prefix + j);
      lseAt = static_cast<long long>(__ldg(sg.dst + j) + off) * heads + h;
      const int k0 = __ldg(sg.contribPrefix + j);
      const int k1 = __ldg(sg.contribPrefix + j + 1);
      const float lse0 = dstLse[lseAt];
      for (int c = lane; c < dimVecs; c += lanes) {
        const long long at = lseAt * dimVecs + c;
        float l = lse0;
        V acc;
        if (l != RANGE_NEG_INF) acc = out[at];
        for (int k = k0; k < k1; ++k) {
          const long long srcItem = static_cast<long long>(__ldg(sg.contribSrc + k) + off) * heads + h;
          const float pl = __ldg(srcLse + srcItem);
          if (pl == RANGE_NEG_INF) {
            if (l == RANGE_NEG_INF) {
#pragma unroll
              for (int e = 0; e < N; ++e) acc.v[e] = 0.f;
            }
            continue;
          }
          const V p = in[srcItem * dimVecs + c];
          if (l == RANGE_NEG_INF) {
            acc = p;
            l = pl;
          } else {
            // Weights from the gap between the two lse, not from l - lse': with |lse| ~ 10-20 the
            // rounding of lse' alone would cost ~1e-6 of relative weight per merge.
            const bool accHi = l >= pl;
            const float e = expf(accHi ? pl - l : l - pl);  // in (0, 1]
            const float inv = __frcp_rn(1.f + e);
            const float wa = accHi ? inv : e * inv;
            const float wp = accHi ? e * inv : inv;
            const float nl = (accHi ? l : pl) + log1pf(e);
#pragma unroll
            for (int e = 0; e < N; ++e) acc.v[e] = wa * acc.v[e] + wp * p.v[e];
            l = nl;
          }
        }
        out[at] = acc;
        merged = l;
      }
    }
    __syncwarp();
    if (lseAt >= 0 && lane == 0) dstLse[lseAt] = merged;
  }
}

}  // namespace range_ops

// --------------------------------------------------------------------------------------------
// Entry points. Gather by unit size in bytes; reduce by dtype and vector width (elements);
// lse merge by vector width. The launcher picks the widest unit that the row size and the
// pointers' alignment allow.

#define RANGE_GATHER_ENTRY(NAME, U)                                                                                 \
  extern "C" __global__ void __launch_bounds__(range_ops::kThreads)                                                 \
      NAME(const U* in, U* out, const int* ranges, const int* prefix, int numRanges, int totalRows, int rowUnits,   \
           int rowsPerBlock) {                                                                                      \
    range_ops::gather<U>(in, out, ranges, prefix, numRanges, totalRows, rowUnits, rowsPerBlock);                    \
  }

RANGE_GATHER_ENTRY(range_gather_b16, uint4)
RANGE_GATHER_ENTRY(range_gather_b8, uint2)
RANGE_GATHER_ENTRY(range_gather_b4, unsigned int)
RANGE_GATHER_ENTRY(range_gather_b2, unsigned short)
RANGE_GATHER_ENTRY(range_gather_b1, unsigned char)

#define RANGE_REDUCE_ENTRY(NAME, T, N, AVG)                                                                         \
  extern "C" __global__ void __launch_bounds__(range_ops::kThreads)                                                 \
      NAME(const T* src, T* dst, const int* segDst, const int* segPrefix, const int* contribPrefix,                 \
           const int* contribSrc, int numSegs, int totalRows, int rowVecs, int rowsPerBlock) {                      \
    const range_ops::Segments sg{segDst, segPrefix, contribPrefix, contribSrc, numSegs, totalRows};                 \
    range_ops::reduce<T, N, AVG>(src, dst, sg, rowVecs, rowsPerBlock);                                              \
  }

#define RANGE_REDUCE_OPS(T, TNAME, N)                                                                               \
  RANGE_REDUCE_ENTRY(range_reduce_sum_##TNAME##_v##N, T, N, false)                                                 \
  RANGE_REDUCE_ENTRY(range_reduce_avg_##TNAME##_v##N, T, N, true)

RANGE_REDUCE_OPS(float, f32, 1)
RANGE_REDUCE_OPS(float, f32, 2)
RANGE_REDUCE_OPS(float, f32, 4)
RANGE_REDUCE_OPS(__nv_bfloat16, bf16, 1)
RANGE_REDUCE_OPS(__nv_bfloat16, bf16, 2)
RANGE_REDUCE_OPS(__nv_bfloat16, bf16, 4)
RANGE_REDUCE_OPS(__nv_bfloat16, bf16, 8)
RANGE_REDUCE_OPS(__half, f16, 1)
RANGE_REDUCE_OPS(__half, f16, 2)
RANGE_REDUCE_OPS(__half, f16, 4)
RANGE_REDUCE_OPS(__half, f16, 8)

#define RANGE_LSE_ENTRY(N)                                                                                          \
  extern "C" __global__ void __launch_bounds__(range_ops::kThreads) range_lse_merge_f32_v##N(                       \
      const float* srcOut, const float* srcLse, float* dstOut, float* dstLse, const int* segDst,                    \
      const int* segPrefix, const int* contribPrefix, const int* contribSrc, int numSegs, int totalRows, int heads, \
      int dimVecs, int lanes, int rowsPerBlock) {                                                                   \
    const range_ops::Segments sg{segDst, segPrefix, contribPrefix, contribSrc, numSegs, totalRows};                 \
    range_ops::lse_merge<N>(srcOut, srcLse, dstOut, dstLse, sg, heads, dimVecs, lanes, rowsPerBlock);               \
  }

RANGE_LSE_ENTRY(1)
RANGE_LSE_ENTRY(2)
RANGE_LSE_ENTRY(4)
