// graft/train/guard.hpp - stop a diverging run with a message that says where: the step, the loss,
// and the first parameter or gradient that is not finite.
//
//   const Tensor loss = criterion(model->forward(x), y);
//   train::check_finite_loss(loss, step, "cross_entropy");         // throws: "step 17: loss ... is nan"
//   train::check_finite_loss(loss, step, *model, "cross_entropy"); // ... and names the parameter to blame
//   loss.backward();
//   train::check_finite_grads(*model, step);                       // throws naming "layer4.1.conv2.weight"
//   opt.step();
//   train::check_finite_params(*model, step);
#pragma once
#include <algorithm>
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
// A value for a message: "nan" whatever its sign bit ("-nan" reads as a different thing).
inline std::string value_str(double v) { return std::isnan(v) ? std::string("nan") : detail::concat(v); }
}  // namespace detail_guard

inline void check_finite_loss(const Tensor& loss, int64_t step, const std::string& what = "loss") {
  const int64_t bad = detail_guard::first_non_finite(loss);
  if (bad < 0) return;
  throw Error(detail::concat("training stopped at step ", step, ": ", what, " is ",
                             detail_guard::value_str(loss.to_vector()[size_t(bad)]),
                             " (a learning rate too high, or bad input data?)"));
}

// As above, and when the loss is not finite names the parameter that explains it: the first one
// holding a non-finite value, else the one of largest magnitude (a learning rate too high blows the
// weights up before the loss overflows), with its max |value|.
inline void check_finite_loss(const Tensor& loss, int64_t step, nn::Module& model, const std::string& what = "loss") {
  const int64_t bad = detail_guard::first_non_finite(loss);
  if (bad < 0) return;
  std::string culprit;
  double largest = -1.0;
  for (auto& [name, p] : model.named_parameters()) {
    if (!p.defined() || !is_floating(p.dtype())) continue;
    const auto v = p.to_vector();
    const auto nf = std::find_if(v.begin(), v.end(), [](double x) { return !std::isfinite(x); });
    if (nf != v.end()) {
      culprit = detail::concat("parameter '", name, "' (shape ", p.shape(), ") holds ", detail_guard::value_str(*nf),
                               " at element ", nf - v.begin());
      break;
    }
    double m = 0.0;
    for (double x : v) m = std::max(m, std::fabs(x));
    if (m > largest) {
      largest = m;
      culprit = detail::concat("the largest parameter is '", name, "' (shape ", p.shape(), ", max |value| ", m, ")");
    }
  }
  throw Error(detail::concat("training stopped at step ", step, ": ", what, " is ",
                             detail_guard::value_str(loss.to_vector()[size_t(bad)]),
                             culprit.empty() ? std::string() : "; " + culprit,
                             " (a learning rate too high, or bad input data?)"));
}

inline void check_finite_grads(nn::Module& model, int64_t step) {
  for (auto& [name, p] : model.named_parameters()) {
    const int64_t bad = detail_guard::first_non_finite(p.grad());
    if (bad >= 0)
      throw Error(detail::concat("training stopped at step ", step, ": the gradient of '", name, "' (shape ",
                                 p.shape(), ") holds ", detail_guard::value_str(p.grad().to_vector()[size_t(bad)]),
                                 " at element ", bad));
  }
}

inline void check_finite_params(nn::Module& model, int64_t step) {
  for (auto& [name, p] : model.named_parameters()) {
    const int64_t bad = detail_guard::first_non_finite(p);
    if (bad >= 0)
      throw Error(detail::concat("training stopped at step ", step, ": parameter '", name, "' (shape ", p.shape(),
                                 ") holds ", detail_guard::value_str(p.to_vector()[size_t(bad)]), " at element ",
                                 bad));
  }
}

}  // namespace graft::train
