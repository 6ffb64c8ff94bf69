// graft/nn/transformer.hpp - attention layers with PyTorch's (and timm's) parameter names.
//
//   MultiheadAttention(E, H, dropout, bias, batch_first)   torch.nn.MultiheadAttention (kdim = vdim = E)
//     in_proj_weight [3E, E] (q, k, v rows stacked), in_proj_bias [3E], out_proj.weight [E, E],
//     out_proj.bias [E]; inputs [B, L, E] when batch_first, else [L, B, E]; unbatched [L, E] too.
//     key_padding_mask [B, S]: bool (true = ignore that key) or float (added to the scores).
//     attn_mask [L, S] or [B*H, L, S]: bool (true = NOT allowed, PyTorch's MHA convention) or float.
//     Returns the attention output only (need_weights=False): it runs scaled_dot_product_attention.
//     A query whose every key is masked gets a zero row (PyTorch: NaN), see graft/ops/attention.hpp.
//   TransformerEncoderLayer(d_model, nhead, TransformerOptions)  torch.nn.TransformerEncoderLayer:
//     children self_attn, linear1, dropout, linear2, norm1, norm2, dropout1, dropout2; post-norm
//     (norm_first = false, the default) or pre-norm; activation "relu" or "gelu".
//   PatchEmbed(img, patch, in_chans, D)   timm's: proj = Conv2d(kernel = stride = patch), norm = Identity;
//     x [B, C, img, img] -> [B, N, D] with N = (img / patch)^2.
//   PositionEmbedding / register_position_embedding: a learned [1, N, D] parameter added to tokens.
//     timm keeps it as the parameter `pos_embed` on the model itself, so the free function registers it
//     on any owner under any name; the module form is for models that want it as a child.
#pragma once
#include <limits>
#include <optional>
#include <string>

#include "graft/nn/layers.hpp"

namespace graft::nn {

class MultiheadAttention : public Module {
 public:
  MultiheadAttention(int64_t dim, int64_t heads, double attn_dropout = 0.0, bool bias = true, bool batch_major = false)
      : Module("MultiheadAttention"), embed_dim(dim), num_heads(heads), dropout(attn_dropout),
        batch_first(batch_major) {
    GRAFT_CHECK(heads >= 1 && dim % heads == 0, "MultiheadAttention", "embed_dim ", dim,
                " must be divisible by num_heads ", heads);
    in_proj_weight = register_parameter("in_proj_weight", empty({3 * dim, dim}));
    if (bias) in_proj_bias = register_parameter("in_proj_bias", zeros({3 * dim}));
    out_proj = register_module("out_proj", std::make_shared<Linear>(dim, dim, bias));
    // torch's _reset_parameters: xavier_uniform_ in_proj_weight; both biases zero.
    NoGradGuard no_grad;
    init::xavier_uniform_(in_proj_weight);
    if (bias) out_proj->bias.zero_();
  }

  // Self-attention: forward(x) = attention(x, x, x).
  Tensor forward(const Tensor& x) override { return attention(x, x, x); }

  // query [B, L, E] (batch_first) or [L, B, E]; key, value [B, S, E] or [S, B, E] -> like query.
  Tensor attention(const Tensor& query, const Tensor& key, const Tensor& value,
                   const Tensor& key_padding_mask = Tensor(), const Tensor& attn_mask = Tensor()) {
    const char* op = "MultiheadAttention";
    GRAFT_CHECK(query.dim() == key.dim() && query.dim() == value.dim() && (query.dim() == 2 || query.dim() == 3),
                op, "query, key and value must all be 3-D (or all 2-D unbatched), got shapes ", query.shape(), ", ",
                key.shape(), " and ", value.shape());
    if (query.dim() == 2) {  // unbatched [L, E]
      const Tensor kpm = key_padding_mask.defined() ? key_padding_mask.unsqueeze(0) : Tensor();
      const int b = batch_first ? 0 : 1;
      return attention(query.unsqueeze(b), key.unsqueeze(b), value.unsqueeze(b), kpm, attn_mask).squeeze(b);
    }
    // To batch-first [B, L, E].
    const Tensor q_in = batch_first ? query : query.transpose(0, 1);
    const Tensor k_in = batch_first ? key : key.transpose(0, 1);
    const Tensor v_in = batch_first ? value : value.transpose(0, 1);
    const int64_t B = q_in.size(0), L = q_in.size(1), S = k_in.size(1), E = embed_dim, H = num_heads,
                  hd = E / H;
    GRAFT_CHECK(q_in.size(2) == E && k_in.size(2) == E && v_in.size(2) == E, op, "expected embedding dim ", E,
                ", got query ", query.shape(), ", key ", key.shape(), ", value ", value.shape());
    GRAFT_CHECK(k_in.size(0) == B && v_in.size(0) == B && v_in.size(1) == S, op,
                "batch or key length differ: query ", query.shape(), ", key ", key.shape(), ", value ",
                value.shape(), (batch_first ? " (batch_first)" : " (sequence first)"));
    auto project = [&](const Tensor& x, int64_t i) {  // [B, T, E] -> [B, H, T, hd]
      const Tensor w = in_proj_weight.narrow(0, i * E, E);
      const Tensor b = in_proj_bias.defined() ? in_proj_bias.narrow(0, i * E, E) : Tensor();
      const Tensor y = linear(x, w, b);
      return y.reshape({B, y.size(1), H, hd}).transpose(1, 2);
    };
    const Tensor q = project(q_in, 0), k = project(k_in, 1), v = project(v_in, 2);
    const Tensor mask = combined_mask(key_padding_mask, attn_mask, B, L, S, q.dtype());
    const Tensor o = scaled_dot_product_attention(q, k, v, mask, is_training() ? dropout : 0.0);  // [B, H, L, hd]
    const Tensor out = out_proj->forward(o.transpose(1, 2).reshape({B, L, E}));                  // [B, L, E]
    return batch_first ? out : out.transpose(0, 1);
  }

  int64_t embed_dim, num_heads;
  double dropout;
  bool batch_first;
  Tensor in_proj_weight, in_proj_bias;
  std::shared_ptr<Linear> out_proj;

 private:
  // Additive float mask broadcastable to [B, H, L, S], or undefined when there is none.
  Tensor combined_mask(const Tensor& key_padding_mask, const Tensor& attn_mask, int64_t B, int64_t L, int64_t S,
                       DType dt) const {
    const char* op = "MultiheadAttention";
    auto additive = [&](const Tensor& m) {  // bool true = masked out
      if (m.dtype() == DType::Bool)
        return where(m, scalar_tensor(-std::numeric_limits<double>::infinity(), dt).to(m.device()),
                     scalar_tensor(0.0, dt).to(m.device()));
      GRAFT_CHECK(is_floating(m.dtype()), op, "masks must be bool or floating-point, got ", dtype_name(m.dtype()));
      return m.detach().to(dt);
    };
    Tensor mask;
    if (key_padding_mask.defined()) {
      const Shape want{B, S};
      GRAFT_CHECK(key_padding_mask.shape() == want, op, "key_padding_mask must have shape ", want,
                  " [batch, keys], got ", key_padding_mask.shape());
      mask = additive(key_padding_mask).reshape({B, 1, 1, S});
    }
    if (attn_mask.defined()) {
      Tensor am;
      if (attn_mask.dim() == 2) {
        const Shape want{L, S};
        GRAFT_CHECK(attn_mask.shape() == want, op, "2-D attn_mask must have shape ", want, ", got ",
                    attn_mask.shape());
        am = additive(attn_mask).reshape({1, 1, L, S});
      } else {
        const Shape want{B * num_heads, L, S};
        GRAFT_CHECK(attn_mask.shape() == want, op, "3-D attn_mask must have shape ", want,
                    " [batch * heads, L, S], got ", attn_mask.shape());
        am = additive(attn_mask).reshape({B, num_heads, L, S});
      }
      mask = mask.defined() ? add(mask, am) : am;
    }
    return mask;
  }
};

struct TransformerOptions {
  int64_t dim_feedforward = 2048;
  double dropout = 0.1;
  std::string activation = "relu";  // "relu" or "gelu"
  double layer_norm_eps = 1e-5;
  bool batch_first = false;
  bool norm_first = false;
};

class TransformerEncoderLayer : public Module {
 public:
  TransformerEncoderLayer(int64_t d_model, int64_t nhead, TransformerOptions opts = {})
      : Module("TransformerEncoderLayer"), options(opts) {
    GRAFT_CHECK(options.activation == "relu" || options.activation == "gelu", "TransformerEncoderLayer",
                "activation must be 'relu' or 'gelu', got '", options.activation, "'");
    self_attn = register_module("self_attn", std::make_shared<MultiheadAttention>(d_model, nhead, options.dropout,
                                                                                  true, options.batch_first));
    linear1 = register_module("linear1", std::make_shared<Linear>(d_model, options.dim_feedforward));
    dropout = register_module("dropout", std::make_shared<Dropout>(options.dropout));
    linear2 = register_module("linear2", std::make_shared<Linear>(options.dim_feedforward, d_model));
    norm1 = register_module("norm1", std::make_shared<LayerNorm>(d_model, options.layer_norm_eps));
    norm2 = register_module("norm2", std::make_shared<LayerNorm>(d_model, options.layer_norm_eps));
    dropout1 = register_module("dropout1", std::make_shared<Dropout>(options.dropout));
    dropout2 = register_module("dropout2", std::make_shared<Dropout>(options.dropout));
  }

  Tensor forward(const Tensor& src) override { return encode(src); }

  // src [B, L, D] (batch_first) or [L, B, D]; masks as MultiheadAttention::attention.
  Tensor encode(const Tensor& src, const Tensor& src_mask = Tensor(), const Tensor& src_key_padding_mask = Tensor()) {
    Tensor x = src;
    if (options.norm_first) {
      x = add(x, self_attention_block(norm1->forward(x), src_mask, src_key_padding_mask));
      x = add(x, feed_forward_block(norm2->forward(x)));
    } else {
      x = norm1->forward(add(x, self_attention_block(x, src_mask, src_key_padding_mask)));
      x = norm2->forward(add(x, feed_forward_block(x)));
    }
    return x;
  }

  TransformerOptions options;
  std::shared_ptr<MultiheadAttention> self_attn;
  std::shared_ptr<Linear> linear1, linear2;
  std::shared_ptr<Dropout> dropout, dropout1, dropout2;
  std::shared_ptr<LayerNorm> norm1, norm2;

 private:
  Tensor self_attention_block(const Tensor& x, const Tensor& attn_mask, const Tensor& key_padding_mask) {
    return dropout1->forward(self_attn->attention(x, x, x, key_padding_mask, attn_mask));
  }
  Tensor feed_forward_block(const Tensor& x) {
    const Tensor h = linear1->forward(x);
    const Tensor a = options.activation == "relu" ? relu(h) : gelu(h);
    return dropout2->forward(linear2->forward(dropout->forward(a)));
  }
};

// timm.layers.PatchEmbed with flatten=True, strict image size, no norm layer.
class PatchEmbed : public Module {
 public:
  PatchEmbed(int64_t image, int64_t patch, int64_t in_chans, int64_t embed_dim, bool bias = true)
      : Module("PatchEmbed"), img_size(image), patch_size(patch) {
    GRAFT_CHECK(patch >= 1 && image % patch == 0, "PatchEmbed", "img_size ", image,
                " must be a multiple of patch_size ", patch);
    grid_size = image / patch;
    num_patches = grid_size * grid_size;
    Conv2dOptions o;
    o.stride = {patch, patch};
    o.bias = bias;
    proj = register_module("proj", std::make_shared<Conv2d>(in_chans, embed_dim, patch, o));
    norm = register_module("norm", std::make_shared<Identity>());
  }
  // x [B, C, img, img] -> [B, N, D]
  Tensor forward(const Tensor& x) override {
    GRAFT_CHECK(x.dim() == 4 && x.size(2) == img_size && x.size(3) == img_size, "PatchEmbed",
                "expected input [B, C, ", img_size, ", ", img_size, "], got shape ", x.shape());
    return norm->forward(proj->forward(x).flatten(2).transpose(1, 2));
  }
  int64_t img_size, patch_size, grid_size, num_patches;
  std::shared_ptr<Conv2d> proj;
  std::shared_ptr<Identity> norm;
};

// Registers a learned position embedding [1, num_tokens, dim] on owner under `name` (timm's
// "pos_embed"), initialized as timm (trunc_normal_, std 0.02). Add it with add(tokens, pos).
inline Tensor register_position_embedding(Module& owner, int64_t num_tokens, int64_t dim,
                                          const std::string& name = "pos_embed") {
  Tensor pos = empty({1, num_tokens, dim});
  init::trunc_normal_(pos, 0.0, 0.02, -2.0, 2.0);  // timm's trunc_normal_(std=.02)
  return owner.register_parameter(name, pos);
}

// The same as a child module: forward(x [B, N, D]) = x + pos_embed.
class PositionEmbedding : public Module {
 public:
  PositionEmbedding(int64_t tokens, int64_t width, const std::string& name = "pos_embed")
      : Module("PositionEmbedding"), num_tokens(tokens), dim(width) {
    pos_embed = register_position_embedding(*this, tokens, width, name);
  }
  Tensor forward(const Tensor& x) override {
    GRAFT_CHECK(x.dim() == 3 && x.size(1) == num_tokens && x.size(2) == dim, "PositionEmbedding",
                "expected tokens [B, ", num_tokens, ", ", dim, "], got shape ", x.shape());
    return add(x, pos_embed);
  }
  int64_t num_tokens, dim;
  Tensor pos_embed;
};

}  // namespace graft::nn
