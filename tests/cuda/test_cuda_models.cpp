// [cuda] The model families on the GPU against the same models on the CPU (issue 11, "Models on the
// GPU"): ResNet-18, EfficientNet-Lite0, ViT-Ti/16 and a small MiniLM-shaped BERT, each built on the CPU
// from one seed and moved with Module::to(cuda(0)) (every parameter and buffer, in place), then
//   eval   the logits of an eval-mode forward (running statistics)               float32 and float64
//   train  a training-mode forward + backward: the loss                          float32 and float64
//          every parameter's gradient                       float64 (and float32: ViT, BERT, see below)
//   steps  3 optimizer steps (SGD with momentum for the convolutional nets, AdamW for the
//          transformers): each step's loss, every parameter's total change, the
//          BatchNorm running statistics after them                                         float64
// plus a ResNet-50 eval forward at 224x224 and the device mismatches that must throw.
//
// Why the backward of the ReLU nets is compared in float64: a ReLU whose input is within the rounding
// error of 0 takes the other branch on the other device, and its whole gradient goes another way.
// Measured with these recipes on the CPU (scalar kernels against AVX-512 ones, two float32 summation
// orders): in ResNet-18 one element of layer3.0.bn1's output was -2.4e-6 on one path and +4.7e-6 on the
// other; that one ReLU moved layer3.0.bn1.bias's gradient by 9% and the stem's weight gradient by 1.6%
// (BatchNorm's batch statistics spread it over the channel), and after one SGD step the losses differed
// by 0.6%. Such a near-tie is certain somewhere in float32 (some 10^5 ReLU inputs, errors ~1e-6) and
// about 10^-9 as likely in float64, so float64 is where the backward and the steps of a whole model can
// be compared element by element. ViT's and BERT's activations (GELU, tanh, softmax, LayerNorm) are
// smooth, so their float32 gradients are compared too. Every op's float32 backward is compared on its
// own in the op tests.
//
// Random masks differ by design between the devices (the CPU draws dropout serially from a Generator,
// the GPU from Philox, ops/dropout.hpp), so every dropout and drop-connect rate is 0 here: the
// training-mode runs are then deterministic functions of the weights, comparable element by element.
// Matmul precision is the default "highest" (exact float32, no TF32).
//
// Each comparison prints its worst |gpu - cpu| / allowed, so a GPU run shows the margin left.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "graft/models/bert.hpp"
#include "graft/models/efficientnet_lite.hpp"
#include "graft/models/resnet.hpp"
#include "graft/models/vit.hpp"
#include "graft/optim/adam.hpp"
#include "graft/optim/sgd.hpp"
#include "op_harness.hpp"

using namespace graft;

namespace {

// The model-level tolerances, stated once. A model is not one op: its GPU run sums every GEMM,
// convolution and reduction in another order than the CPU, and the rounding of ~20 layers compounds,
// forward and then backward. A dot product of length K carries a relative rounding error of about
// sqrt(K) u per layer (K up to 4608 here; float32 u = 6e-8: 4e-6), BatchNorm and LayerNorm divide by
// batch statistics, and cancelling sums (a BatchNorm's dweight, a loss gradient summed over the batch)
// leave elements far smaller than the errors of their terms. So an element is judged against the
// scale of the quantity it belongs to:
//   |gpu - cpu| <= atol * scale + rtol * |cpu|
// where scale is the largest |cpu| of the group compared (the logits; all the model's gradients; all
// its parameter changes; all its running statistics; the losses). A wrong kernel (a transposed tile,
// a missed tail, a lost accumulation) is off by the scale itself.
// float32: measured on the CPU with these recipes (scalar against AVX-512 kernels, two float32
// summation orders), the worst element of the float32 comparisons made here used 0.55% of this
// allowance (ViT-Ti's gradients), leaving room for the GPU's other orders (tree reductions, split-K).
constexpr graft_test::Tol kModelTolF32{1e-4, 1e-3};
// float64: u = 1.1e-16, the same reasoning. float64 has one CPU path, so each recipe was run again
// from weights perturbed by 1e-13 relative (some 1000 ulps, more than another summation order
// leaves): the worst element used 9% of this allowance (ViT-Ti's AdamW steps; EfficientNet-Lite0's
// SGD steps 7%), at 1e-14 a tenth of that.
constexpr graft_test::Tol kModelTolF64{1e-8, 1e-7};

// AdamW's eps in the transformer recipes: 1e-6, not the default 1e-8. AdamW divides each gradient by
// its own running magnitude, so an element whose gradient is a cancelling sum (a key projection's bias
// gradient is zero in exact arithmetic: softmax ignores a shift of all the scores of a query) turns
// the absolute rounding error of its terms into a relative error of its step: lr dg / (|g| + eps).
// eps caps that gain at lr / eps; with 1e-8 the perturbed float64 runs above moved some of ViT-Ti's
// steps by 1e-7 of themselves (the allowance's size), with 1e-6 by a tenth of that, while every real
// gradient (|g| >> 1e-6) still takes AdamW's normalized step.
constexpr double kAdamEps = 1e-6;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Every element of got against want (same names and shapes; CPU tensors), scale = the group's largest
// |want|; the tolerance of want's dtype.
void expect_model_close(const std::string& what, const NamedTensors& got, const NamedTensors& want) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  REQUIRE(!want.empty());
  const graft_test::Tol tol = want[0].second.dtype() == DType::Float64 ? kModelTolF64 : kModelTolF32;
  double scale = 0.0;
  for (const auto& [name, t] : want)
    if (t.defined())
      for (double v : t.to_vector()) scale = std::max(scale, std::fabs(v));
  std::string first_bad, worst_at;
  double worst = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& [name, w] = want[i];
    const Tensor& g = got[i].second;
    INFO(name);
    REQUIRE(got[i].first == name);
    REQUIRE(g.defined() == w.defined());
    if (!w.defined()) continue;
    REQUIRE(g.shape() == w.shape());
    REQUIRE(g.dtype() == w.dtype());
    const std::vector<double> a = g.to_vector(), e = w.to_vector();
    for (size_t k = 0; k < a.size(); ++k) {
      const double allowed = tol.atol * scale + tol.rtol * std::fabs(e[k]);
      const double diff = std::fabs(a[k] - e[k]);
      if (!(diff <= allowed) && first_bad.empty())  // NaN fails
        first_bad = graft::detail::concat(name, " element ", k, ": ", a[k], " vs ", e[k], " (|diff| ", diff,
                                          ", allowed ", allowed, ", group scale ", scale, ")");
      const double ratio = allowed > 0 ? diff / allowed : (diff == 0 ? 0.0 : INFINITY);
      if (!(ratio <= worst)) worst = ratio, worst_at = name;
    }
  }
  std::printf("  %-62s worst |gpu - cpu| / allowed = %.3g (%s)\n", what.c_str(), worst, worst_at.c_str());
  INFO(first_bad);
  CHECK(first_bad.empty());
}

NamedTensors one(const std::string& name, const Tensor& t) { return {{name, t}}; }
NamedTensors losses(const std::vector<Tensor>& v) {
  NamedTensors out;
  for (size_t i = 0; i < v.size(); ++i) out.emplace_back(v.size() == 1 ? "loss" : "step " + std::to_string(i + 1), v[i]);
  return out;
}

enum class Opt { Sgd, AdamW };

// One model recipe. make() builds the model (under manual_seed(seed)); logits(model, inputs) runs it
// on inputs already on the model's device and in its dtype.
struct ModelCase {
  std::string name;
  uint64_t seed = 0;
  std::function<nn::ModulePtr()> make;
  std::function<Tensor(nn::Module&, const std::vector<Tensor>&)> logits;
  std::vector<Tensor> inputs;  // CPU; floating ones are converted to the run's dtype
  Tensor targets;              // CPU int64 [B] (class indices)
  Opt opt = Opt::Sgd;
  double lr = 0.0;
  bool smooth = false;  // no ReLU-like kinks: float32 gradients are comparable (see the top)
};

// What one device's run of a recipe gives, every tensor copied back to the CPU.
struct ModelRun {
  Tensor eval_logits;
  Tensor train_loss;
  NamedTensors grads;  // of the training-mode forward + backward
  std::vector<Tensor> step_losses;
  NamedTensors changes;        // parameter after the steps - before
  NamedTensors running_stats;  // floating buffers after the steps
};

NamedTensors floating_buffers(nn::Module& m) {
  NamedTensors out;
  for (auto& [name, b] : m.named_buffers())
    if (is_floating(b.dtype())) out.emplace_back(name, b.cpu());
  return out;
}

// Builds the recipe's model from its seed, converts it to dt and moves it and the inputs to d, then
// runs eval, one training-mode forward + backward, and `steps` optimizer steps.
ModelRun run_model(const ModelCase& c, Device d, DType dt, int steps) {
  INFO(c.name << " on " << d << " in " << dtype_name(dt));
  manual_seed(c.seed);
  const nn::ModulePtr model = c.make();
  model->to(dt);
  model->to(d);
  for (const auto& [name, p] : model->named_parameters()) {
    INFO("parameter " << name);
    REQUIRE(p.device() == d);
    REQUIRE(p.dtype() == dt);
  }
  for (const auto& [name, b] : model->named_buffers()) {
    INFO("buffer " << name);
    REQUIRE(b.device() == d);
  }
  std::vector<Tensor> in;
  for (const Tensor& t : c.inputs) in.push_back((is_floating(t.dtype()) ? t.to(dt) : t).to(d));
  const Tensor targets = c.targets.to(d);
  ModelRun r;

  model->eval();
  {
    NoGradGuard no_grad;
    const Tensor logits = c.logits(*model, in);
    REQUIRE(logits.device() == d);
    r.eval_logits = logits.cpu();
  }

  model->train();
  const Tensor loss = cross_entropy(c.logits(*model, in), targets);
  REQUIRE(loss.device() == d);
  loss.backward();
  r.train_loss = loss.detach().cpu();
  for (const auto& [name, p] : model->named_parameters()) {
    INFO("gradient of " << name);
    if (p.grad().defined()) REQUIRE(p.grad().device() == d);
    r.grads.emplace_back(name, p.grad().defined() ? p.grad().cpu() : Tensor());
  }
  if (steps == 0) return r;

  NamedTensors before;
  for (const auto& [name, p] : model->named_parameters()) before.emplace_back(name, p.detach().cpu().clone());
  std::unique_ptr<optim::Optimizer> opt;
  if (c.opt == Opt::Sgd)
    opt = std::make_unique<optim::SGD>(model->parameters(), c.lr, /*momentum=*/0.9, /*dampening=*/0.0,
                                       /*weight_decay=*/1e-4);
  else
    opt = std::make_unique<optim::AdamW>(model->parameters(), c.lr, optim::Betas{}, kAdamEps, /*weight_decay=*/0.01);
  for (int s = 0; s < steps; ++s) {
    opt->zero_grad();
    const Tensor l = cross_entropy(c.logits(*model, in), targets);
    l.backward();
    opt->step();
    r.step_losses.push_back(l.detach().cpu());
  }
  const NamedTensors after = model->named_parameters();
  NoGradGuard no_grad;
  for (size_t i = 0; i < after.size(); ++i)
    r.changes.emplace_back(after[i].first, sub(after[i].second.detach().cpu(), before[i].second));
  r.running_stats = floating_buffers(*model);
  return r;
}

// The float32 results of `gpu` against `cpu` (see the top for which).
void expect_float32_runs_close(const ModelCase& c, const ModelRun& gpu, const ModelRun& cpu) {
  expect_model_close(c.name + ", float32: eval logits", one("logits", gpu.eval_logits), one("logits", cpu.eval_logits));
  expect_model_close(c.name + ", float32: training-mode loss", losses({gpu.train_loss}), losses({cpu.train_loss}));
  if (c.smooth) expect_model_close(c.name + ", float32: parameter gradients", gpu.grads, cpu.grads);
}
// Every float64 result of `gpu` against `cpu`.
void expect_float64_runs_close(const ModelCase& c, const ModelRun& gpu, const ModelRun& cpu) {
  const std::string n = c.name + ", float64: ";
  expect_model_close(n + "eval logits", one("logits", gpu.eval_logits), one("logits", cpu.eval_logits));
  expect_model_close(n + "training-mode loss", losses({gpu.train_loss}), losses({cpu.train_loss}));
  expect_model_close(n + "parameter gradients", gpu.grads, cpu.grads);
  expect_model_close(n + "loss of each optimizer step", losses(gpu.step_losses), losses(cpu.step_losses));
  expect_model_close(n + "parameter changes over the steps", gpu.changes, cpu.changes);
  if (!cpu.running_stats.empty())
    expect_model_close(n + "running statistics after the steps", gpu.running_stats, cpu.running_stats);
}

// Runs the recipe on the CPU and on GPU 0, in float32 (eval, one backward) and in float64 (with 3
// optimizer steps), and compares.
void check_model_on_gpu(const ModelCase& c) {
  std::printf("%s\n", c.name.c_str());
  expect_float32_runs_close(c, run_model(c, cuda_test::gpu(), DType::Float32, 0),
                            run_model(c, kCPU, DType::Float32, 0));
  expect_float64_runs_close(c, run_model(c, cuda_test::gpu(), DType::Float64, 3),
                            run_model(c, kCPU, DType::Float64, 3));
}

Tensor image_batch(int64_t batch, int64_t side, uint64_t seed) {
  Generator g(seed);
  return randn({batch, 3, side, side}, DType::Float32, g);
}
Tensor class_targets(int64_t batch, int64_t classes, uint64_t seed) {
  Generator g(seed);
  return randint(0, classes, {batch}, DType::Int64, g);
}
Tensor image_logits(nn::Module& m, const std::vector<Tensor>& in) { return m.forward(in[0]); }

// ResNet-18, 10 classes, 3 images of 72x72: stage sides 18, 18, 9, 5, 3 (odd sides for the kernels' tails).
ModelCase resnet18_case() {
  ModelCase c;
  c.name = "ResNet-18 [3, 3, 72, 72]";
  c.seed = 1801;
  c.make = [] { return models::resnet18(10); };
  c.logits = image_logits;
  c.inputs = {image_batch(3, 72, 1802)};
  c.targets = class_targets(3, 10, 1803);
  c.opt = Opt::Sgd;
  c.lr = 0.05;
  return c;
}

// EfficientNet-Lite0 (depthwise convolutions, ReLU6, TF "same" padding), 10 classes, 3 images of 72x72.
ModelCase lite0_case() {
  ModelCase c;
  c.name = "EfficientNet-Lite0 [3, 3, 72, 72]";
  c.seed = 2001;
  c.make = [] {
    models::EfficientNetLiteConfig cfg = models::efficientnet_lite_config(0, 10);
    cfg.dropout_rate = 0.0;       // random masks differ between devices (see the top)
    cfg.drop_connect_rate = 0.0;
    return std::make_shared<models::EfficientNetLite>(cfg);
  };
  c.logits = image_logits;
  c.inputs = {image_batch(3, 72, 2002)};
  c.targets = class_targets(3, 10, 2003);
  c.opt = Opt::Sgd;
  c.lr = 0.05;
  return c;
}

// ViT-Ti/16 (dim 192, depth 12, 3 heads) on 64x64 images: 16 patches + the class token, 10 classes.
ModelCase vit_tiny_case() {
  ModelCase c;
  c.name = "ViT-Ti/16 [2, 3, 64, 64]";
  c.seed = 3001;
  c.make = [] { return std::make_shared<models::VisionTransformer>(models::ViTConfig{64, 16, 3, 10, 192, 12, 3, 4.0}); };
  c.logits = image_logits;
  c.inputs = {image_batch(2, 64, 3002)};
  c.targets = class_targets(2, 10, 3003);
  c.opt = Opt::AdamW;
  c.lr = 1e-3;
  c.smooth = true;
  return c;
}

// MiniLM-shaped BERT (hidden 384, 12 heads of 32, intermediate 1536; 2 layers, a 1000-token vocabulary),
// random weights, a 3-class head on the pooler: 2 sequences of 37 tokens, the second padded after 26
// (attention mask 0, pad id 0), token types 0 then 1 from position 20.
ModelCase bert_case() {
  ModelCase c;
  c.name = "BERT (MiniLM-shaped, 2 layers) [2, 37]";
  c.seed = 4001;
  c.make = [] {
    models::BertConfig cfg = models::BertConfig::all_minilm_l6_v2();
    cfg.num_hidden_layers = 2;
    cfg.vocab_size = 1000;
    cfg.max_position_embeddings = 64;
    cfg.num_classes = 3;
    cfg.hidden_dropout_prob = 0.0;  // random masks differ between devices (see the top)
    cfg.attention_probs_dropout_prob = 0.0;
    return std::make_shared<models::BertModel>(cfg);
  };
  c.logits = [](nn::Module& m, const std::vector<Tensor>& in) {
    return static_cast<models::BertModel&>(m).logits(in[0], in[1], in[2]);
  };
  const int64_t B = 2, T = 37, real_second = 26;
  Generator g(4002);
  std::vector<int64_t> ids(size_t(B * T)), mask(size_t(B * T)), types(size_t(B * T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const bool real = b == 0 || t < real_second;
      const size_t i = size_t(b * T + t);
      ids[i] = real ? 1 + int64_t(g.next_u64() % 999) : 0;
      mask[i] = real ? 1 : 0;
      types[i] = t >= 20 && real ? 1 : 0;
    }
  c.inputs = {from_vector(ids, {B, T}), from_vector(mask, {B, T}), from_vector(types, {B, T})};
  c.targets = class_targets(B, 3, 4003);
  c.opt = Opt::AdamW;
  c.lr = 1e-3;
  c.smooth = true;
  return c;
}

}  // namespace

TEST_CASE("CUDA ResNet-18 matches the CPU: float32 logits and loss / float64 gradients and 3 SGD steps", "[cuda]") {
  check_model_on_gpu(resnet18_case());
}

TEST_CASE("CUDA EfficientNet-Lite0 matches the CPU: float32 logits and loss / float64 gradients and 3 SGD steps",
          "[cuda]") {
  check_model_on_gpu(lite0_case());
}

TEST_CASE("CUDA ViT-Ti/16 matches the CPU: float32 logits and loss and gradients / float64 3 AdamW steps", "[cuda]") {
  check_model_on_gpu(vit_tiny_case());
}

TEST_CASE("CUDA BERT with padding matches the CPU: float32 logits and loss and gradients / float64 3 AdamW steps",
          "[cuda]") {
  check_model_on_gpu(bert_case());
}

TEST_CASE("CUDA ResNet-50 eval logits at 224x224 match the CPU (float32)", "[cuda]") {
  std::printf("ResNet-50 [2, 3, 224, 224]\n");
  const Tensor x = image_batch(2, 224, 5002);
  NamedTensors logits[2];
  for (int which = 0; which < 2; ++which) {
    const Device d = which == 0 ? kCPU : cuda_test::gpu();
    manual_seed(5001);
    auto model = models::resnet50();
    model->to(d);
    model->eval();
    NoGradGuard no_grad;
    const Tensor out = model->forward(x.to(d));
    REQUIRE(out.device() == d);
    logits[which] = one("logits", out.cpu());
  }
  expect_model_close("ResNet-50: eval logits [2, 1000]", logits[1], logits[0]);
}

TEST_CASE("CUDA models: a CPU input to a model on the GPU or a GPU index past the visible ones throws", "[cuda]") {
  manual_seed(6001);
  auto resnet = models::resnet18(10);
  resnet->to(cuda_test::gpu());
  const Tensor cpu_images = image_batch(1, 32, 6002);
  CHECK_THROWS_WITH(resnet->forward(cpu_images), Catch::Contains("conv2d") && Catch::Contains("one device"));
  // A device index past the visible GPUs is refused before any tensor moves.
  auto vit = std::make_shared<models::VisionTransformer>(models::ViTConfig{32, 16, 3, 10, 64, 1, 2, 4.0});
  CHECK_THROWS_WITH(vit->to(cuda(63)), Catch::Contains("no such device"));
  for (const Tensor& p : vit->parameters()) CHECK(p.device().is_cpu());
}
