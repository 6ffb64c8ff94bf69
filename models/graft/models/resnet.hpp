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

}  // namespace detail_resnet

// torchvision.models.resnet.BasicBlock: x -> relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
class BasicBlock : public nn::Module {
 public:
  BasicBlock(int64_t inplanes, int64_t planes, int64_t stride) : Module("BasicBlock") {
    using detail_resnet::conv;
    conv1 = register_module("conv1", conv(inplanes, planes, 3, stride, 1));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(planes));
    relu = register_module("relu", std::make_shared<nn::ReLU>());
    conv2 = register_module("conv2", conv(planes, planes, 3, 1, 1));
    bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(planes));
    if (stride != 1 || inplanes != planes)
      downsample = register_module("downsample", std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
                                                     conv(inplanes, planes, 1, stride, 0),
                                                     std::make_shared<nn::BatchNorm2d>(planes)}));
  }
  // x [B, inplanes, H, W] -> [B, planes, H / stride, W / stride]
  Tensor forward(const Tensor& x) override {
    const Tensor identity = downsample ? downsample->forward(x) : x;
    const Tensor y = relu->forward(bn1->forward(conv1->forward(x)));
    return relu->forward(add(bn2->forward(conv2->forward(y)), identity));
  }
  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::Sequential> downsample;  // null when the shortcut is the identity (a Sequential fuses its own)

 protected:
  int64_t fuse_own_pairs() override { return int64_t(nn::fuse_conv_bn(*conv1, *bn1)) + nn::fuse_conv_bn(*conv2, *bn2); }
};

// torchvision.models.resnet.Bottleneck: width = int(planes * width_per_group / 64) * groups, output planes * 4.
class Bottleneck : public nn::Module {
 public:
  Bottleneck(int64_t inplanes, int64_t planes, int64_t stride, int64_t groups = 1, int64_t width_per_group = 64)
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
      downsample = register_module("downsample", std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
                                                     conv(inplanes, out, 1, stride, 0),
                                                     std::make_shared<nn::BatchNorm2d>(out)}));
  }
  // x [B, inplanes, H, W] -> [B, 4 * planes, H / stride, W / stride]
  Tensor forward(const Tensor& x) override {
    const Tensor identity = downsample ? downsample->forward(x) : x;
    Tensor y = relu->forward(bn1->forward(conv1->forward(x)));
    y = relu->forward(bn2->forward(conv2->forward(y)));
    return relu->forward(add(bn3->forward(conv3->forward(y)), identity));
  }
  std::shared_ptr<nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2, bn3;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::Sequential> downsample;

 protected:
  int64_t fuse_own_pairs() override {
    return int64_t(nn::fuse_conv_bn(*conv1, *bn1)) + nn::fuse_conv_bn(*conv2, *bn2) + nn::fuse_conv_bn(*conv3, *bn3);
  }
};

class ResNet : public ImageClassifier {
 public:
  // layers: blocks per stage (4 stages), e.g. {3, 4, 6, 3} with Bottleneck for ResNet-50; groups and
  // width_per_group as torchvision's (Bottleneck only: BasicBlock takes 1 and 64).
  ResNet(ResNetBlock block_type, const std::vector<int64_t>& layers, int64_t num_classes = 1000,
         int64_t in_chans = 3, int64_t groups = 1, int64_t width_per_group = 64)
      : ImageClassifier("ResNet"), block(block_type) {
    GRAFT_CHECK(layers.size() == 4, "ResNet", "expected 4 stage sizes (layer1..layer4), got ", layers.size());
    for (size_t i = 0; i < layers.size(); ++i)
      GRAFT_CHECK(layers[i] >= 1, "ResNet", "layer", i + 1, " must have at least one block, got ", layers[i]);
    GRAFT_CHECK(num_classes >= 0 && in_chans >= 1, "ResNet", "num_classes must be >= 0 and in_chans >= 1, got ",
                num_classes, " and ", in_chans);
    GRAFT_CHECK(groups >= 1 && width_per_group >= 1, "ResNet", "groups and width_per_group must be >= 1, got ",
                groups, " and ", width_per_group);
    GRAFT_CHECK(block == ResNetBlock::Bottleneck || (groups == 1 && width_per_group == 64), "ResNet",
                "BasicBlock only supports groups 1 and width_per_group 64, got ", groups, " and ", width_per_group);
    conv1 = register_module("conv1", detail_resnet::conv(in_chans, 64, 7, 2, 3));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(64));
    relu = register_module("relu", std::make_shared<nn::ReLU>());
    maxpool = register_module("maxpool", std::make_shared<nn::MaxPool2d>(std::array<int64_t, 2>{3, 3},
                                                                        std::array<int64_t, 2>{2, 2},
                                                                        std::array<int64_t, 2>{1, 1}));
    int64_t inplanes = 64;
    const int64_t widths[4] = {64, 128, 256, 512};
    for (int s = 0; s < 4; ++s) {
      auto stage = std::make_shared<nn::Sequential>();
      for (int64_t b = 0; b < layers[s]; ++b) {
        const int64_t stride = (b == 0 && s > 0) ? 2 : 1;
        if (block == ResNetBlock::Basic)
          stage->push_back(std::make_shared<BasicBlock>(inplanes, widths[s], stride));
        else
          stage->push_back(std::make_shared<Bottleneck>(inplanes, widths[s], stride, groups, width_per_group));
        inplanes = widths[s] * detail_resnet::expansion(block);
      }
      stages[s] = register_module("layer" + std::to_string(s + 1), stage);
    }
    num_features_ = inplanes;
    avgpool = register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}));
    register_module("fc", make_head(num_classes));
  }

  // x [B, in_chans, H, W] -> pooled features [B, num_features()] (before fc).
  Tensor forward_features(const Tensor& x) override {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == conv1->in_channels, "ResNet", "expected input [B, ",
                conv1->in_channels, ", H, W], got shape ", x.shape());
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
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == conv1->in_channels, "ResNet", "expected input [B, ",
                conv1->in_channels, ", H, W], got shape ", x.shape());
    return detail_features::run_stages("ResNet", x, feature_stages(), names);
  }

  // The classification head "fc" (a Linear, or Identity after reset_classifier(0)).
  std::string classifier_name() const override { return "fc"; }
  // Replaces fc with a fresh Linear(num_features(), num_classes) (torch's default init); 0 = Identity.
  void reset_classifier(int64_t num_classes) override { replace_module("fc", fit_to_model(make_head(num_classes))); }
  int64_t num_features() const override { return num_features_; }  // 512 * expansion
  int64_t in_chans() const override { return conv1->in_channels; }

  ResNetBlock block;
  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::MaxPool2d> maxpool;
  std::shared_ptr<nn::Sequential> stages[4];  // layer1..layer4
  std::shared_ptr<nn::AdaptiveAvgPool2d> avgpool;

 protected:
  // The stem; the blocks fold their own pairs (model->eval(); model->fuse_for_inference()).
  int64_t fuse_own_pairs() override { return nn::fuse_conv_bn(*conv1, *bn1); }

 private:
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

}  // namespace graft::models
