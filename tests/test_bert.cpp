// tests/test_bert.cpp - the WordPiece tokenizer (graft/text/tokenizer.hpp), BertModel and SentenceEncoder
// (graft/models/bert.hpp) and graft-convert's "hf-bert" family, against the REAL all-MiniLM-L6-v2.
//
// Committed data: tests/data/text/bert_tokenizer_golden.json (token ids from BertTokenizerFast for
// ~40 stress texts, the embedding and hidden-state sentences), written by tools/gen_minilm_goldens.py.
// Big data, generated on demand:
//   source tools/pyenv.sh && $GRAFT_PYTHON tools/gen_minilm_goldens.py DIR
// writes DIR/all-minilm-l6-v2/{model.safetensors, vocab.txt, config.json, minilm_golden.bin}; the
// "[big]" cases read it through GRAFT_MODEL_DATA=DIR and FAIL, saying how to make it, when missing.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "../weights_import/name_maps.hpp"
#include "golden.hpp"
#include "graft/io/json.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/models/bert.hpp"
#include "graft/text/tokenizer.hpp"
#include "harness.hpp"

namespace {

using namespace graft;
using graft_test::kTolF32;
using graft_test::require_error;
namespace fs = std::filesystem;

// ---- data ------------------------------------------------------------------------------------------
std::string bert_test_read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f.good()) throw Error("test_bert: cannot open " + path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

const io::JsonValue& bert_tokenizer_golden() {
  static const io::JsonValue v = io::parse_json(
      bert_test_read_file(GRAFT_TEST_DATA_DIR "/text/bert_tokenizer_golden.json"), "bert_tokenizer_golden.json");
  return v;
}

std::vector<std::string> bert_golden_strings(const char* key) {
  std::vector<std::string> out;
  for (const auto& s : bert_tokenizer_golden().at(key).as_array()) out.push_back(s.as_string());
  return out;
}

// $GRAFT_MODEL_DATA/all-minilm-l6-v2/<file>, or a test failure saying how to generate it.
std::string bert_big_file(const std::string& file) {
  return graft_test::model_data_file("all-minilm-l6-v2/" + file, "tools/gen_minilm_goldens.py");
}

const text::BertTokenizer& bert_minilm_tokenizer() {
  static const text::BertTokenizer tok = text::BertTokenizer::from_vocab_file(bert_big_file("vocab.txt"));
  return tok;
}

// The real all-MiniLM-L6-v2, loaded strictly once, in eval mode.
std::shared_ptr<models::BertModel> bert_minilm_model() {
  static std::shared_ptr<models::BertModel> model = [] {
    auto m = std::make_shared<models::BertModel>(models::BertConfig::from_json_file(bert_big_file("config.json")));
    m->load_hf_state_dict(io::load_safetensors(bert_big_file("model.safetensors")));
    m->eval();
    return m;
  }();
  return model;
}

const graft_test::GoldenCase& bert_golden_case(const std::string& name) {
  static const graft_test::GoldenFile file = graft_test::read_golden(bert_big_file("minilm_golden.bin"));
  for (const auto& c : file.cases)
    if (c.name == name) return c;
  throw Error("test_bert: no golden case '" + name + "'");
}
const Tensor& bert_golden_tensor(const graft_test::GoldenCase& c, const std::string& key) {
  const Tensor* t = c.find(key);
  if (t == nullptr) throw Error("test_bert: golden case '" + c.name + "' has no '" + key + "'");
  return *t;
}

// A small random BERT for the cases that need no data.
models::BertConfig bert_tiny_config() {
  models::BertConfig c;
  c.vocab_size = 50;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.intermediate_size = 32;
  c.max_position_embeddings = 20;
  return c;
}

// A fresh temporary directory, removed at scope exit.
struct BertTestTmpDir {
  fs::path path;
  BertTestTmpDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("graft_test_bert_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~BertTestTmpDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& content) const {
    const std::string p = (path / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
};

text::BertTokenizer bert_tiny_tokenizer() {
  return text::BertTokenizer({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "aff", "able",
                              "hello", ",", "!", "world", "a", "##b", "cafe", "中", "文"});
}

std::string bert_ids_str(const std::vector<int64_t>& ids) {
  std::ostringstream s;
  for (size_t i = 0; i < ids.size(); ++i) s << (i ? " " : "") << ids[i];
  return s.str();
}

double bert_cosine(const Tensor& a, const Tensor& b) {  // 1-D
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double dot = 0, nx = 0, ny = 0;
  for (size_t i = 0; i < x.size(); ++i) dot += x[i] * y[i], nx += x[i] * x[i], ny += y[i] * y[i];
  return dot / std::sqrt(nx * ny);
}

}  // namespace

// ---- tokenizer -------------------------------------------------------------------------------------
TEST_CASE("bert tokenizer: ids equal BertTokenizerFast on every golden text", "[text][bert][big]") {
  const text::BertTokenizer& tok = bert_minilm_tokenizer();
  REQUIRE(tok.vocab_size() == 30522);
  const int64_t max_length = bert_tokenizer_golden().at("max_length").as_int();
  const auto& cases = bert_tokenizer_golden().at("cases").as_array();
  REQUIRE(cases.size() >= 40);
  for (size_t n = 0; n < cases.size(); ++n) {
    const std::string text = cases[n].at("text").as_string();
    std::vector<int64_t> expected;
    for (const auto& v : cases[n].at("ids").as_array()) expected.push_back(v.as_int());
    const text::Encoding e = tok.encode(text, max_length, true);
    if (e.input_ids != expected) {
      size_t i = 0;
      while (i < e.input_ids.size() && i < expected.size() && e.input_ids[i] == expected[i]) ++i;
      const auto name = [&](const std::vector<int64_t>& v) {
        return i < v.size() ? std::to_string(v[i]) + " '" + tok.id_to_token(v[i]) + "'" : std::string("(end)");
      };
      FAIL("text #" << n << " \"" << text << "\": first difference at position " << i << ": graft " << name(e.input_ids)
                    << ", HF " << name(expected) << "\n graft: " << bert_ids_str(e.input_ids)
                    << "\n HF:    " << bert_ids_str(expected));
    }
    CHECK(e.attention_mask == std::vector<int64_t>(expected.size(), 1));
    CHECK(e.token_type_ids == std::vector<int64_t>(expected.size(), 0));
  }
}

TEST_CASE("bert tokenizer: wordpiece, specials, truncation and batch padding", "[text][bert]") {
  const text::BertTokenizer tok = bert_tiny_tokenizer();
  CHECK(tok.tokenize("unaffable") == std::vector<std::string>{"un", "##aff", "##able"});
  CHECK(tok.tokenize("Hello, WORLD!") == std::vector<std::string>{"hello", ",", "world", "!"});
  CHECK(tok.tokenize("Café 中文") == std::vector<std::string>{"cafe", "中", "文"});  // accents stripped, CJK split
  CHECK(tok.tokenize("ab unx") == std::vector<std::string>{"a", "##b", "[UNK]"});  // unmatchable piece -> [UNK]
  CHECK(tok.tokenize(std::string(101, 'a')) == std::vector<std::string>{"[UNK]"});  // over 100 chars
  CHECK(tok.tokenize("a[SEP]hello") == std::vector<std::string>{"a", "[SEP]", "hello"});
  const text::Encoding e = tok.encode("hello world hello world", 4, true);
  CHECK(e.input_ids == std::vector<int64_t>{2, 10, 13, 3});  // [CLS] hello world [SEP]
  require_error([&] { tok.encode("hello world hello", 4, false); }, {"tokenizer", "5 tokens", "max_length 4"});
  require_error([&] { tok.encode("hello", 1, true); }, {"tokenizer", "max_length must be >= 2"});
  const text::BatchEncoding b = tok.encode_batch({"hello", "hello world !"}, 16);
  REQUIRE(b.input_ids.shape() == Shape({2, 5}));
  CHECK(b.input_ids.to_vector() == std::vector<double>{2, 10, 3, 0, 0, 2, 10, 13, 12, 3});
  CHECK(b.attention_mask.to_vector() == std::vector<double>{1, 1, 1, 0, 0, 1, 1, 1, 1, 1});
  CHECK(b.token_type_ids.to_vector() == std::vector<double>(10, 0.0));
}

TEST_CASE("bert tokenizer: invalid UTF-8 names the byte offset", "[text][bert]") {
  const text::BertTokenizer tok = bert_tiny_tokenizer();
  require_error([&] { tok.encode("ab\xff"); }, {"invalid UTF-8", "input text", "byte 2", "0xff"});
  require_error([&] { tok.encode("a\xc3"); }, {"invalid UTF-8", "byte 1", "truncated"});
  require_error([&] { tok.encode("xy\xc0\xaf"); }, {"byte 2", "overlong"});
  require_error([&] { tok.encode("\xed\xa0\x80"); }, {"byte 0", "surrogate"});
  require_error([&] { tok.encode("abc\x80"); }, {"byte 3", "continuation"});
  require_error([&] { tok.encode("\xf4\x90\x80\x80"); }, {"above U+10FFFF"});
  CHECK(text::decode_utf8("\xf0\x9f\x98\x80") == std::u32string(1, U'\U0001F600'));
}

TEST_CASE("bert tokenizer: vocabulary errors name the file and line", "[text][bert]") {
  BertTestTmpDir dir;
  const std::string good = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\r\n";
  CHECK(text::BertTokenizer::from_vocab_file(dir.write("ok.txt", good)).token_to_id("hello") == 5);
  require_error([&] { text::BertTokenizer::from_vocab_file((dir.path / "nope.txt").string()); },
                {"tokenizer", "cannot open", "nope.txt"});
  require_error([&] { text::BertTokenizer::from_vocab_file(dir.write("empty.txt", "")); },
                {"empty.txt", "empty vocabulary"});
  require_error([&] { text::BertTokenizer::from_vocab_file(dir.write("nounk.txt", "[PAD]\n[CLS]\n[SEP]\nx\n")); },
                {"nounk.txt", "'[UNK]'", "not in the vocabulary"});
  require_error([&] { text::BertTokenizer::from_vocab_file(dir.write("dup.txt", good + "hello\n")); },
                {"dup.txt line 7", "duplicate token 'hello'", "first on line 6"});
  require_error([&] { text::BertTokenizer::from_vocab_file(dir.write("blank.txt", "[PAD]\n\n[UNK]\n")); },
                {"blank.txt line 2", "empty token"});
  require_error([&] { text::BertTokenizer::from_vocab_file(dir.write("bad.txt", good + "ok\nb\xfe\n")); },
                {"invalid UTF-8", "bad.txt line 8", "byte 1"});
}

// ---- BertModel ------------------------------------------------------------------------------------
TEST_CASE("bert: config.json of all-MiniLM-L6-v2 and config errors", "[bert][big]") {
  const models::BertConfig c = models::BertConfig::from_json_file(bert_big_file("config.json"));
  CHECK(c.hidden_size == 384);
  CHECK(c.num_hidden_layers == 6);
  CHECK(c.num_attention_heads == 12);
  CHECK(c.intermediate_size == 1536);
  CHECK(c.layer_norm_eps == 1e-12);
  CHECK(c.hidden_act == "gelu");
  CHECK(c.vocab_size == 30522);
  CHECK(c.max_position_embeddings == 512);
  const models::BertConfig b = models::BertConfig::all_minilm_l6_v2();
  CHECK((b.hidden_size == c.hidden_size && b.num_hidden_layers == c.num_hidden_layers &&
         b.intermediate_size == c.intermediate_size && b.layer_norm_eps == c.layer_norm_eps));
}

TEST_CASE("bert: config errors", "[bert]") {
  require_error([] { models::BertConfig::from_json(R"({"model_type": "roberta"})", "cfg.json"); },
                {"cfg.json", "model_type 'roberta'"});
  require_error([] { models::BertConfig::from_json(R"({"hidden_size": 10, "num_attention_heads": 3})", "c.json"); },
                {"c.json", "hidden_size 10", "num_attention_heads 3"});
  require_error([] { models::BertConfig::from_json(R"({"hidden_act": "swish"})", "c.json"); },
                {"c.json", "hidden_act 'swish'"});
  require_error([] { models::BertConfig::from_json(R"({"position_embedding_type": "relative_key"})", "c.json"); },
                {"c.json", "relative_key"});
  require_error([] { models::BertConfig::from_json(R"({"hidden_size": "big"})", "c.json"); },
                {"c.json", "'hidden_size' must be an integer"});
}

TEST_CASE("bert: strict load of the real all-MiniLM-L6-v2 safetensors", "[bert][big]") {
  const auto sd = io::load_safetensors(bert_big_file("model.safetensors"));
  CHECK(sd.size() == 104);
  CHECK(sd.count("embeddings.position_ids") == 1);  // an old checkpoint: HF skips this buffer
  CHECK(sd.count("pooler.dense.weight") == 1);
  models::BertModel m(models::BertConfig::all_minilm_l6_v2());
  CHECK(m.state_dict().size() == 103);  // every key but the non-persistent position_ids
  // Plain strict loading names the buffer; load_hf_state_dict handles it as HF does.
  require_error([&] { m.load_state_dict(sd); }, {"unexpected keys", "embeddings.position_ids"});
  CHECK(m.load_hf_state_dict(sd).ok());
  const Tensor& w = sd.at("encoder.layer.5.output.dense.weight");
  GRAFT_REQUIRE_CLOSE(m.layers->operator[](5)->child("output")->child("dense")->find_tensor("weight"), w, kTolF32);
}

TEST_CASE("bert: last_hidden_state and pooler_output of all-MiniLM-L6-v2 match transformers", "[bert][big]") {
  const auto& c = bert_golden_case("hidden");
  auto model = bert_minilm_model();
  const auto& ids = bert_golden_tensor(c, "input_ids");
  const auto& mask = bert_golden_tensor(c, "attention_mask");
  // Graft's tokenizer produces the same batch.
  const text::BatchEncoding b = bert_minilm_tokenizer().encode_batch(bert_golden_strings("hidden_sentences"), 256);
  CHECK(b.input_ids.to_vector() == ids.to_vector());
  CHECK(b.attention_mask.to_vector() == mask.to_vector());
  NoGradGuard no_grad;
  const models::BertOutputs o = model->forward_bert(ids, mask, bert_golden_tensor(c, "token_type_ids"));
  const Tensor& h32 = bert_golden_tensor(c, "last_hidden_state");
  const Tensor& h64 = bert_golden_tensor(c, "last_hidden_state_f64");
  const Tensor& p32 = bert_golden_tensor(c, "pooler_output");
  INFO("max |graft - torch f32| hidden " << graft_test::max_abs_diff(o.last_hidden_state, h32)
       << ", max |graft - torch f64| " << graft_test::max_abs_diff(o.last_hidden_state.to(DType::Float64), h64)
       << ", max |torch f32 - torch f64| " << graft_test::max_abs_diff(h32.to(DType::Float64), h64)
       << ", pooler " << graft_test::max_abs_diff(o.pooler_output, p32));
  GRAFT_REQUIRE_CLOSE(o.last_hidden_state, h32, kTolF32);
  GRAFT_REQUIRE_CLOSE(o.pooler_output, p32, kTolF32);
}

TEST_CASE("bert: sentence embeddings match sentence-transformers (cosine >= 0.9999)", "[bert][big]") {
  const auto& c = bert_golden_case("embeddings");
  models::SentenceEncoder enc(bert_minilm_tokenizer(), bert_minilm_model(), 256);
  const std::vector<std::string> sentences = bert_golden_strings("embedding_sentences");
  const text::BatchEncoding b = enc.tokenizer.encode_batch(sentences, 256);
  CHECK(b.input_ids.to_vector() == bert_golden_tensor(c, "input_ids").to_vector());
  NoGradGuard no_grad;
  // Batches of 1: no padding, so the -O1 / ASan suite spends no time on [PAD] rows (the padding cases
  // below check that batching does not change an embedding).
  const Tensor e = enc.encode(sentences, 1);
  const Tensor& ref = bert_golden_tensor(c, "embeddings");
  REQUIRE(e.shape() == ref.shape());
  REQUIRE(e.shape() == Shape({int64_t(sentences.size()), 384}));
  double min_cos = 1.0;
  for (int64_t i = 0; i < e.size(0); ++i) {
    const double cs = bert_cosine(e.select(0, i), ref.select(0, i));
    INFO("sentence " << i << ": " << sentences[size_t(i)] << " cosine " << cs);
    CHECK(cs >= 0.9999);
    min_cos = std::min(min_cos, cs);
  }
  const double diff = graft_test::max_abs_diff(e, ref);
  WARN("sentence embeddings vs sentence-transformers: min cosine " << min_cos << ", max abs diff " << diff);
  GRAFT_REQUIRE_CLOSE(e, ref, kTolF32);
}

TEST_CASE("bert: all-MiniLM-L6-v2 sentence embeddings under bfloat16 autocast (cosine >= 0.999 to float32)",
          "[bert][big][reduced]") {
  models::SentenceEncoder enc(bert_minilm_tokenizer(), bert_minilm_model(), 256);
  const std::vector<std::string> sentences = bert_golden_strings("embedding_sentences");
  NoGradGuard no_grad;
  const Tensor e32 = enc.encode(sentences, 8);
  Tensor e16;
  {
    AutocastGuard amp(DType::BFloat16);
    e16 = enc.encode(sentences, 8);
  }
  REQUIRE(e16.shape() == e32.shape());
  double min_cos = 1.0;
  for (int64_t i = 0; i < e32.size(0); ++i) {
    const double cs = bert_cosine(e16.select(0, i).to(DType::Float32), e32.select(0, i));
    INFO("sentence " << i << ": " << sentences[size_t(i)] << " cosine " << cs);
    CHECK(cs >= 0.999);
    min_cos = std::min(min_cos, cs);
  }
  WARN("MiniLM embeddings, bfloat16 autocast vs float32: min cosine " << min_cos << " over " << e32.size(0)
                                                                          << " sentences");
}

TEST_CASE("bert: an embedding does not depend on the padding of its batch", "[bert][big]") {
  models::SentenceEncoder enc(bert_minilm_tokenizer(), bert_minilm_model(), 256);
  NoGradGuard no_grad;
  const Tensor alone = enc.encode({"A man is eating food."});
  const std::vector<std::string> texts = {"Hi", "A man is eating food.",
                                          "A much longer sentence, so the others are padded with many [PAD] tokens."};
  const Tensor batch = enc.encode(texts);  // one padded batch
  REQUIRE(batch.shape() == Shape({3, 384}));
  GRAFT_REQUIRE_CLOSE(batch.select(0, 1), alone.select(0, 0), kTolF32);
  GRAFT_REQUIRE_CLOSE(enc.encode(texts, 2), batch, kTolF32);  // other batching, same rows in the same order
}

TEST_CASE("bert: padding invariance, classifier head and errors on a small random model", "[bert]") {
  models::BertConfig cfg = bert_tiny_config();
  auto m = std::make_shared<models::BertModel>(cfg);
  m->eval();
  NoGradGuard no_grad;
  const Tensor ids = from_vector(std::vector<int64_t>{2, 7, 9, 3, 0, 0}, Shape{1, 6}, DType::Int64);
  const Tensor mask = from_vector(std::vector<int64_t>{1, 1, 1, 1, 0, 0}, Shape{1, 6}, DType::Int64);
  const Tensor short_ids = ids.narrow(1, 0, 4).contiguous();
  const models::BertOutputs padded = m->forward_bert(ids, mask);
  const models::BertOutputs alone = m->forward_bert(short_ids);
  GRAFT_REQUIRE_CLOSE(padded.last_hidden_state.narrow(1, 0, 4), alone.last_hidden_state, kTolF32);
  GRAFT_REQUIRE_CLOSE(padded.pooler_output, alone.pooler_output, kTolF32);
  GRAFT_REQUIRE_CLOSE(models::BertModel::mean_pool(padded.last_hidden_state, mask),
                      mean(alone.last_hidden_state, {1}), kTolF32);

  // Classifier: Identity by default, a Linear after reset_classifier, Identity again with 0.
  CHECK(m->classifier().type_name() == "Identity");
  CHECK(m->forward(short_ids).shape() == Shape({1, 16}));
  m->reset_classifier(3);
  CHECK(m->classifier().type_name() == "Linear");
  CHECK(m->forward(short_ids).shape() == Shape({1, 3}));
  CHECK(m->state_dict().back().first == "classifier.bias");
  m->config.classifier_pooling = models::BertPooling::Mean;
  CHECK(m->logits(ids, mask).shape() == Shape({1, 3}));
  m->reset_classifier(0);
  CHECK(m->classifier().type_name() == "Identity");
  require_error([&] { m->reset_classifier(-1); }, {"BertModel", "num_classes must be >= 0"});

  // Errors.
  const Tensor long_ids = zeros({1, 21}, DType::Int64);
  require_error([&] { m->forward_bert(long_ids); }, {"BertModel", "sequence length 21", "max_position_embeddings = 20"});
  const Tensor bad = from_vector(std::vector<int64_t>{2, 50, 3}, Shape{1, 3}, DType::Int64);
  require_error([&] { m->forward_bert(bad); }, {"BertModel", "input_ids value 50", "flat index 1", "[0, 50)"});
  const Tensor neg = from_vector(std::vector<int64_t>{2, -1, 3}, Shape{1, 3}, DType::Int64);
  require_error([&] { m->forward_bert(neg); }, {"input_ids value -1"});
  require_error([&] { m->forward_bert(short_ids, zeros({1, 5}, DType::Int64)); }, {"attention_mask shape"});
  const Tensor types = from_vector(std::vector<int64_t>{0, 2, 0, 0}, Shape{1, 4}, DType::Int64);
  require_error([&] { m->forward_bert(short_ids, Tensor(), types); }, {"token_type_ids value 2", "[0, 2)"});
  require_error([&] { m->forward_bert(zeros({4}, DType::Int64)); }, {"input_ids must be [batch, seq]"});
}

TEST_CASE("bert: training mode runs backward into the classifier and the encoder", "[bert]") {
  models::BertConfig cfg = bert_tiny_config();
  cfg.num_classes = 2;
  auto m = std::make_shared<models::BertModel>(cfg);
  const Tensor ids = from_vector(std::vector<int64_t>{2, 7, 9, 3, 2, 5, 3, 0}, Shape{2, 4}, DType::Int64);
  const Tensor mask = from_vector(std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 0}, Shape{2, 4}, DType::Int64);
  sum(m->logits(ids, mask)).backward();
  CHECK(m->child("classifier")->find_tensor("weight").grad().defined());
  CHECK(m->embeddings->word_embeddings->weight.grad().defined());
}

// ---- graft-convert --family hf-bert ----------------------------------------------------------------
TEST_CASE("convert hf-bert: the real all-MiniLM-L6-v2 checkpoint", "[bert][convert][big]") {
  BertTestTmpDir dir;
  convert::ConvertOptions o;
  o.family = "hf-bert";
  o.arch = "all-minilm-l6-v2";
  o.in_path = bert_big_file("model.safetensors");
  o.out_path = (dir.path / "minilm.safetensors").string();
  const convert::ConvertReport r = convert::convert_file(o);
  CHECK(r.mapped.size() == 103);
  REQUIRE(r.dropped.size() == 1);
  CHECK(r.dropped[0].find("embeddings.position_ids") != std::string::npos);
  CHECK(r.adapted.empty());
  CHECK(r.num_classes == 0);
  io::SafetensorsFile f(o.out_path);
  CHECK(f.metadata().at("architecture") == "all-minilm-l6-v2");
  models::BertModel m(models::BertConfig::all_minilm_l6_v2());
  m.load_state_dict(io::load_safetensors(o.out_path));  // strict

  // --num-classes 4 adds a fresh classifier; --config reads config.json (arch "bert").
  o.num_classes = 4;
  o.arch = "bert";
  o.config_path = bert_big_file("config.json");
  const convert::ConvertReport r4 = convert::convert_file(o);
  CHECK(r4.num_classes == 4);
  CHECK(r4.missing == std::vector<std::string>{"classifier.weight", "classifier.bias"});
}

TEST_CASE("convert hf-bert: bert. prefix, MLM heads dropped, classifier replaced", "[bert][convert]") {
  models::BertConfig cfg = bert_tiny_config();
  cfg.num_classes = 3;
  models::BertModel src(cfg);
  nn::StateDict sd;  // a BertForSequenceClassification-style checkpoint
  for (const auto& [k, t] : src.state_dict())
    sd.emplace_back(k.rfind("classifier.", 0) == 0 ? k : "bert." + k, t);
  sd.emplace_back("bert.embeddings.position_ids", arange(cfg.max_position_embeddings).reshape({1, -1}));
  sd.emplace_back("cls.predictions.bias", zeros({cfg.vocab_size}));
  sd.emplace_back("cls.predictions.transform.dense.weight", zeros({16, 16}));
  convert::ConvertOptions o;
  o.family = "hf-bert";
  o.arch = "bert";
  o.bert_config = cfg;
  auto [model, report] = convert::convert_state_dict(o, sd, "ckpt");
  CHECK(report.source_num_classes == 3);
  CHECK(report.num_classes == 3);
  CHECK(report.dropped.size() == 3);  // position_ids, two cls.* keys
  CHECK(report.mapped.size() == src.state_dict().size());
  GRAFT_REQUIRE_CLOSE(model->state_dict().back().second, src.state_dict().back().second, kTolF32);
  o.num_classes = 5;
  auto [m5, r5] = convert::convert_state_dict(o, sd, "ckpt");
  CHECK(r5.num_classes == 5);
  CHECK(r5.missing.size() == 2);
  CHECK(std::dynamic_pointer_cast<models::BertModel>(m5)->config.num_classes == 5);
  // A mis-shaped tensor is an error naming it.
  sd[0].second = zeros({3, 3});
  require_error([&] { convert::convert_state_dict(o, sd, "ckpt"); }, {"graft-convert", "ckpt", "size mismatch"});
}
