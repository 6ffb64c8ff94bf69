// graft/kernels/cuda/vendor_plan.hpp - the host-side layout math of vendor.cuh: whether a strided
// matmul operand is one cuBLAS can read, and how (plain C++, tested on the CPU by
// tests/test_cuda_libs_host.cpp).
//
// cuBLAS is column-major. Graft's row-major out [M, N] = a [M, K] b [K, N] is, read column-major,
// out^T [N, M] = b^T [N, K] a^T [K, M]: cuBLAS computes C = op(B) op(A) with B the storage of b and
// A the storage of a, m = N, n = M, k = K, ldc = N.
#pragma once
#include <cstdint>

#include "graft/core/shape.hpp"

namespace graft::kernels::cuda::vendor_plan {

// A row-major-indexed matrix R [rows, cols], element (i, j) at i rs + j cs, as cuBLAS's operand
// R^T [cols, rows]: either transposed = false, R^T stored column-major with leading dimension ld
// (needs cs = 1, ld = rs >= cols), or transposed = true, R stored column-major, op = T (needs rs = 1,
// ld = cs >= rows). A dim of size 1 may have any stride. ld >= 1 always.
struct CublasOperand {
  bool transposed = false;
  int64_t ld = 1;
};

inline bool cublas_operand(int64_t rows, int64_t cols, int64_t rs, int64_t cs, CublasOperand* o) {
  const int64_t need_n = cols > 1 ? cols : 1, need_t = rows > 1 ? rows : 1;
  if (cs == 1 || cols == 1) {
    const int64_t ld = rows == 1 ? need_n : rs;
    if (ld >= need_n) {
      *o = CublasOperand{false, ld};
      return true;
    }
  }
  if (rs == 1 || rows == 1) {
    const int64_t ld = cols == 1 ? need_t : cs;
    if (ld >= need_t) {
      *o = CublasOperand{true, ld};
      return true;
    }
  }
  return false;
}

// The batch dims (sizes, one operand's strides) as one stride: batch z at z * stride. Possible when
// every dim of size > 1 has stride = the next such dim's stride times that dim's size (a stride-0
// broadcast over all of them gives 0). An empty batch (rank 0) has stride 0.
inline bool single_batch_stride(const Shape& sizes, const Shape& strides, int64_t* stride) {
  int64_t s = 0;
  int64_t inner_span = -1;  // stride x size of the innermost non-trivial dim seen so far; -1: none yet
  for (int d = sizes.rank() - 1; d >= 0; --d) {
    if (sizes[d] == 1) continue;
    if (inner_span < 0) {
      s = strides[d];
    } else if (strides[d] != inner_span) {
      return false;
    }
    inner_span = strides[d] * sizes[d];
  }
  *stride = s;
  return true;
}

constexpr int64_t kCublasIntMax = 0x7fffffff;  // m, n, k, ld and the batch count are int

}  // namespace graft::kernels::cuda::vendor_plan
