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

namespace graft::optim {

class SGD {
 public:
  SGD(std::vector<Tensor> params, double lr, double momentum = 0, double dampening = 0, double weight_decay = 0,
      bool nesterov = false)
      : params_(std::move(params)),
        lr_(lr),
        momentum_(momentum),
        dampening_(dampening),
        weight_decay_(weight_decay),
        nesterov_(nesterov),
        momentum_buffers_(params_.size()) {
    GRAFT_CHECK(!params_.empty(), "SGD", "got an empty parameter list");
    GRAFT_CHECK(lr >= 0.0, "SGD", "invalid learning rate ", lr, " (expected >= 0)");
    GRAFT_CHECK(momentum >= 0.0, "SGD", "invalid momentum ", momentum, " (expected >= 0)");
    GRAFT_CHECK(weight_decay >= 0.0, "SGD", "invalid weight_decay ", weight_decay, " (expected >= 0)");
    GRAFT_CHECK(!nesterov || (momentum > 0.0 && dampening == 0.0), "SGD",
                "nesterov momentum requires momentum > 0 and dampening == 0, got momentum ", momentum,
                " and dampening ", dampening);
    for (size_t i = 0; i < params_.size(); ++i) {
      const Tensor& p = params_[i];
      GRAFT_CHECK(p.defined(), "SGD", "parameter ", i, " is undefined");
      GRAFT_CHECK(is_floating(p.dtype()), "SGD", "parameter ", i, " (", p.name(), ") has dtype ",
                  dtype_name(p.dtype()), ", expected a floating-point tensor");
      GRAFT_CHECK(p.is_leaf(), "SGD", "parameter ", i, " (", p.name(), ") is not a leaf tensor; "
                  "optimize the leaves (detach() and set_requires_grad())");
    }
  }

  // One update of every parameter that has a gradient.
  void step() {
    NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
      Tensor& p = params_[i];
      if (!p.grad().defined()) continue;
      Tensor d_p = p.grad();
      GRAFT_CHECK(d_p.shape() == p.shape(), "SGD", "gradient of parameter ", i, " has shape ", d_p.shape(),
                  ", expected ", p.shape());
      if (weight_decay_ != 0.0) d_p = add(d_p, mul(p.detach(), weight_decay_));
      if (momentum_ != 0.0) {
        Tensor& buf = momentum_buffers_[i];
        if (!buf.defined()) {
          buf = d_p.detach().clone();
        } else {
          buf.mul_(momentum_);
          buf.add_(d_p, 1.0 - dampening_);
        }
        d_p = nesterov_ ? add(d_p, mul(buf, momentum_)) : buf;
      }
      p.add_(d_p, -lr_);
    }
  }

  // Drops every parameter's gradient (PyTorch's set_to_none=True, its default since 2.0); with
  // set_to_none false, zeroes the gradients in place instead.
  void zero_grad(bool set_to_none = true) {
    for (Tensor& p : params_) {
      if (!p.grad().defined()) continue;
      if (set_to_none) {
        p.zero_grad();
      } else {
        NoGradGuard no_grad;
        Tensor g = p.grad();
        g.zero_();
      }
    }
  }

  const std::vector<Tensor>& params() const { return params_; }
  // The momentum buffer of parameter i: undefined before its first step with momentum != 0.
  const Tensor& momentum_buffer(size_t i) const { return momentum_buffers_.at(i); }
  double lr() const { return lr_; }
  void set_lr(double lr) {
    GRAFT_CHECK(lr >= 0.0, "SGD", "invalid learning rate ", lr, " (expected >= 0)");
    lr_ = lr;
  }

 private:
  std::vector<Tensor> params_;
  double lr_, momentum_, dampening_, weight_decay_;
  bool nesterov_;
  std::vector<Tensor> momentum_buffers_;
};

}  // namespace graft::optim
