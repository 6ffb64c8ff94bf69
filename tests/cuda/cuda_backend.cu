// The one .cu file of the CUDA test program: it fills the KernelSlots with the CUDA kernels, and
// holds the runtime's own checks (graft/cuda/runtime.cuh is nvcc-only), which test_cuda_backend.cpp
// calls.
#include <graft/cuda.cuh>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

int graft_test_cuda_device_count() { return graft::cuda_device_count(); }

namespace {
int runtime_failed = 0;
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
  expect(what_of([] { (void)ones({4}).to(cuda(63)); }).find("no such device") != std::string::npos,
         "a device index past the visible GPUs is refused by name");
  return runtime_failed;
}
