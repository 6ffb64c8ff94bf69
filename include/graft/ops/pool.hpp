// graft/ops/pool.hpp - 2-D pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d (PyTorch semantics).
//
// Shapes: x [N, C, H, W] (or [C, H, W], treated as N = 1) -> out [N, C, OH, OW].
// Output extent per spatial dim (PyTorch's pooling_output_shape):
//   OH = floor((H + 2 ph - dh (KH - 1) - 1 + (ceil_mode ? sh - 1 : 0)) / sh) + 1
//   and with ceil_mode the last window must start inside the input or the left padding:
//   if ((OH - 1) sh >= H + ph) OH -= 1.
// Windows: output (oh, ow) covers rows oh sh - ph + kh dh (kh < KH), likewise columns.
//   max:      the first maximum in row-major window order (a NaN wins, as in PyTorch); backward
//             routes dout there.
//   avg:      sum over in-image taps / divisor; the divisor counts the window clipped to the
//             padded input (count_include_pad) or to the input itself.
//   adaptive: rows [floor(i H / OH), ceil((i + 1) H / OH)), likewise columns; the mean over them.
// Kernels work on contiguous planes and run in parallel over the N C planes. Every backward is
// linear in dout, so it is differentiable again (create_graph) through the same kernels.
#pragma once
#include <array>
#include <cmath>
#include <limits>

#include "graft/autograd/node.hpp"
#include "graft/core/dispatch.hpp"
#include "graft/core/parallel.hpp"
#include "graft/ops/autocast.hpp"
#include "graft/ops/creation.hpp"
#include "graft/ops/view.hpp"
#include "graft/kernels/cpu/pool.hpp"

namespace graft {

struct Pool2dParams {
  std::array<int64_t, 2> kernel{1, 1};
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg only
};

namespace detail_pool {
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

inline int64_t pool_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil, bool ceil_mode) {
  int64_t out = floor_div(in + 2 * pad - dil * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0), stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// Checks PyTorch makes for max/avg pooling; returns the output shape [N, C, OH, OW] for a 4-D x.
inline Shape check_pool_args(const char* op, const Shape& x, const Pool2dParams& p) {
  for (int i = 0; i < 2; ++i) {
    const size_t d = size_t(i);
    GRAFT_CHECK(p.kernel[d] > 0 && p.stride[d] > 0 && p.dilation[d] > 0, op,
                "kernel, stride and dilation must be positive, got kernel {", p.kernel[0], ", ", p.kernel[1],
                "}, stride {", p.stride[0], ", ", p.stride[1], "}, dilation {", p.dilation[0], ", ", p.dilation[1],
                "}");
    GRAFT_CHECK(p.padding[d] >= 0 && p.padding[d] <= p.kernel[d] / 2, op,
                "padding must be between 0 and half the kernel size, got padding {", p.padding[0], ", ", p.padding[1],
                "} for kernel {", p.kernel[0], ", ", p.kernel[1], "}");
  }
  const int64_t oh = pool_out_size(x[2], p.kernel[0], p.stride[0], p.padding[0], p.dilation[0], p.ceil_mode);
  const int64_t ow = pool_out_size(x[3], p.kernel[1], p.stride[1], p.padding[1], p.dilation[1], p.ceil_mode);
  GRAFT_CHECK(oh >= 1 && ow >= 1, op, "input of shape ", x, " gives output size ", oh, " x ", ow,
              ", which is too small (kernel {", p.kernel[0], ", ", p.kernel[1], "}, padding {", p.padding[0], ", ",
              p.padding[1], "})");
  return Shape{x[0], x[1], oh, ow};
}

inline void check_input(const char* op, const Tensor& x) {
  GRAFT_CHECK(x.defined(), op, "undefined input");
  GRAFT_CHECK(x.dim() == 3 || x.dim() == 4, op, "expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got shape ",
              x.shape());
  GRAFT_CHECK(is_floating(x.dtype()), op, "expected a floating-point input, got ", dtype_name(x.dtype()));
  for (int d = x.dim() - 3; d < x.dim(); ++d)
    GRAFT_CHECK(x.size(d) > 0, op, "expected non-empty channel and spatial dims, got shape ", x.shape());
}

// The adaptive window [start, end) of output i along a dim of input size in and output size out.
using kernels::cpu::adaptive_end;
using kernels::cpu::adaptive_start;

// The geometry the fast CPU kernels take, for planes [H, W] -> [OH, OW].
inline kernels::cpu::PoolWindow2d pool_window(int64_t H, int64_t W, int64_t OH, int64_t OW, const Pool2dParams& p) {
  return kernels::cpu::PoolWindow2d{H,           W,           OH,          OW,          p.kernel[0],
                                    p.kernel[1], p.stride[0], p.stride[1], p.padding[0], p.padding[1],
                                    p.dilation[0], p.dilation[1], p.count_include_pad};
}
}  // namespace detail_pool

namespace kernels::cpu {

// out, indices [N, C, OH, OW] = max over each window of x [N, C, H, W]; indices (int64) hold the
// argmax as h W + w within its plane. All contiguous.
inline void max_pool2d_forward_reference(const Tensor& out, const Tensor& indices, const Tensor& x,
                                         const Pool2dParams& p) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), "max_pool2d", T, [&] {
    const int64_t H = x.size(2), W = x.size(3), OH = out.size(2), OW = out.size(3);
    const T* px = x.data<T>();
    T* po = out.data<T>();
    int64_t* pi = indices.data<int64_t>();
    parallel_for(0, x.size(0) * x.size(1), 16, [&](int64_t lo, int64_t hi) {
      for (int64_t plane = lo; plane < hi; ++plane) {
        const T* xp = px + plane * H * W;  // [H, W]
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            T best = -std::numeric_limits<T>::infinity();
            int64_t best_idx = -1;
            for (int64_t kh = 0; kh < p.kernel[0]; ++kh) {
              const int64_t ih = oh * p.stride[0] - p.padding[0] + kh * p.dilation[0];
              if (ih < 0 || ih >= H) continue;
              for (int64_t kw = 0; kw < p.kernel[1]; ++kw) {
                const int64_t iw = ow * p.stride[1] - p.padding[1] + kw * p.dilation[1];
                if (iw < 0 || iw >= W) continue;
                const T v = xp[ih * W + iw];
                if (best_idx < 0) best_idx = ih * W + iw;  // as PyTorch: start from the first tap
                if (v > best || std::isnan(v)) {
                  best = v;
                  best_idx = ih * W + iw;
                }
              }
            }
            po[(plane * OH + oh) * OW + ow] = best;
            pi[(plane * OH + oh) * OW + ow] = best_idx;
          }
      }
    });
  });
}

// dx [N, C, H, W] (overwritten) = dout [N, C, OH, OW] scattered to the argmax of each window.
inline void max_pool2d_backward_reference(const Tensor& dx, const Tensor& dout, const Tensor& indices) {
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "max_pool2d backward", T, [&] {
    const int64_t HW = dx.size(2) * dx.size(3), OHW = dout.size(2) * dout.size(3);
    T* pdx = dx.data<T>();
    const T* pd = dout.data<T>();
    const int64_t* pi = indices.data<int64_t>();
    parallel_for(0, dx.size(0) * dx.size(1), 16, [&](int64_t lo, int64_t hi) {
      for (int64_t plane = lo; plane < hi; ++plane) {
        T* dxp = pdx + plane * HW;
        std::fill(dxp, dxp + HW, T(0));
        for (int64_t o = 0; o < OHW; ++o) dxp[pi[plane * OHW + o]] += pd[plane * OHW + o];
      }
    });
  });
}

// out [N, C, OH, OW] = src [N, C, H, W] at indices: the adjoint of max_pool2d_backward (its backward).
inline void max_pool2d_gather_reference(const Tensor& out, const Tensor& src, const Tensor& indices) {
  GRAFT_DISPATCH_FLOAT(out.dtype(), "max_pool2d double backward", T, [&] {
    const int64_t HW = src.size(2) * src.size(3), OHW = out.size(2) * out.size(3);
    T* po = out.data<T>();
    const T* ps = src.data<T>();
    const int64_t* pi = indices.data<int64_t>();
    for (int64_t plane = 0; plane < out.size(0) * out.size(1); ++plane)
      for (int64_t o = 0; o < OHW; ++o) po[plane * OHW + o] = ps[plane * HW + pi[plane * OHW + o]];
  });
}

// The divisor of avg pooling for the window starting at (hs, ws) (may be negative: padding).
inline int64_t avg_pool_divisor(int64_t hs, int64_t ws, int64_t H, int64_t W, const Pool2dParams& p) {
  return avg_pool_divisor(hs, ws, detail_pool::pool_window(H, W, 1, 1, p));
}

// out [N, C, OH, OW] = mean over each window of x [N, C, H, W] (divisor as avg_pool_divisor).
inline void avg_pool2d_forward_reference(const Tensor& out, const Tensor& x, const Pool2dParams& p) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), "avg_pool2d", T, [&] {
    const int64_t H = x.size(2), W = x.size(3), OH = out.size(2), OW = out.size(3);
    const T* px = x.data<T>();
    T* po = out.data<T>();
    parallel_for(0, x.size(0) * x.size(1), 16, [&](int64_t lo, int64_t hi) {
      for (int64_t plane = lo; plane < hi; ++plane) {
        const T* xp = px + plane * H * W;
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t hs = oh * p.stride[0] - p.padding[0], ws = ow * p.stride[1] - p.padding[1];
            T s = T(0);
            for (int64_t ih = std::max<int64_t>(hs, 0); ih < std::min(hs + p.kernel[0], H); ++ih)
              for (int64_t iw = std::max<int64_t>(ws, 0); iw < std::min(ws + p.kernel[1], W); ++iw)
                s += xp[ih * W + iw];
            po[(plane * OH + oh) * OW + ow] = s / T(avg_pool_divisor(hs, ws, H, W, p));
          }
      }
    });
  });
}

// dx [N, C, H, W] (overwritten): each dout element spread evenly over its window's in-image taps.
inline void avg_pool2d_backward_reference(const Tensor& dx, const Tensor& dout, const Pool2dParams& p) {
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "avg_pool2d backward", T, [&] {
    const int64_t H = dx.size(2), W = dx.size(3), OH = dout.size(2), OW = dout.size(3);
    T* pdx = dx.data<T>();
    const T* pd = dout.data<T>();
    parallel_for(0, dx.size(0) * dx.size(1), 16, [&](int64_t lo, int64_t hi) {
      for (int64_t plane = lo; plane < hi; ++plane) {
        T* dxp = pdx + plane * H * W;
        std::fill(dxp, dxp + H * W, T(0));
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t hs = oh * p.stride[0] - p.padding[0], ws = ow * p.stride[1] - p.padding[1];
            const T g = pd[(plane * OH + oh) * OW + ow] / T(avg_pool_divisor(hs, ws, H, W, p));
            for (int64_t ih = std::max<int64_t>(hs, 0); ih < std::min(hs + p.kernel[0], H); ++ih)
              for (int64_t iw = std::max<int64_t>(ws, 0); iw < std::min(ws + p.kernel[1], W); ++iw)
                dxp[ih * W + iw] += g;
          }
      }
    });
  });
}

// out [N, C, OH, OW] = mean of x [N, C, H, W] over each adaptive window.
inline void adaptive_avg_pool2d_forward_reference(const Tensor& out, const Tensor& x) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), "adaptive_avg_pool2d", T, [&] {
    const int64_t H = x.size(2), W = x.size(3), OH = out.size(2), OW = out.size(3);
    const T* px = x.data<T>();
    T* po = out.data<T>();
    parallel_for(0, x.size(0) * x.size(1), 16, [&](int64_t lo, int64_t hi) {
      for (int64_t plane = lo; plane < hi; ++plane) {
        const T* xp = px + plane * H * W;
        for (int64_t oh = 0; oh < OH; ++oh) {
          const int64_t hs = detail_pool::adaptive_start(oh, H, OH), he = detail_pool::adaptive_end(oh, H, OH);
          for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t ws = detail_pool::adaptive_start(ow, W, OW), we = detail_pool::adaptive_end(ow, W, OW);
            T s = T(0);
            for (int64_t ih = hs; ih < he; ++ih)
              for (int64_t iw = ws; iw < we; ++iw) s += xp[ih * W + iw];
            po[(plane * OH + oh) * OW + ow] = s / T((he - hs) * (we - ws));
          }
        }
      }
    });
  });
}

// dx [N, C, H, W] (overwritten): each dout element spread evenly over its adaptive window.
inline void adaptive_avg_pool2d_backward_reference(const Tensor& dx, const Tensor& dout) {
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "adaptive_avg_pool2d backward", T, [&] {
    const int64_t H = dx.size(2), W = dx.size(3), OH = dout.size(2), OW = dout.size(3);
    T* pdx = dx.data<T>();
    const T* pd = dout.data<T>();
    parallel_for(0, dx.size(0) * dx.size(1), 16, [&](int64_t lo, int64_t hi) {
      for (int64_t plane = lo; plane < hi; ++plane) {
        T* dxp = pdx + plane * H * W;
        std::fill(dxp, dxp + H * W, T(0));
        for (int64_t oh = 0; oh < OH; ++oh) {
          const int64_t hs = detail_pool::adaptive_start(oh, H, OH), he = detail_pool::adaptive_end(oh, H, OH);
          for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t ws = detail_pool::adaptive_start(ow, W, OW), we = detail_pool::adaptive_end(ow, W, OW);
            const T g = pd[(plane * OH + oh) * OW + ow] / T((he - hs) * (we - ws));
            for (int64_t ih = hs; ih < he; ++ih)
              for (int64_t iw = ws; iw < we; ++iw) dxp[ih * W + iw] += g;
          }
        }
      }
    });
  });
}

// The CPU entries: the fast float32 kernels (kernels/graft/kernels/cpu/pool.hpp), else the
// references above (float64, GRAFT_CPU_ISA=scalar, shapes the fast path does not take).
inline void max_pool2d_forward(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams& p) {
  if (x.dtype() == DType::Float32 &&
      max_pool2d_forward_fast(out.data<float>(), indices.data<int64_t>(), x.data<float>(), x.size(0) * x.size(1),
                              detail_pool::pool_window(x.size(2), x.size(3), out.size(2), out.size(3), p)))
    return;
  max_pool2d_forward_reference(out, indices, x, p);
}
inline void max_pool2d_backward(const Tensor& dx, const Tensor& dout, const Tensor& indices) {
  if (dx.dtype() == DType::Float32 && dout.dtype() == DType::Float32 &&
      max_pool2d_backward_fast(dx.data<float>(), dout.data<float>(), indices.data<int64_t>(), dx.size(0) * dx.size(1),
                               dx.size(2) * dx.size(3), dout.size(2) * dout.size(3)))
    return;
  max_pool2d_backward_reference(dx, dout, indices);
}
inline void max_pool2d_gather(const Tensor& out, const Tensor& src, const Tensor& indices) {
  if (out.dtype() == DType::Float32 && src.dtype() == DType::Float32 &&
      max_pool2d_gather_fast(out.data<float>(), src.data<float>(), indices.data<int64_t>(), out.size(0) * out.size(1),
                             src.size(2) * src.size(3), out.size(2) * out.size(3)))
    return;
  max_pool2d_gather_reference(out, src, indices);
}
inline void avg_pool2d_forward(const Tensor& out, const Tensor& x, const Pool2dParams& p) {
  if (x.dtype() == DType::Float32 &&
      avg_pool2d_forward_fast(out.data<float>(), x.data<float>(), x.size(0) * x.size(1),
                              detail_pool::pool_window(x.size(2), x.size(3), out.size(2), out.size(3), p)))
    return;
  avg_pool2d_forward_reference(out, x, p);
}
inline void avg_pool2d_backward(const Tensor& dx, const Tensor& dout, const Pool2dParams& p) {
  if (dx.dtype() == DType::Float32 && dout.dtype() == DType::Float32 &&
      avg_pool2d_backward_fast(dx.data<float>(), dout.data<float>(), dx.size(0) * dx.size(1),
                               detail_pool::pool_window(dx.size(2), dx.size(3), dout.size(2), dout.size(3), p)))
    return;
  avg_pool2d_backward_reference(dx, dout, p);
}
inline void adaptive_avg_pool2d_forward(const Tensor& out, const Tensor& x) {
  if (x.dtype() == DType::Float32 &&
      adaptive_avg_pool2d_forward_fast(out.data<float>(), x.data<float>(), x.size(0) * x.size(1),
                                       PoolWindow2d{x.size(2), x.size(3), out.size(2), out.size(3)}))
    return;
  adaptive_avg_pool2d_forward_reference(out, x);
}
inline void adaptive_avg_pool2d_backward(const Tensor& dx, const Tensor& dout) {
  if (dx.dtype() == DType::Float32 && dout.dtype() == DType::Float32 &&
      adaptive_avg_pool2d_backward_fast(dx.data<float>(), dout.data<float>(), dx.size(0) * dx.size(1),
                                        PoolWindow2d{dx.size(2), dx.size(3), dout.size(2), dout.size(3)}))
    return;
  adaptive_avg_pool2d_backward_reference(dx, dout);
}

}  // namespace kernels::cpu

using MaxPool2dKernel = void (*)(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams& p);
using MaxPool2dBackwardKernel = void (*)(const Tensor& dx, const Tensor& dout, const Tensor& indices);
using MaxPool2dGatherKernel = void (*)(const Tensor& out, const Tensor& src, const Tensor& indices);
using AvgPool2dKernel = void (*)(const Tensor& out, const Tensor& x, const Pool2dParams& p);
using AvgPool2dBackwardKernel = void (*)(const Tensor& dx, const Tensor& dout, const Pool2dParams& p);
using AdaptiveAvgPool2dKernel = void (*)(const Tensor& out, const Tensor& x);
using AdaptiveAvgPool2dBackwardKernel = void (*)(const Tensor& dx, const Tensor& dout);
GRAFT_KERNEL_SLOT(MaxPool2dKernel, max_pool2d_kernel, "max_pool2d", kernels::cpu::max_pool2d_forward, "avx2 avx512");
GRAFT_KERNEL_SLOT(MaxPool2dBackwardKernel, max_pool2d_backward_kernel, "max_pool2d_backward",
                  kernels::cpu::max_pool2d_backward, "avx2 avx512");
// The gather has no vector kernel (VecF has no integer lanes): its CPU entry is the reference loop,
// threaded over planes, so the slot declares no fast ISA.
GRAFT_KERNEL_SLOT(MaxPool2dGatherKernel, max_pool2d_gather_kernel, "max_pool2d_gather",
                  kernels::cpu::max_pool2d_gather);
GRAFT_KERNEL_SLOT(AvgPool2dKernel, avg_pool2d_kernel, "avg_pool2d", kernels::cpu::avg_pool2d_forward, "avx2 avx512");
GRAFT_KERNEL_SLOT(AvgPool2dBackwardKernel, avg_pool2d_backward_kernel, "avg_pool2d_backward",
                  kernels::cpu::avg_pool2d_backward, "avx2 avx512");
GRAFT_KERNEL_SLOT(AdaptiveAvgPool2dKernel, adaptive_avg_pool2d_kernel, "adaptive_avg_pool2d",
                  kernels::cpu::adaptive_avg_pool2d_forward, "avx2 avx512");
GRAFT_KERNEL_SLOT(AdaptiveAvgPool2dBackwardKernel, adaptive_avg_pool2d_backward_kernel, "adaptive_avg_pool2d_backward",
                  kernels::cpu::adaptive_avg_pool2d_backward, "avx2 avx512");

namespace detail_pool {
// The pooling of a 4-D contiguous x, and the gradient of each (linear in dout, so each gradient
// records its own backward when grad mode is on: create_graph works through pooling).
inline Tensor avg_pool2d_4d(const Tensor& x, const Pool2dParams& p, const Shape& out_shape);
inline Tensor adaptive_avg_pool2d_4d(const Tensor& x, int64_t oh, int64_t ow);

// dx [x_shape] = max_pool2d gradient of dout at the saved argmax indices.
inline Tensor max_pool2d_grad(const Tensor& dout_in, const Tensor& indices, const Shape& x_shape);
// out [indices' shape] = src at the argmax indices (the backward of max_pool2d_grad).
inline Tensor max_pool2d_gather(const Tensor& src_in, const Tensor& indices) {
  const Tensor src = src_in.contiguous();
  Tensor out = empty(indices.shape(), src.dtype(), src.device());
  max_pool2d_gather_kernel.get(src.device())(out, src.detach(), indices);
  const Shape x_shape = src.shape();
  autograd::record_shape_op("MaxPool2DGatherBackward", src, out, [indices, x_shape](std::vector<Tensor>& g) {
    return std::vector<Tensor>{max_pool2d_grad(g[0], indices, x_shape)};
  });
  return out;
}
inline Tensor max_pool2d_grad(const Tensor& dout_in, const Tensor& indices, const Shape& x_shape) {
  const Tensor dout = dout_in.contiguous();
  Tensor dx = empty(x_shape, dout.dtype(), dout.device());
  max_pool2d_backward_kernel.get(dout.device())(dx, dout.detach(), indices);
  autograd::record_shape_op("MaxPool2DBackwardBackward", dout, dx, [indices](std::vector<Tensor>& g) {
    return std::vector<Tensor>{max_pool2d_gather(g[0], indices)};
  });
  return dx;
}

inline Tensor avg_pool2d_grad(const Tensor& dout_in, const Shape& x_shape, const Pool2dParams& p) {
  const Tensor dout = dout_in.contiguous();
  Tensor dx = empty(x_shape, dout.dtype(), dout.device());
  avg_pool2d_backward_kernel.get(dout.device())(dx, dout.detach(), p);
  const Shape out_shape = dout.shape();
  autograd::record_shape_op("AvgPool2DBackwardBackward", dout, dx, [p, out_shape](std::vector<Tensor>& g) {
    return std::vector<Tensor>{avg_pool2d_4d(g[0].contiguous(), p, out_shape)};
  });
  return dx;
}
inline Tensor avg_pool2d_4d(const Tensor& x, const Pool2dParams& p, const Shape& out_shape) {
  Tensor out = empty(out_shape, x.dtype(), x.device());
  avg_pool2d_kernel.get(x.device())(out, x.detach(), p);
  const Shape x_shape = x.shape();
  autograd::record_shape_op("AvgPool2DBackward", x, out, [p, x_shape](std::vector<Tensor>& g) {
    return std::vector<Tensor>{avg_pool2d_grad(g[0], x_shape, p)};
  });
  return out;
}

inline Tensor adaptive_avg_pool2d_grad(const Tensor& dout_in, const Shape& x_shape) {
  const Tensor dout = dout_in.contiguous();
  Tensor dx = empty(x_shape, dout.dtype(), dout.device());
  adaptive_avg_pool2d_backward_kernel.get(dout.device())(dx, dout.detach());
  const int64_t oh = dout.size(2), ow = dout.size(3);
  autograd::record_shape_op("AdaptiveAvgPool2DBackwardBackward", dout, dx, [oh, ow](std::vector<Tensor>& g) {
    return std::vector<Tensor>{adaptive_avg_pool2d_4d(g[0].contiguous(), oh, ow)};
  });
  return dx;
}
inline Tensor adaptive_avg_pool2d_4d(const Tensor& x, int64_t oh, int64_t ow) {
  Tensor out = empty({x.size(0), x.size(1), oh, ow}, x.dtype(), x.device());
  adaptive_avg_pool2d_kernel.get(x.device())(out, x.detach());
  const Shape x_shape = x.shape();
  autograd::record_shape_op("AdaptiveAvgPool2DBackward", x, out, [x_shape](std::vector<Tensor>& g) {
    return std::vector<Tensor>{adaptive_avg_pool2d_grad(g[0], x_shape)};
  });
  return out;
}
}  // namespace detail_pool

namespace autograd {
class MaxPool2dBackward final : public Node {
 public:
  std::string name() const override { return "MaxPool2DBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    return {detail_pool::max_pool2d_grad(grads[0], indices_.unpack(this), x_shape)};
  }
  void release_saved() override { indices_.release(); }
  SavedTensor indices_;  // int64 [N, C, OH, OW], argmax within each plane
  Shape x_shape;
};
}  // namespace autograd

// Max over kernel windows (see the top of this file). stride {0, 0} means stride = kernel.
inline Tensor max_pool2d(const Tensor& x_in, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride = {0, 0},
                         std::array<int64_t, 2> padding = {0, 0}, std::array<int64_t, 2> dilation = {1, 1},
                         bool ceil_mode = false) {
  detail_pool::check_input("max_pool2d", x_in);
  if (is_reduced_float(x_in.dtype()))  // no 16-bit kernel: float32, rounded (ops/autocast.hpp)
    return widened(x_in, [&](const Tensor& xf) { return max_pool2d(xf, kernel, stride, padding, dilation, ceil_mode); });
  if (x_in.dim() == 3) return max_pool2d(x_in.unsqueeze(0), kernel, stride, padding, dilation, ceil_mode).squeeze(0);
  if (stride[0] == 0 && stride[1] == 0) stride = kernel;
  const Pool2dParams p{kernel, stride, padding, dilation, ceil_mode, true};
  const Shape out_shape = detail_pool::check_pool_args("max_pool2d", x_in.shape(), p);
  const Tensor x = x_in.contiguous();
  Tensor out = empty(out_shape, x.dtype(), x.device());
  Tensor indices = empty(out_shape, DType::Int64, x.device());
  max_pool2d_kernel.get(x.device())(out, indices, x.detach(), p);
  if (autograd::any_requires_grad({&x})) {
    auto node = std::make_shared<autograd::MaxPool2dBackward>();
    node->indices_ = indices;
    node->x_shape = x.shape();
    autograd::connect(node, {x}, {out});
  }
  return out;
}

// Mean over kernel windows (see the top of this file). stride {0, 0} means stride = kernel.
inline Tensor avg_pool2d(const Tensor& x_in, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride = {0, 0},
                         std::array<int64_t, 2> padding = {0, 0}, bool ceil_mode = false,
                         bool count_include_pad = true) {
  detail_pool::check_input("avg_pool2d", x_in);
  if (is_reduced_float(x_in.dtype()))
    return widened(x_in, [&](const Tensor& xf) {
      return avg_pool2d(xf, kernel, stride, padding, ceil_mode, count_include_pad);
    });
  if (x_in.dim() == 3)
    return avg_pool2d(x_in.unsqueeze(0), kernel, stride, padding, ceil_mode, count_include_pad).squeeze(0);
  if (stride[0] == 0 && stride[1] == 0) stride = kernel;
  const Pool2dParams p{kernel, stride, padding, {1, 1}, ceil_mode, count_include_pad};
  const Shape out_shape = detail_pool::check_pool_args("avg_pool2d", x_in.shape(), p);
  return detail_pool::avg_pool2d_4d(x_in.contiguous(), p, out_shape);
}

// Mean over PyTorch's adaptive windows, to output_size {OH, OW} (each >= 1).
inline Tensor adaptive_avg_pool2d(const Tensor& x_in, std::array<int64_t, 2> output_size) {
  detail_pool::check_input("adaptive_avg_pool2d", x_in);
  if (is_reduced_float(x_in.dtype()))
    return widened(x_in, [&](const Tensor& xf) { return adaptive_avg_pool2d(xf, output_size); });
  GRAFT_CHECK(output_size[0] >= 1 && output_size[1] >= 1, "adaptive_avg_pool2d", "output size must be positive, got {",
              output_size[0], ", ", output_size[1], "}");
  if (x_in.dim() == 3) return adaptive_avg_pool2d(x_in.unsqueeze(0), output_size).squeeze(0);
  return detail_pool::adaptive_avg_pool2d_4d(x_in.contiguous(), output_size[0], output_size[1]);
}

GRAFT_REGISTER_OP(max_pool2d, true);
GRAFT_REGISTER_OP(avg_pool2d, true);
GRAFT_REGISTER_OP(adaptive_avg_pool2d, true);

}  // namespace graft
