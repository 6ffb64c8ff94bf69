// graft/train/trainer.hpp - the training loop Graft's examples and users share: a fixed number of
// optimizer steps over a batch plan, the learning rate from a schedule, loss and gradients checked
// finite, mixed precision, evaluation every few steps, and callbacks for logging, checkpoints,
// schedules and early stopping. The loop itself is short (Trainer::fit); what varies between
// programs is passed in as functions (where batches come from, what the loss is, what is measured)
// or as callbacks.
//
//   const auto plan = train::batch_plan(train.size(), 300, 32, seed, train::LastBatch::Drop);
//   optim::AdamW opt(model->parameters(), 1e-3);
//   train::Trainer t(*model, opt, {.steps = 300, .eval_every = 25, .label = "fine-tune"});
//   t.batches(train::batches_from(train, plan))                       // step -> data::Batch
//    .loss(train::cross_entropy_loss([&](const Tensor& x) { return model->forward(x); }))
//    .evaluate([&] { return train::accuracy(*model, fwd, test); })   // "higher is better"
//    .schedule(optim::CosineWithWarmup(10, 300))
//    .add_callback(std::make_shared<train::EarlyStopping>(/*patience=*/3))
//    .add_callback(std::make_shared<train::CheckpointEvery>("run.safetensors", 100));
//   train::History h = t.fit();   // h.evals: (step, metric, training seconds), h.losses, h.stopped_by
//
// Or, the recipe the examples use (AdamW + cosine warmup + cross-entropy on in-memory tensors):
//   train::History h = train::fit_classifier(*model, fwd, train, test, {.steps = 300, .lr = 1e-3});
//
// One step s (0-based) of fit(): callbacks' on_step_begin(s) (the schedule sets the lr here), the
// batch batches(s) moved to the model's device, opt.zero_grad(), loss(batch) under autocast when
// precision is bf16 / fp16, the loss checked finite (naming the step), backward (through a
// GradScaler for fp16: a step with inf / NaN gradients is skipped and the scale backs off; otherwise
// the gradients are checked finite, naming the parameter), opt.step(), on_step_end; then, when
// (s + 1) % eval_every == 0 or s + 1 is the run's last step, evaluate() and on_evaluate. A callback
// may request_stop(reason): the loop ends after the current step. Steps run from start_step (a
// resumed run) to end_step (0: steps); the schedule and the batch plan are functions of the step, so
// a run resumed from a checkpoint continues exactly where it stopped.
//
// Batch plans (batch_plan): epoch after epoch of data::random_permutation(n, Generator(seed + epoch)),
// cut into batches; what happens to an epoch's short last batch is LastBatch's choice:
//   Keep     kept (PyTorch's DataLoader default, drop_last=False): 100 examples in 32s -> 32 32 32 4
//   Drop     dropped (drop_last=True) -> 32 32 32; other examples are dropped each epoch
//   Balance  ceil(n / batch_size) batches of near-equal size -> 25 25 25 25
// A 4-example batch's BatchNorm statistics are noisy enough to spike a fine-tuning loss from 0.1 to 2;
// Drop (or Balance) is what a careful user picks for BatchNorm models.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "graft/graft.hpp"
#include "graft/core/autocast.hpp"
#include "graft/core/random.hpp"
#include "graft/data/dataset.hpp"
#include "graft/data/loader.hpp"
#include "graft/nn.hpp"
#include "graft/ops/loss.hpp"
#include "graft/optim/adam.hpp"
#include "graft/optim/grad_scaler.hpp"
#include "graft/optim/schedule.hpp"
#include "graft/train/checkpoint.hpp"
#include "graft/train/guard.hpp"

namespace graft::train {

// ---- data in memory ----------------------------------------------------------------------------

// Labelled examples held as two tensors: x [N, ...] (any float dtype), y [N] int64.
struct LabelledSet {
  Tensor x, y;
  int64_t size() const { return x.size(0); }
};

// Rows `idx` of a labelled set, as a batch (a copy).
inline data::Batch take_batch(const LabelledSet& s, const std::vector<int64_t>& idx) {
  GRAFT_CHECK(s.x.defined() && s.y.defined() && s.y.dim() == 1 && s.x.dim() >= 1 && s.y.size(0) == s.x.size(0),
              "take_batch", "expected x [N, ...] and y [N], got x ", s.x.defined() ? s.x.shape().str() : "undefined",
              " and y ", s.y.defined() ? s.y.shape().str() : "undefined");
  GRAFT_CHECK(s.y.dtype() == DType::Int64, "take_batch", "labels must be int64, got ", dtype_name(s.y.dtype()));
  std::vector<int64_t> labels;
  labels.reserve(idx.size());
  const Tensor y = s.y.cpu().contiguous();
  const int64_t* yp = y.data<int64_t>();
  for (int64_t k : idx) {
    GRAFT_CHECK(k >= 0 && k < s.size(), "take_batch", "row ", k, " is out of range for ", s.size(), " examples");
    labels.push_back(yp[k]);
  }
  const Tensor i = from_vector(idx, {int64_t(idx.size())});
  return {index_select(s.x, 0, i).contiguous(), from_vector(labels, {int64_t(labels.size())}), idx};
}

inline LabelledSet take_rows(const LabelledSet& s, const std::vector<int64_t>& idx) {
  data::Batch b = take_batch(s, idx);
  return {b.inputs, b.labels};
}

// ---- batch plans -------------------------------------------------------------------------------

enum class LastBatch { Keep, Drop, Balance };

inline const char* last_batch_name(LastBatch l) {
  return l == LastBatch::Keep ? "keep" : l == LastBatch::Drop ? "drop" : "balance";
}

// "keep", "drop" or "balance" (a command line's --last-batch).
inline LastBatch parse_last_batch(const std::string& s) {
  if (s == "keep") return LastBatch::Keep;
  if (s == "drop") return LastBatch::Drop;
  if (s == "balance") return LastBatch::Balance;
  throw Error("last batch: expected keep, drop or balance, got '" + s + "'");
}

// The sizes of one epoch's batches over n examples.
inline std::vector<int64_t> epoch_batch_sizes(int64_t n, int64_t batch_size, LastBatch last) {
  GRAFT_CHECK(n >= 1 && batch_size >= 1, "batch_plan", "need n >= 1 and batch_size >= 1, got n = ", n,
              ", batch_size = ", batch_size);
  GRAFT_CHECK(last != LastBatch::Drop || n >= batch_size, "batch_plan", "LastBatch::Drop with ", n,
              " examples and batch_size ", batch_size, " leaves no batch at all; use a batch_size <= ", n,
              " or LastBatch::Keep / Balance");
  std::vector<int64_t> sizes;
  if (last == LastBatch::Balance) {
    const int64_t m = (n + batch_size - 1) / batch_size;
    for (int64_t b = 0; b < m; ++b) sizes.push_back(n / m + (b < n % m ? 1 : 0));
  } else {
    for (int64_t start = 0; start + batch_size <= n; start += batch_size) sizes.push_back(batch_size);
    if (last == LastBatch::Keep && n % batch_size != 0) sizes.push_back(n % batch_size);
  }
  return sizes;
}

inline int64_t batches_per_epoch(int64_t n, int64_t batch_size, LastBatch last) {
  return int64_t(epoch_batch_sizes(n, batch_size, last).size());
}

// The batches (row indices) of `steps` steps over n examples, as the top of this file says.
inline std::vector<std::vector<int64_t>> batch_plan(int64_t n, int64_t steps, int64_t batch_size, uint64_t seed,
                                                    LastBatch last = LastBatch::Keep) {
  GRAFT_CHECK(steps >= 0, "batch_plan", "steps must be >= 0, got ", steps);
  const std::vector<int64_t> sizes = epoch_batch_sizes(n, batch_size, last);
  std::vector<std::vector<int64_t>> plan;
  for (int64_t epoch = 0; int64_t(plan.size()) < steps; ++epoch) {
    Generator gen(seed + uint64_t(epoch));
    const std::vector<int64_t> order = data::random_permutation(n, gen);
    int64_t start = 0;
    for (size_t b = 0; b < sizes.size() && int64_t(plan.size()) < steps; ++b) {
      plan.emplace_back(order.begin() + start, order.begin() + start + sizes[b]);
      start += sizes[b];
    }
  }
  return plan;
}

// ---- what a run records ------------------------------------------------------------------------

struct EvalPoint {
  int64_t step = 0;           // steps done when measured
  double metric = 0;          // evaluate()'s value
  double train_seconds = 0;   // wall clock spent in training steps up to here (evaluation excluded)
};

struct History {
  std::vector<EvalPoint> evals;
  std::vector<double> losses;  // the loss of every step this fit() took, in order
  double seconds = 0;          // fit()'s wall clock: training and evaluation
  double train_seconds = 0;    // of which training steps
  int64_t steps_done = 0;      // the run's step count when fit() returned (start_step + steps taken)
  std::string stopped_by;      // empty: ran to end_step; else the reason a callback gave

  double final_metric() const { return evals.empty() ? 0.0 : evals.back().metric; }
  // The first evaluated step whose metric reaches frac * the final metric (the last step when none does).
  int64_t steps_to(double frac) const {
    for (const EvalPoint& e : evals)
      if (e.metric >= frac * final_metric()) return e.step;
    return evals.empty() ? 0 : evals.back().step;
  }
  // The first evaluation at or above `target` (e.g. another recipe's final accuracy), if any.
  std::optional<EvalPoint> first_reaching(double target) const {
    for (const EvalPoint& e : evals)
      if (e.metric >= target) return e;
    return std::nullopt;
  }
};

// ---- callbacks ---------------------------------------------------------------------------------

class Trainer;

// Hooks into Trainer::fit, called in the order they were added. Steps are 0-based in on_step_begin
// (the step about to run) and counts in on_step_end / EvalPoint (steps done).
class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_fit_begin(Trainer&) {}
  virtual void on_step_begin(Trainer&, int64_t /*step*/) {}
  virtual void on_step_end(Trainer&, int64_t /*steps_done*/, double /*loss*/) {}
  virtual void on_evaluate(Trainer&, const EvalPoint&) {}
  virtual void on_fit_end(Trainer&, const History&) {}
};

struct TrainerOptions {
  int64_t steps = 0;        // the whole run's optimizer steps (the schedule's total)
  int64_t eval_every = 0;   // evaluate() every this many steps; 0: only after the run's last step
  int64_t start_step = 0;   // a resumed run starts here
  int64_t end_step = 0;     // stop after this step count (0: steps); a later fit resumes
  DType precision = DType::Float32;  // bf16 / fp16: loss() runs under autocast; fp16 with a GradScaler
  std::string label = "train";       // in error messages
};

class Trainer {
 public:
  using BatchFn = std::function<data::Batch(int64_t step)>;
  using LossFn = std::function<Tensor(const data::Batch&)>;
  using EvalFn = std::function<double()>;
  using BackwardFn = std::function<void(const Tensor& loss)>;

  Trainer(nn::Module& model, optim::Optimizer& opt, TrainerOptions options)
      : model_(model), opt_(opt), options_(std::move(options)) {
    const TrainerOptions& o = options_;
    GRAFT_CHECK(o.steps >= 1 && o.eval_every >= 0 && o.start_step >= 0 && o.end_step >= 0 && o.end_step <= o.steps &&
                    o.start_step <= (o.end_step > 0 ? o.end_step : o.steps),
                "Trainer", o.label, ": need steps >= 1, eval_every >= 0 and 0 <= start_step <= end_step <= steps, got steps ",
                o.steps, ", eval_every ", o.eval_every, ", start_step ", o.start_step, ", end_step ", o.end_step);
    GRAFT_CHECK(o.precision == DType::Float32 || is_reduced_float(o.precision), "Trainer", o.label,
                ": precision must be float32, bfloat16 or float16, got ", dtype_name(o.precision));
  }

  Trainer& batches(BatchFn f) { batches_ = std::move(f); return *this; }
  Trainer& loss(LossFn f) { loss_ = std::move(f); return *this; }
  Trainer& evaluate(EvalFn f) { evaluate_ = std::move(f); return *this; }
  // Replaces loss.backward() for a method that makes its own gradients (multi-task PCGrad or
  // GradNorm, transfer/multitask.hpp): f(loss) must leave the parameters' .grad set. Not with fp16,
  // whose GradScaler has to scale the loss that backward starts from.
  Trainer& backward(BackwardFn f) { backward_ = std::move(f); return *this; }
  Trainer& add_callback(std::shared_ptr<Callback> c) {
    GRAFT_CHECK(c != nullptr, "Trainer", options_.label, ": add_callback got a null callback");
    callbacks_.push_back(std::move(c));
    return *this;
  }
  // The learning rate of every step from a schedule (optim/schedule.hpp), as a callback (LrSchedule).
  template <class S>
  Trainer& schedule(S s);

  // Ends the loop after the current step; History::stopped_by says why.
  void request_stop(std::string reason) { stop_reason_ = std::move(reason); }

  nn::Module& model() { return model_; }
  optim::Optimizer& optimizer() { return opt_; }
  const TrainerOptions& options() const { return options_; }
  const History& history() const { return history_; }
  int64_t end_step() const { return options_.end_step > 0 ? options_.end_step : options_.steps; }
  // The step running now (0-based; inside batches() and loss(): progress = step() / options().steps).
  int64_t step() const { return step_; }

  History fit() {
    GRAFT_CHECK(bool(batches_) && bool(loss_), "Trainer", options_.label,
                ": give batches(step -> data::Batch) and loss(batch -> scalar) before fit()");
    GRAFT_CHECK(!backward_ || options_.precision != DType::Float16, "Trainer", options_.label,
                ": a custom backward() cannot run with float16 precision (its GradScaler scales the loss)");
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    history_ = History{};
    stop_reason_.clear();
    const std::vector<Tensor> params = model_.parameters();
    const Device dev = params.empty() ? kCPU : params[0].device();
    GradScaler scaler(GradScalerOptions{65536.0, 2.0, 0.5, 2000, options_.precision == DType::Float16});
    for (auto& c : callbacks_) c->on_fit_begin(*this);
    model_.train();
    const int64_t end = end_step();
    int64_t step = options_.start_step;
    while (step < end && stop_reason_.empty()) {
      const auto ts = Clock::now();
      step_ = step;
      for (auto& c : callbacks_) c->on_step_begin(*this, step);
      data::Batch b = batches_(step);
      GRAFT_CHECK(b.inputs.defined(), "Trainer", options_.label, ": batches(", step, ") returned no inputs");
      b.inputs = b.inputs.to(dev);
      if (b.labels.defined()) b.labels = b.labels.to(dev);
      opt_.zero_grad();
      Tensor loss;
      {
        std::optional<AutocastGuard> amp;
        if (is_reduced_float(options_.precision)) amp.emplace(options_.precision, dev.type);
        loss = loss_(b);
      }
      GRAFT_CHECK(loss.defined() && loss.numel() == 1, "Trainer", options_.label, ": loss(batch) at step ", step,
                  " must return a scalar, got ", loss.defined() ? loss.shape().str() : "an undefined tensor");
      check_finite_loss(loss, step, options_.label + " loss");
      if (backward_)
        backward_(loss);
      else
        scaler.scale(loss).backward();
      scaler.unscale_(opt_);  // a no-op without the scaler
      if (!scaler.enabled() || !scaler.found_inf(opt_)) check_finite_grads(model_, step);
      scaler.step(opt_);
      scaler.update();
      const double loss_value = loss.item();
      history_.losses.push_back(loss_value);
      ++step;
      history_.steps_done = step;
      history_.train_seconds += std::chrono::duration<double>(Clock::now() - ts).count();
      for (auto& c : callbacks_) c->on_step_end(*this, step, loss_value);
      const bool due = (options_.eval_every > 0 && step % options_.eval_every == 0) || step == options_.steps;
      if (evaluate_ && due) {
        const EvalPoint e{step, evaluate_(), history_.train_seconds};
        history_.evals.push_back(e);
        for (auto& c : callbacks_) c->on_evaluate(*this, e);
      }
    }
    history_.steps_done = step;
    history_.stopped_by = stop_reason_;
    history_.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    for (auto& c : callbacks_) c->on_fit_end(*this, history_);
    return history_;
  }

 private:
  nn::Module& model_;
  optim::Optimizer& opt_;
  TrainerOptions options_;
  BatchFn batches_;
  LossFn loss_;
  EvalFn evaluate_;
  BackwardFn backward_;
  std::vector<std::shared_ptr<Callback>> callbacks_;
  int64_t step_ = 0;
  History history_;
  std::string stop_reason_;
};

// Sets every group's lr from a schedule before each step (lr = initial_lr * factor(step)).
class LrSchedule : public Callback {
 public:
  explicit LrSchedule(std::shared_ptr<const optim::Schedule> s) : schedule_(std::move(s)) {
    GRAFT_CHECK(schedule_ != nullptr, "LrSchedule", "null schedule");
  }
  void on_step_begin(Trainer& t, int64_t step) override { schedule_->apply(t.optimizer(), step); }

 private:
  std::shared_ptr<const optim::Schedule> schedule_;
};

template <class S>
Trainer& Trainer::schedule(S s) {
  static_assert(std::is_base_of_v<optim::Schedule, S>, "Trainer::schedule takes an optim::Schedule");
  return add_callback(std::make_shared<LrSchedule>(std::make_shared<S>(std::move(s))));
}

// A line every `every` steps and at every evaluation: "<label> step 100/300 loss 0.1234 lr 0.001".
class LogEvery : public Callback {
 public:
  explicit LogEvery(int64_t every, std::FILE* out = stderr) : every_(every), out_(out) {
    GRAFT_CHECK(every >= 1 && out != nullptr, "LogEvery", "every must be >= 1 and out a stream, got every ", every);
  }
  void on_step_end(Trainer& t, int64_t done, double loss) override {
    if (done % every_ != 0) return;
    const auto& groups = t.optimizer().param_groups();
    std::fprintf(out_, "%s step %lld/%lld loss %.6g lr %.6g\n", t.options().label.c_str(), (long long)done,
                 (long long)t.options().steps, loss, groups.empty() ? 0.0 : groups[0].lr);
  }
  void on_evaluate(Trainer& t, const EvalPoint& e) override {
    std::fprintf(out_, "%s step %lld/%lld eval %.6g (%.1f s training)\n", t.options().label.c_str(),
                 (long long)e.step, (long long)t.options().steps, e.metric, e.train_seconds);
  }

 private:
  int64_t every_;
  std::FILE* out_;
};

// Stops when the evaluated metric (higher is better) has not improved by more than min_delta for
// `patience` evaluations in a row. restore_best: the model's state at the best evaluation is put back
// when the fit ends (parameters and buffers; the optimizer keeps its last state).
class EarlyStopping : public Callback {
 public:
  explicit EarlyStopping(int64_t patience, double min_delta = 0.0, bool restore_best = false)
      : patience_(patience), min_delta_(min_delta), restore_best_(restore_best) {
    GRAFT_CHECK(patience >= 1 && min_delta >= 0.0, "EarlyStopping", "need patience >= 1 and min_delta >= 0, got ",
                patience, " and ", min_delta);
  }
  void on_fit_begin(Trainer&) override {
    best_.reset();
    best_step_ = 0;
    bad_ = 0;
    best_state_.clear();
  }
  void on_evaluate(Trainer& t, const EvalPoint& e) override {
    if (!best_ || e.metric > *best_ + min_delta_) {
      best_ = e.metric;
      best_step_ = e.step;
      bad_ = 0;
      if (restore_best_) {
        best_state_.clear();
        for (auto& [name, v] : t.model().state_dict()) best_state_.emplace_back(name, v.clone());
      }
      return;
    }
    if (++bad_ >= patience_)
      t.request_stop(detail::concat("early stopping at step ", e.step, ": no improvement over ", *best_, " (step ",
                                    best_step_, ") for ", bad_, " evaluations"));
  }
  void on_fit_end(Trainer& t, const History&) override {
    if (!restore_best_ || best_state_.empty()) return;
    nn::StateDict sd;
    for (auto& [name, v] : best_state_) sd.emplace_back(name, v);
    t.model().load_state_dict(sd);
  }
  std::optional<double> best() const { return best_; }
  int64_t best_step() const { return best_step_; }

 private:
  int64_t patience_;
  double min_delta_;
  bool restore_best_;
  std::optional<double> best_;
  int64_t best_step_ = 0, bad_ = 0;
  std::vector<std::pair<std::string, Tensor>> best_state_;
};

// train::save_checkpoint (model, optimizer, step, epoch, the default generator) every `every` steps
// and when the fit ends (at end_step, or where a callback stopped it). metadata() adds keys to each
// file (e.g. the run's options, for a resume to check). steps_per_epoch gives the epoch recorded.
class CheckpointEvery : public Callback {
 public:
  using MetadataFn = std::function<std::map<std::string, std::string>(Trainer&)>;
  CheckpointEvery(std::string path, int64_t every, MetadataFn metadata = {}, int64_t steps_per_epoch = 0)
      : path_(std::move(path)), every_(every), metadata_(std::move(metadata)), steps_per_epoch_(steps_per_epoch) {
    GRAFT_CHECK(!path_.empty() && every >= 0 && steps_per_epoch >= 0, "CheckpointEvery",
                "need a path, every >= 0 (0: only at the end) and steps_per_epoch >= 0, got '", path_, "', ", every, ", ",
                steps_per_epoch);
  }
  void on_step_end(Trainer& t, int64_t done, double) override {
    if (every_ > 0 && done % every_ == 0) save(t, done);
  }
  void on_fit_end(Trainer& t, const History& h) override {
    if (h.steps_done != last_saved_) save(t, h.steps_done);
  }
  int64_t last_saved() const { return last_saved_; }

 private:
  void save(Trainer& t, int64_t done) {
    const int64_t epoch = steps_per_epoch_ > 0 ? done / steps_per_epoch_ : 0;
    save_checkpoint(path_, t.model(), t.optimizer(), {done, epoch}, default_generator(),
                    metadata_ ? metadata_(t) : std::map<std::string, std::string>{});
    last_saved_ = done;
  }
  std::string path_;
  int64_t every_;
  MetadataFn metadata_;
  int64_t steps_per_epoch_;
  int64_t last_saved_ = -1;
};

// Any function as a callback at the end of each step (a progress bar, a custom log).
class OnStepEnd : public Callback {
 public:
  explicit OnStepEnd(std::function<void(Trainer&, int64_t, double)> f) : f_(std::move(f)) {}
  void on_step_end(Trainer& t, int64_t done, double loss) override { f_(t, done, loss); }

 private:
  std::function<void(Trainer&, int64_t, double)> f_;
};

// ---- the pieces a classifier's run is made of ---------------------------------------------------

// batches(step) = plan[step]'s rows of s.
inline Trainer::BatchFn batches_from(const LabelledSet& s, std::vector<std::vector<int64_t>> plan) {
  return [&s, plan = std::move(plan)](int64_t step) {
    GRAFT_CHECK(step >= 0 && step < int64_t(plan.size()), "batches_from", "step ", step, " is past the plan's ",
                plan.size(), " batches");
    return take_batch(s, plan[size_t(step)]);
  };
}

// loss(batch) = cross_entropy(forward(inputs), labels).
inline Trainer::LossFn cross_entropy_loss(std::function<Tensor(const Tensor&)> forward) {
  return [forward = std::move(forward)](const data::Batch& b) { return cross_entropy(forward(b.inputs), b.labels); };
}

// The device of a model's parameters (the CPU for a model without any).
inline Device device_of(nn::Module& model) {
  const std::vector<Tensor> params = model.parameters();
  return params.empty() ? kCPU : params[0].device();
}

inline double accuracy(const Tensor& logits, const Tensor& y) {
  GRAFT_CHECK(logits.dim() == 2 && y.dim() == 1 && logits.size(0) == y.size(0), "accuracy",
              "expected logits [N, C] and labels [N], got ", logits.shape().str(), " and ", y.shape().str());
  const Tensor pred = argmax(logits.cpu(), 1);
  const Tensor yc = y.cpu().contiguous();
  const int64_t* p = pred.data<int64_t>();
  const int64_t* t = yc.data<int64_t>();
  int64_t ok = 0;
  for (int64_t i = 0; i < y.numel(); ++i) ok += p[i] == t[i];
  return double(ok) / double(std::max<int64_t>(1, y.numel()));
}

// Eval-mode accuracy of fn (inputs -> logits) on the set, batch by batch on the model's device, no
// graph, under autocast for a reduced precision; restores training mode.
inline double accuracy(nn::Module& model, const std::function<Tensor(const Tensor&)>& fn, const LabelledSet& s,
                       int64_t batch_size = 100, DType precision = DType::Float32) {
  GRAFT_CHECK(batch_size >= 1, "accuracy", "batch_size must be >= 1, got ", batch_size);
  const bool was_training = model.is_training();
  const Device dev = device_of(model);
  model.eval();
  NoGradGuard no_grad;
  std::optional<AutocastGuard> amp;
  if (is_reduced_float(precision)) amp.emplace(precision, dev.type);
  std::vector<Tensor> logits;
  for (int64_t start = 0; start < s.size(); start += batch_size)
    logits.push_back(fn(s.x.narrow(0, start, std::min(batch_size, s.size() - start)).to(dev)).to(DType::Float32).cpu());
  if (was_training) model.train();
  return accuracy(cat(logits, 0), s.y);
}

inline int64_t count_trainable(nn::Module& model) {
  int64_t n = 0;
  for (const Tensor& p : model.parameters())
    if (p.requires_grad()) n += p.numel();
  return n;
}

inline int64_t count_parameters(nn::Module& model) {
  int64_t n = 0;
  for (const Tensor& p : model.parameters()) n += p.numel();
  return n;
}

// The running-statistics momentum of every BatchNorm2d in the model (PyTorch's default is 0.1;
// checkpoints converted from TensorFlow often carry 0.01, which leaves the statistics of the old data
// for thousands of steps).
inline void set_batchnorm_momentum(nn::Module& model, double momentum) {
  GRAFT_CHECK(momentum > 0.0 && momentum <= 1.0, "set_batchnorm_momentum", "momentum must be in (0, 1], got ", momentum);
  for (auto& [name, mod] : model.named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(mod)) bn->options.momentum = momentum;
}

// ---- the classifier recipe ---------------------------------------------------------------------

struct ClassifierRecipe {
  int64_t steps = 300;        // optimizer steps
  int64_t batch_size = 32;
  LastBatch last_batch = LastBatch::Keep;
  int64_t warmup_steps = 10;  // linear warmup, then cosine to 0 at `steps`
  int64_t eval_every = 25;    // held-out accuracy every this many steps (and at the end)
  double lr = 1e-3;
  double weight_decay = 0.01;  // AdamW's decoupled decay
  uint64_t seed = 0;           // batch order
  DType precision = DType::Float32;
  std::string label = "train";
};

// `steps` AdamW steps of fn (inputs -> logits) over the model's trainable parameters (or `groups`),
// cosine schedule with linear warmup, cross-entropy on batch_plan(train.size(), steps, batch_size,
// seed, last_batch)'s batches, accuracy on `test` every eval_every steps and at the end.
inline History fit_classifier(nn::Module& model, const std::function<Tensor(const Tensor&)>& fn,
                              const LabelledSet& train, const LabelledSet& test, const ClassifierRecipe& r,
                              std::vector<optim::ParamGroup> groups = {},
                              const std::vector<std::shared_ptr<Callback>>& callbacks = {}) {
  if (groups.empty()) {
    std::vector<Tensor> trainable;
    for (const Tensor& p : model.parameters())
      if (p.requires_grad()) trainable.push_back(p);
    GRAFT_CHECK(!trainable.empty(), "fit_classifier", r.label, ": the model has no trainable parameters");
    groups.push_back({"all", trainable, r.lr});
  }
  optim::AdamW opt(std::move(groups), r.lr, {}, 1e-8, r.weight_decay);
  Trainer t(model, opt, {.steps = r.steps, .eval_every = r.eval_every, .precision = r.precision, .label = r.label});
  t.batches(batches_from(train, batch_plan(train.size(), r.steps, r.batch_size, r.seed, r.last_batch)))
      .loss(cross_entropy_loss(fn))
      .evaluate([&] { return accuracy(model, fn, test, 100, r.precision); })
      .schedule(optim::CosineWithWarmup(r.warmup_steps, r.steps));
  for (const auto& c : callbacks) t.add_callback(c);
  return t.fit();
}

}  // namespace graft::train
