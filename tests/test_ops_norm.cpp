// Reductions beyond sum/mean (max, min, amax, amin, argmax, argmin, var), softmax/log_softmax,
// layer_norm and batch_norm: gradient checks, hand-picked values from PyTorch 1.13, float32 against
// float64, poisoned kernel outputs, and the messages of bad input.
#include "harness.hpp"

using namespace graft;
using namespace graft_test;

namespace {
Tensor f64(const std::vector<double>& v, const Shape& s) { return from_vector(v, s, DType::Float64); }
// The values used by the PyTorch reference cases below: (i*7 % 11) * 0.25 - 1 and (i*5 % 7) * 0.1 - 0.3.
Tensor ramp_x(const Shape& s) {
  std::vector<double> v;
  for (int64_t i = 0; i < s.numel(); ++i) v.push_back(double(i * 7 % 11) * 0.25 - 1);
  return f64(v, s);
}
Tensor ramp_g(const Shape& s) {
  std::vector<double> v;
  for (int64_t i = 0; i < s.numel(); ++i) v.push_back(double(i * 5 % 7) * 0.1 - 0.3);
  return f64(v, s);
}
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

// ---- max / min / amax / amin / argmax -------------------------------------------------------------
GRADCHECK_CASE("max", "over a dim, keepdim, non-contiguous") {
  gradcheck([](auto& in) {
    auto [v0, i0] = max(in[0], 1);
    auto [v1, i1] = max(in[0], -1, true);
    return std::vector<Tensor>{v0, v1};
  }, {rand_noncontig({3, 4, 5})});
}
GRADCHECK_CASE("min", "over a dim, keepdim") {
  gradcheck([](auto& in) {
    return std::vector<Tensor>{min(in[0], 0).first, min(in[0], 2, true).first};
  }, {rand_in({3, 4, 5})});
}
GRADCHECK_CASE("max_all", "non-contiguous") {
  gradcheck1([](auto& in) { return max(in[0]); }, {rand_noncontig({4, 3})});
}
GRADCHECK_CASE("min_all", "contiguous") {
  gradcheck1([](auto& in) { return min(in[0]); }, {rand_in({2, 3, 2})});
}
GRADCHECK_CASE("amax", "several dims, keepdim, non-contiguous") {
  gradcheck([](auto& in) {
    return std::vector<Tensor>{amax(in[0], {0, 2}), amax(in[0], {-1}, true), amax(in[0])};
  }, {rand_noncontig({3, 4, 5})});
}
GRADCHECK_CASE("amin", "several dims") {
  gradcheck([](auto& in) { return std::vector<Tensor>{amin(in[0], {1, 2}, true), amin(in[0], {0})}; },
            {rand_in({2, 3, 4})});
}

TEST_CASE("max/min/argmax: first occurrence of ties, NaN propagates (PyTorch values)", "[minmax]") {
  const Tensor x = f64({1, 3, 3, 2, kNaN, 5, kNaN, 1, 4, -1, 4, 0}, {3, 4});
  auto [vmax, imax] = max(x, 1);
  auto [vmin, imin] = min(x, 1);
  REQUIRE(imax.dtype() == DType::Int64);
  REQUIRE(imax.to_vector() == std::vector<double>{1, 0, 0});
  REQUIRE(imin.to_vector() == std::vector<double>{0, 0, 1});
  const auto v = vmax.to_vector(), w = vmin.to_vector();
  REQUIRE(v[0] == 3.0);
  REQUIRE(std::isnan(v[1]));
  REQUIRE(v[2] == 4.0);
  REQUIRE(w[0] == 1.0);
  REQUIRE(std::isnan(w[1]));
  REQUIRE(w[2] == -1.0);
  REQUIRE(argmax(x, 1).to_vector() == std::vector<double>{1, 0, 0});
  REQUIRE(argmin(x, 1, true).shape() == Shape{3, 1});
  REQUIRE(std::isnan(max(x).item()));
  REQUIRE(std::isnan(amax(x, {0, 1}).item()));
  // all-reduce argmax indexes the flattened tensor
  const Tensor y = f64({1, 7, 7, 2}, {2, 2});
  REQUIRE(argmax(y).dim() == 0);
  REQUIRE(argmax(y).item() == 1.0);
  REQUIRE(argmin(y).item() == 0.0);
  REQUIRE(max(y).item() == 7.0);
  REQUIRE(min(y).item() == 1.0);
}

TEST_CASE("max/amax gradients: selected index vs ties split evenly (PyTorch values)", "[minmax]") {
  const Tensor x0 = f64({1, 3, 3, 2, 0, 5, 5, 1}, {2, 4});
  {
    Tensor x = x0.clone().set_requires_grad();
    sum(max(x, 1).first).backward();
    GRAFT_REQUIRE_CLOSE(x.grad(), f64({0, 1, 0, 0, 0, 1, 0, 0}, {2, 4}), kTolF64);
  }
  {
    Tensor x = x0.clone().set_requires_grad();
    sum(amax(x, {1})).backward();
    GRAFT_REQUIRE_CLOSE(x.grad(), f64({0, .5, .5, 0, 0, .5, .5, 0}, {2, 4}), kTolF64);
  }
  {
    Tensor x = x0.clone().set_requires_grad();
    max(x).backward();
    GRAFT_REQUIRE_CLOSE(x.grad(), f64({0, 0, 0, 0, 0, .5, .5, 0}, {2, 4}), kTolF64);
  }
}

TEST_CASE("max/amax shapes: keepdim, 0-d input, argmax is not differentiable", "[minmax]") {
  const Tensor x = rand_in({2, 3, 4}).set_requires_grad();
  REQUIRE(max(x, 1).first.shape() == Shape{2, 4});
  REQUIRE(max(x, 1, true).second.shape() == Shape{2, 1, 4});
  REQUIRE(amax(x, {0, 2}).shape() == Shape{3});
  REQUIRE(amax(x, {0, 2}, true).shape() == Shape{1, 3, 1});
  REQUIRE(max(x).shape() == Shape{});
  REQUIRE(!argmax(x, 0).requires_grad());
  REQUIRE(!max(x, 0).second.requires_grad());
  REQUIRE(max(x, 0).first.requires_grad());
  const Tensor s = full(Shape{}, 2.5, DType::Float64);
  REQUIRE(max(s, 0).first.shape() == Shape{});
  REQUIRE(max(s, 0).first.item() == 2.5);
  REQUIRE(max(s, 0).second.item() == 0.0);
}

TEST_CASE("max/amax/var: float32 against float64", "[minmax][var]") {
  const Tensor x64 = rand_noncontig({3, 5, 4}, -2, 2, 7);
  const Tensor x32 = x64.to(DType::Float32);
  GRAFT_REQUIRE_CLOSE(max(x32, 1).first, max(x64, 1).first.to(DType::Float32), kTolF32);
  REQUIRE(max(x32, 1).second.to_vector() == max(x64, 1).second.to_vector());
  GRAFT_REQUIRE_CLOSE(amin(x32, {0, 2}), amin(x64, {0, 2}).to(DType::Float32), kTolF32);
  GRAFT_REQUIRE_CLOSE(var(x32, {1}), var(x64, {1}).to(DType::Float32), kTolF32);
}

TEST_CASE("minmax errors name the op and the bad value", "[minmax][errors]") {
  require_error([] { (void)max(zeros({2, 3}, DType::Int64), 0); }, {"max", "int64"});
  require_error([] { (void)max(zeros({2, 0}, DType::Float64), 1); }, {"max", "size 0", "[2, 0]"});
  require_error([] { (void)amax(zeros({2, 0}, DType::Float64)); }, {"amax", "[2, 0]"});
  require_error([] { (void)argmax(zeros({2, 3}), 2); }, {"argmax", "dim 2", "rank 2"});
  require_error([] { (void)amax(zeros({2, 3}), {1, -1}); }, {"amax", "more than once"});
}

// ---- var ------------------------------------------------------------------------------------------
GRADCHECK_CASE("var", "correction 0 and 1, keepdim, several dims, non-contiguous") {
  gradcheck([](auto& in) {
    return std::vector<Tensor>{var(in[0], {1}), var(in[0], {0, 2}, 0, true), var(in[0], {}, 1),
                               var(in[0], {-1}, 0)};
  }, {rand_noncontig({3, 4, 5})});
}

TEST_CASE("var matches the two-pass formula and PyTorch's conventions", "[var]") {
  const Tensor x = f64({1, 2, 4, 3, -1, 0.5}, {2, 3});
  // torch.var(x, dim=[1], correction=1) = [2.333..., 4.083...]
  GRAFT_REQUIRE_CLOSE(var(x, {1}), f64({7.0 / 3.0, 49.0 / 12.0}, {2}), kTolF64);
  const Tensor xr = rand_in({4, 3, 5}, -3, 3, 11);
  for (int64_t c : {0, 1, 2}) {
    const Tensor d = xr - mean(xr, {0, 2}, true);
    const Tensor ref = sum(d * d, {0, 2}, true) / double(4 * 5 - c);
    GRAFT_REQUIRE_CLOSE(var(xr, {0, 2}, c, true), ref, kTolF64);
  }
  REQUIRE(var(xr).shape() == Shape{});
  REQUIRE(std::isnan(var(f64({3.0}, {1})).item()));  // one element, correction 1: 0/0 as PyTorch
}

// ---- softmax / log_softmax ------------------------------------------------------------------------
GRADCHECK_CASE("softmax", "middle dim of a non-contiguous input") {
  const Tensor x = rand_noncontig({2, 3, 4}, -2, 2);  // strides of a transposed [2, 4, 3]
  gradcheck1([](auto& in) { return softmax(in[0], 1); }, {x});
  gradcheck1([](auto& in) { return softmax(in[0], -1); }, {rand_in({3, 5})});
}
GRADCHECK_CASE("log_softmax", "first, middle and last dims, non-contiguous") {
  gradcheck([](auto& in) {
    return std::vector<Tensor>{log_softmax(in[0], 0), log_softmax(in[0], 1), log_softmax(in[0], 2)};
  }, {rand_noncontig({2, 3, 4}, -2, 2)});
}

TEST_CASE("softmax and log_softmax match exp/sum and stay finite for large inputs", "[softmax]") {
  const Tensor x = rand_noncontig({3, 4, 5}, -3, 3);
  for (int64_t d : {0, 1, 2}) {
    const Tensor e = exp(x);
    GRAFT_REQUIRE_CLOSE(softmax(x, d), e / sum(e, {d}, true), kTolF64);
    GRAFT_REQUIRE_CLOSE(log_softmax(x, d), x - log(sum(e, {d}, true)), kTolF64);
  }
  // PyTorch: softmax([1000, 1001, 1002]) = [0.0900306, 0.2447285, 0.6652410]
  const Tensor big = tensor({1000, 1001, 1002}, DType::Float32);
  GRAFT_REQUIRE_CLOSE(softmax(big, 0), tensor({0.09003057, 0.24472848, 0.66524094}, DType::Float32), kTolF32);
  GRAFT_REQUIRE_CLOSE(log_softmax(big, 0), tensor({-2.40760596, -1.40760596, -0.40760596}, DType::Float32), kTolF32);
  // float32 against float64
  GRAFT_REQUIRE_CLOSE(softmax(x.to(DType::Float32), 1), softmax(x, 1).to(DType::Float32), kTolF32);
  GRAFT_REQUIRE_CLOSE(log_softmax(x.to(DType::Float32), 2), log_softmax(x, 2).to(DType::Float32), kTolF32);
  // a 0-d input is its own row
  REQUIRE(softmax(full(Shape{}, 3.0, DType::Float64), 0).item() == 1.0);
}

TEST_CASE("softmax errors name the op, the dim and the rank", "[softmax][errors]") {
  require_error([] { (void)softmax(zeros({2, 3}), 2); }, {"softmax", "dim 2", "rank 2", "[-2, 1]"});
  require_error([] { (void)log_softmax(zeros({2, 3}), -3); }, {"log_softmax", "dim -3", "rank 2"});
  require_error([] { (void)softmax(zeros({2, 3}, DType::Int64), 0); }, {"softmax", "int64"});
}

// ---- layer_norm -----------------------------------------------------------------------------------
GRADCHECK_CASE("layer_norm", "weight and bias, one normalized dim, non-contiguous") {
  gradcheck1([](auto& in) { return layer_norm(in[0], {4}, in[1], in[2]); },
             {rand_noncontig({3, 2, 4}), rand_in({4}, 0.5, 1.5, 3), rand_in({4}, -1, 1, 4)});
}
GRADCHECK_CASE("layer_norm", "weight and bias, two normalized dims") {
  gradcheck1([](auto& in) { return layer_norm(in[0], {3, 4}, in[1], in[2], 1e-3); },
             {rand_in({2, 3, 4}, -2, 2), rand_in({3, 4}, 0.5, 1.5, 3), rand_in({3, 4}, -1, 1, 4)});
}
GRADCHECK_CASE("layer_norm", "no weight or bias, one and two normalized dims") {
  gradcheck([](auto& in) {
    return std::vector<Tensor>{layer_norm(in[0], {5}), layer_norm(in[0], {4, 5})};
  }, {rand_noncontig({2, 4, 5}, -2, 2)});
}
GRADCHECK_CASE("layer_norm", "weight only, and bias only") {
  gradcheck([](auto& in) {
    return std::vector<Tensor>{layer_norm(in[0], {4}, in[1]), layer_norm(in[0], {4}, Tensor(), in[2])};
  }, {rand_in({3, 4}), rand_in({4}, 0.5, 1.5, 3), rand_in({4}, -1, 1, 4)});
}

TEST_CASE("layer_norm values and gradients match PyTorch", "[layer_norm]") {
  Tensor x = ramp_x({2, 2, 3}).set_requires_grad();
  Tensor w = f64({1.5, -0.5, 2.0, 0.3, 0.7, -1.1}, {2, 3}).set_requires_grad();
  Tensor b = f64({0.1, 0.2, -0.3, 0.0, 0.5, 1.0}, {2, 3}).set_requires_grad();
  Tensor y = layer_norm(x, {2, 3}, w, b);
  GRAFT_REQUIRE_CLOSE(y.detach(), f64({-1.9895632035979662, -0.14826053393299438, -1.2950300969514126,
                                       0.477614446536678, 0.7786084271463954, 1.875626485317243,
                                       2.142939781729636, 0.12433556363964308, -2.418604218089992,
                                       0.3177906327134989, 0.39406978909550044, 2.498155839935066},
                                      {2, 2, 3}),
                      kTolF64);
  auto g = autograd::grad({sum(y * ramp_g({2, 2, 3}))}, {x, w, b});
  GRAFT_REQUIRE_CLOSE(g[0], f64({-0.26038512963586047, -0.1056295681595546, 0.16414951732792207,
                                 -0.170649728895867, 0.3021154963696977, 0.0703994129936622,
                                 -0.13045912280915192, 0.19983106386713476, 0.46958970145513595,
                                 0.04291074749234797, -0.1594766978082777, -0.42239569219718903},
                                {2, 2, 3}),
                      kTolF64);
  GRAFT_REQUIRE_CLOSE(g[1], f64({0.2817166552709509, 0.09390555175698359, -0.21186042180899925,
                                 -0.3184096310244519, 0.14966938617831227, -0.48819036410204025},
                                {2, 3}),
                      kTolF64);
  GRAFT_REQUIRE_CLOSE(g[2], f64({-0.4, -0.1, 0.2, -0.2, 0.1, 0.4}, {2, 3}), kTolF64);
}

TEST_CASE("layer_norm: float32 against float64, frozen weight gets no gradient", "[layer_norm]") {
  const Tensor x = rand_in({4, 6}, -2, 2, 9), w = rand_in({6}, 0.5, 1.5, 3), b = rand_in({6}, -1, 1, 4);
  GRAFT_REQUIRE_CLOSE(layer_norm(x.to(DType::Float32), {6}, w.to(DType::Float32), b.to(DType::Float32)),
                      layer_norm(x, {6}, w, b).to(DType::Float32), kTolF32);
  Tensor xr = x.clone().set_requires_grad();
  Tensor y = layer_norm(xr, {6}, w, b);  // w, b do not require grad: empty edges
  REQUIRE(y.grad_fn()->name() == "LayerNormBackward");
  REQUIRE(y.grad_fn()->next_edges.size() == 3);
  REQUIRE(!y.grad_fn()->needs_input_grad(1));
  REQUIRE(!y.grad_fn()->needs_input_grad(2));
  sum(y).backward();
  REQUIRE(xr.grad().defined());
  REQUIRE(!w.grad().defined());
}

TEST_CASE("layer_norm errors name the op, the expected and the actual shape", "[layer_norm][errors]") {
  require_error([] { (void)layer_norm(zeros({2, 3, 5}), {4}); }, {"layer_norm", "[4]", "[*, 4]", "[2, 3, 5]"});
  require_error([] { (void)layer_norm(zeros({3}), {2, 3}); }, {"layer_norm", "[2, 3]", "[3]"});
  require_error([] { (void)layer_norm(zeros({2, 4}), {4}, ones({3})); }, {"layer_norm", "weight", "[4]", "[3]"});
  require_error([] { (void)layer_norm(zeros({2, 4}), {4}, Tensor(), ones({4}, DType::Float64)); },
                {"layer_norm", "bias", "float32", "float64"});
}

// ---- batch_norm -----------------------------------------------------------------------------------
GRADCHECK_CASE("batch_norm", "training, [N, C, H, W] with weight and bias, running stats tracked") {
  Tensor rm = zeros({3}, DType::Float64), rv = ones({3}, DType::Float64);
  gradcheck1([&](auto& in) { return batch_norm(in[0], rm, rv, in[1], in[2], true); },
             {rand_in({2, 3, 2, 2}, -2, 2), rand_in({3}, 0.5, 1.5, 3), rand_in({3}, -1, 1, 4)});
}
GRADCHECK_CASE("batch_norm", "training, [N, C] non-contiguous, no weight or bias, untracked stats") {
  gradcheck1([](auto& in) { return batch_norm(in[0], Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-3); },
             {rand_noncontig({5, 3}, -2, 2)});
}
GRADCHECK_CASE("batch_norm", "eval (frozen statistics), [N, C, L] with weight and bias") {
  const Tensor rm = rand_in({4}, -0.5, 0.5, 7), rv = rand_in({4}, 0.5, 2.0, 8);
  gradcheck1([&](auto& in) { return batch_norm(in[0], rm, rv, in[1], in[2], false); },
             {rand_noncontig({2, 4, 3}, -2, 2), rand_in({4}, 0.5, 1.5, 3), rand_in({4}, -1, 1, 4)});
}
GRADCHECK_CASE("batch_norm", "eval without weight or bias") {
  const Tensor rm = rand_in({3}, -0.5, 0.5, 7), rv = rand_in({3}, 0.5, 2.0, 8);
  gradcheck1([&](auto& in) { return batch_norm(in[0], rm, rv, Tensor(), Tensor(), false); },
             {rand_in({2, 3, 2, 2}, -2, 2)});
}

TEST_CASE("batch_norm training: values, gradients and running statistics match PyTorch", "[batch_norm]") {
  Tensor x = ramp_x({2, 3, 2}).set_requires_grad();
  Tensor w = f64({1.5, -0.5, 2.0}, {3}).set_requires_grad();
  Tensor b = f64({0.1, 0.2, -0.3}, {3}).set_requires_grad();
  Tensor rm = f64({0.1, -0.2, 0.3}, {3}), rv = f64({1.0, 0.5, 2.0}, {3});
  const uint64_t v_rm = rm.version(), v_rv = rv.version();
  Tensor y = batch_norm(x, rm, rv, w, b, true, 0.1, 1e-5);
  REQUIRE(rm.version() > v_rm);
  REQUIRE(rv.version() > v_rv);
  REQUIRE(!rm.requires_grad());
  GRAFT_REQUIRE_CLOSE(rm, f64({0.12125, -0.1425, 0.245}, {3}), kTolF64);
  GRAFT_REQUIRE_CLOSE(rv, f64({0.9932291666666667, 0.5604166666666667, 1.8416666666666668}, {3}), kTolF64);
  GRAFT_REQUIRE_CLOSE(y.detach(), f64({-2.254403706269329, 0.8848012354231098, 0.543399336523497,
                                       -0.41811880574229465, 2.3832386415249323, -1.1944128805083107,
                                       1.781716933049521, -0.012114462203301368, 0.8181188057422948,
                                       -0.143399336523497, 0.5944128805083109, -2.9832386415249323},
                                      {2, 3, 2}),
                      kTolF64);
  auto g = autograd::grad({sum(y * ramp_g({2, 3, 2}))}, {x, w, b});
  GRAFT_REQUIRE_CLOSE(g[0], f64({0.028055041616403986, 0.4690033581952847, 0.046649912585379684,
                                 0.0259179450338356, 0.7870781831939748, -0.1431043436635502,
                                 -0.19942245496557076, -0.29763594484611783, -0.025917945033835585,
                                 -0.04664991258537971, -1.1090736890480852, 0.4650998495176606},
                                {2, 3, 2}),
                      kTolF64);
  GRAFT_REQUIRE_CLOSE(g[1], f64({0.48582933621430613, -0.4944950445938357, -0.13416193207624663}, {3}), kTolF64);
  GRAFT_REQUIRE_CLOSE(g[2], f64({-0.5, 0.0, 0.5}, {3}), kTolF64);
}

TEST_CASE("batch_norm eval: running statistics used and left unchanged (PyTorch values)", "[batch_norm]") {
  Tensor x = ramp_x({2, 3, 2}).set_requires_grad();
  Tensor w = f64({1.5, -0.5, 2.0}, {3}).set_requires_grad();
  Tensor b = f64({0.1, 0.2, -0.3}, {3}).set_requires_grad();
  Tensor rm = f64({0.1, -0.2, 0.3}, {3}), rv = f64({1.0, 0.5, 2.0}, {3});
  const uint64_t v_rm = rm.version();
  Tensor y = batch_norm(x, rm, rv, w, b, false);
  REQUIRE(rm.version() == v_rm);
  GRAFT_REQUIRE_CLOSE(rm, f64({0.1, -0.2, 0.3}, {3}), kTolF64);
  GRAFT_REQUIRE_CLOSE(y.detach(), f64({-1.5499917500618745, 1.0749951250365621, 0.23535498551124,
                                       -1.00206950738216, -0.01715799462951051, -1.431368021481958,
                                       1.824991375064687, 0.32499887500843744, 0.58890484062364,
                                       -0.64851965226976, -0.7242630080557342, -2.1384730349081815},
                                      {2, 3, 2}),
                      kTolF64);
  auto g = autograd::grad({sum(y * ramp_g({2, 3, 2}))}, {x, w, b});
  GRAFT_REQUIRE_CLOSE(g[0], f64({-0.4499977500168748, 0.29999850001124995, 0.0, 0.14141994204496,
                                 0.42426300805573436, 0.14142100268524477, -0.14999925000562492,
                                 -0.4499977500168748, -0.14141994204496, 0.0, -0.2828420053704894,
                                 0.42426300805573436},
                                {2, 3, 2}),
                      kTolF64);
  GRAFT_REQUIRE_CLOSE(g[1], f64({0.29999850001124995, -0.6363897392023199, -0.24748675469917839}, {3}), kTolF64);
  GRAFT_REQUIRE_CLOSE(g[2], f64({-0.5, 0.0, 0.5}, {3}), kTolF64);
}

TEST_CASE("batch_norm: float32 against float64 in both modes", "[batch_norm]") {
  const Tensor x = rand_in({4, 3, 5}, -2, 2, 21), w = rand_in({3}, 0.5, 1.5, 3), b = rand_in({3}, -1, 1, 4);
  for (bool training : {true, false}) {
    Tensor rm64 = rand_in({3}, -0.5, 0.5, 7), rv64 = rand_in({3}, 0.5, 2.0, 8);
    Tensor rm32 = rm64.to(DType::Float32), rv32 = rv64.to(DType::Float32);
    const Tensor y64 = batch_norm(x, rm64, rv64, w, b, training);
    const Tensor y32 = batch_norm(x.to(DType::Float32), rm32, rv32, w.to(DType::Float32), b.to(DType::Float32),
                                  training);
    GRAFT_REQUIRE_CLOSE(y32, y64.to(DType::Float32), kTolF32);
    GRAFT_REQUIRE_CLOSE(rm32, rm64.to(DType::Float32), kTolF32);
    GRAFT_REQUIRE_CLOSE(rv32, rv64.to(DType::Float32), kTolF32);
  }
}

TEST_CASE("batch_norm errors name the op, the expected and the actual value", "[batch_norm][errors]") {
  const Tensor x = zeros({2, 3, 4});
  require_error([&] { (void)batch_norm(x, zeros({4}), ones({3}), Tensor(), Tensor(), true); },
                {"batch_norm", "running_mean", "[3]", "[4]"});
  require_error([&] { (void)batch_norm(x, zeros({3}), ones({3}), ones({2}), Tensor(), false); },
                {"batch_norm", "weight", "[3]", "[2]"});
  require_error([&] { (void)batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false); },
                {"batch_norm", "running_mean", "training is false"});
  require_error([&] { (void)batch_norm(zeros({1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true); },
                {"batch_norm", "more than 1 value per channel", "[1, 3]"});
  require_error([&] { (void)batch_norm(zeros({3}), Tensor(), Tensor(), Tensor(), Tensor(), true); },
                {"batch_norm", "[N, C, *]", "[3]"});
  require_error([&] { (void)batch_norm(x, zeros({3}, DType::Float64), ones({3}), Tensor(), Tensor(), true); },
                {"batch_norm", "running_mean", "float32", "float64"});
}

// ---- kernels write every output; backward nodes ----------------------------------------------------
TEST_CASE("norm kernels write every element of their outputs (poisoned before the call)", "[kernels]") {
  const Tensor x = rand_in({3, 4, 5}, -2, 2, 5), dy = rand_in({3, 4, 5}, -1, 1, 6);
  Tensor y = empty(x.shape(), DType::Float64), dx = empty(x.shape(), DType::Float64);
  poison(y);
  kernels::cpu::softmax_forward(y, x, 3, 4, 5);
  poison(dx);
  kernels::cpu::softmax_backward(dx, dy, y, 3, 4, 5);
  GRAFT_REQUIRE_CLOSE(y, softmax(x, 1), kTolF64);
  REQUIRE(close_report(dx, dx, kTolF64).empty());  // no NaN left

  Tensor out = empty({12, 5}, DType::Float64);
  Tensor row_mean = empty({12}, DType::Float64), row_rstd = empty({12}, DType::Float64);
  poison(out);
  poison(row_mean);
  poison(row_rstd);
  kernels::cpu::layer_norm_forward(out, row_mean, row_rstd, x, Tensor(), Tensor(), 12, 5, 1e-5);
  GRAFT_REQUIRE_CLOSE(out.reshape({3, 4, 5}), layer_norm(x, {5}), kTolF64);
  GRAFT_REQUIRE_CLOSE(row_mean, mean(x, {2}).reshape({12}), kTolF64);
  GRAFT_REQUIRE_CLOSE(row_rstd, rsqrt(var(x, {2}, 0) + 1e-5).reshape({12}), kTolF64);

  Tensor bout = empty(x.shape(), DType::Float64);
  Tensor ch_mean = empty({4}, DType::Float64), ch_rstd = empty({4}, DType::Float64);
  poison(bout);
  poison(ch_mean);
  poison(ch_rstd);
  kernels::cpu::batch_norm_forward(bout, ch_mean, ch_rstd, x, Tensor(), Tensor(), Tensor(), Tensor(), 3, 4, 5, true,
                                   0.1, 1e-5);
  GRAFT_REQUIRE_CLOSE(bout, batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true), kTolF64);
  GRAFT_REQUIRE_CLOSE(ch_mean, mean(x, {0, 2}), kTolF64);
  GRAFT_REQUIRE_CLOSE(ch_rstd, rsqrt(var(x, {0, 2}, 0) + 1e-5), kTolF64);

  Tensor values = empty({3, 5}, DType::Float64), indices = empty({3, 5}, DType::Int64);
  poison(values);
  kernels::cpu::max_dim_forward(values, indices, x, 3, 4, 5, true);
  GRAFT_REQUIRE_CLOSE(values, amax(x, {1}), kTolF64);
  Tensor dmax = empty(x.shape(), DType::Float64);
  poison(dmax);
  kernels::cpu::max_dim_backward(dmax, dy.narrow(1, 0, 1).squeeze(1).contiguous(), indices, 3, 4, 5);
  GRAFT_REQUIRE_CLOSE(sum(dmax, {1}), dy.narrow(1, 0, 1).squeeze(1), kTolF64);

  Tensor v = empty({12}, DType::Float64);
  poison(v);
  kernels::cpu::var_forward(v, x, 12, 5, 1);
  GRAFT_REQUIRE_CLOSE(v, var(x, {2}).reshape({12}), kTolF64);
}

TEST_CASE("norm backward nodes: saved-tensor checks, frozen statistics, no create_graph", "[autograd]") {
  // eval-mode batch_norm saves copies of the statistics: a later running-stat update is harmless
  Tensor x = rand_in({2, 3, 4}).set_requires_grad();
  Tensor rm = rand_in({3}, -0.5, 0.5, 7), rv = rand_in({3}, 0.5, 2.0, 8);
  Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), false);
  (void)batch_norm(x.detach(), rm, rv, Tensor(), Tensor(), true);  // updates rm, rv in place
  sum(y).backward();
  REQUIRE(x.grad().defined());
  // an input modified in place after the forward is caught by the node
  Tensor a = rand_in({3, 4});
  Tensor w = rand_in({4}, 0.5, 1.5, 3).set_requires_grad();
  Tensor z = layer_norm(a, {4}, w);
  a.add_(ones({3, 4}, DType::Float64));
  require_error([&] { sum(z).backward(); }, {"LayerNormBackward", "in-place"});
  // second derivatives through the dedicated kernels are refused loudly
  Tensor s = rand_in({5}).set_requires_grad();
  Tensor p = softmax(s, 0);
  require_error([&] { (void)autograd::grad({sum(p * p)}, {s}, {}, true, true); },
                {"SoftmaxBackward", "create_graph"});
}

TEST_CASE("norm ops split across threads give the same results as the composed reference", "[kernels]") {
  // Sizes chosen so each parallel_for has more than one chunk.
  const Tensor x = rand_in({256, 96}, -3, 3, 31);
  const Tensor e = exp(x);
  GRAFT_REQUIRE_CLOSE(softmax(x, 1), e / sum(e, {1}, true), kTolF64);
  GRAFT_REQUIRE_CLOSE(softmax(x, 0), e / sum(e, {0}, true), kTolF64);
  const Tensor centered = x - mean(x, {1}, true);
  GRAFT_REQUIRE_CLOSE(var(x, {1}), sum(centered * centered, {1}) / 95.0, kTolF64);
  GRAFT_REQUIRE_CLOSE(amax(x, {1}), max(x, 1).first, kTolF64);

  Tensor xr = x.clone().set_requires_grad();
  Tensor w = rand_in({96}, 0.5, 1.5, 3).set_requires_grad(), b = rand_in({96}, -1, 1, 4).set_requires_grad();
  const Tensor g = rand_in({256, 96}, -1, 1, 32);
  sum(layer_norm(xr, {96}, w, b) * g).backward();
  Tensor xc = x.clone().set_requires_grad();
  Tensor wc = w.detach().clone().set_requires_grad(), bc = b.detach().clone().set_requires_grad();
  const Tensor norm = (xc - mean(xc, {1}, true)) * rsqrt(var(xc, {1}, 0, true) + 1e-5);
  sum((norm * wc + bc) * g).backward();
  GRAFT_REQUIRE_CLOSE(xr.grad(), xc.grad(), kTolF64);
  GRAFT_REQUIRE_CLOSE(w.grad(), wc.grad(), kTolF64);
  GRAFT_REQUIRE_CLOSE(b.grad(), bc.grad(), kTolF64);

  const Tensor xb = rand_in({2, 4096, 2}, -2, 2, 33);
  const Tensor ref = (xb - mean(xb, {0, 2}, true)) * rsqrt(var(xb, {0, 2}, 0, true) + 1e-5);
  GRAFT_REQUIRE_CLOSE(batch_norm(xb, Tensor(), Tensor(), Tensor(), Tensor(), true), ref, kTolF64);
}
