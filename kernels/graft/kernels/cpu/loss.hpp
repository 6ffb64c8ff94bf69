// graft/kernels/cpu/loss.hpp - fast float32 cross-entropy for logits [N, C] (class dim innermost),
// forward and backward (body: loss.inc, compiled for AVX2 and AVX-512; it uses softmax.inc's exp sum).
// Contract and reference: include/graft/ops/loss.hpp (label smoothing, class weights, ignore_index).
//
//   cross_entropy_forward_fast(loss, lse, logits, target, weight, N, C, ignore_index, label_smoothing)
//   cross_entropy_backward_fast(dlogits, dloss, dloss_stride, logits, lse, target, weight, N, C,
//                               ignore_index, label_smoothing)
//     logits, dlogits [N, C], loss, lse [N], target [N] int64, weight [C] or null; dloss[i * stride].
// Each returns false when the active ISA is scalar. Threads split the rows; a row is computed by one
// thread (exp 1 ulp, sums in float vector lanes per block of 4096, added in double).
#pragma once
#include <cmath>
#include <cstdint>

#include "graft/kernels/cpu/reduce.hpp"
#include "graft/kernels/cpu/softmax.hpp"

#define GRAFT_KERNEL_BODY "graft/kernels/cpu/loss.inc"
#include "graft/kernels/cpu/isa/for_each_isa.hpp"

namespace graft::kernels::cpu {

inline double cross_entropy_weight_sum(const float* weight, int64_t C) {
  if (!weight) return double(C);
  double s = 0;
  for (int64_t c = 0; c < C; ++c) s += double(weight[c]);
  return s;
}

inline bool cross_entropy_forward_fast(float* loss, float* lse, const float* logits, const int64_t* target,
                                       const float* weight, int64_t N, int64_t C, int64_t ignore_index,
                                       double label_smoothing) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  const double wsum = cross_entropy_weight_sum(weight, C);
  parallel_for(0, N, tasks_per_chunk(2 * C), [&](int64_t lo, int64_t hi) {
    if (avx512)
      avx512::cross_entropy_forward_rows(loss, lse, logits, target, weight, C, ignore_index, label_smoothing, wsum,
                                         lo, hi);
    else
      avx2::cross_entropy_forward_rows(loss, lse, logits, target, weight, C, ignore_index, label_smoothing, wsum, lo,
                                       hi);
  });
  return true;
#else
  return false;
#endif
}

inline bool cross_entropy_backward_fast(float* dlogits, const float* dloss, int64_t dloss_stride,
                                        const float* logits, const float* lse, const int64_t* target,
                                        const float* weight, int64_t N, int64_t C, int64_t ignore_index,
                                        double label_smoothing) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  const double wsum = cross_entropy_weight_sum(weight, C);
  parallel_for(0, N, tasks_per_chunk(2 * C), [&](int64_t lo, int64_t hi) {
    if (avx512)
      avx512::cross_entropy_backward_rows(dlogits, dloss, dloss_stride, logits, lse, target, weight, C, ignore_index,
                                          label_smoothing, wsum, lo, hi);
    else
      avx2::cross_entropy_backward_rows(dlogits, dloss, dloss_stride, logits, lse, target, weight, C, ignore_index,
                                        label_smoothing, wsum, lo, hi);
  });
  return true;
#else
  return false;
#endif
}

}  // namespace graft::kernels::cpu
