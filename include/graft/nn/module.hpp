// graft/nn/module.hpp - nn::Module: the run-time composition of layers, with PyTorch's semantics.
//
// A Module owns, in registration order:
//   parameters  trainable tensors (requires_grad), e.g. "weight", "bias"
//   buffers     state that is not trained, e.g. BatchNorm's "running_mean"; persistent buffers go
//               into state_dict(), non-persistent ones do not
//   children    sub-modules held by std::shared_ptr, e.g. "layer1", "0"
// Dotted names are exactly PyTorch's: a parameter "weight" of child "conv1" of child "0" of child
// "layer1" is "layer1.0.conv1.weight".
//
// Orders (all as PyTorch):
//   named_modules()     pre-order: this module ("") first, then each child's subtree
//   named_parameters()  for each module in named_modules() order, its own parameters; a tensor shared
//                       by two modules appears once (first name)
//   state_dict()        recursively: own parameters, own persistent buffers, then each child
// load_state_dict(sd, strict) copies by name under NoGradGuard (dtype converted, handles unchanged, so
// an optimizer holding the parameters keeps working). strict: missing, unexpected or shape-mismatched
// keys throw graft::Error before anything is copied, with each kind's count and first names (mis-shaped
// ones with both shapes; LoadReport::str), saying when fewer than half of the module's keys are found
// (a checkpoint for another architecture) and how to fit a classifier head of another size. Non-strict:
// copies what matches and returns a LoadReport naming the rest.
//
// Layers keep Tensor handles to their parameters as members; to(DType) converts each tensor in place
// (its TensorImpl gets the new storage and dtype), so those handles stay valid, as param.data = ... in
// PyTorch. Integer buffers (num_batches_tracked) keep their dtype, as Module.to(dtype) in PyTorch.
#pragma once
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "graft/graft.hpp"

namespace graft::nn {

// An ordered state dict: (dotted name, tensor) in PyTorch's order.
using StateDict = std::vector<std::pair<std::string, Tensor>>;

struct ShapeMismatch {
  std::string name;
  Shape expected;  // the module's
  Shape actual;    // the state dict's
};

struct LoadReport {
  std::vector<std::string> missing;     // in the module, not in the state dict (module order)
  std::vector<std::string> unexpected;  // in the state dict, not in the module (state dict order)
  std::vector<ShapeMismatch> mismatched;
  size_t model_keys = 0;  // keys of the module's state dict (0: not counted, e.g. a report built by hand)
  size_t found = 0;       // of those, how many the state dict holds (with any shape)
  std::string head;       // the module's classifier head (Module::classifier_name()), "" if it has none
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }

  // Fewer than half of the module's keys are in the state dict: the checkpoint is most likely for
  // another architecture (or its names need mapping, see weights_import/).
  bool looks_like_other_architecture() const { return model_keys > 0 && 2 * found < model_keys; }

  // A readable summary: each kind with its count and its first `max_names` names (a checkpoint of
  // another architecture misses hundreds of keys; the full lists are the vectors above). Mis-shaped
  // keys give both shapes; a mis-shaped classifier head says how to change the number of classes.
  std::string str(size_t max_names = 5) const {
    std::string s;
    auto sep = [&] {
      if (!s.empty()) s += "; ";
    };
    if (looks_like_other_architecture()) {
      s += detail::concat("only ", found, " of the model's ", model_keys,
                          " keys are in the state dict: it looks like a checkpoint for another architecture");
    }
    auto list = [&](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      sep();
      s += what;
      const size_t shown = std::min(names.size(), max_names);
      for (size_t i = 0; i < shown; ++i) s += (i ? ", '" : " '") + names[i] + "'";
      if (shown < names.size()) s += detail::concat(" (and ", names.size() - shown, " more, ", names.size(), " in all)");
    };
    list("missing keys:", missing);
    list("unexpected keys:", unexpected);
    const size_t shown = std::min(mismatched.size(), max_names);
    for (size_t i = 0; i < shown; ++i) {
      const ShapeMismatch& m = mismatched[i];
      sep();
      s += detail::concat("size mismatch for '", m.name, "': expected shape ", m.expected, ", got ", m.actual);
    }
    if (shown < mismatched.size())
      s += detail::concat(" (and ", mismatched.size() - shown, " more size mismatches, ", mismatched.size(),
                          " in all)");
    for (const ShapeMismatch& m : mismatched)
      if (is_classifier_head(m)) {
        const int64_t want = m.expected[0], have = m.actual[0];
        s += detail::concat("; '", m.name, "' is the classifier head: the checkpoint has ", have,
                            " classes, the model ", want, ". Load it into a ", have,
                            "-class model and call reset_classifier(", want,
                            "), or drop the head's keys and load with strict=false");
        break;
      }
    return s;
  }

  // A mis-shaped key of the classifier head (head.weight or head.bias) differing only in its number
  // of outputs.
  bool is_classifier_head(const ShapeMismatch& m) const {
    if (head.empty() || (m.name != head + ".weight" && m.name != head + ".bias")) return false;
    if (m.expected.size() == 0 || m.expected.size() != m.actual.size() || m.expected.size() > 2) return false;
    for (int d = 1; d < m.expected.size(); ++d)
      if (m.expected[d] != m.actual[d]) return false;
    return true;
  }
};

class Module;
using ModulePtr = std::shared_ptr<Module>;

class Module {
 public:
  explicit Module(std::string type_name = "Module") : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The class name, as PyTorch prints it ("Linear", "Sequential").
  const std::string& type_name() const { return type_name_; }
  // The dotted name of the module's classifier head ("fc", "classifier.3"), which a state dict for
  // another number of classes mis-shapes (LoadReport::str says how to fit it); "" when it has none.
  // Models override it (models/classifier.hpp).
  virtual std::string classifier_name() const { return ""; }

  // x -> y for modules with one input; others define their own methods and throw here.
  virtual Tensor forward(const Tensor& x) {
    (void)x;
    throw Error(detail::concat(type_name_, ": forward(const Tensor&) is not defined for this module"));
  }
  Tensor operator()(const Tensor& x) { return forward(x); }

  // ---- registration ------------------------------------------------------------------------------
  // An undefined tensor registers nothing (PyTorch's `bias=None`). Returns the stored handle.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true) {
    check_new_name(name);
    if (!t.defined()) return t;
    if (t.requires_grad() != requires_grad) t.set_requires_grad(requires_grad);
    params_.emplace_back(name, t);
    return t;
  }
  Tensor register_buffer(const std::string& name, Tensor t, bool persistent = true) {
    check_new_name(name);
    if (!t.defined()) return t;
    buffers_.push_back({name, t, persistent});
    return t;
  }
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    check_new_name(name);
    GRAFT_CHECK(m != nullptr, "Module", "register_module('", name, "') on ", type_name_, ": null module");
    GRAFT_CHECK(static_cast<const Module*>(m.get()) != this, "Module", "register_module('", name, "') on ",
                type_name_, ": a module cannot be its own child");
    children_.emplace_back(name, m);
    return m;
  }
  // Replaces a registered child (e.g. a new classifier head); the name must exist.
  void replace_module(const std::string& name, ModulePtr m) {
    GRAFT_CHECK(m != nullptr, "Module", "replace_module('", name, "') on ", type_name_, ": null module");
    for (auto& [n, c] : children_)
      if (n == name) {
        c = std::move(m);
        return;
      }
    throw Error(detail::concat("Module: ", type_name_, " has no child '", name, "' to replace"));
  }

  // Removes a registered child (e.g. an adapter's branch); the name must exist.
  void remove_module(const std::string& name) {
    for (auto it = children_.begin(); it != children_.end(); ++it)
      if (it->first == name) {
        children_.erase(it);
        return;
      }
    throw Error(detail::concat("Module: ", type_name_, " has no child '", name, "' to remove"));
  }

  // ---- traversal ---------------------------------------------------------------------------------
  std::vector<std::pair<std::string, ModulePtr>> named_children() const { return children_; }
  std::vector<ModulePtr> children() const {
    std::vector<ModulePtr> out;
    for (const auto& [n, c] : children_) out.push_back(c);
    return out;
  }
  // Pre-order; this module is first with name "" (as a raw pointer: it may not be owned by a
  // shared_ptr), then every descendant with its dotted name. A module reachable twice appears once.
  std::vector<std::pair<std::string, Module*>> named_modules() {
    std::vector<std::pair<std::string, Module*>> out;
    std::set<const Module*> seen;
    collect_modules(out, seen, "");
    return out;
  }
  ModulePtr child(const std::string& name) const {
    for (const auto& [n, c] : children_)
      if (n == name) return c;
    throw Error(detail::concat("Module: ", type_name_, " has no child '", name, "'"));
  }
  // Own parameter or buffer by local name (undefined if absent).
  Tensor find_tensor(const std::string& name) const {
    for (const auto& [n, t] : params_)
      if (n == name) return t;
    for (const auto& b : buffers_)
      if (b.name == name) return b.tensor;
    return Tensor();
  }

  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) {
    std::vector<std::pair<std::string, Tensor>> out;
    std::set<const TensorImpl*> seen;
    for_each_module(recurse, [&](const std::string& prefix, Module& m) {
      for (const auto& [n, t] : m.params_)
        if (seen.insert(t.impl()).second) out.emplace_back(prefix + n, t);
    });
    return out;
  }
  std::vector<Tensor> parameters(bool recurse = true) {
    std::vector<Tensor> out;
    for (auto& [n, t] : named_parameters(recurse)) out.push_back(t);
    return out;
  }
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) {
    std::vector<std::pair<std::string, Tensor>> out;
    std::set<const TensorImpl*> seen;
    for_each_module(recurse, [&](const std::string& prefix, Module& m) {
      for (const auto& b : m.buffers_)
        if (seen.insert(b.tensor.impl()).second) out.emplace_back(prefix + b.name, b.tensor);
    });
    return out;
  }
  std::vector<Tensor> buffers(bool recurse = true) {
    std::vector<Tensor> out;
    for (auto& [n, t] : named_buffers(recurse)) out.push_back(t);
    return out;
  }

  // Calls fn(dotted_name, module) for every module in named_modules() order (this one is "").
  void apply(const std::function<void(const std::string&, Module&)>& fn) {
    for (auto& [name, m] : named_modules()) fn(name, *m);
  }

  // ---- modes -------------------------------------------------------------------------------------
  Module& train(bool on = true) {
    apply([on](const std::string&, Module& m) { m.training_ = on; });
    return *this;
  }
  Module& eval() { return train(false); }
  bool is_training() const { return training_; }

  // Drops every parameter's .grad (set_to_none=True).
  void zero_grad() {
    for (const Tensor& p : parameters()) p.zero_grad();
  }
  // Elements in parameters(); trainable_only counts those with requires_grad.
  int64_t num_parameters(bool trainable_only = false) {
    int64_t n = 0;
    for (const Tensor& p : parameters())
      if (!trainable_only || p.requires_grad()) n += p.numel();
    return n;
  }
  // Sets requires_grad on every parameter (freezing a backbone: model.child("backbone")->requires_grad_(false)).
  Module& requires_grad_(bool on = true) {
    for (Tensor& p : parameters()) p.set_requires_grad(on);
    return *this;
  }

  // ---- freezing (transfer learning) ----------------------------------------------------------------
  // Frozen parameters have requires_grad false: backward builds no node for them and computes no
  // gradient for them (nor for anything that only feeds them). BatchNorm statistics are a separate
  // switch (freeze_norm_stats), since freezing a BatchNorm's weights does not stop its running stats.
  Module& freeze() { return requires_grad_(false); }
  Module& unfreeze() { return requires_grad_(true); }
  // Parameters whose dotted name matches the glob `pattern` ('*' any run of characters, '?' one):
  // "layer1.*", "*.bn?.weight", "blocks.1?.*". Returns how many; none matching throws (a typo must
  // not leave a model silently unfrozen).
  int64_t freeze(const std::string& pattern) { return set_requires_grad_matching(pattern, false, "freeze"); }
  int64_t unfreeze(const std::string& pattern) { return set_requires_grad_matching(pattern, true, "unfreeze"); }
  // Everything up to and including the module `name` (a dotted module name), in named_parameters()
  // order: resnet->freeze_up_to("layer2") freezes conv1, bn1, layer1 and layer2;
  // vit->freeze_up_to("blocks.5") freezes cls_token, pos_embed, patch_embed and blocks 0-5.
  int64_t freeze_up_to(const std::string& name) {
    auto params = named_parameters();
    const std::string prefix = name + ".";
    int64_t last = -1;
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].first.rfind(prefix, 0) == 0) last = int64_t(i);
    GRAFT_CHECK(last >= 0, "Module", "freeze_up_to('", name, "') on ", type_name_,
                ": no parameter under a module of that name");
    for (int64_t i = 0; i <= last; ++i) params[size_t(i)].second.set_requires_grad(false);
    return last + 1;
  }
  // Freezes (or unfreezes) the running statistics of every normalization layer that keeps them
  // (BatchNorm2d): in training mode too they normalize with the running stats and are not updated.
  // Independent of freeze(): weights trainable with frozen stats, or frozen weights with updating stats.
  Module& freeze_norm_stats(bool frozen = true) {
    apply([frozen](const std::string&, Module& m) { m.set_stats_frozen(frozen); });
    return *this;
  }

  // ---- inference ---------------------------------------------------------------------------------
  // Folds every BatchNorm2d that directly follows a Conv2d into that conv's weight and bias
  // (nn::fuse_conv_bn, layers.hpp), so inference runs one conv where it ran conv + batch norm. Which
  // conv a batch norm follows is known only to the module that calls them, so each module folds its
  // own pairs (fuse_own_pairs): Sequential its adjacent (Conv2d, BatchNorm2d) children, the models
  // theirs (ResNet's blocks, EfficientNet-Lite's MBConv blocks). Eval mode only (the running
  // statistics are what is folded); afterwards the model is for inference: a folded BatchNorm2d passes
  // its input through and throws in training mode, and convs that had no bias gain one (state_dict
  // changes accordingly). Returns the number of pairs folded.
  int64_t fuse_for_inference() {
    int64_t folded = 0;
    apply([&](const std::string& name, Module& m) {
      GRAFT_CHECK(!m.training_, "Module", "fuse_for_inference on ", type_name_, ": module '", name,
                  "' is in training mode; call eval() first (the running statistics are what is folded)");
      folded += m.fuse_own_pairs();
    });
    return folded;
  }

  // Converts every floating parameter and buffer (and existing .grad) to dt, in place (see the top).
  Module& to(DType dt) {
    GRAFT_CHECK(is_floating(dt), "Module", "to(", dtype_name(dt), ") on ", type_name_,
                ": expected a floating dtype (integer buffers keep theirs)");
    convert_tensors([dt](const Tensor& t) { return is_floating(t.dtype()) ? t.to(dt) : Tensor(); });
    return *this;
  }
  Module& to(Device d) {
    convert_tensors([d](const Tensor& t) { return t.device() == d ? Tensor() : t.to(d); });
    return *this;
  }

  // ---- state dict ------------------------------------------------------------------------------
  StateDict state_dict() {
    StateDict out;
    collect_state(out, "");
    return out;
  }

  LoadReport load_state_dict(const StateDict& sd, bool strict = true) {
    std::unordered_map<std::string, const Tensor*> given;
    for (const auto& [k, t] : sd) {
      GRAFT_CHECK(t.defined(), "load_state_dict", "state dict entry '", k, "' is an undefined tensor");
      given[k] = &t;
    }
    const StateDict own = state_dict();
    std::set<std::string> own_names;
    LoadReport report;
    report.model_keys = own.size();
    report.head = classifier_name();
    std::vector<std::pair<Tensor, const Tensor*>> to_copy;
    for (const auto& [k, t] : own) {
      own_names.insert(k);
      auto it = given.find(k);
      if (it != given.end()) ++report.found;
      if (it == given.end()) {
        report.missing.push_back(k);
      } else if (it->second->shape() != t.shape()) {
        report.mismatched.push_back({k, t.shape(), it->second->shape()});
      } else {
        to_copy.emplace_back(t, it->second);
      }
    }
    for (const auto& [k, t] : sd)
      if (!own_names.count(k)) report.unexpected.push_back(k);
    GRAFT_CHECK(!strict || report.ok(), "load_state_dict",
                "error(s) loading state dict into ", type_name_, ": ", report.str());
    NoGradGuard no_grad;
    for (auto& [dst, src] : to_copy) dst.copy_(*src);
    return report;
  }
  template <class Map>
  LoadReport load_state_dict_map(const Map& m, bool strict = true) {
    StateDict sd(m.begin(), m.end());
    return load_state_dict(sd, strict);
  }
  LoadReport load_state_dict(const std::map<std::string, Tensor>& m, bool strict = true) {
    return load_state_dict_map(m, strict);
  }
  LoadReport load_state_dict(const std::unordered_map<std::string, Tensor>& m, bool strict = true) {
    return load_state_dict_map(m, strict);
  }

 protected:
  void set_type_name(std::string n) { type_name_ = std::move(n); }
  // The hook freeze_norm_stats calls on every module; layers with running statistics override it.
  virtual void set_stats_frozen(bool) {}
  // The hook fuse_for_inference calls on every module: fold this module's own (Conv2d, BatchNorm2d)
  // pairs with nn::fuse_conv_bn and return how many.
  virtual int64_t fuse_own_pairs() { return 0; }

 private:
  struct Buffer {
    std::string name;
    Tensor tensor;
    bool persistent;
  };

  // '*' matches any run of characters (dots included), '?' exactly one.
  static bool glob_match(const std::string& pat, const std::string& s) {
    size_t p = 0, i = 0, star = std::string::npos, mark = 0;
    while (i < s.size()) {
      if (p < pat.size() && (pat[p] == '?' || pat[p] == s[i])) {
        ++p, ++i;
      } else if (p < pat.size() && pat[p] == '*') {
        star = p++, mark = i;
      } else if (star != std::string::npos) {
        p = star + 1, i = ++mark;
      } else {
        return false;
      }
    }
    while (p < pat.size() && pat[p] == '*') ++p;
    return p == pat.size();
  }
  int64_t set_requires_grad_matching(const std::string& pattern, bool on, const char* what) {
    int64_t n = 0;
    for (auto& [name, p] : named_parameters())
      if (glob_match(pattern, name)) p.set_requires_grad(on), ++n;
    GRAFT_CHECK(n > 0, "Module", what, "('", pattern, "') on ", type_name_, ": no parameter name matches");
    return n;
  }

  void check_new_name(const std::string& name) const {
    GRAFT_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module", "bad name '", name, "' in ",
                type_name_, ": names are non-empty and have no '.'");
    bool taken = false;
    for (const auto& [n, t] : params_) taken = taken || n == name;
    for (const auto& b : buffers_) taken = taken || b.name == name;
    for (const auto& [n, c] : children_) taken = taken || n == name;
    GRAFT_CHECK(!taken, "Module", "name '", name, "' is already registered in ", type_name_);
  }

  void collect_modules(std::vector<std::pair<std::string, Module*>>& out, std::set<const Module*>& seen,
                       const std::string& name) {
    if (!seen.insert(this).second) return;
    out.emplace_back(name, this);
    for (auto& [n, c] : children_) c->collect_modules(out, seen, name.empty() ? n : name + "." + n);
  }
  // fn(prefix, module), prefix "" or "a.b." (with the trailing dot).
  template <class F>
  void for_each_module(bool recurse, F&& fn) {
    if (!recurse) {
      fn(std::string(), *this);
      return;
    }
    for (auto& [name, m] : named_modules()) fn(name.empty() ? name : name + ".", *m);
  }
  void collect_state(StateDict& out, const std::string& prefix) {
    for (const auto& [n, t] : params_) out.emplace_back(prefix + n, t);
    for (const auto& b : buffers_)
      if (b.persistent) out.emplace_back(prefix + b.name, b.tensor);
    for (auto& [n, c] : children_) c->collect_state(out, prefix + n + ".");
  }
  // convert(t) returns the converted tensor, or an undefined one to leave t alone.
  void convert_tensors(const std::function<Tensor(const Tensor&)>& convert) {
    std::set<const TensorImpl*> done;
    auto in_place = [&](const Tensor& t) {
      if (!done.insert(t.impl()).second) return;
      NoGradGuard no_grad;
      const Tensor c = convert(t.detach());
      if (!c.defined()) return;
      const Tensor cc = c.contiguous();
      TensorImpl* impl = t.impl();
      impl->storage = cc.storage();
      impl->shape = cc.shape();
      impl->strides = cc.strides();
      impl->offset = cc.offset();
      impl->dtype = cc.dtype();
      if (impl->grad.defined()) {
        const Tensor g = convert(impl->grad.detach());
        if (g.defined()) impl->grad = g;
      }
    };
    apply([&](const std::string&, Module& m) {
      for (const auto& [n, t] : m.params_) in_place(t);
      for (const auto& b : m.buffers_) in_place(b.tensor);
    });
  }

  std::string type_name_;
  bool training_ = true;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<Buffer> buffers_;
  std::vector<std::pair<std::string, ModulePtr>> children_;
};

}  // namespace graft::nn
