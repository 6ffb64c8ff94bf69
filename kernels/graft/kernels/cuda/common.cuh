// graft/kernels/cuda/common.cuh - what the CUDA kernels share: error checking, the device and stream
// a launch goes to (KernelLaunch), the strided-index helper.
#pragma once
#include <cuda_runtime.h>

#include <array>
#include <cstdint>

#include "graft/core/device.hpp"
#include "graft/core/error.hpp"
#include "graft/core/shape.hpp"
#include "graft/core/storage.hpp"
#include "graft/core/stream.hpp"
#include "graft/core/tensor.hpp"

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

// Warp-wide reductions (all 32 lanes take part): every lane gets the result. The max lets NaN win.
__device__ inline double warp_all_sum(double v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
template <class T>
__device__ inline T warp_all_max(T v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) {
    const T o = __shfl_xor_sync(0xffffffffu, v, off);
    v = o > v || o != o ? o : v;
  }
  return v;
}

// Blocks for a kernel that gives each warp one row, rows_per_block warps per block (grid-stride past
// the cap).
inline unsigned blocks_for_rows(int64_t rows, int rows_per_block) {
  const int64_t b = (rows + rows_per_block - 1) / rows_per_block;
  return unsigned(b < 65535 * 16 ? b : 65535 * 16);
}

// The data of t as T*, or nullptr for an undefined tensor (the optional operands: weight, bias, ...).
template <class T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

// For checks whose outcome the host must know (a bad index, a bad target): launch(result, stream)
// enqueues a kernel that writes N long longs to the device buffer `result`; they come back to the
// host (the stream is synchronized). The buffer is a block of the caching allocator.
template <int N, class Launch>
std::array<long long, N> fetch_from_device(Device d, Launch&& launch) {
  Allocator& alloc = allocator_for(d);
  auto* result = static_cast<long long*>(alloc.allocate(N * sizeof(long long), d));
  std::array<long long, N> host{};
  cudaError_t e;
  {
    const KernelLaunch at(d);
    launch(result, at.stream);
    e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaMemcpyAsync(host.data(), result, sizeof host, cudaMemcpyDeviceToHost, at.stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(at.stream);
  }
  alloc.deallocate(result, N * sizeof(long long), d);
  GRAFT_CUDA_CHECK(e);
  return host;
}

inline unsigned grid_for(int64_t n, unsigned block) {
  const int64_t g = (n + block - 1) / block;
  return static_cast<unsigned>(g < 65535 * 32 ? g : 65535 * 32);
}

}  // namespace graft::kernels::cuda
