// tests/test_roberta.cpp - the byte-level BPE tokenizer (graft/text/bpe.hpp) against RobertaTokenizerFast,
// RoBERTa (graft/models/roberta.hpp) against transformers' RobertaForSequenceClassification, and
// graft-convert's "hf-roberta" family.
//
// Committed data (tools/gen_roberta_goldens.py): tests/data/text/roberta_bpe/{vocab.json, merges.txt}
// (a 2000-token byte-level BPE trained with tokenizers on chatterbot-corpus text: no hub is reachable)
// and tests/data/text/roberta_tokenizer_golden.json (ids from RobertaTokenizerFast on those files).
// Big data, generated on demand:
//   source tools/pyenv.sh && $GRAFT_PYTHON tools/gen_roberta_goldens.py DIR
// writes DIR/roberta/roberta_tiny.bin; the "[big]" cases read it through GRAFT_MODEL_DATA=DIR.
#include <cmath>
#include <cstdio>
#include <fstream>

#include "../weights_import/name_maps.hpp"
#include "golden.hpp"
#include "graft/io/json.hpp"
#include "graft/models/roberta.hpp"
#include "graft/text/bpe.hpp"
#include "harness.hpp"

namespace {

using namespace graft;
using graft_test::kTolF32;
using graft_test::kTolF64;
using graft_test::require_error;

std::string roberta_test_read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f.good()) throw Error("test_roberta: cannot open " + path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

const io::JsonValue& roberta_golden() {
  static const io::JsonValue v =
      io::parse_json(roberta_test_read_file(GRAFT_TEST_DATA_DIR "/text/roberta_tokenizer_golden.json"),
                     "roberta_tokenizer_golden.json");
  return v;
}

const text::ByteLevelBpeTokenizer& roberta_tok(bool prefix_space = false) {
  static const text::ByteLevelBpeTokenizer plain = text::ByteLevelBpeTokenizer::from_files(
      GRAFT_TEST_DATA_DIR "/text/roberta_bpe/vocab.json", GRAFT_TEST_DATA_DIR "/text/roberta_bpe/merges.txt");
  static const text::ByteLevelBpeTokenizer prefix = text::ByteLevelBpeTokenizer::from_files(
      GRAFT_TEST_DATA_DIR "/text/roberta_bpe/vocab.json", GRAFT_TEST_DATA_DIR "/text/roberta_bpe/merges.txt",
      {.add_prefix_space = true});
  return prefix_space ? prefix : plain;
}

std::vector<int64_t> roberta_ids(const io::JsonValue& v) {
  std::vector<int64_t> out;
  for (const auto& x : v.as_array()) out.push_back(x.as_int());
  return out;
}

std::vector<int64_t> roberta_row(const Tensor& t, int64_t r) {
  std::vector<int64_t> out;
  for (const double x : t.select(0, r).to_vector()) out.push_back(int64_t(x));
  return out;
}

std::string roberta_big_file(const std::string& file) {
  return graft_test::model_data_file("roberta/" + file, "tools/gen_roberta_goldens.py");
}

const graft_test::GoldenCase& roberta_case(const std::string& name) {
  static const graft_test::GoldenFile file = graft_test::read_golden(roberta_big_file("roberta_tiny.bin"));
  for (const auto& c : file.cases)
    if (c.name == name) return c;
  throw Error("test_roberta: no golden case '" + name + "'");
}

// The tiny config of the generator (transformers' RobertaConfig there).
models::RobertaConfig roberta_tiny_config(double dropout) {
  models::RobertaConfig c;
  c.vocab_size = 2000;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.intermediate_size = 64;
  c.max_position_embeddings = 40;
  c.type_vocab_size = 1;
  c.layer_norm_eps = 1e-5;
  c.hidden_dropout_prob = c.attention_probs_dropout_prob = dropout;
  c.num_classes = 3;
  return c;
}

// "sd.<key>" tensors of a golden case: an HF RobertaForSequenceClassification state dict.
nn::StateDict roberta_case_state_dict(const graft_test::GoldenCase& c) {
  nn::StateDict sd;
  for (const auto& [k, t] : c.tensors)
    if (k.rfind("sd.", 0) == 0) sd.emplace_back(k.substr(3), t);
  return sd;
}

// Graft's parameter name -> HF RobertaForSequenceClassification's.
std::string roberta_hf_name(const std::string& name) {
  return name.rfind("classifier.", 0) == 0 ? name : "roberta." + name;
}

}  // namespace

// ---- tokenizer ---------------------------------------------------------------------------------
TEST_CASE("bpe: every stress text's ids match RobertaTokenizerFast", "[bpe][roberta]") {
  const auto& tok = roberta_tok();
  CHECK(tok.vocab_size() == 2000);
  CHECK(tok.bos_id == 0);
  CHECK(tok.pad_id == 1);
  CHECK(tok.eos_id == 2);
  CHECK(tok.unk_id == 3);
  CHECK(tok.mask_id == 4);
  size_t matched = 0, total = 0;
  for (const char* key : {"cases", "prefix_cases"}) {
    const auto& t = roberta_tok(std::string(key) == "prefix_cases");
    for (const auto& c : roberta_golden().at(key).as_array()) {
      const std::string text = c.at("text").as_string();
      INFO(key << ": " << text);
      const text::Encoding e = t.encode(text, 1 << 20);  // untruncated, as the golden
      CHECK(e.input_ids == roberta_ids(c.at("ids")));
      CHECK(e.attention_mask == std::vector<int64_t>(e.input_ids.size(), 1));
      matched += e.input_ids == roberta_ids(c.at("ids"));
      ++total;
    }
  }
  CHECK(total >= 60);
  std::printf("[parity] bpe: %zu / %zu texts' ids match RobertaTokenizerFast\n", matched, total);
}

TEST_CASE("bpe: pairs, truncation, padding and decode match RobertaTokenizerFast", "[bpe][roberta]") {
  const auto& tok = roberta_tok();
  const io::JsonValue& g = roberta_golden();
  for (const auto& c : g.at("pairs").as_array()) {
    INFO("pair: " << c.at("a").as_string() << " | " << c.at("b").as_string());
    const text::Encoding e = tok.encode_pair(c.at("a").as_string(), c.at("b").as_string());
    CHECK(e.input_ids == roberta_ids(c.at("ids")));
    CHECK(e.token_type_ids == roberta_ids(c.at("token_type_ids")));
  }
  for (const auto& c : g.at("truncation").as_array()) {
    INFO("truncation " << c.at("max_length").as_int() << ": " << c.at("text").as_string());
    CHECK(tok.encode(c.at("text").as_string(), c.at("max_length").as_int()).input_ids == roberta_ids(c.at("ids")));
  }
  for (const auto& c : g.at("pair_truncation").as_array()) {
    INFO("pair truncation " << c.at("max_length").as_int() << ": " << c.at("a").as_string() << " | "
                            << c.at("b").as_string());
    CHECK(tok.encode_pair(c.at("a").as_string(), c.at("b").as_string(), c.at("max_length").as_int()).input_ids ==
          roberta_ids(c.at("ids")));
  }
  for (const char* key : {"batch", "batch_max_length"}) {
    const io::JsonValue& b = g.at(key);
    std::vector<std::string> texts;
    for (const auto& t : b.at("texts").as_array()) texts.push_back(t.as_string());
    const bool to_max = std::string(key) == "batch_max_length";
    const text::BatchEncoding enc = tok.encode_batch(texts, to_max ? b.at("max_length").as_int() : 512, true, to_max);
    const auto& ids = b.at("input_ids").as_array();
    REQUIRE(enc.input_ids.size(0) == int64_t(ids.size()));
    for (size_t r = 0; r < ids.size(); ++r) {
      INFO(key << " row " << r);
      CHECK(roberta_row(enc.input_ids, int64_t(r)) == roberta_ids(ids[r]));
      CHECK(roberta_row(enc.attention_mask, int64_t(r)) == roberta_ids(b.at("attention_mask").as_array()[r]));
    }
  }
  for (const auto& c : g.at("decode").as_array()) {
    const std::vector<int64_t> ids = roberta_ids(c.at("ids"));
    INFO("decode of " << c.at("text").as_string());
    CHECK(tok.decode(ids) == c.at("text").as_string());
    CHECK(tok.decode(ids, true) == c.at("text_skip").as_string());
    CHECK(tok.decode(ids, false, false) == c.at("text_raw").as_string());
  }
}

TEST_CASE("bpe: the GPT-2 split, byte mapping and bad input", "[bpe][roberta]") {
  const auto& tok = roberta_tok();
  CHECK(tok.pre_tokenize("I'm here  now\n") == std::vector<std::string>{"I", "'m", " here", " ", " now", "\n"});
  CHECK(tok.pre_tokenize("a1b2 !!x") == std::vector<std::string>{"a", "1", "b", "2", " !!", "x"});
  CHECK(tok.pre_tokenize("x   ") == std::vector<std::string>{"x", "   "});
  CHECK(tok.pre_tokenize("").empty());
  // every byte has a character and back
  for (int b = 0; b < 256; ++b) CHECK(text::detail_bpe::unicode_to_byte(text::detail_bpe::byte_to_unicode()[size_t(b)]) == b);
  CHECK(text::detail_bpe::byte_to_unicode()[' '] == U'\u0120');
  CHECK(text::detail_bpe::byte_to_unicode()['\n'] == U'\u010A');
  CHECK(tok.decode(tok.encode("round trip: Café 😀 東京\n\t x").input_ids, true, false) == "round trip: Café 😀 東京\n\t x");
  require_error([&] { tok.encode("bad \xff byte"); }, {"invalid UTF-8", "byte 4"});
  require_error([&] { tok.encode(std::string(600, 'a') + " b c d e", 8, false); }, {"more than max_length 8"});
  require_error([&] { tok.encode_pair("a", "b", 3); }, {"max_length must be >= 4"});
  require_error([&] { tok.id_to_token(2000); }, {"id 2000 out of range"});
  require_error([&] { text::ByteLevelBpeTokenizer::from_strings(R"({"<s>": 0, "</s>": 1})", ""); },
                {"special token '<pad>'"});
  require_error([&] { text::ByteLevelBpeTokenizer::from_strings(R"({"<s>": 0, "a": 0})", ""); }, {"id 0", "'a'"});
  require_error([&] { text::ByteLevelBpeTokenizer::from_strings(R"({"<s>": 0, "</s>": 1, "<pad>": 5})", ""); },
                {"'<pad>' has id 5"});
  require_error(
      [&] {
        text::ByteLevelBpeTokenizer::from_strings(R"({"<s>": 0, "</s>": 1, "<pad>": 2, "a": 3, "b": 4})",
                                                  "#version: 0.2\na b\n", {}, "v.json", "m.txt");
      },
      {"m.txt merge 1", "'ab' is not in the vocabulary"});
  require_error(
      [&] {
        text::ByteLevelBpeTokenizer::from_strings(R"({"<s>": 0, "</s>": 1, "<pad>": 2, "a": 3})", "a\n", {}, "v.json",
                                                  "m.txt");
      },
      {"m.txt line 1", "expected 'left right'"});
  require_error([] { text::ByteLevelBpeTokenizer::from_files("/nonexistent/vocab.json", "/nonexistent/merges.txt"); },
                {"cannot open vocab.json", "/nonexistent/vocab.json"});
}

// ---- model -------------------------------------------------------------------------------------
TEST_CASE("roberta: HF names, position ids from padding, head and config", "[roberta]") {
  auto model = std::make_shared<models::RobertaModel>(roberta_tiny_config(0.1));
  const nn::StateDict sd = model->state_dict();
  std::set<std::string> keys;
  for (const auto& [k, t] : sd) keys.insert(k);
  for (const char* k : {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                        "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                        "encoder.layer.1.attention.self.query.weight", "encoder.layer.0.output.LayerNorm.bias",
                        "classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                        "classifier.out_proj.bias"})
    CHECK(keys.count(k) == 1);
  CHECK(keys.count("pooler.dense.weight") == 0);
  CHECK(model->classifier_name() == "classifier");
  // padding rows zero at init
  CHECK(graft_test::max_abs_diff(model->embeddings->position_embeddings->weight.select(0, 1), zeros({32})) == 0.0);
  CHECK(graft_test::max_abs_diff(model->embeddings->word_embeddings->weight.select(0, 1), zeros({32})) == 0.0);
  const Tensor ids = from_vector(std::vector<int64_t>{0, 5, 6, 2, 1, 1, 0, 7, 2, 1, 1, 1}, Shape{2, 6}, DType::Int64);
  CHECK(roberta_row(model->embeddings->positions(ids), 0) == std::vector<int64_t>{2, 3, 4, 5, 1, 1});
  CHECK(roberta_row(model->embeddings->positions(ids), 1) == std::vector<int64_t>{2, 3, 4, 1, 1, 1});
  model->eval();
  CHECK(model->logits(ids, ne(ids, 1.0).to(DType::Int64)).shape() == Shape{2, 3});
  model->reset_classifier(5);
  CHECK(model->logits(ids).shape() == Shape{2, 5});
  CHECK(std::dynamic_pointer_cast<models::RobertaClassificationHead>(model->child("classifier")) != nullptr);
  model->reset_classifier(0);
  CHECK(model->logits(ids).shape() == Shape{2, 32});
  // 38 real tokens + pad_token_id 1 reach position 39 of 40: the limit; one more is an error
  const Tensor ok = full({1, 38}, 5.0, DType::Int64);
  CHECK(model->forward_bert(ok).last_hidden_state.shape() == Shape{1, 38, 32});
  require_error([&] { model->forward_bert(full({1, 39}, 5.0, DType::Int64)); },
                {"RobertaModel", "39 non-padding tokens", "at most 38"});
  const models::RobertaConfig rc = models::RobertaConfig::from_json(
      R"({"model_type": "roberta", "vocab_size": 100, "hidden_size": 16, "num_attention_heads": 2,
          "num_hidden_layers": 1, "intermediate_size": 32, "max_position_embeddings": 20, "classifier_dropout": 0.3,
          "num_labels": 2})");
  CHECK(rc.pad_token_id == 1);
  CHECK(rc.classifier_dropout == 0.3);
  CHECK(rc.num_classes == 2);
  CHECK(rc.classifier_pooling == models::BertPooling::First);
  CHECK(models::RobertaModel(rc).dropout->p == 0.3);
  require_error([] { models::RobertaConfig::from_json(R"({"model_type": "bert"})"); },
                {"model_type 'bert' is not 'roberta'"});
  const auto& info = models::model_info("roberta-base");
  CHECK(info.naming == "hf-roberta");
  CHECK(info.head == "classifier");
}

TEST_CASE("roberta: eval-mode hidden states and logits match transformers (float32)", "[roberta][big]") {
  const auto& c = roberta_case("roberta_tiny_eval");
  auto model = std::make_shared<models::RobertaModel>(roberta_tiny_config(0.1));
  REQUIRE(model->load_hf_state_dict(roberta_case_state_dict(c)).ok());
  model->eval();
  const Tensor ids = c.at("input_ids"), mask = c.at("attention_mask");
  // the tokenizer's padded batch is the generator's
  const text::BatchEncoding b =
      roberta_tok().encode_batch({"RoBERTa positions skip padding.", "Short.", "A third, medium-length text!"});
  CHECK(graft_test::max_abs_diff(b.input_ids, ids) == 0.0);
  CHECK(graft_test::max_abs_diff(b.attention_mask, mask) == 0.0);
  CHECK(graft_test::max_abs_diff(model->embeddings->positions(ids), c.at("position_ids")) == 0.0);
  const Tensor hidden = model->forward_bert(ids, mask).last_hidden_state;
  const Tensor logits = model->logits(ids, mask);
  GRAFT_REQUIRE_CLOSE(hidden, c.at("last_hidden_state"), kTolF32);
  GRAFT_REQUIRE_CLOSE(logits, c.at("logits"), kTolF32);
  std::printf("[parity] roberta tiny (float32): last_hidden_state max|diff| %.3g, logits max|diff| %.3g\n",
              graft_test::max_abs_diff(hidden, c.at("last_hidden_state")), graft_test::max_abs_diff(logits, c.at("logits")));
}

TEST_CASE("roberta: float64 training steps match transformers (gradients, SGD with momentum)", "[roberta][big]") {
  const auto& c = roberta_case("roberta_tiny_train");
  auto model = std::make_shared<models::RobertaModel>(roberta_tiny_config(0.0));
  model->to(DType::Float64);
  REQUIRE(model->load_hf_state_dict(roberta_case_state_dict(c)).ok());
  model->train();
  const Tensor ids = c.at("input_ids"), mask = c.at("attention_mask"), labels = c.at("labels");
  optim::SGD opt(model->parameters(), 0.05, 0.9);
  double worst_grad = 0, worst_loss = 0;
  size_t checked = 0;
  for (int step = 0; step < 3; ++step) {
    opt.zero_grad();
    const Tensor logits = model->logits(ids, mask);
    const Tensor loss = cross_entropy(logits, labels);
    GRAFT_REQUIRE_CLOSE(loss, c.at("loss." + std::to_string(step)), kTolF64);
    worst_loss = std::max(worst_loss, graft_test::max_abs_diff(loss, c.at("loss." + std::to_string(step))));
    loss.backward();
    if (step == 0) {
      GRAFT_REQUIRE_CLOSE(logits, c.at("logits0"), kTolF64);
      for (const auto& [name, p] : model->named_parameters()) {
        INFO("gradient of " << name);
        REQUIRE(p.grad().defined());
        GRAFT_REQUIRE_CLOSE(p.grad(), c.at("grad." + roberta_hf_name(name)), kTolF64);
        worst_grad = std::max(worst_grad, graft_test::max_abs_diff(p.grad(), c.at("grad." + roberta_hf_name(name))));
        ++checked;
      }
    }
    opt.step();
  }
  CHECK(checked == model->named_parameters().size());
  double worst_param = 0;
  for (const auto& [name, p] : model->named_parameters()) {
    const std::string key = "final." + roberta_hf_name(name);
    INFO(key);
    GRAFT_REQUIRE_CLOSE(p, c.at(key), kTolF64);
    worst_param = std::max(worst_param, graft_test::max_abs_diff(p, c.at(key)));
  }
  std::printf("[parity] roberta tiny train (float64): %zu gradients max|diff| %.3g, 3 losses %.3g, final params %.3g\n",
              checked, worst_grad, worst_loss, worst_param);
}

TEST_CASE("roberta: graft-convert's hf-roberta table maps a RobertaForSequenceClassification checkpoint",
          "[roberta][big]") {
  const auto& c = roberta_case("roberta_tiny_eval");
  const convert::FamilyTable& t = convert::family_table("hf-roberta");
  CHECK(t.model_prefix == "roberta.");
  size_t matched = 0;
  for (const auto& [k, v] : roberta_case_state_dict(c)) {
    std::string key = k.rfind("roberta.", 0) == 0 ? k.substr(8) : k;
    INFO(k);
    bool any = false;
    for (const auto& p : t.patterns) any = any || convert::match_pattern(p, key);
    CHECK(any);
    matched += any;
  }
  CHECK(matched > 30);
}
