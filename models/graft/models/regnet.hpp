// graft/models/regnet.hpp - the RegNet family exactly as torchvision 0.14 (torchvision.models.regnet,
// Radosavovic et al. 2020, "Designing Network Design Spaces"): RegNetX (no squeeze-excitation) and
// RegNetY (squeeze-excitation, se_ratio 0.25), 400MF to 128GF, with torchvision's module names, so a
// torchvision state_dict loads strictly; any other RegNet is a RegNetConfig away.
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto model = graft::models::regnet_y_400mf();       // 1000 classes, torchvision's init
//   model->load_state_dict(graft::io::load_safetensors("regnet_y_400mf.safetensors"));
//   model->eval();
//   Tensor logits = model->forward(images);             // images [B, 3, H, W] -> [B, 1000]
//   Tensor feats  = model->forward_features(images);    // [B, 440], pooled trunk, before fc
//   model->reset_classifier(10);                        // new fc: Linear(440, 10), torch default init
//   model->fuse_for_inference();                        // (eval mode) every BatchNorm folded into its conv
// torchvision's ImageNet weights expect [0, 1] RGB normalized with kImageNetMean / kImageNetStd, center
// crop 224 (resize 256 for IMAGENET1K_V1, 232 for V2). Any H, W >= 1 runs (every stride-2 conv rounds
// up: out = (n - 1) / 2 + 1).
//
// Widths: torchvision's BlockParams.from_init_params (RegNetBlockParams below) turns (depth, w_0, w_a,
// w_m, group_width, bottleneck_multiplier, se_ratio) into stages. Block j of depth has the width
//   u_j = w_0 + w_a j,  s_j = round(log(u_j / w_0) / log(w_m)),  w_j = 8 round(w_0 w_m^s_j / 8),
// computed in float32 as torchvision's torch ops do (in float64, 8 of the 120 random settings in the
// committed test data come out differently) and rounded half to even (regnet_x_1_6gf's 80 * 2.25 / 8 =
// 22.5 rounds to 22: 176 channels, then 168 below; half away from zero would give 184, then 192).
// Consecutive equal w_j form a stage (stride 2 each). Then each stage's bottleneck width w b (truncated
// to an int) is rounded to a multiple of min(group_width, w b) (models::make_divisible) and the stage
// width becomes int(that / b); the group width too is min(group_width, w b) (regnet_x_8gf's first
// stage: 80, not 120). Widths of the builders (depths / widths, group width):
//   regnet_y_400mf  1 3 6 6 / 48 104 208 440, 8        regnet_x_400mf  1 2 7 12 / 32 64 160 400, 16
//   regnet_y_800mf  1 3 8 2 / 64 144 320 784, 16       regnet_x_800mf  1 3 7 5 / 64 128 288 672, 16
//   regnet_y_1_6gf  2 6 17 2 / 48 120 336 888, 24      regnet_x_1_6gf  2 4 10 2 / 72 168 408 912, 24
//   regnet_y_3_2gf  2 5 13 1 / 72 216 576 1512, 24     regnet_x_3_2gf  2 6 15 2 / 96 192 432 1008, 48
// (kRegNetArchs lists the settings of all 15; the test checks every one's widths against torchvision.)
//
// Names (torchvision) and shapes, x [B, in_chans, H, W]:
//   stem                  SimpleStemIN: .0 Conv2d(in_chans, stem_width 32, 3, stride 2, padding 1, no
//                         bias), .1 BatchNorm2d, .2 ReLU                      [B, 32, H/2, W/2]
//   trunk_output.block{i} AnyStage i = 1 .. stages: ResBottleneckBlocks "block{i}-{j}", j = 0 .. depth_i - 1
//                         (note the "-"); the first has stride 2               [B, w_i, H/2^(i+1), ...]
//   avgpool               AdaptiveAvgPool2d(1), then flatten                  [B, w_last]
//   fc                    Linear(w_last, num_classes)
// ResBottleneckBlock(w_in, w_out, stride), x -> activation(proj(x) + f(x)) (the identity instead of proj
// when w_in = w_out and stride 1):
//   proj     .0 Conv2d(w_in, w_out, 1, stride, no bias), .1 BatchNorm2d   (only when the shape changes)
//   f        BottleneckTransform with w_b = round(w_out b), g = w_b / group_width groups:
//     f.a    .0 Conv2d(w_in, w_b, 1), .1 BatchNorm2d, .2 ReLU
//     f.b    .0 Conv2d(w_b, w_b, 3, stride, padding 1, groups g), .1 BatchNorm2d, .2 ReLU
//     f.se   (RegNetY only) SqueezeExcitation(w_b, round(se_ratio w_in)): avgpool, fc1, fc2 (1x1 convs
//            with bias), activation ReLU, scale_activation Sigmoid; x * sigmoid(fc2(relu(fc1(pool(x)))))
//     f.c    .0 Conv2d(w_b, w_out, 1), .1 BatchNorm2d (no activation)
//   activation  ReLU
// BatchNorm eps 1e-5, momentum 0.1. Initialization as torchvision: every Conv2d weight (the SE's too)
// N(0, sqrt(2 / (k_h k_w out_channels))); the SE convs' biases keep torch's default; BatchNorm weight 1,
// bias 0 (no zero-init of the last BatchNorm); fc N(0, 0.01), bias 0. reset_classifier's Linear has
// torch's default init (the ImageClassifier contract).
// Differences from torchvision: in_chans may differ from 3; the stem, block and norm types are fixed
// (torchvision's stem_type / block_type / norm_layer / activation hooks are left out).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "graft/models/classifier.hpp"
#include "graft/models/common.hpp"
#include "graft/models/features.hpp"
#include "graft/nn.hpp"

namespace graft::models {

// The inputs of torchvision's BlockParams.from_init_params, the stem width and the head.
struct RegNetConfig {
  int64_t depth = 0;        // blocks over all stages
  int64_t w_0 = 0;          // initial width, a positive multiple of 8
  double w_a = 0.0;         // width slope, >= 0
  double w_m = 0.0;         // width multiplier between stages in log space, > 1
  int64_t group_width = 0;  // channels per group of the 3x3 conv
  double bottleneck_multiplier = 1.0;
  double se_ratio = 0.0;    // 0: no squeeze-excitation (RegNetX); RegNetY: 0.25
  int64_t stem_width = 32;
  int64_t num_classes = 1000;
  int64_t in_chans = 3;
};

// torchvision.models.regnet.BlockParams: per stage depth, output width, group width, bottleneck
// multiplier and stride.
struct RegNetBlockParams {
  std::vector<int64_t> depths, widths, group_widths, strides;
  std::vector<double> bottleneck_multipliers;
  double se_ratio = 0.0;

  size_t num_stages() const { return depths.size(); }

  // The first step of from_init_params: the width w_j of each of the depth blocks (see the top of this
  // file), before the split into stages and the group adjustment.
  static std::vector<int64_t> quantized_block_widths(int64_t depth, int64_t w_0, double w_a, double w_m) {
    GRAFT_CHECK(w_a >= 0 && w_0 > 0 && w_m > 1 && w_0 % 8 == 0, "RegNet",
                "invalid RegNet settings: need w_a >= 0, w_0 > 0 and a multiple of 8, w_m > 1; got w_a ", w_a,
                ", w_0 ", w_0, ", w_m ", w_m);
    GRAFT_CHECK(depth >= 1, "RegNet", "need depth >= 1, got ", depth);
    constexpr float kQuant = 8.0f;
    // torch's float32 ops, one rounding each (arange * w_a + w_0, /, log, / log(w_m), round, pow, *, /);
    // std::nearbyint rounds half to even, as torch.round.
    const float w0 = float(w_0), wa = float(w_a), wm = float(w_m), log_wm = float(std::log(w_m));
    std::vector<int64_t> widths(static_cast<size_t>(depth));
    for (int64_t j = 0; j < depth; ++j) {
      // j * w_a: exact in double (two 24-bit significands), then rounded once to float as torch's float32
      // multiply; written so, there is no float multiply-add a compiler could fuse (-ffp-contract=fast).
      const float product = float(double(float(j)) * double(wa));
      const float width_cont = product + w0;
      const float capacity = std::nearbyint(std::log(width_cont / w0) / log_wm);
      const float scaled = w0 * std::pow(wm, capacity);
      widths[size_t(j)] = int64_t(std::nearbyint(scaled / kQuant) * kQuant);
    }
    return widths;
  }

  // BlockParams.from_init_params (see the top of this file).
  static RegNetBlockParams from_init_params(int64_t depth, int64_t w_0, double w_a, double w_m, int64_t group_width,
                                            double bottleneck_multiplier = 1.0, double se_ratio = 0.0) {
    GRAFT_CHECK(group_width >= 1 && bottleneck_multiplier > 0 && se_ratio >= 0, "RegNet",
                "need group_width >= 1, bottleneck_multiplier > 0 and se_ratio >= 0; got ", group_width, ", ",
                bottleneck_multiplier, " and ", se_ratio);
    const std::vector<int64_t> block_widths = quantized_block_widths(depth, w_0, w_a, w_m);
    RegNetBlockParams p;
    for (size_t j = 0; j < block_widths.size(); ++j) {
      if (j == 0 || block_widths[j] != block_widths[j - 1]) {
        p.widths.push_back(block_widths[j]);
        p.depths.push_back(0);
      }
      ++p.depths.back();
    }
    const size_t stages = p.widths.size();
    p.strides.assign(stages, 2);
    p.bottleneck_multipliers.assign(stages, bottleneck_multiplier);
    p.group_widths.assign(stages, group_width);
    p.se_ratio = se_ratio;
    // _adjust_widths_groups_compatibilty: the bottleneck width a multiple of the (capped) group width.
    for (size_t s = 0; s < stages; ++s) {
      const double b = p.bottleneck_multipliers[s];
      const int64_t w_bot = int64_t(double(p.widths[s]) * b);
      GRAFT_CHECK(w_bot >= 1, "RegNet", "stage ", s + 1, ": bottleneck width int(", p.widths[s], " * ", b,
                  ") is 0; use a larger bottleneck_multiplier");
      p.group_widths[s] = std::min(p.group_widths[s], w_bot);
      p.widths[s] = int64_t(double(make_divisible(double(w_bot), p.group_widths[s])) / b);
    }
    return p;
  }
};

// torchvision's builders' settings (regnet.py), RegNetConfig's first six fields.
struct RegNetArch {
  const char* name;
  int64_t depth, w_0;
  double w_a, w_m;
  int64_t group_width;
  double se_ratio;
};
inline constexpr RegNetArch kRegNetArchs[] = {
    {"regnet_y_400mf", 16, 48, 27.89, 2.09, 8, 0.25},    {"regnet_y_800mf", 14, 56, 38.84, 2.4, 16, 0.25},
    {"regnet_y_1_6gf", 27, 48, 20.71, 2.65, 24, 0.25},   {"regnet_y_3_2gf", 21, 80, 42.63, 2.66, 24, 0.25},
    {"regnet_y_8gf", 17, 192, 76.82, 2.19, 56, 0.25},    {"regnet_y_16gf", 18, 200, 106.23, 2.48, 112, 0.25},
    {"regnet_y_32gf", 20, 232, 115.89, 2.53, 232, 0.25}, {"regnet_y_128gf", 27, 456, 160.83, 2.52, 264, 0.25},
    {"regnet_x_400mf", 22, 24, 24.48, 2.54, 16, 0.0},    {"regnet_x_800mf", 16, 56, 35.73, 2.28, 16, 0.0},
    {"regnet_x_1_6gf", 18, 80, 34.01, 2.25, 24, 0.0},    {"regnet_x_3_2gf", 25, 88, 26.31, 2.25, 48, 0.0},
    {"regnet_x_8gf", 23, 80, 49.56, 2.88, 120, 0.0},     {"regnet_x_16gf", 22, 216, 55.59, 2.1, 128, 0.0},
    {"regnet_x_32gf", 23, 320, 69.86, 2.0, 168, 0.0}};

// The RegNetConfig of a torchvision builder ("regnet_y_400mf"); an unknown name lists the known ones.
inline RegNetConfig regnet_config(const std::string& arch, int64_t num_classes = 1000, int64_t in_chans = 3) {
  std::string known;
  for (const RegNetArch& a : kRegNetArchs) {
    if (arch == a.name) {
      RegNetConfig c;
      c.depth = a.depth, c.w_0 = a.w_0, c.w_a = a.w_a, c.w_m = a.w_m, c.group_width = a.group_width;
      c.se_ratio = a.se_ratio, c.num_classes = num_classes, c.in_chans = in_chans;
      return c;
    }
    known += (known.empty() ? "" : ", ") + std::string(a.name);
  }
  throw Error(detail::concat("RegNet: unknown arch '", arch, "' (known: ", known, ")"));
}

inline RegNetBlockParams regnet_block_params(const RegNetConfig& c) {
  return RegNetBlockParams::from_init_params(c.depth, c.w_0, c.w_a, c.w_m, c.group_width, c.bottleneck_multiplier,
                                             c.se_ratio);
}

namespace detail_regnet {

// nn.Sequential(OrderedDict(...)): children under their own names, applied in registration order.
class NamedSequential : public nn::Module {
 public:
  explicit NamedSequential(std::string type) : Module(std::move(type)) {}
  Tensor forward(const Tensor& x) override {
    Tensor y = x;
    for (const nn::ModulePtr& m : children()) y = m->forward(y);
    return y;
  }
};

// torchvision.ops.Conv2dNormActivation: "0" Conv2d (padding (kernel - 1) / 2, no bias), "1"
// BatchNorm2d, "2" ReLU (when relu). x [B, in, H, W] -> [B, out, (H - 1) / s + 1, (W - 1) / s + 1].
inline std::shared_ptr<nn::Sequential> conv_norm_act(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                                                     int64_t groups, bool relu) {
  nn::Conv2dOptions o;
  o.stride = {stride, stride};
  o.padding = {(kernel - 1) / 2, (kernel - 1) / 2};
  o.groups = groups;
  o.bias = false;
  auto seq = std::make_shared<nn::Sequential>();
  seq->push_back(std::make_shared<nn::Conv2d>(in, out, kernel, o));
  seq->push_back(std::make_shared<nn::BatchNorm2d>(out));
  if (relu) seq->push_back(std::make_shared<nn::ReLU>());
  return seq;
}

// The loop at the end of torchvision's RegNet.__init__, over every module: Conv2d weight
// N(0, sqrt(2 / fan_out)) with fan_out = k_h k_w out_channels (biases, the SE's only, untouched);
// Linear weight N(0, 0.01), bias 0. BatchNorm2d is constructed with weight 1 and bias 0 already.
inline void init_weights(nn::Module& model) {
  NoGradGuard no_grad;
  for (auto& [name, m] : model.named_modules()) {
    if (auto* conv = dynamic_cast<nn::Conv2d*>(m)) {
      const int64_t fan_out = conv->kernel_size[0] * conv->kernel_size[1] * conv->out_channels;
      init::normal_(conv->weight, 0.0, std::sqrt(2.0 / double(fan_out)));
    } else if (auto* linear = dynamic_cast<nn::Linear*>(m)) {
      init::normal_(linear->weight, 0.0, 0.01);
      if (linear->bias.defined()) init::constant_(linear->bias, 0.0);
    }
  }
}

}  // namespace detail_regnet

// torchvision.models.regnet.BottleneckTransform: a, b, [se], c (see the top of this file).
class RegNetBottleneckTransform : public detail_regnet::NamedSequential {
 public:
  RegNetBottleneckTransform(int64_t width_in, int64_t width_out, int64_t stride, int64_t group_width,
                            double bottleneck_multiplier, double se_ratio, const std::string& where)
      : NamedSequential("BottleneckTransform") {
    using detail_regnet::conv_norm_act;
    bottleneck_width = int64_t(std::nearbyint(double(width_out) * bottleneck_multiplier));
    groups = bottleneck_width / group_width;
    GRAFT_CHECK(groups >= 1 && bottleneck_width % groups == 0, "RegNet", where, ": the bottleneck width ",
                bottleneck_width, " (round(", width_out, " * ", bottleneck_multiplier,
                ")) does not split into bottleneck_width / group_width = ", groups, " groups of group width ",
                group_width);
    a = register_module("a", conv_norm_act(width_in, bottleneck_width, 1, 1, 1, true));
    b = register_module("b", conv_norm_act(bottleneck_width, bottleneck_width, 3, stride, groups, true));
    if (se_ratio > 0) {  // the SE width is relative to the block's input width
      const int64_t squeeze = int64_t(std::nearbyint(se_ratio * double(width_in)));
      GRAFT_CHECK(squeeze >= 1, "RegNet", where, ": se_ratio ", se_ratio, " of width ", width_in,
                  " rounds to 0 squeeze channels");
      se = register_module("se", std::make_shared<nn::SqueezeExcitation>(bottleneck_width, squeeze,
                                                                          std::make_shared<nn::ReLU>(),
                                                                          std::make_shared<nn::Sigmoid>()));
    }
    c = register_module("c", conv_norm_act(bottleneck_width, width_out, 1, 1, 1, false));
  }
  int64_t bottleneck_width = 0, groups = 0;
  std::shared_ptr<nn::Sequential> a, b, c;     // each folds its own (Conv2d, BatchNorm2d) pair
  std::shared_ptr<nn::SqueezeExcitation> se;  // null without squeeze-excitation (RegNetX)
};

// torchvision.models.regnet.ResBottleneckBlock: x -> relu(proj(x) + f(x)), the identity for proj when
// the shape stays.
class RegNetResBottleneckBlock : public nn::Module {
 public:
  RegNetResBottleneckBlock(int64_t width_in, int64_t width_out, int64_t block_stride, int64_t group_width,
                           double bottleneck_multiplier, double se_ratio, const std::string& where)
      : Module("ResBottleneckBlock"), in_channels(width_in), out_channels(width_out), stride(block_stride) {
    if (width_in != width_out || block_stride != 1)
      proj = register_module("proj", detail_regnet::conv_norm_act(width_in, width_out, 1, block_stride, 1, false));
    f = register_module("f", std::make_shared<RegNetBottleneckTransform>(width_in, width_out, block_stride,
                                                                         group_width, bottleneck_multiplier,
                                                                         se_ratio, where));
    activation = register_module("activation", std::make_shared<nn::ReLU>());
  }
  // x [B, in, H, W] -> [B, out, (H - 1) / stride + 1, (W - 1) / stride + 1]
  Tensor forward(const Tensor& x) override {
    const Tensor shortcut = proj ? proj->forward(x) : x;
    return activation->forward(add(shortcut, f->forward(x)));
  }
  int64_t in_channels, out_channels, stride;
  std::shared_ptr<nn::Sequential> proj;  // null: the identity
  std::shared_ptr<RegNetBottleneckTransform> f;
  std::shared_ptr<nn::ReLU> activation;
};

// torchvision.models.regnet.AnyStage: blocks "block{stage_index}-{j}", the first with the stage's
// stride and width_in, the others stride 1 at width_out.
class RegNetAnyStage : public detail_regnet::NamedSequential {
 public:
  RegNetAnyStage(int64_t width_in, int64_t width_out, int64_t stride, int64_t depth, int64_t group_width,
                 double bottleneck_multiplier, double se_ratio, int64_t stage_index)
      : NamedSequential("AnyStage") {
    for (int64_t j = 0; j < depth; ++j) {
      const std::string name = "block" + std::to_string(stage_index) + "-" + std::to_string(j);
      register_module(name, std::make_shared<RegNetResBottleneckBlock>(
                                j == 0 ? width_in : width_out, width_out, j == 0 ? stride : 1, group_width,
                                bottleneck_multiplier, se_ratio, "block " + name));
    }
  }
};

class RegNet : public ImageClassifier {
 public:
  explicit RegNet(const RegNetConfig& cfg) : ImageClassifier("RegNet"), config(cfg) {
    GRAFT_CHECK(cfg.num_classes >= 0 && cfg.in_chans >= 1 && cfg.stem_width >= 1, "RegNet",
                "num_classes must be >= 0, in_chans and stem_width >= 1, got ", cfg.num_classes, ", ", cfg.in_chans,
                " and ", cfg.stem_width);
    block_params = regnet_block_params(cfg);
    stem = register_module("stem", detail_regnet::conv_norm_act(cfg.in_chans, cfg.stem_width, 3, 2, 1, true));
    trunk_output = register_module("trunk_output", std::make_shared<detail_regnet::NamedSequential>("Sequential"));
    int64_t width = cfg.stem_width;
    const RegNetBlockParams& p = block_params;
    for (size_t s = 0; s < p.num_stages(); ++s) {
      const int64_t index = int64_t(s) + 1;
      stages.push_back(trunk_output->register_module(
          "block" + std::to_string(index),
          std::make_shared<RegNetAnyStage>(width, p.widths[s], p.strides[s], p.depths[s], p.group_widths[s],
                                           p.bottleneck_multipliers[s], p.se_ratio, index)));
      width = p.widths[s];
    }
    num_features_ = width;
    avgpool = register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}));
    register_module("fc", make_head(cfg.num_classes));
    detail_regnet::init_weights(*this);
  }

  // x [B, in_chans, H, W] -> pooled features [B, num_features()] (before fc).
  Tensor forward_features(const Tensor& x) override {
    check_input(x);
    return pool(trunk_output->forward(stem->forward(x)));
  }
  // features [B, num_features()] -> logits [B, num_classes] (features when fc is Identity or pre_logits).
  Tensor forward_head(const Tensor& features, bool pre_logits = false) override {
    return pre_logits ? features : child("fc")->forward(features);
  }

  // Named stages (models/features.hpp), torchvision's module names: "stem" [B, stem_width, H/2, W/2],
  // "trunk_output.block1" .. "trunk_output.block<stages>" (strides 4, 8, 16, 32 for the builders'
  // four stages), "features" (pooled, [B, num_features()]).
  std::vector<std::string> feature_names() override { return detail_features::names_of(feature_stages()); }
  NamedFeatures forward_intermediates(const Tensor& x, const std::vector<std::string>& names) override {
    check_input(x);
    return detail_features::run_stages("RegNet", x, feature_stages(), names);
  }

  // The classification head "fc" (a Linear, or Identity after reset_classifier(0)).
  std::string classifier_name() const override { return "fc"; }
  // Replaces fc with a fresh Linear(num_features(), num_classes) (torch's default init); 0 = Identity.
  void reset_classifier(int64_t num_classes) override {
    replace_module("fc", fit_to_model(make_head(num_classes)));
    config.num_classes = num_classes;
  }
  int64_t num_features() const override { return num_features_; }  // the last stage's width
  int64_t in_chans() const override { return config.in_chans; }

  RegNetConfig config;
  RegNetBlockParams block_params;        // what config's settings quantize to
  std::shared_ptr<nn::Sequential> stem;  // folds its own pair, as every Conv2dNormActivation below
  std::shared_ptr<detail_regnet::NamedSequential> trunk_output;  // "block1", "block2", ...
  std::vector<std::shared_ptr<RegNetAnyStage>> stages;           // trunk_output's children, in order
  std::shared_ptr<nn::AdaptiveAvgPool2d> avgpool;

 private:
  void check_input(const Tensor& x) const {
    GRAFT_CHECK(x.dim() == 4 && x.size(1) == config.in_chans, "RegNet", "expected input [B, ", config.in_chans,
                ", H, W], got shape ", x.shape());
  }
  Tensor pool(const Tensor& maps) { return avgpool->forward(maps).flatten(1); }
  std::vector<detail_features::Stage> feature_stages() {
    std::vector<detail_features::Stage> st;
    st.emplace_back("stem", [this](const Tensor& x) { return stem->forward(x); });
    for (size_t s = 0; s < stages.size(); ++s)
      st.emplace_back("trunk_output.block" + std::to_string(s + 1),
                      [this, s](const Tensor& y) { return stages[s]->forward(y); });
    st.emplace_back("features", [this](const Tensor& y) { return pool(y); });
    return st;
  }
  // At construction the fc is re-initialized by init_weights (N(0, 0.01)); reset_classifier keeps
  // torch's default Linear init.
  nn::ModulePtr make_head(int64_t num_classes) const {
    GRAFT_CHECK(num_classes >= 0, "RegNet", "reset_classifier: num_classes must be >= 0, got ", num_classes);
    if (num_classes == 0) return std::make_shared<nn::Identity>();
    return std::make_shared<nn::Linear>(num_features_, num_classes);
  }
  int64_t num_features_ = 0;
};

// torchvision's builders (num_classes, in_chans); models/registry.hpp lists those up to 3.2GF by name.
inline std::shared_ptr<RegNet> regnet(const std::string& arch, int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<RegNet>(regnet_config(arch, num_classes, in_chans));
}
inline std::shared_ptr<RegNet> regnet_y_400mf(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return regnet("regnet_y_400mf", num_classes, in_chans);
}
inline std::shared_ptr<RegNet> regnet_y_800mf(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return regnet("regnet_y_800mf", num_classes, in_chans);
}
inline std::shared_ptr<RegNet> regnet_y_1_6gf(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return regnet("regnet_y_1_6gf", num_classes, in_chans);
}
inline std::shared_ptr<RegNet> regnet_y_3_2gf(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return regnet("regnet_y_3_2gf", num_classes, in_chans);
}
inline std::shared_ptr<RegNet> regnet_x_400mf(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return regnet("regnet_x_400mf", num_classes, in_chans);
}
inline std::shared_ptr<RegNet> regnet_x_800mf(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return regnet("regnet_x_800mf", num_classes, in_chans);
}
inline std::shared_ptr<RegNet> regnet_x_1_6gf(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return regnet("regnet_x_1_6gf", num_classes, in_chans);
}
inline std::shared_ptr<RegNet> regnet_x_3_2gf(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return regnet("regnet_x_3_2gf", num_classes, in_chans);
}

}  // namespace graft::models
