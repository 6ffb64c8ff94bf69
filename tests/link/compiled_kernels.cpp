// ctest compiled_kernels: a program built on graft::compiled (GRAFT_COMPILED_KERNELS, the kernels in
// kernels/graft_kernels.cpp only). Every public header is included, so every kernel slot defined
// anywhere is registered; each must have its CPU kernel once static initialization is over, or
// graft_kernels.cpp misses the header that defines it. Then a few ops run through the filled slots.
#include "all_public_headers.hpp"

#include <cstdio>
#include <string>

#ifndef GRAFT_COMPILED_KERNELS
#error "compiled_kernels must be built with GRAFT_COMPILED_KERNELS (link graft::compiled)"
#endif

int main() {
  int empty = 0;
  for (const auto& [name, info] : graft::kernel_slot_registry())
    if (!info.has_cpu()) {
      std::printf("compiled_kernels: slot %s has no CPU kernel: kernels/graft_kernels.cpp must include "
                  "the header that defines it\n", name.c_str());
      ++empty;
    }
  // matmul, linear (GEMM + fused epilogue) and softmax, against values worked out by hand.
  const graft::Tensor a = graft::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2});
  const graft::Tensor b = graft::from_vector(std::vector<float>{5, 6, 7, 8}, {2, 2});
  const std::vector<double> ab = graft::matmul(a, b).to_vector();                     // a b
  const std::vector<double> lin = graft::linear(a, b, graft::ones({2})).to_vector();  // a b^T + 1
  const std::vector<double> sm = graft::softmax(graft::zeros({4}), 0).to_vector();
  const bool ok = ab == std::vector<double>{19, 22, 43, 50} && lin == std::vector<double>{18, 24, 40, 54} &&
                  sm == std::vector<double>{0.25, 0.25, 0.25, 0.25};
  std::printf("compiled_kernels: %zu slots, %d without a CPU kernel; matmul, linear, softmax %s\n",
              graft::kernel_slot_registry().size(), empty, ok ? "ok" : "WRONG");
  return empty == 0 && ok ? 0 : 1;
}
