// graft/kernels/cuda/softmax.cuh - softmax and log_softmax over one dim on the GPU, forward and
// backward: the slots' contracts of graft/ops/softmax.hpp (x, y, dx, dy contiguous [outer, n, inner];
// each of the outer * inner rows is n elements `inner` apart).
//
// One warp per row (8 rows per block of 256 threads, grid-stride over the rows): the lanes stride the
// row, and warp shuffles combine the max and the sums. Sums are carried in double, as the CPU
// reference does; exp is CUDA's (expf: at most 2 ulp).
//   softmax:      y = exp(x - max) / sum exp(x - max)      dx = y * (dy - sum(dy * y))
//   log_softmax:  y = x - max - log(sum exp(x - max))      dx = dy - exp(y) * sum(dy)
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "graft/core/dtype.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"

namespace graft::kernels::cuda {

namespace softmax_detail {
constexpr int kRowsPerBlock = 8, kSoftmaxBlock = 32 * kRowsPerBlock;


// Calls f(base) for this warp's rows, base = the offset of the row's first element.
template <class F>
__device__ inline void for_each_warp_row(int64_t outer, int64_t n, int64_t inner, F&& f) {
  const int64_t rows = outer * inner, warps = int64_t(gridDim.x) * kRowsPerBlock;
  for (int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32; r < rows; r += warps)
    f((r / inner) * n * inner + r % inner);
}

template <class T, bool kLog>
__global__ void __launch_bounds__(kSoftmaxBlock) softmax_rows(T* y, const T* x, int64_t outer, int64_t n, int64_t inner) {
  const int lane = int(threadIdx.x) % 32;
  for_each_warp_row(outer, n, inner, [&](int64_t base) {
    T mx = -INFINITY;
    for (int64_t k = lane; k < n; k += 32) {
      const T v = x[base + k * inner];
      mx = v > mx || v != v ? v : mx;  // NaN wins (the row comes out NaN either way, as in the reference)
    }
    mx = warp_all_max(mx);
    double sum = 0;
    for (int64_t k = lane; k < n; k += 32) {
      const T e = exp(x[base + k * inner] - mx);
      if (!kLog) y[base + k * inner] = e;
      sum += double(e);
    }
    sum = warp_all_sum(sum);
    if (kLog) {
      const T log_sum = T(log(sum));
      for (int64_t k = lane; k < n; k += 32) y[base + k * inner] = x[base + k * inner] - mx - log_sum;
    } else {
      const T inv = T(1.0 / sum);
      __syncwarp();
      for (int64_t k = lane; k < n; k += 32) y[base + k * inner] *= inv;
    }
  });
}

template <class T, bool kLog>
__global__ void __launch_bounds__(kSoftmaxBlock) softmax_backward_rows(T* dx, const T* dy, const T* y, int64_t outer,
                                                                       int64_t n, int64_t inner) {
  const int lane = int(threadIdx.x) % 32;
  for_each_warp_row(outer, n, inner, [&](int64_t base) {
    double acc = 0;  // softmax: sum dy * y; log_softmax: sum dy
    for (int64_t k = lane; k < n; k += 32) {
      const int64_t j = base + k * inner;
      acc += kLog ? double(dy[j]) : double(dy[j]) * double(y[j]);
    }
    const T s = T(warp_all_sum(acc));
    for (int64_t k = lane; k < n; k += 32) {
      const int64_t j = base + k * inner;
      dx[j] = kLog ? dy[j] - exp(y[j]) * s : y[j] * (dy[j] - s);
    }
  });
}

template <bool kLog>
inline void forward(const Tensor& y, const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  if (outer * inner == 0 || n == 0) return;
  GRAFT_DISPATCH_FLOAT(x.dtype(), kLog ? "log_softmax (cuda)" : "softmax (cuda)", T, [&] {
    const KernelLaunch at(y.device());
    softmax_rows<T, kLog><<<blocks_for_rows(outer * inner, kRowsPerBlock), kSoftmaxBlock, 0, at.stream>>>(
        static_cast<T*>(y.data_ptr()), static_cast<const T*>(x.data_ptr()), outer, n, inner);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

template <bool kLog>
inline void backward(const Tensor& dx, const Tensor& dy, const Tensor& y, int64_t outer, int64_t n, int64_t inner) {
  if (outer * inner == 0 || n == 0) return;
  GRAFT_DISPATCH_FLOAT(y.dtype(), kLog ? "log_softmax_backward (cuda)" : "softmax_backward (cuda)", T, [&] {
    const KernelLaunch at(dx.device());
    softmax_backward_rows<T, kLog><<<blocks_for_rows(outer * inner, kRowsPerBlock), kSoftmaxBlock, 0, at.stream>>>(
        static_cast<T*>(dx.data_ptr()), static_cast<const T*>(dy.data_ptr()), static_cast<const T*>(y.data_ptr()),
        outer, n, inner);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}
}  // namespace softmax_detail

inline void softmax_forward(const Tensor& y, const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  softmax_detail::forward<false>(y, x, outer, n, inner);
}
inline void log_softmax_forward(const Tensor& y, const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  softmax_detail::forward<true>(y, x, outer, n, inner);
}
inline void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, int64_t outer, int64_t n,
                             int64_t inner) {
  softmax_detail::backward<false>(dx, dy, y, outer, n, inner);
}
inline void log_softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, int64_t outer, int64_t n,
                                 int64_t inner) {
  softmax_detail::backward<true>(dx, dy, y, outer, n, inner);
}

}  // namespace graft::kernels::cuda
