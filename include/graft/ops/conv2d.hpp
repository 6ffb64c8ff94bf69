// graft/ops/conv2d.hpp - 2-D convolution (cross-correlation, as PyTorch), grouped and depthwise.
//
// Shapes:
//   x      [N, C, H, W]       (or [C, H, W], treated as N = 1)
//   weight [O, C/groups, KH, KW]   OIHW, as PyTorch checkpoints store it
//   bias   [O] or undefined
//   out    [N, O, OH, OW]     OH = (H + 2 ph - dh (KH - 1) - 1) / sh + 1, likewise OW
//
// The reference kernels here are the plain direct loops (7 deep: image, output channel, input
// channel, kernel row, kernel column, output row, output column), the tests' oracle, the float64 path
// and the GRAFT_CPU_ISA=scalar path. The fast float32 kernels (im2col + GEMM, 1x1 as a GEMM, a
// vectorized depthwise kernel, threads within one image) are in kernels/graft/kernels/cpu/conv2d.hpp.
//   forward  out[n, o, oh, ow] = bias[o] + sum_{c, kh, kw} w[o, c, kh, kw] x[n, g(o) Cg + c, ih, iw]
//            ih = oh sh - ph + kh dh, iw = ow sw - pw + kw dw (taps outside the image read 0)
//   dx       dx[n, g(o) Cg + c, ih, iw] += dout[n, o, oh, ow] w[o, c, kh, kw]
//   dweight  dw[o, c, kh, kw] += sum_{n, oh, ow} dout[n, o, oh, ow] x[n, g(o) Cg + c, ih, iw]
//   dbias    db[o] += sum_{n, oh, ow} dout[n, o, oh, ow]
// dx is computed only when x needs a gradient, so a frozen backbone (or the first layer) costs
// only dweight. The backward is differentiable again (create_graph): its own backward is written
// with conv2d and the backward kernel (see Conv2dDoubleBackward).
#pragma once
#include <algorithm>
#include <array>
#include <type_traits>
#include <vector>

#include "graft/core/conv2d_geometry.hpp"
#include "graft/kernels/cpu/conv2d.hpp"
#include "graft/ops/matmul.hpp"

namespace graft {

namespace kernels::cpu {

// out [N, O, OH, OW] = conv2d(x [N, C, H, W], w [O, Cg, KH, KW]) + b [O] (b may be null), direct loops.
// One task per output plane (n, o); each output is bias + the taps in (c, kh, kw) order.
template <class T>
inline void conv2d_forward_reference(T* out, const T* x, const T* w, const T* b, const Conv2dGeometry& g) {
  parallel_for(0, g.N * g.O, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t n = t / g.O, o = t % g.O, grp = o / g.Og;
      T* out_plane = out + t * g.L;  // [OH, OW]
      std::fill(out_plane, out_plane + g.L, b ? b[o] : T(0));
      for (int64_t c = 0; c < g.Cg; ++c) {
        const T* x_plane = x + (n * g.C + grp * g.Cg + c) * g.H * g.W;  // [H, W]
        for (int64_t kh = 0; kh < g.KH; ++kh)
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            const T wv = w[((o * g.Cg + c) * g.KH + kh) * g.KW + kw];
            for (int64_t oh = 0; oh < g.OH; ++oh) {
              const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
              if (ih < 0 || ih >= g.H) continue;
              for (int64_t ow = 0; ow < g.OW; ++ow) {
                const int64_t iw = ow * g.sw - g.pw + kw * g.dw;
                if (iw >= 0 && iw < g.W) out_plane[oh * g.OW + ow] += wv * x_plane[ih * g.W + iw];
              }
            }
          }
      }
    }
  });
}

// Gradients of conv2d_forward_reference given dout [N, O, OH, OW], direct loops:
//   dx [N, C, H, W] overwritten (reads w), dw [O, Cg, KH, KW] and db [O] accumulated (dw reads x);
//   each only when non-null. One task per input plane (n, c) for dx, per output channel for dw, db.
template <class T>
inline void conv2d_backward_reference(T* dx, T* dw, T* db, const T* dout, const T* x, const T* w,
                                      const Conv2dGeometry& g) {
  if (dx)
    parallel_for(0, g.N * g.C, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t t = lo; t < hi; ++t) {
        const int64_t n = t / g.C, ci = t % g.C, grp = ci / g.Cg, c = ci % g.Cg;
        T* dx_plane = dx + t * g.H * g.W;  // [H, W]
        std::fill(dx_plane, dx_plane + g.H * g.W, T(0));
        for (int64_t o = grp * g.Og; o < (grp + 1) * g.Og; ++o) {
          const T* dout_plane = dout + (n * g.O + o) * g.L;  // [OH, OW]
          for (int64_t kh = 0; kh < g.KH; ++kh)
            for (int64_t kw = 0; kw < g.KW; ++kw) {
              const T wv = w[((o * g.Cg + c) * g.KH + kh) * g.KW + kw];
              for (int64_t oh = 0; oh < g.OH; ++oh) {
                const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
                if (ih < 0 || ih >= g.H) continue;
                for (int64_t ow = 0; ow < g.OW; ++ow) {
                  const int64_t iw = ow * g.sw - g.pw + kw * g.dw;
                  if (iw >= 0 && iw < g.W) dx_plane[ih * g.W + iw] += wv * dout_plane[oh * g.OW + ow];
                }
              }
            }
        }
      }
    });
  if (dw || db)
    parallel_for(0, g.O, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t o = lo; o < hi; ++o) {
        const int64_t grp = o / g.Og;
        for (int64_t n = 0; n < g.N; ++n) {
          const T* dout_plane = dout + (n * g.O + o) * g.L;  // [OH, OW]
          if (db) {
            T s = T(0);
            for (int64_t l = 0; l < g.L; ++l) s += dout_plane[l];
            db[o] += s;
          }
          if (!dw) continue;
          for (int64_t c = 0; c < g.Cg; ++c) {
            const T* x_plane = x + (n * g.C + grp * g.Cg + c) * g.H * g.W;  // [H, W]
            for (int64_t kh = 0; kh < g.KH; ++kh)
              for (int64_t kw = 0; kw < g.KW; ++kw) {
                T s = T(0);
                for (int64_t oh = 0; oh < g.OH; ++oh) {
                  const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
                  if (ih < 0 || ih >= g.H) continue;
                  for (int64_t ow = 0; ow < g.OW; ++ow) {
                    const int64_t iw = ow * g.sw - g.pw + kw * g.dw;
                    if (iw >= 0 && iw < g.W) s += dout_plane[oh * g.OW + ow] * x_plane[ih * g.W + iw];
                  }
                }
                dw[((o * g.Cg + c) * g.KH + kh) * g.KW + kw] += s;
              }
          }
        }
      }
    });
}

// cols [R, L] of one image and group: cols[(c KH + kh) KW + kw, oh OW + ow] = x[c, ih, iw] (0 outside the
// image), x pointing at the group's first channel plane. Any element type (the bfloat16 GEMM path).
template <class T>
inline void im2col_reference(T* cols, const T* x, const Conv2dGeometry& g) {
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        T* row = cols + ((c * g.KH + kh) * g.KW + kw) * g.L;
        const T* plane = x + c * g.H * g.W;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const int64_t iw = ow * g.sw - g.pw + kw * g.dw;
            row[oh * g.OW + ow] = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W ? plane[ih * g.W + iw] : T(0.0f);
          }
        }
      }
}

// The bfloat16 forward on gemm_bf16 (AMX / AVX512_BF16): per (image, group) the bfloat16 im2col, then
// w_g [Og, R] cols [R, L] into float32, the bias added, rounded once into out.
inline void conv2d_forward_bf16_gemm(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                                     const Conv2dGeometry& g) {
  const int64_t R = g.Cg * g.KH * g.KW;
  const Tensor wide = empty({g.N, g.O, g.L}, DType::Float32), wide_bias = widen_operand(bias);
  std::vector<BFloat16> cols(size_t(R * g.L));
  const BFloat16 *px = x.data<BFloat16>(), *pw = weight.data<BFloat16>();
  float* po = wide.data<float>();
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t grp = 0; grp < g.G; ++grp) {
      im2col_reference(cols.data(), px + (n * g.C + grp * g.Cg) * g.H * g.W, g);
      float* o = po + (n * g.O + grp * g.Og) * g.L;
      gemm_bf16(g.Og, g.L, R, pw + grp * g.Og * R, R, 1, cols.data(), g.L, 1, o, g.L);
      if (wide_bias.defined())
        for (int64_t oc = 0; oc < g.Og; ++oc) {
          const float b = wide_bias.data<float>()[grp * g.Og + oc];
          for (int64_t l = 0; l < g.L; ++l) o[oc * g.L + l] += b;
        }
    }
  copy_into(out, wide.reshape(out.shape()));
}

// dx's planes of one image and group += the columns dcols [R, L] folded back (col2im, im2col_reference's
// transpose): x[c, ih, iw] += dcols[(c KH + kh) KW + kw, oh OW + ow] over the taps inside the image.
inline void col2im_add_reference(float* dx, const float* dcols, const Conv2dGeometry& g) {
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const float* row = dcols + ((c * g.KH + kh) * g.KW + kw) * g.L;
        float* plane = dx + c * g.H * g.W;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + kh * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const int64_t iw = ow * g.sw - g.pw + kw * g.dw;
            if (iw >= 0 && iw < g.W) plane[ih * g.W + iw] += row[oh * g.OW + ow];
          }
        }
      }
}

// The bfloat16 backward on gemm_bf16 (AMX / AVX512_BF16), per (image, group):
//   dx      dcols [R, L] = w_g^T [R, Og] dout_g [Og, L] into float32, folded back into a float32 dx
//   dweight dw_g [Og, R] += dout_g [Og, L] cols^T [L, R] (the bfloat16 im2col), summed in float32
// each rounded once into its bfloat16 tensor (dweight and dbias accumulate: their values are widened
// first). dbias: dout summed in double.
inline void conv2d_backward_bf16_gemm(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                      const Tensor& dout, const Tensor& x, const Tensor& weight,
                                      const Conv2dGeometry& g) {
  const int64_t R = g.Cg * g.KH * g.KW;
  const BFloat16* pd = dout.data<BFloat16>();
  if (dx.defined()) {
    const Tensor wide = zeros(dx.shape(), DType::Float32);
    std::vector<float> dcols(size_t(R * g.L));
    const BFloat16* pw = weight.data<BFloat16>();
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t grp = 0; grp < g.G; ++grp) {
        // a (r, o) = w[grp Og + o, r]: the group's weight read transposed
        gemm_bf16(R, g.L, g.Og, pw + grp * g.Og * R, 1, R, pd + (n * g.O + grp * g.Og) * g.L, g.L, 1, dcols.data(),
                  g.L);
        col2im_add_reference(wide.data<float>() + (n * g.C + grp * g.Cg) * g.H * g.W, dcols.data(), g);
      }
    copy_into(dx, wide);
  }
  if (dweight.defined()) {
    const Tensor wide = widen_operand(dweight).contiguous();
    std::vector<BFloat16> cols(size_t(R * g.L));
    std::vector<float> prod(size_t(g.Og * R));
    const BFloat16* px = x.data<BFloat16>();
    float* pdw = wide.data<float>();
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t grp = 0; grp < g.G; ++grp) {
        im2col_reference(cols.data(), px + (n * g.C + grp * g.Cg) * g.H * g.W, g);
        // b (l, r) = cols[r, l]: the columns read transposed
        gemm_bf16(g.Og, R, g.L, pd + (n * g.O + grp * g.Og) * g.L, g.L, 1, cols.data(), 1, g.L, prod.data(), R);
        float* dw = pdw + grp * g.Og * R;
        for (int64_t e = 0; e < g.Og * R; ++e) dw[e] += prod[size_t(e)];
      }
    copy_into(dweight, wide);
  }
  if (dbias.defined()) {
    const Tensor wide = widen_operand(dbias).contiguous();
    float* pb = wide.data<float>();
    for (int64_t o = 0; o < g.O; ++o) {
      double s = 0.0;
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t l = 0; l < g.L; ++l) s += double(float(pd[(n * g.O + o) * g.L + l]));
      pb[o] = float(double(pb[o]) + s);
    }
    copy_into(dbias, wide);
  }
}

// The CPU entries (the KernelSlots below): the fast float32 kernels for the active ISA
// (kernels/graft/kernels/cpu/conv2d.hpp), else the references above.
//   conv2d_forward:  out = conv2d(x, weight) + bias; x, weight, bias (or undefined) and out contiguous.
//   conv2d_backward: dx overwritten, dweight and dbias accumulated (+=), each only when defined; x may
//                    be undefined when dweight is, weight when dx is; x_shape and w_shape give the sizes.
//   bfloat16 / float16: the operands widened to float32, the float32 kernels, the results rounded on store;
//   bfloat16 on a CPU with AMX or AVX512_BF16: conv2d_forward_bf16_gemm and conv2d_backward_bf16_gemm.
inline void conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                           const Conv2dParams& p) {
  if (out.dtype() == DType::BFloat16 && active_bf16_gemm_path() != Bf16GemmPath::Widen)
    return conv2d_forward_bf16_gemm(out, x, weight, bias, conv2d_geometry(x.shape(), weight.shape(), p));
  if (is_reduced_float(out.dtype())) {
    const Tensor wide = empty(out.shape(), DType::Float32);
    conv2d_forward(wide, widen_operand(x), widen_operand(weight), widen_operand(bias), p);
    return copy_into(out, wide);
  }
  const Conv2dGeometry g = conv2d_geometry(x.shape(), weight.shape(), p);
  if (out.dtype() == DType::Float32 &&
      conv2d_forward_fast(out.data<float>(), x.data<float>(), weight.data<float>(),
                          bias.defined() ? bias.data<float>() : nullptr, g))
    return;
  GRAFT_DISPATCH_FLOAT(out.dtype(), "conv2d", T, [&] {
    conv2d_forward_reference<T>(out.data<T>(), x.data<T>(), weight.data<T>(), bias.defined() ? bias.data<T>() : nullptr,
                                g);
  });
}

inline void conv2d_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                            const Tensor& x, const Tensor& weight, const Shape& x_shape, const Shape& w_shape,
                            const Conv2dParams& p) {
  if (dout.dtype() == DType::BFloat16 && active_bf16_gemm_path() != Bf16GemmPath::Widen)
    return conv2d_backward_bf16_gemm(dx, dweight, dbias, dout, x, weight, conv2d_geometry(x_shape, w_shape, p));
  if (is_reduced_float(dout.dtype())) {
    // dweight and dbias accumulate: their current values are widened too, then the sums rounded back
    const Tensor wdx = dx.defined() ? empty(dx.shape(), DType::Float32) : Tensor();
    const Tensor wdw = widen_operand(dweight), wdb = widen_operand(dbias);
    conv2d_backward(wdx, wdw, wdb, widen_operand(dout), widen_operand(x), widen_operand(weight), x_shape, w_shape, p);
    if (dx.defined()) copy_into(dx, wdx);
    if (dweight.defined()) copy_into(dweight, wdw);
    if (dbias.defined()) copy_into(dbias, wdb);
    return;
  }
  const Conv2dGeometry g = conv2d_geometry(x_shape, w_shape, p);
  auto run = [&](auto* type_tag, auto&& kernel) {
    using T = std::remove_pointer_t<decltype(type_tag)>;
    return kernel(dx.defined() ? dx.data<T>() : nullptr, dweight.defined() ? dweight.data<T>() : nullptr,
                  dbias.defined() ? dbias.data<T>() : nullptr, dout.data<T>(),
                  dweight.defined() ? x.data<T>() : nullptr, dx.defined() ? weight.data<T>() : nullptr);
  };
  if (dout.dtype() == DType::Float32 &&
      run((float*)nullptr, [&](float* pdx, float* pdw, float* pdb, const float* pd, const float* px, const float* pw) {
        return conv2d_backward_fast(pdx, pdw, pdb, pd, px, pw, g);
      }))
    return;
  GRAFT_DISPATCH_FLOAT(dout.dtype(), "conv2d backward", T, [&] {
    run((T*)nullptr, [&](T* pdx, T* pdw, T* pdb, const T* pd, const T* px, const T* pw) {
      conv2d_backward_reference<T>(pdx, pdw, pdb, pd, px, pw, g);
      return true;
    });
  });
}

}  // namespace kernels::cpu

using Conv2dKernel = void (*)(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                              const Conv2dParams& p);
using Conv2dBackwardKernel = void (*)(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                                      const Tensor& x, const Tensor& weight, const Shape& x_shape, const Shape& w_shape,
                                      const Conv2dParams& p);
GRAFT_KERNEL_SLOT(Conv2dKernel, conv2d_kernel, "conv2d", kernels::cpu::conv2d_forward, "avx2 avx512");
GRAFT_KERNEL_SLOT(Conv2dBackwardKernel, conv2d_backward_kernel, "conv2d_backward", kernels::cpu::conv2d_backward,
                  "avx2 avx512");

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
// share one floating dtype and device. groups divides C and O; groups == C is depthwise. Under autocast
// the three are cast to its dtype (the weight and bias through the scope's cache, ops/autocast.hpp).
inline Tensor conv2d(const Tensor& x_arg, const Tensor& weight_arg, const Tensor& bias_arg = Tensor(),
                     std::array<int64_t, 2> stride = {1, 1}, std::array<int64_t, 2> padding = {0, 0},
                     std::array<int64_t, 2> dilation = {1, 1}, int64_t groups = 1) {
  GRAFT_CHECK(x_arg.defined() && weight_arg.defined(), "conv2d", "undefined input or weight");
  const Tensor x_in = autocast::lower(x_arg), weight_in = autocast::lower_weight(weight_arg),
               bias_in = autocast::lower_weight(bias_arg);
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

  // 16-bit GPU convolutions run on the tensor cores, but for one input channel per group (depthwise,
  // Cg = 1): those run in float32, rounded
  if (is_reduced_float(x_in.dtype()) && !x_in.device().is_cpu() && weight_in.size(1) == 1)
    return conv2d(x_in.to(DType::Float32), weight_in.to(DType::Float32), as_float32_if_reduced(bias_in), stride, padding,
                  dilation, groups)
        .to(x_in.dtype());
  const Conv2dParams p{stride, padding, dilation, groups};
  const Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  const Conv2dGeometry g = conv2d_geometry(x.shape(), weight.shape(), p);
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
