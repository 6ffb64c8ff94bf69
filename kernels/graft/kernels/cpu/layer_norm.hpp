// graft/kernels/cpu/layer_norm.hpp - fast float32 layer norm, forward and backward (body:
// layer_norm.inc, compiled for AVX2 and AVX-512). Contract and reference: include/graft/ops/layer_norm.hpp.
//
//   layer_norm_forward_fast(out, mean, rstd, x, weight, bias, M, N, eps)
//   layer_norm_backward_fast(dx, dweight, dbias, dout, x, weight, mean, rstd, M, N)
//     all contiguous float32; weight, bias, dx, dweight, dbias may be null; dweight, dbias accumulate (+=).
// Each returns false (nothing written) when the active ISA is scalar.
// Threads: the forward and dx split rows; dweight / dbias split groups of 4W columns, each walking all
// rows in order. Every output is computed by one thread: results do not depend on the thread count.
// Accuracy: mean and variance are two-pass sums in float vector lanes, blocks of 4096 added in double
// (about 1e-7 relative for rows of any length); the PyTorch goldens hold at kTolF32.
#pragma once
#include <cmath>
#include <cstdint>

#include "graft/kernels/cpu/reduce.hpp"

#define GRAFT_KERNEL_BODY "graft/kernels/cpu/layer_norm.inc"
#include "graft/kernels/cpu/isa/for_each_isa.hpp"

namespace graft::kernels::cpu {

inline bool layer_norm_forward_fast(float* out, float* mean, float* rstd, const float* x, const float* weight,
                                    const float* bias, int64_t M, int64_t N, double eps) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  parallel_for(0, M, tasks_per_chunk(N), [&](int64_t lo, int64_t hi) {
    if (avx512) avx512::layer_norm_forward_rows(out, mean, rstd, x, weight, bias, N, eps, lo, hi);
    else avx2::layer_norm_forward_rows(out, mean, rstd, x, weight, bias, N, eps, lo, hi);
  });
  return true;
#else
  return false;
#endif
}

inline bool layer_norm_backward_fast(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                                     const float* weight, const float* mean, const float* rstd, int64_t M,
                                     int64_t N) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  if (dx) {
    parallel_for(0, M, tasks_per_chunk(2 * N), [&](int64_t lo, int64_t hi) {
      if (avx512) avx512::layer_norm_backward_rows(dx, dout, x, weight, mean, rstd, N, lo, hi);
      else avx2::layer_norm_backward_rows(dx, dout, x, weight, mean, rstd, N, lo, hi);
    });
  }
  if (dweight || dbias) {
    const int64_t width = avx512 ? avx512::layer_norm_column_group_width() : avx2::layer_norm_column_group_width();
    const int64_t groups = (N + width - 1) / width;
    parallel_for(0, groups, tasks_per_chunk(2 * M * width), [&](int64_t lo, int64_t hi) {
      if (avx512) avx512::layer_norm_backward_columns(dweight, dbias, dout, x, mean, rstd, M, N, lo, hi);
      else avx2::layer_norm_backward_columns(dweight, dbias, dout, x, mean, rstd, M, N, lo, hi);
    });
  }
  return true;
#else
  return false;
#endif
}

}  // namespace graft::kernels::cpu
