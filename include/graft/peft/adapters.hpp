// graft/peft/adapters.hpp - the two other common parameter-efficient recipes beside LoRA (lora.hpp):
//
//   BitFit (Ben Zaken et al. 2022): train only the biases (and the new head).
//     int64_t n = peft::apply_bitfit(*model, {"head"});   // returns the trainable parameter count
//
//   Bottleneck adapters (Houlsby et al. 2019): after each target Linear, y + up(act(down(y))), with
//   down = Linear(out, bottleneck) (torch's default init) and up = Linear(bottleneck, out) starting at
//   zero, so the adapted model starts equal to the base; only the adapters (and modules_to_save) train.
//     peft::BottleneckConfig cfg{.bottleneck = 64, .target_modules = {"attn.proj", "mlp.fc2"},
//                                .modules_to_save = {"head"}};
//     peft::apply_bottleneck_adapters(*vit, cfg);        // Houlsby's two places in a transformer block
//   Their modules are registered on the target layer as "adapter_down" and "adapter_up", so they carry
//   its dotted names (blocks.0.mlp.fc2.adapter_down.weight) and save / load with the model's state dict.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "graft/graft.hpp"
#include "graft/nn.hpp"
#include "graft/peft/lora.hpp"

namespace graft::peft {

// Freezes every parameter except those named "bias" and those of modules_to_save. Returns the number
// of trainable parameters. Errors: a module_to_save that matches nothing; a model without biases.
inline int64_t apply_bitfit(nn::Module& model, const std::vector<std::string>& modules_to_save = {}) {
  model.freeze();
  int64_t biases = 0;
  for (auto& [name, p] : model.named_parameters()) {
    const bool is_bias = name == "bias" || (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0);
    if (is_bias) {
      Tensor(p).set_requires_grad(true);
      ++biases;
    }
  }
  GRAFT_CHECK(biases > 0, "peft::apply_bitfit", "the ", model.type_name(), " has no bias parameters");
  for (const std::string& target : modules_to_save) {
    bool found = false;
    for (auto& [name, m] : model.named_modules())
      if (!name.empty() && detail_lora::name_matches(name, target)) {
        m->unfreeze();
        found = true;
      }
    GRAFT_CHECK(found, "peft::apply_bitfit", "modules_to_save '", target, "' not found in the ", model.type_name());
  }
  return count_parameters(model).first;
}

struct BottleneckConfig {
  int64_t bottleneck = 64;                     // the adapter's inner width
  std::vector<std::string> target_modules = {};   // nn::Linear layers the adapters follow
  std::vector<std::string> modules_to_save = {};  // trained in full as well (a new head)
  Activation act = Activation::Gelu;           // between down and up
};

// y + up(act(down(y))) on a Linear's output y.
class BottleneckAdapter : public nn::OutputAdapter {
 public:
  Tensor apply(const Tensor& /*x*/, const Tensor& y) override {
    return add(y, up->forward(activation(down->forward(y), act)));
  }
  std::shared_ptr<nn::Linear> down, up;
  Activation act = Activation::Gelu;
};

// Adds an adapter after every target Linear and freezes everything else except modules_to_save.
// Returns the adapted layers' names. Errors: a target or module_to_save that matches nothing, a
// target that is not an nn::Linear or already has an adapter, a bottleneck < 1.
inline std::vector<std::string> apply_bottleneck_adapters(nn::Module& model, const BottleneckConfig& cfg) {
  GRAFT_CHECK(cfg.bottleneck >= 1, "peft::apply_bottleneck_adapters", "bottleneck must be >= 1, got ", cfg.bottleneck);
  GRAFT_CHECK(!cfg.target_modules.empty(), "peft::apply_bottleneck_adapters", "target_modules is empty");
  std::vector<std::pair<std::string, nn::Linear*>> targets;
  std::vector<std::string> linear_names;
  for (auto& [name, m] : model.named_modules()) {
    auto* l = dynamic_cast<nn::Linear*>(m);
    if (l) linear_names.push_back(name);
    if (name.empty() || !detail_lora::matches_any(name, cfg.target_modules)) continue;
    GRAFT_CHECK(l != nullptr, "peft::apply_bottleneck_adapters", "target '", name, "' is a ", m->type_name(),
                ", not a Linear");
    GRAFT_CHECK(!l->adapter, "peft::apply_bottleneck_adapters", "'", name, "' already has an adapter");
    targets.emplace_back(name, l);
  }
  for (const std::string& t : cfg.target_modules) {
    bool found = false;
    for (const auto& [name, l] : targets) found = found || detail_lora::name_matches(name, t);
    GRAFT_CHECK(found, "peft::apply_bottleneck_adapters", "target module '", t, "' not found in the ", model.type_name(),
                " (its Linear layers: ", detail_lora::join(linear_names), ")");
  }
  std::vector<std::string> adapted;
  for (auto& [name, l] : targets) {
    auto a = std::make_shared<BottleneckAdapter>();
    a->act = cfg.act;
    a->down = std::make_shared<nn::Linear>(l->out_features, cfg.bottleneck);
    a->up = std::make_shared<nn::Linear>(cfg.bottleneck, l->out_features);
    {
      NoGradGuard no_grad;
      a->up->weight.zero_();
      a->up->bias.zero_();
    }
    for (nn::Linear* part : {a->down.get(), a->up.get()}) {
      part->to(l->weight.dtype());
      part->to(l->weight.device());
      part->train(l->is_training());
    }
    l->register_module("adapter_down", a->down);
    l->register_module("adapter_up", a->up);
    l->adapter = a;
    adapted.push_back(name);
  }
  model.freeze();
  for (auto& [name, l] : targets) {
    l->child("adapter_down")->unfreeze();
    l->child("adapter_up")->unfreeze();
  }
  for (const std::string& target : cfg.modules_to_save) {
    bool found = false;
    for (auto& [name, m] : model.named_modules())
      if (!name.empty() && detail_lora::name_matches(name, target)) {
        m->unfreeze();
        found = true;
      }
    GRAFT_CHECK(found, "peft::apply_bottleneck_adapters", "modules_to_save '", target, "' not found in the ",
                model.type_name());
  }
  return adapted;
}

}  // namespace graft::peft
