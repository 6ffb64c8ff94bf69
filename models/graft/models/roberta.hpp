// graft/models/roberta.hpp - RoBERTa exactly as Hugging Face transformers 4.36
// (transformers.models.roberta: RobertaModel, RobertaForSequenceClassification), with HF's names: BERT's
// encoder (graft/models/bert.hpp) with RoBERTa's position ids and classification head.
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto cfg = graft::models::RobertaConfig::from_json_file("config.json");   // or roberta_base()
//   auto model = std::make_shared<graft::models::RobertaModel>(cfg);
//   model->load_hf_state_dict(graft::io::load_safetensors("model.safetensors"));  // strict; "roberta." stripped
//   auto tok = graft::text::ByteLevelBpeTokenizer::from_files("vocab.json", "merges.txt");  // graft/text/bpe.hpp
//   auto batch = tok.encode_batch({"A text.", "Another one."}, 512);
//   Tensor logits = model->logits(batch.input_ids, batch.attention_mask);   // [B, num_classes]
//   auto out = model->forward_bert(batch.input_ids, batch.attention_mask);  // last_hidden_state [B, T, H]
//
// What differs from BERT:
//   - position ids (HF's create_position_ids_from_input_ids): padding_idx + the running count of real
//     tokens, padding_idx itself at padding (pad_token_id, 1), so position_embeddings.weight row
//     padding_idx is the padding row (zero at init, no gradient) and T <= max_position_embeddings -
//     padding_idx - 1 (512 of roberta-base's 514);
//   - the head (RobertaClassificationHead), on the <s> token's final hidden state x[:, 0] (no pooler):
//       logits = out_proj(dropout(tanh(dense(dropout(x[:, 0])))))     dropout p: classifier_dropout,
//     or hidden_dropout_prob when it is null, as HF;
//   - defaults from HF's RobertaConfig class (vocab 50265, pad_token_id 1, ...); roberta_base() is
//     roberta-base's config.json (max_position_embeddings 514, type_vocab_size 1, layer_norm_eps 1e-5).
//
// State dict keys (Graft's; an HF RobertaFor* checkpoint has the model under "roberta.": stripped by
// load_hf_state_dict and graft-convert --family hf-roberta, as BERT's "bert."):
//   embeddings.{word_embeddings, position_embeddings, token_type_embeddings}.weight, embeddings.LayerNorm.*,
//   encoder.layer.{i}.* as BertModel, pooler.dense.* (add_pooling_layer only: RobertaModel has it,
//   RobertaForSequenceClassification has not), classifier.dense.{weight [H, H], bias},
//   classifier.out_proj.{weight [C, H], bias [C]} (num_classes > 0).
// Initialization as HF's _init_weights (N(0, initializer_range), biases 0, padding rows 0), the head's
// too, including one made by reset_classifier: what HF gives a new head on a pretrained body.
#pragma once
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "graft/models/bert.hpp"

namespace graft::models {

struct RobertaConfig : BertConfig {
  std::optional<double> classifier_dropout;  // null: hidden_dropout_prob

  // HF's RobertaConfig() defaults: BERT's but for vocab_size 50265 and pad_token_id 1; no pooler
  // (RobertaForSequenceClassification's layout), the head on <s>.
  RobertaConfig() {
    vocab_size = 50265;
    pad_token_id = 1;
    add_pooling_layer = false;
    classifier_pooling = BertPooling::First;
  }
  // roberta-base's config.json.
  static RobertaConfig roberta_base() {
    RobertaConfig c;
    c.max_position_embeddings = 514;
    c.type_vocab_size = 1;
    c.layer_norm_eps = 1e-5;
    return c;
  }
  // An HF config.json with model_type "roberta" (or none), read as BertConfig::from_json reads BERT's
  // (same keys and checks), plus classifier_dropout.
  static RobertaConfig from_json(std::string_view text, const std::string& source = "config.json") {
    RobertaConfig c;
    static_cast<BertConfig&>(c) = BertConfig::from_json(text, source, "roberta", RobertaConfig());
    const io::JsonValue v = io::parse_json(text, source);
    if (const io::JsonValue* x = v.find("classifier_dropout"); x && !x->is_null()) {
      GRAFT_CHECK(x->is_number() && x->as_double() >= 0 && x->as_double() <= 1, "RobertaConfig", source,
                  ": 'classifier_dropout' must be a number in [0, 1] or null");
      c.classifier_dropout = x->as_double();
    }
    c.validate_roberta(source);
    return c;
  }
  static RobertaConfig from_json_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    GRAFT_CHECK(f.good(), "RobertaConfig", "cannot open '", path, "'");
    const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return from_json(text, path);
  }
  void validate_roberta(const std::string& source = "RobertaConfig") const {
    validate(source);
    GRAFT_CHECK(pad_token_id + 1 < max_position_embeddings, "RobertaConfig", source, ": pad_token_id ", pad_token_id,
                " leaves no positions below max_position_embeddings ", max_position_embeddings,
                " (RoBERTa's positions start at pad_token_id + 1)");
  }
};

// embeddings.*: BERT's, with position ids counted over the real tokens.
class RobertaEmbeddings : public BertEmbeddings {
 public:
  explicit RobertaEmbeddings(const BertConfig& c) : BertEmbeddings(c, "RobertaEmbeddings", c.pad_token_id) {}

  // HF's create_position_ids_from_input_ids: cumsum(ids != pad) * (ids != pad) + pad -> [B, T] int64.
  Tensor positions(const Tensor& input_ids) const override {
    const int64_t B = input_ids.size(0), T = input_ids.size(1), pad = config.pad_token_id;
    const std::vector<double> ids = input_ids.to_vector();  // host copy (the ids are small)
    std::vector<int64_t> pos(ids.size());
    for (int64_t b = 0; b < B; ++b) {
      int64_t count = 0;
      for (int64_t t = 0; t < T; ++t) {
        const size_t i = size_t(b * T + t);
        pos[i] = int64_t(ids[i]) == pad ? pad : pad + ++count;
      }
      GRAFT_CHECK(pad + count < config.max_position_embeddings, "RobertaModel", "row ", b, " has ", count,
                  " non-padding tokens: RoBERTa's positions (pad_token_id ", pad, " + 1 ..) need at most ",
                  config.max_position_embeddings - pad - 1, " (max_position_embeddings ",
                  config.max_position_embeddings, ")");
    }
    return from_vector(pos, Shape{B, T}, DType::Int64).to(input_ids.device());
  }
};

// classifier: dense (H -> H), tanh, dropout, out_proj (H -> C), on x[:, 0] [B, H] (its first dropout is
// the model's `dropout`).
class RobertaClassificationHead : public nn::Module {
 public:
  RobertaClassificationHead(int64_t hidden, int64_t num_classes, double dropout_p, double init_std)
      : Module("RobertaClassificationHead") {
    dense = register_module("dense", detail_bert::linear(hidden, hidden, init_std));
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(dropout_p));
    out_proj = register_module("out_proj", detail_bert::linear(hidden, num_classes, init_std));
  }
  Tensor forward(const Tensor& x) override { return out_proj->forward(dropout->forward(tanh(dense->forward(x)))); }
  std::shared_ptr<nn::Linear> dense, out_proj;
  std::shared_ptr<nn::Dropout> dropout;
};

// RobertaModel (add_pooling_layer) and RobertaForSequenceClassification (num_classes > 0) in one class,
// as BertModel: forward_bert, forward_features (x[:, 0]), logits, reset_classifier, load_hf_state_dict.
class RobertaModel : public BertModel {
 public:
  explicit RobertaModel(const RobertaConfig& cfg)
      : BertModel(checked(cfg), std::make_shared<RobertaEmbeddings>(cfg), "RobertaModel", "roberta."),
        classifier_dropout(cfg.classifier_dropout.value_or(cfg.hidden_dropout_prob)) {
    dropout->p = classifier_dropout;
    replace_module("classifier", make_head(cfg.num_classes));  // the base constructor made BERT's
  }

  double classifier_dropout;

 private:
  static const RobertaConfig& checked(const RobertaConfig& cfg) {
    cfg.validate_roberta();
    return cfg;
  }
  nn::ModulePtr make_head(int64_t num_classes) const override {
    GRAFT_CHECK(num_classes >= 0, "RobertaModel", "num_classes must be >= 0, got ", num_classes);
    if (num_classes == 0) return std::make_shared<nn::Identity>();
    return std::make_shared<RobertaClassificationHead>(config.hidden_size, num_classes, classifier_dropout,
                                                       config.initializer_range);
  }
};

}  // namespace graft::models
