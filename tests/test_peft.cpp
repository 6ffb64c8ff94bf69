// tests/test_peft.cpp - parameter-efficient fine-tuning (include/graft/peft/): LoRA on Linear and Conv2d
// against its definition, by finite differences in float64, merged and unmerged, saved and loaded in
// PEFT's file layout; BitFit and bottleneck adapters; the errors for bad targets, ranks and files.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "graft/io/json.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/models/vit.hpp"
#include "graft/nn.hpp"
#include "graft/peft/adapters.hpp"
#include "graft/peft/lora.hpp"
#include "harness.hpp"

namespace {

using namespace graft;
namespace fs = std::filesystem;

struct PeftTestDir {
  fs::path path;
  PeftTestDir() {
    static int n = 0;
    path = fs::temp_directory_path() / ("graft_test_peft_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::create_directories(path);
  }
  ~PeftTestDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// A 2-block ViT (dim 32, 32x32 input, 2x2 patches of 16), seeded.
std::shared_ptr<models::VisionTransformer> peft_small_vit(uint64_t seed = 3) {
  manual_seed(seed);
  models::ViTConfig c;
  c.img_size = 32;
  c.patch_size = 16;
  c.num_classes = 10;
  c.embed_dim = 32;
  c.depth = 2;
  c.num_heads = 2;
  return std::make_shared<models::VisionTransformer>(c);
}

// Gives every lora_B random values (PEFT starts them at zero, which would hide the branch).
void peft_randomize_lora_b(nn::Module& m, uint64_t seed) {
  Generator g(seed);
  NoGradGuard no_grad;
  for (auto& [name, p] : m.named_parameters())
    if (name.find("lora_B") != std::string::npos) init::normal_(p, 0.0, 0.5, g);
}

std::map<std::string, Tensor> peft_tensors(nn::Module& m) {
  std::map<std::string, Tensor> out;
  for (auto& [k, t] : m.state_dict()) out.emplace(k, t);
  return out;
}

}  // namespace

TEST_CASE("peft: LoRA on a Linear is W x + b + (alpha / r) B A x, and starts equal to the base", "[peft]") {
  manual_seed(11);
  nn::Sequential net{std::make_shared<nn::Linear>(6, 5)};
  net.to(DType::Float64);
  const Tensor x = randn({4, 6}, DType::Float64);
  const Tensor base = net.forward(x);
  const peft::LoraReport r = peft::apply_lora(net, {.r = 2, .lora_alpha = 3.0, .target_modules = {"0"}});
  CHECK(r.adapted == std::vector<std::string>{"0"});
  CHECK(r.trainable == 2 * 6 + 5 * 2);  // A [2, 6], B [5, 2]; the base is frozen
  CHECK(r.total == 5 * 6 + 5 + r.trainable);
  GRAFT_REQUIRE_CLOSE(net.forward(x), base, graft_test::kTolF64);  // B = 0
  peft_randomize_lora_b(net, 1);
  auto& lin = dynamic_cast<nn::Linear&>(*net[0]);
  const Tensor a = dynamic_cast<nn::Linear&>(*lin.child("lora_A")).weight;
  const Tensor b = dynamic_cast<nn::Linear&>(*lin.child("lora_B")).weight;
  CHECK(a.dtype() == DType::Float64);
  CHECK_FALSE(lin.weight.requires_grad());
  CHECK(a.requires_grad());
  const Tensor expected = add(base, mul(matmul(matmul(x, a.t()), b.t()), 1.5));
  GRAFT_REQUIRE_CLOSE(net.forward(x), expected, graft_test::kTolF64);
  // Gradients of x, A and B by central differences.
  graft_test::gradcheck([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{net.forward(in[0])}; },
                        {x.clone(), a, b});
}

TEST_CASE("peft: LoRA on a strided Conv2d, merged into the weight and back", "[peft]") {
  manual_seed(12);
  nn::Conv2dOptions o;
  o.stride = {2, 2};
  o.padding = {1, 1};
  nn::Sequential net{std::make_shared<nn::Conv2d>(3, 4, 3, o)};
  net.to(DType::Float64);
  const Tensor x = randn({2, 3, 7, 7}, DType::Float64);
  peft::apply_lora(net, {.r = 2, .lora_alpha = 4.0, .target_modules = {"0"}});
  peft_randomize_lora_b(net, 2);
  auto& conv = dynamic_cast<nn::Conv2d&>(*net[0]);
  const Tensor a = dynamic_cast<nn::Conv2d&>(*conv.child("lora_A")).weight;  // [2, 3, 3, 3]
  const Tensor b = dynamic_cast<nn::Conv2d&>(*conv.child("lora_B")).weight;  // [4, 2, 1, 1]
  CHECK(a.shape() == Shape{2, 3, 3, 3});
  CHECK(b.shape() == Shape{4, 2, 1, 1});
  const Tensor expected = add(conv2d(x, conv.weight, conv.bias, {2, 2}, {1, 1}),
                              mul(conv2d(conv2d(x, a, Tensor(), {2, 2}, {1, 1}), b), 2.0));
  const Tensor y = net.forward(x);
  GRAFT_REQUIRE_CLOSE(y, expected, graft_test::kTolF64);
  graft_test::gradcheck([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{net.forward(in[0])}; },
                        {x.clone(), a, b});

  const Tensor w0 = conv.weight.clone();
  CHECK(peft::merge_lora(net) == 1);
  CHECK(peft::merge_lora(net) == 0);  // already merged
  GRAFT_REQUIRE_CLOSE(net.forward(x), y, graft_test::kTolF64);
  CHECK(peft::unmerge_lora(net) == 1);
  GRAFT_REQUIRE_CLOSE(conv.weight, w0, graft_test::kTolF64);
  GRAFT_REQUIRE_CLOSE(net.forward(x), y, graft_test::kTolF64);
  // merge_and_unload: the base model's keys only, the same function.
  CHECK(peft::remove_lora(net) == 1);
  CHECK(net.state_dict().size() == 2);
  CHECK(conv.adapter == nullptr);
  GRAFT_REQUIRE_CLOSE(net.forward(x), y, graft_test::kTolF64);
}

TEST_CASE("peft: LoRA on a ViT's fused qkv and patch conv, saved and loaded in PEFT's layout", "[peft]") {
  auto vit = peft_small_vit();
  vit->eval();
  const Tensor x = randn({2, 3, 32, 32});
  const peft::LoraConfig cfg{.r = 4, .lora_alpha = 8.0, .target_modules = {"qkv", "patch_embed.proj"},
                             .modules_to_save = {"head"}};
  const peft::LoraReport r = peft::apply_lora(*vit, cfg);
  CHECK(r.adapted == std::vector<std::string>{"patch_embed.proj", "blocks.0.attn.qkv", "blocks.1.attn.qkv"});
  CHECK(r.saved == std::vector<std::string>{"head"});
  // Trainable: 2 qkv branches (A [4, 32], B [96, 4]), the patch conv's (A [4, 3, 16, 16], B [32, 4, 1, 1]), the head.
  CHECK(r.trainable == 2 * (4 * 32 + 96 * 4) + (4 * 3 * 16 * 16 + 32 * 4) + (10 * 32 + 10));
  CHECK(r.str().find("3 layers") != std::string::npos);
  peft_randomize_lora_b(*vit, 3);
  const Tensor y = vit->forward(x);

  PeftTestDir dir;
  peft::save_adapter(*vit, cfg, dir.path.string());
  const auto saved = io::load_safetensors((dir.path / "adapter_model.safetensors").string());
  std::vector<std::string> keys;
  for (const auto& [k, t] : saved) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  CHECK(keys == std::vector<std::string>{
                    "base_model.model.blocks.0.attn.qkv.lora_A.weight", "base_model.model.blocks.0.attn.qkv.lora_B.weight",
                    "base_model.model.blocks.1.attn.qkv.lora_A.weight", "base_model.model.blocks.1.attn.qkv.lora_B.weight",
                    "base_model.model.head.bias", "base_model.model.head.weight",
                    "base_model.model.patch_embed.proj.lora_A.weight",
                    "base_model.model.patch_embed.proj.lora_B.weight"});
  const peft::LoraConfig back = peft::read_adapter_config((dir.path / "adapter_config.json").string());
  CHECK(back.r == 4);
  CHECK(back.lora_alpha == 8.0);
  CHECK(back.target_modules == cfg.target_modules);
  CHECK(back.modules_to_save == cfg.modules_to_save);

  // The same base weights (same seed) plus the adapter give the same outputs.
  auto fresh = peft_small_vit();
  fresh->eval();
  peft::load_adapter(*fresh, dir.path.string());
  GRAFT_REQUIRE_CLOSE(fresh->forward(x), y, graft_test::kTolF32);
  // Merged, the model is the base model again with other weights: same outputs, base keys.
  const size_t base_keys = peft_small_vit()->state_dict().size();
  peft::remove_lora(*fresh);
  CHECK(fresh->state_dict().size() == base_keys);
  GRAFT_REQUIRE_CLOSE(fresh->forward(x), y, graft_test::kTolF32);
}

TEST_CASE("peft: LoRA trains only its branches and the head", "[peft]") {
  auto vit = peft_small_vit();
  peft::apply_lora(*vit, {.r = 2, .lora_alpha = 2.0, .lora_dropout = 0.1, .target_modules = {"qkv", "fc2"},
                          .modules_to_save = {"head"}});
  vit->train();
  const Tensor loss = sum(mul(vit->forward(randn({2, 3, 32, 32})), randn({2, 10})));
  loss.backward();
  for (auto& [name, p] : vit->named_parameters()) {
    INFO(name);
    const bool trainable = name.find("lora_") != std::string::npos || name.rfind("head.", 0) == 0;
    CHECK(p.requires_grad() == trainable);
    CHECK(p.grad().defined() == trainable);
  }
}

TEST_CASE("peft: bad targets, ranks and adapter files are refused by name", "[peft][bad_input]") {
  auto vit = peft_small_vit();
  graft_test::require_error([&] { peft::apply_lora(*vit, {.target_modules = {"query"}}); },
                            {"target modules 'query' not found in the VisionTransformer", "blocks.0.attn.qkv"});
  graft_test::require_error([&] { peft::apply_lora(*vit, {.r = 40, .target_modules = {"qkv"}}); },
                            {"rank r = 40 is larger than layer 'blocks.0.attn.qkv' (Linear 32 -> 96) allows: r <= 32"});
  graft_test::require_error([&] { peft::apply_lora(*vit, {.target_modules = {"norm1"}}); },
                            {"target 'blocks.0.norm1' is a LayerNorm", "nn::Linear and nn::Conv2d"});
  graft_test::require_error([&] { peft::apply_lora(*vit, {.target_modules = {"qkv"}, .modules_to_save = {"fc"}}); },
                            {"modules_to_save 'fc' not found"});
  graft_test::require_error([&] { peft::apply_lora(*vit, {.r = 0, .target_modules = {"qkv"}}); }, {"r must be >= 1"});
  graft_test::require_error([&] { peft::apply_lora(*vit, {}); }, {"target_modules is empty"});
  nn::Conv2dOptions dw;
  dw.groups = 4;
  nn::Sequential depthwise{std::make_shared<nn::Conv2d>(4, 4, 3, dw)};
  graft_test::require_error([&] { peft::apply_lora(depthwise, {.r = 1, .target_modules = {"0"}}); },
                            {"grouped or dilated Conv2d (groups 4"});
  peft::apply_lora(*vit, {.r = 2, .target_modules = {"qkv"}});
  graft_test::require_error([&] { peft::apply_lora(*vit, {.r = 2, .target_modules = {"qkv"}}); },
                            {"already has an adapter"});
  graft_test::require_error([&] { peft::save_adapter(*peft_small_vit(), {.target_modules = {"qkv"}}, "/tmp/x"); },
                            {"has no LoRA layers"});

  // An adapter whose tensors are for other modules than its config names: both lists in the error.
  PeftTestDir dir;
  const peft::LoraConfig cfg{.r = 2, .target_modules = {"qkv"}};
  peft::save_adapter(*vit, cfg, dir.path.string());
  const std::string config = (dir.path / "adapter_config.json").string();
  {
    std::ofstream f(config);
    f << peft::adapter_config_json({.r = 2, .target_modules = {"proj"}});
  }
  graft_test::require_error([&] { peft::load_adapter(*peft_small_vit(), dir.path.string()); },
                            {"does not fit the VisionTransformer with target_modules [proj]",
                             "missing: base_model.model.patch_embed.proj.lora_A.weight",
                             "base_model.model.blocks.0.attn.proj.lora_A.weight",
                             "unexpected (other modules?): base_model.model.blocks.0.attn.qkv.lora_A.weight"});
  // A rank the tensors do not have: both shapes.
  {
    std::ofstream f(config);
    f << peft::adapter_config_json({.r = 3, .target_modules = {"qkv"}});
  }
  graft_test::require_error([&] { peft::load_adapter(*peft_small_vit(), dir.path.string()); },
                            {"'base_model.model.blocks.0.attn.qkv.lora_A.weight' has shape [2, 32], the model's is [3, 32]"});
  // Options Graft does not implement.
  {
    std::ofstream f(config);
    f << R"({"peft_type": "LORA", "r": 2, "target_modules": ["qkv"], "use_dora": true})";
  }
  graft_test::require_error([&] { peft::read_adapter_config(config); }, {"'use_dora' is set"});
  {
    std::ofstream f(config);
    f << R"({"peft_type": "IA3", "target_modules": ["qkv"]})";
  }
  graft_test::require_error([&] { peft::read_adapter_config(config); }, {"peft_type is 'IA3', not 'LORA'"});
  {
    std::ofstream f(config);
    f << R"({"peft_type": "LORA", "r": 2, "target_modules": ".*qkv", "bias": "none"})";
  }
  graft_test::require_error([&] { peft::read_adapter_config(config); }, {"regular expression"});
}

TEST_CASE("peft: BitFit trains the biases and the head only", "[peft]") {
  auto vit = peft_small_vit();
  const int64_t n = peft::apply_bitfit(*vit, {"head"});
  int64_t expected = 0;
  for (auto& [name, p] : vit->named_parameters()) {
    const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const bool head = name.rfind("head.", 0) == 0;
    INFO(name);
    CHECK(p.requires_grad() == (bias || head));
    if (bias || head) expected += p.numel();
  }
  CHECK(n == expected);
  graft_test::require_error([&] { peft::apply_bitfit(*vit, {"classifier"}); }, {"modules_to_save 'classifier' not found"});
  nn::Sequential no_bias{std::make_shared<nn::Linear>(3, 3, false)};
  graft_test::require_error([&] { peft::apply_bitfit(no_bias); }, {"has no bias parameters"});
}

TEST_CASE("peft: bottleneck adapters start as the identity and train alone", "[peft]") {
  auto vit = peft_small_vit();
  vit->eval();
  const Tensor x = randn({2, 3, 32, 32});
  const Tensor y0 = vit->forward(x);
  const std::vector<std::string> adapted = peft::apply_bottleneck_adapters(
      *vit, {.bottleneck = 8, .target_modules = {"attn.proj", "mlp.fc2"}, .modules_to_save = {"head"}});
  CHECK(adapted == std::vector<std::string>{"blocks.0.attn.proj", "blocks.0.mlp.fc2", "blocks.1.attn.proj",
                                            "blocks.1.mlp.fc2"});
  GRAFT_REQUIRE_CLOSE(vit->forward(x), y0, graft_test::kTolF32);  // up = 0
  const auto sd = peft_tensors(*vit);
  CHECK(sd.at("blocks.0.mlp.fc2.adapter_down.weight").shape() == Shape{8, 32});
  CHECK(sd.at("blocks.0.mlp.fc2.adapter_up.weight").shape() == Shape{32, 8});
  CHECK(peft::count_parameters(*vit).first == 4 * (8 * 32 + 8 + 32 * 8 + 32) + (10 * 32 + 10));
  // The adapters change the output once up is nonzero, and gradients reach them (not the base).
  {
    NoGradGuard no_grad;
    for (auto& [name, p] : vit->named_parameters())
      if (name.find("adapter_up.weight") != std::string::npos) init::normal_(p, 0.0, 0.5);
  }
  vit->train();
  const Tensor loss = sum(mul(vit->forward(x), randn({2, 10})));
  loss.backward();
  for (auto& [name, p] : vit->named_parameters()) {
    INFO(name);
    const bool trainable = name.find("adapter_") != std::string::npos || name.rfind("head.", 0) == 0;
    CHECK(p.grad().defined() == trainable);
  }
  graft_test::require_error([&] { peft::apply_bottleneck_adapters(*vit, {.target_modules = {"norm1"}}); },
                            {"target 'blocks.0.norm1' is a LayerNorm, not a Linear"});
  graft_test::require_error([&] { peft::apply_bottleneck_adapters(*vit, {.target_modules = {"mlp.fc2"}}); },
                            {"already has an adapter"});
  graft_test::require_error([&] { peft::apply_bottleneck_adapters(*peft_small_vit(), {.target_modules = {"dense"}}); },
                            {"target module 'dense' not found", "blocks.0.attn.qkv"});
}
