// graft/kernels/cpu/reduce.hpp - fast float32 reductions: sum over dims (the kernel behind sum, mean
// and sum_to, which reduces every broadcast gradient, bias gradients included), var over rows, and
// max/min/argmax over a dim and amax/amin over rows with their gradients (below), plus the run
// helpers of reduce.inc the other row kernels (softmax, layer_norm, batch_norm, loss) build on.
//
//   sum_forward_fast(out, x, shape, mask)   x contiguous float32 of `shape`; out contiguous float32 in
//     the keepdim layout; mask[d] true for the reduced dims. Returns false (nothing written) when the
//     active ISA is scalar or the layout is not one of the four below; the op then runs its reference.
//
// Layout: size-1 dims are dropped and neighbouring dims reduced alike are merged, which leaves at most
// [A, R, B, K] (kept, reduced, kept, reduced; any may be 1) for every reduction with up to two groups
// of reduced dims: rows ([M, K]), columns ([R, B], a linear bias gradient), the batch-norm shape
// ([R, B, K], an NCHW bias gradient) and [A, R, B, K]. out[a, b] = sum_{r, k} x[a, r, b, k]:
//   K > 1:   each output sums its R runs of K contiguous floats (reduce.inc's sum_blocked), in double;
//            threads split the outputs. One output (a full sum) splits into fixed blocks instead.
//   K == 1:  columns: groups of 4W neighbouring outputs accumulate rows in vector registers (float,
//            blocks of 256 rows added in double); threads split the groups.
// Every output is summed by one thread in an order that depends on the shape only: the result does not
// depend on the thread count.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "graft/core/parallel.hpp"
#include "graft/core/shape.hpp"
#include "graft/kernels/cpu/cpu_features.hpp"

#define GRAFT_KERNEL_BODY "graft/kernels/cpu/reduce.inc"
#include "graft/kernels/cpu/isa/for_each_isa.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GRAFT_CPU_KERNELS_X86 1
#else
#define GRAFT_CPU_KERNELS_X86 0
#endif

namespace graft::kernels::cpu {

// Tasks of `work_per_task` elements each per parallel_for chunk: about 32K elements per chunk, so
// small inputs stay on the calling thread.
inline int64_t tasks_per_chunk(int64_t work_per_task) {
  constexpr int64_t kElementsPerChunk = int64_t(1) << 15;
  return work_per_task >= kElementsPerChunk ? 1 : kElementsPerChunk / (work_per_task > 0 ? work_per_task : 1);
}

// True when the active ISA has fast kernels (avx2 or avx512 on x86).
inline bool fast_cpu_isa() { return GRAFT_CPU_KERNELS_X86 && active_cpu_isa() != CpuIsa::Scalar; }

// The canonical [A, R, B, K] of a reduction of a contiguous tensor (see the header comment), or false.
struct SumLayout {
  int64_t A = 1, R = 1, B = 1, K = 1;
};
inline bool sum_layout(const Shape& shape, const std::vector<bool>& mask, SumLayout& layout) {
  // Groups of neighbouring dims reduced alike, innermost first, size-1 dims dropped.
  int64_t size[kMaxDims];
  bool reduced[kMaxDims];
  int groups = 0;
  for (int d = shape.rank() - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    const bool r = mask[size_t(d)];
    if (groups > 0 && reduced[groups - 1] == r) {
      size[groups - 1] *= shape[d];
    } else {
      size[groups] = shape[d];
      reduced[groups] = r;
      ++groups;
    }
  }
  int64_t* slots[4] = {&layout.K, &layout.B, &layout.R, &layout.A};  // innermost first
  int slot = 0;
  for (int g = 0; g < groups; ++g) {
    if (slot % 2 == 0 && !reduced[g]) ++slot;  // this slot is a reduced one: leave it at 1
    if (slot >= 4) return false;
    *slots[slot++] = size[g];
  }
  return true;
}

inline bool sum_forward_fast(float* out, const float* x, const Shape& shape, const std::vector<bool>& mask) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  SumLayout L;
  if (!sum_layout(shape, mask, L)) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  const int64_t outputs = L.A * L.B;
  if (outputs == 0) return true;
  if (L.K > 1 && outputs == 1) {
    // One output over R * K contiguous floats: partial sums of fixed blocks, added in order.
    const int64_t n = L.R * L.K, block = int64_t(1) << 16, blocks = (n + block - 1) / block;
    std::vector<double> part(static_cast<size_t>(blocks));
    parallel_for(0, blocks, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const int64_t len = std::min(block, n - i * block);
        part[size_t(i)] = avx512 ? avx512::sum_blocked(x + i * block, len) : avx2::sum_blocked(x + i * block, len);
      }
    });
    double s = 0;
    for (double p : part) s += p;
    out[0] = float(s);
    return true;
  }
  if (L.K > 1) {
    parallel_for(0, outputs, tasks_per_chunk(L.R * L.K), [&](int64_t lo, int64_t hi) {
      if (avx512) avx512::sum_runs(out, x, L.R, L.B, L.K, lo, hi);
      else avx2::sum_runs(out, x, L.R, L.B, L.K, lo, hi);
    });
    return true;
  }
  const int64_t width = avx512 ? avx512::sum_columns_group_width() : avx2::sum_columns_group_width();
  const int64_t groups = L.A * ((L.B + width - 1) / width);
  parallel_for(0, groups, tasks_per_chunk(L.R * width), [&](int64_t lo, int64_t hi) {
    if (avx512) avx512::sum_columns(out, x, L.A, L.R, L.B, lo, hi);
    else avx2::sum_columns(out, x, L.A, L.R, L.B, lo, hi);
  });
  return true;
#else
  return false;
#endif
}

}  // namespace graft::kernels::cpu

namespace graft::kernels::cpu {

// var over rows: out[m] = sum_k (x[m, k] - mean_m)^2 / divisor, x contiguous float32 [M, K], K >= 1
// (the divisor max(0, K - correction) as the reference; 0 gives inf or NaN). Two passes (mean, then
// squared deviations from it), blocked sums as sum. Threads split the rows.
inline bool var_forward_fast(float* out, const float* x, int64_t M, int64_t K, double divisor) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa() || K < 1) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  parallel_for(0, M, tasks_per_chunk(2 * K), [&](int64_t lo, int64_t hi) {
    if (avx512) avx512::var_rows(out, x, K, divisor, lo, hi);
    else avx2::var_rows(out, x, K, divisor, lo, hi);
  });
  return true;
#else
  return false;
#endif
}

// dx[m, k] = dout[m] * 2 (x[m, k] - mean_m) / divisor; dx, x [M, K], dout [M], contiguous float32.
inline bool var_backward_fast(float* dx, const float* dout, const float* x, int64_t M, int64_t K, double divisor) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa() || K < 1) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  parallel_for(0, M, tasks_per_chunk(2 * K), [&](int64_t lo, int64_t hi) {
    if (avx512) avx512::var_backward_rows(dx, dout, x, K, divisor, lo, hi);
    else avx2::var_backward_rows(dx, dout, x, K, divisor, lo, hi);
  });
  return true;
#else
  return false;
#endif
}

}  // namespace graft::kernels::cpu

namespace graft::kernels::cpu {

// max (min when !is_max) over n of x contiguous float32 [outer, n, inner], with the int64 index of the
// first extreme; NaN propagates (the first NaN and its index), as the reference. values [outer, inner]
// may be null (argmax), indices [outer, inner] must not. Returns false when the active ISA is scalar
// or n >= 2^24 (indices travel as floats). Threads split the rows (or groups of W rows when inner > 1).
inline bool max_dim_forward_fast(float* values, int64_t* indices, const float* x, int64_t outer, int64_t n,
                                 int64_t inner, bool is_max) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa() || n < 1 || n >= (int64_t(1) << 24)) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  if (inner == 1) {
    parallel_for(0, outer, tasks_per_chunk(n), [&](int64_t lo, int64_t hi) {
      if (avx512) is_max ? avx512::extreme_rows<true>(values, indices, x, n, lo, hi)
                         : avx512::extreme_rows<false>(values, indices, x, n, lo, hi);
      else is_max ? avx2::extreme_rows<true>(values, indices, x, n, lo, hi)
                  : avx2::extreme_rows<false>(values, indices, x, n, lo, hi);
    });
    return true;
  }
  const int64_t W = avx512 ? avx512::VecF::kWidth : avx2::VecF::kWidth;
  const int64_t tasks = outer * ((inner + W - 1) / W);
  parallel_for(0, tasks, tasks_per_chunk(n * W), [&](int64_t lo, int64_t hi) {
    if (avx512) is_max ? avx512::extreme_strided<true>(values, indices, x, n, inner, lo, hi)
                       : avx512::extreme_strided<false>(values, indices, x, n, inner, lo, hi);
    else is_max ? avx2::extreme_strided<true>(values, indices, x, n, inner, lo, hi)
                : avx2::extreme_strided<false>(values, indices, x, n, inner, lo, hi);
  });
  return true;
#else
  return false;
#endif
}

// amax / amin over rows: out[m] = extreme of x[m, :] (NaN propagating), x contiguous float32 [M, K].
inline bool amax_forward_fast(float* out, const float* x, int64_t M, int64_t K, bool is_max) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa() || K < 1 || K >= (int64_t(1) << 24)) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  parallel_for(0, M, tasks_per_chunk(K), [&](int64_t lo, int64_t hi) {
    if (avx512) is_max ? avx512::extreme_rows<true>(out, nullptr, x, K, lo, hi)
                       : avx512::extreme_rows<false>(out, nullptr, x, K, lo, hi);
    else is_max ? avx2::extreme_rows<true>(out, nullptr, x, K, lo, hi)
                : avx2::extreme_rows<false>(out, nullptr, x, K, lo, hi);
  });
  return true;
#else
  return false;
#endif
}

}  // namespace graft::kernels::cpu

namespace graft::kernels::cpu {

// The gradient of max / min over a dim: dx[o, indices[o, i], i] = dvalues[o, i], every other element
// of dx [outer, n, inner] 0; dvalues, indices [outer, inner]; all contiguous. Every element of dx is
// written once. false when the active ISA is scalar or n >= 2^24 (indices travel as floats).
inline bool max_dim_backward_fast(float* dx, const float* dvalues, const int64_t* indices, int64_t outer, int64_t n,
                                  int64_t inner) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa() || n < 1 || n >= (int64_t(1) << 24)) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  if (inner == 1) {
    parallel_for(0, outer, tasks_per_chunk(n), [&](int64_t lo, int64_t hi) {
      if (avx512) avx512::max_dim_backward_rows(dx, dvalues, indices, n, lo, hi);
      else avx2::max_dim_backward_rows(dx, dvalues, indices, n, lo, hi);
    });
    return true;
  }
  const int64_t span = std::min(inner, avx512 ? avx512::kMaxBackwardSpan : avx2::kMaxBackwardSpan);
  const int64_t spans = (inner + span - 1) / span;
  parallel_for(0, outer * spans, tasks_per_chunk(n * span), [&](int64_t lo, int64_t hi) {
    if (avx512) avx512::max_dim_backward_strided(dx, dvalues, indices, n, inner, lo, hi);
    else avx2::max_dim_backward_strided(dx, dvalues, indices, n, inner, lo, hi);
  });
  return true;
#else
  return false;
#endif
}

// The gradient of amax / amin over rows: dx[m, k] = dout[m] / count_m where x[m, k] ties out[m] (a NaN
// ties a NaN), else 0, count_m the number of ties (the reference's rule, same float division: equal
// results). dx, x [M, K]; dout, out [M]; contiguous. Rows longer than kAmaxPiece are cut into pieces
// whose integer tie counts are added (exact), so a single long row (max of everything) uses every
// thread; nothing depends on the thread count. false when the active ISA is scalar.
inline constexpr int64_t kAmaxPiece = int64_t(1) << 15;
inline bool amax_backward_fast(float* dx, const float* dout, const float* x, const float* out, int64_t M, int64_t K) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa() || K < 1) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  auto count_ties = [&](const float* p, int64_t n, float best) {
    return avx512 ? avx512::count_ties(p, n, best) : avx2::count_ties(p, n, best);
  };
  auto write_shares = [&](float* d, const float* p, int64_t n, float best, float share) {
    if (avx512) avx512::write_tie_shares(d, p, n, best, share);
    else avx2::write_tie_shares(d, p, n, best, share);
  };
  if (K <= kAmaxPiece) {
    parallel_for(0, M, tasks_per_chunk(2 * K), [&](int64_t lo, int64_t hi) {
      for (int64_t m = lo; m < hi; ++m) {
        const float share = dout[m] / float(count_ties(x + m * K, K, out[m]));
        write_shares(dx + m * K, x + m * K, K, out[m], share);
      }
    });
    return true;
  }
  const int64_t pieces = (K + kAmaxPiece - 1) / kAmaxPiece;
  std::vector<int64_t> counts(static_cast<size_t>(M * pieces));
  std::vector<float> shares(static_cast<size_t>(M));
  parallel_for(0, M * pieces, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t m = t / pieces, k0 = (t % pieces) * kAmaxPiece;
      counts[size_t(t)] = count_ties(x + m * K + k0, std::min(kAmaxPiece, K - k0), out[m]);
    }
  });
  for (int64_t m = 0; m < M; ++m) {
    int64_t c = 0;
    for (int64_t p = 0; p < pieces; ++p) c += counts[size_t(m * pieces + p)];
    shares[size_t(m)] = dout[m] / float(c);
  }
  parallel_for(0, M * pieces, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t m = t / pieces, k0 = (t % pieces) * kAmaxPiece;
      write_shares(dx + m * K + k0, x + m * K + k0, std::min(kAmaxPiece, K - k0), out[m], shares[size_t(m)]);
    }
  });
  return true;
#else
  return false;
#endif
}

}  // namespace graft::kernels::cpu
