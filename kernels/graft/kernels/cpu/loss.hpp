// graft/kernels/cpu/loss.hpp - fast float32 cross-entropy for logits [N, C] (class dim innermost),
// forward and backward (body: loss.inc, compiled for AVX2 and AVX-512; it uses softmax.inc's exp sum),
// and binary_cross_entropy_with_logits and mse_loss, forward and backward (below).
// Contract and reference: include/graft/ops/loss.hpp (label smoothing, class weights, ignore_index).
//
//   cross_entropy_forward_fast(loss, lse, logits, target, weight, N, C, ignore_index, label_smoothing)
//   cross_entropy_backward_fast(dlogits, dloss, dloss_stride, logits, lse, target, weight, N, C,
//                               ignore_index, label_smoothing)
//     logits, dlogits [N, C], loss, lse [N], target [N] int64, weight [C] or null; dloss[i * stride].
// Each returns false when the active ISA is scalar. Threads split the rows; a row is computed by one
// thread (exp 1 ulp, sums in float vector lanes per block of 4096, added in double).
//
// Elementwise losses over n contiguous floats (dloss[i * dloss_stride], stride 0 or 1; pos_weight
// null: 1; a null gradient output is not computed). false when the active ISA is scalar or
// dloss_stride is neither 0 nor 1:
//   bce_with_logits_forward_fast(loss, logits, target, pos_weight, n)
//   bce_with_logits_backward_fast(dlogits, dtarget, dloss, dloss_stride, logits, target, pos_weight, n)
//   mse_forward_fast(loss, input, target, n)
//   mse_backward_fast(dinput, dtarget, dloss, dloss_stride, input, target, n)
// log, exp and sigmoid are vec/math.inc's (1, 1.5 and 2.5 ulp); the bce loss and its gradients are
// within a few float roundings of the reference's double evaluation. mse's are the reference's
// operations in the same order (identical). Threads split fixed chunks of kLossGrain elements, each
// element computed by one thread alone, so results do not depend on the thread count.
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

inline constexpr int64_t kLossGrain = int64_t(1) << 14;  // elements per parallel_for chunk

inline bool bce_with_logits_forward_fast(float* loss, const float* logits, const float* target,
                                         const float* pos_weight, int64_t n) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  parallel_for(0, n, kLossGrain, [&](int64_t lo, int64_t hi) {
    const float* pw = pos_weight ? pos_weight + lo : nullptr;
    if (avx512) avx512::bce_with_logits_forward_run(loss + lo, logits + lo, target + lo, pw, hi - lo);
    else avx2::bce_with_logits_forward_run(loss + lo, logits + lo, target + lo, pw, hi - lo);
  });
  return true;
#else
  return false;
#endif
}

inline bool bce_with_logits_backward_fast(float* dlogits, float* dtarget, const float* dloss, int64_t dloss_stride,
                                          const float* logits, const float* target, const float* pos_weight,
                                          int64_t n) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa() || (dloss_stride != 0 && dloss_stride != 1)) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  parallel_for(0, n, kLossGrain, [&](int64_t lo, int64_t hi) {
    float* dx = dlogits ? dlogits + lo : nullptr;
    float* dt = dtarget ? dtarget + lo : nullptr;
    const float* pw = pos_weight ? pos_weight + lo : nullptr;
    const float* dl = dloss + lo * dloss_stride;
    if (avx512) avx512::bce_with_logits_backward_run(dx, dt, dl, dloss_stride, logits + lo, target + lo, pw, hi - lo);
    else avx2::bce_with_logits_backward_run(dx, dt, dl, dloss_stride, logits + lo, target + lo, pw, hi - lo);
  });
  return true;
#else
  return false;
#endif
}

inline bool mse_forward_fast(float* loss, const float* input, const float* target, int64_t n) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  parallel_for(0, n, 2 * kLossGrain, [&](int64_t lo, int64_t hi) {
    if (avx512) avx512::mse_forward_run(loss + lo, input + lo, target + lo, hi - lo);
    else avx2::mse_forward_run(loss + lo, input + lo, target + lo, hi - lo);
  });
  return true;
#else
  return false;
#endif
}

inline bool mse_backward_fast(float* dinput, float* dtarget, const float* dloss, int64_t dloss_stride,
                              const float* input, const float* target, int64_t n) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa() || (dloss_stride != 0 && dloss_stride != 1)) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  parallel_for(0, n, 2 * kLossGrain, [&](int64_t lo, int64_t hi) {
    float* da = dinput ? dinput + lo : nullptr;
    float* db = dtarget ? dtarget + lo : nullptr;
    const float* dl = dloss + lo * dloss_stride;
    if (avx512) avx512::mse_backward_run(da, db, dl, dloss_stride, input + lo, target + lo, hi - lo);
    else avx2::mse_backward_run(da, db, dl, dloss_stride, input + lo, target + lo, hi - lo);
  });
  return true;
#else
  return false;
#endif
}

}  // namespace graft::kernels::cpu
