// graft/models/hf_vit.hpp - the Vision Transformer exactly as Hugging Face transformers 4.36
// (transformers.models.vit.modeling_vit: ViTModel, eager attention, and ViTForImageClassification's
// classifier on the [CLS] token), with HF's module names, so an HF state dict (google/vit-*,
// facebook/deit-* without distillation) loads strictly. An ImageClassifier (models/classifier.hpp).
//
// A separate header from vit.hpp (timm's names) because nothing but the math is shared: timm fuses
// q, k, v into one qkv Linear, keeps cls_token / pos_embed on the model and uses LayerNorm eps 1e-6;
// HF splits them (attention.attention.{query, key, value}), nests everything under embeddings /
// encoder and defaults to eps 1e-12. A naming switch inside one class would touch every line.
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto cfg = graft::models::HFViTConfig::from_json_file("config.json");  // or vit_base_patch16_224()
//   auto vit = std::make_shared<graft::models::HFViTModel>(cfg);
//   vit->load_hf_state_dict(graft::io::load_safetensors("model.safetensors"));  // strict, "vit." stripped
//   vit->eval();
//   Tensor logits = vit->forward(pixels);             // pixels [B, C, image, image] -> [B, num_classes]
//   Tensor f = vit->forward_features(pixels);         // the normalized [CLS] token [B, hidden]
//   auto out = vit->forward_vit(pixels);              // last_hidden_state [B, 1 + N, hidden], pooler_output
//   vit->reset_classifier(10);                        // classifier = Linear(hidden, 10); 0 = Identity
//
// State dict keys (HF's ViTModel; a ViTForImageClassification checkpoint has them under "vit."):
//   embeddings.cls_token [1, 1, D], embeddings.position_embeddings [1, 1 + N, D],
//   embeddings.patch_embeddings.projection.{weight [D, C, P, P], bias [D]},
//   encoder.layer.{i}.attention.attention.{query, key, value}.{weight [D, D], bias [D]} (bias when qkv_bias),
//   encoder.layer.{i}.attention.output.dense.{weight [D, D], bias}, encoder.layer.{i}.intermediate.dense.{weight [I, D], bias [I]},
//   encoder.layer.{i}.output.dense.{weight [D, I], bias [D]}, encoder.layer.{i}.layernorm_before.{weight, bias},
//   encoder.layer.{i}.layernorm_after.{weight, bias}, layernorm.{weight, bias},
//   pooler.dense.{weight [D, D], bias} (add_pooling_layer: ViTModel's default, not ViTForImageClassification's),
//   classifier.{weight [C, D], bias [C]} (num_classes > 0)
// with N = (image_size / patch_size)^2.
//
// Math (pre-norm blocks, HF's ViTLayer):
//   x = cat(cls_token, projection(pixels) flattened to [B, N, D]) + position_embeddings           [B, 1 + N, D]
//   per layer: x = x + dense(attention(layernorm_before(x)));  x = x + dense2(act(dense1(layernorm_after(x))))
//   last_hidden_state = layernorm(x); pooler_output = tanh(pooler.dense(last_hidden_state[:, 0]))
//   logits = classifier(last_hidden_state[:, 0])
// The input must be image_size x image_size (HF without interpolate_pos_encoding). Dropout
// (hidden_dropout_prob, attention_probs_dropout_prob; 0 in every released ViT) acts in training mode
// only. Initialization as HF's _init_weights: Linear and Conv2d weights, cls_token and
// position_embeddings trunc_normal_(std initializer_range, cut at +-2), biases 0, LayerNorm 1 / 0;
// a classifier from reset_classifier gets torch's default.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "graft/io/json.hpp"
#include "graft/models/classifier.hpp"
#include "graft/models/common.hpp"
#include "graft/models/features.hpp"
#include "graft/models/hf_common.hpp"
#include "graft/nn.hpp"

namespace graft::models {

struct HFViTConfig {
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  std::string hidden_act = "gelu";  // "gelu" (erf), "gelu_new" / "gelu_pytorch_tanh" (tanh), "relu"
  double hidden_dropout_prob = 0.0;
  double attention_probs_dropout_prob = 0.0;
  double initializer_range = 0.02;
  double layer_norm_eps = 1e-12;
  int64_t image_size = 224;
  int64_t patch_size = 16;
  int64_t num_channels = 3;
  bool qkv_bias = true;
  int64_t num_classes = 0;  // ViTForImageClassification's num_labels; 0 = Identity (ViTModel)
  bool add_pooling_layer = false;  // ViTModel's pooler; not read from config.json (HF: a constructor argument)

  // google/vit-base-patch16-224 (and -large); facebook/deit-{tiny, small, base}-patch16-224.
  static HFViTConfig vit_base_patch16_224() { return HFViTConfig{}; }
  static HFViTConfig vit_large_patch16_224() {
    HFViTConfig c;
    c.hidden_size = 1024, c.num_hidden_layers = 24, c.num_attention_heads = 16, c.intermediate_size = 4096;
    return c;
  }
  static HFViTConfig deit_tiny_patch16_224() {
    HFViTConfig c;
    c.hidden_size = 192, c.num_attention_heads = 3, c.intermediate_size = 768;
    return c;
  }
  static HFViTConfig deit_small_patch16_224() {
    HFViTConfig c;
    c.hidden_size = 384, c.num_attention_heads = 6, c.intermediate_size = 1536;
    return c;
  }
  static HFViTConfig deit_base_patch16_224() { return HFViTConfig{}; }

  // An HF config.json: the keys above are read when present (others ignored); num_labels / id2label
  // give num_classes. A wrong type or a model_type other than "vit" throws naming `source` and the key.
  static HFViTConfig from_json(std::string_view text, const std::string& source = "config.json") {
    const io::JsonValue v = io::parse_json(text, source);
    GRAFT_CHECK(v.is_object(), "HFViTConfig", source, ": expected a JSON object");
    const detail_hf::ConfigReader r{v, "HFViTConfig", source};
    r.require_model_type("vit");
    HFViTConfig c;
    r.get_encoder_keys(c);
    r.get_int("image_size", c.image_size);
    r.get_int("patch_size", c.patch_size);
    r.get_int("num_channels", c.num_channels);
    r.get_bool("qkv_bias", c.qkv_bias);
    r.get_num_labels(c.num_classes);
    c.validate(source);
    return c;
  }
  static HFViTConfig from_json_file(const std::string& path) {
    return from_json(detail_hf::read_text_file(path, "HFViTConfig"), path);
  }

  void validate(const std::string& source = "HFViTConfig") const {
    GRAFT_CHECK(hidden_size >= 1 && num_hidden_layers >= 0 && intermediate_size >= 1 && num_channels >= 1 &&
                    num_classes >= 0 && layer_norm_eps > 0,
                "HFViTConfig", source, ": sizes must be positive: hidden_size ", hidden_size, ", num_hidden_layers ",
                num_hidden_layers, ", intermediate_size ", intermediate_size, ", num_channels ", num_channels,
                ", num_classes ", num_classes, ", layer_norm_eps ", layer_norm_eps);
    GRAFT_CHECK(num_attention_heads >= 1 && hidden_size % num_attention_heads == 0, "HFViTConfig", source,
                ": hidden_size ", hidden_size, " must be divisible by num_attention_heads ", num_attention_heads);
    GRAFT_CHECK(patch_size >= 1 && image_size >= patch_size && image_size % patch_size == 0, "HFViTConfig", source,
                ": image_size ", image_size, " must be a positive multiple of patch_size ", patch_size);
    GRAFT_CHECK(hidden_act == "gelu" || hidden_act == "gelu_new" || hidden_act == "gelu_pytorch_tanh" ||
                    hidden_act == "relu",
                "HFViTConfig", source, ": hidden_act '", hidden_act,
                "' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)");
  }
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

namespace detail_hf_vit {
inline std::shared_ptr<nn::Linear> linear(int64_t in, int64_t out, const HFViTConfig& c, bool bias = true) {
  return detail_hf::trunc_normal_linear(in, out, c.initializer_range, bias);
}
inline std::shared_ptr<nn::LayerNorm> layer_norm(const HFViTConfig& c) {
  return std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps);
}
}  // namespace detail_hf_vit

// embeddings.patch_embeddings: projection = Conv2d(C, D, kernel = stride = patch).
class HFViTPatchEmbeddings : public nn::Module {
 public:
  explicit HFViTPatchEmbeddings(const HFViTConfig& c) : Module("ViTPatchEmbeddings"), config(c) {
    nn::Conv2dOptions o;
    o.stride = {c.patch_size, c.patch_size};
    projection = register_module("projection", std::make_shared<nn::Conv2d>(
                                                   c.num_channels, c.hidden_size,
                                                   std::array<int64_t, 2>{c.patch_size, c.patch_size}, o));
    NoGradGuard no_grad;
    init::trunc_normal_(projection->weight, 0.0, c.initializer_range, -2.0, 2.0);
    projection->bias.zero_();
  }
  // pixels [B, C, image, image] -> [B, N, D]
  Tensor forward(const Tensor& x) override {
    GRAFT_CHECK(x.defined() && x.dim() == 4 && x.size(1) == config.num_channels, "HFViTModel",
                "expected pixel_values [B, ", config.num_channels, ", ", config.image_size, ", ", config.image_size,
                "], got shape ", x.defined() ? x.shape().str() : std::string("undefined"));
    GRAFT_CHECK(x.size(2) == config.image_size && x.size(3) == config.image_size, "HFViTModel", "input image size ",
                x.size(2), "x", x.size(3), " does not match the model's ", config.image_size, "x", config.image_size,
                " (the position embeddings are fixed; got shape ", x.shape(), ")");
    return projection->forward(x).flatten(2).transpose(1, 2);
  }
  HFViTConfig config;
  std::shared_ptr<nn::Conv2d> projection;
};

// embeddings: cls_token, position_embeddings, patch_embeddings, dropout.
class HFViTEmbeddings : public nn::Module {
 public:
  explicit HFViTEmbeddings(const HFViTConfig& c) : Module("ViTEmbeddings"), hidden(c.hidden_size) {
    cls_token = register_parameter("cls_token", empty({1, 1, c.hidden_size}));
    position_embeddings = register_parameter("position_embeddings", empty({1, 1 + c.num_patches(), c.hidden_size}));
    {
      NoGradGuard no_grad;
      init::trunc_normal_(cls_token, 0.0, c.initializer_range, -2.0, 2.0);
      init::trunc_normal_(position_embeddings, 0.0, c.initializer_range, -2.0, 2.0);
    }
    patch_embeddings = register_module("patch_embeddings", std::make_shared<HFViTPatchEmbeddings>(c));
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(c.hidden_dropout_prob));
  }
  // pixels [B, C, image, image] -> [B, 1 + N, D]
  Tensor forward(const Tensor& x) override {
    const Tensor patches = patch_embeddings->forward(x);
    const Tensor cls = cls_token.expand({patches.size(0), 1, hidden});
    return dropout->forward(add(cat({cls, patches}, 1), position_embeddings));
  }
  int64_t hidden;
  Tensor cls_token, position_embeddings;  // [1, 1, D], [1, 1 + N, D]
  std::shared_ptr<HFViTPatchEmbeddings> patch_embeddings;
  std::shared_ptr<nn::Dropout> dropout;
};

// encoder.layer.{i}.attention.attention: query, key, value (HF's ViTSelfAttention).
class HFViTSelfAttention : public nn::Module {
 public:
  explicit HFViTSelfAttention(const HFViTConfig& c)
      : Module("ViTSelfAttention"), num_heads(c.num_attention_heads), dropout_p(c.attention_probs_dropout_prob) {
    using detail_hf_vit::linear;
    query = register_module("query", linear(c.hidden_size, c.hidden_size, c, c.qkv_bias));
    key = register_module("key", linear(c.hidden_size, c.hidden_size, c, c.qkv_bias));
    value = register_module("value", linear(c.hidden_size, c.hidden_size, c, c.qkv_bias));
  }
  // x [B, T, D] -> [B, T, D] (before attention.output.dense)
  Tensor forward(const Tensor& x) override {
    return detail_hf::attend(query->forward(x), key->forward(x), value->forward(x), num_heads, Tensor(),
                             is_training() ? dropout_p : 0.0);
  }
  int64_t num_heads;
  double dropout_p;
  std::shared_ptr<nn::Linear> query, key, value;
};

// encoder.layer.{i}: attention.{attention, output.dense}, intermediate.dense, output.dense,
// layernorm_before, layernorm_after (HF's ViTLayer).
class HFViTLayer : public nn::Module {
 public:
  explicit HFViTLayer(const HFViTConfig& c) : Module("ViTLayer") {
    using detail_hf_vit::linear;
    act = c.hidden_act == "relu" ? Activation::Relu : c.hidden_act == "gelu" ? Activation::Gelu : Activation::GeluTanh;
    attention = register_module("attention", std::make_shared<nn::Module>("ViTAttention"));
    self_attention = attention->register_module("attention", std::make_shared<HFViTSelfAttention>(c));
    attention_output = attention->register_module("output", std::make_shared<nn::Module>("ViTSelfOutput"));
    attention_dense = attention_output->register_module("dense", linear(c.hidden_size, c.hidden_size, c));
    intermediate = register_module("intermediate", std::make_shared<nn::Module>("ViTIntermediate"));
    intermediate_dense = intermediate->register_module("dense", linear(c.hidden_size, c.intermediate_size, c));
    output = register_module("output", std::make_shared<nn::Module>("ViTOutput"));
    output_dense = output->register_module("dense", linear(c.intermediate_size, c.hidden_size, c));
    layernorm_before = register_module("layernorm_before", detail_hf_vit::layer_norm(c));
    layernorm_after = register_module("layernorm_after", detail_hf_vit::layer_norm(c));
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(c.hidden_dropout_prob));
  }
  // x [B, T, D] -> [B, T, D]
  Tensor forward(const Tensor& x) override {
    const Tensor h =
        add(dropout->forward(attention_dense->forward(self_attention->forward(layernorm_before->forward(x)))), x);
    const Tensor m = intermediate_dense->forward(layernorm_after->forward(h), act);  // dense + act, one GEMM
    return add(dropout->forward(output_dense->forward(m)), h);
  }
  Activation act;
  std::shared_ptr<nn::Module> attention, attention_output, intermediate, output;  // name-only containers, as HF's
  std::shared_ptr<HFViTSelfAttention> self_attention;
  std::shared_ptr<nn::Linear> attention_dense, intermediate_dense, output_dense;
  std::shared_ptr<nn::LayerNorm> layernorm_before, layernorm_after;
  std::shared_ptr<nn::Dropout> dropout;  // ViTSelfOutput's and ViTOutput's (one p, no parameters)
};

struct HFViTOutputs {
  Tensor last_hidden_state;  // [B, 1 + N, D], after the final layernorm
  Tensor pooler_output;      // [B, D]; undefined without a pooling layer
};

// ViTModel, and with num_classes > 0 ViTForImageClassification (its classifier at the top level).
class HFViTModel : public ImageClassifier {
 public:
  explicit HFViTModel(const HFViTConfig& cfg) : ImageClassifier("ViTModel"), config(cfg) {
    cfg.validate();
    embeddings = register_module("embeddings", std::make_shared<HFViTEmbeddings>(cfg));
    encoder = register_module("encoder", std::make_shared<nn::Module>("ViTEncoder"));
    layers = encoder->register_module("layer", std::make_shared<nn::ModuleList>());
    for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) layers->push_back(std::make_shared<HFViTLayer>(cfg));
    layernorm = register_module("layernorm", detail_hf_vit::layer_norm(cfg));
    if (cfg.add_pooling_layer) {
      pooler = register_module("pooler", std::make_shared<nn::Module>("ViTPooler"));
      pooler_dense = pooler->register_module("dense", detail_hf_vit::linear(cfg.hidden_size, cfg.hidden_size, cfg));
    }
    register_module("classifier", cfg.num_classes == 0 ? nn::ModulePtr(std::make_shared<nn::Identity>())
                                                       : nn::ModulePtr(detail_hf_vit::linear(
                                                             cfg.hidden_size, cfg.num_classes, cfg)));
  }

  // pixels [B, C, image, image] -> last_hidden_state [B, 1 + N, D] and (with a pooler) pooler_output [B, D].
  HFViTOutputs forward_vit(const Tensor& pixel_values) {
    const Tensor h = layernorm->forward(run_layers(embeddings->forward(pixel_values)));
    HFViTOutputs out{h, Tensor()};
    if (pooler_dense) out.pooler_output = tanh(pooler_dense->forward(h.select(1, 0)));
    return out;
  }
  // pixels -> the normalized [CLS] token [B, D] (ViTForImageClassification's classifier input).
  Tensor forward_features(const Tensor& x) override { return forward_vit(x).last_hidden_state.select(1, 0); }
  Tensor forward_head(const Tensor& features, bool pre_logits = false) override {
    return pre_logits ? features : classifier().forward(features);
  }

  // Named stages (models/features.hpp): "embeddings" ([B, 1 + N, D]), "encoder.layer.0" ..
  // "encoder.layer.<L-1>" ([B, 1 + N, D]), "layernorm" (last_hidden_state), "features" ([B, D]).
  std::vector<std::string> feature_names() override { return detail_features::names_of(feature_stages()); }
  NamedFeatures forward_intermediates(const Tensor& x, const std::vector<std::string>& names) override {
    return detail_features::run_stages("HFViTModel", x, feature_stages(), names);
  }

  std::string classifier_name() const override { return "classifier"; }
  int64_t num_features() const override { return config.hidden_size; }
  int64_t in_chans() const override { return config.num_channels; }
  // A fresh classifier Linear(D, num_classes) (torch's default init); 0 = Identity.
  void reset_classifier(int64_t num_classes) override {
    GRAFT_CHECK(num_classes >= 0, "HFViTModel", "reset_classifier: num_classes must be >= 0, got ", num_classes);
    config.num_classes = num_classes;
    replace_module("classifier",
                   fit_to_model(num_classes == 0 ? nn::ModulePtr(std::make_shared<nn::Identity>())
                                                 : nn::ModulePtr(std::make_shared<nn::Linear>(config.hidden_size,
                                                                                              num_classes))));
  }

  // Loads an HF checkpoint strictly, the "vit." prefix of ViTFor* checkpoints stripped; anything
  // missing, unexpected or mis-shaped throws (an in21k ViTModel checkpoint's pooler.* needs
  // add_pooling_layer = true).
  nn::LoadReport load_hf_state_dict(const std::map<std::string, Tensor>& sd, bool strict = true) {
    return load_state_dict(hf_state_dict(nn::StateDict(sd.begin(), sd.end())), strict);
  }
  nn::LoadReport load_hf_state_dict(const nn::StateDict& sd, bool strict = true) {
    return load_state_dict(hf_state_dict(sd), strict);
  }
  static nn::StateDict hf_state_dict(const nn::StateDict& sd) {
    nn::StateDict out;
    for (const auto& [key, t] : sd) out.emplace_back(detail_hf::strip_prefix(key, "vit."), t);
    return out;
  }
  // The state dict under HF's names: ViTModel's as it is; with a classifier,
  // ViTForImageClassification's ("vit." before every backbone key).
  nn::StateDict to_hf_state_dict() {
    nn::StateDict out;
    for (auto& [k, t] : state_dict())
      out.emplace_back(config.num_classes > 0 && k.rfind("classifier.", 0) != 0 ? "vit." + k : k, t);
    return out;
  }

  HFViTConfig config;
  std::shared_ptr<HFViTEmbeddings> embeddings;
  std::shared_ptr<nn::Module> encoder, pooler;  // name-only containers; pooler null without a pooling layer
  std::shared_ptr<nn::ModuleList> layers;       // encoder.layer: "0" .. "L-1", each an HFViTLayer
  std::shared_ptr<nn::LayerNorm> layernorm;
  std::shared_ptr<nn::Linear> pooler_dense;

 private:
  Tensor run_layers(Tensor x) {
    for (size_t i = 0; i < layers->size(); ++i) x = (*layers)[i]->forward(x);
    return x;
  }
  std::vector<detail_features::Stage> feature_stages() {
    std::vector<detail_features::Stage> st;
    st.emplace_back("embeddings", [this](const Tensor& x) { return embeddings->forward(x); });
    for (size_t i = 0; i < layers->size(); ++i)
      st.emplace_back("encoder.layer." + std::to_string(i), [this, i](const Tensor& t) { return (*layers)[i]->forward(t); });
    st.emplace_back("layernorm", [this](const Tensor& t) { return layernorm->forward(t); });
    st.emplace_back("features", [](const Tensor& t) { return t.select(1, 0); });
    return st;
  }
};

// The registry's builders (num_classes, in_chans): google/vit-*-patch16-224 and facebook/deit-*-patch16-224
// (DeiT without distillation is a ViTForImageClassification).
inline std::shared_ptr<HFViTModel> hf_vit(HFViTConfig c, int64_t num_classes, int64_t in_chans) {
  c.num_classes = num_classes;
  c.num_channels = in_chans;
  return std::make_shared<HFViTModel>(c);
}

}  // namespace graft::models
