// graft/kernels/cuda/batch_norm.cuh - batch normalization forward and backward on the GPU: the slots'
// contracts of graft/ops/batch_norm.hpp (x, out, dout, dx contiguous [N, C, S]; weight, bias, dweight,
// dbias, running_mean, running_var [C] or undefined; mean, rstd [C]; training statistics, running
// statistics updated with momentum (unbiased variance), or frozen running statistics at eval).
//
// One block of 256 threads per channel: its N * S elements ((n C + c) S + s) are summed in double by
// the block (graft/kernels/cuda/reduce.cuh's block_sum), two passes for the mean and the biased
// variance, as the CPU reference; then the same block writes the normalized channel. The backward's
// two sums per channel likewise, then dx.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "graft/core/dtype.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"
#include "graft/kernels/cuda/reduce.cuh"

namespace graft::kernels::cuda {

namespace batch_norm_detail {
using reduce_detail::block_sum;
using reduce_detail::kReduceBlock;

// The block sum, on every thread.
__device__ inline double block_all_sum(double v) {
  __shared__ double total;
  v = block_sum(v);
  if (threadIdx.x == 0) total = v;
  __syncthreads();
  v = total;
  __syncthreads();  // total may be written again by the next call
  return v;
}

template <class T>
__global__ void __launch_bounds__(kReduceBlock) forward_channels(T* out, T* mean, T* rstd, const T* x, const T* w,
                                                                 const T* b, T* running_mean, T* running_var,
                                                                 int64_t N, int64_t C, int64_t S, bool training,
                                                                 double momentum, double eps) {
  const int64_t count = N * S;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    auto at = [&](int64_t e) { return ((e / S) * C + c) * S + e % S; };  // element e of channel c
    double mu, var;
    if (training) {
      double s = 0;
      for (int64_t e = threadIdx.x; e < count; e += kReduceBlock) s += double(x[at(e)]);
      mu = block_all_sum(s) / double(count);
      double q = 0;
      for (int64_t e = threadIdx.x; e < count; e += kReduceBlock) {
        const double d = double(x[at(e)]) - mu;
        q += d * d;
      }
      q = block_all_sum(q);
      var = q / double(count);
      if (threadIdx.x == 0) {
        const double unbiased = q / double(count - 1);
        if (running_mean) running_mean[c] = T((1.0 - momentum) * double(running_mean[c]) + momentum * mu);
        if (running_var) running_var[c] = T((1.0 - momentum) * double(running_var[c]) + momentum * unbiased);
      }
    } else {
      mu = double(running_mean[c]);
      var = double(running_var[c]);
    }
    const double rs = 1.0 / sqrt(var + eps);
    const double wc = w ? double(w[c]) : 1.0, bc = b ? double(b[c]) : 0.0;
    for (int64_t e = threadIdx.x; e < count; e += kReduceBlock) {
      const int64_t i = at(e);
      out[i] = T((double(x[i]) - mu) * rs * wc + bc);
    }
    if (threadIdx.x == 0) {
      mean[c] = T(mu);
      rstd[c] = T(rs);
    }
    __syncthreads();  // running_mean[c] read by every thread above (eval) before the next channel
  }
}

template <class T>
__global__ void __launch_bounds__(kReduceBlock) backward_channels(T* dx, T* dw, T* db, const T* dout, const T* x,
                                                                  const T* w, const T* mean, const T* rstd, int64_t N,
                                                                  int64_t C, int64_t S, bool training) {
  const int64_t count = N * S;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    auto at = [&](int64_t e) { return ((e / S) * C + c) * S + e % S; };
    const double mu = double(mean[c]), rs = double(rstd[c]), wc = w ? double(w[c]) : 1.0;
    double sd = 0, sdn = 0;
    for (int64_t e = threadIdx.x; e < count; e += kReduceBlock) {
      const int64_t i = at(e);
      sd += double(dout[i]);
      sdn += double(dout[i]) * (double(x[i]) - mu) * rs;
    }
    sd = block_all_sum(sd);
    sdn = block_all_sum(sdn);
    if (threadIdx.x == 0) {
      if (dw) dw[c] += T(sdn);
      if (db) db[c] += T(sd);
    }
    if (!dx) continue;
    const double dnorm_mean = training ? wc * sd / double(count) : 0.0;
    const double dnorm_norm_mean = training ? wc * sdn / double(count) : 0.0;
    for (int64_t e = threadIdx.x; e < count; e += kReduceBlock) {
      const int64_t i = at(e);
      const double norm = (double(x[i]) - mu) * rs;
      dx[i] = T(rs * (double(dout[i]) * wc - dnorm_mean - norm * dnorm_norm_mean));
    }
  }
}

}  // namespace batch_norm_detail

inline void batch_norm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                               const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                               const Tensor& running_var, int64_t N, int64_t C, int64_t S, bool training,
                               double momentum, double eps) {
  using namespace batch_norm_detail;
  if (C == 0) return;
  GRAFT_DISPATCH_FLOAT(x.dtype(), "batch_norm (cuda)", T, [&] {
    const KernelLaunch at(x.device());
    forward_channels<T><<<unsigned(C < 65535 ? C : 65535), kReduceBlock, 0, at.stream>>>(
        data_or_null<T>(out), data_or_null<T>(mean), data_or_null<T>(rstd), data_or_null<T>(x), data_or_null<T>(weight),
        data_or_null<T>(bias), data_or_null<T>(running_mean), data_or_null<T>(running_var), N, C, S, training, momentum,
        eps);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void batch_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                                const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                int64_t N, int64_t C, int64_t S, bool training) {
  using namespace batch_norm_detail;
  if (C == 0) return;
  GRAFT_DISPATCH_FLOAT(x.dtype(), "batch_norm_backward (cuda)", T, [&] {
    const KernelLaunch at(x.device());
    backward_channels<T><<<unsigned(C < 65535 ? C : 65535), kReduceBlock, 0, at.stream>>>(
        data_or_null<T>(dx), data_or_null<T>(dweight), data_or_null<T>(dbias), data_or_null<T>(dout), data_or_null<T>(x),
        data_or_null<T>(weight), data_or_null<T>(mean), data_or_null<T>(rstd), N, C, S, training);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace graft::kernels::cuda
