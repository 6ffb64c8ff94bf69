// ctest compiled_kernels_missing: built with GRAFT_COMPILED_KERNELS but without the unit that
// defines GRAFT_KERNELS_IMPLEMENTATION (kernels/graft_kernels.cpp), so every kernel slot stays
// empty. An op must then throw, saying what is missing, instead of crashing on a null pointer.
#include "graft/ops/matmul.hpp"

#include <cstdio>
#include <string>

int main() {
  const graft::Tensor a = graft::ones({2, 2});
  try {
    (void)graft::matmul(a, a);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    const bool ok = what.find("GRAFT_KERNELS_IMPLEMENTATION") != std::string::npos &&
                    what.find("matmul") != std::string::npos;
    std::printf("compiled_kernels_missing: %s: %s\n", ok ? "ok" : "WRONG MESSAGE", what.c_str());
    return ok ? 0 : 1;
  }
  std::printf("compiled_kernels_missing: matmul ran with no kernel linked in\n");
  return 1;
}
