// graft/models/vit.hpp - Vision Transformer with timm's module names (timm.models.vision_transformer
// .VisionTransformer, class-token pooling, no registers), so a timm state_dict loads strictly.
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto model = graft::models::vit_small_patch16_224();  // dim 384, depth 12, heads 6, 1000 classes
//   model->load_state_dict(graft::io::load_safetensors("vit_small.safetensors"));
//   model->eval();
//   Tensor logits = model->forward(images);               // images [B, 3, 224, 224] -> [B, 1000]
//   Tensor feats  = model->forward_features(images);      // the normalized class token [B, 384]
//   model->reset_classifier(10);                          // new head: Linear(384, 10); 0 = Identity
//   model->set_grad_checkpointing();                      // training forward recomputes each block in backward
//   auto deit = graft::models::deit_small_distilled_patch16_224();  // + dist_token and head_dist (below)
//   auto [cls_logits, dist_logits] = deit->forward_distilled(images); // forward(images) is their average
//
// State dict keys, in timm's order:
//   cls_token [1, 1, D], pos_embed [1, 1 + N, D], patch_embed.proj.{weight [D, C, P, P], bias [D]},
//   blocks.{i}.norm1.{weight, bias} [D], blocks.{i}.attn.qkv.{weight [3D, D], bias [3D]},
//   blocks.{i}.attn.proj.{weight [D, D], bias}, blocks.{i}.norm2, blocks.{i}.mlp.fc1.{weight [H, D], bias},
//   blocks.{i}.mlp.fc2.{weight [D, H], bias}, norm.{weight, bias}, head.{weight [classes, D], bias}
// with N = (img / patch)^2 and H = mlp_ratio * D. LayerNorm eps 1e-6, GELU (erf), pre-norm blocks:
//   x = x + attn(norm1(x));  x = x + mlp(norm2(x))
// Attention: qkv(x) [B, T, 3D] -> (3, B, heads, T, D / heads); softmax(q k^T / sqrt(D / heads)) v; proj.
// Distilled DeiT (ViTConfig::distilled, timm's deit.VisionTransformerDistilled): a second prefix token
// dist_token [1, 1, D] after cls_token (tokens cls, dist, patches; pos_embed [1, 2 + N, D]) and a second
// head head_dist Linear(D, classes) (timm's key order: cls_token, pos_embed, dist_token, ..., head, head_dist).
// forward_features is then both normalized prefix tokens side by side, [cls | dist] [B, 2D]
// (num_features() = 2D), so forward(x) = forward_head(forward_features(x)) still holds; forward_head
// returns timm's (head(cls) + head_dist(dist)) / 2 in eval and in training alike (timm's default,
// distilled_training false), and pre_logits returns timm's (cls + dist) / 2 [B, D] (head_hidden_size()).
// forward_distilled(x) gives the two logits apart, what timm returns with set_distilled_training(True).
// Initialization follows timm's 'timm' scheme: cls_token N(0, 1e-6), pos_embed and every Linear
// trunc_normal_(std 0.02) with zero bias; patch conv and LayerNorm keep torch's defaults.
// set_grad_checkpointing(true) (timm's name; BertModel has the same switch): in training mode with
// grad on, each block runs under graft::checkpoint (autograd/checkpoint.hpp), so backward keeps
// only the blocks' inputs and recomputes each block's activations; the gradients are the same.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "graft/models/classifier.hpp"
#include "graft/models/features.hpp"
#include "graft/nn.hpp"

namespace graft::models {

struct ViTConfig {
  int64_t img_size = 224;
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  int64_t num_classes = 1000;
  int64_t embed_dim = 768;
  int64_t depth = 12;
  int64_t num_heads = 12;
  double mlp_ratio = 4.0;
  bool distilled = false;  // DeiT's distillation token and head_dist (timm's VisionTransformerDistilled)
};

namespace detail_vit {
// A Linear initialized as timm's init_weights_vit_timm: weight trunc_normal_(0.02), bias 0.
inline std::shared_ptr<nn::Linear> linear(int64_t in, int64_t out) {
  auto l = std::make_shared<nn::Linear>(in, out);
  NoGradGuard no_grad;
  init::trunc_normal_(l->weight, 0.0, 0.02, -2.0, 2.0);
  l->bias.zero_();
  return l;
}
}  // namespace detail_vit

// timm's Attention (qkv_bias = True, no q/k norm).
class ViTAttention : public nn::Module {
 public:
  ViTAttention(int64_t dim, int64_t heads) : Module("Attention"), num_heads(heads) {
    GRAFT_CHECK(heads >= 1 && dim % heads == 0, "ViT", "embed_dim ", dim, " must be divisible by num_heads ", heads);
    qkv = register_module("qkv", detail_vit::linear(dim, 3 * dim));
    proj = register_module("proj", detail_vit::linear(dim, dim));
  }
  // x [B, T, D] -> [B, T, D]
  Tensor forward(const Tensor& x) override {
    const int64_t B = x.size(0), T = x.size(1), D = x.size(2), hd = D / num_heads;
    const Tensor qkv_out = qkv->forward(x).reshape({B, T, 3, num_heads, hd}).permute({2, 0, 3, 1, 4});  // [3, B, H, T, hd]
    const Tensor o = scaled_dot_product_attention(qkv_out.select(0, 0), qkv_out.select(0, 1), qkv_out.select(0, 2));
    return proj->forward(o.transpose(1, 2).reshape({B, T, D}));  // [B, H, T, hd] -> [B, T, D]
  }
  int64_t num_heads;
  std::shared_ptr<nn::Linear> qkv, proj;
};

// timm's Mlp: fc1, act (GELU erf), fc2.
class ViTMlp : public nn::Module {
 public:
  ViTMlp(int64_t dim, int64_t hidden) : Module("Mlp") {
    fc1 = register_module("fc1", detail_vit::linear(dim, hidden));
    act = register_module("act", std::make_shared<nn::GELU>());
    fc2 = register_module("fc2", detail_vit::linear(hidden, dim));
  }
  // fc1 and the GELU are one GEMM with a fused epilogue (the `act` module stays for timm's names)
  Tensor forward(const Tensor& x) override { return fc2->forward(fc1->forward(x, Activation::Gelu)); }
  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<nn::GELU> act;
};

// timm's Block (no layer scale, no drop path): pre-norm attention and MLP with residuals.
class ViTBlock : public nn::Module {
 public:
  ViTBlock(int64_t dim, int64_t heads, int64_t hidden) : Module("Block") {
    norm1 = register_module("norm1", std::make_shared<nn::LayerNorm>(dim, 1e-6));
    attn = register_module("attn", std::make_shared<ViTAttention>(dim, heads));
    norm2 = register_module("norm2", std::make_shared<nn::LayerNorm>(dim, 1e-6));
    mlp = register_module("mlp", std::make_shared<ViTMlp>(dim, hidden));
  }
  // x [B, T, D] -> [B, T, D]
  Tensor forward(const Tensor& x) override {
    const Tensor y = add(x, attn->forward(norm1->forward(x)));
    return add(y, mlp->forward(norm2->forward(y)));
  }
  std::shared_ptr<nn::LayerNorm> norm1, norm2;
  std::shared_ptr<ViTAttention> attn;
  std::shared_ptr<ViTMlp> mlp;
};

class VisionTransformer : public ImageClassifier {
 public:
  explicit VisionTransformer(const ViTConfig& cfg) : ImageClassifier("VisionTransformer"), config(cfg) {
    GRAFT_CHECK(cfg.depth >= 0 && cfg.embed_dim >= 1 && cfg.mlp_ratio > 0, "ViT", "bad config: depth ", cfg.depth,
                ", embed_dim ", cfg.embed_dim, ", mlp_ratio ", cfg.mlp_ratio);
    const int64_t D = cfg.embed_dim;
    cls_token = register_parameter("cls_token", zeros({1, 1, D}));
    {
      NoGradGuard no_grad;
      init::normal_(cls_token, 0.0, 1e-6);
    }
    patch_embed = register_module("patch_embed",
                                  std::make_shared<nn::PatchEmbed>(cfg.img_size, cfg.patch_size, cfg.in_chans, D));
    pos_embed = nn::register_position_embedding(*this, num_prefix_tokens() + patch_embed->num_patches, D, "pos_embed");
    if (cfg.distilled) {  // after pos_embed, as in timm's state_dict; init trunc_normal_(std 0.02), as timm
      dist_token = register_parameter("dist_token", zeros({1, 1, D}));
      NoGradGuard no_grad;
      init::trunc_normal_(dist_token, 0.0, 0.02, -2.0, 2.0);
    }
    pos_drop = register_module("pos_drop", std::make_shared<nn::Dropout>(0.0));
    blocks = register_module("blocks", std::make_shared<nn::Sequential>());
    const auto hidden = static_cast<int64_t>(double(D) * cfg.mlp_ratio);
    for (int64_t i = 0; i < cfg.depth; ++i) blocks->push_back(std::make_shared<ViTBlock>(D, cfg.num_heads, hidden));
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(D, 1e-6));
    register_module("head", make_head(cfg.num_classes));
    if (cfg.distilled) register_module("head_dist", make_head(cfg.num_classes));
  }

  // 1 (cls), or 2 (cls, dist) for a distilled DeiT: the tokens before the patches.
  int64_t num_prefix_tokens() const { return config.distilled ? 2 : 1; }

  // x [B, C, img, img] -> tokens after the final norm [B, prefix + N, D] (timm's forward_features).
  Tensor forward_tokens(const Tensor& x) {
    Tensor t = embed(x);  // [B, prefix + N, D]
    if (grad_checkpointing_ && is_training()) {
      for (size_t i = 0; i < blocks->size(); ++i) {
        const nn::ModulePtr block = (*blocks)[i];  // the recompute's closure keeps the block alive
        t = checkpoint([block](const Tensor& in) { return block->forward(in); }, t);
      }
    } else {
      t = blocks->forward(t);
    }
    return norm->forward(t);
  }
  // timm's set_grad_checkpointing: checkpoint every block in training forward (off by default).
  void set_grad_checkpointing(bool enable = true) { grad_checkpointing_ = enable; }
  bool grad_checkpointing() const { return grad_checkpointing_; }
  // x [B, C, img, img] -> the normalized class token [B, D]; distilled: [cls | dist] [B, 2D].
  Tensor forward_features(const Tensor& x) override { return pool(forward_tokens(x)); }

  // Named stages (models/features.hpp): "embed" (prefix tokens + patches + position, [B, prefix + N, D]),
  // "blocks.0" .. "blocks.<depth-1>" ([B, prefix + N, D]), "norm" (all tokens normalized), "features"
  // (forward_features: the class token [B, D], or [cls | dist] [B, 2D]).
  std::vector<std::string> feature_names() override { return detail_features::names_of(feature_stages()); }
  NamedFeatures forward_intermediates(const Tensor& x, const std::vector<std::string>& names) override {
    return detail_features::run_stages("ViT", x, feature_stages(), names);
  }
  // the class token [B, D] -> logits [B, num_classes] (the token when the head is Identity).
  // Distilled: [cls | dist] [B, 2D] -> (head(cls) + head_dist(dist)) / 2; pre_logits (cls + dist) / 2.
  Tensor forward_head(const Tensor& features, bool pre_logits = false) override {
    if (!config.distilled) return pre_logits ? features : child("head")->forward(features);
    const auto [cls, dist] = split_prefix(features);
    if (pre_logits) return mul(add(cls, dist), 0.5);
    return mul(add(child("head")->forward(cls), child("head_dist")->forward(dist)), 0.5);
  }
  // Distilled only: x -> (head(cls), head_dist(dist)), each [B, num_classes], the two outputs timm's
  // forward returns in training with set_distilled_training(True) (the class and distillation losses).
  std::pair<Tensor, Tensor> forward_distilled(const Tensor& x) {
    GRAFT_CHECK(config.distilled, "ViT", "forward_distilled needs a distilled model (ViTConfig::distilled)");
    const auto [cls, dist] = split_prefix(forward_features(x));
    return {child("head")->forward(cls), child("head_dist")->forward(dist)};
  }

  // The classification head "head" (a Linear, or Identity after reset_classifier(0)).
  std::string classifier_name() const override { return "head"; }
  int64_t num_features() const override { return config.distilled ? 2 * config.embed_dim : config.embed_dim; }
  int64_t head_hidden_size() const override { return config.embed_dim; }
  int64_t in_chans() const override { return config.in_chans; }
  // Replaces head (and head_dist, as timm) with a fresh Linear(D, num_classes) (torch's default init);
  // 0 = Identity.
  void reset_classifier(int64_t num_classes) override {
    GRAFT_CHECK(num_classes >= 0, "ViT", "reset_classifier: num_classes must be >= 0, got ", num_classes);
    config.num_classes = num_classes;
    auto fresh = [&] {
      return fit_to_model(num_classes == 0 ? nn::ModulePtr(std::make_shared<nn::Identity>())
                                           : nn::ModulePtr(std::make_shared<nn::Linear>(config.embed_dim, num_classes)));
    };
    replace_module("head", fresh());
    if (config.distilled) replace_module("head_dist", fresh());
  }

  ViTConfig config;
  Tensor cls_token, pos_embed;  // [1, 1, D], [1, prefix + N, D]
  Tensor dist_token;            // [1, 1, D], distilled only (undefined otherwise)
  std::shared_ptr<nn::PatchEmbed> patch_embed;
  std::shared_ptr<nn::Dropout> pos_drop;
  std::shared_ptr<nn::Sequential> blocks;  // "0" .. "depth-1", each a ViTBlock
  std::shared_ptr<nn::LayerNorm> norm;

 private:
  bool grad_checkpointing_ = false;
  std::vector<detail_features::Stage> feature_stages() {
    std::vector<detail_features::Stage> st;
    st.emplace_back("embed", [this](const Tensor& x) { return embed(x); });
    for (int64_t i = 0; i < config.depth; ++i)
      st.emplace_back("blocks." + std::to_string(i),
                      [this, i](const Tensor& t) { return (*blocks)[size_t(i)]->forward(t); });
    st.emplace_back("norm", [this](const Tensor& t) { return norm->forward(t); });
    st.emplace_back("features", [this](const Tensor& t) { return pool(t); });
    return st;
  }
  // x [B, C, img, img] -> prefix tokens + patches + position [B, prefix + N, D] (timm's _pos_embed:
  // concatenate, then add, as the original DeiT).
  Tensor embed(const Tensor& x) {
    const Tensor patches = patch_embed->forward(x);  // [B, N, D]
    const int64_t B = patches.size(0), D = config.embed_dim;
    const Tensor cls = cls_token.expand({B, 1, D});
    const Tensor tokens = config.distilled ? cat({cls, dist_token.expand({B, 1, D}), patches}, 1) : cat({cls, patches}, 1);
    return pos_drop->forward(add(tokens, pos_embed));
  }
  // normalized tokens [B, T, D] -> the class token [B, D], or [cls | dist] [B, 2D] when distilled.
  Tensor pool(const Tensor& t) const {
    if (!config.distilled) return t.select(1, 0);
    return cat({t.select(1, 0), t.select(1, 1)}, 1);
  }
  // [cls | dist] [B, 2D] -> cls [B, D], dist [B, D].
  std::pair<Tensor, Tensor> split_prefix(const Tensor& features) const {
    const int64_t D = config.embed_dim;
    GRAFT_CHECK(features.dim() == 2 && features.size(1) == 2 * D, "ViT",
                "distilled forward_head expects [cls | dist] features [B, ", 2 * D, "], got ", features.shape());
    return {features.narrow(1, 0, D), features.narrow(1, D, D)};
  }
  nn::ModulePtr make_head(int64_t num_classes) const {
    GRAFT_CHECK(num_classes >= 0, "ViT", "num_classes must be >= 0, got ", num_classes);
    if (num_classes == 0) return std::make_shared<nn::Identity>();
    return detail_vit::linear(config.embed_dim, num_classes);
  }
};

// timm's builders (num_classes, in_chans); models/registry.hpp lists them by name. timm's deit_*
// (non-distilled) checkpoints have exactly the ViT layout and names; deit_*_distilled_* add
// dist_token and head_dist.
inline std::shared_ptr<VisionTransformer> vit_tiny_patch16_224(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<VisionTransformer>(ViTConfig{224, 16, in_chans, num_classes, 192, 12, 3, 4.0});
}
inline std::shared_ptr<VisionTransformer> vit_small_patch16_224(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<VisionTransformer>(ViTConfig{224, 16, in_chans, num_classes, 384, 12, 6, 4.0});
}
inline std::shared_ptr<VisionTransformer> vit_base_patch16_224(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<VisionTransformer>(ViTConfig{224, 16, in_chans, num_classes, 768, 12, 12, 4.0});
}
inline std::shared_ptr<VisionTransformer> vit_small_patch32_224(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<VisionTransformer>(ViTConfig{224, 32, in_chans, num_classes, 384, 12, 6, 4.0});
}
inline std::shared_ptr<VisionTransformer> vit_base_patch32_224(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<VisionTransformer>(ViTConfig{224, 32, in_chans, num_classes, 768, 12, 12, 4.0});
}
inline std::shared_ptr<VisionTransformer> deit_tiny_distilled_patch16_224(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<VisionTransformer>(ViTConfig{224, 16, in_chans, num_classes, 192, 12, 3, 4.0, true});
}
inline std::shared_ptr<VisionTransformer> deit_small_distilled_patch16_224(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<VisionTransformer>(ViTConfig{224, 16, in_chans, num_classes, 384, 12, 6, 4.0, true});
}
inline std::shared_ptr<VisionTransformer> deit_base_distilled_patch16_224(int64_t num_classes = 1000, int64_t in_chans = 3) {
  return std::make_shared<VisionTransformer>(ViTConfig{224, 16, in_chans, num_classes, 768, 12, 12, 4.0, true});
}

}  // namespace graft::models
