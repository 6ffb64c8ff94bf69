// tests/test_trainer.cpp - graft/train/trainer.hpp: batch plans (keep / drop / balance the last
// batch), the Trainer loop step for step against a hand-written loop, the callback order, early
// stopping (with the best weights restored), checkpoints a resumed Trainer continues from bit for bit,
// the classifier recipe learning a separable problem, and the errors bad arguments get.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "graft/nn.hpp"
#include "graft/optim/adam.hpp"
#include "graft/optim/schedule.hpp"
#include "graft/optim/sgd.hpp"
#include "graft/train/checkpoint.hpp"
#include "graft/train/trainer.hpp"
#include "harness.hpp"

namespace {
using namespace graft;
using graft_test::require_error;

std::shared_ptr<nn::Sequential> trainer_mlp(uint64_t seed, double dropout = 0.0) {
  manual_seed(seed);
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(std::make_shared<nn::Linear>(5, 16));
  net->push_back(std::make_shared<nn::ReLU>());
  if (dropout > 0) net->push_back(std::make_shared<nn::Dropout>(dropout));
  net->push_back(std::make_shared<nn::Linear>(16, 3));
  return net;
}

// Three Gaussian blobs in 5-D, 20 examples each, labels 0..2.
train::LabelledSet trainer_blobs(int64_t per_class, uint64_t seed) {
  Generator g(seed);
  std::vector<float> x;
  std::vector<int64_t> y;
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < per_class; ++i) {
      for (int64_t d = 0; d < 5; ++d) x.push_back(float((d == c ? 3.0 : 0.0) + g.normal()));
      y.push_back(c);
    }
  return {from_vector(x, {3 * per_class, 5}), from_vector(y, {3 * per_class})};
}

std::vector<float> trainer_flat_params(nn::Module& m) {
  std::vector<float> out;
  for (const Tensor& p : m.parameters())
    for (double v : p.to_vector()) out.push_back(float(v));
  return out;
}

}  // namespace

TEST_CASE("batch_plan: keep, drop and balance an epoch's last batch", "[trainer]") {
  const auto keep = train::batch_plan(100, 8, 32, 7, train::LastBatch::Keep);
  const auto drop = train::batch_plan(100, 6, 32, 7, train::LastBatch::Drop);
  const auto bal = train::batch_plan(100, 8, 32, 7, train::LastBatch::Balance);
  std::vector<size_t> ks, ds, bs;
  for (const auto& b : keep) ks.push_back(b.size());
  for (const auto& b : drop) ds.push_back(b.size());
  for (const auto& b : bal) bs.push_back(b.size());
  CHECK(ks == std::vector<size_t>{32, 32, 32, 4, 32, 32, 32, 4});
  CHECK(ds == std::vector<size_t>{32, 32, 32, 32, 32, 32});
  CHECK(bs == std::vector<size_t>{25, 25, 25, 25, 25, 25, 25, 25});
  // Every mode walks the same permutation per epoch: Generator(seed + epoch).
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    Generator gen(7 + uint64_t(epoch));
    const std::vector<int64_t> order = data::random_permutation(100, gen);
    std::vector<int64_t> k, d, b;
    for (size_t i = 0; i < 4; ++i) k.insert(k.end(), keep[4 * epoch + i].begin(), keep[4 * epoch + i].end());
    for (size_t i = 0; i < 3; ++i) d.insert(d.end(), drop[3 * epoch + i].begin(), drop[3 * epoch + i].end());
    for (size_t i = 0; i < 4; ++i) b.insert(b.end(), bal[4 * epoch + i].begin(), bal[4 * epoch + i].end());
    CHECK(k == order);
    CHECK(b == order);
    CHECK(d == std::vector<int64_t>(order.begin(), order.begin() + 96));
  }
  CHECK(train::batch_plan(10, 3, 3, 0, train::LastBatch::Balance)[0].size() == 3);  // 10 in 4 batches: 3 3 2 2
  CHECK(train::epoch_batch_sizes(10, 3, train::LastBatch::Balance) == std::vector<int64_t>{3, 3, 2, 2});
  CHECK(train::batches_per_epoch(100, 32, train::LastBatch::Drop) == 3);
  CHECK(train::batches_per_epoch(100, 32, train::LastBatch::Keep) == 4);
  CHECK(train::batch_plan(5, 0, 2, 0).empty());
  require_error([] { train::batch_plan(20, 5, 32, 0, train::LastBatch::Drop); },
                {"LastBatch::Drop with 20 examples and batch_size 32 leaves no batch"});
  require_error([] { train::batch_plan(0, 5, 32, 0); }, {"need n >= 1", "n = 0"});
  require_error([] { train::parse_last_batch("last"); }, {"keep, drop or balance", "'last'"});
  CHECK(train::parse_last_batch("balance") == train::LastBatch::Balance);
}

TEST_CASE("Trainer: the same losses and weights as the loop written out", "[trainer]") {
  const train::LabelledSet data = trainer_blobs(10, 3);
  const auto plan = train::batch_plan(data.size(), 12, 8, 5, train::LastBatch::Drop);

  // By hand: schedule, zero_grad, loss, backward, step.
  auto a = trainer_mlp(11);
  optim::AdamW opt_a(a->parameters(), 1e-2);
  const optim::CosineWithWarmup sched(3, 12);
  std::vector<double> losses_a;
  a->train();
  for (int64_t s = 0; s < 12; ++s) {
    const data::Batch b = train::take_batch(data, plan[size_t(s)]);
    sched.apply(opt_a, s);
    opt_a.zero_grad();
    const Tensor loss = cross_entropy(a->forward(b.inputs), b.labels);
    loss.backward();
    opt_a.step();
    losses_a.push_back(loss.item());
  }

  auto m = trainer_mlp(11);
  optim::AdamW opt_b(m->parameters(), 1e-2);
  train::Trainer t(*m, opt_b, {.steps = 12, .label = "mlp"});
  t.batches(train::batches_from(data, plan))
      .loss(train::cross_entropy_loss([&](const Tensor& x) { return m->forward(x); }))
      .schedule(optim::CosineWithWarmup(3, 12));
  const train::History h = t.fit();
  CHECK(h.losses == losses_a);
  CHECK(trainer_flat_params(*m) == trainer_flat_params(*a));
  CHECK(h.steps_done == 12);
  CHECK(h.stopped_by.empty());
  CHECK(h.evals.empty());  // no evaluate() given
  CHECK(h.train_seconds <= h.seconds);
}

TEST_CASE("Trainer: a custom backward makes the gradients; step() is the running step", "[trainer]") {
  const train::LabelledSet data = trainer_blobs(10, 4);
  const auto plan = train::batch_plan(data.size(), 6, 8, 2, train::LastBatch::Drop);
  auto run = [&](double grad_scale, std::vector<int64_t>* seen) {
    auto m = trainer_mlp(5);
    optim::SGD opt(m->parameters(), 0.1);
    train::Trainer t(*m, opt, {.steps = 6, .label = "mlp"});
    t.batches(train::batches_from(data, plan)).loss([&](const data::Batch& b) {
      if (seen) seen->push_back(t.step());
      return cross_entropy(m->forward(b.inputs), b.labels);
    });
    // The gradient of grad_scale * loss (plain SGD: the same as lr * grad_scale).
    if (grad_scale != 1.0) t.backward([&](const Tensor& loss) { mul(loss, grad_scale).backward(); });
    t.fit();
    return trainer_flat_params(*m);
  };
  std::vector<int64_t> steps;
  const auto plain = run(1.0, &steps);
  CHECK(steps == std::vector<int64_t>{0, 1, 2, 3, 4, 5});
  const auto doubled = run(2.0, nullptr);
  // By hand: SGD with lr 0.2 on the plain loss.
  auto m = trainer_mlp(5);
  optim::SGD opt(m->parameters(), 0.2);
  for (int64_t s = 0; s < 6; ++s) {
    const data::Batch b = train::take_batch(data, plan[size_t(s)]);
    opt.zero_grad();
    cross_entropy(m->forward(b.inputs), b.labels).backward();
    opt.step();
  }
  const auto by_hand = trainer_flat_params(*m);
  REQUIRE(doubled.size() == by_hand.size());
  double worst = 0;
  for (size_t i = 0; i < by_hand.size(); ++i) worst = std::max(worst, double(std::abs(doubled[i] - by_hand[i])));
  CHECK(worst < 1e-6);  // float32: 2 * g * 0.1 and g * 0.2 round differently
  CHECK(doubled != plain);
  auto net = trainer_mlp(5);
  optim::SGD o(net->parameters(), 0.1);
  train::Trainer t(*net, o, {.steps = 2, .precision = DType::Float16, .label = "fp16"});
  t.batches(train::batches_from(data, plan)).loss([&](const data::Batch& b) { return cross_entropy(net->forward(b.inputs), b.labels); });
  t.backward([](const Tensor& loss) { loss.backward(); });
  require_error([&] { t.fit(); }, {"fp16: a custom backward() cannot run with float16"});
}

TEST_CASE("Trainer: callbacks run in order; evaluation every eval_every steps and at the end", "[trainer]") {
  struct Recorder : train::Callback {
    std::vector<std::string> events;
    void on_fit_begin(train::Trainer&) override { events.push_back("begin"); }
    void on_step_begin(train::Trainer&, int64_t s) override { events.push_back("step " + std::to_string(s)); }
    void on_step_end(train::Trainer&, int64_t d, double) override { events.push_back("done " + std::to_string(d)); }
    void on_evaluate(train::Trainer&, const train::EvalPoint& e) override {
      events.push_back("eval " + std::to_string(e.step));
    }
    void on_fit_end(train::Trainer&, const train::History& h) override {
      events.push_back("end " + std::to_string(h.steps_done));
    }
  };
  const train::LabelledSet data = trainer_blobs(4, 1);
  auto m = trainer_mlp(2);
  optim::AdamW opt(m->parameters(), 1e-3);
  auto rec = std::make_shared<Recorder>();
  int evals = 0;
  train::Trainer t(*m, opt, {.steps = 5, .eval_every = 2});
  t.batches(train::batches_from(data, train::batch_plan(data.size(), 5, 4, 0)))
      .loss(train::cross_entropy_loss([&](const Tensor& x) { return m->forward(x); }))
      .evaluate([&] { return double(++evals); })
      .add_callback(rec);
  const train::History h = t.fit();
  CHECK(rec->events == std::vector<std::string>{"begin", "step 0", "done 1", "step 1", "done 2", "eval 2", "step 2",
                                                "done 3", "step 3", "done 4", "eval 4", "step 4", "done 5", "eval 5",
                                                "end 5"});
  REQUIRE(h.evals.size() == 3);
  CHECK(h.evals[2].step == 5);
  CHECK(h.final_metric() == 3.0);
  CHECK(h.evals[0].train_seconds <= h.evals[2].train_seconds);
  CHECK(h.steps_to(0.6) == 4);  // 2 >= 0.6 * 3
  CHECK(h.first_reaching(2.0)->step == 4);
  CHECK(!h.first_reaching(3.5).has_value());
}

TEST_CASE("Trainer: early stopping stops on a plateau and restores the best weights", "[trainer]") {
  const train::LabelledSet data = trainer_blobs(4, 1);
  auto m = trainer_mlp(3);
  optim::AdamW opt(m->parameters(), 1e-2);
  // Scripted metric: best at the 2nd evaluation (step 2), then two without improvement.
  const std::vector<double> script = {0.5, 0.8, 0.8, 0.79, 0.9, 0.95};
  size_t k = 0;
  std::map<int64_t, std::vector<float>> weights_at;  // step -> parameters when evaluated
  struct Snapshot : train::Callback {
    std::map<int64_t, std::vector<float>>* out;
    void on_evaluate(train::Trainer& t, const train::EvalPoint& e) override {
      (*out)[e.step] = trainer_flat_params(t.model());
    }
  };
  auto snap = std::make_shared<Snapshot>();
  snap->out = &weights_at;
  auto stopper = std::make_shared<train::EarlyStopping>(/*patience=*/2, /*min_delta=*/0.0, /*restore_best=*/true);
  train::Trainer t(*m, opt, {.steps = 6, .eval_every = 1});
  t.batches(train::batches_from(data, train::batch_plan(data.size(), 6, 4, 0)))
      .loss(train::cross_entropy_loss([&](const Tensor& x) { return m->forward(x); }))
      .evaluate([&] { return script[k++]; })
      .add_callback(snap)
      .add_callback(stopper);
  const train::History h = t.fit();
  CHECK(h.steps_done == 4);
  CHECK(h.losses.size() == 4);
  CHECK(h.stopped_by.find("early stopping at step 4: no improvement over 0.8 (step 2) for 2 evaluations") !=
        std::string::npos);
  CHECK(stopper->best_step() == 2);
  CHECK(trainer_flat_params(*m) == weights_at.at(2));
  CHECK(trainer_flat_params(*m) != weights_at.at(4));
  require_error([] { train::EarlyStopping(0); }, {"patience >= 1"});
}

TEST_CASE("Trainer: a run stopped at end_step and resumed from its checkpoint ends bit for bit as one run",
          "[trainer]") {
  const train::LabelledSet data = trainer_blobs(6, 4);
  const auto plan = train::batch_plan(data.size(), 8, 5, 9, train::LastBatch::Balance);
  auto run = [&](nn::Module& m, optim::Optimizer& opt, int64_t start, int64_t end,
                 std::shared_ptr<train::Callback> extra) {
    train::Trainer t(m, opt, {.steps = 8, .start_step = start, .end_step = end, .label = "resume"});
    t.batches(train::batches_from(data, plan))
        .loss(train::cross_entropy_loss([&](const Tensor& x) { return m.forward(x); }))
        .schedule(optim::CosineWithWarmup(2, 8));
    if (extra) t.add_callback(extra);
    return t.fit();
  };
  // Dropout draws from the default generator, which the checkpoint carries.
  auto whole = trainer_mlp(5, 0.25);
  optim::AdamW opt_w(whole->parameters(), 5e-3);
  manual_seed(77);
  const train::History hw = run(*whole, opt_w, 0, 0, nullptr);

  const std::string path = (std::filesystem::temp_directory_path() / "graft_test_trainer_resume.safetensors").string();
  auto first = trainer_mlp(5, 0.25);
  optim::AdamW opt_f(first->parameters(), 5e-3);
  manual_seed(77);
  auto saver = std::make_shared<train::CheckpointEvery>(
      path, 0, [](train::Trainer& t) { return std::map<std::string, std::string>{{"label", t.options().label}}; });
  const train::History h1 = run(*first, opt_f, 0, 5, saver);
  CHECK(h1.steps_done == 5);
  CHECK(saver->last_saved() == 5);

  auto second = trainer_mlp(99, 0.25);  // other weights: the checkpoint replaces them
  optim::AdamW opt_s(second->parameters(), 5e-3);
  manual_seed(1234);  // another generator state: the checkpoint replaces it too
  const train::TrainProgress p = train::load_checkpoint(path, *second, opt_s, default_generator());
  CHECK(p.step == 5);
  const train::History h2 = run(*second, opt_s, p.step, 0, nullptr);
  std::vector<double> joined = h1.losses;
  joined.insert(joined.end(), h2.losses.begin(), h2.losses.end());
  CHECK(joined == hw.losses);
  CHECK(trainer_flat_params(*second) == trainer_flat_params(*whole));
  std::filesystem::remove(path);
}

TEST_CASE("fit_classifier learns separable blobs; LogEvery prints steps and evaluations", "[trainer]") {
  const train::LabelledSet tr = trainer_blobs(20, 10), te = trainer_blobs(20, 20);
  auto m = trainer_mlp(6);
  std::FILE* log = std::tmpfile();
  REQUIRE(log != nullptr);
  const train::History h = train::fit_classifier(
      *m, [&](const Tensor& x) { return m->forward(x); }, tr, te,
      {.steps = 60, .batch_size = 16, .last_batch = train::LastBatch::Drop, .warmup_steps = 5, .eval_every = 20,
       .lr = 1e-2, .label = "blobs"},
      {}, {std::make_shared<train::LogEvery>(30, log)});
  REQUIRE(h.evals.size() == 3);
  CHECK(h.final_metric() > 0.9);
  CHECK(h.losses.back() < h.losses.front());
  CHECK(h.final_metric() == train::accuracy(*m, [&](const Tensor& x) { return m->forward(x); }, te));
  std::rewind(log);
  std::string text;
  char buf[256];
  while (std::fgets(buf, sizeof buf, log)) text += buf;
  std::fclose(log);
  CHECK(text.find("blobs step 30/60 loss ") != std::string::npos);
  CHECK(text.find("blobs step 60/60 eval ") != std::string::npos);
  CHECK(text.find("blobs step 20/60 eval ") != std::string::npos);
  CHECK(train::count_trainable(*m) == 5 * 16 + 16 + 16 * 3 + 3);
  (*m)[0]->parameters()[0].set_requires_grad(false);
  CHECK(train::count_trainable(*m) == 16 + 16 * 3 + 3);
  CHECK(train::count_parameters(*m) == 5 * 16 + 16 + 16 * 3 + 3);
}

TEST_CASE("Trainer: bad arguments are refused naming them", "[trainer]") {
  const train::LabelledSet data = trainer_blobs(4, 1);
  auto m = trainer_mlp(7);
  optim::AdamW opt(m->parameters(), 1e-3);
  require_error([&] { train::Trainer(*m, opt, {.steps = 0, .label = "x"}); }, {"x: need steps >= 1", "got steps 0"});
  require_error([&] { train::Trainer(*m, opt, {.steps = 5, .start_step = 6}); }, {"start_step <= end_step <= steps"});
  require_error([&] { train::Trainer(*m, opt, {.steps = 5, .precision = DType::Int64}); },
                {"precision must be float32, bfloat16 or float16", "int64"});
  train::Trainer t(*m, opt, {.steps = 2, .label = "mlp"});
  require_error([&] { t.fit(); }, {"mlp: give batches", "before fit()"});
  t.batches(train::batches_from(data, train::batch_plan(data.size(), 2, 4, 0)))
      .loss([&](const data::Batch& b) { return m->forward(b.inputs); });  // logits, not a scalar
  require_error([&] { t.fit(); }, {"loss(batch) at step 0 must return a scalar", "[4, 3]"});
  t.loss([&](const data::Batch& b) { return mul(cross_entropy(m->forward(b.inputs), b.labels), std::numeric_limits<double>::infinity()); });
  require_error([&] { t.fit(); }, {"training stopped at step 0", "mlp loss is inf"});
  require_error([&] { train::batches_from(data, {{0, 1}})(1); }, {"step 1 is past the plan's 1 batches"});
  require_error([&] { train::take_batch(data, {0, 12}); }, {"row 12 is out of range for 12 examples"});
  require_error([&] { train::set_batchnorm_momentum(*m, 0.0); }, {"momentum must be in (0, 1]"});
  require_error([&] { t.add_callback(nullptr); }, {"null callback"});
}

TEST_CASE("Trainer: bf16 autocast steps track the float32 run", "[trainer]") {
  const train::LabelledSet data = trainer_blobs(8, 2);
  const auto plan = train::batch_plan(data.size(), 4, 8, 1);
  auto losses = [&](DType precision) {
    auto m = trainer_mlp(8);
    optim::AdamW opt(m->parameters(), 1e-3);
    train::Trainer t(*m, opt, {.steps = 4, .precision = precision});
    t.batches(train::batches_from(data, plan))
        .loss(train::cross_entropy_loss([&](const Tensor& x) { return m->forward(x); }));
    return t.fit().losses;
  };
  const std::vector<double> f32 = losses(DType::Float32), bf16 = losses(DType::BFloat16);
  REQUIRE(bf16.size() == 4);
  for (size_t i = 0; i < 4; ++i) CHECK(std::abs(bf16[i] - f32[i]) <= graft_test::kTolTrainBF16.atol + graft_test::kTolTrainBF16.rtol * std::abs(f32[i]));
}
