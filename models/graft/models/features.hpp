// graft/models/features.hpp - features at named layers, as torchvision's IntermediateLayerGetter and
// timm's features_only: a model lists its stages in order (feature_names()) and
// forward_intermediates(x, names) runs only as far as the last stage asked for, returning each
// requested stage's output in the order asked.
//
//   auto feats = resnet->forward_intermediates(x, {"layer2", "layer4"});   // [(name, [B, C, H, W]), ...]
//   auto toks = vit->forward_intermediates(x, {"blocks.5", "features"});
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "graft/graft.hpp"

namespace graft::models {

using NamedFeatures = std::vector<std::pair<std::string, Tensor>>;

namespace detail_features {
using Stage = std::pair<std::string, std::function<Tensor(const Tensor&)>>;

// Runs stages in order on x until every name in `wanted` has been produced.
inline NamedFeatures run_stages(const std::string& model, const Tensor& x, const std::vector<Stage>& stages,
                                const std::vector<std::string>& wanted) {
  GRAFT_CHECK(!wanted.empty(), model, "forward_intermediates: no layer names given");
  size_t last = 0;
  for (const auto& w : wanted) {
    size_t found = stages.size();
    for (size_t i = 0; i < stages.size(); ++i)
      if (stages[i].first == w) found = i;
    if (found == stages.size()) {
      std::string known;
      for (const auto& s : stages) known += (known.empty() ? "" : ", ") + s.first;
      throw Error(detail::concat(model, ": forward_intermediates: no layer named '", w, "' (known: ", known, ")"));
    }
    last = std::max(last, found);
  }
  std::vector<Tensor> outs(stages.size());
  Tensor y = x;
  for (size_t i = 0; i <= last; ++i) outs[i] = y = stages[i].second(y);
  NamedFeatures result;
  for (const auto& w : wanted)
    for (size_t i = 0; i <= last; ++i)
      if (stages[i].first == w) result.emplace_back(w, outs[i]);
  return result;
}

inline std::vector<std::string> names_of(const std::vector<Stage>& stages) {
  std::vector<std::string> n;
  for (const auto& s : stages) n.push_back(s.first);
  return n;
}
}  // namespace detail_features

}  // namespace graft::models
