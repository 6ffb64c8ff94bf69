// graft/optim/clip.hpp - gradient clipping, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_.
//
//   double norm = optim::clip_grad_norm_(model->parameters(), /*max_norm=*/1.0);  // before opt.step()
//
// clip_grad_norm_: total = the norm_type-norm of all gradients together (inf: the largest |g|);
// every gradient is scaled by min(1, max_norm / (total + 1e-6)); returns total (before clipping).
// A non-finite total throws (naming the first parameter whose gradient is not finite) when
// error_if_nonfinite, as PyTorch's option; otherwise the gradients are left as they are.
// Parameters without a gradient are skipped.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "graft/autograd/grad_mode.hpp"
#include "graft/core/tensor.hpp"
#include "graft/ops/elementwise.hpp"

namespace graft::optim {

inline double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                              bool error_if_nonfinite = true) {
  GRAFT_CHECK(max_norm >= 0.0, "clip_grad_norm_", "max_norm must be >= 0, got ", max_norm);
  GRAFT_CHECK(norm_type > 0.0, "clip_grad_norm_", "norm_type must be > 0, got ", norm_type);
  const bool inf_norm = std::isinf(norm_type);
  double acc = 0.0;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& g = params[i].grad();
    if (!g.defined()) continue;
    for (const double v : g.to_vector()) {
      const double a = std::abs(v);
      if (!std::isfinite(a)) {
        GRAFT_CHECK(!error_if_nonfinite, "clip_grad_norm_", "the gradient of parameter ", i, " (",
                    params[i].name(), ", shape ", params[i].shape(), ") holds ", v,
                    ": the total norm is not finite");
        return std::numeric_limits<double>::quiet_NaN();
      }
      acc = inf_norm ? std::max(acc, a) : acc + std::pow(a, norm_type);
    }
  }
  const double total = inf_norm ? acc : std::pow(acc, 1.0 / norm_type);
  const double coef = std::min(1.0, max_norm / (total + 1e-6));
  if (coef < 1.0) {
    NoGradGuard no_grad;
    for (const Tensor& p : params)
      if (p.grad().defined()) {
        Tensor g = p.grad();
        g.mul_(coef);
      }
  }
  return total;
}

inline void clip_grad_value_(const std::vector<Tensor>& params, double clip_value) {
  GRAFT_CHECK(clip_value >= 0.0, "clip_grad_value_", "clip_value must be >= 0, got ", clip_value);
  NoGradGuard no_grad;
  for (const Tensor& p : params)
    if (p.grad().defined()) {
      Tensor g = p.grad();
      g.copy_(clamp(g, -clip_value, clip_value));
    }
}

}  // namespace graft::optim
