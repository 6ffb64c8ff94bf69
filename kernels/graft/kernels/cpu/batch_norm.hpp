// graft/kernels/cpu/batch_norm.hpp - fast float32 batch norm over NCHW (any [N, C, S]), forward
// (training: batch statistics and the running-statistic update; eval) and backward (body:
// batch_norm.inc, compiled for AVX2 and AVX-512). Contract and reference: include/graft/ops/batch_norm.hpp.
//
//   batch_norm_forward_fast(out, mean, rstd, x, weight, bias, running_mean, running_var, N, C, S,
//                           training, momentum, eps)
//   batch_norm_backward_fast(dx, dweight, dbias, dout, x, weight, mean, rstd, N, C, S, training)
//     all contiguous float32; weight, bias, running stats (training), dx, dweight, dbias may be null.
// Each returns false (nothing written) when the active ISA is scalar.
// Threads split the channels; a channel is computed by one thread in a fixed order (runs in n order,
// each run summed as reduce.inc's sum_blocked), so results do not depend on the thread count.
// Accuracy: statistics from float vector sums per block of 4096, added in double (the variance is the
// two-pass sum of squared deviations from the float mean, corrected to the double mean).
#pragma once
#include <cmath>
#include <cstdint>

#include "graft/kernels/cpu/reduce.hpp"

#define GRAFT_KERNEL_BODY "graft/kernels/cpu/batch_norm.inc"
#include "graft/kernels/cpu/isa/for_each_isa.hpp"

namespace graft::kernels::cpu {

inline bool batch_norm_forward_fast(float* out, float* mean, float* rstd, const float* x, const float* weight,
                                    const float* bias, float* running_mean, float* running_var, int64_t N,
                                    int64_t C, int64_t S, bool training, double momentum, double eps) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  parallel_for(0, C, tasks_per_chunk(3 * N * S), [&](int64_t lo, int64_t hi) {
    if (avx512)
      avx512::batch_norm_forward_channels(out, mean, rstd, x, weight, bias, running_mean, running_var, N, C, S,
                                          training, momentum, eps, lo, hi);
    else
      avx2::batch_norm_forward_channels(out, mean, rstd, x, weight, bias, running_mean, running_var, N, C, S,
                                        training, momentum, eps, lo, hi);
  });
  return true;
#else
  return false;
#endif
}

inline bool batch_norm_backward_fast(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                                     const float* weight, const float* mean, const float* rstd, int64_t N,
                                     int64_t C, int64_t S, bool training) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  parallel_for(0, C, tasks_per_chunk(4 * N * S), [&](int64_t lo, int64_t hi) {
    if (avx512)
      avx512::batch_norm_backward_channels(dx, dweight, dbias, dout, x, weight, mean, rstd, N, C, S, training, lo,
                                           hi);
    else
      avx2::batch_norm_backward_channels(dx, dweight, dbias, dout, x, weight, mean, rstd, N, C, S, training, lo, hi);
  });
  return true;
#else
  return false;
#endif
}

}  // namespace graft::kernels::cpu
