// graft/peft/lora.hpp - LoRA (Hu et al. 2021), with Hugging Face PEFT's semantics and file format, so an
// adapter trained with PEFT loads here and one trained here loads in PEFT.
//
//   peft::LoraConfig cfg{.r = 8, .lora_alpha = 16, .target_modules = {"qkv"}, .modules_to_save = {"head"}};
//   peft::LoraReport rep = peft::apply_lora(*vit, cfg);   // freezes the base, adds lora_A / lora_B
//   ... train (only lora_A, lora_B and the head require grad) ...
//   peft::save_adapter(*vit, cfg, "out/adapter");         // adapter_model.safetensors + adapter_config.json
//   peft::merge_lora(*vit);                               // W += (alpha / r) B A; forward is one GEMM again
//   peft::load_adapter(*fresh_vit, "out/adapter");        // a PEFT save_pretrained directory, or ours
//
// What a target layer computes (LoraBranch, attached as the layer's nn::OutputAdapter):
//   Linear(in, out):   y = W x + b + (alpha / r) B A dropout(x),  A [r, in], B [out, r]
//   Conv2d(in, out, k, stride, padding): the same with A = Conv2d(in, r, k, stride, padding) and
//                      B = Conv2d(r, out, 1), both without bias
// Initialization as PEFT's init_lora_weights=True: A as torch's default (kaiming_uniform_(a = sqrt 5)),
// B = 0, so the adapted model starts equal to the base. Module names as PEFT's (the adapter name
// "default" left out, as its saved files do): <layer>.lora_A, <layer>.lora_B (and <layer>.lora_dropout,
// no state). Targets match as PEFT's list form: a module whose dotted name equals a target or ends
// with "." + target; a string of one element that is not a plain name is not accepted (PEFT's regex
// form), and neither are bias != "none", fan_in_fan_out, rank_pattern / alpha_pattern, DoRA or rsLoRA.
// modules_to_save match as PEFT's do: every module whose dotted name ends with the entry, even
// without a "." before it ("classifier" takes "pre_classifier" too).
// Merging (merge_lora) adds the scaled product into the layer's weight (for Conv2d with k > 1, PEFT's
// conv2d(A^T, B)^T); unmerge_lora subtracts it again (equal to float rounding), remove_lora merges (or
// not) and drops the branches (PEFT's merge_and_unload / unload).
//
// Files (save_adapter / load_adapter, PEFT's save_pretrained layout):
//   adapter_model.safetensors  "base_model.model.<layer>.lora_A.weight", "...lora_B.weight", and for each
//                              module in modules_to_save its whole state as "base_model.model.<module>.<key>"
//   adapter_config.json        peft_type "LORA", r, lora_alpha, lora_dropout, target_modules,
//                              modules_to_save, bias "none", ... (the fields PEFT 0.7 reads)
// tests/test_peft_roundtrip.cpp checks both directions against PEFT 0.7.1 itself (its save_pretrained
// and PeftModel.from_pretrained), the patch Conv2d and a modules_to_save head among the layers.
#pragma once
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <typeinfo>
#include <utility>
#include <vector>

#include "graft/graft.hpp"
#include "graft/io/json.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/nn.hpp"

namespace graft::peft {

struct LoraConfig {
  int64_t r = 8;                 // rank
  double lora_alpha = 8.0;       // the update is scaled by lora_alpha / r
  double lora_dropout = 0.0;     // dropout on the branch's input while training
  std::vector<std::string> target_modules = {};   // layers that get a branch (nn::Linear or nn::Conv2d)
  std::vector<std::string> modules_to_save = {};  // trained in full and saved with the adapter (a new head)
  std::string base_model_name_or_path = {};  // written to adapter_config.json (null when empty)
  double scaling() const { return lora_alpha / double(r); }
};

// What apply_lora did.
struct LoraReport {
  std::vector<std::string> adapted;  // the layers that got a branch, in module order
  std::vector<std::string> saved;    // the modules_to_save found
  int64_t trainable = 0, total = 0;  // parameter counts after freezing
  std::string str() const {
    return detail::concat("LoRA on ", adapted.size(), " layers, ", saved.size(), " modules trained in full; ",
                          trainable, " of ", total, " parameters trainable (",
                          total ? 100.0 * double(trainable) / double(total) : 0.0, "%)");
  }
};

// The branch LoRA adds to one layer's output. Its modules are registered on the layer.
class LoraBranch : public nn::OutputAdapter {
 public:
  Tensor apply(const Tensor& x, const Tensor& y) override {
    if (merged) return y;
    return add(y, mul(lora_B->forward(lora_A->forward(lora_dropout->forward(x))), scaling));
  }
  nn::ModulePtr lora_A, lora_B;  // nn::Linear or nn::Conv2d, both without bias
  std::shared_ptr<nn::Dropout> lora_dropout;
  double scaling = 1.0;
  int64_t r = 0;
  bool merged = false;  // the product is in the layer's weight; the branch is skipped
};

namespace detail_lora {

inline constexpr const char* kPrefix = "base_model.model.";

// PEFT's list form of target_modules: the dotted name equals the target or ends with "." + target.
inline bool name_matches(const std::string& name, const std::string& target) {
  if (name == target) return true;
  return name.size() > target.size() && name.compare(name.size() - target.size(), target.size(), target) == 0 &&
         name[name.size() - target.size() - 1] == '.';
}
inline bool matches_any(const std::string& name, const std::vector<std::string>& targets) {
  for (const auto& t : targets)
    if (name_matches(name, t)) return true;
  return false;
}

// PEFT's rule for modules_to_save (peft.utils.other._set_trainable): the dotted name ends with the
// entry, with no "." boundary, so "classifier" also takes DistilBERT's pre_classifier. PEFT trains and
// saves every such module, and an adapter it wrote only loads here when the same ones are matched.
inline bool saved_matches(const std::string& name, const std::vector<std::string>& modules_to_save) {
  for (const auto& t : modules_to_save)
    if (name.size() >= t.size() && name.compare(name.size() - t.size(), t.size(), t) == 0) return true;
  return false;
}

// A module inside a LoRA branch (its own Linear / Conv2d must never be targeted).
inline bool inside_branch(const std::string& name) {
  for (const char* part : {"lora_A", "lora_B", "lora_dropout"}) {
    const std::string p(part);
    if (name == p || name.rfind(p + ".", 0) == 0 || name.find("." + p) != std::string::npos) return true;
  }
  return false;
}

inline LoraBranch* branch_of(nn::Module& m) {
  if (auto* l = dynamic_cast<nn::Linear*>(&m)) return dynamic_cast<LoraBranch*>(l->adapter.get());
  if (auto* c = dynamic_cast<nn::Conv2d*>(&m)) return dynamic_cast<LoraBranch*>(c->adapter.get());
  return nullptr;
}

inline std::string join(const std::vector<std::string>& v, size_t max_items = 12) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < max_items; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > max_items) s += detail::concat(", ... (", v.size(), " in all)");
  return s;
}

// The (scaled) weight update B A of a branch, shaped as the layer's weight.
inline Tensor delta_weight(const LoraBranch& b, const Tensor& weight) {
  NoGradGuard no_grad;
  Tensor d;
  if (auto* a = dynamic_cast<nn::Linear*>(b.lora_A.get())) {
    d = matmul(dynamic_cast<nn::Linear&>(*b.lora_B).weight, a->weight);  // [out, r] [r, in]
  } else {
    const Tensor wa = dynamic_cast<nn::Conv2d&>(*b.lora_A).weight;  // [r, in, kh, kw]
    const Tensor wb = dynamic_cast<nn::Conv2d&>(*b.lora_B).weight;  // [out, r, 1, 1]
    if (wa.size(2) == 1 && wa.size(3) == 1)
      d = matmul(wb.reshape({wb.size(0), wb.size(1)}), wa.reshape({wa.size(0), wa.size(1)}))
              .reshape({wb.size(0), wa.size(1), 1, 1});
    else  // PEFT: conv2d(A^T, B)^T = sum_r B[o, r] A[r, i, :, :]
      d = conv2d(wa.permute({1, 0, 2, 3}), wb).permute({1, 0, 2, 3});
  }
  return mul(d, b.scaling).to(weight.dtype()).contiguous();
}

inline Tensor& weight_of(nn::Module& m) {
  if (auto* l = dynamic_cast<nn::Linear*>(&m)) return l->weight;
  return dynamic_cast<nn::Conv2d&>(m).weight;
}

// Each adapted layer (dotted name, module, branch), in module order.
inline std::vector<std::tuple<std::string, nn::Module*, LoraBranch*>> branches(nn::Module& model) {
  std::vector<std::tuple<std::string, nn::Module*, LoraBranch*>> out;
  for (auto& [name, m] : model.named_modules())
    if (LoraBranch* b = branch_of(*m)) out.emplace_back(name, m, b);
  return out;
}

// The modules of modules_to_save in `model` (not the root, no branch parts; a match inside one
// already taken is part of it), in module order.
inline std::vector<std::pair<std::string, nn::Module*>> saved_modules(nn::Module& model,
                                                                      const std::vector<std::string>& modules_to_save) {
  std::vector<std::pair<std::string, nn::Module*>> out;
  for (auto& [name, m] : model.named_modules()) {
    if (name.empty() || inside_branch(name) || !saved_matches(name, modules_to_save)) continue;
    if (!out.empty() && name.rfind(out.back().first + ".", 0) == 0) continue;
    out.emplace_back(name, m);
  }
  return out;
}

inline void check_config(const LoraConfig& c) {
  GRAFT_CHECK(c.r >= 1, "peft::LoraConfig", "r must be >= 1, got ", c.r);
  GRAFT_CHECK(std::isfinite(c.lora_alpha) && c.lora_alpha > 0, "peft::LoraConfig", "lora_alpha must be > 0, got ",
              c.lora_alpha);
  GRAFT_CHECK(c.lora_dropout >= 0 && c.lora_dropout < 1, "peft::LoraConfig", "lora_dropout must be in [0, 1), got ",
              c.lora_dropout);
  GRAFT_CHECK(!c.target_modules.empty(), "peft::LoraConfig", "target_modules is empty: name the layers to adapt");
}

}  // namespace detail_lora

// Parameters that require grad, and all parameters, of `model`.
inline std::pair<int64_t, int64_t> count_parameters(nn::Module& model) {
  int64_t trainable = 0, total = 0;
  for (const Tensor& p : model.parameters()) {
    total += p.numel();
    if (p.requires_grad()) trainable += p.numel();
  }
  return {trainable, total};
}

// Adds a LoRA branch to every target layer, freezes everything else except modules_to_save.
// Errors: a target that matches no module (listing the model's Linear / Conv2d names), a matched
// module that is not a plain nn::Linear / nn::Conv2d (or is a grouped / dilated conv), a rank larger
// than the layer's (both numbers), a layer that already has an adapter.
inline LoraReport apply_lora(nn::Module& model, const LoraConfig& cfg) {
  using namespace detail_lora;
  check_config(cfg);
  std::vector<std::pair<std::string, nn::Module*>> modules;
  for (auto& nm : model.named_modules())
    if (!inside_branch(nm.first)) modules.push_back(nm);
  // Every target and every module to save must match something.
  std::vector<std::string> layer_names;
  for (auto& [name, m] : modules)
    if (!name.empty() && (dynamic_cast<nn::Linear*>(m) || dynamic_cast<nn::Conv2d*>(m))) layer_names.push_back(name);
  auto require_found = [&](const std::vector<std::string>& targets, const char* what, bool layers_only) {
    std::vector<std::string> missing;
    for (const auto& t : targets) {
      bool found = false;
      for (auto& [name, m] : modules)
        if (!name.empty() && (layers_only ? name_matches(name, t) : saved_matches(name, {t}))) found = true;
      if (!found) missing.push_back("'" + t + "'");
    }
    GRAFT_CHECK(missing.empty(), "peft::apply_lora", what, " ", join(missing), " not found in the ", model.type_name(),
                layers_only ? detail::concat(" (its Linear and Conv2d layers: ", join(layer_names), ")") : "");
  };
  require_found(cfg.target_modules, "target modules", true);
  require_found(cfg.modules_to_save, "modules_to_save", false);

  LoraReport report;
  std::vector<std::pair<std::string, nn::Module*>> targets;
  for (auto& [name, m] : modules) {
    if (name.empty() || !matches_any(name, cfg.target_modules)) continue;
    const bool linear = typeid(*m) == typeid(nn::Linear), conv = typeid(*m) == typeid(nn::Conv2d);
    GRAFT_CHECK(linear || conv, "peft::apply_lora", "target '", name, "' is a ", m->type_name(),
                ": LoRA adapts nn::Linear and nn::Conv2d layers (not their subclasses)");
    GRAFT_CHECK(branch_of(*m) == nullptr &&
                    (linear ? !dynamic_cast<nn::Linear*>(m)->adapter : !dynamic_cast<nn::Conv2d*>(m)->adapter),
                "peft::apply_lora", "'", name, "' already has an adapter");
    targets.emplace_back(name, m);
  }
  for (auto& [name, m] : targets) {
    auto branch = std::make_shared<LoraBranch>();
    branch->r = cfg.r;
    branch->scaling = cfg.scaling();
    branch->lora_dropout = std::make_shared<nn::Dropout>(cfg.lora_dropout);
    const Tensor& w = weight_of(*m);
    if (auto* l = dynamic_cast<nn::Linear*>(m)) {
      const int64_t max_r = std::min(l->in_features, l->out_features);
      GRAFT_CHECK(cfg.r <= max_r, "peft::apply_lora", "rank r = ", cfg.r, " is larger than layer '", name,
                  "' (Linear ", l->in_features, " -> ", l->out_features, ") allows: r <= ", max_r);
      branch->lora_A = std::make_shared<nn::Linear>(l->in_features, cfg.r, false);
      auto b = std::make_shared<nn::Linear>(cfg.r, l->out_features, false);
      b->weight.detach().zero_();
      branch->lora_B = b;
    } else {
      auto* c = dynamic_cast<nn::Conv2d*>(m);
      GRAFT_CHECK(c->options.groups == 1 && c->options.dilation[0] == 1 && c->options.dilation[1] == 1,
                  "peft::apply_lora", "'", name, "' is a grouped or dilated Conv2d (groups ", c->options.groups,
                  ", dilation ", c->options.dilation[0], "x", c->options.dilation[1],
                  "): LoRA adapts dense, undilated convolutions, as PEFT");
      const int64_t fan = c->in_channels * c->kernel_size[0] * c->kernel_size[1];
      const int64_t max_r = std::min(fan, c->out_channels);
      GRAFT_CHECK(cfg.r <= max_r, "peft::apply_lora", "rank r = ", cfg.r, " is larger than layer '", name,
                  "' (Conv2d ", c->in_channels, " -> ", c->out_channels, ", kernel ", c->kernel_size[0], "x",
                  c->kernel_size[1], ") allows: r <= ", max_r);
      nn::Conv2dOptions ao;
      ao.stride = c->options.stride;
      ao.padding = c->options.padding;
      ao.bias = false;
      branch->lora_A = std::make_shared<nn::Conv2d>(c->in_channels, cfg.r, c->kernel_size, ao);
      nn::Conv2dOptions bo;
      bo.bias = false;
      auto b = std::make_shared<nn::Conv2d>(cfg.r, c->out_channels, 1, bo);
      b->weight.detach().zero_();
      branch->lora_B = b;
    }
    for (nn::Module* part : {static_cast<nn::Module*>(branch->lora_A.get()), static_cast<nn::Module*>(branch->lora_B.get())}) {
      part->to(w.dtype());
      part->to(w.device());
      part->train(m->is_training());
    }
    branch->lora_dropout->train(m->is_training());
    m->register_module("lora_dropout", branch->lora_dropout);
    m->register_module("lora_A", branch->lora_A);
    m->register_module("lora_B", branch->lora_B);
    if (auto* l = dynamic_cast<nn::Linear*>(m)) l->adapter = branch;
    else dynamic_cast<nn::Conv2d*>(m)->adapter = branch;
    report.adapted.push_back(name);
  }
  // PEFT's mark_only_lora_as_trainable (bias "none"), then modules_to_save trainable.
  model.freeze();
  for (auto& [name, m, b] : branches(model)) {
    b->lora_A->unfreeze();
    b->lora_B->unfreeze();
  }
  for (auto& [name, m] : saved_modules(model, cfg.modules_to_save)) {
    m->unfreeze();
    report.saved.push_back(name);
  }
  std::tie(report.trainable, report.total) = count_parameters(model);
  return report;
}

// W += (alpha / r) B A in every adapted layer not merged yet; the branches are then skipped.
inline int64_t merge_lora(nn::Module& model) {
  int64_t n = 0;
  NoGradGuard no_grad;
  for (auto& [name, m, b] : detail_lora::branches(model)) {
    if (b->merged) continue;
    Tensor& w = detail_lora::weight_of(*m);
    w.copy_(add(w, detail_lora::delta_weight(*b, w)));
    b->merged = true;
    ++n;
  }
  return n;
}

// Undoes merge_lora: W -= (alpha / r) B A (equal to the unmerged weight up to float rounding).
inline int64_t unmerge_lora(nn::Module& model) {
  int64_t n = 0;
  NoGradGuard no_grad;
  for (auto& [name, m, b] : detail_lora::branches(model)) {
    if (!b->merged) continue;
    Tensor& w = detail_lora::weight_of(*m);
    w.copy_(sub(w, detail_lora::delta_weight(*b, w)));
    b->merged = false;
    ++n;
  }
  return n;
}

// Drops every branch, merging it into the weight first when `merge` (PEFT's merge_and_unload; without
// merging, unload: the base model as it was). Returns the number of layers.
inline int64_t remove_lora(nn::Module& model, bool merge = true) {
  if (merge) merge_lora(model);
  else unmerge_lora(model);
  int64_t n = 0;
  for (auto& [name, m, b] : detail_lora::branches(model)) {
    m->remove_module("lora_dropout");
    m->remove_module("lora_A");
    m->remove_module("lora_B");
    if (auto* l = dynamic_cast<nn::Linear*>(m)) l->adapter.reset();
    else dynamic_cast<nn::Conv2d*>(m)->adapter.reset();
    ++n;
  }
  return n;
}

// The adapter's tensors under PEFT's saved names (see the top).
inline nn::StateDict lora_state_dict(nn::Module& model, const LoraConfig& cfg) {
  using namespace detail_lora;
  nn::StateDict out;
  for (auto& [name, m, b] : branches(model)) {
    out.emplace_back(kPrefix + name + ".lora_A.weight", weight_of(*b->lora_A));
    out.emplace_back(kPrefix + name + ".lora_B.weight", weight_of(*b->lora_B));
  }
  for (auto& [name, m] : saved_modules(model, cfg.modules_to_save))
    for (const auto& [k, t] : m->state_dict()) out.emplace_back(kPrefix + name + "." + k, t);
  return out;
}

namespace detail_lora {
inline std::string json_list(const std::vector<std::string>& v) {
  if (v.empty()) return "null";
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + io::json_quote(v[i]);
  return s + "]";
}
inline std::string number(double v) {
  std::ostringstream o;
  o.precision(17);
  o << v;
  return o.str();
}
inline void write_text_atomic(const std::string& path, const std::string& text) {
  io::safetensors_detail::TempFile tmp(path + ".tmp." + std::to_string(::getpid()));
  io::safetensors_detail::write_all(tmp.fd(), text.data(), text.size(), tmp.path());
  tmp.commit(path);
}
}  // namespace detail_lora

// adapter_config.json for cfg (the fields PEFT 0.7's LoraConfig reads; newer PEFT reads them too).
inline std::string adapter_config_json(const LoraConfig& cfg) {
  using detail_lora::json_list;
  using detail_lora::number;
  return detail::concat(
      "{\n  \"alpha_pattern\": {},\n  \"auto_mapping\": null,\n  \"base_model_name_or_path\": ",
      cfg.base_model_name_or_path.empty() ? std::string("null") : io::json_quote(cfg.base_model_name_or_path),
      ",\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n  \"inference_mode\": true,\n"
      "  \"init_lora_weights\": true,\n  \"layers_pattern\": null,\n  \"layers_to_transform\": null,\n"
      "  \"lora_alpha\": ",
      number(cfg.lora_alpha), ",\n  \"lora_dropout\": ", number(cfg.lora_dropout),
      ",\n  \"modules_to_save\": ", json_list(cfg.modules_to_save), ",\n  \"peft_type\": \"LORA\",\n  \"r\": ", cfg.r,
      ",\n  \"rank_pattern\": {},\n  \"revision\": null,\n  \"target_modules\": ", json_list(cfg.target_modules),
      ",\n  \"task_type\": null\n}\n");
}

// Writes dir/adapter_model.safetensors and dir/adapter_config.json (each atomically; dir is created).
inline void save_adapter(nn::Module& model, const LoraConfig& cfg, const std::string& dir) {
  GRAFT_CHECK(!detail_lora::branches(model).empty(), "peft::save_adapter", "the ", model.type_name(),
              " has no LoRA layers (apply_lora first)");
  ::mkdir(dir.c_str(), 0755);
  struct stat st {};
  GRAFT_CHECK(::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode), "peft::save_adapter", "cannot create directory '",
              dir, "'");
  io::save_safetensors(dir + "/adapter_model.safetensors", lora_state_dict(model, cfg), {{"format", "pt"}});
  detail_lora::write_text_atomic(dir + "/adapter_config.json", adapter_config_json(cfg));
}

// Reads a PEFT adapter_config.json (LoRA only; the options Graft does not implement are refused by name).
inline LoraConfig read_adapter_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  GRAFT_CHECK(f.good(), "peft::read_adapter_config", "cannot open '", path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  const io::JsonValue j = io::parse_json(ss.str(), path);
  auto field = [&](const char* key) { return j.find(key); };
  auto is_set = [&](const char* key) {
    const io::JsonValue* v = field(key);
    return v && !v->is_null() && !(v->is_bool() && !v->as_bool()) && !(v->is_object() && v->as_object().empty());
  };
  const io::JsonValue* type = field("peft_type");
  GRAFT_CHECK(type && type->is_string() && type->as_string() == "LORA", "peft::read_adapter_config", path,
              ": peft_type is ", type && type->is_string() ? "'" + type->as_string() + "'" : std::string("missing"),
              ", not 'LORA'");
  for (const char* unsupported : {"fan_in_fan_out", "use_dora", "use_rslora", "rank_pattern", "alpha_pattern",
                                  "layers_to_transform", "layer_replication"})
    GRAFT_CHECK(!is_set(unsupported), "peft::read_adapter_config", path, ": '", unsupported,
                "' is set, which Graft's LoRA does not implement");
  const io::JsonValue* bias = field("bias");
  GRAFT_CHECK(!bias || bias->is_null() || bias->as_string() == "none", "peft::read_adapter_config", path,
              ": bias '", bias ? bias->as_string() : "", "' is not supported (only 'none')");
  LoraConfig cfg;
  cfg.r = j.at("r").as_int();
  cfg.lora_alpha = field("lora_alpha") ? j.at("lora_alpha").as_double() : 8.0;
  cfg.lora_dropout = field("lora_dropout") ? j.at("lora_dropout").as_double() : 0.0;
  const io::JsonValue& targets = j.at("target_modules");
  GRAFT_CHECK(targets.is_array(), "peft::read_adapter_config", path,
              ": target_modules is a regular expression string; Graft reads the list form");
  for (const auto& t : targets.as_array()) cfg.target_modules.push_back(t.as_string());
  if (const io::JsonValue* s = field("modules_to_save"); s && !s->is_null())
    for (const auto& t : s->as_array()) cfg.modules_to_save.push_back(t.as_string());
  if (const io::JsonValue* b = field("base_model_name_or_path"); b && b->is_string())
    cfg.base_model_name_or_path = b->as_string();
  detail_lora::check_config(cfg);
  return cfg;
}

// Applies the adapter in `dir` (a PEFT save_pretrained directory, or save_adapter's) to `model`:
// apply_lora with its config, then its tensors. Errors name the keys: an adapter trained for other
// target modules or another model (unexpected / missing keys), mis-shaped tensors with both shapes.
inline LoraReport load_adapter(nn::Module& model, const std::string& dir) {
  const LoraConfig cfg = read_adapter_config(dir + "/adapter_config.json");
  LoraReport report = apply_lora(model, cfg);
  const std::string file = dir + "/adapter_model.safetensors";
  std::map<std::string, Tensor> given;
  for (auto& [k, t] : io::load_safetensors(file)) {
    std::string key = k;
    for (const char* part : {".lora_A.default.", ".lora_B.default."}) {  // PEFT's in-memory names
      const size_t at = key.find(part);
      if (at != std::string::npos) key.erase(at + 7, 8);
    }
    given.emplace(key, t);
  }
  const nn::StateDict expected = lora_state_dict(model, cfg);
  std::vector<std::string> missing, unexpected;
  std::set<std::string> names;
  for (const auto& [k, t] : expected) {
    names.insert(k);
    const auto it = given.find(k);
    if (it == given.end()) {
      missing.push_back(k);
      continue;
    }
    GRAFT_CHECK(it->second.shape() == t.shape(), "peft::load_adapter", file, ": '", k, "' has shape ",
                it->second.shape(), ", the model's is ", t.shape());
  }
  for (const auto& [k, t] : given)
    if (!names.count(k)) unexpected.push_back(k);
  GRAFT_CHECK(missing.empty() && unexpected.empty(), "peft::load_adapter", file, " does not fit the ", model.type_name(),
              " with target_modules [", detail_lora::join(cfg.target_modules), "]",
              missing.empty() ? "" : detail::concat("; missing: ", detail_lora::join(missing, 5)),
              unexpected.empty() ? "" : detail::concat("; unexpected (other modules?): ", detail_lora::join(unexpected, 5)));
  NoGradGuard no_grad;
  for (const auto& [k, t] : expected) Tensor(t).copy_(given.at(k));
  return report;
}

}  // namespace graft::peft
