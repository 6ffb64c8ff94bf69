// fine_tune: a pretrained model (graft-convert checkpoint) fine-tuned on new labelled images, with the
// usual transfer-learning controls: freezing the early layers or the BatchNorm statistics, separate
// learning rates for the head and the backbone or layer-wise lr decay, augmentation, and checkpoints
// that a later run resumes exactly.
//
//   ./build/examples/fine_tune --checkpoint lite0.safetensors --mnist DATA/mnist5k.safetensors
//       --image-size 48 --labels-per-class 10 --steps 200 --head-lr 1e-2 --backbone-lr 1e-3
//   ./build/examples/fine_tune --checkpoint resnet50.safetensors --images photos/ --augment
//       --freeze-up-to layer2 --layer-decay 0.7 --steps 1000 --checkpoint-out run.safetensors --save-every 100
//   ./build/examples/fine_tune ...same options... --resume run.safetensors     # continues where it stopped
//   ./build/examples/fine_tune ... --device cuda   # model, inputs and targets on GPU 0 (-DGRAFT_CUDA=ON build)
//
// Model and data: examples/transfer_setup.hpp. Training is examples::train_classifier's recipe (AdamW,
// cosine schedule with linear warmup, cross-entropy, train::batch_plan's batch order from --seed with
// an epoch's short last batch dropped unless --last-batch says otherwise, finite loss and gradients
// checked every step, held-out accuracy every --eval-every steps) on the library's train::Trainer,
// given its own batches (augmented) and a checkpoint callback:
//   augmentation  training batch k of epoch e is data::load_batch(train_augmented, plan[k], seed, e):
//                 every example's random crop comes from (seed, epoch, index), never from the run's history;
//   checkpoints   train::save_checkpoint (model with BatchNorm statistics, AdamW moments, step, and the
//                 generator dropout draws from) every --save-every steps and at the end; the schedule is a
//                 function of the step. --resume checks that the run's options match the checkpoint's
//                 (naming the first that differs) and continues at its step, so the final loss equals an
//                 uninterrupted run's to the last bit.
// Parameter groups: one (--lr); or --head-lr / --backbone-lr (the head and the rest); or --layer-decay D
// (optim::layer_decay_groups: the head and the layers after the last block get --lr, block i of B
// gets lr * D^(B + 1 - i), the stem lr * D^(B + 1); blocks are layerX.Y / _blocks.N / blocks.N).
#include <graft/graft.hpp>
#include <graft/data/dataset.hpp>  // transfer_recipes.hpp uses data::random_permutation
#include <graft/data/loader.hpp>
#include <graft/nn.hpp>
#include <graft/optim/adam.hpp>
#include <graft/optim/param_groups.hpp>
#include <graft/optim/schedule.hpp>
#include <graft/train/checkpoint.hpp>
#include <graft/train/guard.hpp>
#include <graft/train/trainer.hpp>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "transfer_recipes.hpp"
#include "transfer_setup.hpp"

using namespace graft;

namespace {

// Layer ids for layer-wise lr decay: 0 for everything before the first block, 1..B for the blocks in
// order, B + 1 (the largest, full lr) for the rest (final norm / head conv and the classifier).
std::function<int64_t(const std::string&)> block_layer_ids(nn::Module& net) {
  // "layer2.1.conv1.weight" -> "layer2.1.", "_blocks.7._bn0.bias" -> "_blocks.7.", "norm.weight" -> "".
  auto block_of = [](const std::string& name) -> std::string {
    for (const std::string prefix : {"_blocks.", "blocks.", "layer"}) {
      if (name.rfind(prefix, 0) != 0 || !std::isdigit(static_cast<unsigned char>(name[prefix.size()]))) continue;
      const size_t second = name.find('.', name.find('.') + 1);
      if (second != std::string::npos) return name.substr(0, second + 1);
    }
    return "";
  };
  std::vector<std::vector<std::string>> stages(1);  // stage 0: the stem / embeddings, by exact name
  for (auto& [name, p] : net.named_parameters()) {
    const std::string block = block_of(name);
    if (block.empty()) {
      if (stages.size() == 1) stages[0].push_back(name);
    } else if (stages.back() != std::vector<std::string>{block}) {
      stages.push_back({block});
    }
  }
  GRAFT_CHECK(stages.size() > 1, "--layer-decay", "no blocks found in the model's parameter names");
  return optim::layer_ids_by_prefix(stages);
}

// The options a resumed run must share with the run that wrote the checkpoint.
std::string run_signature(const std::vector<std::pair<std::string, std::string>>& opts) {
  std::string s;
  for (const auto& [k, v] : opts) s += k + "=" + v + "\n";
  return s;
}

std::string first_difference(const std::string& saved, const std::string& now) {
  std::istringstream a(saved), b(now);
  std::string la, lb;
  while (true) {
    const bool ga = bool(std::getline(a, la)), gb = bool(std::getline(b, lb));
    if (!ga && !gb) return "";
    if (la != lb || ga != gb)
      return detail::concat("the checkpoint was written with ", ga ? la : "(nothing)", ", this run has ", gb ? lb : "(nothing)");
  }
}

std::string fmt(const char* f, double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Cli cli("fine_tune",
                    "Fine-tunes a pretrained model (graft-convert checkpoint) on labelled images: freezing, head / "
                    "backbone learning rates or layer decay, augmentation, resumable checkpoints.");
  const examples::SetupOptions setup(cli);  // --checkpoint, --arch, --images / --mnist, ...
  const bool& augment = cli.option("augment", false,
                                   "random resized crop + flip (ImageFolder), random crop with padding 2 (MNIST)");
  const std::string& freeze_up_to = cli.option("freeze-up-to", std::string(""),
                                               "freeze every parameter up to and including this module "
                                               "(e.g. layer2, _blocks.5, blocks.3)");
  const bool& freeze_bn_stats = cli.option("freeze-bn-stats", false, "keep BatchNorm running statistics fixed");
  const double& bn_momentum = cli.option("bn-momentum", 0.1, "BatchNorm running-stat momentum (0: the model's)");
  const int64_t& steps = cli.option("steps", int64_t(200), "optimizer steps (the whole run)");
  const int64_t& batch = cli.option("batch", int64_t(32), "batch size");
  const std::string& last_batch = cli.option("last-batch", std::string("drop"),
                                             "an epoch's short last batch: drop, keep or balance (equal-size batches)");
  const double& lr = cli.option("lr", 1e-3, "AdamW learning rate (the head's with --layer-decay)");
  const double& head_lr = cli.option("head-lr", 0.0, "learning rate of the head (0: --lr)");
  const double& backbone_lr = cli.option("backbone-lr", 0.0, "learning rate of everything else (0: --lr)");
  const double& layer_decay = cli.option("layer-decay", 0.0, "layer-wise lr decay D in (0, 1] (0: off)");
  const double& weight_decay = cli.option("weight-decay", 0.01, "AdamW decoupled weight decay");
  const int64_t& warmup = cli.option("warmup", int64_t(10), "linear warmup steps (< --steps)");
  const int64_t& eval_every = cli.option("eval-every", int64_t(50), "held-out accuracy every this many steps");
  const int64_t& seed = cli.option("seed", int64_t(0), "seed for the split, the head, batches and augmentation");
  const std::string& ckpt_out = cli.option("checkpoint-out", std::string(""), "training checkpoint to write");
  const int64_t& save_every = cli.option("save-every", int64_t(0), "write --checkpoint-out every this many steps "
                                                                     "(0: only at the end)");
  const std::string& resume = cli.option("resume", std::string(""), "continue the run saved in this checkpoint");
  const int64_t& stop_after = cli.option("stop-after", int64_t(0), "end this session after this many steps of the "
                                                                     "run (0: run to --steps); --resume continues");
  const std::string& device_arg = cli.option("device", std::string("cpu"), "cpu, cuda or cuda:N: where the model trains");
  const std::string& precision_arg = cli.option("precision", std::string("fp32"),
                                                "fp32, bf16 or fp16: bf16 / fp16 run the forward passes under autocast "
                                                "(float32 weights, fp16 with a loss scaler)");
  cli.parse(argc, argv);
  if (layer_decay != 0.0 && (head_lr != 0.0 || backbone_lr != 0.0))
    cli.fail("--layer-decay and --head-lr / --backbone-lr are two ways to set the learning rates; give one");
  if (steps < 1 || batch < 1 || eval_every < 1 || save_every < 0 || stop_after < 0)
    cli.fail("--steps, --batch and --eval-every must be >= 1, --save-every and --stop-after >= 0");
  try {
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    const Device device = examples::parse_device(device_arg);
    const DType precision = examples::parse_precision(precision_arg);
    examples::TransferModel m = examples::load_transfer_model(
        {.checkpoint = setup.checkpoint, .arch = setup.arch, .in_chans = setup.in_chans, .random_init = setup.random_init,
         .seed = uint64_t(seed)},
        setup.mnist.empty() ? 3 : 1);
    std::printf("%s\n", m.load_summary.c_str());
    const examples::TransferData d = examples::load_transfer_data(
        {.images = setup.images, .mnist = setup.mnist, .val_frac = setup.val_frac, .labels_per_class = setup.per_class,
         .image_size = setup.image_size, .augment = augment, .seed = uint64_t(seed)},
        m);
    std::printf("%s\n", d.summary.c_str());

    // ---- the model to train ----
    nn::Module& net = *m.net;
    m.reset_classifier(d.num_classes);
    net.to(device);  // every parameter and buffer, in place (the handles below stay valid)
    if (bn_momentum > 0) train::set_batchnorm_momentum(net, bn_momentum);
    if (!freeze_up_to.empty()) {
      const int64_t n = net.freeze_up_to(freeze_up_to);
      std::printf("froze %lld parameter tensors up to and including %s\n", (long long)n, freeze_up_to.c_str());
    }
    if (freeze_bn_stats) net.freeze_norm_stats(true);
    std::vector<optim::ParamGroup> groups;
    if (layer_decay != 0.0) {
      groups = optim::layer_decay_groups(net, lr, weight_decay, layer_decay, block_layer_ids(net));
    } else {
      optim::ParamGroup head{"head", {}, head_lr > 0 ? head_lr : lr}, backbone{"backbone", {}, backbone_lr > 0 ? backbone_lr : lr};
      const std::string head_prefix = m.head_name + ".";
      for (auto& [name, p] : net.named_parameters())
        if (p.requires_grad()) (name.rfind(head_prefix, 0) == 0 ? head : backbone).params.push_back(p);
      if (!backbone.params.empty()) groups.push_back(std::move(backbone));
      groups.push_back(std::move(head));
    }
    const int64_t trainable = train::count_trainable(net);
    int64_t total_params = 0;
    for (const Tensor& p : net.parameters()) total_params += p.numel();
    std::string group_list;
    for (const auto& g : groups) group_list += detail::concat(group_list.empty() ? "" : ", ", g.name, " (lr ", g.lr, ")");
    std::printf("%lld of %lld parameters trainable; parameter groups: %s\n", (long long)trainable,
                (long long)total_params,
                groups.size() <= 4 ? group_list.c_str() : detail::concat(groups.size(), " (--layer-decay)").c_str());
    optim::AdamW opt(std::move(groups), lr, {}, 1e-8, weight_decay);
    const train::LastBatch last = train::parse_last_batch(last_batch);
    const auto plan = train::batch_plan(d.train.size(), steps, batch, uint64_t(seed), last);
    const int64_t batches_per_epoch = train::batches_per_epoch(d.train.size(), batch, last);

    auto forward = [&](const Tensor& x) { return net.forward(x); };
    const std::string signature = run_signature({
        {"checkpoint", setup.checkpoint}, {"arch", m.arch}, {"images", setup.images}, {"mnist", setup.mnist},
        {"val-frac", fmt("%.17g", setup.val_frac)}, {"labels-per-class", std::to_string(setup.per_class)},
        {"image-size", std::to_string(setup.image_size)}, {"in-chans", std::to_string(m.in_chans)},
        {"augment", augment ? "true" : "false"}, {"freeze-up-to", freeze_up_to},
        {"freeze-bn-stats", freeze_bn_stats ? "true" : "false"}, {"bn-momentum", fmt("%.17g", bn_momentum)},
        {"steps", std::to_string(steps)}, {"batch", std::to_string(batch)}, {"last-batch", last_batch},
        {"lr", fmt("%.17g", lr)}, {"head-lr", fmt("%.17g", head_lr)}, {"backbone-lr", fmt("%.17g", backbone_lr)},
        {"layer-decay", fmt("%.17g", layer_decay)}, {"weight-decay", fmt("%.17g", weight_decay)},
        {"warmup", std::to_string(warmup)}, {"eval-every", std::to_string(eval_every)}, {"seed", std::to_string(seed)}});
    int64_t start = 0;
    double resumed_loss = 0.0;  // the loss of the step before a resume (saved in checkpoints)
    if (!resume.empty()) {
      const io::SafetensorsFile f(resume);
      const auto it = f.metadata().find("fine_tune");
      GRAFT_CHECK(it != f.metadata().end(), "--resume", resume, ": not a fine_tune checkpoint (no \"fine_tune\" metadata)");
      const std::string diff = first_difference(it->second, signature);
      GRAFT_CHECK(diff.empty(), "--resume", resume, ": ", diff, "; resume with the same options");
      start = train::load_checkpoint(resume, net, opt, default_generator()).step;
      resumed_loss = std::strtod(f.metadata().count("loss") ? f.metadata().at("loss").c_str() : "0", nullptr);
      std::printf("resumed %s at step %lld of %lld\n", resume.c_str(), (long long)start, (long long)steps);
    }
    const int64_t end = stop_after > 0 ? std::min(steps, start + stop_after) : steps;

    // ---- training: the library's loop (graft/train/trainer.hpp) with this program's batches ----
    train::Trainer trainer(net, opt,
                           {.steps = steps, .eval_every = eval_every, .start_step = start, .end_step = end,
                            .precision = precision, .label = "fine-tune"});
    trainer
        .batches([&](int64_t step) {
          const std::vector<int64_t>& rows = plan[size_t(step)];
          if (d.train_augmented) return data::load_batch(*d.train_augmented, rows, uint64_t(seed), step / batches_per_epoch);
          return train::take_batch(d.train, rows);
        })
        .loss(train::cross_entropy_loss(forward))
        .evaluate([&] { return examples::evaluate(net, forward, d.test, 100, precision); })
        .schedule(optim::CosineWithWarmup(warmup, steps))
        .add_callback(std::make_shared<examples::ProgressCallback>(
            start > 0 ? detail::concat("fine-tune from step ", start) : "fine-tune", end - start));
    auto last_loss = [&](train::Trainer& t) {
      return t.history().losses.empty() ? resumed_loss : t.history().losses.back();
    };
    if (!ckpt_out.empty())
      trainer.add_callback(std::make_shared<train::CheckpointEvery>(
          ckpt_out, save_every,
          [&](train::Trainer& t) {
            return std::map<std::string, std::string>{
                {"fine_tune", signature}, {"architecture", m.arch}, {"loss", fmt("%.17g", last_loss(t))}};
          },
          batches_per_epoch));
    const train::History curve = trainer.fit();
    const double final_loss = last_loss(trainer);
    if (!ckpt_out.empty()) std::printf("wrote %s at step %lld\n", ckpt_out.c_str(), (long long)end);
    if (end < steps) {
      std::printf("stopped at step %lld of %lld (--stop-after); continue with --resume %s\n", (long long)end,
                  (long long)steps, ckpt_out.empty() ? "FILE (give --checkpoint-out)" : ckpt_out.c_str());
      return 0;
    }

    // ---- summary ----
    const double train_acc = examples::evaluate(net, forward, d.train, 100, precision);
    const double held_out_acc =
        curve.evals.empty() ? examples::evaluate(net, forward, d.test, 100, precision) : curve.final_metric();
    std::string points;
    for (const train::EvalPoint& e : curve.evals)
      points += detail::concat(points.empty() ? "" : ", ", e.step, ": ", fmt("%.4f", e.metric));
    std::printf("held-out accuracy by step: %s\n", points.c_str());
    std::printf("final loss %.9g\n", final_loss);
    examples::Table table({"model", "train acc", "held-out acc", "final loss", "steps", "seconds", "trainable params"});
    table.add({m.arch, fmt("%.4f", train_acc), fmt("%.4f", held_out_acc), fmt("%.4g", final_loss), std::to_string(steps),
               fmt("%.1f", std::chrono::duration<double>(Clock::now() - t0).count()), std::to_string(trainable)});
    std::printf("\n");
    table.print();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fine_tune: %s\n", e.what());
    return 1;
  }
  return 0;
}
