// graft/ops/softmax.hpp - softmax and log_softmax over one dim, numerically stable (the row max
// is subtracted before exp), with dedicated backward kernels that use the saved output.
//
// Shapes: x, y [d0, ..., dn-1] seen as [outer, n, inner] around dim (n = d_dim); each of the
//         outer * inner rows is x[o, :, i], n elements apart by `inner`.
//   softmax:      y = exp(x - max) / sum exp(x - max)      dx = y * (dy - sum(dy * y))
//   log_softmax:  y = x - max - log(sum exp(x - max))      dx = dy - exp(y) * sum(dy)
#pragma once
#include <cmath>

#include "graft/kernels/cpu/softmax.hpp"
#include "graft/ops/autocast.hpp"
#include "graft/ops/minmax.hpp"

namespace graft {

namespace kernels::cpu {
// Calls f(base) for each row base = o * n * inner + i of an [outer, n, inner] block, in parallel.
template <class F>
inline void for_each_softmax_row(int64_t outer, int64_t n, int64_t inner, F&& f) {
  parallel_for(0, outer * inner, chunk_rows(n), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) f((r / inner) * n * inner + r % inner);
  });
}

// y = softmax(x) along n. x, y contiguous [outer, n, inner]; sums accumulate in double.
inline void softmax_forward_reference(const Tensor& y, const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), "softmax", T, [&] {
    const T* px = x.data<T>();
    T* py = y.data<T>();
    for_each_softmax_row(outer, n, inner, [&](int64_t base) {
      T mx = px[base];
      for (int64_t k = 1; k < n; ++k) mx = std::max(mx, px[base + k * inner]);
      double sum = 0;
      for (int64_t k = 0; k < n; ++k) {
        const T e = std::exp(px[base + k * inner] - mx);
        py[base + k * inner] = e;
        sum += double(e);
      }
      const T inv = T(1.0 / sum);
      for (int64_t k = 0; k < n; ++k) py[base + k * inner] *= inv;
    });
  });
}

// dx = y * (dy - sum_k dy * y) along n. dx, dy, y contiguous [outer, n, inner].
inline void softmax_backward_reference(const Tensor& dx, const Tensor& dy, const Tensor& y, int64_t outer, int64_t n,
                             int64_t inner) {
  GRAFT_DISPATCH_FLOAT(y.dtype(), "softmax_backward", T, [&] {
    T* pdx = dx.data<T>();
    const T* pdy = dy.data<T>();
    const T* py = y.data<T>();
    for_each_softmax_row(outer, n, inner, [&](int64_t base) {
      double dot = 0;
      for (int64_t k = 0; k < n; ++k) dot += double(pdy[base + k * inner]) * double(py[base + k * inner]);
      for (int64_t k = 0; k < n; ++k) {
        const int64_t j = base + k * inner;
        pdx[j] = py[j] * (pdy[j] - T(dot));
      }
    });
  });
}

// y = log_softmax(x) along n. x, y contiguous [outer, n, inner]; sums accumulate in double.
inline void log_softmax_forward_reference(const Tensor& y, const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), "log_softmax", T, [&] {
    const T* px = x.data<T>();
    T* py = y.data<T>();
    for_each_softmax_row(outer, n, inner, [&](int64_t base) {
      T mx = px[base];
      for (int64_t k = 1; k < n; ++k) mx = std::max(mx, px[base + k * inner]);
      double sum = 0;
      for (int64_t k = 0; k < n; ++k) sum += double(std::exp(px[base + k * inner] - mx));
      const T log_sum = T(std::log(sum));
      for (int64_t k = 0; k < n; ++k) py[base + k * inner] = px[base + k * inner] - mx - log_sum;
    });
  });
}

// dx = dy - exp(y) * sum_k dy along n (y = log-probabilities). dx, dy, y contiguous [outer, n, inner].
inline void log_softmax_backward_reference(const Tensor& dx, const Tensor& dy, const Tensor& y, int64_t outer, int64_t n,
                                 int64_t inner) {
  GRAFT_DISPATCH_FLOAT(y.dtype(), "log_softmax_backward", T, [&] {
    T* pdx = dx.data<T>();
    const T* pdy = dy.data<T>();
    const T* py = y.data<T>();
    for_each_softmax_row(outer, n, inner, [&](int64_t base) {
      double sum = 0;
      for (int64_t k = 0; k < n; ++k) sum += double(pdy[base + k * inner]);
      for (int64_t k = 0; k < n; ++k) {
        const int64_t j = base + k * inner;
        pdx[j] = pdy[j] - std::exp(py[j]) * T(sum);
      }
    });
  });
}

// The CPU entries: the fast float32 kernels (kernels/graft/kernels/cpu/softmax.hpp), else the
// references above (float64, GRAFT_CPU_ISA=scalar).
inline void softmax_forward(const Tensor& y, const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  if (x.dtype() == DType::Float32 && softmax_forward_fast(y.data<float>(), x.data<float>(), outer, n, inner, false))
    return;
  softmax_forward_reference(y, x, outer, n, inner);
}
inline void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, int64_t outer, int64_t n,
                             int64_t inner) {
  if (y.dtype() == DType::Float32 && dy.dtype() == DType::Float32 &&
      softmax_backward_fast(dx.data<float>(), dy.data<float>(), y.data<float>(), outer, n, inner, false))
    return;
  softmax_backward_reference(dx, dy, y, outer, n, inner);
}
inline void log_softmax_forward(const Tensor& y, const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  if (x.dtype() == DType::Float32 && softmax_forward_fast(y.data<float>(), x.data<float>(), outer, n, inner, true))
    return;
  log_softmax_forward_reference(y, x, outer, n, inner);
}
inline void log_softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, int64_t outer, int64_t n,
                                 int64_t inner) {
  if (y.dtype() == DType::Float32 && dy.dtype() == DType::Float32 &&
      softmax_backward_fast(dx.data<float>(), dy.data<float>(), y.data<float>(), outer, n, inner, true))
    return;
  log_softmax_backward_reference(dx, dy, y, outer, n, inner);
}
}  // namespace kernels::cpu

using SoftmaxKernel = void (*)(const Tensor& y, const Tensor& x, int64_t outer, int64_t n, int64_t inner);
using SoftmaxBackwardKernel = void (*)(const Tensor& dx, const Tensor& dy, const Tensor& y, int64_t outer,
                                       int64_t n, int64_t inner);
GRAFT_KERNEL_SLOT(SoftmaxKernel, softmax_kernel, "softmax", kernels::cpu::softmax_forward, "avx2 avx512");
GRAFT_KERNEL_SLOT(SoftmaxBackwardKernel, softmax_backward_kernel, "softmax_backward", kernels::cpu::softmax_backward,
                  "avx2 avx512");
GRAFT_KERNEL_SLOT(SoftmaxKernel, log_softmax_kernel, "log_softmax", kernels::cpu::log_softmax_forward, "avx2 avx512");
GRAFT_KERNEL_SLOT(SoftmaxBackwardKernel, log_softmax_backward_kernel, "log_softmax_backward",
                  kernels::cpu::log_softmax_backward, "avx2 avx512");

namespace autograd {
// Backward of softmax or log_softmax from the saved output y.
class SoftmaxBackward final : public Node {
 public:
  std::string name() const override { return log ? "LogSoftmaxBackward" : "SoftmaxBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    GRAFT_CHECK(!GradMode::enabled(), name(), "second derivative (create_graph) is not implemented");
    const Tensor y = y_.unpack(this);
    const Tensor dy = grads[0].contiguous();
    Tensor dx = empty(y.shape(), y.dtype(), y.device());
    const auto& slot = log ? log_softmax_backward_kernel : softmax_backward_kernel;
    slot.get(y.device())(dx, dy, y, split.outer, split.n, split.inner);
    return {dx};
  }
  void release_saved() override { y_.release(); }
  bool log = false;
  SavedTensor y_;
  detail_rows::DimSplit split;
};
}  // namespace autograd

namespace detail_softmax {
inline Tensor softmax_impl(const Tensor& x_in, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  GRAFT_CHECK(x_in.defined(), op, "undefined tensor argument");
  GRAFT_CHECK(is_floating(x_in.dtype()), op, "expected a floating-point tensor, got ", dtype_name(x_in.dtype()));
  if (is_reduced_float(x_in.dtype()))  // autocast's float32 kind (ops/autocast.hpp)
    return float32_op(x_in, [&](const Tensor& xf) { return softmax_impl(xf, dim, log); });
  const int d = wrap_dim(dim, x_in.dim(), op);
  const Tensor x = x_in.contiguous();
  const detail_rows::DimSplit split = detail_rows::split_at(x.shape(), d);
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  const auto& slot = log ? log_softmax_kernel : softmax_kernel;
  if (y.numel() > 0) slot.get(x.device())(y, x.detach(), split.outer, split.n, split.inner);
  if (autograd::any_requires_grad({&x})) {
    auto node = std::make_shared<autograd::SoftmaxBackward>();
    node->log = log;
    node->y_ = autograd::SavedTensor(y, true);
    node->split = split;
    autograd::connect(node, {x}, {y});
  }
  return y;
}
}  // namespace detail_softmax

// exp(x) / sum(exp(x)) along dim.
inline Tensor softmax(const Tensor& x, int64_t dim) { return detail_softmax::softmax_impl(x, dim, false); }
// log(softmax(x)) along dim, computed as x - max - log(sum(exp(x - max))).
inline Tensor log_softmax(const Tensor& x, int64_t dim) { return detail_softmax::softmax_impl(x, dim, true); }

GRAFT_REGISTER_OP(softmax, true);
GRAFT_REGISTER_OP(log_softmax, true);

}  // namespace graft
