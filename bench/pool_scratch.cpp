// bench/pool_scratch.cpp - scratch timing of the pooling kernels on ResNet-18's shapes: the fast
// float32 kernels (the slots' CPU entries under the detected ISA, then AVX2) vs the plain references
// (include/graft/ops/pool.hpp), in one run, 1 and 2 threads. Checks each fast result against the
// reference first. Not wired into bench/CMakeLists.txt; build with
//   g++ -std=c++20 -O2 -DNDEBUG -Iinclude -Ikernels -pthread bench/pool_scratch.cpp -o /tmp/pool_bench
// and run /tmp/pool_bench [batch] (default 8). Short: each figure is the best of a few calls.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "graft/graft.hpp"

using namespace graft;
using Clock = std::chrono::steady_clock;

static Tensor rand_f32(const Shape& s, uint64_t seed) {
  Generator g(seed);
  Tensor t = rand(s, DType::Float32, g);
  NoGradGuard ng;
  return (t * 4.0 - 2.0).contiguous();
}

// Best time of `reps` calls in microseconds, after one warm-up.
static double best_us(const std::function<void()>& fn, int reps) {
  fn();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  return best;
}

static double max_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector(), y = b.to_vector();
  double d = 0;
  for (size_t i = 0; i < x.size(); ++i) d = std::max(d, std::abs(x[i] - y[i]));
  return d;
}

struct Row {
  std::string name;
  std::function<void()> reference, fast;
  std::function<double()> check;  // max |fast - reference| after both ran
};

int main(int argc, char** argv) {
  const int64_t N = argc > 1 ? std::atoll(argv[1]) : 8;
  using kernels::cpu::CpuIsa;
  const CpuIsa detected = kernels::cpu::detected_cpu_isa();

  // The ResNet-18 stem's max pool: [N, 64, 112, 112] -> [N, 64, 56, 56], 3x3 stride 2 pad 1.
  const Pool2dParams mp{{3, 3}, {2, 2}, {1, 1}, {1, 1}, false, true};
  const Tensor x = rand_f32({N, 64, 112, 112}, 1);
  const Shape ms{N, 64, 56, 56};
  Tensor out_r = empty(ms, DType::Float32), idx_r = empty(ms, DType::Int64);
  Tensor out_f = empty(ms, DType::Float32), idx_f = empty(ms, DType::Int64);
  const Tensor dout = rand_f32(ms, 2);
  Tensor dx_r = empty(x.shape(), DType::Float32), dx_f = empty(x.shape(), DType::Float32);
  // The global average pool: [N, 512, 7, 7] -> [N, 512, 1, 1].
  const Tensor g = rand_f32({N, 512, 7, 7}, 3);
  Tensor gout_r = empty({N, 512, 1, 1}, DType::Float32), gout_f = empty({N, 512, 1, 1}, DType::Float32);
  const Tensor gd = rand_f32({N, 512, 1, 1}, 4);
  Tensor gdx_r = empty(g.shape(), DType::Float32), gdx_f = empty(g.shape(), DType::Float32);
  // A general avg pool on the stem's output (3x3 stride 2 pad 1, count_include_pad off).
  const Pool2dParams ap{{3, 3}, {2, 2}, {1, 1}, {1, 1}, false, false};
  Tensor aout_r = empty(ms, DType::Float32), aout_f = empty(ms, DType::Float32);
  Tensor adx_r = empty(x.shape(), DType::Float32), adx_f = empty(x.shape(), DType::Float32);

  const std::vector<Row> rows = {
      {"max_pool2d [N,64,112,112] 3x3 s2 p1",
       [&] { kernels::cpu::max_pool2d_forward_reference(out_r, idx_r, x, mp); },
       [&] { max_pool2d_kernel.cpu(out_f, idx_f, x, mp); },
       [&] {
         const bool same = std::memcmp(idx_r.data_ptr(), idx_f.data_ptr(), size_t(idx_r.numel()) * 8) == 0;
         return same ? max_diff(out_f, out_r) : 1e30;
       }},
      {"max_pool2d backward", [&] { kernels::cpu::max_pool2d_backward_reference(dx_r, dout, idx_r); },
       [&] { max_pool2d_backward_kernel.cpu(dx_f, dout, idx_r); }, [&] { return max_diff(dx_f, dx_r); }},
      {"adaptive_avg_pool2d [N,512,7,7] -> 1x1",
       [&] { kernels::cpu::adaptive_avg_pool2d_forward_reference(gout_r, g); },
       [&] { adaptive_avg_pool2d_kernel.cpu(gout_f, g); }, [&] { return max_diff(gout_f, gout_r); }},
      {"adaptive_avg_pool2d backward", [&] { kernels::cpu::adaptive_avg_pool2d_backward_reference(gdx_r, gd); },
       [&] { adaptive_avg_pool2d_backward_kernel.cpu(gdx_f, gd); }, [&] { return max_diff(gdx_f, gdx_r); }},
      {"avg_pool2d [N,64,112,112] 3x3 s2 p1", [&] { kernels::cpu::avg_pool2d_forward_reference(aout_r, x, ap); },
       [&] { avg_pool2d_kernel.cpu(aout_f, x, ap); }, [&] { return max_diff(aout_f, aout_r); }},
      {"avg_pool2d backward", [&] { kernels::cpu::avg_pool2d_backward_reference(adx_r, dout, ap); },
       [&] { avg_pool2d_backward_kernel.cpu(adx_f, dout, ap); }, [&] { return max_diff(adx_f, adx_r); }},
  };

  std::printf("N = %lld, detected ISA %s; best of 5 calls, microseconds\n", (long long)N,
              kernels::cpu::cpu_isa_name(detected));
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    std::printf("\n%d thread%s\n%-42s %12s %10s %8s %10s %8s %10s\n", threads, threads > 1 ? "s" : "", "kernel",
                "reference", "avx2", "x", "avx512", "x", "max|diff|");
    for (const Row& r : rows) {
      kernels::cpu::set_cpu_isa(CpuIsa::Scalar);
      const double ref = best_us(r.reference, 5);
      double t2 = 0, t512 = 0, diff = 0;
      kernels::cpu::set_cpu_isa(CpuIsa::Avx2);
      t2 = best_us(r.fast, 5);
      r.reference();
      diff = std::max(diff, r.check());
      if (detected >= CpuIsa::Avx512) {
        kernels::cpu::set_cpu_isa(CpuIsa::Avx512);
        t512 = best_us(r.fast, 5);
        r.reference();
        diff = std::max(diff, r.check());
      }
      std::printf("%-42s %12.1f %10.1f %8.2f %10.1f %8.2f %10.2g\n", r.name.c_str(), ref, t2, ref / t2, t512,
                  t512 > 0 ? ref / t512 : 0.0, diff);
    }
  }
  kernels::cpu::set_cpu_isa(detected);
  return 0;
}
