// graft/kernels/cpu/gemm.hpp - the CPU GEMM: packed, cache-blocked float kernels for AVX-512 and
// AVX2+FMA, chosen at run time, with gemm_reference (gemm_reference.hpp) as oracle and fallback.
//
//   gemm<T>(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate)   same contract as gemm_reference:
//     c[i, j] (+)= sum_p a[i, p] * b[p, j]     i < m, j < n, p < k
//     a[i, p] = a[i * a_rs + p * a_cs]  b[p, j] = b[p * b_rs + j * b_cs]  (any strides, transposes are views)
//     c[i, j] = c[i * ldc + j]          accumulate == false overwrites c; only the m x n block is written.
//     c must not overlap a or b.
//   Threads: a float product large enough (m n k >= kGemmParallelMinWork) is split over the thread pool
//   inside the call: the threads pack each block of a together and share it, then take column slabs
//   (each packing its own blocks of b) when n is wide, else row slabs (sharing each block of b, packed
//   together); called from inside a pool task (a caller that already parallelizes over batches) it
//   runs serially. Either way every c[i, j] gets the same bits (see row-split invariance below).
//   gemm_packed_b: the same with b packed by the caller (GemmBPacker; the implicit-GEMM convolution).
//   float dispatches on active_cpu_isa() (cpu_features.hpp, GRAFT_CPU_ISA): gemm_avx512, gemm_avx2, or
//   gemm_reference; double (and any other T) always takes gemm_reference, so gradchecks stay exact.
//
// The packed kernels (the GotoBLAS / BLIS scheme, loops in the order of gemm_driver below): a block of
// a (MC x KC, L3) and a block of b (KC x NC, L2) are packed into contiguous, zero-padded panels; the
// micro-kernel keeps an MR x NR tile of c in registers and does kc rank-1 updates (broadcast a, FMA
// with b), its a micro-panel in L1 while the b micro-panels stream past from L2. Packing reads any
// strides. With few rows (or few columns) packing b (or a) costs more than it saves, and the
// micro-kernel reads that operand in place instead (masked loads past the last column), doing per
// element the same operations: the same bits.
//
// Row-split invariance (callers rely on it): every c[i, j] is summed in the same order wherever row i
// falls in [0, m) and whatever m is. Per element: acc = 0; acc = fma(a[i,p], b[p,j], acc) for p in one
// k block in increasing order; c = acc (first block, overwrite) or c = c + acc; blocks in increasing
// order. The k blocks (k_block_begin) depend only on k, every lane of every tile (edge tiles zero-padded) runs the
// same instruction sequence, packed or not, and the choice between the vector kernels and
// gemm_reference depends on (n, k) only, never on m. So gemm on rows [0, m) equals, bit for bit, gemm on
// [0, r) then [r, m) (tests/test_gemm.cpp checks it).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "graft/core/error.hpp"
#include "graft/core/parallel.hpp"
#include "graft/kernels/cpu/cpu_features.hpp"
#include "graft/kernels/cpu/gemm_reference.hpp"

#define GRAFT_KERNEL_BODY "graft/kernels/cpu/gemm_epilogue.inc"
#include "graft/kernels/cpu/isa/for_each_isa.hpp"

// The micro-kernels fully unroll their loops over the register tile. nvcc's host front end also reads
// this header (through the CUDA backend) and does not know the pragma, so it gets none.
#if defined(__GNUC__) && !defined(__CUDACC__)
#define GRAFT_GEMM_PRAGMA(x) _Pragma(#x)
#define GRAFT_GEMM_UNROLL(n) GRAFT_GEMM_PRAGMA(GCC unroll n)
#else
#define GRAFT_GEMM_UNROLL(n)
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GRAFT_GEMM_X86 1
#include <immintrin.h>
#else
#define GRAFT_GEMM_X86 0
#endif

namespace graft::kernels::cpu {

namespace gemm_detail {

// A thread-local scratch buffer of at least `count` floats, 64-byte aligned; grown, never shrunk.
// slot 0: packed A block, slot 1: packed B panel, slot 2: a packed B block the threads share.
inline float* pack_buffer(int slot, size_t count) {
  thread_local std::vector<float> buffers[3];
  std::vector<float>& buf = buffers[slot];
  if (buf.size() < count + 16) buf.resize(count + 16);
  const auto addr = reinterpret_cast<uintptr_t>(buf.data());
  return buf.data() + ((64 - addr % 64) % 64) / sizeof(float);
}

// packed[panel][p][r] = a[i0 + panel * MR + r, p0 + p], zero for rows past `rows`.
//   packed: [ceil(rows / MR)][kc][MR]
template <int MR>
inline void pack_a_block(int64_t rows, int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, float* packed) {
  for (int64_t i0 = 0; i0 < rows; i0 += MR, packed += kc * MR) {
    const int64_t valid = std::min<int64_t>(MR, rows - i0);
    const float* a_tile = a + i0 * a_rs;  // [valid, kc] with strides (a_rs, a_cs)
    // gemm_driver packs a only when it is a strided view, so this reads along p, MR rows at a time
    for (int64_t p = 0; p < kc; ++p) {
      float* dst = packed + p * MR;  // [MR]
      const float* a_col = a_tile + p * a_cs;
      int64_t r = 0;
      for (; r < valid; ++r) dst[r] = a_col[r * a_rs];
      for (; r < MR; ++r) dst[r] = 0.0f;
    }
  }
}

// packed[panel][p][j] = b[p0 + p, j0 + panel * NR + j], zero for columns past `cols`.
//   packed: [ceil(cols / NR)][kc][NR]
// Kernel gives NR and, for a transposed b (b_rs == 1), transpose_block(src, src_stride, dst, dst_stride):
// dst[p * dst_stride + j] = src[j * src_stride + p] for p, j < Kernel::kTransposeBlock, in registers.
template <class Kernel>
inline void pack_b_panel(int64_t kc, int64_t cols, const float* b, int64_t b_rs, int64_t b_cs, float* packed) {
  constexpr int64_t NR = Kernel::NR, TB = Kernel::kTransposeBlock;
  const int64_t panels = (cols + NR - 1) / NR, full = cols / NR;
  if (b_cs == 1) {
    // Row by row: each row of b is read once, front to back (what the hardware prefetcher follows),
    // and its NR-wide pieces go to the panels.
    for (int64_t p = 0; p < kc; ++p) {
      const float* b_row = b + p * b_rs;
      for (int64_t q = 0; q < full; ++q) std::memcpy(packed + (q * kc + p) * NR, b_row + q * NR, NR * sizeof(float));
      if (full < panels) {
        float* dst = packed + (full * kc + p) * NR;
        const int64_t valid = cols - full * NR;
        std::memcpy(dst, b_row + full * NR, size_t(valid) * sizeof(float));
        std::fill(dst + valid, dst + NR, 0.0f);
      }
    }
    return;
  }
  for (int64_t j0 = 0; j0 < cols; j0 += NR, packed += kc * NR) {
    const int64_t valid = std::min<int64_t>(NR, cols - j0);
    const float* b_tile = b + j0 * b_cs;  // [kc, valid] with strides (b_rs, b_cs)
    if (b_rs == 1) {
      // b is a transposed view (a linear layer's weight): TB x TB blocks transposed in registers;
      // the partial blocks at the panel's right and bottom edges element by element.
      const int64_t kc_full = kc / TB * TB, valid_full = valid / TB * TB;
      for (int64_t p0 = 0; p0 < kc_full; p0 += TB)
        for (int64_t jb = 0; jb < valid_full; jb += TB)
          Kernel::transpose_block(b_tile + jb * b_cs + p0, b_cs, packed + p0 * NR + jb, NR);
      for (int64_t p = 0; p < kc; ++p) {
        float* dst = packed + p * NR;
        for (int64_t j = p < kc_full ? valid_full : 0; j < valid; ++j) dst[j] = b_tile[j * b_cs + p];
        for (int64_t j = valid; j < NR; ++j) dst[j] = 0.0f;
      }
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        float* dst = packed + p * NR;
        const float* b_row = b_tile + p * b_rs;
        int64_t j = 0;
        for (; j < valid; ++j) dst[j] = b_row[j * b_cs];
        for (; j < NR; ++j) dst[j] = 0.0f;
      }
    }
  }
}

// The k blocks: ceil(k / KC) blocks of nearly equal length, block b = [k b / nb, k (b + 1) / nb). A
// function of k and KC alone (row-split invariance), and no short tail block paying a pass over c.
inline int64_t k_block_count(int64_t k, int64_t kc_max) { return (k + kc_max - 1) / kc_max; }
inline int64_t k_block_begin(int64_t k, int64_t blocks, int64_t b) { return k * b / blocks; }

// How the micro-kernel reads b (see gemm_driver): packed, or in place. a is always read through its
// strides: a packed micro-panel [kc][MR] is a with strides (1, MR).
enum class Operands { PackedB, Direct };

#if GRAFT_GEMM_X86

// The micro-kernels keep an MR x (NV vectors) tile of c in registers, acc[r][h] = c[r, h*V : (h+1)*V],
// and do kc rank-1 updates: per p, NV vector loads of b[p, :], MR broadcasts of a[r, p], MR*NV FMAs.
//   a: a[r, p] = a[r * a_rs + p * a_cs] (in place, or a packed micro-panel with strides (1, MR));
//      rows >= `rows` read row 0 (computed, never stored)
//   b: b[p, j] = b[p * b_rs + j], packed panels zero-padded; in place (Direct) the columns >= cols are
//      loaded as zero through masks, so nothing past the last column is read
//   c: c = acc (overwrite) or c = c + acc, rows < rows and columns < cols only (masked stores)
// NV < the full width serves the last column tile, so a tile of 4 columns costs one vector, not four;
// every lane runs the same instructions whatever NV, so the bits do not depend on it.

template <int NV, Operands kOps>
__attribute__((target("avx512f"))) inline void micro_avx512_6(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs,
                                                              const float* b, int64_t b_rs, float* c, int64_t ldc,
                                                              int64_t rows, int64_t cols, bool overwrite) {
  constexpr int MR = 6, V = 16;
  __mmask16 mask[NV];
  GRAFT_GEMM_UNROLL(4)
  for (int h = 0; h < NV; ++h) {
    const int64_t left = cols - h * V;
    mask[h] = left >= V ? __mmask16(0xFFFF) : left > 0 ? __mmask16((1u << left) - 1) : __mmask16(0);
  }
  const float* a_row[MR];
  GRAFT_GEMM_UNROLL(6)
  for (int r = 0; r < MR; ++r) a_row[r] = a + (r < rows ? r : 0) * a_rs;
  __m512 acc[MR][NV];
  GRAFT_GEMM_UNROLL(6)
  for (int r = 0; r < MR; ++r) {
    GRAFT_GEMM_UNROLL(4)
    for (int h = 0; h < NV; ++h) acc[r][h] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p) {
    __m512 b_p[NV];  // b[p, h*16 : (h+1)*16]
    GRAFT_GEMM_UNROLL(4)
    for (int h = 0; h < NV; ++h)
      b_p[h] = kOps == Operands::Direct ? _mm512_maskz_loadu_ps(mask[h], b + p * b_rs + h * V)
                                        : _mm512_loadu_ps(b + p * b_rs + h * V);
    GRAFT_GEMM_UNROLL(6)
    for (int r = 0; r < MR; ++r) {
      const __m512 a_rp = _mm512_set1_ps(a_row[r][p * a_cs]);
      GRAFT_GEMM_UNROLL(4)
      for (int h = 0; h < NV; ++h) acc[r][h] = _mm512_fmadd_ps(a_rp, b_p[h], acc[r][h]);
    }
  }
  GRAFT_GEMM_UNROLL(6)
  for (int r = 0; r < MR; ++r) {
    if (r >= rows) break;
    float* c_row = c + r * ldc;
    GRAFT_GEMM_UNROLL(4)
    for (int h = 0; h < NV; ++h) {
      const __m512 out = overwrite ? acc[r][h] : _mm512_add_ps(_mm512_maskz_loadu_ps(mask[h], c_row + h * V), acc[r][h]);
      _mm512_mask_storeu_ps(c_row + h * V, mask[h], out);
    }
  }
}

template <int NV, Operands kOps>
__attribute__((target("avx2,fma"))) inline void micro_avx2_6(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs,
                                                             const float* b, int64_t b_rs, float* c, int64_t ldc,
                                                             int64_t rows, int64_t cols, bool overwrite) {
  constexpr int MR = 6, V = 8;
  __m256i mask[NV];  // lanes with all bits set are the columns < cols
  GRAFT_GEMM_UNROLL(2)
  for (int h = 0; h < NV; ++h) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    mask[h] = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::min<int64_t>(cols - h * V, V))), lane);
  }
  const float* a_row[MR];
  GRAFT_GEMM_UNROLL(6)
  for (int r = 0; r < MR; ++r) a_row[r] = a + (r < rows ? r : 0) * a_rs;
  __m256 acc[MR][NV];
  GRAFT_GEMM_UNROLL(6)
  for (int r = 0; r < MR; ++r) {
    GRAFT_GEMM_UNROLL(2)
    for (int h = 0; h < NV; ++h) acc[r][h] = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p) {
    __m256 b_p[NV];  // b[p, h*8 : (h+1)*8]
    GRAFT_GEMM_UNROLL(2)
    for (int h = 0; h < NV; ++h)
      b_p[h] = kOps == Operands::Direct ? _mm256_maskload_ps(b + p * b_rs + h * V, mask[h])
                                        : _mm256_loadu_ps(b + p * b_rs + h * V);
    GRAFT_GEMM_UNROLL(6)
    for (int r = 0; r < MR; ++r) {
      const __m256 a_rp = _mm256_broadcast_ss(a_row[r] + p * a_cs);
      GRAFT_GEMM_UNROLL(2)
      for (int h = 0; h < NV; ++h) acc[r][h] = _mm256_fmadd_ps(a_rp, b_p[h], acc[r][h]);
    }
  }
  GRAFT_GEMM_UNROLL(6)
  for (int r = 0; r < MR; ++r) {
    if (r >= rows) break;
    float* c_row = c + r * ldc;
    GRAFT_GEMM_UNROLL(2)
    for (int h = 0; h < NV; ++h) {
      const __m256 out =
          overwrite ? acc[r][h] : _mm256_add_ps(_mm256_maskload_ps(c_row + h * V, mask[h]), acc[r][h]);
      _mm256_maskstore_ps(c_row + h * V, mask[h], out);
    }
  }
}

// GCC 12 reports the intrinsics' own _mm512_undefined_ps() operands as uninitialized (a false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
// dst[p * ld_dst + j] = src[j * ld_src + p], p, j < 16 (AVX-512) / 8 (AVX2): unpack pairs of rows,
// shuffle 64-bit pairs, then 128-bit lanes (the classic in-register transpose).
__attribute__((target("avx512f"))) inline void transpose16_avx512(const float* src, int64_t ld_src, float* dst,
                                                                  int64_t ld_dst) {
  __m512 r[16], t[16];
  GRAFT_GEMM_UNROLL(16)
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld_src);  // r[i][p] = column i, element p
  GRAFT_GEMM_UNROLL(8)
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);      // per 128-bit lane: r_i[0] r_i+1[0] r_i[1] r_i+1[1]
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);  //                   r_i[2] r_i+1[2] r_i[3] r_i+1[3]
  }
  GRAFT_GEMM_UNROLL(4)
  for (int i = 0; i < 16; i += 4) {  // r[i + e]: per lane, element e of columns i .. i+3
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  GRAFT_GEMM_UNROLL(4)
  for (int e = 0; e < 4; ++e) {  // lanes (0, 2) and (1, 3) of columns 0-3 with 4-7, and 8-11 with 12-15
    t[e] = _mm512_shuffle_f32x4(r[e], r[4 + e], 0x88);
    t[4 + e] = _mm512_shuffle_f32x4(r[e], r[4 + e], 0xDD);
    t[8 + e] = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0x88);
    t[12 + e] = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0xDD);
  }
  GRAFT_GEMM_UNROLL(8)
  for (int e = 0; e < 8; ++e) {  // element e and e + 8 of all 16 columns
    _mm512_storeu_ps(dst + e * ld_dst, _mm512_shuffle_f32x4(t[e], t[8 + e], 0x88));
    _mm512_storeu_ps(dst + (e + 8) * ld_dst, _mm512_shuffle_f32x4(t[e], t[8 + e], 0xDD));
  }
}

__attribute__((target("avx2,fma"))) inline void transpose8_avx2(const float* src, int64_t ld_src, float* dst,
                                                                int64_t ld_dst) {
  __m256 r[8], t[8];
  GRAFT_GEMM_UNROLL(8)
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld_src);
  GRAFT_GEMM_UNROLL(4)
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  GRAFT_GEMM_UNROLL(2)
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  GRAFT_GEMM_UNROLL(4)
  for (int e = 0; e < 4; ++e) {
    _mm256_storeu_ps(dst + e * ld_dst, _mm256_permute2f128_ps(r[e], r[4 + e], 0x20));
    _mm256_storeu_ps(dst + (e + 4) * ld_dst, _mm256_permute2f128_ps(r[e], r[4 + e], 0x31));
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// Calls micro<NV, ops> with NV = the vectors the tile's `cols` columns need.
template <int kMaxNV, template <int, Operands> class Micro>
inline void micro_dispatch(Operands ops, int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                           int64_t b_rs, float* c, int64_t ldc, int64_t rows, int64_t cols, int64_t lanes,
                           bool overwrite) {
  const int64_t nv = (cols + lanes - 1) / lanes;
  auto run = [&](auto nv_const) {
    constexpr int kNV = decltype(nv_const)::value;
    switch (ops) {
      case Operands::PackedB: return Micro<kNV, Operands::PackedB>::run(kc, a, a_rs, a_cs, b, b_rs, c, ldc, rows, cols, overwrite);
      case Operands::Direct: return Micro<kNV, Operands::Direct>::run(kc, a, a_rs, a_cs, b, b_rs, c, ldc, rows, cols, overwrite);
    }
  };
  if (nv >= kMaxNV) return run(std::integral_constant<int, kMaxNV>{});
  if constexpr (kMaxNV > 1)
    if (nv == 1) return run(std::integral_constant<int, 1>{});
  if constexpr (kMaxNV > 2)
    if (nv == 2) return run(std::integral_constant<int, 2>{});
  if constexpr (kMaxNV > 3)
    if (nv == 3) return run(std::integral_constant<int, 3>{});
}

template <int NV, Operands kOps>
struct MicroAvx512 {
  static void run(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t b_rs, float* c,
                  int64_t ldc, int64_t rows, int64_t cols, bool overwrite) {
    micro_avx512_6<NV, kOps>(kc, a, a_rs, a_cs, b, b_rs, c, ldc, rows, cols, overwrite);
  }
};
template <int NV, Operands kOps>
struct MicroAvx2 {
  static void run(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t b_rs, float* c,
                  int64_t ldc, int64_t rows, int64_t cols, bool overwrite) {
    micro_avx2_6<NV, kOps>(kc, a, a_rs, a_cs, b, b_rs, c, ldc, rows, cols, overwrite);
  }
};

// Register tiles and cache blocks. The tile's a micro-panel (MR x kc, 6 KB) stays in L1 while the
// b micro-panels of a KC x NC block (L2) stream past it; the MC x KC block of a lives in L3, shared by
// the threads. 6 x 64 (24 zmm accumulators, 4 loads + 6 broadcasts per 24 FMAs) beat 12 x 32, 14 x 32
// and 8 x 48 on Ice Lake (single thread, 1024 and 2048; numbers in bench/README.md); AVX2's 6 x 16 is
// BLIS's Haswell tile. Packing thresholds: reading b in place wins up to ~8 row tiles, a up to ~4
// column tiles (measured on Zen 3 with the AVX2 kernel).
struct Avx512Kernel {
  static constexpr int64_t MR = 6, NR = 64, KC = 256, MC = 1008, NC = 512;
  static constexpr int64_t kPackBMinRows = 8 * MR, kPackAMinCols = 4 * NR, kTransposeBlock = 16;
  static void transpose_block(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
    transpose16_avx512(src, ld_src, dst, ld_dst);
  }
  static void micro(Operands ops, int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                    int64_t b_rs, float* c, int64_t ldc, int64_t rows, int64_t cols, bool overwrite) {
    micro_dispatch<4, MicroAvx512>(ops, kc, a, a_rs, a_cs, b, b_rs, c, ldc, rows, cols, 16, overwrite);
  }
  static void epilogue(const GemmEpilogue<float>& ep, int64_t i0, int64_t j0, int64_t rows, int64_t cols, float* c,
                       int64_t ldc) {
    avx512::gemm_epilogue(ep, i0, j0, rows, cols, c, ldc);
  }
};
struct Avx2Kernel {
  static constexpr int64_t MR = 6, NR = 16, KC = 256, MC = 1008, NC = 256;
  static constexpr int64_t kPackBMinRows = 8 * MR, kPackAMinCols = 4 * NR, kTransposeBlock = 8;
  static void transpose_block(const float* src, int64_t ld_src, float* dst, int64_t ld_dst) {
    transpose8_avx2(src, ld_src, dst, ld_dst);
  }
  static void micro(Operands ops, int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                    int64_t b_rs, float* c, int64_t ldc, int64_t rows, int64_t cols, bool overwrite) {
    micro_dispatch<2, MicroAvx2>(ops, kc, a, a_rs, a_cs, b, b_rs, c, ldc, rows, cols, 8, overwrite);
  }
  static void epilogue(const GemmEpilogue<float>& ep, int64_t i0, int64_t j0, int64_t rows, int64_t cols, float* c,
                       int64_t ldc) {
    avx2::gemm_epilogue(ep, i0, j0, rows, cols, c, ldc);
  }
};

#endif  // GRAFT_GEMM_X86

}  // namespace gemm_detail

// A b operand the GEMM never reads as a matrix: the caller packs its panels itself (the implicit-GEMM
// convolution packs them straight from the image, with no [k, n] cols buffer). pack(ctx, p0, kc, j0,
// nc, nr, packed) writes packed[q][p][j] = b[p0 + p, j0 + q nr + j] for q < ceil(nc / nr), p < kc,
// j < nr, zero for the columns past nc: the layout pack_b_panel writes. Called from several threads
// at once (each with its own packed), so it must only read shared state.
struct GemmBPacker {
  const void* ctx;
  void (*pack)(const void* ctx, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, float* packed);
};

namespace gemm_detail {

// Below this many multiply-adds (about 10 us on one core) a product stays on one thread: a region
// costs about a microsecond, packing per thread more, and attention's 64 x 64 x 64 tile products
// must not each wake the pool.
inline constexpr int64_t kGemmParallelMinWork = int64_t(1) << 20;

struct GemmProblem {
  int64_t m, n, k;
  const float* a;
  int64_t a_rs, a_cs;
  const float* b;  // null when b_pack packs b
  int64_t b_rs, b_cs;
  float* c;
  int64_t ldc;
  bool accumulate;
  const GemmEpilogue<float>* ep;
  const GemmBPacker* b_pack;
};

// The packed block b[pc:pc+kc, jc:jc+nc] ([ceil(nc/NR)][kc][NR]), from b or by the caller's packer.
template <class Kernel>
inline void pack_b_block(const GemmProblem& g, int64_t pc, int64_t kc, int64_t jc, int64_t nc, float* packed) {
  if (g.b_pack)
    g.b_pack->pack(g.b_pack->ctx, pc, kc, jc, nc, Kernel::NR, packed);
  else
    pack_b_panel<Kernel>(kc, nc, g.b + pc * g.b_rs + jc * g.b_cs, g.b_rs, g.b_cs, packed);
}

// One thread's part of the (ic, pc) block: rows [ic + i0, ic + i1) (i0 a multiple of MR) and columns
// [j0, j1) (j0 a multiple of NR) of c, k block [pc, pc + kc). a_packed: the block's packed a
// ([mc/MR][kc][MR], shared) or null (a read in place). When pack_b it packs its own b blocks, unless
// b_shared holds b[pc:pc+kc, j0:j1] already packed (one NC block, packed by all the threads).
template <class Kernel>
inline void gemm_block_part(const GemmProblem& g, int64_t ic, int64_t pc, int64_t kc, bool overwrite, bool last,
                            const float* a_packed, bool pack_b, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                            const float* b_shared = nullptr) {
  constexpr int64_t MR = Kernel::MR, NR = Kernel::NR, NC = Kernel::NC;
  const Operands ops = pack_b ? Operands::PackedB : Operands::Direct;
  const int64_t a_rs = a_packed ? 1 : g.a_rs, a_cs = a_packed ? MR : g.a_cs;  // a packed: [kc][MR] per tile
  float* b_own =
      pack_b && !b_shared ? pack_buffer(1, size_t(kc * std::min(NC, (j1 - j0 + NR - 1) / NR * NR))) : nullptr;
  for (int64_t jc = j0; jc < j1; jc += NC) {
    const int64_t nc = std::min(NC, j1 - jc);
    const float* b_block = g.b_pack ? nullptr : g.b + pc * g.b_rs + jc * g.b_cs;  // b[pc:pc+kc, jc:jc+nc]
    if (b_own) pack_b_block<Kernel>(g, pc, kc, jc, nc, b_own);
    const float* b_packed = b_shared ? b_shared : b_own;
    for (int64_t ir = i0; ir < i1; ir += MR) {
      const int64_t rows = std::min(MR, i1 - ir);
      const float* a_tile = a_packed ? a_packed + (ir / MR) * kc * MR : g.a + (ic + ir) * g.a_rs + pc * g.a_cs;
      for (int64_t jr = 0; jr < nc; jr += NR) {
        const int64_t cols = std::min(NR, nc - jr);
        const float* b_tile = pack_b ? b_packed + (jr / NR) * kc * NR : b_block + jr;
        float* c_tile = g.c + (ic + ir) * g.ldc + jc + jr;
        Kernel::micro(ops, kc, a_tile, a_rs, a_cs, b_tile, pack_b ? NR : g.b_rs, c_tile, g.ldc, rows, cols,
                      overwrite);
        if (g.ep && last) Kernel::epilogue(*g.ep, ic + ir, jc + jr, rows, cols, c_tile, g.ldc);
      }
    }
  }
}

// At most this many floats (8 MB) of packed a at once: a group of k blocks is packed together.
inline constexpr int64_t kGemmPackedAMax = int64_t(1) << 21;

// The blocked product on `threads` threads (1: serially in the caller):
//   for ic over m in steps of ~MC:           a block  a[ic:ic+mc, pc:pc+kc] packed by all threads, shared,
//     for pc over the k blocks:              (L3)     [mc/MR][kc][MR] (only when a is strided, see below)
//       each thread, its columns (or rows):
//         for jc over its columns by NC:     b block  b[pc:pc+kc, jc:jc+nc] packed by the thread
//           for ir over its rows by MR:      (L2)     as [nc/NR][kc][NR]
//             for jr over nc by NR:          micro-kernel: c[ir:ir+MR, jc+jr:jc+jr+NR] (+)= a tile b tile
// Threads split the columns (whole NR panels) when each gets at least 4 panels or there are more
// column tiles than row tiles, else the rows (whole MR tiles), into a few tasks per thread that the
// threads claim as they become free. No tile straddles two tasks and the
// per-element arithmetic depends on neither the split nor the operand modes, so the bits do not change.
// Column tasks with a read in place never wait for each other: one region does the whole product.
// Row tasks share b instead: each block of it is packed by all the threads together, then computed
// on (two regions per block). A packed a is packed for a group of k blocks at a time
// (kGemmPackedAMax), then computed on.
// Packing b pays when many row tiles reuse it (m large) and is needed when b's columns are strided.
// Packing a pays only when its rows are strided (a transposed view) and many column tiles reuse it (n
// large): a tile's 6 contiguous rows read in place are as good as a packed micro-panel (measured).
template <class Kernel>
inline void gemm_driver(const GemmProblem& g, int threads) {
  constexpr int64_t MR = Kernel::MR, NR = Kernel::NR, KC = Kernel::KC, MC = Kernel::MC;
  static_assert(MC % MR == 0 && Kernel::NC % NR == 0, "cache blocks hold whole register tiles");
  if (g.m <= 0 || g.n <= 0) return;
  if (g.k <= 0) {
    if (!g.accumulate)
      for (int64_t i = 0; i < g.m; ++i) std::fill(g.c + i * g.ldc, g.c + i * g.ldc + g.n, 0.0f);
    if (g.ep) Kernel::epilogue(*g.ep, 0, 0, g.m, g.n, g.c, g.ldc);
    return;
  }
  const bool pack_b = g.b_pack || g.b_cs != 1 || g.m >= Kernel::kPackBMinRows;
  const bool pack_a = pack_b && g.a_cs != 1 && g.n >= Kernel::kPackAMinCols;
  const int64_t blocks = k_block_count(g.k, KC);
  // Blocks of a of nearly equal height, m / MC of them rounded to nearest (at most 1.5 MC high), in
  // whole tiles: 1024 rows are one block, not 1008 + 16, which would pack b a second time for 16 rows.
  const int64_t ic_blocks = std::max<int64_t>(1, (g.m + MC / 2) / MC);
  const int64_t mc_step = ((g.m + ic_blocks - 1) / ic_blocks + MR - 1) / MR * MR;
  const int64_t col_tiles = (g.n + NR - 1) / NR, row_tiles_max = (std::min(mc_step, g.m) + MR - 1) / MR;
  const bool by_cols = col_tiles >= 4 * threads || col_tiles >= row_tiles_max;
  // Tasks: slabs of whole tiles, two per thread, claimed one at a time by whichever thread is free
  // (on these shared machines one core often runs slower than the other: a static split waits for it).
  const int64_t tiles_total = by_cols ? col_tiles : row_tiles_max;
  const int64_t tasks = threads == 1 ? 1 : std::min<int64_t>(tiles_total, 2 * int64_t(threads));

  // Task t of the a block at ic, k blocks [blk0, blk1); a_group: their packed a, one block after the other.
  auto run_part = [&](int64_t t, int64_t ic, int64_t blk0, int64_t blk1, const float* a_group) {
    const int64_t mc = std::min(mc_step, g.m - ic), row_tiles = (mc + MR - 1) / MR;
    const int64_t tiles = by_cols ? col_tiles : row_tiles;
    const int64_t first = tiles * t / tasks, end = tiles * (t + 1) / tasks;
    if (first == end) return;
    const int64_t i0 = by_cols ? 0 : first * MR, i1 = by_cols ? mc : std::min(mc, end * MR);
    const int64_t j0 = by_cols ? first * NR : 0, j1 = by_cols ? std::min(g.n, end * NR) : g.n;
    const int64_t pc0 = k_block_begin(g.k, blocks, blk0);
    for (int64_t blk = blk0; blk < blk1; ++blk) {
      const int64_t pc = k_block_begin(g.k, blocks, blk), kc = k_block_begin(g.k, blocks, blk + 1) - pc;
      const float* a_block = a_group ? a_group + row_tiles * MR * (pc - pc0) : nullptr;
      gemm_block_part<Kernel>(g, ic, pc, kc, blk == 0 && !g.accumulate, blk + 1 == blocks, a_block, pack_b, i0, i1, j0,
                              j1);
    }
  };
  auto on_tasks = [&](auto&& body) {  // body(t) for every task, on every thread when there are several
    if (tasks == 1) return body(int64_t(0));
    parallel_for_claimed(0, tasks, body);
  };

  if (!pack_a && (by_cols || tasks == 1 || !pack_b)) {
    on_tasks([&](int64_t t) {
      for (int64_t ic = 0; ic < g.m; ic += mc_step) run_part(t, ic, 0, blocks, nullptr);
    });
    return;
  }
  if (!pack_a) {
    // Row tasks all need the whole of b: the threads pack each block of it together (panels split
    // between them), then take their rows against the shared copy, instead of each packing all of it.
    float* b_shared = pack_buffer(2, size_t(KC * std::min(Kernel::NC, col_tiles * NR)));
    for (int64_t ic = 0; ic < g.m; ic += mc_step) {
      const int64_t mc = std::min(mc_step, g.m - ic), row_tiles = (mc + MR - 1) / MR;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t pc = k_block_begin(g.k, blocks, blk), kc = k_block_begin(g.k, blocks, blk + 1) - pc;
        for (int64_t jc = 0; jc < g.n; jc += Kernel::NC) {
          const int64_t nc = std::min(Kernel::NC, g.n - jc), panels = (nc + NR - 1) / NR;
          parallel_for(0, panels, 1, [&](int64_t q0, int64_t q1) {
            for (int64_t q = q0; q < q1; ++q)
              pack_b_block<Kernel>(g, pc, kc, jc + q * NR, std::min(NR, nc - q * NR), b_shared + q * kc * NR);
          });
          on_tasks([&](int64_t t) {
            const int64_t first = row_tiles * t / tasks, end = row_tiles * (t + 1) / tasks;
            if (first == end) return;
            gemm_block_part<Kernel>(g, ic, pc, kc, blk == 0 && !g.accumulate, blk + 1 == blocks, nullptr, true,
                                    first * MR, std::min(mc, end * MR), jc, jc + nc, b_shared);
          });
        }
      }
    }
    return;
  }
  const int64_t group = std::max<int64_t>(1, kGemmPackedAMax / (row_tiles_max * MR * KC));
  float* a_packed = pack_buffer(0, size_t(row_tiles_max * MR * std::min(g.k, group * KC)));
  for (int64_t ic = 0; ic < g.m; ic += mc_step) {
    const int64_t mc = std::min(mc_step, g.m - ic), row_tiles = (mc + MR - 1) / MR;
    for (int64_t blk0 = 0; blk0 < blocks; blk0 += group) {
      const int64_t blk1 = std::min(blocks, blk0 + group), pc0 = k_block_begin(g.k, blocks, blk0);
      auto pack_tiles = [&](int64_t r0, int64_t r1) {  // row tiles [r0, r1) of every k block in the group
        for (int64_t blk = blk0; blk < blk1; ++blk) {
          const int64_t pc = k_block_begin(g.k, blocks, blk), kc = k_block_begin(g.k, blocks, blk + 1) - pc;
          pack_a_block<MR>(std::min(mc, r1 * MR) - r0 * MR, kc, g.a + (ic + r0 * MR) * g.a_rs + pc * g.a_cs, g.a_rs,
                           g.a_cs, a_packed + row_tiles * MR * (pc - pc0) + r0 * kc * MR);
        }
      };
      if (threads > 1)
        parallel_for(0, row_tiles, 1, pack_tiles);
      else
        pack_tiles(0, row_tiles);
      on_tasks([&](int64_t t) { run_part(t, ic, blk0, blk1, a_packed); });
    }
  }
}

// gemm_driver on the pool's threads when the product is large enough and the caller is not itself a
// pool task (a caller that already parallelizes over batches), else on the calling thread.
template <class Kernel>
inline void gemm_threaded(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                          int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate,
                          const GemmEpilogue<float>* ep, const GemmBPacker* b_pack = nullptr) {
  const GemmProblem g{m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate, ep, b_pack};
  const bool serial = m * n * k < kGemmParallelMinWork || ThreadPool::in_worker();
  gemm_driver<Kernel>(g, serial ? 1 : get_num_threads());
}

}  // namespace gemm_detail

// The AVX-512 kernels (6 x 64 tiles) for any shape, never gemm_reference. Throws if the CPU lacks avx512f.
inline void gemm_avx512(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                        int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate,
                        const GemmEpilogue<float>* ep = nullptr) {
  GRAFT_CHECK(detected_cpu_isa() >= CpuIsa::Avx512, "gemm_avx512", "this CPU lacks avx512f (detected ",
              cpu_isa_name(detected_cpu_isa()), ")");
#if GRAFT_GEMM_X86
  gemm_detail::gemm_threaded<gemm_detail::Avx512Kernel>(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate, ep);
#endif
}

// The AVX2+FMA kernels (6 x 16 tiles) for any shape, never gemm_reference. Throws if the CPU lacks avx2 or fma.
inline void gemm_avx2(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                      int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate,
                      const GemmEpilogue<float>* ep = nullptr) {
  GRAFT_CHECK(detected_cpu_isa() >= CpuIsa::Avx2, "gemm_avx2", "this CPU lacks avx2+fma (detected ",
              cpu_isa_name(detected_cpu_isa()), ")");
#if GRAFT_GEMM_X86
  gemm_detail::gemm_threaded<gemm_detail::Avx2Kernel>(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate, ep);
#endif
}

// Below this many multiply-adds per row of c (n * k) the vector kernels' setup costs more than they
// save over gemm_reference. Depends on n and k only, never on m (row-split invariance, see the top).
inline constexpr int64_t kGemmVectorMinRowWork = 256;

// gemm with b given by its packer (GemmBPacker) instead of as a matrix: the same contract and the same
// bits as gemm on the materialized b. Returns false, doing nothing, where gemm would not take a vector
// kernel (scalar ISA, n k < kGemmVectorMinRowWork): the caller then materializes b and calls gemm.
inline bool gemm_packed_b(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs,
                          const GemmBPacker& b, float* c, int64_t ldc, bool accumulate,
                          const GemmEpilogue<float>* epilogue = nullptr) {
  if (n * k < kGemmVectorMinRowWork) return false;
#if GRAFT_GEMM_X86
  switch (active_cpu_isa()) {
    case CpuIsa::Avx512:
      gemm_detail::gemm_threaded<gemm_detail::Avx512Kernel>(m, n, k, a, a_rs, a_cs, nullptr, 0, 0, c, ldc, accumulate,
                                                            epilogue, &b);
      return true;
    case CpuIsa::Avx2:
      gemm_detail::gemm_threaded<gemm_detail::Avx2Kernel>(m, n, k, a, a_rs, a_cs, nullptr, 0, 0, c, ldc, accumulate,
                                                          epilogue, &b);
      return true;
    case CpuIsa::Scalar: break;
  }
#endif
  return false;
}

// The one dispatch point for the CPU GEMM (contract at the top of this file). epilogue (may be null):
// what each finished element gets before it is stored (GemmEpilogue, gemm_reference.hpp).
template <class T>
inline void gemm(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs, const T* b, int64_t b_rs,
                 int64_t b_cs, T* c, int64_t ldc, bool accumulate, const GemmEpilogue<T>* epilogue = nullptr) {
  if constexpr (std::is_same_v<T, float>) {
    if (n * k >= kGemmVectorMinRowWork) {
      switch (active_cpu_isa()) {
        case CpuIsa::Avx512: return gemm_avx512(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate, epilogue);
        case CpuIsa::Avx2: return gemm_avx2(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate, epilogue);
        case CpuIsa::Scalar: break;
      }
    }
  }
  // The reference (then the reference epilogue), over row slabs in parallel when large: each row's
  // sums do not depend on the split.
  auto rows = [&](int64_t i0, int64_t i1) {
    gemm_reference<T>(i1 - i0, n, k, a + i0 * a_rs, a_rs, a_cs, b, b_rs, b_cs, c + i0 * ldc, ldc, accumulate);
    if (epilogue) gemm_epilogue_reference<T>(*epilogue, i0, 0, i1 - i0, n, c + i0 * ldc, ldc);
  };
  const int64_t threads = get_num_threads();
  if (m * n * k < gemm_detail::kGemmParallelMinWork || ThreadPool::in_worker() || threads <= 1) {
    rows(0, m);
    return;
  }
  parallel_for(0, m, std::max<int64_t>(1, (m + threads - 1) / threads), rows);
}

}  // namespace graft::kernels::cpu
