// graft/train/guard.hpp - stop a diverging run with a message that says where: the step, the loss,
// and the first parameter or gradient that is not finite.
//
//   const Tensor loss = criterion(model->forward(x), y);
//   train::check_finite_loss(loss, step, "cross_entropy");         // throws: "step 17: loss ... is nan"
//   loss.backward();
//   train::check_finite_grads(*model, step);                       // throws naming "layer4.1.conv2.weight"
//   opt.step();
//   train::check_finite_params(*model, step);
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "graft/nn.hpp"

namespace graft::train {

namespace detail_guard {
// Index of the first non-finite element of t (any float dtype), or -1.
inline int64_t first_non_finite(const Tensor& t) {
  if (!t.defined() || !is_floating(t.dtype())) return -1;
  const auto v = t.to_vector();
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) return int64_t(i);
  return -1;
}
}  // namespace detail_guard

inline void check_finite_loss(const Tensor& loss, int64_t step, const std::string& what = "loss") {
  const int64_t bad = detail_guard::first_non_finite(loss);
  if (bad < 0) return;
  throw Error(detail::concat("training stopped at step ", step, ": ", what, " is ", loss.to_vector()[size_t(bad)],
                             " (a learning rate too high, or bad input data?)"));
}

inline void check_finite_grads(nn::Module& model, int64_t step) {
  for (auto& [name, p] : model.named_parameters()) {
    const int64_t bad = detail_guard::first_non_finite(p.grad());
    if (bad >= 0)
      throw Error(detail::concat("training stopped at step ", step, ": the gradient of '", name, "' (shape ",
                                 p.shape(), ") holds ", p.grad().to_vector()[size_t(bad)], " at element ", bad));
  }
}

inline void check_finite_params(nn::Module& model, int64_t step) {
  for (auto& [name, p] : model.named_parameters()) {
    const int64_t bad = detail_guard::first_non_finite(p);
    if (bad >= 0)
      throw Error(detail::concat("training stopped at step ", step, ": parameter '", name, "' (shape ", p.shape(),
                                 ") holds ", p.to_vector()[size_t(bad)], " at element ", bad));
  }
}

}  // namespace graft::train
