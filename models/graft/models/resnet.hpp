// graft/models/resnet.hpp - the ResNet family exactly as torchvision 0.14 (torchvision.models.resnet):
// ResNet-18/34/50/101/152, ResNeXt-50 32x4d / 101 32x8d / 101 64x4d (grouped bottlenecks) and Wide
// ResNet-50-2 / 101-2 (bottlenecks twice as wide), with torchvision's module names, so a torchvision
// state_dict loads strictly.
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto model = graft::models::resnet50();              // 1000 classes, torchvision's init
//   model->load_state_dict(graft::io::load_safetensors("resnet50.safetensors"));
//   model->eval();
//   Tensor logits = model->forward(images);               // images [B, 3, H, W] -> [B, 1000]
//   Tensor feats  = model->forward_features(images);      // [B, 512 * expansion], pooled, before fc
//   model->reset_classifier(10);                          // new fc: Linear(2048, 10), torch default init
//   model->fuse_for_inference();                          // (eval mode) every BatchNorm folded into its conv
//
// Names (torchvision): conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc; inside layerK, blocks
// "0", "1", ...; a block's shortcut projection is "downsample.0" (conv1x1, stride) + "downsample.1" (bn).
//   BasicBlock (expansion 1):  conv1 3x3/stride, bn1, relu, conv2 3x3, bn2, downsample
//   Bottleneck (expansion 4):  conv1 1x1, bn1, conv2 3x3/stride (the "ResNet v1.5" stride placement),
//                              bn2, conv3 1x1, bn3, relu, downsample; conv1/conv2 have
//                              width = planes * width_per_group / 64 * groups channels, conv2 in `groups`
//                              groups (ResNeXt 32x4d: groups 32, width_per_group 4; Wide: 1, 128)
// Shapes: x [B, in_chans, H, W] -> conv1/maxpool [B, 64, H/4, W/4] -> layer1..4 (strides 1, 2, 2, 2,
// widths 64, 128, 256, 512 times expansion) -> avgpool [B, C, 1, 1] -> flatten [B, C] -> fc [B, classes].
// Initialization as torchvision: conv kaiming_normal_(fan_out, relu); BatchNorm weight 1, bias 0; fc
// torch's Linear default (zero_init_residual = False).
//
// timm's ResNet (timm 0.9 timm.models.resnet.ResNet) keeps these module names and adds, through
// ResNetStyle, what its "d" variants and its init change (models::timm::resnet50d() etc. below):
//   deep stem (stem_type 'deep', stem_width w): conv1 = Sequential(0 conv 3x3/2 in_chans -> w, 1 bn,
//     2 relu, 3 conv 3x3 w -> w, 4 bn, 5 relu, 6 conv 3x3 w -> 2 w); then bn1, relu, maxpool as above
//     (timm's "act1"), so layer1 takes 2 w = 64 channels for w = 32;
//   avg_down: a projection shortcut is downsample = Sequential(0 AvgPool2d(2, stride, ceil_mode, not
//     counting padding) or Identity when the stride is 1, 1 conv1x1 (stride 1), 2 bn);
//   zero_init_last: every block's last BatchNorm weight (bn2 / bn3) starts at 0 (timm's default);
//   drop_path_rate: stochastic depth ("row", timm's DropPath) on the residual branch of block i (0-based
//     over the network) with rate * i / (blocks - 1), off (no module) where that is 0 (timm's default 0).
// BatchNorm eps 1e-5 and the other inits are the same in both; timm's ResNet pools with
// "global_pool" where torchvision has "avgpool" (no parameters, so the state dicts are alike).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "graft/models/classifier.hpp"
#include "graft/models/features.hpp"
#include "graft/nn.hpp"

namespace graft::models {

enum class ResNetBlock { Basic, Bottleneck };

namespace detail_resnet {

// Conv2d without bias, initialized as torchvision's ResNet does (kaiming_normal_, fan_out, relu).
inline std::shared_ptr<nn::Conv2d> conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding,
                                        int64_t groups = 1) {
  nn::Conv2dOptions o;
  o.stride = {stride, stride};
  o.padding = {padding, padding};
  o.groups = groups;
  o.bias = false;
  auto c = std::make_shared<nn::Conv2d>(in, out, kernel, o);
  NoGradGuard no_grad;
  init::kaiming_normal_(c->weight, 0.0, init::FanMode::FanOut, "relu");
  return c;
}

inline int64_t expansion(ResNetBlock b) { return b == ResNetBlock::Basic ? 1 : 4; }

// The projection shortcut of a block whose stride or width changes: torchvision's (and timm's default)
// Sequential(0 conv1x1/stride, 1 bn), or with avg_down timm's Sequential(0 AvgPool2d(2, stride,
// ceil_mode, count_include_pad = false) or Identity for stride 1, 1 conv1x1, 2 bn).
inline std::shared_ptr<nn::Sequential> shortcut(int64_t in, int64_t out, int64_t stride, bool avg_down) {
  if (!avg_down)
    return std::make_shared<nn::Sequential>(
        std::initializer_list<nn::ModulePtr>{conv(in, out, 1, stride, 0), std::make_shared<nn::BatchNorm2d>(out)});
  nn::ModulePtr pool = std::make_shared<nn::Identity>();
  if (stride != 1)
    pool = std::make_shared<nn::AvgPool2d>(std::array<int64_t, 2>{2, 2}, std::array<int64_t, 2>{stride, stride},
                                           std::array<int64_t, 2>{0, 0}, /*ceil=*/true, /*include_pad=*/false);
  return std::make_shared<nn::Sequential>(
      std::initializer_list<nn::ModulePtr>{pool, conv(in, out, 1, 1, 0), std::make_shared<nn::BatchNorm2d>(out)});
}

// timm's DropPath on a residual branch: a "row" StochasticDepth, or null (no module) for rate 0.
inline std::shared_ptr<nn::StochasticDepth> drop_path(double rate) {
  return rate > 0.0 ? std::make_shared<nn::StochasticDepth>(rate, "row") : nullptr;
}

}  // namespace detail_resnet

// torchvision.models.resnet.BasicBlock: x -> relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
// avg_down and drop_path (timm's): the shortcut and the branch's stochastic depth rate (see the top).
class BasicBlock : public nn::Module {
 public:
  BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, bool avg_down = false, double drop_path_rate = 0.0)
      : Module("BasicBlock") {
    using detail_resnet::conv;
    conv1 = register_module("conv1", conv(inplanes, planes, 3, stride, 1));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
    relu = register_module("relu", std::make_shared<nn::ReLU>());
    conv2 = register_module("conv2", conv(planes, planes, 3, 1, 1));
    bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
    if (stride != 1 || inplanes != planes)
      downsample = register_module("downsample", detail_resnet::shortcut(inplanes, planes, stride, avg_down));
    drop_path = detail_resnet::drop_path(drop_path_rate);
    if (drop_path) register_module("drop_path", drop_path);
  }
  // x [B, inplanes, H, W] -> [B, planes, H / stride, W / stride]
  Tensor forward(const Tensor& x) override {
    const Tensor identity = downsample ? downsample->forward(x) : x;
    const Tensor y = relu->forward(bn1->forward(conv1->forward(x)));
    Tensor branch = bn2->forward(conv2->forward(y));
    if (drop_path) branch = drop_path->forward(branch);
    return relu->forward(add(branch, identity));
  }
  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::Sequential> downsample;  // null when the shortcut is the identity (a Sequential fuses its own)
  std::shared_ptr<nn::StochasticDepth> drop_path;  // null: none (torchvision's, timm's rate 0)

 protected:
  int64_t fuse_own_pairs() override { return int64_t(nn::fuse_conv_bn(*conv1, *bn1)) + nn::fuse_conv_bn(*conv2, *bn2); }
};

// torchvision.models.resnet.Bottleneck: width = int(planes * width_per_group / 64) * groups, output planes * 4.
// avg_down and drop_path_rate as BasicBlock's.
class Bottleneck : public nn::Module {
 public:
  Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, int64_t groups = 1, int64_t width_per_group = 64,
             bool avg_down = false, double drop_path_rate = 0.0)
      : Module("Bottleneck") {
    using detail_resnet::conv;
    const int64_t out = planes * 4;
    const int64_t width = planes * width_per_group / 64 * groups;
    conv1 = register_module("conv1", conv(inplanes, width, 1, 1, 0));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(width));
    conv2 = register_module("conv2", conv(width, width, 3, stride, 1, groups));
    bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(width));
    conv3 = register_module("conv3", conv(width, out, 1, 1, 0));
    bn3 = register_module("bn3", std::make_shared<nn::BatchNorm2d>(out));
    relu = register_module("relu", std::make_shared<nn::ReLU>());
    if (stride != 1 || inplanes != out)
      downsample = register_module("downsample", detail_resnet::shortcut(inplanes, out, stride, avg_down));
    drop_path = detail_resnet::drop_path(drop_path_rate);
    if (drop_path) register_module("drop_path", drop_path);
  }
  // x [B, inplanes, H, W] -> [B, 4 * planes, H / stride, W / stride]
  Tensor forward(const Tensor& x) override {
    const Tensor identity = downsample ? downsample->forward(x) : x;
    Tensor y = relu->forward(bn1->forward(conv1->forward(x)));
    y = relu->forward(bn2->forward(conv2->forward(y)));
    Tensor branch = bn3->forward(conv3->forward(y));
    if (drop_path) branch = drop_path->forward(branch);
    return relu->forward(add(branch, identity));
  }
  std::shared_ptr<nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2, bn3;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::Sequential> downsample;
  std::shared_ptr<nn::StochasticDepth> drop_path;

 protected:
  int64_t fuse_own_pairs() override {
    return int64_t(nn::fuse_conv_bn(*conv1, *bn1)) + nn::fuse_conv_bn(*conv2, *bn2) + nn::fuse_conv_bn(*conv3, *bn3);
  }
};

// What timm's ResNet variants change (see the top of this file); the defaults are torchvision's ResNet.
struct ResNetStyle {
  int64_t stem_width = 0;        // 0: the 7x7 conv1; > 0: timm's deep stem of widths (w, w, 2 w)
  bool avg_down = false;         // timm's average-pool projection shortcuts
  bool zero_init_last = false;   // timm's init: each block's last BatchNorm weight 0
  double drop_path_rate = 0.0;   // timm's stochastic depth of the last block (linearly less before)
};

class ResNet : public ImageClassifier {
 public:
  // layers: blocks per stage (4 stages), e.g. {3, 4, 6, 3} with Bottleneck for ResNet-50; groups and
  // width_per_group as torchvision's (Bottleneck only: BasicBlock takes 1 and 64); style: timm's variants.
  ResNet(ResNetBlock block_type, const std::vector<int64_t>& layers, int64_t num_classes = 1000,
         int64_t in_chans = 3, int64_t groups = 1, int64_t width_per_group = 64, const ResNetStyle& resnet_style = {})
      : ImageClassifier("ResNet"), block(block_type), style(resnet_style), in_chans_(in_chans) {
    GRAFT_CHECK(layers.size() == 4, "ResNet", "expected 4 stage sizes (layer1..layer4), got ", layers.size());
    for (size_t i = 0; i < layers.size(); ++i)
      GRAFT_CHECK(layers[i] >= 1, "ResNet", "layer", i + 1, " must have at least one block, got ", layers[i]);
    GRAFT_CHECK(num_classes >= 0 && in_chans >= 1, "ResNet", "num_classes must be >= 0 and in_chans >= 1, got ",
                num_classes, " and ", in_chans);
    GRAFT_CHECK(groups >= 1 && width_per_group >= 1, "ResNet", "groups and width_per_group must be >= 1, got ",
                groups, " and ", width_per_group);
    GRAFT_CHECK(block == ResNetBlock::Bottleneck || (groups == 1 && width_per_group == 64), "ResNet",
                "BasicBlock only supports groups 1 and width_per_group 64, got ", groups, " and ", width_per_group);
    GRAFT_CHECK(style.stem_width >= 0 && style.drop_path_rate >= 0.0 && style.drop_path_rate <= 1.0, "ResNet",
                "stem_width must be >= 0 and drop_path_rate in [0, 1], got ", style.stem_width, " and ",
                style.drop_path_rate);
    using detail_resnet::conv;
    const int64_t w = style.stem_width;
    int64_t inplanes = w > 0 ? 2 * w : 64;
    if (w > 0) {  // timm's stem_type 'deep'
      auto deep = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
          conv(in_chans, w, 3, 2, 1), std::make_shared<nn::BatchNorm2d>(w), std::make_shared<nn::ReLU>(),
          conv(w, w, 3, 1, 1), std::make_shared<nn::BatchNorm2d>(w), std::make_shared<nn::ReLU>()});
      stem_conv = conv(w, inplanes, 3, 1, 1);
      deep->push_back(stem_conv);
      conv1 = register_module("conv1", deep);
    } else {
      stem_conv = conv(in_chans, inplanes, 7, 2, 3);
      conv1 = register_module("conv1", stem_conv);
    }
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(inplanes));
    relu = register_module("relu", std::make_shared<nn::ReLU>());
    maxpool = register_module("maxpool", std::make_shared<nn::MaxPool2d>(std::array<int64_t, 2>{3, 3},
                                                                        std::array<int64_t, 2>{2, 2},
                                                                        std::array<int64_t, 2>{1, 1}));
    const int64_t widths[4] = {64, 128, 256, 512};
    const int64_t total_blocks = layers[0] + layers[1] + layers[2] + layers[3];
    int64_t block_id = 0;
    for (int s = 0; s < 4; ++s) {
      auto stage = std::make_shared<nn::Sequential>();
      for (int64_t b = 0; b < layers[s]; ++b, ++block_id) {
        const int64_t stride = (b == 0 && s > 0) ? 2 : 1;
        // timm: rate * i / (blocks - 1) (a single block gets 0 here; timm divides by zero)
        const double dpr = total_blocks > 1 ? style.drop_path_rate * double(block_id) / double(total_blocks - 1) : 0.0;
        nn::ModulePtr blk;
        if (block == ResNetBlock::Basic)
          blk = std::make_shared<BasicBlock>(inplanes, widths[s], stride, style.avg_down, dpr);
        else
          blk = std::make_shared<Bottleneck>(inplanes, widths[s], stride, groups, width_per_group, style.avg_down, dpr);
        stage->push_back(blk);
        inplanes = widths[s] * detail_resnet::expansion(block);
      }
      stages[s] = register_module("layer" + std::to_string(s + 1), stage);
    }
    num_features_ = inplanes;
    avgpool = register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}));
    register_module("fc", make_head(num_classes));
    if (style.zero_init_last) zero_init_last_bn();
  }

  // x [B, in_chans, H, W] -> pooled features [B, num_features()] (before fc).
  Tensor forward_features(const Tensor& x) override {
    check_input(x);
    Tensor y = maxpool->forward(relu->forward(bn1->forward(conv1->forward(x))));
    for (const auto& stage : stages) y = stage->forward(y);
    return avgpool->forward(y).flatten(1);
  }
  // features [B, num_features()] -> logits [B, num_classes] (features when the classifier is Identity).
  Tensor forward_head(const Tensor& features, bool pre_logits = false) override {
    return pre_logits ? features : child("fc")->forward(features);
  }

  // Named stages (models/features.hpp): "stem" (after the max pool, stride 4), "layer1" .. "layer4"
  // (strides 4, 8, 16, 32), "features" (pooled, [B, num_features]).
  std::vector<std::string> feature_names() override { return detail_features::names_of(feature_stages()); }
  NamedFeatures forward_intermediates(const Tensor& x, const std::vector<std::string>& names) override {
    check_input(x);
    return detail_features::run_stages("ResNet", x, feature_stages(), names);
  }

  // The classification head "fc" (a Linear, or Identity after reset_classifier(0)).
  std::string classifier_name() const override { return "fc"; }
  // Replaces fc with a fresh Linear(num_features(), num_classes) (torch's default init); 0 = Identity.
  void reset_classifier(int64_t num_classes) override { replace_module("fc", fit_to_model(make_head(num_classes))); }
  int64_t num_features() const override { return num_features_; }  // 512 * expansion
  int64_t in_chans() const override { return in_chans_; }

  ResNetBlock block;
  ResNetStyle style;
  nn::ModulePtr conv1;                   // the 7x7 Conv2d, or timm's deep stem Sequential
  std::shared_ptr<nn::Conv2d> stem_conv;  // the conv whose output bn1 normalizes (conv1, or conv1.6)
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::MaxPool2d> maxpool;
  std::shared_ptr<nn::Sequential> stages[4];  // layer1..layer4
  std::shared_ptr<nn::AdaptiveAvgPool2d> avgpool;

 protected:
  // The stem (a deep stem's Sequential folds its own first two pairs); the blocks fold their own
  // pairs (model->eval(); model->fuse_for_inference()).
  int64_t fuse_own_pairs() override { return nn::fuse_conv_bn(*stem_conv, *bn1); }

 private:
  void check_input(const Tensor& x) const {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == in_chans_, "ResNet", "expected input [B, ", in_chans_,
                ", H, W], got shape ", x.shape());
  }
  // timm's zero_init_last: bn2 of a BasicBlock, bn3 of a Bottleneck, weight 0.
  void zero_init_last_bn() {
    NoGradGuard no_grad;
    for (const auto& stage : stages)
      for (size_t i = 0; i < stage->size(); ++i) {
        const nn::ModulePtr b = (*stage)[i];
        if (auto* basic = dynamic_cast<BasicBlock*>(b.get())) init::constant_(basic->bn2->weight, 0.0);
        if (auto* bottleneck = dynamic_cast<Bottleneck*>(b.get())) init::constant_(bottleneck->bn3->weight, 0.0);
      }
  }
  std::vector<detail_features::Stage> feature_stages() {
    std::vector<detail_features::Stage> st;
    st.emplace_back("stem", [this](const Tensor& x) { return maxpool->forward(relu->forward(bn1->forward(conv1->forward(x)))); });
    for (int s = 0; s < 4; ++s)
      st.emplace_back("layer" + std::to_string(s + 1), [this, s](const Tensor& y) { return stages[s]->forward(y); });
    st.emplace_back("features", [this](const Tensor& y) { return avgpool->forward(y).flatten(1); });
    return st;
  }
  nn::ModulePtr make_head(int64_t num_classes) const {
    GRAFT_CHECK(num_classes >= 0, "ResNet", "reset_classifier: num_classes must be >= 0, got ", num_classes);
    if (num_classes == 0) return std::make_shared<nn::Identity>();
    return std::make_shared<nn::Linear>(num_features_, num_classes);
  }
  int64_t in_chans_ = 3;
  int64_t num_features_ = 0;
};

// torchvision's builders (num_classes, in_chans); models/registry.hpp lists them by name.
inline std::shared_ptr<ResNet> resnet18(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ResNet>(ResNetBlock::Basic, std::vector<int64_t>{2, 2, 2, 2}, num_classes, in_chans);
}
inline std::shared_ptr<ResNet> resnet34(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ResNet>(ResNetBlock::Basic, std::vector<int64_t>{3, 4, 6, 3}, num_classes, in_chans);
}
inline std::shared_ptr<ResNet> resnet50(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ResNet>(ResNetBlock::Bottleneck, std::vector<int64_t>{3, 4, 6, 3}, num_classes, in_chans);
}
inline std::shared_ptr<ResNet> resnet101(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ResNet>(ResNetBlock::Bottleneck, std::vector<int64_t>{3, 4, 23, 3}, num_classes, in_chans);
}
inline std::shared_ptr<ResNet> resnet152(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ResNet>(ResNetBlock::Bottleneck, std::vector<int64_t>{3, 8, 36, 3}, num_classes, in_chans);
}
inline std::shared_ptr<ResNet> resnext50_32x4d(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ResNet>(ResNetBlock::Bottleneck, std::vector<int64_t>{3, 4, 6, 3}, num_classes, in_chans, 32, 4);
}
inline std::shared_ptr<ResNet> resnext101_32x8d(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ResNet>(ResNetBlock::Bottleneck, std::vector<int64_t>{3, 4, 23, 3}, num_classes, in_chans, 32, 8);
}
inline std::shared_ptr<ResNet> resnext101_64x4d(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ResNet>(ResNetBlock::Bottleneck, std::vector<int64_t>{3, 4, 23, 3}, num_classes, in_chans, 64, 4);
}
inline std::shared_ptr<ResNet> wide_resnet50_2(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ResNet>(ResNetBlock::Bottleneck, std::vector<int64_t>{3, 4, 6, 3}, num_classes, in_chans, 1, 128);
}
inline std::shared_ptr<ResNet> wide_resnet101_2(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ResNet>(ResNetBlock::Bottleneck, std::vector<int64_t>{3, 4, 23, 3}, num_classes, in_chans, 1, 128);
}

// timm's builders (timm.create_model(name)): timm's names, which equal torchvision's for the plain
// ResNets, and its init (zero_init_last); the "d" variants with the deep stem (width 32) and avg_down.
// models/registry.hpp lists them as "timm/resnet50" etc.
namespace timm {
inline std::shared_ptr<ResNet> make_resnet(ResNetBlock block, std::vector<int64_t> layers, bool d_variant,
                                           int64_t num_classes, int64_t in_chans) {
  ResNetStyle style;
  style.zero_init_last = true;
  if (d_variant) style.stem_width = 32, style.avg_down = true;
  return std::make_shared<ResNet>(block, layers, num_classes, in_chans, 1, 64, style);
}
inline std::shared_ptr<ResNet> resnet18(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return make_resnet(ResNetBlock::Basic, {2, 2, 2, 2}, false, num_classes, in_chans);
}
inline std::shared_ptr<ResNet> resnet34(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return make_resnet(ResNetBlock::Basic, {3, 4, 6, 3}, false, num_classes, in_chans);
}
inline std::shared_ptr<ResNet> resnet50(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return make_resnet(ResNetBlock::Bottleneck, {3, 4, 6, 3}, false, num_classes, in_chans);
}
inline std::shared_ptr<ResNet> resnet101(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return make_resnet(ResNetBlock::Bottleneck, {3, 4, 23, 3}, false, num_classes, in_chans);
}
inline std::shared_ptr<ResNet> resnet18d(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return make_resnet(ResNetBlock::Basic, {2, 2, 2, 2}, true, num_classes, in_chans);
}
inline std::shared_ptr<ResNet> resnet34d(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return make_resnet(ResNetBlock::Basic, {3, 4, 6, 3}, true, num_classes, in_chans);
}
inline std::shared_ptr<ResNet> resnet50d(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return make_resnet(ResNetBlock::Bottleneck, {3, 4, 6, 3}, true, num_classes, in_chans);
}
}  // namespace timm

}  // namespace graft::models
