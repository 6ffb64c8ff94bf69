// graft/kernels/cpu/vec/math_array.hpp - the functions of vec/math.inc over float arrays, per ISA.
//
//   math_array_avx2(fn, x, y, n) / math_array_avx512(fn, x, y, n):  y[i] = fn(x[i]) for i < n,
//   computed with that ISA's VecF (tails through load_tail/store_tail; x == y is allowed).
//   The caller checks the CPU has the ISA (cpu_features.hpp). For tests (tests/test_vec_math.cpp
//   measures each function's ulp error against double libm) and benchmarks; kernels call the VecF
//   functions directly.
#pragma once
#include <cstdint>

namespace graft::kernels::cpu {
enum class VecMathFn { Exp, Log, Tanh, Erf, Sigmoid };
inline const char* vec_math_name(VecMathFn fn) {
  switch (fn) {
    case VecMathFn::Exp: return "exp";
    case VecMathFn::Log: return "log";
    case VecMathFn::Tanh: return "tanh";
    case VecMathFn::Erf: return "erf";
    case VecMathFn::Sigmoid: return "sigmoid";
  }
  return "?";
}
}  // namespace graft::kernels::cpu

#define GRAFT_KERNEL_BODY "graft/kernels/cpu/vec/math_array.inc"
#include "graft/kernels/cpu/isa/for_each_isa.hpp"

namespace graft::kernels::cpu {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
inline void math_array_avx2(VecMathFn fn, const float* x, float* y, int64_t n) { avx2::math_array(fn, x, y, n); }
inline void math_array_avx512(VecMathFn fn, const float* x, float* y, int64_t n) { avx512::math_array(fn, x, y, n); }
#endif
}  // namespace graft::kernels::cpu
