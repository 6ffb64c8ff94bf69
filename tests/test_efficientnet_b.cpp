// tests/test_efficientnet_b.cpp - EfficientNet-B0..B3 (torchvision 0.14's names, models/efficientnet.hpp)
// against PyTorch.
//
// Committed data: tests/data/efficientnet_b/efficientnet_b_keys.bin, torchvision's state_dict keys and
// shapes for b0..b3 (written by `$GRAFT_PYTHON tools/gen_efficientnet_b_goldens.py`).
// Big data, generated on demand (~144 MB, ~15 s): `source tools/pyenv.sh && $GRAFT_PYTHON
// tools/gen_efficientnet_b_goldens.py DIR` writes seeded, calibrated b0..b3 weights with their eval-mode
// features, logits and a stage output at 64 x 64 (float32, and float64), and one float64 training-mode
// forward + backward of b0; the "[big]" cases read them from $GRAFT_MODEL_DATA and FAIL, saying how to
// make them, when the variable is unset or a file is missing.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "golden.hpp"
#include "model_keys.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/models/classifier.hpp"
#include "graft/models/efficientnet.hpp"
#include "graft/nn.hpp"
#include "harness.hpp"

namespace {

using namespace graft;
using graft_test::GoldenCase;
using graft_test::kTolF32;
using graft_test::kTolF64;

const std::vector<std::string> kEffnetBArchs = {"efficientnet_b0", "efficientnet_b1", "efficientnet_b2",
                                                "efficientnet_b3"};

std::shared_ptr<models::EfficientNet> effnet_b_make(int variant, int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<models::EfficientNet>(models::efficientnet_b_config(variant, num_classes, in_chans));
}

const GoldenCase& effnet_b_keys_case(const std::string& name) {
  static const graft_test::GoldenFile file =
      graft_test::read_golden(GRAFT_TEST_DATA_DIR "/efficientnet_b/efficientnet_b_keys.bin");
  for (const auto& c : file.cases)
    if (c.name == name) return c;
  throw Error("test_efficientnet_b: no golden case '" + name + "'");
}

// $GRAFT_MODEL_DATA/<file>, or a test failure that says how to generate it.
std::string effnet_b_big_file(const std::string& file) {
  return graft_test::model_data_file(file, "tools/gen_efficientnet_b_goldens.py");
}

// The generator's seeded, calibrated weights for b<variant>, loaded strictly (eval mode).
std::shared_ptr<models::EfficientNet> effnet_b_seeded(int variant) {
  auto model = effnet_b_make(variant);
  const nn::LoadReport report =
      model->load_state_dict(io::load_safetensors(effnet_b_big_file(kEffnetBArchs[size_t(variant)] + ".safetensors")));
  INFO(report.str());
  REQUIRE(report.ok());
  model->eval();
  return model;
}

void effnet_b_require_same_keys(nn::Module& m, const std::string& case_name) {
  graft_test::require_same_keys(m.state_dict(), effnet_b_keys_case(case_name));
}

std::shared_ptr<models::MBConv> effnet_b_block(models::EfficientNet& model, size_t stage, size_t j) {
  auto seq = std::dynamic_pointer_cast<nn::Sequential>((*model.features)[stage]);
  REQUIRE(seq != nullptr);
  auto block = std::dynamic_pointer_cast<models::MBConv>((*seq)[j]);
  REQUIRE(block != nullptr);
  return block;
}

}  // namespace

TEST_CASE("efficientnet_b: torchvision's channel and depth rounding", "[efficientnet_b]") {
  using models::detail_efficientnet::adjust_channels;
  using models::detail_efficientnet::adjust_depth;
  using models::detail_efficientnet::make_divisible;
  // b2 (width 1.1): 32 16 24 48 88 120 208 352; b3 (1.2): 40 24 32 48 96 136 232 384
  const std::vector<int64_t> base = {32, 16, 24, 40, 80, 112, 192, 320};
  const std::vector<int64_t> b2 = {32, 16, 24, 48, 88, 120, 208, 352}, b3 = {40, 24, 32, 48, 96, 136, 232, 384};
  for (size_t i = 0; i < base.size(); ++i) {
    INFO("channels " << base[i]);
    CHECK(adjust_channels(base[i], 1.1) == b2[i]);
    CHECK(adjust_channels(base[i], 1.2) == b3[i]);
    CHECK(adjust_channels(base[i], 1.0) == base[i]);
  }
  CHECK(make_divisible(3.0) == 8);     // at least the divisor
  CHECK(make_divisible(11.9) == 16);   // 8 would be more than 10% below
  CHECK(make_divisible(100.0) == 104);
  CHECK(adjust_depth(1, 1.1) == 2);    // every stage scales, the first and last included
  CHECK(adjust_depth(3, 1.1) == 4);
  CHECK(adjust_depth(4, 1.4) == 6);
  CHECK(adjust_depth(2, 1.0) == 2);
}

TEST_CASE("efficientnet_b: state_dict keys and shapes equal torchvision's", "[efficientnet_b]") {
  const int64_t params[] = {5288548, 7794184, 9109994, 12233232};  // torchvision's num_params
  const size_t blocks[] = {16, 23, 23, 26};
  const int64_t features[] = {1280, 1280, 1408, 1536};
  for (int v = 0; v < 4; ++v) {
    INFO(kEffnetBArchs[size_t(v)]);
    auto model = effnet_b_make(v);
    effnet_b_require_same_keys(*model, "keys_" + kEffnetBArchs[size_t(v)]);
    CHECK(model->num_parameters() == params[v]);
    CHECK(model->num_features() == features[v]);
    size_t n = 0;
    for (size_t s = 1; s <= 7; ++s) n += std::dynamic_pointer_cast<nn::Sequential>((*model->features)[s])->size();
    CHECK(n == blocks[v]);
  }
  // The builders are the configs above.
  CHECK(models::efficientnet_b0()->num_parameters() == params[0]);
  CHECK(models::efficientnet_b3()->config.dropout == 0.3);

  auto b0 = models::efficientnet_b0();
  CHECK(b0->type_name() == "EfficientNet");
  CHECK((*b0->features)[0]->type_name() == "Conv2dNormActivation");
  // features.1.0: no expand conv (e = 1), SE squeeze max(1, 32 // 4) = 8, no residual (32 -> 16)
  auto first = effnet_b_block(*b0, 1, 0);
  CHECK(first->block->size() == 3);
  CHECK(!first->use_res_connect);
  auto se = std::dynamic_pointer_cast<nn::SqueezeExcitation>((*first->block)[1]);
  REQUIRE(se != nullptr);
  CHECK(se->fc1->out_channels == 8);
  CHECK(se->activation->type_name() == "SiLU");
  CHECK(se->scale_activation->type_name() == "Sigmoid");
  // features.6.0: stride 2 depthwise 5x5 with padding 2; features.6.3: residual, the last block's rate
  auto down = effnet_b_block(*b0, 6, 0);
  CHECK(down->block->size() == 4);
  auto dw = std::dynamic_pointer_cast<nn::Conv2d>((*std::dynamic_pointer_cast<nn::Sequential>((*down->block)[1]))[0]);
  REQUIRE(dw != nullptr);
  CHECK(dw->options.stride == std::array<int64_t, 2>{2, 2});
  CHECK(dw->options.padding == std::array<int64_t, 2>{2, 2});
  CHECK(dw->options.groups == 672);
  CHECK(!down->use_res_connect);
  CHECK(effnet_b_block(*b0, 6, 3)->use_res_connect);
  CHECK(effnet_b_block(*b0, 1, 0)->stochastic_depth->p == 0.0);
  CHECK(effnet_b_block(*b0, 7, 0)->stochastic_depth->p == 0.2 * 15.0 / 16.0);  // block 15 of 16
  auto bn = std::dynamic_pointer_cast<nn::BatchNorm2d>((*std::dynamic_pointer_cast<nn::Sequential>((*b0->features)[8]))[1]);
  REQUIRE(bn != nullptr);
  CHECK(bn->options.eps == 1e-5);  // torch's default BatchNorm2d for b0..b3
  CHECK(bn->options.momentum == 0.1);
}

TEST_CASE("efficientnet_b: torchvision's initialization", "[efficientnet_b]") {
  auto model = models::efficientnet_b0();
  const nn::StateDict sd = model->state_dict();
  auto get = [&](const std::string& key) {
    for (const auto& [k, t] : sd)
      if (k == key) return t;
    FAIL("no key " << key);
    return Tensor();
  };
  auto stddev = [](const Tensor& t) {
    const auto v = t.to_vector();
    double s = 0, s2 = 0;
    for (double x : v) s += x, s2 += x * x;
    const double n = double(v.size());
    return std::sqrt(s2 / n - (s / n) * (s / n));
  };
  // kaiming_normal_(fan_out): std sqrt(2 / (out * k * k)) (depthwise included: fan_out = E * k * k)
  CHECK(std::abs(stddev(get("features.8.0.weight")) / std::sqrt(2.0 / 1280.0) - 1.0) < 0.02);
  CHECK(std::abs(stddev(get("features.6.0.block.1.0.weight")) / std::sqrt(2.0 / (672.0 * 25.0)) - 1.0) < 0.05);
  CHECK(get("features.1.0.block.1.fc1.bias").to_vector() == std::vector<double>(8, 0.0));
  CHECK(get("features.0.1.weight").to_vector() == std::vector<double>(32, 1.0));
  // Linear: uniform(-1 / sqrt(1000), 1 / sqrt(1000)) (std bound / sqrt 3), bias 0
  const double bound = 1.0 / std::sqrt(1000.0);
  const auto w = get("classifier.1.weight").to_vector();
  CHECK(*std::max_element(w.begin(), w.end()) <= bound);
  CHECK(*std::min_element(w.begin(), w.end()) >= -bound);
  CHECK(std::abs(stddev(get("classifier.1.weight")) / (bound / std::sqrt(3.0)) - 1.0) < 0.02);
  CHECK(get("classifier.1.bias").to_vector() == std::vector<double>(1000, 0.0));
}

TEST_CASE("efficientnet_b: reset_classifier, in_chans, and bad inputs", "[efficientnet_b]") {
  auto model = models::efficientnet_b0();
  model->eval();
  const nn::StateDict before = model->state_dict();
  model->reset_classifier(7);
  const nn::StateDict after = model->state_dict();
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    REQUIRE(after[i].first == before[i].first);
    if (after[i].first.rfind("classifier.1.", 0) == 0) continue;
    CHECK(after[i].second.impl() == before[i].second.impl());
  }
  CHECK(model->classifier().find_tensor("weight").shape() == Shape({7, 1280}));
  CHECK(model->config.num_classes == 7);
  const Tensor x = graft_test::rand_in({2, 3, 45, 38}, -1.0, 1.0, 3, DType::Float32);  // odd sizes
  NoGradGuard no_grad;
  const Tensor features = model->forward_features(x);
  CHECK(features.shape() == Shape({2, 1280}));
  CHECK(model->forward(x).shape() == Shape({2, 7}));
  model->reset_classifier(0);
  CHECK(model->classifier().type_name() == "Identity");
  GRAFT_REQUIRE_CLOSE(model->forward(x), features, kTolF32);
  CHECK(model->state_dict().size() == before.size() - 2);
  model->reset_classifier(3);
  CHECK(model->forward(x).shape() == Shape({2, 3}));

  auto gray = models::efficientnet_b1(10, 1);
  CHECK(gray->in_chans() == 1);
  CHECK(gray->state_dict()[0].first == "features.0.0.weight");
  CHECK(gray->state_dict()[0].second.shape() == Shape({32, 1, 3, 3}));
  gray->eval();
  CHECK(gray->forward(graft_test::rand_in({1, 1, 32, 32}, -1.0, 1.0, 4, DType::Float32)).shape() == Shape({1, 10}));

  graft_test::require_error([&] { model->forward(zeros({1, 1, 32, 32})); },
                            {"EfficientNet", "expected input [B, 3, H, W]", "[1, 1, 32, 32]"});
  graft_test::require_error([&] { model->forward_features(zeros({3, 32, 32})); },
                            {"EfficientNet", "expected input [B, 3, H, W]", "[3, 32, 32]"});
  graft_test::require_error([&] { gray->forward_intermediates(zeros({1, 3, 32, 32}), {"features.2"}); },
                            {"EfficientNet", "expected input [B, 1, H, W]", "[1, 3, 32, 32]"});
  graft_test::require_error([&] { model->forward_head(zeros({2, 1000})); },
                            {"EfficientNet", "forward_head", "[B, 1280]", "[2, 1000]"});
  graft_test::require_error([] { models::efficientnet_b_config(4); }, {"EfficientNet", "variant", "got 4"});
  graft_test::require_error([] { models::efficientnet_b2(10, 0); }, {"EfficientNet", "in_chans", "got 10 and 0"});
  graft_test::require_error([&] { model->reset_classifier(-2); }, {"EfficientNet", "num_classes", "-2"});
  // A checkpoint of another width, and one with the wrong number of input channels, fail strict loading.
  graft_test::require_error([] { models::efficientnet_b0()->load_state_dict(models::efficientnet_b2()->state_dict()); },
                            {"load_state_dict", "unexpected keys: 'features.1.1.block.0.0.weight'",
                             "'features.3.0.block.3.0.weight': expected shape [40, 144, 1, 1], got [48, 144, 1, 1]"});
  graft_test::require_error([] { models::efficientnet_b0(1000, 1)->load_state_dict(models::efficientnet_b0()->state_dict()); },
                            {"load_state_dict", "features.0.0.weight", "[32, 1, 3, 3]", "[32, 3, 3, 3]"});
}

TEST_CASE("efficientnet_b: forward_intermediates names, shapes and order", "[efficientnet_b]") {
  auto model = models::efficientnet_b0(5);
  model->eval();
  const std::vector<std::string> names = model->feature_names();
  const std::vector<std::string> expected_names = {"features.0", "features.1", "features.2", "features.3",
                                                   "features.4", "features.5", "features.6", "features.7",
                                                   "features.8", "features"};
  CHECK(names == expected_names);
  const Tensor x = graft_test::rand_in({2, 3, 64, 64}, -1.0, 1.0, 6, DType::Float32);
  NoGradGuard no_grad;
  const models::NamedFeatures all = model->forward_intermediates(x, names);
  REQUIRE(all.size() == names.size());
  const std::vector<Shape> shapes = {{2, 32, 32, 32}, {2, 16, 32, 32}, {2, 24, 16, 16}, {2, 40, 8, 8},
                                     {2, 80, 4, 4},   {2, 112, 4, 4},  {2, 192, 2, 2},  {2, 320, 2, 2},
                                     {2, 1280, 2, 2}, {2, 1280}};
  for (size_t i = 0; i < names.size(); ++i) {
    INFO(names[i]);
    CHECK(all[i].first == names[i]);
    CHECK(all[i].second.shape() == shapes[i]);
  }
  GRAFT_REQUIRE_CLOSE(all.back().second, model->forward_features(x), kTolF32);
  // Asked out of order: returned in the order asked.
  const models::NamedFeatures two = model->forward_intermediates(x, {"features.4", "features.2"});
  REQUIRE(two.size() == 2);
  CHECK(two[0].first == "features.4");
  CHECK(two[1].second.shape() == Shape({2, 24, 16, 16}));
  GRAFT_REQUIRE_CLOSE(two[0].second, all[4].second, kTolF32);
  graft_test::require_error([&] { model->forward_intermediates(x, {"layer3"}); },
                            {"EfficientNet", "no layer named 'layer3'", "features.8"});
}

TEST_CASE("efficientnet_b: the ImageClassifier interface through a base pointer", "[efficientnet_b]") {
  std::shared_ptr<models::ImageClassifier> net = models::efficientnet_b2(4);
  net->eval();
  CHECK(net->classifier_name() == "classifier.1");
  CHECK(net->classifier().type_name() == "Linear");
  CHECK(net->num_features() == 1408);
  CHECK(net->head_hidden_size() == 1408);
  CHECK(net->in_chans() == 3);
  const Tensor x = graft_test::rand_in({1, 3, 40, 48}, -1.0, 1.0, 7, DType::Float32);
  NoGradGuard no_grad;
  const Tensor f = net->forward_features(x);
  CHECK(f.shape() == Shape({1, 1408}));
  const Tensor logits = net->forward(x);
  CHECK(logits.shape() == Shape({1, 4}));
  GRAFT_REQUIRE_CLOSE(net->forward_head(f), logits, kTolF32);
  GRAFT_REQUIRE_CLOSE(net->forward_head(f, /*pre_logits=*/true), f, kTolF32);  // eval: Dropout is the identity
  net->reset_classifier(9);
  CHECK(net->classifier().find_tensor("weight").shape() == Shape({9, 1408}));
  CHECK(net->forward(x).shape() == Shape({1, 9}));
  // The new head's parameters are the module classifier_name() names.
  int64_t head_params = 0;
  for (const auto& [name, p] : net->named_parameters())
    if (name.rfind(net->classifier_name() + ".", 0) == 0) head_params += p.numel();
  CHECK(head_params == 9 * 1408 + 9);
}

TEST_CASE("efficientnet_b: training mode reaches every parameter, a frozen backbone none", "[efficientnet_b]") {
  auto model = models::efficientnet_b0(5);
  model->train();
  const Tensor x = graft_test::rand_in({2, 3, 32, 32}, -1.0, 1.0, 5, DType::Float32);
  SECTION("full fine-tuning (dropout and stochastic depth active)") {
    sum(model->forward(x)).backward();
    for (const auto& [name, p] : model->named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined());
    }
    auto stem_bn = std::dynamic_pointer_cast<nn::BatchNorm2d>((*std::dynamic_pointer_cast<nn::Sequential>((*model->features)[0]))[1]);
    CHECK(stem_bn->num_batches_tracked.item<int64_t>() == 1);
  }
  SECTION("linear probe") {
    model->requires_grad_(false);
    model->reset_classifier(3);
    sum(model->forward(x)).backward();
    for (const auto& [name, p] : model->named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined() == (name.rfind("classifier.1.", 0) == 0));
    }
  }
}

// ---- parity against PyTorch (big data) -------------------------------------------------------------
// Every arch: strict load of the seeded weights, eval-mode features, logits and features.4 at 64 x 64
// in float32 (kTolF32), then the same model converted to float64 against PyTorch's float64 run
// (kTolF64). The generator calibrates the weights so this network is not chaotic (PyTorch's float32
// misses its float64 by at most 0.25 of kTolF32; see the generator's text).
TEST_CASE("efficientnet_b: b0..b3 (seeded weights) match torchvision in float32 and float64", "[efficientnet_b][big]") {
  for (int v = 0; v < 4; ++v) {
    const std::string& name = kEffnetBArchs[size_t(v)];
    INFO(name);
    auto model = effnet_b_seeded(v);
    const graft_test::GoldenFile file = graft_test::read_golden(effnet_b_big_file(name + "_golden.bin"));
    REQUIRE(file.cases.size() == 1);
    const GoldenCase& c = file.cases[0];
    NoGradGuard no_grad;
    const Tensor features = model->forward_features(c.at("x"));
    GRAFT_REQUIRE_CLOSE(features, c.at("features"), kTolF32);
    const Tensor out = model->forward_head(features);
    GRAFT_REQUIRE_CLOSE(out, c.at("out"), kTolF32);
    const models::NamedFeatures stage4 = model->forward_intermediates(c.at("x"), {"features.4"});
    GRAFT_REQUIRE_CLOSE(stage4[0].second, c.at("stage4"), kTolF32);
    const double diff_f = graft_test::max_abs_diff(features, c.at("features"));
    const double diff_out = graft_test::max_abs_diff(out, c.at("out"));

    model->to(DType::Float64);
    const Tensor x64 = c.at("x").to(DType::Float64);
    const Tensor features64 = model->forward_features(x64);
    GRAFT_REQUIRE_CLOSE(features64, c.at("features_f64"), kTolF64);
    const Tensor out64 = model->forward_head(features64);
    GRAFT_REQUIRE_CLOSE(out64, c.at("out_f64"), kTolF64);
    std::printf("[parity] %s @64: float32 features max|diff| %.3g, logits %.3g (max |logit| %.3g); float64 logits %.3g\n",
                name.c_str(), diff_f, diff_out, graft_test::max_abs_diff(c.at("out"), zeros_like(c.at("out"))),
                graft_test::max_abs_diff(out64, c.at("out_f64")));
  }
}

TEST_CASE("efficientnet_b: b0 with BatchNorm folded into the convs matches unfused and torchvision",
          "[efficientnet_b][big]") {
  auto model = effnet_b_seeded(0);
  const graft_test::GoldenFile file = graft_test::read_golden(effnet_b_big_file("efficientnet_b0_golden.bin"));
  const GoldenCase& c = file.cases[0];
  NoGradGuard no_grad;
  const Tensor unfused = model->forward(c.at("x"));
  // stem and head conv, then per block: expand (absent in features.1.0), depthwise, project
  REQUIRE(model->fuse_for_inference() == 2 + 16 * 3 - 1);
  const Tensor fused = model->forward(c.at("x"));
  GRAFT_REQUIRE_CLOSE(fused, unfused, kTolF32);
  GRAFT_REQUIRE_CLOSE(fused, c.at("out"), kTolF32);
  std::printf("[parity] efficientnet_b0 with BatchNorm folded: max|fused - unfused| %.3g, vs PyTorch %.3g\n",
              graft_test::max_abs_diff(fused, unfused), graft_test::max_abs_diff(fused, c.at("out")));
}

// Training mode in float64 (kTolF64): BatchNorm on batch statistics (2 images; 8 values per channel
// at the 2 x 2 stages), Dropout and StochasticDepth at p = 0 so both sides compute the same thing,
// loss = sum(logits * w). Checks the logits, the loss, the gradients of the named parameters (stem,
// squeeze-excitation, expand / depthwise / project convs and norms, head conv, classifier) and of the
// input, and the running statistics after the step.
TEST_CASE("efficientnet_b: b0 training-mode forward and backward match torchvision (float64)", "[efficientnet_b][big]") {
  static const graft_test::GoldenFile file = graft_test::read_golden(effnet_b_big_file("efficientnet_b0_train.bin"));
  REQUIRE(file.cases.size() == 1);
  const GoldenCase& c = file.cases[0];
  models::EfficientNetConfig cfg = models::efficientnet_b_config(0, 10);
  cfg.dropout = 0.0;  // no random masks: the same computation as the reference
  cfg.stochastic_depth_prob = 0.0;
  auto model = std::make_shared<models::EfficientNet>(cfg);
  std::map<std::string, Tensor> sd = io::load_safetensors(effnet_b_big_file("efficientnet_b0.safetensors"));
  for (auto& [key, t] : sd) {
    if (key == "classifier.1.weight") t = c.at("classifier.1.weight");
    if (key == "classifier.1.bias") t = c.at("classifier.1.bias");
  }
  const nn::LoadReport report = model->load_state_dict(sd);
  INFO(report.str());
  REQUIRE(report.ok());
  model->to(DType::Float64);
  model->train();
  Tensor x = c.at("x").clone();
  x.set_requires_grad(true);
  const Tensor out = model->forward(x);
  GRAFT_REQUIRE_CLOSE(out, c.at("out"), kTolF64);
  const Tensor loss = sum(mul(out, c.at("w")));
  GRAFT_REQUIRE_CLOSE(loss, c.at("loss"), kTolF64);
  loss.backward();
  double worst = 0;
  int checked = 0;
  for (const auto& [name, p] : model->named_parameters()) {
    const Tensor* expected = c.find("grad." + name);
    if (expected == nullptr) continue;
    INFO("gradient of " << name);
    GRAFT_REQUIRE_CLOSE(p.grad(), *expected, kTolF64);
    worst = std::max(worst, graft_test::max_abs_diff(p.grad(), *expected));
    ++checked;
  }
  CHECK(checked == 13);
  GRAFT_REQUIRE_CLOSE(x.grad(), c.at("grad_x"), kTolF64);
  const nn::StateDict after = model->state_dict();
  int buffers = 0;
  for (const auto& [key, t] : after) {
    const Tensor* expected = c.find("after." + key);
    if (expected == nullptr) continue;
    INFO("after the step: " << key);
    ++buffers;
    if (key.ends_with("num_batches_tracked")) {
      CHECK(t.item<int64_t>() == expected->item<int64_t>());  // 7 + 1
      continue;
    }
    GRAFT_REQUIRE_CLOSE(t, *expected, kTolF64);
  }
  CHECK(buffers == 5);
  std::printf("[parity] efficientnet_b0 train mode (float64): gradients max|diff| %.3g, input gradient %.3g\n", worst,
              graft_test::max_abs_diff(x.grad(), c.at("grad_x")));
}
