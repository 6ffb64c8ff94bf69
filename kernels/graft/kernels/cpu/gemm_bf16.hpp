// graft/kernels/cpu/gemm_bf16.hpp - the bfloat16 GEMM: bfloat16 operands, float32 sums.
//
//   gemm_bf16(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc)
//     c[i, j] = sum_p a[i, p] * b[p, j]   (c float32, overwritten; a, b bfloat16 with any strides, as gemm)
//   on the path active_bf16_isa() names (cpu_features.hpp, GRAFT_BF16_ISA):
//     Amx         AMX tiles: c in 32 x 32 blocks of four 16 x 16 float32 tiles, TDPBF16PS adding 32 k at a
//                 time from an a tile (16 rows x 32 k, row-major) and a b tile (16 k pairs x 16 columns,
//                 each column's two k values adjacent: the "VNNI" layout)
//     Avx512Bf16  VDPBF16PS: 6 x 64 register tiles as the float32 kernel's, each FMA step taking a k pair
//                 (a[i, 2p], a[i, 2p+1] broadcast as one 32-bit value; b packed in the same pair layout)
//     Widen       a and b converted to float32, then the float32 GEMM (gemm.hpp)
//   gemm_bf16_on(path, ...) runs a given path, including PairsEmulated and TilesEmulated: the packing,
//   padding and blocking of the two hardware paths with a scalar stand-in for the one instruction
//   (a float32 multiply-add per k pair, in the instruction's order), so that code is tested on every CPU.
//
// Both hardware paths pack a and b into zero-padded buffers first (k rounded up to a pair or to 32,
// rows and columns to whole tiles), so their inner loops have no edge cases; the price is O(m k + k n)
// of copying against O(m n k) of arithmetic. Products of two bfloat16 values are exact in float32, so
// the paths differ from each other and from Widen only in the order of the float32 additions.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "graft/core/dtype.hpp"
#include "graft/core/error.hpp"
#include "graft/core/parallel.hpp"
#include "graft/kernels/cpu/cpu_features.hpp"
#include "graft/kernels/cpu/gemm.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define GRAFT_GEMM_BF16_X86 1
#include <immintrin.h>
#else
#define GRAFT_GEMM_BF16_X86 0
#endif

namespace graft::kernels::cpu {

enum class Bf16GemmPath { Widen, Avx512Bf16, Amx, PairsEmulated, TilesEmulated };

inline const char* bf16_gemm_path_name(Bf16GemmPath p) {
  switch (p) {
    case Bf16GemmPath::Widen: return "widen";
    case Bf16GemmPath::Avx512Bf16: return "avx512_bf16";
    case Bf16GemmPath::Amx: return "amx";
    case Bf16GemmPath::PairsEmulated: return "avx512_bf16 (emulated)";
    case Bf16GemmPath::TilesEmulated: return "amx (emulated)";
  }
  return "unknown";
}

namespace gemm_bf16_detail {

inline uint16_t bits(const BFloat16* p, int64_t off) { return p[off].bits; }
inline float to_float(uint16_t b) {
  BFloat16 h;
  h.bits = b;
  return float(h);
}

// ---- the pair layout (AVX512_BF16) -----------------------------------------------------------
// a: [row tile t][pair p][r] = (a[t MR + r, 2p], a[t MR + r, 2p + 1]) as one uint32 (low half first),
// b: [column panel q][pair p][j][2] = (b[2p, q NR + j], b[2p + 1, q NR + j]); zero past m, n and k.
struct Pairs {
  static constexpr int64_t MR = 6, NR = 64;
};

inline void pack_a_pairs(int64_t m, int64_t k, const BFloat16* a, int64_t a_rs, int64_t a_cs, uint32_t* dst) {
  const int64_t kp = (k + 1) / 2, tiles = (m + Pairs::MR - 1) / Pairs::MR;
  parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t p = 0; p < kp; ++p)
        for (int64_t r = 0; r < Pairs::MR; ++r) {
          const int64_t i = t * Pairs::MR + r;
          uint32_t lo = 0, hi = 0;
          if (i < m) {
            lo = bits(a, i * a_rs + 2 * p * a_cs);
            if (2 * p + 1 < k) hi = bits(a, i * a_rs + (2 * p + 1) * a_cs);
          }
          dst[(t * kp + p) * Pairs::MR + r] = lo | (hi << 16);
        }
  });
}

inline void pack_b_pairs(int64_t k, int64_t n, const BFloat16* b, int64_t b_rs, int64_t b_cs, uint16_t* dst) {
  const int64_t kp = (k + 1) / 2, panels = (n + Pairs::NR - 1) / Pairs::NR;
  parallel_for(0, panels * kp, 64, [&](int64_t lo, int64_t hi) {
    for (int64_t qp = lo; qp < hi; ++qp) {
      const int64_t q = qp / kp, p = qp % kp;
      uint16_t* out = dst + (q * kp + p) * Pairs::NR * 2;
      for (int64_t j = 0; j < Pairs::NR; ++j) {
        const int64_t col = q * Pairs::NR + j;
        out[2 * j] = col < n ? bits(b, 2 * p * b_rs + col * b_cs) : 0;
        out[2 * j + 1] = col < n && 2 * p + 1 < k ? bits(b, (2 * p + 1) * b_rs + col * b_cs) : 0;
      }
    }
  });
}

// The stand-in for VDPBF16PS on one tile: acc[r][j] += a_hi b_hi, then += a_lo b_lo (the SDM's order).
inline void micro_pairs_emulated(int64_t kp, const uint32_t* a, const uint16_t* b, float* c, int64_t ldc,
                                 int64_t rows, int64_t cols) {
  float acc[Pairs::MR][Pairs::NR] = {};
  for (int64_t p = 0; p < kp; ++p)
    for (int64_t r = 0; r < Pairs::MR; ++r) {
      const uint32_t pair = a[p * Pairs::MR + r];
      const float a_lo = to_float(uint16_t(pair & 0xffffu)), a_hi = to_float(uint16_t(pair >> 16));
      const uint16_t* bp = b + p * Pairs::NR * 2;
      for (int64_t j = 0; j < Pairs::NR; ++j) {
        acc[r][j] += a_hi * to_float(bp[2 * j + 1]);
        acc[r][j] += a_lo * to_float(bp[2 * j]);
      }
    }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) c[r * ldc + j] = acc[r][j];
}

#if GRAFT_GEMM_BF16_X86
// GCC 12 reports the intrinsics' own _mm512_undefined_*() operands as uninitialized (a false
// positive, GCC bug 105593, as in gemm.hpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) inline void micro_pairs_avx512bf16(
    int64_t kp, const uint32_t* a, const uint16_t* b, float* c, int64_t ldc, int64_t rows, int64_t cols) {
  constexpr int MR = 6, NV = 4;
  __m512 acc[MR][NV];
  GRAFT_GEMM_UNROLL(6)
  for (int r = 0; r < MR; ++r) {
    GRAFT_GEMM_UNROLL(4)
    for (int h = 0; h < NV; ++h) acc[r][h] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < kp; ++p) {
    __m512bh bv[NV];  // 16 columns x 2 k each
    GRAFT_GEMM_UNROLL(4)
    for (int h = 0; h < NV; ++h)
      bv[h] = (__m512bh)_mm512_loadu_si512(reinterpret_cast<const void*>(b + (p * Pairs::NR + h * 16) * 2));
    GRAFT_GEMM_UNROLL(6)
    for (int r = 0; r < MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(int(a[p * MR + r]));
      GRAFT_GEMM_UNROLL(4)
      for (int h = 0; h < NV; ++h) acc[r][h] = _mm512_dpbf16_ps(acc[r][h], av, bv[h]);
    }
  }
  for (int r = 0; r < MR && r < rows; ++r)
    for (int h = 0; h < NV; ++h) {
      const int64_t left = cols - h * 16;
      if (left <= 0) break;
      const __mmask16 mask = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u);
      _mm512_mask_storeu_ps(c + r * ldc + h * 16, mask, acc[r][h]);
    }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

inline void gemm_pairs(bool emulated, int64_t m, int64_t n, int64_t k, const BFloat16* a, int64_t a_rs, int64_t a_cs,
                       const BFloat16* b, int64_t b_rs, int64_t b_cs, float* c, int64_t ldc) {
  const int64_t kp = (k + 1) / 2, tiles = (m + Pairs::MR - 1) / Pairs::MR, panels = (n + Pairs::NR - 1) / Pairs::NR;
  std::vector<uint32_t> ap(size_t(tiles * kp * Pairs::MR));
  std::vector<uint16_t> bp(size_t(panels * kp * Pairs::NR * 2));
  pack_a_pairs(m, k, a, a_rs, a_cs, ap.data());
  pack_b_pairs(k, n, b, b_rs, b_cs, bp.data());
  // Tasks (q, t) with t fastest: consecutive tasks of a thread share the b panel (kp x 64 pairs, in L2).
  parallel_for(0, tiles * panels, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t q = task / tiles, t = task % tiles;
      const int64_t rows = std::min(Pairs::MR, m - t * Pairs::MR), cols = std::min(Pairs::NR, n - q * Pairs::NR);
      const uint32_t* at = ap.data() + t * kp * Pairs::MR;
      const uint16_t* bt = bp.data() + q * kp * Pairs::NR * 2;
      float* ct = c + t * Pairs::MR * ldc + q * Pairs::NR;
#if GRAFT_GEMM_BF16_X86
      if (!emulated) {
        micro_pairs_avx512bf16(kp, at, bt, ct, ldc, rows, cols);
        continue;
      }
#endif
      micro_pairs_emulated(kp, at, bt, ct, ldc, rows, cols);
    }
  });
}

// ---- the tile layout (AMX) -------------------------------------------------------------------
// a: [Mp][Kp] row-major, b: [Kp / 2][Np][2] (VNNI), c: [Mp][Np] float32, with Mp, Np multiples of 32
// (a block of 2 x 2 tiles) and Kp a multiple of 32 (one tile's depth); zero padded.
struct Tiles {
  static constexpr int64_t kBlock = 32, kDepth = 32;
  static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }
};

inline void pack_a_tiles(int64_t m, int64_t k, int64_t Kp, const BFloat16* a, int64_t a_rs, int64_t a_cs, uint16_t* dst,
                         int64_t Mp) {
  parallel_for(0, Mp, 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t p = 0; p < Kp; ++p) dst[i * Kp + p] = i < m && p < k ? bits(a, i * a_rs + p * a_cs) : 0;
  });
}

inline void pack_b_tiles(int64_t k, int64_t n, int64_t Kp, int64_t Np, const BFloat16* b, int64_t b_rs, int64_t b_cs,
                         uint16_t* dst) {
  parallel_for(0, Kp / 2, 8, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t j = 0; j < Np; ++j)
        for (int64_t e = 0; e < 2; ++e) {
          const int64_t row = 2 * p + e;
          dst[(p * Np + j) * 2 + e] = row < k && j < n ? bits(b, row * b_rs + j * b_cs) : 0;
        }
  });
}

// The stand-in for TDPBF16PS: c tile [16][16] (stride ldc floats) += a tile [16 rows][32 k] (stride lda
// elements) x b tile [16 pairs][16 columns][2] (stride ldb elements per pair row).
inline void tile_dp_emulated(float* c, int64_t ldc, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb) {
  for (int64_t r = 0; r < 16; ++r)
    for (int64_t p = 0; p < 16; ++p) {
      const float a_lo = to_float(a[r * lda + 2 * p]), a_hi = to_float(a[r * lda + 2 * p + 1]);
      for (int64_t j = 0; j < 16; ++j) {
        c[r * ldc + j] += a_lo * to_float(b[p * ldb + 2 * j]);
        c[r * ldc + j] += a_hi * to_float(b[p * ldb + 2 * j + 1]);
      }
    }
}

#if GRAFT_GEMM_BF16_X86
// Palette 1, tiles 0-7 all 16 rows x 64 bytes: tmm0-3 the 2 x 2 c tiles, tmm4-5 a, tmm6-7 b.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
  TileConfig() {
    for (int t = 0; t < 8; ++t) {
      colsb[t] = 64;
      rows[t] = 16;
    }
  }
};

// One 32 x 32 block of c: c tile (u, v) at cb + 16 u ldc + 16 v; a rows at ab (stride Kp), b pairs at
// bb (columns j0.., stride Np pairs).
__attribute__((target("amx-tile,amx-bf16,avx512f"))) inline void block_amx(int64_t Kp, int64_t Np, const uint16_t* ab,
                                                                          const uint16_t* bb, float* cb) {
  const int64_t a_stride = Kp * 2, b_stride = Np * 4, c_stride = Np * 4;  // bytes
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t p = 0; p < Kp; p += Tiles::kDepth) {
    _tile_loadd(4, ab + p, a_stride);                      // rows 0-15, k p .. p+31
    _tile_loadd(5, ab + 16 * Kp + p, a_stride);            // rows 16-31
    _tile_loadd(6, bb + (p / 2) * Np * 2, b_stride);       // pairs p/2 .. p/2+15, columns 0-15
    _tile_loadd(7, bb + (p / 2) * Np * 2 + 32, b_stride);  // columns 16-31
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, cb, c_stride);
  _tile_stored(1, cb + 16, c_stride);
  _tile_stored(2, cb + 16 * Np, c_stride);
  _tile_stored(3, cb + 16 * Np + 16, c_stride);
}
__attribute__((target("amx-tile"))) inline void tiles_begin(const TileConfig& cfg) { _tile_loadconfig(&cfg); }
__attribute__((target("amx-tile"))) inline void tiles_end() { _tile_release(); }
#endif

inline void block_emulated(int64_t Kp, int64_t Np, const uint16_t* ab, const uint16_t* bb, float* cb) {
  for (int64_t u = 0; u < 2; ++u)
    for (int64_t v = 0; v < 2; ++v) {
      float* ct = cb + 16 * u * Np + 16 * v;
      for (int64_t r = 0; r < 16; ++r) std::fill(ct + r * Np, ct + r * Np + 16, 0.0f);
      for (int64_t p = 0; p < Kp; p += Tiles::kDepth)
        tile_dp_emulated(ct, Np, ab + 16 * u * Kp + p, Kp, bb + (p / 2) * Np * 2 + 32 * v, Np * 2);
    }
}

inline void gemm_tiles(bool emulated, int64_t m, int64_t n, int64_t k, const BFloat16* a, int64_t a_rs, int64_t a_cs,
                       const BFloat16* b, int64_t b_rs, int64_t b_cs, float* c, int64_t ldc) {
  const int64_t Mp = Tiles::round_up(m, Tiles::kBlock), Np = Tiles::round_up(n, Tiles::kBlock),
                Kp = Tiles::round_up(k, Tiles::kDepth);
  std::vector<uint16_t> ap(size_t(Mp * Kp)), bp(size_t(Kp * Np));
  std::vector<float> cp(size_t(Mp * Np));
  pack_a_tiles(m, k, Kp, a, a_rs, a_cs, ap.data(), Mp);
  pack_b_tiles(k, n, Kp, Np, b, b_rs, b_cs, bp.data());
  const int64_t mb = Mp / Tiles::kBlock, nb = Np / Tiles::kBlock;
  // Blocks (column block, row block) with rows fastest: a thread's consecutive blocks share b's columns.
  parallel_for(0, mb * nb, 1, [&](int64_t lo, int64_t hi) {
#if GRAFT_GEMM_BF16_X86
    if (!emulated) tiles_begin(TileConfig{});  // the tile configuration is per thread
#endif
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t jb = task / mb, ib = task % mb;
      const uint16_t* ab = ap.data() + ib * Tiles::kBlock * Kp;
      const uint16_t* bb = bp.data() + jb * Tiles::kBlock * 2;
      float* cb = cp.data() + ib * Tiles::kBlock * Np + jb * Tiles::kBlock;
#if GRAFT_GEMM_BF16_X86
      if (!emulated) {
        block_amx(Kp, Np, ab, bb, cb);
        continue;
      }
#endif
      block_emulated(Kp, Np, ab, bb, cb);
    }
#if GRAFT_GEMM_BF16_X86
    if (!emulated) tiles_end();
#endif
  });
  for (int64_t i = 0; i < m; ++i) std::memcpy(c + i * ldc, cp.data() + i * Np, size_t(n) * sizeof(float));
}

// a and b widened to float32 (contiguous copies), then the float32 GEMM.
inline void gemm_widen(int64_t m, int64_t n, int64_t k, const BFloat16* a, int64_t a_rs, int64_t a_cs, const BFloat16* b,
                       int64_t b_rs, int64_t b_cs, float* c, int64_t ldc) {
  std::vector<float> af(size_t(m * k)), bf(size_t(k * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p) af[size_t(i * k + p)] = float(a[i * a_rs + p * a_cs]);
  for (int64_t p = 0; p < k; ++p)
    for (int64_t j = 0; j < n; ++j) bf[size_t(p * n + j)] = float(b[p * b_rs + j * b_cs]);
  gemm<float>(m, n, k, af.data(), k, 1, bf.data(), n, 1, c, ldc, /*accumulate=*/false);
}

}  // namespace gemm_bf16_detail

// Tests pin gemm_bf16's path here (an int of Bf16GemmPath; -1: by active_bf16_isa()), so the emulated
// AMX / AVX512_BF16 paths also run behind matmul and linear on CPUs without those instructions.
inline std::atomic<int> forced_bf16_gemm_path{-1};

// The path gemm_bf16 takes on this CPU (active_bf16_isa(), unless forced_bf16_gemm_path is set).
inline Bf16GemmPath active_bf16_gemm_path() {
  if (const int forced = forced_bf16_gemm_path.load(std::memory_order_relaxed); forced >= 0)
    return static_cast<Bf16GemmPath>(forced);
  switch (active_bf16_isa()) {
    case Bf16Isa::Amx: return Bf16GemmPath::Amx;
    case Bf16Isa::Avx512Bf16: return Bf16GemmPath::Avx512Bf16;
    case Bf16Isa::Widen: break;
  }
  return Bf16GemmPath::Widen;
}

// Whether `path` runs on this CPU (the emulated ones and Widen always do).
inline bool bf16_gemm_path_available(Bf16GemmPath path) {
  switch (path) {
    case Bf16GemmPath::Amx: return detected_bf16_isa() >= Bf16Isa::Amx;
    case Bf16GemmPath::Avx512Bf16: return detected_bf16_isa() >= Bf16Isa::Avx512Bf16;
    default: return true;
  }
}

inline void gemm_bf16_on(Bf16GemmPath path, int64_t m, int64_t n, int64_t k, const BFloat16* a, int64_t a_rs,
                         int64_t a_cs, const BFloat16* b, int64_t b_rs, int64_t b_cs, float* c, int64_t ldc) {
  GRAFT_CHECK(bf16_gemm_path_available(path), "gemm_bf16", "this CPU lacks ", bf16_gemm_path_name(path), " (detected ",
              bf16_isa_name(detected_bf16_isa()), ")");
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  using namespace gemm_bf16_detail;
  switch (path) {
    case Bf16GemmPath::Widen: return gemm_widen(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc);
    case Bf16GemmPath::Avx512Bf16: return gemm_pairs(false, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc);
    case Bf16GemmPath::PairsEmulated: return gemm_pairs(true, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc);
    case Bf16GemmPath::Amx: return gemm_tiles(false, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc);
    case Bf16GemmPath::TilesEmulated: return gemm_tiles(true, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc);
  }
}

// c[m, n] (float32) = a[m, k] b[k, n] (bfloat16, any strides) on this CPU's path.
inline void gemm_bf16(int64_t m, int64_t n, int64_t k, const BFloat16* a, int64_t a_rs, int64_t a_cs, const BFloat16* b,
                      int64_t b_rs, int64_t b_cs, float* c, int64_t ldc) {
  gemm_bf16_on(active_bf16_gemm_path(), m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc);
}

}  // namespace graft::kernels::cpu
