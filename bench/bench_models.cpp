// bench_models: Graft's side of the Graft-vs-PyTorch table (bench/compare.sh, bench/README.md).
// A plain timing program, not Google Benchmark: each row runs in its own process (--only ROW) so its
// peak resident memory (getrusage ru_maxrss) is that row's alone, and it times exactly what
// bench/pytorch_models.py times (warmup, then the median of N calls).
//
//   cmake -S . -B build-bench -DGRAFT_BUILD_BENCH=ON -DGRAFT_BUILD_TESTS=OFF -DGRAFT_BUILD_EXAMPLES=OFF
//   cmake --build build-bench --target bench_models -j2
//   ./build-bench/bench/bench_models --list
//   ./build-bench/bench/bench_models --only resnet18_b16 [--threads T] [--reps N] [--warmup N] [--quick]
//
// Rows (fp32, random weights, eval mode and no autograd for forward rows):
//   fma_peak                      the FMA ceiling: a loop of independent vfmadd on registers (AVX-512
//                                 or AVX2 by CPUID), one thread and --threads threads
//   sgemm_{1024,2048,4096}        graft::matmul of two [n, n] tensors; GFLOP/s and % of the FMA peak
//                                 (measured in the same process just before)
//   sgemm_openblas_{1024,...}     cblas_sgemm of the same operands (when built with OpenBLAS); prints
//                                 openblas_get_corename(), the kernel OpenBLAS picked
//   resnet18_b{1,16}, resnet50_b{1,16}, efficientnet_lite0_b{1,16}
//                                 forward of [B, 3, 224, 224], 1000 classes
//   minilm_l6_b8_s128, bert_base_b8_s128
//                                 BertModel::forward_bert(ids [8, 128], attention mask of ones)
//   resnet18_train_b16            one SGD step (lr 0.01, momentum 0.9): zero_grad, forward,
//                                 cross_entropy, backward, step on [16, 3, 224, 224]
// Before timing, each row checks its result: the GEMMs against a float64 dot product on a sample
// of entries, the models for the output shape and finite values (model parity with PyTorch is the
// test suite's job: tests/test_parity.cpp and the model golden tests).
//
// Output: human-readable lines, then one machine-readable line per row that compare.sh parses:
//   RESULT row=resnet18_b16 ms=... min_ms=... reps=... threads=... peak_rss_kb=... base_rss_kb=... [gflops=... pct_peak=...]
// base_rss_kb is ru_maxrss before the row built anything (the process and its libraries).
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <immintrin.h>

#include "graft/graft.hpp"
#include "graft/kernels/cpu/cpu_features.hpp"
#include "graft/models/bert.hpp"
#include "graft/models/efficientnet_lite.hpp"
#include "graft/models/resnet.hpp"

#ifdef GRAFT_BENCH_OPENBLAS
#include <cblas.h>
#endif

using namespace graft;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

long peak_rss_kb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;  // kilobytes on Linux
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "bench_models: %s\n", what.c_str());
  std::exit(1);
}

// ---- the FMA ceiling ---------------------------------------------------------------------------
// kChains independent accumulators, each acc = acc * a + b per step: enough chains to cover the
// FMA latency (4 cycles) times the FMA ports (2) with registers to spare (32 zmm, 16 ymm).
constexpr int kChains512 = 16, kChains256 = 12;

__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t steps) {
  __m512 acc[kChains512];
  for (int c = 0; c < kChains512; ++c) acc[c] = _mm512_set1_ps(1.0f + 1e-3f * float(c));
  const __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t s = 0; s < steps; ++s) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains512; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  }
  __m512 sum = acc[0];
  for (int c = 1; c < kChains512; ++c) sum = _mm512_add_ps(sum, acc[c]);
  float lanes[16];
  _mm512_storeu_ps(lanes, sum);
  float total = 0;
  for (float v : lanes) total += v;
  return total;
}
constexpr double kFlopsPerStep512 = 2.0 * 16 * kChains512;

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t steps) {
  __m256 acc[kChains256];
  for (int c = 0; c < kChains256; ++c) acc[c] = _mm256_set1_ps(1.0f + 1e-3f * float(c));
  const __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t s = 0; s < steps; ++s) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains256; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  }
  __m256 sum = acc[0];
  for (int c = 1; c < kChains256; ++c) sum = _mm256_add_ps(sum, acc[c]);
  float lanes[8];
  _mm256_storeu_ps(lanes, sum);
  float s = 0;
  for (float v : lanes) s += v;
  return s;
}
constexpr double kFlopsPerStep256 = 2.0 * 8 * kChains256;

struct FmaPeak {
  const char* isa;
  double one_thread_gflops, all_threads_gflops;
  int threads;
};

// GFLOP/s of `threads` threads running the FMA loop at once: the best of `tries` rounds of ~seconds each.
double fma_gflops(bool avx512, int threads, double seconds, int tries) {
  const double flops_per_step = avx512 ? kFlopsPerStep512 : kFlopsPerStep256;
  auto loop = [&](int64_t steps) { return avx512 ? fma_loop_avx512(steps) : fma_loop_avx2(steps); };
  // Calibrate the step count on one thread.
  int64_t steps = 1 << 16;
  for (;;) {
    const auto t0 = Clock::now();
    volatile float sink = loop(steps);
    (void)sink;
    const double t = seconds_since(t0);
    if (t > 0.02) {
      steps = int64_t(double(steps) * seconds / t) + 1;
      break;
    }
    steps *= 4;
  }
  double best = 0;
  for (int round = 0; round < tries; ++round) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> pool;
    std::vector<float> sinks(static_cast<size_t>(threads));
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        ready.fetch_add(1);
        while (!go.load()) std::this_thread::yield();
        sinks[size_t(t)] = loop(steps);
      });
    while (ready.load() < threads) std::this_thread::yield();
    const auto t0 = Clock::now();
    go.store(true);
    for (auto& th : pool) th.join();
    const double t = seconds_since(t0);
    best = std::max(best, flops_per_step * double(steps) * threads / t / 1e9);
  }
  return best;
}

FmaPeak measure_fma_peak(int threads, double seconds = 0.25, int tries = 3) {
  const kernels::cpu::CpuIsa isa = kernels::cpu::detected_cpu_isa();
  if (isa == kernels::cpu::CpuIsa::Scalar) return {"scalar (no FMA loop)", 0, 0, threads};
  const bool avx512 = isa == kernels::cpu::CpuIsa::Avx512;
  return {avx512 ? "avx512" : "avx2+fma", fma_gflops(avx512, 1, seconds, tries), fma_gflops(avx512, threads, seconds, tries),
          threads};
}

// ---- timing ------------------------------------------------------------------------------------
struct Options {
  std::string only;
  int threads = 0;   // 0: Graft's default (GRAFT_NUM_THREADS or the CPU count)
  int reps = 0;      // 0: as many as fit in target_seconds, within [min_reps, max_reps]
  int warmup = 2;
  double target_seconds = 4.0;
  int min_reps = 3, max_reps = 50;
};

struct Timing {
  double median_ms = 0, min_ms = 0;
  int reps = 0;
};

// Runs fn `warmup` times, then `reps` times (or as many as fit in target_seconds), and returns the
// median and the minimum of the timed calls. The same rule as pytorch_models.py's time_it().
Timing time_it(const Options& o, const std::function<void()>& fn) {
  double last = 0;
  for (int i = 0; i < o.warmup; ++i) {
    const auto t0 = Clock::now();
    fn();
    last = seconds_since(t0);
  }
  int reps = o.reps;
  if (reps <= 0) {
    if (o.warmup == 0) {
      const auto t0 = Clock::now();
      fn();
      last = seconds_since(t0);
    }
    reps = std::clamp(int(std::lround(o.target_seconds / std::max(last, 1e-6))), o.min_reps, o.max_reps);
  }
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    fn();
    ms.push_back(1e3 * seconds_since(t0));
  }
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  return {n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]), ms.front(), reps};
}

void print_result(const std::string& row, const Timing& t, long base_rss_kb, const std::string& extra = "") {
  std::printf("%-24s %10.2f ms (min %.2f, median of %d, %d threads)  peak RSS %.1f MB (%.1f MB before the row)%s\n",
              row.c_str(), t.median_ms, t.min_ms, t.reps, get_num_threads(), peak_rss_kb() / 1024.0,
              base_rss_kb / 1024.0, extra.empty() ? "" : ("  " + extra).c_str());
  std::printf("RESULT row=%s ms=%.4f min_ms=%.4f reps=%d threads=%d peak_rss_kb=%ld base_rss_kb=%ld%s%s\n", row.c_str(),
              t.median_ms, t.min_ms, t.reps, get_num_threads(), peak_rss_kb(), base_rss_kb, extra.empty() ? "" : " ",
              extra.c_str());
  std::fflush(stdout);
}

// ---- correctness checks ------------------------------------------------------------------------
void require_finite(const Tensor& t, const Shape& shape, const std::string& what) {
  if (t.shape() != shape) fail(what + ": output shape " + t.shape().str() + ", expected " + shape.str());
  const Tensor c = t.to(DType::Float32).contiguous();  // a bfloat16 output (autocast rows) widened
  const float* p = c.data<float>();
  for (int64_t i = 0; i < c.numel(); ++i)
    if (!std::isfinite(p[i])) fail(what + ": non-finite output at flat index " + std::to_string(i));
}

// c = a b for [n, n] row-major a, b: 256 sampled entries against a float64 dot product, with the
// bound |c - ref| <= 1e-5 * sum_k |a_ik b_kj| + 1e-6 (float32 accumulation error grows with that sum),
// plus out_rel * |ref| for an output rounded to a narrower type (2^-8 for bfloat16).
void require_gemm_sample(const float* a, const float* b, const float* c, int64_t n, const std::string& what,
                         double out_rel = 0.0) {
  Generator g(7);
  const Tensor idx = randint(0, n, {256, 2}, DType::Int64, g);
  const int64_t* ij = idx.data<int64_t>();
  for (int s = 0; s < 256; ++s) {
    const int64_t i = ij[2 * s], j = ij[2 * s + 1];
    double ref = 0, mag = 0;
    for (int64_t k = 0; k < n; ++k) {
      ref += double(a[i * n + k]) * double(b[k * n + j]);
      mag += std::abs(double(a[i * n + k]) * double(b[k * n + j]));
    }
    const double got = c[i * n + j];
    if (!(std::abs(got - ref) <= 1e-5 * mag + out_rel * std::abs(ref) + 1e-6))
      fail(what + ": c[" + std::to_string(i) + ", " + std::to_string(j) + "] = " + std::to_string(got) +
           ", float64 reference " + std::to_string(ref));
  }
}

// ---- rows --------------------------------------------------------------------------------------
void row_fma_peak(const Options& o, const std::string& row) {
  const long base = peak_rss_kb();
  const double secs = o.reps > 0 && o.reps <= 2 ? 0.1 : 0.25;
  const FmaPeak p = measure_fma_peak(get_num_threads(), secs, 3);
  std::printf("FMA peak (%s loop, fp32): %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads\n", p.isa,
              p.one_thread_gflops, p.all_threads_gflops, p.threads);
  std::printf("RESULT row=%s isa=%s gflops_1t=%.2f gflops=%.2f threads=%d peak_rss_kb=%ld base_rss_kb=%ld\n",
              row.c_str(), p.isa, p.one_thread_gflops, p.all_threads_gflops, p.threads, peak_rss_kb(), base);
}

// matmul of two [n, n] tensors of dtype dt: float32 (the packed GEMM; GFLOP/s and % of the FMA peak)
// or bfloat16 (gemm_bf16's path for this CPU: AMX, AVX512_BF16, or widening to the float32 kernels,
// printed as bf16_path; the output rounded, so the check allows |ref| / 256 more).
void row_gemm_graft(const Options& o, const std::string& row, int64_t n, DType dt) {
  const long base = peak_rss_kb();
  Generator g(1);
  const Tensor a = randn({n, n}, DType::Float32, g).to(dt), b = randn({n, n}, DType::Float32, g).to(dt);
  {
    const Tensor af = a.to(DType::Float32), bf = b.to(DType::Float32), c = matmul(a, b).to(DType::Float32);
    require_gemm_sample(af.data<float>(), bf.data<float>(), c.data<float>(), n, row, dt == DType::Float32 ? 0.0 : 1.0 / 256);
  }
  const FmaPeak peak = measure_fma_peak(get_num_threads(), 0.1, 2);
  const Timing t = time_it(o, [&] {
    const Tensor c = matmul(a, b);
    if (c.data_ptr() == nullptr) fail(row + ": no output");
  });
  const double gflops = 2.0 * double(n) * double(n) * double(n) / (t.median_ms * 1e-3) / 1e9;
  char extra[200];
  std::snprintf(extra, sizeof extra, "gflops=%.2f pct_peak=%.1f fma_peak_gflops=%.2f%s%s", gflops,
                peak.all_threads_gflops > 0 ? 100.0 * gflops / peak.all_threads_gflops : 0.0, peak.all_threads_gflops,
                dt == DType::Float32 ? "" : " bf16_path=",
                dt == DType::Float32 ? "" : kernels::cpu::bf16_gemm_path_name(kernels::cpu::active_bf16_gemm_path()));
  print_result(row, t, base, extra);
}

// Autocast to bfloat16 for the rows that ask for it (precision BFloat16), nothing for float32.
struct RowPrecision {
  explicit RowPrecision(DType precision) {
    if (precision != DType::Float32) guard.emplace(precision);
  }
  std::optional<AutocastGuard> guard;
};

#ifdef GRAFT_BENCH_OPENBLAS
void row_sgemm_openblas(const Options& o, const std::string& row, int64_t n) {
  const long base = peak_rss_kb();
  openblas_set_num_threads(get_num_threads());
  std::printf("OpenBLAS: core %s, config %s, %d threads\n", openblas_get_corename(), openblas_get_config(),
              openblas_get_num_threads());
  Generator g(1);
  const Tensor a = randn({n, n}, DType::Float32, g), b = randn({n, n}, DType::Float32, g);
  std::vector<float> c(size_t(n * n));
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(n), int(n), 1.0f, a.data<float>(), int(n),
                b.data<float>(), int(n), 0.0f, c.data(), int(n));
  };
  run();
  require_gemm_sample(a.data<float>(), b.data<float>(), c.data(), n, row);
  const FmaPeak peak = measure_fma_peak(get_num_threads(), 0.1, 2);
  const Timing t = time_it(o, run);
  const double gflops = 2.0 * double(n) * double(n) * double(n) / (t.median_ms * 1e-3) / 1e9;
  char extra[240];
  std::snprintf(extra, sizeof extra, "gflops=%.2f pct_peak=%.1f fma_peak_gflops=%.2f openblas_core=%s openblas_threads=%d",
                gflops, peak.all_threads_gflops > 0 ? 100.0 * gflops / peak.all_threads_gflops : 0.0,
                peak.all_threads_gflops, openblas_get_corename(), openblas_get_num_threads());
  print_result(row, t, base, extra);
}
#endif

// Forward of an image model on [batch, 3, 224, 224] under NoGradGuard, eval mode.
void row_image_forward(const Options& o, const std::string& row, const std::function<nn::ModulePtr()>& make,
                       int64_t batch, DType precision = DType::Float32) {
  const long base = peak_rss_kb();
  const RowPrecision amp(precision);
  nn::ModulePtr model = make();
  model->eval();
  Generator g(2);
  const Tensor x = randn({batch, 3, 224, 224}, DType::Float32, g);
  NoGradGuard no_grad;
  require_finite(model->forward(x), {batch, 1000}, row);
  const Timing t = time_it(o, [&] { require_finite(model->forward(x), {batch, 1000}, row); });
  print_result(row, t, base);
}

// BertModel::forward_bert on ids [batch, seq] (uniform over the vocabulary) with an all-ones mask.
void row_bert_forward(const Options& o, const std::string& row, const models::BertConfig& cfg, int64_t batch,
                      int64_t seq, DType precision = DType::Float32) {
  const long base = peak_rss_kb();
  const RowPrecision amp(precision);
  auto model = std::make_shared<models::BertModel>(cfg);
  model->eval();
  Generator g(3);
  const Tensor ids = randint(0, cfg.vocab_size, {batch, seq}, DType::Int64, g);
  const Tensor mask = ones({batch, seq}, DType::Int64);
  NoGradGuard no_grad;
  auto run = [&] {
    const models::BertOutputs out = model->forward_bert(ids, mask);
    require_finite(out.last_hidden_state, {batch, seq, cfg.hidden_size}, row);
  };
  run();
  const Timing t = time_it(o, run);
  print_result(row, t, base);
}

// One SGD step of ResNet-18 (train mode, BatchNorm batch statistics) on [batch, 3, 224, 224].
void row_resnet18_train(const Options& o, const std::string& row, int64_t batch, DType precision = DType::Float32) {
  const long base = peak_rss_kb();
  auto model = models::resnet18(1000);
  model->train();
  optim::SGD opt(model->parameters(), /*lr=*/0.01, /*momentum=*/0.9);
  Generator g(4);
  const Tensor x = randn({batch, 3, 224, 224}, DType::Float32, g);
  const Tensor y = randint(0, 1000, {batch}, DType::Int64, g);
  auto step = [&] {
    opt.zero_grad();
    Tensor loss;
    {
      const RowPrecision amp(precision);  // forward and loss under autocast, backward after it
      loss = cross_entropy(model->forward(x), y);
    }
    loss.backward();
    opt.step();
    const double l = loss.item<double>();
    if (!std::isfinite(l)) fail(row + ": non-finite loss");
  };
  step();
  const Timing t = time_it(o, step);
  print_result(row, t, base);
}

struct Row {
  std::string name;
  std::function<void(const Options&, const std::string&)> run;
};

std::vector<Row> all_rows() {
  std::vector<Row> rows;
  rows.push_back({"fma_peak", row_fma_peak});
  for (int64_t n : {1024, 2048, 4096})
    rows.push_back({"sgemm_" + std::to_string(n), [n](const Options& o, const std::string& r) { row_gemm_graft(o, r, n, DType::Float32); }});
#ifdef GRAFT_BENCH_OPENBLAS
  for (int64_t n : {1024, 2048, 4096})
    rows.push_back(
        {"sgemm_openblas_" + std::to_string(n), [n](const Options& o, const std::string& r) { row_sgemm_openblas(o, r, n); }});
#endif
  const std::vector<std::pair<std::string, std::function<nn::ModulePtr()>>> image_models = {
      {"resnet18", [] { return nn::ModulePtr(models::resnet18(1000)); }},
      {"resnet50", [] { return nn::ModulePtr(models::resnet50(1000)); }},
      {"efficientnet_lite0", [] { return nn::ModulePtr(models::efficientnet_lite0(1000)); }},
  };
  for (const auto& [name, make] : image_models)
    for (int64_t batch : {1, 16})
      rows.push_back({name + "_b" + std::to_string(batch),
                      [make, batch](const Options& o, const std::string& r) { row_image_forward(o, r, make, batch); }});
  rows.push_back({"minilm_l6_b8_s128", [](const Options& o, const std::string& r) {
                    row_bert_forward(o, r, models::BertConfig::all_minilm_l6_v2(), 8, 128);
                  }});
  rows.push_back({"bert_base_b8_s128", [](const Options& o, const std::string& r) {
                    row_bert_forward(o, r, models::BertConfig::bert_base_uncased(), 8, 128);
                  }});
  rows.push_back({"resnet18_train_b16", [](const Options& o, const std::string& r) { row_resnet18_train(o, r, 16); }});
  // bfloat16: matmul on bfloat16 tensors, and the model rows under bfloat16 autocast
  for (int64_t n : {2048, 4096})
    rows.push_back({"bgemm_" + std::to_string(n), [n](const Options& o, const std::string& r) { row_gemm_graft(o, r, n, DType::BFloat16); }});
  rows.push_back({"resnet50_b16_bf16", [](const Options& o, const std::string& r) {
                    row_image_forward(o, r, [] { return nn::ModulePtr(models::resnet50(1000)); }, 16, DType::BFloat16);
                  }});
  rows.push_back({"minilm_l6_b8_s128_bf16", [](const Options& o, const std::string& r) {
                    row_bert_forward(o, r, models::BertConfig::all_minilm_l6_v2(), 8, 128, DType::BFloat16);
                  }});
  rows.push_back({"bert_base_b8_s128_bf16", [](const Options& o, const std::string& r) {
                    row_bert_forward(o, r, models::BertConfig::bert_base_uncased(), 8, 128, DType::BFloat16);
                  }});
  rows.push_back({"resnet18_train_b16_bf16", [](const Options& o, const std::string& r) {
                    row_resnet18_train(o, r, 16, DType::BFloat16);
                  }});
  return rows;
}

void usage() {
  std::printf(
      "usage: bench_models [--list] [--only ROW[,ROW...]] [--threads T] [--reps N] [--warmup N] [--quick]\n"
      "  --only      rows to run (default: all, in one process; peak RSS is then the largest so far)\n"
      "  --threads   Graft's thread count (default GRAFT_NUM_THREADS or the CPU count)\n"
      "  --reps      timed calls per row (default: as many as fit in 4 s, 3..50)\n"
      "  --warmup    untimed calls first (default 2)\n"
      "  --quick     warmup 1, reps 2 (smoke test)\n");
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail("missing value after " + arg);
      return argv[++i];
    };
    if (arg == "--list") list = true;
    else if (arg == "--only") o.only = value();
    else if (arg == "--threads") o.threads = std::stoi(value());
    else if (arg == "--reps") o.reps = std::stoi(value());
    else if (arg == "--warmup") o.warmup = std::stoi(value());
    else if (arg == "--quick") o.warmup = 1, o.reps = 2;
    else if (arg == "--help" || arg == "-h") {
      usage();
      return 0;
    } else {
      usage();
      fail("unknown argument " + arg);
    }
  }
  const std::vector<Row> rows = all_rows();
  if (list) {
    for (const Row& r : rows) std::printf("%s\n", r.name.c_str());
    return 0;
  }
  if (o.threads > 0) set_num_threads(o.threads);

  std::vector<std::string> wanted;
  if (!o.only.empty()) {
    size_t start = 0;
    for (;;) {
      const size_t comma = o.only.find(',', start);
      wanted.push_back(o.only.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    for (const std::string& w : wanted)
      if (std::none_of(rows.begin(), rows.end(), [&](const Row& r) { return r.name == w; }))
        fail("unknown row '" + w + "' (--list shows them)");
  }
  std::printf("bench_models: Graft, %d threads, CPU ISA %s (detected %s)\n", get_num_threads(),
              kernels::cpu::cpu_isa_name(kernels::cpu::active_cpu_isa()),
              kernels::cpu::cpu_isa_name(kernels::cpu::detected_cpu_isa()));
  for (const Row& r : rows)
    if (wanted.empty() || std::find(wanted.begin(), wanted.end(), r.name) != wanted.end()) r.run(o, r.name);
  return 0;
}
