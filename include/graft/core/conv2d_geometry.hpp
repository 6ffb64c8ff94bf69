// graft/core/conv2d_geometry.hpp - the parameters and sizes of one 2-D convolution, shared by the op
// (include/graft/ops/conv2d.hpp: checks, autograd, reference loops) and its fast CPU kernels
// (kernels/graft/kernels/cpu/conv2d.hpp), which must not include the op header.
//
//   x      [N, C, H, W]            NCHW
//   weight [O, Cg, KH, KW]         OIHW, Cg = C / G input channels per group
//   out    [N, O, OH, OW]          OH = (H + 2 ph - dh (KH - 1) - 1) / sh + 1, likewise OW
//   out[n, o, oh, ow] = bias[o] + sum over c < Cg, kh < KH, kw < KW of
//       weight[o, c, kh, kw] * x[n, (o / Og) Cg + c, oh sh - ph + kh dh, ow sw - pw + kw dw]
//   (taps outside the image read 0), Og = O / G output channels per group.
#pragma once
#include <array>
#include <cstdint>

#include "graft/core/shape.hpp"

namespace graft {

struct Conv2dParams {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
};

// All sizes of one convolution, from the input and weight shapes.
struct Conv2dGeometry {
  int64_t N, C, H, W;  // input
  int64_t O, KH, KW;   // weight [O, Cg, KH, KW]
  int64_t OH, OW;      // output
  int64_t G, Cg, Og;   // groups, input and output channels per group
  int64_t R, L;        // im2col rows (Cg KH KW) and columns (OH OW)
  int64_t sh, sw, ph, pw, dh, dw;  // stride, padding, dilation
  bool pointwise;      // 1x1 kernel, stride 1, no padding: the input itself is the im2col matrix
  bool depthwise() const { return Cg == 1; }
};

inline int64_t conv2d_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

// x [N, C, H, W], w [O, C/groups, KH, KW].
inline Conv2dGeometry conv2d_geometry(const Shape& x, const Shape& w, const Conv2dParams& p) {
  Conv2dGeometry g;
  g.N = x[0], g.C = x[1], g.H = x[2], g.W = x[3];
  g.O = w[0], g.KH = w[2], g.KW = w[3];
  g.sh = p.stride[0], g.sw = p.stride[1], g.ph = p.padding[0], g.pw = p.padding[1];
  g.dh = p.dilation[0], g.dw = p.dilation[1];
  g.OH = conv2d_out_size(g.H, g.KH, g.sh, g.ph, g.dh);
  g.OW = conv2d_out_size(g.W, g.KW, g.sw, g.pw, g.dw);
  g.G = p.groups, g.Cg = g.C / g.G, g.Og = g.O / g.G;
  g.R = g.Cg * g.KH * g.KW, g.L = g.OH * g.OW;
  g.pointwise = g.KH == 1 && g.KW == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
  return g;
}

}  // namespace graft
