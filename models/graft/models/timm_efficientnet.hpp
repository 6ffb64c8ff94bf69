// graft/models/timm_efficientnet.hpp - EfficientNet-B0 as timm 0.9 builds it (timm.create_model(
// "efficientnet_b0"): timm.models.efficientnet.EfficientNet from _gen_efficientnet), with timm's module
// names, so a timm checkpoint (efficientnet_b0.ra_in1k) loads strictly. torchvision's EfficientNet, the
// same network under other names (and another init), is models/efficientnet.hpp; this one reuses its
// stage table and channel rounding.
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto model = graft::models::timm::efficientnet_b0();     // 1000 classes, timm's init
//   model->load_state_dict(graft::io::load_safetensors("efficientnet_b0.safetensors"));   // timm's keys
//   model->eval();
//   Tensor logits = model->forward(images);                   // images [B, 3, 224, 224] -> [B, 1000]
//   Tensor feats  = model->forward_features(images);          // [B, 1280], pooled, before the classifier
//   model->reset_classifier(10);                              // new classifier; 0 = Identity
//   model->fuse_for_inference();                              // (eval mode) every BatchNorm folded into its conv
//
// Architecture (timm's names; channel_multiplier w, depth_multiplier d, 1 and 1 for b0):
//   conv_stem Conv2d(in_chans, r(32), 3, stride 2, padding 1), bn1 BatchNormAct2d (SiLU)
//   blocks.i.j: the stages of models/efficientnet.hpp's table (ds / ir, expand e, kernel k, stride s,
//     out channels r(c), ceil(n d) blocks; the stride on a stage's first block); r(c) = make_divisible(c w, 8)
//     blocks.0.*: DepthwiseSeparableConv (e = 1): conv_dw kxk/s depthwise, bn1 (SiLU), se, conv_pw 1x1,
//                 bn2 (no activation)
//     blocks.1..6.*: InvertedResidual: conv_pw 1x1 C -> E = make_divisible(C e), bn1 (SiLU), conv_dw kxk/s
//                 depthwise, bn2 (SiLU), se, conv_pwl 1x1 E -> out, bn3 (no activation)
//     se: SqueezeExcite over the block's mid channels M (the conv_dw's), squeezed to round(M 0.25 / e)
//         (timm's se_from_exp = False: a quarter of the block's input channels): mean over H, W ->
//         conv_reduce (1x1, bias) -> SiLU -> conv_expand (1x1, bias) -> sigmoid gate -> x * gate
//     with stride 1 and in == out: y = drop_path(block(x)) + x, drop_path rate drop_path_rate * i / blocks
//     for block i (0-based over the network; timm's default rate 0, its training recipe 0.2)
//   conv_head Conv2d(r(320), r(1280), 1), bn2 BatchNormAct2d (SiLU), global_pool (average, flattened),
//   dropout(drop_rate, 0 by default) -> classifier Linear(r(1280), num_classes)
// Convs have no bias except the squeeze-excitation's; padding is symmetric (k - 1) / 2 (timm's default
// pad_type '', not the tf_ models' "same"); BatchNorm eps 1e-5, momentum 0.1 (torch's defaults).
// BatchNormAct2d is a BatchNorm2d (its keys) with the activation inside, as timm's.
// State dict (b0: 360 entries, 5,288,548 parameters, as timm's): conv_stem.weight, bn1.*,
//   blocks.0.0.{conv_dw, bn1, se.conv_reduce, se.conv_expand, conv_pw, bn2}, blocks.i.j.{conv_pw, bn1,
//   conv_dw, bn2, se.conv_reduce, se.conv_expand, conv_pwl, bn3}, conv_head.weight, bn2.*, classifier.*.
// Initialization as timm (_init_weight_goog): Conv2d weight normal(0, sqrt(2 / fan_out)) with
// fan_out = k * k * out_channels / groups, bias 0; BatchNorm 1 / 0; the classifier uniform(-r, r),
// r = 1 / sqrt(num_classes), bias 0. reset_classifier's new Linear gets torch's default init
// (the ImageClassifier contract; timm's reset_classifier does the same).
// Left out: the other EfficientNet variants of timm (b1..b8 are a config away: efficientnet_config's
// multipliers), tf_ "same" padding, CondConv, EdgeResidual (V2).
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "graft/models/classifier.hpp"
#include "graft/models/efficientnet.hpp"
#include "graft/models/features.hpp"
#include "graft/nn.hpp"

namespace graft::models::timm {

struct EfficientNetConfig {
  double channel_multiplier = 1.0;
  double depth_multiplier = 1.0;
  double drop_rate = 0.0;        // before the classifier (timm's create_model default)
  double drop_path_rate = 0.0;   // stochastic depth: block i of n gets rate * i / n
  int64_t num_classes = 1000;
  int64_t in_chans = 3;
};

namespace detail_efficientnet {

using models::detail_efficientnet::kStagesB;  // the stage table timm's efficientnet arch_def spells out
inline int64_t round_channels(int64_t c, double multiplier) { return make_divisible(double(c) * multiplier); }

// Conv2d with timm's _init_weight_goog: normal(0, sqrt(2 / (k * k * out / groups))), bias 0.
inline std::shared_ptr<nn::Conv2d> conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                                        int64_t groups = 1, bool bias = false) {
  nn::Conv2dOptions o;
  o.stride = {stride, stride};
  o.padding = {(kernel - 1) / 2, (kernel - 1) / 2};
  o.groups = groups;
  o.bias = bias;
  auto c = std::make_shared<nn::Conv2d>(in, out, kernel, o);
  NoGradGuard no_grad;
  init::normal_(c->weight, 0.0, std::sqrt(2.0 / double(kernel * kernel * out / groups)));
  if (bias) init::constant_(c->bias, 0.0);
  return c;
}

}  // namespace detail_efficientnet

// timm.layers.BatchNormAct2d: a BatchNorm2d (the same keys and statistics) followed by its activation
// "act" (SiLU here, or none). fuse_conv_bn folds its normalization; the activation still runs.
class BatchNormAct2d : public nn::BatchNorm2d {
 public:
  BatchNormAct2d(int64_t channels, bool apply_act) : nn::BatchNorm2d(channels) {
    set_type_name("BatchNormAct2d");
    if (apply_act) act = register_module("act", std::make_shared<nn::SiLU>());
  }
  Tensor forward(const Tensor& x) override {
    const Tensor y = nn::BatchNorm2d::forward(x);
    return act ? act->forward(y) : y;
  }
  std::shared_ptr<nn::SiLU> act;  // null: no activation
};

// timm.models._efficientnet_blocks.SqueezeExcite: x * sigmoid(conv_expand(SiLU(conv_reduce(mean_hw(x))))).
class SqueezeExcite : public nn::Module {
 public:
  SqueezeExcite(int64_t channels, int64_t reduced) : Module("SqueezeExcite") {
    GRAFT_CHECK(channels >= 1 && reduced >= 1, "timm SqueezeExcite", "channels and reduced channels must be >= 1, got ",
                channels, " and ", reduced);
    conv_reduce = register_module("conv_reduce", detail_efficientnet::conv(channels, reduced, 1, 1, 1, true));
    act1 = register_module("act1", std::make_shared<nn::SiLU>());
    conv_expand = register_module("conv_expand", detail_efficientnet::conv(reduced, channels, 1, 1, 1, true));
    gate = register_module("gate", std::make_shared<nn::Sigmoid>());
  }
  // x [B, C, H, W] -> [B, C, H, W]
  Tensor forward(const Tensor& x) override {
    const Tensor s = mean(x, {2, 3}, /*keepdim=*/true);  // [B, C, 1, 1]
    return mul(x, gate->forward(conv_expand->forward(act1->forward(conv_reduce->forward(s)))));
  }
  std::shared_ptr<nn::Conv2d> conv_reduce, conv_expand;
  std::shared_ptr<nn::SiLU> act1;
  std::shared_ptr<nn::Sigmoid> gate;
};

namespace detail_efficientnet {
// timm's squeeze width: round(mid * se_ratio / exp_ratio) (Python's round: half to even).
inline int64_t se_channels(int64_t mid, int64_t expand_ratio) {
  return int64_t(std::nearbyint(double(mid) * (0.25 / double(expand_ratio))));
}
// timm's DropPath: a "row" StochasticDepth (Identity at rate 0).
inline std::shared_ptr<nn::StochasticDepth> drop_path(double rate) {
  return std::make_shared<nn::StochasticDepth>(rate, "row");
}
}  // namespace detail_efficientnet

// timm.models._efficientnet_blocks.DepthwiseSeparableConv (the stage-0 block, expansion 1).
class DepthwiseSeparableConv : public nn::Module {
 public:
  DepthwiseSeparableConv(int64_t in, int64_t out, int64_t kernel, int64_t stride, double drop_path_rate)
      : Module("DepthwiseSeparableConv"), has_skip(stride == 1 && in == out) {
    using namespace detail_efficientnet;
    conv_dw = register_module("conv_dw", conv(in, in, kernel, stride, in));
    bn1 = register_module("bn1", std::make_shared<BatchNormAct2d>(in, true));
    se = register_module("se", std::make_shared<SqueezeExcite>(in, se_channels(in, 1)));
    conv_pw = register_module("conv_pw", conv(in, out, 1));
    bn2 = register_module("bn2", std::make_shared<BatchNormAct2d>(out, false));
    drop_path = register_module("drop_path", detail_efficientnet::drop_path(drop_path_rate));
  }
  // x [B, in, H, W] -> [B, out, ceil(H / stride), ceil(W / stride)]
  Tensor forward(const Tensor& x) override {
    Tensor y = se->forward(bn1->forward(conv_dw->forward(x)));
    y = bn2->forward(conv_pw->forward(y));
    return has_skip ? add(drop_path->forward(y), x) : y;
  }
  bool has_skip;
  std::shared_ptr<nn::Conv2d> conv_dw, conv_pw;
  std::shared_ptr<BatchNormAct2d> bn1, bn2;
  std::shared_ptr<SqueezeExcite> se;
  std::shared_ptr<nn::StochasticDepth> drop_path;

 protected:
  int64_t fuse_own_pairs() override {
    return int64_t(nn::fuse_conv_bn(*conv_dw, *bn1)) + nn::fuse_conv_bn(*conv_pw, *bn2);
  }
};

// timm.models._efficientnet_blocks.InvertedResidual (MBConv with squeeze-excitation).
class InvertedResidual : public nn::Module {
 public:
  InvertedResidual(int64_t in, int64_t out, int64_t expand_ratio, int64_t kernel, int64_t stride, double drop_path_rate)
      : Module("InvertedResidual"), has_skip(stride == 1 && in == out) {
    using namespace detail_efficientnet;
    GRAFT_CHECK(stride == 1 || stride == 2, "timm InvertedResidual", "stride must be 1 or 2, got ", stride);
    const int64_t mid = make_divisible(double(in) * double(expand_ratio));
    conv_pw = register_module("conv_pw", conv(in, mid, 1));
    bn1 = register_module("bn1", std::make_shared<BatchNormAct2d>(mid, true));
    conv_dw = register_module("conv_dw", conv(mid, mid, kernel, stride, mid));
    bn2 = register_module("bn2", std::make_shared<BatchNormAct2d>(mid, true));
    se = register_module("se", std::make_shared<SqueezeExcite>(mid, se_channels(mid, expand_ratio)));
    conv_pwl = register_module("conv_pwl", conv(mid, out, 1));
    bn3 = register_module("bn3", std::make_shared<BatchNormAct2d>(out, false));
    drop_path = register_module("drop_path", detail_efficientnet::drop_path(drop_path_rate));
  }
  // x [B, in, H, W] -> [B, out, ceil(H / stride), ceil(W / stride)]
  Tensor forward(const Tensor& x) override {
    Tensor y = bn1->forward(conv_pw->forward(x));
    y = se->forward(bn2->forward(conv_dw->forward(y)));
    y = bn3->forward(conv_pwl->forward(y));
    return has_skip ? add(drop_path->forward(y), x) : y;
  }
  bool has_skip;
  std::shared_ptr<nn::Conv2d> conv_pw, conv_dw, conv_pwl;
  std::shared_ptr<BatchNormAct2d> bn1, bn2, bn3;
  std::shared_ptr<SqueezeExcite> se;
  std::shared_ptr<nn::StochasticDepth> drop_path;

 protected:
  int64_t fuse_own_pairs() override {
    return int64_t(nn::fuse_conv_bn(*conv_pw, *bn1)) + nn::fuse_conv_bn(*conv_dw, *bn2) +
           nn::fuse_conv_bn(*conv_pwl, *bn3);
  }
};

class EfficientNet : public ImageClassifier {
 public:
  explicit EfficientNet(const EfficientNetConfig& cfg) : ImageClassifier("EfficientNet"), config(cfg) {
    using namespace detail_efficientnet;
    using models::detail_efficientnet::adjust_depth;
    GRAFT_CHECK(cfg.channel_multiplier > 0 && cfg.depth_multiplier > 0, "timm EfficientNet",
                "channel_multiplier and depth_multiplier must be positive, got ", cfg.channel_multiplier, " and ",
                cfg.depth_multiplier);
    GRAFT_CHECK(cfg.num_classes >= 0 && cfg.in_chans >= 1, "timm EfficientNet",
                "num_classes must be >= 0 and in_chans >= 1, got ", cfg.num_classes, " and ", cfg.in_chans);
    GRAFT_CHECK(cfg.drop_rate >= 0 && cfg.drop_rate <= 1 && cfg.drop_path_rate >= 0 && cfg.drop_path_rate <= 1,
                "timm EfficientNet", "drop_rate and drop_path_rate must be in [0, 1], got ", cfg.drop_rate, " and ",
                cfg.drop_path_rate);
    const double w = cfg.channel_multiplier;
    const int64_t stem = round_channels(32, w);
    conv_stem = register_module("conv_stem", conv(cfg.in_chans, stem, 3, 2));
    bn1 = register_module("bn1", std::make_shared<BatchNormAct2d>(stem, true));

    int64_t total_blocks = 0;
    for (const auto& st : kStagesB) total_blocks += adjust_depth(st.num_layers, cfg.depth_multiplier);
    blocks = register_module("blocks", std::make_shared<nn::Sequential>());
    int64_t block_id = 0, channels = stem;
    for (const auto& st : kStagesB) {
      const int64_t out = round_channels(st.out_channels, w);
      auto stage = std::make_shared<nn::Sequential>();
      for (int64_t j = 0; j < adjust_depth(st.num_layers, cfg.depth_multiplier); ++j, ++block_id) {
        const double dpr = cfg.drop_path_rate * double(block_id) / double(total_blocks);
        const int64_t stride = j == 0 ? st.stride : 1;
        if (st.expand_ratio == 1)  // timm's "ds" block
          stage->push_back(std::make_shared<DepthwiseSeparableConv>(channels, out, st.kernel, stride, dpr));
        else
          stage->push_back(std::make_shared<InvertedResidual>(channels, out, st.expand_ratio, st.kernel, stride, dpr));
        channels = out;
      }
      blocks->push_back(stage);
    }
    num_features_ = round_channels(1280, w);
    conv_head = register_module("conv_head", conv(channels, num_features_, 1));
    bn2 = register_module("bn2", std::make_shared<BatchNormAct2d>(num_features_, true));
    global_pool = register_module("global_pool", std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}));
    drop = register_module("drop", std::make_shared<nn::Dropout>(cfg.drop_rate));
    register_module("classifier", make_head(cfg.num_classes));
    if (cfg.num_classes > 0) {  // timm's init of the Linear
      auto& fc = static_cast<nn::Linear&>(classifier());
      const double range = 1.0 / std::sqrt(double(cfg.num_classes));
      NoGradGuard no_grad;
      init::uniform_(fc.weight, -range, range);
      init::constant_(fc.bias, 0.0);
    }
  }

  // x [B, in_chans, H, W] -> bn2's maps [B, num_features(), H / 32, W / 32] (timm's forward_features).
  Tensor forward_maps(const Tensor& x) {
    check_input(x);
    const Tensor y = blocks->forward(bn1->forward(conv_stem->forward(x)));
    return bn2->forward(conv_head->forward(y));
  }
  // x -> pooled features [B, num_features()] (global_pool; before the dropout).
  Tensor forward_features(const Tensor& x) override { return global_pool->forward(forward_maps(x)).flatten(1); }
  // features [B, num_features()] -> dropout -> classifier -> logits (pre_logits: after the dropout).
  Tensor forward_head(const Tensor& f, bool pre_logits = false) override {
    GRAFT_CHECK(f.dim() == 2 && f.size(1) == num_features_, "timm EfficientNet", "forward_head: expected features [B, ",
                num_features_, "], got shape ", f.shape());
    const Tensor z = drop->forward(f);
    return pre_logits ? z : classifier().forward(z);
  }

  // Named stages (models/features.hpp), timm's module names: "bn1" (the stem, stride 2), "blocks.0" ..
  // "blocks.6" (strides 2, 4, 8, 16, 16, 32, 32), "bn2" (conv_head + bn2, [B, num_features(), H/32,
  // W/32]; sizes round up), "features" (pooled, [B, num_features()]).
  std::vector<std::string> feature_names() override { return detail_features::names_of(feature_stages()); }
  NamedFeatures forward_intermediates(const Tensor& x, const std::vector<std::string>& names) override {
    check_input(x);
    return detail_features::run_stages("timm EfficientNet", x, feature_stages(), names);
  }

  std::string classifier_name() const override { return "classifier"; }
  // Replaces classifier with a fresh Linear(num_features(), num_classes) (torch's default init); 0 = Identity.
  void reset_classifier(int64_t num_classes) override {
    replace_module("classifier", fit_to_model(make_head(num_classes)));
    config.num_classes = num_classes;
  }
  int64_t num_features() const override { return num_features_; }  // 1280 for b0
  int64_t in_chans() const override { return config.in_chans; }

  EfficientNetConfig config;
  std::shared_ptr<nn::Conv2d> conv_stem, conv_head;
  std::shared_ptr<BatchNormAct2d> bn1, bn2;
  std::shared_ptr<nn::Sequential> blocks;  // stages "0" .. "6", each a Sequential of blocks
  std::shared_ptr<nn::AdaptiveAvgPool2d> global_pool;
  std::shared_ptr<nn::Dropout> drop;       // timm's F.dropout(drop_rate) before the classifier

 protected:
  // The stem and the head conv; the blocks fold their own pairs.
  int64_t fuse_own_pairs() override {
    return int64_t(nn::fuse_conv_bn(*conv_stem, *bn1)) + nn::fuse_conv_bn(*conv_head, *bn2);
  }

 private:
  void check_input(const Tensor& x) const {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == config.in_chans, "timm EfficientNet", "expected input [B, ",
                config.in_chans, ", H, W], got shape ", x.shape());
  }
  std::vector<detail_features::Stage> feature_stages() {
    std::vector<detail_features::Stage> st;
    st.emplace_back("bn1", [this](const Tensor& y) { return bn1->forward(conv_stem->forward(y)); });
    for (size_t i = 0; i < blocks->size(); ++i)
      st.emplace_back("blocks." + std::to_string(i), [this, i](const Tensor& y) { return (*blocks)[i]->forward(y); });
    st.emplace_back("bn2", [this](const Tensor& y) { return bn2->forward(conv_head->forward(y)); });
    st.emplace_back("features", [this](const Tensor& y) { return global_pool->forward(y).flatten(1); });
    return st;
  }
  nn::ModulePtr make_head(int64_t num_classes) const {
    GRAFT_CHECK(num_classes >= 0, "timm EfficientNet", "reset_classifier: num_classes must be >= 0, got ", num_classes);
    if (num_classes == 0) return std::make_shared<nn::Identity>();
    return std::make_shared<nn::Linear>(num_features_, num_classes);
  }
  int64_t num_features_ = 0;
};

// timm.create_model("efficientnet_b0"); models/registry.hpp lists it as "timm/efficientnet_b0".
inline std::shared_ptr<EfficientNet> efficientnet_b0(int64_t num_classes = 1000, int64_t in_chans = 3) {
  EfficientNetConfig c;
  c.num_classes = num_classes, c.in_chans = in_chans;
  return std::make_shared<EfficientNet>(c);
}

}  // namespace graft::models::timm
