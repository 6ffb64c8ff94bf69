// tests/test_hf_models.cpp - DistilBERT (graft/models/distilbert.hpp, "[distilbert]") and the Hugging
// Face-named ViT (graft/models/hf_vit.hpp, "[hf-vit]") against transformers 4.36, and graft-convert's
// "hf-distilbert" and "hf-vit" families.
//
// Committed data: tests/data/hf/hf_keys.bin, HF's state_dict keys and shapes of DistilBertModel /
// DistilBertForSequenceClassification (distilbert-base-uncased sizes) and ViTModel /
// ViTForImageClassification (vit-base-patch16-224 sizes), written by `$GRAFT_PYTHON tools/gen_hf_goldens.py`.
// Model data, generated on demand: `source tools/pyenv.sh && $GRAFT_PYTHON tools/gen_hf_goldens.py DIR`
// writes DIR/hf-distilbert/ and DIR/hf-vit/ (small seeded models with their config.json, eval outputs,
// float64 gradients and 3 AdamW steps); the "[big]" cases read them through GRAFT_MODEL_DATA=DIR and
// FAIL, saying how to make them, when missing.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "../weights_import/name_maps.hpp"
#include "golden.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/models/distilbert.hpp"
#include "graft/models/hf_vit.hpp"
#include "graft/models/registry.hpp"
#include "graft/nn.hpp"
#include "graft/optim/adam.hpp"
#include "harness.hpp"
#include "model_keys.hpp"

namespace {

using namespace graft;
using graft_test::GoldenCase;
using graft_test::kTolF32;
using graft_test::kTolF64;
using graft_test::require_error;
namespace fs = std::filesystem;

const GoldenCase& hf_keys_case(const std::string& name) {
  static const graft_test::GoldenFile file = graft_test::read_golden(GRAFT_TEST_DATA_DIR "/hf/hf_keys.bin");
  for (const auto& c : file.cases)
    if (c.name == name) return c;
  throw Error("test_hf_models: no golden case '" + name + "'");
}

// $GRAFT_MODEL_DATA/<family>/<file>, or a test failure saying how to generate it.
std::string hf_big_file(const std::string& family, const std::string& file) {
  return graft_test::model_data_file(family + "/" + file, "tools/gen_hf_goldens.py");
}
const GoldenCase& hf_big_case(const std::string& family, const std::string& name) {
  static std::map<std::string, graft_test::GoldenFile> files;
  auto it = files.find(family);
  if (it == files.end()) it = files.emplace(family, graft_test::read_golden(hf_big_file(family, "golden.bin"))).first;
  for (const auto& c : it->second.cases)
    if (c.name == name) return c;
  throw Error("test_hf_models: no golden case '" + name + "' in " + family);
}

// A temporary file, removed at scope exit.
struct HfTmpFile {
  std::string path;
  explicit HfTmpFile(const std::string& content) {
    static int counter = 0;
    path = (fs::temp_directory_path() /
            ("graft_test_hf_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".json"))
               .string();
    std::ofstream(path, std::ios::binary) << content;
  }
  ~HfTmpFile() {
    std::error_code ec;
    fs::remove(path, ec);
  }
};

models::DistilBertConfig hf_tiny_distilbert(int64_t num_classes = 0) {
  models::DistilBertConfig c;
  c.vocab_size = 50, c.dim = 16, c.n_layers = 2, c.n_heads = 4, c.hidden_dim = 32, c.max_position_embeddings = 20;
  c.num_classes = num_classes;
  return c;
}
models::HFViTConfig hf_tiny_vit(int64_t num_classes = 0) {
  models::HFViTConfig c;
  c.hidden_size = 16, c.num_hidden_layers = 2, c.num_attention_heads = 4, c.intermediate_size = 32;
  c.image_size = 8, c.patch_size = 4, c.num_classes = num_classes;
  return c;
}

// The named tensor of a state dict.
Tensor hf_sd_get(const nn::StateDict& sd, const std::string& key) {
  for (const auto& [k, t] : sd)
    if (k == key) return t;
  throw Error("test_hf_models: no key '" + key + "'");
}

// The float64 training case shared by both families: gradients of cross_entropy(logits, labels) for
// every parameter, then 3 AdamW steps (lr 1e-3, weight decay 0.01) with the loss before each and every
// parameter after, against torch.optim.AdamW. `hf_name` maps a Graft parameter name to HF's.
template <class Logits, class HfName>
void hf_check_training(nn::Module& model, const GoldenCase& c, Logits logits, HfName hf_name, const char* what) {
  model.to(DType::Float64);
  model.train();
  const Tensor& labels = c.at("labels");
  optim::AdamW opt(model.parameters(), 1e-3, {}, 1e-8, 0.01);
  double worst_grad = 0, worst_loss = 0;
  size_t grads = 0;
  for (int step = 0; step <= 3; ++step) {
    opt.zero_grad();
    const Tensor loss = cross_entropy(logits(), labels);
    INFO("loss before step " << step);
    GRAFT_REQUIRE_CLOSE(loss, c.at("loss." + std::to_string(step)), kTolF64);
    worst_loss = std::max(worst_loss, graft_test::max_abs_diff(loss, c.at("loss." + std::to_string(step))));
    if (step == 3) break;
    loss.backward();
    if (step == 0) {
      for (const auto& [name, p] : model.named_parameters()) {
        INFO("gradient of " << name);
        REQUIRE(p.grad().defined());
        const Tensor& ref = c.at("grad." + hf_name(name));
        GRAFT_REQUIRE_CLOSE(p.grad(), ref, kTolF64);
        worst_grad = std::max(worst_grad, graft_test::max_abs_diff(p.grad(), ref));
        ++grads;
      }
    }
    opt.step();
  }
  double worst_param = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    INFO("after 3 steps: " << name);
    const Tensor& ref = c.at("after." + hf_name(name));
    GRAFT_REQUIRE_CLOSE(p, ref, kTolF64);
    worst_param = std::max(worst_param, graft_test::max_abs_diff(p, ref));
  }
  size_t expected = 0;
  for (const auto& [k, t] : c.tensors) expected += k.rfind("grad.", 0) == 0;
  CHECK(grads == expected);  // every HF parameter has its Graft twin
  std::printf("[parity] %s train (float64): %zu gradients max|diff| %.3g, 4 losses max|diff| %.3g, parameters "
              "after 3 AdamW steps max|diff| %.3g\n",
              what, grads, worst_grad, worst_loss, worst_param);
}

}  // namespace

// ==== DistilBERT =====================================================================================
TEST_CASE("distilbert: state_dict keys and shapes equal HF's DistilBertModel / ForSequenceClassification",
          "[distilbert]") {
  init::SkipInitGuard skip;  // 66M parameters: only their names and shapes matter here
  models::DistilBertModel base(models::DistilBertConfig::distilbert_base_uncased());
  graft_test::require_same_keys(base.state_dict(), hf_keys_case("keys_distilbert_base"));
  CHECK(base.to_hf_state_dict().size() == base.state_dict().size());
  CHECK(base.num_parameters() == 66362880);  // distilbert-base-uncased's DistilBertModel
  models::DistilBertConfig two = models::DistilBertConfig::distilbert_base_uncased();
  two.num_classes = 2;
  models::DistilBertModel cls(two);
  graft_test::require_same_keys(cls.to_hf_state_dict(), hf_keys_case("keys_distilbert_base_seqcls"));
  CHECK(cls.state_dict().front().first == "embeddings.word_embeddings.weight");  // Graft's own: unprefixed
}

TEST_CASE("distilbert: config.json errors name the file and the key", "[distilbert]") {
  using C = models::DistilBertConfig;
  require_error([] { C::from_json(R"({"model_type": "bert"})", "c.json"); }, {"c.json", "model_type 'bert'", "distilbert"});
  require_error([] { C::from_json(R"({"dim": "big"})", "c.json"); }, {"DistilBertConfig", "c.json", "'dim' must be an integer"});
  require_error([] { C::from_json(R"({"dropout": "x"})", "c.json"); }, {"c.json", "'dropout' must be a number"});
  require_error([] { C::from_json(R"({"sinusoidal_pos_embds": 1})", "c.json"); },
                {"c.json", "'sinusoidal_pos_embds' must be true or false"});
  require_error([] { C::from_json(R"({"activation": "swish"})", "c.json"); }, {"c.json", "activation 'swish'"});
  require_error([] { C::from_json(R"({"dim": 10, "n_heads": 3})", "c.json"); }, {"c.json", "dim 10", "n_heads 3"});
  require_error([] { C::from_json(R"({"id2label": [1, 2]})", "c.json"); }, {"c.json", "'id2label' must be an object"});
  require_error([] { C::from_json(R"({"seq_classif_dropout": 1.0})", "c.json"); },
                {"c.json", "seq_classif_dropout must be in [0, 1)"});
  require_error([] { C::from_json("[1]", "c.json"); }, {"c.json", "expected a JSON object"});
  require_error([] { C::from_json_file("/nonexistent/config.json"); }, {"DistilBertConfig", "cannot open", "/nonexistent"});
  const C c = C::from_json(R"({"dim": 64, "n_heads": 4, "id2label": {"0": "neg", "1": "pos"}, "pad_token_id": null})");
  CHECK(c.dim == 64);
  CHECK(c.num_classes == 2);
  CHECK(c.pad_token_id == 0);
}

TEST_CASE("distilbert: head, padding invariance, sinusoidal positions and input errors", "[distilbert]") {
  auto m = std::make_shared<models::DistilBertModel>(hf_tiny_distilbert());
  m->eval();
  NoGradGuard no_grad;
  const Tensor ids = from_vector(std::vector<int64_t>{2, 7, 9, 3, 0, 0}, Shape{1, 6}, DType::Int64);
  const Tensor mask = from_vector(std::vector<int64_t>{1, 1, 1, 1, 0, 0}, Shape{1, 6}, DType::Int64);
  const Tensor short_ids = ids.narrow(1, 0, 4).contiguous();
  GRAFT_REQUIRE_CLOSE(m->forward_distilbert(ids, mask).narrow(1, 0, 4), m->forward_distilbert(short_ids), kTolF32);
  // No head: the features; a head: pre_classifier + classifier, kept in HF's order.
  CHECK(m->classifier().type_name() == "Identity");
  CHECK(m->forward(short_ids).shape() == Shape({1, 16}));
  const size_t backbone = m->state_dict().size();
  m->reset_classifier(3);
  CHECK(m->forward(short_ids).shape() == Shape({1, 3}));
  const nn::StateDict sd = m->state_dict();
  REQUIRE(sd.size() == backbone + 4);
  CHECK(sd[backbone].first == "pre_classifier.weight");
  CHECK(sd[backbone + 3].first == "classifier.bias");
  const Tensor pre = hf_sd_get(sd, "pre_classifier.weight");
  m->reset_classifier(5);  // the pre_classifier stays (a fine-tuned checkpoint's)
  CHECK(hf_sd_get(m->state_dict(), "pre_classifier.weight").impl() == pre.impl());
  CHECK(m->logits(ids, mask).shape() == Shape({1, 5}));
  m->reset_classifier(0);
  CHECK(m->state_dict().size() == backbone);
  require_error([&] { m->reset_classifier(-1); }, {"DistilBertModel", "num_classes must be >= 0"});

  // Inputs.
  require_error([&] { m->forward_distilbert(zeros({1, 21}, DType::Int64)); },
                {"DistilBertModel", "sequence length 21", "max_position_embeddings = 20"});
  require_error([&] { m->forward_distilbert(from_vector(std::vector<int64_t>{2, 50}, Shape{1, 2}, DType::Int64)); },
                {"DistilBertModel", "input_ids value 50", "[0, 50)"});
  require_error([&] { m->forward_distilbert(short_ids, zeros({1, 5}, DType::Int64)); }, {"attention_mask shape"});
  require_error([&] { m->forward_distilbert(zeros({4}, DType::Int64)); }, {"input_ids must be [batch, seq]"});
  require_error([&] { m->forward_distilbert(zeros({1, 4})); }, {"input_ids must be int64 or int32", "float32"});

  // sinusoidal_pos_embds: HF's fixed table, frozen.
  models::DistilBertConfig sc = hf_tiny_distilbert();
  sc.sinusoidal_pos_embds = true;
  models::DistilBertModel s(sc);
  const Tensor& table = s.embeddings->position_embeddings->weight;
  CHECK(!table.requires_grad());
  CHECK(table.select(0, 3).to_vector()[4] == double(float(std::sin(3.0 / std::pow(10000.0, 4.0 / 16)))));
  CHECK(table.select(0, 5).to_vector()[7] == double(float(std::cos(5.0 / std::pow(10000.0, 6.0 / 16)))));
}

TEST_CASE("distilbert: a missing or mis-shaped checkpoint key is a load error naming it", "[distilbert]") {
  models::DistilBertModel src(hf_tiny_distilbert(3));
  models::DistilBertModel dst(hf_tiny_distilbert(3));
  nn::StateDict sd = src.to_hf_state_dict();  // DistilBertForSequenceClassification's names
  CHECK(sd.front().first == "distilbert.embeddings.word_embeddings.weight");
  sd.emplace_back("distilbert.embeddings.position_ids", arange(20).reshape({1, -1}));  // an old checkpoint's buffer
  REQUIRE(dst.load_hf_state_dict(sd).ok());
  GRAFT_REQUIRE_CLOSE(hf_sd_get(dst.state_dict(), "classifier.weight"), hf_sd_get(sd, "classifier.weight"), kTolF32);
  nn::StateDict missing = sd;
  missing.erase(missing.begin() + 5);  // transformer.layer.0.attention.q_lin.bias
  require_error([&] { dst.load_hf_state_dict(missing); }, {"missing keys", "transformer.layer.0.attention.q_lin.bias"});
  nn::StateDict bad = sd;
  bad[8].second = zeros({16, 8});
  require_error([&] { dst.load_hf_state_dict(bad); },
                {"size mismatch for '" + bad[8].first.substr(11) + "'", "[16, 16]", "[16, 8]"});
  nn::StateDict extra = sd;
  extra.emplace_back("vocab_projector.weight", zeros({50, 16}));
  require_error([&] { dst.load_hf_state_dict(extra); }, {"unexpected keys", "vocab_projector.weight"});
  nn::StateDict wrong_pos = sd;
  wrong_pos.back().second = zeros({1, 20}, DType::Int64);
  require_error([&] { dst.load_hf_state_dict(wrong_pos); }, {"'distilbert.embeddings.position_ids' holds 0 at index 1"});
}

TEST_CASE("distilbert: last_hidden_state and logits match transformers (seeded weights)", "[distilbert][big]") {
  const auto cfg = models::DistilBertConfig::from_json_file(hf_big_file("hf-distilbert", "config.json"));
  CHECK((cfg.dim == 32 && cfg.n_layers == 2 && cfg.n_heads == 4 && cfg.hidden_dim == 64 && cfg.num_classes == 3));
  auto model = std::make_shared<models::DistilBertModel>(cfg);
  REQUIRE(model->load_hf_state_dict(io::load_safetensors(hf_big_file("hf-distilbert", "model.safetensors"))).ok());
  model->eval();
  const GoldenCase& c = hf_big_case("hf-distilbert", "eval");
  NoGradGuard no_grad;
  const Tensor h = model->forward_distilbert(c.at("input_ids"), c.at("attention_mask"));
  GRAFT_REQUIRE_CLOSE(h, c.at("last_hidden_state"), kTolF32);
  const Tensor logits = model->logits(c.at("input_ids"), c.at("attention_mask"));
  GRAFT_REQUIRE_CLOSE(logits, c.at("logits"), kTolF32);
  model->to(DType::Float64);
  const Tensor logits64 = model->logits(c.at("input_ids"), c.at("attention_mask"));
  GRAFT_REQUIRE_CLOSE(logits64, c.at("logits_f64"), kTolF64);
  std::printf("[parity] distilbert: last_hidden_state max|diff| %.3g, logits max|diff| %.3g (max |logit| %.3g), "
              "float64 logits max|diff| %.3g\n",
              graft_test::max_abs_diff(h, c.at("last_hidden_state")), graft_test::max_abs_diff(logits, c.at("logits")),
              graft_test::max_abs_diff(c.at("logits"), zeros_like(c.at("logits"))),
              graft_test::max_abs_diff(logits64, c.at("logits_f64")));
}

TEST_CASE("distilbert: float64 gradients and 3 AdamW steps match transformers + torch.optim", "[distilbert][big]") {
  auto model = std::make_shared<models::DistilBertModel>(
      models::DistilBertConfig::from_json_file(hf_big_file("hf-distilbert", "config.json")));  // dropouts 0
  REQUIRE(model->load_hf_state_dict(io::load_safetensors(hf_big_file("hf-distilbert", "model.safetensors"))).ok());
  const GoldenCase& e = hf_big_case("hf-distilbert", "eval");
  const GoldenCase& c = hf_big_case("hf-distilbert", "train");
  hf_check_training(
      *model, c, [&] { return model->logits(e.at("input_ids"), e.at("attention_mask")); },
      [](const std::string& n) {
        return n.rfind("pre_classifier.", 0) == 0 || n.rfind("classifier.", 0) == 0 ? n : "distilbert." + n;
      },
      "distilbert");
}

TEST_CASE("convert hf-distilbert: a masked-LM base checkpoint gets a fresh sequence-classification head",
          "[distilbert][convert]") {
  models::DistilBertModel src(hf_tiny_distilbert());
  nn::StateDict sd;  // DistilBertForMaskedLM's layout
  for (const auto& [k, t] : src.state_dict()) sd.emplace_back("distilbert." + k, t);
  sd.emplace_back("vocab_transform.weight", zeros({16, 16}));
  sd.emplace_back("vocab_layer_norm.weight", ones({16}));
  sd.emplace_back("vocab_projector.bias", zeros({50}));
  HfTmpFile config(R"({"model_type": "distilbert", "vocab_size": 50, "dim": 16, "n_layers": 2, "n_heads": 4,
                       "hidden_dim": 32, "max_position_embeddings": 20})");
  convert::ConvertOptions o;
  o.family = "hf-distilbert";
  o.arch = "distilbert-base-uncased";
  o.config_path = config.path;
  o.num_classes = 4;
  auto [model, report] = convert::convert_state_dict(o, sd, "ckpt");
  CHECK(report.source_num_classes == 0);
  CHECK(report.num_classes == 4);
  CHECK(report.mapped.size() == src.state_dict().size());
  CHECK(report.dropped.size() == 3);
  CHECK(report.missing ==
        std::vector<std::string>{"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"});
  auto dm = std::dynamic_pointer_cast<models::DistilBertModel>(model);
  REQUIRE(dm != nullptr);
  GRAFT_REQUIRE_CLOSE(hf_sd_get(dm->state_dict(), "transformer.layer.1.ffn.lin2.weight"),
                      hf_sd_get(src.state_dict(), "transformer.layer.1.ffn.lin2.weight"), kTolF32);
  // A mis-shaped backbone tensor is still an error naming it.
  sd[2].second = zeros({3});
  require_error([&] { convert::convert_state_dict(o, sd, "ckpt"); }, {"graft-convert", "ckpt", "size mismatch"});
  // The registry knows the archs.
  const models::ModelInfo& info = models::model_info("distilbert-base-uncased");
  CHECK(info.naming == "hf-distilbert");
  CHECK(info.modality == "text");
  CHECK(info.num_features == 768);
  require_error([] { models::create("distilbert-base-cased", {2, 3}); }, {"text model", "in_chans"});
}

// ==== ViT with Hugging Face's names ==================================================================
TEST_CASE("hf-vit: state_dict keys and shapes equal HF's ViTModel / ViTForImageClassification", "[hf-vit]") {
  init::SkipInitGuard skip;
  models::HFViTConfig base = models::HFViTConfig::vit_base_patch16_224();
  base.add_pooling_layer = true;  // ViTModel's default
  models::HFViTModel vit_model(base);
  graft_test::require_same_keys(vit_model.state_dict(), hf_keys_case("keys_vit_base"));
  auto cls = models::hf_vit(models::HFViTConfig::vit_base_patch16_224(), 1000, 3);
  graft_test::require_same_keys(cls->to_hf_state_dict(), hf_keys_case("keys_vit_base_cls"));
  CHECK(cls->num_parameters() == 86567656);  // google/vit-base-patch16-224
}

TEST_CASE("hf-vit: config.json errors name the file and the key", "[hf-vit]") {
  using C = models::HFViTConfig;
  require_error([] { C::from_json(R"({"model_type": "deit"})", "v.json"); }, {"v.json", "model_type 'deit'", "'vit'"});
  require_error([] { C::from_json(R"({"hidden_size": 7.5})", "v.json"); }, {"HFViTConfig", "v.json", "'hidden_size' must be an integer"});
  require_error([] { C::from_json(R"({"layer_norm_eps": "tiny"})", "v.json"); }, {"'layer_norm_eps' must be a number"});
  require_error([] { C::from_json(R"({"qkv_bias": "yes"})", "v.json"); }, {"'qkv_bias' must be true or false"});
  require_error([] { C::from_json(R"({"image_size": 30, "patch_size": 16})", "v.json"); },
                {"v.json", "image_size 30", "patch_size 16"});
  require_error([] { C::from_json(R"({"hidden_act": "swish"})", "v.json"); }, {"hidden_act 'swish'"});
  require_error([] { C::from_json(R"({"num_attention_heads": 5})", "v.json"); }, {"hidden_size 768", "num_attention_heads 5"});
  const C c = C::from_json(R"({"image_size": 32, "patch_size": 8, "num_channels": 1, "qkv_bias": false,
                               "id2label": {"0": "a", "1": "b", "2": "c"}})");
  CHECK((c.image_size == 32 && c.patch_size == 8 && c.num_channels == 1 && !c.qkv_bias && c.num_classes == 3));
  CHECK(c.num_patches() == 16);
}

TEST_CASE("hf-vit: the ImageClassifier interface, heads, intermediates and input errors", "[hf-vit]") {
  auto net_ptr = std::make_shared<models::HFViTModel>(hf_tiny_vit(4));
  models::ImageClassifier& net = *net_ptr;
  net.eval();
  CHECK(net.num_features() == 16);
  CHECK(net.in_chans() == 3);
  CHECK(net.classifier_name() == "classifier");
  const Tensor x = graft_test::rand_in({2, 3, 8, 8}, -1.0, 1.0, 3, DType::Float32);
  NoGradGuard no_grad;
  const Tensor f = net.forward_features(x);
  CHECK(f.shape() == Shape({2, 16}));
  GRAFT_REQUIRE_CLOSE(f, net_ptr->forward_vit(x).last_hidden_state.select(1, 0), kTolF32);
  GRAFT_REQUIRE_CLOSE(net.forward(x), net.forward_head(f), kTolF32);
  CHECK(net.forward(x).shape() == Shape({2, 4}));
  CHECK(net.feature_names() ==
        std::vector<std::string>{"embeddings", "encoder.layer.0", "encoder.layer.1", "layernorm", "features"});
  const auto maps = net.forward_intermediates(x, {"embeddings", "features"});
  CHECK(maps[0].second.shape() == Shape({2, 5, 16}));
  GRAFT_REQUIRE_CLOSE(maps[1].second, f, kTolF32);
  net.reset_classifier(7);
  CHECK(net.forward(x).shape() == Shape({2, 7}));
  CHECK(!net.classifier().is_training());
  net.reset_classifier(0);
  GRAFT_REQUIRE_CLOSE(net.forward(x), f, kTolF32);
  CHECK(!net_ptr->forward_vit(x).pooler_output.defined());
  require_error([&] { net.forward(zeros({2, 3, 16, 16})); }, {"HFViTModel", "16x16", "8x8"});
  require_error([&] { net.forward(zeros({2, 1, 8, 8})); }, {"HFViTModel", "expected pixel_values [B, 3, 8, 8]", "[2, 1, 8, 8]"});
  require_error([&] { net.reset_classifier(-3); }, {"num_classes must be >= 0", "-3"});
  // Without qkv_bias the attention projections have no bias.
  models::HFViTConfig nb = hf_tiny_vit();
  nb.qkv_bias = false;
  models::HFViTModel no_bias(nb);
  CHECK(no_bias.state_dict().size() == models::HFViTModel(hf_tiny_vit()).state_dict().size() - 3 * 2);
}

TEST_CASE("hf-vit: a missing or mis-shaped checkpoint key is a load error naming it", "[hf-vit]") {
  auto src = models::hf_vit(hf_tiny_vit(), 3, 3);
  auto dst = models::hf_vit(hf_tiny_vit(), 3, 3);
  nn::StateDict sd = src->to_hf_state_dict();
  CHECK(sd.front().first == "vit.embeddings.cls_token");
  REQUIRE(dst->load_hf_state_dict(sd).ok());
  nn::StateDict missing = sd;
  missing.erase(missing.begin() + 1);
  require_error([&] { dst->load_hf_state_dict(missing); }, {"missing keys", "'embeddings.position_embeddings'"});
  nn::StateDict bad = sd;
  bad[1].second = zeros({1, 17, 16});  // position embeddings for a 16 x 16 image
  require_error([&] { dst->load_hf_state_dict(bad); },
                {"size mismatch for 'embeddings.position_embeddings'", "[1, 5, 16]", "[1, 17, 16]"});
  nn::StateDict pooled = sd;  // an in21k ViTModel checkpoint's pooler
  pooled.emplace_back("vit.pooler.dense.weight", zeros({16, 16}));
  require_error([&] { dst->load_hf_state_dict(pooled); }, {"unexpected keys", "pooler.dense.weight"});
}

TEST_CASE("hf-vit: last_hidden_state, logits and pooler_output match transformers (seeded weights)",
          "[hf-vit][big]") {
  const auto cfg = models::HFViTConfig::from_json_file(hf_big_file("hf-vit", "config.json"));
  CHECK((cfg.hidden_size == 32 && cfg.image_size == 16 && cfg.patch_size == 4 && cfg.num_classes == 5 &&
         cfg.layer_norm_eps == 1e-12));
  auto model = std::make_shared<models::HFViTModel>(cfg);
  REQUIRE(model->load_hf_state_dict(io::load_safetensors(hf_big_file("hf-vit", "model.safetensors"))).ok());
  model->eval();
  const GoldenCase& c = hf_big_case("hf-vit", "eval");
  NoGradGuard no_grad;
  const Tensor h = model->forward_vit(c.at("pixel_values")).last_hidden_state;
  GRAFT_REQUIRE_CLOSE(h, c.at("last_hidden_state"), kTolF32);
  const Tensor logits = model->forward(c.at("pixel_values"));
  GRAFT_REQUIRE_CLOSE(logits, c.at("logits"), kTolF32);
  model->to(DType::Float64);
  const Tensor logits64 = model->forward(c.at("pixel_values").to(DType::Float64));
  GRAFT_REQUIRE_CLOSE(logits64, c.at("logits_f64"), kTolF64);

  models::HFViTConfig pcfg = cfg;
  pcfg.num_classes = 0;
  pcfg.add_pooling_layer = true;
  models::HFViTModel with_pooler(pcfg);
  REQUIRE(with_pooler.load_hf_state_dict(io::load_safetensors(hf_big_file("hf-vit", "vit_model.safetensors"))).ok());
  with_pooler.eval();
  const GoldenCase& p = hf_big_case("hf-vit", "pooler");
  const models::HFViTOutputs o = with_pooler.forward_vit(p.at("pixel_values"));
  GRAFT_REQUIRE_CLOSE(o.last_hidden_state, p.at("last_hidden_state"), kTolF32);
  GRAFT_REQUIRE_CLOSE(o.pooler_output, p.at("pooler_output"), kTolF32);
  std::printf("[parity] hf-vit: last_hidden_state max|diff| %.3g, logits max|diff| %.3g (max |logit| %.3g), "
              "float64 logits %.3g, pooler_output %.3g\n",
              graft_test::max_abs_diff(h, c.at("last_hidden_state")), graft_test::max_abs_diff(logits, c.at("logits")),
              graft_test::max_abs_diff(c.at("logits"), zeros_like(c.at("logits"))),
              graft_test::max_abs_diff(logits64, c.at("logits_f64")),
              graft_test::max_abs_diff(o.pooler_output, p.at("pooler_output")));
}

TEST_CASE("hf-vit: float64 gradients and 3 AdamW steps match transformers + torch.optim", "[hf-vit][big]") {
  auto model = std::make_shared<models::HFViTModel>(models::HFViTConfig::from_json_file(hf_big_file("hf-vit", "config.json")));
  REQUIRE(model->load_hf_state_dict(io::load_safetensors(hf_big_file("hf-vit", "model.safetensors"))).ok());
  const Tensor x = hf_big_case("hf-vit", "eval").at("pixel_values").to(DType::Float64);
  hf_check_training(
      *model, hf_big_case("hf-vit", "train"), [&] { return model->forward(x); },
      [](const std::string& n) { return n.rfind("classifier.", 0) == 0 ? n : "vit." + n; }, "hf-vit");
}

TEST_CASE("convert hf-vit: vit. prefix, pooler dropped, gray input and a new head", "[hf-vit][convert]") {
  auto src = models::hf_vit(hf_tiny_vit(), 5, 3);
  nn::StateDict sd = src->to_hf_state_dict();
  sd.emplace_back("vit.pooler.dense.weight", zeros({16, 16}));
  HfTmpFile config(R"({"model_type": "vit", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "intermediate_size": 32, "image_size": 8, "patch_size": 4})");
  convert::ConvertOptions o;
  o.family = "hf-vit";
  o.arch = "vit-base-patch16-224";
  o.config_path = config.path;
  o.num_classes = 2;
  o.in_chans = 1;
  auto [model, report] = convert::convert_state_dict(o, sd, "ckpt");
  CHECK(report.source_num_classes == 5);
  CHECK(report.source_in_chans == 3);
  CHECK(report.in_chans == 1);
  CHECK(report.dropped.size() == 3);  // the pooler, the 5-class classifier's weight and bias
  CHECK(report.missing == std::vector<std::string>{"classifier.weight", "classifier.bias"});
  REQUIRE(report.adapted.size() == 1);
  CHECK(report.adapted[0].find("embeddings.patch_embeddings.projection.weight [16, 3, 4, 4] -> [16, 1, 4, 4]") !=
        std::string::npos);
  auto net = std::dynamic_pointer_cast<models::HFViTModel>(model);
  REQUIRE(net != nullptr);
  const Tensor w3 = hf_sd_get(src->state_dict(), "embeddings.patch_embeddings.projection.weight");
  GRAFT_REQUIRE_CLOSE(hf_sd_get(net->state_dict(), "embeddings.patch_embeddings.projection.weight"),
                      sum(w3, {1}, true), kTolF32);
  NoGradGuard no_grad;
  net->eval();
  CHECK(net->forward(zeros({1, 1, 8, 8})).shape() == Shape({1, 2}));
  // The registry: an ImageClassifier by HF model id.
  const models::ModelInfo& info = models::model_info("deit-tiny-patch16-224");
  CHECK(info.naming == "hf-vit");
  CHECK(info.first_conv == "embeddings.patch_embeddings.projection.weight");
  CHECK(info.fixed_input_size);
  CHECK(models::model_info("vit-base-patch16-224").mean == std::vector<double>{0.5, 0.5, 0.5});
  auto deit = models::create_classifier("deit-tiny-patch16-224", {.num_classes = 10, .in_chans = 1});
  CHECK(deit->num_features() == 192);
  CHECK(deit->in_chans() == 1);
  CHECK(deit->classifier().find_tensor("weight").shape() == Shape({10, 192}));
}
