// graft/transfer/multitask.hpp - multi-task learning: a shared trunk with named heads, and the ways
// to combine the tasks' losses into one update (as LibMTL names them).
//
//   transfer::MultiTaskModel model(trunk, {{"digit", digit_head}, {"parity", parity_head}});
//   transfer::UncertaintyWeighting weighting(2);
//   optim::Adam opt(concat(model.parameters(), weighting.parameters()), 1e-3);
//   auto outs = model.forward_tasks(x);                       // {"digit": [B, 10], "parity": [B, 2]}
//   std::vector<Tensor> losses = {cross_entropy(outs[0].second, y0), cross_entropy(outs[1].second, y1)};
//   opt.zero_grad();
//   weighting.backward(losses, model.trunk()->parameters());  // fills every .grad
//   opt.step();
//
// The methods, for task losses L_i (scalars) and shared parameters W:
//   FixedWeighting(w)        backward of sum_i w_i L_i.
//   UncertaintyWeighting     Kendall, Gal & Cipolla (2018): learned s_i = log sigma_i^2 (parameters(),
//                            start 0), loss = sum_i 0.5 exp(-s_i) L_i + 0.5 s_i (the regression form
//                            1/(2 sigma^2) L + log sigma). A task with a large loss gets a small weight.
//   GradNorm(alpha, lr)      Chen et al. (2018): weights w_i (start 1). G_i = w_i ||dL_i/dW|| (W: the
//                            last shared layer, as the paper); r_i = (L_i / L_i(0)) / mean_j(L_j / L_j(0));
//                            target_i = mean(G) r_i^alpha held constant; the network gets sum_i w_i L_i,
//                            the weights take one gradient step on sum_i |G_i - target_i| (whose
//                            gradient is sign(G_i - target_i) ||dL_i/dW||) and are renormalized to sum
//                            to the task count.
//   PCGrad(seed)             Yu et al. (2020): per-task gradients g_i on W (autograd::grad); for each i,
//                            for the other tasks j in a random order, when g_i . g_j < 0:
//                            g_i -= (g_i . g_j) / |g_j|^2 g_j (projecting onto the normal plane of the
//                            ORIGINAL g_j); W gets sum_i g_i, everything else the plain sum of losses.
// Each method's backward accumulates into .grad like loss.backward() (zero_grad before it).
#pragma once
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "graft/autograd/engine.hpp"
#include "graft/core/random.hpp"
#include "graft/nn.hpp"

namespace graft::transfer {

class MultiTaskModel : public nn::Module {
 public:
  MultiTaskModel(nn::ModulePtr trunk, std::vector<std::pair<std::string, nn::ModulePtr>> heads)
      : Module("MultiTaskModel"), trunk_(std::move(trunk)), heads_(std::make_shared<nn::Module>("Heads")) {
    GRAFT_CHECK(trunk_ != nullptr, "MultiTaskModel", "the trunk is null");
    GRAFT_CHECK(!heads.empty(), "MultiTaskModel", "needs at least one head");
    for (auto& [name, head] : heads) {
      GRAFT_CHECK(head != nullptr, "MultiTaskModel", "head '", name, "' is null");
      for (const auto& n : names_)
        GRAFT_CHECK(n != name, "MultiTaskModel", "two heads are named '", name, "'");
      names_.push_back(name);
      heads_->register_module(name, head);
    }
    register_module("trunk", trunk_);
    register_module("heads", heads_);
  }
  // Every head's output on the shared features, in head order.
  std::vector<std::pair<std::string, Tensor>> forward_tasks(const Tensor& x) {
    const Tensor features = trunk_->forward(x);
    std::vector<std::pair<std::string, Tensor>> out;
    for (const auto& n : names_) out.emplace_back(n, heads_->child(n)->forward(features));
    return out;
  }
  // The first head's output (Module's single-output interface).
  Tensor forward(const Tensor& x) override { return forward_tasks(x).front().second; }
  nn::ModulePtr trunk() const { return trunk_; }
  nn::ModulePtr head(const std::string& name) const {
    for (const auto& n : names_)
      if (n == name) return heads_->child(n);
    throw Error(detail::concat("MultiTaskModel: no head named '", name, "'"));
  }
  const std::vector<std::string>& task_names() const { return names_; }

 private:
  nn::ModulePtr trunk_;
  std::shared_ptr<nn::Module> heads_;
  std::vector<std::string> names_;
};

class LossWeighting {
 public:
  explicit LossWeighting(std::string name, size_t num_tasks) : name_(std::move(name)), num_tasks_(num_tasks) {
    GRAFT_CHECK(num_tasks >= 1, name_, "needs at least one task, got ", num_tasks);
  }
  virtual ~LossWeighting() = default;
  // Fills .grad of everything the losses depend on (shared: the parameters the tasks share).
  virtual void backward(const std::vector<Tensor>& losses, const std::vector<Tensor>& shared) = 0;
  // Learned parameters of the weighting itself (for the optimizer); none by default.
  virtual std::vector<Tensor> parameters() { return {}; }
  // The current weight of each task (for logging).
  virtual std::vector<double> weights() const = 0;
  size_t num_tasks() const { return num_tasks_; }

 protected:
  // Checks the losses: one per task, each a finite scalar; returns their values.
  std::vector<double> check_losses(const std::vector<Tensor>& losses) const {
    GRAFT_CHECK(losses.size() == num_tasks_, name_, "got ", losses.size(), " losses for ", num_tasks_, " tasks");
    std::vector<double> v;
    for (size_t i = 0; i < losses.size(); ++i) {
      GRAFT_CHECK(losses[i].defined() && losses[i].numel() == 1, name_, "loss of task ", i,
                  " must be a scalar, got shape ", losses[i].defined() ? losses[i].shape().str() : "undefined");
      v.push_back(losses[i].item());
      GRAFT_CHECK(std::isfinite(v.back()), name_, "loss of task ", i, " is not finite (", v.back(), ")");
    }
    return v;
  }
  std::string name_;
  size_t num_tasks_;
};

class FixedWeighting : public LossWeighting {
 public:
  explicit FixedWeighting(std::vector<double> w) : LossWeighting("FixedWeighting", w.size()), w_(std::move(w)) {}
  void backward(const std::vector<Tensor>& losses, const std::vector<Tensor>&) override {
    check_losses(losses);
    Tensor total = mul(losses[0].reshape({}), w_[0]);
    for (size_t i = 1; i < losses.size(); ++i) total = add(total, mul(losses[i].reshape({}), w_[i]));
    total.backward();
  }
  std::vector<double> weights() const override { return w_; }

 private:
  std::vector<double> w_;
};

class UncertaintyWeighting : public LossWeighting {
 public:
  explicit UncertaintyWeighting(size_t num_tasks) : LossWeighting("UncertaintyWeighting", num_tasks) {
    log_vars_ = zeros({int64_t(num_tasks)});
    log_vars_.set_requires_grad(true);
    log_vars_.set_name("log_vars");
  }
  // sum_i 0.5 exp(-s_i) L_i + 0.5 s_i, differentiable in the losses and in s.
  Tensor combine(const std::vector<Tensor>& losses) const {
    check_losses(losses);
    Tensor total;
    for (size_t i = 0; i < losses.size(); ++i) {
      const Tensor s = log_vars_.select(0, int64_t(i));
      const Tensor term = add(mul(mul(exp(neg(s)), losses[i].reshape({}).to(s.dtype())), 0.5), mul(s, 0.5));
      total = total.defined() ? add(total, term) : term;
    }
    return total;
  }
  void backward(const std::vector<Tensor>& losses, const std::vector<Tensor>&) override { combine(losses).backward(); }
  std::vector<Tensor> parameters() override { return {log_vars_}; }
  // exp(-s_i) / 2: the factor on each loss.
  std::vector<double> weights() const override {
    std::vector<double> w;
    for (const double s : log_vars_.to_vector()) w.push_back(0.5 * std::exp(-s));
    return w;
  }
  const Tensor& log_vars() const { return log_vars_; }

 private:
  Tensor log_vars_;
};

namespace detail_mtl {
// Flattened float64 copies of the gradients of `loss` with respect to `params` (zeros where unused).
inline std::vector<double> flat_grad(const Tensor& loss, const std::vector<Tensor>& params) {
  const std::vector<Tensor> g = autograd::grad({loss}, params, {}, /*retain_graph=*/true, false, /*allow_unused=*/true);
  std::vector<double> out;
  for (size_t k = 0; k < params.size(); ++k) {
    if (g[k].defined()) {
      const auto v = g[k].to_vector();
      out.insert(out.end(), v.begin(), v.end());
    } else {
      out.insert(out.end(), size_t(params[k].numel()), 0.0);
    }
  }
  return out;
}
inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
inline void check_shared(const std::vector<Tensor>& shared, const std::string& who) {
  GRAFT_CHECK(!shared.empty(), who, "needs the shared parameters");
  for (size_t k = 0; k < shared.size(); ++k)
    GRAFT_CHECK(shared[k].defined() && shared[k].requires_grad(), who, "shared parameter ", k, " (",
                shared[k].defined() ? shared[k].name() : "undefined", ") does not require grad");
}
}  // namespace detail_mtl

class GradNorm : public LossWeighting {
 public:
  explicit GradNorm(size_t num_tasks, double alpha = 1.5, double lr = 0.025)
      : LossWeighting("GradNorm", num_tasks), alpha_(alpha), lr_(lr), w_(num_tasks, 1.0) {
    GRAFT_CHECK(lr > 0.0, "GradNorm", "lr must be > 0, got ", lr);
  }
  // shared: the last shared layer's parameters (W in the paper).
  void backward(const std::vector<Tensor>& losses, const std::vector<Tensor>& shared) override {
    const std::vector<double> L = check_losses(losses);
    detail_mtl::check_shared(shared, name_);
    if (initial_.empty()) {
      initial_ = L;
      for (size_t i = 0; i < L.size(); ++i)
        GRAFT_CHECK(L[i] > 0.0, "GradNorm", "the first loss of task ", i, " is ", L[i],
                    "; GradNorm divides by it and needs it > 0");
    }
    const size_t T = num_tasks_;
    std::vector<double> norms(T), G(T), ratio(T);
    for (size_t i = 0; i < T; ++i) {
      const auto g = detail_mtl::flat_grad(losses[i], shared);
      norms[i] = std::sqrt(detail_mtl::dot(g, g));
      G[i] = w_[i] * norms[i];
      ratio[i] = L[i] / initial_[i];
    }
    double mean_g = 0, mean_r = 0;
    for (size_t i = 0; i < T; ++i) mean_g += G[i] / double(T), mean_r += ratio[i] / double(T);
    last_targets_.assign(T, 0.0);
    std::vector<double> grad_w(T);
    for (size_t i = 0; i < T; ++i) {
      last_targets_[i] = mean_g * std::pow(ratio[i] / mean_r, alpha_);
      const double diff = G[i] - last_targets_[i];
      const double sign = diff > 0 ? 1.0 : (diff < 0 ? -1.0 : 0.0);
      grad_w[i] = sign * norms[i];
    }
    // The network: sum_i w_i L_i with the weights of this step.
    Tensor total = mul(losses[0].reshape({}), w_[0]);
    for (size_t i = 1; i < T; ++i) total = add(total, mul(losses[i].reshape({}), w_[i]));
    total.backward();
    // The weights: one gradient step, kept positive, renormalized to sum to T.
    double sum = 0;
    for (size_t i = 0; i < T; ++i) {
      w_[i] = std::max(w_[i] - lr_ * grad_w[i], 1e-6);
      sum += w_[i];
    }
    for (double& w : w_) w *= double(T) / sum;
  }
  std::vector<double> weights() const override { return w_; }
  const std::vector<double>& last_targets() const { return last_targets_; }

 private:
  double alpha_, lr_;
  std::vector<double> w_, initial_, last_targets_;
};

class PCGrad : public LossWeighting {
 public:
  explicit PCGrad(size_t num_tasks, uint64_t seed = 0) : LossWeighting("PCGrad", num_tasks), gen_(seed) {}
  void backward(const std::vector<Tensor>& losses, const std::vector<Tensor>& shared) override {
    check_losses(losses);
    detail_mtl::check_shared(shared, name_);
    const size_t T = num_tasks_;
    std::vector<std::vector<double>> g(T);
    for (size_t i = 0; i < T; ++i) g[i] = detail_mtl::flat_grad(losses[i], shared);
    const std::vector<double> projected = project(g);
    // Everything else (the heads) gets the plain sum; then W's share of it is replaced.
    std::vector<Tensor> before;
    for (const Tensor& p : shared) before.push_back(p.grad().defined() ? p.grad().clone() : Tensor());
    Tensor total = losses[0].reshape({});
    for (size_t i = 1; i < T; ++i) total = add(total, losses[i].reshape({}));
    total.backward();
    NoGradGuard no_grad;
    size_t offset = 0;
    for (size_t k = 0; k < shared.size(); ++k) {
      const Tensor& p = shared[k];
      const int64_t n = p.numel();
      Tensor pc = from_vector(std::vector<double>(projected.begin() + offset, projected.begin() + offset + n),
                              p.shape(), p.dtype());
      offset += size_t(n);
      p.set_grad(before[k].defined() ? add(before[k], pc) : pc);
    }
  }
  // The projection itself on flattened per-task gradients (exposed for tests): returns sum_i g_i'.
  std::vector<double> project(std::vector<std::vector<double>> g) {
    const size_t T = g.size();
    const std::vector<std::vector<double>> original = g;
    std::vector<double> out(g.empty() ? 0 : g[0].size(), 0.0);
    for (size_t i = 0; i < T; ++i) {
      std::vector<size_t> order;
      for (size_t j = 0; j < T; ++j)
        if (j != i) order.push_back(j);
      for (size_t a = order.size(); a > 1; --a) std::swap(order[a - 1], order[size_t(gen_.next_u64() % a)]);
      for (const size_t j : order) {
        const double d = detail_mtl::dot(g[i], original[j]);
        const double nn = detail_mtl::dot(original[j], original[j]);
        if (d < 0 && nn > 0)
          for (size_t e = 0; e < g[i].size(); ++e) g[i][e] -= d / nn * original[j][e];
      }
      for (size_t e = 0; e < out.size(); ++e) out[e] += g[i][e];
    }
    return out;
  }
  std::vector<double> weights() const override { return std::vector<double>(num_tasks_, 1.0); }

 private:
  Generator gen_;
};

}  // namespace graft::transfer
