// graft/optim/sgd.hpp - stochastic gradient descent with momentum, dampening, weight decay and
// Nesterov momentum; step-for-step the update of torch.optim.SGD.
//
// For each parameter p with a gradient g (parameters without one are skipped, as in PyTorch):
//   g   = g + weight_decay * p                       (when weight_decay != 0)
//   buf = g                                          (first step)
//   buf = momentum * buf + (1 - dampening) * g       (later steps; when momentum != 0)
//   g   = nesterov ? g + momentum * buf : buf        (when momentum != 0)
//   p   = p - lr * g
// The update runs under NoGradGuard with the in-place ops, so it records no graph and bumps the
// parameters' version counters (a graph that saved a parameter before the step refuses to backward).
//
// Weight decay and lr are per parameter group (optim/optimizer.hpp); momentum, dampening and
// Nesterov are the optimizer's. State: "momentum_buffer" per parameter.
//
// Example:
//   optim::SGD opt({w, b}, /*lr=*/0.1, /*momentum=*/0.9);
//   for (...) { opt.zero_grad(); loss(w, b).backward(); opt.step(); }
#pragma once
#include <utility>
#include <vector>

#include "graft/autograd/grad_mode.hpp"
#include "graft/core/tensor.hpp"
#include "graft/ops/copy.hpp"
#include "graft/ops/elementwise.hpp"
#include "graft/optim/optimizer.hpp"

namespace graft::optim {

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
        Tensor d_p = grad_of(p, g, i);
        if (grp.weight_decay != 0.0) d_p = add(d_p, mul(p.detach(), grp.weight_decay));
        if (momentum_ != 0.0) {
          auto& st = state_[g][i];
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
    }
  }

  // The momentum buffer of parameter i (of the first group): undefined before its first step with
  // momentum != 0.
  Tensor momentum_buffer(size_t i, size_t group = 0) const { return state(group, i, "momentum_buffer"); }

 private:
  double momentum_, dampening_;
  bool nesterov_;
};

}  // namespace graft::optim
