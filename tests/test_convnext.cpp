// tests/test_convnext.cpp - ConvNeXt-Tiny / Small (torchvision 0.14's names) against PyTorch.
//
// Committed data: tests/data/convnext/convnext_keys.bin (written by `$GRAFT_PYTHON
// tools/gen_convnext_goldens.py`): torchvision's state_dict keys and shapes for convnext_tiny / small,
// every block's stochastic depth probability, and a micro ConvNeXt (custom block_setting, 5 classes)
// with its weights and eval outputs.
// Big data, generated on demand: `source tools/pyenv.sh && $GRAFT_PYTHON tools/gen_convnext_goldens.py DIR`
// writes seeded convnext_tiny weights with eval outputs and every features.<i> map, and a float64
// training-mode forward + backward of a mini ConvNeXt; `DIR --small` adds convnext_small's weights and
// outputs (the hidden case "[convnext_small]"). The "[big]" cases read them from $GRAFT_MODEL_DATA and
// FAIL, saying how to make them, when the variable is unset or a file is missing.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "golden.hpp"
#include "model_keys.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/models/convnext.hpp"
#include "graft/nn.hpp"
#include "harness.hpp"

namespace {

using namespace graft;
using graft_test::GoldenCase;
using graft_test::kTolF32;
using graft_test::kTolF64;

const GoldenCase& convnext_small_golden(const std::string& name) {
  static const graft_test::GoldenFile file = graft_test::read_golden(GRAFT_TEST_DATA_DIR "/convnext/convnext_keys.bin");
  for (const auto& c : file.cases)
    if (c.name == name) return c;
  throw Error("test_convnext: no golden case '" + name + "'");
}

// $GRAFT_MODEL_DATA/<file>, or a test failure that says how to generate it.
std::string convnext_big_file(const std::string& file) {
  return graft_test::model_data_file(file, "tools/gen_convnext_goldens.py");
}

// The case's "sd.<key>" tensors as a state dict (the prefix dropped).
nn::StateDict convnext_case_state_dict(const GoldenCase& c) {
  nn::StateDict sd;
  for (const auto& [k, t] : c.tensors)
    if (k.rfind("sd.", 0) == 0) sd.emplace_back(k.substr(3), t);
  return sd;
}

void convnext_require_same_keys(nn::Module& m, const std::string& case_name) {
  graft_test::require_same_keys(m.state_dict(), convnext_small_golden(case_name));
}

// Every CNBlock's stochastic depth probability, in module order.
std::vector<double> convnext_sd_probs(models::ConvNeXt& m) {
  std::vector<double> p;
  for (auto& [name, mod] : m.named_modules())
    if (auto* b = dynamic_cast<models::CNBlock*>(mod)) p.push_back(b->stochastic_depth->p);
  return p;
}

// The committed micro ConvNeXt: block_setting (8 -> 16, 1 block), (16, 2 blocks), 5 classes.
models::ConvNeXtConfig convnext_micro_config(int64_t in_chans = 3) {
  models::ConvNeXtConfig cfg;
  cfg.block_setting = {{8, 16, 1}, {16, std::nullopt, 2}};
  cfg.num_classes = 5;
  cfg.in_chans = in_chans;
  return cfg;
}

// One freshly initialized convnext_tiny for the cases that only read it (building one draws 28M
// initial weights, about a second).
models::ConvNeXt& convnext_fresh_tiny() {
  static const std::shared_ptr<models::ConvNeXt> model = models::convnext_tiny();
  return *model;
}

std::shared_ptr<models::ConvNeXt> convnext_micro_loaded() {
  auto model = std::make_shared<models::ConvNeXt>(convnext_micro_config());
  REQUIRE(model->load_state_dict(convnext_case_state_dict(convnext_small_golden("convnext_micro"))).ok());
  model->eval();
  return model;
}

// Seeded full-size weights from the generator, loaded strictly; eval features, logits and every
// features.<i> map against torchvision's.
void convnext_check_arch(const std::string& name, const std::shared_ptr<models::ConvNeXt>& model) {
  REQUIRE(model->load_state_dict(io::load_safetensors(convnext_big_file(name + ".safetensors"))).ok());
  model->eval();
  const graft_test::GoldenFile file = graft_test::read_golden(convnext_big_file(name + "_golden.bin"));
  REQUIRE(file.cases.size() == 1);
  const GoldenCase& c = file.cases[0];
  NoGradGuard no_grad;
  const Tensor features = model->forward_features(c.at("x"));
  GRAFT_REQUIRE_CLOSE(features, c.at("features"), kTolF32);
  const Tensor out = model->forward_head(features);
  GRAFT_REQUIRE_CLOSE(out, c.at("out"), kTolF32);
  GRAFT_REQUIRE_CLOSE(model->forward(c.at("x")), c.at("out"), kTolF32);
  std::vector<std::string> names;
  for (size_t i = 0; i < model->features->size(); ++i) names.push_back("features." + std::to_string(i));
  const models::NamedFeatures maps = model->forward_intermediates(c.at("x"), names);
  REQUIRE(maps.size() == 8);
  for (const auto& [n, t] : maps) {
    INFO(n);
    GRAFT_REQUIRE_CLOSE(t, c.at("inter." + n), kTolF32);
  }
  std::printf("[parity] %s: features max|diff| %.3g, logits max|diff| %.3g (max |logit| %.3g), features.7 max|diff| %.3g\n",
              name.c_str(), graft_test::max_abs_diff(features, c.at("features")),
              graft_test::max_abs_diff(out, c.at("out")), graft_test::max_abs_diff(c.at("out"), zeros_like(c.at("out"))),
              graft_test::max_abs_diff(maps.back().second, c.at("inter.features.7")));
}

}  // namespace

TEST_CASE("convnext: state_dict keys, shapes and stochastic depth equal torchvision's", "[convnext]") {
  models::ConvNeXt& tiny = convnext_fresh_tiny();
  auto small = models::convnext_small();
  convnext_require_same_keys(tiny, "keys_convnext_tiny");
  convnext_require_same_keys(*small, "keys_convnext_small");
  CHECK(tiny.num_parameters() == 28589128);  // torchvision's counts
  CHECK(small->num_parameters() == 50223688);
  for (auto [model, name] : {std::pair{&tiny, "sd_prob_convnext_tiny"}, std::pair{small.get(), "sd_prob_convnext_small"}}) {
    INFO(name);
    const std::vector<double> expected = convnext_small_golden(name).at("p").to_vector();
    const std::vector<double> actual = convnext_sd_probs(*model);
    REQUIRE(actual.size() == expected.size());
    for (size_t i = 0; i < actual.size(); ++i) CHECK(std::abs(actual[i] - expected[i]) <= 1e-15);
  }
  CHECK(tiny.num_features() == 768);
  CHECK(tiny.features->size() == 8);
  CHECK(tiny.min_input_size() == 32);
  CHECK(tiny.classifier_name() == "classifier.2");
  CHECK(tiny.classifier().type_name() == "Linear");
}

TEST_CASE("convnext: torchvision's initialization", "[convnext]") {
  models::ConvNeXt* model = &convnext_fresh_tiny();
  // Conv2d and Linear: trunc_normal_(std 0.02) weights, zero biases; LayerNorm 1 / 0; layer_scale 1e-6.
  const Tensor w = model->features->named_parameters()[0].second;  // features.0.0.weight [96, 3, 4, 4]
  REQUIRE(w.shape() == Shape({96, 3, 4, 4}));
  double total = 0, sq = 0;
  int64_t n = 0;
  for (const auto& [name, p] : model->named_parameters()) {
    INFO(name);
    const std::vector<double> v = p.to_vector();
    const bool weight = name.ends_with(".weight");
    if (name.ends_with("layer_scale")) {
      CHECK(std::all_of(v.begin(), v.end(), [](double x) { return std::abs(x - 1e-6) < 1e-12; }));
    } else if (p.dim() == 1 && weight) {  // a LayerNorm weight
      CHECK(std::all_of(v.begin(), v.end(), [](double x) { return x == 1.0; }));
    } else if (!weight) {  // every bias, LayerNorm or not
      CHECK(std::all_of(v.begin(), v.end(), [](double x) { return x == 0.0; }));
    } else {
      for (double x : v) {
        total += x;
        sq += x * x;
        ++n;
      }
      CHECK(std::all_of(v.begin(), v.end(), [](double x) { return std::abs(x) <= 2.0; }));
    }
  }
  const double mean = total / double(n), std = std::sqrt(sq / double(n) - mean * mean);
  CHECK(std::abs(mean) < 1e-4);
  CHECK(std::abs(std - 0.02) < 1e-4);  // ~28M draws
  // Bounds well inside the distribution are honoured.
  Tensor t = empty({20000});
  init::trunc_normal_(t, 0.0, 1.0, -0.5, 1.0);
  const std::vector<double> v = t.to_vector();
  CHECK(*std::min_element(v.begin(), v.end()) >= -0.5);
  CHECK(*std::max_element(v.begin(), v.end()) <= 1.0);
  graft_test::require_error([&] { init::trunc_normal_(t, 0.0, 1.0, 5.0, 6.0); },
                            {"trunc_normal_", "[5, 6]"});
}

TEST_CASE("convnext: a micro block_setting matches torchvision (committed weights, eval)", "[convnext]") {
  auto model = convnext_micro_loaded();
  const GoldenCase& c = convnext_small_golden("convnext_micro");
  CHECK(model->features->size() == 4);  // stem, stage, downsampling, stage
  CHECK(model->min_input_size() == 8);
  CHECK(convnext_sd_probs(*model) == std::vector<double>{0.0, 0.0, 0.0});
  NoGradGuard no_grad;
  const Tensor features = model->forward_features(c.at("x"));  // x [2, 3, 24, 20]: 6 x 5 floors to 3 x 2
  GRAFT_REQUIRE_CLOSE(features, c.at("features"), kTolF32);
  GRAFT_REQUIRE_CLOSE(model->forward_head(features), c.at("out"), kTolF32);
  GRAFT_REQUIRE_CLOSE(model->forward(c.at("x")), c.at("out"), kTolF32);
  CHECK(model->forward_maps(c.at("x")).shape() == Shape({2, 16, 3, 2}));
  std::printf("[parity] convnext micro: logits max|diff| %.3g\n",
              graft_test::max_abs_diff(model->forward(c.at("x")), c.at("out")));
}

TEST_CASE("convnext: LayerNorm2d normalizes over channels; LayerNorm2d and CNBlock gradients", "[convnext]") {
  models::LayerNorm2d ln(3);
  ln.to(DType::Float64);
  {
    NoGradGuard no_grad;
    ln.weight.copy_(from_vector(std::vector<double>{0.5, 2.0, -1.0}, Shape{3}));
    ln.bias.copy_(from_vector(std::vector<double>{0.1, 0.0, -0.2}, Shape{3}));
  }
  const Tensor x = graft_test::rand_in({2, 3, 4, 5}, -2.0, 2.0, 4);
  const Tensor y = ln.forward(x);
  const Tensor ref =
      layer_norm(x.permute({0, 2, 3, 1}).contiguous(), Shape{3}, ln.weight, ln.bias, 1e-6).permute({0, 3, 1, 2});
  GRAFT_REQUIRE_CLOSE(y, ref, kTolF64);
  // one pixel by hand
  const auto xv = x.to_vector(), yv = y.to_vector();
  const int64_t hw = 4 * 5, pix = 7;
  double mu = 0, var = 0;
  for (int ch = 0; ch < 3; ++ch) mu += xv[size_t(ch * hw + pix)] / 3.0;
  for (int ch = 0; ch < 3; ++ch) var += (xv[size_t(ch * hw + pix)] - mu) * (xv[size_t(ch * hw + pix)] - mu) / 3.0;
  const double w[3] = {0.5, 2.0, -1.0}, b[3] = {0.1, 0.0, -0.2};
  for (int ch = 0; ch < 3; ++ch) {
    const double expected = (xv[size_t(ch * hw + pix)] - mu) / std::sqrt(var + 1e-6) * w[ch] + b[ch];
    CHECK(std::abs(yv[size_t(ch * hw + pix)] - expected) < 1e-12);
  }
  // Finite differences (float64) through LayerNorm2d and a whole CNBlock, with respect to the input.
  graft_test::gradcheck1([&](const std::vector<Tensor>& in) { return ln.forward(in[0]); },
                         {graft_test::rand_in({2, 3, 3, 2}, -2.0, 2.0, 10)});
  models::CNBlock block(4, 0.8, 0.0);
  block.to(DType::Float64);
  graft_test::gradcheck1([&](const std::vector<Tensor>& in) { return block.forward(in[0]); },
                         {graft_test::rand_in({1, 4, 5, 4}, -1.0, 1.0, 11)});
  graft_test::require_error([&] { ln.forward(zeros({2, 4, 3, 3}, DType::Float64)); },
                            {"LayerNorm2d", "expected input [B, 3, H, W]", "[2, 4, 3, 3]"});
}

TEST_CASE("convnext: reset_classifier, pre_logits, in_chans, intermediates and bad inputs", "[convnext]") {
  auto model = convnext_micro_loaded();
  const GoldenCase& c = convnext_small_golden("convnext_micro");
  const Tensor x = c.at("x");
  const nn::StateDict before = model->state_dict();
  NoGradGuard no_grad;
  const Tensor features = model->forward_features(x);
  GRAFT_REQUIRE_CLOSE(model->forward_head(features, /*pre_logits=*/true), features, kTolF32);

  SECTION("reset_classifier") {
    model->reset_classifier(7);
    const nn::StateDict after = model->state_dict();
    REQUIRE(after.size() == before.size());
    for (size_t i = 0; i < after.size(); ++i) {
      REQUIRE(after[i].first == before[i].first);
      if (after[i].first.rfind("classifier.2.", 0) == 0) continue;
      CHECK(after[i].second.impl() == before[i].second.impl());
    }
    CHECK(model->classifier().find_tensor("weight").shape() == Shape({7, 16}));
    CHECK(model->forward(x).shape() == Shape({2, 7}));
    CHECK(model->config.num_classes == 7);
    CHECK(!model->classifier().is_training());  // the model's eval mode
    {
      auto f64 = std::make_shared<models::ConvNeXt>(convnext_micro_config());
      f64->to(DType::Float64);
      f64->reset_classifier(4);
      CHECK(f64->classifier().find_tensor("weight").dtype() == DType::Float64);
      CHECK(f64->classifier().is_training());
      CHECK(f64->forward(graft_test::rand_in({1, 3, 8, 8})).shape() == Shape({1, 4}));
    }
    model->reset_classifier(0);
    CHECK(model->classifier().type_name() == "Identity");
    GRAFT_REQUIRE_CLOSE(model->forward(x), features, kTolF32);
    CHECK(model->state_dict().size() == before.size() - 2);
    graft_test::require_error([&] { model->reset_classifier(-3); }, {"ConvNeXt", "num_classes", "-3"});
  }
  SECTION("forward_intermediates") {
    CHECK(model->feature_names() == std::vector<std::string>{"features.0", "features.1", "features.2", "features.3",
                                                              "features"});
    const models::NamedFeatures f = model->forward_intermediates(x, {"features", "features.0", "features.2"});
    REQUIRE(f.size() == 3);
    CHECK(f[0].first == "features");
    GRAFT_REQUIRE_CLOSE(f[0].second, features, kTolF32);
    CHECK(f[1].second.shape() == Shape({2, 8, 6, 5}));
    CHECK(f[2].second.shape() == Shape({2, 16, 3, 2}));
    graft_test::require_error([&] { model->forward_intermediates(x, {"features.9"}); },
                              {"ConvNeXt", "no layer named 'features.9'", "features.3"});
    models::ConvNeXt& tiny = convnext_fresh_tiny();
    const std::vector<std::string> names = tiny.feature_names();
    REQUIRE(names.size() == 9);
    const Tensor xt = graft_test::rand_in({1, 3, 64, 32}, -1.0, 1.0, 6, DType::Float32);
    const models::NamedFeatures ft = tiny.forward_intermediates(xt, names);
    const std::vector<Shape> expected = {{1, 96, 16, 8},  {1, 96, 16, 8},  {1, 192, 8, 4}, {1, 192, 8, 4}, {1, 384, 4, 2},
                                         {1, 384, 4, 2}, {1, 768, 2, 1}, {1, 768, 2, 1}, {1, 768}};
    for (size_t i = 0; i < names.size(); ++i) {
      INFO(names[i]);
      CHECK(ft[i].first == names[i]);
      CHECK(ft[i].second.shape() == expected[i]);
    }
  }
  SECTION("in_chans != 3") {
    auto gray = models::convnext_tiny(10, 1);
    CHECK(gray->in_chans() == 1);
    CHECK(gray->features->named_parameters()[0].second.shape() == Shape({96, 1, 4, 4}));
    CHECK(gray->forward(graft_test::rand_in({1, 1, 32, 32}, -1.0, 1.0, 8, DType::Float32)).shape() == Shape({1, 10}));
    auto micro4 = std::make_shared<models::ConvNeXt>(convnext_micro_config(4));
    CHECK(micro4->forward(graft_test::rand_in({2, 4, 8, 8}, -1.0, 1.0, 9, DType::Float32)).shape() == Shape({2, 5}));
    graft_test::require_error([&] { micro4->load_state_dict(before); },
                              {"load_state_dict", "features.0.0.weight", "[8, 4, 4, 4]", "[8, 3, 4, 4]"});
  }
  SECTION("bad inputs and configurations") {
    graft_test::require_error([&] { model->forward(zeros({2, 1, 24, 24})); },
                              {"ConvNeXt", "expected input [B, 3, H, W]", "[2, 1, 24, 24]"});
    graft_test::require_error([&] { model->forward_features(zeros({3, 24, 24})); },
                              {"ConvNeXt", "expected input [B, 3, H, W]", "[3, 24, 24]"});
    graft_test::require_error([&] { model->forward_intermediates(zeros({2, 2, 24, 24}), {"features"}); },
                              {"ConvNeXt", "[2, 2, 24, 24]"});
    graft_test::require_error([&] { model->forward(zeros({1, 3, 7, 24})); },
                              {"ConvNeXt", "[1, 3, 7, 24]", "too small", ">= 8"});
    graft_test::require_error([] { models::ConvNeXt(models::ConvNeXtConfig{}); }, {"ConvNeXt", "block_setting", "empty"});
    models::ConvNeXtConfig mismatched = convnext_micro_config();
    mismatched.block_setting[1].input_channels = 12;
    graft_test::require_error([&] { models::ConvNeXt m(mismatched); },
                              {"ConvNeXt", "block_setting[1] takes 12 channels", "block_setting[0] gives 16"});
    graft_test::require_error([] { models::convnext_tiny(10, 0); }, {"ConvNeXt", "in_chans", "got 10 and 0"});
    graft_test::require_error([] { models::convnext_tiny(-1); }, {"ConvNeXt", "num_classes", "-1"});
    models::ConvNeXtConfig bad_p = convnext_micro_config();
    bad_p.stochastic_depth_prob = 1.5;
    graft_test::require_error([&] { models::ConvNeXt m(bad_p); }, {"ConvNeXt", "stochastic_depth_prob", "1.5"});
    // A checkpoint with a renamed key fails strict loading, naming both keys.
    nn::StateDict renamed = before;
    renamed[4].first = "features.1.0.gamma";
    REQUIRE(before[4].first == "features.1.0.layer_scale");
    auto fresh = std::make_shared<models::ConvNeXt>(convnext_micro_config());
    graft_test::require_error([&] { fresh->load_state_dict(renamed); },
                              {"load_state_dict", "features.1.0.layer_scale", "features.1.0.gamma"});
  }
}

TEST_CASE("convnext: the ImageClassifier interface through a base pointer", "[convnext]") {
  std::shared_ptr<models::ImageClassifier> net = convnext_micro_loaded();
  const GoldenCase& c = convnext_small_golden("convnext_micro");
  NoGradGuard no_grad;
  CHECK(net->num_features() == 16);
  CHECK(net->head_hidden_size() == 16);
  CHECK(net->in_chans() == 3);
  CHECK(net->classifier_name() == "classifier.2");
  CHECK(net->classifier().find_tensor("weight").shape() == Shape({5, 16}));
  const Tensor f = net->forward_features(c.at("x"));
  CHECK(f.shape() == Shape({2, 16}));
  GRAFT_REQUIRE_CLOSE(net->forward_head(f), c.at("out"), kTolF32);
  GRAFT_REQUIRE_CLOSE(net->forward(c.at("x")), c.at("out"), kTolF32);
  CHECK(net->forward_intermediates(c.at("x"), {"features.3"})[0].second.shape() == Shape({2, 16, 3, 2}));
  net->reset_classifier(3);
  CHECK(net->forward(c.at("x")).shape() == Shape({2, 3}));
  CHECK(net->fuse_for_inference() == 0);  // no BatchNorm
}

TEST_CASE("convnext: training mode reaches every parameter, stochastic depth drops whole rows", "[convnext]") {
  models::ConvNeXtConfig cfg = convnext_micro_config();
  cfg.stochastic_depth_prob = 0.5;
  auto model = std::make_shared<models::ConvNeXt>(cfg);
  CHECK(convnext_sd_probs(*model) == std::vector<double>{0.0, 0.25, 0.5});
  const Tensor x = graft_test::rand_in({4, 3, 16, 16}, -1.0, 1.0, 5, DType::Float32);
  SECTION("full training") {
    model->train();
    sum(model->forward(x)).backward();
    for (const auto& [name, p] : model->named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined());
    }
  }
  SECTION("a block with p = 1 in training is the identity; in eval it is not") {
    auto block = std::make_shared<models::CNBlock>(8, 0.7, 1.0);
    const Tensor y = graft_test::rand_in({3, 8, 5, 5}, -1.0, 1.0, 7, DType::Float32);
    block->train();
    NoGradGuard no_grad;
    GRAFT_REQUIRE_CLOSE(block->forward(y), y, kTolF32);
    block->eval();
    CHECK(graft_test::max_abs_diff(block->forward(y), y) > 1e-3);
  }
  SECTION("p = 0.5: each example's branch is dropped, or kept and scaled by 2") {
    auto block = std::make_shared<models::CNBlock>(4, 0.9, 0.5);
    const int64_t B = 64;
    const Tensor y = graft_test::rand_in({B, 4, 3, 3}, -1.0, 1.0, 12, DType::Float32);
    NoGradGuard no_grad;
    block->eval();
    const Tensor branch = sub(block->forward(y), y);  // [B, 4, 3, 3]
    block->train();
    const Tensor delta = sub(block->forward(y), y);
    int64_t dropped = 0;
    for (int64_t b = 0; b < B; ++b) {
      INFO("example " << b);
      const Tensor d = delta.select(0, b), kept = mul(branch.select(0, b), 2.0);
      if (graft_test::max_abs_diff(d, zeros_like(d)) == 0.0)
        ++dropped;
      else
        GRAFT_REQUIRE_CLOSE(d, kept, kTolF32);
    }
    CHECK(dropped >= 16);  // Binomial(64, 0.5): mean 32, sd 4
    CHECK(dropped <= 48);
  }
  SECTION("linear probe") {
    model->train();
    model->requires_grad_(false);
    model->reset_classifier(3);
    sum(model->forward(x)).backward();
    for (const auto& [name, p] : model->named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined() == (name.rfind("classifier.2.", 0) == 0));
    }
  }
}

// ---- big: full-size weights and the float64 backward -------------------------------------------
TEST_CASE("convnext: convnext_tiny (seeded weights) loads strictly and matches torchvision at 64 x 64",
          "[convnext][big]") {
  convnext_check_arch("convnext_tiny", models::convnext_tiny());
}

// 200 MB of weights: generated only with `gen_convnext_goldens.py DIR --small`, so hidden (not in
// "[convnext]" or ctest); run it with "[convnext_small]".
TEST_CASE("convnext: convnext_small (seeded weights) loads strictly and matches torchvision at 64 x 64",
          "[.][convnext_small][big]") {
  convnext_check_arch("convnext_small", models::convnext_small());
}

// Training mode in float64 (kTolF64): a mini ConvNeXt (16 -> 32 -> 64 channels, 2 blocks per stage,
// stochastic depth 0) with randomized LayerNorm affine, layer_scale and biases; loss sum(out * w) for
// fixed w; every parameter's gradient against torchvision's. The backward of the depthwise 7x7 conv,
// the permutes, both LayerNorms, GELU, layer_scale and the downsampling all lie on the path.
TEST_CASE("convnext: a training-mode forward + backward in float64 matches torchvision's gradients",
          "[convnext][big]") {
  static const graft_test::GoldenFile file = graft_test::read_golden(convnext_big_file("convnext_train.bin"));
  REQUIRE(file.cases.size() == 1);
  const GoldenCase& c = file.cases[0];
  models::ConvNeXtConfig cfg;
  cfg.block_setting = {{16, 32, 2}, {32, 64, 2}, {64, std::nullopt, 2}};
  cfg.num_classes = 10;
  auto model = std::make_shared<models::ConvNeXt>(cfg);
  model->to(DType::Float64);
  REQUIRE(model->load_state_dict(convnext_case_state_dict(c)).ok());
  model->train();
  const Tensor out = model->forward(c.at("x"));
  GRAFT_REQUIRE_CLOSE(out, c.at("out"), kTolF64);
  const Tensor loss = sum(mul(out, c.at("w")));
  GRAFT_REQUIRE_CLOSE(loss, c.at("loss"), kTolF64);
  loss.backward();
  double worst = 0;
  size_t checked = 0;
  for (const auto& [name, p] : model->named_parameters()) {
    INFO("gradient of " << name);
    REQUIRE(p.grad().defined());
    GRAFT_REQUIRE_CLOSE(p.grad(), c.at("grad." + name), kTolF64);
    worst = std::max(worst, graft_test::max_abs_diff(p.grad(), c.at("grad." + name)));
    ++checked;
  }
  CHECK(checked == model->named_parameters().size());
  CHECK(checked > 50);
  std::printf("[parity] convnext mini train (float64): out max|diff| %.3g, %zu gradients max|diff| %.3g\n",
              graft_test::max_abs_diff(out, c.at("out")), checked, worst);
}
