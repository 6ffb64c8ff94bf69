// graft/kernels/cuda/pool.cuh - 2-D pooling on the GPU: max (with its indices, backward and the
// gather of the quantized path), average and adaptive average, forward and backward. The slots'
// contracts of graft/ops/pool.hpp: x, out [N, C, H, W] / [N, C, OH, OW] contiguous, indices int64
// into each H x W plane.
//
// Forward: a thread per output element, the reference's loops over its window (max: the first tap
// starts, NaN wins; avg: in-image taps, the reference's divisor). Backward: a thread per plane walking
// its outputs in order and adding into dx, as the CPU reference does: overlapping windows add up in
// the same order, so the same bits and no atomics. (A thread per input element, gathering from the
// outputs whose windows hold it, would use more threads; this is the plain version.)
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "graft/core/dtype.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cpu/pool.hpp"  // PoolWindow2d
#include "graft/kernels/cuda/common.cuh"

namespace graft::kernels::cuda {

namespace pool_detail {
using cpu::PoolWindow2d;

__device__ inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

// cpu::avg_pool_divisor on the device.
__device__ inline int64_t avg_divisor(int64_t hs, int64_t ws, const PoolWindow2d& g) {
  const int64_t he = imin(hs + g.KH, g.H + g.PH), we = imin(ws + g.KW, g.W + g.PW);
  if (g.count_include_pad) return (he - hs) * (we - ws);
  return (imin(he, g.H) - imax(hs, 0)) * (imin(we, g.W) - imax(ws, 0));
}
__device__ inline int64_t adaptive_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
__device__ inline int64_t adaptive_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

template <class T>
__global__ void max_forward(T* out, int64_t* indices, const T* x, int64_t planes, PoolWindow2d g) {
  const int64_t n = planes * g.OH * g.OW;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n; o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t plane = o / (g.OH * g.OW), oh = (o / g.OW) % g.OH, ow = o % g.OW;
    const T* xp = x + plane * g.H * g.W;
    T best = -INFINITY;
    int64_t best_idx = -1;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      const int64_t ih = oh * g.SH - g.PH + kh * g.DH;
      if (ih < 0 || ih >= g.H) continue;
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t iw = ow * g.SW - g.PW + kw * g.DW;
        if (iw < 0 || iw >= g.W) continue;
        const T v = xp[ih * g.W + iw];
        if (best_idx < 0) best_idx = ih * g.W + iw;
        if (v > best || v != v) {
          best = v;
          best_idx = ih * g.W + iw;
        }
      }
    }
    out[o] = best;
    indices[o] = best_idx;
  }
}

template <class T>
__global__ void max_backward_planes(T* dx, const T* dout, const int64_t* indices, int64_t planes, int64_t HW,
                                    int64_t OHW) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < planes; p += int64_t(gridDim.x) * blockDim.x) {
    T* dxp = dx + p * HW;
    for (int64_t i = 0; i < HW; ++i) dxp[i] = T(0);
    for (int64_t o = 0; o < OHW; ++o) dxp[indices[p * OHW + o]] += dout[p * OHW + o];
  }
}

template <class T>
__global__ void max_gather(T* out, const T* src, const int64_t* indices, int64_t planes, int64_t HW, int64_t OHW) {
  const int64_t n = planes * OHW;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n; o += int64_t(gridDim.x) * blockDim.x)
    out[o] = src[(o / OHW) * HW + indices[o]];
}

template <class T>
__global__ void avg_forward(T* out, const T* x, int64_t planes, PoolWindow2d g) {
  const int64_t n = planes * g.OH * g.OW;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n; o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t plane = o / (g.OH * g.OW), oh = (o / g.OW) % g.OH, ow = o % g.OW;
    const T* xp = x + plane * g.H * g.W;
    const int64_t hs = oh * g.SH - g.PH, ws = ow * g.SW - g.PW;
    T s = T(0);
    for (int64_t ih = imax(hs, 0); ih < imin(hs + g.KH, g.H); ++ih)
      for (int64_t iw = imax(ws, 0); iw < imin(ws + g.KW, g.W); ++iw) s += xp[ih * g.W + iw];
    out[o] = s / T(avg_divisor(hs, ws, g));
  }
}

template <class T>
__global__ void avg_backward_planes(T* dx, const T* dout, int64_t planes, PoolWindow2d g) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < planes; p += int64_t(gridDim.x) * blockDim.x) {
    T* dxp = dx + p * g.H * g.W;
    for (int64_t i = 0; i < g.H * g.W; ++i) dxp[i] = T(0);
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const int64_t hs = oh * g.SH - g.PH, ws = ow * g.SW - g.PW;
        const T gr = dout[(p * g.OH + oh) * g.OW + ow] / T(avg_divisor(hs, ws, g));
        for (int64_t ih = imax(hs, 0); ih < imin(hs + g.KH, g.H); ++ih)
          for (int64_t iw = imax(ws, 0); iw < imin(ws + g.KW, g.W); ++iw) dxp[ih * g.W + iw] += gr;
      }
  }
}

template <class T>
__global__ void adaptive_forward(T* out, const T* x, int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  const int64_t n = planes * OH * OW;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n; o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t plane = o / (OH * OW), oh = (o / OW) % OH, ow = o % OW;
    const T* xp = x + plane * H * W;
    const int64_t hs = adaptive_start(oh, H, OH), he = adaptive_end(oh, H, OH);
    const int64_t ws = adaptive_start(ow, W, OW), we = adaptive_end(ow, W, OW);
    T s = T(0);
    for (int64_t ih = hs; ih < he; ++ih)
      for (int64_t iw = ws; iw < we; ++iw) s += xp[ih * W + iw];
    out[o] = s / T((he - hs) * (we - ws));
  }
}

template <class T>
__global__ void adaptive_backward_planes(T* dx, const T* dout, int64_t planes, int64_t H, int64_t W, int64_t OH,
                                         int64_t OW) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < planes; p += int64_t(gridDim.x) * blockDim.x) {
    T* dxp = dx + p * H * W;
    for (int64_t i = 0; i < H * W; ++i) dxp[i] = T(0);
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int64_t hs = adaptive_start(oh, H, OH), he = adaptive_end(oh, H, OH);
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t ws = adaptive_start(ow, W, OW), we = adaptive_end(ow, W, OW);
        const T gr = dout[(p * OH + oh) * OW + ow] / T((he - hs) * (we - ws));
        for (int64_t ih = hs; ih < he; ++ih)
          for (int64_t iw = ws; iw < we; ++iw) dxp[ih * W + iw] += gr;
      }
    }
  }
}

inline PoolWindow2d window(const Tensor& in, const Tensor& out, const Pool2dParams& p) {
  PoolWindow2d g;
  g.H = in.size(2), g.W = in.size(3), g.OH = out.size(2), g.OW = out.size(3);
  g.KH = p.kernel[0], g.KW = p.kernel[1], g.SH = p.stride[0], g.SW = p.stride[1];
  g.PH = p.padding[0], g.PW = p.padding[1], g.DH = p.dilation[0], g.DW = p.dilation[1];
  g.count_include_pad = p.count_include_pad;
  return g;
}
constexpr unsigned kPoolBlock = 256;
}  // namespace pool_detail

inline void max_pool2d_forward(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams& p) {
  using namespace pool_detail;
  const int64_t planes = x.size(0) * x.size(1);
  if (out.numel() == 0) return;
  GRAFT_DISPATCH_FLOAT(x.dtype(), "max_pool2d (cuda)", T, [&] {
    const KernelLaunch at(x.device());
    max_forward<T><<<grid_for(out.numel(), kPoolBlock), kPoolBlock, 0, at.stream>>>(
        static_cast<T*>(out.data_ptr()), static_cast<int64_t*>(indices.data_ptr()),
        static_cast<const T*>(x.data_ptr()), planes, window(x, out, p));
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void max_pool2d_backward(const Tensor& dx, const Tensor& dout, const Tensor& indices) {
  using namespace pool_detail;
  const int64_t planes = dx.size(0) * dx.size(1);
  if (dx.numel() == 0) return;
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "max_pool2d_backward (cuda)", T, [&] {
    const KernelLaunch at(dx.device());
    max_backward_planes<T><<<grid_for(planes, 64), 64, 0, at.stream>>>(
        static_cast<T*>(dx.data_ptr()), static_cast<const T*>(dout.data_ptr()),
        static_cast<const int64_t*>(indices.data_ptr()), planes, dx.size(2) * dx.size(3), dout.size(2) * dout.size(3));
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void max_pool2d_gather(const Tensor& out, const Tensor& src, const Tensor& indices) {
  using namespace pool_detail;
  if (out.numel() == 0) return;
  GRAFT_DISPATCH_FLOAT(out.dtype(), "max_pool2d_gather (cuda)", T, [&] {
    const KernelLaunch at(out.device());
    max_gather<T><<<grid_for(out.numel(), kPoolBlock), kPoolBlock, 0, at.stream>>>(
        static_cast<T*>(out.data_ptr()), static_cast<const T*>(src.data_ptr()),
        static_cast<const int64_t*>(indices.data_ptr()), out.size(0) * out.size(1), src.size(2) * src.size(3),
        out.size(2) * out.size(3));
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void avg_pool2d_forward(const Tensor& out, const Tensor& x, const Pool2dParams& p) {
  using namespace pool_detail;
  if (out.numel() == 0) return;
  GRAFT_DISPATCH_FLOAT(x.dtype(), "avg_pool2d (cuda)", T, [&] {
    const KernelLaunch at(x.device());
    avg_forward<T><<<grid_for(out.numel(), kPoolBlock), kPoolBlock, 0, at.stream>>>(
        static_cast<T*>(out.data_ptr()), static_cast<const T*>(x.data_ptr()), x.size(0) * x.size(1),
        window(x, out, p));
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void avg_pool2d_backward(const Tensor& dx, const Tensor& dout, const Pool2dParams& p) {
  using namespace pool_detail;
  const int64_t planes = dx.size(0) * dx.size(1);
  if (dx.numel() == 0) return;
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "avg_pool2d_backward (cuda)", T, [&] {
    const KernelLaunch at(dx.device());
    avg_backward_planes<T><<<grid_for(planes, 64), 64, 0, at.stream>>>(
        static_cast<T*>(dx.data_ptr()), static_cast<const T*>(dout.data_ptr()), planes, window(dx, dout, p));
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void adaptive_avg_pool2d_forward(const Tensor& out, const Tensor& x) {
  using namespace pool_detail;
  if (out.numel() == 0) return;
  GRAFT_DISPATCH_FLOAT(x.dtype(), "adaptive_avg_pool2d (cuda)", T, [&] {
    const KernelLaunch at(x.device());
    adaptive_forward<T><<<grid_for(out.numel(), kPoolBlock), kPoolBlock, 0, at.stream>>>(
        static_cast<T*>(out.data_ptr()), static_cast<const T*>(x.data_ptr()), x.size(0) * x.size(1), x.size(2),
        x.size(3), out.size(2), out.size(3));
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void adaptive_avg_pool2d_backward(const Tensor& dx, const Tensor& dout) {
  using namespace pool_detail;
  const int64_t planes = dx.size(0) * dx.size(1);
  if (dx.numel() == 0) return;
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "adaptive_avg_pool2d_backward (cuda)", T, [&] {
    const KernelLaunch at(dx.device());
    adaptive_backward_planes<T><<<grid_for(planes, 64), 64, 0, at.stream>>>(
        static_cast<T*>(dx.data_ptr()), static_cast<const T*>(dout.data_ptr()), planes, dx.size(2), dx.size(3),
        dout.size(2), dout.size(3));
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace graft::kernels::cuda
