// graft/kernels/cuda/loss.cuh - the losses on the GPU: cross-entropy (its target check, forward and
// backward; logits [N, C, S] contiguous, target [N, S] int64, weight [C] or undefined; loss and lse
// [N * S]; ignore_index and label smoothing as in PyTorch), binary cross-entropy with logits and the
// squared error (elementwise, a thread per element, the CPU reference's formulas; dloss may have
// stride 0). The slots' contracts are graft/ops/loss.hpp's.
//
// Forward and backward: one warp per position (n, s), its lanes striding the C logits (S apart);
// the max, the sum of exponentials and the smoothing sum are carried in double and combined by
// shuffles, the CPU reference's formulas. The target check (every target in [0, C) or ignore_index)
// and the mean's divisor (the weights of the kept targets) run on the GPU too: one block, a fixed
// order, so the divisor's bits repeat; only its three results are copied back.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "graft/core/dtype.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"

namespace graft::kernels::cuda {

namespace loss_detail {
constexpr int kRowsPerBlock = 8, kLossBlock = 32 * kRowsPerBlock, kCheckBlock = 1024;

template <class T>
__global__ void __launch_bounds__(kLossBlock) ce_forward(T* loss, T* lse, const T* x, const int64_t* y, const T* w,
                                                         int64_t N, int64_t C, int64_t S, int64_t ignore_index,
                                                         double eps) {
  const int lane = int(threadIdx.x) % 32;
  for (int64_t i = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32; i < N * S;
       i += int64_t(gridDim.x) * kRowsPerBlock) {
    const T* row = x + (i / S) * C * S + i % S;  // row[c * S] = logits[n, c, s]
    double m = -INFINITY;
    for (int64_t c = lane; c < C; c += 32) m = fmax(m, double(row[c * S]));
    m = warp_all_max(m);
    double sumexp = 0;
    for (int64_t c = lane; c < C; c += 32) sumexp += exp(double(row[c * S]) - m);
    const double l = m + log(warp_all_sum(sumexp));
    const int64_t t = y[i];
    double smooth = 0;
    if (eps > 0.0 && t != ignore_index) {
      for (int64_t c = lane; c < C; c += 32) smooth -= (w ? double(w[c]) : 1.0) * (double(row[c * S]) - l);
      smooth = warp_all_sum(smooth);
    }
    if (lane == 0) {
      lse[i] = T(l);
      if (t == ignore_index) {
        loss[i] = T(0);
      } else {
        const double wy = w ? double(w[t]) : 1.0;
        double value = (1.0 - eps) * -wy * (double(row[t * S]) - l);
        if (eps > 0.0) value += eps / double(C) * smooth;
        loss[i] = T(value);
      }
    }
  }
}

template <class T>
__global__ void __launch_bounds__(kLossBlock) ce_backward(T* dx, const T* dl, int64_t dl_stride, const T* x,
                                                          const T* lse, const int64_t* y, const T* w, int64_t N,
                                                          int64_t C, int64_t S, int64_t ignore_index, double eps) {
  const int lane = int(threadIdx.x) % 32;
  double wsum = double(C);
  if (w) {
    wsum = 0;
    for (int64_t c = lane; c < C; c += 32) wsum += double(w[c]);
    wsum = warp_all_sum(wsum);
  }
  for (int64_t i = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32; i < N * S;
       i += int64_t(gridDim.x) * kRowsPerBlock) {
    const int64_t off = (i / S) * C * S + i % S;
    const int64_t t = y[i];
    if (t == ignore_index) {
      for (int64_t c = lane; c < C; c += 32) dx[off + c * S] = T(0);
      continue;
    }
    const double g = double(dl[i * dl_stride]);
    const double a = (1.0 - eps) * (w ? double(w[t]) : 1.0), b = eps / double(C);
    for (int64_t c = lane; c < C; c += 32) {
      const double p = exp(double(x[off + c * S]) - double(lse[i]));
      const double wc = w ? double(w[c]) : 1.0;
      dx[off + c * S] = T(g * (a * (p - (c == t ? 1.0 : 0.0)) + b * (wsum * p - wc)));
    }
  }
}

// result[0] = the first position whose target is neither in [0, C) nor ignore_index (or -1),
// result[1] = its target, result[2] = the sum of the kept targets' weights (as a double's bits).
template <class T>
__global__ void __launch_bounds__(kCheckBlock) ce_targets(long long* result, const int64_t* y, const T* w, int64_t n,
                                                          int64_t C, int64_t ignore_index) {
  __shared__ double wsums[kCheckBlock / 32];
  __shared__ long long firsts[kCheckBlock / 32];
  long long first = n;  // none
  double total = 0;
  for (int64_t i = threadIdx.x; i < n; i += kCheckBlock) {
    const int64_t t = y[i];
    if (t == ignore_index) continue;
    if (t < 0 || t >= C) {
      first = first < i ? first : i;
      continue;
    }
    total += w ? double(w[t]) : 1.0;
  }
  for (int off = 16; off > 0; off /= 2) {
    total += __shfl_down_sync(0xffffffffu, total, off);
    const long long o = __shfl_down_sync(0xffffffffu, first, off);
    first = o < first ? o : first;
  }
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  if (lane == 0) {
    wsums[warp] = total;
    firsts[warp] = first;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    long long f = n;
    for (int k = 0; k < kCheckBlock / 32; ++k) {
      t += wsums[k];
      f = firsts[k] < f ? firsts[k] : f;
    }
    result[0] = f == n ? -1 : f;
    result[1] = f == n ? 0 : y[f];
    result[2] = __double_as_longlong(t);
  }
}

template <class T>
__global__ void bce_forward(T* out, const T* x, const T* t, const T* pw, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double xi = double(x[i]), ti = double(t[i]);
    const double sp = fmax(-xi, 0.0) + log1p(exp(-fabs(xi)));
    const double L = pw ? 1.0 + (double(pw[i]) - 1.0) * ti : 1.0;
    out[i] = T((1.0 - ti) * xi + L * sp);
  }
}

template <class T>
__global__ void bce_backward(T* dx, T* dt, const T* dl, int64_t dl_stride, const T* x, const T* t, const T* pw,
                             int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double xi = double(x[i]), ti = double(t[i]), g = double(dl[i * dl_stride]);
    const double pwi = pw ? double(pw[i]) : 1.0;
    if (dx) {
      const double sig = xi >= 0 ? 1.0 / (1.0 + exp(-xi)) : exp(xi) / (1.0 + exp(xi));
      dx[i] = T(g * ((1.0 + (pwi - 1.0) * ti) * sig - pwi * ti));
    }
    if (dt) {
      const double sp = fmax(-xi, 0.0) + log1p(exp(-fabs(xi)));
      dt[i] = T(g * ((pwi - 1.0) * sp - xi));
    }
  }
}

template <class T>
__global__ void mse_forward(T* out, const T* a, const T* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = (a[i] - b[i]) * (a[i] - b[i]);
}

template <class T>
__global__ void mse_backward(T* da, T* db, const T* dl, int64_t dl_stride, const T* a, const T* b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const T g = T(2) * dl[i * dl_stride] * (a[i] - b[i]);
    if (da) da[i] = g;
    if (db) db[i] = -g;
  }
}

constexpr unsigned kElementBlock = 256;
// dloss [n], or a 0-d / broadcast gradient read with stride 0 (a mean's backward).
inline int64_t dloss_stride(const Tensor& dloss) { return dloss.numel() > 1 ? dloss.strides()[0] : 0; }
}  // namespace loss_detail

inline void bce_with_logits_forward(const Tensor& loss, const Tensor& logits, const Tensor& target,
                                    const Tensor& pos_weight) {
  using namespace loss_detail;
  const int64_t n = logits.numel();
  if (n == 0) return;
  GRAFT_DISPATCH_FLOAT(logits.dtype(), "binary_cross_entropy_with_logits (cuda)", T, [&] {
    const KernelLaunch at(logits.device());
    bce_forward<T><<<grid_for(n, kElementBlock), kElementBlock, 0, at.stream>>>(
        data_or_null<T>(loss), data_or_null<T>(logits), data_or_null<T>(target), data_or_null<T>(pos_weight), n);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void bce_with_logits_backward(const Tensor& dlogits, const Tensor& dtarget, const Tensor& dloss,
                                     const Tensor& logits, const Tensor& target, const Tensor& pos_weight) {
  using namespace loss_detail;
  const int64_t n = logits.numel();
  if (n == 0) return;
  const int64_t dl_stride = dloss_stride(dloss);
  GRAFT_DISPATCH_FLOAT(logits.dtype(), "binary_cross_entropy_with_logits_backward (cuda)", T, [&] {
    const KernelLaunch at(logits.device());
    bce_backward<T><<<grid_for(n, kElementBlock), kElementBlock, 0, at.stream>>>(
        data_or_null<T>(dlogits), data_or_null<T>(dtarget), data_or_null<T>(dloss), dl_stride, data_or_null<T>(logits),
        data_or_null<T>(target), data_or_null<T>(pos_weight), n);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void mse_loss_forward(const Tensor& loss, const Tensor& input, const Tensor& target) {
  using namespace loss_detail;
  const int64_t n = input.numel();
  if (n == 0) return;
  GRAFT_DISPATCH_FLOAT(input.dtype(), "mse_loss (cuda)", T, [&] {
    const KernelLaunch at(input.device());
    mse_forward<T><<<grid_for(n, kElementBlock), kElementBlock, 0, at.stream>>>(data_or_null<T>(loss), data_or_null<T>(input),
                                                                              data_or_null<T>(target), n);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void mse_loss_backward(const Tensor& dinput, const Tensor& dtarget, const Tensor& dloss, const Tensor& input,
                              const Tensor& target) {
  using namespace loss_detail;
  const int64_t n = input.numel();
  if (n == 0) return;
  const int64_t dl_stride = dloss_stride(dloss);
  GRAFT_DISPATCH_FLOAT(input.dtype(), "mse_loss_backward (cuda)", T, [&] {
    const KernelLaunch at(input.device());
    mse_backward<T><<<grid_for(n, kElementBlock), kElementBlock, 0, at.stream>>>(
        data_or_null<T>(dinput), data_or_null<T>(dtarget), data_or_null<T>(dloss), dl_stride, data_or_null<T>(input),
        data_or_null<T>(target), n);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& target,
                                  const Tensor& weight, int64_t ignore_index, double label_smoothing) {
  using namespace loss_detail;
  const int64_t N = logits.shape()[0], C = logits.shape()[1], S = logits.shape()[2];
  if (N * S == 0) return;
  GRAFT_DISPATCH_FLOAT(logits.dtype(), "cross_entropy (cuda)", T, [&] {
    const KernelLaunch at(logits.device());
    ce_forward<T><<<blocks_for_rows(N * S, kRowsPerBlock), kLossBlock, 0, at.stream>>>(
        static_cast<T*>(loss.data_ptr()), static_cast<T*>(lse.data_ptr()), static_cast<const T*>(logits.data_ptr()),
        static_cast<const int64_t*>(target.data_ptr()), data_or_null<const T>(weight),
        N, C, S, ignore_index, label_smoothing);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss, const Tensor& logits, const Tensor& lse,
                                   const Tensor& target, const Tensor& weight, int64_t ignore_index,
                                   double label_smoothing) {
  using namespace loss_detail;
  const int64_t N = logits.shape()[0], C = logits.shape()[1], S = logits.shape()[2];
  if (N * S == 0) return;
  const int64_t dl_stride = dloss_stride(dloss);
  GRAFT_DISPATCH_FLOAT(logits.dtype(), "cross_entropy_backward (cuda)", T, [&] {
    const KernelLaunch at(logits.device());
    ce_backward<T><<<blocks_for_rows(N * S, kRowsPerBlock), kLossBlock, 0, at.stream>>>(
        static_cast<T*>(dlogits.data_ptr()), static_cast<const T*>(dloss.data_ptr()), dl_stride,
        static_cast<const T*>(logits.data_ptr()), static_cast<const T*>(lse.data_ptr()),
        static_cast<const int64_t*>(target.data_ptr()), data_or_null<const T>(weight),
        N, C, S, ignore_index, label_smoothing);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

// The cross_entropy_targets slot (ops/loss.hpp): target [n] int64 contiguous, weight [C] or undefined.
inline void cross_entropy_targets(const Tensor& target, const Tensor& weight, int64_t C, int64_t ignore_index,
                                  int64_t* first_bad, int64_t* bad_value, double* total_weight) {
  using namespace loss_detail;
  const int64_t n = target.numel();
  *first_bad = -1;
  *bad_value = 0;
  *total_weight = 0;
  if (n == 0) return;
  std::array<long long, 3> r{};
  GRAFT_DISPATCH_FLOAT(weight.defined() ? weight.dtype() : DType::Float32, "cross_entropy (cuda)", T, [&] {
    r = fetch_from_device<3>(target.device(), [&](long long* result, cudaStream_t stream) {
      ce_targets<T><<<1, kCheckBlock, 0, stream>>>(result, static_cast<const int64_t*>(target.data_ptr()),
                                                   data_or_null<const T>(weight),
                                                   n, C, ignore_index);
    });
  });
  *first_bad = r[0];
  *bad_value = r[1];
  static_assert(sizeof(double) == sizeof(long long));
  std::memcpy(total_weight, &r[2], sizeof(double));
}

}  // namespace graft::kernels::cuda
