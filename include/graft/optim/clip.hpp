// graft/optim/clip.hpp - gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_.
//
//   double norm = optim::clip_grad_norm_(model->parameters(), /*max_norm=*/1.0);  // before opt.step()
//
// clip_grad_norm_: total = the norm_type-norm of all gradients together (inf: the largest |g|);
// every gradient is scaled by min(1, max_norm / (total + 1e-6)); returns total (before clipping).
// A non-finite total throws (naming the first parameter whose gradient is not finite) when
// error_if_nonfinite, as PyTorch's option; otherwise the gradients are left as they are.
// Parameters without a gradient are skipped.
//
// Per gradient, sum |g|^norm_type (or max |g|) is one read of the tensor: for float32 on the CPU with
// norm_type 1, 2 or inf, the vectorized kernels of kernels/graft/kernels/cpu/optim.hpp (float partial
// sums over blocks of 256 elements, added in double); otherwise grad_norm_reference below (double); on
// the GPU, the grad_norm slot's CUDA kernel (kernels/graft/kernels/cuda/reduce.cuh, in double), whose
// one double comes back to the host. The totals of the gradients are added in double, in order.
// Scaling is one in-place pass per gradient.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "graft/autograd/grad_mode.hpp"
#include "graft/core/dispatch.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cpu/optim.hpp"
#include "graft/ops/elementwise.hpp"

namespace graft {
namespace kernels::cpu {

// The plain loop: sum over n elements of |x|^norm_type in double, or max |x| when norm_type is inf;
// NaN when some x is not finite.
template <class T>
double grad_norm_reference(const T* x, int64_t n, double norm_type) {
  const bool inf_norm = std::isinf(norm_type);
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = std::abs(double(x[i]));
    if (!std::isfinite(a)) return std::numeric_limits<double>::quiet_NaN();
    acc = inf_norm ? std::max(acc, a) : acc + (norm_type == 2.0 ? a * a : std::pow(a, norm_type));
  }
  return acc;
}

// CPU entry: sum |g|^norm_type (max |g| for inf) of a contiguous gradient; NaN if some element is not
// finite. The fast path's float partial sums may overflow where double does not: a non-finite fast
// result is recomputed by the reference, which then decides.
inline double grad_norm_part(const Tensor& g, double norm_type) {
  const int64_t n = g.numel();
  if (g.dtype() == DType::Float32) {
    const float* x = g.data<float>();
    double out = 0.0;
    const bool done = std::isinf(norm_type) ? max_abs_fast(x, n, out)
                      : (norm_type == 2.0 || norm_type == 1.0) ? sum_of_powers_fast(x, n, norm_type == 2.0, out)
                                                               : false;
    if (done && std::isfinite(out)) return out;
  }
  return visit_optim_dtype(g.dtype(), "clip_grad_norm_", [&](auto zero) {
    return grad_norm_reference(g.data<decltype(zero)>(), n, norm_type);
  });
}

// The first element of a contiguous CPU gradient that is not finite (NaN if none): for the message.
inline double first_nonfinite(const Tensor& g) {
  return visit_optim_dtype(g.dtype(), "clip_grad_norm_", [&](auto zero) {
    using T = decltype(zero);
    const T* x = g.data<T>();
    for (int64_t i = 0; i < g.numel(); ++i)
      if (!std::isfinite(double(x[i]))) return double(x[i]);
    return std::numeric_limits<double>::quiet_NaN();
  });
}

// CPU entry: g *= s in place (g contiguous), rounded as g.mul_(s): s rounded to g's dtype first.
inline void grad_scale(const Tensor& g, double s) {
  const int64_t n = g.numel();
  if (g.dtype() == DType::Float32 && scale_fast(g.data<float>(), n, float(s))) return;
  visit_optim_dtype(g.dtype(), "clip_grad_norm_", [&](auto zero) {
    using T = decltype(zero);
    using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
    T* x = g.data<T>();
    for (int64_t i = 0; i < n; ++i) x[i] = T(C(x[i]) * C(s));
  });
}

}  // namespace kernels::cpu

using GradNormKernel = double (*)(const Tensor& g, double norm_type);
GRAFT_KERNEL_SLOT(GradNormKernel, grad_norm_kernel, "grad_norm", kernels::cpu::grad_norm_part, "avx2 avx512");

namespace optim {

inline double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                              bool error_if_nonfinite = true) {
  GRAFT_CHECK(max_norm >= 0.0, "clip_grad_norm_", "max_norm must be >= 0, got ", max_norm);
  GRAFT_CHECK(norm_type > 0.0, "clip_grad_norm_", "norm_type must be > 0, got ", norm_type);
  const bool inf_norm = std::isinf(norm_type);
  double acc = 0.0;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& grad = params[i].grad();
    if (!grad.defined()) continue;
    const Tensor g = grad.contiguous();  // on its device: the CUDA slot reduces it there
    const double part = grad_norm_kernel.get(g.device())(g, norm_type);
    if (!std::isfinite(part)) {
      GRAFT_CHECK(!error_if_nonfinite, "clip_grad_norm_", "the gradient of parameter ", i, " (", params[i].name(),
                  ", shape ", params[i].shape(), ") holds ", kernels::cpu::first_nonfinite(g.cpu()),
                  ": the total norm is not finite");
      return std::numeric_limits<double>::quiet_NaN();
    }
    acc = inf_norm ? std::max(acc, part) : acc + part;
  }
  const double total = inf_norm ? acc : std::pow(acc, 1.0 / norm_type);
  const double coef = std::min(1.0, max_norm / (total + 1e-6));
  if (coef < 1.0) {
    NoGradGuard no_grad;
    for (const Tensor& p : params) {
      if (!p.grad().defined()) continue;
      Tensor g = p.grad();
      if (g.device().is_cpu() && g.is_contiguous()) {
        kernels::cpu::grad_scale(g, coef);
        g.storage()->bump_version();
      } else {
        g.mul_(coef);
      }
    }
  }
  return total;
}

inline void clip_grad_value_(const std::vector<Tensor>& params, double clip_value) {
  GRAFT_CHECK(clip_value >= 0.0, "clip_grad_value_", "clip_value must be >= 0, got ", clip_value);
  NoGradGuard no_grad;
  for (const Tensor& p : params)
    if (p.grad().defined()) {
      Tensor g = p.grad();
      g.copy_(clamp(g, -clip_value, clip_value));
    }
}

}  // namespace optim
}  // namespace graft
