// graft/optim/grad_scaler.hpp - dynamic loss scaling for float16 training (torch.amp.GradScaler).
//
// float16 has 5 exponent bits: gradients below 2^-24 flush to zero. The scaler multiplies the loss by
// a large factor S before backward, so the float16 gradients inside the graph stay representable,
// then divides the float32 gradients of the weights by S before the optimizer sees them. A step whose
// gradients hold an inf or NaN (S was too large) is skipped and S halved; after growth_interval
// steps without one, S doubles.
//
//   graft::GradScaler scaler;                        // init_scale 65536, as PyTorch
//   for (...) {
//     opt.zero_grad();
//     Tensor loss;
//     { graft::AutocastGuard amp(graft::DType::Float16); loss = loss_fn(model.forward(x), y); }
//     scaler.scale(loss).backward();
//     scaler.unscale_(opt);                          // optional: before clip_grad_norm_
//     scaler.step(opt);                              // skipped when a gradient is not finite
//     scaler.update();
//   }
//
// bfloat16 has float32's exponent range and needs no scaler (the same loop with enabled = false is
// a plain step).
#pragma once
#include <cmath>
#include <unordered_map>

#include "graft/autograd/grad_mode.hpp"
#include "graft/core/error.hpp"
#include "graft/ops/elementwise.hpp"
#include "graft/ops/minmax.hpp"
#include "graft/optim/optimizer.hpp"

namespace graft {

struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  bool enabled = true;
};

class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions o = {}) : opt_(o), scale_(o.init_scale) {
    GRAFT_CHECK(o.init_scale > 0 && std::isfinite(o.init_scale), "GradScaler", "init_scale must be positive and finite, got ",
                o.init_scale);
    GRAFT_CHECK(o.growth_factor > 1.0, "GradScaler", "growth_factor must exceed 1, got ", o.growth_factor);
    GRAFT_CHECK(o.backoff_factor > 0.0 && o.backoff_factor < 1.0, "GradScaler", "backoff_factor must be in (0, 1), got ",
                o.backoff_factor);
    GRAFT_CHECK(o.growth_interval >= 1, "GradScaler", "growth_interval must be at least 1, got ", o.growth_interval);
  }

  bool enabled() const { return opt_.enabled; }
  double get_scale() const { return opt_.enabled ? scale_ : 1.0; }
  int64_t growth_tracker() const { return growth_tracker_; }

  // loss * scale (loss itself when disabled); differentiable.
  Tensor scale(const Tensor& loss) const {
    GRAFT_CHECK(loss.defined(), "GradScaler::scale", "undefined loss");
    return opt_.enabled ? mul(loss, scale_) : loss;
  }

  // Divides the gradients of opt's parameters by the scale, in place, and records whether any is not
  // finite. Once per optimizer between update()s; step() calls it if the caller did not.
  void unscale_(optim::Optimizer& opt) {
    if (!opt_.enabled) return;
    State& st = per_opt_[&opt];
    GRAFT_CHECK(!st.unscaled, "GradScaler::unscale_", "unscale_() was already called on this optimizer since the last update()");
    NoGradGuard ng;
    const double inv = 1.0 / scale_;
    for (const Tensor& p : opt.params()) {
      const Tensor& g = p.grad();
      if (!g.defined()) continue;
      GRAFT_CHECK(g.dtype() != DType::Float16, "GradScaler::unscale_", "parameter gradients must not be float16 ",
                  "(keep float32 master weights and autocast the forward)");
      g.detach().mul_(inv);
      if (!st.found_inf && g.numel() > 0 && !std::isfinite(amax(abs(g.detach())).item())) st.found_inf = true;
    }
    st.unscaled = true;
  }

  // opt.step() unless a gradient was inf / NaN; returns whether the step ran.
  bool step(optim::Optimizer& opt) {
    if (!opt_.enabled) {
      opt.step();
      return true;
    }
    State& st = per_opt_[&opt];
    if (!st.unscaled) unscale_(opt);
    st.stepped = true;
    if (st.found_inf) return false;
    opt.step();
    return true;
  }

  // The next scale: backoff if any optimizer stepped (or unscaled) this iteration saw inf / NaN, else
  // growth after growth_interval clean iterations. Clears the per-optimizer state.
  void update() {
    if (!opt_.enabled) return;
    bool any_inf = false;
    for (const auto& [o, st] : per_opt_) any_inf = any_inf || st.found_inf;
    if (any_inf) {
      scale_ *= opt_.backoff_factor;
      growth_tracker_ = 0;
    } else if (++growth_tracker_ == opt_.growth_interval) {
      scale_ *= opt_.growth_factor;
      growth_tracker_ = 0;
    }
    per_opt_.clear();
  }

  // Whether the last step() of opt was skipped (valid until update()).
  bool found_inf(const optim::Optimizer& opt) const {
    auto it = per_opt_.find(&opt);
    return it != per_opt_.end() && it->second.found_inf;
  }

 private:
  struct State {
    bool unscaled = false, found_inf = false, stepped = false;
  };
  GradScalerOptions opt_;
  double scale_;
  int64_t growth_tracker_ = 0;
  std::unordered_map<const optim::Optimizer*, State> per_opt_;
};

}  // namespace graft
