// graft/kernels/cpu/vec/vec_avx2.hpp - VecF for AVX2+FMA: 8 float lanes in one ymm register.
//
// The interface of vec_avx512.hpp (read the list there), so one kernel body compiles for both.
// Tails use maskload/maskstore with a lane mask built from the count.
#pragma once
#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "graft/kernels/cpu/isa/begin_avx2.hpp"
namespace graft::kernels::cpu::avx2 {

struct MaskF {
  __m256 m;  // all ones in the lanes where true
};

struct VecF {
  static constexpr int kWidth = 8;
  __m256 v;

  // All-ones in lanes < n (0 < n < 8).
  static inline __m256i tail_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static inline VecF load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static inline VecF load_tail(const float* p, int64_t n) {
    return {n >= kWidth ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, tail_mask(n))};
  }
  static inline VecF broadcast(float x) { return {_mm256_set1_ps(x)}; }
  static inline VecF zero() { return {_mm256_setzero_ps()}; }
  inline void store(float* p) const { _mm256_storeu_ps(p, v); }
  inline void store_tail(float* p, int64_t n) const {
    if (n >= kWidth) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, tail_mask(n), v);
  }
  inline float reduce_add() const {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));  // [4]
    const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));                                  // [2]
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
  }
  inline float reduce_max() const {
    const __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 s2 = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s2, _mm_movehdup_ps(s2)));
  }
};

inline VecF operator+(VecF a, VecF b) { return {_mm256_add_ps(a.v, b.v)}; }
inline VecF operator-(VecF a, VecF b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline VecF operator*(VecF a, VecF b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline VecF operator/(VecF a, VecF b) { return {_mm256_div_ps(a.v, b.v)}; }
inline VecF operator-(VecF a) { return {_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))}; }
inline VecF fma(VecF a, VecF b, VecF c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline VecF max(VecF a, VecF b) { return {_mm256_max_ps(a.v, b.v)}; }
inline VecF min(VecF a, VecF b) { return {_mm256_min_ps(a.v, b.v)}; }
inline VecF abs(VecF a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
inline VecF sqrt(VecF a) { return {_mm256_sqrt_ps(a.v)}; }

inline MaskF operator<(VecF a, VecF b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
inline MaskF operator<=(VecF a, VecF b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
inline MaskF operator>(VecF a, VecF b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
inline MaskF operator>=(VecF a, VecF b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
inline MaskF operator==(VecF a, VecF b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ)}; }
inline MaskF is_nan(VecF a) { return {_mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q)}; }
inline VecF select(MaskF m, VecF t, VecF f) { return {_mm256_blendv_ps(f.v, t.v, m.m)}; }

inline VecF copysign(VecF a, VecF b) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  return {_mm256_or_ps(_mm256_andnot_ps(sign, a.v), _mm256_and_ps(sign, b.v))};
}

inline VecF round_nearest(VecF x) { return {_mm256_round_ps(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
inline VecF mul_pow2(VecF p, VecF n) {
  const __m256i ni = _mm256_cvtps_epi32(n.v);
  const __m256i h = _mm256_srai_epi32(ni, 1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
  const __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), bias), 23));
  return {_mm256_mul_ps(_mm256_mul_ps(p.v, f1), f2)};
}

// The exponent field minus the bias, and the mantissa bits under the exponent of 1.0f.
inline VecF mantissa_exponent(VecF x, VecF& e) {
  const __m256i bits = _mm256_castps_si256(x.v);
  e.v = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127)));
  const __m256i m = _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f800000));
  return {_mm256_castsi256_ps(m)};
}

#include "graft/kernels/cpu/vec/math.inc"

}  // namespace graft::kernels::cpu::avx2
#include "graft/kernels/cpu/isa/end.hpp"

#endif
