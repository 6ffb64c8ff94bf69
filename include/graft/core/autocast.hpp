// graft/core/autocast.hpp - the autocast state: which device types run their matrix products in a
// reduced float (bfloat16 or float16), per thread, and the per-scope cache of weights cast to it.
//
//   {
//     graft::AutocastGuard amp(graft::DType::BFloat16);            // CPU; AutocastGuard(dt, DeviceType::CUDA)
//     Tensor logits = model.forward(x);                            // linear / conv2d / matmul / attention in bf16
//     Tensor loss = graft::cross_entropy(logits, y);               // losses, norms, softmax in float32
//     loss.backward();                                             // float32 gradients reach the float32 weights
//   }
//
// The policy (which op casts what) is in ops/autocast.hpp, applied by each op's entry; this header
// holds only the state, so core stays free of ops. Like torch.autocast: guards nest (an inner guard
// can switch autocast off or change the dtype), the state is thread-local (a DataLoader worker does
// not inherit it), and the weight cache is dropped when the outermost guard of the thread exits.
#pragma once
#include <cstdint>
#include <unordered_map>

#include "graft/core/device.hpp"
#include "graft/core/dtype.hpp"
#include "graft/core/error.hpp"
#include "graft/core/tensor.hpp"

namespace graft {

namespace autocast_detail {

// A weight's cast: valid while the weight's storage version is unchanged and, when it was made without
// autograd recording (NoGradGuard, a frozen weight), only for uses that do not record either.
struct CastEntry {
  Tensor source;  // keeps the key's TensorImpl alive, so its address cannot be reused by another tensor
  Tensor cast;
  uint64_t version = 0;
  bool recorded = false;  // cast carries a ToDtypeBackward to source
};

struct State {
  bool enabled[kNumDeviceTypes] = {false, false};
  DType dtype[kNumDeviceTypes] = {DType::BFloat16, DType::BFloat16};
  int depth = 0;  // open AutocastGuards on this thread
  std::unordered_map<const TensorImpl*, CastEntry> cache;
  int64_t cache_hits = 0, cache_misses = 0;  // for tests and logging
};

inline State& state() {
  thread_local State s;
  return s;
}

}  // namespace autocast_detail

// Whether ops on tensors of device type `t` autocast on this thread, and to which dtype.
inline bool autocast_enabled(DeviceType t) { return autocast_detail::state().enabled[int(t)]; }
inline DType autocast_dtype(DeviceType t) { return autocast_detail::state().dtype[int(t)]; }

// The number of weight casts the current scope's cache holds, and its hits and misses since the
// outermost guard opened.
struct AutocastCacheStats {
  int64_t entries, hits, misses;
};
inline AutocastCacheStats autocast_cache_stats() {
  const auto& s = autocast_detail::state();
  return {int64_t(s.cache.size()), s.cache_hits, s.cache_misses};
}

// Turns autocast on (or off, enabled = false) for device type `device` until the guard is destroyed;
// the previous setting comes back then. dtype: BFloat16 or Float16.
class AutocastGuard {
 public:
  explicit AutocastGuard(DType dtype = DType::BFloat16, DeviceType device = DeviceType::CPU, bool enabled = true)
      : device_(device) {
    GRAFT_CHECK(is_reduced_float(dtype), "AutocastGuard", "dtype must be bfloat16 or float16, got ",
                dtype_name(dtype));
    auto& s = autocast_detail::state();
    prev_enabled_ = s.enabled[int(device)];
    prev_dtype_ = s.dtype[int(device)];
    s.enabled[int(device)] = enabled;
    s.dtype[int(device)] = dtype;
    if (s.depth++ == 0) s.cache_hits = s.cache_misses = 0;
  }
  ~AutocastGuard() {
    auto& s = autocast_detail::state();
    s.enabled[int(device_)] = prev_enabled_;
    s.dtype[int(device_)] = prev_dtype_;
    if (--s.depth == 0) s.cache.clear();
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DeviceType device_;
  bool prev_enabled_;
  DType prev_dtype_;
};

// Autocast off on every device type until destroyed, the cache untouched: the autograd engine holds
// one while it runs backward (a backward op runs in the dtypes its forward saw).
class AutocastOffGuard {
 public:
  AutocastOffGuard() {
    auto& s = autocast_detail::state();
    for (int t = 0; t < kNumDeviceTypes; ++t) {
      saved_[t] = s.enabled[t];
      s.enabled[t] = false;
    }
  }
  ~AutocastOffGuard() {
    auto& s = autocast_detail::state();
    for (int t = 0; t < kNumDeviceTypes; ++t) s.enabled[t] = saved_[t];
  }
  AutocastOffGuard(const AutocastOffGuard&) = delete;
  AutocastOffGuard& operator=(const AutocastOffGuard&) = delete;

 private:
  bool saved_[kNumDeviceTypes];
};

}  // namespace graft
