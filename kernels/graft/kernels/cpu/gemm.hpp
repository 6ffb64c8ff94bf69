// graft/kernels/cpu/gemm.hpp - the CPU GEMM: packed, cache-blocked float kernels for AVX-512 and
// AVX2+FMA, chosen at run time, with gemm_reference (gemm_reference.hpp) as oracle and fallback.
//
//   gemm<T>(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate)   same contract as gemm_reference:
//     c[i, j] (+)= sum_p a[i, p] * b[p, j]     i < m, j < n, p < k
//     a[i, p] = a[i * a_rs + p * a_cs]  b[p, j] = b[p * b_rs + j * b_cs]  (any strides, transposes are views)
//     c[i, j] = c[i * ldc + j]          accumulate == false overwrites c; only the m x n block is written.
//     c must not overlap a or b.
//   Threads: a float product large enough (m n k >= kGemmParallelMinWork) is split over the thread pool
//   inside the call, into column slabs (each thread packs its own part of b) when n is wide, else into
//   row slabs; called from inside a pool task (a caller that already parallelizes over batches) it
//   runs serially. Either way every c[i, j] gets the same bits (see row-split invariance below).
//   float dispatches on active_cpu_isa() (cpu_features.hpp, GRAFT_CPU_ISA): gemm_avx512, gemm_avx2, or
//   gemm_reference; double (and any other T) always takes gemm_reference, so gradchecks stay exact.
//
// The packed kernels (BLIS / GotoBLAS layout):
//   for jc over n in steps of NC:                      B panel   b[pc:pc+kc, jc:jc+nc] packed once
//     for pc over k in steps of KC:                    (L3)      as [nc/NR][kc][NR]
//       for ic over m in steps of MC:                  A block   a[ic:ic+mc, pc:pc+kc] packed
//         for jr over nc in steps of NR:               (L2)      as [mc/MR][kc][MR]
//           for ir over mc in steps of MR:             micro-kernel: an MR x NR tile of c in registers,
//             c[ir:ir+MR, jr:jr+NR] (+)= A_panel B_panel          kc rank-1 updates (broadcast a, FMA)
//   Packing reads any strides, so the micro-kernel sees contiguous, zero-padded panels; edge tiles are
//   computed whole and only their valid part is written back. With few rows (or few columns) packing B
//   (or A) costs more than it saves, and a twin micro-kernel reads that operand in place instead (masked
//   loads past the last column), doing per element the same operations: the same bits.
//
// Row-split invariance (callers rely on it): every c[i, j] is summed in the same order wherever row i
// falls in [0, m) and whatever m is. Per element: acc = 0; acc = fma(a[i,p], b[p,j], acc) for p in one
// KC block in increasing order; c = acc (first block, overwrite) or c = c + acc; blocks in increasing
// order. The KC blocking depends only on k, every lane of every tile (edge tiles zero-padded) runs the
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
// slot 0: packed A block, slot 1: packed B panel.
inline float* pack_buffer(int slot, size_t count) {
  thread_local std::vector<float> buffers[2];
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
    if (a_cs == 1 && valid == MR) {
      // rows contiguous: read each row along p, write with stride MR
      for (int64_t r = 0; r < MR; ++r) {
        const float* a_row = a_tile + r * a_rs;
        for (int64_t p = 0; p < kc; ++p) packed[p * MR + r] = a_row[p];
      }
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        float* dst = packed + p * MR;  // [MR]
        const float* a_col = a_tile + p * a_cs;
        int64_t r = 0;
        for (; r < valid; ++r) dst[r] = a_col[r * a_rs];
        for (; r < MR; ++r) dst[r] = 0.0f;
      }
    }
  }
}

// packed[panel][p][j] = b[p0 + p, j0 + panel * NR + j], zero for columns past `cols`.
//   packed: [ceil(cols / NR)][kc][NR]
template <int NR>
inline void pack_b_panel(int64_t kc, int64_t cols, const float* b, int64_t b_rs, int64_t b_cs, float* packed) {
  for (int64_t j0 = 0; j0 < cols; j0 += NR, packed += kc * NR) {
    const int64_t valid = std::min<int64_t>(NR, cols - j0);
    const float* b_tile = b + j0 * b_cs;  // [kc, valid] with strides (b_rs, b_cs)
    if (b_cs == 1) {
      for (int64_t p = 0; p < kc; ++p) {
        float* dst = packed + p * NR;
        std::memcpy(dst, b_tile + p * b_rs, size_t(valid) * sizeof(float));
        for (int64_t j = valid; j < NR; ++j) dst[j] = 0.0f;
      }
    } else if (b_rs == 1) {
      // b is a transposed view: read each column along p, write with stride NR
      for (int64_t j = 0; j < valid; ++j) {
        const float* b_col = b_tile + j * b_cs;
        for (int64_t p = 0; p < kc; ++p) packed[p * NR + j] = b_col[p];
      }
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t j = valid; j < NR; ++j) packed[p * NR + j] = 0.0f;
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

// Writes an MR x NR tile held in `tile` (row-major, [MR][NR]) to c: only rows < rows, cols < cols.
// c = tile (overwrite) or c = c + tile: the same float additions the full-tile vector path does.
template <int MR, int NR>
inline void store_edge_tile(const float* tile, float* c, int64_t ldc, int64_t rows, int64_t cols, bool overwrite) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j)
      c[r * ldc + j] = overwrite ? tile[r * NR + j] : c[r * ldc + j] + tile[r * NR + j];
}

// The blocked driver shared by the ISAs. Kernel provides MR, NR, KC, MC, NC, kPackAMinCols,
// kPackBMinRows and two micro-kernels that compute the same bits:
//   micro(kc, a_panel [kc][MR], b_panel [kc][NR], c, ldc, rows, cols, overwrite)      both operands packed
//   micro_direct(kc, a, a_rs, a_cs, b, b_rs, c, ldc, rows, cols, overwrite)          a strided, b rows b_rs
//     apart with contiguous columns; loads only columns < cols (masked, zero like the packed padding)
// Packing B pays when many row tiles reuse it (m large), and is needed when b's columns are strided;
// packing A pays when many column tiles reuse it (n large). Without packing the micro-kernel reads the
// operand in place. The arithmetic per element is the same either way, so these choices may depend on m.
// ep (may be null) is applied to each tile after its last KC block, while the tile is in L1; the
// block's element (0, 0) is the product's (i_base, j_base).
template <class Kernel>
inline void gemm_blocked(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                         int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate,
                         const GemmEpilogue<float>* ep = nullptr, int64_t i_base = 0, int64_t j_base = 0) {
  constexpr int64_t MR = Kernel::MR, NR = Kernel::NR, KC = Kernel::KC, MC = Kernel::MC, NC = Kernel::NC;
  static_assert(MC % MR == 0 && NC % NR == 0, "cache blocks hold whole register tiles");
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    if (ep) Kernel::epilogue(*ep, i_base, j_base, m, n, c, ldc);
    return;
  }
  const bool pack_b = b_cs != 1 || m >= Kernel::kPackBMinRows;
  const bool pack_a = pack_b && n >= Kernel::kPackAMinCols;
  const int64_t mc_max = std::min(MC, (m + MR - 1) / MR * MR), nc_max = std::min(NC, (n + NR - 1) / NR * NR);
  const int64_t kc_max = std::min(KC, k);
  float* a_packed = pack_a ? pack_buffer(0, size_t(mc_max * kc_max)) : nullptr;  // [mc/MR][kc][MR]
  float* b_packed = pack_b ? pack_buffer(1, size_t(kc_max * nc_max)) : nullptr;  // [nc/NR][kc][NR]
  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = std::min(NC, n - jc);
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = std::min(KC, k - pc);
      const bool overwrite = pc == 0 && !accumulate;
      const bool last_block = pc + kc >= k;
      const float* b_block = b + pc * b_rs + jc * b_cs;  // b[pc:pc+kc, jc:jc+nc]
      if (pack_b) pack_b_panel<NR>(kc, nc, b_block, b_rs, b_cs, b_packed);
      for (int64_t ic = 0; ic < m; ic += MC) {
        const int64_t mc = std::min(MC, m - ic);
        const float* a_block = a + ic * a_rs + pc * a_cs;  // a[ic:ic+mc, pc:pc+kc]
        if (pack_a) pack_a_block<MR>(mc, kc, a_block, a_rs, a_cs, a_packed);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t cols = std::min(NR, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t rows = std::min(MR, mc - ir);
            float* c_tile = c + (ic + ir) * ldc + jc + jr;
            if (pack_a) {
              Kernel::micro(kc, a_packed + (ir / MR) * kc * MR, b_packed + (jr / NR) * kc * NR, c_tile, ldc, rows, cols,
                            overwrite);
            } else if (pack_b) {
              Kernel::micro_direct(kc, a_block + ir * a_rs, a_rs, a_cs, b_packed + (jr / NR) * kc * NR, NR, c_tile, ldc,
                                   rows, cols, overwrite);
            } else {
              Kernel::micro_direct(kc, a_block + ir * a_rs, a_rs, a_cs, b_block + jr, b_rs, c_tile, ldc, rows, cols,
                                   overwrite);
            }
            if (ep && last_block) Kernel::epilogue(*ep, i_base + ic + ir, j_base + jc + jr, rows, cols, c_tile, ldc);
          }
        }
      }
    }
  }
}

#if GRAFT_GEMM_X86

// The micro-kernels hold an MR x NR tile of c in registers, acc[r][h] = c[r, h*V : (h+1)*V] (V lanes),
// and do kc rank-1 updates: per p, two vector loads of b[p, 0:NR], MR broadcasts of a[r, p], 2*MR FMAs.
// store_tile_* writes the tile back: c = acc (overwrite) or c = c + acc, only rows < rows, cols < cols.

__attribute__((target("avx512f"), always_inline)) inline void store_tile_avx512_12x32(const __m512 (&acc)[12][2], float* c,
                                                                       int64_t ldc, int64_t rows, int64_t cols,
                                                                       bool overwrite) {
  constexpr int MR = 12, NR = 32;
  if (rows == MR && cols == NR) {
    GRAFT_GEMM_UNROLL(12)
    for (int r = 0; r < MR; ++r) {
      float* c_row = c + r * ldc;
      if (overwrite) {
        _mm512_storeu_ps(c_row, acc[r][0]);
        _mm512_storeu_ps(c_row + 16, acc[r][1]);
      } else {
        _mm512_storeu_ps(c_row, _mm512_add_ps(_mm512_loadu_ps(c_row), acc[r][0]));
        _mm512_storeu_ps(c_row + 16, _mm512_add_ps(_mm512_loadu_ps(c_row + 16), acc[r][1]));
      }
    }
    return;
  }
  alignas(64) float tile[MR * NR];  // [MR][NR]
  GRAFT_GEMM_UNROLL(12)
  for (int r = 0; r < MR; ++r) {
    _mm512_store_ps(tile + r * NR, acc[r][0]);
    _mm512_store_ps(tile + r * NR + 16, acc[r][1]);
  }
  store_edge_tile<MR, NR>(tile, c, ldc, rows, cols, overwrite);
}

// AVX-512, 12 x 32 tile (24 zmm accumulators) from packed panels: a_panel [kc][12], b_panel [kc][32].
__attribute__((target("avx512f"))) inline void gemm_microkernel_avx512_12x32(int64_t kc, const float* a_panel,
                                                                             const float* b_panel, float* c,
                                                                             int64_t ldc, int64_t rows, int64_t cols,
                                                                             bool overwrite) {
  constexpr int MR = 12, NR = 32;
  __m512 acc[MR][2];
  GRAFT_GEMM_UNROLL(12)
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(b_panel + p * NR);       // b[p, 0:16]
    const __m512 b1 = _mm512_loadu_ps(b_panel + p * NR + 16);  // b[p, 16:32]
    const float* a_p = a_panel + p * MR;                       // a[0:12, p]
    GRAFT_GEMM_UNROLL(12)
    for (int r = 0; r < MR; ++r) {
      const __m512 a_rp = _mm512_set1_ps(a_p[r]);
      acc[r][0] = _mm512_fmadd_ps(a_rp, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a_rp, b1, acc[r][1]);
    }
  }
  store_tile_avx512_12x32(acc, c, ldc, rows, cols, overwrite);
}

// AVX-512, 12 x 32 tile straight from a (strides a_rs, a_cs) and b (rows b_rs apart, columns contiguous).
// Columns >= cols are loaded as zero (masked), rows >= rows repeat row 0 and are not stored.
__attribute__((target("avx512f"))) inline void gemm_microkernel_avx512_12x32_direct(
    int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t b_rs, float* c, int64_t ldc,
    int64_t rows, int64_t cols, bool overwrite) {
  constexpr int MR = 12;
  const __mmask16 mask0 = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1);
  const __mmask16 mask1 = cols >= 32 ? __mmask16(0xFFFF) : cols > 16 ? __mmask16((1u << (cols - 16)) - 1) : __mmask16(0);
  const float* a_row[MR];
  for (int r = 0; r < MR; ++r) a_row[r] = a + (r < rows ? r : 0) * a_rs;
  __m512 acc[MR][2];
  GRAFT_GEMM_UNROLL(12)
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_maskz_loadu_ps(mask0, b + p * b_rs);       // b[p, 0:16]
    const __m512 b1 = _mm512_maskz_loadu_ps(mask1, b + p * b_rs + 16);  // b[p, 16:32]
    GRAFT_GEMM_UNROLL(12)
    for (int r = 0; r < MR; ++r) {
      const __m512 a_rp = _mm512_set1_ps(a_row[r][p * a_cs]);
      acc[r][0] = _mm512_fmadd_ps(a_rp, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a_rp, b1, acc[r][1]);
    }
  }
  store_tile_avx512_12x32(acc, c, ldc, rows, cols, overwrite);
}

__attribute__((target("avx2,fma"), always_inline)) inline void store_tile_avx2_6x16(const __m256 (&acc)[6][2], float* c, int64_t ldc,
                                                                     int64_t rows, int64_t cols, bool overwrite) {
  constexpr int MR = 6, NR = 16;
  if (rows == MR && cols == NR) {
    GRAFT_GEMM_UNROLL(6)
    for (int r = 0; r < MR; ++r) {
      float* c_row = c + r * ldc;
      if (overwrite) {
        _mm256_storeu_ps(c_row, acc[r][0]);
        _mm256_storeu_ps(c_row + 8, acc[r][1]);
      } else {
        _mm256_storeu_ps(c_row, _mm256_add_ps(_mm256_loadu_ps(c_row), acc[r][0]));
        _mm256_storeu_ps(c_row + 8, _mm256_add_ps(_mm256_loadu_ps(c_row + 8), acc[r][1]));
      }
    }
    return;
  }
  alignas(32) float tile[MR * NR];  // [MR][NR]
  GRAFT_GEMM_UNROLL(6)
  for (int r = 0; r < MR; ++r) {
    _mm256_store_ps(tile + r * NR, acc[r][0]);
    _mm256_store_ps(tile + r * NR + 8, acc[r][1]);
  }
  store_edge_tile<MR, NR>(tile, c, ldc, rows, cols, overwrite);
}

// AVX2+FMA, 6 x 16 tile (12 ymm accumulators) from packed panels: a_panel [kc][6], b_panel [kc][16].
__attribute__((target("avx2,fma"))) inline void gemm_microkernel_avx2_6x16(int64_t kc, const float* a_panel,
                                                                          const float* b_panel, float* c, int64_t ldc,
                                                                          int64_t rows, int64_t cols, bool overwrite) {
  constexpr int MR = 6, NR = 16;
  __m256 acc[MR][2];
  GRAFT_GEMM_UNROLL(6)
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b_panel + p * NR);      // b[p, 0:8]
    const __m256 b1 = _mm256_loadu_ps(b_panel + p * NR + 8);  // b[p, 8:16]
    const float* a_p = a_panel + p * MR;                      // a[0:6, p]
    GRAFT_GEMM_UNROLL(6)
    for (int r = 0; r < MR; ++r) {
      const __m256 a_rp = _mm256_broadcast_ss(a_p + r);
      acc[r][0] = _mm256_fmadd_ps(a_rp, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(a_rp, b1, acc[r][1]);
    }
  }
  store_tile_avx2_6x16(acc, c, ldc, rows, cols, overwrite);
}

// AVX2+FMA, 6 x 16 tile straight from a and b, as gemm_microkernel_avx512_12x32_direct.
__attribute__((target("avx2,fma"))) inline void gemm_microkernel_avx2_6x16_direct(int64_t kc, const float* a,
                                                                                 int64_t a_rs, int64_t a_cs,
                                                                                 const float* b, int64_t b_rs, float* c,
                                                                                 int64_t ldc, int64_t rows,
                                                                                 int64_t cols, bool overwrite) {
  constexpr int MR = 6;
  alignas(32) int32_t lane_valid[16];  // -1 where the column is < cols (maskload reads those lanes only)
  for (int j = 0; j < 16; ++j) lane_valid[j] = j < cols ? -1 : 0;
  const __m256i mask0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lane_valid));
  const __m256i mask1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lane_valid + 8));
  const float* a_row[MR];
  for (int r = 0; r < MR; ++r) a_row[r] = a + (r < rows ? r : 0) * a_rs;
  __m256 acc[MR][2];
  GRAFT_GEMM_UNROLL(6)
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_maskload_ps(b + p * b_rs, mask0);      // b[p, 0:8]
    const __m256 b1 = _mm256_maskload_ps(b + p * b_rs + 8, mask1);  // b[p, 8:16]
    GRAFT_GEMM_UNROLL(6)
    for (int r = 0; r < MR; ++r) {
      const __m256 a_rp = _mm256_broadcast_ss(a_row[r] + p * a_cs);
      acc[r][0] = _mm256_fmadd_ps(a_rp, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(a_rp, b1, acc[r][1]);
    }
  }
  store_tile_avx2_6x16(acc, c, ldc, rows, cols, overwrite);
}

// Cache blocks: the KC x NR micro-panel of B (reused by every row tile) stays in L1, the MC x KC block of
// A in L2, the KC x NC panel of B in L3. Packing thresholds measured on Zen 3 (AVX2): reading in place
// wins up to ~8 row tiles (B) and ~4 column tiles (A). The AVX-512 numbers are the same rule, untuned.
struct Avx512Kernel {
  static constexpr int64_t MR = 12, NR = 32, KC = 256, MC = 144, NC = 4096;
  static constexpr int64_t kPackBMinRows = 8 * MR, kPackAMinCols = 4 * NR;
  static void micro(int64_t kc, const float* a_panel, const float* b_panel, float* c, int64_t ldc, int64_t rows,
                    int64_t cols, bool overwrite) {
    gemm_microkernel_avx512_12x32(kc, a_panel, b_panel, c, ldc, rows, cols, overwrite);
  }
  static void micro_direct(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t b_rs,
                           float* c, int64_t ldc, int64_t rows, int64_t cols, bool overwrite) {
    gemm_microkernel_avx512_12x32_direct(kc, a, a_rs, a_cs, b, b_rs, c, ldc, rows, cols, overwrite);
  }
  static void epilogue(const GemmEpilogue<float>& ep, int64_t i0, int64_t j0, int64_t rows, int64_t cols, float* c,
                       int64_t ldc) {
    avx512::gemm_epilogue(ep, i0, j0, rows, cols, c, ldc);
  }
};
struct Avx2Kernel {
  static constexpr int64_t MR = 6, NR = 16, KC = 256, MC = 120, NC = 3072;
  static constexpr int64_t kPackBMinRows = 8 * MR, kPackAMinCols = 4 * NR;
  static void micro(int64_t kc, const float* a_panel, const float* b_panel, float* c, int64_t ldc, int64_t rows,
                    int64_t cols, bool overwrite) {
    gemm_microkernel_avx2_6x16(kc, a_panel, b_panel, c, ldc, rows, cols, overwrite);
  }
  static void micro_direct(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t b_rs,
                           float* c, int64_t ldc, int64_t rows, int64_t cols, bool overwrite) {
    gemm_microkernel_avx2_6x16_direct(kc, a, a_rs, a_cs, b, b_rs, c, ldc, rows, cols, overwrite);
  }
  static void epilogue(const GemmEpilogue<float>& ep, int64_t i0, int64_t j0, int64_t rows, int64_t cols, float* c,
                       int64_t ldc) {
    avx2::gemm_epilogue(ep, i0, j0, rows, cols, c, ldc);
  }
};

#endif  // GRAFT_GEMM_X86

// Below this many multiply-adds (about 10 us on one core) a product stays on one thread: a region
// costs about a microsecond, packing per thread more, and attention's 64 x 64 x 64 tile products
// must not each wake the pool.
inline constexpr int64_t kGemmParallelMinWork = int64_t(1) << 20;

// gemm_blocked<Kernel> split over the pool. Column slabs are whole NR-wide panels and row slabs whole
// MR-high tiles, so no tile straddles two threads; a slab is gemm_blocked on a sub-block, and since the
// per-element arithmetic depends on neither m nor n (only on k and the ISA) the bits do not change.
template <class Kernel>
inline void gemm_threaded(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                          int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate,
                          const GemmEpilogue<float>* ep) {
  constexpr int64_t MR = Kernel::MR, NR = Kernel::NR;
  const int64_t threads = get_num_threads();
  if (threads <= 1 || m * n * k < kGemmParallelMinWork || ThreadPool::in_worker() || m <= 0 || n <= 0) {
    gemm_blocked<Kernel>(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate, ep);
    return;
  }
  const int64_t col_tiles = (n + NR - 1) / NR, row_tiles = (m + MR - 1) / MR;
  // Columns when every thread gets at least 4 panels (then packing all of a per thread is cheap next
  // to its share of the work), else whichever dimension has more tiles.
  const bool by_cols = col_tiles >= 4 * threads || col_tiles >= row_tiles;
  const int64_t tiles = by_cols ? col_tiles : row_tiles;
  const int64_t per_thread = (tiles + threads - 1) / threads;
  parallel_for(0, tiles, per_thread, [&](int64_t t0, int64_t t1) {
    if (by_cols) {
      const int64_t j0 = t0 * NR, j1 = std::min(n, t1 * NR);
      gemm_blocked<Kernel>(m, j1 - j0, k, a, a_rs, a_cs, b + j0 * b_cs, b_rs, b_cs, c + j0, ldc, accumulate, ep, 0, j0);
    } else {
      const int64_t i0 = t0 * MR, i1 = std::min(m, t1 * MR);
      gemm_blocked<Kernel>(i1 - i0, n, k, a + i0 * a_rs, a_rs, a_cs, b, b_rs, b_cs, c + i0 * ldc, ldc, accumulate, ep,
                           i0, 0);
    }
  });
}

}  // namespace gemm_detail

// The AVX-512 kernels (12 x 32 tiles) for any shape, never gemm_reference. Throws if the CPU lacks avx512f.
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
