// graft/models/convnext.hpp - ConvNeXt-Tiny / Small exactly as torchvision 0.14 (torchvision.models.convnext,
// Liu et al. 2022, "A ConvNet for the 2020s"), with torchvision's module names, so a torchvision
// state_dict loads strictly; any other torchvision ConvNeXt (Base, Large, a custom block_setting) is a
// ConvNeXtConfig away.
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto model = graft::models::convnext_tiny();        // 1000 classes, torchvision's init
//   model->load_state_dict(graft::io::load_safetensors("convnext_tiny.safetensors"));
//   model->eval();
//   Tensor logits = model->forward(images);             // images [B, 3, H, W] -> [B, 1000]
//   Tensor feats  = model->forward_features(images);    // [B, 768]: pooled, classifier.0 (LayerNorm2d), flattened
//   Tensor out    = model->forward_head(feats);         // classifier.2 (Linear); = forward(images)
//   model->reset_classifier(10);                        // new classifier.2: Linear(768, 10); 0 = Identity
// Preprocessing of torchvision's ImageNet weights: resize 236 (tiny) / 230 (small), bilinear, center
// crop 224, mean/std models::kImageNetMean / kImageNetStd on [0, 1] RGB. Any H, W >= 32 runs (4 x 2^3: the
// stem's stride times the three downsamplings, each of which floors odd sizes).
//
// Names and shapes (C_i = block_setting[i].input_channels; tiny and small: 96, 192, 384, 768):
//   features.0            the stem (torchvision's Conv2dNormActivation, no activation):
//     .0 Conv2d(in_chans, C_0, 4, stride 4, bias)  .1 LayerNorm2d(C_0)       [B, C_0, H/4, W/4]
//   features.{1, 3, 5, 7} the stages: Sequential of CNBlock "0", "1", ... (tiny 3, 3, 9, 3 blocks;
//                         small 3, 3, 27, 3), each keeping [B, C_i, h, w]
//   features.{2, 4, 6}    the downsamplings: .0 LayerNorm2d(C_i)  .1 Conv2d(C_i, C_i+1, 2, stride 2, bias)
//   avgpool               AdaptiveAvgPool2d(1)                               [B, C_last, 1, 1]
//   classifier            .0 LayerNorm2d(C_last)  .1 Flatten(1)  .2 Linear(C_last, num_classes)
// A stage whose out_channels is unset has no downsampling after it (the last one), so a block_setting of
// n stages with n - 1 downsamplings gives features.0 .. features.<2n - 1>.
// CNBlock(dim), x [B, dim, h, w] -> x + stochastic_depth(layer_scale * block(x)):
//   block.0 Conv2d(dim, dim, 7, padding 3, groups dim, bias)  (depthwise)
//   block.1 Permute [0, 2, 3, 1] -> [B, h, w, dim]      block.2 LayerNorm(dim, eps 1e-6)
//   block.3 Linear(dim, 4 dim)  block.4 GELU (erf)  block.5 Linear(4 dim, dim)
//   block.6 Permute [0, 3, 1, 2] -> [B, dim, h, w]
//   layer_scale [dim, 1, 1] (initialized to 1e-6), stochastic_depth StochasticDepth(p, "row") with
//   p = stochastic_depth_prob * k / (blocks - 1) for the k-th block counted over all stages (tiny 0.1,
//   small 0.4: 0 for the first block, the full probability for the last).
// LayerNorm2d: torchvision's (an nn.LayerNorm over the channels of NCHW, through permutes), eps 1e-6,
// weight and bias [C].
// forward_features / forward_head split torchvision's classifier after its Flatten: the features are the
// pooled map normalized by classifier.0 and flattened ([B, C_last], what a linear probe sees), and the
// head is the final Linear classifier.2 (classifier_name()), so forward(x) is torchvision's forward.
// Initialization as torchvision: every Conv2d and Linear weight trunc_normal_(std 0.02, bounds -2, 2),
// bias 0; LayerNorm weight 1, bias 0; layer_scale 1e-6. reset_classifier uses torch's default Linear
// init (the ImageClassifier contract).
// State dict per CNBlock, in torch's order: layer_scale, block.0.{weight [dim, 1, 7, 7], bias},
// block.2.{weight, bias}, block.3.{weight [4 dim, dim], bias}, block.5.{weight [dim, 4 dim], bias};
// convnext_tiny has 182 entries (28,589,128 parameters), convnext_small 344 (50,223,688).
// Differences from torchvision: in_chans may differ from 3 (torchvision fixes the stem at 3), and a
// block_setting of a single block gives it stochastic depth 0 (torchvision divides by zero there).
// No BatchNorm, so nothing to fold for inference (fuse_for_inference() folds 0 pairs).
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "graft/models/classifier.hpp"
#include "graft/models/features.hpp"
#include "graft/nn.hpp"

namespace graft::models {

// The normalization torchvision's ImageNet ConvNeXt weights expect, on [0, 1] RGB.

// torchvision.models.convnext.CNBlockConfig: a stage of num_layers CNBlocks at input_channels, then a
// downsampling to out_channels (none when out_channels is unset: the last stage).
struct CNBlockConfig {
  int64_t input_channels = 0;
  std::optional<int64_t> out_channels;
  int64_t num_layers = 0;
};

struct ConvNeXtConfig {
  std::vector<CNBlockConfig> block_setting;
  double stochastic_depth_prob = 0.0;  // of the last block; linearly less before it
  double layer_scale = 1e-6;           // the initial value of every block's layer_scale
  int64_t num_classes = 1000;
  int64_t in_chans = 3;
};

// torchvision's convnext_tiny / convnext_small settings.
inline ConvNeXtConfig convnext_tiny_config(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return {{{96, 192, 3}, {192, 384, 3}, {384, 768, 9}, {768, std::nullopt, 3}}, 0.1, 1e-6, num_classes, in_chans};
}
inline ConvNeXtConfig convnext_small_config(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return {{{96, 192, 3}, {192, 384, 3}, {384, 768, 27}, {768, std::nullopt, 3}}, 0.4, 1e-6, num_classes, in_chans};
}

namespace detail_convnext {

inline constexpr double kLayerNormEps = 1e-6;
inline constexpr double kInitStd = 0.02;

// torchvision's ConvNeXt init of one Conv2d or Linear: weight trunc_normal_(std 0.02), bias 0.
inline void init_weight_and_bias(const Tensor& weight, const Tensor& bias) {
  NoGradGuard no_grad;
  init::trunc_normal_(weight, 0.0, kInitStd, -2.0, 2.0);
  if (bias.defined()) init::constant_(bias, 0.0);
}

inline std::shared_ptr<nn::Conv2d> conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding,
                                        int64_t groups = 1) {
  nn::Conv2dOptions o;
  o.stride = {stride, stride};
  o.padding = {padding, padding};
  o.groups = groups;
  o.bias = true;
  auto c = std::make_shared<nn::Conv2d>(in, out, kernel, o);
  init_weight_and_bias(c->weight, c->bias);
  return c;
}

inline std::shared_ptr<nn::Linear> linear(int64_t in, int64_t out) {
  auto l = std::make_shared<nn::Linear>(in, out);
  init_weight_and_bias(l->weight, l->bias);
  return l;
}

}  // namespace detail_convnext

// torchvision.ops.misc.Permute: x.permute(dims) (a view; no parameters).
class Permute : public nn::Module {
 public:
  explicit Permute(std::vector<int64_t> order) : Module("Permute"), dims(std::move(order)) {}
  Tensor forward(const Tensor& x) override { return x.permute(dims); }
  std::vector<int64_t> dims;
};

// torchvision.models.convnext.LayerNorm2d: layer norm over the channels of x [B, C, H, W] at every
// pixel (permute to [B, H, W, C], normalize the last dim, permute back), weight and bias [C].
class LayerNorm2d : public nn::Module {
 public:
  explicit LayerNorm2d(int64_t channels, double epsilon = detail_convnext::kLayerNormEps)
      : Module("LayerNorm2d"), num_channels(channels), eps(epsilon) {
    GRAFT_CHECK(channels >= 1, "LayerNorm2d", "channels must be >= 1, got ", channels);
    weight = register_parameter("weight", ones({channels}));
    bias = register_parameter("bias", zeros({channels}));
  }
  // x [B, C, H, W] -> [B, C, H, W] (a channels-last view: strides of [B, H, W, C])
  Tensor forward(const Tensor& x) override {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == num_channels, "LayerNorm2d", "expected input [B, ", num_channels,
                ", H, W], got shape ", x.shape());
    const Tensor y = layer_norm(x.permute({0, 2, 3, 1}), Shape{num_channels}, weight, bias, eps);
    return y.permute({0, 3, 1, 2});
  }
  int64_t num_channels;
  double eps;
  Tensor weight, bias;  // [C]
};

// torchvision.models.convnext.CNBlock (see the top of this file).
class CNBlock : public nn::Module {
 public:
  // sd_prob: this block's stochastic depth probability.
  CNBlock(int64_t dim, double layer_scale_init, double sd_prob) : Module("CNBlock"), channels(dim) {
    using namespace detail_convnext;
    GRAFT_CHECK(dim >= 1, "CNBlock", "dim must be >= 1, got ", dim);
    block = register_module("block", std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
                                         conv(dim, dim, 7, 1, 3, dim),
                                         std::make_shared<Permute>(std::vector<int64_t>{0, 2, 3, 1}),
                                         std::make_shared<nn::LayerNorm>(dim, kLayerNormEps),
                                         linear(dim, 4 * dim),
                                         std::make_shared<nn::GELU>(),
                                         linear(4 * dim, dim),
                                         std::make_shared<Permute>(std::vector<int64_t>{0, 3, 1, 2})}));
    layer_scale = register_parameter("layer_scale", full({dim, 1, 1}, layer_scale_init));
    stochastic_depth = register_module("stochastic_depth", std::make_shared<nn::StochasticDepth>(sd_prob, "row"));
  }
  // x [B, dim, h, w] -> [B, dim, h, w]
  Tensor forward(const Tensor& x) override {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == channels, "CNBlock", "expected input [B, ", channels,
                ", H, W], got shape ", x.shape());
    const Tensor branch = stochastic_depth->forward(mul(layer_scale, block->forward(x)));
    return add(branch, x);
  }
  int64_t channels;
  std::shared_ptr<nn::Sequential> block;  // "0" .. "6" as above
  Tensor layer_scale;                     // [dim, 1, 1]
  std::shared_ptr<nn::StochasticDepth> stochastic_depth;
};

class ConvNeXt : public ImageClassifier {
 public:
  explicit ConvNeXt(const ConvNeXtConfig& cfg) : ImageClassifier("ConvNeXt"), config(cfg) {
    using namespace detail_convnext;
    const std::vector<CNBlockConfig>& setting = cfg.block_setting;
    GRAFT_CHECK(!setting.empty(), "ConvNeXt", "block_setting must not be empty");
    GRAFT_CHECK(cfg.num_classes >= 0 && cfg.in_chans >= 1, "ConvNeXt",
                "num_classes must be >= 0 and in_chans >= 1, got ", cfg.num_classes, " and ", cfg.in_chans);
    GRAFT_CHECK(cfg.stochastic_depth_prob >= 0 && cfg.stochastic_depth_prob <= 1, "ConvNeXt",
                "stochastic_depth_prob must be in [0, 1], got ", cfg.stochastic_depth_prob);
    int64_t total_blocks = 0;
    for (size_t i = 0; i < setting.size(); ++i) {
      const CNBlockConfig& s = setting[i];
      GRAFT_CHECK(s.input_channels >= 1 && s.num_layers >= 1 && (!s.out_channels || *s.out_channels >= 1),
                  "ConvNeXt", "block_setting[", i, "]: input_channels and num_layers must be >= 1 (and "
                  "out_channels when set), got ", s.input_channels, ", ", s.num_layers, " and ",
                  s.out_channels.value_or(0));
      if (i > 0) {
        const CNBlockConfig& prev = setting[i - 1];
        const int64_t prev_out = prev.out_channels.value_or(prev.input_channels);
        GRAFT_CHECK(prev_out == s.input_channels, "ConvNeXt", "block_setting[", i, "] takes ", s.input_channels,
                    " channels but block_setting[", i - 1, "] gives ", prev_out);
      }
      total_blocks += s.num_layers;
    }

    features = register_module("features", std::make_shared<nn::Sequential>());
    features->push_back(std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
        conv(cfg.in_chans, setting[0].input_channels, 4, 4, 0), std::make_shared<LayerNorm2d>(setting[0].input_channels)}));
    int64_t block_id = 0;
    for (const CNBlockConfig& s : setting) {
      auto stage = std::make_shared<nn::Sequential>();
      for (int64_t j = 0; j < s.num_layers; ++j, ++block_id) {
        // torchvision: p * block_id / (total - 1), which divides by zero for a single block.
        const double sd_prob =
            total_blocks > 1 ? cfg.stochastic_depth_prob * double(block_id) / (double(total_blocks) - 1.0) : 0.0;
        stage->push_back(std::make_shared<CNBlock>(s.input_channels, cfg.layer_scale, sd_prob));
      }
      features->push_back(stage);
      if (s.out_channels) {
        features->push_back(std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
            std::make_shared<LayerNorm2d>(s.input_channels), conv(s.input_channels, *s.out_channels, 2, 2, 0)}));
        min_input_size_ *= 2;
      }
    }
    num_features_ = setting.back().out_channels.value_or(setting.back().input_channels);
    avgpool = register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}));
    classifier_layers = register_module("classifier", std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
                                                          std::make_shared<LayerNorm2d>(num_features_),
                                                          std::make_shared<nn::Flatten>(1),
                                                          make_head(cfg.num_classes, /*torchvision_init=*/true)}));
  }

  // x [B, in_chans, H, W] -> features.<last> [B, C_last, H / 32, W / 32] (tiny / small: 32 = 4 * 2^3).
  Tensor forward_maps(const Tensor& x) {
    check_input(x);
    return features->forward(x);
  }
  // x [B, in_chans, H, W] -> pooled features [B, C_last]: avgpool, classifier.0 (LayerNorm2d), classifier.1.
  Tensor forward_features(const Tensor& x) override { return pool(forward_maps(x)); }
  // features [B, C_last] -> logits [B, num_classes] through classifier.2 (features when it is Identity).
  Tensor forward_head(const Tensor& feats, bool pre_logits = false) override {
    return pre_logits ? feats : (*classifier_layers)[2]->forward(feats);
  }

  // Named stages (models/features.hpp), torchvision's module names: "features.0" (the stem, [B, C_0, H/4,
  // W/4]), "features.1" .. (the stages and downsamplings in order, as above), then "features" (pooled
  // and normalized, [B, C_last], = forward_features; not torchvision's unpooled "features" module).
  std::vector<std::string> feature_names() override { return detail_features::names_of(feature_stages()); }
  NamedFeatures forward_intermediates(const Tensor& x, const std::vector<std::string>& names) override {
    check_input(x);
    return detail_features::run_stages("ConvNeXt", x, feature_stages(), names);
  }

  // classifier.2, a Linear, or Identity after reset_classifier(0).
  std::string classifier_name() const override { return "classifier.2"; }
  // Replaces classifier.2 with a fresh Linear(C_last, num_classes) (torch's default init); 0 = Identity.
  // The new head takes the model's mode, dtype and device (those of classifier.0).
  void reset_classifier(int64_t num_classes) override {
    nn::ModulePtr head = make_head(num_classes, /*torchvision_init=*/false);
    const Tensor like = (*classifier_layers)[0]->find_tensor("weight");
    head->to(like.dtype()).to(like.device());
    head->train(is_training());
    classifier_layers->replace_module("2", head);
    config.num_classes = num_classes;
  }
  int64_t num_features() const override { return num_features_; }
  int64_t in_chans() const override { return config.in_chans; }
  // The smallest H and W the network takes: 4 x 2^(number of downsamplings) (32 for tiny and small).
  int64_t min_input_size() const { return min_input_size_; }

  ConvNeXtConfig config;
  std::shared_ptr<nn::Sequential> features;           // "0" stem, then stages and downsamplings
  std::shared_ptr<nn::AdaptiveAvgPool2d> avgpool;
  std::shared_ptr<nn::Sequential> classifier_layers;  // the module "classifier": LayerNorm2d, Flatten, head

 private:
  void check_input(const Tensor& x) const {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == config.in_chans, "ConvNeXt", "expected input [B, ", config.in_chans,
                ", H, W], got shape ", x.shape());
    GRAFT_CHECK(x.size(2) >= min_input_size_ && x.size(3) >= min_input_size_, "ConvNeXt", "input [B, C, H, W] of shape ",
                x.shape(), " is too small: H and W must be >= ", min_input_size_);
  }
  // features.<last> [B, C, h, w] -> [B, C]
  Tensor pool(const Tensor& maps) {
    return (*classifier_layers)[1]->forward((*classifier_layers)[0]->forward(avgpool->forward(maps)));
  }
  std::vector<detail_features::Stage> feature_stages() {
    std::vector<detail_features::Stage> st;
    for (size_t i = 0; i < features->size(); ++i)
      st.emplace_back("features." + std::to_string(i), [this, i](const Tensor& y) { return (*features)[i]->forward(y); });
    st.emplace_back("features", [this](const Tensor& y) { return pool(y); });
    return st;
  }
  nn::ModulePtr make_head(int64_t num_classes, bool torchvision_init) const {
    GRAFT_CHECK(num_classes >= 0, "ConvNeXt", "reset_classifier: num_classes must be >= 0, got ", num_classes);
    if (num_classes == 0) return std::make_shared<nn::Identity>();
    if (torchvision_init) return detail_convnext::linear(num_features_, num_classes);
    return std::make_shared<nn::Linear>(num_features_, num_classes);
  }

  int64_t num_features_ = 0;
  int64_t min_input_size_ = 4;  // the stem's stride, doubled per downsampling
};

inline std::shared_ptr<ConvNeXt> convnext_tiny(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ConvNeXt>(convnext_tiny_config(num_classes, in_chans));
}
inline std::shared_ptr<ConvNeXt> convnext_small(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ConvNeXt>(convnext_small_config(num_classes, in_chans));
}

}  // namespace graft::models
