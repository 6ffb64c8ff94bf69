// graft/kernels/cpu/convert.hpp - float32 <-> bfloat16 / float16 conversion of contiguous runs, with
// AVX-512 and AVX2 (+F16C) paths beside the scalar reference (the BFloat16 / Float16 conversions of
// core/dtype.hpp, which every path matches bit for bit, NaNs included).
//
//   convert_run(dst, src, n)   dst[i] = convert(src[i]) for i < n; one of
//       BFloat16 -> float   exact (the 16 bits shifted into the top of a float)
//       float -> BFloat16   round to nearest even; NaN -> 0x7fc0
//       Float16 -> float    exact
//       float -> Float16    round to nearest even, overflow to inf, subnormals; NaN -> sign | 0x7e00
//   The vector paths are taken when active_cpu_isa() (cpu_features.hpp) is avx2 or avx512; the
//   scalar loop otherwise. A run is split over the thread pool when long.
//
// bfloat16 has no conversion instruction before AVX512_BF16 (VCVTNEPS2BF16, which flushes subnormals
// and so differs from the reference), so both paths do the rounding in integer lanes:
// bits = (u + 0x7fff + ((u >> 16) & 1)) >> 16, which is PyTorch's c10::BFloat16 rounding too.
#pragma once
#include <algorithm>
#include <cstdint>

#include "graft/core/dtype.hpp"
#include "graft/core/parallel.hpp"
#include "graft/kernels/cpu/cpu_features.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GRAFT_CONVERT_X86 1
#include <immintrin.h>
#else
#define GRAFT_CONVERT_X86 0
#endif

namespace graft::kernels::cpu {

namespace convert_detail {

template <class D, class S>
inline void convert_scalar(D* dst, const S* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = D(float(src[i]));
}

#if GRAFT_CONVERT_X86
// GCC 12 reports the intrinsics' own _mm512_undefined_*() operands as uninitialized (a false
// positive, GCC bug 105593, as in gemm.hpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
// ---- AVX-512 (F + BW): 16 lanes ----------------------------------------------------------------
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512i bf16_bits_avx512(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), 16);
  return _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_set1_epi32(0x7fc0));
}
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void to_bf16_avx512(BFloat16* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(bf16_bits_avx512(_mm512_loadu_ps(src + i))));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    const __m512i bits = bf16_bits_avx512(_mm512_maskz_loadu_ps(m, src + i));
    _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtepi32_epi16(bits));
  }
}
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void from_bf16_avx512(float* dst, const BFloat16* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, src + i));
    _mm512_mask_storeu_ps(dst + i, m, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
}
// NaN lanes become sign | 0x7fc00000 first, which VCVTPS2PH turns into sign | 0x7e00 (the reference's NaN).
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m256i f16_bits_avx512(__m512 x) {
  const __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(int(0x80000000u)));
  const __m512 qnan = _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_set1_epi32(0x7fc00000)));
  x = _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), qnan);
  return _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void to_f16_avx512(Float16* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), f16_bits_avx512(_mm512_loadu_ps(src + i)));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    _mm256_mask_storeu_epi16(dst + i, m, f16_bits_avx512(_mm512_maskz_loadu_ps(m, src + i)));
  }
}
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void from_f16_avx512(float* dst, const Float16* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
  }
}

// ---- AVX2 (+ F16C): 8 lanes, a scalar tail -----------------------------------------------------
__attribute__((target("avx2,fma,f16c"))) inline __m256i bf16_bits_avx2(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc0)), nan));
}
__attribute__((target("avx2,fma,f16c"))) inline void to_bf16_avx2(BFloat16* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i lo = bf16_bits_avx2(_mm256_loadu_ps(src + i)), hi = bf16_bits_avx2(_mm256_loadu_ps(src + i + 8));
    // packus works per 128-bit lane: [lo0-3 hi0-3 | lo4-7 hi4-7]; the permute restores the order
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), packed);
  }
  convert_scalar(dst + i, src + i, n - i);
}
__attribute__((target("avx2,fma,f16c"))) inline void from_bf16_avx2(float* dst, const BFloat16* src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
  convert_scalar(dst + i, src + i, n - i);
}
__attribute__((target("avx2,fma,f16c"))) inline void to_f16_avx2(Float16* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x = _mm256_loadu_ps(src + i);
    const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    const __m256 qnan = _mm256_or_ps(sign, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)));
    x = _mm256_blendv_ps(x, qnan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  convert_scalar(dst + i, src + i, n - i);
}
__attribute__((target("avx2,fma,f16c"))) inline void from_f16_avx2(float* dst, const Float16* src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  convert_scalar(dst + i, src + i, n - i);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif  // GRAFT_CONVERT_X86

// One run on the calling thread, on `isa`'s path.
template <class D, class S>
inline void convert_serial(CpuIsa isa, D* dst, const S* src, int64_t n) {
#if GRAFT_CONVERT_X86
  const bool avx512 = isa == CpuIsa::Avx512, avx2 = isa == CpuIsa::Avx2;
  if constexpr (std::is_same_v<D, BFloat16> && std::is_same_v<S, float>) {
    if (avx512) return to_bf16_avx512(dst, src, n);
    if (avx2) return to_bf16_avx2(dst, src, n);
  } else if constexpr (std::is_same_v<D, float> && std::is_same_v<S, BFloat16>) {
    if (avx512) return from_bf16_avx512(dst, src, n);
    if (avx2) return from_bf16_avx2(dst, src, n);
  } else if constexpr (std::is_same_v<D, Float16> && std::is_same_v<S, float>) {
    if (avx512) return to_f16_avx512(dst, src, n);
    if (avx2) return to_f16_avx2(dst, src, n);
  } else if constexpr (std::is_same_v<D, float> && std::is_same_v<S, Float16>) {
    if (avx512) return from_f16_avx512(dst, src, n);
    if (avx2) return from_f16_avx2(dst, src, n);
  }
#else
  (void)isa;
#endif
  convert_scalar(dst, src, n);
}

}  // namespace convert_detail

// dst[i] = convert(src[i]), i < n, for the four pairs above (see the top of this file).
template <class D, class S>
inline void convert_run(D* dst, const S* src, int64_t n) {
  static_assert((std::is_same_v<D, float> && (std::is_same_v<S, BFloat16> || std::is_same_v<S, Float16>)) ||
                    (std::is_same_v<S, float> && (std::is_same_v<D, BFloat16> || std::is_same_v<D, Float16>)),
                "convert_run: float32 <-> bfloat16 / float16 only");
  const CpuIsa isa = active_cpu_isa();
  constexpr int64_t kBlock = int64_t(1) << 15;
  if (n <= kBlock) return convert_detail::convert_serial(isa, dst, src, n);
  parallel_for(0, (n + kBlock - 1) / kBlock, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b)
      convert_detail::convert_serial(isa, dst + b * kBlock, src + b * kBlock, std::min(kBlock, n - b * kBlock));
  });
}

}  // namespace graft::kernels::cpu
