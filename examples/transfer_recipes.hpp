// transfer_recipes.hpp - the three transfer recipes the examples share (transfer_demo, feature_extraction,
// fine_tune), written once so every program trains the same way (fine_tune repeats train_classifier's
// loop to add augmentation, checkpoints and resume):
//
//   scratch    a model from random initialization, every parameter trained
//   probe      a frozen pretrained backbone run once over the data (transfer::FeatureCache), then only a
//              linear head trained on the cached features
//   finetune   the pretrained model, every parameter trained (optionally some frozen by the caller)
//
//   examples::TrainConfig cfg{.steps = 300, .batch_size = 32, .lr = 1e-3};
//   examples::Curve c = examples::train_classifier(*model, train, test, cfg, "fine-tune");
//   std::printf("%.3f after %lld steps, 95%% of it at step %lld\n", c.final_accuracy(), ..., c.steps_to(0.95));
//
// Training: `steps` AdamW steps (one parameter group unless the caller passes groups), cosine schedule
// with linear warmup, cross-entropy, batches drawn as batch_plan() says; the loss and gradients are
// checked finite every step (train/guard.hpp), so a learning rate that diverges stops with the step and
// the tensor named. Evaluation: eval mode, accuracy on the whole test set every eval_every steps and at
// the end. The batch order is fixed by the seed alone, so examples/reference/transfer_recipes.py can
// replay it exactly in PyTorch.
// Devices (--device cpu / cuda / cuda:N, parse_device): the data sets stay on the CPU; the model is
// moved once (Module::to) and each batch goes to the model's device (device_of) as it is used;
// logits come back to the CPU for the accuracy. On the CPU every such move is a no-op.
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
struct LabelledSet {
  Tensor x, y;
  int64_t size() const { return x.size(0); }
};

// Rows `idx` of a labelled set (a copy).
inline LabelledSet take_rows(const LabelledSet& s, const std::vector<int64_t>& idx) {
  const Tensor i = graft::from_vector(idx, {int64_t(idx.size())});
  std::vector<int64_t> labels;
  const int64_t* y = s.y.data<int64_t>();
  for (int64_t k : idx) labels.push_back(y[k]);
  return {graft::index_select(s.x, 0, i).contiguous(), graft::from_vector(labels, {int64_t(labels.size())})};
}

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

// The device of a model's parameters (the CPU for a model without any).
inline graft::Device device_of(graft::nn::Module& model) {
  const std::vector<Tensor> params = model.parameters();
  return params.empty() ? graft::kCPU : params[0].device();
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

// One training step's precision handling: the loss computed under autocast (float32 out), then
// backward and the optimizer step, through a GradScaler for fp16 (a step with inf / NaN gradients is
// skipped and the scale backs off); the gradients are checked finite otherwise (train/guard.hpp).
class MixedPrecision {
 public:
  MixedPrecision(graft::DType precision, graft::Device device)
      : precision_(precision),
        device_(device),
        scaler_(graft::GradScalerOptions{65536.0, 2.0, 0.5, 2000, precision == graft::DType::Float16}) {}

  template <class LossFn>
  Tensor loss(LossFn&& fn) const {
    const PrecisionScope amp(precision_, device_);
    return fn();
  }
  void backward_and_step(const Tensor& loss, graft::optim::Optimizer& opt, graft::nn::Module& model, int64_t step) {
    scaler_.scale(loss).backward();
    scaler_.unscale_(opt);  // a no-op without the scaler
    if (!scaler_.enabled() || !scaler_.found_inf(opt)) graft::train::check_finite_grads(model, step);
    scaler_.step(opt);
    scaler_.update();
  }

 private:
  graft::DType precision_;
  graft::Device device_;
  graft::GradScaler scaler_;
};

struct TrainConfig {
  int64_t steps = 300;        // optimizer steps
  int64_t batch_size = 32;
  int64_t warmup_steps = 10;  // linear warmup, then cosine to 0 at `steps`
  int64_t eval_every = 25;    // held-out accuracy every this many steps (and at the end)
  double lr = 1e-3;
  double weight_decay = 0.01;  // AdamW's decoupled decay
  uint64_t seed = 0;           // batch order
  graft::DType precision = graft::DType::Float32;  // bf16 / fp16: forward passes under autocast
};

// The batches of `steps` steps over n examples: epoch after epoch of random_permutation(n,
// Generator(seed + epoch)), cut into batch_size runs; an epoch's last short batch is kept.
inline std::vector<std::vector<int64_t>> batch_plan(int64_t n, int64_t steps, int64_t batch_size, uint64_t seed) {
  GRAFT_CHECK(n >= 1 && batch_size >= 1 && steps >= 0, "batch_plan", "need n >= 1 and batch_size >= 1, got n = ", n,
              ", batch_size = ", batch_size);
  std::vector<std::vector<int64_t>> plan;
  for (int64_t epoch = 0; int64_t(plan.size()) < steps; ++epoch) {
    graft::Generator gen(seed + uint64_t(epoch));
    const std::vector<int64_t> order = graft::data::random_permutation(n, gen);
    for (int64_t start = 0; start < n && int64_t(plan.size()) < steps; start += batch_size)
      plan.emplace_back(order.begin() + start, order.begin() + std::min(n, start + batch_size));
  }
  return plan;
}

// Accuracy along training: (step, held-out accuracy) points, the last one after the final step, and
// the training loss of every step.
struct Curve {
  std::vector<std::pair<int64_t, double>> points;
  std::vector<double> losses;  // the training loss of every step, in order
  double seconds = 0;  // training and evaluation, wall clock

  double final_accuracy() const { return points.empty() ? 0.0 : points.back().second; }
  // The first evaluated step whose accuracy reaches frac * final accuracy.
  int64_t steps_to(double frac) const {
    for (const auto& [step, acc] : points)
      if (acc >= frac * final_accuracy()) return step;
    return points.empty() ? 0 : points.back().first;
  }
};

inline double accuracy(const Tensor& logits, const Tensor& y) {
  const Tensor pred = graft::argmax(logits.cpu(), 1);
  const int64_t* p = pred.data<int64_t>();
  const int64_t* t = y.data<int64_t>();
  int64_t ok = 0;
  for (int64_t i = 0; i < y.numel(); ++i) ok += p[i] == t[i];
  return double(ok) / double(std::max<int64_t>(1, y.numel()));
}

// Eval-mode accuracy of fn (inputs -> logits) on the set, batch by batch on the model's device;
// restores training mode.
inline double evaluate(graft::nn::Module& model, const std::function<Tensor(const Tensor&)>& fn, const LabelledSet& s,
                       int64_t batch_size = 100, graft::DType precision = graft::DType::Float32) {
  const bool was_training = model.is_training();
  const graft::Device dev = device_of(model);
  model.eval();
  graft::NoGradGuard no_grad;
  const PrecisionScope amp(precision, dev);
  std::vector<Tensor> logits;
  for (int64_t start = 0; start < s.size(); start += batch_size)
    logits.push_back(fn(s.x.narrow(0, start, std::min(batch_size, s.size() - start)).to(dev)).cpu());
  if (was_training) model.train();
  return accuracy(graft::cat(logits, 0), s.y);
}

// Trains fn (inputs -> logits, over `model`'s trainable parameters or `groups`) as TrainConfig says.
// The model is in training mode while it trains, except when keep_eval is set (a probe's head on
// cached features has no train-mode behaviour to switch).
inline Curve train_classifier(graft::nn::Module& model, const std::function<Tensor(const Tensor&)>& fn,
                              const LabelledSet& train, const LabelledSet& test, const TrainConfig& cfg,
                              const std::string& label, std::vector<graft::optim::ParamGroup> groups = {}) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  if (groups.empty()) {
    std::vector<Tensor> trainable;
    for (const Tensor& p : model.parameters())
      if (p.requires_grad()) trainable.push_back(p);
    groups.push_back({"all", trainable, cfg.lr});
  }
  graft::optim::AdamW opt(std::move(groups), cfg.lr, {}, 1e-8, cfg.weight_decay);
  const graft::optim::CosineWithWarmup sched(cfg.warmup_steps, cfg.steps);
  const auto plan = batch_plan(train.size(), cfg.steps, cfg.batch_size, cfg.seed);
  const graft::Device dev = device_of(model);
  MixedPrecision mp(cfg.precision, dev);
  Curve curve;
  Progress bar(label, cfg.steps);
  model.train();
  for (int64_t step = 0; step < cfg.steps; ++step) {
    const LabelledSet b = take_rows(train, plan[size_t(step)]);
    sched.apply(opt, step);
    opt.zero_grad();
    const Tensor loss = mp.loss([&] { return graft::cross_entropy(fn(b.x.to(dev)), b.y.to(dev)); });
    graft::train::check_finite_loss(loss, step, label + " loss");
    mp.backward_and_step(loss, opt, model, step);
    curve.losses.push_back(loss.item());
    const bool last = step + 1 == cfg.steps;
    if ((step + 1) % cfg.eval_every == 0 || last)
      curve.points.emplace_back(step + 1, evaluate(model, fn, test, 100, cfg.precision));
    bar.update(step + 1, {{"loss", curve.losses.back()}, {"acc", curve.final_accuracy()}});
  }
  bar.finish();
  curve.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return curve;
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
