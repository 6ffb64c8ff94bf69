// graft/models/timm_convnext.hpp - ConvNeXt-Tiny / Small as timm 0.9 builds them
// (timm.models.convnext.ConvNeXt, conv_mlp = False, the default 'patch' stem and head), with timm's module
// names, so a timm checkpoint (convnext_tiny.fb_in1k, ...) loads strictly. torchvision's ConvNeXt, the
// same network under other names, is models/convnext.hpp; this one reuses its LayerNorm2d and its
// initialization (timm's and torchvision's are the same: trunc_normal_(std 0.02), zero biases).
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto model = graft::models::timm::convnext_tiny();       // 1000 classes, timm's init
//   model->load_state_dict(graft::io::load_safetensors("convnext_tiny.safetensors"));   // timm's keys
//   model->eval();
//   Tensor logits = model->forward(images);                   // images [B, 3, H, W] -> [B, 1000]
//   Tensor feats  = model->forward_features(images);          // [B, 768]: pooled, head.norm, flattened
//   model->reset_classifier(10);                              // new head.fc; 0 = Identity
//
// Architecture (names as timm's state dict), dims (96, 192, 384, 768), depths tiny (3, 3, 9, 3), small
// (3, 3, 27, 3):
//   stem      Sequential: 0 Conv2d(in_chans, dims[0], 4, stride 4, bias), 1 LayerNorm2d(dims[0])
//   stages.i  ConvNeXtStage: downsample (stage 0: Identity; else Sequential(0 LayerNorm2d(dims[i-1]),
//             1 Conv2d(dims[i-1], dims[i], 2, stride 2, bias))), blocks.j ConvNeXtBlock(dims[i])
//   ConvNeXtBlock(C): conv_dw Conv2d(C, C, 7, padding 3, groups C, bias) -> permute to [B, H, W, C]
//             -> norm LayerNorm(C, eps 1e-6) -> mlp (fc1 Linear(C, 4 C), GELU (erf), fc2 Linear(4 C, C))
//             -> permute back -> * gamma [C] -> drop_path -> + x
//             (torchvision's CNBlock, whose layer_scale is [C, 1, 1], computes the same)
//   head      NormMlpClassifierHead: global_pool (adaptive average) -> norm LayerNorm2d(dims[3]) ->
//             flatten -> drop (Dropout(drop_rate), 0 by default) -> fc Linear(dims[3], num_classes)
// LayerNorm eps 1e-6 everywhere. Stochastic depth: block k of n (counted over all stages) drops its
// branch with rate drop_path_rate * k / (n - 1) (timm's linspace(0, rate, n); rate 0 by default,
// timm's create_model default); gamma starts at ls_init_value (1e-6).
// forward_features is Graft's (pooled, [B, dims[3]]): timm's forward_head(x, pre_logits=True) of its
// forward_features; forward_head(f) is head.drop then head.fc (classifier_name() "head.fc").
// State dict per block, in torch's order: gamma [C], conv_dw.{weight [C, 1, 7, 7], bias},
// norm.{weight, bias}, mlp.fc1.{weight [4 C, C], bias}, mlp.fc2.{weight [C, 4 C], bias}; convnext_tiny
// has 182 entries (28,589,128 parameters), convnext_small 344 (50,223,688), as timm's.
// Left out: the other stems ('overlap'), conv_mlp = True (LayerNorm2d and 1x1 convs in the block),
// head_norm_first, head_hidden_size, output_stride < 32, ConvNeXt-V2's GRN.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "graft/models/classifier.hpp"
#include "graft/models/convnext.hpp"
#include "graft/models/features.hpp"
#include "graft/nn.hpp"

namespace graft::models::timm {

struct ConvNeXtConfig {
  std::vector<int64_t> depths = {3, 3, 9, 3};
  std::vector<int64_t> dims = {96, 192, 384, 768};
  double ls_init_value = 1e-6;   // gamma's initial value
  double drop_rate = 0.0;        // head.drop
  double drop_path_rate = 0.0;   // of the last block; linearly less before it
  int64_t num_classes = 1000;
  int64_t in_chans = 3;
};

inline ConvNeXtConfig convnext_tiny_config(int64_t num_classes = 1000, int64_t in_chans = 3) {
  ConvNeXtConfig c;
  c.num_classes = num_classes, c.in_chans = in_chans;
  return c;
}
inline ConvNeXtConfig convnext_small_config(int64_t num_classes = 1000, int64_t in_chans = 3) {
  ConvNeXtConfig c = convnext_tiny_config(num_classes, in_chans);
  c.depths = {3, 3, 27, 3};
  return c;
}

// timm.layers.Mlp without its (identity) dropouts and norm: fc2(GELU(fc1(x))), x [*, C] -> [*, C].
class Mlp : public nn::Module {
 public:
  Mlp(int64_t in, int64_t hidden) : Module("Mlp") {
    fc1 = register_module("fc1", detail_convnext::linear(in, hidden));
    act = register_module("act", std::make_shared<nn::GELU>());
    fc2 = register_module("fc2", detail_convnext::linear(hidden, in));
  }
  Tensor forward(const Tensor& x) override { return fc2->forward(act->forward(fc1->forward(x))); }
  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<nn::GELU> act;
};

// timm.models.convnext.ConvNeXtBlock (see the top of this file).
class ConvNeXtBlock : public nn::Module {
 public:
  ConvNeXtBlock(int64_t dim, double ls_init_value, double drop_path_rate) : Module("ConvNeXtBlock"), channels(dim) {
    GRAFT_CHECK(dim >= 1, "timm ConvNeXtBlock", "dim must be >= 1, got ", dim);
    gamma = register_parameter("gamma", full({dim}, ls_init_value));
    conv_dw = register_module("conv_dw", detail_convnext::conv(dim, dim, 7, 1, 3, dim));
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(Shape{dim}, detail_convnext::kLayerNormEps));
    mlp = register_module("mlp", std::make_shared<Mlp>(dim, 4 * dim));
    drop_path = register_module("drop_path", std::make_shared<nn::StochasticDepth>(drop_path_rate, "row"));
  }
  // x [B, C, H, W] -> [B, C, H, W]
  Tensor forward(const Tensor& x) override {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == channels, "timm ConvNeXtBlock", "expected input [B, ", channels,
                ", H, W], got shape ", x.shape());
    Tensor y = conv_dw->forward(x).permute({0, 2, 3, 1});   // [B, H, W, C]
    y = mlp->forward(norm->forward(y)).permute({0, 3, 1, 2});  // [B, C, H, W]
    return add(drop_path->forward(mul(y, gamma.reshape({1, channels, 1, 1}))), x);
  }
  int64_t channels;
  Tensor gamma;  // [C]
  std::shared_ptr<nn::Conv2d> conv_dw;
  std::shared_ptr<nn::LayerNorm> norm;
  std::shared_ptr<Mlp> mlp;
  std::shared_ptr<nn::StochasticDepth> drop_path;
};

// timm.models.convnext.ConvNeXtStage: downsample, then blocks. The downsample is Identity when
// in == out and stride 1 (stage 0), else LayerNorm2d + Conv2d(in, out, kernel = stride (2 or 1), stride).
class ConvNeXtStage : public nn::Module {
 public:
  ConvNeXtStage(int64_t in, int64_t out, int64_t stride, int64_t depth, double ls_init_value,
                const std::vector<double>& drop_path_rates)
      : Module("ConvNeXtStage") {
    if (in != out || stride > 1)
      downsample = register_module("downsample", std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
                                                     std::make_shared<LayerNorm2d>(in),
                                                     detail_convnext::conv(in, out, stride, stride, 0)}));
    else
      downsample = register_module("downsample", std::make_shared<nn::Identity>());
    blocks = register_module("blocks", std::make_shared<nn::Sequential>());
    for (int64_t j = 0; j < depth; ++j)
      blocks->push_back(std::make_shared<ConvNeXtBlock>(out, ls_init_value, drop_path_rates[size_t(j)]));
  }
  Tensor forward(const Tensor& x) override { return blocks->forward(downsample->forward(x)); }
  nn::ModulePtr downsample;  // Identity or Sequential(LayerNorm2d, Conv2d)
  std::shared_ptr<nn::Sequential> blocks;
};

// timm.layers.NormMlpClassifierHead without hidden layer: global_pool, norm, flatten, drop, fc.
class NormMlpClassifierHead : public nn::Module {
 public:
  // fc: the classifier (a Linear(in, classes) or Identity).
  NormMlpClassifierHead(int64_t in, double drop_rate, nn::ModulePtr fc) : Module("NormMlpClassifierHead") {
    global_pool = register_module("global_pool", std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}));
    norm = register_module("norm", std::make_shared<LayerNorm2d>(in));
    flatten = register_module("flatten", std::make_shared<nn::Flatten>(1));
    drop = register_module("drop", std::make_shared<nn::Dropout>(drop_rate));
    register_module("fc", std::move(fc));
  }
  // maps [B, C, h, w] -> [B, C]: pooled, normalized, flattened (before drop and fc)
  Tensor pool(const Tensor& maps) { return flatten->forward(norm->forward(global_pool->forward(maps))); }
  // The head's forward in timm is pool, then this: drop, then fc unless pre_logits.
  Tensor classify(const Tensor& features, bool pre_logits) {
    const Tensor z = drop->forward(features);
    return pre_logits ? z : child("fc")->forward(z);
  }
  Tensor forward(const Tensor& maps) override { return classify(pool(maps), false); }
  std::shared_ptr<nn::AdaptiveAvgPool2d> global_pool;
  std::shared_ptr<LayerNorm2d> norm;
  std::shared_ptr<nn::Flatten> flatten;
  std::shared_ptr<nn::Dropout> drop;
};

class ConvNeXt : public ImageClassifier {
 public:
  explicit ConvNeXt(const ConvNeXtConfig& cfg) : ImageClassifier("ConvNeXt"), config(cfg) {
    GRAFT_CHECK(cfg.depths.size() == 4 && cfg.dims.size() == 4, "timm ConvNeXt",
                "expected 4 depths and 4 dims, got ", cfg.depths.size(), " and ", cfg.dims.size());
    int64_t total_blocks = 0;
    for (size_t i = 0; i < 4; ++i) {
      GRAFT_CHECK(cfg.depths[i] >= 1 && cfg.dims[i] >= 1, "timm ConvNeXt", "depths[", i, "] and dims[", i,
                  "] must be >= 1, got ", cfg.depths[i], " and ", cfg.dims[i]);
      total_blocks += cfg.depths[i];
    }
    GRAFT_CHECK(cfg.num_classes >= 0 && cfg.in_chans >= 1, "timm ConvNeXt",
                "num_classes must be >= 0 and in_chans >= 1, got ", cfg.num_classes, " and ", cfg.in_chans);
    GRAFT_CHECK(cfg.drop_path_rate >= 0 && cfg.drop_path_rate <= 1 && cfg.drop_rate >= 0 && cfg.drop_rate <= 1,
                "timm ConvNeXt", "drop_rate and drop_path_rate must be in [0, 1], got ", cfg.drop_rate, " and ",
                cfg.drop_path_rate);
    stem = register_module("stem", std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
                                       detail_convnext::conv(cfg.in_chans, cfg.dims[0], 4, 4, 0),
                                       std::make_shared<LayerNorm2d>(cfg.dims[0])}));
    stages = register_module("stages", std::make_shared<nn::Sequential>());
    int64_t block_id = 0, prev = cfg.dims[0];
    for (size_t i = 0; i < 4; ++i) {
      std::vector<double> rates;  // torch.linspace(0, drop_path_rate, total_blocks), this stage's part
      for (int64_t j = 0; j < cfg.depths[i]; ++j, ++block_id)
        rates.push_back(total_blocks > 1 ? cfg.drop_path_rate * double(block_id) / double(total_blocks - 1) : 0.0);
      const int64_t stride = i > 0 ? 2 : 1;
      stages->push_back(
          std::make_shared<ConvNeXtStage>(prev, cfg.dims[i], stride, cfg.depths[i], cfg.ls_init_value, rates));
      min_input_size_ *= stride;
      prev = cfg.dims[i];
    }
    head = register_module("head", std::make_shared<NormMlpClassifierHead>(prev, cfg.drop_rate,
                                                                           make_head(cfg.num_classes, /*timm_init=*/true)));
  }

  // x [B, in_chans, H, W] -> stages.3's maps [B, dims[3], H / 32, W / 32] (timm's forward_features).
  Tensor forward_maps(const Tensor& x) {
    check_input(x);
    return stages->forward(stem->forward(x));
  }
  // x -> pooled features [B, dims[3]]: head.global_pool, head.norm, head.flatten.
  Tensor forward_features(const Tensor& x) override { return head->pool(forward_maps(x)); }
  // features [B, dims[3]] -> head.drop -> head.fc -> logits (pre_logits: after head.drop).
  Tensor forward_head(const Tensor& features, bool pre_logits = false) override {
    GRAFT_CHECK(features.dim() == 2 && features.size(1) == num_features(), "timm ConvNeXt",
                "forward_head: expected features [B, ", num_features(), "], got shape ", features.shape());
    return head->classify(features, pre_logits);
  }

  // Named stages (models/features.hpp), timm's module names: "stem" ([B, dims[0], H/4, W/4]),
  // "stages.0" .. "stages.3" (strides 4, 8, 16, 32), "features" (pooled, = forward_features).
  std::vector<std::string> feature_names() override { return detail_features::names_of(feature_stages()); }
  NamedFeatures forward_intermediates(const Tensor& x, const std::vector<std::string>& names) override {
    check_input(x);
    return detail_features::run_stages("timm ConvNeXt", x, feature_stages(), names);
  }

  std::string classifier_name() const override { return "head.fc"; }
  // Replaces head.fc with a fresh Linear(dims[3], num_classes) (torch's default init, as timm's
  // reset_classifier); 0 = Identity.
  void reset_classifier(int64_t num_classes) override {
    head->replace_module("fc", fit_to_model(make_head(num_classes, /*timm_init=*/false)));
    config.num_classes = num_classes;
  }
  int64_t num_features() const override { return config.dims.back(); }
  int64_t in_chans() const override { return config.in_chans; }
  // The smallest H and W the network takes: 4 x 2^(number of downsamplings) (32 for tiny and small).
  int64_t min_input_size() const { return min_input_size_; }

  ConvNeXtConfig config;
  std::shared_ptr<nn::Sequential> stem;
  std::shared_ptr<nn::Sequential> stages;  // ConvNeXtStage "0" .. "3"
  std::shared_ptr<NormMlpClassifierHead> head;

 private:
  void check_input(const Tensor& x) const {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == config.in_chans, "timm ConvNeXt", "expected input [B, ",
                config.in_chans, ", H, W], got shape ", x.shape());
    GRAFT_CHECK(x.size(2) >= min_input_size_ && x.size(3) >= min_input_size_, "timm ConvNeXt",
                "input [B, C, H, W] of shape ", x.shape(), " is too small: H and W must be >= ", min_input_size_);
  }
  std::vector<detail_features::Stage> feature_stages() {
    std::vector<detail_features::Stage> st;
    st.emplace_back("stem", [this](const Tensor& y) { return stem->forward(y); });
    for (size_t i = 0; i < stages->size(); ++i)
      st.emplace_back("stages." + std::to_string(i), [this, i](const Tensor& y) { return (*stages)[i]->forward(y); });
    st.emplace_back("features", [this](const Tensor& y) { return head->pool(y); });
    return st;
  }
  nn::ModulePtr make_head(int64_t num_classes, bool timm_init) const {
    GRAFT_CHECK(num_classes >= 0, "timm ConvNeXt", "reset_classifier: num_classes must be >= 0, got ", num_classes);
    if (num_classes == 0) return std::make_shared<nn::Identity>();
    if (timm_init) return detail_convnext::linear(config.dims.back(), num_classes);
    return std::make_shared<nn::Linear>(config.dims.back(), num_classes);
  }
  int64_t min_input_size_ = 4;  // the stem's stride, doubled per downsampling
};

// timm.create_model("convnext_tiny" / "convnext_small"); models/registry.hpp lists them as "timm/...".
inline std::shared_ptr<ConvNeXt> convnext_tiny(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ConvNeXt>(convnext_tiny_config(num_classes, in_chans));
}
inline std::shared_ptr<ConvNeXt> convnext_small(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<ConvNeXt>(convnext_small_config(num_classes, in_chans));
}

}  // namespace graft::models::timm
