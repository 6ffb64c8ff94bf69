// graft/ops/creation.hpp - factories, random fills and PyTorch's initializers. No autograd history.
#pragma once
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "graft/core/random.hpp"
#include "graft/core/tensor.hpp"

namespace graft {

inline Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }

// Writes v into every element of a contiguous CPU tensor t.
inline void fill_contiguous_cpu(const Tensor& t, double v) {
  GRAFT_DISPATCH_ALL(t.dtype(), "fill", T, [&] {
    T* p = static_cast<T*>(t.data_ptr());
    const T tv = static_cast<T>(v);
    for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = tv;
  });
}

inline Tensor full(const Shape& shape, double v, DType dtype = DType::Float32, Device device = kCPU) {
  Tensor t = empty(shape, dtype, kCPU);
  fill_contiguous_cpu(t, v);
  return device.is_cpu() ? t : t.to(device);
}
inline Tensor zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  allocator_for(device).fill_zero(t.data_ptr(), size_t(t.numel()) * dtype_size(dtype), device);
  return t;
}
inline Tensor zeros(const Shape& shape, DType dtype = DType::Float32) { return zeros(shape, dtype, kCPU); }
inline Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
inline Tensor ones(const Shape& shape, DType dtype = DType::Float32) { return ones(shape, dtype, kCPU); }
inline Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
inline Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }
inline Tensor scalar_tensor(double v, DType dtype = DType::Float32) { return full(Shape{}, v, dtype); }

// [start, end) with step, as a 1-D tensor.
inline Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::Int64) {
  GRAFT_CHECK(step != 0.0, "arange", "step must be non-zero");
  const int64_t n = std::max<int64_t>(0, int64_t(std::ceil((end - start) / step)));
  Tensor t = empty(Shape{n}, dtype);
  GRAFT_DISPATCH_ALL(dtype, "arange", T, [&] {
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(start + double(i) * step);
  });
  return t;
}
inline Tensor arange(int64_t end, DType dtype = DType::Int64) { return arange(0.0, double(end), 1.0, dtype); }

// A tensor holding `values` (row-major) with the given shape, converted to dtype.
template <class V>
Tensor from_vector(const std::vector<V>& values, const Shape& shape, DType dtype = dtype_v<V>) {
  GRAFT_CHECK(int64_t(values.size()) == shape.numel(), "from_vector", "got ", values.size(),
              " values for shape ", shape, " (", shape.numel(), " elements)");
  Tensor t = empty(shape, dtype);
  GRAFT_DISPATCH_ALL(dtype, "from_vector", T, [&] {
    T* p = t.data<T>();
    for (size_t i = 0; i < values.size(); ++i) p[i] = static_cast<T>(static_cast<double>(values[i]));
  });
  return t;
}
inline Tensor tensor(std::initializer_list<double> values, DType dtype = DType::Float32) {
  return from_vector(std::vector<double>(values), Shape{int64_t(values.size())}, dtype);
}

// ---- random ------------------------------------------------------------------------------------
inline Tensor rand(const Shape& shape, DType dtype = DType::Float32, Generator& g = default_generator()) {
  Tensor t = empty(shape, dtype);
  GRAFT_DISPATCH_FLOATING(dtype, "rand", T, [&] {
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(g.uniform());
  });
  return t;
}
inline Tensor randn(const Shape& shape, DType dtype = DType::Float32, Generator& g = default_generator()) {
  Tensor t = empty(shape, dtype);
  GRAFT_DISPATCH_FLOATING(dtype, "randn", T, [&] {
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(g.normal());
  });
  return t;
}
// Integers uniform in [low, high).
inline Tensor randint(int64_t low, int64_t high, const Shape& shape, DType dtype = DType::Int64,
                      Generator& g = default_generator()) {
  GRAFT_CHECK(high > low, "randint", "high (", high, ") must exceed low (", low, ")");
  Tensor t = empty(shape, dtype);
  GRAFT_DISPATCH_ALL(dtype, "randint", T, [&] {
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i)
      p[i] = static_cast<T>(low + int64_t(g.next_u64() % uint64_t(high - low)));
  });
  return t;
}
// 1 with probability p, else 0, in dtype (float32 by default).
inline Tensor bernoulli(const Shape& shape, double p, DType dtype = DType::Float32,
                        Generator& g = default_generator()) {
  GRAFT_CHECK(p >= 0.0 && p <= 1.0, "bernoulli", "p must be in [0, 1], got ", p);
  Tensor t = empty(shape, dtype);
  GRAFT_DISPATCH_ALL(dtype, "bernoulli", T, [&] {
    T* p_ = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p_[i] = static_cast<T>(g.uniform() < p ? 1.0 : 0.0);
  });
  return t;
}

// ---- in-place initializers (torch.nn.init) on contiguous CPU float tensors ----------------------
namespace init {

// fan_in = size(1) * receptive field, fan_out = size(0) * receptive field (torch's definition).
inline std::pair<int64_t, int64_t> fan_in_and_fan_out(const Tensor& w) {
  GRAFT_CHECK(w.dim() >= 2, "init", "fan in/out needs a tensor with at least 2 dims, got shape ",
              w.shape());
  int64_t receptive = 1;
  for (int i = 2; i < w.dim(); ++i) receptive *= w.size(i);
  return {w.size(1) * receptive, w.size(0) * receptive};
}

// torch.nn.init.calculate_gain for "linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu".
inline double calculate_gain(const std::string& nonlinearity, double param = 0.01) {
  if (nonlinearity == "linear" || nonlinearity == "conv2d" || nonlinearity == "sigmoid") return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
  if (nonlinearity == "selu") return 3.0 / 4.0;
  throw Error("calculate_gain: unknown nonlinearity '" + nonlinearity + "'");
}

// While a SkipInitGuard lives (on this thread), every initializer below zero-fills instead of
// sampling and draws nothing from its generator: a model about to load a checkpoint is built in a
// fraction of the time (as torch.nn.utils.skip_init; models::CreateOptions::init_weights = false).
inline bool& skip_init_flag() {
  thread_local bool skip = false;
  return skip;
}
class SkipInitGuard {
 public:
  SkipInitGuard() : previous_(skip_init_flag()) { skip_init_flag() = true; }
  ~SkipInitGuard() { skip_init_flag() = previous_; }
  SkipInitGuard(const SkipInitGuard&) = delete;
  SkipInitGuard& operator=(const SkipInitGuard&) = delete;

 private:
  bool previous_;
};

inline void fill_with(const Tensor& t, const char* op, const std::function<double()>& sample) {
  GRAFT_CHECK(t.is_contiguous() && t.device().is_cpu(), op, "needs a contiguous CPU tensor");
  if (skip_init_flag()) {
    std::memset(t.data_ptr(), 0, size_t(t.numel()) * dtype_size(t.dtype()));
    t.storage()->bump_version();
    return;
  }
  GRAFT_DISPATCH_FLOATING(t.dtype(), op, T, [&] {
    T* p = static_cast<T*>(t.data_ptr());
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(sample());
  });
  t.storage()->bump_version();
}

inline void uniform_(const Tensor& t, double a, double b, Generator& g = default_generator()) {
  fill_with(t, "uniform_", [&] { return a + (b - a) * g.uniform(); });
}
inline void normal_(const Tensor& t, double mean, double std, Generator& g = default_generator()) {
  fill_with(t, "normal_", [&] { return mean + std * g.normal(); });
}
inline void constant_(const Tensor& t, double v) {
  fill_with(t, "constant_", [&] { return v; });
}
enum class FanMode { FanIn, FanOut };
// bound = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a).
inline void kaiming_uniform_(const Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                             const std::string& nonlinearity = "leaky_relu",
                             Generator& g = default_generator()) {
  auto [fi, fo] = fan_in_and_fan_out(t);
  const double fan = double(mode == FanMode::FanIn ? fi : fo);
  const double bound = calculate_gain(nonlinearity, a) * std::sqrt(3.0 / fan);
  uniform_(t, -bound, bound, g);
}
inline void kaiming_normal_(const Tensor& t, double a = 0.0, FanMode mode = FanMode::FanIn,
                            const std::string& nonlinearity = "leaky_relu",
                            Generator& g = default_generator()) {
  auto [fi, fo] = fan_in_and_fan_out(t);
  const double fan = double(mode == FanMode::FanIn ? fi : fo);
  normal_(t, 0.0, calculate_gain(nonlinearity, a) / std::sqrt(fan), g);
}
// torch.nn.init.trunc_normal_(t, mean, std, a, b): normal(mean, std) restricted to the absolute bounds
// [a, b]. The same distribution as torch's (which inverts the CDF of a uniform draw), not the same
// numbers: each value is redrawn until it falls inside, which needs [a, b] to hold a fair share of the
// mass (checked; timm's and torchvision's std 0.02 within +-2 holds all of it).
inline void trunc_normal_(const Tensor& t, double mean, double std, double a, double b,
                          Generator& g = default_generator()) {
  GRAFT_CHECK(std > 0 && a < b, "trunc_normal_", "needs std > 0 and a < b, got std ", std, ", a ", a, ", b ", b);
  auto cdf = [&](double v) { return 0.5 * std::erfc(-(v - mean) / (std * std::sqrt(2.0))); };
  GRAFT_CHECK(cdf(b) - cdf(a) >= 1e-3, "trunc_normal_", "bounds [", a, ", ", b, "] hold less than 0.1% of N(", mean,
              ", ", std, "^2): rejection sampling would not finish");
  fill_with(t, "trunc_normal_", [&] {
    double v;
    do v = mean + std * g.normal();
    while (v < a || v > b);
    return v;
  });
}
inline void xavier_uniform_(const Tensor& t, double gain = 1.0, Generator& g = default_generator()) {
  auto [fi, fo] = fan_in_and_fan_out(t);
  const double bound = gain * std::sqrt(6.0 / double(fi + fo));
  uniform_(t, -bound, bound, g);
}
inline void xavier_normal_(const Tensor& t, double gain = 1.0, Generator& g = default_generator()) {
  auto [fi, fo] = fan_in_and_fan_out(t);
  normal_(t, 0.0, gain * std::sqrt(2.0 / double(fi + fo)), g);
}

}  // namespace init
}  // namespace graft
