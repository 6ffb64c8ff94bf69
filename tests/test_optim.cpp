// tests/test_optim.cpp - optimizers with parameter groups, their state dicts, gradient clipping and
// accumulation, schedules, and parameter groups from names, against PyTorch 1.13
// (tests/data/optim/optim_golden.bin, written by tools/gen_optim_goldens.py) and by hand.
#include <cmath>

#include "golden.hpp"
#include "harness.hpp"
#include "graft/nn.hpp"
#include "graft/optim/adam.hpp"
#include "graft/optim/clip.hpp"
#include "graft/optim/param_groups.hpp"
#include "graft/optim/schedule.hpp"
#include "graft/optim/sgd.hpp"

namespace {

using namespace graft;
using graft_test::GoldenCase;
using graft_test::kTolF32;
using graft_test::require_error;

const GoldenCase& optim_case(const std::string& name) {
  static const graft_test::GoldenFile file = graft_test::read_golden(GRAFT_TEST_DATA_DIR "/optim/optim_golden.bin");
  for (const auto& c : file.cases)
    if (c.name == name) return c;
  throw Error("test_optim: no golden case '" + name + "'");
}

double optim_attr(const GoldenCase& c, const std::string& name) { return c.at("attr_" + name).item(); }

// Fresh leaf parameters p0, p1 (group 0) and p2 (group 1) from the case.
std::vector<Tensor> optim_params(const GoldenCase& c) {
  std::vector<Tensor> ps;
  for (int k = 0; k < 3; ++k) {
    Tensor p = c.at("p" + std::to_string(k)).clone();
    p.set_requires_grad(true);
    ps.push_back(p);
  }
  return ps;
}

std::vector<optim::ParamGroup> optim_groups(const GoldenCase& c, const std::vector<Tensor>& ps) {
  return {optim::ParamGroup{"first", {ps[0], ps[1]}, optim_attr(c, "lr0"), optim_attr(c, "wd0")},
          optim::ParamGroup{"second", {ps[2]}, optim_attr(c, "lr1"), optim_attr(c, "wd1")}};
}

// Runs the case's steps (gradients fed in, a missing one leaves .grad unset) and checks each step.
void optim_run_steps(optim::Optimizer& opt, const GoldenCase& c, std::vector<Tensor>& ps, int from = 0, int to = 4) {
  for (int s = from; s < to; ++s) {
    for (int k = 0; k < 3; ++k) {
      const std::string key = "g" + std::to_string(s) + "_" + std::to_string(k);
      if (c.has(key)) ps[k].set_grad(c.at(key).clone());
      else ps[k].zero_grad();
    }
    opt.step();
    for (int k = 0; k < 3; ++k) {
      INFO("step " << s << ", p" << k);
      GRAFT_REQUIRE_CLOSE(ps[k], c.at("p" + std::to_string(k) + "_after" + std::to_string(s)), kTolF32);
    }
  }
}

}  // namespace

TEST_CASE("optim: Adam with two parameter groups matches torch.optim.Adam step for step", "[optim][golden]") {
  const GoldenCase& c = optim_case("adam");
  auto ps = optim_params(c);
  optim::Adam opt(optim_groups(c, ps), 1.0, {optim_attr(c, "beta1"), optim_attr(c, "beta2")}, optim_attr(c, "eps"));
  optim_run_steps(opt, c, ps);
  for (int k = 0; k < 3; ++k) {
    const size_t g = k < 2 ? 0 : 1, i = k < 2 ? k : 0;
    const std::string pre = "state_" + std::to_string(k) + "_";
    CHECK(opt.state(g, i, "step").item() == c.at(pre + "step").item());
    GRAFT_REQUIRE_CLOSE(opt.state(g, i, "exp_avg"), c.at(pre + "exp_avg"), kTolF32);
    GRAFT_REQUIRE_CLOSE(opt.state(g, i, "exp_avg_sq"), c.at(pre + "exp_avg_sq"), kTolF32);
  }
  CHECK(opt.state(0, 1, "step").item() == 3.0);  // p1 had no gradient at step 1
}

TEST_CASE("optim: AdamW (decoupled weight decay) matches torch.optim.AdamW", "[optim][golden]") {
  const GoldenCase& c = optim_case("adamw");
  auto ps = optim_params(c);
  optim::AdamW opt(optim_groups(c, ps), 1.0, {optim_attr(c, "beta1"), optim_attr(c, "beta2")}, optim_attr(c, "eps"));
  optim_run_steps(opt, c, ps);
}

TEST_CASE("optim: SGD with Nesterov momentum and per-group lr / weight decay matches torch", "[optim][golden]") {
  const GoldenCase& c = optim_case("sgd_nesterov");
  auto ps = optim_params(c);
  optim::SGD opt(optim_groups(c, ps), 1.0, optim_attr(c, "momentum"), 0.0, 0.0, /*nesterov=*/true);
  CHECK(opt.param_groups()[1].name == "second");
  CHECK(opt.param_groups()[1].initial_lr == optim_attr(c, "lr1"));
  optim_run_steps(opt, c, ps);
}

TEST_CASE("optim: a resumed optimizer continues exactly (state_dict round trip)", "[optim]") {
  const GoldenCase& c = optim_case("adamw");
  auto ps = optim_params(c);
  optim::AdamW first(optim_groups(c, ps), 1.0, {optim_attr(c, "beta1"), optim_attr(c, "beta2")}, optim_attr(c, "eps"));
  optim_run_steps(first, c, ps, 0, 2);
  const optim::NamedTensors saved = first.state_dict();
  // A new optimizer over copies of the parameters, with other hyper-parameters: the state dict wins.
  std::vector<Tensor> qs;
  for (const Tensor& p : ps) {
    Tensor q = p.detach().clone();
    q.set_requires_grad(true);
    qs.push_back(q);
  }
  optim::AdamW resumed({{"a", {qs[0], qs[1]}, 0.5}, {"b", {qs[2]}, 0.5}}, 1.0,
                       {optim_attr(c, "beta1"), optim_attr(c, "beta2")}, optim_attr(c, "eps"));
  resumed.load_state_dict(saved);
  CHECK(resumed.param_groups()[0].lr == optim_attr(c, "lr0"));
  optim_run_steps(resumed, c, qs, 2, 4);
  // Errors name the key.
  optim::NamedTensors missing(saved.begin() + 1, saved.end());
  require_error([&] { resumed.load_state_dict(missing); }, {"AdamW", "missing key", "param_groups.0.lr"});
  optim::NamedTensors extra = saved;
  extra.emplace_back("state.5.0.exp_avg", zeros({1}));
  require_error([&] { resumed.load_state_dict(extra); }, {"AdamW", "unexpected key", "state.5.0.exp_avg"});
  optim::NamedTensors wrong = saved;
  for (auto& [k, t] : wrong)
    if (k == "state.0.0.exp_avg") t = zeros({4, 3});
  require_error([&] { resumed.load_state_dict(wrong); }, {"AdamW", "state.0.0.exp_avg", "[4, 3]", "[3, 4]"});
}

TEST_CASE("optim: clip_grad_norm_ matches torch (2-norm and inf-norm)", "[optim][golden]") {
  for (const char* name : {"clip_norm2", "clip_norm_inf"}) {
    INFO(name);
    const GoldenCase& c = optim_case(name);
    std::vector<Tensor> ps;
    for (int k = 0; k < 2; ++k) {
      Tensor p = zeros(c.at("g" + std::to_string(k)).shape());
      p.set_requires_grad(true);
      p.set_grad(c.at("g" + std::to_string(k)).clone());
      ps.push_back(p);
    }
    const double total = optim::clip_grad_norm_(ps, optim_attr(c, "max_norm"), optim_attr(c, "norm_type"));
    CHECK(std::abs(total - c.at("total").item()) <= 1e-5 * std::abs(c.at("total").item()));
    for (int k = 0; k < 2; ++k) GRAFT_REQUIRE_CLOSE(ps[k].grad(), c.at("clipped" + std::to_string(k)), kTolF32);
  }
}

TEST_CASE("optim: clipping leaves small gradients alone, clamps values, and names a non-finite gradient",
          "[optim]") {
  Tensor p = zeros({3});
  p.set_requires_grad(true);
  p.set_grad(from_vector<float>({0.1f, -0.2f, 0.2f}, {3}));
  CHECK(std::abs(optim::clip_grad_norm_({p}, 10.0) - 0.3) < 1e-7);
  GRAFT_REQUIRE_CLOSE(p.grad(), from_vector<float>({0.1f, -0.2f, 0.2f}, {3}), kTolF32);
  optim::clip_grad_value_({p}, 0.15);
  GRAFT_REQUIRE_CLOSE(p.grad(), from_vector<float>({0.1f, -0.15f, 0.15f}, {3}), kTolF32);
  p.set_grad(from_vector<float>({0.1f, NAN, 0.2f}, {3}));
  p.set_name("head.weight");
  require_error([&] { optim::clip_grad_norm_({p}, 1.0); }, {"clip_grad_norm_", "parameter 0", "head.weight", "nan"});
  CHECK(std::isnan(optim::clip_grad_norm_({p}, 1.0, 2.0, /*error_if_nonfinite=*/false)));
}

TEST_CASE("optim: gradient accumulation over two half batches equals one full batch", "[optim]") {
  const Tensor x = graft_test::rand_in({8, 5}, -1, 1, 11, DType::Float32);
  const Tensor y = graft_test::rand_in({8, 2}, -1, 1, 12, DType::Float32);
  auto make = [] {
    Tensor w = graft_test::rand_in({2, 5}, -1, 1, 13, DType::Float32);
    w.set_requires_grad(true);
    return w;
  };
  Tensor full_w = make(), acc_w = make();
  mse_loss(linear(x, full_w), y).backward();
  for (int half = 0; half < 2; ++half)  // mean loss per half, scaled by 1 / accumulation steps
    mul(mse_loss(linear(x.narrow(0, 4 * half, 4), acc_w), y.narrow(0, 4 * half, 4)), 0.5).backward();
  GRAFT_REQUIRE_CLOSE(acc_w.grad(), full_w.grad(), kTolF32);
}

TEST_CASE("optim: StepLR and cosine-with-warmup factors match torch and transformers", "[optim][golden]") {
  const std::vector<double> step_lr = optim_case("step_lr").at("factors").to_vector();
  optim::StepLR s(7, 0.5);
  for (size_t i = 0; i < step_lr.size(); ++i) CHECK(std::abs(s.factor(int64_t(i)) - step_lr[i]) < 1e-12);
  const std::vector<double> cosine = optim_case("cosine_warmup").at("factors").to_vector();
  optim::CosineWithWarmup cw(5, 30);
  // Steps 0..30 (the last is total_steps): past the end transformers' curve rises again, Graft's
  // stays at its minimum (checked below).
  for (size_t i = 0; i <= 30; ++i) {
    INFO("step " << i);
    CHECK(std::abs(cw.factor(int64_t(i)) - cosine[i]) < 1e-12);
  }
}

TEST_CASE("optim: schedules scale each group's initial lr; Ganin's annealing", "[optim]") {
  Tensor a = zeros({2}), b = zeros({2});
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  optim::SGD opt({{"backbone", {a}, 0.01}, {"head", {b}, 0.1}}, 0.5);
  optim::GaninAnnealing ganin(100);
  ganin.apply(opt, 50);
  const double f = 1.0 / std::pow(1.0 + 10.0 * 0.5, 0.75);
  CHECK(std::abs(opt.param_groups()[0].lr - 0.01 * f) < 1e-15);
  CHECK(std::abs(opt.param_groups()[1].lr - 0.1 * f) < 1e-15);
  CHECK(ganin.factor(0) == 1.0);
  CHECK(std::abs(ganin.factor(1000) - std::pow(11.0, -0.75)) < 1e-15);  // p clamps at 1
  CHECK(optim::CosineWithWarmup(5, 30).factor(39) == 0.0);
  optim::CosineWithWarmup cw(10, 110, 0.1);
  CHECK(cw.factor(5) == 0.5);
  CHECK(std::abs(cw.factor(110) - 0.1) < 1e-15);
  require_error([] { optim::CosineWithWarmup(10, 10); }, {"CosineWithWarmup", "warmup_steps 10", "total_steps 10"});
  require_error([] { optim::StepLR(0); }, {"StepLR", "step_size", "0"});
  require_error([&] { ganin.apply(opt, -1); }, {"Schedule", "step", "-1"});
}

TEST_CASE("optim: weight-decay and layer-wise lr-decay groups from names", "[optim]") {
  nn::Sequential net;
  net.push_back(std::make_shared<nn::Linear>(4, 8));
  net.push_back(std::make_shared<nn::LayerNorm>(8));
  net.push_back(std::make_shared<nn::Linear>(8, 8));
  net.push_back(std::make_shared<nn::Linear>(8, 3));
  auto wd = optim::weight_decay_groups(net, 0.05);
  REQUIRE(wd.size() == 2);
  CHECK(wd[0].name == "no_decay");
  CHECK(wd[0].params.size() == 5);  // three biases, the LayerNorm's weight and bias
  CHECK(wd[1].params.size() == 3);
  CHECK(wd[1].weight_decay == 0.05);
  // ids: 0 = {0., 1.}, 1 = 2., head (2) = 3.; decay 0.5 -> lr scales 0.25, 0.5, 1.
  net.child("2")->requires_grad_(true);
  auto groups = optim::layer_decay_groups(net, 1e-3, 0.05, 0.5, optim::layer_ids_by_prefix({{"0.", "1."}, {"2."}}));
  REQUIRE(groups.size() == 6);
  CHECK(groups[0].name == "layer0.decay");
  CHECK(std::abs(groups[0].lr - 0.25e-3) < 1e-18);
  CHECK(groups[0].params.size() == 1);
  CHECK(groups[1].name == "layer0.no_decay");
  CHECK(groups[1].params.size() == 3);
  CHECK(groups[1].weight_decay == 0.0);
  CHECK(std::abs(groups[2].lr - 0.5e-3) < 1e-18);
  CHECK(groups[5].name == "layer2.no_decay");
  CHECK(groups[5].lr == 1e-3);
  // Frozen parameters are left out; an optimizer over the groups takes their lrs.
  net.child("0")->requires_grad_(false);
  auto fewer = optim::layer_decay_groups(net, 1e-3, 0.05, 0.5, optim::layer_ids_by_prefix({{"0.", "1."}, {"2."}}));
  CHECK(fewer[0].params.size() == 2);  // only the LayerNorm's weight and bias in layer 0
  optim::AdamW opt(fewer, 1e-3);
  CHECK(std::abs(opt.param_groups()[0].lr - 0.25e-3) < 1e-18);
}

TEST_CASE("optim: bad configurations throw naming the problem", "[optim]") {
  Tensor a = zeros({2});
  a.set_requires_grad(true);
  require_error([&] { optim::Adam({a}, 1e-3, {1.0, 0.999}); }, {"Adam", "beta1", "1"});
  require_error([&] { optim::AdamW({a}, 1e-3, {0.9, -0.1}); }, {"AdamW", "beta2", "-0.1"});
  require_error([&] { optim::Adam({a}, -1e-3); }, {"Adam", "learning rate", "-0.001"});
  require_error([&] { optim::AdamW({{"head", {a}, 0.1, -1.0}}, 1e-3); }, {"AdamW", "group 'head'", "weight_decay"});
  require_error([&] { optim::SGD({{"x", {a}}, {"y", {a}}}, 0.1); }, {"SGD", "group 'y'", "appears twice"});
  require_error([&] { optim::SGD(std::vector<optim::ParamGroup>{}, 0.1); }, {"SGD", "no parameter groups"});
  optim::Adam opt({a}, 1e-3);
  opt.step();  // no gradient yet: nothing to do
  CHECK(!opt.state(0, 0, "step").defined());
  require_error([&] { a.set_grad(zeros({3})); }, {"set_grad", "[3]", "[2]"});
}
