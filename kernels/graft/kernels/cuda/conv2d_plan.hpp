// graft/kernels/cuda/conv2d_plan.hpp - the index math of the CUDA convolution kernels (conv2d.cuh),
// free of CUDA headers so that tests/test_cuda_conv2d_host.cpp checks it on the CPU:
//
//   FastDivmod          n / d and n % d for 0 <= n < 2^31 by a multiply and a shift (the divisor is
//                       fixed per launch: taps KH KW, KW, OH OW, OW, ...), as CUTLASS's FastDivmod
//   Conv2dDims          the sizes of one convolution as the kernels read them (int32, divisors ready)
//   im2col_column/row   the im2col matrix's entries, read from x on the fly (forward, weight gradient)
//   conv2d_dx_taps      for the input gradient at stride > 1: which kernel taps reach the input
//                       positions of one residue class (phase) of the stride, and where they read dout;
//                       dx_column / dx_tap decode the phase GEMM's columns and reduction index
//   conv2d_split_k      how the weight gradient's reduction over N OH OW is cut into chunks
//   mma16_warp_*, kLd16 the 16-bit tensor-core kernels' warp tiles and shared rows
//
// Shapes and names as in graft/core/conv2d_geometry.hpp.
#pragma once
#include <algorithm>
#include <cstdint>

#include "graft/core/conv2d_geometry.hpp"
#include "graft/core/dtype.hpp"  // GRAFT_HOST_DEVICE

namespace graft::kernels::cuda {

// q = n / d, r = n % d for 0 <= n < 2^31 and a divisor 1 <= d < 2^31 fixed on the host.
// With p = 31 + ceil(log2 d) and m = ceil(2^p / d) (2^31 <= m < 2^32 for d >= 2), n / d equals
// floor(n m / 2^p) = umulhi(n, m) >> (p - 32) for every n < 2^31 (Granlund and Montgomery, 1994).
// d = 1 is taken apart (its m would be 2^32).
struct FastDivmod {
  int32_t divisor = 1;
  uint32_t multiplier = 0, shift = 0;

  FastDivmod() = default;
  explicit FastDivmod(int32_t d) : divisor(d) {
    if (d <= 1) return;  // d = 1: n itself; d < 1 is never divided by (the caller's sizes are >= 1)
    uint32_t log2_ceil = 0;
    while ((uint64_t(1) << log2_ceil) < uint64_t(d)) ++log2_ceil;
    const uint32_t p = 31 + log2_ceil;
    multiplier = uint32_t(((uint64_t(1) << p) + uint64_t(d) - 1) / uint64_t(d));
    shift = p - 32;
  }

  GRAFT_HOST_DEVICE int32_t div(int32_t n) const {
    if (divisor == 1) return n;
#if defined(__CUDA_ARCH__)
    return int32_t(__umulhi(uint32_t(n), multiplier) >> shift);
#else
    return int32_t(uint32_t((uint64_t(uint32_t(n)) * multiplier) >> 32) >> shift);
#endif
  }
  GRAFT_HOST_DEVICE void divmod(int32_t n, int32_t& q, int32_t& r) const {
    q = div(n);
    r = n - q * divisor;
  }
};

// One convolution's sizes for the kernels. Every index a kernel decodes with a FastDivmod is below
// 2^30 (conv2d_fits_int32 checks it on the host; the headroom keeps a tile's index past the end, such
// as k + BK, in range); offsets into the tensors are formed in int64.
struct Conv2dDims {
  int32_t N, C, H, W;           // x [N, C, H, W]
  int32_t O, KH, KW;            // weight [O, Cg, KH, KW]
  int32_t OH, OW;               // out [N, O, OH, OW]
  int32_t G, Cg, Og;            // groups, channels per group in and out
  int32_t sh, sw, ph, pw, dh, dw;
  int32_t R, L;                 // Cg KH KW (the forward GEMM's reduction), OH OW
  FastDivmod by_taps, by_kw;    // r -> (c, kh KW + kw) -> (kh, kw)
  FastDivmod by_l, by_ow;       // p = n L + l -> (n, l); l -> (oh, ow)
  FastDivmod by_w;              // e = ih W + iw -> (ih, iw)
};

// True when every index the kernels decode in int32 stays below 2^30: the columns N OH OW and N H W,
// the reductions Cg KH KW and Og KH KW, the plane counts N O and N C.
inline bool conv2d_fits_int32(const Conv2dGeometry& g) {
  const int64_t lim = int64_t(1) << 30;
  for (int64_t v : {g.N * g.L, g.N * g.H * g.W, g.R, g.Og * g.KH * g.KW, g.N * g.O, g.N * g.C, g.KH * g.KW})
    if (v >= lim) return false;
  return true;
}

inline Conv2dDims conv2d_dims(const Conv2dGeometry& g) {
  Conv2dDims d;
  d.N = int32_t(g.N), d.C = int32_t(g.C), d.H = int32_t(g.H), d.W = int32_t(g.W);
  d.O = int32_t(g.O), d.KH = int32_t(g.KH), d.KW = int32_t(g.KW), d.OH = int32_t(g.OH), d.OW = int32_t(g.OW);
  d.G = int32_t(g.G), d.Cg = int32_t(g.Cg), d.Og = int32_t(g.Og);
  d.sh = int32_t(g.sh), d.sw = int32_t(g.sw), d.ph = int32_t(g.ph), d.pw = int32_t(g.pw);
  d.dh = int32_t(g.dh), d.dw = int32_t(g.dw);
  d.R = int32_t(g.R), d.L = int32_t(g.L);
  d.by_taps = FastDivmod(int32_t(g.KH * g.KW));
  d.by_kw = FastDivmod(int32_t(g.KW));
  d.by_l = FastDivmod(int32_t(std::max<int64_t>(g.L, 1)));
  d.by_ow = FastDivmod(int32_t(std::max<int64_t>(g.OW, 1)));
  d.by_w = FastDivmod(int32_t(std::max<int64_t>(g.W, 1)));
  return d;
}

// The im2col matrix of one group, cols_g [R, N OH OW] (forward: B; weight gradient: B^T):
//   cols_g[r, p] = x[n, g Cg + c, oh sh - ph + kh dh, ow sw - pw + kw dw], 0 in the padding,
// row r = (c, kh, kw), column p = (n, oh, ow). The kernels decode a row and a column once each and
// combine them per element.
struct Im2colColumn {
  int32_t n, ih0, iw0;  // the image and the top-left input position of the window: oh sh - ph, ow sw - pw
};
struct Im2colRow {
  int32_t c, dy, dx;  // the channel within the group and the tap's offsets kh dh, kw dw
};
GRAFT_HOST_DEVICE inline Im2colColumn im2col_column(const Conv2dDims& d, int32_t p) {
  int32_t n, l, oh, ow;
  d.by_l.divmod(p, n, l);
  d.by_ow.divmod(l, oh, ow);
  return {n, oh * d.sh - d.ph, ow * d.sw - d.pw};
}
GRAFT_HOST_DEVICE inline Im2colRow im2col_row(const Conv2dDims& d, int32_t r) {
  int32_t c, tap, kh, kw;
  d.by_taps.divmod(r, c, tap);
  d.by_kw.divmod(tap, kh, kw);
  return {c, kh * d.dh, kw * d.dw};
}
// The offset of cols_g[r, p] from x[n, g Cg, 0, 0], or -1 in the padding.
GRAFT_HOST_DEVICE inline int64_t im2col_offset(const Conv2dDims& d, Im2colRow row, int32_t ih0, int32_t iw0) {
  const int32_t ih = ih0 + row.dy, iw = iw0 + row.dx;
  return ih >= 0 && ih < d.H && iw >= 0 && iw < d.W ? (int64_t(row.c) * d.H + ih) * d.W + iw : -1;
}

// The input gradient at stride s, per dimension. Output position o reads input i = o s - pad + k dil
// at tap k. The input positions i = r + s j of one residue r < s (a phase) are reached exactly by the
// taps k with (r + pad - k dil) = 0 mod s, and tap k reads output position
//   o = j + (r + pad - k dil) / s          (an exact division).
// Those taps are an arithmetic progression: k = first + t step for t < count, step = s / gcd(s, dil),
// and then o = j + offset0 - t offset_step with offset_step = step dil / s = dil / gcd(s, dil).
// count = 0 when no tap reaches the phase (its input gradient is zero there).
struct Conv2dTaps {
  int32_t first = 0, count = 0, step = 1;
  int32_t offset0 = 0, offset_step = 0;
};

inline Conv2dTaps conv2d_dx_taps(int64_t r, int64_t pad, int64_t dil, int64_t s, int64_t K) {
  Conv2dTaps t;
  int64_t a = s, b = dil;  // gcd(s, dil)
  while (b != 0) {
    const int64_t m = a % b;
    a = b;
    b = m;
  }
  const int64_t step = s / a;
  t.step = int32_t(step);
  t.offset_step = int32_t(dil / a);
  // Solutions repeat with period step <= s, so the first one (if any) is below min(K, step).
  for (int64_t k = 0; k < std::min(K, step); ++k) {
    const int64_t num = r + pad - k * dil;
    if (((num % s) + s) % s != 0) continue;
    t.first = int32_t(k);
    t.count = int32_t((K - 1 - k) / step + 1);
    t.offset0 = int32_t(num / s);
    break;
  }
  return t;
}

// The input positions r, r + s, ... below `in` (0 when r >= in).
inline int64_t conv2d_phase_size(int64_t r, int64_t s, int64_t in) { return r < in ? (in - r + s - 1) / s : 0; }

// One phase (rh, rw) of the input gradient as the kernel reads it: its columns p = (n, i, j) stand for
// dx[n, :, rh + sh i, rw + sw j]; its reduction index q = (o taps_h.count + th) taps_w.count + tw runs
// over o < Og, th < taps_h.count, tw < taps_w.count (kh = taps_h.first + th taps_h.step, likewise kw).
struct Conv2dDxPhase {
  int32_t rh, rw, Hr, Wr;        // residues and the phase's input rows and columns
  Conv2dTaps taps_h, taps_w;
  int32_t K;                     // Og taps_h.count taps_w.count
  FastDivmod by_taps, by_tw;     // q -> (o, th taps_w.count + tw) -> (th, tw)
  FastDivmod by_cols, by_wr;     // p = n Hr Wr + e -> (n, e); e -> (i, j)
};

inline Conv2dDxPhase conv2d_dx_phase(const Conv2dGeometry& g, int64_t rh, int64_t rw) {
  Conv2dDxPhase f;
  f.rh = int32_t(rh), f.rw = int32_t(rw);
  f.Hr = int32_t(conv2d_phase_size(rh, g.sh, g.H));
  f.Wr = int32_t(conv2d_phase_size(rw, g.sw, g.W));
  f.taps_h = conv2d_dx_taps(rh, g.ph, g.dh, g.sh, g.KH);
  f.taps_w = conv2d_dx_taps(rw, g.pw, g.dw, g.sw, g.KW);
  const int64_t taps = int64_t(f.taps_h.count) * f.taps_w.count;
  f.K = int32_t(g.Og * taps);
  f.by_taps = FastDivmod(int32_t(std::max<int64_t>(taps, 1)));
  f.by_tw = FastDivmod(std::max<int32_t>(f.taps_w.count, 1));
  f.by_cols = FastDivmod(int32_t(std::max<int64_t>(int64_t(f.Hr) * f.Wr, 1)));
  f.by_wr = FastDivmod(std::max<int32_t>(f.Wr, 1));
  return f;
}

// Column p = (n, i, j) of phase f: dx[n, :, f.rh + sh i, f.rw + sw j].
struct DxColumn {
  int32_t n, i, j;
};
GRAFT_HOST_DEVICE inline DxColumn dx_column(const Conv2dDxPhase& f, int32_t p) {
  DxColumn col;
  int32_t e;
  f.by_cols.divmod(p, col.n, e);
  f.by_wr.divmod(e, col.i, col.j);
  return col;
}
// Reduction index q of phase f: output channel o (within the group) and tap (kh, kw); the phase's
// input (i, j) reads dout at (i + doh, j + dow) through it (outside dout: no term).
struct DxTap {
  int32_t o, kh, kw, doh, dow;
};
GRAFT_HOST_DEVICE inline DxTap dx_tap(const Conv2dDxPhase& f, int32_t q) {
  int32_t o, tap, th, tw;
  f.by_taps.divmod(q, o, tap);
  f.by_tw.divmod(tap, th, tw);
  return {o, f.taps_h.first + th * f.taps_h.step, f.taps_w.first + tw * f.taps_w.step,
          f.taps_h.offset0 - th * f.taps_h.offset_step, f.taps_w.offset0 - tw * f.taps_w.offset_step};
}

// The weight gradient's reduction over K = N OH OW terms, cut into `splits` chunks of `chunk` terms
// (the last one shorter): chunk is a multiple of bk and at least min_chunk, and there are about
// target_blocks / tiles splits (at least 1, at most max_splits) so that tiles x splits blocks fill
// the GPU. Every chunk is non-empty: (splits - 1) chunk < K <= splits chunk.
struct Conv2dSplit {
  int32_t splits, chunk;
};

inline Conv2dSplit conv2d_split_k(int64_t tiles, int64_t K, int64_t bk, int64_t min_chunk, int64_t target_blocks,
                                  int64_t max_splits) {
  auto round_up = [](int64_t v, int64_t m) { return (v + m - 1) / m * m; };
  K = std::max<int64_t>(K, 1);
  const int64_t wanted = std::clamp<int64_t>((target_blocks + tiles - 1) / std::max<int64_t>(tiles, 1), 1, max_splits);
  const int64_t chunk = std::max(round_up((K + wanted - 1) / wanted, bk), round_up(min_chunk, bk));
  return {int32_t((K + chunk - 1) / chunk), int32_t(chunk)};
}

// The 16-bit kernels on the tensor cores (conv2d.cuh): the 64 x 64 block tile of 256 threads is 8 warps
// as 4 (m) x 2 (n), warp w computing rows mma16_warp_row0(w) + 0..15 and columns mma16_warp_col0(w) +
// 0..31 as four mma.m16n8k16 tiles; the shared tiles of a k step of 16 are [outer][k] with rows of
// kLd16 halves (48 bytes: the 8 rows x 4 words of a fragment read fall in 32 distinct banks).
constexpr int kConvTile = 64, kConvStep = 16;
constexpr int kLd16 = kConvStep + 8;
GRAFT_HOST_DEVICE constexpr int mma16_warp_row0(int warp) { return 16 * (warp % 4); }
GRAFT_HOST_DEVICE constexpr int mma16_warp_col0(int warp) { return 32 * (warp / 4); }

}  // namespace graft::kernels::cuda
