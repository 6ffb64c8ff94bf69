// bench/elementwise_speed.cpp - unary forward on 1M floats (and add, add_): the fast kernels per ISA
// against the reference (the GRAFT_CPU_ISA=scalar path), best of 7 x 10 calls, in one run. Not in
// CMake (a scratch program):
//   g++ -std=gnu++20 -O2 -Iinclude -Ikernels bench/elementwise_speed.cpp -o /tmp/es -pthread && /tmp/es
// GRAFT_NUM_THREADS=1 for one thread.
#include <chrono>
#include <cstdio>
#include "graft/graft.hpp"
using namespace graft;
using namespace graft::kernels::cpu;
int main() {
  const int64_t n = 1 << 20;
  Generator g(1);
  Tensor x = (rand({n}, DType::Float32, g) * 8.0 - 4.0).contiguous();
  Tensor y = empty({n});
  printf("threads %d\n", thread_pool().num_threads());
  struct C { const char* name; UnaryOp op; } cases[] = {{"relu", UnaryOp::Relu}, {"gelu", UnaryOp::GeluErf}, {"gelu_tanh", UnaryOp::GeluTanh}, {"silu", UnaryOp::Silu}, {"exp", UnaryOp::Exp}, {"sigmoid", UnaryOp::Sigmoid}, {"tanh", UnaryOp::Tanh}, {"log", UnaryOp::Log}};
  Tensor a = (rand({n}, DType::Float32, g)).contiguous(), b = (rand({n}, DType::Float32, g)).contiguous();
  auto time = [&](auto fn) {
    double best = 1e9;
    for (int rep = 0; rep < 7; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      for (int k = 0; k < 10; ++k) fn();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 10);
    }
    return best * 1e3;  // ms
  };
  printf("%-10s %10s %10s %10s %8s\n", "op", "ref ms", "avx2 ms", "avx512 ms", "speedup");
  for (auto& c : cases) {
    double t[3];
    for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512}) {
      set_cpu_isa(isa);
      t[int(isa)] = time([&] { unary_kernel.cpu(y, x, c.op, 0, 0); });
    }
    printf("%-10s %10.3f %10.3f %10.3f %7.1fx\n", c.name, t[0], t[1], t[2], t[0] / t[2]);
  }
  double t[3];
  for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512}) {
    set_cpu_isa(isa);
    t[int(isa)] = time([&] { binary_kernel.cpu(y, a, b, BinaryOp::Add); });
  }
  printf("%-10s %10.3f %10.3f %10.3f %7.1fx\n", "add", t[0], t[1], t[2], t[0] / t[2]);
  for (CpuIsa isa : {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512}) {
    set_cpu_isa(isa);
    NoGradGuard ng;
    t[int(isa)] = time([&] { a.add_(b, -1e-3); });
  }
  printf("%-10s %10.3f %10.3f %10.3f %7.1fx\n", "add_(a=-1e-3)", t[0], t[1], t[2], t[0] / t[2]);
}
