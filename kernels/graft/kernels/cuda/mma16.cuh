// graft/kernels/cuda/mma16.cuh - the two 16-bit formats on the tensor cores, for every kernel that
// multiplies bfloat16 or float16 with mma.sync.m16n8k16 (gemm_bf16.cuh, attention_mma.cuh, conv2d.cuh):
// widening to float32, rounding back (to nearest even, as graft::BFloat16 and graft::Float16 do), the
// instruction itself (float32 accumulation), and the 32-bit register of two k-consecutive values.
// The fragment layouts are gemm_plan.hpp's (bf16_mma_*, mma_c_*), tested on the host.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace graft::kernels::cuda::mma16 {

__device__ inline uint16_t round_to_bf16(float x) {
  const uint32_t u = __float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN -> the canonical quiet NaN
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// c += a b: a 16 x 16 (row), b 16 x 8 (col), c 16 x 8 float32; a and b bfloat16 (kBf16) or float16.
template <bool kBf16>
__device__ inline void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (kBf16)
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// One of the two formats: Format<true> bfloat16, Format<false> float16 (values as their 16-bit patterns).
template <bool kBf16>
struct Format {
  static __device__ float widen(uint16_t h) {
    if constexpr (kBf16) return __uint_as_float(uint32_t(h) << 16);
    else return __half2float(__ushort_as_half(h));
  }
  static __device__ uint16_t narrow(float x) {
    if constexpr (kBf16) return round_to_bf16(x);
    else return __half_as_ushort(__float2half_rn(x));
  }
  static __device__ void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    mma_m16n8k16<kBf16>(c, a, b);
  }
};

// The 32-bit register of p[0] (low half) and p[1]: p must be 4-byte aligned.
__device__ inline uint32_t load_pair(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }
// The register of lo and hi rounded to the format F.
template <class F>
__device__ inline uint32_t pack_pair(float lo, float hi) {
  return uint32_t(F::narrow(lo)) | uint32_t(F::narrow(hi)) << 16;
}

}  // namespace graft::kernels::cuda::mma16
