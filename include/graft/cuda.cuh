// graft/cuda.cuh - the CUDA backend. Include it in exactly one .cu file compiled by nvcc; code
// compiled by g++ then reaches these kernels through the ops' KernelSlots, which this header fills
// during static initialization.
//
//   // backend.cu (nvcc -std=c++20 -arch=sm_90a)
//   #include <graft/cuda.cuh>
//   // main.cpp (g++)
//   Tensor x = randn({1024}).to(graft::cuda());   // allocated with cudaMalloc
//   Tensor y = relu(x) * 2.0;                      // CUDA kernels
//
// Ops without a CUDA kernel yet throw "<op>: no kernel for device cuda:0" (never a silent CPU
// fallback). Covered so far: copies and dtype conversion, binary and unary elementwise (forward and
// backward), sum.
#pragma once
#include <cuda_runtime.h>

#include "graft/graft.hpp"
#include "graft/kernels/cuda/elementwise.cuh"

namespace graft {

class CudaAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    void* p = nullptr;
    GRAFT_CUDA_CHECK(cudaMalloc(&p, nbytes));
    return p;
  }
  void deallocate(void* p, size_t) override { cudaFree(p); }
  void copy_to_host(void* d, const void* s, size_t n) override {
    GRAFT_CUDA_CHECK(cudaMemcpy(d, s, n, cudaMemcpyDeviceToHost));
  }
  void copy_from_host(void* d, const void* s, size_t n) override {
    GRAFT_CUDA_CHECK(cudaMemcpy(d, s, n, cudaMemcpyHostToDevice));
  }
  void copy_within(void* d, const void* s, size_t n) override {
    GRAFT_CUDA_CHECK(cudaMemcpy(d, s, n, cudaMemcpyDeviceToDevice));
  }
  void fill_zero(void* d, size_t n) override { GRAFT_CUDA_CHECK(cudaMemset(d, 0, n)); }
};

inline CudaAllocator& cuda_allocator() {
  static CudaAllocator a;
  return a;
}

// Number of visible CUDA devices (0 when there is no GPU or driver).
inline int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

inline const bool graft_cuda_backend_registered = [] {
  g_allocators[static_cast<int>(DeviceType::CUDA)] = &cuda_allocator();
  copy_kernel.cuda = &kernels::cuda::copy_forward;
  binary_kernel.cuda = &kernels::cuda::binary_forward;
  unary_kernel.cuda = &kernels::cuda::unary_forward;
  unary_backward_kernel.cuda = &kernels::cuda::unary_backward;
  sum_kernel.cuda = &kernels::cuda::sum_forward;
  return true;
}();

}  // namespace graft
