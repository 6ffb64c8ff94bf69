// graft/train/checkpoint.hpp - save and resume a whole training run: model, optimizer (parameter
// groups, learning rates, moments), step and epoch, and the random generator, in one safetensors file
// written atomically (a temporary file, then rename: a run killed mid-save leaves the previous
// checkpoint in place, never a broken one).
//
//   train::save_checkpoint("run.ckpt.safetensors", *model, opt, {step, epoch}, default_generator());
//   ...
//   train::TrainProgress p = train::load_checkpoint("run.ckpt.safetensors", *model, opt, default_generator());
//   for (int64_t step = p.step; step < total; ++step) { sched.apply(opt, step); ... }
//
// Schedules (optim/schedule.hpp) are functions of the step, so the step restores them. The file:
//   model.<name>        the model's state_dict (parameters and buffers)
//   optim.<name>        Optimizer::state_dict()
//   rng.state           int64 [4]: the xoshiro256++ state words (bit-cast), rng.spare float64 [2]
//                       (has_spare, spare: the cached second normal of Box-Muller)
//   metadata            format "graft-training-state", graft_version, step, epoch, and any extra keys
// Loading is strict: a checkpoint of another architecture (missing, unexpected or mis-shaped keys)
// throws naming them before the model is changed; optimizer-state mismatches throw naming the key.
// A killed save can leave its temporary file (<path>.tmp.<pid>) behind, never a damaged <path>.
#pragma once
#include <cstdint>
#include <cstring>
#include <map>
#include <string>

#include "graft/core/random.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/nn.hpp"
#include "graft/optim/optimizer.hpp"

namespace graft::train {

inline constexpr const char* kGraftVersion = "0.1.0";

struct TrainProgress {
  int64_t step = 0;
  int64_t epoch = 0;
};

inline void save_checkpoint(const std::string& path, nn::Module& model, const optim::Optimizer& opt,
                            TrainProgress progress, const Generator& gen,
                            const std::map<std::string, std::string>& extra_metadata = {}) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [k, t] : model.state_dict()) tensors.emplace_back("model." + k, t);
  for (auto& [k, t] : opt.state_dict()) tensors.emplace_back("optim." + k, t);
  const Generator::State st = gen.state();
  Tensor words = empty({4}, DType::Int64);
  std::memcpy(words.data_ptr(), st.s, sizeof(st.s));
  tensors.emplace_back("rng.state", words);
  tensors.emplace_back("rng.spare", from_vector<double>({st.has_spare ? 1.0 : 0.0, st.spare}, {2}));
  std::map<std::string, std::string> meta = extra_metadata;
  meta["format"] = "graft-training-state";
  meta["graft_version"] = kGraftVersion;
  meta["step"] = std::to_string(progress.step);
  meta["epoch"] = std::to_string(progress.epoch);
  io::save_safetensors(path, tensors, meta);
}

// Restores model, optimizer and generator from `path`; returns the step and epoch to continue from.
inline TrainProgress load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer& opt,
                                     Generator& gen) {
  io::SafetensorsFile f(path);
  const auto& meta = f.metadata();
  const auto fmt = meta.find("format");
  GRAFT_CHECK(fmt != meta.end() && fmt->second == "graft-training-state", "load_checkpoint", path,
              ": not a Graft training checkpoint (metadata \"format\" is ",
              fmt == meta.end() ? std::string("missing") : "\"" + fmt->second + "\"", ")");
  nn::StateDict model_sd;
  optim::NamedTensors optim_sd;
  for (const auto& e : f.entries()) {
    if (e.name.rfind("model.", 0) == 0) model_sd.emplace_back(e.name.substr(6), f.tensor(e.name));
    else if (e.name.rfind("optim.", 0) == 0) optim_sd.emplace_back(e.name.substr(6), f.tensor(e.name));
  }
  for (const char* k : {"rng.state", "rng.spare"})
    GRAFT_CHECK(f.contains(k), "load_checkpoint", path, ": no tensor \"", k, "\"");
  const Tensor words = f.tensor("rng.state"), spare = f.tensor("rng.spare");
  GRAFT_CHECK(words.dtype() == DType::Int64 && words.dim() == 1 && words.size(0) == 4, "load_checkpoint", path,
              ": \"rng.state\" should be int64 [4], got ", dtype_name(words.dtype()), " ", words.shape());
  GRAFT_CHECK(spare.dtype() == DType::Float64 && spare.dim() == 1 && spare.size(0) == 2, "load_checkpoint", path,
              ": \"rng.spare\" should be float64 [2], got ", dtype_name(spare.dtype()), " ", spare.shape());
  auto number = [&](const char* key) {
    const auto it = meta.find(key);
    GRAFT_CHECK(it != meta.end(), "load_checkpoint", path, ": metadata has no \"", key, "\"");
    size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(it->second, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    GRAFT_CHECK(used == it->second.size() && v >= 0, "load_checkpoint", path, ": metadata \"", key, "\" is \"",
                it->second, "\", expected a non-negative integer");
    return v;
  };
  TrainProgress progress{number("step"), number("epoch")};
  // Model first (strict, all or nothing), then the optimizer, then the generator.
  try {
    model.load_state_dict(model_sd, /*strict=*/true);
  } catch (const Error& e) {
    throw Error(detail::concat("load_checkpoint: ", path, ": the model does not fit this checkpoint: ", e.what()));
  }
  opt.load_state_dict(optim_sd);
  Generator::State st;
  std::memcpy(st.s, words.data_ptr(), sizeof(st.s));
  const auto sp = spare.to_vector();
  st.has_spare = sp[0] != 0.0;
  st.spare = sp[1];
  gen.set_state(st);
  return progress;
}

}  // namespace graft::train
