// tests/test_gemm.cpp - the CPU GEMM kernels (kernels/graft/kernels/cpu/gemm.hpp) against a double
// precision oracle, for every ISA this CPU has (the others are skipped with a message).
//
// Tolerance, stated once: a float GEMM element passes through at most k + ceil(k / KC) + 1 <= 2k + 2
// roundings, each of relative size <= 2^-24 of the running sum of |terms|, so
//   |c - c_exact| <= (2k + 2) * 2^-24 * (|c0| + sum_p |a[i,p] b[p,j]|)        (c0 = c before, if accumulate)
// where c_exact is computed in double from the same float inputs. A result missing one product term
// fails it (checked below). NaN fails.
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "harness.hpp"
#include "graft/kernels/cpu/cpu_features.hpp"
#include "graft/kernels/cpu/gemm.hpp"

namespace {

using namespace graft::kernels::cpu;
using graft::get_num_threads, graft::set_num_threads, graft_test::cpu_has;

using GemmFloat = void (*)(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*, int64_t, int64_t,
                           float*, int64_t, bool);

struct IsaKernel {
  CpuIsa isa;
  const char* name;
  GemmFloat fn;
};
void gemm_avx2_plain(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                     int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate) {
  gemm_avx2(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate);
}
void gemm_avx512_plain(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                       int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate) {
  gemm_avx512(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate);
}
void gemm_float(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate) {
  gemm<float>(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate);
}
const IsaKernel kIsaKernels[] = {{CpuIsa::Avx2, "gemm_avx2", gemm_avx2_plain},
                                 {CpuIsa::Avx512, "gemm_avx512", gemm_avx512_plain}};

// A payload no kernel writes by accident: the padding columns of c must keep exactly these bits.
float poison() {
  const uint32_t bits = 0x7fc0dead;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
bool is_poison(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits == 0x7fc0dead;
}

enum class Layout { RowMajor, ATransposed, BTransposed, BothTransposed, Strided };
const Layout kLayouts[] = {Layout::RowMajor, Layout::ATransposed, Layout::BTransposed, Layout::BothTransposed,
                           Layout::Strided};
const char* layout_name(Layout l) {
  switch (l) {
    case Layout::RowMajor: return "row-major";
    case Layout::ATransposed: return "a transposed";
    case Layout::BTransposed: return "b transposed";
    case Layout::BothTransposed: return "both transposed";
    case Layout::Strided: return "general strides";
  }
  return "?";
}

// One GEMM problem: a [m, k], b [k, n] in buffers laid out by `layout`, c [m, ldc] with ldc = n + 3,
// the padding columns poisoned (and the whole of c when !accumulate).
struct Problem {
  int64_t m, n, k;
  int64_t a_rs, a_cs, b_rs, b_cs, ldc;
  bool accumulate;
  std::vector<float> a, b, c0;

  Problem(int64_t m_, int64_t n_, int64_t k_, Layout layout, bool accumulate_, uint32_t seed)
      : m(m_), n(n_), k(k_), ldc(n_ + 3), accumulate(accumulate_) {
    const bool at = layout == Layout::ATransposed || layout == Layout::BothTransposed;
    const bool bt = layout == Layout::BTransposed || layout == Layout::BothTransposed;
    if (layout == Layout::Strided) {
      a_rs = 2 * k + 3, a_cs = 2, b_rs = 3 * n + 1, b_cs = 3;
    } else {
      a_rs = at ? 1 : k, a_cs = at ? m : 1;
      b_rs = bt ? 1 : n, b_cs = bt ? k : 1;
    }
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    a.assign(size_t(std::max<int64_t>(1, (m - 1) * a_rs + (k - 1) * a_cs + 1 + 8)), 0.0f);
    b.assign(size_t(std::max<int64_t>(1, (k - 1) * b_rs + (n - 1) * b_cs + 1 + 8)), 0.0f);
    for (auto& x : a) x = uniform(rng);
    for (auto& x : b) x = uniform(rng);
    c0.assign(size_t(m * ldc), poison());
    if (accumulate)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c0[size_t(i * ldc + j)] = uniform(rng);
  }
  float a_at(int64_t i, int64_t p) const { return a[size_t(i * a_rs + p * a_cs)]; }
  float b_at(int64_t p, int64_t j) const { return b[size_t(p * b_rs + j * b_cs)]; }

  std::vector<float> run(GemmFloat fn, int64_t k_used = -1) const {
    std::vector<float> c = c0;
    fn(m, n, k_used < 0 ? k : k_used, a.data(), a_rs, a_cs, b.data(), b_rs, b_cs, c.data(), ldc, accumulate);
    return c;
  }
};

// Checks c against the double oracle; returns the number of elements out of tolerance and, in `report`,
// the first failure. Padding columns must still hold the poison bits.
int64_t count_bad(const Problem& pr, const std::vector<float>& c, std::string& report) {
  // The oracle: gemm_reference in double on the same float inputs, plus sum |a||b| for the bound.
  std::vector<double> ad(size_t(pr.m * pr.k)), bd(size_t(pr.k * pr.n)), exact(size_t(pr.m * pr.n));
  for (int64_t i = 0; i < pr.m; ++i)
    for (int64_t p = 0; p < pr.k; ++p) ad[size_t(i * pr.k + p)] = pr.a_at(i, p);
  for (int64_t p = 0; p < pr.k; ++p)
    for (int64_t j = 0; j < pr.n; ++j) bd[size_t(p * pr.n + j)] = pr.b_at(p, j);
  gemm_reference<double>(pr.m, pr.n, pr.k, ad.data(), pr.k, 1, bd.data(), pr.n, 1, exact.data(), pr.n, false);
  const double unit_roundoff = std::ldexp(1.0, -24);
  int64_t bad = 0;
  for (int64_t i = 0; i < pr.m; ++i) {
    for (int64_t j = 0; j < pr.n; ++j) {
      double magnitude = 0, expected = exact[size_t(i * pr.n + j)];
      for (int64_t p = 0; p < pr.k; ++p) magnitude += std::abs(double(pr.a_at(i, p)) * pr.b_at(p, j));
      if (pr.accumulate) {
        const double c_before = pr.c0[size_t(i * pr.ldc + j)];
        expected += c_before;
        magnitude += std::abs(c_before);
      }
      const double got = c[size_t(i * pr.ldc + j)];
      const double allowed = double(2 * pr.k + 2) * unit_roundoff * magnitude;
      if (!(std::abs(got - expected) <= allowed)) {  // NaN fails
        if (bad++ == 0)
          report = "c[" + std::to_string(i) + ", " + std::to_string(j) + "] = " + std::to_string(got) + ", expected " +
                   std::to_string(expected) + " (allowed error " + std::to_string(allowed) + ")";
      }
    }
    for (int64_t j = pr.n; j < pr.ldc; ++j)
      if (!is_poison(c[size_t(i * pr.ldc + j)])) {
        if (bad++ == 0) report = "padding column c[" + std::to_string(i) + ", " + std::to_string(j) + "] was written";
      }
  }
  return bad;
}

struct Shape3 {
  int64_t m, n, k;
};
// Tiles are 6x16 (AVX2) and 6x64 (AVX-512, narrower for the last column tile), k blocks of <= 256;
// b is packed from 8 row tiles (48 rows) on, a from 4 column tiles (64 / 256 columns); blocks of a are
// 1008 rows, blocks of b 256 (AVX2) / 512 (AVX-512) columns.
const Shape3 kShapes[] = {{1, 1, 1},     {1, 1, 0},      {3, 5, 0},      {5, 7, 3},       {13, 33, 17},
                          {12, 32, 256}, {6, 16, 257},   {7, 17, 513},   {25, 100, 31},   {1, 700, 300},
                          {97, 15, 31},  {100, 200, 64}, {200, 5, 600},  {49, 129, 40},   {300, 700, 257},
                          {48, 256, 33}, {97, 321, 700}, {55, 1100, 20}, {1030, 300, 40}, {6, 64, 1}};

void check_all_shapes(GemmFloat fn, const char* name) {
  uint32_t seed = 1;
  for (const Shape3& s : kShapes)
    for (Layout layout : kLayouts)
      for (bool accumulate : {false, true}) {
        const Problem pr(s.m, s.n, s.k, layout, accumulate, seed++);
        std::string report;
        const int64_t bad = count_bad(pr, pr.run(fn), report);
        INFO(name << " m=" << s.m << " n=" << s.n << " k=" << s.k << " " << layout_name(layout)
                  << " accumulate=" << accumulate << ": " << bad << " bad elements; first: " << report);
        REQUIRE(bad == 0);
      }
}

}  // namespace

TEST_CASE("gemm: the tolerance catches a missing product term", "[gemm]") {
  // Same inputs, one term (p = k - 1) left out: nearly every element must fail the check.
  for (Layout layout : {Layout::RowMajor, Layout::Strided}) {
    const Problem pr(37, 45, 257, layout, /*accumulate=*/true, 99);
    std::string report;
    REQUIRE(count_bad(pr, pr.run(gemm_reference<float>), report) == 0);
    const int64_t bad = count_bad(pr, pr.run(gemm_reference<float>, pr.k - 1), report);
    INFO(bad << " of " << pr.m * pr.n << " flagged");
    REQUIRE(bad >= pr.m * pr.n * 9 / 10);
  }
}

TEST_CASE("gemm: gemm_reference<float> matches the double oracle", "[gemm]") {
  check_all_shapes(gemm_reference<float>, "gemm_reference<float>");
}

TEST_CASE("gemm: each ISA kernel matches the double oracle", "[gemm]") {
  for (const IsaKernel& kernel : kIsaKernels) {
    if (!cpu_has(kernel.isa)) {
      REQUIRE_THROWS_WITH(kernel.fn(1, 1, 1, nullptr, 1, 1, nullptr, 1, 1, nullptr, 1, false),
                          Catch::Contains(kernel.name) && Catch::Contains("lacks"));
      continue;
    }
    check_all_shapes(kernel.fn, kernel.name);
  }
}

TEST_CASE("gemm: the dispatcher matches the double oracle under every available ISA", "[gemm]") {
  const CpuIsa saved = active_cpu_isa();
  for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512}) {
    if (!cpu_has(isa)) continue;
    set_cpu_isa(isa);
    INFO("active ISA " << cpu_isa_name());
    check_all_shapes(gemm_float, "gemm<float>");
  }
  set_cpu_isa(saved);
}

TEST_CASE("gemm: results do not depend on how rows are split between calls", "[gemm]") {
  // gemm on rows [0, m) must equal gemm on [0, r) then [r, m) bit for bit (callers split rows across
  // threads). Small r takes the unpacked path, large r the packed one: they must agree too.
  std::vector<std::pair<const char*, GemmFloat>> kernels = {{"gemm<float>", gemm_float}};
  for (const IsaKernel& kernel : kIsaKernels)
    if (cpu_has(kernel.isa)) kernels.push_back({kernel.name, kernel.fn});
  const Shape3 shapes[] = {{300, 700, 257}, {131, 40, 600}, {64, 3000, 20}};
  for (const auto& [name, fn] : kernels)
    for (const Shape3& s : shapes)
      for (Layout layout : {Layout::RowMajor, Layout::BTransposed, Layout::Strided})
        for (bool accumulate : {false, true}) {
          const Problem pr(s.m, s.n, s.k, layout, accumulate, 7);
          const std::vector<float> whole = pr.run(fn);
          for (int64_t r : {int64_t(1), int64_t(5), int64_t(6), int64_t(7), int64_t(47), int64_t(50), s.m / 2, s.m - 1}) {
            std::vector<float> split = pr.c0;
            fn(r, pr.n, pr.k, pr.a.data(), pr.a_rs, pr.a_cs, pr.b.data(), pr.b_rs, pr.b_cs, split.data(), pr.ldc,
               accumulate);
            fn(pr.m - r, pr.n, pr.k, pr.a.data() + r * pr.a_rs, pr.a_rs, pr.a_cs, pr.b.data(), pr.b_rs, pr.b_cs,
               split.data() + r * pr.ldc, pr.ldc, accumulate);
            INFO(name << " m=" << s.m << " n=" << s.n << " k=" << s.k << " " << layout_name(layout)
                      << " accumulate=" << accumulate << " split at r=" << r);
            REQUIRE(std::memcmp(whole.data(), split.data(), whole.size() * sizeof(float)) == 0);
          }
        }
}

TEST_CASE("gemm: double always takes gemm_reference (bit for bit)", "[gemm]") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> uniform(-1, 1);
  const int64_t m = 70, n = 90, k = 300;
  std::vector<double> a(size_t(m * k)), b(size_t(k * n)), c(size_t(m * n)), r(size_t(m * n));
  for (auto& x : a) x = uniform(rng);
  for (auto& x : b) x = uniform(rng);
  gemm<double>(m, n, k, a.data(), k, 1, b.data(), n, 1, c.data(), n, false);
  gemm_reference<double>(m, n, k, a.data(), k, 1, b.data(), n, 1, r.data(), n, false);
  REQUIRE(std::memcmp(c.data(), r.data(), c.size() * sizeof(double)) == 0);
}

TEST_CASE("gemm: GRAFT_CPU_ISA parsing and set_cpu_isa", "[gemm]") {
  REQUIRE(parse_cpu_isa("scalar") == CpuIsa::Scalar);
  REQUIRE(parse_cpu_isa("avx2") == CpuIsa::Avx2);
  REQUIRE(parse_cpu_isa("avx512") == CpuIsa::Avx512);
  REQUIRE_THROWS_WITH(parse_cpu_isa("AVX512"), Catch::Contains("GRAFT_CPU_ISA") && Catch::Contains("'AVX512'"));
  REQUIRE_THROWS_AS(parse_cpu_isa("sse4"), graft::Error);
  for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512}) REQUIRE(parse_cpu_isa(cpu_isa_name(isa)) == isa);

  const char* old = std::getenv("GRAFT_CPU_ISA");
  const std::string saved_env = old ? old : "";
  const CpuIsa detected = detected_cpu_isa();
  setenv("GRAFT_CPU_ISA", "scalar", 1);
  REQUIRE(cpu_isa_from_environment() == CpuIsa::Scalar);
  setenv("GRAFT_CPU_ISA", "avx2", 1);
  REQUIRE(cpu_isa_from_environment() == std::min(detected, CpuIsa::Avx2));
  setenv("GRAFT_CPU_ISA", "avx512", 1);  // a cap, never more than the CPU has
  REQUIRE(cpu_isa_from_environment() == detected);
  setenv("GRAFT_CPU_ISA", "fastest", 1);
  REQUIRE_THROWS_WITH(cpu_isa_from_environment(), Catch::Contains("GRAFT_CPU_ISA") && Catch::Contains("'fastest'"));
  unsetenv("GRAFT_CPU_ISA");
  REQUIRE(cpu_isa_from_environment() == detected);
  if (old) setenv("GRAFT_CPU_ISA", saved_env.c_str(), 1);

  const CpuIsa saved = active_cpu_isa();
  set_cpu_isa(CpuIsa::Scalar);
  REQUIRE(active_cpu_isa() == CpuIsa::Scalar);
  REQUIRE(std::string(cpu_isa_name()) == "scalar");
  if (detected < CpuIsa::Avx512)
    REQUIRE_THROWS_WITH(set_cpu_isa(CpuIsa::Avx512), Catch::Contains("set_cpu_isa") && Catch::Contains("avx512"));
  set_cpu_isa(saved);
  REQUIRE(active_cpu_isa() == saved);
}

TEST_CASE("gemm: results do not depend on the thread count", "[gemm][threads]") {
  // Large products are split over the pool inside one call (column slabs when wide, row slabs when
  // tall): 1, 2 and 3 threads must give the same bits, under every ISA.
  const int saved_threads = get_num_threads();
  const Shape3 shapes[] = {{64, 3136, 147}, {512, 49, 600},  {300, 700, 257},
                           {1, 4000, 300},  {2000, 20, 30}, {1030, 1100, 300}};
  graft_test::for_each_cpu_isa([&](CpuIsa) {
    for (const Shape3& s : shapes)
      for (bool accumulate : {false, true}) {
        const Problem pr(s.m, s.n, s.k, Layout::RowMajor, accumulate, 7);
        set_num_threads(1);
        const std::vector<float> one = pr.run(gemm_float);
        for (int threads : {2, 3}) {
          set_num_threads(threads);
          const std::vector<float> many = pr.run(gemm_float);
          INFO("m=" << s.m << " n=" << s.n << " k=" << s.k << " threads=" << threads);
          REQUIRE(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)) == 0);
        }
      }
  });
  set_num_threads(saved_threads);
}

TEST_CASE("gemm: the fused epilogue equals the product followed by the reference epilogue", "[gemm]") {
  // The product's bits do not depend on the epilogue, so the fused result is compared with the same
  // ISA's product followed by gemm_epilogue_reference<float> (std:: math), at the float tolerance.
  const Activation acts[] = {Activation::None, Activation::Relu, Activation::Relu6,
                                 Activation::Silu, Activation::GeluTanh, Activation::Gelu};
  const Shape3 shapes[] = {{1, 1, 1}, {5, 7, 0}, {13, 33, 17}, {100, 200, 64}, {64, 700, 300}, {300, 40, 257}};
  graft_test::for_each_cpu_isa([&](CpuIsa) {
    uint32_t seed = 11;
    for (const Shape3& s : shapes)
      for (Activation act : acts)
        for (int variant = 0; variant < 4; ++variant) {  // bias per column / per row / none; residual or not
          const bool accumulate = variant == 3;
          const Problem pr(s.m, s.n, s.k, Layout::RowMajor, accumulate, seed++);
          std::mt19937 rng(seed);
          std::normal_distribution<float> normal(0.0f, 2.0f);  // values on both sides of 0 and 6
          std::vector<float> bias(size_t(std::max(s.m, s.n))), residual(size_t(s.m * (s.n + 5)));
          for (auto& x : bias) x = normal(rng);
          for (auto& x : residual) x = normal(rng);
          GemmEpilogue<float> ep;
          ep.act = act;
          if (variant == 0 || variant == 3) ep.bias = bias.data();
          if (variant == 1) ep.bias = bias.data(), ep.bias_per_row = true;
          if (variant != 0) ep.residual = residual.data(), ep.ld_residual = s.n + 5;
          std::vector<float> fused = pr.c0, expected = pr.c0;
          gemm<float>(pr.m, pr.n, pr.k, pr.a.data(), pr.a_rs, pr.a_cs, pr.b.data(), pr.b_rs, pr.b_cs, fused.data(),
                      pr.ldc, accumulate, &ep);
          gemm<float>(pr.m, pr.n, pr.k, pr.a.data(), pr.a_rs, pr.a_cs, pr.b.data(), pr.b_rs, pr.b_cs, expected.data(),
                      pr.ldc, accumulate);
          gemm_epilogue_reference<float>(ep, 0, 0, pr.m, pr.n, expected.data(), pr.ldc);
          INFO("m=" << s.m << " n=" << s.n << " k=" << s.k << " act=" << int(act) << " variant=" << variant);
          for (int64_t i = 0; i < pr.m; ++i)
            for (int64_t j = 0; j < pr.ldc; ++j) {
              const float got = fused[size_t(i * pr.ldc + j)], want = expected[size_t(i * pr.ldc + j)];
              if (j >= pr.n) {
                REQUIRE(is_poison(got));  // padding untouched
                continue;
              }
              INFO("c[" << i << ", " << j << "] = " << got << ", expected " << want);
              REQUIRE(std::abs(got - want) <= graft_test::kTolF32.atol + graft_test::kTolF32.rtol * std::abs(want));
            }
        }
  });
}

namespace {

// The packer of a materialized b: what gemm_packed_b's caller writes, from the Problem's own b.
struct MatrixPacker {
  const Problem* pr;
  static void pack(const void* ctx, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, float* packed) {
    const Problem& pr = *static_cast<const MatrixPacker*>(ctx)->pr;
    for (int64_t q = 0; q * nr < nc; ++q)
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t j = 0; j < nr; ++j)
          packed[(q * kc + p) * nr + j] = q * nr + j < nc ? pr.b_at(p0 + p, j0 + q * nr + j) : 0.0f;
  }
};

}  // namespace

TEST_CASE("gemm: gemm_packed_b gives gemm's bits on the materialized b, under every ISA and thread count",
          "[gemm]") {
  // The packed path runs the micro-kernel in its packed-b mode on every shape; gemm reads a few-row
  // problem's b in place instead. Both give the same bits (the contract at the top of gemm.hpp).
  struct RestoreThreads {
    int n = get_num_threads();
    ~RestoreThreads() { set_num_threads(n); }
  } restore;
  const Shape3 shapes[] = {{1, 1, 1},     {5, 7, 3},    {13, 33, 17},  {6, 16, 257},    {7, 17, 513},
                           {1, 700, 300}, {97, 15, 31}, {49, 129, 40}, {300, 700, 257}, {64, 3136, 40},
                           {1030, 100, 300}};  // the last: row tasks sharing the packed b
  std::vector<float> bias(1030);  // per row: m at most
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = float(i % 13) * 0.25f - 1.5f;
  graft_test::for_each_cpu_isa([&](CpuIsa isa) {
    uint32_t seed = 40;
    for (int threads : {1, 2})
      for (const Shape3& s : shapes)
        for (Layout layout : {Layout::RowMajor, Layout::BTransposed})
          for (bool accumulate : {false, true}) {
            set_num_threads(threads);
            const Problem pr(s.m, s.n, s.k, layout, accumulate, seed++);
            GemmEpilogue<float> ep;
            ep.bias = bias.data();
            ep.bias_per_row = true;
            ep.act = Activation::Relu;
            const MatrixPacker packer{&pr};
            std::vector<float> packed = pr.c0, plain = pr.c0;
            const bool taken = gemm_packed_b(pr.m, pr.n, pr.k, pr.a.data(), pr.a_rs, pr.a_cs,
                                             GemmBPacker{&packer, &MatrixPacker::pack},
                                             packed.data(), pr.ldc, accumulate, &ep);
            gemm<float>(pr.m, pr.n, pr.k, pr.a.data(), pr.a_rs, pr.a_cs, pr.b.data(), pr.b_rs, pr.b_cs, plain.data(),
                        pr.ldc, accumulate, &ep);
            INFO("m=" << s.m << " n=" << s.n << " k=" << s.k << " " << layout_name(layout) << " accumulate="
                      << accumulate << " threads=" << threads);
            // Taken exactly where gemm takes a vector kernel; otherwise nothing was written.
            REQUIRE(taken == (isa != CpuIsa::Scalar && s.n * s.k >= kGemmVectorMinRowWork));
            if (!taken) {
              REQUIRE(std::memcmp(packed.data(), pr.c0.data(), packed.size() * sizeof(float)) == 0);
              continue;
            }
            REQUIRE(std::memcmp(packed.data(), plain.data(), packed.size() * sizeof(float)) == 0);
          }
  });
}
