// graft/kernels/cuda/elementwise.cuh - CUDA twins of the elementwise reference kernels in
// graft/ops/elementwise.hpp and graft/ops/copy.hpp (the sum is in reduce.cuh). Same arguments,
// same math: the scalar functions graft::kernels::{binary_scalar, unary_scalar, unary_derivative}
// (graft/core/scalar_ops.hpp) are GRAFT_HOST_DEVICE and compiled for both. Includes core only.
// Grid-stride loops over the output's row-major index; operands carry their own strides.
#pragma once
#include "graft/kernels/cuda/common.cuh"
#include "graft/core/dtype.hpp"
#include "graft/core/error.hpp"
#include "graft/core/scalar_ops.hpp"
#include "graft/core/tensor.hpp"

namespace graft::kernels::cuda {

// out[i] = a[i] (op) b[i]; out contiguous [n], a/b broadcast strided views of out's shape.
template <class T>
__global__ void binary_kernel(T* out, const T* a, Strided sa, const T* b, Strided sb, int64_t n, BinaryOp op) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = ::graft::kernels::binary_scalar<T>(op, a[strided_offset(sa, i)], b[strided_offset(sb, i)]);
}

template <class T>
__global__ void unary_kernel(T* out, const T* x, int64_t n, UnaryOp op, T p0, T p1) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = ::graft::kernels::unary_scalar<T>(op, x[i], p0, p1);
}

template <class T>
__global__ void unary_backward_kernel(T* dfdx, const T* x, const T* y, int64_t n, UnaryOp op, T p0, T p1) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dfdx[i] = ::graft::kernels::unary_derivative<T>(op, x[i], y[i], p0, p1);
}

// dst (contiguous) = convert(src strided)
template <class D, class S>
__global__ void copy_kernel(D* dst, const S* src, Strided ss, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = static_cast<D>(src[strided_offset(ss, i)]);
}

constexpr unsigned kBlock = 256;

inline void binary_forward(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op) {
  GRAFT_DISPATCH_FLOAT(out.dtype(), "binary (cuda)", T, [&] {
    const int64_t n = out.numel();
    const KernelLaunch at(out.device());
    binary_kernel<T><<<grid_for(n, kBlock), kBlock, 0, at.stream>>>(static_cast<T*>(out.data_ptr()),
        static_cast<const T*>(a.data_ptr()), make_strided(a.shape(), a.strides()),
        static_cast<const T*>(b.data_ptr()), make_strided(b.shape(), b.strides()), n, op);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void unary_forward(const Tensor& out, const Tensor& x, UnaryOp op, double p0, double p1) {
  GRAFT_DISPATCH_FLOAT(out.dtype(), unary_name(op), T, [&] {
    const int64_t n = out.numel();
    const KernelLaunch at(out.device());
    unary_kernel<T><<<grid_for(n, kBlock), kBlock, 0, at.stream>>>(static_cast<T*>(out.data_ptr()),
        static_cast<const T*>(x.data_ptr()), n, op, T(p0), T(p1));
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void unary_backward(const Tensor& dfdx, const Tensor& x, const Tensor& y, UnaryOp op, double p0, double p1) {
  GRAFT_DISPATCH_FLOAT(dfdx.dtype(), unary_name(op), T, [&] {
    const int64_t n = dfdx.numel();
    const KernelLaunch at(dfdx.device());
    unary_backward_kernel<T><<<grid_for(n, kBlock), kBlock, 0, at.stream>>>(static_cast<T*>(dfdx.data_ptr()),
        static_cast<const T*>(x.data_ptr()), static_cast<const T*>(y.data_ptr()), n, op, T(p0), T(p1));
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void copy_forward(const Tensor& dst, const Tensor& src) {
  GRAFT_CHECK(dst.is_contiguous(), "copy (cuda)", "destination must be contiguous");
  GRAFT_DISPATCH_FLOAT(dst.dtype(), "copy (cuda)", D, [&] {
    GRAFT_DISPATCH_FLOAT(src.dtype(), "copy (cuda)", S, [&] {
      const int64_t n = dst.numel();
      const KernelLaunch at(dst.device());
      copy_kernel<D, S><<<grid_for(n, kBlock), kBlock, 0, at.stream>>>(static_cast<D*>(dst.data_ptr()),
          static_cast<const S*>(src.data_ptr()), make_strided(src.shape(), src.strides()), n);
      GRAFT_CUDA_CHECK(cudaGetLastError());
    });
  });
}

}  // namespace graft::kernels::cuda
