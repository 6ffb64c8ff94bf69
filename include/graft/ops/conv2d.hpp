// graft/ops/conv2d.hpp - 2-D convolution (cross-correlation, as PyTorch), grouped and depthwise.
//
// Shapes:
//   x      [N, C, H, W]       (or [C, H, W], treated as N = 1)
//   weight [O, C/groups, KH, KW]   OIHW, as PyTorch checkpoints store it
//   bias   [O] or undefined
//   out    [N, O, OH, OW]     OH = (H + 2 ph - dh (KH - 1) - 1) / sh + 1, likewise OW
//
// Reference formulation: im2col + GEMM per (image, group); depthwise convolutions (C/groups = 1)
// take a direct loop over the taps instead (same sums, no im2col buffer), and 1x1 convolutions on
// small images one GEMM over the whole batch (pointwise_forward_batched below).
//   cols [R, L]  R = (C/groups) KH KW rows (c, kh, kw), L = OH OW columns (oh, ow)
//   out[n, group]     [Og, L] = weight[group] [Og, R] @ cols [R, L] + bias     Og = O / groups
//   dweight[group]    [Og, R] += dout[n, group] [Og, L] @ cols^T [L, R]
//   dcols             [R, L]  = weight[group]^T [R, Og] @ dout[n, group] [Og, L], then col2im into dx
//   dbias             [O]     += sum over n, oh, ow of dout
// dx is computed only when x needs a gradient, so a frozen backbone (or the first layer) costs
// only dweight. The backward is differentiable again (create_graph): its own backward is written
// with conv2d and the backward kernel (see Conv2dDoubleBackward).
#pragma once
#include <algorithm>
#include <array>
#include <vector>

#include "graft/ops/matmul.hpp"

namespace graft {

struct Conv2dParams {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
};

namespace detail_conv {
// All sizes of one convolution, from the input and weight shapes.
struct Geometry {
  int64_t N, C, H, W;  // input
  int64_t O, KH, KW;   // weight [O, Cg, KH, KW]
  int64_t OH, OW;      // output
  int64_t G, Cg, Og;   // groups, input and output channels per group
  int64_t R, L;        // rows (Cg KH KW) and columns (OH OW) of cols
  bool pointwise;      // 1x1 kernel, stride 1, no padding: cols is the input itself
};

inline int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

inline Geometry geometry(const Shape& x, const Shape& w, const Conv2dParams& p) {
  Geometry g;
  g.N = x[0], g.C = x[1], g.H = x[2], g.W = x[3];
  g.O = w[0], g.KH = w[2], g.KW = w[3];
  g.OH = conv_out_size(g.H, g.KH, p.stride[0], p.padding[0], p.dilation[0]);
  g.OW = conv_out_size(g.W, g.KW, p.stride[1], p.padding[1], p.dilation[1]);
  g.G = p.groups, g.Cg = g.C / g.G, g.Og = g.O / g.G;
  g.R = g.Cg * g.KH * g.KW, g.L = g.OH * g.OW;
  g.pointwise =
      g.KH == 1 && g.KW == 1 && p.stride[0] == 1 && p.stride[1] == 1 && p.padding[0] == 0 && p.padding[1] == 0;
  return g;
}
}  // namespace detail_conv

namespace kernels::cpu {

// cols [R, L] from the Cg channels of one image and group, x_ng [Cg, H, W]:
//   cols[(c, kh, kw), (oh, ow)] = x_ng[c, oh sh - ph + kh dh, ow sw - pw + kw dw], 0 outside the image
template <class T>
inline void im2col(T* cols, const T* x_ng, const detail_conv::Geometry& g, const Conv2dParams& p) {
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        T* row = cols + ((c * g.KH + kh) * g.KW + kw) * g.L;  // [OH, OW]
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * p.stride[0] - p.padding[0] + kh * p.dilation[0];
          T* dst = row + oh * g.OW;
          if (ih < 0 || ih >= g.H) {
            std::fill(dst, dst + g.OW, T(0));
            continue;
          }
          const T* src = x_ng + (c * g.H + ih) * g.W;
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const int64_t iw = ow * p.stride[1] - p.padding[1] + kw * p.dilation[1];
            dst[ow] = (iw >= 0 && iw < g.W) ? src[iw] : T(0);
          }
        }
      }
}

// The adjoint of im2col: dx_ng[c, ih, iw] += dcols[(c, kh, kw), (oh, ow)] for every in-image tap.
template <class T>
inline void col2im_add(T* dx_ng, const T* dcols, const detail_conv::Geometry& g, const Conv2dParams& p) {
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const T* row = dcols + ((c * g.KH + kh) * g.KW + kw) * g.L;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * p.stride[0] - p.padding[0] + kh * p.dilation[0];
          if (ih < 0 || ih >= g.H) continue;
          T* dst = dx_ng + (c * g.H + ih) * g.W;
          const T* src = row + oh * g.OW;
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const int64_t iw = ow * p.stride[1] - p.padding[1] + kw * p.dilation[1];
            if (iw >= 0 && iw < g.W) dst[iw] += src[ow];
          }
        }
      }
}

// Depthwise convolutions (Cg = 1: every output channel reads one input channel) skip im2col: a GEMM
// with one row per tap would do the same arithmetic with far more memory traffic. For a tap (kh, kw)
// the input column of output column ow is iw = ow sw + iw0; [lo, hi) are the ow with iw in the image.
inline void depthwise_ow_range(const detail_conv::Geometry& g, const Conv2dParams& p, int64_t kw, int64_t& lo,
                               int64_t& hi, int64_t& iw0) {
  const int64_t sw = p.stride[1];
  iw0 = kw * p.dilation[1] - p.padding[1];
  lo = iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw;
  hi = iw0 > g.W - 1 ? 0 : std::min(g.OW, (g.W - 1 - iw0) / sw + 1);
  hi = std::max(hi, lo);
}

// Calls fn(out_row [OW], in_row [W], kh, kw, lo, hi, iw0) for every tap and every output row whose
// input row is inside the image.
template <class Fn>
inline void depthwise_for_each_tap(const detail_conv::Geometry& g, const Conv2dParams& p, Fn&& fn) {
  for (int64_t kh = 0; kh < g.KH; ++kh)
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      int64_t lo, hi, iw0;
      depthwise_ow_range(g, p, kw, lo, hi, iw0);
      if (lo >= hi) continue;
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const int64_t ih = oh * p.stride[0] - p.padding[0] + kh * p.dilation[0];
        if (ih >= 0 && ih < g.H) fn(oh, ih, kh, kw, lo, hi, iw0);
      }
    }
}

// out_plane [OH, OW] = bias + sum over taps of w[kh, kw] * x_plane[ih, iw].
template <class T>
inline void depthwise_forward_plane(T* out_plane, const T* x_plane, const T* w, T bias, const detail_conv::Geometry& g,
                                    const Conv2dParams& p) {
  std::fill(out_plane, out_plane + g.L, bias);
  const int64_t sw = p.stride[1];
  if (p.padding[0] == 0 && p.padding[1] == 0) {
    // Every tap reads inside the image (models with TF "SAME" padding pad first): plain loops, each
    // output summed over the taps in the same (kh, kw) order as below.
    const int64_t sh = p.stride[0], dh = p.dilation[0], dw = p.dilation[1];
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      T* o = out_plane + oh * g.OW;
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        const T* x_row = x_plane + (oh * sh + kh * dh) * g.W;
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          const T wv = w[kh * g.KW + kw];
          const T* x = x_row + kw * dw;
          if (sw == 1) {
            for (int64_t ow = 0; ow < g.OW; ++ow) o[ow] += wv * x[ow];
          } else {
            for (int64_t ow = 0; ow < g.OW; ++ow) o[ow] += wv * x[ow * sw];
          }
        }
      }
    }
    return;
  }
  depthwise_for_each_tap(g, p, [&](int64_t oh, int64_t ih, int64_t kh, int64_t kw, int64_t lo, int64_t hi, int64_t iw0) {
    const T wv = w[kh * g.KW + kw];
    T* o = out_plane + oh * g.OW;
    const T* x = x_plane + ih * g.W + iw0;
    for (int64_t ow = lo; ow < hi; ++ow) o[ow] += wv * x[ow * sw];
  });
}

// dx_plane [H, W] += the adjoint of depthwise_forward_plane applied to dout_plane [OH, OW].
template <class T>
inline void depthwise_dx_plane(T* dx_plane, const T* dout_plane, const T* w, const detail_conv::Geometry& g,
                               const Conv2dParams& p) {
  const int64_t sw = p.stride[1];
  depthwise_for_each_tap(g, p, [&](int64_t oh, int64_t ih, int64_t kh, int64_t kw, int64_t lo, int64_t hi, int64_t iw0) {
    const T wv = w[kh * g.KW + kw];
    const T* d = dout_plane + oh * g.OW;
    T* dx = dx_plane + ih * g.W + iw0;
    for (int64_t ow = lo; ow < hi; ++ow) dx[ow * sw] += wv * d[ow];
  });
}

// dw [KH, KW] += sum over (oh, ow) of dout_plane[oh, ow] * x_plane[ih, iw].
template <class T>
inline void depthwise_dw_plane(T* dw, const T* dout_plane, const T* x_plane, const detail_conv::Geometry& g,
                               const Conv2dParams& p) {
  const int64_t sw = p.stride[1];
  depthwise_for_each_tap(g, p, [&](int64_t oh, int64_t ih, int64_t kh, int64_t kw, int64_t lo, int64_t hi, int64_t iw0) {
    const T* d = dout_plane + oh * g.OW;
    const T* x = x_plane + ih * g.W + iw0;
    T acc = T(0);
    for (int64_t ow = lo; ow < hi; ++ow) acc += d[ow] * x[ow * sw];
    dw[kh * g.KW + kw] += acc;
  });
}

// ---- pointwise (1x1) convolutions on small images: one GEMM over the whole batch ------------------
// Per image, out[n] [O, L] = weight [O, C] @ x[n] [C, L] is a GEMM only L columns wide: with the small
// L of a network's last stages (L = 1 for a 1x1 feature map) most of each vector register is wasted.
// Rows of all images together make one tall GEMM instead, after transposing each image to [L, C]:
//   xt  [N L, C]   xt[(n, l), c] = x[n, c, l]
//   out:  yt [N L, O] = xt @ weight^T                    then out[n, o, l] = yt[(n, l), o] + bias[o]
//   dx:   dxt [N L, C] = dyt @ weight                    dyt[(n, l), o] = dout[n, o, l]
//   dw:   dweight [O, C] += dyt^T @ xt                   a sum over the N L rows
// The transposes are O(N L (C + O)) copies against the GEMM's O(N L C O) work.
inline constexpr int64_t kBatchedPointwiseMaxL = 64;  // per-image GEMMs are wide enough from here on

inline bool batched_pointwise(const detail_conv::Geometry& g) {
  return g.pointwise && g.G == 1 && g.L < kBatchedPointwiseMaxL;
}

// dst [N, L, C] = src [N, C, L] transposed per image (C and L given in that order for src).
template <class T>
inline void transpose_images(T* dst, const T* src, int64_t N, int64_t C, int64_t L) {
  parallel_for(0, N, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t n = lo; n < hi; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t l = 0; l < L; ++l) dst[(n * L + l) * C + c] = src[(n * C + c) * L + l];
  });
}

// c [rows, n] (+)= a [rows, k] @ b [k, n] (strided as gemm's contract), rows split across the pool;
// gemm's row-split invariance makes the result independent of the thread count.
template <class T>
inline void gemm_parallel_rows(int64_t rows, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
                               int64_t b_rs, int64_t b_cs, T* c, int64_t ldc, bool accumulate) {
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, n * k));
  parallel_for(0, rows, grain, [&](int64_t lo, int64_t hi) {
    gemm<T>(hi - lo, n, k, a + lo * a_rs, a_rs, a_cs, b, b_rs, b_cs, c + lo * ldc, ldc, accumulate);
  });
}

template <class T>
inline void pointwise_forward_batched(T* po, const T* px, const T* pw, const T* pb, const detail_conv::Geometry& g) {
  const int64_t rows = g.N * g.L;
  std::vector<T> xt(size_t(rows * g.C)), yt(size_t(rows * g.O));  // [N L, C], [N L, O]
  transpose_images(xt.data(), px, g.N, g.C, g.L);
  gemm_parallel_rows<T>(rows, g.O, g.C, xt.data(), g.C, 1, pw, 1, g.C, yt.data(), g.O, /*accumulate=*/false);
  parallel_for(0, g.N, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t n = lo; n < hi; ++n)
      for (int64_t o = 0; o < g.O; ++o)
        for (int64_t l = 0; l < g.L; ++l) po[(n * g.O + o) * g.L + l] = yt[size_t((n * g.L + l) * g.O + o)] + (pb ? pb[o] : T(0));
  });
}

// dx overwritten, dw and db accumulated (each only when non-null).
template <class T>
inline void pointwise_backward_batched(T* pdx, T* pdw, T* pdb, const T* pdout, const T* px, const T* pw,
                                       const detail_conv::Geometry& g) {
  const int64_t rows = g.N * g.L;
  std::vector<T> dyt(size_t(rows * g.O));  // [N L, O]
  transpose_images(dyt.data(), pdout, g.N, g.O, g.L);
  if (pdx) {
    std::vector<T> dxt(size_t(rows * g.C));  // [N L, C]
    gemm_parallel_rows<T>(rows, g.C, g.O, dyt.data(), g.O, 1, pw, g.C, 1, dxt.data(), g.C, /*accumulate=*/false);
    transpose_images(pdx, dxt.data(), g.N, g.L, g.C);
  }
  if (pdw) {
    std::vector<T> xt(size_t(rows * g.C));
    transpose_images(xt.data(), px, g.N, g.C, g.L);
    gemm_parallel_rows<T>(g.O, g.C, rows, dyt.data(), 1, g.O, xt.data(), g.C, 1, pdw, g.C, /*accumulate=*/true);
  }
  if (pdb)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < g.O; ++o) pdb[o] += dyt[size_t(r * g.O + o)];
}

// out [N, O, OH, OW] = conv2d(x [N, C, H, W], weight [O, Cg, KH, KW]) + bias [O].
//   x, weight, bias (or undefined) contiguous, out's dtype; out contiguous. Parallel over (n, group).
inline void conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                           const Conv2dParams& p) {
  GRAFT_DISPATCH_FLOAT(out.dtype(), "conv2d", T, [&] {
    const detail_conv::Geometry g = detail_conv::geometry(x.shape(), weight.shape(), p);
    const T* px = x.data<T>();
    const T* pw = weight.data<T>();
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;
    T* po = out.data<T>();
    if (batched_pointwise(g)) {
      pointwise_forward_batched(po, px, pw, pb, g);
      return;
    }
    if (g.Cg == 1) {  // depthwise: one plane per (image, output channel), no im2col
      parallel_for(0, g.N * g.O, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t t = lo; t < hi; ++t) {
          const int64_t n = t / g.O, o = t % g.O, c = o / g.Og;
          depthwise_forward_plane(po + t * g.L, px + (n * g.C + c) * g.H * g.W, pw + o * g.R, pb ? pb[o] : T(0), g, p);
        }
      });
      return;
    }
    parallel_for(0, g.N * g.G, 1, [&](int64_t lo, int64_t hi) {
      std::vector<T> cols(size_t(g.pointwise ? 0 : g.R * g.L));  // [R, L], one per task
      for (int64_t t = lo; t < hi; ++t) {
        const int64_t n = t / g.G, grp = t % g.G;
        const T* x_ng = px + (n * g.C + grp * g.Cg) * g.H * g.W;  // [Cg, H, W]
        const T* w_g = pw + grp * g.Og * g.R;                     // [Og, R]
        T* o_ng = po + (n * g.O + grp * g.Og) * g.L;              // [Og, L]
        const T* cols_ng = x_ng;
        if (!g.pointwise) {
          im2col(cols.data(), x_ng, g, p);
          cols_ng = cols.data();
        }
        for (int64_t o = 0; o < g.Og; ++o)
          std::fill(o_ng + o * g.L, o_ng + (o + 1) * g.L, pb ? pb[grp * g.Og + o] : T(0));
        gemm<T>(g.Og, g.L, g.R, w_g, g.R, 1, cols_ng, g.L, 1, o_ng, g.L, /*accumulate=*/true);
      }
    });
  });
}

// Gradients of conv2d_forward, given dout [N, O, OH, OW] (contiguous):
//   dx      [N, C, H, W]      overwritten; computed only when defined; reads weight
//   dweight [O, Cg, KH, KW]   accumulated (+=); computed only when defined; reads x
//   dbias   [O]               accumulated (+=); computed only when defined
// x may be undefined when dweight is, weight when dx is; x_shape and w_shape give the geometry.
// dweight and dbias sum over images: each task sums its images into its own buffer and the buffers
// are added in task order, so the result does not depend on scheduling.
inline void conv2d_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                            const Tensor& x, const Tensor& weight, const Shape& x_shape, const Shape& w_shape,
                            const Conv2dParams& p) {
  GRAFT_DISPATCH_FLOAT(dout.dtype(), "conv2d backward", T, [&] {
    const detail_conv::Geometry g = detail_conv::geometry(x_shape, w_shape, p);
    const T* pdout = dout.data<T>();
    if (batched_pointwise(g)) {
      pointwise_backward_batched<T>(dx.defined() ? dx.data<T>() : nullptr, dweight.defined() ? dweight.data<T>() : nullptr,
                                    dbias.defined() ? dbias.data<T>() : nullptr, pdout,
                                    dweight.defined() ? x.data<T>() : nullptr, dx.defined() ? weight.data<T>() : nullptr, g);
      return;
    }
    if (dx.defined()) {
      const T* pw = weight.data<T>();
      T* pdx = dx.data<T>();
      parallel_for(0, g.N * g.G, 1, [&](int64_t lo, int64_t hi) {
        std::vector<T> dcols(size_t(g.pointwise ? 0 : g.R * g.L));  // [R, L]
        for (int64_t t = lo; t < hi; ++t) {
          const int64_t n = t / g.G, grp = t % g.G;
          const T* w_g = pw + grp * g.Og * g.R;                     // [Og, R]
          const T* dout_ng = pdout + (n * g.O + grp * g.Og) * g.L;  // [Og, L]
          T* dx_ng = pdx + (n * g.C + grp * g.Cg) * g.H * g.W;      // [Cg, H, W]
          if (g.Cg == 1) {  // depthwise: scatter each of the group's Og output planes into one input plane
            std::fill(dx_ng, dx_ng + g.H * g.W, T(0));
            for (int64_t o = 0; o < g.Og; ++o) depthwise_dx_plane(dx_ng, dout_ng + o * g.L, w_g + o * g.R, g, p);
            continue;
          }
          if (g.pointwise) {  // dx_ng [Cg, L] = w_g^T [Cg, Og] @ dout_ng [Og, L]: no col2im
            gemm<T>(g.R, g.L, g.Og, w_g, 1, g.R, dout_ng, g.L, 1, dx_ng, g.L, /*accumulate=*/false);
            continue;
          }
          gemm<T>(g.R, g.L, g.Og, w_g, 1, g.R, dout_ng, g.L, 1, dcols.data(), g.L, /*accumulate=*/false);
          std::fill(dx_ng, dx_ng + g.Cg * g.H * g.W, T(0));
          col2im_add(dx_ng, dcols.data(), g, p);
        }
      });
    }
    if (!dweight.defined() && !dbias.defined()) return;
    const int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(g.N, get_num_threads()));
    std::vector<std::vector<T>> dw_part(static_cast<size_t>(tasks));  // [O, R] per task
    std::vector<std::vector<T>> db_part(static_cast<size_t>(tasks));  // [O] per task
    const T* px = dweight.defined() ? x.data<T>() : nullptr;
    parallel_for(0, tasks, 1, [&](int64_t lo, int64_t hi) {
      std::vector<T> cols(size_t(dweight.defined() && !g.pointwise && g.Cg != 1 ? g.R * g.L : 0));  // [R, L]
      for (int64_t task = lo; task < hi; ++task) {
        std::vector<T>& dw = dw_part[size_t(task)];
        std::vector<T>& db = db_part[size_t(task)];
        if (dweight.defined()) dw.assign(size_t(g.O * g.R), T(0));
        if (dbias.defined()) db.assign(size_t(g.O), T(0));
        for (int64_t n = task * g.N / tasks; n < (task + 1) * g.N / tasks; ++n)
          for (int64_t grp = 0; grp < g.G; ++grp) {
            const T* dout_ng = pdout + (n * g.O + grp * g.Og) * g.L;  // [Og, L]
            if (dweight.defined() && g.Cg == 1) {  // depthwise: direct sums, no im2col
              const T* x_ng = px + (n * g.C + grp) * g.H * g.W;
              for (int64_t o = 0; o < g.Og; ++o)
                depthwise_dw_plane(dw.data() + (grp * g.Og + o) * g.R, dout_ng + o * g.L, x_ng, g, p);
            } else if (dweight.defined()) {
              const T* cols_ng = px + (n * g.C + grp * g.Cg) * g.H * g.W;
              if (!g.pointwise) {
                im2col(cols.data(), cols_ng, g, p);
                cols_ng = cols.data();
              }
              // dw_g [Og, R] += dout_ng [Og, L] @ cols^T [L, R]
              gemm<T>(g.Og, g.R, g.L, dout_ng, g.L, 1, cols_ng, 1, g.L, dw.data() + grp * g.Og * g.R, g.R,
                                /*accumulate=*/true);
            }
            if (dbias.defined())
              for (int64_t o = 0; o < g.Og; ++o) {
                T s = T(0);
                for (int64_t l = 0; l < g.L; ++l) s += dout_ng[o * g.L + l];
                db[size_t(grp * g.Og + o)] += s;
              }
          }
      }
    });
    if (dweight.defined()) {
      T* pdw = dweight.data<T>();
      for (const auto& part : dw_part)
        for (size_t i = 0; i < part.size(); ++i) pdw[i] += part[i];
    }
    if (dbias.defined()) {
      T* pdb = dbias.data<T>();
      for (const auto& part : db_part)
        for (size_t i = 0; i < part.size(); ++i) pdb[i] += part[i];
    }
  });
}

}  // namespace kernels::cpu

using Conv2dKernel = void (*)(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                              const Conv2dParams& p);
using Conv2dBackwardKernel = void (*)(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                                      const Tensor& x, const Tensor& weight, const Shape& x_shape, const Shape& w_shape,
                                      const Conv2dParams& p);
inline KernelSlot<Conv2dKernel> conv2d_kernel{"conv2d", &kernels::cpu::conv2d_forward};
inline KernelSlot<Conv2dBackwardKernel> conv2d_backward_kernel{"conv2d_backward", &kernels::cpu::conv2d_backward};

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, std::array<int64_t, 2> stride,
              std::array<int64_t, 2> padding, std::array<int64_t, 2> dilation, int64_t groups);

namespace detail_conv {
// {dx, dweight, dbias} of conv2d for the requested ones (the others undefined). Differentiable in
// dout, x and weight: records Conv2dDoubleBackward when grad mode is on (create_graph).
inline std::vector<Tensor> conv2d_grad(const Tensor& dout, const Tensor& x, const Tensor& weight, const Shape& x_shape,
                                       const Shape& w_shape, bool need_dx, bool need_dw, bool need_db,
                                       const Conv2dParams& p);
}  // namespace detail_conv

namespace autograd {
class Conv2dBackward final : public Node {
 public:
  std::string name() const override { return "Conv2dBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    return detail_conv::conv2d_grad(grads[0], x_.unpack(this), w_.unpack(this), x_shape, w_shape, needs_input_grad(0),
                                    needs_input_grad(1), needs_input_grad(2), p);
  }
  void release_saved() override {
    x_.release();
    w_.release();
  }
  SavedTensor x_, w_;  // x is kept only when weight needs a gradient, weight only when x does
  Shape x_shape, w_shape;
  Conv2dParams p;
};

// Backward of conv2d_grad, inputs (dout, x, weight), outputs (dx, dweight, dbias). Each output is
// bilinear or linear, so with incoming ggx, ggw, ggb:
//   d dout   = conv2d(ggx, weight) + conv2d(x, ggw) + ggb (broadcast)
//   d x      = input gradient of a conv2d with weight ggw, at dout
//   d weight = weight gradient of a conv2d with input ggx, at dout
class Conv2dDoubleBackward final : public Node {
 public:
  std::string name() const override { return "Conv2dBackwardBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    const Tensor &ggx = grads[0], &ggw = grads[1], &ggb = grads[2];
    const Tensor dout = dout_.unpack(this), x = x_.unpack(this), w = w_.unpack(this);
    Tensor d_dout, d_x, d_w;
    if (needs_input_grad(0)) {
      auto add_term = [&](const Tensor& t) { d_dout = d_dout.defined() ? d_dout + t : t; };
      const auto& s = p.stride;
      if (ggx.defined()) add_term(conv2d(ggx, w, Tensor(), s, p.padding, p.dilation, p.groups));
      if (ggw.defined()) add_term(conv2d(x, ggw, Tensor(), s, p.padding, p.dilation, p.groups));
      if (ggb.defined()) add_term(ggb.reshape({1, w_shape[0], 1, 1}).expand(dout.shape()).contiguous());
    }
    if (needs_input_grad(1) && ggw.defined())
      d_x = detail_conv::conv2d_grad(dout, Tensor(), ggw, x_shape, w_shape, true, false, false, p)[0];
    if (needs_input_grad(2) && ggx.defined())
      d_w = detail_conv::conv2d_grad(dout, ggx, Tensor(), x_shape, w_shape, false, true, false, p)[1];
    return {d_dout, d_x, d_w};
  }
  void release_saved() override {
    dout_.release();
    x_.release();
    w_.release();
  }
  SavedTensor dout_, x_, w_;
  Shape x_shape, w_shape;
  Conv2dParams p;
};
}  // namespace autograd

namespace detail_conv {
inline std::vector<Tensor> conv2d_grad(const Tensor& dout_in, const Tensor& x_in, const Tensor& w_in,
                                       const Shape& x_shape, const Shape& w_shape, bool need_dx, bool need_dw,
                                       bool need_db, const Conv2dParams& p) {
  const Tensor dout = dout_in.contiguous();
  const Tensor x = need_dw ? x_in.contiguous() : Tensor();
  const Tensor w = need_dx ? w_in.contiguous() : Tensor();
  const DType dt = dout.dtype();
  const Device dev = dout.device();
  Tensor dx = need_dx ? empty(x_shape, dt, dev) : Tensor();
  Tensor dw = need_dw ? zeros(w_shape, dt, dev) : Tensor();
  Tensor db = need_db ? zeros(Shape{w_shape[0]}, dt, dev) : Tensor();
  conv2d_backward_kernel.get(dev)(dx, dw, db, dout.detach(), x.defined() ? x.detach() : x, w.defined() ? w.detach() : w,
                                  x_shape, w_shape, p);
  if (autograd::any_requires_grad({&dout, &x, &w})) {
    auto node = std::make_shared<autograd::Conv2dDoubleBackward>();
    node->dout_ = dout;
    node->x_ = x;
    node->w_ = w;
    node->x_shape = x_shape;
    node->w_shape = w_shape;
    node->p = p;
    autograd::connect(node, {dout, x, w}, {dx, dw, db});
  }
  return {dx, dw, db};
}
}  // namespace detail_conv

// 2-D convolution with PyTorch's semantics (see the shape table at the top). x, weight and bias
// share one floating dtype and device. groups divides C and O; groups == C is depthwise.
inline Tensor conv2d(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in = Tensor(),
                     std::array<int64_t, 2> stride = {1, 1}, std::array<int64_t, 2> padding = {0, 0},
                     std::array<int64_t, 2> dilation = {1, 1}, int64_t groups = 1) {
  GRAFT_CHECK(x_in.defined() && weight_in.defined(), "conv2d", "undefined input or weight");
  GRAFT_CHECK(x_in.dim() == 3 || x_in.dim() == 4, "conv2d",
              "expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got shape ", x_in.shape());
  if (x_in.dim() == 3)
    return conv2d(x_in.unsqueeze(0), weight_in, bias_in, stride, padding, dilation, groups).squeeze(0);
  GRAFT_CHECK(weight_in.dim() == 4, "conv2d", "weight must be 4-D [O, C/groups, KH, KW], got shape ",
              weight_in.shape());
  GRAFT_CHECK(is_floating(x_in.dtype()), "conv2d", "expected a floating-point input, got ", dtype_name(x_in.dtype()));
  GRAFT_CHECK(weight_in.dtype() == x_in.dtype() && (!bias_in.defined() || bias_in.dtype() == x_in.dtype()), "conv2d",
              "input, weight and bias must share a dtype, got ", dtype_name(x_in.dtype()), ", ",
              dtype_name(weight_in.dtype()), bias_in.defined() ? std::string(", ") + dtype_name(bias_in.dtype()) : "");
  GRAFT_CHECK(weight_in.device() == x_in.device() && (!bias_in.defined() || bias_in.device() == x_in.device()),
              "conv2d", "input, weight and bias must be on one device");
  const int64_t C = x_in.size(1), O = weight_in.size(0);
  GRAFT_CHECK(groups >= 1, "conv2d", "groups must be positive, got ", groups);
  GRAFT_CHECK(C % groups == 0, "conv2d", "input channels C = ", C, " (input shape ", x_in.shape(),
              ") are not divisible by groups = ", groups);
  GRAFT_CHECK(O % groups == 0, "conv2d", "output channels O = ", O, " (weight shape ", weight_in.shape(),
              ") are not divisible by groups = ", groups);
  GRAFT_CHECK(weight_in.size(1) * groups == C, "conv2d", "weight of shape ", weight_in.shape(),
              " with groups = ", groups, " expects an input with ", weight_in.size(1) * groups,
              " channels, got input of shape ", x_in.shape(), " (", C, " channels)");
  GRAFT_CHECK(!bias_in.defined() || (bias_in.dim() == 1 && bias_in.size(0) == O), "conv2d", "bias must have shape [", O,
              "], got ", bias_in.defined() ? bias_in.shape() : Shape{});
  for (int i = 0; i < 2; ++i) {
    GRAFT_CHECK(stride[size_t(i)] > 0 && dilation[size_t(i)] > 0 && padding[size_t(i)] >= 0, "conv2d",
                "stride and dilation must be positive and padding non-negative, got stride {", stride[0], ", ",
                stride[1], "}, padding {", padding[0], ", ", padding[1], "}, dilation {", dilation[0], ", ",
                dilation[1], "}");
  }
  const int64_t kh_eff = dilation[0] * (weight_in.size(2) - 1) + 1, kw_eff = dilation[1] * (weight_in.size(3) - 1) + 1;
  const int64_t hp = x_in.size(2) + 2 * padding[0], wp = x_in.size(3) + 2 * padding[1];
  GRAFT_CHECK(kh_eff <= hp && kw_eff <= wp, "conv2d", "kernel size (", kh_eff, " x ", kw_eff,
              ", dilated) is larger than the padded input (", hp, " x ", wp, ") of input shape ", x_in.shape());

  const Conv2dParams p{stride, padding, dilation, groups};
  const Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  const detail_conv::Geometry g = detail_conv::geometry(x.shape(), weight.shape(), p);
  Tensor out = empty({g.N, g.O, g.OH, g.OW}, x.dtype(), x.device());
  if (out.numel() > 0)
    conv2d_kernel.get(x.device())(out, x.detach(), weight.detach(), bias.defined() ? bias.detach() : bias, p);
  if (autograd::any_requires_grad({&x, &weight, &bias})) {
    auto node = std::make_shared<autograd::Conv2dBackward>();
    if (weight.requires_grad()) node->x_ = x;
    if (x.requires_grad()) node->w_ = weight;
    node->x_shape = x.shape();
    node->w_shape = weight.shape();
    node->p = p;
    autograd::connect(node, {x, weight, bias}, {out});
  }
  return out;
}

GRAFT_REGISTER_OP(conv2d, true);

}  // namespace graft
