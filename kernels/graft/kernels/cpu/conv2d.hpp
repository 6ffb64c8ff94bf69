// graft/kernels/cpu/conv2d.hpp - fast float32 conv2d on the CPU, forward and both backward passes,
// NCHW (the public layout, see "Layout" below). The body of the per-ISA loops, conv2d.inc, is compiled
// for AVX2 and AVX-512; the reference (plain direct loops, float64, GRAFT_CPU_ISA=scalar) and the op
// are in include/graft/ops/conv2d.hpp. Shapes and names as in graft/core/conv2d_geometry.hpp.
//
//   conv2d_forward_fast(out, x, w, bias, g)                  out = conv2d(x, w) + bias (bias may be null)
//   conv2d_backward_fast(dx, dw, db, dout, x, w, g)          dx overwritten, dw and db accumulated (+=);
//                                                            each only when non-null
// Each returns false (nothing written) when the active ISA is scalar or the shape is not taken
// (a depthwise kernel of more than kDepthwiseMaxTaps taps); the caller then runs the reference.
//
// Algorithms, per (image n, group):
//   general     im2col + GEMM:  cols [R, L], R = Cg KH KW rows (c, kh, kw), L = OH OW columns
//                 out   [Og, L] = bias + w_g [Og, R] @ cols [R, L]   implicit: the GEMM packs its panels
//                                 of cols straight from the image (Im2colPacker), no cols buffer
//                 dcols [R, L]  = w_g^T [R, Og] @ dout [Og, L], then col2im into dx, in bands of
//                                 output rows that stay in L2 (dx_band_rows)
//                 dw_g  [Og, R] += dout [Og, L] @ cols^T [L, R], im2col in the same bands
//   1x1 stride 1, no padding: cols is x itself (no im2col, no col2im)
//   1x1 on small maps (L < kBatchedPointwiseMaxL, batches with enough rows): one GEMM over the whole
//               batch (see below)
//   depthwise   (Cg = 1) a direct vectorized loop per plane on a padded copy of the plane (conv2d.inc)
//   dbias       vectorized sums per output channel
// The bias is the GEMM's epilogue: added to each output tile while it is in L1, no separate pass.
//
// Threads (graft::parallel_for). Every output element is computed by one task, in an order fixed by
// the shape alone, so results do not depend on the thread count:
//   im2col rows, col2im channels, and the GEMM split inside gemm (column or row tasks of its output,
//   out [Og, L], dcols [R, L], dw [Og, R]), so one image (batch 1) uses every core. Convolutions
//   too small to split (< kConvTaskMinWork multiply-adds per image and group), and batches of at
//   least two (image, group)s per thread, run one (image, group) per task instead, claimed one at a
//   time (images_are_tasks). Depthwise: planes (n, o) forward, (n, c) for dx, channels o for dw (each
//   sums its images in order). dbias: channels.
//
// Layout. Activations stay NCHW: the GEMM formulation reads NCHW images directly (1x1 convolutions
// need no copy at all), and the depthwise kernel works on whole planes. NHWC would make im2col rows
// longer (Cg contiguous values per tap) and the depthwise loop vectorize over channels, but every
// other op (batch norm, pooling, the elementwise chains) and the public API are NCHW, so it would cost
// a conversion around every conv; not done here (see the report in the branch history).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "graft/core/conv2d_geometry.hpp"
#include "graft/core/parallel.hpp"
#include "graft/kernels/cpu/cpu_features.hpp"
#include "graft/kernels/cpu/gemm.hpp"

namespace graft::kernels::cpu {

// One run of the implicit GEMM's packing (conv2d_im2col_pack): output columns [ow0, ow1) of output
// row oh, at packed-row offset dst (panel and column within it), or `zero` columns of padding.
struct Im2colPiece {
  int64_t oh, ow0, ow1, dst;
  bool zero;
};

// For tap column kw, output column ow reads input column iw = ow sw + iw0; [lo, hi) are the ow with
// iw inside the image (lo <= hi).
struct TapColumns {
  int64_t iw0, lo, hi;
};
inline TapColumns conv2d_tap_columns(const Conv2dGeometry& g, int64_t kw) {
  TapColumns t;
  t.iw0 = kw * g.dw - g.pw;
  t.lo = t.iw0 >= 0 ? 0 : (-t.iw0 + g.sw - 1) / g.sw;
  t.hi = t.iw0 > g.W - 1 ? 0 : std::min(g.OW, (g.W - 1 - t.iw0) / g.sw + 1);
  t.hi = std::max(t.hi, t.lo);
  return t;
}

// The padded, phase-split copy P of one input plane that the depthwise kernels read (conv2d.inc):
//   P [sw][Hp][Wq],  P[p][r][j] = x[r - ph, j sw + p - pw] (0 outside the image)
//   Hp = (OH - 1) sh + (KH - 1) dh + 1 rows (those a window reaches), Wq = ceil(Wp / sw) columns per
//   phase, Wp = (OW - 1) sw + (KW - 1) dw + 1. Tap (kh, kw) of output (oh, ow) reads padded column
//   ow sw + kw dw = (ow + q) sw + p with q = kw dw / sw, p = kw dw % sw, i.e.
//   P[tap_offset[kh KW + kw] + oh sh Wq + ow],  tap_offset = (p Hp + kh dh) Wq + q.
inline constexpr int64_t kDepthwiseMaxTaps = 64;  // up to 8 x 8 kernels; larger ones take the reference
struct DepthwiseLayout {
  int64_t Hp, Wq;
  int64_t tap_offset[kDepthwiseMaxTaps];
};
inline DepthwiseLayout depthwise_layout(const Conv2dGeometry& g) {
  DepthwiseLayout d{};
  d.Hp = (g.OH - 1) * g.sh + (g.KH - 1) * g.dh + 1;
  const int64_t Wp = (g.OW - 1) * g.sw + (g.KW - 1) * g.dw + 1;
  d.Wq = (Wp + g.sw - 1) / g.sw;
  for (int64_t kh = 0; kh < g.KH; ++kh)
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      const int64_t p = kw * g.dw % g.sw, q = kw * g.dw / g.sw;
      d.tap_offset[kh * g.KW + kw] = (p * d.Hp + kh * g.dh) * d.Wq + q;
    }
  return d;
}
inline int64_t depthwise_padded_size(const Conv2dGeometry& g, const DepthwiseLayout& d) { return g.sw * d.Hp * d.Wq; }

// For phase p, the j < Wq whose input column j sw + p - pw is inside the image: [lo, hi), lo <= hi.
struct PhaseColumns {
  int64_t lo, hi;
};
inline PhaseColumns depthwise_phase_columns(const Conv2dGeometry& g, const DepthwiseLayout& d, int64_t p) {
  PhaseColumns c;
  c.lo = g.pw - p <= 0 ? 0 : (g.pw - p + g.sw - 1) / g.sw;
  const int64_t last = g.W - 1 + g.pw - p;  // j sw <= last
  c.hi = last < 0 ? 0 : std::min(d.Wq, last / g.sw + 1);
  c.hi = std::max(c.hi, c.lo);
  return c;
}

}  // namespace graft::kernels::cpu

#define GRAFT_KERNEL_BODY "graft/kernels/cpu/conv2d.inc"
#include "graft/kernels/cpu/isa/for_each_isa.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GRAFT_CONV2D_X86 1
#else
#define GRAFT_CONV2D_X86 0
#endif

namespace graft::kernels::cpu {

namespace conv2d_detail {

// The per-ISA loops of conv2d.inc for the active ISA.
struct IsaLoops {
  void (*fill)(float*, int64_t, float);
  float (*sum)(const float*, int64_t);
  void (*im2col_rows)(float*, const float*, const Conv2dGeometry&, int64_t, int64_t);
  void (*im2col_segment)(float*, const float*, const Conv2dGeometry&, int64_t, int64_t, int64_t);
  void (*im2col_pack)(float*, int64_t, const float*, const Conv2dGeometry&, int64_t, int64_t, const Im2colPiece*,
                      int64_t);
  void (*col2im_rows)(float*, const float*, int64_t, const Conv2dGeometry&, int64_t, int64_t);
  void (*depthwise_pad_plane)(float*, const float*, const Conv2dGeometry&, const DepthwiseLayout&);
  void (*depthwise_unpad_plane)(float*, const float*, const Conv2dGeometry&, const DepthwiseLayout&);
  void (*depthwise_forward_plane)(float*, const float*, const float*, float, const Conv2dGeometry&,
                                  const DepthwiseLayout&);
  void (*depthwise_dx_scatter)(float*, const float*, const float*, const Conv2dGeometry&, const DepthwiseLayout&);
  void (*depthwise_dw_plane)(float*, const float*, const float*, const Conv2dGeometry&, const DepthwiseLayout&);
};

#if GRAFT_CONV2D_X86
#define GRAFT_CONV2D_LOOPS(ISA)                                                                          \
  IsaLoops {                                                                                             \
    &ISA::conv2d_fill, &ISA::conv2d_sum, &ISA::conv2d_im2col_rows, &ISA::conv2d_im2col_segment,         \
        &ISA::conv2d_im2col_pack, &ISA::conv2d_col2im_rows, &ISA::depthwise_pad_plane,                   \
        &ISA::depthwise_unpad_plane, &ISA::depthwise_forward_plane, &ISA::depthwise_dx_scatter,          \
        &ISA::depthwise_dw_plane                                                                         \
  }
inline constexpr IsaLoops kAvx2Loops = GRAFT_CONV2D_LOOPS(avx2);
inline constexpr IsaLoops kAvx512Loops = GRAFT_CONV2D_LOOPS(avx512);
#undef GRAFT_CONV2D_LOOPS
#endif

// The loops of the active ISA, or null when it is scalar (the caller runs the reference).
inline const IsaLoops* active_loops() {
#if GRAFT_CONV2D_X86
  switch (active_cpu_isa()) {
    case CpuIsa::Avx512: return &kAvx512Loops;
    case CpuIsa::Avx2: return &kAvx2Loops;
    case CpuIsa::Scalar: break;
  }
#endif
  return nullptr;
}

// A thread-local scratch buffer of at least `count` floats (grown, never shrunk); slot 0: cols or
// dcols, slot 1: transposes of the batched 1x1 path, slot 2: depthwise planes.
inline float* scratch(int slot, int64_t count) {
  thread_local std::vector<float> buffers[3];
  std::vector<float>& b = buffers[slot];
  if (int64_t(b.size()) < count) b.resize(size_t(count));
  return b.data();
}

// Below this many multiply-adds per (image, group), whole (image, group)s are the tasks.
inline constexpr int64_t kConvTaskMinWork = int64_t(1) << 20;

// Whether the forward and dx passes take whole (image, group)s as tasks, each thread running its own
// im2col and a serial GEMM, rather than splitting each image's GEMM over the threads: when the product
// is too small to split, or when there are at least two (image, group)s per thread (a batch), which
// keeps every core on its own image at one-thread GEMM speed with no region per image to wait at.
inline bool images_are_tasks(const Conv2dGeometry& g) {
  return g.N * g.G > 1 && (g.Og * g.L * g.R < kConvTaskMinWork || g.N * g.G >= 2 * int64_t(get_num_threads()));
}

// c [m, n] (+)= a [m, k] @ b [k, n] (strides as gemm's contract), then + bias[row] when bias is
// non-null (the GEMM's epilogue, while each tile is in L1). gemm splits a large product over the
// pool itself (column tasks, shared packing); inside a pool task it runs serially.
inline void gemm_tiled(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                       int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate, const float* bias) {
  GemmEpilogue<float> ep;
  ep.bias = bias;
  ep.bias_per_row = true;
  gemm<float>(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate, bias ? &ep : nullptr);
}

// ---- 1x1 convolutions on small maps: one GEMM over the whole batch ---------------------------------
// Per image, out[n] [O, L] = w [O, C] @ x[n] [C, L] is a GEMM only L columns wide: with the small L of
// a network's last stages (L = 1 for a 1x1 map) most of each vector register is wasted. Rows of all
// images together make one tall GEMM instead, after transposing each image to [L, C]:
//   xt [N L, C]  xt[(n, l), c] = x[n, c, l]
//   out:  yt [N L, O] = xt @ w^T                    then out[n, o, l] = yt[(n, l), o] + bias[o]
//   dx:   dxt [N L, C] = dyt @ w                    dyt[(n, l), o] = dout[n, o, l]
//   dw:   dw [O, C] += dyt^T @ xt                   a sum over the N L rows
// The transposes are O(N L (C + O)) copies against the GEMM's O(N L C O) work.
// The batched GEMM packs the weights (its b, a transposed view) on every call; that pays when the
// batch's N L rows reuse them (N L >= kBatchedPointwiseMinRows) or when L is below one vector of
// columns. Otherwise (batch 1 at 7 x 7, ResNet-50's last stage) the per-image GEMM, reading the
// weights in place and packing only the small image, is faster.
inline constexpr int64_t kBatchedPointwiseMaxL = 64, kBatchedPointwiseMinRows = 192, kBatchedPointwiseAlwaysL = 16;

inline bool batched_pointwise(const Conv2dGeometry& g) {
  return g.pointwise && g.G == 1 && g.L < kBatchedPointwiseMaxL &&
         (g.N * g.L >= kBatchedPointwiseMinRows || g.L < kBatchedPointwiseAlwaysL);
}

// dst [N, L, C] = src [N, C, L] transposed per image, threaded over the N L rows of dst.
inline void transpose_images(float* dst, const float* src, int64_t N, int64_t C, int64_t L) {
  parallel_for(0, N * L, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, C)), [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t n = t / L, l = t % L;
      for (int64_t c = 0; c < C; ++c) dst[t * C + c] = src[(n * C + c) * L + l];
    }
  });
}

inline void pointwise_forward_batched(float* out, const float* x, const float* w, const float* bias,
                                      const Conv2dGeometry& g, const IsaLoops& loops) {
  const int64_t rows = g.N * g.L;
  std::vector<float> xt(size_t(rows * g.C)), yt(size_t(rows * g.O));  // [N L, C], [N L, O]
  transpose_images(xt.data(), x, g.N, g.C, g.L);
  gemm_tiled(rows, g.O, g.C, xt.data(), g.C, 1, w, 1, g.C, yt.data(), g.O, false, nullptr);
  parallel_for(0, g.N * g.O, std::max<int64_t>(1, 4096 / g.L), [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t n = t / g.O, o = t % g.O;
      const float b = bias ? bias[o] : 0.0f;
      for (int64_t l = 0; l < g.L; ++l) out[t * g.L + l] = yt[size_t((n * g.L + l) * g.O + o)] + b;
    }
  });
}

inline void pointwise_backward_batched(float* dx, float* dw, float* db, const float* dout, const float* x,
                                       const float* w, const Conv2dGeometry& g, const IsaLoops& loops) {
  const int64_t rows = g.N * g.L;
  std::vector<float> dyt(size_t(rows * g.O));  // [N L, O]
  transpose_images(dyt.data(), dout, g.N, g.O, g.L);
  if (dx) {
    std::vector<float> dxt(size_t(rows * g.C));  // [N L, C]
    gemm_tiled(rows, g.C, g.O, dyt.data(), g.O, 1, w, g.C, 1, dxt.data(), g.C, false, nullptr);
    transpose_images(dx, dxt.data(), g.N, g.L, g.C);
  }
  if (dw) {
    std::vector<float> xt(size_t(rows * g.C));
    transpose_images(xt.data(), x, g.N, g.C, g.L);
    gemm_tiled(g.O, g.C, rows, dyt.data(), 1, g.O, xt.data(), g.C, 1, dw, g.C, true, nullptr);
  }
  if (db)
    parallel_for(0, g.O, 64, [&](int64_t lo, int64_t hi) {
      for (int64_t o = lo; o < hi; ++o) {
        float s = 0.0f;
        for (int64_t n = 0; n < g.N; ++n) s += loops.sum(dout + (n * g.O + o) * g.L, g.L);
        db[o] += s;
      }
    });
}

// ---- depthwise -------------------------------------------------------------------------------------
inline void depthwise_forward(float* out, const float* x, const float* w, const float* bias,
                              const Conv2dGeometry& g, const IsaLoops& loops) {
  const DepthwiseLayout d = depthwise_layout(g);
  const int64_t taps = g.KH * g.KW;
  parallel_for(0, g.N * g.O, std::max<int64_t>(1, 8192 / (g.L * taps)), [&](int64_t lo, int64_t hi) {
    float* P = scratch(2, depthwise_padded_size(g, d));
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t n = t / g.O, o = t % g.O, c = o / g.Og;
      loops.depthwise_pad_plane(P, x + (n * g.C + c) * g.H * g.W, g, d);
      loops.depthwise_forward_plane(out + t * g.L, P, w + o * taps, bias ? bias[o] : 0.0f, g, d);
    }
  });
}

inline void depthwise_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                               const Conv2dGeometry& g, const IsaLoops& loops) {
  const DepthwiseLayout d = depthwise_layout(g);
  const int64_t taps = g.KH * g.KW, size = depthwise_padded_size(g, d);
  if (dx)  // per input plane (n, c): its Og output planes scattered into one padded plane, in order
    parallel_for(0, g.N * g.C, std::max<int64_t>(1, 8192 / (g.L * taps * g.Og)), [&](int64_t lo, int64_t hi) {
      float* dP = scratch(2, size);
      for (int64_t t = lo; t < hi; ++t) {
        const int64_t n = t / g.C, c = t % g.C;
        loops.fill(dP, size, 0.0f);
        for (int64_t o = c * g.Og; o < (c + 1) * g.Og; ++o)
          loops.depthwise_dx_scatter(dP, dout + (n * g.O + o) * g.L, w + o * taps, g, d);
        loops.depthwise_unpad_plane(dx + t * g.H * g.W, dP, g, d);
      }
    });
  if (dw)  // per output channel o: the images in order
    parallel_for(0, g.O, std::max<int64_t>(1, 8192 / (g.N * g.L * taps)), [&](int64_t lo, int64_t hi) {
      float* P = scratch(2, size);
      for (int64_t o = lo; o < hi; ++o) {
        const int64_t c = o / g.Og;
        for (int64_t n = 0; n < g.N; ++n) {
          loops.depthwise_pad_plane(P, x + (n * g.C + c) * g.H * g.W, g, d);
          loops.depthwise_dw_plane(dw + o * taps, dout + (n * g.O + o) * g.L, P, g, d);
        }
      }
    });
}

// ---- general: im2col + GEMM ------------------------------------------------------------------------
// cols [R, L] of x_ng [Cg, H, W], rows split across the pool (within_task: already inside a task).
inline void im2col(float* cols, const float* x_ng, const Conv2dGeometry& g, const IsaLoops& loops) {
  parallel_for(0, g.R, std::max<int64_t>(1, 16384 / g.L),
               [&](int64_t lo, int64_t hi) { loops.im2col_rows(cols, x_ng, g, lo, hi); });
}

// The implicit GEMM's b: the panels of cols [R, L] = im2col(x_ng), packed straight from the image
// (GemmBPacker), so the forward pass never writes the R x L cols buffer and reads it back to pack it.
struct Im2colPacker {
  const float* x_ng;
  const Conv2dGeometry* g;
  const IsaLoops* loops;
  // The runs of columns [j0, j0 + nc) (the same for every row of cols), split at output-row and
  // panel ends, then the last panel's padding; the ISA loop walks them for each of the kc rows.
  static void pack(const void* ctx, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, float* packed) {
    const Im2colPacker& s = *static_cast<const Im2colPacker*>(ctx);
    const int64_t OW = s.g->OW;
    thread_local std::vector<Im2colPiece> pieces;
    pieces.clear();
    int64_t oh = j0 / OW, ow = j0 % OW, q = 0, jj = 0;  // jj: column within panel q
    for (int64_t left = nc; left > 0;) {
      const int64_t len = std::min({left, OW - ow, nr - jj});
      pieces.push_back({oh, ow, ow + len, q * kc * nr + jj, false});
      left -= len, ow += len, jj += len;
      if (ow == OW) ow = 0, ++oh;
      if (jj == nr) jj = 0, ++q;
    }
    if (jj > 0) pieces.push_back({0, 0, nr - jj, q * kc * nr + jj, true});
    s.loops->im2col_pack(packed, nr, s.x_ng, *s.g, p0, kc, pieces.data(), int64_t(pieces.size()));
  }
};

inline void general_forward(float* out, const float* x, const float* w, const float* bias, const Conv2dGeometry& g,
                            const IsaLoops& loops) {
  auto one = [&](int64_t n, int64_t grp) {  // out[n, group] [Og, L]
    const float* x_ng = x + (n * g.C + grp * g.Cg) * g.H * g.W;  // [Cg, H, W]
    const float* w_g = w + grp * g.Og * g.R;                     // [Og, R]
    float* out_ng = out + (n * g.O + grp * g.Og) * g.L;
    const float* bias_g = bias ? bias + grp * g.Og : nullptr;
    const float* cols = x_ng;  // [R, L]
    if (!g.pointwise) {
      const Im2colPacker packer{x_ng, &g, &loops};
      GemmEpilogue<float> ep;
      ep.bias = bias_g;
      ep.bias_per_row = true;
      if (gemm_packed_b(g.Og, g.L, g.R, w_g, g.R, 1, GemmBPacker{&packer, &Im2colPacker::pack}, out_ng, g.L, false,
                        bias_g ? &ep : nullptr))
        return;
      float* buf = scratch(0, g.R * g.L);
      im2col(buf, x_ng, g, loops);
      cols = buf;
    }
    gemm_tiled(g.Og, g.L, g.R, w_g, g.R, 1, cols, g.L, 1, out_ng, g.L, false, bias_g);
  };
  if (images_are_tasks(g)) {  // nested regions (im2col, the GEMM) run serially
    parallel_for_claimed(0, g.N * g.G, [&](int64_t t) { one(t / g.G, t % g.G); });
    return;
  }
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t grp = 0; grp < g.G; ++grp) one(n, grp);
}

// dx's dcols [R, L] = w^T dout is a GEMM with a short k (Og) and a large output: written whole it
// goes out to L3 and comes back for col2im. It is computed a band of output rows at a time instead,
// about kDxBandFloats (half of a 1.25 MB L2) but at least kDxBandMinCols columns (the GEMM's tiles
// stay full), and each band is scattered into dx while still in cache.
inline constexpr int64_t kDxBandFloats = int64_t(1) << 17, kDxBandMinCols = 192;
inline int64_t dx_band_rows(const Conv2dGeometry& g) {
  const int64_t rows = std::max(kDxBandFloats / (g.R * g.OW), (kDxBandMinCols + g.OW - 1) / g.OW);
  return std::max<int64_t>(1, std::min(g.OH, rows));
}

inline void general_backward_dx(float* dx, const float* dout, const float* w, const Conv2dGeometry& g,
                                const IsaLoops& loops) {
  // w_g^T [R, Og] once for the whole batch, so every image's GEMM reads its a in place, row by row.
  std::vector<float> wt(size_t(g.O * g.R));
  transpose_images(wt.data(), w, g.G, g.Og, g.R);
  auto one = [&](int64_t n, int64_t grp) {
    const float* wt_g = wt.data() + grp * g.R * g.Og;            // [R, Og]
    const float* dout_ng = dout + (n * g.O + grp * g.Og) * g.L;  // [Og, L]
    float* dx_ng = dx + (n * g.C + grp * g.Cg) * g.H * g.W;      // [Cg, H, W]
    if (g.pointwise) {  // dx_ng [Cg, L] = w_g^T [Cg, Og] @ dout_ng [Og, L]
      gemm_tiled(g.R, g.L, g.Og, wt_g, g.Og, 1, dout_ng, g.L, 1, dx_ng, g.L, false, nullptr);
      return;
    }
    // A band of output rows at a time: dcols [R, cols] of the band, then its col2im while in cache.
    const int64_t band = dx_band_rows(g), band_cols_max = band * g.OW;
    float* dcols = scratch(0, g.R * band_cols_max);
    for (int64_t oh0 = 0; oh0 < g.OH; oh0 += band) {
      const int64_t oh1 = std::min(g.OH, oh0 + band), cols = (oh1 - oh0) * g.OW;
      gemm_tiled(g.R, cols, g.Og, wt_g, g.Og, 1, dout_ng + oh0 * g.OW, g.L, 1, dcols, cols, false, nullptr);
      parallel_for(0, g.Cg, std::max<int64_t>(1, 16384 / (g.KH * g.KW * cols)), [&](int64_t lo, int64_t hi) {
        for (int64_t c = lo; c < hi; ++c) {
          float* dx_c = dx_ng + c * g.H * g.W;
          if (oh0 == 0) loops.fill(dx_c, g.H * g.W, 0.0f);
          loops.col2im_rows(dx_c, dcols + c * g.KH * g.KW * cols, cols, g, oh0, oh1);
        }
      });
    }
  };
  if (images_are_tasks(g)) {
    parallel_for_claimed(0, g.N * g.G, [&](int64_t t) { one(t / g.G, t % g.G); });
    return;
  }
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t grp = 0; grp < g.G; ++grp) one(n, grp);
}

// dw [O, R] += sum over images, in order, of dout_ng [Og, L] @ cols^T [L, R] per group; im2col a band
// of output rows at a time (dx_band_rows), so each band's cols is packed by the GEMM from L2.
inline void general_backward_dw(float* dw, const float* dout, const float* x, const Conv2dGeometry& g,
                                const IsaLoops& loops) {
  const int64_t band = g.pointwise ? g.OH : dx_band_rows(g);
  float* buf = g.pointwise ? nullptr : scratch(0, g.R * band * g.OW);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t grp = 0; grp < g.G; ++grp) {
      const float* x_ng = x + (n * g.C + grp * g.Cg) * g.H * g.W;
      const float* dout_ng = dout + (n * g.O + grp * g.Og) * g.L;
      for (int64_t oh0 = 0; oh0 < g.OH; oh0 += band) {
        const int64_t l0 = oh0 * g.OW, cols = (std::min(g.OH, oh0 + band) - oh0) * g.OW;
        const float* cols_band = x_ng + l0;  // [R, cols] with row stride ld
        int64_t ld = g.L;
        if (!g.pointwise) {
          parallel_for(0, g.R, std::max<int64_t>(1, 16384 / cols), [&](int64_t lo, int64_t hi) {
            for (int64_t r = lo; r < hi; ++r) loops.im2col_segment(buf + r * cols, x_ng, g, r, l0, l0 + cols);
          });
          cols_band = buf, ld = cols;
        }
        gemm_tiled(g.Og, g.R, cols, dout_ng + l0, g.L, 1, cols_band, 1, ld, dw + grp * g.Og * g.R, g.R, true,
                   nullptr);
      }
    }
}

// db [O] += sum over n, l of dout[n, o, l]; one task per channel, images in order.
inline void bias_backward(float* db, const float* dout, const Conv2dGeometry& g, const IsaLoops& loops) {
  parallel_for(0, g.O, std::max<int64_t>(1, 16384 / (g.N * g.L)), [&](int64_t lo, int64_t hi) {
    for (int64_t o = lo; o < hi; ++o) {
      float s = 0.0f;
      for (int64_t n = 0; n < g.N; ++n) s += loops.sum(dout + (n * g.O + o) * g.L, g.L);
      db[o] += s;
    }
  });
}

}  // namespace conv2d_detail

// out [N, O, OH, OW] = conv2d(x [N, C, H, W], w [O, Cg, KH, KW]) + bias [O] (null: none). All contiguous.
inline bool conv2d_forward_fast(float* out, const float* x, const float* w, const float* bias,
                                const Conv2dGeometry& g) {
  using namespace conv2d_detail;
  const IsaLoops* loops = active_loops();
  if (loops == nullptr) return false;
  if (g.depthwise()) {
    if (g.KH * g.KW > kDepthwiseMaxTaps) return false;
    depthwise_forward(out, x, w, bias, g, *loops);
  } else if (batched_pointwise(g)) {
    pointwise_forward_batched(out, x, w, bias, g, *loops);
  } else {
    general_forward(out, x, w, bias, g, *loops);
  }
  return true;
}

// Gradients of conv2d_forward_fast given dout [N, O, OH, OW]: dx [N, C, H, W] overwritten (reads w),
// dw [O, Cg, KH, KW] and db [O] accumulated (dw reads x); each only when non-null. All contiguous.
inline bool conv2d_backward_fast(float* dx, float* dw, float* db, const float* dout, const float* x, const float* w,
                                 const Conv2dGeometry& g) {
  using namespace conv2d_detail;
  const IsaLoops* loops = active_loops();
  if (loops == nullptr) return false;
  if (g.depthwise()) {
    if (g.KH * g.KW > kDepthwiseMaxTaps) return false;
    depthwise_backward(dx, dw, dout, x, w, g, *loops);
    if (db) bias_backward(db, dout, g, *loops);
    return true;
  }
  if (batched_pointwise(g)) {
    pointwise_backward_batched(dx, dw, db, dout, x, w, g, *loops);
    return true;
  }
  if (dx) general_backward_dx(dx, dout, w, g, *loops);
  if (dw) general_backward_dw(dw, dout, x, g, *loops);
  if (db) bias_backward(db, dout, g, *loops);
  return true;
}

}  // namespace graft::kernels::cpu
