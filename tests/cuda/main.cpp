// The CUDA test program's main: Catch2 over the [cuda] test cases of tests/cuda/test_cuda_*.cpp,
// compiled by g++ and linked with cuda_backend.cu (nvcc), which fills the KernelSlots with the CUDA
// kernels at static initialization.
//   graft_cuda_tests                 every test case (bench/gpu/run.sh on the GPU machine)
//   graft_cuda_tests "<test name>"   one case (ctest runs each case so, by name)
//   graft_cuda_tests --op-table      the kernel coverage table of docs/ARCHITECTURE.md, no GPU needed
// Without a visible GPU a run that would execute test cases prints which ones it skips and exits 77,
// so ctest reports each [cuda] case as skipped by its name, never as passed. Listing (what ctest's
// discovery does at build time) works without a GPU.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

#include "graft/graft.hpp"
#include "graft/optim/adam.hpp"  // their kernel slots belong in --op-table too
#include "graft/optim/clip.hpp"

int graft_test_cuda_device_count();

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--op-table") {
    std::fputs(graft::kernel_coverage_table().c_str(), stdout);
    return 0;
  }
  bool listing = false;
  std::string selected;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--list", 0) == 0 || a == "-l" || a == "-h" || a == "--help") listing = true;
    if (!a.empty() && a[0] != '-') selected += (selected.empty() ? "" : " ") + a;
  }
  if (!listing && graft_test_cuda_device_count() == 0) {
    std::printf("SKIPPED (no CUDA device visible): %s\n", selected.empty() ? "every [cuda] test case" : selected.c_str());
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
