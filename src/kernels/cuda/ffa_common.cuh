// Device helpers shared by the flex-flash-attention kernels (ffa_fwd.cu, ffa_bwd.cu): element
// types, cp.async, ldmatrix, the shared-memory swizzle, tile loads, fp32 reductions and a slice's
// per-row key interval. Included by both; the launchers inline it into the source text they hand
// to NVRTC (src/kernels/cuda/source.ts), so the compile-cache key covers it.
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
