// tests/test_mobilenet.cpp - MobileNetV2, MobileNetV3-Small and MobileNetV3-Large (torchvision 0.14's
// names) against torchvision.
//
// Committed data: tests/data/mobilenet/mobilenet_keys.bin, torchvision's state_dict keys and shapes of
// the three archs (and of mobilenet_v2 at width 1.4, mobilenet_v3_large at 0.75), written by
// `$GRAFT_PYTHON tools/gen_mobilenet_goldens.py`.
// Big data, generated on demand: `source tools/pyenv.sh && $GRAFT_PYTHON tools/gen_mobilenet_goldens.py DIR`
// writes seeded weights (BatchNorm statistics conditioned as a trained network's, see the generator)
// with eval-mode features and logits for each arch, and one float64 training-mode forward + backward
// of mobilenet_v3_small; the "[big]" cases read them from $GRAFT_MODEL_DATA and FAIL, saying how to
// make them, when the variable is unset or a file is missing.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "golden.hpp"
#include "model_keys.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/models/mobilenet.hpp"
#include "graft/nn.hpp"
#include "harness.hpp"

namespace {

using namespace graft;
using graft_test::GoldenCase;
using graft_test::kTolF32;
using graft_test::kTolF64;

const GoldenCase& mobilenet_keys_case(const std::string& name) {
  static const graft_test::GoldenFile file =
      graft_test::read_golden(GRAFT_TEST_DATA_DIR "/mobilenet/mobilenet_keys.bin");
  for (const auto& c : file.cases)
    if (c.name == name) return c;
  throw Error("test_mobilenet: no golden case '" + name + "'");
}

// $GRAFT_MODEL_DATA/<file>, or a test failure that says how to generate it.
std::string mobilenet_big_file(const std::string& file) {
  return graft_test::model_data_file(file, "tools/gen_mobilenet_goldens.py");
}

void mobilenet_require_same_keys(nn::Module& m, const std::string& case_name) {
  graft_test::require_same_keys(m.state_dict(), mobilenet_keys_case(case_name));
}

// The three archs by torchvision name, freshly built (1000 classes, 3 channels).
std::vector<std::pair<std::string, std::shared_ptr<models::ImageClassifier>>> mobilenet_archs() {
  return {{"mobilenet_v2", models::mobilenet_v2()},
          {"mobilenet_v3_small", models::mobilenet_v3_small()},
          {"mobilenet_v3_large", models::mobilenet_v3_large()}};
}

// Loads <name>.safetensors strictly (eval mode) and returns the golden case <name>.
GoldenCase mobilenet_load_big(models::ImageClassifier& model, const std::string& name) {
  REQUIRE(model.load_state_dict(io::load_safetensors(mobilenet_big_file(name + ".safetensors"))).ok());
  model.eval();
  const graft_test::GoldenFile file = graft_test::read_golden(mobilenet_big_file(name + "_golden.bin"));
  REQUIRE(file.cases.size() == 1);
  REQUIRE(file.cases[0].name == name);
  return file.cases[0];
}

double mobilenet_std(const Tensor& t) {
  const std::vector<double> v = t.to_vector();
  double mean = 0, sq = 0;
  for (double x : v) mean += x;
  mean /= double(v.size());
  for (double x : v) sq += (x - mean) * (x - mean);
  return std::sqrt(sq / double(v.size()));
}

}  // namespace

TEST_CASE("mobilenet: state_dict keys and shapes equal torchvision's", "[mobilenet]") {
  auto v2 = models::mobilenet_v2();
  auto small = models::mobilenet_v3_small();
  auto large = models::mobilenet_v3_large();
  mobilenet_require_same_keys(*v2, "keys_mobilenet_v2");
  mobilenet_require_same_keys(*small, "keys_mobilenet_v3_small");
  mobilenet_require_same_keys(*large, "keys_mobilenet_v3_large");
  CHECK(v2->num_parameters() == 3504872);  // torchvision's counts (the weights' meta "num_params")
  CHECK(small->num_parameters() == 2542856);
  CHECK(large->num_parameters() == 5483032);
  // Other widths exercise _make_divisible everywhere it is applied.
  models::MobileNetV2Config wide;
  wide.width_mult = 1.4;
  mobilenet_require_same_keys(*std::make_shared<models::MobileNetV2>(wide), "keys_mobilenet_v2_w140");
  models::MobileNetV3Config narrow;
  narrow.width_mult = 0.75;
  mobilenet_require_same_keys(*std::make_shared<models::MobileNetV3>(narrow), "keys_mobilenet_v3_large_w075");

  using models::detail_mobilenet::make_divisible;
  CHECK(make_divisible(32 * 1.4) == 48);   // 44.8 -> 48
  CHECK(make_divisible(72 * 0.75) == 56);  // 54 -> 56
  CHECK(make_divisible(240 / 4) == 64);    // an SE squeeze width: 60 -> 64
  CHECK(make_divisible(3) == 8);           // never below the divisor
  CHECK(make_divisible(16 * 0.35) == 8);

  CHECK(v2->features->size() == 19);
  CHECK(small->features->size() == 13);
  CHECK(large->features->size() == 17);
  auto b1 = std::dynamic_pointer_cast<models::MobileNetV2InvertedResidual>((*v2->features)[1]);
  REQUIRE(b1 != nullptr);
  CHECK(!b1->use_res_connect());
  CHECK(b1->conv->size() == 3);  // t = 1: no expansion conv
  CHECK(std::dynamic_pointer_cast<models::MobileNetV2InvertedResidual>((*v2->features)[3])->use_res_connect());
  auto s4 = std::dynamic_pointer_cast<models::MobileNetV3InvertedResidual>((*small->features)[4]);
  REQUIRE(s4 != nullptr);
  CHECK(!s4->use_res_connect());
  CHECK(std::dynamic_pointer_cast<models::MobileNetV3InvertedResidual>((*small->features)[5])->use_res_connect());
  CHECK((*s4->block)[2]->type_name() == "SqueezeExcitation");
  // BatchNorm: torch's defaults in V2, eps 1e-3 / momentum 0.01 in V3.
  auto bn_of = [](const nn::ModulePtr& conv_norm_act) {
    return std::dynamic_pointer_cast<nn::BatchNorm2d>((*std::dynamic_pointer_cast<nn::Sequential>(conv_norm_act))[1]);
  };
  CHECK(bn_of((*v2->features)[0])->options.eps == 1e-5);
  CHECK(bn_of((*v2->features)[0])->options.momentum.value() == 0.1);
  CHECK(bn_of((*large->features)[0])->options.eps == 1e-3);
  CHECK(bn_of((*large->features)[0])->options.momentum.value() == 0.01);
  CHECK(bn_of((*s4->block)[3])->options.eps == 1e-3);
}

TEST_CASE("mobilenet: initialization follows torchvision's", "[mobilenet]") {
  auto model = models::mobilenet_v3_small();
  const nn::StateDict sd = model->state_dict();
  auto get = [&](const std::string& key) {
    for (const auto& [k, t] : sd)
      if (k == key) return t;
    FAIL("no key " << key);
    return Tensor();
  };
  // kaiming_normal_(fan_out): std sqrt(2 / fan_out); 55296 and 82944 samples, so 5% is > 10 sigma.
  auto relative_std = [&](const std::string& key, double expected) { return mobilenet_std(get(key)) / expected; };
  CHECK(std::abs(relative_std("features.12.0.weight", std::sqrt(2.0 / 576)) - 1) < 0.05);  // [576, 96, 1, 1]
  CHECK(std::abs(relative_std("features.10.block.2.fc1.weight", std::sqrt(2.0 / 144)) - 1) < 0.05);  // [144, 576, 1, 1]
  CHECK(std::abs(relative_std("classifier.0.weight", 0.01) - 1) < 0.05);  // N(0, 0.01)
  for (const char* zero :
       {"features.10.block.2.fc1.bias", "classifier.0.bias", "classifier.3.bias", "features.0.1.bias"})
    CHECK(graft_test::max_abs_diff(get(zero), zeros_like(get(zero))) == 0.0);
  CHECK(graft_test::max_abs_diff(get("features.0.1.weight"), ones({16})) == 0.0);
}

TEST_CASE("mobilenet: the ImageClassifier interface through a base pointer", "[mobilenet]") {
  struct Expect {
    int64_t num_features, hidden;
    std::string head;
  };
  const std::vector<Expect> expect = {
      {1280, 1280, "classifier.1"}, {576, 1024, "classifier.3"}, {960, 1280, "classifier.3"}};
  auto archs = mobilenet_archs();
  for (size_t i = 0; i < archs.size(); ++i) {
    models::ImageClassifier& net = *archs[i].second;
    INFO(archs[i].first);
    net.eval();
    CHECK(net.num_features() == expect[i].num_features);
    CHECK(net.head_hidden_size() == expect[i].hidden);
    CHECK(net.in_chans() == 3);
    CHECK(net.classifier_name() == expect[i].head);
    CHECK(net.classifier().type_name() == "Linear");
    CHECK(net.classifier().find_tensor("weight").shape() == Shape({1000, expect[i].hidden}));
    const Tensor x = graft_test::rand_in({2, 3, 40, 33}, -1.0, 1.0, 10 + i, DType::Float32);
    NoGradGuard no_grad;
    const Tensor f = net.forward_features(x);
    CHECK(f.shape() == Shape({2, expect[i].num_features}));
    CHECK(net.forward_head(f, /*pre_logits=*/true).shape() == Shape({2, expect[i].hidden}));
    const Tensor logits = net.forward(x);
    CHECK(logits.shape() == Shape({2, 1000}));
    GRAFT_REQUIRE_CLOSE(logits, net.forward_head(f), kTolF32);
    GRAFT_REQUIRE_CLOSE(net.classifier().forward(net.forward_head(f, true)), logits, kTolF32);
  }
}

TEST_CASE("mobilenet: reset_classifier replaces only the last Linear; 0 = Identity", "[mobilenet]") {
  auto archs = mobilenet_archs();
  for (auto& [name, net] : archs) {
    INFO(name);
    net->eval();
    const nn::StateDict before = net->state_dict();
    const std::string prefix = net->classifier_name() + ".";
    net->reset_classifier(7);
    const nn::StateDict after = net->state_dict();
    REQUIRE(after.size() == before.size());
    for (size_t i = 0; i < after.size(); ++i) {
      REQUIRE(after[i].first == before[i].first);
      if (after[i].first.rfind(prefix, 0) == 0) continue;
      CHECK(after[i].second.impl() == before[i].second.impl());  // the backbone untouched
    }
    CHECK(net->classifier().find_tensor("weight").shape() == Shape({7, net->head_hidden_size()}));
    CHECK(!net->classifier().is_training());  // the new head takes the model's mode
    const Tensor x = graft_test::rand_in({2, 3, 32, 32}, -1.0, 1.0, 4, DType::Float32);
    NoGradGuard no_grad;
    CHECK(net->forward(x).shape() == Shape({2, 7}));
    const Tensor pre_logits = net->forward_head(net->forward_features(x), true);
    net->reset_classifier(0);
    CHECK(net->classifier().type_name() == "Identity");
    CHECK(net->state_dict().size() == before.size() - 2);
    GRAFT_REQUIRE_CLOSE(net->forward(x), pre_logits, kTolF32);  // forward now returns the pre-logits
    graft_test::require_error([&] { net->reset_classifier(-2); }, {"num_classes must be >= 0", "-2"});
  }
  // The head's module is what a state dict for another number of classes mis-shapes.
  auto ten = models::mobilenet_v3_small(10);
  const nn::LoadReport report = ten->load_state_dict(models::mobilenet_v3_small()->state_dict(), /*strict=*/false);
  CHECK(report.head == "classifier.3");
  CHECK(report.mismatched.size() == 2);
}

TEST_CASE("mobilenet: in_chans != 3 builds, and a 3-channel checkpoint does not load into it", "[mobilenet]") {
  auto gray = models::mobilenet_v3_small(10, 1);
  CHECK(gray->in_chans() == 1);
  CHECK(gray->features->parameters().front().shape() == Shape({16, 1, 3, 3}));  // features.0.0.weight
  auto v2 = models::mobilenet_v2(5, 4);
  CHECK(v2->features->parameters().front().shape() == Shape({32, 4, 3, 3}));
  gray->eval();
  v2->eval();
  NoGradGuard no_grad;
  CHECK(gray->forward(graft_test::rand_in({1, 1, 32, 32}, -1.0, 1.0, 5, DType::Float32)).shape() == Shape({1, 10}));
  CHECK(v2->forward(graft_test::rand_in({1, 4, 17, 23}, -1.0, 1.0, 6, DType::Float32)).shape() == Shape({1, 5}));
  const nn::StateDict rgb = models::mobilenet_v3_large()->state_dict();
  graft_test::require_error([&] { models::mobilenet_v3_large(1000, 1)->load_state_dict(rgb); },
                            {"load_state_dict", "features.0.0.weight", "[16, 1, 3, 3]", "[16, 3, 3, 3]"});
}

TEST_CASE("mobilenet: forward_intermediates names and shapes", "[mobilenet]") {
  auto v2 = models::mobilenet_v2();
  auto small = models::mobilenet_v3_small();
  auto large = models::mobilenet_v3_large();
  const std::vector<std::string> v2_names = v2->feature_names();
  REQUIRE(v2_names.size() == 20);
  CHECK(v2_names.front() == "features.0");
  CHECK(v2_names[18] == "features.18");
  CHECK(v2_names.back() == "features");
  CHECK(small->feature_names().size() == 14);
  CHECK(large->feature_names().size() == 18);
  CHECK(large->feature_names()[16] == "features.16");

  const Tensor x = graft_test::rand_in({2, 3, 64, 64}, -1.0, 1.0, 7, DType::Float32);
  NoGradGuard no_grad;
  v2->eval();
  const auto f2 = v2->forward_intermediates(x, {"features.18", "features.0", "features.3", "features"});
  REQUIRE(f2.size() == 4);
  CHECK(f2[0].first == "features.18");
  CHECK(f2[0].second.shape() == Shape({2, 1280, 2, 2}));
  CHECK(f2[1].second.shape() == Shape({2, 32, 32, 32}));
  CHECK(f2[2].second.shape() == Shape({2, 24, 16, 16}));
  GRAFT_REQUIRE_CLOSE(f2[3].second, v2->forward_features(x), kTolF32);

  small->eval();
  const auto fs = small->forward_intermediates(x, {"features.1", "features.3", "features.12", "features"});
  CHECK(fs[0].second.shape() == Shape({2, 16, 16, 16}));  // block 1 has stride 2 (and squeeze-excitation)
  CHECK(fs[1].second.shape() == Shape({2, 24, 8, 8}));
  CHECK(fs[2].second.shape() == Shape({2, 576, 2, 2}));
  GRAFT_REQUIRE_CLOSE(fs[3].second, small->forward_features(x), kTolF32);

  large->eval();
  const auto fl = large->forward_intermediates(x, {"features.6", "features.16"});
  CHECK(fl[0].second.shape() == Shape({2, 40, 8, 8}));
  CHECK(fl[1].second.shape() == Shape({2, 960, 2, 2}));
  graft_test::require_error([&] { large->forward_intermediates(x, {"features.17"}); },
                            {"MobileNetV3", "no layer named 'features.17'", "features.16"});
}

TEST_CASE("mobilenet: bad inputs and configurations raise errors naming them", "[mobilenet]") {
  auto v2 = models::mobilenet_v2();
  auto small = models::mobilenet_v3_small();
  const Tensor one_channel = zeros({1, 1, 32, 32});
  graft_test::require_error([&] { v2->forward(one_channel); },
                            {"MobileNetV2", "expected input [B, 3, H, W]", "[1, 1, 32, 32]"});
  graft_test::require_error([&] { small->forward(one_channel); },
                            {"MobileNetV3", "expected input [B, 3, H, W]", "[1, 1, 32, 32]"});
  graft_test::require_error([&] { small->forward_intermediates(zeros({3, 32, 32}), {"features.0"}); },
                            {"MobileNetV3", "expected input", "[3, 32, 32]"});
  graft_test::require_error([&] { small->forward_head(zeros({2, 960})); }, {"Linear", "[*, 576]", "[2, 960]"});
  graft_test::require_error([] { models::mobilenet_v2(-1); }, {"MobileNetV2", "num_classes", "got -1 and 3"});
  graft_test::require_error([] { models::mobilenet_v3_large(10, 0); }, {"MobileNetV3", "in_chans", "got 10 and 0"});
  models::MobileNetV3Config cfg;
  cfg.width_mult = 0.0;
  graft_test::require_error([&] { models::MobileNetV3 m(cfg); }, {"MobileNetV3", "width_mult", "got 0"});
  models::MobileNetV2Config cfg2;
  cfg2.dropout = 1.0;
  graft_test::require_error([&] { models::MobileNetV2 m(cfg2); }, {"MobileNetV2", "dropout", "got 1"});
}

TEST_CASE("mobilenet: training mode reaches every parameter, a linear probe only the head", "[mobilenet]") {
  auto model = models::mobilenet_v3_small(5);
  model->train();
  const Tensor x = graft_test::rand_in({2, 3, 32, 32}, -1.0, 1.0, 8, DType::Float32);
  SECTION("full fine-tuning (dropout active)") {
    sum(model->forward(x)).backward();
    for (const auto& [name, p] : model->named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined());
    }
    auto stem = std::dynamic_pointer_cast<nn::Sequential>((*model->features)[0]);
    CHECK(std::dynamic_pointer_cast<nn::BatchNorm2d>((*stem)[1])->num_batches_tracked.item<int64_t>() == 1);
  }
  SECTION("linear probe") {
    model->requires_grad_(false);
    model->reset_classifier(3);
    sum(model->forward(x)).backward();
    for (const auto& [name, p] : model->named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined() == (name.rfind("classifier.3.", 0) == 0));
    }
  }
}

// ---- against torchvision: seeded weights -------------------------------------------------------
TEST_CASE("mobilenet: every arch loads torchvision's state_dict strictly and matches its features and logits",
          "[mobilenet][big]") {
  for (auto& [name, net] : mobilenet_archs()) {
    INFO(name);
    const GoldenCase c = mobilenet_load_big(*net, name);
    NoGradGuard no_grad;
    const Tensor features = net->forward_features(c.at("x"));
    GRAFT_REQUIRE_CLOSE(features, c.at("features"), kTolF32);
    const Tensor logits = net->forward(c.at("x"));
    GRAFT_REQUIRE_CLOSE(logits, c.at("out"), kTolF32);
    std::printf("[parity] %s: features max|diff| %.3g, logits max|diff| %.3g (max |logit| %.3g)\n", name.c_str(),
                graft_test::max_abs_diff(features, c.at("features")), graft_test::max_abs_diff(logits, c.at("out")),
                graft_test::max_abs_diff(c.at("out"), zeros_like(c.at("out"))));
  }
}

TEST_CASE("mobilenet: with BatchNorm folded into the convs every arch matches unfused and torchvision",
          "[mobilenet][big]") {
  // V2: stem, block 1 (no expansion) 2, 16 blocks x 3, last conv. V3: the same shape of count (the first
  // block has no expansion conv), 11 or 15 blocks.
  const std::vector<int64_t> pairs = {1 + 2 + 16 * 3 + 1, 1 + 2 + 10 * 3 + 1, 1 + 2 + 14 * 3 + 1};
  auto archs = mobilenet_archs();
  for (size_t i = 0; i < archs.size(); ++i) {
    auto& [name, net] = archs[i];
    INFO(name);
    const GoldenCase c = mobilenet_load_big(*net, name);
    NoGradGuard no_grad;
    const Tensor unfused = net->forward(c.at("x"));
    REQUIRE(net->fuse_for_inference() == pairs[i]);
    REQUIRE(net->fuse_for_inference() == 0);  // folded once only
    const Tensor fused = net->forward(c.at("x"));
    GRAFT_REQUIRE_CLOSE(fused, unfused, kTolF32);
    GRAFT_REQUIRE_CLOSE(fused, c.at("out"), kTolF32);
    std::printf("[parity] %s with BatchNorm folded: max|fused - unfused| %.3g, vs torchvision %.3g\n", name.c_str(),
                graft_test::max_abs_diff(fused, unfused), graft_test::max_abs_diff(fused, c.at("out")));
  }
}

// Training mode in float64 (kTolF64): BatchNorm on batch statistics (momentum 0.01 for the running
// ones), Hardswish, ReLU, squeeze-excitation with Hardsigmoid, depthwise 3x3 / 5x5 and pointwise convs,
// the residual adds and the Linear-Hardswish-Linear head all on the backward path; the logits, the
// loss, every parameter's gradient and every BatchNorm buffer after the step against torchvision's.
TEST_CASE("mobilenet: mobilenet_v3_small in training mode (float64) matches torchvision's gradients",
          "[mobilenet][big]") {
  const graft_test::GoldenFile file = graft_test::read_golden(mobilenet_big_file("mobilenet_train.bin"));
  REQUIRE(file.cases.size() == 1);
  const GoldenCase& c = file.cases[0];
  models::MobileNetV3Config cfg;
  cfg.arch = models::MobileNetV3Arch::Small;
  cfg.dropout = 0.0;  // no random mask: the same computation as the reference
  auto model = std::make_shared<models::MobileNetV3>(cfg);
  REQUIRE(model->load_state_dict(io::load_safetensors(mobilenet_big_file("mobilenet_v3_small.safetensors"))).ok());
  model->to(DType::Float64);
  model->train();
  const Tensor out = model->forward(c.at("x"));
  GRAFT_REQUIRE_CLOSE(out, c.at("out"), kTolF64);
  const Tensor loss = sum(mul(out, c.at("w")));
  GRAFT_REQUIRE_CLOSE(loss, c.at("loss"), kTolF64);
  loss.backward();
  double worst = 0;
  int64_t checked = 0;
  for (const auto& [name, p] : model->named_parameters()) {
    INFO("gradient of " << name);
    GRAFT_REQUIRE_CLOSE(p.grad(), c.at("grad." + name), kTolF64);
    worst = std::max(worst, graft_test::max_abs_diff(p.grad(), c.at("grad." + name)));
    ++checked;
  }
  CHECK(checked == 244 - 3 * 34);  // every parameter: 244 state_dict entries less 34 BatchNorms' 3 buffers
  int64_t buffers = 0;
  for (const auto& [key, t] : model->state_dict()) {
    if (!c.has("after." + key)) continue;
    INFO("after the step: " << key);
    ++buffers;
    const Tensor& expected = c.at("after." + key);
    if (key.ends_with("num_batches_tracked")) {
      CHECK(t.item<int64_t>() == expected.item<int64_t>());
      continue;
    }
    GRAFT_REQUIRE_CLOSE(t, expected, kTolF64);
  }
  CHECK(buffers == 3 * 34);
  std::printf("[parity] mobilenet_v3_small train mode (float64): %lld gradients, max|diff| %.3g\n",
              static_cast<long long>(checked), worst);
}
