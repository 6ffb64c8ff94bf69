// graft/optim/sgd.hpp - stochastic gradient descent with momentum, dampening, weight decay and
// Nesterov momentum; step-for-step the update of torch.optim.SGD.
//
// For each parameter p with a gradient g (parameters without one are skipped, as in PyTorch):
//   g   = g + weight_decay * p                       (when weight_decay != 0)
//   buf = g                                          (first step)
//   buf = momentum * buf + (1 - dampening) * g       (later steps; when momentum != 0)
//   g   = nesterov ? g + momentum * buf : buf        (when momentum != 0)
//   p   = p - lr * g
// On the CPU this is one pass over (p, g, buf) per parameter: the fused float32 kernel of
// kernels/graft/kernels/cpu/optim.hpp (AVX2 / AVX-512, threaded), or sgd_update_reference below
// (float64, other dtypes, GRAFT_CPU_ISA=scalar); both round as PyTorch does (optim.hpp states the
// float operations); on CUDA the fused kernel of kernels/graft/kernels/cuda/optim.cuh, with the same
// float operations, so the same bits. Where a device has no fused kernel the same formulas run as
// tensor ops. The update records no graph and bumps the parameters' version counters (a graph that
// saved a parameter before the step refuses to backward).
//
// Weight decay and lr are per parameter group (optim/optimizer.hpp); momentum, dampening and
// Nesterov are the optimizer's. State: "momentum_buffer" per parameter.
//
// Example:
//   optim::SGD opt({w, b}, /*lr=*/0.1, /*momentum=*/0.9);
//   for (...) { opt.zero_grad(); loss(w, b).backward(); opt.step(); }
#pragma once
#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

#include "graft/autograd/grad_mode.hpp"
#include "graft/core/dispatch.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cpu/optim.hpp"
#include "graft/ops/copy.hpp"
#include "graft/ops/elementwise.hpp"
#include "graft/optim/optimizer.hpp"

namespace graft {
namespace kernels::cpu {

// The plain loop of sgd_update_fast: n contiguous elements of p (in/out), g, buf (in/out, unused when
// momentum == 0). Computed in double for double, in float for float, bfloat16 and float16 (the
// buffer and p rounded to T when stored).
template <class T>
void sgd_update_reference(T* p, const T* g, T* buf, int64_t n, const SgdCoefficients& c) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const C neg_lr = C(c.neg_lr), weight_decay = C(c.weight_decay), momentum = C(c.momentum);
  const C one_minus_dampening = C(c.one_minus_dampening);
  for (int64_t i = 0; i < n; ++i) {
    const C pi = C(p[i]);
    C d = C(g[i]);
    if (c.weight_decay != 0.0) d = std::fma(pi, weight_decay, d);
    if (c.momentum != 0.0) {
      buf[i] = T(c.first_step ? d : std::fma(d, one_minus_dampening, C(buf[i]) * momentum));
      const C b = C(buf[i]);
      d = c.nesterov ? std::fma(b, momentum, d) : b;
    }
    p[i] = T(std::fma(d, neg_lr, pi));
  }
}

// CPU entry: p, g and buf contiguous tensors of one dtype and shape (buf undefined when momentum == 0).
inline void sgd_update(const Tensor& p, const Tensor& g, const Tensor& buf, const SgdCoefficients& c) {
  const int64_t n = p.numel();
  if (p.dtype() == DType::Float32 &&
      sgd_update_fast(p.data<float>(), g.data<float>(), buf.defined() ? buf.data<float>() : nullptr, n, c))
    return;
  visit_optim_dtype(p.dtype(), "sgd_update", [&](auto zero) {  // elementwise: threads split the elements
    using T = decltype(zero);
    T* pd = p.data<T>();
    const T* gd = g.data<T>();
    T* bd = buf.defined() ? buf.data<T>() : nullptr;
    parallel_for(0, n, kOptimGrain, [&](int64_t lo, int64_t hi) {
      sgd_update_reference(pd + lo, gd + lo, bd == nullptr ? nullptr : bd + lo, hi - lo, c);
    });
  });
}

}  // namespace kernels::cpu

using SgdUpdateKernel = void (*)(const Tensor& p, const Tensor& g, const Tensor& buf,
                                 const kernels::cpu::SgdCoefficients& c);
GRAFT_KERNEL_SLOT(SgdUpdateKernel, sgd_update_kernel, "sgd_update", kernels::cpu::sgd_update, "avx2 avx512");

namespace optim {

class SGD : public Optimizer {
 public:
  SGD(std::vector<ParamGroup> groups, double lr, double momentum = 0, double dampening = 0, double weight_decay = 0,
      bool nesterov = false)
      : Optimizer("SGD", std::move(groups), lr, weight_decay),
        momentum_(momentum),
        dampening_(dampening),
        nesterov_(nesterov) {
    GRAFT_CHECK(momentum >= 0.0, "SGD", "invalid momentum ", momentum, " (expected >= 0)");
    GRAFT_CHECK(!nesterov || (momentum > 0.0 && dampening == 0.0), "SGD",
                "nesterov momentum requires momentum > 0 and dampening == 0, got momentum ", momentum,
                " and dampening ", dampening);
  }
  SGD(std::vector<Tensor> params, double lr, double momentum = 0, double dampening = 0, double weight_decay = 0,
      bool nesterov = false)
      : SGD(single_group(std::move(params)), lr, momentum, dampening, weight_decay, nesterov) {}

  void step() override {
    check_hyperparameters();
    NoGradGuard no_grad;
    for (size_t g = 0; g < groups_.size(); ++g) {
      const ParamGroup& grp = groups_[g];
      for (size_t i = 0; i < grp.params.size(); ++i) {
        Tensor p = grp.params[i];
        if (!p.grad().defined()) continue;
        if (sgd_update_kernel.has(p.device())) step_fused(p, grad_of(p, g, i), grp, state_[g][i]);
        else step_tensor_ops(p, grad_of(p, g, i), grp, state_[g][i]);
      }
    }
  }

  // The momentum buffer of parameter i (of the first group): undefined before its first step with
  // momentum != 0.
  Tensor momentum_buffer(size_t i, size_t group = 0) const { return state(group, i, "momentum_buffer"); }

 private:
  // One pass over (p, grad, momentum_buffer) through sgd_update_kernel.
  void step_fused(Tensor& p, const Tensor& grad, const ParamGroup& grp, std::map<std::string, Tensor>& st) {
    kernels::cpu::SgdCoefficients c;
    c.neg_lr = -grp.lr;
    c.weight_decay = grp.weight_decay;
    c.momentum = momentum_;
    c.one_minus_dampening = 1.0 - dampening_;
    c.nesterov = nesterov_;
    Tensor buf;
    if (momentum_ != 0.0) {
      auto it = st.find("momentum_buffer");
      c.first_step = it == st.end();
      if (c.first_step) it = st.emplace("momentum_buffer", empty(p.shape(), p.dtype(), p.device())).first;
      else it->second = dense(it->second, p.dtype());
      buf = it->second;
    }
    Tensor work = dense(p, p.dtype());
    sgd_update_kernel.get(p.device())(work, dense(grad, p.dtype()), buf, c);
    if (work.impl() != p.impl()) copy_into(p, work);
    p.storage()->bump_version();
    if (buf.defined()) buf.storage()->bump_version();
  }

  // The same update in tensor ops (devices without a fused kernel).
  void step_tensor_ops(Tensor& p, const Tensor& grad, const ParamGroup& grp, std::map<std::string, Tensor>& st) {
    Tensor d_p = grad;
    if (grp.weight_decay != 0.0) d_p = add(d_p, mul(p.detach(), grp.weight_decay));
    if (momentum_ != 0.0) {
      auto it = st.find("momentum_buffer");
      if (it == st.end()) {
        it = st.emplace("momentum_buffer", d_p.detach().clone()).first;
      } else {
        it->second.mul_(momentum_);
        it->second.add_(d_p, 1.0 - dampening_);
      }
      d_p = nesterov_ ? add(d_p, mul(it->second, momentum_)) : it->second;
    }
    p.add_(d_p, -grp.lr);
  }

  double momentum_, dampening_;
  bool nesterov_;
};

}  // namespace optim
}  // namespace graft
