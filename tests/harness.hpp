// tests/harness.hpp - the one test harness: tolerances, poisoning, closeness, and the
// finite-difference gradient check.
//
// Tolerance formula, used everywhere: |actual - expected| <= atol + rtol * |expected|, NaN fails.
// Tolerances are stated once per dtype here and never loosened per test.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <cmath>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "graft/graft.hpp"

namespace graft_test {
using namespace graft;

struct Tol {
  double atol, rtol;
};
// Against PyTorch (different summation order, libm): float32 and float64.
inline constexpr Tol kTolF32{1e-5, 1e-4};
inline constexpr Tol kTolF64{1e-10, 1e-8};
// Finite differences in float64 (central differences, eps = 1e-6).
inline constexpr Tol kTolGradcheck{1e-6, 1e-4};
inline constexpr double kGradcheckEps = 1e-6;

// A reduced-float result against float32 on the same (already rounded) inputs: PyTorch's
// assert_close rtol for each (bfloat16 keeps 8 significant bits, float16 11), with an atol for the
// cancellation a rounded intermediate leaves near zero.
inline constexpr Tol kTolBF16{1e-2, 1.6e-2};
inline constexpr Tol kTolF16{1e-3, 1e-3};
// A reduced-float (autocast) training run's loss against the float32 run's, per step.
inline constexpr Tol kTolTrainBF16{2e-2, 3e-2};
// A whole model run in bfloat16 (every layer rounding its output) against float32 on the same weights,
// both divided by the float32 output's largest magnitude.
inline constexpr Tol kTolModelBF16{3e-2, 0.0};

inline Tol tol_for(DType dt) {
  switch (dt) {
    case DType::Float64: return kTolF64;
    case DType::BFloat16: return kTolBF16;
    case DType::Float16: return kTolF16;
    default: return kTolF32;
  }
}

// CPU ISA paths. cpu_has(isa) is true when this CPU has isa; otherwise it reports the path as skipped
// by name (a WARN, never a pass). for_each_cpu_isa(body) runs body(isa) under every ISA the CPU has
// (scalar = the plain references, then avx2, avx512), forcing it with set_cpu_isa and restoring the
// active ISA afterwards, also when body throws.
inline bool cpu_has(kernels::cpu::CpuIsa isa) {
  using namespace kernels::cpu;
  if (detected_cpu_isa() >= isa) return true;
  WARN("skipped " << cpu_isa_name(isa) << ": this CPU lacks it (detected " << cpu_isa_name(detected_cpu_isa()) << ")");
  return false;
}
template <class F>
void for_each_cpu_isa(F&& body) {
  using namespace kernels::cpu;
  struct Restore {
    CpuIsa saved = active_cpu_isa();
    ~Restore() { set_cpu_isa(saved); }
  } restore;
  for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512}) {
    if (!cpu_has(isa)) continue;
    set_cpu_isa(isa);
    INFO("active CPU ISA " << cpu_isa_name(isa));
    body(isa);
  }
}

// The bfloat16 GEMM paths (kernels/cpu/gemm_bf16.hpp): body(isa) under each one the CPU has (widen,
// avx512_bf16, amx), a missing one reported as skipped by name; the active path restored afterwards.
template <class F>
void for_each_bf16_isa(F&& body) {
  using namespace kernels::cpu;
  struct Restore {
    Bf16Isa saved = active_bf16_isa();
    ~Restore() { set_bf16_isa(saved); }
  } restore;
  for (Bf16Isa isa : {Bf16Isa::Widen, Bf16Isa::Avx512Bf16, Bf16Isa::Amx}) {
    if (isa > detected_bf16_isa()) {
      WARN("skipped " << bf16_isa_name(isa) << ": this CPU lacks it (detected " << bf16_isa_name(detected_bf16_isa())
                      << ")");
      continue;
    }
    set_bf16_isa(isa);
    INFO("active bfloat16 path " << bf16_isa_name(isa));
    body(isa);
  }
}

// Returns "" when close, else a message naming the first bad element.
inline std::string close_report(const Tensor& actual, const Tensor& expected, Tol tol) {
  if (!actual.defined() || !expected.defined()) return "undefined tensor";
  if (actual.shape() != expected.shape())
    return "shape " + actual.shape().str() + " != expected " + expected.shape().str();
  const auto a = actual.to_vector(), e = expected.to_vector();
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double diff = std::abs(a[i] - e[i]);
    const bool ok = diff <= tol.atol + tol.rtol * std::abs(e[i]);  // NaN compares false: fails
    if (!ok) {
      std::ostringstream os;
      os << "element " << i << ": " << a[i] << " vs expected " << e[i] << " (|diff| " << diff << ", allowed "
         << tol.atol + tol.rtol * std::abs(e[i]) << ")";
      return os.str();
    }
    worst = std::max(worst, diff);
  }
  return "";
}

#define GRAFT_REQUIRE_CLOSE(actual, expected, tol)                                \
  do {                                                                            \
    const std::string graft_report_ = ::graft_test::close_report(actual, expected, tol); \
    INFO(graft_report_);                                                          \
    REQUIRE(graft_report_.empty());                                               \
  } while (0)

// The largest |actual - expected| (same shapes; NaN if either holds one), for reporting measured
// differences next to a tolerance check.
inline double max_abs_diff(const Tensor& actual, const Tensor& expected) {
  const auto a = actual.to_vector(), e = expected.to_vector();
  GRAFT_CHECK(a.size() == e.size(), "max_abs_diff", "sizes differ: ", a.size(), " vs ", e.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(a[i] - e[i]);
    if (std::isnan(d)) return d;
    worst = std::max(worst, d);
  }
  return worst;
}

// $GRAFT_MODEL_DATA/<file> (the big generated parity data, see tools/test.sh), or a test failure
// saying which generator makes it when the variable is unset or the file is missing.
inline std::string model_data_file(const std::string& file, const std::string& generator) {
  const char* dir = std::getenv("GRAFT_MODEL_DATA");
  const std::string how = "generate it with `source tools/pyenv.sh && $GRAFT_PYTHON " + generator +
                          " DIR` and set GRAFT_MODEL_DATA=DIR (tools/test.sh does both)";
  if (dir == nullptr || *dir == '\0') FAIL("GRAFT_MODEL_DATA is not set: " << how);
  const std::string path = std::string(dir) + "/" + file;
  if (!std::filesystem::exists(path)) FAIL("missing model data file " << path << ": " << how);
  return path;
}

// Fills a tensor with NaN so an output a kernel forgets to write fails the comparison.
inline void poison(const Tensor& t) {
  GRAFT_DISPATCH_FLOAT(t.dtype(), "poison", T, [&] {
    T* p = static_cast<T*>(t.data_ptr());
    for_each_offset(t.shape(), t.strides(), [&](int64_t o) { p[o] = std::numeric_limits<T>::quiet_NaN(); });
  });
}

// Random float64 inputs in [lo, hi), never all zeros/ones.
inline Tensor rand_in(const Shape& s, double lo = -1.0, double hi = 1.0, uint64_t seed = 1,
                      DType dt = DType::Float64) {
  Generator g(seed);
  Tensor t = rand(s, dt, g);
  NoGradGuard ng;
  return (t * (hi - lo) + lo).contiguous();
}

// A non-contiguous float64 tensor of shape s (the transpose of a contiguous [.., b, a] tensor),
// with values in [lo, hi). Requires rank >= 2.
inline Tensor rand_noncontig(const Shape& s, double lo = -1.0, double hi = 1.0, uint64_t seed = 2) {
  Shape t = s;
  std::swap(t[s.rank() - 1], t[s.rank() - 2]);
  Tensor base = rand_in(t, lo, hi, seed);
  Tensor v = base.transpose(-1, -2);
  REQUIRE(!v.is_contiguous());
  return v;
}

// ---- gradient check ------------------------------------------------------------------------------
// Checks autograd against central differences in float64 for fn(inputs) -> outputs. Inputs must be
// float64 leaves (possibly non-contiguous views); those in `wrt` (indices; empty = all) get
// requires_grad. The scalar checked is sum_k <outputs[k], w_k> with random fixed weights w_k.
using MultiFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

inline std::set<std::string>& gradcheck_registry() {
  static std::set<std::string> s;
  return s;
}

inline void gradcheck(const MultiFn& fn, std::vector<Tensor> inputs, std::vector<size_t> wrt = {},
                      Tol tol = kTolGradcheck, double eps = kGradcheckEps) {
  if (wrt.empty())
    for (size_t i = 0; i < inputs.size(); ++i) wrt.push_back(i);
  for (size_t i : wrt) {
    REQUIRE(inputs[i].dtype() == DType::Float64);
    inputs[i].set_requires_grad(true);
  }
  std::vector<Tensor> outs = fn(inputs);
  std::vector<Tensor> weights;
  Generator g(1234);
  Tensor loss;
  for (size_t k = 0; k < outs.size(); ++k) {
    if (!is_floating(outs[k].dtype())) {
      weights.push_back(Tensor());
      continue;
    }
    Tensor w = rand(outs[k].shape(), DType::Float64, g);
    weights.push_back(w);
    Tensor term = sum(outs[k] * w);
    loss = loss.defined() ? loss + term : term;
  }
  REQUIRE(loss.defined());
  std::vector<Tensor> wrt_tensors;
  for (size_t i : wrt) wrt_tensors.push_back(inputs[i]);
  std::vector<Tensor> analytic = autograd::grad({loss}, wrt_tensors, {}, false, false, true);

  auto eval = [&]() {
    NoGradGuard ng;
    std::vector<Tensor> o = fn(inputs);
    double s = 0;
    for (size_t k = 0; k < o.size(); ++k) {
      if (!weights[k].defined()) continue;
      const auto ov = o[k].to_vector(), wv = weights[k].to_vector();
      for (size_t j = 0; j < ov.size(); ++j) s += ov[j] * wv[j];
    }
    return s;
  };
  for (size_t n = 0; n < wrt.size(); ++n) {
    Tensor x = inputs[wrt[n]];
    double* base = static_cast<double*>(x.storage()->data());
    std::vector<int64_t> offsets;
    for_each_offset(x.shape(), x.strides(), [&](int64_t o) { offsets.push_back(o + x.offset()); });
    std::vector<double> numeric;
    for (int64_t o : offsets) {
      const double orig = base[o];
      base[o] = orig + eps;
      const double fp = eval();
      base[o] = orig - eps;
      const double fm = eval();
      base[o] = orig;
      numeric.push_back((fp - fm) / (2 * eps));
    }
    Tensor num = from_vector(numeric, x.shape(), DType::Float64);
    Tensor ana = analytic[n].defined() ? analytic[n] : zeros(x.shape(), DType::Float64);
    const std::string report = close_report(ana, num, tol);
    INFO("gradient of input " << wrt[n] << " (shape " << x.shape().str() << "): " << report);
    REQUIRE(report.empty());
  }
}

inline void gradcheck1(const std::function<Tensor(const std::vector<Tensor>&)>& fn, std::vector<Tensor> inputs,
                       std::vector<size_t> wrt = {}) {
  gradcheck([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{fn(in)}; }, std::move(inputs),
            std::move(wrt));
}

// Expects fn to throw graft::Error whose message contains every string in `parts`.
inline void require_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const graft::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) {
      INFO("message: " << msg << "\nexpected to contain: " << p);
      CHECK(msg.find(p) != std::string::npos);
    }
    return;
  }
  FAIL("expected graft::Error containing '" << (parts.empty() ? "" : parts[0]) << "'");
}

// Bit equality of two tensors of the same shape and dtype (either may be a strided view).
inline bool same_bits(const graft::Tensor& a, const graft::Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const graft::Tensor ac = a.contiguous(), bc = b.contiguous();
  return std::memcmp(ac.data_ptr(), bc.data_ptr(), size_t(ac.numel()) * graft::dtype_size(ac.dtype())) == 0;
}

// Runs fn (returning its outputs) under 1 thread and under at least 2; each output must be bit-equal.
template <class F>
void require_thread_count_invariant(F&& fn) {
  const int saved = graft::get_num_threads();
  graft::set_num_threads(1);
  const std::vector<graft::Tensor> one = fn();
  graft::set_num_threads(std::max(2, saved));
  const std::vector<graft::Tensor> many = fn();
  graft::set_num_threads(saved);
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("output " << i);
    REQUIRE(same_bits(one[i], many[i]));
  }
}

}  // namespace graft_test

#define GRAFT_CAT2(a, b) a##b
#define GRAFT_CAT(a, b) GRAFT_CAT2(a, b)
// GRADCHECK_CASE("op", "what"): a Catch2 test case that counts as the gradient check of "op" (a
// name in graft::op_registry()). The coverage test fails for any differentiable op without one.
#define GRADCHECK_CASE(OP, WHAT)                                                                   \
  static const bool GRAFT_CAT(graft_gradcheck_reg_, __COUNTER__) =                                   \
      ::graft_test::gradcheck_registry().insert(OP).second;                                        \
  TEST_CASE("gradcheck " OP ": " WHAT, "[gradcheck]")
