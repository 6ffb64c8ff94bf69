// graft/kernels/cpu/optim.hpp - fused float32 optimizer updates (one pass over parameter, gradient and
// state per parameter, as llm.c's adamw_update) and the gradient-norm kernels of clip_grad_norm_.
//
// The updates, per element, in the float operations torch.optim (1.13, single-tensor path) performs,
// every coefficient computed in double and rounded to float once, as PyTorch rounds a Python scalar:
//   SGD   d = fma(p, wd, g)                       (wd != 0: g.add(p, alpha=wd))
//         buf = first step ? d : fma(d, 1 - dampening, buf * momentum)   (momentum != 0)
//         d = nesterov ? fma(buf, momentum, d) : buf                      (momentum != 0)
//         p = fma(d, -lr, p)                                              (p.add_(d, alpha=-lr))
//   Adam  p = p * (1 - lr wd)                     (AdamW; decay_factor 1 for Adam)
//         g = fma(p, wd, g)                       (Adam with wd != 0; weight_decay 0 for AdamW)
//         m = fma(g, 1 - beta1, m * beta1)        (exp_avg.mul_(beta1).add_(g, alpha=1 - beta1))
//         v = fma((1 - beta2) g, g, v * beta2)    (exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2))
//         p = p + (-step_size m) / (sqrt(v) / bias_correction2_sqrt + eps)   (addcdiv_)
//         step_size = lr / (1 - beta1^t), bias_correction2_sqrt = sqrt(1 - beta2^t)
// (PyTorch's vectorized add with alpha is an fma; the fmas are explicit here and in the references, so
// the fast kernels and the references agree to the last bit.)
//
//   sgd_update_fast(p, g, buf, n, c), adam_update_fast(p, g, m, v, n, c)
//       contiguous float32 arrays of n elements (buf may be null when c.momentum == 0). Threads split
//       the elements (chunks of >= kOptimGrain, so small parameters stay on the calling thread); each
//       element is updated alone, so the result does not depend on the thread count.
//   sum_of_powers_fast(x, n, squares, out)   sum x^2 (squares) or sum |x|: float in blocks of
//       kNormBlock elements, blocks added in double, superblocks of kNormSuperblock summed by the
//       threads and added in order (independent of the thread count). Non-finite x -> non-finite out.
//   max_abs_fast(x, n, out)                  max |x|, NaN when some x is not finite.
//   scale_fast(x, n, s)                      x *= s.
// Each returns false (nothing done) when the active ISA is scalar: the caller runs its reference.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "graft/core/dtype.hpp"
#include "graft/core/error.hpp"
#include "graft/core/parallel.hpp"
#include "graft/kernels/cpu/cpu_features.hpp"

namespace graft::kernels::cpu {

// f(T{}) for the dtypes the optimizer references take (float, double, bfloat16, float16); others throw.
template <class F>
decltype(auto) visit_optim_dtype(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::Float32: return f(float{});
    case DType::Float64: return f(double{});
    case DType::BFloat16: return f(BFloat16{});
    case DType::Float16: return f(Float16{});
    default: break;
  }
  throw Error(graft::detail::concat(op, ": dtype ", dtype_name(dt), " is not a floating-point dtype"));
}

// One SGD step's coefficients (sgd.hpp fills them from the group's hyper-parameters).
struct SgdCoefficients {
  double neg_lr = 0.0;                // -lr
  double weight_decay = 0.0;          // 0: no decay term
  double momentum = 0.0;              // 0: no buffer
  double one_minus_dampening = 1.0;   // 1 - dampening
  bool nesterov = false;
  bool first_step = false;            // the buffer is written, not read (buf = d)
};

// One Adam / AdamW step's coefficients (adam.hpp fills them; t is the parameter's step count).
struct AdamCoefficients {
  double decay_factor = 1.0;          // AdamW: 1 - lr * weight_decay; Adam: 1
  double weight_decay = 0.0;          // Adam: weight_decay; AdamW: 0
  double beta1 = 0.9, one_minus_beta1 = 0.1;
  double beta2 = 0.999, one_minus_beta2 = 0.001;
  double bias_correction2_sqrt = 1.0; // sqrt(1 - beta2^t)
  double neg_step_size = 0.0;         // -lr / (1 - beta1^t)
  double eps = 1e-8;
};

inline constexpr int64_t kOptimGrain = int64_t(1) << 15;      // elements per thread chunk, at least
inline constexpr int64_t kNormBlock = 256;                     // float partial sums, then double
inline constexpr int64_t kNormSuperblock = int64_t(1) << 16;   // one thread's share of a norm, at least

}  // namespace graft::kernels::cpu

#define GRAFT_KERNEL_BODY "graft/kernels/cpu/optim.inc"
#include "graft/kernels/cpu/isa/for_each_isa.hpp"

namespace graft::kernels::cpu {

namespace optim_detail {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
inline constexpr bool kX86 = true;
#else
inline constexpr bool kX86 = false;
#endif
inline bool fast() { return kX86 && active_cpu_isa() != CpuIsa::Scalar; }
inline bool avx512() { return active_cpu_isa() == CpuIsa::Avx512; }
}  // namespace optim_detail

inline bool sgd_update_fast(float* p, const float* g, float* buf, int64_t n, const SgdCoefficients& c) {
  if (!optim_detail::fast()) return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  const bool avx512 = optim_detail::avx512();
  parallel_for(0, n, kOptimGrain, [&](int64_t lo, int64_t hi) {
    float* b = buf == nullptr ? nullptr : buf + lo;
    if (avx512) avx512::sgd_update(p + lo, g + lo, b, hi - lo, c);
    else avx2::sgd_update(p + lo, g + lo, b, hi - lo, c);
  });
#endif
  return true;
}

inline bool adam_update_fast(float* p, const float* g, float* m, float* v, int64_t n, const AdamCoefficients& c) {
  if (!optim_detail::fast()) return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  const bool avx512 = optim_detail::avx512();
  parallel_for(0, n, kOptimGrain, [&](int64_t lo, int64_t hi) {
    if (avx512) avx512::adam_update(p + lo, g + lo, m + lo, v + lo, hi - lo, c);
    else avx2::adam_update(p + lo, g + lo, m + lo, v + lo, hi - lo, c);
  });
#endif
  return true;
}

inline bool sum_of_powers_fast(const float* x, int64_t n, bool squares, double& out) {
  if (!optim_detail::fast()) return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  const bool avx512 = optim_detail::avx512();
  const int64_t supers = (n + kNormSuperblock - 1) / kNormSuperblock;
  auto one = [&](int64_t s) {
    const int64_t len = std::min(kNormSuperblock, n - s * kNormSuperblock);
    const float* xs = x + s * kNormSuperblock;
    return avx512 ? avx512::sum_of_powers(xs, len, squares) : avx2::sum_of_powers(xs, len, squares);
  };
  if (supers <= 1) {
    out = n > 0 ? one(0) : 0.0;
    return true;
  }
  std::vector<double> part(size_t(supers), 0.0);
  parallel_for(0, supers, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t s = lo; s < hi; ++s) part[size_t(s)] = one(s);
  });
  out = 0.0;
  for (const double s : part) out += s;
#endif
  return true;
}

inline bool max_abs_fast(const float* x, int64_t n, double& out) {
  if (!optim_detail::fast()) return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  out = optim_detail::avx512() ? avx512::max_abs(x, n) : avx2::max_abs(x, n);
#endif
  return true;
}

inline bool scale_fast(float* x, int64_t n, float s) {
  if (!optim_detail::fast()) return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  const bool avx512 = optim_detail::avx512();
  parallel_for(0, n, kOptimGrain, [&](int64_t lo, int64_t hi) {
    if (avx512) avx512::scale_inplace(x + lo, hi - lo, s);
    else avx2::scale_inplace(x + lo, hi - lo, s);
  });
#endif
  return true;
}

}  // namespace graft::kernels::cpu
