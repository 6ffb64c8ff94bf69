// graft/optim/adam.hpp - Adam and AdamW, step for step torch.optim.Adam / AdamW (amsgrad off).
//
// For each parameter p with gradient g, at step t = 1, 2, ... (per parameter):
//   Adam:  g = g + weight_decay * p                   (L2 penalty through the gradient)
//   AdamW: p = p * (1 - lr * weight_decay)            (decoupled decay, Loshchilov & Hutter)
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// in PyTorch's order of float operations (kernels/graft/kernels/cpu/optim.hpp states them), so float32
// results match PyTorch's to the last bits. On the CPU this is one pass over (p, g, m, v) per
// parameter: the fused float32 kernel (AVX2 / AVX-512, threaded) or adam_update_reference below
// (float64, other dtypes, GRAFT_CPU_ISA=scalar); on CUDA kernels/graft/kernels/cuda/optim.cuh, the
// same float operations. Where a device has no fused kernel the same formulas run as tensor ops.
// lr and weight_decay are per parameter group (optim/optimizer.hpp). State per parameter: "step"
// (0-d float64), "exp_avg", "exp_avg_sq".
//
//   optim::AdamW opt(model->parameters(), /*lr=*/1e-3);                  // betas (0.9, 0.999), eps 1e-8, wd 0.01
//   optim::Adam  opt2(groups, /*lr=*/1e-3, {0.9, 0.999}, 1e-8, /*weight_decay=*/0);
#pragma once
#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

#include "graft/core/dispatch.hpp"
#include "graft/kernels/cpu/optim.hpp"
#include "graft/optim/optimizer.hpp"

namespace graft {
namespace kernels::cpu {

// The plain loop of adam_update_fast: n contiguous elements of p, m (exp_avg), v (exp_avg_sq) in/out
// and g. Computed in double for double, in float for float, bfloat16 and float16 (m, v and p rounded
// to T when stored).
template <class T>
void adam_update_reference(T* p, const T* g, T* m, T* v, int64_t n, const AdamCoefficients& c) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const C decay_factor = C(c.decay_factor), weight_decay = C(c.weight_decay);
  const C beta1 = C(c.beta1), one_minus_beta1 = C(c.one_minus_beta1);
  const C beta2 = C(c.beta2), one_minus_beta2 = C(c.one_minus_beta2);
  const C bias_correction2_sqrt = C(c.bias_correction2_sqrt), neg_step_size = C(c.neg_step_size), eps = C(c.eps);
  for (int64_t i = 0; i < n; ++i) {
    C pi = C(p[i]), gi = C(g[i]);
    if (c.decay_factor != 1.0) pi = pi * decay_factor;            // AdamW
    if (c.weight_decay != 0.0) gi = std::fma(pi, weight_decay, gi);  // Adam
    m[i] = T(std::fma(gi, one_minus_beta1, C(m[i]) * beta1));
    v[i] = T(std::fma(one_minus_beta2 * gi, gi, C(v[i]) * beta2));
    const C denom = std::sqrt(C(v[i])) / bias_correction2_sqrt + eps;
    p[i] = T(pi + (neg_step_size * C(m[i])) / denom);
  }
}

// CPU entry: p, g, m, v contiguous tensors of one dtype and shape.
inline void adam_update(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                        const AdamCoefficients& c) {
  const int64_t n = p.numel();
  if (p.dtype() == DType::Float32 &&
      adam_update_fast(p.data<float>(), g.data<float>(), m.data<float>(), v.data<float>(), n, c))
    return;
  visit_optim_dtype(p.dtype(), "adam_update", [&](auto zero) {  // elementwise: threads split the elements
    using T = decltype(zero);
    T *pd = p.data<T>(), *md = m.data<T>(), *vd = v.data<T>();
    const T* gd = g.data<T>();
    parallel_for(0, n, kOptimGrain, [&](int64_t lo, int64_t hi) {
      adam_update_reference(pd + lo, gd + lo, md + lo, vd + lo, hi - lo, c);
    });
  });
}

}  // namespace kernels::cpu

using AdamUpdateKernel = void (*)(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                                  const kernels::cpu::AdamCoefficients& c);
GRAFT_KERNEL_SLOT(AdamUpdateKernel, adam_update_kernel, "adam_update", kernels::cpu::adam_update, "avx2 avx512");

namespace optim {

struct Betas {
  double beta1 = 0.9, beta2 = 0.999;
};

namespace detail_adam {
class AdamBase : public Optimizer {
 public:
  void step() override {
    check_hyperparameters();
    NoGradGuard no_grad;
    for (size_t g = 0; g < groups_.size(); ++g) {
      const ParamGroup& grp = groups_[g];
      for (size_t i = 0; i < grp.params.size(); ++i) {
        Tensor p = grp.params[i];
        if (!p.grad().defined()) continue;
        const Tensor grad = grad_of(p, g, i).detach();
        auto& st = state_[g][i];
        if (!st.count("step")) {
          st["step"] = full({}, 0.0, DType::Float64);
          st["exp_avg"] = zeros_like(p);
          st["exp_avg_sq"] = zeros_like(p);
        }
        Tensor& step_t = st["step"];
        const double t = step_t.item() + 1.0;
        if (step_t.device().is_cpu() && step_t.dtype() == DType::Float64) {
          *step_t.data<double>() = t;
          step_t.storage()->bump_version();
        } else {
          step_t.fill_(t);
        }
        if (adam_update_kernel.has(p.device())) step_fused(p, grad, grp, st, t);
        else step_tensor_ops(p, grad, grp, st, t);
      }
    }
  }
  const Betas& betas() const { return betas_; }
  double eps() const { return eps_; }

 protected:
  AdamBase(const char* name, std::vector<ParamGroup> groups, double lr, Betas betas, double eps, double weight_decay,
           bool decoupled)
      : Optimizer(name, std::move(groups), lr, weight_decay), betas_(betas), eps_(eps), decoupled_(decoupled) {
    GRAFT_CHECK(betas.beta1 >= 0.0 && betas.beta1 < 1.0, name, "invalid beta1 ", betas.beta1,
                " (expected 0 <= beta1 < 1)");
    GRAFT_CHECK(betas.beta2 >= 0.0 && betas.beta2 < 1.0, name, "invalid beta2 ", betas.beta2,
                " (expected 0 <= beta2 < 1)");
    GRAFT_CHECK(eps >= 0.0, name, "invalid eps ", eps, " (expected >= 0)");
  }

 private:
  // One pass over (p, grad, exp_avg, exp_avg_sq) through adam_update_kernel, at step t.
  void step_fused(Tensor& p, const Tensor& grad, const ParamGroup& grp, std::map<std::string, Tensor>& st,
                  double t) {
    const double b1 = betas_.beta1, b2 = betas_.beta2;
    kernels::cpu::AdamCoefficients c;
    c.decay_factor = decoupled_ ? 1.0 - grp.lr * grp.weight_decay : 1.0;
    c.weight_decay = decoupled_ ? 0.0 : grp.weight_decay;
    c.beta1 = b1;
    c.one_minus_beta1 = 1.0 - b1;
    c.beta2 = b2;
    c.one_minus_beta2 = 1.0 - b2;
    c.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(b2, t));
    c.neg_step_size = -(grp.lr / (1.0 - std::pow(b1, t)));
    c.eps = eps_;
    Tensor& m = st["exp_avg"];
    Tensor& v = st["exp_avg_sq"];
    m = dense(m, p.dtype());
    v = dense(v, p.dtype());
    Tensor work = dense(p, p.dtype());
    adam_update_kernel.get(p.device())(work, dense(grad, p.dtype()), m, v, c);
    if (work.impl() != p.impl()) copy_into(p, work);
    p.storage()->bump_version();
    m.storage()->bump_version();
    v.storage()->bump_version();
  }

  // The same update in tensor ops (devices without a fused kernel).
  void step_tensor_ops(Tensor& p, Tensor grad, const ParamGroup& grp, std::map<std::string, Tensor>& st, double t) {
    const double b1 = betas_.beta1, b2 = betas_.beta2;
    if (grp.weight_decay != 0.0) {
      if (decoupled_) p.mul_(1.0 - grp.lr * grp.weight_decay);
      else grad = add(grad, mul(p.detach(), grp.weight_decay));
    }
    Tensor& m = st["exp_avg"];
    Tensor& v = st["exp_avg_sq"];
    m.mul_(b1);
    m.add_(grad, 1.0 - b1);
    v.mul_(b2);
    v.add_(mul(grad, grad), 1.0 - b2);
    const double bias_correction1 = 1.0 - std::pow(b1, t);
    const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(b2, t));
    const double step_size = grp.lr / bias_correction1;
    const Tensor denom = add(div(sqrt(v), bias_correction2_sqrt), eps_);
    p.add_(div(m, denom), -step_size);
  }

  Betas betas_;
  double eps_;
  bool decoupled_;
};
}  // namespace detail_adam

class Adam : public detail_adam::AdamBase {
 public:
  Adam(std::vector<ParamGroup> groups, double lr = 1e-3, Betas betas = {}, double eps = 1e-8,
       double weight_decay = 0.0)
      : AdamBase("Adam", std::move(groups), lr, betas, eps, weight_decay, /*decoupled=*/false) {}
  Adam(std::vector<Tensor> params, double lr = 1e-3, Betas betas = {}, double eps = 1e-8, double weight_decay = 0.0)
      : Adam(single_group(std::move(params)), lr, betas, eps, weight_decay) {}
};

class AdamW : public detail_adam::AdamBase {
 public:
  AdamW(std::vector<ParamGroup> groups, double lr = 1e-3, Betas betas = {}, double eps = 1e-8,
        double weight_decay = 1e-2)
      : AdamBase("AdamW", std::move(groups), lr, betas, eps, weight_decay, /*decoupled=*/true) {}
  AdamW(std::vector<Tensor> params, double lr = 1e-3, Betas betas = {}, double eps = 1e-8,
        double weight_decay = 1e-2)
      : AdamW(single_group(std::move(params)), lr, betas, eps, weight_decay) {}
};

}  // namespace optim
}  // namespace graft
