// bench_ops: Graft's CPU reference kernels against the baseline measured in the same run.
//
//   cmake -S . -B build-bench -DGRAFT_BUILD_BENCH=ON && cmake --build build-bench --target bench_ops
//   ./build-bench/bench/bench_ops            (GRAFT_NUM_THREADS and OPENBLAS_NUM_THREADS set threads)
//
// Each benchmark checks its result against the baseline before timing (and aborts on mismatch).
// Counters: GFLOP/s or GB/s, and the thread count. The reference kernels are plain loops: these
// numbers are the "before" column of the fast-kernel issue.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "graft/graft.hpp"
#include "graft/kernels/cpu/gemm.hpp"

#ifdef GRAFT_BENCH_OPENBLAS
#include <cblas.h>
#endif

using namespace graft;

namespace {

void require_close(const Tensor& a, const Tensor& b, double rtol, const char* what) {
  const auto x = a.to_vector(), y = b.to_vector();
  for (size_t i = 0; i < x.size(); ++i)
    if (!(std::abs(x[i] - y[i]) <= 1e-4 + rtol * std::abs(y[i]))) {
      std::fprintf(stderr, "%s: result mismatch at %zu: %g vs %g\n", what, i, x[i], y[i]);
      std::abort();
    }
}

#ifdef GRAFT_BENCH_OPENBLAS
Tensor blas_matmul(const Tensor& a, const Tensor& b) {
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  Tensor c = empty({m, n});
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(m), int(n), int(k), 1.0f, a.data<float>(), int(k),
              b.data<float>(), int(n), 0.0f, c.data<float>(), int(n));
  return c;
}
#endif

void BM_matmul_graft(benchmark::State& st) {
  const int64_t n = st.range(0);
  Generator g(1);
  Tensor a = randn({n, n}, DType::Float32, g), b = randn({n, n}, DType::Float32, g);
#ifdef GRAFT_BENCH_OPENBLAS
  require_close(matmul(a, b), blas_matmul(a, b), 1e-3, "matmul");
#endif
  for (auto _ : st) benchmark::DoNotOptimize(matmul(a, b).data_ptr());
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(n * n * n), benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
  st.counters["threads"] = get_num_threads();
}
BENCHMARK(BM_matmul_graft)->Arg(128)->Arg(256)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();

#ifdef GRAFT_BENCH_OPENBLAS
void BM_matmul_openblas(benchmark::State& st) {
  const int64_t n = st.range(0);
  Generator g(1);
  Tensor a = randn({n, n}, DType::Float32, g), b = randn({n, n}, DType::Float32, g);
  for (auto _ : st) benchmark::DoNotOptimize(blas_matmul(a, b).data_ptr());
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(n * n * n), benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_matmul_openblas)->Arg(128)->Arg(256)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

// The CPU GEMM kernels (kernels/graft/kernels/cpu/gemm.hpp) called directly, single call, serial, on
// square shapes and conv2d's im2col shapes. Args {m, n, k, layout}: layout 0 = a [m, k], b [k, n];
// 1 = a transposed (stored [k, m], conv backward-to-input: dcols = w^T dout); 2 = b transposed (stored
// [n, k], conv backward-to-weight: dw = dout cols^T). Checked against gemm_reference before timing.
struct GemmOperands {
  int64_t m, n, k, layout;
  int64_t a_rs, a_cs, b_rs, b_cs;
  std::vector<float> a, b, c;
  explicit GemmOperands(const benchmark::State& st)
      : m(st.range(0)), n(st.range(1)), k(st.range(2)), layout(st.range(3)) {
    a_rs = layout == 1 ? 1 : k, a_cs = layout == 1 ? m : 1;
    b_rs = layout == 2 ? 1 : n, b_cs = layout == 2 ? k : 1;
    Generator g(3);
    const auto av = randn({m * k}, DType::Float32, g).to_vector(), bv = randn({k * n}, DType::Float32, g).to_vector();
    a.assign(av.begin(), av.end());
    b.assign(bv.begin(), bv.end());
    c.assign(size_t(m * n), 0.0f);
  }
  using Fn = void (*)(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*,
                      int64_t, bool);
  void run(Fn fn) { fn(m, n, k, a.data(), a_rs, a_cs, b.data(), b_rs, b_cs, c.data(), n, false); }
  void require_matches_reference(const char* what) {
    std::vector<float> ref(c.size());
    kernels::cpu::gemm_reference<float>(m, n, k, a.data(), a_rs, a_cs, b.data(), b_rs, b_cs, ref.data(), n, false);
    for (size_t i = 0; i < c.size(); ++i)
      if (!(std::abs(c[i] - ref[i]) <= 1e-4 + 1e-4 * std::sqrt(double(k)) * std::abs(ref[i]) + 1e-5 * std::sqrt(double(k)))) {
        std::fprintf(stderr, "%s: result mismatch at %zu: %g vs %g\n", what, i, c[i], ref[i]);
        std::abort();
      }
  }
};

void gemm_cases(benchmark::internal::Benchmark* b) {
  b->ArgNames({"m", "n", "k", "layout"});
  for (int64_t s : {128, 256, 512}) b->Args({s, s, s, 0});
  b->Args({96, 1024, 144, 0})->Args({144, 1024, 96, 1})->Args({96, 144, 1024, 2});   // conv 16->96 ch, 32x32
  b->Args({1280, 16, 320, 0})->Args({320, 16, 1280, 1})->Args({1280, 320, 16, 2});  // conv 1x1-ish, 4x4 map
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

void run_gemm_benchmark(benchmark::State& st, GemmOperands::Fn fn, kernels::cpu::CpuIsa needs, const char* what) {
  if (kernels::cpu::detected_cpu_isa() < needs) {
    st.SkipWithError((std::string("this CPU lacks ") + kernels::cpu::cpu_isa_name(needs)).c_str());
    return;
  }
  GemmOperands g(st);
  g.run(fn);
  g.require_matches_reference(what);
  for (auto _ : st) {
    g.run(fn);
    benchmark::DoNotOptimize(g.c.data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(g.m * g.n * g.k), benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
// An ISA GEMM without its epilogue, as the plain function pointer run_gemm_benchmark takes.
using IsaGemm = void (*)(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*, int64_t, int64_t,
                         float*, int64_t, bool, const kernels::cpu::GemmEpilogue<float>*);
template <IsaGemm Gemm>
void without_epilogue(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                      int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate) {
  Gemm(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate, nullptr);
}
void BM_gemm_avx512(benchmark::State& st) {
  run_gemm_benchmark(st, without_epilogue<kernels::cpu::gemm_avx512>, kernels::cpu::CpuIsa::Avx512, "gemm_avx512");
}
void BM_gemm_avx2(benchmark::State& st) {
  run_gemm_benchmark(st, without_epilogue<kernels::cpu::gemm_avx2>, kernels::cpu::CpuIsa::Avx2, "gemm_avx2");
}
void BM_gemm_reference(benchmark::State& st) {
  run_gemm_benchmark(st, kernels::cpu::gemm_reference<float>, kernels::cpu::CpuIsa::Scalar, "gemm_reference");
}
BENCHMARK(BM_gemm_avx512)->Apply(gemm_cases);
BENCHMARK(BM_gemm_avx2)->Apply(gemm_cases);
BENCHMARK(BM_gemm_reference)->Apply(gemm_cases);

#ifdef GRAFT_BENCH_OPENBLAS
void gemm_openblas(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                   int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate) {
  // Row-major: a transposed is a [k, m] array with lda = m (a_cs), b transposed a [n, k] one with ldb = k (b_cs).
  const bool at = a_rs == 1 && a_cs != 1, bt = b_rs == 1 && b_cs != 1;
  cblas_sgemm(CblasRowMajor, at ? CblasTrans : CblasNoTrans, bt ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
              1.0f, a, int(at ? a_cs : a_rs), b, int(bt ? b_cs : b_rs), accumulate ? 1.0f : 0.0f, c, int(ldc));
}
void BM_gemm_openblas(benchmark::State& st) {
  run_gemm_benchmark(st, gemm_openblas, kernels::cpu::CpuIsa::Scalar, "gemm_openblas");
}
BENCHMARK(BM_gemm_openblas)->Apply(gemm_cases);
#endif

// Elementwise add with broadcasting, against memcpy of the same bytes (the bandwidth ceiling).
void BM_add_graft(benchmark::State& st) {
  const int64_t n = st.range(0);
  Tensor a = randn({n}), b = randn({n});
  for (auto _ : st) benchmark::DoNotOptimize((a + b).data_ptr());
  st.SetBytesProcessed(int64_t(st.iterations()) * n * 12);
  st.counters["threads"] = get_num_threads();
}
BENCHMARK(BM_add_graft)->Arg(1 << 16)->Arg(1 << 22)->UseRealTime();

void BM_copy_baseline(benchmark::State& st) {
  const int64_t n = st.range(0);
  std::vector<float> a(static_cast<size_t>(n) * 2, 1.0f), c(static_cast<size_t>(n));
  for (auto _ : st) {
    std::memcpy(c.data(), a.data(), size_t(n) * 4);
    benchmark::DoNotOptimize(c.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * n * 8);
}
BENCHMARK(BM_copy_baseline)->Arg(1 << 16)->Arg(1 << 22)->UseRealTime();

// conv2d 3x3 on a ResNet-like layer against im2col + OpenBLAS sgemm.
void BM_conv2d_graft(benchmark::State& st) {
  const int64_t c = st.range(0), hw = st.range(1);
  Generator g(2);
  Tensor x = randn({1, c, hw, hw}, DType::Float32, g), w = randn({c, c, 3, 3}, DType::Float32, g);
  for (auto _ : st) benchmark::DoNotOptimize(conv2d(x, w, Tensor(), {1, 1}, {1, 1}).data_ptr());
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(c * c * 9 * hw * hw), benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
  st.counters["threads"] = get_num_threads();
}
BENCHMARK(BM_conv2d_graft)->Args({64, 28})->Unit(benchmark::kMillisecond)->UseRealTime();

#ifdef GRAFT_BENCH_OPENBLAS
Tensor im2col_conv(const Tensor& x, const Tensor& w) {  // stride 1, pad 1, 3x3, batch 1
  const int64_t c = x.size(1), h = x.size(2), wd = x.size(3), o = w.size(0);
  Tensor cols = zeros({c * 9, h * wd});
  const float* px = x.data<float>();
  float* pc = cols.data<float>();
  for (int64_t ci = 0; ci < c; ++ci)
    for (int64_t kh = 0; kh < 3; ++kh)
      for (int64_t kw = 0; kw < 3; ++kw)
        for (int64_t i = 0; i < h; ++i)
          for (int64_t j = 0; j < wd; ++j) {
            const int64_t ii = i + kh - 1, jj = j + kw - 1;
            if (ii >= 0 && ii < h && jj >= 0 && jj < wd)
              pc[((ci * 3 + kh) * 3 + kw) * h * wd + i * wd + j] = px[(ci * h + ii) * wd + jj];
          }
  return blas_matmul(w.reshape({o, c * 9}).contiguous(), cols).reshape({1, o, h, wd});
}
void BM_conv2d_im2col_openblas(benchmark::State& st) {
  const int64_t c = st.range(0), hw = st.range(1);
  Generator g(2);
  Tensor x = randn({1, c, hw, hw}, DType::Float32, g), w = randn({c, c, 3, 3}, DType::Float32, g);
  require_close(conv2d(x, w, Tensor(), {1, 1}, {1, 1}), im2col_conv(x, w), 1e-3, "conv2d");
  for (auto _ : st) benchmark::DoNotOptimize(im2col_conv(x, w).data_ptr());
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(c * c * 9 * hw * hw), benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_conv2d_im2col_openblas)->Args({64, 28})->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

}  // namespace

BENCHMARK_MAIN();
