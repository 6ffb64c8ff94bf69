// graft/kernels/cpu/vec/vec_avx512.hpp - VecF for AVX-512: 16 float lanes in one zmm register.
//
// The same interface as vec_avx2.hpp (8 lanes), so a kernel body written once against VecF
// compiles for both (isa/for_each_isa.hpp). Every function here is compiled for AVX-512
// (isa/begin_avx512.hpp) and meant to be inlined into kernels of the same region.
//
//   VecF::kWidth                  lanes
//   VecF::load(p) / store(p)      unaligned, kWidth floats
//   load_tail(p, n) / store_tail  lanes < n only (0 < n <= kWidth; lanes >= n read as 0, not written)
//   broadcast(x), zero()
//   + - * / unary-, fma(a, b, c) = a * b + c (one rounding), max, min, abs, sqrt
//   reduce_add(), reduce_max()    over all lanes
//   MaskF, a < b, a <= b, a > b, a >= b, a == b (ordered: false where either is NaN),
//   is_nan(a), select(m, t, f) = m ? t : f (lane-wise)
//   copysign(a, b)                |a| with the sign bit of b
//   round_nearest(x)              to the nearest integer, ties to even, as a float
//   mul_pow2(p, n)                p * 2^n for integral n in [-254, 254] (overflow -> inf,
//                                 underflow gradual): exp's reconstruction
//   mantissa_exponent(x, e)       m in [1, 2) with x = m * 2^e, e an integral float, for positive
//                                 normal finite x (other inputs: unspecified m and e): log's split
//   plus the math of vec/math.inc (exp, log, tanh, erf, sigmoid), shared with AVX2.
#pragma once
#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "graft/kernels/cpu/isa/begin_avx512.hpp"
namespace graft::kernels::cpu::avx512 {

struct MaskF {
  __mmask16 m;
};

// All 16 lanes. Functions below use the masked intrinsics with kAll where GCC 12's unmasked forms
// pass _mm512_undefined_*() and -Wall then warns "used uninitialized" in every kernel that inlines
// them (GCC bug 105593); the instruction is the same.
inline constexpr __mmask16 kAll = 0xffff;

struct VecF {
  static constexpr int kWidth = 16;
  __m512 v;

  static inline __mmask16 tail_mask(int64_t n) { return __mmask16((1u << n) - 1u); }  // n < 16 only
  static inline VecF load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static inline VecF load_tail(const float* p, int64_t n) {
    return {n >= kWidth ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(tail_mask(n), p)};
  }
  static inline VecF broadcast(float x) { return {_mm512_set1_ps(x)}; }
  static inline VecF zero() { return {_mm512_setzero_ps()}; }
  inline void store(float* p) const { _mm512_storeu_ps(p, v); }
  inline void store_tail(float* p, int64_t n) const {
    if (n >= kWidth) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, tail_mask(n), v);
  }
  inline float reduce_add() const { return _mm512_reduce_add_ps(v); }
  inline float reduce_max() const { return _mm512_reduce_max_ps(v); }
};

inline VecF operator+(VecF a, VecF b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VecF operator-(VecF a, VecF b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VecF operator*(VecF a, VecF b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VecF operator/(VecF a, VecF b) { return {_mm512_div_ps(a.v, b.v)}; }
inline VecF operator-(VecF a) { return {_mm512_xor_ps(a.v, _mm512_set1_ps(-0.0f))}; }
inline VecF fma(VecF a, VecF b, VecF c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
// max(a, b) / min(a, b): b where either is NaN (the x86 rule); put the value that may be NaN second
// to let it through.
inline VecF max(VecF a, VecF b) { return {_mm512_mask_max_ps(a.v, kAll, a.v, b.v)}; }
inline VecF min(VecF a, VecF b) { return {_mm512_mask_min_ps(a.v, kAll, a.v, b.v)}; }
inline VecF abs(VecF a) { return {_mm512_abs_ps(a.v)}; }
inline VecF sqrt(VecF a) { return {_mm512_mask_sqrt_ps(a.v, kAll, a.v)}; }

inline MaskF operator<(VecF a, VecF b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
inline MaskF operator<=(VecF a, VecF b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ)}; }
inline MaskF operator>(VecF a, VecF b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ)}; }
inline MaskF operator>=(VecF a, VecF b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ)}; }
inline MaskF operator==(VecF a, VecF b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ)}; }
inline MaskF is_nan(VecF a) { return {_mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q)}; }
inline VecF select(MaskF m, VecF t, VecF f) { return {_mm512_mask_blend_ps(m.m, f.v, t.v)}; }

inline VecF copysign(VecF a, VecF b) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  return {_mm512_or_ps(_mm512_andnot_ps(sign, a.v), _mm512_and_ps(sign, b.v))};
}

inline VecF round_nearest(VecF x) {
  return {_mm512_mask_roundscale_ps(x.v, kAll, x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
// p * 2^n as p * 2^h * 2^(n - h), h = trunc(n / 2): both factors are normal floats for |n| <= 254.
inline VecF mul_pow2(VecF p, VecF n) {
  const __m512i zero = _mm512_setzero_si512();
  const __m512i ni = _mm512_mask_cvtps_epi32(zero, kAll, n.v);
  const __m512i h = _mm512_mask_srai_epi32(zero, kAll, ni, 1);
  const __m512i bias = _mm512_set1_epi32(127);
  const __m512 f1 = _mm512_castsi512_ps(_mm512_mask_slli_epi32(zero, kAll, _mm512_add_epi32(h, bias), 23));
  const __m512 f2 =
      _mm512_castsi512_ps(_mm512_mask_slli_epi32(zero, kAll, _mm512_add_epi32(_mm512_sub_epi32(ni, h), bias), 23));
  return {_mm512_mul_ps(_mm512_mul_ps(p.v, f1), f2)};
}

// getmant / getexp: exact, and also right for denormals (the AVX2 twin is not; callers pass normals).
inline VecF mantissa_exponent(VecF x, VecF& e) {
  e.v = _mm512_mask_getexp_ps(x.v, kAll, x.v);
  return {_mm512_mask_getmant_ps(x.v, kAll, x.v, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero)};
}

#include "graft/kernels/cpu/vec/math.inc"

}  // namespace graft::kernels::cpu::avx512
#include "graft/kernels/cpu/isa/end.hpp"

#endif
