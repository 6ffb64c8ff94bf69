// graft/transfer/grl.hpp - domain adaptation pieces of DANN (Ganin & Lempitsky, 2015): the
// gradient-reversal layer, Ganin's lambda schedule, and a domain discriminator.
//
//   transfer::DomainDiscriminator disc(/*in_features=*/1280, /*hidden=*/256);
//   Tensor feats = backbone.forward_features(x);               // source and target images together
//   Tensor domain_logits = disc.forward(transfer::grad_reverse(feats, lambda));
//   // BCE against 1 (source) / 0 (target): the discriminator learns the domains, while the reversed
//   // gradient (-lambda * g) pushes the backbone toward features the discriminator cannot tell apart.
//
// grad_reverse(x, lambda): forward the identity (a new tensor aliasing nothing x's history needs),
// backward -lambda * grad. Built on the core's custom Function API (autograd/function.hpp).
// ganin_lambda(p, gamma = 10) = 2 / (1 + exp(-gamma p)) - 1, p = training progress in [0, 1]: 0 at the
// start (the discriminator is noise then), towards 1 at the end.
#pragma once
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "graft/autograd/function.hpp"
#include "graft/nn.hpp"

namespace graft::transfer {

struct GradientReversalFn : autograd::Function<GradientReversalFn> {
  static std::string name() { return "GradientReversal"; }
  static Tensor forward(autograd::Context& ctx, const Tensor& x, double lambda) {
    ctx.saved_data["lambda"] = lambda;
    return x.clone();
  }
  static std::vector<Tensor> backward(autograd::Context& ctx, std::vector<Tensor> g) {
    return {mul(g[0], -ctx.saved_data["lambda"])};
  }
};

inline Tensor grad_reverse(const Tensor& x, double lambda = 1.0) {
  GRAFT_CHECK(std::isfinite(lambda), "grad_reverse", "lambda must be finite, got ", lambda);
  return GradientReversalFn::apply(x, lambda);
}

inline double ganin_lambda(double progress, double gamma = 10.0) {
  GRAFT_CHECK(progress >= 0.0 && progress <= 1.0, "ganin_lambda", "progress must be in [0, 1], got ", progress);
  return 2.0 / (1.0 + std::exp(-gamma * progress)) - 1.0;
}

// The layer form, with a settable lambda (a trainer updates it every step from ganin_lambda).
class GradientReversal : public nn::Module {
 public:
  explicit GradientReversal(double lambda = 1.0) : Module("GradientReversal"), lambda(lambda) {}
  Tensor forward(const Tensor& x) override { return grad_reverse(x, lambda); }
  double lambda;
};

// Ganin's discriminator: Linear(in, hidden) - ReLU - Dropout - Linear(hidden, hidden) - ReLU - Dropout
// - Linear(hidden, 1): one domain logit per row (names: layers.0, layers.3, layers.6).
class DomainDiscriminator : public nn::Module {
 public:
  DomainDiscriminator(int64_t in_features, int64_t hidden = 1024, double dropout = 0.5)
      : Module("DomainDiscriminator") {
    GRAFT_CHECK(in_features > 0 && hidden > 0, "DomainDiscriminator", "in_features and hidden must be > 0, got ",
                in_features, " and ", hidden);
    layers = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
        std::make_shared<nn::Linear>(in_features, hidden), std::make_shared<nn::ReLU>(),
        std::make_shared<nn::Dropout>(dropout), std::make_shared<nn::Linear>(hidden, hidden),
        std::make_shared<nn::ReLU>(), std::make_shared<nn::Dropout>(dropout),
        std::make_shared<nn::Linear>(hidden, 1)});
    register_module("layers", layers);
  }
  // [B, in_features] -> [B] domain logits (source = 1).
  Tensor forward(const Tensor& features) override {
    GRAFT_CHECK(features.dim() == 2, "DomainDiscriminator", "expected features [B, F], got ", features.shape());
    return layers->forward(features).reshape({features.size(0)});
  }
  std::shared_ptr<nn::Sequential> layers;
};

}  // namespace graft::transfer
