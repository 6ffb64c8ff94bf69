// graft/models/bert.hpp - BERT (and MiniLM, which is a small BERT) exactly as Hugging Face
// transformers 4.36 (transformers.models.bert.modeling_bert.BertModel, eager attention), with HF's
// module names, so a Hugging Face state dict loads strictly; plus SentenceEncoder, the
// sentence-transformers pipeline of all-MiniLM-L6-v2 (BERT -> mean pooling -> L2 normalize).
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto cfg = graft::models::BertConfig::from_json_file("config.json");     // or all_minilm_l6_v2()
//   auto bert = std::make_shared<graft::models::BertModel>(cfg);
//   bert->load_hf_state_dict(graft::io::load_safetensors("model.safetensors")); // strict
//   bert->eval();
//   auto out = bert->forward_bert(ids, mask);        // ids, mask [B, T] int64 -> last_hidden_state [B, T, H],
//                                                    // pooler_output [B, H]
//   Tensor feats = bert->forward_features(ids, mask); // [B, H]: pooler output (default) or masked mean
//   bert->reset_classifier(3);                        // classifier = Linear(H, 3), torch default init
//   Tensor logits = bert->logits(ids, mask);          // [B, 3]
//   bert->set_grad_checkpointing();                   // training forward recomputes each layer in backward
//
//   graft::models::SentenceEncoder enc(tokenizer, bert, 256);  // max_seq_length 256 as all-MiniLM
//   Tensor e = enc.encode({"A man is eating food.", "A man rides a horse."});  // [2, 384], unit rows
//                                                   // (length-sorted padded batches of 32, as sentence-transformers)
//
// State dict keys (HF's BertModel; a BertForSequenceClassification checkpoint has them under "bert."
// plus classifier.*: load_hf_state_dict / graft-convert --family hf-bert strip the prefix):
//   embeddings.word_embeddings.weight [V, H], embeddings.position_embeddings.weight [P, H],
//   embeddings.token_type_embeddings.weight [types, H], embeddings.LayerNorm.{weight, bias} [H],
//   encoder.layer.{i}.attention.self.{query, key, value}.{weight [H, H], bias [H]},
//   encoder.layer.{i}.attention.output.dense.{weight [H, H], bias}, ...attention.output.LayerNorm.{weight, bias},
//   encoder.layer.{i}.intermediate.dense.{weight [I, H], bias [I]},
//   encoder.layer.{i}.output.dense.{weight [H, I], bias [H]}, encoder.layer.{i}.output.LayerNorm.{weight, bias},
//   pooler.dense.{weight [H, H], bias [H]} (when add_pooling_layer), classifier.{weight [C, H], bias [C]} (C > 0)
// Buffers embeddings.position_ids and embeddings.token_type_ids [1, P] int64 are non-persistent, as in
// transformers >= 4.31 (not in state_dict()); older checkpoints such as all-MiniLM-L6-v2's
// model.safetensors still carry embeddings.position_ids: load_hf_state_dict checks it is 0..P-1 and
// skips it, as HF does.
//
// Math (post-norm blocks, HF's BertLayer):
//   x = LayerNorm(word[ids] + position[0..T) + token_type[types]);                       [B, T, H]
//   per layer: q, k, v = query(x), key(x), value(x) -> [B, heads, T, H/heads];
//     a = softmax(q k^T / sqrt(H/heads) + mask) v -> [B, T, H]   (mask: padded keys excluded)
//     x = LayerNorm(dense(a) + x);  x = LayerNorm(dense2(act(dense1(x))) + x)   act = GELU (erf) for "gelu"
//   pooler_output = tanh(pooler.dense(x[:, 0]))                                            [B, H]
// Dropout (hidden_dropout_prob, attention_probs_dropout_prob) acts in training mode only.
// set_grad_checkpointing(true) is HF's gradient_checkpointing_enable() (named as timm's and
// VisionTransformer's switch): in training mode with grad on, each BertLayer runs under
// graft::checkpoint (autograd/checkpoint.hpp), keeping only the layers' inputs for backward; the
// recompute replays the dropout masks (the generator state is restored), so the gradients are the same.
//
// Classifier decision: forward_features pools as config.classifier_pooling says: Pooler (default; HF's
// BertForSequenceClassification: dropout(pooler_output) -> classifier, so its checkpoints work as they
// are) or Mean (the attention-masked mean of last_hidden_state, what sentence-transformers models such
// as all-MiniLM-L6-v2 were trained to produce; a better head input for them). num_classes 0 = Identity.
// Initialization as HF's _init_weights: Linear and Embedding N(0, initializer_range), biases 0, the
// padding row of word_embeddings 0, LayerNorm 1/0; a classifier from reset_classifier gets torch's default.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "graft/io/json.hpp"
#include "graft/models/hf_common.hpp"
#include "graft/nn.hpp"
#include "graft/text/tokenizer.hpp"

namespace graft::models {

// Pooler: tanh(pooler.dense(x[:, 0])); Mean: the attention-masked mean; First: x[:, 0] as it is (the
// input of RoBERTa's classification head, graft/models/roberta.hpp).
enum class BertPooling { Pooler, Mean, First };

struct BertConfig {
  int64_t vocab_size = 30522;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  std::string hidden_act = "gelu";  // "gelu" (erf), "gelu_new" / "gelu_pytorch_tanh" (tanh), "relu"
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  double initializer_range = 0.02;
  double layer_norm_eps = 1e-12;
  int64_t pad_token_id = 0;
  bool add_pooling_layer = true;
  int64_t num_classes = 0;  // the classifier head; 0 = Identity
  BertPooling classifier_pooling = BertPooling::Pooler;

  // sentence-transformers/all-MiniLM-L6-v2 (its config.json).
  static BertConfig all_minilm_l6_v2() {
    BertConfig c;
    c.hidden_size = 384;
    c.num_hidden_layers = 6;
    c.num_attention_heads = 12;
    c.intermediate_size = 1536;
    return c;
  }
  static BertConfig bert_base_uncased() { return BertConfig{}; }

  // An HF config.json: the keys above are read when present (others ignored; a wrong type, a
  // model_type other than "bert", or position_embedding_type other than "absolute" throws naming
  // `source` and the key). num_labels / id2label give num_classes when present.
  // model_type / defaults: what RoBERTa's config (graft/models/roberta.hpp) reads it with.
  static BertConfig from_json(std::string_view text, const std::string& source = "config.json") {
    return from_json(text, source, "bert", BertConfig{});
  }
  static BertConfig from_json(std::string_view text, const std::string& source, const std::string& model_type,
                              const BertConfig& defaults) {
    const io::JsonValue v = io::parse_json(text, source);
    GRAFT_CHECK(v.is_object(), "BertConfig", source, ": expected a JSON object");
    const detail_hf::ConfigReader r{v, "BertConfig", source};
    r.require_model_type(model_type.c_str());
    BertConfig c = defaults;
    const std::string pos = r.get_string("position_embedding_type");
    GRAFT_CHECK(pos.empty() || pos == "absolute", "BertConfig", source, ": position_embedding_type '", pos,
                "' is not supported (only 'absolute')");
    r.get_int("vocab_size", c.vocab_size);
    r.get_encoder_keys(c);
    r.get_int("max_position_embeddings", c.max_position_embeddings);
    r.get_int("type_vocab_size", c.type_vocab_size);
    r.get_int("pad_token_id", c.pad_token_id);
    r.get_num_labels(c.num_classes);
    c.validate(source);
    return c;
  }
  static BertConfig from_json_file(const std::string& path) {
    return from_json(detail_hf::read_text_file(path, "BertConfig"), path);
  }

  void validate(const std::string& source = "BertConfig") const {
    GRAFT_CHECK(vocab_size >= 1 && hidden_size >= 1 && num_hidden_layers >= 0 && intermediate_size >= 1 &&
                    max_position_embeddings >= 1 && type_vocab_size >= 1 && num_classes >= 0,
                "BertConfig", source, ": sizes must be positive: vocab_size ", vocab_size, ", hidden_size ",
                hidden_size, ", num_hidden_layers ", num_hidden_layers, ", intermediate_size ", intermediate_size,
                ", max_position_embeddings ", max_position_embeddings, ", type_vocab_size ", type_vocab_size,
                ", num_classes ", num_classes);
    GRAFT_CHECK(num_attention_heads >= 1 && hidden_size % num_attention_heads == 0, "BertConfig", source,
                ": hidden_size ", hidden_size, " must be divisible by num_attention_heads ", num_attention_heads);
    GRAFT_CHECK(hidden_act == "gelu" || hidden_act == "gelu_new" || hidden_act == "gelu_pytorch_tanh" ||
                    hidden_act == "relu",
                "BertConfig", source, ": hidden_act '", hidden_act,
                "' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)");
    GRAFT_CHECK(pad_token_id >= 0 && pad_token_id < vocab_size, "BertConfig", source, ": pad_token_id ",
                pad_token_id, " out of range for vocab_size ", vocab_size);
  }
};

namespace detail_bert {
// HF's _init_weights: Linear N(0, initializer_range), bias 0; Embedding N(0, initializer_range).
using detail_hf::normal_linear;
inline std::shared_ptr<nn::Linear> linear(int64_t in, int64_t out, double std) { return normal_linear(in, out, std); }
inline std::shared_ptr<nn::Embedding> embedding(int64_t count, int64_t dim, double std,
                                                std::optional<int64_t> pad = std::nullopt) {
  return detail_hf::normal_embedding(count, dim, std, pad);
}
inline std::shared_ptr<nn::LayerNorm> layer_norm(const BertConfig& c) {
  return std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps);
}
}  // namespace detail_bert

// embeddings.*: word + position + token type, LayerNorm, dropout.
class BertEmbeddings : public nn::Module {
 public:
  explicit BertEmbeddings(const BertConfig& c) : BertEmbeddings(c, "BertEmbeddings", std::nullopt) {}
  // name: the module type; position_padding: the padding row of position_embeddings (RoBERTa's).
  BertEmbeddings(const BertConfig& c, const char* name, std::optional<int64_t> position_padding)
      : Module(name), config(c) {
    using namespace detail_bert;
    word_embeddings = register_module("word_embeddings",
                                      embedding(c.vocab_size, c.hidden_size, c.initializer_range, c.pad_token_id));
    position_embeddings = register_module("position_embeddings", embedding(c.max_position_embeddings, c.hidden_size,
                                                                           c.initializer_range, position_padding));
    token_type_embeddings =
        register_module("token_type_embeddings", embedding(c.type_vocab_size, c.hidden_size, c.initializer_range));
    LayerNorm = register_module("LayerNorm", layer_norm(c));
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(c.hidden_dropout_prob));
    position_ids = register_buffer("position_ids", arange(c.max_position_embeddings).reshape({1, -1}), false);
    token_type_ids = register_buffer("token_type_ids", zeros({1, c.max_position_embeddings}, DType::Int64), false);
  }
  // input_ids [B, T], types [B, T] (undefined: all 0) -> [B, T, H]
  Tensor embed(const Tensor& input_ids, const Tensor& types) {
    const int64_t T = input_ids.size(1);
    check_ids(input_ids, "input_ids", config.vocab_size);
    Tensor tt = types.defined() ? types : token_type_ids.narrow(1, 0, T).expand({input_ids.size(0), T});
    if (types.defined()) {
      GRAFT_CHECK(types.shape() == input_ids.shape(), "BertModel", "token_type_ids shape ", types.shape(),
                  " differs from input_ids shape ", input_ids.shape());
      check_ids(types, "token_type_ids", config.type_vocab_size);
    }
    const Tensor pos = positions(input_ids);  // [1, T] or [B, T]
    Tensor x = add(add(word_embeddings->forward(input_ids), token_type_embeddings->forward(tt.contiguous())),
                   position_embeddings->forward(pos));
    return dropout->forward(LayerNorm->forward(x));
  }
  Tensor forward(const Tensor& input_ids) override { return embed(input_ids, Tensor()); }
  // The position ids of input_ids [B, T]: BERT's 0..T-1 ([1, T]); RoBERTa's count real tokens.
  virtual Tensor positions(const Tensor& input_ids) const { return position_ids.narrow(1, 0, input_ids.size(1)); }

  BertConfig config;
  std::shared_ptr<nn::Embedding> word_embeddings, position_embeddings, token_type_embeddings;
  std::shared_ptr<nn::LayerNorm> LayerNorm;  // HF's name
  std::shared_ptr<nn::Dropout> dropout;
  Tensor position_ids, token_type_ids;  // non-persistent [1, P] int64

 private:
  static void check_ids(const Tensor& ids, const char* what, int64_t limit) {
    detail_hf::check_ids(ids, what, limit, "BertModel");
  }
};

// encoder.layer.{i}.attention.self: query, key, value.
class BertSelfAttention : public nn::Module {
 public:
  explicit BertSelfAttention(const BertConfig& c)
      : Module("BertSelfAttention"), num_heads(c.num_attention_heads), dropout_p(c.attention_probs_dropout_prob) {
    query = register_module("query", detail_bert::linear(c.hidden_size, c.hidden_size, c.initializer_range));
    key = register_module("key", detail_bert::linear(c.hidden_size, c.hidden_size, c.initializer_range));
    value = register_module("value", detail_bert::linear(c.hidden_size, c.hidden_size, c.initializer_range));
  }
  // x [B, T, H], mask bool [B, 1, 1, T] (true = a real token; undefined: none) -> [B, T, H]
  Tensor attend(const Tensor& x, const Tensor& mask) {
    return detail_hf::attend(query->forward(x), key->forward(x), value->forward(x), num_heads, mask,
                             is_training() ? dropout_p : 0.0);
  }
  int64_t num_heads;
  double dropout_p;
  std::shared_ptr<nn::Linear> query, key, value;
};

// attention.output and output: dense, dropout, LayerNorm(dense(h) + residual).
class BertResidualOutput : public nn::Module {
 public:
  BertResidualOutput(const BertConfig& c, int64_t in) : Module("BertSelfOutput") {
    dense = register_module("dense", detail_bert::linear(in, c.hidden_size, c.initializer_range));
    LayerNorm = register_module("LayerNorm", detail_bert::layer_norm(c));
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(c.hidden_dropout_prob));
  }
  // h [B, T, in], residual [B, T, H] -> [B, T, H]
  Tensor combine(const Tensor& h, const Tensor& residual) {
    return LayerNorm->forward(add(dropout->forward(dense->forward(h)), residual));
  }
  std::shared_ptr<nn::Linear> dense;
  std::shared_ptr<nn::LayerNorm> LayerNorm;
  std::shared_ptr<nn::Dropout> dropout;
};

// encoder.layer.{i}: attention.{self, output}, intermediate.dense, output.
class BertLayer : public nn::Module {
 public:
  explicit BertLayer(const BertConfig& c) : Module("BertLayer"), act(c.hidden_act) {
    attention = register_module("attention", std::make_shared<nn::Module>("BertAttention"));
    self_attention = attention->register_module("self", std::make_shared<BertSelfAttention>(c));
    attention_output = attention->register_module("output", std::make_shared<BertResidualOutput>(c, c.hidden_size));
    intermediate = register_module("intermediate", std::make_shared<nn::Module>("BertIntermediate"));
    intermediate_dense = intermediate->register_module(
        "dense", detail_bert::linear(c.hidden_size, c.intermediate_size, c.initializer_range));
    output = register_module("output", std::make_shared<BertResidualOutput>(c, c.intermediate_size));
  }
  // x [B, T, H], mask as BertSelfAttention -> [B, T, H]
  Tensor encode(const Tensor& x, const Tensor& mask) {
    const Tensor a = attention_output->combine(self_attention->attend(x, mask), x);
    const Activation fused = act == "relu" ? Activation::Relu : act == "gelu" ? Activation::Gelu : Activation::GeluTanh;
    return output->combine(intermediate_dense->forward(a, fused), a);
  }
  std::string act;
  std::shared_ptr<nn::Module> attention, intermediate;  // name-only containers, as HF's
  std::shared_ptr<BertSelfAttention> self_attention;
  std::shared_ptr<BertResidualOutput> attention_output, output;
  std::shared_ptr<nn::Linear> intermediate_dense;
};

struct BertOutputs {
  Tensor last_hidden_state;  // [B, T, H]
  Tensor pooler_output;      // [B, H]; undefined without a pooling layer
};

class BertModel : public nn::Module {
 public:
  explicit BertModel(const BertConfig& cfg) : BertModel(cfg, nullptr, "BertModel", "bert.") {}

 protected:
  // For BERT with other embeddings and another HF model prefix (RobertaModel); null emb: BERT's.
  BertModel(const BertConfig& cfg, std::shared_ptr<BertEmbeddings> emb, const char* name, std::string hf_prefix)
      : Module(name), config(cfg), hf_prefix_(std::move(hf_prefix)) {
    cfg.validate();
    embeddings = register_module("embeddings", emb ? std::move(emb) : std::make_shared<BertEmbeddings>(cfg));
    encoder = register_module("encoder", std::make_shared<nn::Module>("BertEncoder"));
    layers = encoder->register_module("layer", std::make_shared<nn::ModuleList>());
    for (int64_t i = 0; i < cfg.num_hidden_layers; ++i) layers->push_back(std::make_shared<BertLayer>(cfg));
    if (cfg.add_pooling_layer) {
      pooler = register_module("pooler", std::make_shared<nn::Module>("BertPooler"));
      pooler_dense = pooler->register_module(
          "dense", detail_bert::linear(cfg.hidden_size, cfg.hidden_size, cfg.initializer_range));
    }
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(cfg.hidden_dropout_prob));
    register_module("classifier", make_head(cfg.num_classes));
  }

 public:

  // input_ids [B, T] int64/int32; attention_mask [B, T] (nonzero = real token; undefined: all real);
  // token_type_ids [B, T] (undefined: 0). T <= max_position_embeddings.
  BertOutputs forward_bert(const Tensor& input_ids, const Tensor& attention_mask = Tensor(),
                           const Tensor& token_type_ids = Tensor()) {
    GRAFT_CHECK(input_ids.defined() && input_ids.dim() == 2, "BertModel", "input_ids must be [batch, seq], got ",
                input_ids.defined() ? input_ids.shape().str() : std::string("undefined"));
    const int64_t T = input_ids.size(1);
    GRAFT_CHECK(T >= 1 && T <= config.max_position_embeddings, "BertModel", "sequence length ", T,
                " is outside [1, max_position_embeddings = ", config.max_position_embeddings, "]");
    const Tensor mask = detail_hf::key_mask(attention_mask, input_ids, "BertModel");
    Tensor x = embeddings->embed(input_ids, token_type_ids);
    for (size_t i = 0; i < layers->size(); ++i) {
      auto layer = std::static_pointer_cast<BertLayer>((*layers)[i]);
      if (grad_checkpointing_ && is_training()) {
        // mask holds no gradient: the closure keeps it (and the layer) for the recompute
        x = checkpoint([layer, mask](const Tensor& in) { return layer->encode(in, mask); }, x);
      } else {
        x = layer->encode(x, mask);
      }
    }
    BertOutputs out{x, Tensor()};
    if (pooler_dense) out.pooler_output = tanh(pooler_dense->forward(x.select(1, 0)));
    return out;
  }

  // The classifier's input [B, H]: pooler_output (BertPooling::Pooler) or the masked mean (Mean).
  Tensor forward_features(const Tensor& input_ids, const Tensor& attention_mask = Tensor(),
                          const Tensor& token_type_ids = Tensor()) {
    const BertOutputs o = forward_bert(input_ids, attention_mask, token_type_ids);
    if (config.classifier_pooling == BertPooling::Mean) return mean_pool(o.last_hidden_state, attention_mask);
    if (config.classifier_pooling == BertPooling::First) return o.last_hidden_state.select(1, 0);
    GRAFT_CHECK(o.pooler_output.defined(), "BertModel",
                "classifier_pooling is Pooler but the model has no pooling layer (add_pooling_layer = false)");
    return o.pooler_output;
  }
  // logits [B, num_classes] (the features when num_classes is 0).
  Tensor logits(const Tensor& input_ids, const Tensor& attention_mask = Tensor(),
                const Tensor& token_type_ids = Tensor()) {
    return classifier().forward(dropout->forward(forward_features(input_ids, attention_mask, token_type_ids)));
  }
  // input_ids [B, T] without padding -> logits.
  Tensor forward(const Tensor& input_ids) override { return logits(input_ids); }

  // sentence-transformers' Pooling(mean): sum(x * mask) / max(sum(mask), 1e-9); x [B, T, H] -> [B, H].
  static Tensor mean_pool(const Tensor& last_hidden_state, const Tensor& attention_mask) {
    if (!attention_mask.defined()) return mean(last_hidden_state, {1});
    const Tensor m = ne(attention_mask, 0.0).to(last_hidden_state.dtype()).unsqueeze(2);  // [B, T, 1]
    const Tensor count = clamp(sum(m, {1}), 1e-9, std::numeric_limits<double>::infinity());
    return div(sum(mul(last_hidden_state, m), {1}), count);
  }

  nn::Module& classifier() { return *child("classifier"); }
  std::string classifier_name() const override { return "classifier"; }
  // HF's gradient_checkpointing_enable / _disable: checkpoint every BertLayer in training forward
  // (off by default).
  void set_grad_checkpointing(bool enable = true) { grad_checkpointing_ = enable; }
  bool grad_checkpointing() const { return grad_checkpointing_; }
  // Replaces the classifier with a fresh Linear(H, num_classes) (torch's default init; RobertaModel:
  // a fresh classification head); 0 = Identity.
  void reset_classifier(int64_t num_classes) {
    GRAFT_CHECK(num_classes >= 0, "BertModel", "reset_classifier: num_classes must be >= 0, got ", num_classes);
    config.num_classes = num_classes;
    replace_module("classifier", make_head(num_classes));
  }

  // Loads an HF checkpoint strictly: a "bert." prefix (BertFor* models) is stripped; the buffer
  // embeddings.position_ids (old checkpoints) must be 0..n-1 and is skipped, as is
  // embeddings.token_type_ids (must be zeros); anything else missing or unexpected throws.
  nn::LoadReport load_hf_state_dict(const std::map<std::string, Tensor>& sd, bool strict = true) {
    return load_state_dict(hf_state_dict(nn::StateDict(sd.begin(), sd.end()), nullptr, hf_prefix_), strict);
  }
  nn::LoadReport load_hf_state_dict(const nn::StateDict& sd, bool strict = true) {
    return load_state_dict(hf_state_dict(sd, nullptr, hf_prefix_), strict);
  }
  // The HF -> Graft key mapping of load_hf_state_dict, for graft-convert and inspection (prefix: the
  // model prefix of the *For* checkpoints; RobertaModel's is "roberta.").
  static nn::StateDict hf_state_dict(const nn::StateDict& sd, std::vector<std::string>* skipped = nullptr,
                                     const std::string& prefix = "bert.") {
    nn::StateDict out;
    for (const auto& [key, t] : sd) {
      const std::string k = key.rfind(prefix, 0) == 0 ? key.substr(prefix.size()) : key;
      if (k == "embeddings.position_ids" || k == "embeddings.token_type_ids") {
        const std::vector<double> v = t.to_vector();
        for (size_t i = 0; i < v.size(); ++i)
          GRAFT_CHECK(v[i] == (k == "embeddings.position_ids" ? double(i) : 0.0), "BertModel", "'", key,
                      "' holds ", v[i], " at index ", i, ": expected ",
                      k == "embeddings.position_ids" ? "0, 1, 2, ..." : "zeros");
        if (skipped) skipped->push_back(key);
        continue;
      }
      out.emplace_back(k, t);
    }
    return out;
  }

  BertConfig config;
  std::shared_ptr<BertEmbeddings> embeddings;
  std::shared_ptr<nn::Module> encoder, pooler;  // name-only containers; pooler null without a pooling layer
  std::shared_ptr<nn::ModuleList> layers;       // encoder.layer: "0" .. "L-1", each a BertLayer
  std::shared_ptr<nn::Linear> pooler_dense;
  std::shared_ptr<nn::Dropout> dropout;  // before the classifier (HF: hidden_dropout_prob)

 protected:
  std::string hf_prefix_ = "bert.";

 private:
  bool grad_checkpointing_ = false;
  // The classifier (virtual: RobertaModel's head; the constructor still calls this one).
  virtual nn::ModulePtr make_head(int64_t num_classes) const {
    GRAFT_CHECK(num_classes >= 0, "BertModel", "num_classes must be >= 0, got ", num_classes);
    if (num_classes == 0) return std::make_shared<nn::Identity>();
    return std::make_shared<nn::Linear>(config.hidden_size, num_classes);
  }
};

// sentence-transformers' all-MiniLM-L6-v2 pipeline: Transformer (BertModel, max_seq_length tokens,
// truncation) -> Pooling (mean over the attention mask) -> Normalize (x / max(||x||_2, 1e-12)).
class SentenceEncoder {
 public:
  SentenceEncoder(text::BertTokenizer tok, std::shared_ptr<BertModel> bert, int64_t max_len = 256)
      : tokenizer(std::move(tok)), model(std::move(bert)), max_seq_length(max_len) {
    GRAFT_CHECK(model != nullptr, "SentenceEncoder", "null model");
    GRAFT_CHECK(max_len >= 2 && max_len <= model->config.max_position_embeddings, "SentenceEncoder",
                "max_seq_length ", max_len, " outside [2, max_position_embeddings = ",
                model->config.max_position_embeddings, "]");
  }
  // Tokenized batch -> unit embeddings [N, H] (no grad when grad mode is off; eval mode is the caller's).
  Tensor embed(const text::BatchEncoding& batch) {
    const BertOutputs o = model->forward_bert(batch.input_ids, batch.attention_mask, batch.token_type_ids);
    const Tensor pooled = BertModel::mean_pool(o.last_hidden_state, batch.attention_mask);  // [N, H]
    const Tensor norm = clamp(sqrt(sum(mul(pooled, pooled), {1}, true)), 1e-12, std::numeric_limits<double>::infinity());
    return div(pooled, norm);
  }
  // texts -> [N, H] in the order given. As sentence-transformers' encode: the texts are sorted by
  // length (longest first) and run in padded batches of batch_size, so little compute goes to padding.
  Tensor encode(const std::vector<std::string>& texts, int64_t batch_size = 32) {
    GRAFT_CHECK(!texts.empty() && batch_size >= 1, "SentenceEncoder", "encode: need texts and batch_size >= 1, got ",
                texts.size(), " texts and batch_size ", batch_size);
    std::vector<std::vector<int64_t>> ids;
    for (const auto& t : texts) ids.push_back(tokenizer.encode(t, max_seq_length, true).input_ids);
    std::vector<size_t> order(texts.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ids[a].size() > ids[b].size(); });
    std::vector<Tensor> rows(texts.size());
    for (size_t start = 0; start < order.size(); start += size_t(batch_size)) {
      const size_t end = std::min(order.size(), start + size_t(batch_size));
      std::vector<std::string> chunk;
      for (size_t k = start; k < end; ++k) chunk.push_back(texts[order[k]]);
      const Tensor e = embed(tokenizer.encode_batch(chunk, max_seq_length, true));  // [chunk, H]
      for (size_t k = start; k < end; ++k) rows[order[k]] = e.select(0, int64_t(k - start)).unsqueeze(0);
    }
    return cat(rows, 0);
  }

  text::BertTokenizer tokenizer;
  std::shared_ptr<BertModel> model;
  int64_t max_seq_length;
};

}  // namespace graft::models
