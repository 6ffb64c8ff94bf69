// Tests for graft-convert's logic (weights_import/name_maps.hpp): prefix stripping, head replacement,
// first-conv adaptation as timm's adapt_input_conv, metadata, and errors naming the offending keys.
// Checkpoints are built in C++ from Graft's own models (random init), so no data files are needed.
#include <unistd.h>

#include <filesystem>
#include <string>

#include "../weights_import/name_maps.hpp"
#include "graft/io/safetensors.hpp"
#include "harness.hpp"

using namespace graft;
using namespace graft_test;

namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed when the object goes.
struct ConvertTestTmpDir {
  fs::path path;
  ConvertTestTmpDir() {
    path = fs::temp_directory_path() /
           ("graft_test_convert_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~ConvertTestTmpDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

nn::StateDict convert_test_prefixed(const nn::StateDict& sd, const std::string& prefix) {
  nn::StateDict out;
  for (const auto& [k, t] : sd) out.emplace_back(prefix + k, t);
  return out;
}

bool convert_test_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && a.to_vector() == b.to_vector();
}

}  // namespace

TEST_CASE("convert: module.-prefixed resnet18 to 10 classes, 1 channel, with metadata", "[convert]") {
  ConvertTestTmpDir tmp;
  auto src_model = models::resnet18();
  const nn::StateDict src = src_model->state_dict();
  const std::string in = (tmp.path / "resnet18_dp.safetensors").string();
  const std::string out = (tmp.path / "resnet18_gray10.safetensors").string();
  io::save_safetensors(in, convert_test_prefixed(src, "module."));

  convert::ConvertOptions o{"torchvision-resnet", "resnet18", in, out, 10, 1};
  const convert::ConvertReport r = convert::convert_file(o);
  CHECK(r.source_num_classes == 1000);
  CHECK(r.num_classes == 10);
  CHECK(r.source_in_chans == 3);
  CHECK(r.in_chans == 1);
  REQUIRE(r.adapted.size() == 1);
  CHECK(r.adapted[0].find("conv1.weight") != std::string::npos);
  CHECK(r.missing == std::vector<std::string>{"fc.weight", "fc.bias"});
  CHECK(r.mapped.size() == src.size() - 2);
  bool conv1_mapped = false;
  for (const auto& [from, to] : r.mapped) {
    CHECK(from == "module." + to);
    conv1_mapped = conv1_mapped || to == "conv1.weight";
  }
  CHECK(conv1_mapped);
  CHECK(r.str().find("dropped  module.fc.weight") != std::string::npos);

  io::SafetensorsFile f(out);
  for (const auto& n : f.names()) CHECK(n.rfind("module.", 0) != 0);
  const auto& md = f.metadata();
  CHECK(md.at("format") == "graft");
  CHECK(md.at("graft_version") == "0.1.0");
  CHECK(md.at("architecture") == "resnet18");
  CHECK(md.at("num_classes") == "10");
  CHECK(md.at("in_chans") == "1");
  CHECK(md.at("source") == "resnet18_dp.safetensors");

  const auto converted = io::load_safetensors(out);
  CHECK(converted.at("fc.weight").shape() == Shape{10, 512});
  CHECK(converted.at("fc.bias").shape() == Shape{10});
  const Tensor rgb_sum = sum(src_model->state_dict().front().second, {1}, true);
  REQUIRE(src_model->state_dict().front().first == "conv1.weight");
  CHECK(converted.at("conv1.weight").shape() == Shape{64, 1, 7, 7});
  GRAFT_REQUIRE_CLOSE(converted.at("conv1.weight"), rgb_sum, kTolF32);
  for (const auto& [k, t] : src) {
    if (k == "conv1.weight" || k.rfind("fc.", 0) == 0) continue;
    INFO(k);
    REQUIRE(converted.count(k) == 1);
    CHECK(convert_test_equal(converted.at(k), t));
  }

  models::ResNet gray10(models::ResNetBlock::Basic, {2, 2, 2, 2}, 10, 1);
  CHECK(gray10.load_state_dict(converted, /*strict=*/true).ok());
}

TEST_CASE("convert: same head and channels is an identity with model. prefix stripped", "[convert]") {
  auto src_model = models::resnet18(7);
  const nn::StateDict src = src_model->state_dict();
  convert::ConvertOptions o{"torchvision-resnet", "resnet18", "", "", -1, -1};
  auto [model, r] = convert::convert_state_dict(o, convert_test_prefixed(src, "module.model."), "mem");
  CHECK(r.num_classes == 7);
  CHECK(r.in_chans == 3);
  CHECK(r.adapted.empty());
  CHECK(r.missing.empty());
  CHECK(r.dropped.empty());
  const nn::StateDict got = model->state_dict();
  REQUIRE(got.size() == src.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].first == src[i].first);
    CHECK(convert_test_equal(got[i].second, src[i].second));
  }
}

TEST_CASE("convert: in_chans 5 repeats RGB cyclically and scales by 3/5", "[convert]") {
  // w [2, 3, 1, 2]: value = 100 * o + 10 * c + k
  Tensor w = zeros({2, 3, 1, 2});
  float* p = w.data<float>();
  for (int o = 0; o < 2; ++o)
    for (int c = 0; c < 3; ++c)
      for (int k = 0; k < 2; ++k) p[(o * 3 + c) * 2 + k] = float(100 * o + 10 * c + k);
  const Tensor a = convert::adapt_input_conv(w, 5, "w");
  REQUIRE(a.shape() == Shape{2, 5, 1, 2});
  Tensor want = zeros({2, 5, 1, 2});
  float* q = want.data<float>();
  for (int o = 0; o < 2; ++o)
    for (int c = 0; c < 5; ++c)
      for (int k = 0; k < 2; ++k) q[(o * 5 + c) * 2 + k] = float(100 * o + 10 * (c % 3) + k) * 3.0f / 5.0f;
  GRAFT_REQUIRE_CLOSE(a, want, kTolF32);
  CHECK(convert_test_equal(convert::adapt_input_conv(w, 3, "w"), w));
  require_error([&] { convert::adapt_input_conv(convert::adapt_input_conv(w, 5, "w"), 2, "stem.w"); },
                {"stem.w", "3-channel", "5"});

  // Through the whole conversion: a resnet18 with 5 input channels loads it.
  auto src_model = models::resnet18();
  convert::ConvertOptions o{"torchvision-resnet", "resnet18", "", "", -1, 5};
  auto [model, r] = convert::convert_state_dict(o, src_model->state_dict(), "mem");
  CHECK(r.in_chans == 5);
  CHECK(model->state_dict().front().second.shape() == Shape{64, 5, 7, 7});
}

TEST_CASE("convert: errors name the arch, file and keys", "[convert]") {
  convert::ConvertOptions bad_arch{"torchvision-resnet", "resnet19", "", "", -1, -1};
  require_error([&] { convert::convert_state_dict(bad_arch, models::resnet18(10)->state_dict(), "r.pth"); },
                {"unknown arch 'resnet19'", "resnet18"});
  convert::ConvertOptions bad_family{"keras", "resnet18", "", "", -1, -1};
  require_error([&] { convert::convert_state_dict(bad_family, {}, "r.pth"); }, {"unknown family 'keras'"});

  // ViT weights into resnet18: every key is dropped, so every ResNet key is missing; the message gives
  // the count and the first few names, and names the family the checkpoint is from.
  auto vit = models::vit_tiny_patch16_224(10);
  convert::ConvertOptions o{"torchvision-resnet", "resnet18", "", "", -1, -1};
  require_error([&] { convert::convert_state_dict(o, vit->state_dict(), "vit.pth"); },
                {"vit.pth", "resnet18", "missing keys", "'conv1.weight'", "120 in all", "another architecture",
                 "try --family timm-vit"});

  // resnet18 weights into resnet34: missing blocks; resnet34 into resnet18: unexpected blocks.
  convert::ConvertOptions to34{"torchvision-resnet", "resnet34", "", "", -1, -1};
  require_error([&] { convert::convert_state_dict(to34, models::resnet18(10)->state_dict(), "r18.pth"); },
                {"r18.pth", "missing keys", "'layer1.2.conv1.weight'"});

  // A mis-shaped tensor is named with both shapes.
  nn::StateDict sd = models::resnet18(10)->state_dict();
  for (auto& [k, t] : sd)
    if (k == "layer2.0.conv1.weight") t = zeros({128, 32, 3, 3});
  require_error([&] { convert::convert_state_dict(o, sd, "bad.pth"); },
                {"bad.pth", "size mismatch for 'layer2.0.conv1.weight'", "[128, 32, 3, 3]"});

  // Missing input file: the reader's error names it.
  convert::ConvertOptions missing_file{"torchvision-resnet", "resnet18", "/nonexistent/x.safetensors",
                                       "/nonexistent/y.safetensors", -1, -1};
  require_error([&] { convert::convert_file(missing_file); }, {"/nonexistent/x.safetensors"});
}

TEST_CASE("convert: timm-vit distilled DeiT keeps dist_token and replaces head and head_dist together", "[convert]") {
  auto src_model = models::deit_tiny_distilled_patch16_224();
  const nn::StateDict sd = src_model->state_dict();
  SECTION("same classes: every key maps, nothing dropped") {
    convert::ConvertOptions o{"timm-vit", "deit_tiny_distilled_patch16_224", "", "", -1, -1};
    auto [model, r] = convert::convert_state_dict(o, sd, "deit.pth");
    CHECK(r.dropped.empty());
    CHECK(r.missing.empty());
    CHECK(r.mapped.size() == sd.size());
    std::map<std::string, Tensor> got;
    for (const auto& [k, t] : model->state_dict()) got.emplace(k, t);
    CHECK(convert_test_equal(got.at("dist_token"), src_model->dist_token));
    CHECK(convert_test_equal(got.at("head_dist.weight"), src_model->child("head_dist")->find_tensor("weight")));
  }
  SECTION("new classes: both heads fresh") {
    convert::ConvertOptions o{"timm-vit", "deit_tiny_distilled_patch16_224", "", "", 5, -1};
    auto [model, r] = convert::convert_state_dict(o, sd, "deit.pth");
    CHECK(r.missing == std::vector<std::string>{"head.weight", "head.bias", "head_dist.weight", "head_dist.bias"});
    CHECK(r.dropped.size() == 4);
    CHECK(model->child("head_dist")->find_tensor("weight").shape() == Shape{5, 192});
  }
}

TEST_CASE("convert: timm-vit with model. prefix, new head, 1 channel, unknown keys dropped", "[convert]") {
  auto src_model = models::vit_tiny_patch16_224();
  nn::StateDict sd = convert_test_prefixed(src_model->state_dict(), "model.");
  sd.emplace_back("model.fc_norm.weight", zeros({192}));  // not a key of this family: reported, dropped
  convert::ConvertOptions o{"timm-vit", "vit_tiny_patch16_224", "", "", 5, 1};
  auto [model, r] = convert::convert_state_dict(o, sd, "vit.pth");
  CHECK(r.missing == std::vector<std::string>{"head.weight", "head.bias"});
  REQUIRE(r.adapted.size() == 1);
  CHECK(r.adapted[0].find("patch_embed.proj.weight") != std::string::npos);
  CHECK(r.str().find("dropped  model.fc_norm.weight") != std::string::npos);
  std::map<std::string, Tensor> got;
  for (const auto& [k, t] : model->state_dict()) got.emplace(k, t);
  CHECK(got.at("head.weight").shape() == Shape{5, 192});
  GRAFT_REQUIRE_CLOSE(got.at("patch_embed.proj.weight"),
                      sum(src_model->state_dict()[2].second, {1}, true), kTolF32);
  REQUIRE(src_model->state_dict()[2].first == "patch_embed.proj.weight");
  for (const auto& [k, t] : src_model->state_dict()) {
    if (k == "patch_embed.proj.weight" || k.rfind("head.", 0) == 0) continue;
    INFO(k);
    CHECK(convert_test_equal(got.at(k), t));
  }
}
