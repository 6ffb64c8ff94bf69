// tests/test_peft_roundtrip.cpp - LoRA adapters between Graft and Hugging Face PEFT 0.7.1, both ways, on a
// 2-block timm-style ViT (dim 32, 32x32 input, patch 16).
//
// PEFT -> Graft: `source tools/pyenv.sh && $GRAFT_PYTHON tools/gen_peft_goldens.py DIR` writes
// DIR/peft/: the base ViT's weights, the adapter PEFT's save_pretrained wrote (LoRA on qkv, proj,
// fc2, the patch Conv2d among them, random lora_B; the head in modules_to_save) and PEFT's logits,
// unmerged and merged; the first case reads them from $GRAFT_MODEL_DATA and FAILS, saying how to
// make them, when the variable is unset or a file is missing.
// Graft -> PEFT: the hidden case "[peft-write]" loads the same base, adds its own LoRA (another rank,
// alpha and targets), saves it with peft::save_adapter and writes its logits into
// $GRAFT_PEFT_ROUNDTRIP_DIR (default <build>/peft_roundtrip); ctest then runs
// tools/check_peft_adapter.py, which loads them with peft.PeftModel.from_pretrained and requires
// PEFT's logits to be Graft's (tests/CMakeLists.txt: peft_roundtrip_write, peft_roundtrip_python).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "golden.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/models/vit.hpp"
#include "graft/nn.hpp"
#include "graft/peft/lora.hpp"
#include "harness.hpp"

#ifndef GRAFT_PEFT_ROUNDTRIP_DIR
#define GRAFT_PEFT_ROUNDTRIP_DIR "peft_roundtrip"
#endif

namespace {

using namespace graft;
using graft_test::kTolF32;
namespace fs = std::filesystem;

std::string peftrt_data_file(const std::string& file) {
  return graft_test::model_data_file("peft/" + file, "tools/gen_peft_goldens.py");
}

const graft_test::GoldenCase& peftrt_case(const std::string& name) {
  static const graft_test::GoldenFile file = graft_test::read_golden(peftrt_data_file("peft_golden.bin"));
  for (const auto& c : file.cases)
    if (c.name == name) return c;
  throw Error("test_peft_roundtrip: no golden case '" + name + "' (regenerate with tools/gen_peft_goldens.py)");
}

// gen_peft_goldens.SuffixNet: body -> relu(pre_classifier) -> classifier.
class PeftrtSuffixNet : public nn::Module {
 public:
  PeftrtSuffixNet() : Module("SuffixNet") {
    body = register_module("body", std::make_shared<nn::Linear>(8, 8));
    pre_classifier = register_module("pre_classifier", std::make_shared<nn::Linear>(8, 8));
    classifier = register_module("classifier", std::make_shared<nn::Linear>(8, 3));
  }
  Tensor forward(const Tensor& x) override { return classifier->forward(relu(pre_classifier->forward(body->forward(x)))); }
  std::shared_ptr<nn::Linear> body, pre_classifier, classifier;
};

// gen_peft_goldens.lora_vit's shape, with the generator's base weights.
std::shared_ptr<models::VisionTransformer> peftrt_base_vit() {
  models::ViTConfig c;
  c.img_size = 32;
  c.patch_size = 16;
  c.num_classes = 10;
  c.embed_dim = 32;
  c.depth = 2;
  c.num_heads = 2;
  auto vit = std::make_shared<models::VisionTransformer>(c);
  REQUIRE(vit->load_state_dict(io::load_safetensors(peftrt_data_file("base.safetensors"))).ok());
  vit->eval();
  return vit;
}

}  // namespace

TEST_CASE("peft-roundtrip: an adapter PEFT saved loads into Graft and gives PEFT's logits, merged too",
          "[peft-roundtrip]") {
  const graft_test::GoldenCase& c = peftrt_case("vit_lora");
  const std::string dir = peftrt_data_file("adapter");
  auto vit = peftrt_base_vit();
  NoGradGuard no_grad;
  const Tensor x = c.at("x");
  GRAFT_REQUIRE_CLOSE(vit->forward(x), c.at("base_out"), kTolF32);

  // PEFT's own adapter_config.json (with its extra fields: auto_mapping, loftq_config, megatron_*).
  peft::LoraConfig cfg = peft::read_adapter_config(dir + "/adapter_config.json");
  std::sort(cfg.target_modules.begin(), cfg.target_modules.end());  // PEFT writes a set
  CHECK(cfg.r == 4);
  CHECK(cfg.lora_alpha == 8.0);
  CHECK(cfg.scaling() == 2.0);
  CHECK(cfg.lora_dropout == 0.0);
  CHECK(cfg.target_modules == std::vector<std::string>{"fc2", "proj", "qkv"});
  CHECK(cfg.modules_to_save == std::vector<std::string>{"head"});

  const peft::LoraReport r = peft::load_adapter(*vit, dir);
  CHECK(r.adapted == std::vector<std::string>{"patch_embed.proj", "blocks.0.attn.qkv", "blocks.0.attn.proj",
                                              "blocks.0.mlp.fc2", "blocks.1.attn.qkv", "blocks.1.attn.proj",
                                              "blocks.1.mlp.fc2"});
  CHECK(r.saved == std::vector<std::string>{"head"});
  // The patch conv's branch has PEFT's shapes: A a 16x16 stride-16 Conv2d, B a 1x1 Conv2d.
  auto& patch = dynamic_cast<nn::Conv2d&>(*vit->patch_embed->child("proj"));
  CHECK(dynamic_cast<nn::Conv2d&>(*patch.child("lora_A")).weight.shape() == Shape{4, 3, 16, 16});
  CHECK(dynamic_cast<nn::Conv2d&>(*patch.child("lora_B")).weight.shape() == Shape{32, 4, 1, 1});

  const Tensor y = vit->forward(x);
  INFO("max |graft - peft| logits " << graft_test::max_abs_diff(y, c.at("out")) << ", |peft - base| "
                                    << graft_test::max_abs_diff(c.at("out"), c.at("base_out")));
  GRAFT_REQUIRE_CLOSE(y, c.at("out"), kTolF32);
  // The adapter moves the logits far past the tolerance, so the comparison above can fail.
  REQUIRE(graft_test::max_abs_diff(y, c.at("base_out")) > 0.5);

  // merge_and_unload: PEFT's merged weights (every base key) and logits.
  CHECK(peft::remove_lora(*vit) == 7);
  const nn::StateDict merged = vit->state_dict();
  size_t n_golden = 0;
  for (const auto& [k, t] : c.tensors) n_golden += k.rfind("merged.", 0) == 0;
  CHECK(merged.size() == n_golden);
  for (const auto& [k, t] : merged) {
    INFO("merged weight " << k);
    REQUIRE(c.has("merged." + k));
    GRAFT_REQUIRE_CLOSE(t, c.at("merged." + k), kTolF32);
  }
  const Tensor ym = vit->forward(x);
  INFO("max |graft - peft| merged logits " << graft_test::max_abs_diff(ym, c.at("merged_out")));
  GRAFT_REQUIRE_CLOSE(ym, c.at("merged_out"), kTolF32);
}

TEST_CASE("peft-roundtrip: modules_to_save match by PEFT's suffix rule, so 'classifier' takes pre_classifier too",
          "[peft-roundtrip]") {
  const graft_test::GoldenCase& c = peftrt_case("suffix");
  PeftrtSuffixNet net;
  nn::StateDict base;
  for (const auto& [k, t] : c.tensors)
    if (k.rfind("base.", 0) == 0) base.emplace_back(k.substr(5), t);
  REQUIRE(net.load_state_dict(base).ok());
  net.eval();
  const peft::LoraReport r = peft::load_adapter(net, peftrt_data_file("suffix_adapter"));
  CHECK(r.adapted == std::vector<std::string>{"body"});
  CHECK(r.saved == std::vector<std::string>{"pre_classifier", "classifier"});
  NoGradGuard no_grad;
  const Tensor y = net.forward(c.at("x"));
  INFO("max |graft - peft| " << graft_test::max_abs_diff(y, c.at("out")));
  GRAFT_REQUIRE_CLOSE(y, c.at("out"), kTolF32);
}

// Hidden: ctest runs it as peft_roundtrip_write, before tools/check_peft_adapter.py reads what it wrote.
TEST_CASE("peft-roundtrip: Graft writes an adapter and its logits for PEFT (tools/check_peft_adapter.py)",
          "[peft-roundtrip][.peft-write]") {
  const char* env = std::getenv("GRAFT_PEFT_ROUNDTRIP_DIR");
  const fs::path dir = env && *env ? env : GRAFT_PEFT_ROUNDTRIP_DIR;
  // Nothing from an earlier run may stand in for this one's files.
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);

  auto vit = peftrt_base_vit();
  io::save_safetensors((dir / "base.safetensors").string(), vit->state_dict());
  manual_seed(21);
  const Tensor x = randn({2, 3, 32, 32});
  NoGradGuard no_grad;
  const Tensor base_out = vit->forward(x);
  // Another rank, scaling (alpha / r = 3) and target form than the PEFT-written adapter: a dotted name
  // for the patch Conv2d, and fc1.
  const peft::LoraConfig cfg{.r = 2, .lora_alpha = 6.0, .target_modules = {"patch_embed.proj", "qkv", "fc1"},
                             .modules_to_save = {"head"}};
  const peft::LoraReport r = peft::apply_lora(*vit, cfg);
  CHECK(r.adapted.size() == 5);
  {
    Generator g(22);
    for (auto& [name, p] : vit->named_parameters())
      if (name.find("lora_B") != std::string::npos || name.rfind("head.", 0) == 0) init::normal_(p, 0.0, 0.5, g);
  }
  const Tensor out = vit->forward(x);
  REQUIRE(graft_test::max_abs_diff(out, base_out) > 0.5);
  peft::save_adapter(*vit, cfg, (dir / "adapter").string());
  CHECK(peft::merge_lora(*vit) == 5);
  const Tensor merged_out = vit->forward(x);
  GRAFT_REQUIRE_CLOSE(merged_out, out, kTolF32);
  io::save_safetensors((dir / "graft_outputs.safetensors").string(),
                       {{"x", x}, {"base_out", base_out}, {"out", out}, {"merged_out", merged_out}});
  REQUIRE(fs::exists(dir / "adapter" / "adapter_model.safetensors"));
  REQUIRE(fs::exists(dir / "adapter" / "adapter_config.json"));
}
