// graft/models/efficientnet.hpp - EfficientNet-B0/B1/B2/B3 exactly as torchvision 0.14
// (torchvision.models.efficientnet_b0() .. efficientnet_b3(), the V1 models), with torchvision's module
// names, so a torchvision state_dict (e.g. efficientnet_b0_rwightman-3dd342df.pth) loads strictly.
// EfficientNet-Lite (another package's names, no squeeze-excitation, ReLU6) is models/efficientnet_lite.hpp.
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto model = graft::models::efficientnet_b0();           // 1000 classes, torchvision's init
//   model->load_state_dict(graft::io::load_torch_checkpoint("efficientnet_b0_rwightman-3dd342df.pth"));
//   model->eval();
//   Tensor logits = model->forward(images);                   // images [B, 3, 224, 224] -> [B, 1000]
//   Tensor feats  = model->forward_features(images);          // [B, 1280], pooled, before the classifier
//   model->reset_classifier(10);                              // new classifier.1: Linear(1280, 10); 0 = Identity
//   model->fuse_for_inference();                              // (eval mode) every BatchNorm folded into its conv
// Preprocessing of torchvision's ImageNet weights: ImageNet mean/std (transforms::kImageNetMean /
// kImageNetStd) on [0, 1] RGB, bicubic resize then center crop: b0 256 -> 224, b1 256 -> 240 (V1;
// the default V2 weights: bilinear 255 -> 240), b2 288 -> 288, b3 320 -> 300.
//
// Architecture (torchvision's _efficientnet_conf("efficientnet_bN")):
//   features.0   Conv2dNormActivation: conv 3x3/2 (in_chans -> 32 w) -> bn -> SiLU
//   features.1..7: stages of MBConv blocks (expand e, kernel k, stride s, in -> out, layers n):
//     e1 k3 s1 32->16 n1 | e6 k3 s2 16->24 n2 | e6 k5 s2 24->40 n2 | e6 k3 s2 40->80 n3 |
//     e6 k5 s1 80->112 n3 | e6 k5 s2 112->192 n4 | e6 k3 s1 192->320 n1
//     channels scaled by make_divisible(c w, 8) (the stem's 32 too), layers by ceil(n d) (every stage,
//     the first and last included); the stride applies to a stage's first block.
//   features.8   Conv2dNormActivation: conv 1x1 (320 w -> 4 * that = 1280 for b0) -> bn -> SiLU
//   avgpool (adaptive, 1x1) -> flatten -> classifier = Sequential(Dropout(p), Linear(4 * 320 w, classes))
//   make_divisible(v, 8) = max(8, int(v + 4) // 8 * 8), plus 8 if that is below 0.9 v (torchvision's
//   _make_divisible, in double precision as the Python).
//   b0: w 1.0 d 1.0, dropout 0.2 (16 blocks, 1280 features); b1: w 1.0 d 1.1, 0.2 (23 blocks, 1280);
//   b2: w 1.1 d 1.2, 0.3 (23 blocks, 1408); b3: w 1.2 d 1.4, 0.3 (26 blocks, 1536).
// MBConv (features.{i}.{j}), C = its input channels, E = make_divisible(C e, 8):
//   block.0  Conv2dNormActivation 1x1 C -> E, bn, SiLU         (absent when E = C, i.e. e = 1)
//   block.k  Conv2dNormActivation kxk/s depthwise (groups E, padding (k - 1) / 2), bn, SiLU
//   block.k+1 SqueezeExcitation(E, max(1, C // 4)): avgpool, fc1, fc2 (1x1 convs with bias),
//            activation SiLU, scale_activation Sigmoid
//   block.k+2 Conv2dNormActivation 1x1 E -> out, bn (no activation)
//   stochastic_depth  StochasticDepth(p_i, "row"), p_i = 0.2 i / number of blocks for block i (0-based,
//            over the whole network); with s = 1 and C = out: y = stochastic_depth(block(x)) + x,
//            otherwise y = block(x). No conv has a bias except the squeeze-excitation's.
// Conv2dNormActivation is a Sequential: "0" the conv, "1" the BatchNorm2d, "2" the SiLU.
// BatchNorm: torch's defaults (eps 1e-5, momentum 0.1) for b0..b3 (torchvision gives b5..b7 eps 1e-3).
// State dict keys (b0 has 360 entries, b1/b2 508, b3 574):
//   features.0.0.weight [32 w, in_chans, 3, 3], features.0.1.{weight, bias, running_mean, running_var,
//   num_batches_tracked}, features.{i}.{j}.block.{k}.0.weight, features.{i}.{j}.block.{k}.1.*,
//   features.{i}.{j}.block.{k}.fc1.{weight, bias}, features.{i}.{j}.block.{k}.fc2.{weight, bias},
//   features.8.0.weight, features.8.1.*, classifier.1.{weight [classes, F], bias [classes]}.
// Initialization as torchvision's EfficientNet: every Conv2d kaiming_normal_(fan_out) (gain sqrt 2) with
// zero bias, BatchNorm weight 1 bias 0, the Linear uniform(-1 / sqrt(classes), 1 / sqrt(classes)) with
// zero bias; reset_classifier's new Linear gets torch's default init instead (classifier.hpp).
// Left out: B4..B7 (bigger, and B5..B7 need eps 1e-3 / momentum 0.01: a config away, but untested) and
// EfficientNetV2 (FusedMBConv); torchvision's in-place SiLU / Dropout / `result += input` are plain
// ops here (same values; autograd needs the inputs).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "graft/models/classifier.hpp"
#include "graft/nn.hpp"

namespace graft::models {

struct EfficientNetConfig {
  double width_mult = 1.0;
  double depth_mult = 1.0;
  double dropout = 0.2;                 // the classifier's Dropout
  double stochastic_depth_prob = 0.2;   // the last block's rate is just below this (0.2 i / blocks)
  int64_t num_classes = 1000;
  int64_t in_chans = 3;
};

// torchvision's efficientnet_b{variant}(), variant 0..3.
inline EfficientNetConfig efficientnet_b_config(int variant, int64_t num_classes = 1000, int64_t in_chans = 3) {
  GRAFT_CHECK(variant >= 0 && variant <= 3, "EfficientNet", "variant must be 0, 1, 2 or 3 (b0..b3), got ", variant);
  static constexpr double kWidth[] = {1.0, 1.0, 1.1, 1.2}, kDepth[] = {1.0, 1.1, 1.2, 1.4},
                          kDropout[] = {0.2, 0.2, 0.3, 0.3};
  EfficientNetConfig c;
  c.width_mult = kWidth[variant];
  c.depth_mult = kDepth[variant];
  c.dropout = kDropout[variant];
  c.num_classes = num_classes;
  c.in_chans = in_chans;
  return c;
}

namespace detail_efficientnet {

// One row of torchvision's inverted_residual_setting for efficientnet_b*, before width/depth scaling.
struct MBConvStage {
  int64_t expand_ratio, kernel, stride, input_channels, out_channels, num_layers;
};
inline constexpr MBConvStage kStagesB[7] = {{1, 3, 1, 32, 16, 1},   {6, 3, 2, 16, 24, 2},   {6, 5, 2, 24, 40, 2},
                                            {6, 3, 2, 40, 80, 3},   {6, 5, 1, 80, 112, 3},  {6, 5, 2, 112, 192, 4},
                                            {6, 3, 1, 192, 320, 1}};

using models::make_divisible;  // models/common.hpp
// MBConvConfig.adjust_channels / adjust_depth.
inline int64_t adjust_channels(int64_t channels, double width_mult) { return make_divisible(double(channels) * width_mult); }
inline int64_t adjust_depth(int64_t num_layers, double depth_mult) {
  return int64_t(std::ceil(double(num_layers) * depth_mult));
}

// Conv2d without bias initialized as torchvision's EfficientNet does (kaiming_normal_, fan_out).
inline std::shared_ptr<nn::Conv2d> conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups) {
  nn::Conv2dOptions o;
  o.stride = {stride, stride};
  o.padding = {(kernel - 1) / 2, (kernel - 1) / 2};
  o.groups = groups;
  o.bias = false;
  auto c = std::make_shared<nn::Conv2d>(in, out, kernel, o);
  NoGradGuard no_grad;
  init::kaiming_normal_(c->weight, 0.0, init::FanMode::FanOut);
  return c;
}

// torchvision.ops.misc.Conv2dNormActivation with BatchNorm2d: "0" conv (no bias), "1" bn, "2" SiLU
// (absent when with_silu is false). A Sequential, so it folds its own (conv, bn) pair.
class ConvNormActivation : public nn::Sequential {
 public:
  ConvNormActivation(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t groups = 1,
                     bool with_silu = true) {
    set_type_name("Conv2dNormActivation");
    push_back(conv(in, out, kernel, stride, groups));
    push_back(std::make_shared<nn::BatchNorm2d>(out));
    if (with_silu) push_back(std::make_shared<nn::SiLU>());
  }
};

// torchvision.ops.SqueezeExcitation(channels, squeeze, SiLU, Sigmoid), fc1 / fc2 initialized as
// torchvision's EfficientNet initializes every Conv2d (kaiming_normal_ fan_out, bias 0).
inline std::shared_ptr<nn::SqueezeExcitation> squeeze_excitation(int64_t channels, int64_t squeeze) {
  auto se = std::make_shared<nn::SqueezeExcitation>(channels, squeeze, std::make_shared<nn::SiLU>(),
                                                    std::make_shared<nn::Sigmoid>());
  NoGradGuard no_grad;
  for (const auto& fc : {se->fc1, se->fc2}) {
    init::kaiming_normal_(fc->weight, 0.0, init::FanMode::FanOut);
    init::constant_(fc->bias, 0.0);
  }
  return se;
}

}  // namespace detail_efficientnet

// torchvision.models.efficientnet.MBConv (see the top of this file).
class MBConv : public nn::Module {
 public:
  // in -> out channels; stochastic_depth_prob: this block's rate.
  MBConv(int64_t in, int64_t out, int64_t expand_ratio, int64_t kernel, int64_t stride, double stochastic_depth_prob)
      : Module("MBConv"), input_channels(in), out_channels(out), use_res_connect(stride == 1 && in == out) {
    using detail_efficientnet::ConvNormActivation;
    GRAFT_CHECK(stride == 1 || stride == 2, "MBConv", "illegal stride value ", stride, " (must be 1 or 2)");
    const int64_t expanded = detail_efficientnet::adjust_channels(in, double(expand_ratio));
    block = register_module("block", std::make_shared<nn::Sequential>());
    if (expanded != in) block->push_back(std::make_shared<ConvNormActivation>(in, expanded, 1));
    block->push_back(std::make_shared<ConvNormActivation>(expanded, expanded, kernel, stride, expanded));
    block->push_back(detail_efficientnet::squeeze_excitation(expanded, std::max<int64_t>(1, in / 4)));
    block->push_back(std::make_shared<ConvNormActivation>(expanded, out, 1, 1, 1, /*with_silu=*/false));
    stochastic_depth = register_module("stochastic_depth", std::make_shared<nn::StochasticDepth>(stochastic_depth_prob, "row"));
  }
  // x [B, in, H, W] -> [B, out, ceil(H / stride), ceil(W / stride)]
  Tensor forward(const Tensor& x) override {
    const Tensor y = block->forward(x);
    return use_res_connect ? add(stochastic_depth->forward(y), x) : y;
  }

  int64_t input_channels, out_channels;
  bool use_res_connect;  // stride 1 and in == out
  std::shared_ptr<nn::Sequential> block;  // [expand], depthwise, squeeze-excitation, project
  std::shared_ptr<nn::StochasticDepth> stochastic_depth;
};

class EfficientNet : public ImageClassifier {
 public:
  explicit EfficientNet(const EfficientNetConfig& cfg) : ImageClassifier("EfficientNet"), config(cfg) {
    using namespace detail_efficientnet;
    GRAFT_CHECK(cfg.width_mult > 0 && cfg.depth_mult > 0, "EfficientNet",
                "width_mult and depth_mult must be positive, got ", cfg.width_mult, " and ", cfg.depth_mult);
    GRAFT_CHECK(cfg.num_classes >= 0 && cfg.in_chans >= 1, "EfficientNet",
                "num_classes must be >= 0 and in_chans >= 1, got ", cfg.num_classes, " and ", cfg.in_chans);
    GRAFT_CHECK(cfg.dropout >= 0 && cfg.dropout <= 1 && cfg.stochastic_depth_prob >= 0 && cfg.stochastic_depth_prob <= 1,
                "EfficientNet", "dropout and stochastic_depth_prob must be in [0, 1], got ", cfg.dropout, " and ",
                cfg.stochastic_depth_prob);
    features = register_module("features", std::make_shared<nn::Sequential>());
    const int64_t stem_channels = adjust_channels(kStagesB[0].input_channels, cfg.width_mult);
    features->push_back(std::make_shared<ConvNormActivation>(cfg.in_chans, stem_channels, 3, 2));

    int64_t total_blocks = 0;
    for (const MBConvStage& st : kStagesB) total_blocks += adjust_depth(st.num_layers, cfg.depth_mult);
    int64_t block_id = 0, channels = stem_channels;
    for (const MBConvStage& st : kStagesB) {
      const int64_t out = adjust_channels(st.out_channels, cfg.width_mult);
      auto stage = std::make_shared<nn::Sequential>();
      for (int64_t j = 0; j < adjust_depth(st.num_layers, cfg.depth_mult); ++j, ++block_id) {
        const double sd_prob = cfg.stochastic_depth_prob * double(block_id) / double(total_blocks);
        stage->push_back(std::make_shared<MBConv>(j == 0 ? channels : out, out, st.expand_ratio, st.kernel,
                                                  j == 0 ? st.stride : 1, sd_prob));
      }
      features->push_back(stage);
      channels = out;
    }
    num_features_ = 4 * channels;
    features->push_back(std::make_shared<ConvNormActivation>(channels, num_features_, 1));
    avgpool = register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}));
    classifier_seq = register_module("classifier", std::make_shared<nn::Sequential>());
    classifier_seq->push_back(std::make_shared<nn::Dropout>(cfg.dropout));
    classifier_seq->push_back(make_head(cfg.num_classes));
    if (cfg.num_classes > 0) {  // torchvision's init of the Linear (the convs and norms are set above)
      auto& fc = static_cast<nn::Linear&>(*(*classifier_seq)[1]);
      const double range = 1.0 / std::sqrt(double(cfg.num_classes));
      NoGradGuard no_grad;
      init::uniform_(fc.weight, -range, range);
      init::constant_(fc.bias, 0.0);
    }
  }

  // x [B, in_chans, H, W] -> pooled features [B, num_features()] (features.8's output averaged;
  // before the classifier's Dropout).
  Tensor forward_features(const Tensor& x) override {
    check_input(x);
    return avgpool->forward(features->forward(x)).flatten(1);
  }
  // features [B, num_features()] -> classifier.0 (Dropout) -> classifier.1 -> logits [B, num_classes]
  // (pre_logits: after the Dropout; features when the classifier is Identity).
  Tensor forward_head(const Tensor& f, bool pre_logits = false) override {
    GRAFT_CHECK(f.dim() == 2 && f.size(1) == num_features_, "EfficientNet", "forward_head: expected features [B, ",
                num_features_, "], got shape ", f.shape());
    const Tensor z = (*classifier_seq)[0]->forward(f);
    return pre_logits ? z : (*classifier_seq)[1]->forward(z);
  }

  // Named stages (models/features.hpp), torchvision's module names: "features.0" (the stem, stride 2),
  // "features.1" .. "features.7" (the MBConv stages, strides 2, 4, 8, 16, 16, 32, 32), "features.8"
  // (the 1x1 head conv, [B, num_features(), H / 32, W / 32]; sizes round up), "features" (pooled,
  // [B, num_features()]).
  std::vector<std::string> feature_names() override { return detail_features::names_of(feature_stages()); }
  NamedFeatures forward_intermediates(const Tensor& x, const std::vector<std::string>& names) override {
    check_input(x);
    return detail_features::run_stages("EfficientNet", x, feature_stages(), names);
  }

  // "classifier.1": a Linear, or Identity after reset_classifier(0); classifier.0 is the Dropout.
  std::string classifier_name() const override { return "classifier.1"; }
  // Replaces classifier.1 with a fresh Linear(num_features(), num_classes) (torch's default init);
  // 0 = Identity.
  void reset_classifier(int64_t num_classes) override {
    classifier_seq->replace_module("1", fit_to_model(make_head(num_classes)));
    config.num_classes = num_classes;
  }
  int64_t num_features() const override { return num_features_; }  // 1280, 1280, 1408, 1536 for b0..b3
  int64_t in_chans() const override { return config.in_chans; }

  EfficientNetConfig config;
  std::shared_ptr<nn::Sequential> features;  // "0" stem, "1".."7" stages of MBConv, "8" head conv
  std::shared_ptr<nn::AdaptiveAvgPool2d> avgpool;
  std::shared_ptr<nn::Sequential> classifier_seq;  // "classifier": "0" Dropout, "1" Linear (or Identity)

 private:
  void check_input(const Tensor& x) const {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == config.in_chans, "EfficientNet", "expected input [B, ",
                config.in_chans, ", H, W], got shape ", x.shape());
  }
  std::vector<detail_features::Stage> feature_stages() {
    std::vector<detail_features::Stage> st;
    for (size_t i = 0; i < features->size(); ++i)
      st.emplace_back("features." + std::to_string(i), [this, i](const Tensor& y) { return (*features)[i]->forward(y); });
    st.emplace_back("features", [this](const Tensor& y) { return avgpool->forward(y).flatten(1); });
    return st;
  }
  nn::ModulePtr make_head(int64_t num_classes) const {
    GRAFT_CHECK(num_classes >= 0, "EfficientNet", "reset_classifier: num_classes must be >= 0, got ", num_classes);
    if (num_classes == 0) return std::make_shared<nn::Identity>();
    return std::make_shared<nn::Linear>(num_features_, num_classes);
  }
  int64_t num_features_ = 0;
};

// torchvision's builders (num_classes, in_chans).
inline std::shared_ptr<EfficientNet> efficientnet_b0(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<EfficientNet>(efficientnet_b_config(0, num_classes, in_chans));
}
inline std::shared_ptr<EfficientNet> efficientnet_b1(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<EfficientNet>(efficientnet_b_config(1, num_classes, in_chans));
}
inline std::shared_ptr<EfficientNet> efficientnet_b2(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<EfficientNet>(efficientnet_b_config(2, num_classes, in_chans));
}
inline std::shared_ptr<EfficientNet> efficientnet_b3(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<EfficientNet>(efficientnet_b_config(3, num_classes, in_chans));
}

}  // namespace graft::models
