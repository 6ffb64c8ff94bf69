// graft/optim/adam.hpp - Adam and AdamW, step for step torch.optim.Adam / AdamW (amsgrad off).
//
// For each parameter p with gradient g, at step t = 1, 2, ... (per parameter):
//   Adam:  g = g + weight_decay * p                   (L2 penalty through the gradient)
//   AdamW: p = p * (1 - lr * weight_decay)            (decoupled decay, Loshchilov & Hutter)
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// in that order of float operations, so float32 results match PyTorch's to the last bits.
// lr and weight_decay are per parameter group (optim/optimizer.hpp). State per parameter: "step"
// (0-d float64), "exp_avg", "exp_avg_sq".
//
//   optim::AdamW opt(model->parameters(), /*lr=*/1e-3);                  // betas (0.9, 0.999), eps 1e-8, wd 0.01
//   optim::Adam  opt2(groups, /*lr=*/1e-3, {0.9, 0.999}, 1e-8, /*weight_decay=*/0);
#pragma once
#include <cmath>
#include <utility>
#include <vector>

#include "graft/optim/optimizer.hpp"

namespace graft::optim {

struct Betas {
  double beta1 = 0.9, beta2 = 0.999;
};

namespace detail_adam {
class AdamBase : public Optimizer {
 public:
  void step() override {
    check_hyperparameters();
    NoGradGuard no_grad;
    const double b1 = betas_.beta1, b2 = betas_.beta2;
    for (size_t g = 0; g < groups_.size(); ++g) {
      const ParamGroup& grp = groups_[g];
      for (size_t i = 0; i < grp.params.size(); ++i) {
        Tensor p = grp.params[i];
        if (!p.grad().defined()) continue;
        Tensor grad = grad_of(p, g, i).detach();
        auto& st = state_[g][i];
        if (!st.count("step")) {
          st["step"] = full({}, 0.0, DType::Float64);
          st["exp_avg"] = zeros_like(p);
          st["exp_avg_sq"] = zeros_like(p);
        }
        Tensor& step_t = st["step"];
        step_t.add_(full({}, 1.0, DType::Float64));
        const double t = step_t.item();
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

}  // namespace graft::optim
