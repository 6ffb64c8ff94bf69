// feature_extraction: a pretrained backbone used as a fixed feature extractor (a linear probe). The
// backbone is frozen and run once over the data; only a new linear head is trained, on the cached
// features, so each step costs a matrix product.
//
//   graft-convert --family efficientnet-lite --arch efficientnet_lite0 --in efficientnet_lite0.pth
//                 --out lite0.safetensors --num-classes 10 --in-chans 1
//   ./build/examples/feature_extraction --checkpoint lite0.safetensors --mnist DATA/mnist5k.safetensors
//       --image-size 48 --labels-per-class 10
//   ./build/examples/feature_extraction --checkpoint resnet18.safetensors --images photos/ --image-size 224
//       --save-head head.safetensors
//
// Model and data: examples/transfer_setup.hpp (architecture from the checkpoint, held-out split by
// --val-frac, per-family normalization). Head: a fresh Linear(num_features, classes) trained by
// examples::train_classifier (train::fit_classifier: AdamW, cosine schedule with warmup, batch order
// fixed by --seed, an epoch's short last batch dropped unless --last-batch says otherwise).
// --save-head writes the head under the model's own names (e.g. "_fc.weight"), so loading the
// checkpoint and then the head (strict=false) gives the whole classifier.
#include <graft/graft.hpp>
#include <graft/data/dataset.hpp>  // transfer_recipes.hpp uses data::random_permutation
#include <graft/io/safetensors.hpp>
#include <graft/nn.hpp>

#include <chrono>
#include <cstdio>
#include <string>

#include "cli.hpp"
#include "transfer_recipes.hpp"
#include "transfer_setup.hpp"

using namespace graft;

int main(int argc, char** argv) {
  examples::Cli cli("feature_extraction",
                    "Linear probe: a frozen pretrained backbone (graft-convert checkpoint) computes features once, "
                    "a new linear head is trained on them; prints train / held-out accuracy.");
  const examples::SetupOptions setup(cli);  // --checkpoint, --arch, --images / --mnist, ...
  const int64_t& steps = cli.option("steps", int64_t(200), "optimizer steps for the head");
  const int64_t& batch = cli.option("batch", int64_t(32), "batch size");
  const std::string& last_batch = cli.option("last-batch", std::string("drop"),
                                             "an epoch's short last batch: drop, keep or balance (equal-size batches)");
  const double& lr = cli.option("lr", 3e-2, "AdamW learning rate");
  const double& weight_decay = cli.option("weight-decay", 0.01, "AdamW decoupled weight decay");
  const int64_t& warmup = cli.option("warmup", int64_t(10), "linear warmup steps (< --steps)");
  const int64_t& eval_every = cli.option("eval-every", int64_t(50), "held-out accuracy every this many steps");
  const int64_t& seed = cli.option("seed", int64_t(0), "seed for the split, the head and the batch order");
  const std::string& save_head = cli.option("save-head", std::string(""), "write the trained head here");
  cli.parse(argc, argv);
  try {
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    examples::TransferModel m = examples::load_transfer_model(
        {.checkpoint = setup.checkpoint, .arch = setup.arch, .in_chans = setup.in_chans, .random_init = setup.random_init,
         .seed = uint64_t(seed)},
        setup.mnist.empty() ? 3 : 1);
    std::printf("%s\n", m.load_summary.c_str());
    const examples::TransferData d = examples::load_transfer_data(
        {.images = setup.images, .mnist = setup.mnist, .val_frac = setup.val_frac, .labels_per_class = setup.per_class,
         .image_size = setup.image_size, .seed = uint64_t(seed)},
        m);
    std::printf("%s\n", d.summary.c_str());

    // ---- features, once ----
    m.net->freeze();
    const auto tf = Clock::now();
    auto features = [&](const Tensor& x) { return m.features(x); };
    const examples::LabelledSet train_f = examples::extract_features(*m.net, features, d.train);
    const examples::LabelledSet test_f = examples::extract_features(*m.net, features, d.test);
    const double feature_seconds = std::chrono::duration<double>(Clock::now() - tf).count();
    std::printf("features: train %s, held-out %s in %.1f s\n", train_f.x.shape().str().c_str(),
                test_f.x.shape().str().c_str(), feature_seconds);

    // ---- the head ----
    manual_seed(uint64_t(seed));
    m.reset_classifier(d.num_classes);
    nn::Module& head = m.classifier();
    auto logits = [&](const Tensor& f) { return head.forward(f); };
    examples::TrainConfig cfg;
    cfg.steps = steps;
    cfg.batch_size = batch;
    cfg.last_batch = train::parse_last_batch(last_batch);
    cfg.warmup_steps = warmup;
    cfg.eval_every = eval_every;
    cfg.lr = lr;
    cfg.weight_decay = weight_decay;
    cfg.seed = uint64_t(seed);
    const examples::Curve curve = examples::train_classifier(head, logits, train_f, test_f, cfg, "head");
    const double train_acc = examples::evaluate(head, logits, train_f);
    const double total_seconds = std::chrono::duration<double>(Clock::now() - t0).count();

    if (!save_head.empty()) {
      std::vector<std::pair<std::string, Tensor>> tensors;
      for (auto& [k, t] : head.state_dict()) tensors.emplace_back(m.head_name + "." + k, t);
      std::string classes;
      for (size_t c = 0; c < d.classes.size(); ++c) classes += (c ? "," : "") + d.classes[c];
      io::save_safetensors(save_head, tensors,
                           {{"format", "graft"}, {"architecture", m.arch}, {"num_classes", std::to_string(d.num_classes)},
                            {"classes", classes}, {"image_size", std::to_string(setup.image_size)}});
      std::printf("wrote the head to %s\n", save_head.c_str());
    }

    char buf[5][32];
    std::snprintf(buf[0], sizeof buf[0], "%.4f", train_acc);
    std::snprintf(buf[1], sizeof buf[1], "%.4f", curve.final_metric());
    std::snprintf(buf[2], sizeof buf[2], "%.2f", feature_seconds);
    std::snprintf(buf[3], sizeof buf[3], "%.2f", curve.seconds);
    std::snprintf(buf[4], sizeof buf[4], "%.1f", total_seconds);
    examples::Table table({"model", "train acc", "held-out acc", "features s", "head s", "total s",
                           "trainable params"});
    table.add({m.arch, buf[0], buf[1], buf[2], buf[3], buf[4], std::to_string(train::count_trainable(head))});
    std::printf("\n");
    table.print();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "feature_extraction: %s\n", e.what());
    return 1;
  }
  return 0;
}
