// tests/test_timm_models.cpp - timm's own CNNs (timm 0.9.16's names and math) against the real timm
// package: timm/resnet18/34/50/101 and the "d" variants timm/resnet18d/34d/50d (models/resnet.hpp's
// ResNetStyle), timm/convnext_tiny/small (models/timm_convnext.hpp), timm/efficientnet_b0
// (models/timm_efficientnet.hpp).
//
// Committed data: tests/data/timm/timm_keys.bin (written by `$GRAFT_PYTHON tools/gen_timm_goldens.py`):
// timm's state_dict keys and shapes of all ten, and the stochastic depth rate of every block of three.
// Big data, generated on demand (~300 MB, ~25 s): `source tools/pyenv.sh && $GRAFT_PYTHON
// tools/gen_timm_goldens.py DIR` writes seeded resnet50d / convnext_tiny / efficientnet_b0 weights with
// their eval outputs and every feature stage, and a float64 training-mode forward + backward of one
// small config per family; the "[big]" cases read them from $GRAFT_MODEL_DATA and FAIL, saying how to
// make them, when the variable is unset or a file is missing.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "../weights_import/name_maps.hpp"
#include "golden.hpp"
#include "model_keys.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/models/registry.hpp"
#include "graft/nn.hpp"
#include "harness.hpp"

namespace {

using namespace graft;
using graft_test::GoldenCase;
using graft_test::kTolF32;
using graft_test::kTolF64;

// timm's name -> its parameter count (sum of p.numel() in timm 0.9.16).
const std::vector<std::pair<std::string, int64_t>> kTimmArchs = {
    {"resnet18", 11689512},      {"resnet34", 21797672},       {"resnet50", 25557032}, {"resnet101", 44549160},
    {"resnet18d", 11708744},     {"resnet34d", 21816904},      {"resnet50d", 25576264},
    {"convnext_tiny", 28589128}, {"convnext_small", 50223688}, {"efficientnet_b0", 5288548}};

const GoldenCase& timm_keys_case(const std::string& name) {
  static const graft_test::GoldenFile file = graft_test::read_golden(GRAFT_TEST_DATA_DIR "/timm/timm_keys.bin");
  for (const auto& c : file.cases)
    if (c.name == name) return c;
  throw Error("test_timm_models: no golden case '" + name + "'");
}

std::string timm_big_file(const std::string& file) {
  return graft_test::model_data_file(file, "tools/gen_timm_goldens.py");
}

// The case's "sd.<key>" tensors as a state dict (the prefix dropped).
nn::StateDict timm_case_state_dict(const GoldenCase& c) {
  nn::StateDict sd;
  for (const auto& [k, t] : c.tensors)
    if (k.rfind("sd.", 0) == 0) sd.emplace_back(k.substr(3), t);
  return sd;
}

// Every block's stochastic depth rate in module order (0 for a ResNet block without one).
std::vector<double> timm_drop_path_rates(nn::Module& m) {
  std::vector<double> p;
  for (auto& [name, mod] : m.named_modules()) {
    if (auto* b = dynamic_cast<models::BasicBlock*>(mod)) p.push_back(b->drop_path ? b->drop_path->p : 0.0);
    if (auto* b = dynamic_cast<models::Bottleneck*>(mod)) p.push_back(b->drop_path ? b->drop_path->p : 0.0);
    if (auto* b = dynamic_cast<models::timm::ConvNeXtBlock*>(mod)) p.push_back(b->drop_path->p);
    if (auto* b = dynamic_cast<models::timm::DepthwiseSeparableConv*>(mod)) p.push_back(b->drop_path->p);
    if (auto* b = dynamic_cast<models::timm::InvertedResidual*>(mod)) p.push_back(b->drop_path->p);
  }
  return p;
}

// The generator's seeded weights of timm/<name>, loaded strictly into the registry's model (eval); eval
// features, logits and every feature stage against timm's. Returns the model.
std::shared_ptr<models::ImageClassifier> timm_check_arch(const std::string& name) {
  auto model = models::create_classifier("timm/" + name, {.init_weights = false});
  const nn::LoadReport report = model->load_state_dict(io::load_safetensors(timm_big_file("timm_" + name + ".safetensors")));
  INFO(report.str());
  REQUIRE(report.ok());
  model->eval();
  const graft_test::GoldenFile file = graft_test::read_golden(timm_big_file("timm_" + name + "_golden.bin"));
  REQUIRE(file.cases.size() == 1);
  const GoldenCase& c = file.cases[0];
  NoGradGuard no_grad;
  const Tensor x = c.at("x");
  const Tensor features = model->forward_features(x);
  GRAFT_REQUIRE_CLOSE(features, c.at("features"), kTolF32);
  GRAFT_REQUIRE_CLOSE(model->forward_head(features, /*pre_logits=*/true), c.at("features"), kTolF32);
  const Tensor out = model->forward_head(features);
  GRAFT_REQUIRE_CLOSE(out, c.at("out"), kTolF32);
  GRAFT_REQUIRE_CLOSE(model->forward(x), c.at("out"), kTolF32);
  std::vector<std::string> stages = model->feature_names();
  stages.pop_back();  // "features", checked above
  const models::NamedFeatures maps = model->forward_intermediates(x, stages);
  REQUIRE(maps.size() == stages.size());
  double worst_stage = 0;
  for (const auto& [n, t] : maps) {
    INFO("stage " << n);
    GRAFT_REQUIRE_CLOSE(t, c.at("inter." + n), kTolF32);
    worst_stage = std::max(worst_stage, graft_test::max_abs_diff(t, c.at("inter." + n)));
  }
  std::printf("[parity] timm/%s: features max|diff| %.3g, logits max|diff| %.3g (max |logit| %.3g), %zu stages "
              "max|diff| %.3g\n",
              name.c_str(), graft_test::max_abs_diff(features, c.at("features")),
              graft_test::max_abs_diff(out, c.at("out")), graft_test::max_abs_diff(c.at("out"), zeros_like(c.at("out"))),
              maps.size(), worst_stage);
  return model;
}

// Folding every BatchNorm keeps the outputs (kTolF32 against the unfused ones and timm's).
void timm_check_fused(models::ImageClassifier& model, const std::string& name, int64_t pairs) {
  const graft_test::GoldenFile file = graft_test::read_golden(timm_big_file("timm_" + name + "_golden.bin"));
  const GoldenCase& c = file.cases[0];
  NoGradGuard no_grad;
  const Tensor unfused = model.forward(c.at("x"));
  REQUIRE(model.fuse_for_inference() == pairs);
  const Tensor fused = model.forward(c.at("x"));
  GRAFT_REQUIRE_CLOSE(fused, unfused, kTolF32);
  GRAFT_REQUIRE_CLOSE(fused, c.at("out"), kTolF32);
  std::printf("[parity] timm/%s with BatchNorm folded: max|fused - unfused| %.3g, vs timm %.3g\n", name.c_str(),
              graft_test::max_abs_diff(fused, unfused), graft_test::max_abs_diff(fused, c.at("out")));
}

// Training mode in float64 (kTolF64): outputs, loss = sum(out * w), every parameter's gradient and every
// BatchNorm buffer after the forward, against timm's.
void timm_check_train(nn::Module& model, const GoldenCase& c) {
  model.train();
  const Tensor out = model.forward(c.at("x"));
  GRAFT_REQUIRE_CLOSE(out, c.at("out"), kTolF64);
  const Tensor loss = sum(mul(out, c.at("w")));
  GRAFT_REQUIRE_CLOSE(loss, c.at("loss"), kTolF64);
  loss.backward();
  double worst = 0;
  size_t checked = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    INFO("gradient of " << name);
    REQUIRE(p.grad().defined());
    GRAFT_REQUIRE_CLOSE(p.grad(), c.at("grad." + name), kTolF64);
    worst = std::max(worst, graft_test::max_abs_diff(p.grad(), c.at("grad." + name)));
    ++checked;
  }
  CHECK(checked == model.named_parameters().size());
  size_t buffers = 0, expected_buffers = 0;
  for (const auto& [k, t] : c.tensors) expected_buffers += k.rfind("after.", 0) == 0;
  for (const auto& [k, t] : model.state_dict()) {
    if (!c.has("after." + k)) continue;
    INFO("buffer " << k);
    if (t.dtype() == DType::Int64) CHECK(t.item<int64_t>() == c.at("after." + k).item<int64_t>());
    else GRAFT_REQUIRE_CLOSE(t, c.at("after." + k), kTolF64);
    ++buffers;
  }
  CHECK(buffers == expected_buffers);  // ConvNeXt has none
  std::printf("[parity] timm %s (float64): out max|diff| %.3g, %zu gradients max|diff| %.3g, %zu buffers\n",
              c.name.c_str(), graft_test::max_abs_diff(out, c.at("out")), checked, worst, buffers);
}

// graft-convert's conversion of sd (named "ckpt.pth") into arch through family's names.
void timm_convert(const std::string& family, const std::string& arch, const nn::StateDict& sd) {
  convert::ConvertOptions o{family, arch, "", "", -1, -1};
  convert::convert_state_dict(o, sd, "ckpt.pth");
}

}  // namespace

TEST_CASE("timm: state_dict keys, shapes and parameter counts equal timm 0.9.16's", "[timm]") {
  for (const auto& [name, params] : kTimmArchs) {
    INFO("timm/" << name);
    auto net = models::create_classifier("timm/" + name, {.init_weights = false});  // shapes only
    graft_test::require_same_keys(net->state_dict(), timm_keys_case("keys_" + name));
    CHECK(net->num_parameters() == params);
    const models::ModelInfo& info = models::model_info("timm/" + name);
    CHECK(info.source == "timm");
    CHECK(info.naming.rfind("timm-", 0) == 0);
    CHECK(net->classifier_name() == info.head);
  }
  // timm's plain ResNets have torchvision's keys (the same class here, timm's init aside).
  for (const std::string name : {"resnet18", "resnet34", "resnet50", "resnet101"}) {
    INFO(name);
    auto tv = models::create_classifier(name, {.init_weights = false});
    graft_test::require_same_keys(tv->state_dict(), timm_keys_case("keys_" + name));
  }
}

TEST_CASE("timm: stochastic depth schedules equal timm's", "[timm]") {
  models::ResNetStyle style{.stem_width = 32, .avg_down = true, .zero_init_last = true, .drop_path_rate = 0.05};
  models::ResNet resnet50d(models::ResNetBlock::Bottleneck, {3, 4, 6, 3}, 1000, 3, 1, 64, style);
  models::timm::ConvNeXtConfig cn = models::timm::convnext_tiny_config();
  cn.drop_path_rate = 0.1;
  models::timm::ConvNeXt convnext(cn);
  models::timm::EfficientNetConfig en;
  en.drop_path_rate = 0.2;
  models::timm::EfficientNet effnet(en);
  const std::vector<std::pair<nn::Module*, std::string>> models_ = {
      {&resnet50d, "resnet50d"}, {&convnext, "convnext_tiny"}, {&effnet, "efficientnet_b0"}};
  for (const auto& [model, name] : models_) {
    INFO(name);
    const std::vector<double> expected = timm_keys_case("drop_path_" + name).at("p").to_vector();
    const std::vector<double> actual = timm_drop_path_rates(*model);
    REQUIRE(actual.size() == expected.size());
    for (size_t i = 0; i < actual.size(); ++i) CHECK(std::abs(actual[i] - expected[i]) <= 1e-7);  // timm: float32 linspace
  }
  // The defaults (timm.create_model's): no stochastic depth at all.
  for (const char* arch : {"timm/resnet50d", "timm/convnext_tiny", "timm/efficientnet_b0"}) {
    auto net = models::create_classifier(arch, {.init_weights = false});
    for (double p : timm_drop_path_rates(*net)) CHECK(p == 0.0);
  }
}

TEST_CASE("timm: timm's initialization (zero_init_last, goog init, layer scale)", "[timm]") {
  SECTION("ResNet: every block's last BatchNorm weight 0, the others 1") {
    auto r50 = models::create_classifier("timm/resnet50");
    auto r18d = models::create_classifier("timm/resnet18d");
    size_t zeroed = 0;
    for (auto [net, last] : {std::pair{r50.get(), ".bn3.weight"}, std::pair{r18d.get(), ".bn2.weight"}})
      for (const auto& [k, t] : net->state_dict()) {
        const bool is_bn_weight = k.find(".bn") != std::string::npos && k.ends_with(".weight");
        if (!is_bn_weight || k.rfind("layer", 0) != 0) continue;
        INFO(k);
        CHECK(max(abs(t)).item<double>() == (k.ends_with(last) ? 0.0 : 1.0));
        zeroed += k.ends_with(last);
      }
    CHECK(zeroed == 16 + 8);
    // torchvision's resnet50 keeps them at 1.
    auto tv = models::create_classifier("resnet50");
    for (const auto& [k, t] : tv->state_dict())
      if (k.ends_with(".bn3.weight")) CHECK(min(t).item<double>() == 1.0);
  }
  SECTION("EfficientNet: conv weights normal(0, sqrt(2 / (k k out / groups))), classifier uniform(1 / sqrt(classes))") {
    manual_seed(3);
    auto net = models::timm::efficientnet_b0();
    double sq = 0;
    int64_t n = 0;
    for (auto& [name, mod] : net->named_modules()) {
      auto* conv = dynamic_cast<nn::Conv2d*>(mod);
      if (!conv) continue;
      const double k = double(conv->kernel_size[0] * conv->kernel_size[1]);
      const double std = std::sqrt(2.0 / (k * double(conv->out_channels / conv->options.groups)));
      for (double v : conv->weight.to_vector()) sq += (v / std) * (v / std), ++n;
      if (conv->bias.defined()) CHECK(max(abs(conv->bias)).item<double>() == 0.0);
    }
    CHECK(n > 3500000);
    // (torchvision's fan_out, not divided by groups, would give each depthwise conv 1 / groups of this variance)
    CHECK(std::abs(sq / double(n) - 1.0) < 0.01);
    const Tensor w = net->classifier().find_tensor("weight");
    CHECK(max(abs(w)).item<double>() <= 1.0 / std::sqrt(1000.0));
    CHECK(max(abs(w)).item<double>() > 0.9 / std::sqrt(1000.0));
  }
  SECTION("ConvNeXt: gamma 1e-6, head.fc trunc_normal_(0.02), zero biases") {
    auto net = models::timm::convnext_tiny();
    for (const auto& [k, t] : net->state_dict()) {
      INFO(k);
      if (k.ends_with(".gamma")) CHECK(std::abs(max(t).item<double>() - 1e-6) < 1e-12);
      if (k.ends_with(".bias")) CHECK(max(abs(t)).item<double>() == 0.0);  // conv, linear and LayerNorm
    }
    const Tensor w = net->classifier().find_tensor("weight");
    CHECK(max(abs(w)).item<double>() <= 2.0);
    CHECK(std::abs(std::sqrt(mean(mul(w, w)).item<double>()) - 0.02) < 5e-4);
  }
}

TEST_CASE("timm: the ImageClassifier interface, features and bad inputs", "[timm]") {
  SECTION("resnet18d: deep stem, stages, reset_classifier, 1 channel") {
    auto net = models::create_classifier("timm/resnet18d", {.num_classes = 5, .in_chans = 1});
    auto* resnet = dynamic_cast<models::ResNet*>(net.get());
    REQUIRE(resnet != nullptr);
    CHECK(resnet->conv1->type_name() == "Sequential");
    CHECK(resnet->stem_conv->weight.shape() == Shape{64, 32, 3, 3});
    CHECK(net->state_dict()[0].second.shape() == Shape{32, 1, 3, 3});  // conv1.0.weight
    net->eval();
    NoGradGuard no_grad;
    const Tensor x = graft_test::rand_in({2, 1, 35, 35}, -1.0, 1.0, 4, DType::Float32);
    const models::NamedFeatures f = net->forward_intermediates(x, {"stem", "layer2", "layer4", "features"});
    CHECK(f[0].second.shape() == Shape{2, 64, 9, 9});
    CHECK(f[1].second.shape() == Shape{2, 128, 5, 5});  // avg_down's ceil_mode: 9 -> 5
    CHECK(f[2].second.shape() == Shape{2, 512, 2, 2});
    CHECK(f[3].second.shape() == Shape{2, 512});
    GRAFT_REQUIRE_CLOSE(net->forward_head(f[3].second, true), f[3].second, kTolF32);
    net->reset_classifier(3);
    CHECK(net->forward(x).shape() == Shape{2, 3});
    graft_test::require_error([&] { net->forward(zeros({1, 3, 32, 32})); },
                              {"ResNet", "expected input [B, 1, H, W]", "[1, 3, 32, 32]"});
    graft_test::require_error(
        [] { models::ResNet(models::ResNetBlock::Basic, {1, 1, 1, 1}, 10, 3, 1, 64, {.drop_path_rate = 1.5}); },
        {"ResNet", "drop_path_rate", "1.5"});
  }
  SECTION("convnext: head.fc, pre_logits, stages, too small an input") {
    auto net = models::create_classifier("timm/convnext_tiny", {.num_classes = 4, .init_weights = false});
    CHECK(net->classifier_name() == "head.fc");
    CHECK(net->feature_names() ==
          std::vector<std::string>{"stem", "stages.0", "stages.1", "stages.2", "stages.3", "features"});
    net->eval();
    NoGradGuard no_grad;
    const Tensor x = graft_test::rand_in({1, 3, 64, 32}, -1.0, 1.0, 5, DType::Float32);
    const models::NamedFeatures f = net->forward_intermediates(x, {"stages.3", "stem"});
    CHECK(f[0].second.shape() == Shape{1, 768, 2, 1});
    CHECK(f[1].second.shape() == Shape{1, 96, 16, 8});
    net->reset_classifier(0);
    CHECK(net->classifier().type_name() == "Identity");
    CHECK(net->forward(x).shape() == Shape{1, 768});
    graft_test::require_error([&] { net->forward(zeros({1, 3, 16, 64})); },
                              {"timm ConvNeXt", "too small", "32"});
    graft_test::require_error([&] { net->forward_head(zeros({1, 96})); },
                              {"timm ConvNeXt", "forward_head", "[B, 768]", "[1, 96]"});
    models::timm::ConvNeXtConfig bad;
    bad.depths = {3, 3, 9};
    graft_test::require_error([&] { models::timm::ConvNeXt m(bad); }, {"timm ConvNeXt", "4 depths"});
  }
  SECTION("efficientnet: classifier, stages, reset keeps dtype") {
    auto net = models::create_classifier("timm/efficientnet_b0", {.num_classes = 6, .init_weights = false});
    const std::vector<std::string> names = net->feature_names();
    REQUIRE(names.size() == 10);
    CHECK(names.front() == "bn1");
    CHECK(names[8] == "bn2");
    net->to(DType::Float64);
    net->eval();
    net->reset_classifier(2);
    CHECK(net->classifier().find_tensor("weight").dtype() == DType::Float64);
    NoGradGuard no_grad;
    const Tensor x = graft_test::rand_in({1, 3, 72, 72}, -1.0, 1.0, 6);
    const models::NamedFeatures f = net->forward_intermediates(x, {"bn1", "blocks.6", "bn2"});
    CHECK(f[0].second.shape() == Shape{1, 32, 36, 36});
    CHECK(f[1].second.shape() == Shape{1, 320, 3, 3});  // 72 -> 36 -> 18 -> 9 -> 5 -> 3
    CHECK(f[2].second.shape() == Shape{1, 1280, 3, 3});
    CHECK(net->forward(x).shape() == Shape{1, 2});
    graft_test::require_error([&] { net->forward(zeros({1, 1, 32, 32}, DType::Float64)); },
                              {"timm EfficientNet", "expected input [B, 3, H, W]"});
  }
}

TEST_CASE("timm: graft-convert converts timm checkpoints and names the family of another naming",
          "[timm][convert]") {
  SECTION("--list prints every timm arch with its naming") {
    const std::string list = convert::list_archs();
    for (const auto& [name, params] : kTimmArchs) {
      INFO(name);
      CHECK(list.find("timm/" + name + " ") != std::string::npos);
    }
    CHECK(list.find("timm-convnext") != std::string::npos);
    CHECK(list.find("timm-efficientnet") != std::string::npos);
  }
  SECTION("timm/resnet50d to 10 classes and 1 channel: conv1.0 adapted, fc replaced") {
    auto src = models::create_classifier("timm/resnet50d", {.init_weights = false});
    convert::ConvertOptions o{"timm-resnet", "timm/resnet50d", "", "", 10, 1};
    auto [model, r] = convert::convert_state_dict(o, src->state_dict(), "resnet50d.pth");
    CHECK(r.missing == std::vector<std::string>{"fc.weight", "fc.bias"});
    REQUIRE(r.adapted.size() == 1);
    CHECK(r.adapted[0].find("conv1.0.weight [32, 3, 3, 3] -> [32, 1, 3, 3]") != std::string::npos);
    CHECK(r.mapped.size() == src->state_dict().size() - 2);
  }
  SECTION("timm/convnext_tiny and timm/efficientnet_b0 round-trip with model. prefixes") {
    for (const char* arch : {"timm/convnext_tiny", "timm/efficientnet_b0"}) {
      INFO(arch);
      auto src = models::create_classifier(arch, {.num_classes = 7});
      nn::StateDict sd;
      for (const auto& [k, t] : src->state_dict()) sd.emplace_back("model." + k, t);
      convert::ConvertOptions o{models::model_info(arch).naming, arch, "", "", -1, -1};
      auto [model, r] = convert::convert_state_dict(o, sd, "ckpt.pth");
      CHECK(r.dropped.empty());
      CHECK(r.missing.empty());
      CHECK(r.num_classes == 7);
      const nn::StateDict got = model->state_dict(), want = src->state_dict();
      REQUIRE(got.size() == want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        CHECK(got[i].first == want[i].first);
        CHECK(got[i].second.to_vector() == want[i].second.to_vector());
      }
    }
  }
  SECTION("a torchvision ConvNeXt into timm/convnext_tiny, and back, names the family that fits") {
    auto tv = models::create_classifier("convnext_tiny", {.init_weights = false});
    auto tm = models::create_classifier("timm/convnext_tiny", {.init_weights = false});
    graft_test::require_error([&] { timm_convert("timm-convnext", "timm/convnext_tiny", tv->state_dict()); },
                              {"ckpt.pth", "another architecture", "not family 'timm-convnext'",
                               "182 of its 182 keys are torchvision-convnext keys", "try --family torchvision-convnext",
                               "convnext_tiny, convnext_small"});
    graft_test::require_error([&] { timm_convert("torchvision-convnext", "convnext_tiny", tm->state_dict()); },
                              {"182 of its 182 keys are timm-convnext keys", "try --family timm-convnext",
                               "timm/convnext_tiny, timm/convnext_small"});
    // torchvision's EfficientNet-B0 into timm's, and an arch of the wrong naming.
    auto tv_b0 = models::create_classifier("efficientnet_b0", {.init_weights = false});
    graft_test::require_error(
        [&] { timm_convert("timm-efficientnet", "timm/efficientnet_b0", tv_b0->state_dict()); },
        {"another architecture", "try --family torchvision-efficientnet"});
    graft_test::require_error([&] { timm_convert("torchvision-convnext", "timm/convnext_tiny", {}); },
                              {"arch 'timm/convnext_tiny' has timm-convnext names", "use --family timm-convnext"});
  }
}

// ---- big: seeded full-size weights and the float64 training step -------------------------------
TEST_CASE("timm: timm/resnet50d (seeded weights) matches timm at 66 x 66, BatchNorm folded too", "[timm][big]") {
  auto model = timm_check_arch("resnet50d");
  timm_check_fused(*model, "resnet50d", 3 + 16 * 3 + 4);
}

TEST_CASE("timm: timm/convnext_tiny (seeded weights) matches timm at 64 x 64", "[timm][big]") {
  timm_check_arch("convnext_tiny");
}

TEST_CASE("timm: timm/efficientnet_b0 (seeded weights) matches timm at 72 x 72, BatchNorm folded too",
          "[timm][big]") {
  auto model = timm_check_arch("efficientnet_b0");
  timm_check_fused(*model, "efficientnet_b0", 2 + 2 + 15 * 3);
}

TEST_CASE("timm: a training-mode forward + backward in float64 matches timm's gradients, per family", "[timm][big]") {
  static const graft_test::GoldenFile file = graft_test::read_golden(timm_big_file("timm_train.bin"));
  auto find = [&](const std::string& name) -> const GoldenCase& {
    for (const auto& c : file.cases)
      if (c.name == name) return c;
    FAIL("timm_train.bin has no case " << name);
    return file.cases[0];
  };
  SECTION("ResNet, BasicBlock [1, 1, 1, 1], deep stem and avg_down, 36 x 36") {
    const GoldenCase& c = find("resnet_train");
    models::ResNet model(models::ResNetBlock::Basic, {1, 1, 1, 1}, 10, 3, 1, 64,
                         {.stem_width = 32, .avg_down = true, .zero_init_last = true});
    REQUIRE(model.load_state_dict(timm_case_state_dict(c)).ok());  // float32 weights, then exactly in float64
    model.to(DType::Float64);
    timm_check_train(model, c);
  }
  SECTION("ConvNeXt, depths (1, 2, 1, 1), dims (16, 32, 48, 64)") {
    const GoldenCase& c = find("convnext_train");
    models::timm::ConvNeXtConfig cfg;
    cfg.depths = {1, 2, 1, 1};
    cfg.dims = {16, 32, 48, 64};
    cfg.num_classes = 10;
    models::timm::ConvNeXt model(cfg);
    model.to(DType::Float64);
    REQUIRE(model.load_state_dict(timm_case_state_dict(c)).ok());
    timm_check_train(model, c);
  }
  SECTION("EfficientNet, channel and depth multipliers 0.25") {
    const GoldenCase& c = find("efficientnet_train");
    models::timm::EfficientNetConfig cfg;
    cfg.channel_multiplier = 0.25;
    cfg.depth_multiplier = 0.25;
    cfg.num_classes = 10;
    models::timm::EfficientNet model(cfg);
    model.to(DType::Float64);
    REQUIRE(model.load_state_dict(timm_case_state_dict(c)).ok());
    timm_check_train(model, c);
  }
}
