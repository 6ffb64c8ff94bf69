// graft/kernels/cpu/gemm_reference.hpp - the scalar reference GEMM: strided a and b, row-major c.
// The oracle for the fast paths in gemm.hpp and their fallback (double, small or unsupported shapes).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "graft/core/activation.hpp"

namespace graft::kernels::cpu {

using graft::Activation;

// c[i, j] (+)= sum_p a[i, p] * b[p, j]   for i < m, j < n, p < k
//   a[i, p] = a[i * a_rs + p * a_cs]      any strides (transposed views included)
//   b[p, j] = b[p * b_rs + j * b_cs]
//   c[i, j] = c[i * ldc + j]              rows of c are contiguous
// accumulate == false overwrites c. Serial: callers parallelize over rows or batches.
template <class T>
inline void gemm_reference(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
                           int64_t b_rs, int64_t b_cs, T* c, int64_t ldc, bool accumulate) {
  if (!accumulate)
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
  if (b_cs != 1 && b_rs == 1 && a_cs == 1) {
    // b is a transposed view (b^T rows contiguous): dot products over contiguous p, in kLanes
    // independent partial sums so the compiler can vectorize them (a single running sum cannot be
    // reordered without -ffast-math).
    constexpr int64_t kLanes = 8;
    for (int64_t i = 0; i < m; ++i) {
      const T* a_row = a + i * a_rs;  // [k]
      for (int64_t j = 0; j < n; ++j) {
        const T* b_col = b + j * b_cs;  // [k]
        T lane[kLanes] = {};
        int64_t p = 0;
        for (; p + kLanes <= k; p += kLanes)
          for (int64_t q = 0; q < kLanes; ++q) lane[q] += a_row[p + q] * b_col[p + q];
        T acc = T(0);
        for (; p < k; ++p) acc += a_row[p] * b_col[p];
        for (int64_t q = 0; q < kLanes; ++q) acc += lane[q];
        c[i * ldc + j] += acc;
      }
    }
    return;
  }
  // i-p-j order: the innermost loop streams a row of b into a row of c. Columns are blocked so the
  // [k, kColBlock] panel of b stays in cache while every row of c in [0, m) uses it.
  constexpr int64_t kColBlock = 512;
  for (int64_t j0 = 0; j0 < n; j0 += kColBlock) {
    const int64_t j1 = std::min(n, j0 + kColBlock);
    for (int64_t i = 0; i < m; ++i) {
      T* c_row = c + i * ldc;  // [n]
      for (int64_t p = 0; p < k; ++p) {
        const T a_ip = a[i * a_rs + p * a_cs];
        const T* b_row = b + p * b_rs;  // [n] with stride b_cs
        if (b_cs == 1) {
          for (int64_t j = j0; j < j1; ++j) c_row[j] += a_ip * b_row[j];
        } else {
          for (int64_t j = j0; j < j1; ++j) c_row[j] += a_ip * b_row[j * b_cs];
        }
      }
    }
  }
}

// What a GEMM may do to each finished element before it is stored, so linear and conv write their
// output once (the fused epilogue):
//   c[i, j] = act(product[i, j] + bias + residual[i * ld_residual + j])
// product is sum_p a[i, p] b[p, j] (plus the old c[i, j] when accumulating); bias is bias[j] (one per
// column: linear, whose rows are samples) or bias[i] (bias_per_row: conv, whose rows are output
// channels); a null pointer leaves that term out.
template <class T>
struct GemmEpilogue {
  const T* bias = nullptr;
  bool bias_per_row = false;
  const T* residual = nullptr;
  int64_t ld_residual = 0;
  Activation act = Activation::None;
};

template <class T>
inline T gemm_activation_reference(Activation act, T x) {
  using std::erf, std::exp, std::tanh;
  switch (act) {
    case Activation::None: return x;
    case Activation::Relu: return x < T(0) ? T(0) : x;  // NaN stays NaN, as in PyTorch
    case Activation::Relu6: return x < T(0) ? T(0) : (x > T(6) ? T(6) : x);
    case Activation::Silu: return x / (T(1) + exp(-x));
    case Activation::GeluTanh:
      return T(0.5) * x * (T(1) + tanh(T(0.7978845608028654) * (x + T(0.044715) * x * x * x)));
    case Activation::Gelu: return T(0.5) * x * (T(1) + erf(x * T(0.7071067811865476)));
  }
  return x;
}

// The epilogue on the block c[0:m, 0:n] whose element (0, 0) is the product's (i0, j0).
template <class T>
inline void gemm_epilogue_reference(const GemmEpilogue<T>& ep, int64_t i0, int64_t j0, int64_t m, int64_t n, T* c,
                                    int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    T* c_row = c + i * ldc;  // [n]
    for (int64_t j = 0; j < n; ++j) {
      T x = c_row[j];
      if (ep.bias) x += ep.bias_per_row ? ep.bias[i0 + i] : ep.bias[j0 + j];
      if (ep.residual) x += ep.residual[(i0 + i) * ep.ld_residual + j0 + j];
      c_row[j] = gemm_activation_reference(ep.act, x);
    }
  }
}

}  // namespace graft::kernels::cpu
