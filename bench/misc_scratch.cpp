// bench/misc_scratch.cpp - times the fast compare, where, bce_with_logits, mse_loss and max / amax
// backward kernels against their references (the same KernelSlot entry under GRAFT_CPU_ISA scalar,
// avx2, avx512), after checking each against the reference. Not part of the CMake build; build and run:
//   g++ -std=c++20 -O2 -Iinclude -Ikernels -Imodels bench/misc_scratch.cpp -o /tmp/misc_bench -pthread
//   /tmp/misc_bench            (1 and 2 threads, median of a few runs each; a few seconds in all)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
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
double time_ms(const std::function<void()>& fn, int reps = 15) {
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
// Largest |a - b| / (1e-5 + |b|), NaN matching NaN.
double max_rel_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector(), y = b.to_vector();
  double w = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) && std::isnan(y[i])) continue;
    w = std::max(w, std::abs(x[i] - y[i]) / (1e-5 + std::abs(y[i])));
  }
  return w;
}

// Runs fn (writing *result) under scalar, avx2, avx512; prints times, speed-ups and the difference
// of each fast result from the scalar one.
void row(const char* name, const std::function<void()>& fn, const Tensor& result) {
  double t[3];
  Tensor ref;
  double diff[3] = {0, 0, 0};
  const CpuIsa isas[3] = {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512};
  for (int i = 0; i < 3; ++i) {
    kernels::cpu::set_cpu_isa(isas[i]);
    fn();
    if (i == 0) ref = result.clone();
    else diff[i] = max_rel_diff(result, ref);
    t[i] = time_ms(fn);
  }
  std::printf("%-44s %9.3f %9.3f %9.3f   x%6.1f x%6.1f   %.1e %.1e\n", name, t[0], t[1], t[2], t[0] / t[1],
              t[0] / t[2], diff[1], diff[2]);
}
}  // namespace

int main() {
  const int64_t N = int64_t(1) << 20;
  const Tensor a = rand32({N}, 1), b = rand32({N}, 2), t = rand32({N}, 3, 0, 1), pw = rand32({N}, 4, 0.5, 2);
  const Tensor a2 = a.reshape({1024, 1024}), brow = rand32({1024}, 5).expand({1024, 1024});
  Tensor cond = empty({N}, DType::Bool);
  kernels::cpu::compare_forward(cond, a, b, CompareOp::Gt);
  const Tensor cond_col = empty({1024, 1}, DType::Bool);
  kernels::cpu::compare_forward(cond_col, rand32({1024, 1}, 6), zeros({1024, 1}), CompareOp::Gt);
  const Tensor dl1 = full(Shape{1}, 0.3, DType::Float32).expand({N});
  const Tensor dln = rand32({N}, 7);

  Tensor out_b = empty({N}, DType::Bool), out_b2 = empty({1024, 1024}, DType::Bool);
  Tensor out = empty({N}), out2 = empty({1024, 1024}), out3 = empty({N});

  // max over a dim: x [outer, n, inner]
  const Tensor xr = rand32({1024, 1024}, 8), xs = rand32({16, 64, 1024}, 9);
  Tensor vr = empty({1024}), ir = empty({1024}, DType::Int64);
  Tensor vs = empty({16, 1024}), is = empty({16, 1024}, DType::Int64);
  kernels::cpu::max_dim_forward_reference(vr, ir, xr, 1024, 1024, 1, true);
  kernels::cpu::max_dim_forward_reference(vs, is, xs, 16, 64, 1024, true);
  const Tensor dvr = rand32({1024}, 10), dvs = rand32({16, 1024}, 11);
  Tensor dxr = empty({1024, 1024}), dxs = empty({16, 64, 1024});
  // amax: rows [M, K] on a grid (ties), and one long row
  Tensor xg = rand32({1024, 1024}, 12);
  for (int64_t i = 0; i < xg.numel(); ++i) xg.data<float>()[i] = std::round(xg.data<float>()[i] * 8) / 8;
  Tensor og = empty({1024}), o1 = empty({1});
  kernels::cpu::amax_forward_reference(og, xg, 1024, 1024, true);
  const Tensor x1 = xg.reshape({1, N});
  kernels::cpu::amax_forward_reference(o1, x1, 1, N, true);
  const Tensor dog = rand32({1024}, 13), do1 = rand32({1}, 14);
  Tensor dxg = empty({1024, 1024}), dx1 = empty({1, N});
  Tensor loss0;

  std::printf("float32, ms (median); speed-up vs the scalar reference; max rel diff from it\n");
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    std::printf("\n%d thread(s)\n%-44s %9s %9s %9s   %7s %7s\n", threads, "kernel", "scalar", "avx2", "avx512",
                "avx2", "avx512");
    row("compare lt [1M] vs [1M]", [&] { compare_kernel.cpu(out_b, a, b, CompareOp::Lt); }, out_b);
    row("compare eq [1024,1024] vs row [1024]", [&] { compare_kernel.cpu(out_b2, a2, brow, CompareOp::Eq); }, out_b2);
    row("where [1M] ? [1M] : [1M]", [&] { where_kernel.cpu(out, cond, a, b); }, out);
    row("where col [1024,1] ? [1024,1024] : scalar",
        [&] { where_kernel.cpu(out2, cond_col.expand({1024, 1024}), a2, full(Shape{}, 0.0).expand({1024, 1024})); },
        out2);
    row("bce_with_logits fwd [1M] + pos_weight", [&] { bce_with_logits_kernel.cpu(out, a, t, pw); }, out);
    row("bce_with_logits bwd [1M] dlogits+dtarget",
        [&] { bce_with_logits_backward_kernel.cpu(out, out3, dl1, a, t, Tensor()); }, out);
    row("mse fwd [1M]", [&] { mse_kernel.cpu(out, a, b); }, out);
    row("mse bwd [1M] dinput+dtarget, dloss [1M]", [&] { mse_backward_kernel.cpu(out, out3, dln, a, b); }, out);
    row("mse_loss(a, b) Mean [1M] (op: kernel + sum)", [&] { loss0 = mse_loss(a, b); }, full(Shape{}, 0.0));
    row("max_backward [1024, 1024] dim 1", [&] { max_dim_backward_kernel.cpu(dxr, dvr, ir, 1024, 1024, 1); }, dxr);
    row("max_backward [16, 64, 1024] dim 1", [&] { max_dim_backward_kernel.cpu(dxs, dvs, is, 16, 64, 1024); }, dxs);
    row("amax_backward [1024, 1024] rows (ties)", [&] { amax_backward_kernel.cpu(dxg, dog, xg, og, 1024, 1024); }, dxg);
    row("amax_backward [1, 1M] (max of all)", [&] { amax_backward_kernel.cpu(dx1, do1, x1, o1, 1, N); }, dx1);
  }
  // The loss value, fast vs reference sum.
  kernels::cpu::set_cpu_isa(CpuIsa::Scalar);
  const double ref = mse_loss(a, b).item();
  kernels::cpu::set_cpu_isa(CpuIsa::Avx512);
  std::printf("\nmse_loss Mean: reference %.9g, fast %.9g\n", ref, mse_loss(a, b).item());
  return 0;
}
