// graft/kernels/cuda/common.cuh - what the CUDA kernels share: error checking, the device and stream
// a launch goes to (KernelLaunch), the strided-index helper.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "graft/core/device.hpp"
#include "graft/core/error.hpp"
#include "graft/core/shape.hpp"
#include "graft/core/stream.hpp"

#define GRAFT_CUDA_CHECK(expr)                                                                  \
  do {                                                                                          \
    cudaError_t graft_err_ = (expr);                                                            \
    if (graft_err_ != cudaSuccess)                                                              \
      throw ::graft::Error(::graft::detail::concat("CUDA: ", #expr, " failed: ",                \
                                                   cudaGetErrorString(graft_err_)));            \
  } while (0)

namespace graft {

// cudaSetDevice(index) for the guard's scope; the previous device is restored after.
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int index) {
    GRAFT_CUDA_CHECK(cudaGetDevice(&previous_));
    if (index != previous_) GRAFT_CUDA_CHECK(cudaSetDevice(index));
    current_ = index;
  }
  ~CudaDeviceGuard() {
    if (current_ != previous_) (void)cudaSetDevice(previous_);
  }
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = 0, current_ = 0;
};

// The stream this thread's work on device d goes to (the default stream unless a CudaStreamGuard,
// graft/cuda/runtime.cuh, set another).
inline cudaStream_t cuda_current_stream(Device d) { return reinterpret_cast<cudaStream_t>(current_stream_id(d)); }

}  // namespace graft

namespace graft::kernels::cuda {

// Where a kernel on tensors of device d runs: d is the current device for the scope, and `stream`
// is this thread's current stream of d.
//   KernelLaunch at(out.device());
//   my_kernel<<<grid, block, 0, at.stream>>>(...);
struct KernelLaunch {
  explicit KernelLaunch(Device d) : guard(d.index), stream(cuda_current_stream(d)) {}
  CudaDeviceGuard guard;
  cudaStream_t stream;
};

// Shape and strides passed by value to kernels (<= 8 dims).
struct Strided {
  int rank;
  int64_t size[kMaxDims];
  int64_t stride[kMaxDims];
};

inline Strided make_strided(const Shape& shape, const Shape& strides) {
  Strided s{};
  s.rank = shape.rank();
  for (int i = 0; i < shape.rank(); ++i) {
    s.size[i] = shape[i];
    s.stride[i] = strides[i];
  }
  return s;
}

// Offset of row-major element `linear` of s.size in the layout s.stride.
__device__ inline int64_t strided_offset(const Strided& s, int64_t linear) {
  int64_t off = 0;
  for (int d = s.rank - 1; d >= 0; --d) {
    const int64_t i = linear % s.size[d];
    linear /= s.size[d];
    off += i * s.stride[d];
  }
  return off;
}

inline unsigned grid_for(int64_t n, unsigned block) {
  const int64_t g = (n + block - 1) / block;
  return static_cast<unsigned>(g < 65535 * 32 ? g : 65535 * 32);
}

}  // namespace graft::kernels::cuda
