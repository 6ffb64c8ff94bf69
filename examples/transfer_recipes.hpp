// transfer_recipes.hpp - the three transfer recipes the examples share (transfer_demo, feature_extraction,
// fine_tune), written once so every program trains the same way; the loop itself is the library's
// (graft/train/trainer.hpp: train::Trainer, train::fit_classifier), this file only fixes the recipe:
//
//   scratch    a model from random initialization, every parameter trained
//   probe      a frozen pretrained backbone run once over the data (transfer::FeatureCache), then only a
//              linear head trained on the cached features
//   finetune   the pretrained model, every parameter trained (optionally some frozen by the caller)
//
//   examples::TrainConfig cfg{.steps = 300, .batch_size = 32, .lr = 1e-3};
//   examples::Curve c = examples::train_classifier(*model, train, test, cfg, "fine-tune");
//   std::printf("%.3f after %lld steps\n", c.final_metric(), (long long)c.steps_done);
//
// Training: `steps` AdamW steps (one parameter group unless the caller passes groups), cosine schedule
// with linear warmup, cross-entropy, batches from train::batch_plan with the epoch's short last batch
// dropped; the loss and gradients are checked finite every step (train/guard.hpp), so a learning rate
// that diverges stops with the step and the tensor named. Evaluation: eval mode, accuracy on the whole
// test set every eval_every steps and at the end, with the training seconds up to it. The batch order
// is fixed by the seed alone, so examples/reference/transfer_recipes.py can replay it exactly in PyTorch.
// Devices (--device cpu / cuda / cuda:N, parse_device): the data sets stay on the CPU; the model is
// moved once (Module::to) and each batch goes to the model's device as it is used; logits come back to
// the CPU for the accuracy. On the CPU every such move is a no-op.
// Precision (--precision fp32 / bf16 / fp16, parse_precision): the weights stay float32; with bf16 or
// fp16 the forward passes (training, evaluation, feature extraction) run under graft::AutocastGuard,
// and fp16 training steps go through a graft::GradScaler.
#pragma once
#include <graft/graft.hpp>
#include <graft/data/dataset.hpp>
#include <graft/nn.hpp>
#include <graft/optim/adam.hpp>
#include <graft/optim/schedule.hpp>
#include <graft/train/guard.hpp>
#include <graft/train/trainer.hpp>
#include <graft/transfer/feature_cache.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli.hpp"

namespace examples {

using graft::Tensor;

// Labelled images, ready for the model: x [N, C, H, W] float32, y [N] int64 in [0, num_classes).
using graft::train::LabelledSet;
using graft::train::take_rows;
using graft::train::device_of;

// "cpu", "cuda" or "cuda:N" (the examples' --device). A CUDA device needs the CUDA backend in the
// program: the examples link graft::cuda_backend when CMake ran with GRAFT_CUDA=ON; without it this
// throws, saying so.
inline graft::Device parse_device(const std::string& s) {
  if (s == "cpu") return graft::kCPU;
  int index = 0;
  if (s != "cuda") {
    const bool indexed = s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.size() < 9 &&
                         s.find_first_not_of("0123456789", 5) == std::string::npos;
    GRAFT_CHECK(indexed, "--device", "expected cpu, cuda or cuda:N, got '", s, "'");
    index = std::stoi(s.substr(5));
  }
  GRAFT_CHECK(graft::g_allocators[static_cast<int>(graft::DeviceType::CUDA)] != nullptr, "--device",
              s, ": this program was built without the CUDA backend; configure with -DGRAFT_CUDA=ON (nvcc on the "
              "PATH) so the examples link graft::cuda_backend");
  return graft::cuda(index);
}

// "fp32" / "float32", "bf16" / "bfloat16", "fp16" / "float16" (the examples' --precision).
inline graft::DType parse_precision(const std::string& s) {
  if (s == "fp32" || s == "float32") return graft::DType::Float32;
  if (s == "bf16" || s == "bfloat16") return graft::DType::BFloat16;
  if (s == "fp16" || s == "float16") return graft::DType::Float16;
  throw graft::Error("--precision: expected fp32, bf16 or fp16, got '" + s + "'");
}

// Autocast to `precision` on `device` while it lives; nothing for float32.
class PrecisionScope {
 public:
  PrecisionScope(graft::DType precision, graft::Device device) {
    if (graft::is_reduced_float(precision)) guard_.emplace(precision, device.type);
  }

 private:
  std::optional<graft::AutocastGuard> guard_;
};

// The recipe's settings (train::ClassifierRecipe, the label aside). last_batch: the demo drops an
// epoch's short last batch (at 10 labels per class, 100 examples in 32s leave 4, whose BatchNorm
// statistics spike the loss), as a PyTorch user would with drop_last=True.
struct TrainConfig {
  int64_t steps = 300;        // optimizer steps
  int64_t batch_size = 32;
  graft::train::LastBatch last_batch = graft::train::LastBatch::Drop;
  int64_t warmup_steps = 10;  // linear warmup, then cosine to 0 at `steps`
  int64_t eval_every = 25;    // held-out accuracy every this many steps (and at the end)
  double lr = 1e-3;
  double weight_decay = 0.01;  // AdamW's decoupled decay
  uint64_t seed = 0;           // batch order
  graft::DType precision = graft::DType::Float32;  // bf16 / fp16: forward passes under autocast
};

// What a run records: held-out accuracy at each evaluation with the training seconds up to it, the
// loss of every step (graft::train::History).
using Curve = graft::train::History;

// Eval-mode accuracy of fn (inputs -> logits) on the set (graft::train::accuracy).
inline double evaluate(graft::nn::Module& model, const std::function<Tensor(const Tensor&)>& fn, const LabelledSet& s,
                       int64_t batch_size = 100, graft::DType precision = graft::DType::Float32) {
  return graft::train::accuracy(model, fn, s, batch_size, precision);
}

// The progress bar of examples/cli.hpp as a Trainer callback.
class ProgressCallback : public graft::train::Callback {
 public:
  ProgressCallback(std::string label, int64_t steps) : bar_(std::move(label), steps) {}
  void on_step_end(graft::train::Trainer& t, int64_t done, double loss) override {
    const double acc = t.history().final_metric();
    bar_.update(done - t.options().start_step, {{"loss", loss}, {"acc", acc}});
  }
  void on_fit_end(graft::train::Trainer&, const graft::train::History&) override { bar_.finish(); }

 private:
  Progress bar_;
};

// Trains fn (inputs -> logits, over `model`'s trainable parameters or `groups`) as TrainConfig says:
// graft::train::fit_classifier with a progress bar.
inline Curve train_classifier(graft::nn::Module& model, const std::function<Tensor(const Tensor&)>& fn,
                              const LabelledSet& train, const LabelledSet& test, const TrainConfig& cfg,
                              const std::string& label, std::vector<graft::optim::ParamGroup> groups = {}) {
  const graft::train::ClassifierRecipe r{.steps = cfg.steps, .batch_size = cfg.batch_size, .last_batch = cfg.last_batch,
                                         .warmup_steps = cfg.warmup_steps, .eval_every = cfg.eval_every, .lr = cfg.lr,
                                         .weight_decay = cfg.weight_decay, .seed = cfg.seed, .precision = cfg.precision,
                                         .label = label};
  return graft::train::fit_classifier(model, fn, train, test, r, std::move(groups),
                                      {std::make_shared<ProgressCallback>(label, cfg.steps)});
}

// The whole model trained (scratch or fine-tune): logits = model.forward(x).
inline Curve train_model(graft::nn::Module& model, const LabelledSet& train, const LabelledSet& test,
                         const TrainConfig& cfg, const std::string& label) {
  return train_classifier(model, [&](const Tensor& x) { return model.forward(x); }, train, test, cfg, label);
}

// Linear probe, part one: the backbone's features (eval mode, no graph) of a whole set, computed once
// in batches through transfer::FeatureCache on the backbone's device (the features come back to the
// CPU); `features` maps images to [B, F]. Train the head on the result with train_classifier: no
// backbone work per step. With a reduced precision the backbone runs under autocast; the cached
// features are float32 either way.
inline LabelledSet extract_features(graft::nn::Module& backbone, const std::function<Tensor(const Tensor&)>& features,
                                    const LabelledSet& s, int64_t batch_size = 100,
                                    graft::DType precision = graft::DType::Float32) {
  backbone.eval();
  const graft::Device dev = device_of(backbone);
  graft::transfer::FeatureCache cache(
      [&](const Tensor& x) {
        const PrecisionScope amp(precision, dev);
        return features(x.to(dev)).to(graft::DType::Float32).cpu();
      },
      batch_size);
  return {cache.get("features", s.x), s.y};
}

}  // namespace examples
