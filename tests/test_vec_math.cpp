// The polynomial float math of kernels/graft/kernels/cpu/vec/math.inc against double-precision
// libm: the maximum error in ulp over a dense sweep of every float in each function's range (every
// 257th bit pattern: all exponents, mantissas of every residue), under each vector ISA the CPU has,
// plus the special values (NaN, +-inf, +-0, denormals, the largest floats) and tails. AVX2 and
// AVX-512 must agree to the bit (the same operations in the same order).
//
// Error of y against the exact value r: |y - r| / ulp(r), ulp(r) the spacing of floats in r's
// binade (2^-149 among the denormals, 2^104 at and above 2^127). A correctly rounded result is
// within 0.5 ulp.
#include <bit>
#include <cmath>
#include <cstring>

#include "graft/kernels/cpu/vec/math_array.hpp"
#include "harness.hpp"

using namespace graft;
using namespace graft::kernels::cpu;

namespace {

double ulp_of(double r) {
  const double a = std::fabs(r);
  int e = a == 0 ? -126 : std::ilogb(a);
  e = std::min(127, std::max(-126, e));
  return std::ldexp(1.0, e - 23);
}

// Error in ulp; 0 when both are NaN or y is the infinity r rounds to; infinite for a NaN or an
// infinity where the other is not.
double ulp_error(float y, double r) {
  if (std::isnan(r) || std::isnan(y)) return std::isnan(r) && std::isnan(y) ? 0.0 : INFINITY;
  const float rounded = float(r);  // overflows to inf exactly where the float result must be inf
  if (std::isinf(rounded) || std::isinf(y)) return y == rounded ? 0.0 : INFINITY;
  return std::fabs(double(y) - r) / ulp_of(r);
}

double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }

struct MathCase {
  VecMathFn fn;
  double (*ref)(double);
  bool positive_only;  // the sweep covers +0 .. +inf only (log)
  double max_ulp;      // the bound stated in math.inc
};

const MathCase kCases[] = {
    {VecMathFn::Exp, [](double x) { return std::exp(x); }, false, 1.5},
    {VecMathFn::Log, [](double x) { return std::log(x); }, true, 1.0},
    {VecMathFn::Tanh, [](double x) { return std::tanh(x); }, false, 1.5},
    {VecMathFn::Erf, [](double x) { return std::erf(x); }, false, 1.5},
    {VecMathFn::Sigmoid, sigmoid_ref, false, 2.5},
};

using ArrayFn = void (*)(VecMathFn, const float*, float*, int64_t);

std::vector<std::pair<CpuIsa, ArrayFn>> isas_present() {
  std::vector<std::pair<CpuIsa, ArrayFn>> v;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (graft_test::cpu_has(CpuIsa::Avx2)) v.push_back({CpuIsa::Avx2, &math_array_avx2});
  if (graft_test::cpu_has(CpuIsa::Avx512)) v.push_back({CpuIsa::Avx512, &math_array_avx512});
#else
  WARN("skipped avx2 and avx512: not an x86-64 build");
#endif
  return v;
}

float from_bits(uint32_t b) { return std::bit_cast<float>(b); }

}  // namespace

TEST_CASE("vec math: max ulp error against double libm over a dense sweep of every float", "[vec_math]") {
  const auto isas = isas_present();
  constexpr uint64_t kStride = 257;
  constexpr int64_t kBatch = 1 << 16;
  std::vector<float> x(kBatch), y(kBatch);
  std::vector<double> r(kBatch);
  for (const MathCase& c : kCases) {
    const uint64_t end = c.positive_only ? 0x7f800001ull : (uint64_t(1) << 32);
    std::vector<double> worst(isas.size(), 0.0);
    std::vector<float> worst_x(isas.size(), 0.0f);
    int64_t count = 0, isa_mismatches = 0;  // batches where the ISAs' results differ in any bit
    std::vector<float> y_first;
    for (uint64_t bits = 0; bits < end;) {
      int64_t m = 0;
      for (; m < kBatch && bits < end; bits += kStride) {
        const float v = from_bits(uint32_t(bits));
        if (std::isnan(v)) continue;  // NaN patterns: the special-value case
        x[size_t(m)] = v;
        r[size_t(m)] = c.ref(double(v));
        ++m;
      }
      count += m;
      for (size_t k = 0; k < isas.size(); ++k) {
        isas[k].second(c.fn, x.data(), y.data(), m);
        if (k == 0) y_first.assign(y.begin(), y.begin() + m);
        else if (std::memcmp(y_first.data(), y.data(), size_t(m) * sizeof(float)) != 0) ++isa_mismatches;
        for (int64_t i = 0; i < m; ++i) {
          const double e = ulp_error(y[size_t(i)], r[size_t(i)]);
          if (!(e <= worst[k])) {
            worst[k] = e;
            worst_x[k] = x[size_t(i)];
          }
        }
      }
    }
    for (size_t k = 0; k < isas.size(); ++k) {
      INFO(vec_math_name(c.fn) << " under " << cpu_isa_name(isas[k].first) << ": max " << worst[k] << " ulp at x = "
                               << std::hexfloat << worst_x[k] << std::defaultfloat << " (" << worst_x[k] << "), "
                               << count << " floats; stated bound " << c.max_ulp);
      CHECK(worst[k] <= c.max_ulp);
    }
    INFO(vec_math_name(c.fn) << ": AVX2 and AVX-512 results differ in " << isa_mismatches << " batches");
    CHECK(isa_mismatches == 0);
  }
}

TEST_CASE("vec math: special values and tails", "[vec_math]") {
  const float inf = INFINITY, nan = NAN, denorm_min = from_bits(1), denorm_max = from_bits(0x007fffff);
  const float fmax = from_bits(0x7f7fffff);
  // 19 inputs: not a multiple of either vector width, so the tail path runs too.
  const std::vector<float> in = {nan,         -nan,  inf,  -inf,       0.0f,  -0.0f, denorm_min, -denorm_min,
                                 denorm_max, -denorm_max, fmax, -fmax, 1.0f, -1.0f, 88.0f, -88.0f, 104.0f,
                                 -104.0f,    1e-30f};
  for (const auto& [isa, array_fn] : isas_present()) {
    for (const MathCase& c : kCases) {
      std::vector<float> out(in.size() + 1, 12345.0f);  // the element past the end must stay untouched
      array_fn(c.fn, in.data(), out.data(), int64_t(in.size()));
      INFO(vec_math_name(c.fn) << " under " << cpu_isa_name(isa));
      CHECK(out.back() == 12345.0f);
      for (size_t i = 0; i < in.size(); ++i) {
        const double ref = c.ref(double(in[i]));
        INFO("x = " << in[i] << ": got " << out[i] << ", libm " << ref);
        CHECK(ulp_error(out[i], ref) <= c.max_ulp);
        if (ref == 0) CHECK(std::signbit(out[i]) == std::signbit(ref));  // -0 stays -0 (odd functions)
      }
    }
  }
}
