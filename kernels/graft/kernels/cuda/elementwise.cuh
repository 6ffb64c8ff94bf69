// graft/kernels/cuda/elementwise.cuh - CUDA twins of the elementwise reference kernels in
// graft/ops/elementwise.hpp and graft/ops/copy.hpp (the sum is in reduce.cuh). Same arguments,
// same math: the scalar functions graft::kernels::{binary_scalar, unary_scalar, unary_derivative}
// (graft/core/scalar_ops.hpp) are GRAFT_HOST_DEVICE and compiled for both. Includes core only.
// Grid-stride loops over the output's row-major index; operands carry their own strides. Float32
// operands that are contiguous and 16-byte aligned (the usual case: whole tensors from the caching
// allocator) take the vectorized kernels instead: four elements per thread per step through float4
// loads and stores, no index arithmetic, the n % 4 tail one element at a time; a binary operand that
// is a broadcast scalar (every stride 0) is read once.
#pragma once
#include <cstdint>
#include <type_traits>

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

// ---- vectorized float32 paths ----
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
// Every stride 0: the operand is one value broadcast to the output's shape.
inline bool is_broadcast_scalar(const Tensor& t) {
  for (int d = 0; d < t.dim(); ++d)
    if (t.shape()[d] > 1 && t.strides()[d] != 0) return false;
  return true;
}
// Contiguous, of the output's size, and 16-byte aligned: float4 loads are valid.
inline bool vec4_ok(const Tensor& t, int64_t n) { return t.is_contiguous() && t.numel() == n && aligned16(t.data_ptr()); }

__device__ inline float4 map4(float4 v, UnaryOp op, float p0, float p1) {
  using ::graft::kernels::unary_scalar;
  return make_float4(unary_scalar<float>(op, v.x, p0, p1), unary_scalar<float>(op, v.y, p0, p1),
                     unary_scalar<float>(op, v.z, p0, p1), unary_scalar<float>(op, v.w, p0, p1));
}

// out = a (op) b, a contiguous; b contiguous, or (kScalarB) the one value b[0].
template <bool kScalarB>
__global__ void binary_vec4_kernel(float* out, const float* a, const float* b, int64_t n, BinaryOp op) {
  using ::graft::kernels::binary_scalar;
  const int64_t n4 = n / 4, first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, step = int64_t(gridDim.x) * blockDim.x;
  const float bs = kScalarB ? b[0] : 0.0f;
  for (int64_t i = first; i < n4; i += step) {
    const float4 x = reinterpret_cast<const float4*>(a)[i];
    const float4 y = kScalarB ? make_float4(bs, bs, bs, bs) : reinterpret_cast<const float4*>(b)[i];
    reinterpret_cast<float4*>(out)[i] = make_float4(binary_scalar<float>(op, x.x, y.x), binary_scalar<float>(op, x.y, y.y),
                                                    binary_scalar<float>(op, x.z, y.z), binary_scalar<float>(op, x.w, y.w));
  }
  for (int64_t i = 4 * n4 + first; i < n; i += step) out[i] = binary_scalar<float>(op, a[i], kScalarB ? bs : b[i]);
}

__global__ void unary_vec4_kernel(float* out, const float* x, int64_t n, UnaryOp op, float p0, float p1) {
  const int64_t n4 = n / 4, first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = first; i < n4; i += step)
    reinterpret_cast<float4*>(out)[i] = map4(reinterpret_cast<const float4*>(x)[i], op, p0, p1);
  for (int64_t i = 4 * n4 + first; i < n; i += step) out[i] = ::graft::kernels::unary_scalar<float>(op, x[i], p0, p1);
}

__global__ void unary_backward_vec4_kernel(float* dfdx, const float* x, const float* y, int64_t n, UnaryOp op, float p0,
                                           float p1) {
  using ::graft::kernels::unary_derivative;
  const int64_t n4 = n / 4, first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x, step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = first; i < n4; i += step) {
    const float4 a = reinterpret_cast<const float4*>(x)[i], b = reinterpret_cast<const float4*>(y)[i];
    reinterpret_cast<float4*>(dfdx)[i] =
        make_float4(unary_derivative<float>(op, a.x, b.x, p0, p1), unary_derivative<float>(op, a.y, b.y, p0, p1),
                    unary_derivative<float>(op, a.z, b.z, p0, p1), unary_derivative<float>(op, a.w, b.w, p0, p1));
  }
  for (int64_t i = 4 * n4 + first; i < n; i += step) dfdx[i] = unary_derivative<float>(op, x[i], y[i], p0, p1);
}

constexpr unsigned kBlock = 256;
// Blocks for a vectorized kernel: one float4 per thread (at least one block for the tail).
inline unsigned grid_for_vec4(int64_t n) { return grid_for(n / 4 > 0 ? n / 4 : 1, kBlock); }

inline void binary_forward(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op) {
  GRAFT_DISPATCH_FLOAT(out.dtype(), "binary (cuda)", T, [&] {
    const int64_t n = out.numel();
    const KernelLaunch at(out.device());
    if constexpr (std::is_same_v<T, float>) {
      const bool scalar_b = is_broadcast_scalar(b);
      if (aligned16(out.data_ptr()) && vec4_ok(a, n) && (scalar_b || vec4_ok(b, n))) {
        auto* o = static_cast<float*>(out.data_ptr());
        const auto *pa = static_cast<const float*>(a.data_ptr()), *pb = static_cast<const float*>(b.data_ptr());
        if (scalar_b)
          binary_vec4_kernel<true><<<grid_for_vec4(n), kBlock, 0, at.stream>>>(o, pa, pb, n, op);
        else
          binary_vec4_kernel<false><<<grid_for_vec4(n), kBlock, 0, at.stream>>>(o, pa, pb, n, op);
        GRAFT_CUDA_CHECK(cudaGetLastError());
        return;
      }
    }
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
    if constexpr (std::is_same_v<T, float>) {
      if (aligned16(out.data_ptr()) && aligned16(x.data_ptr())) {
        unary_vec4_kernel<<<grid_for_vec4(n), kBlock, 0, at.stream>>>(static_cast<float*>(out.data_ptr()),
            static_cast<const float*>(x.data_ptr()), n, op, float(p0), float(p1));
        GRAFT_CUDA_CHECK(cudaGetLastError());
        return;
      }
    }
    unary_kernel<T><<<grid_for(n, kBlock), kBlock, 0, at.stream>>>(static_cast<T*>(out.data_ptr()),
        static_cast<const T*>(x.data_ptr()), n, op, T(p0), T(p1));
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void unary_backward(const Tensor& dfdx, const Tensor& x, const Tensor& y, UnaryOp op, double p0, double p1) {
  GRAFT_DISPATCH_FLOAT(dfdx.dtype(), unary_name(op), T, [&] {
    const int64_t n = dfdx.numel();
    const KernelLaunch at(dfdx.device());
    if constexpr (std::is_same_v<T, float>) {
      if (aligned16(dfdx.data_ptr()) && aligned16(x.data_ptr()) && aligned16(y.data_ptr())) {
        unary_backward_vec4_kernel<<<grid_for_vec4(n), kBlock, 0, at.stream>>>(static_cast<float*>(dfdx.data_ptr()),
            static_cast<const float*>(x.data_ptr()), static_cast<const float*>(y.data_ptr()), n, op, float(p0), float(p1));
        GRAFT_CUDA_CHECK(cudaGetLastError());
        return;
      }
    }
    unary_backward_kernel<T><<<grid_for(n, kBlock), kBlock, 0, at.stream>>>(static_cast<T*>(dfdx.data_ptr()),
        static_cast<const T*>(x.data_ptr()), static_cast<const T*>(y.data_ptr()), n, op, T(p0), T(p1));
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

// dst (contiguous) = src (strided) converted through double, as the CPU reference converts.
template <class D, class S>
__global__ void convert_kernel(D* dst, const S* src, Strided ss, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = static_cast<D>(static_cast<double>(src[strided_offset(ss, i)]));
}

// Calls f(static_cast<T*>(nullptr)) for the dtypes the GPU converts between (the native C++ types).
template <class F>
void with_native_dtype(DType dt, F&& f) {
  switch (dt) {
    case DType::Float32: return f(static_cast<float*>(nullptr));
    case DType::Float64: return f(static_cast<double*>(nullptr));
    case DType::Int32: return f(static_cast<int32_t*>(nullptr));
    case DType::Int64: return f(static_cast<int64_t*>(nullptr));
    case DType::Bool: return f(static_cast<bool*>(nullptr));
    default:
      throw Error(detail::concat("copy (cuda): converting ", dtype_name(dt),
                                 " is not supported on the GPU (same-dtype copies of it are)"));
  }
}

// dst (contiguous) = src (any strides) in dst's dtype. Same dtype: the elements' bits, any dtype.
// Otherwise between float32, float64, int32, int64 and bool through double, as the CPU reference
// (copy_forward_reference, ops/copy.hpp): the same values, also where int64 -> float32 rounds twice.
inline void copy_forward(const Tensor& dst, const Tensor& src) {
  GRAFT_CHECK(dst.is_contiguous(), "copy (cuda)", "destination must be contiguous");
  const int64_t n = dst.numel();
  if (n == 0) return;
  const KernelLaunch at(dst.device());
  const Strided ss = make_strided(src.shape(), src.strides());
  const auto launch = [&](auto kernel, auto* d, const auto* s) {
    kernel<<<grid_for(n, kBlock), kBlock, 0, at.stream>>>(d, s, ss, n);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  };
  if (dst.dtype() == src.dtype()) {
    const auto bits = [&](auto* tag) {  // the element's bits as an unsigned integer of its size
      using U = std::remove_pointer_t<decltype(tag)>;
      launch(copy_kernel<U, U>, static_cast<U*>(dst.data_ptr()), static_cast<const U*>(src.data_ptr()));
    };
    switch (dtype_size(dst.dtype())) {
      case 8: return bits(static_cast<uint64_t*>(nullptr));
      case 4: return bits(static_cast<uint32_t*>(nullptr));
      case 2: return bits(static_cast<uint16_t*>(nullptr));
      default: return bits(static_cast<uint8_t*>(nullptr));
    }
  }
  with_native_dtype(dst.dtype(), [&](auto* d_tag) {
    using D = std::remove_pointer_t<decltype(d_tag)>;
    with_native_dtype(src.dtype(), [&](auto* s_tag) {
      using S = std::remove_pointer_t<decltype(s_tag)>;
      launch(convert_kernel<D, S>, static_cast<D*>(dst.data_ptr()), static_cast<const S*>(src.data_ptr()));
    });
  });
}

}  // namespace graft::kernels::cuda
