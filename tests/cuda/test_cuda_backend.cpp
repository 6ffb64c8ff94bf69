// CUDA backend against the CPU reference. Compiled by g++ (this file) and linked with
// cuda_backend.cu (nvcc): the ops below reach the CUDA kernels through the KernelSlots the .cu
// filled at static initialization. Exits 77 (ctest: skipped) when no GPU is visible. With --op-table
// it prints the kernel coverage table instead (this binary sees the CPU and the CUDA slots).
#include <cstdio>
#include <functional>
#include <string>

#include "graft/graft.hpp"
#include "graft/optim/adam.hpp"  // their kernel slots belong in --op-table too
#include "graft/optim/clip.hpp"

int graft_test_cuda_device_count();
int graft_test_cuda_runtime();  // cuda_backend.cu: allocator, streams, events, staged copies

using namespace graft;

namespace {
int passed = 0, failed = 0;

// |gpu - cpu| <= atol + rtol |cpu| per element (float32: 1e-5, 1e-4), NaN fails.
void check(const std::string& what, const Tensor& gpu, const Tensor& cpu) {
  const auto g = gpu.cpu().to_vector(), c = cpu.to_vector();
  bool ok = g.size() == c.size() && gpu.shape() == cpu.shape();
  for (size_t i = 0; ok && i < g.size(); ++i) ok = std::abs(g[i] - c[i]) <= 1e-5 + 1e-4 * std::abs(c[i]);
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
  (ok ? passed : failed)++;
}
}  // namespace

int main(int argc, char** argv) {
  // --op-table: the kernel coverage table of docs/ARCHITECTURE.md (tools/op_table.sh), needs no GPU.
  if (argc > 1 && std::string(argv[1]) == "--op-table") {
    std::fputs(kernel_coverage_table().c_str(), stdout);
    return 0;
  }
  if (graft_test_cuda_device_count() == 0) {
    std::printf("no CUDA device visible: skipping the CUDA backend tests\n");
    return 77;
  }
  const Device gpu = cuda(0);
  Generator gen(7);
  Tensor a = randn({33, 17}, DType::Float32, gen), b = randn({17}, DType::Float32, gen);
  check("copy round trip", a.to(gpu), a);
  check("transpose copy", a.to(gpu).transpose(0, 1).contiguous(), a.transpose(0, 1).contiguous());
  check("dtype conversion", a.to(gpu).to(DType::Float64), a.to(DType::Float64));
  check("broadcast add", a.to(gpu) + b.to(gpu), a + b);
  check("mul", a.to(gpu) * a.to(gpu), a * a);
  for (auto [name, fn] : std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>>{
           {"exp", [](const Tensor& x) { return exp(x); }},
           {"tanh", [](const Tensor& x) { return tanh(x); }},
           {"gelu", [](const Tensor& x) { return gelu(x); }},
           {"silu", [](const Tensor& x) { return silu(x); }},
           {"relu6", [](const Tensor& x) { return relu6(x * 4.0); }}})
    check(name, fn(a.to(gpu)), fn(a));
  check("sum over dim 0", sum(a.to(gpu), {0}), sum(a, {0}));
  check("sum all", sum(a.to(gpu)), sum(a));
  // Autograd on the GPU: d/dx sum(silu(x) * b) against the CPU.
  Tensor xg = a.to(gpu).set_requires_grad(), xc = a.clone().set_requires_grad();
  sum(silu(xg) * b.to(gpu)).backward();
  sum(silu(xc) * b).backward();
  check("silu backward", xg.grad(), xc.grad());
  failed += graft_test_cuda_runtime();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
