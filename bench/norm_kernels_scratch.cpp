// bench/norm_kernels_scratch.cpp - times the fast row / reduction kernels against their references
// (the same KernelSlot entry under GRAFT_CPU_ISA scalar, avx2, avx512), after checking each against
// the reference. Not part of the CMake build; build and run with
//   g++ -std=c++20 -O2 -Iinclude -Ikernels -Imodels bench/norm_kernels_scratch.cpp -o /tmp/norm_bench -pthread
//   GRAFT_NUM_THREADS=2 /tmp/norm_bench
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include "graft/graft.hpp"

using namespace graft;
using kernels::cpu::CpuIsa;

namespace {
Tensor rand32(const Shape& s, uint64_t seed, double lo = -2, double hi = 2) {
  Generator g(seed);
  NoGradGuard ng;
  return (rand(s, DType::Float32, g) * (hi - lo) + lo).contiguous();
}
// Median milliseconds of fn over reps runs (after one warm-up).
double time_ms(const std::function<void()>& fn, int reps) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
double max_rel_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector(), y = b.to_vector();
  double w = 0;
  for (size_t i = 0; i < x.size(); ++i) w = std::max(w, std::abs(x[i] - y[i]) / (1e-5 + std::abs(y[i])));
  return w;
}
void row(const char* name, const std::function<void()>& fn, const std::function<Tensor()>& result, int reps) {
  std::vector<CpuIsa> isas = {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512};
  double ms[3] = {0, 0, 0};
  Tensor ref;
  double worst = 0;
  for (size_t i = 0; i < isas.size(); ++i) {
    if (kernels::cpu::detected_cpu_isa() < isas[i]) continue;
    kernels::cpu::set_cpu_isa(isas[i]);
    fn();
    const Tensor r = result().clone();
    if (i == 0) ref = r;
    else worst = std::max(worst, max_rel_diff(r, ref));
    ms[i] = time_ms(fn, reps);
  }
  std::printf("%-44s %9.3f %9.3f %9.3f   %6.1fx %6.1fx   (max rel diff %.1e)\n", name, ms[0], ms[1], ms[2],
              ms[0] / ms[1], ms[0] / ms[2], worst);
}
}  // namespace

int main() {
  std::printf("threads %d\n%-44s %9s %9s %9s   %7s %7s\n", get_num_threads(), "workload (ms, median)", "reference",
              "avx2", "avx512", "avx2", "avx512");
  {  // softmax over rows [8*12*128, 128]
    const int64_t M = 8 * 12 * 128, N = 128;
    const Tensor x = rand32({M, N}, 1, -4, 4), dy = rand32({M, N}, 2);
    Tensor y = empty({M, N}), dx = empty({M, N});
    row("softmax fwd [12288, 128]", [&] { softmax_kernel.cpu(y, x, M, N, 1); }, [&] { return y; }, 20);
    row("softmax bwd [12288, 128]", [&] { softmax_backward_kernel.cpu(dx, dy, y, M, N, 1); }, [&] { return dx; }, 20);
    row("log_softmax fwd [12288, 128]", [&] { log_softmax_kernel.cpu(y, x, M, N, 1); }, [&] { return y; }, 20);
  }
  {  // layer_norm [8*128, 768]
    const int64_t M = 8 * 128, N = 768;
    const Tensor x = rand32({M, N}, 3), dout = rand32({M, N}, 4), w = rand32({N}, 5), b = rand32({N}, 6);
    Tensor out = empty({M, N}), mean = empty({M}), rstd = empty({M}), dx = empty({M, N});
    Tensor dw = zeros({N}), db = zeros({N});
    row("layer_norm fwd [1024, 768]", [&] { layer_norm_kernel.cpu(out, mean, rstd, x, w, b, M, N, 1e-5); },
        [&] { return out; }, 20);
    row("layer_norm bwd (dx, dw, db) [1024, 768]", [&] {
      dw.zero_();
      db.zero_();
      layer_norm_backward_kernel.cpu(dx, dw, db, dout, x, w, mean, rstd, M, N);
    }, [&] { return dx; }, 20);
  }
  {  // batch_norm [16, 64, 56, 56]
    const int64_t N = 16, C = 64, S = 56 * 56;
    const Tensor x = rand32({N, C, S}, 7), dout = rand32({N, C, S}, 8), w = rand32({C}, 9), b = rand32({C}, 10);
    Tensor out = empty({N, C, S}), mean = empty({C}), rstd = empty({C}), dx = empty({N, C, S});
    Tensor rm = zeros({C}), rv = ones({C}), dw = zeros({C}), db = zeros({C});
    row("batch_norm fwd train [16, 64, 56, 56]",
        [&] { batch_norm_kernel.cpu(out, mean, rstd, x, w, b, rm, rv, N, C, S, true, 0.1, 1e-5); },
        [&] { return out; }, 10);
    row("batch_norm bwd train [16, 64, 56, 56]", [&] {
      dw.zero_();
      db.zero_();
      batch_norm_backward_kernel.cpu(dx, dw, db, dout, x, w, mean, rstd, N, C, S, true);
    }, [&] { return dx; }, 10);
  }
  {  // sum_to [16, 64, 56, 56] -> [64, 1, 1]
    const Tensor g = rand32({16, 64, 56, 56}, 11);
    Tensor r;
    row("sum_to [16, 64, 56, 56] -> [64, 1, 1]", [&] { r = sum_to(g, {64, 1, 1}); }, [&] { return r; }, 10);
    const Tensor gl = rand32({8 * 128, 768}, 12);
    row("sum_to [1024, 768] -> [768] (linear bias)", [&] { r = sum_to(gl, {768}); }, [&] { return r; }, 10);
  }
  {  // cross-entropy [256, 1000]
    const int64_t N = 256, C = 1000;
    const Tensor logits = rand32({N, C, 1}, 13, -5, 5);
    std::vector<double> t;
    for (int64_t i = 0; i < N; ++i) t.push_back(double((i * 7919) % C));
    const Tensor target = from_vector(t, {N, 1}, DType::Int64);
    Tensor loss = empty({N}), lse = empty({N}), dx = empty({N, C, 1});
    const Tensor dloss = full({1}, 1.0 / N).expand({N});
    row("cross_entropy fwd [256, 1000]",
        [&] { cross_entropy_kernel.cpu(loss, lse, logits, target, Tensor(), -100, 0.0); }, [&] { return loss; }, 20);
    row("cross_entropy bwd [256, 1000]",
        [&] { cross_entropy_backward_kernel.cpu(dx, dloss, logits, lse, target, Tensor(), -100, 0.0); },
        [&] { return dx; }, 20);
  }
  {  // permute-copy NHWC [16, 56, 56, 64] -> NCHW
    const Tensor x = rand32({16, 56, 56, 64}, 14);
    const Tensor v = x.permute({0, 3, 1, 2});
    Tensor out = empty({16, 64, 56, 56});
    row("copy NHWC [16,56,56,64] -> NCHW", [&] { copy_kernel.cpu(out, v); }, [&] { return out; }, 10);
    const Tensor y = rand32({16, 64, 56, 56}, 15);
    Tensor out2 = empty({16, 56, 56, 64});
    const Tensor v2 = y.permute({0, 2, 3, 1});
    row("copy NCHW [16,64,56,56] -> NHWC", [&] { copy_kernel.cpu(out2, v2); }, [&] { return out2; }, 10);
    // the bandwidth ceiling of this machine for the same bytes: a contiguous copy, and std::memcpy
    row("copy contiguous [16,64,56,56]", [&] { copy_kernel.cpu(out, y); }, [&] { return out; }, 10);
    const double ms = time_ms([&] { std::memcpy(out.data<float>(), y.data<float>(), size_t(y.numel()) * 4); }, 10);
    std::printf("%-44s %9.3f (std::memcpy, one thread)\n", "memcpy 12.8 MB", ms);
  }
  return 0;
}
