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
//
// State dict keys, in timm's order:
//   cls_token [1, 1, D], pos_embed [1, 1 + N, D], patch_embed.proj.{weight [D, C, P, P], bias [D]},
//   blocks.{i}.norm1.{weight, bias} [D], blocks.{i}.attn.qkv.{weight [3D, D], bias [3D]},
//   blocks.{i}.attn.proj.{weight [D, D], bias}, blocks.{i}.norm2, blocks.{i}.mlp.fc1.{weight [H, D], bias},
//   blocks.{i}.mlp.fc2.{weight [D, H], bias}, norm.{weight, bias}, head.{weight [classes, D], bias}
// with N = (img / patch)^2 and H = mlp_ratio * D. LayerNorm eps 1e-6, GELU (erf), pre-norm blocks:
//   x = x + attn(norm1(x));  x = x + mlp(norm2(x))
// Attention: qkv(x) [B, T, 3D] -> (3, B, heads, T, D / heads); softmax(q k^T / sqrt(D / heads)) v; proj.
// Initialization follows timm's 'timm' scheme: cls_token N(0, 1e-6), pos_embed and every Linear
// trunc_normal_(std 0.02) with zero bias; patch conv and LayerNorm keep torch's defaults.
// set_grad_checkpointing(true) (timm's name; BertModel has the same switch): in training mode with
// grad on, each block runs under graft::checkpoint (autograd/checkpoint.hpp), so backward keeps
// only the blocks' inputs and recomputes each block's activations; the gradients are the same.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

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
    pos_embed = nn::register_position_embedding(*this, 1 + patch_embed->num_patches, D, "pos_embed");
    pos_drop = register_module("pos_drop", std::make_shared<nn::Dropout>(0.0));
    blocks = register_module("blocks", std::make_shared<nn::Sequential>());
    const auto hidden = static_cast<int64_t>(double(D) * cfg.mlp_ratio);
    for (int64_t i = 0; i < cfg.depth; ++i) blocks->push_back(std::make_shared<ViTBlock>(D, cfg.num_heads, hidden));
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(D, 1e-6));
    register_module("head", make_head(cfg.num_classes));
  }

  // x [B, C, img, img] -> tokens after the final norm [B, 1 + N, D].
  Tensor forward_tokens(const Tensor& x) {
    const Tensor patches = patch_embed->forward(x);  // [B, N, D]
    const int64_t B = patches.size(0), D = config.embed_dim;
    const Tensor cls = cls_token.expand({B, 1, D});
    Tensor t = pos_drop->forward(add(cat({cls, patches}, 1), pos_embed));  // [B, 1 + N, D]
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
  // x [B, C, img, img] -> the normalized class token [B, D].
  Tensor forward_features(const Tensor& x) override { return forward_tokens(x).select(1, 0); }

  // Named stages (models/features.hpp): "embed" (class token + patches + position, [B, 1 + N, D]),
  // "blocks.0" .. "blocks.<depth-1>" ([B, 1 + N, D]), "norm" (all tokens normalized), "features" (the
  // class token, [B, D]).
  std::vector<std::string> feature_names() override { return detail_features::names_of(feature_stages()); }
  NamedFeatures forward_intermediates(const Tensor& x, const std::vector<std::string>& names) override {
    return detail_features::run_stages("ViT", x, feature_stages(), names);
  }
  // the class token [B, D] -> logits [B, num_classes] (the token when the head is Identity).
  Tensor forward_head(const Tensor& features, bool pre_logits = false) override {
    return pre_logits ? features : child("head")->forward(features);
  }

  // The classification head "head" (a Linear, or Identity after reset_classifier(0)).
  std::string classifier_name() const override { return "head"; }
  int64_t num_features() const override { return config.embed_dim; }
  int64_t in_chans() const override { return config.in_chans; }
  // Replaces head with a fresh Linear(D, num_classes) (torch's default init); 0 = Identity.
  void reset_classifier(int64_t num_classes) override {
    GRAFT_CHECK(num_classes >= 0, "ViT", "reset_classifier: num_classes must be >= 0, got ", num_classes);
    config.num_classes = num_classes;
    replace_module("head", fit_to_model(num_classes == 0 ? nn::ModulePtr(std::make_shared<nn::Identity>())
                                                         : nn::ModulePtr(std::make_shared<nn::Linear>(config.embed_dim, num_classes))));
  }

  ViTConfig config;
  Tensor cls_token, pos_embed;  // [1, 1, D], [1, 1 + N, D]
  std::shared_ptr<nn::PatchEmbed> patch_embed;
  std::shared_ptr<nn::Dropout> pos_drop;
  std::shared_ptr<nn::Sequential> blocks;  // "0" .. "depth-1", each a ViTBlock
  std::shared_ptr<nn::LayerNorm> norm;

 private:
  bool grad_checkpointing_ = false;
  std::vector<detail_features::Stage> feature_stages() {
    std::vector<detail_features::Stage> st;
    st.emplace_back("embed", [this](const Tensor& x) {
      const Tensor patches = patch_embed->forward(x);
      const Tensor cls = cls_token.expand({patches.size(0), 1, config.embed_dim});
      return pos_drop->forward(add(cat({cls, patches}, 1), pos_embed));
    });
    for (int64_t i = 0; i < config.depth; ++i)
      st.emplace_back("blocks." + std::to_string(i),
                      [this, i](const Tensor& t) { return (*blocks)[size_t(i)]->forward(t); });
    st.emplace_back("norm", [this](const Tensor& t) { return norm->forward(t); });
    st.emplace_back("features", [](const Tensor& t) { return t.select(1, 0); });
    return st;
  }
  nn::ModulePtr make_head(int64_t num_classes) const {
    GRAFT_CHECK(num_classes >= 0, "ViT", "num_classes must be >= 0, got ", num_classes);
    if (num_classes == 0) return std::make_shared<nn::Identity>();
    return detail_vit::linear(config.embed_dim, num_classes);
  }
};

// timm's builders (num_classes, in_chans); models/registry.hpp lists them by name. timm's deit_*
// (non-distilled) checkpoints have exactly the ViT layout and names.
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

}  // namespace graft::models
