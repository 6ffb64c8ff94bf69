// graft/optim/optimizer.hpp - what every optimizer shares: parameter groups, per-parameter state,
// zero_grad, and a state dict that saves and restores all of it (torch.optim.Optimizer's model).
//
// A parameter group is a list of parameters with its own learning rate and weight decay (fine-tuning
// gives the new head 10x the backbone's learning rate; layer-wise decay gives every block its own):
//
//   std::vector<optim::ParamGroup> groups = {
//       {"backbone", model->child("layer4")->parameters(), /*lr=*/1e-4},
//       {"head", model->classifier().parameters(), /*lr=*/1e-3, /*weight_decay=*/0.0}};
//   optim::AdamW opt(groups, /*lr=*/1e-3, /*weight_decay=*/0.05);  // defaults for unset fields
//
// A group's lr / weight_decay left at kDefault take the optimizer's. `initial_lr` is the lr a group
// starts with: schedules (optim/schedule.hpp) set lr = initial_lr * factor(step).
//
// State dict (save/resume, see checkpoint code): a list of named tensors, so it is written with the
// same safetensors code as a model:
//   param_groups.<g>.lr, .initial_lr, .weight_decay   0-d float64
//   state.<g>.<i>.<name>                                the optimizer's per-parameter state
//                                                      (SGD: momentum_buffer; Adam: step, exp_avg, exp_avg_sq)
// load_state_dict checks that every key is there with its shape (else a graft::Error naming the key)
// and copies the values in, so a resumed run continues bit for bit.
#pragma once
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "graft/autograd/grad_mode.hpp"
#include "graft/core/parallel.hpp"
#include "graft/core/tensor.hpp"
#include "graft/ops/copy.hpp"
#include "graft/ops/creation.hpp"
#include "graft/ops/elementwise.hpp"

namespace graft::optim {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;  // same type as nn::StateDict

inline constexpr double kDefault = std::numeric_limits<double>::quiet_NaN();

struct ParamGroup {
  std::string name;
  std::vector<Tensor> params;
  double lr = kDefault;
  double weight_decay = kDefault;
  double initial_lr = kDefault;  // set by the optimizer to lr when left unset
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // One update of every parameter that has a gradient (parameters without one are skipped).
  virtual void step() = 0;

  // Drops every gradient (set_to_none, PyTorch's default since 2.0) or zeroes it in place (a
  // contiguous CPU gradient is cleared with memset, threaded, allocating nothing).
  void zero_grad(bool set_to_none = true) {
    for (auto& g : groups_)
      for (Tensor& p : g.params) {
        if (!p.grad().defined()) continue;
        if (set_to_none) {
          p.zero_grad();
          continue;
        }
        NoGradGuard no_grad;
        Tensor grad = p.grad();
        if (grad.device().is_cpu() && grad.is_contiguous()) {
          char* bytes = static_cast<char*>(grad.data_ptr());
          const int64_t size = grad.numel() * int64_t(dtype_size(grad.dtype()));
          parallel_for(0, size, int64_t(1) << 18, [&](int64_t lo, int64_t hi) {  // all-zero bits: 0 in every dtype
            std::memset(bytes + lo, 0, size_t(hi - lo));
          });
          grad.storage()->bump_version();
        } else {
          grad.zero_();
        }
      }
  }

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  // Every parameter of every group, in order.
  std::vector<Tensor> params() const {
    std::vector<Tensor> out;
    for (const auto& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
    return out;
  }
  // The first group's learning rate, and setting every group's (single-group convenience).
  double lr() const { return groups_.front().lr; }
  void set_lr(double lr) {
    GRAFT_CHECK(std::isfinite(lr) && lr >= 0.0, name_, "set_lr: invalid learning rate ", lr,
                " (expected a finite lr >= 0)");
    for (auto& g : groups_) g.lr = lr;
  }

  // Per-parameter state of parameter i of group g under `key` (undefined before it exists).
  Tensor state(size_t g, size_t i, const std::string& key) const {
    const auto& m = state_.at(g).at(i);
    const auto it = m.find(key);
    return it == m.end() ? Tensor() : it->second;
  }

  NamedTensors state_dict() const {
    NamedTensors out;
    auto scalar = [](double v) { return full({}, v, DType::Float64); };
    for (size_t g = 0; g < groups_.size(); ++g) {
      const std::string pg = "param_groups." + std::to_string(g) + ".";
      out.emplace_back(pg + "lr", scalar(groups_[g].lr));
      out.emplace_back(pg + "initial_lr", scalar(groups_[g].initial_lr));
      out.emplace_back(pg + "weight_decay", scalar(groups_[g].weight_decay));
    }
    for (size_t g = 0; g < state_.size(); ++g)
      for (size_t i = 0; i < state_[g].size(); ++i)
        for (const auto& [k, t] : state_[g][i])
          out.emplace_back("state." + std::to_string(g) + "." + std::to_string(i) + "." + k, t.clone());
    return out;
  }

  // Restores what state_dict() saved from an optimizer over the same groups (same sizes and shapes).
  void load_state_dict(const NamedTensors& sd) {
    std::map<std::string, Tensor> in(sd.begin(), sd.end());
    std::map<std::string, bool> used;
    auto take = [&](const std::string& key) -> const Tensor& {
      const auto it = in.find(key);
      GRAFT_CHECK(it != in.end(), name_, "load_state_dict: missing key '", key, "'");
      used[key] = true;
      return it->second;
    };
    auto take_scalar = [&](const std::string& key) {
      const Tensor& t = take(key);
      GRAFT_CHECK(t.numel() == 1, name_, "load_state_dict: '", key, "' should hold one value, has shape ",
                  t.shape());
      return t.item();
    };
    for (size_t g = 0; g < groups_.size(); ++g) {
      const std::string pg = "param_groups." + std::to_string(g) + ".";
      groups_[g].lr = take_scalar(pg + "lr");
      groups_[g].initial_lr = take_scalar(pg + "initial_lr");
      groups_[g].weight_decay = take_scalar(pg + "weight_decay");
      GRAFT_CHECK(std::isfinite(groups_[g].lr) && groups_[g].lr >= 0.0 && std::isfinite(groups_[g].initial_lr) &&
                      groups_[g].initial_lr >= 0.0,
                  name_, "load_state_dict: '", pg, "lr' / 'initial_lr' hold ", groups_[g].lr, " / ",
                  groups_[g].initial_lr, ", expected finite learning rates >= 0");
    }
    NoGradGuard no_grad;
    for (size_t g = 0; g < groups_.size(); ++g)
      for (size_t i = 0; i < groups_[g].params.size(); ++i) {
        const std::string prefix = "state." + std::to_string(g) + "." + std::to_string(i) + ".";
        auto& m = state_[g][i];
        m.clear();
        for (const auto& [k, t] : in) {
          if (k.rfind(prefix, 0) != 0) continue;
          const std::string name = k.substr(prefix.size());
          const Tensor& p = groups_[g].params[i];
          GRAFT_CHECK(name == "step" || t.shape() == p.shape(), name_, "load_state_dict: '", k, "' has shape ",
                      t.shape(), ", the parameter has ", p.shape());
          // Moments go to the parameter's device (a checkpoint holds CPU tensors); "step" stays on the host.
          m[name] = name == "step" ? t.clone() : t.to(p.dtype()).to(p.device()).clone();
          used[k] = true;
        }
      }
    for (const auto& [k, t] : in)
      GRAFT_CHECK(used.count(k), name_, "load_state_dict: unexpected key '", k,
                  "' (saved from an optimizer with other groups?)");
  }

 protected:
  Optimizer(std::string name, std::vector<ParamGroup> groups, double lr, double weight_decay)
      : name_(std::move(name)), groups_(std::move(groups)) {
    GRAFT_CHECK(!groups_.empty(), name_, "got no parameter groups");
    for (size_t g = 0; g < groups_.size(); ++g) {
      ParamGroup& grp = groups_[g];
      const std::string which = grp.name.empty() ? "group " + std::to_string(g) : "group '" + grp.name + "'";
      if (std::isnan(grp.lr)) grp.lr = lr;
      if (std::isnan(grp.weight_decay)) grp.weight_decay = weight_decay;
      if (std::isnan(grp.initial_lr)) grp.initial_lr = grp.lr;
      GRAFT_CHECK(std::isfinite(grp.lr) && grp.lr >= 0.0, name_, which, ": invalid learning rate ", grp.lr,
                  " (expected a finite lr >= 0)");
      GRAFT_CHECK(std::isfinite(grp.initial_lr) && grp.initial_lr >= 0.0, name_, which, ": invalid initial_lr ",
                  grp.initial_lr, " (expected a finite lr >= 0)");
      GRAFT_CHECK(std::isfinite(grp.weight_decay) && grp.weight_decay >= 0.0, name_, which,
                  ": invalid weight_decay ", grp.weight_decay, " (expected >= 0)");
      GRAFT_CHECK(!grp.params.empty(), name_, which, ": empty parameter list");
      for (size_t i = 0; i < grp.params.size(); ++i) {
        const Tensor& p = grp.params[i];
        GRAFT_CHECK(p.defined(), name_, which, ": parameter ", i, " is undefined");
        GRAFT_CHECK(is_floating(p.dtype()), name_, which, ": parameter ", i, " (", p.name(), ") has dtype ",
                    dtype_name(p.dtype()), ", expected a floating-point tensor");
        GRAFT_CHECK(p.is_leaf(), name_, which, ": parameter ", i, " (", p.name(),
                    ") is not a leaf tensor; optimize the leaves (detach() and set_requires_grad())");
        for (size_t h = 0; h <= g; ++h)
          for (size_t j = 0; j < (h == g ? i : groups_[h].params.size()); ++j)
            GRAFT_CHECK(groups_[h].params[j].impl() != p.impl(), name_, which, ": parameter ", i, " (", p.name(),
                        ") appears twice (also in group ", h, " at ", j, ")");
      }
    }
    state_.resize(groups_.size());
    for (size_t g = 0; g < groups_.size(); ++g) state_[g].resize(groups_[g].params.size());
  }

  // Every group's lr and weight_decay finite and >= 0; step() calls it, as param_groups() and
  // schedules can set them after construction. Throws graft::Error naming the group.
  void check_hyperparameters() const {
    for (size_t g = 0; g < groups_.size(); ++g) {
      const ParamGroup& grp = groups_[g];
      GRAFT_CHECK(std::isfinite(grp.lr) && grp.lr >= 0.0, name_, "step: ", group_label(g), " has learning rate ",
                  grp.lr, " (initial_lr ", grp.initial_lr, "), expected a finite lr >= 0");
      GRAFT_CHECK(std::isfinite(grp.weight_decay) && grp.weight_decay >= 0.0, name_, "step: ", group_label(g),
                  " has weight_decay ", grp.weight_decay, ", expected a finite value >= 0");
    }
  }
  std::string group_label(size_t g) const {
    return groups_[g].name.empty() ? "group " + std::to_string(g) : "group '" + groups_[g].name + "'";
  }

  // t itself when it is contiguous of dtype dt, else a contiguous copy in dt: what the fused CPU
  // updates read and write (parameters and their state are contiguous unless restored oddly).
  static Tensor dense(const Tensor& t, DType dt) { return (t.dtype() == dt ? t : t.to(dt)).contiguous(); }

  // The gradient of p, checked against p's shape.
  Tensor grad_of(const Tensor& p, size_t g, size_t i) const {
    const Tensor& d = p.grad();
    GRAFT_CHECK(d.shape() == p.shape(), name_, "gradient of parameter ", i, " in group ", g, " has shape ",
                d.shape(), ", expected ", p.shape());
    return d;
  }

  std::string name_;
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<std::map<std::string, Tensor>>> state_;  // [group][param] -> named state
};

// One group holding all of params (the single-list constructors).
inline std::vector<ParamGroup> single_group(std::vector<Tensor> params) {
  return {ParamGroup{"", std::move(params)}};
}

}  // namespace graft::optim
