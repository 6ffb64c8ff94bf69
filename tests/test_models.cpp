// tests/test_models.cpp - ResNet (torchvision names) and ViT (timm names) against PyTorch 1.13.
//
// Committed data (tests/data/models/models_golden.bin, written by tools/gen_model_goldens.py):
//   keys_<model>      torchvision's / the timm reference's state_dict keys and shapes, in order
//   vit_small_config  a 2-block ViT (dim 32, 32x32 input): state dict, input, features, logits
//   deit_distilled_small_config  a 2-block distilled DeiT (dim 16): tokens, pre-logits, eval and
//                     training logits (averaged), the two heads apart (timm's distilled_training)
// Big data, generated on demand: `/usr/bin/python3 tools/gen_model_goldens.py DIR` writes
// <model>.safetensors and <model>_golden.bin for resnet18/34/50/101 and vit_{tiny,small}_patch16_224
// (and vit_base_patch16_224 with --vit-base, for the hidden by-hand case "[vit_base]");
// the "[models][big]" cases read them from $GRAFT_MODEL_DATA and FAIL, saying how to make them,
// when the variable is unset or a file is missing.
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "golden.hpp"
#include "model_keys.hpp"
#include "harness.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/models/resnet.hpp"
#include "graft/models/vit.hpp"
#include "graft/nn.hpp"

namespace {

using namespace graft;
using graft_test::GoldenCase;
using graft_test::kTolF32;

const graft_test::GoldenFile& models_golden_file() {
  static const graft_test::GoldenFile file =
      graft_test::read_golden(GRAFT_TEST_DATA_DIR "/models/models_golden.bin");
  return file;
}
const GoldenCase& models_golden_case(const std::string& name) {
  for (const auto& c : models_golden_file().cases)
    if (c.name == name) return c;
  throw Error("test_models: no golden case '" + name + "'");
}

// Checks a module's state_dict keys, order and shapes against a keys_<model> case.
void models_require_same_keys(nn::Module& m, const std::string& case_name) {
  graft_test::require_same_keys(m.state_dict(), models_golden_case(case_name));
}

// The case's keys that start with prefix, prefix removed.
nn::StateDict models_prefixed(const GoldenCase& c, const std::string& prefix) {
  nn::StateDict out;
  for (const auto& [k, t] : c.tensors)
    if (k.rfind(prefix, 0) == 0) out.emplace_back(k.substr(prefix.size()), t);
  return out;
}

models::ViTConfig models_small_vit_config() {
  models::ViTConfig cfg;
  cfg.img_size = 32;
  cfg.patch_size = 16;
  cfg.num_classes = 10;
  cfg.embed_dim = 32;
  cfg.depth = 2;
  cfg.num_heads = 2;
  return cfg;
}

// $GRAFT_MODEL_DATA/<file>, or a test failure that says how to generate it.
std::string models_big_file(const std::string& file) {
  return graft_test::model_data_file(file, "tools/gen_model_goldens.py");
}

// Loads <name>.safetensors into model strictly and compares features and logits on the golden input.
template <class Model>
void models_check_big_parity(Model& model, const std::string& name) {
  const std::string weights = models_big_file(name + ".safetensors");
  const std::string golden = models_big_file(name + "_golden.bin");
  const auto sd = io::load_safetensors(weights);
  const nn::LoadReport report = model.load_state_dict(sd);
  REQUIRE(report.ok());
  model.eval();
  const graft_test::GoldenFile file = graft_test::read_golden(golden);
  REQUIRE(file.cases.size() == 1);
  const GoldenCase& c = file.cases[0];
  REQUIRE(c.name == name);
  NoGradGuard no_grad;
  const Tensor features = model.forward_features(c.at("x"));
  GRAFT_REQUIRE_CLOSE(features, c.at("features"), kTolF32);
  const Tensor out = model.classifier().forward(features);
  GRAFT_REQUIRE_CLOSE(out, c.at("out"), kTolF32);
  // The measured differences, for the record (ctest -V, or the test binary run by hand).
  std::printf("[parity] %s: features max|diff| %.3g, logits max|diff| %.3g (max |logit| %.3g)\n", name.c_str(),
              graft_test::max_abs_diff(features, c.at("features")), graft_test::max_abs_diff(out, c.at("out")),
              graft_test::max_abs_diff(c.at("out"), zeros_like(c.at("out"))));
}

// Folds every BatchNorm2d into its conv (Module::fuse_for_inference, eval mode) and checks the
// fused model against the unfused one and against the golden logits, both within kTolF32.
template <class Model>
void models_check_fused(Model& model, const std::string& name, int64_t expected_pairs) {
  REQUIRE(model.load_state_dict(io::load_safetensors(models_big_file(name + ".safetensors"))).ok());
  const graft_test::GoldenFile file = graft_test::read_golden(models_big_file(name + "_golden.bin"));
  const GoldenCase& c = file.cases.at(0);
  model.eval();
  NoGradGuard no_grad;
  const Tensor unfused = model.forward(c.at("x"));
  REQUIRE(model.fuse_for_inference() == expected_pairs);
  REQUIRE(model.fuse_for_inference() == 0);  // folded once only
  const Tensor fused = model.forward(c.at("x"));
  GRAFT_REQUIRE_CLOSE(fused, unfused, kTolF32);
  GRAFT_REQUIRE_CLOSE(fused, c.at("out"), kTolF32);
  std::printf("[parity] %s with BatchNorm folded: max|fused - unfused| %.3g, vs torchvision %.3g\n", name.c_str(),
              graft_test::max_abs_diff(fused, unfused), graft_test::max_abs_diff(fused, c.at("out")));
  model.train();
  graft_test::require_error([&] { (void)model.forward(c.at("x")); }, {"BatchNorm2d", "folded", "training"});
}

}  // namespace

TEST_CASE("models: ResNet state_dict keys and shapes equal torchvision's", "[models]") {
  auto r18 = models::resnet18();
  models_require_same_keys(*r18, "keys_resnet18");
  auto r50 = models::resnet50();
  models_require_same_keys(*r50, "keys_resnet50");
  CHECK(r50->num_parameters() == 25557032);  // torchvision's count
  CHECK(r18->num_parameters() == 11689512);
  CHECK(r50->state_dict()[0].first == "conv1.weight");
  CHECK(r50->child("layer2")->child("0")->child("downsample")->child("0")->find_tensor("weight").shape() ==
        Shape({512, 256, 1, 1}));
  // Bottleneck puts the stride on the 3x3 conv (torchvision's v1.5).
  auto b = std::dynamic_pointer_cast<models::Bottleneck>(r50->child("layer3")->child("0"));
  REQUIRE(b != nullptr);
  CHECK(b->conv1->options.stride == std::array<int64_t, 2>{1, 1});
  CHECK(b->conv2->options.stride == std::array<int64_t, 2>{2, 2});
}

TEST_CASE("models: ResNet-34 and ResNet-101 have torchvision's keys and parameter counts", "[models]") {
  models_require_same_keys(*models::resnet34(), "keys_resnet34");
  models_require_same_keys(*models::resnet101(), "keys_resnet101");
  CHECK(models::resnet34()->num_parameters() == 21797672);
  CHECK(models::resnet101()->num_parameters() == 44549160);
  CHECK(models::resnet34(10)->num_parameters() == 21797672 - 1000 * 513 + 10 * 513);
}

TEST_CASE("models: ViT state_dict keys and shapes equal timm's", "[models]") {
  auto tiny = models::vit_tiny_patch16_224();
  models_require_same_keys(*tiny, "keys_vit_tiny_patch16_224");
  models_require_same_keys(*models::vit_small_patch16_224(), "keys_vit_small_patch16_224");
  models_require_same_keys(*models::vit_base_patch16_224(), "keys_vit_base_patch16_224");
  CHECK(models::vit_small_patch16_224()->num_parameters() == 22050664);  // timm's count
  CHECK(models::vit_base_patch16_224()->num_parameters() == 86567656);
}

TEST_CASE("models: small ViT matches the timm reference (features and logits)", "[models][golden]") {
  const GoldenCase& c = models_golden_case("vit_small_config");
  models::VisionTransformer vit(models_small_vit_config());
  vit.load_state_dict(models_prefixed(c, "sd."));
  vit.eval();
  NoGradGuard no_grad;
  const Tensor features = vit.forward_features(c.at("x"));
  CHECK(features.shape() == Shape({2, 32}));
  GRAFT_REQUIRE_CLOSE(features, c.at("features"), kTolF32);
  GRAFT_REQUIRE_CLOSE(vit.forward(c.at("x")), c.at("out"), kTolF32);
}

TEST_CASE("models: distilled DeiT keys and shapes equal timm's VisionTransformerDistilled", "[models]") {
  auto tiny = models::deit_tiny_distilled_patch16_224();
  models_require_same_keys(*tiny, "keys_deit_tiny_distilled_patch16_224");
  CHECK(tiny->num_parameters() == 5910800);  // timm's deit_tiny_distilled_patch16_224
  CHECK(tiny->num_features() == 2 * 192);
  CHECK(tiny->head_hidden_size() == 192);
}

TEST_CASE("models: small distilled DeiT matches the timm reference (eval and training)", "[models][golden]") {
  const GoldenCase& c = models_golden_case("deit_distilled_small_config");
  models::ViTConfig cfg = models_small_vit_config();
  cfg.embed_dim = 16;
  cfg.distilled = true;
  models::VisionTransformer deit(cfg);
  const nn::LoadReport report = deit.load_state_dict(models_prefixed(c, "sd."));
  CHECK(report.missing.empty());
  CHECK(report.unexpected.empty());
  const Tensor& x = c.at("x");
  NoGradGuard no_grad;
  deit.eval();
  const Tensor tokens = deit.forward_tokens(x);
  CHECK(tokens.shape() == Shape({2, 6, 16}));  // cls, dist, 4 patches
  GRAFT_REQUIRE_CLOSE(tokens, c.at("tokens"), kTolF32);
  const Tensor features = deit.forward_features(x);
  CHECK(features.shape() == Shape({2, 32}));  // [cls | dist]
  GRAFT_REQUIRE_CLOSE(features.narrow(1, 0, 16), tokens.select(1, 0), kTolF32);
  GRAFT_REQUIRE_CLOSE(features.narrow(1, 16, 16), tokens.select(1, 1), kTolF32);
  GRAFT_REQUIRE_CLOSE(deit.forward_head(features, /*pre_logits=*/true), c.at("pre_logits"), kTolF32);
  const Tensor out_eval = deit.forward(x);
  GRAFT_REQUIRE_CLOSE(out_eval, c.at("out"), kTolF32);
  const auto [out_cls, out_dist] = deit.forward_distilled(x);
  GRAFT_REQUIRE_CLOSE(out_cls, c.at("out_cls"), kTolF32);
  GRAFT_REQUIRE_CLOSE(out_dist, c.at("out_dist"), kTolF32);
  deit.train();  // dropout 0: training mode averages the heads as eval does (timm, distilled_training off)
  const Tensor out_train = deit.forward(x);
  GRAFT_REQUIRE_CLOSE(out_train, c.at("out_train"), kTolF32);
  std::printf("[parity] deit_distilled_small_config: tokens max|diff| %.3g, eval logits %.3g, train logits %.3g, "
              "head / head_dist %.3g / %.3g\n",
              graft_test::max_abs_diff(tokens, c.at("tokens")), graft_test::max_abs_diff(out_eval, c.at("out")),
              graft_test::max_abs_diff(out_train, c.at("out_train")), graft_test::max_abs_diff(out_cls, c.at("out_cls")),
              graft_test::max_abs_diff(out_dist, c.at("out_dist")));

  // reset_classifier replaces both heads; 0 leaves the pre-logits.
  deit.eval();
  deit.reset_classifier(3);
  CHECK(deit.classifier().find_tensor("weight").shape() == Shape({3, 16}));
  CHECK(deit.child("head_dist")->find_tensor("weight").shape() == Shape({3, 16}));
  CHECK(deit.forward(x).shape() == Shape({2, 3}));
  deit.reset_classifier(0);
  CHECK(deit.child("head_dist")->type_name() == "Identity");
  GRAFT_REQUIRE_CLOSE(deit.forward(x), c.at("pre_logits"), kTolF32);
  graft_test::require_error([&] { deit.forward_head(zeros({2, 16})); },
                            {"ViT", "distilled forward_head expects [cls | dist] features [B, 32]", "[2, 16]"});
  models::VisionTransformer plain(models_small_vit_config());
  graft_test::require_error([&] { plain.forward_distilled(x); }, {"ViT", "forward_distilled needs a distilled model"});
}

TEST_CASE("models: reset_classifier changes the head and keeps the rest", "[models]") {
  SECTION("ResNet-18") {
    auto model = models::resnet18();
    model->eval();
    const nn::StateDict before = model->state_dict();
    model->reset_classifier(7);
    const nn::StateDict after = model->state_dict();
    REQUIRE(after.size() == before.size());
    for (size_t i = 0; i < after.size(); ++i) {
      REQUIRE(after[i].first == before[i].first);
      if (after[i].first.rfind("fc.", 0) == 0) continue;
      CHECK(after[i].second.impl() == before[i].second.impl());
    }
    CHECK(model->classifier().find_tensor("weight").shape() == Shape({7, 512}));
    CHECK(model->classifier().find_tensor("bias").shape() == Shape({7}));
    const Tensor x = graft_test::rand_in({2, 3, 32, 32}, -1.0, 1.0, 3, DType::Float32);
    NoGradGuard no_grad;
    const Tensor features = model->forward_features(x);
    CHECK(features.shape() == Shape({2, 512}));
    CHECK(model->forward(x).shape() == Shape({2, 7}));
    model->reset_classifier(0);
    CHECK(model->classifier().type_name() == "Identity");
    GRAFT_REQUIRE_CLOSE(model->forward(x), features, kTolF32);
    CHECK(model->state_dict().size() == before.size() - 2);
  }
  SECTION("ViT") {
    const GoldenCase& c = models_golden_case("vit_small_config");
    models::VisionTransformer vit(models_small_vit_config());
    vit.load_state_dict(models_prefixed(c, "sd."));
    vit.eval();
    vit.reset_classifier(3);
    CHECK(vit.classifier().find_tensor("weight").shape() == Shape({3, 32}));
    NoGradGuard no_grad;
    CHECK(vit.forward(c.at("x")).shape() == Shape({2, 3}));
    // The backbone is untouched: features still match the reference.
    GRAFT_REQUIRE_CLOSE(vit.forward_features(c.at("x")), c.at("features"), kTolF32);
    vit.reset_classifier(0);
    GRAFT_REQUIRE_CLOSE(vit.forward(c.at("x")), c.at("features"), kTolF32);
  }
}

TEST_CASE("models: bad configurations and inputs throw naming the problem", "[models]") {
  graft_test::require_error([] { models::ResNet(models::ResNetBlock::Basic, {1, 1, 1}); },
                            {"ResNet", "expected 4 stage sizes", "got 3"});
  graft_test::require_error([] { models::ResNet(models::ResNetBlock::Basic, {1, 0, 1, 1}); },
                            {"ResNet", "layer2", "at least one block"});
  graft_test::require_error(
      [] {
        auto m = models::resnet18();
        m->forward_features(zeros({1, 1, 32, 32}));
      },
      {"ResNet", "expected input [B, 3, H, W]", "[1, 1, 32, 32]"});
  graft_test::require_error([] { models::resnet18()->reset_classifier(-1); }, {"ResNet", "num_classes", "-1"});
  graft_test::require_error(
      [] {
        models::ViTConfig cfg = models_small_vit_config();
        cfg.num_heads = 5;
        models::VisionTransformer v(cfg);
      },
      {"ViT", "embed_dim 32", "num_heads 5"});
  graft_test::require_error(
      [] {
        models::VisionTransformer v(models_small_vit_config());
        v.forward(zeros({1, 3, 48, 48}));
      },
      {"PatchEmbed", "expected input [B, C, 32, 32]"});
}

TEST_CASE("models: ResNet-18 matches torchvision at 224x224", "[models][big]") {
  auto model = models::resnet18();
  models_check_big_parity(*model, "resnet18");
}

TEST_CASE("models: ResNet-18 and ResNet-50 with BatchNorm folded into the convs match unfused", "[models][big]") {
  auto r18 = models::resnet18();
  models_check_fused(*r18, "resnet18", 1 + 8 * 2 + 3);  // stem, 8 BasicBlocks, 3 downsamples
  auto r50 = models::resnet50();
  models_check_fused(*r50, "resnet50", 1 + 16 * 3 + 4);  // stem, 16 Bottlenecks, 4 downsamples
}

TEST_CASE("fuse_for_inference needs eval mode; fuse_conv_bn folds scale and shift", "[models]") {
  auto model = models::resnet18(10);
  graft_test::require_error([&] { model->fuse_for_inference(); }, {"fuse_for_inference", "training mode", "eval()"});
  // One conv + batch norm with non-trivial statistics, float64: fused == unfused to kTolF64.
  nn::Conv2dOptions o;
  o.padding = {1, 1};
  o.bias = false;
  nn::Sequential seq({std::make_shared<nn::Conv2d>(3, 5, 3, o), std::make_shared<nn::BatchNorm2d>(5)});
  seq.to(DType::Float64);
  auto bn = std::dynamic_pointer_cast<nn::BatchNorm2d>(seq[1]);
  {
    NoGradGuard no_grad;
    bn->running_mean.copy_(graft_test::rand_in({5}, -1, 1, 7));
    bn->running_var.copy_(graft_test::rand_in({5}, 0.5, 2, 8));
    bn->weight.copy_(graft_test::rand_in({5}, -2, 2, 9));
    bn->bias.copy_(graft_test::rand_in({5}, -1, 1, 10));
  }
  seq.eval();
  const Tensor x = graft_test::rand_in({2, 3, 7, 6}, -1, 1, 11).detach();
  NoGradGuard no_grad;
  const Tensor unfused = seq.forward(x);
  REQUIRE(seq.fuse_for_inference() == 1);
  REQUIRE(std::dynamic_pointer_cast<nn::Conv2d>(seq[0])->bias.defined());  // gained a bias
  GRAFT_REQUIRE_CLOSE(seq.forward(x), unfused, graft_test::kTolF64);
}

TEST_CASE("models: ResNet-50 matches torchvision at 224x224", "[models][big]") {
  auto model = models::resnet50();
  models_check_big_parity(*model, "resnet50");
}

TEST_CASE("models: ViT-Ti/16 matches the timm reference at 224x224", "[models][big]") {
  auto model = models::vit_tiny_patch16_224();
  models_check_big_parity(*model, "vit_tiny_patch16_224");
}

TEST_CASE("models: ResNet-34 matches torchvision at 224x224", "[models][big]") {
  auto model = models::resnet34();
  models_check_big_parity(*model, "resnet34");
}

TEST_CASE("models: ResNet-101 matches torchvision at 224x224", "[models][big]") {
  auto model = models::resnet101();
  models_check_big_parity(*model, "resnet101");
}

TEST_CASE("models: ViT-S/16 matches the timm reference at 224x224", "[models][big]") {
  auto model = models::vit_small_patch16_224();
  models_check_big_parity(*model, "vit_small_patch16_224");
}

// Hidden (not in ctest): ViT-B/16's files are 330 MB, so it is checked by hand:
//   /usr/bin/python3 tools/gen_model_goldens.py DIR --vit-base
//   GRAFT_MODEL_DATA=DIR ./build/tests/graft_tests "[vit_base]"
TEST_CASE("models: ViT-B/16 matches the timm reference at 224x224", "[.][models][vit_base]") {
  auto model = models::vit_base_patch16_224();
  models_check_big_parity(*model, "vit_base_patch16_224");
}

TEST_CASE("models: gradients reach every ViT parameter, and none reach a frozen backbone", "[models]") {
  const GoldenCase& c = models_golden_case("vit_small_config");
  models::VisionTransformer vit(models_small_vit_config());
  vit.load_state_dict(models_prefixed(c, "sd."));
  vit.train();
  SECTION("full fine-tuning") {
    sum(vit.forward(c.at("x"))).backward();
    for (const auto& [name, p] : vit.named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined());
    }
  }
  SECTION("linear probe") {
    vit.requires_grad_(false);
    vit.reset_classifier(3);
    sum(vit.forward(c.at("x"))).backward();
    for (const auto& [name, p] : vit.named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined() == (name.rfind("head.", 0) == 0));
    }
  }
}
