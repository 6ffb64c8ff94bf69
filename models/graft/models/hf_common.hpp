// graft/models/hf_common.hpp - the pieces Graft's Hugging Face transformers share (bert.hpp,
// distilbert.hpp, hf_vit.hpp): reading an HF config.json with errors that name the file and the key,
// HF's weight initializations, multi-head attention over separate q / k / v projections (HF's layout,
// where timm fuses them into one qkv Linear), token id range checks and the checkpoint prefix strip.
//
// Not included by <graft/graft.hpp>; the model headers include it.
//
//   const io::JsonValue v = io::parse_json(text, "config.json");
//   detail_hf::ConfigReader r{v, "ViTConfig", "config.json"};
//   r.get_int("hidden_size", c.hidden_size);          // absent: keeps the default; a string: an Error
//   r.require_model_type("vit");                      // "model_type 'bert' is not 'vit'"
//   Tensor o = detail_hf::attend(q_lin->forward(x), k_lin->forward(x), v_lin->forward(x), heads, mask, p);
#pragma once
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "graft/io/json.hpp"
#include "graft/nn.hpp"

namespace graft::models::detail_hf {

// One HF config.json object. Each get_* leaves `dst` as it is when the key is absent (or null, for
// the keys HF writes as null) and throws naming `cls`, `source` and the key on a wrong type.
struct ConfigReader {
  const io::JsonValue& v;
  std::string cls;     // "DistilBertConfig": the error's prefix
  std::string source;  // the file name

  void get_int(const char* key, int64_t& dst) const {
    if (const io::JsonValue* x = v.find(key); x && !x->is_null()) {
      GRAFT_CHECK(x->is_int(), cls, source, ": '", key, "' must be an integer");
      dst = x->as_int();
    }
  }
  void get_double(const char* key, double& dst) const {
    if (const io::JsonValue* x = v.find(key); x && !x->is_null()) {
      GRAFT_CHECK(x->is_number(), cls, source, ": '", key, "' must be a number");
      dst = x->as_double();
    }
  }
  void get_bool(const char* key, bool& dst) const {
    if (const io::JsonValue* x = v.find(key); x && !x->is_null()) {
      GRAFT_CHECK(x->is_bool(), cls, source, ": '", key, "' must be true or false");
      dst = x->as_bool();
    }
  }
  // "" when absent or null.
  std::string get_string(const char* key) const {
    const io::JsonValue* x = v.find(key);
    if (x == nullptr || x->is_null()) return "";
    GRAFT_CHECK(x->is_string(), cls, source, ": '", key, "' must be a string");
    return x->as_string();
  }
  // model_type, when present, must be `expected`.
  void require_model_type(const char* expected) const {
    const std::string t = get_string("model_type");
    GRAFT_CHECK(t.empty() || t == expected, cls, source, ": model_type '", t, "' is not '", expected, "'");
  }
  // HF's head size: num_labels, or the size of id2label when present (as PretrainedConfig does).
  void get_num_labels(int64_t& dst) const {
    get_int("num_labels", dst);
    if (const io::JsonValue* x = v.find("id2label"); x && !x->is_null()) {
      GRAFT_CHECK(x->is_object(), cls, source, ": 'id2label' must be an object");
      dst = int64_t(x->as_object().size());
    }
  }
  // The keys every BERT-style encoder config shares (BertConfig, HFViTConfig: the same field names).
  template <class Config>
  void get_encoder_keys(Config& c) const {
    get_int("hidden_size", c.hidden_size);
    get_int("num_hidden_layers", c.num_hidden_layers);
    get_int("num_attention_heads", c.num_attention_heads);
    get_int("intermediate_size", c.intermediate_size);
    if (const std::string act = get_string("hidden_act"); !act.empty()) c.hidden_act = act;
    get_double("hidden_dropout_prob", c.hidden_dropout_prob);
    get_double("attention_probs_dropout_prob", c.attention_probs_dropout_prob);
    get_double("initializer_range", c.initializer_range);
    get_double("layer_norm_eps", c.layer_norm_eps);
  }
};

// The text of a config.json; `cls` names the error.
inline std::string read_text_file(const std::string& path, const std::string& cls) {
  std::ifstream f(path, std::ios::binary);
  GRAFT_CHECK(f.good(), cls, "cannot open '", path, "'");
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// HF's _init_weights for a Linear in BERT and DistilBERT: weight N(0, std), bias 0.
inline std::shared_ptr<nn::Linear> normal_linear(int64_t in, int64_t out, double std, bool bias = true) {
  auto l = std::make_shared<nn::Linear>(in, out, bias);
  NoGradGuard no_grad;
  init::normal_(l->weight, 0.0, std);
  if (bias) l->bias.zero_();
  return l;
}
// ViT's: weight trunc_normal_(0, std) cut at +-2 (absolute, as torch.nn.init.trunc_normal_'s defaults), bias 0.
inline std::shared_ptr<nn::Linear> trunc_normal_linear(int64_t in, int64_t out, double std, bool bias = true) {
  auto l = std::make_shared<nn::Linear>(in, out, bias);
  NoGradGuard no_grad;
  init::trunc_normal_(l->weight, 0.0, std, -2.0, 2.0);
  if (bias) l->bias.zero_();
  return l;
}
// An Embedding N(0, std) with its padding row 0.
inline std::shared_ptr<nn::Embedding> normal_embedding(int64_t count, int64_t dim, double std,
                                                       std::optional<int64_t> pad = std::nullopt) {
  auto e = std::make_shared<nn::Embedding>(count, dim, pad);  // N(0, 1), padding row 0
  NoGradGuard no_grad;
  e->weight.mul_(std);  // N(0, std): scaling the N(0, 1) draw (half the cost of drawing again)
  return e;
}

// Multi-head attention of already projected q, k, v [B, T, H] -> [B, T, H] (before the output
// projection): split into heads [B, heads, T, H / heads], softmax(q k^T / sqrt(H / heads) + mask) v,
// heads joined again. mask bool [B, 1, 1, T] (true = attend to that key; undefined: all).
inline Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, int64_t num_heads, const Tensor& mask,
                     double dropout_p) {
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), hd = H / num_heads;
  auto heads = [&](const Tensor& t) { return t.reshape({B, T, num_heads, hd}).transpose(1, 2); };
  const Tensor o = scaled_dot_product_attention(heads(q), heads(k), heads(v), mask, dropout_p);
  return o.transpose(1, 2).reshape({B, T, H});
}

// attention_mask [B, T] (nonzero = real token) -> the bool [B, 1, 1, T] of attend; undefined stays so.
inline Tensor key_mask(const Tensor& attention_mask, const Tensor& input_ids, const std::string& model) {
  if (!attention_mask.defined()) return Tensor();
  GRAFT_CHECK(attention_mask.shape() == input_ids.shape(), model, "attention_mask shape ", attention_mask.shape(),
              " differs from input_ids shape ", input_ids.shape());
  return ne(attention_mask, 0.0).reshape({input_ids.size(0), 1, 1, input_ids.size(1)});
}

// Token ids must be int64 / int32 in [0, limit); `what` names the tensor, `model` the error.
inline void check_ids(const Tensor& ids, const char* what, int64_t limit, const char* model) {
  GRAFT_CHECK(ids.dtype() == DType::Int64 || ids.dtype() == DType::Int32, model, what,
              " must be int64 or int32, got ", dtype_name(ids.dtype()));
  if (!ids.device().is_cpu()) {  // checked where the ids are (the index_range_check slot's kernel)
    const Tensor ids64 = ids.detach().to(DType::Int64).contiguous();
    detail_index::check_index_range(ids64, limit, model, detail::concat(what, " (", limit, " entries)"));
    return;
  }
  const std::vector<double> vals = ids.to_vector();
  for (size_t i = 0; i < vals.size(); ++i)
    GRAFT_CHECK(vals[i] >= 0 && vals[i] < double(limit), model, what, " value ", int64_t(vals[i]), " at flat index ",
                i, " out of range [0, ", limit, ")");
}

// A non-persistent position_ids buffer of an old checkpoint must hold 0, 1, 2, ...
inline void check_position_ids(const std::string& key, const Tensor& t, const std::string& model) {
  const std::vector<double> vals = t.to_vector();
  for (size_t i = 0; i < vals.size(); ++i)
    GRAFT_CHECK(vals[i] == double(i), model, "'", key, "' holds ", vals[i], " at index ", i, ": expected 0, 1, 2, ...");
}

// A new head module in `model`'s floating dtype, device and train / eval mode (as
// ImageClassifier::fit_to_model), so reset_classifier on a model moved to float64 or a GPU keeps working.
inline nn::ModulePtr fit_to(nn::ModulePtr head, nn::Module& model) {
  for (const Tensor& p : model.parameters())
    if (is_floating(p.dtype())) {
      head->to(p.dtype());
      head->to(p.device());
      break;
    }
  head->train(model.is_training());
  return head;
}

// `key` without `prefix` when it starts with it.
inline std::string strip_prefix(const std::string& key, const std::string& prefix) {
  return key.rfind(prefix, 0) == 0 ? key.substr(prefix.size()) : key;
}

}  // namespace graft::models::detail_hf
