// graft/autograd/grad_mode.hpp - the thread-local switch that decides whether ops record history.
#pragma once

namespace graft {

struct GradMode {
  static bool& enabled_ref() {
    thread_local bool enabled = true;
    return enabled;
  }
  static bool enabled() { return enabled_ref(); }
  static void set_enabled(bool e) { enabled_ref() = e; }
};

// Inside this scope no op records history (PyTorch's torch.no_grad()).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// Sets grad mode to `enabled` for the scope (PyTorch's torch.set_grad_enabled).
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled) : prev_(GradMode::enabled()) { GradMode::set_enabled(enabled); }
  ~GradModeGuard() { GradMode::set_enabled(prev_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace graft
