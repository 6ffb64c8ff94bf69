// tests/test_transfer.cpp - the transfer-learning pieces: gradient reversal and Ganin's schedule
// (DANN), the domain discriminator, the multi-task model and each loss-weighting method's defining
// math on small hand-made cases.
#include <cmath>

#include "harness.hpp"
#include "graft/nn.hpp"
#include "graft/transfer/grl.hpp"
#include "graft/transfer/multitask.hpp"

namespace {
using namespace graft;
using graft_test::kTolF32;
using graft_test::kTolF64;
using graft_test::require_error;

Tensor transfer_leaf(std::vector<double> v) {
  Tensor t = from_vector(v, {int64_t(v.size())}, DType::Float64);
  t.set_requires_grad(true);
  return t;
}
Tensor transfer_dot(const Tensor& a, std::vector<double> c) {
  return sum(mul(a, from_vector(c, {int64_t(c.size())}, DType::Float64)));
}
}  // namespace

TEST_CASE("transfer: gradient reversal is the identity forward and -lambda * grad backward", "[transfer]") {
  Tensor x = graft_test::rand_in({3, 4}).set_requires_grad();
  const Tensor w = graft_test::rand_in({3, 4}, -1, 1, 2);
  Tensor y = transfer::grad_reverse(x, 0.3);
  GRAFT_REQUIRE_CLOSE(y, x.detach(), kTolF64);
  REQUIRE(y.grad_fn()->name() == "GradientReversal");
  sum(mul(y, w)).backward();
  GRAFT_REQUIRE_CLOSE(x.grad(), mul(w, -0.3), kTolF64);
  // Through the layer, after a discriminator: the features' gradient is the reversed one.
  transfer::GradientReversal grl(2.0);
  Tensor f1 = graft_test::rand_in({2, 4}, -1, 1, 5, DType::Float32).set_requires_grad();
  Tensor f2 = f1.detach().clone().set_requires_grad();
  nn::Linear head(4, 1);
  sum(head.forward(grl.forward(f1))).backward();
  sum(head.forward(f2)).backward();
  GRAFT_REQUIRE_CLOSE(f1.grad(), mul(f2.grad(), -2.0), kTolF32);
  require_error([&] { transfer::grad_reverse(x, NAN); }, {"grad_reverse", "lambda", "nan"});
}

TEST_CASE("transfer: Ganin's lambda schedule and the domain discriminator", "[transfer]") {
  CHECK(transfer::ganin_lambda(0.0) == 0.0);
  CHECK(std::abs(transfer::ganin_lambda(1.0) - (2.0 / (1.0 + std::exp(-10.0)) - 1.0)) < 1e-15);
  CHECK(std::abs(transfer::ganin_lambda(0.1) - 0.46211715726000974) < 1e-12);  // tanh(0.5)
  require_error([] { transfer::ganin_lambda(1.5); }, {"ganin_lambda", "progress", "1.5"});
  transfer::DomainDiscriminator disc(8, 16);
  const auto names = disc.state_dict();
  REQUIRE(names.size() == 6);
  CHECK(names[0].first == "layers.0.weight");
  CHECK(names[2].first == "layers.3.weight");
  CHECK(names[4].first == "layers.6.weight");
  disc.eval();
  CHECK(disc.forward(zeros({5, 8})).shape() == Shape({5}));
  require_error([&] { disc.forward(zeros({5, 8, 1})); }, {"DomainDiscriminator", "[B, F]", "[5, 8, 1]"});
}

TEST_CASE("transfer: a multi-task model has a shared trunk and named heads", "[transfer]") {
  auto trunk = std::make_shared<nn::Linear>(6, 4);
  transfer::MultiTaskModel model(trunk, {{"digit", std::make_shared<nn::Linear>(4, 10)},
                                         {"parity", std::make_shared<nn::Linear>(4, 2)}});
  const auto sd = model.state_dict();
  REQUIRE(sd.size() == 6);
  CHECK(sd[0].first == "trunk.weight");
  CHECK(sd[2].first == "heads.digit.weight");
  CHECK(sd[4].first == "heads.parity.weight");
  const auto outs = model.forward_tasks(zeros({3, 6}));
  REQUIRE(outs.size() == 2);
  CHECK(outs[0].first == "digit");
  CHECK(outs[0].second.shape() == Shape({3, 10}));
  CHECK(outs[1].second.shape() == Shape({3, 2}));
  CHECK(model.head("parity")->find_tensor("weight").shape() == Shape({2, 4}));
  require_error([&] { model.head("age"); }, {"MultiTaskModel", "no head", "age"});
  require_error([&] { transfer::MultiTaskModel(trunk, {{"a", trunk}, {"a", trunk}}); }, {"two heads", "'a'"});
}

TEST_CASE("transfer: fixed and uncertainty weighting", "[transfer]") {
  Tensor w = transfer_leaf({1.0, 2.0});
  SECTION("fixed: the gradient is sum_i w_i dL_i") {
    transfer::FixedWeighting fixed({0.25, 2.0});
    fixed.backward({transfer_dot(w, {1, 0}), transfer_dot(w, {0, 3})}, {w});
    GRAFT_REQUIRE_CLOSE(w.grad(), from_vector<double>({0.25, 6.0}, {2}), kTolF64);
  }
  SECTION("uncertainty: 0.5 exp(-s) L + 0.5 s, minimized at s = log L") {
    transfer::UncertaintyWeighting uw(2);
    const std::vector<Tensor> losses = {mul(sum(w), 0.0 + 1.0) /*3*/, mul(w.select(0, 0), 0.5) /*0.5*/};
    const Tensor total = uw.combine(losses);
    CHECK(std::abs(total.item() - (0.5 * 3.0 + 0.5 * 0.5)) < 1e-12);
    total.backward();
    // d/ds_i = -0.5 exp(-s_i) L_i + 0.5 at s = 0; d/dw = 0.5 dL_0 + 0.5 dL_1.
    GRAFT_REQUIRE_CLOSE(uw.log_vars().grad(), from_vector<float>({-1.0f, 0.25f}, {2}), kTolF32);
    GRAFT_REQUIRE_CLOSE(w.grad(), from_vector<double>({0.75, 0.5}, {2}), kTolF64);
    CHECK(uw.weights() == std::vector<double>{0.5, 0.5});
  }
  require_error([&] { transfer::FixedWeighting({1.0}).backward({sum(w), sum(w)}, {w}); },
                {"FixedWeighting", "2 losses", "1 tasks"});
  require_error([&] { transfer::FixedWeighting({1.0}).backward({w}, {w}); },
                {"FixedWeighting", "task 0", "scalar", "[2]"});
  require_error([&] { transfer::FixedWeighting({1.0}).backward({mul(sum(w), NAN)}, {w}); },
                {"FixedWeighting", "task 0", "not finite"});
}

TEST_CASE("transfer: uncertainty weights settle at s = log L", "[transfer]") {
  transfer::UncertaintyWeighting uw(2);
  Tensor s = uw.log_vars();
  {
    NoGradGuard ng;
    s.copy_(from_vector<float>({float(std::log(3.0)), float(std::log(0.5))}, {2}));
  }
  uw.combine({full({}, 3.0, DType::Float32), full({}, 0.5, DType::Float32)}).backward();
  GRAFT_REQUIRE_CLOSE(s.grad(), zeros({2}), kTolF32);
}

TEST_CASE("transfer: GradNorm moves the weights toward equal weighted gradient norms", "[transfer]") {
  // W = (1, 1); L1 = 3 W0 (|dL1/dW| = 3), L2 = 0.5 (W0 + W1) (|dL2/dW| = sqrt(0.5)).
  Tensor W = transfer_leaf({1.0, 1.0});
  transfer::GradNorm gn(2, /*alpha=*/1.5, /*lr=*/0.1);
  gn.backward({transfer_dot(W, {3, 0}), transfer_dot(W, {0.5, 0.5})}, {W});
  // The network's gradient uses this step's weights (1, 1).
  GRAFT_REQUIRE_CLOSE(W.grad(), from_vector<double>({3.5, 0.5}, {2}), kTolF64);
  // First step: both loss ratios are 1, so both targets are mean(G) = (3 + sqrt(.5)) / 2.
  const double n2 = std::sqrt(0.5), target = (3.0 + n2) / 2.0;
  CHECK(std::abs(gn.last_targets()[0] - target) < 1e-12);
  CHECK(std::abs(gn.last_targets()[1] - target) < 1e-12);
  // G1 = 3 > target: w1 -= 0.1 * 3; G2 < target: w2 += 0.1 * sqrt(.5); then renormalized to sum 2.
  const double w1 = 1.0 - 0.3, w2 = 1.0 + 0.1 * n2, norm = 2.0 / (w1 + w2);
  CHECK(std::abs(gn.weights()[0] - w1 * norm) < 1e-12);
  CHECK(std::abs(gn.weights()[1] - w2 * norm) < 1e-12);
  // Second step: task 1's loss fell to half its start, task 2's stayed: r = (0.5, 1) / 0.75, and the
  // slower task gets the larger target.
  W.zero_grad();
  gn.backward({mul(transfer_dot(W, {3, 0}), 0.5), transfer_dot(W, {0.5, 0.5})}, {W});
  CHECK(gn.last_targets()[1] > gn.last_targets()[0]);
  const double ratio = std::pow(1.0 / 0.5, 1.5);
  CHECK(std::abs(gn.last_targets()[1] / gn.last_targets()[0] - ratio) < 1e-9);
  require_error([&] { transfer::GradNorm(2).backward({sum(W), mul(sum(W), 0.0)}, {W}); },
                {"GradNorm", "first loss of task 1", "0"});
}

TEST_CASE("transfer: PCGrad projects conflicting gradients onto each other's normal plane", "[transfer]") {
  transfer::PCGrad pc(2);
  // g1 = (1, 0), g2 = (-1, 1) conflict (dot -1): g1' = g1 + 0.5 g2 = (0.5, 0.5), g2' = g2 + g1 = (0, 1).
  auto sum_pc = pc.project({{1, 0}, {-1, 1}});
  CHECK(std::abs(sum_pc[0] - 0.5) < 1e-15);
  CHECK(std::abs(sum_pc[1] - 1.5) < 1e-15);
  // No conflict: the plain sum.
  sum_pc = pc.project({{1, 0}, {1, 1}});
  CHECK(sum_pc == std::vector<double>{2, 1});
  // Three tasks: each projected gradient no longer conflicts with the task last projected against.
  transfer::PCGrad pc3(3, 7);
  sum_pc = pc3.project({{1, 0, 0}, {-1, 1, 0}, {0, -1, 1}});
  CHECK(sum_pc.size() == 3);
  // Through backward: the shared parameter gets the projected sum, the heads the plain gradients.
  Tensor W = transfer_leaf({0.3, -0.2});
  Tensor h = transfer_leaf({2.0});
  transfer::PCGrad pcb(2);
  pcb.backward({add(transfer_dot(W, {1, 0}), sum(h)), mul(transfer_dot(W, {-1, 1}), sum(h))}, {W});
  // dL2/dW = h (-1, 1) = (-2, 2): conflicts with (1, 0): g1' = (1,0) + 0.5 * ... computed by hand:
  // g1 . g2 = -2, |g2|^2 = 8: g1' = (1, 0) + 0.25 (-2, 2) = (0.5, 0.5); g2 . g1 = -2, |g1|^2 = 1:
  // g2' = (-2, 2) + 2 (1, 0) = (0, 2). Sum (0.5, 2.5).
  GRAFT_REQUIRE_CLOSE(W.grad(), from_vector<double>({0.5, 2.5}, {2}), kTolF64);
  // h: d/dh (sum(h) + W.(-1,1) h) = 1 + (-0.3 - 0.2) = 0.5.
  GRAFT_REQUIRE_CLOSE(h.grad(), from_vector<double>({0.5}, {1}), kTolF64);
  require_error([&] { pcb.backward({sum(W), sum(W)}, {}); }, {"PCGrad", "shared parameters"});
}
