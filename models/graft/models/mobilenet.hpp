// graft/models/mobilenet.hpp - MobileNetV2, MobileNetV3-Small and MobileNetV3-Large exactly as
// torchvision 0.14 (torchvision.models.mobilenet_v2 / mobilenet_v3_small / mobilenet_v3_large), with
// torchvision's module names, so a torchvision state_dict loads strictly.
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto model = graft::models::mobilenet_v3_large();     // 1000 classes, torchvision's init
//   model->load_state_dict(graft::io::load_safetensors("mobilenet_v3_large.safetensors"));
//   model->eval();
//   Tensor logits = model->forward(images);                // images [B, 3, H, W] -> [B, 1000]
//   Tensor feats  = model->forward_features(images);       // [B, 960], pooled last conv, before classifier
//   Tensor z = model->forward_head(feats, /*pre_logits=*/true);   // [B, 1280], the last Linear's input
//   model->reset_classifier(10);                           // new classifier.3: Linear(1280, 10); 0 = Identity
//   model->fuse_for_inference();                           // (eval mode) every BatchNorm folded into its conv
// The torchvision ImageNet checkpoints expect [0, 1] RGB normalized with transforms::kImageNetMean /
// kImageNetStd (0.485 0.456 0.406 / 0.229 0.224 0.225), resize(256) + center_crop(224) (resize(232)
// for the IMAGENET1K_V2 weights of mobilenet_v2 and mobilenet_v3_large). Any input size >= 1 runs.
//
// Names (torchvision). A Conv2dNormActivation is a Sequential "0" Conv2d (kernel k, stride s, padding
// (k - 1) / 2, no bias), "1" BatchNorm2d, "2" activation (absent when it has none).
//   MobileNetV2: features.0 (Conv2dNormActivation 3x3/2, in_chans -> 32, ReLU6), features.1 .. 17
//     (InvertedResidual), features.18 (Conv2dNormActivation 1x1, 320 -> 1280, ReLU6); classifier.0
//     Dropout(0.2), classifier.1 Linear(1280, classes). No avgpool module: the pool is functional.
//     InvertedResidual "conv": [Conv2dNormActivation 1x1 expand, ReLU6] (absent when t = 1),
//     Conv2dNormActivation 3x3/s depthwise (ReLU6), Conv2d 1x1 project, BatchNorm2d; keys
//     features.{i}.conv.{j}.{0,1}.* and features.{i}.conv.{j}.* for the last two.
//     Blocks (t expand, c out, n repeats, s stride of the first): 1 16 1 1 | 6 24 2 2 | 6 32 3 2 |
//     6 64 4 2 | 6 96 3 1 | 6 160 3 2 | 6 320 1 1. BatchNorm: torch's defaults (eps 1e-5, momentum 0.1).
//   MobileNetV3: features.0 (Conv2dNormActivation 3x3/2, in_chans -> 16, Hardswish), features.1 .. N
//     (InvertedResidual: 15 for Large, 11 for Small), features.N+1 (Conv2dNormActivation 1x1, C -> 6C,
//     Hardswish: 160 -> 960 Large, 96 -> 576 Small), avgpool, classifier.0 Linear(6C, 1280 | 1024),
//     classifier.1 Hardswish, classifier.2 Dropout(0.2), classifier.3 Linear(1280 | 1024, classes).
//     InvertedResidual "block": [Conv2dNormActivation 1x1 expand] (absent when expanded = in), Conv2dNormActivation
//     kxk/s depthwise, [SqueezeExcitation(expanded, make_divisible(expanded / 4)) with ReLU and
//     Hardsigmoid: fc1, fc2 1x1 convs with bias], Conv2dNormActivation 1x1 project (no activation);
//     activation ReLU or Hardswish per block (kMobileNetV3Large / kMobileNetV3Small below, the paper's
//     Tables 1 and 2). BatchNorm eps 1e-3, momentum 0.01.
//   Both add the input to the block's output when stride is 1 and in = out.
// Shapes: x [B, in_chans, H, W] -> features.K [B, C_K, H / s_K, W / s_K] (overall stride 32, each
// conv rounding up: out = (n - 1) / s + 1) -> pooled [B, num_features()] (1280 | 576 | 960) ->
// logits [B, classes]. With width_mult w, every width c listed above becomes _make_divisible(c w, 8)
// (detail_mobilenet::make_divisible), except V2's last conv (_make_divisible(1280 max(1, w), 8)) and
// V3's last conv (6 x the last block's width).
// Initialization as torchvision: every conv (SqueezeExcitation's too) kaiming_normal_(fan_out), bias 0;
// BatchNorm weight 1, bias 0; Linear N(0, 0.01), bias 0. reset_classifier's Linear has torch's default.
// Left out: torchvision's norm_layer / block / inverted_residual_setting hooks (the layers are fixed)
// and mobilenet_v3's dilated / reduced_tail options (used only by its segmentation backbones).
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "graft/models/classifier.hpp"
#include "graft/models/features.hpp"
#include "graft/nn.hpp"

namespace graft::models {

namespace detail_mobilenet {

using models::make_divisible;  // models/common.hpp

// torchvision.ops.Conv2dNormActivation: "0" Conv2d (padding (kernel - 1) / 2, no bias), "1"
// BatchNorm2d, "2" act (none when act is null). x [B, in, H, W] -> [B, out, (H - 1) / s + 1, (W - 1) / s + 1].
inline std::shared_ptr<nn::Sequential> conv_norm_act(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                                                     int64_t groups, const nn::BatchNormOptions& bn,
                                                     nn::ModulePtr act) {
  nn::Conv2dOptions o;
  o.stride = {stride, stride};
  o.padding = {(kernel - 1) / 2, (kernel - 1) / 2};
  o.groups = groups;
  o.bias = false;
  auto seq = std::make_shared<nn::Sequential>();
  seq->push_back(std::make_shared<nn::Conv2d>(in, out, kernel, o));
  seq->push_back(std::make_shared<nn::BatchNorm2d>(out, bn));
  if (act) seq->push_back(std::move(act));
  return seq;
}

// The loop at the end of torchvision's MobileNetV2/V3.__init__, over every module: Conv2d weight
// kaiming_normal_(mode fan_out; a = 0, so gain sqrt 2), bias 0; Linear weight N(0, 0.01), bias 0.
// BatchNorm2d is constructed with weight 1 and bias 0 already.
inline void init_weights(nn::Module& model) {
  NoGradGuard no_grad;
  for (auto& [name, m] : model.named_modules()) {
    if (auto* conv = dynamic_cast<nn::Conv2d*>(m)) {
      init::kaiming_normal_(conv->weight, 0.0, init::FanMode::FanOut);
      if (conv->bias.defined()) init::constant_(conv->bias, 0.0);
    } else if (auto* linear = dynamic_cast<nn::Linear*>(m)) {
      init::normal_(linear->weight, 0.0, 0.01);
      if (linear->bias.defined()) init::constant_(linear->bias, 0.0);
    }
  }
}

// The classifier's last module: Linear(in, num_classes) with torch's default init, or Identity for 0.
inline nn::ModulePtr final_linear(const char* model, int64_t in, int64_t num_classes) {
  GRAFT_CHECK(num_classes >= 0, model, "num_classes must be >= 0, got ", num_classes);
  if (num_classes == 0) return std::make_shared<nn::Identity>();
  return std::make_shared<nn::Linear>(in, num_classes);
}

// reset_classifier for both: replaces classifier.<index> with final_linear(...), in the dtype, device
// and train/eval mode of the rest of the model (`like`, a parameter of it).
inline void replace_final_linear(const char* model, nn::Sequential& classifier, int64_t index, int64_t in,
                                 int64_t num_classes, const Tensor& like, bool training) {
  nn::ModulePtr head = final_linear(model, in, num_classes);
  head->to(like.dtype());
  head->to(like.device());
  head->train(training);
  classifier.replace_module(std::to_string(index), std::move(head));
}

inline void check_input(const char* model, const Tensor& x, int64_t in_chans) {
  GRAFT_CHECK(x.dim() == 4 && x.size(1) == in_chans, model, "expected input [B, ", in_chans, ", H, W], got shape ",
              x.shape());
}

inline void check_config(const char* model, double width_mult, double dropout, int64_t num_classes,
                         int64_t in_chans) {
  GRAFT_CHECK(width_mult > 0.0, model, "width_mult must be positive, got ", width_mult);
  GRAFT_CHECK(dropout >= 0.0 && dropout < 1.0, model, "dropout must be in [0, 1), got ", dropout);
  GRAFT_CHECK(num_classes >= 0 && in_chans >= 1, model, "num_classes must be >= 0 and in_chans >= 1, got ",
              num_classes, " and ", in_chans);
}

// Stages "features.0" .. "features.<last>" (each child of features), then "features" (pooled).
inline std::vector<detail_features::Stage> feature_stages(nn::Sequential& features,
                                                          std::function<Tensor(const Tensor&)> pool) {
  std::vector<detail_features::Stage> st;
  for (size_t i = 0; i < features.size(); ++i) {
    nn::ModulePtr m = features[i];
    st.emplace_back("features." + std::to_string(i), [m](const Tensor& y) { return m->forward(y); });
  }
  st.emplace_back("features", std::move(pool));
  return st;
}

}  // namespace detail_mobilenet

// ---- MobileNetV2 ----------------------------------------------------------------------------------
struct MobileNetV2Config {
  double width_mult = 1.0;
  double dropout = 0.2;  // classifier.0
  int64_t num_classes = 1000;
  int64_t in_chans = 3;
};

// torchvision.models.mobilenetv2.InvertedResidual (hidden = in * expand_ratio).
class MobileNetV2InvertedResidual : public nn::Module {
 public:
  MobileNetV2InvertedResidual(int64_t in, int64_t out, int64_t block_stride, int64_t expand_ratio)
      : Module("InvertedResidual"), in_channels(in), out_channels(out), stride(block_stride) {
    using detail_mobilenet::conv_norm_act;
    GRAFT_CHECK(block_stride == 1 || block_stride == 2, "InvertedResidual", "stride must be 1 or 2, got ",
                block_stride);
    const int64_t hidden = in * expand_ratio;
    conv = register_module("conv", std::make_shared<nn::Sequential>());
    if (expand_ratio != 1) conv->push_back(conv_norm_act(in, hidden, 1, 1, 1, {}, std::make_shared<nn::ReLU6>()));
    conv->push_back(conv_norm_act(hidden, hidden, 3, block_stride, hidden, {}, std::make_shared<nn::ReLU6>()));
    nn::Conv2dOptions project;
    project.bias = false;
    conv->push_back(std::make_shared<nn::Conv2d>(hidden, out, 1, project));
    conv->push_back(std::make_shared<nn::BatchNorm2d>(out));
  }
  // x [B, in, H, W] -> [B, out, (H - 1) / stride + 1, (W - 1) / stride + 1]
  Tensor forward(const Tensor& x) override {
    const Tensor y = conv->forward(x);
    return use_res_connect() ? add(x, y) : y;
  }
  bool use_res_connect() const { return stride == 1 && in_channels == out_channels; }

  int64_t in_channels, out_channels, stride;
  std::shared_ptr<nn::Sequential> conv;  // folds its own (Conv2d, BatchNorm2d) pairs (fuse_for_inference)
};

class MobileNetV2 : public ImageClassifier {
 public:
  explicit MobileNetV2(const MobileNetV2Config& cfg = {}) : ImageClassifier("MobileNetV2"), config(cfg) {
    using detail_mobilenet::conv_norm_act;
    using detail_mobilenet::make_divisible;
    detail_mobilenet::check_config("MobileNetV2", cfg.width_mult, cfg.dropout, cfg.num_classes, cfg.in_chans);
    struct Stage {
      int64_t expand, channels, repeats, stride;
    };
    static constexpr Stage kStages[7] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                         {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    int64_t channels = make_divisible(32.0 * cfg.width_mult);
    last_channel = make_divisible(1280.0 * std::max(1.0, cfg.width_mult));
    features = register_module("features", std::make_shared<nn::Sequential>());
    features->push_back(conv_norm_act(cfg.in_chans, channels, 3, 2, 1, {}, std::make_shared<nn::ReLU6>()));
    for (const Stage& s : kStages) {
      const int64_t out = make_divisible(double(s.channels) * cfg.width_mult);
      for (int64_t i = 0; i < s.repeats; ++i) {
        const int64_t stride = i == 0 ? s.stride : 1;
        features->push_back(std::make_shared<MobileNetV2InvertedResidual>(channels, out, stride, s.expand));
        channels = out;
      }
    }
    features->push_back(conv_norm_act(channels, last_channel, 1, 1, 1, {}, std::make_shared<nn::ReLU6>()));
    head = register_module("classifier", std::make_shared<nn::Sequential>());
    head->push_back(std::make_shared<nn::Dropout>(cfg.dropout));
    head->push_back(detail_mobilenet::final_linear("MobileNetV2", last_channel, cfg.num_classes));
    detail_mobilenet::init_weights(*this);
  }

  // x [B, in_chans, H, W] -> pooled features [B, 1280] (before the classifier's dropout).
  Tensor forward_features(const Tensor& x) override {
    detail_mobilenet::check_input("MobileNetV2", x, config.in_chans);
    return pool(features->forward(x));
  }
  // features [B, 1280] -> logits [B, num_classes]; pre_logits: after classifier.0 (dropout) only.
  Tensor forward_head(const Tensor& f, bool pre_logits = false) override {
    return pre_logits ? (*head)[0]->forward(f) : head->forward(f);
  }

  // Named stages (models/features.hpp): "features.0" (stride 2), "features.1" .. "features.17" (the
  // InvertedResiduals), "features.18" (the 1x1 conv to 1280, stride 32), all [B, C, h, w]; "features"
  // (pooled, [B, 1280]).
  std::vector<std::string> feature_names() override { return detail_features::names_of(stages()); }
  NamedFeatures forward_intermediates(const Tensor& x, const std::vector<std::string>& names) override {
    detail_mobilenet::check_input("MobileNetV2", x, config.in_chans);
    return detail_features::run_stages("MobileNetV2", x, stages(), names);
  }

  // "classifier.1", the Linear after the dropout (Identity after reset_classifier(0)).
  std::string classifier_name() const override { return "classifier.1"; }
  // A fresh classifier.1 = Linear(1280, num_classes) (torch's default init); 0 = Identity.
  void reset_classifier(int64_t num_classes) override {
    detail_mobilenet::replace_final_linear("MobileNetV2", *head, 1, last_channel, num_classes,
                                           features->parameters().front(), is_training());
    config.num_classes = num_classes;
  }
  int64_t num_features() const override { return last_channel; }
  int64_t in_chans() const override { return config.in_chans; }

  MobileNetV2Config config;
  int64_t last_channel = 0;                  // 1280 (make_divisible(1280 max(1, width_mult)))
  std::shared_ptr<nn::Sequential> features;  // "features.0" .. "features.18"
  std::shared_ptr<nn::Sequential> head;      // registered as "classifier": Dropout, Linear

 private:
  static Tensor pool(const Tensor& y) { return adaptive_avg_pool2d(y, {1, 1}).flatten(1); }
  std::vector<detail_features::Stage> stages() { return detail_mobilenet::feature_stages(*features, pool); }
};

// ---- MobileNetV3 ----------------------------------------------------------------------------------
enum class MobileNetV3Arch { Large, Small };

struct MobileNetV3Config {
  MobileNetV3Arch arch = MobileNetV3Arch::Large;
  double width_mult = 1.0;
  double dropout = 0.2;  // classifier.2
  int64_t num_classes = 1000;
  int64_t in_chans = 3;
};

// One bottleneck row of the MobileNetV3 paper's Tables 1 and 2 (torchvision's InvertedResidualConfig),
// widths before width_mult; hardswish false = ReLU.
struct MobileNetV3BlockSpec {
  int64_t in, kernel, expanded, out;
  bool squeeze_excite, hardswish;
  int64_t stride;
};
inline constexpr MobileNetV3BlockSpec kMobileNetV3Large[15] = {
    {16, 3, 16, 16, false, false, 1},     {16, 3, 64, 24, false, false, 2},    {24, 3, 72, 24, false, false, 1},
    {24, 5, 72, 40, true, false, 2},      {40, 5, 120, 40, true, false, 1},    {40, 5, 120, 40, true, false, 1},
    {40, 3, 240, 80, false, true, 2},     {80, 3, 200, 80, false, true, 1},    {80, 3, 184, 80, false, true, 1},
    {80, 3, 184, 80, false, true, 1},     {80, 3, 480, 112, true, true, 1},    {112, 3, 672, 112, true, true, 1},
    {112, 5, 672, 160, true, true, 2},    {160, 5, 960, 160, true, true, 1},   {160, 5, 960, 160, true, true, 1}};
inline constexpr MobileNetV3BlockSpec kMobileNetV3Small[11] = {
    {16, 3, 16, 16, true, false, 2},   {16, 3, 72, 24, false, false, 2},  {24, 3, 88, 24, false, false, 1},
    {24, 5, 96, 40, true, true, 2},    {40, 5, 240, 40, true, true, 1},   {40, 5, 240, 40, true, true, 1},
    {40, 5, 120, 48, true, true, 1},   {48, 5, 144, 48, true, true, 1},   {48, 5, 288, 96, true, true, 2},
    {96, 5, 576, 96, true, true, 1},   {96, 5, 576, 96, true, true, 1}};

// torchvision.models.mobilenetv3.InvertedResidual; spec widths already scaled by width_mult.
class MobileNetV3InvertedResidual : public nn::Module {
 public:
  MobileNetV3InvertedResidual(const MobileNetV3BlockSpec& spec, const nn::BatchNormOptions& bn)
      : Module("InvertedResidual"), in_channels(spec.in), out_channels(spec.out), stride(spec.stride) {
    using detail_mobilenet::conv_norm_act;
    GRAFT_CHECK(spec.stride == 1 || spec.stride == 2, "InvertedResidual", "stride must be 1 or 2, got ", spec.stride);
    auto act = [&]() -> nn::ModulePtr {
      if (spec.hardswish) return std::make_shared<nn::Hardswish>();
      return std::make_shared<nn::ReLU>();
    };
    const int64_t e = spec.expanded;
    block = register_module("block", std::make_shared<nn::Sequential>());
    if (e != spec.in) block->push_back(conv_norm_act(spec.in, e, 1, 1, 1, bn, act()));
    block->push_back(conv_norm_act(e, e, spec.kernel, spec.stride, e, bn, act()));
    if (spec.squeeze_excite)
      block->push_back(std::make_shared<nn::SqueezeExcitation>(e, detail_mobilenet::make_divisible(double(e / 4)),
                                                               std::make_shared<nn::ReLU>(),
                                                               std::make_shared<nn::Hardsigmoid>()));
    block->push_back(conv_norm_act(e, spec.out, 1, 1, 1, bn, nullptr));
  }
  // x [B, in, H, W] -> [B, out, (H - 1) / stride + 1, (W - 1) / stride + 1]
  Tensor forward(const Tensor& x) override {
    const Tensor y = block->forward(x);
    return use_res_connect() ? add(y, x) : y;
  }
  bool use_res_connect() const { return stride == 1 && in_channels == out_channels; }

  int64_t in_channels, out_channels, stride;
  std::shared_ptr<nn::Sequential> block;  // its Conv2dNormActivations fold their own pairs
};

class MobileNetV3 : public ImageClassifier {
 public:
  explicit MobileNetV3(const MobileNetV3Config& cfg = {}) : ImageClassifier("MobileNetV3"), config(cfg) {
    using detail_mobilenet::conv_norm_act;
    using detail_mobilenet::make_divisible;
    detail_mobilenet::check_config("MobileNetV3", cfg.width_mult, cfg.dropout, cfg.num_classes, cfg.in_chans);
    nn::BatchNormOptions bn;
    bn.eps = 1e-3;
    bn.momentum = 0.01;
    const bool large = cfg.arch == MobileNetV3Arch::Large;
    std::vector<MobileNetV3BlockSpec> specs;
    if (large)
      specs.assign(std::begin(kMobileNetV3Large), std::end(kMobileNetV3Large));
    else
      specs.assign(std::begin(kMobileNetV3Small), std::end(kMobileNetV3Small));
    for (auto& s : specs)  // InvertedResidualConfig.adjust_channels
      for (int64_t* c : {&s.in, &s.expanded, &s.out}) *c = make_divisible(double(*c) * cfg.width_mult);

    features = register_module("features", std::make_shared<nn::Sequential>());
    const int64_t first = specs.front().in, last = specs.back().out;
    features->push_back(conv_norm_act(cfg.in_chans, first, 3, 2, 1, bn, std::make_shared<nn::Hardswish>()));
    for (const auto& s : specs) features->push_back(std::make_shared<MobileNetV3InvertedResidual>(s, bn));
    lastconv_channels = 6 * last;
    features->push_back(conv_norm_act(last, lastconv_channels, 1, 1, 1, bn, std::make_shared<nn::Hardswish>()));
    avgpool = register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}));
    last_channel = make_divisible(double(large ? 1280 : 1024) * cfg.width_mult);
    head = register_module("classifier", std::make_shared<nn::Sequential>());
    head->push_back(std::make_shared<nn::Linear>(lastconv_channels, last_channel));
    head->push_back(std::make_shared<nn::Hardswish>());
    head->push_back(std::make_shared<nn::Dropout>(cfg.dropout));
    head->push_back(detail_mobilenet::final_linear("MobileNetV3", last_channel, cfg.num_classes));
    detail_mobilenet::init_weights(*this);
  }

  // x [B, in_chans, H, W] -> pooled features [B, 960 | 576] (the last conv's, before the classifier).
  Tensor forward_features(const Tensor& x) override {
    detail_mobilenet::check_input("MobileNetV3", x, config.in_chans);
    return avgpool->forward(features->forward(x)).flatten(1);
  }
  // features [B, 960 | 576] -> logits [B, num_classes]; pre_logits: classifier.0 .. 2 only (Linear,
  // Hardswish, Dropout), the last Linear's input [B, 1280 | 1024].
  Tensor forward_head(const Tensor& f, bool pre_logits = false) override {
    if (!pre_logits) return head->forward(f);
    Tensor y = f;
    for (size_t i = 0; i < 3; ++i) y = (*head)[i]->forward(y);
    return y;
  }

  // Named stages (models/features.hpp): "features.0" (stride 2), "features.1" .. "features.N" (the
  // InvertedResiduals, N = 15 Large, 11 Small), "features.N+1" (the 1x1 conv to 960 | 576, stride 32),
  // all [B, C, h, w]; "features" (pooled, [B, 960 | 576]).
  std::vector<std::string> feature_names() override { return detail_features::names_of(stages()); }
  NamedFeatures forward_intermediates(const Tensor& x, const std::vector<std::string>& names) override {
    detail_mobilenet::check_input("MobileNetV3", x, config.in_chans);
    return detail_features::run_stages("MobileNetV3", x, stages(), names);
  }

  // "classifier.3", the last Linear (Identity after reset_classifier(0)).
  std::string classifier_name() const override { return "classifier.3"; }
  // A fresh classifier.3 = Linear(1280 | 1024, num_classes) (torch's default init); 0 = Identity.
  void reset_classifier(int64_t num_classes) override {
    detail_mobilenet::replace_final_linear("MobileNetV3", *head, 3, last_channel, num_classes,
                                           features->parameters().front(), is_training());
    config.num_classes = num_classes;
  }
  int64_t num_features() const override { return lastconv_channels; }
  int64_t head_hidden_size() const override { return last_channel; }
  int64_t in_chans() const override { return config.in_chans; }

  MobileNetV3Config config;
  int64_t lastconv_channels = 0;  // 960 Large, 576 Small: 6 x the last block's width
  int64_t last_channel = 0;       // 1280 Large, 1024 Small: the hidden Linear's width
  std::shared_ptr<nn::Sequential> features;  // "features.0" .. "features.16" (Large) | "features.12" (Small)
  std::shared_ptr<nn::AdaptiveAvgPool2d> avgpool;
  std::shared_ptr<nn::Sequential> head;  // registered as "classifier": Linear, Hardswish, Dropout, Linear

 private:
  std::vector<detail_features::Stage> stages() {
    auto pool = [this](const Tensor& y) { return avgpool->forward(y).flatten(1); };
    return detail_mobilenet::feature_stages(*features, pool);
  }
};

// torchvision's builders (num_classes, in_chans); default width_mult 1.0 and dropout 0.2.
inline std::shared_ptr<MobileNetV2> mobilenet_v2(int64_t num_classes = 1000, int64_t in_chans = 3) {
  MobileNetV2Config cfg;
  cfg.num_classes = num_classes;
  cfg.in_chans = in_chans;
  return std::make_shared<MobileNetV2>(cfg);
}
inline std::shared_ptr<MobileNetV3> mobilenet_v3_large(int64_t num_classes = 1000, int64_t in_chans = 3) {
  MobileNetV3Config cfg;
  cfg.arch = MobileNetV3Arch::Large;
  cfg.num_classes = num_classes;
  cfg.in_chans = in_chans;
  return std::make_shared<MobileNetV3>(cfg);
}
inline std::shared_ptr<MobileNetV3> mobilenet_v3_small(int64_t num_classes = 1000, int64_t in_chans = 3) {
  MobileNetV3Config cfg;
  cfg.arch = MobileNetV3Arch::Small;
  cfg.num_classes = num_classes;
  cfg.in_chans = in_chans;
  return std::make_shared<MobileNetV3>(cfg);
}

}  // namespace graft::models
