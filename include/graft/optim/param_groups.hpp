// graft/optim/param_groups.hpp - parameter groups built from a model's names, as timm's
// param_groups_weight_decay and param_groups_layer_decay (BEiT's layer-wise lr decay).
//
//   // No weight decay on biases and norm weights (1-D tensors), 0.05 on the rest:
//   optim::AdamW opt(optim::weight_decay_groups(*model, 0.05), 1e-3);
//
//   // Layer-wise decay for a ViT: the head gets lr, block i gets lr * 0.75^(13 - (i + 1)), the embeddings
//   // lr * 0.75^13 (ids 0 = embeddings, 1..12 = blocks, 13 = everything after):
//   auto groups = optim::layer_decay_groups(*vit, /*lr=*/1e-3, /*weight_decay=*/0.05, /*decay=*/0.75,
//                                           optim::layer_ids_by_prefix({{"cls_token", "pos_embed", "patch_embed"},
//                                                                       {"blocks.0."}, ..., {"blocks.11."}}));
//
// Frozen parameters (requires_grad false) are left out of every group. A parameter's layer id comes
// from the function given; ids run 0 .. num_layers, and the group of id L has
// lr_scale = decay ^ (num_layers - L) where num_layers is the largest id returned.
// Group names: "decay" / "no_decay", or "layer<L>.decay" / "layer<L>.no_decay".
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "graft/nn/module.hpp"
#include "graft/optim/optimizer.hpp"

namespace graft::optim {

// Whether a parameter gets no weight decay: 1-D tensors (biases, norm weights) and names in skip.
inline bool no_weight_decay(const std::string& name, const Tensor& p, const std::vector<std::string>& skip = {}) {
  if (p.dim() <= 1) return true;
  for (const auto& s : skip)
    if (name == s) return true;
  return false;
}

inline std::vector<ParamGroup> weight_decay_groups(nn::Module& model, double weight_decay,
                                                   const std::vector<std::string>& skip = {}) {
  ParamGroup decay{"decay", {}, kDefault, weight_decay}, no_decay{"no_decay", {}, kDefault, 0.0};
  for (auto& [name, p] : model.named_parameters()) {
    if (!p.requires_grad()) continue;
    (no_weight_decay(name, p, skip) ? no_decay : decay).params.push_back(p);
  }
  std::vector<ParamGroup> out;
  if (!no_decay.params.empty()) out.push_back(std::move(no_decay));
  if (!decay.params.empty()) out.push_back(std::move(decay));
  GRAFT_CHECK(!out.empty(), "weight_decay_groups", "the model has no trainable parameter");
  return out;
}

// A layer-id function from ordered stages of name prefixes: a name starting with a prefix of stage k
// gets id k; a name matching none gets stages.size() (the head).
inline std::function<int64_t(const std::string&)> layer_ids_by_prefix(std::vector<std::vector<std::string>> stages) {
  return [stages = std::move(stages)](const std::string& name) -> int64_t {
    for (size_t k = 0; k < stages.size(); ++k)
      for (const auto& prefix : stages[k])
        if (name.rfind(prefix, 0) == 0) return int64_t(k);
    return int64_t(stages.size());
  };
}

inline std::vector<ParamGroup> layer_decay_groups(nn::Module& model, double lr, double weight_decay,
                                                  double decay,
                                                  const std::function<int64_t(const std::string&)>& layer_id,
                                                  const std::vector<std::string>& skip = {}) {
  GRAFT_CHECK(decay > 0.0 && decay <= 1.0, "layer_decay_groups", "decay must be in (0, 1], got ", decay);
  std::map<std::pair<int64_t, bool>, ParamGroup> groups;  // (layer id, no_decay) -> group
  int64_t num_layers = 0;
  for (auto& [name, p] : model.named_parameters()) {
    if (!p.requires_grad()) continue;
    const int64_t id = layer_id(name);
    GRAFT_CHECK(id >= 0, "layer_decay_groups", "layer id of '", name, "' is ", id, ", expected >= 0");
    num_layers = std::max(num_layers, id);
    const bool nd = no_weight_decay(name, p, skip);
    ParamGroup& g = groups[{id, nd}];
    if (g.name.empty()) {
      g.name = "layer" + std::to_string(id) + (nd ? ".no_decay" : ".decay");
      g.weight_decay = nd ? 0.0 : weight_decay;
    }
    g.params.push_back(p);
  }
  GRAFT_CHECK(!groups.empty(), "layer_decay_groups", "the model has no trainable parameter");
  std::vector<ParamGroup> out;
  for (auto& [key, g] : groups) {
    g.lr = lr * std::pow(decay, double(num_layers - key.first));
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace graft::optim
