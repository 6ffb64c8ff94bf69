// graft/transfer/dann.hpp - a DANN training step (Ganin et al., "Domain-Adversarial Training of Neural
// Networks", 2016): labelled source batches and unlabelled target batches, one backbone, a label
// classifier on source features, and a domain discriminator behind a gradient-reversal layer.
//
//   transfer::DomainDiscriminator disc(feature_dim, 256);
//   optim::SGD opt(concat(backbone params, classifier params, disc params), 0.01, 0.9);
//   transfer::DannTrainer dann([&](const Tensor& x) { return backbone->forward_features(x); },
//                              *classifier, disc, opt);
//   for (step ...) {
//     const double p = double(step) / total_steps;
//     optim::GaninAnnealing(total_steps).apply(opt, step);
//     auto r = dann.step(source_x, source_y, target_x, p);   // r.class_loss, r.domain_loss, r.lambda ...
//   }
//
// One step: f = features(cat(xs, xt)) (one pass, so BatchNorm sees both domains, as Ganin's and
// TLlib's code do); class_loss = CE(classifier(f_source), ys); lambda = ganin_lambda(p, gamma);
// domain_loss = BCE-with-logits(disc(grad_reverse(f, lambda)), 1 for source / 0 for target);
// loss = class_loss + domain_weight * domain_loss; zero_grad, backward, optimizer step.
// The discriminator descends domain_loss; the backbone gets d class_loss - lambda * domain_weight *
// d domain_loss, i.e. it ascends the domain loss: features the discriminator cannot tell apart.
// A non-finite loss stops with the step number (train/guard.hpp).
//
// CDAN (Long et al., "Conditional Adversarial Domain Adaptation", 2018; Adversary::Cdan / CdanE): the
// discriminator sees the features conditioned on the predictions, the multilinear map
// h = flatten(g (x) f) [B, C * F] with g = softmax(classifier(f)) (detached, as the authors' and
// TLlib's code do), behind the gradient reversal: it aligns the joint distribution of features and
// classes, where DANN aligns the features alone and can map a target 3 next to a source 8. CdanE
// weights each example's domain loss by w = 1 + exp(-entropy(g)), normalized to mean 1 over the
// batch: confident predictions count more. The discriminator must then take C * F inputs.
#pragma once
#include <functional>

#include "graft/nn.hpp"
#include "graft/optim/optimizer.hpp"
#include "graft/train/guard.hpp"
#include "graft/transfer/grl.hpp"

namespace graft::transfer {

struct DannStep {
  double class_loss = 0, domain_loss = 0;
  double source_accuracy = 0;  // label accuracy on the source batch
  double domain_accuracy = 0;  // the discriminator's accuracy on both batches
  double lambda = 0;
};

enum class Adversary { Dann, Cdan, CdanE };

inline const char* adversary_name(Adversary a) {
  return a == Adversary::Dann ? "DANN" : a == Adversary::Cdan ? "CDAN" : "CDAN+E";
}

// CDAN's multilinear map: f [B, F], g [B, C] -> [B, C * F], row b = flatten(g[b]^T f[b]) (class-major,
// as TLlib's MultiLinearMap).
inline Tensor multilinear_map(const Tensor& f, const Tensor& g) {
  GRAFT_CHECK(f.dim() == 2 && g.dim() == 2 && f.size(0) == g.size(0), "multilinear_map",
              "expected features [B, F] and predictions [B, C], got ", f.shape(), " and ", g.shape());
  const int64_t B = f.size(0), F = f.size(1), C = g.size(1);
  return mul(g.reshape({B, C, 1}), f.reshape({B, 1, F})).reshape({B, C * F});
}

// CDAN+E's example weights: 1 + exp(-H(g)) per row of probabilities g [B, C], scaled to mean 1.
inline Tensor entropy_weights(const Tensor& g) {
  NoGradGuard ng;
  const Tensor h = neg(sum(mul(g, log(clamp(g, 1e-12, 1.0))), {1}));
  const Tensor w = add(exp(neg(h)), 1.0);
  return div(w, mean(w));
}

class DannTrainer {
 public:
  using Features = std::function<Tensor(const Tensor&)>;
  DannTrainer(Features features, nn::Module& classifier, DomainDiscriminator& discriminator, optim::Optimizer& opt,
              double domain_weight = 1.0, double gamma = 10.0, Adversary adversary = Adversary::Dann)
      : features_(std::move(features)),
        classifier_(classifier),
        disc_(discriminator),
        opt_(opt),
        domain_weight_(domain_weight),
        gamma_(gamma),
        adversary_(adversary) {
    GRAFT_CHECK(features_ != nullptr, "DannTrainer", "no feature function");
    GRAFT_CHECK(domain_weight >= 0.0, "DannTrainer", "domain_weight must be >= 0, got ", domain_weight);
  }

  // xs [Bs, ...] with labels ys [Bs]; xt [Bt, ...] unlabelled; progress p in [0, 1]: one optimizer step.
  DannStep step(const Tensor& xs, const Tensor& ys, const Tensor& xt, double progress) {
    DannStep r;
    const Tensor l = loss(xs, ys, xt, progress, &r);
    train::check_finite_loss(l, steps_, "DANN loss");
    opt_.zero_grad();
    l.backward();
    opt_.step();
    ++steps_;
    return r;
  }

  // The same step's loss without the optimizer, for a loop that owns the step (train::Trainer:
  // its loss() gives loss(source, target) and the Trainer runs zero_grad, backward and step).
  // `stats` (if given) gets the step's losses, accuracies and lambda.
  Tensor loss(const Tensor& xs, const Tensor& ys, const Tensor& xt, double progress, DannStep* stats = nullptr) {
    GRAFT_CHECK(xs.dim() >= 1 && xt.dim() == xs.dim(), "DannTrainer", "source ", xs.shape(), " and target ",
                xt.shape(), " batches must have the same rank");
    for (int64_t d = 1; d < xs.dim(); ++d)
      GRAFT_CHECK(xs.size(d) == xt.size(d), "DannTrainer", "source ", xs.shape(), " and target ", xt.shape(),
                  " inputs differ past the batch dimension");
    GRAFT_CHECK(ys.dim() == 1 && ys.size(0) == xs.size(0), "DannTrainer", "labels ", ys.shape(),
                " do not match the source batch ", xs.shape());
    const int64_t bs = xs.size(0), bt = xt.size(0);
    DannStep r;
    r.lambda = ganin_lambda(std::min(1.0, std::max(0.0, progress)), gamma_);
    const Tensor f = features_(cat({xs, xt}, 0));
    GRAFT_CHECK(f.dim() == 2, "DannTrainer", "features must be [B, F], got ", f.shape());
    Tensor logits, domain_in = f, weights;
    if (adversary_ == Adversary::Dann) {
      logits = classifier_.forward(f.narrow(0, 0, bs));
    } else {
      const Tensor all_logits = classifier_.forward(f);  // the target's predictions condition its features
      logits = all_logits.narrow(0, 0, bs);
      const Tensor g = softmax(all_logits, 1).detach();
      domain_in = multilinear_map(f, g);
      if (adversary_ == Adversary::CdanE) weights = entropy_weights(g);
    }
    const int64_t disc_in = disc_.layers->child("0")->find_tensor("weight").size(1);
    GRAFT_CHECK(disc_in == domain_in.size(1), "DannTrainer", adversary_name(adversary_), " feeds the discriminator ",
                domain_in.size(1), " values per example",
                adversary_ == Adversary::Dann ? "" : " (features x classes)", ", but it takes ", disc_in);
    const Tensor class_loss = cross_entropy(logits, ys);
    const Tensor domain_logits = disc_.forward(grad_reverse(domain_in, r.lambda));
    const Tensor domain_target = cat({ones({bs}, domain_logits.dtype()), zeros({bt}, domain_logits.dtype())}, 0);
    const Tensor domain_loss =
        weights.defined()
            ? mean(mul(binary_cross_entropy_with_logits(domain_logits, domain_target, Reduction::None), weights))
            : binary_cross_entropy_with_logits(domain_logits, domain_target);
    const Tensor loss = add(class_loss, mul(domain_loss, domain_weight_));
    if (stats == nullptr) return loss;
    r.class_loss = class_loss.item();
    r.domain_loss = domain_loss.item();
    {
      NoGradGuard ng;
      const auto pred = argmax(logits, 1).to_vector(), lab = ys.to_vector();
      int64_t ok = 0;
      for (size_t i = 0; i < pred.size(); ++i) ok += pred[i] == lab[i];
      r.source_accuracy = double(ok) / double(bs);
      const auto dl = domain_logits.to_vector();
      int64_t dok = 0;
      for (size_t i = 0; i < dl.size(); ++i) dok += (dl[i] > 0) == (int64_t(i) < bs);
      r.domain_accuracy = double(dok) / double(bs + bt);
    }
    *stats = r;
    return loss;
  }
  int64_t steps() const { return steps_; }

 private:
  Features features_;
  nn::Module& classifier_;
  DomainDiscriminator& disc_;
  optim::Optimizer& opt_;
  double domain_weight_, gamma_;
  Adversary adversary_;
  int64_t steps_ = 0;
};

}  // namespace graft::transfer
