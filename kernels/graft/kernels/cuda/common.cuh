// graft/kernels/cuda/common.cuh - error checking and the strided-index helper shared by CUDA kernels.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "graft/core/error.hpp"
#include "graft/core/shape.hpp"

#define GRAFT_CUDA_CHECK(expr)                                                                  \
  do {                                                                                          \
    cudaError_t graft_err_ = (expr);                                                            \
    if (graft_err_ != cudaSuccess)                                                              \
      throw ::graft::Error(::graft::detail::concat("CUDA: ", #expr, " failed: ",                \
                                                   cudaGetErrorString(graft_err_)));            \
  } while (0)

namespace graft::kernels::cuda {

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
