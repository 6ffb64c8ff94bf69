// graft/nn/layers.hpp - the basic layers, with PyTorch's parameter names, default initialization and
// forward semantics (torch.nn.*). Each is a Module composed at run time; hold them by shared_ptr.
//
//   Linear(in, out, bias)              weight [out, in], bias [out]; x [*, in] -> [*, out]
//   Conv2d(in, out, k, Conv2dOptions)  weight [out, in/groups, kh, kw], bias [out]; NCHW
//   BatchNorm2d(C, BatchNormOptions)   weight, bias [C]; buffers running_mean, running_var [C],
//                                      num_batches_tracked (int64 scalar)
//   LayerNorm(shape, eps, affine)      weight, bias [shape]
//   Embedding(V, D, padding_idx)       weight [V, D]; forward takes int64/int32 indices
//   Dropout, pools, activations, Identity, Flatten, StochasticDepth: no parameters
//   SqueezeExcitation(C, squeeze)      fc1 (C -> squeeze), fc2 (squeeze -> C): 1x1 convs with bias
//   Sequential ("0", "1", ...), ModuleList
// Default initialization as torch 1.13 (through graft::init and default_generator()):
//   Linear/Conv2d weight kaiming_uniform_(a = sqrt(5)), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in));
//   BatchNorm/LayerNorm weight 1, bias 0; Embedding N(0, 1) with the padding row zeroed.
#pragma once
#include <array>
#include <cmath>
#include <initializer_list>
#include <optional>
#include <string>

#include "graft/nn/module.hpp"

namespace graft::nn {

namespace detail_layers {
// torch's reset_parameters for Linear and Conv2d.
inline void init_weight_and_bias(const Tensor& weight, const Tensor& bias) {
  NoGradGuard no_grad;
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const int64_t fan_in = init::fan_in_and_fan_out(weight).first;
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(double(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}
}  // namespace detail_layers

// A branch a Linear or Conv2d adds to its own output: with one attached (layer.adapter), forward
// returns adapter->apply(x, y) for y the layer's own output on x. Parameter-efficient fine-tuning
// attaches them (LoRA and bottleneck adapters, include/graft/peft/); an adapter registers its
// parameters' modules on the layer itself ("lora_A", "lora_B"), so they carry the layer's dotted names.
struct OutputAdapter {
  virtual ~OutputAdapter() = default;
  virtual Tensor apply(const Tensor& x, const Tensor& y) = 0;
};

// ---- Linear ------------------------------------------------------------------------------------
class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool with_bias = true) : Module("Linear"), in_features(in), out_features(out) {
    GRAFT_CHECK(in >= 0 && out >= 0, "Linear", "negative size: in_features ", in, ", out_features ", out);
    weight = register_parameter("weight", empty({out, in}));
    if (with_bias) bias = register_parameter("bias", empty({out}));
    detail_layers::init_weight_and_bias(weight, bias);
  }
  // x [*, in] -> [*, out]
  Tensor forward(const Tensor& x) override { return forward(x, Activation::None); }
  // act(linear(x)), the activation fused into the product's output write where autograd allows
  // (graft::linear)
  Tensor forward(const Tensor& x, Activation act) {
    GRAFT_CHECK(x.dim() >= 1 && x.size(-1) == in_features, "Linear", "expected input [*, ", in_features,
                "], got shape ", x.shape());
    if (adapter) return activation(adapter->apply(x, linear(x, weight, bias)), act);
    return linear(x, weight, bias, act);
  }
  int64_t in_features, out_features;
  Tensor weight, bias;  // [out, in], [out] or undefined
  std::shared_ptr<OutputAdapter> adapter;  // null: none (see OutputAdapter)
};

// ---- Conv2d ------------------------------------------------------------------------------------
struct Conv2dOptions {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
  bool bias = true;
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in, int64_t out, std::array<int64_t, 2> kernel, Conv2dOptions opts = {})
      : Module("Conv2d"), in_channels(in), out_channels(out), kernel_size(kernel), options(opts) {
    GRAFT_CHECK(opts.groups >= 1 && in % opts.groups == 0 && out % opts.groups == 0, "Conv2d", "groups ",
                opts.groups, " must divide in_channels ", in, " and out_channels ", out);
    weight = register_parameter("weight", empty({out, in / opts.groups, kernel[0], kernel[1]}));
    if (opts.bias) bias = register_parameter("bias", empty({out}));
    detail_layers::init_weight_and_bias(weight, bias);
  }
  Conv2d(int64_t in, int64_t out, int64_t kernel, Conv2dOptions opts = {}) : Conv2d(in, out, {kernel, kernel}, opts) {}
  // x [N, C, H, W] -> [N, O, OH, OW]
  Tensor forward(const Tensor& x) override {
    const Tensor y = conv2d(x, weight, bias, options.stride, options.padding, options.dilation, options.groups);
    return adapter ? adapter->apply(x, y) : y;
  }
  int64_t in_channels, out_channels;
  std::array<int64_t, 2> kernel_size;
  Conv2dOptions options;
  Tensor weight, bias;
  std::shared_ptr<OutputAdapter> adapter;  // null: none (see OutputAdapter)
};

// ---- normalization -----------------------------------------------------------------------------
struct BatchNormOptions {
  double eps = 1e-5;
  std::optional<double> momentum = 0.1;  // nullopt: cumulative average (factor 1 / num_batches_tracked)
  bool affine = true;
  bool track_running_stats = true;
};

// torch.nn.BatchNorm2d. Training with tracked stats: num_batches_tracked += 1, batch statistics
// normalize, running stats updated with momentum (unbiased variance). Eval with tracked stats: the
// running stats normalize. Without tracked stats, batch statistics always. Frozen statistics
// (freeze_norm_stats(), tracked stats only): the running stats normalize in training too and are
// never updated, while weight and bias still train unless frozen themselves.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, BatchNormOptions opts = {})
      : Module("BatchNorm2d"), num_features(channels), options(opts) {
    if (opts.affine) {
      weight = register_parameter("weight", ones({channels}));
      bias = register_parameter("bias", zeros({channels}));
    }
    if (opts.track_running_stats) {
      running_mean = register_buffer("running_mean", zeros({channels}));
      running_var = register_buffer("running_var", ones({channels}));
      num_batches_tracked = register_buffer("num_batches_tracked", zeros(Shape{}, DType::Int64));
    }
  }
  // x [N, C, H, W] -> same
  Tensor forward(const Tensor& x) override {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == num_features, "BatchNorm2d", "expected input [N, ", num_features,
                ", H, W], got shape ", x.shape());
    if (folded) {
      GRAFT_CHECK(!is_training(), "BatchNorm2d",
                  "this batch norm was folded into the preceding Conv2d (fuse_for_inference) and cannot run in "
                  "training mode; build and load the model again to train it");
      return x;
    }
    double factor = options.momentum.value_or(0.0);
    if (stats_frozen && options.track_running_stats)  // running stats normalize, nothing is updated
      return batch_norm(x, running_mean, running_var, weight, bias, /*training=*/false, 0.0, options.eps);
    if (is_training() && options.track_running_stats) {
      const int64_t n = num_batches_tracked.item<int64_t>() + 1;
      num_batches_tracked.fill_(double(n));
      if (!options.momentum) factor = 1.0 / double(n);
    }
    const bool use_batch_stats = is_training() || !options.track_running_stats;
    // In eval without tracked stats there are no running stats to pass or update.
    const bool pass_running = options.track_running_stats;
    return batch_norm(x, pass_running ? running_mean : Tensor(), pass_running ? running_var : Tensor(), weight,
                      bias, use_batch_stats, factor, options.eps);
  }
  int64_t num_features;
  BatchNormOptions options;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  bool stats_frozen = false;  // set through Module::freeze_norm_stats
  bool folded = false;        // set by fuse_conv_bn: forward passes x through (eval mode only)

 protected:
  void set_stats_frozen(bool frozen) override { stats_frozen = frozen; }
};

// Folds bn, in eval mode, into conv, the Conv2d whose output it normalizes (Module::fuse_for_inference):
//   scale[o]   = gamma[o] / sqrt(running_var[o] + eps)
//   weight'[o] = weight[o] scale[o]                      weight [O, Cg, KH, KW]
//   bias'[o]   = (bias[o] - running_mean[o]) scale[o] + beta[o]
// so that conv'(x) = bn(conv(x)) (gamma = 1, beta = 0 without affine; bias = 0 when the conv had none:
// it gains a "bias" parameter). Computed in float64, stored in the conv's dtype. Afterwards bn passes
// its input through (bn.folded). Returns false, changing nothing, when bn keeps no running statistics
// (it normalizes with batch statistics in eval too) or was folded already.
inline bool fuse_conv_bn(Conv2d& conv, BatchNorm2d& bn) {
  GRAFT_CHECK(conv.out_channels == bn.num_features, "fuse_conv_bn", "Conv2d with ", conv.out_channels,
              " output channels cannot be followed by BatchNorm2d(", bn.num_features, ")");
  if (bn.folded || !bn.options.track_running_stats) return false;
  NoGradGuard no_grad;
  const int64_t O = conv.out_channels;
  const DType dt = conv.weight.dtype();
  const Device dev = conv.weight.device();
  const DType f64 = DType::Float64;
  const Tensor gamma = bn.weight.defined() ? bn.weight.to(f64) : ones({O}, f64, dev);
  const Tensor beta = bn.bias.defined() ? bn.bias.to(f64) : zeros({O}, f64, dev);
  const Tensor scale = div(gamma, sqrt(add(bn.running_var.to(f64), bn.options.eps)));  // [O]
  const Tensor bias = conv.bias.defined() ? conv.bias.to(f64) : zeros({O}, f64, dev);
  conv.weight.copy_(mul(conv.weight.to(f64), scale.reshape({O, 1, 1, 1})).to(dt));
  if (!conv.bias.defined()) {
    conv.bias = conv.register_parameter("bias", zeros({O}, dt, dev), conv.weight.requires_grad());
    conv.options.bias = true;
  }
  conv.bias.copy_(add(mul(sub(bias, bn.running_mean.to(f64)), scale), beta).to(dt));
  bn.folded = true;
  return true;
}

class LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape shape, double epsilon = 1e-5, bool elementwise_affine = true)
      : Module("LayerNorm"), normalized_shape(shape), eps(epsilon) {
    if (elementwise_affine) {
      weight = register_parameter("weight", ones(shape));
      bias = register_parameter("bias", zeros(shape));
    }
  }
  explicit LayerNorm(int64_t dim, double epsilon = 1e-5, bool elementwise_affine = true)
      : LayerNorm(Shape{dim}, epsilon, elementwise_affine) {}
  Tensor forward(const Tensor& x) override { return layer_norm(x, normalized_shape, weight, bias, eps); }
  Shape normalized_shape;
  double eps;
  Tensor weight, bias;
};

// ---- Dropout, Embedding ------------------------------------------------------------------------
class Dropout : public Module {
 public:
  explicit Dropout(double prob = 0.5) : Module("Dropout"), p(prob) {
    GRAFT_CHECK(prob >= 0.0 && prob <= 1.0, "Dropout", "p must be in [0, 1], got ", prob);
  }
  Tensor forward(const Tensor& x) override { return dropout(x, p, is_training()); }
  double p;
};

class Embedding : public Module {
 public:
  Embedding(int64_t count, int64_t dim, std::optional<int64_t> pad = std::nullopt)
      : Module("Embedding"), num_embeddings(count), embedding_dim(dim) {
    if (pad) {
      GRAFT_CHECK(*pad >= -count && *pad < count, "Embedding", "padding_idx ", *pad, " out of range for ", count,
                  " embeddings");
      padding_idx = *pad < 0 ? *pad + count : *pad;
    }
    weight = register_parameter("weight", empty({count, dim}));
    NoGradGuard no_grad;
    init::normal_(weight, 0.0, 1.0);
    if (padding_idx) weight.select(0, *padding_idx).zero_();
  }
  // indices [*] (int64 or int32) -> [*, D]; the padding row gets no gradient.
  Tensor forward(const Tensor& indices) override { return embedding(indices, weight, padding_idx); }
  int64_t num_embeddings, embedding_dim;
  std::optional<int64_t> padding_idx;
  Tensor weight;
};

// ---- pooling -----------------------------------------------------------------------------------
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(std::array<int64_t, 2> kernel, std::array<int64_t, 2> step = {0, 0},
                     std::array<int64_t, 2> pad = {0, 0}, std::array<int64_t, 2> dil = {1, 1}, bool ceil = false)
      : Module("MaxPool2d"), kernel_size(kernel), stride(step), padding(pad), dilation(dil), ceil_mode(ceil) {}
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode); }
  std::array<int64_t, 2> kernel_size, stride, padding, dilation;  // stride {0, 0}: = kernel_size
  bool ceil_mode;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(std::array<int64_t, 2> kernel, std::array<int64_t, 2> step = {0, 0},
                     std::array<int64_t, 2> pad = {0, 0}, bool ceil = false, bool include_pad = true)
      : Module("AvgPool2d"), kernel_size(kernel), stride(step), padding(pad), ceil_mode(ceil),
        count_include_pad(include_pad) {}
  Tensor forward(const Tensor& x) override {
    return avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad);
  }
  std::array<int64_t, 2> kernel_size, stride, padding;
  bool ceil_mode, count_include_pad;
};

class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(std::array<int64_t, 2> size) : Module("AdaptiveAvgPool2d"), output_size(size) {}
  Tensor forward(const Tensor& x) override { return adaptive_avg_pool2d(x, output_size); }
  std::array<int64_t, 2> output_size;
};

// ---- activations and shape layers --------------------------------------------------------------
class ReLU : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& x) override { return relu(x); }
};
class ReLU6 : public Module {
 public:
  ReLU6() : Module("ReLU6") {}
  Tensor forward(const Tensor& x) override { return relu6(x); }
};
class GELU : public Module {
 public:
  explicit GELU(std::string approx = "none") : Module("GELU"), approximate(std::move(approx)) {
    GRAFT_CHECK(approximate == "none" || approximate == "tanh", "GELU", "approximate must be 'none' or 'tanh', got '",
                approximate, "'");
  }
  Tensor forward(const Tensor& x) override { return gelu(x, approximate); }
  std::string approximate;
};
class SiLU : public Module {
 public:
  SiLU() : Module("SiLU") {}
  Tensor forward(const Tensor& x) override { return silu(x); }
};
class Hardswish : public Module {
 public:
  Hardswish() : Module("Hardswish") {}
  Tensor forward(const Tensor& x) override { return hardswish(x); }
};
class Sigmoid : public Module {
 public:
  Sigmoid() : Module("Sigmoid") {}
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
};
// torch.nn.Hardsigmoid: relu6(x + 3) / 6.
class Hardsigmoid : public Module {
 public:
  Hardsigmoid() : Module("Hardsigmoid") {}
  Tensor forward(const Tensor& x) override { return mul(relu6(add(x, 3.0)), 1.0 / 6.0); }
};
class Identity : public Module {
 public:
  Identity() : Module("Identity") {}
  Tensor forward(const Tensor& x) override { return x; }
};
class Flatten : public Module {
 public:
  explicit Flatten(int64_t start = 1, int64_t end = -1) : Module("Flatten"), start_dim(start), end_dim(end) {}
  Tensor forward(const Tensor& x) override { return x.flatten(start_dim, end_dim); }
  int64_t start_dim, end_dim;
};

// ---- regularization and gating blocks of the model zoo -------------------------------------------
// torchvision.ops.StochasticDepth (drop path, Huang et al. 2016): while training, zeroes whole
// residual branches with probability p and scales the survivors by 1 / (1 - p); "row" draws one coin
// per example (x [B, ...]), "batch" one for the whole batch. Identity in eval mode or with p = 0.
class StochasticDepth : public Module {
 public:
  explicit StochasticDepth(double prob, std::string how = "row") : Module("StochasticDepth"), p(prob), mode(std::move(how)) {
    GRAFT_CHECK(prob >= 0.0 && prob <= 1.0, "StochasticDepth", "p must be in [0, 1], got ", prob);
    GRAFT_CHECK(mode == "row" || mode == "batch", "StochasticDepth", "mode must be 'row' or 'batch', got '", mode, "'");
  }
  Tensor forward(const Tensor& x) override {
    if (!is_training() || p == 0.0) return x;
    GRAFT_CHECK(x.dim() >= 1, "StochasticDepth", "expected a batch [B, ...], got a 0-d tensor");
    const double survival = 1.0 - p;
    Shape noise_shape(std::vector<int64_t>(size_t(x.dim()), 1));
    if (mode == "row") noise_shape[0] = x.size(0);
    const DType dt = is_reduced_float(x.dtype()) ? DType::Float32 : x.dtype();
    Tensor noise = bernoulli(noise_shape, survival, dt);
    if (survival > 0.0) noise = mul(noise, 1.0 / survival);
    return mul(x, noise.to(x.dtype()).to(x.device()));
  }
  double p;
  std::string mode;
};

// torchvision.ops.SqueezeExcitation (Hu et al. 2018) with its names: x * scale_activation(fc2(
// activation(fc1(avgpool(x))))), fc1 / fc2 1x1 convolutions with bias (C -> squeeze -> C).
// MobileNetV3 uses ReLU + Hardsigmoid, EfficientNet SiLU + Sigmoid.
class SqueezeExcitation : public Module {
 public:
  SqueezeExcitation(int64_t channels, int64_t squeeze, ModulePtr act = std::make_shared<ReLU>(),
                    ModulePtr scale_act = std::make_shared<Sigmoid>())
      : Module("SqueezeExcitation") {
    GRAFT_CHECK(channels >= 1 && squeeze >= 1, "SqueezeExcitation", "channels and squeeze must be >= 1, got ",
                channels, " and ", squeeze);
    avgpool = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}));
    fc1 = register_module("fc1", std::make_shared<Conv2d>(channels, squeeze, 1));
    fc2 = register_module("fc2", std::make_shared<Conv2d>(squeeze, channels, 1));
    activation = register_module("activation", std::move(act));
    scale_activation = register_module("scale_activation", std::move(scale_act));
  }
  // x [B, C, H, W] -> [B, C, H, W]
  Tensor forward(const Tensor& x) override {
    const Tensor scale = scale_activation->forward(fc2->forward(activation->forward(fc1->forward(avgpool->forward(x)))));
    return mul(x, scale);
  }
  std::shared_ptr<AdaptiveAvgPool2d> avgpool;
  std::shared_ptr<Conv2d> fc1, fc2;
  ModulePtr activation, scale_activation;
};

// ---- containers --------------------------------------------------------------------------------
// Children named "0", "1", ... in order; forward applies them in turn.
class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  Sequential(std::initializer_list<ModulePtr> modules) : Module("Sequential") {
    for (const ModulePtr& m : modules) push_back(m);
  }
  void push_back(ModulePtr m) { register_module(std::to_string(size_), std::move(m)), ++size_; }
  size_t size() const { return size_; }
  ModulePtr operator[](size_t i) const {
    GRAFT_CHECK(i < size_, "Sequential", "index ", i, " out of range for ", size_, " modules");
    return child(std::to_string(i));
  }
  Tensor forward(const Tensor& x) override {
    Tensor y = x;
    for (const ModulePtr& m : children()) y = m->forward(y);
    return y;
  }

 protected:
  // Adjacent (Conv2d, BatchNorm2d) children: the batch norm normalizes the conv's output.
  int64_t fuse_own_pairs() override {
    const std::vector<ModulePtr> kids = children();
    int64_t folded = 0;
    for (size_t i = 0; i + 1 < kids.size(); ++i) {
      auto* conv = dynamic_cast<Conv2d*>(kids[i].get());
      auto* bn = dynamic_cast<BatchNorm2d*>(kids[i + 1].get());
      if (conv && bn && fuse_conv_bn(*conv, *bn)) ++folded;
    }
    return folded;
  }

 private:
  size_t size_ = 0;
};

// Children named "0", "1", ...; no forward (the owner decides how to call them).
class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  ModuleList(std::initializer_list<ModulePtr> modules) : Module("ModuleList") {
    for (const ModulePtr& m : modules) push_back(m);
  }
  void push_back(ModulePtr m) { register_module(std::to_string(size_), std::move(m)), ++size_; }
  size_t size() const { return size_; }
  ModulePtr operator[](size_t i) const {
    GRAFT_CHECK(i < size_, "ModuleList", "index ", i, " out of range for ", size_, " modules");
    return child(std::to_string(i));
  }

 private:
  size_t size_ = 0;
};

}  // namespace graft::nn
