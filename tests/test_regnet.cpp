// tests/test_regnet.cpp - RegNetX / RegNetY (torchvision 0.14's names) against PyTorch.
//
// Committed data: tests/data/regnet/regnet_keys.bin (written by `$GRAFT_PYTHON tools/gen_regnet_goldens.py`):
// torchvision's state_dict keys and shapes of the eight registered archs and three custom settings,
// BlockParams.from_init_params's stages for all 15 torchvision archs and 120 random settings, and a
// micro RegNet (5 classes) with its weights and eval outputs.
// Big data, generated on demand: `source tools/pyenv.sh && $GRAFT_PYTHON tools/gen_regnet_goldens.py DIR`
// writes seeded regnet_y_400mf / regnet_x_400mf weights with eval outputs and every stage's map, and a
// float64 training-mode forward + backward of a mini RegNetY. The "[big]" cases read them from
// $GRAFT_MODEL_DATA and FAIL, saying how to make them, when the variable is unset or a file is missing.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../weights_import/name_maps.hpp"
#include "golden.hpp"
#include "model_keys.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/models/regnet.hpp"
#include "graft/nn.hpp"
#include "harness.hpp"

namespace {

using namespace graft;
using graft_test::GoldenCase;
using graft_test::kTolF32;
using graft_test::kTolF64;

const GoldenCase& regnet_small_golden(const std::string& name) {
  static const graft_test::GoldenFile file = graft_test::read_golden(GRAFT_TEST_DATA_DIR "/regnet/regnet_keys.bin");
  for (const auto& c : file.cases)
    if (c.name == name) return c;
  throw Error("test_regnet: no golden case '" + name + "'");
}

// $GRAFT_MODEL_DATA/<file>, or a test failure that says how to generate it.
std::string regnet_big_file(const std::string& file) {
  return graft_test::model_data_file(file, "tools/gen_regnet_goldens.py");
}

std::vector<int64_t> regnet_ints(const Tensor& t) {
  const std::vector<double> v = t.to_vector();
  return std::vector<int64_t>(v.begin(), v.end());
}

// A golden "init" tensor [depth, w_0, w_a, w_m, group_width, bottleneck_multiplier, se_ratio] as a config.
models::RegNetConfig regnet_config_of(const Tensor& init, int64_t stem_width = 32, int64_t num_classes = 1000) {
  const std::vector<double> v = init.to_vector();
  REQUIRE(v.size() == 7);
  models::RegNetConfig c;
  c.depth = int64_t(v[0]), c.w_0 = int64_t(v[1]), c.w_a = v[2], c.w_m = v[3], c.group_width = int64_t(v[4]);
  c.bottleneck_multiplier = v[5], c.se_ratio = v[6], c.stem_width = stem_width, c.num_classes = num_classes;
  return c;
}

// The settings of tools/gen_regnet_goldens.py's CUSTOM table (stem width and 1000 classes as there).
models::RegNetConfig regnet_custom(const std::string& name, int64_t num_classes = 1000) {
  models::RegNetConfig c;
  if (name == "micro") {  // widths 8, 16, 32, one block each, bottleneck multiplier 0.5
    c.depth = 3, c.w_0 = 8, c.w_a = 8.0, c.w_m = 2.0, c.group_width = 8, c.bottleneck_multiplier = 0.5;
    c.se_ratio = 0.25, c.stem_width = 8;
  } else if (name == "mini") {  // widths 16, 32, 48; depths 1, 1, 3
    c.depth = 5, c.w_0 = 16, c.w_a = 12.0, c.w_m = 1.8, c.group_width = 8, c.se_ratio = 0.25, c.stem_width = 16;
  } else if (name == "x_bm2") {
    c.depth = 6, c.w_0 = 24, c.w_a = 20.0, c.w_m = 2.2, c.group_width = 16, c.bottleneck_multiplier = 2.0;
    c.stem_width = 24;
  } else if (name == "y_bm075") {
    c.depth = 7, c.w_0 = 32, c.w_a = 17.5, c.w_m = 2.4, c.group_width = 12, c.bottleneck_multiplier = 0.75;
    c.se_ratio = 0.3, c.stem_width = 16;
  } else {
    FAIL("no custom RegNet '" << name << "'");
  }
  c.num_classes = num_classes;
  return c;
}

// The module at a dotted path under m, or null.
nn::Module* regnet_find(nn::Module& m, const std::string& path) {
  for (auto& [name, mod] : m.named_modules())
    if (name == path) return mod;
  return nullptr;
}

nn::StateDict regnet_case_state_dict(const GoldenCase& c) {
  nn::StateDict sd;
  for (const auto& [k, t] : c.tensors)
    if (k.rfind("sd.", 0) == 0) sd.emplace_back(k.substr(3), t);
  return sd;
}

std::shared_ptr<models::RegNet> regnet_micro_loaded() {
  auto model = std::make_shared<models::RegNet>(regnet_custom("micro", 5));
  REQUIRE(model->load_state_dict(regnet_case_state_dict(regnet_small_golden("regnet_micro"))).ok());
  model->eval();
  return model;
}

// from_init_params's block widths evaluated in float64, not torchvision's float32: the check below
// shows the random settings' golden would catch that implementation.
std::vector<int64_t> regnet_block_widths_float64(const models::RegNetConfig& c) {
  std::vector<int64_t> w;
  for (int64_t j = 0; j < c.depth; ++j) {
    const double cap = std::nearbyint(std::log((double(j) * c.w_a + double(c.w_0)) / double(c.w_0)) / std::log(c.w_m));
    w.push_back(int64_t(std::nearbyint(double(c.w_0) * std::pow(c.w_m, cap) / 8.0)) * 8);
  }
  return w;
}

const std::vector<std::string> kRegNetRegistered = {"regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf",
                                                    "regnet_y_3_2gf", "regnet_x_400mf", "regnet_x_800mf",
                                                    "regnet_x_1_6gf", "regnet_x_3_2gf"};

// Seeded full-size weights from the generator, loaded strictly; eval features, logits and every stage's
// map against torchvision's.
void regnet_check_arch(const std::string& name) {
  auto model = models::regnet(name);
  REQUIRE(model->load_state_dict(io::load_safetensors(regnet_big_file(name + ".safetensors"))).ok());
  model->eval();
  const graft_test::GoldenFile file = graft_test::read_golden(regnet_big_file(name + "_golden.bin"));
  REQUIRE(file.cases.size() == 1);
  const GoldenCase& c = file.cases[0];
  NoGradGuard no_grad;
  const Tensor features = model->forward_features(c.at("x"));
  GRAFT_REQUIRE_CLOSE(features, c.at("features"), kTolF32);
  const Tensor out = model->forward_head(features);
  GRAFT_REQUIRE_CLOSE(out, c.at("out"), kTolF32);
  GRAFT_REQUIRE_CLOSE(model->forward(c.at("x")), c.at("out"), kTolF32);
  std::vector<std::string> names = model->feature_names();
  names.pop_back();  // "features", checked above
  REQUIRE(names.size() == 5);
  const models::NamedFeatures maps = model->forward_intermediates(c.at("x"), names);
  double worst_map = 0;
  for (const auto& [n, t] : maps) {
    INFO(n);
    GRAFT_REQUIRE_CLOSE(t, c.at("inter." + n), kTolF32);
    worst_map = std::max(worst_map, graft_test::max_abs_diff(t, c.at("inter." + n)));
  }
  std::printf("[parity] %s: features max|diff| %.3g, logits max|diff| %.3g (max |logit| %.3g), stage maps max|diff| %.3g\n",
              name.c_str(), graft_test::max_abs_diff(features, c.at("features")),
              graft_test::max_abs_diff(out, c.at("out")), graft_test::max_abs_diff(c.at("out"), zeros_like(c.at("out"))),
              worst_map);
  // With every BatchNorm folded: stem + per block a, b, c (+ proj in each stage's first block).
  int64_t blocks = 0;
  for (int64_t d : model->block_params.depths) blocks += d;
  const int64_t pairs = 1 + 3 * blocks + int64_t(model->block_params.num_stages());
  REQUIRE(model->fuse_for_inference() == pairs);
  const Tensor fused = model->forward(c.at("x"));
  GRAFT_REQUIRE_CLOSE(fused, c.at("out"), kTolF32);
  std::printf("[parity] %s with %lld BatchNorms folded: logits max|diff| %.3g\n", name.c_str(),
              static_cast<long long>(pairs), graft_test::max_abs_diff(fused, c.at("out")));
}

}  // namespace

TEST_CASE("regnet: BlockParams of all 15 torchvision archs and 120 random settings equal torchvision's",
          "[regnet]") {
  for (const models::RegNetArch& arch : models::kRegNetArchs) {
    INFO(arch.name);
    const GoldenCase& c = regnet_small_golden(std::string("block_params_") + arch.name);
    const models::RegNetConfig cfg = models::regnet_config(arch.name);
    // The table equals torchvision's builders (the generator checks its own table against them).
    const models::RegNetConfig expected = regnet_config_of(c.at("init"));
    CHECK(cfg.depth == expected.depth);
    CHECK(cfg.w_0 == expected.w_0);
    CHECK(cfg.w_a == expected.w_a);
    CHECK(cfg.w_m == expected.w_m);
    CHECK(cfg.group_width == expected.group_width);
    CHECK(cfg.bottleneck_multiplier == expected.bottleneck_multiplier);
    CHECK(cfg.se_ratio == expected.se_ratio);
    const models::RegNetBlockParams p = models::regnet_block_params(cfg);
    CHECK(p.depths == regnet_ints(c.at("depths")));
    CHECK(p.widths == regnet_ints(c.at("widths")));
    CHECK(p.group_widths == regnet_ints(c.at("group_widths")));
    CHECK(p.strides == regnet_ints(c.at("strides")));
    CHECK(p.se_ratio == cfg.se_ratio);
  }
  // Round half to even: regnet_x_1_6gf's second width is 8 * round(22.5) = 176, then 168 for groups of 24.
  CHECK(models::regnet_block_params(models::regnet_config("regnet_x_1_6gf")).widths ==
        std::vector<int64_t>{72, 168, 408, 912});

  const GoldenCase& random = regnet_small_golden("block_params_random");
  int64_t settings = 0, float64_wrong = 0;
  for (int64_t k = 0; random.has("init." + std::to_string(k)); ++k, ++settings) {
    const std::string i = std::to_string(k);
    const models::RegNetConfig cfg = regnet_config_of(random.at("init." + i));
    INFO("setting " << k << ": depth " << cfg.depth << ", w_0 " << cfg.w_0 << ", w_a " << cfg.w_a << ", w_m "
                    << cfg.w_m << ", group_width " << cfg.group_width << ", b " << cfg.bottleneck_multiplier);
    const models::RegNetBlockParams p = models::regnet_block_params(cfg);
    REQUIRE(p.depths == regnet_ints(random.at("depths." + i)));
    REQUIRE(p.widths == regnet_ints(random.at("widths." + i)));
    REQUIRE(p.group_widths == regnet_ints(random.at("group_widths." + i)));
    const std::vector<int64_t> w = models::RegNetBlockParams::quantized_block_widths(cfg.depth, cfg.w_0, cfg.w_a, cfg.w_m);
    if (regnet_block_widths_float64(cfg) != w) ++float64_wrong;
  }
  CHECK(settings == 120);
  CHECK(float64_wrong == 8);  // the generator's first 8 settings: the data tells float32 from float64
  std::printf("[parity] regnet BlockParams: 15 archs and %lld random settings equal torchvision's (%lld of them "
              "wrong in float64)\n", static_cast<long long>(settings), static_cast<long long>(float64_wrong));
}

TEST_CASE("regnet: state_dict keys and shapes equal torchvision's", "[regnet]") {
  init::SkipInitGuard skip;  // names and shapes only
  const std::vector<int64_t> params = {4344144, 6432512, 11202430, 19436338, 5495976, 7259656, 9190136, 15296552};
  for (size_t i = 0; i < kRegNetRegistered.size(); ++i) {
    const std::string& arch = kRegNetRegistered[i];
    INFO(arch);
    auto model = models::regnet(arch);
    graft_test::require_same_keys(model->state_dict(), regnet_small_golden("keys_" + arch));
    CHECK(model->num_parameters() == params[i]);  // torchvision's counts
    CHECK(model->num_features() == models::regnet_block_params(model->config).widths.back());
    CHECK(model->stages.size() == 4);
  }
  for (const char* name : {"mini", "x_bm2", "y_bm075"}) {
    INFO(name);
    auto model = std::make_shared<models::RegNet>(regnet_custom(name));
    graft_test::require_same_keys(model->state_dict(), regnet_small_golden(std::string("keys_custom_") + name));
  }
  // Names with torchvision's "-", the Y's squeeze-excitation and a shape-changing block's proj.
  auto y = models::regnet_y_400mf();
  const nn::StateDict sd = y->state_dict();
  auto has = [&](const std::string& k) {
    return std::any_of(sd.begin(), sd.end(), [&](const auto& e) { return e.first == k; });
  };
  CHECK(has("stem.0.weight"));
  CHECK(has("trunk_output.block1.block1-0.proj.0.weight"));
  CHECK(has("trunk_output.block2.block2-2.f.se.fc1.bias"));
  CHECK(has("trunk_output.block4.block4-5.f.c.1.running_var"));
  CHECK(!has("trunk_output.block2.block2-1.proj.0.weight"));  // stride 1 and same width: the identity
  CHECK(regnet_find(*y, "trunk_output.block1.block1-0.f.se") != nullptr);
  CHECK(regnet_find(*models::regnet_x_400mf(), "trunk_output.block1.block1-0.f.se") == nullptr);
}

TEST_CASE("regnet: torchvision's initialization", "[regnet]") {
  auto model = models::regnet_y_400mf();
  NoGradGuard no_grad;
  for (auto& [name, m] : model->named_modules()) {
    INFO(name);
    if (auto* conv = dynamic_cast<nn::Conv2d*>(m)) {
      // N(0, sqrt(2 / (k_h k_w out))) for every conv, grouped or squeeze-excitation alike.
      const double expected = std::sqrt(2.0 / double(conv->kernel_size[0] * conv->kernel_size[1] * conv->out_channels));
      const std::vector<double> v = conv->weight.to_vector();
      if (v.size() < 20000) continue;  // large enough for a 2% check of the standard deviation
      double sq = 0, total = 0;
      for (double x : v) sq += x * x, total += x;
      const double mean = total / double(v.size()), sd = std::sqrt(sq / double(v.size()) - mean * mean);
      CHECK(std::abs(sd / expected - 1.0) < 0.03);
      CHECK(std::abs(mean) < 0.05 * expected);
    } else if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(m)) {
      const std::vector<double> w = bn->weight.to_vector(), b = bn->bias.to_vector();
      CHECK(std::all_of(w.begin(), w.end(), [](double x) { return x == 1.0; }));  // no zero-init of any gamma
      CHECK(std::all_of(b.begin(), b.end(), [](double x) { return x == 0.0; }));
    }
  }
  // The squeeze-excitations' biases keep torch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), not zero.
  auto* se = dynamic_cast<nn::SqueezeExcitation*>(regnet_find(*model, "trunk_output.block4.block4-0.f.se"));
  REQUIRE(se != nullptr);
  const std::vector<double> b1 = se->fc1->bias.to_vector();
  const double bound = 1.0 / std::sqrt(double(se->fc1->in_channels));
  CHECK(std::all_of(b1.begin(), b1.end(), [&](double x) { return std::abs(x) <= bound; }));
  CHECK(std::any_of(b1.begin(), b1.end(), [&](double x) { return std::abs(x) > 0.1 * bound; }));
  // fc: N(0, 0.01), bias 0.
  const Tensor fw = model->classifier().find_tensor("weight"), fb = model->classifier().find_tensor("bias");
  const std::vector<double> w = fw.to_vector();
  double sq = 0;
  for (double x : w) sq += x * x;
  CHECK(std::abs(std::sqrt(sq / double(w.size())) / 0.01 - 1.0) < 0.02);  // 440k draws
  CHECK(graft_test::max_abs_diff(fb, zeros_like(fb)) == 0.0);
}

TEST_CASE("regnet: a micro RegNetY (bottleneck multiplier 0.5) matches torchvision (committed weights, eval)",
          "[regnet]") {
  auto model = regnet_micro_loaded();
  const GoldenCase& c = regnet_small_golden("regnet_micro");
  CHECK(model->block_params.widths == std::vector<int64_t>{8, 16, 32});
  CHECK(model->block_params.group_widths == std::vector<int64_t>{4, 8, 8});  // min(8, 8 * 0.5) first
  NoGradGuard no_grad;
  const Tensor features = model->forward_features(c.at("x"));  // x [2, 3, 24, 20]
  GRAFT_REQUIRE_CLOSE(features, c.at("features"), kTolF32);
  GRAFT_REQUIRE_CLOSE(model->forward_head(features), c.at("out"), kTolF32);
  GRAFT_REQUIRE_CLOSE(model->forward(c.at("x")), c.at("out"), kTolF32);
  std::printf("[parity] regnet micro: features max|diff| %.3g, logits max|diff| %.3g\n",
              graft_test::max_abs_diff(features, c.at("features")),
              graft_test::max_abs_diff(model->forward(c.at("x")), c.at("out")));
  // Every BatchNorm folded: stem + 3 blocks x (proj, a, b, c).
  REQUIRE(model->fuse_for_inference() == 1 + 3 * 4);
  REQUIRE(model->fuse_for_inference() == 0);
  GRAFT_REQUIRE_CLOSE(model->forward(c.at("x")), c.at("out"), kTolF32);
}

TEST_CASE("regnet: reset_classifier, pre_logits, in_chans, intermediates and bad inputs", "[regnet]") {
  auto model = regnet_micro_loaded();
  const GoldenCase& c = regnet_small_golden("regnet_micro");
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
      if (after[i].first.rfind("fc.", 0) == 0) continue;
      CHECK(after[i].second.impl() == before[i].second.impl());
    }
    CHECK(model->classifier().find_tensor("weight").shape() == Shape({7, 32}));
    CHECK(model->forward(x).shape() == Shape({2, 7}));
    CHECK(model->config.num_classes == 7);
    CHECK(!model->classifier().is_training());
    auto f64 = std::make_shared<models::RegNet>(regnet_custom("micro", 5));
    f64->to(DType::Float64);
    f64->reset_classifier(4);
    CHECK(f64->classifier().find_tensor("weight").dtype() == DType::Float64);
    CHECK(f64->classifier().is_training());
    CHECK(f64->forward(graft_test::rand_in({2, 3, 9, 9})).shape() == Shape({2, 4}));
    model->reset_classifier(0);
    CHECK(model->classifier().type_name() == "Identity");
    GRAFT_REQUIRE_CLOSE(model->forward(x), features, kTolF32);
    CHECK(model->state_dict().size() == before.size() - 2);
    graft_test::require_error([&] { model->reset_classifier(-3); }, {"RegNet", "num_classes", "-3"});
  }
  SECTION("forward_intermediates") {
    CHECK(model->feature_names() == std::vector<std::string>{"stem", "trunk_output.block1", "trunk_output.block2",
                                                              "trunk_output.block3", "features"});
    const models::NamedFeatures f = model->forward_intermediates(x, {"features", "stem", "trunk_output.block2"});
    REQUIRE(f.size() == 3);
    CHECK(f[0].first == "features");
    GRAFT_REQUIRE_CLOSE(f[0].second, features, kTolF32);
    CHECK(f[1].second.shape() == Shape({2, 8, 12, 10}));
    CHECK(f[2].second.shape() == Shape({2, 16, 3, 3}));  // 12 x 10 -> 6 x 5 -> 3 x 3
    graft_test::require_error([&] { model->forward_intermediates(x, {"trunk_output.block4"}); },
                              {"RegNet", "no layer named 'trunk_output.block4'", "trunk_output.block3"});
    // Odd and tiny inputs: every stride-2 conv rounds up, so 1 x 1 runs.
    CHECK(model->forward(graft_test::rand_in({1, 3, 1, 1}, -1, 1, 3, DType::Float32)).shape() == Shape({1, 5}));
    auto y = models::regnet_y_400mf();
    y->eval();
    const std::vector<std::string> names = y->feature_names();
    const models::NamedFeatures fy = y->forward_intermediates(graft_test::rand_in({1, 3, 64, 32}, -1, 1, 6, DType::Float32), names);
    const std::vector<Shape> expected = {{1, 32, 32, 16}, {1, 48, 16, 8}, {1, 104, 8, 4}, {1, 208, 4, 2},
                                         {1, 440, 2, 1},  {1, 440}};
    REQUIRE(fy.size() == expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      INFO(names[i]);
      CHECK(fy[i].second.shape() == expected[i]);
    }
  }
  SECTION("in_chans != 3") {
    auto gray = models::regnet_x_400mf(10, 1);
    gray->eval();  // a 32 x 32 input leaves 1 x 1 maps: batch statistics of 1 value would be refused
    CHECK(gray->in_chans() == 1);
    CHECK(gray->stem->named_parameters()[0].second.shape() == Shape({32, 1, 3, 3}));
    CHECK(gray->forward(graft_test::rand_in({1, 1, 32, 32}, -1, 1, 8, DType::Float32)).shape() == Shape({1, 10}));
    models::RegNetConfig cfg = regnet_custom("micro", 5);
    cfg.in_chans = 4;
    auto micro4 = std::make_shared<models::RegNet>(cfg);
    graft_test::require_error([&] { micro4->load_state_dict(before); },
                              {"load_state_dict", "stem.0.weight", "[8, 4, 3, 3]", "[8, 3, 3, 3]"});
  }
  SECTION("bad inputs and configurations") {
    graft_test::require_error([&] { model->forward(zeros({2, 1, 24, 24})); },
                              {"RegNet", "expected input [B, 3, H, W]", "[2, 1, 24, 24]"});
    graft_test::require_error([&] { models::regnet("regnet_y_400gf"); },
                              {"unknown arch 'regnet_y_400gf'", "regnet_y_400mf", "regnet_x_32gf"});
    models::RegNetConfig bad = regnet_custom("micro");
    bad.w_0 = 12;
    graft_test::require_error([&] { models::RegNet m(bad); }, {"invalid RegNet settings", "w_0 12"});
    bad = regnet_custom("micro"), bad.w_m = 1.0;
    graft_test::require_error([&] { models::RegNet m(bad); }, {"invalid RegNet settings", "w_m 1"});
    bad = regnet_custom("micro"), bad.w_a = -1.0;
    graft_test::require_error([&] { models::RegNet m(bad); }, {"invalid RegNet settings", "w_a -1"});
    bad = regnet_custom("micro"), bad.depth = 0;
    graft_test::require_error([&] { models::RegNet m(bad); }, {"RegNet", "need depth >= 1, got 0"});
    bad = regnet_custom("micro"), bad.group_width = 0;
    graft_test::require_error([&] { models::RegNet m(bad); }, {"RegNet", "group_width >= 1", "got 0"});
    bad = regnet_custom("micro"), bad.bottleneck_multiplier = 0.1;  // int(8 * 0.1) = 0
    graft_test::require_error([&] { models::RegNet m(bad); }, {"stage 1", "bottleneck width int(8 * 0.1) is 0"});
    // A bottleneck width that does not split into its groups: width 16, round(16 * 1.25) = 20 channels in
    // 20 / 3 = 6 groups (torchvision fails in Conv2d there too).
    bad = regnet_custom("micro"), bad.depth = 1, bad.w_0 = 16, bad.w_a = 0.0, bad.group_width = 3;
    bad.bottleneck_multiplier = 1.25;
    graft_test::require_error([&] { models::RegNet m(bad); },
                              {"block block1-0", "bottleneck width 20", "does not split", "6 groups of group width 3"});
    bad = regnet_custom("micro"), bad.stem_width = 0;
    graft_test::require_error([&] { models::RegNet m(bad); }, {"RegNet", "stem_width"});
    auto loaded = regnet_micro_loaded();
    nn::StateDict renamed = before;
    for (auto& [k, t] : renamed)
      if (k == "trunk_output.block2.block2-0.f.b.0.weight") k = "trunk_output.block2.block2_0.f.b.0.weight";
    graft_test::require_error([&] { loaded->load_state_dict(renamed); },
                              {"load_state_dict", "trunk_output.block2.block2-0.f.b.0.weight"});
  }
}

TEST_CASE("regnet: the ImageClassifier interface through a base pointer", "[regnet]") {
  std::shared_ptr<models::ImageClassifier> net = regnet_micro_loaded();
  const GoldenCase& c = regnet_small_golden("regnet_micro");
  NoGradGuard no_grad;
  CHECK(net->num_features() == 32);
  CHECK(net->head_hidden_size() == 32);
  CHECK(net->in_chans() == 3);
  CHECK(net->classifier_name() == "fc");
  CHECK(net->classifier().find_tensor("weight").shape() == Shape({5, 32}));
  const Tensor f = net->forward_features(c.at("x"));
  CHECK(f.shape() == Shape({2, 32}));
  GRAFT_REQUIRE_CLOSE(net->forward_head(f), c.at("out"), kTolF32);
  CHECK(net->forward_intermediates(c.at("x"), {"trunk_output.block3"})[0].second.shape() == Shape({2, 32, 2, 2}));
  net->reset_classifier(3);
  CHECK(net->forward(c.at("x")).shape() == Shape({2, 3}));
}

TEST_CASE("regnet: training mode reaches every parameter, a linear probe only the head", "[regnet]") {
  auto model = std::make_shared<models::RegNet>(regnet_custom("mini", 10));
  const Tensor x = graft_test::rand_in({4, 3, 32, 32}, -1.0, 1.0, 5, DType::Float32);
  SECTION("full training") {
    model->train();
    sum(model->forward(x)).backward();
    for (const auto& [name, p] : model->named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined());
    }
    CHECK(std::dynamic_pointer_cast<nn::BatchNorm2d>((*model->stem)[1])->num_batches_tracked.item<int64_t>() == 1);
  }
  SECTION("linear probe") {
    model->train();
    model->requires_grad_(false);
    model->reset_classifier(3);
    sum(model->forward(x)).backward();
    for (const auto& [name, p] : model->named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined() == (name.rfind("fc.", 0) == 0));
    }
  }
}

// ---- big: full-size weights and the float64 backward -------------------------------------------
TEST_CASE("regnet: regnet_y_400mf and regnet_x_400mf (seeded weights) load strictly and match torchvision at 64 x 64",
          "[regnet][big]") {
  for (const char* name : {"regnet_y_400mf", "regnet_x_400mf"}) {
    INFO(name);
    regnet_check_arch(name);
  }
}

// Training mode in float64 (kTolF64): a mini RegNetY (widths 16, 32, 48; depths 1, 1, 3; group width 8;
// se_ratio 0.25) with conditioned BatchNorms; BatchNorm on batch statistics (momentum 0.1 for the
// running ones), the grouped 3x3 convs, the squeeze-excitation (ReLU, Sigmoid, the broadcast scale),
// proj and identity shortcuts, the pool and fc on the backward path; the logits, the loss, every
// parameter's gradient and every BatchNorm buffer after the step against torchvision's.
TEST_CASE("regnet: a training-mode forward + backward in float64 matches torchvision's gradients",
          "[regnet][big]") {
  const graft_test::GoldenFile file = graft_test::read_golden(regnet_big_file("regnet_train.bin"));
  REQUIRE(file.cases.size() == 1);
  const GoldenCase& c = file.cases[0];
  auto model = std::make_shared<models::RegNet>(regnet_custom("mini", 10));
  model->to(DType::Float64);
  REQUIRE(model->load_state_dict(regnet_case_state_dict(c)).ok());
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
  CHECK(checked > 60);
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
  int64_t batch_norms = 0;
  for (auto& [name, m] : model->named_modules()) batch_norms += dynamic_cast<nn::BatchNorm2d*>(m) != nullptr;
  CHECK(batch_norms == 1 + 3 * 5 + 3);  // stem, a / b / c per block, proj per stage
  CHECK(buffers == 3 * batch_norms);
  std::printf("[parity] regnet mini train (float64): out max|diff| %.3g, %zu gradients max|diff| %.3g, %lld BatchNorm "
              "buffers\n", graft_test::max_abs_diff(out, c.at("out")), checked, worst, static_cast<long long>(buffers));
}

TEST_CASE("regnet: graft-convert takes a torchvision RegNet checkpoint to 10 classes and 1 channel", "[regnet][convert]") {
  init::SkipInitGuard skip;  // names and shapes are what the conversion reads
  auto src = models::regnet_y_400mf();
  convert::ConvertOptions o{"torchvision-regnet", "regnet_y_400mf", "", "", 10, 1};
  auto [model, r] = convert::convert_state_dict(o, src->state_dict(), "regnet_y_400mf.pth");
  CHECK(r.mapped.size() == src->state_dict().size() - 2);
  REQUIRE(r.dropped.size() == 2);  // fc.weight, fc.bias
  CHECK(r.dropped[0].find("head of 1000 classes replaced by 10") != std::string::npos);
  CHECK(r.missing == std::vector<std::string>{"fc.weight", "fc.bias"});
  REQUIRE(r.adapted.size() == 1);
  CHECK(r.adapted[0].find("stem.0.weight [32, 3, 3, 3] -> [32, 1, 3, 3]") != std::string::npos);
  auto net = std::dynamic_pointer_cast<models::RegNet>(model);
  REQUIRE(net != nullptr);
  CHECK(net->in_chans() == 1);
  CHECK(net->classifier().find_tensor("weight").shape() == Shape({10, 440}));
  // A timm-style name is not a torchvision-regnet key.
  CHECK(convert::map_name(convert::family_table("torchvision-regnet"), "s1.b1.conv1.conv.weight").empty());
  CHECK(convert::map_name(convert::family_table("torchvision-regnet"), "module.trunk_output.block3.block3-11.f.se.fc2.bias") ==
        "trunk_output.block3.block3-11.f.se.fc2.bias");
}
