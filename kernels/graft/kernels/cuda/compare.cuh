// graft/kernels/cuda/compare.cuh - comparisons and where on the GPU: the slots' contracts of
// graft/ops/elementwise.hpp (out contiguous, operands broadcast to its shape with their own strides).
//   compare_forward(out bool, a, b, op): out = a op b, compared in double as the CPU reference does.
//   where_forward(out, cond bool, a, b): out = cond ? a : b.
// Dtypes: float32, float64, int32, int64 and bool (the 16-bit floats have no device conversions
// here yet, and throw naming the op).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "graft/core/dtype.hpp"
#include "graft/core/scalar_ops.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"

namespace graft::kernels::cuda {

namespace compare_detail {
// f(T{}) for the dtypes the device kernels take.
template <class F>
void with_device_dtype(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::Float32: return f(float{});
    case DType::Float64: return f(double{});
    case DType::Int32: return f(int32_t{});
    case DType::Int64: return f(int64_t{});
    case DType::Bool: return f(bool{});
    default: break;
  }
  throw Error(detail::concat(op, " (cuda): dtype ", dtype_name(dt), " not supported on the GPU yet"));
}

template <class T>
__global__ void compare_kernel(bool* out, const T* a, Strided as, const T* b, Strided bs, int64_t n, CompareOp op) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double x = double(a[strided_offset(as, i)]), y = double(b[strided_offset(bs, i)]);
    bool r = false;
    switch (op) {
      case CompareOp::Eq: r = x == y; break;
      case CompareOp::Ne: r = x != y; break;
      case CompareOp::Lt: r = x < y; break;
      case CompareOp::Le: r = x <= y; break;
      case CompareOp::Gt: r = x > y; break;
      case CompareOp::Ge: r = x >= y; break;
    }
    out[i] = r;
  }
}

template <class T>
__global__ void where_kernel(T* out, const bool* c, Strided cs, const T* a, Strided as, const T* b, Strided bs,
                             int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = c[strided_offset(cs, i)] ? a[strided_offset(as, i)] : b[strided_offset(bs, i)];
}
constexpr unsigned kCompareBlock = 256;
}  // namespace compare_detail

inline void compare_forward(const Tensor& out, const Tensor& a, const Tensor& b, CompareOp op) {
  using namespace compare_detail;
  const int64_t n = out.numel();
  if (n == 0) return;
  with_device_dtype(a.dtype(), "compare", [&](auto zero) {
    using T = decltype(zero);
    const KernelLaunch at(out.device());
    compare_detail::compare_kernel<T><<<grid_for(n, kCompareBlock), kCompareBlock, 0, at.stream>>>(
        static_cast<bool*>(out.data_ptr()), static_cast<const T*>(a.data_ptr()), make_strided(a.shape(), a.strides()),
        static_cast<const T*>(b.data_ptr()), make_strided(b.shape(), b.strides()), n, op);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void where_forward(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  using namespace compare_detail;
  const int64_t n = out.numel();
  if (n == 0) return;
  with_device_dtype(out.dtype(), "where", [&](auto zero) {
    using T = decltype(zero);
    const KernelLaunch at(out.device());
    compare_detail::where_kernel<T><<<grid_for(n, kCompareBlock), kCompareBlock, 0, at.stream>>>(
        static_cast<T*>(out.data_ptr()), static_cast<const bool*>(cond.data_ptr()),
        make_strided(cond.shape(), cond.strides()), static_cast<const T*>(a.data_ptr()),
        make_strided(a.shape(), a.strides()), static_cast<const T*>(b.data_ptr()), make_strided(b.shape(), b.strides()),
        n);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace graft::kernels::cuda
