// The one .cu file of the CUDA test program: the runtime's own checks (graft/cuda/runtime.cuh is
// nvcc-only), which test_cuda_core.cpp calls. The kernels and the filled KernelSlots come from
// graft::cuda_backend (kernels/graft_cuda_backend.cu, which includes <graft/cuda.cuh>).
#include "graft/cuda/runtime.cuh"
#include "graft/graft.hpp"
#include "graft/kernels/cuda/dropout.cuh"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

int graft_test_cuda_device_count() { return graft::cuda_device_count(); }

namespace {
int runtime_failed = 0;

// Philox4x32-10 at counter 0 / key 0 and counter 2^32-1 x 4 / key 2^32-1 x 2 (Random123's known answers).
__global__ void philox_known_answers(uint32_t* out) {
  using graft::kernels::cuda::dropout_detail::philox4x32_10;
  using graft::kernels::cuda::dropout_detail::U32x4;
  const U32x4 a = philox4x32_10(U32x4{{0u, 0u, 0u, 0u}}, 0u, 0u);
  const U32x4 b = philox4x32_10(U32x4{{~0u, ~0u, ~0u, ~0u}}, ~0u, ~0u);
  for (int i = 0; i < 4; ++i) {
    out[i] = a.v[i];
    out[4 + i] = b.v[i];
  }
}
void expect(bool ok, const std::string& what) {
  std::printf("%s runtime: %s\n", ok ? "PASS" : "FAIL", what.c_str());
  if (!ok) ++runtime_failed;
}
std::string what_of(void (*f)()) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}
}  // namespace

// The caching allocator, streams, events and staged copies on GPU 0; returns the number of failures.
int graft_test_cuda_runtime() {
  using namespace graft;
  const Device gpu = cuda(0);
  runtime_failed = 0;
  {
    // A freed block is reused for the next request of its size on the same stream: no cudaMalloc.
    cuda_empty_cache();
    const BlockAllocatorStats s0 = cuda_memory_stats(gpu);
    void* p = nullptr;
    {
      Tensor t = empty({1000}, DType::Float32, gpu);
      p = t.data_ptr();
    }
    Tensor u = empty({1000}, DType::Float32, gpu);
    const BlockAllocatorStats s1 = cuda_memory_stats(gpu);
    expect(u.data_ptr() == p && s1.backend_allocs == s0.backend_allocs + 1 && s1.cache_hits >= s0.cache_hits + 1,
           "a freed block is handed out again without cudaMalloc");
    expect(s1.allocated_bytes >= 4000 && s1.reserved_bytes >= s1.allocated_bytes, "statistics count the block");
  }
  cuda_empty_cache();
  expect(cuda_memory_stats(gpu).reserved_bytes == 0, "empty_cache returns every unused segment");
  {
    // Copies above the 1 MiB staging buffers, of a size no chunk divides, both ways, exact.
    const int64_t n = 3 * (1 << 18) + 12345;  // floats: about 3 MiB
    Tensor h = arange(0.0, double(n), 1.0, DType::Float32);
    const Tensor back = h.to(gpu).cpu();
    expect(back.to_vector() == h.to_vector(), "staged host->device->host copy of 3 MiB + 48 KiB is exact");
  }
  {
    // Work on a non-default stream, read back after: the same values as on the default stream.
    CudaStream s(gpu);
    Tensor x = randn({4096}).to(gpu), y;
    {
      CudaStreamGuard g(s);
      y = relu(x) * 2.0;
    }
    expect(current_stream_id(gpu) == 0, "the stream guard restores the default stream");
    s.synchronize();
    expect(y.cpu().to_vector() == (relu(x.cpu()) * 2.0).to_vector(), "kernels on a CudaStream");
    CudaEvent a(true), b(true);
    a.record(s);
    b.record(s);
    b.synchronize();
    expect(b.query() && b.elapsed_ms(a) >= 0.0f, "events record, synchronize and time");
  }
  {
    uint32_t* d = nullptr;
    uint32_t h[8] = {};
    const bool ran = cudaMalloc(&d, sizeof h) == cudaSuccess &&
                     (philox_known_answers<<<1, 1>>>(d), cudaGetLastError() == cudaSuccess) &&
                     cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess;
    cudaFree(d);
    const uint32_t want[8] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u,
                              0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu};
    expect(ran && std::memcmp(h, want, sizeof h) == 0, "dropout's Philox4x32-10 gives Random123's known answers");
  }
  expect(what_of([] { (void)ones({4}).to(cuda(63)); }).find("no such device") != std::string::npos,
         "a device index past the visible GPUs is refused by name");
  return runtime_failed;
}
