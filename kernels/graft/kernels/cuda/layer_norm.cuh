// graft/kernels/cuda/layer_norm.cuh - layer normalization forward and backward on the GPU: the
// slots' contracts of graft/ops/layer_norm.hpp (x, out, dout, dx contiguous [M, N]; weight, bias,
// dweight, dbias [N] or undefined; mean, rstd [M]; dweight and dbias accumulated into).
//
// Rows (forward, dx): one warp per row, as llm.c's layernorm kernels; lanes stride the row, shuffles
// combine the sums. Statistics are carried in double in two passes (mean, then the biased variance),
// as the CPU reference does. dweight / dbias: one thread per column walking every row (consecutive
// threads read consecutive columns), summed in double.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "graft/core/dtype.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"

namespace graft::kernels::cuda {

namespace layer_norm_detail {
constexpr int kRowsPerBlock = 8, kLnBlock = 32 * kRowsPerBlock;

template <class T>
__global__ void __launch_bounds__(kLnBlock) forward_rows(T* out, T* mean, T* rstd, const T* x, const T* w, const T* b,
                                                         int64_t M, int64_t N, double eps) {
  const int lane = int(threadIdx.x) % 32;
  for (int64_t m = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32; m < M;
       m += int64_t(gridDim.x) * kRowsPerBlock) {
    const T* row = x + m * N;
    double mu = 0;
    for (int64_t j = lane; j < N; j += 32) mu += double(row[j]);
    mu = warp_all_sum(mu) / double(N);
    double var = 0;
    for (int64_t j = lane; j < N; j += 32) var += (double(row[j]) - mu) * (double(row[j]) - mu);
    var = warp_all_sum(var) / double(N);
    const double rs = 1.0 / sqrt(var + eps);
    for (int64_t j = lane; j < N; j += 32) {
      const double norm = (double(row[j]) - mu) * rs;
      out[m * N + j] = T(norm * (w ? double(w[j]) : 1.0) + (b ? double(b[j]) : 0.0));
    }
    if (lane == 0) {
      mean[m] = T(mu);
      rstd[m] = T(rs);
    }
  }
}

template <class T>
__global__ void __launch_bounds__(kLnBlock) backward_rows(T* dx, const T* dout, const T* x, const T* w, const T* mean,
                                                          const T* rstd, int64_t M, int64_t N) {
  const int lane = int(threadIdx.x) % 32;
  for (int64_t m = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32; m < M;
       m += int64_t(gridDim.x) * kRowsPerBlock) {
    const T* row = x + m * N;
    const T* drow = dout + m * N;
    const double mu = double(mean[m]), rs = double(rstd[m]);
    double dnorm_mean = 0, dnorm_norm_mean = 0;
    for (int64_t j = lane; j < N; j += 32) {
      const double dnorm = double(drow[j]) * (w ? double(w[j]) : 1.0);
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * (double(row[j]) - mu) * rs;
    }
    dnorm_mean = warp_all_sum(dnorm_mean) / double(N);
    dnorm_norm_mean = warp_all_sum(dnorm_norm_mean) / double(N);
    for (int64_t j = lane; j < N; j += 32) {
      const double norm = (double(row[j]) - mu) * rs;
      const double dnorm = double(drow[j]) * (w ? double(w[j]) : 1.0);
      dx[m * N + j] = T(rs * (dnorm - dnorm_mean - norm * dnorm_norm_mean));
    }
  }
}

template <class T>
__global__ void backward_columns(T* dw, T* db, const T* dout, const T* x, const T* mean, const T* rstd, int64_t M,
                                 int64_t N) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < N; j += int64_t(gridDim.x) * blockDim.x) {
    double sw = 0, sb = 0;
    for (int64_t m = 0; m < M; ++m) {
      const double d = double(dout[m * N + j]);
      sw += d * (double(x[m * N + j]) - double(mean[m])) * double(rstd[m]);
      sb += d;
    }
    if (dw) dw[j] += T(sw);
    if (db) db[j] += T(sb);
  }
}

}  // namespace layer_norm_detail

inline void layer_norm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                               const Tensor& weight, const Tensor& bias, int64_t M, int64_t N, double eps) {
  using namespace layer_norm_detail;
  if (M == 0) return;
  GRAFT_DISPATCH_FLOAT(x.dtype(), "layer_norm (cuda)", T, [&] {
    const KernelLaunch at(out.device());
    forward_rows<T><<<blocks_for_rows(M, kRowsPerBlock), kLnBlock, 0, at.stream>>>(
        static_cast<T*>(out.data_ptr()), static_cast<T*>(mean.data_ptr()), static_cast<T*>(rstd.data_ptr()),
        static_cast<const T*>(x.data_ptr()), data_or_null<T>(weight), data_or_null<T>(bias), M, N, eps);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void layer_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                                const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                int64_t M, int64_t N) {
  using namespace layer_norm_detail;
  if (M == 0 || N == 0) return;
  GRAFT_DISPATCH_FLOAT(x.dtype(), "layer_norm_backward (cuda)", T, [&] {
    const KernelLaunch at(x.device());
    const T* pdo = static_cast<const T*>(dout.data_ptr());
    const T* px = static_cast<const T*>(x.data_ptr());
    const T* pmean = static_cast<const T*>(mean.data_ptr());
    const T* prstd = static_cast<const T*>(rstd.data_ptr());
    if (dx.defined()) {
      backward_rows<T><<<blocks_for_rows(M, kRowsPerBlock), kLnBlock, 0, at.stream>>>(static_cast<T*>(dx.data_ptr()), pdo, px,
                                                                       data_or_null<T>(weight), pmean, prstd, M, N);
      GRAFT_CUDA_CHECK(cudaGetLastError());
    }
    if (dweight.defined() || dbias.defined()) {
      backward_columns<T><<<grid_for(N, 256), 256, 0, at.stream>>>(data_or_null<T>(dweight), data_or_null<T>(dbias),
                                                                   pdo, px, pmean, prstd, M, N);
      GRAFT_CUDA_CHECK(cudaGetLastError());
    }
  });
}

}  // namespace graft::kernels::cuda
