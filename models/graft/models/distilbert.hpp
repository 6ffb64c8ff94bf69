// graft/models/distilbert.hpp - DistilBERT exactly as Hugging Face transformers 4.36
// (transformers.models.distilbert.modeling_distilbert: DistilBertModel, eager attention, and
// DistilBertForSequenceClassification's head), with HF's module names, so an HF state dict loads strictly.
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto cfg = graft::models::DistilBertConfig::from_json_file("config.json");  // or distilbert_base_uncased()
//   auto model = std::make_shared<graft::models::DistilBertModel>(cfg);
//   model->load_hf_state_dict(graft::io::load_safetensors("model.safetensors"));  // strict
//   model->eval();
//   Tensor h = model->forward_distilbert(ids, mask);   // ids, mask [B, T] -> last_hidden_state [B, T, dim]
//   Tensor f = model->forward_features(ids, mask);     // the [CLS] position's hidden state [B, dim]
//   model->reset_classifier(2);                        // pre_classifier + classifier = Linear(dim, 2)
//   Tensor logits = model->logits(ids, mask);          // [B, 2], as DistilBertForSequenceClassification
//
// State dict keys (HF's DistilBertModel; a DistilBertFor* checkpoint has them under "distilbert."
// plus its head: load_hf_state_dict / graft-convert --family hf-distilbert strip the prefix):
//   embeddings.word_embeddings.weight [V, dim], embeddings.position_embeddings.weight [P, dim],
//   embeddings.LayerNorm.{weight, bias} [dim],
//   transformer.layer.{i}.attention.{q_lin, k_lin, v_lin, out_lin}.{weight [dim, dim], bias [dim]},
//   transformer.layer.{i}.sa_layer_norm.{weight, bias}, transformer.layer.{i}.ffn.lin1.{weight [hidden, dim], bias},
//   transformer.layer.{i}.ffn.lin2.{weight [dim, hidden], bias [dim]}, transformer.layer.{i}.output_layer_norm.*,
//   and with num_classes > 0 (DistilBertForSequenceClassification's head):
//   pre_classifier.{weight [dim, dim], bias [dim]}, classifier.{weight [C, dim], bias [C]}.
// The buffer embeddings.position_ids is non-persistent (transformers >= 4.31); an older checkpoint's
// copy is checked to be 0..P-1 and skipped, as HF does. to_hf_state_dict() gives the names HF's
// DistilBertForSequenceClassification loads ("distilbert." on the backbone's keys).
//
// Math (post-norm blocks, HF's TransformerBlock; LayerNorm eps 1e-12 everywhere, fixed in HF's code):
//   x = LayerNorm(word[ids] + position[0..T))                                           [B, T, dim]
//   per layer: a = out_lin(softmax(q k^T / sqrt(dim / heads) + mask) v)   (q, k, v = q_lin(x), ...)
//              x = sa_layer_norm(a + x);  x = output_layer_norm(lin2(act(lin1(x))) + x)   act: gelu (erf) | relu
//   head: logits = classifier(dropout(relu(pre_classifier(x[:, 0]))))   dropout = seq_classif_dropout
// Dropout (dropout, attention_dropout) acts in training mode only. Initialization as HF's
// _init_weights: Linear and Embedding N(0, initializer_range), biases 0, the padding row 0, LayerNorm
// 1 / 0; with sinusoidal_pos_embds the position table is the fixed sinusoid, frozen (requires_grad
// false) as HF's create_sinusoidal_embeddings makes it (4.36's post_init then redraws it N(0, 0.02)
// but leaves it frozen: a bug later versions fixed, and moot for a loaded checkpoint). A head from
// reset_classifier gets torch's default init.
#pragma once
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "graft/io/json.hpp"
#include "graft/models/hf_common.hpp"
#include "graft/nn.hpp"

namespace graft::models {

struct DistilBertConfig {
  int64_t vocab_size = 30522;
  int64_t max_position_embeddings = 512;
  bool sinusoidal_pos_embds = false;
  int64_t n_layers = 6;
  int64_t n_heads = 12;
  int64_t dim = 768;
  int64_t hidden_dim = 3072;
  double dropout = 0.1;
  double attention_dropout = 0.1;
  std::string activation = "gelu";  // "gelu" (erf) or "relu"
  double initializer_range = 0.02;
  double seq_classif_dropout = 0.2;
  int64_t pad_token_id = 0;
  int64_t num_classes = 0;  // DistilBertForSequenceClassification's num_labels; 0 = no head (DistilBertModel)

  static DistilBertConfig distilbert_base_uncased() { return DistilBertConfig{}; }
  static DistilBertConfig distilbert_base_cased() {
    DistilBertConfig c;
    c.vocab_size = 28996;
    return c;
  }

  // An HF config.json: the keys above are read when present (others ignored); num_labels / id2label
  // give num_classes. A wrong type or a model_type other than "distilbert" throws naming `source`
  // and the key.
  static DistilBertConfig from_json(std::string_view text, const std::string& source = "config.json") {
    const io::JsonValue v = io::parse_json(text, source);
    GRAFT_CHECK(v.is_object(), "DistilBertConfig", source, ": expected a JSON object");
    const detail_hf::ConfigReader r{v, "DistilBertConfig", source};
    r.require_model_type("distilbert");
    DistilBertConfig c;
    r.get_int("vocab_size", c.vocab_size);
    r.get_int("max_position_embeddings", c.max_position_embeddings);
    r.get_bool("sinusoidal_pos_embds", c.sinusoidal_pos_embds);
    r.get_int("n_layers", c.n_layers);
    r.get_int("n_heads", c.n_heads);
    r.get_int("dim", c.dim);
    r.get_int("hidden_dim", c.hidden_dim);
    r.get_double("dropout", c.dropout);
    r.get_double("attention_dropout", c.attention_dropout);
    if (const std::string act = r.get_string("activation"); !act.empty()) c.activation = act;
    r.get_double("initializer_range", c.initializer_range);
    r.get_double("seq_classif_dropout", c.seq_classif_dropout);
    r.get_int("pad_token_id", c.pad_token_id);
    r.get_num_labels(c.num_classes);
    c.validate(source);
    return c;
  }
  static DistilBertConfig from_json_file(const std::string& path) {
    return from_json(detail_hf::read_text_file(path, "DistilBertConfig"), path);
  }

  void validate(const std::string& source = "DistilBertConfig") const {
    GRAFT_CHECK(vocab_size >= 1 && dim >= 1 && n_layers >= 0 && hidden_dim >= 1 && max_position_embeddings >= 1 &&
                    num_classes >= 0,
                "DistilBertConfig", source, ": sizes must be positive: vocab_size ", vocab_size, ", dim ", dim,
                ", n_layers ", n_layers, ", hidden_dim ", hidden_dim, ", max_position_embeddings ",
                max_position_embeddings, ", num_classes ", num_classes);
    GRAFT_CHECK(n_heads >= 1 && dim % n_heads == 0, "DistilBertConfig", source, ": dim ", dim,
                " must be divisible by n_heads ", n_heads);
    GRAFT_CHECK(activation == "gelu" || activation == "relu", "DistilBertConfig", source, ": activation '",
                activation, "' is not supported (gelu, relu)");
    GRAFT_CHECK(pad_token_id >= 0 && pad_token_id < vocab_size, "DistilBertConfig", source, ": pad_token_id ",
                pad_token_id, " out of range for vocab_size ", vocab_size);
    GRAFT_CHECK(!sinusoidal_pos_embds || dim % 2 == 0, "DistilBertConfig", source,
                ": sinusoidal_pos_embds needs an even dim, got ", dim);
    for (const auto& [name, p] : {std::pair<const char*, double>{"dropout", dropout},
                                  {"attention_dropout", attention_dropout},
                                  {"seq_classif_dropout", seq_classif_dropout}})
      GRAFT_CHECK(p >= 0.0 && p < 1.0, "DistilBertConfig", source, ": ", name, " must be in [0, 1), got ", p);
  }
};

// HF's _create_sinusoidal_embeddings: row pos, column j holds sin (even j) or cos (odd j) of
// pos / 10000^(2 (j / 2) / dim). Computed in double, stored as float32 as HF's torch.FloatTensor.  [n_pos, dim]
inline Tensor distilbert_sinusoidal_table(int64_t n_pos, int64_t dim) {
  std::vector<double> v(size_t(n_pos * dim));
  for (int64_t pos = 0; pos < n_pos; ++pos)
    for (int64_t j = 0; j < dim; ++j) {
      const double angle = double(pos) / std::pow(10000.0, 2.0 * double(j / 2) / double(dim));
      v[size_t(pos * dim + j)] = double(float(j % 2 == 0 ? std::sin(angle) : std::cos(angle)));
    }
  return from_vector(v, Shape{n_pos, dim}, DType::Float32);
}

// embeddings.*: word + position, LayerNorm, dropout (HF's class Embeddings).
class DistilBertEmbeddings : public nn::Module {
 public:
  explicit DistilBertEmbeddings(const DistilBertConfig& c) : Module("Embeddings"), config(c) {
    using namespace detail_hf;
    word_embeddings =
        register_module("word_embeddings", normal_embedding(c.vocab_size, c.dim, c.initializer_range, c.pad_token_id));
    position_embeddings =
        register_module("position_embeddings", normal_embedding(c.max_position_embeddings, c.dim, c.initializer_range));
    if (c.sinusoidal_pos_embds) {
      NoGradGuard no_grad;
      position_embeddings->weight.copy_(distilbert_sinusoidal_table(c.max_position_embeddings, c.dim));
      position_embeddings->weight.set_requires_grad(false);
    }
    LayerNorm = register_module("LayerNorm", std::make_shared<nn::LayerNorm>(c.dim, 1e-12));
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(c.dropout));
    position_ids = register_buffer("position_ids", arange(c.max_position_embeddings).reshape({1, -1}), false);
  }
  // input_ids [B, T] -> [B, T, dim]
  Tensor forward(const Tensor& input_ids) override {
    detail_hf::check_ids(input_ids, "input_ids", config.vocab_size, "DistilBertModel");
    const Tensor pos = position_ids.narrow(1, 0, input_ids.size(1));  // [1, T]
    const Tensor x = add(word_embeddings->forward(input_ids), position_embeddings->forward(pos));
    return dropout->forward(LayerNorm->forward(x));
  }

  DistilBertConfig config;
  std::shared_ptr<nn::Embedding> word_embeddings, position_embeddings;
  std::shared_ptr<nn::LayerNorm> LayerNorm;  // HF's name
  std::shared_ptr<nn::Dropout> dropout;
  Tensor position_ids;  // non-persistent [1, P] int64
};

// transformer.layer.{i}.attention: q_lin, k_lin, v_lin, out_lin.
class DistilBertSelfAttention : public nn::Module {
 public:
  explicit DistilBertSelfAttention(const DistilBertConfig& c)
      : Module("MultiHeadSelfAttention"), n_heads(c.n_heads), dropout_p(c.attention_dropout) {
    for (auto [name, slot] : {std::pair{"q_lin", &q_lin}, {"k_lin", &k_lin}, {"v_lin", &v_lin}, {"out_lin", &out_lin}})
      *slot = register_module(name, detail_hf::normal_linear(c.dim, c.dim, c.initializer_range));
  }
  // x [B, T, dim], mask bool [B, 1, 1, T] (true = a real token; undefined: none) -> [B, T, dim]
  Tensor attend(const Tensor& x, const Tensor& mask) {
    return out_lin->forward(detail_hf::attend(q_lin->forward(x), k_lin->forward(x), v_lin->forward(x), n_heads, mask,
                                              is_training() ? dropout_p : 0.0));
  }
  Tensor forward(const Tensor& x) override { return attend(x, Tensor()); }
  int64_t n_heads;
  double dropout_p;
  std::shared_ptr<nn::Linear> q_lin, k_lin, v_lin, out_lin;
};

// transformer.layer.{i}.ffn: lin1, activation, lin2, dropout.
class DistilBertFFN : public nn::Module {
 public:
  explicit DistilBertFFN(const DistilBertConfig& c)
      : Module("FFN"), act(c.activation == "relu" ? Activation::Relu : Activation::Gelu) {
    lin1 = register_module("lin1", detail_hf::normal_linear(c.dim, c.hidden_dim, c.initializer_range));
    lin2 = register_module("lin2", detail_hf::normal_linear(c.hidden_dim, c.dim, c.initializer_range));
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(c.dropout));
  }
  // x [B, T, dim] -> [B, T, dim]; lin1 and the activation are one GEMM with a fused epilogue.
  Tensor forward(const Tensor& x) override { return dropout->forward(lin2->forward(lin1->forward(x, act))); }
  Activation act;
  std::shared_ptr<nn::Linear> lin1, lin2;
  std::shared_ptr<nn::Dropout> dropout;
};

// transformer.layer.{i}: attention, sa_layer_norm, ffn, output_layer_norm (HF's TransformerBlock).
class DistilBertBlock : public nn::Module {
 public:
  explicit DistilBertBlock(const DistilBertConfig& c) : Module("TransformerBlock") {
    attention = register_module("attention", std::make_shared<DistilBertSelfAttention>(c));
    sa_layer_norm = register_module("sa_layer_norm", std::make_shared<nn::LayerNorm>(c.dim, 1e-12));
    ffn = register_module("ffn", std::make_shared<DistilBertFFN>(c));
    output_layer_norm = register_module("output_layer_norm", std::make_shared<nn::LayerNorm>(c.dim, 1e-12));
  }
  // x [B, T, dim], mask as DistilBertSelfAttention -> [B, T, dim]
  Tensor encode(const Tensor& x, const Tensor& mask) {
    const Tensor a = sa_layer_norm->forward(add(attention->attend(x, mask), x));
    return output_layer_norm->forward(add(ffn->forward(a), a));
  }
  Tensor forward(const Tensor& x) override { return encode(x, Tensor()); }
  std::shared_ptr<DistilBertSelfAttention> attention;
  std::shared_ptr<nn::LayerNorm> sa_layer_norm, output_layer_norm;
  std::shared_ptr<DistilBertFFN> ffn;
};

// DistilBertModel, and with num_classes > 0 DistilBertForSequenceClassification (its head at the top
// level, as BertModel's classifier; see the keys above).
class DistilBertModel : public nn::Module {
 public:
  explicit DistilBertModel(const DistilBertConfig& cfg) : Module("DistilBertModel"), config(cfg) {
    cfg.validate();
    embeddings = register_module("embeddings", std::make_shared<DistilBertEmbeddings>(cfg));
    transformer = register_module("transformer", std::make_shared<nn::Module>("Transformer"));
    layers = transformer->register_module("layer", std::make_shared<nn::ModuleList>());
    for (int64_t i = 0; i < cfg.n_layers; ++i) layers->push_back(std::make_shared<DistilBertBlock>(cfg));
    // Identity slots keep pre_classifier before classifier in the state dict whatever reset_classifier does.
    register_module("pre_classifier", std::make_shared<nn::Identity>());
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(cfg.seq_classif_dropout));
    register_module("classifier", std::make_shared<nn::Identity>());
    if (cfg.num_classes > 0) {
      replace_module("pre_classifier", detail_hf::normal_linear(cfg.dim, cfg.dim, cfg.initializer_range));
      replace_module("classifier", detail_hf::normal_linear(cfg.dim, cfg.num_classes, cfg.initializer_range));
    }
  }

  // input_ids [B, T] int64/int32, attention_mask [B, T] (nonzero = real token; undefined: all real),
  // T <= max_position_embeddings -> last_hidden_state [B, T, dim].
  Tensor forward_distilbert(const Tensor& input_ids, const Tensor& attention_mask = Tensor()) {
    GRAFT_CHECK(input_ids.defined() && input_ids.dim() == 2, "DistilBertModel",
                "input_ids must be [batch, seq], got ",
                input_ids.defined() ? input_ids.shape().str() : std::string("undefined"));
    const int64_t T = input_ids.size(1);
    GRAFT_CHECK(T >= 1 && T <= config.max_position_embeddings, "DistilBertModel", "sequence length ", T,
                " is outside [1, max_position_embeddings = ", config.max_position_embeddings, "]");
    const Tensor mask = detail_hf::key_mask(attention_mask, input_ids, "DistilBertModel");
    Tensor x = embeddings->forward(input_ids);
    for (size_t i = 0; i < layers->size(); ++i) x = static_cast<DistilBertBlock&>(*(*layers)[i]).encode(x, mask);
    return x;
  }
  // The head's input [B, dim]: the hidden state at position 0 ([CLS]).
  Tensor forward_features(const Tensor& input_ids, const Tensor& attention_mask = Tensor()) {
    return forward_distilbert(input_ids, attention_mask).select(1, 0);
  }
  // features [B, dim] -> logits [B, num_classes]: classifier(dropout(relu(pre_classifier(f)))); with
  // no head (num_classes 0) the features themselves.
  Tensor forward_head(const Tensor& features) {
    if (config.num_classes == 0) return features;
    auto& pre = static_cast<nn::Linear&>(*child("pre_classifier"));
    return classifier().forward(dropout->forward(pre.forward(features, Activation::Relu)));
  }
  Tensor logits(const Tensor& input_ids, const Tensor& attention_mask = Tensor()) {
    return forward_head(forward_features(input_ids, attention_mask));
  }
  // input_ids [B, T] without padding -> logits.
  Tensor forward(const Tensor& input_ids) override { return logits(input_ids); }

  nn::Module& classifier() { return *child("classifier"); }
  std::string classifier_name() const override { return "classifier"; }
  // A fresh classifier Linear(dim, num_classes) (torch's default init); pre_classifier is kept when
  // there is one (a fine-tuned checkpoint's), else made fresh too. 0 removes both (no head).
  void reset_classifier(int64_t num_classes) {
    GRAFT_CHECK(num_classes >= 0, "DistilBertModel", "reset_classifier: num_classes must be >= 0, got ", num_classes);
    config.num_classes = num_classes;
    if (num_classes == 0) {
      replace_module("pre_classifier", std::make_shared<nn::Identity>());
      replace_module("classifier", std::make_shared<nn::Identity>());
      return;
    }
    if (child("pre_classifier")->type_name() != "Linear")
      replace_module("pre_classifier", detail_hf::fit_to(std::make_shared<nn::Linear>(config.dim, config.dim), *this));
    replace_module("classifier", detail_hf::fit_to(std::make_shared<nn::Linear>(config.dim, num_classes), *this));
  }

  // Loads an HF checkpoint strictly: the "distilbert." prefix of DistilBertFor* checkpoints is
  // stripped and an old checkpoint's embeddings.position_ids (0..P-1) skipped; anything else missing,
  // unexpected or mis-shaped throws (a masked-LM checkpoint's vocab_* head included: graft-convert
  // --family hf-distilbert drops it).
  nn::LoadReport load_hf_state_dict(const std::map<std::string, Tensor>& sd, bool strict = true) {
    return load_state_dict(hf_state_dict(nn::StateDict(sd.begin(), sd.end())), strict);
  }
  nn::LoadReport load_hf_state_dict(const nn::StateDict& sd, bool strict = true) {
    return load_state_dict(hf_state_dict(sd), strict);
  }
  // The HF -> Graft key mapping of load_hf_state_dict.
  static nn::StateDict hf_state_dict(const nn::StateDict& sd, std::vector<std::string>* skipped = nullptr) {
    nn::StateDict out;
    for (const auto& [key, t] : sd) {
      const std::string k = detail_hf::strip_prefix(key, "distilbert.");
      if (k == "embeddings.position_ids") {
        detail_hf::check_position_ids(key, t, "DistilBertModel");
        if (skipped) skipped->push_back(key);
        continue;
      }
      out.emplace_back(k, t);
    }
    return out;
  }
  // The state dict under HF's names: DistilBertModel's as it is; with a head,
  // DistilBertForSequenceClassification's ("distilbert." before every backbone key).
  nn::StateDict to_hf_state_dict() {
    nn::StateDict out;
    for (auto& [k, t] : state_dict()) {
      const bool head = k.rfind("pre_classifier.", 0) == 0 || k.rfind("classifier.", 0) == 0;
      out.emplace_back(config.num_classes > 0 && !head ? "distilbert." + k : k, t);
    }
    return out;
  }

  DistilBertConfig config;
  std::shared_ptr<DistilBertEmbeddings> embeddings;
  std::shared_ptr<nn::Module> transformer;  // name-only container, as HF's
  std::shared_ptr<nn::ModuleList> layers;   // transformer.layer: "0" .. "n_layers-1", each a DistilBertBlock
  std::shared_ptr<nn::Dropout> dropout;     // the head's (seq_classif_dropout)
};

}  // namespace graft::models
