// graft/kernels/cpu/softmax.hpp - fast float32 softmax / log_softmax, forward and backward, over any
// dim of a contiguous [outer, n, inner] block (the body, softmax.inc, is compiled for AVX2 and
// AVX-512). The references are in include/graft/ops/softmax.hpp.
//
//   softmax_forward_fast(y, x, outer, n, inner, log)          y = softmax(x) (log_softmax when log)
//   softmax_backward_fast(dx, dy, y, outer, n, inner, log)    from the saved output y
// Each returns false (nothing written) when the active ISA is scalar; n >= 1.
// Threads split the rows (inner == 1) or groups of W rows (inner > 1); a row is computed by one
// thread in an order fixed by n, so results do not depend on the thread count.
// Accuracy: exp 1 ulp; the row sums are float in vector lanes (blocks of 4096 added in double for
// inner == 1), so outputs agree with the double-accumulating reference to a few float ulps times
// log2(n / W) (the tests hold them to kTolF32).
#pragma once
#include <cmath>
#include <cstdint>

#include "graft/kernels/cpu/reduce.hpp"

#define GRAFT_KERNEL_BODY "graft/kernels/cpu/softmax.inc"
#include "graft/kernels/cpu/isa/for_each_isa.hpp"

namespace graft::kernels::cpu {

inline bool softmax_forward_fast(float* y, const float* x, int64_t outer, int64_t n, int64_t inner, bool log) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  if (inner == 1) {
    parallel_for(0, outer, tasks_per_chunk(n), [&](int64_t lo, int64_t hi) {
      if (log) {
        if (avx512) avx512::log_softmax_forward_rows(y, x, n, lo, hi);
        else avx2::log_softmax_forward_rows(y, x, n, lo, hi);
      } else {
        if (avx512) avx512::softmax_forward_rows(y, x, n, lo, hi);
        else avx2::softmax_forward_rows(y, x, n, lo, hi);
      }
    });
    return true;
  }
  const int64_t W = avx512 ? avx512::VecF::kWidth : avx2::VecF::kWidth;
  const int64_t tasks = outer * ((inner + W - 1) / W);
  parallel_for(0, tasks, tasks_per_chunk(n * W), [&](int64_t lo, int64_t hi) {
    if (avx512) avx512::softmax_forward_strided(y, x, n, inner, log, lo, hi);
    else avx2::softmax_forward_strided(y, x, n, inner, log, lo, hi);
  });
  return true;
#else
  return false;
#endif
}

inline bool softmax_backward_fast(float* dx, const float* dy, const float* y, int64_t outer, int64_t n,
                                  int64_t inner, bool log) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  if (inner == 1) {
    parallel_for(0, outer, tasks_per_chunk(2 * n), [&](int64_t lo, int64_t hi) {
      if (log) {
        if (avx512) avx512::log_softmax_backward_rows(dx, dy, y, n, lo, hi);
        else avx2::log_softmax_backward_rows(dx, dy, y, n, lo, hi);
      } else {
        if (avx512) avx512::softmax_backward_rows(dx, dy, y, n, lo, hi);
        else avx2::softmax_backward_rows(dx, dy, y, n, lo, hi);
      }
    });
    return true;
  }
  const int64_t W = avx512 ? avx512::VecF::kWidth : avx2::VecF::kWidth;
  const int64_t tasks = outer * ((inner + W - 1) / W);
  parallel_for(0, tasks, tasks_per_chunk(2 * n * W), [&](int64_t lo, int64_t hi) {
    if (avx512) avx512::softmax_backward_strided(dx, dy, y, n, inner, log, lo, hi);
    else avx2::softmax_backward_strided(dx, dy, y, n, inner, log, lo, hi);
  });
  return true;
#else
  return false;
#endif
}

}  // namespace graft::kernels::cpu
