// graft/kernels/cpu/copy.hpp - fast float32 strided copy (contiguous(), clone(), copy_ of permuted,
// transposed, sliced and expanded views) without a per-element offset table. Inner loops: copy.inc,
// compiled for AVX2 and AVX-512. The reference is include/graft/ops/copy.hpp's copy_forward_reference.
//
//   copy_float_fast(dst, dst_strides, src, src_strides, shape)   dst[i] = src[i] for every index i of
//     shape (strides in elements; src strides may be 0, broadcast). Returns false (nothing written)
//     when the active ISA is scalar or the layout is not taken: a dst stride <= 0 on a dim of size > 1,
//     a negative src stride, or a dst whose smallest stride is not 1.
//
// Layout: size-1 dims are dropped, the rest ordered by dst stride (outermost first) and neighbours
// that are contiguous in both merged. The innermost dim (dst stride 1) is then one of
//   src stride 1: a contiguous run (vector loads and stores)
//   src stride 0: a broadcast run (one value stored)
//   another dim has src stride 1 (a permutation, NHWC <-> NCHW): a 2-D block transpose between the two
//     in 16 x 16 tiles
//   else: a strided gather.
// The remaining (outer) dims are walked with an index counter; threads split them, so every element
// is written once by one thread.
#pragma once
#include <algorithm>
#include <cstdint>

#include "graft/core/parallel.hpp"
#include "graft/core/shape.hpp"
#include "graft/kernels/cpu/reduce.hpp"  // fast_cpu_isa, tasks_per_chunk

#define GRAFT_KERNEL_BODY "graft/kernels/cpu/copy.inc"
#include "graft/kernels/cpu/isa/for_each_isa.hpp"

namespace graft::kernels::cpu {

inline bool copy_float_fast(float* dst, const Shape& dst_strides, const float* src, const Shape& src_strides,
                            const Shape& shape) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  struct Dim {
    int64_t size, ds, ss;
  };
  Dim dims[kMaxDims];
  int rank = 0;
  for (int d = 0; d < shape.rank(); ++d) {
    if (shape[d] == 0) return true;
    if (shape[d] == 1) continue;
    if (dst_strides[d] <= 0 || src_strides[d] < 0) return false;
    dims[rank++] = Dim{shape[d], dst_strides[d], src_strides[d]};
  }
  if (rank == 0) {
    dst[0] = src[0];
    return true;
  }
  std::stable_sort(dims, dims + rank, [](const Dim& a, const Dim& b) { return a.ds > b.ds; });
  int merged = 0;  // coalesce neighbours contiguous in both tensors
  for (int d = 1; d < rank; ++d) {
    Dim& outer = dims[merged];
    const Dim& inner = dims[d];
    if (outer.ds == inner.ds * inner.size && outer.ss == inner.ss * inner.size) {
      outer = Dim{outer.size * inner.size, inner.ds, inner.ss};
    } else {
      dims[++merged] = inner;
    }
  }
  rank = merged + 1;
  const Dim inner = dims[rank - 1];
  if (inner.ds != 1) return false;
  int t = -1;  // the dim transposed with the inner one
  if (inner.ss > 1)
    for (int d = 0; d + 1 < rank; ++d)
      if (dims[d].ss == 1) t = d;
  Dim outer[kMaxDims];  // the dims walked by the index counter
  int n_outer = 0;
  int64_t outer_count = 1;
  for (int d = 0; d + 1 < rank; ++d)
    if (d != t) {
      outer[n_outer++] = dims[d];
      outer_count *= dims[d].size;
    }
  const int64_t per_outer = inner.size * (t >= 0 ? dims[t].size : 1);
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;

  if (n_outer == 0 && t < 0) {  // one run: threads split it into blocks
    const int64_t block = int64_t(1) << 15, blocks = (inner.size + block - 1) / block;
    parallel_for(0, blocks, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        float* pd = dst + b * block;
        const float* ps = src + b * block * inner.ss;
        const int64_t n = std::min(block, inner.size - b * block);
        if (inner.ss == 1) {
          if (avx512) avx512::copy_run(pd, ps, n);
          else avx2::copy_run(pd, ps, n);
        } else if (inner.ss == 0) {
          if (avx512) avx512::fill_run(pd, *ps, n);
          else avx2::fill_run(pd, *ps, n);
        } else {
          if (avx512) avx512::gather_run(pd, ps, inner.ss, n);
          else avx2::gather_run(pd, ps, inner.ss, n);
        }
      }
    });
    return true;
  }
  parallel_for(0, outer_count, tasks_per_chunk(per_outer), [&](int64_t lo, int64_t hi) {
    int64_t idx[kMaxDims] = {0};
    int64_t od = 0, os = 0;  // offsets of outer index lo
    for (int64_t rest = lo, d = n_outer - 1; d >= 0; --d) {
      idx[d] = rest % outer[d].size;
      rest /= outer[d].size;
      od += idx[d] * outer[d].ds;
      os += idx[d] * outer[d].ss;
    }
    for (int64_t o = lo; o < hi; ++o) {
      float* pd = dst + od;
      const float* ps = src + os;
      if (t >= 0) {
        if (avx512) avx512::transpose_block(pd, dims[t].ds, ps, inner.ss, inner.size, dims[t].size);
        else avx2::transpose_block(pd, dims[t].ds, ps, inner.ss, inner.size, dims[t].size);
      } else if (inner.ss == 1) {
        if (avx512) avx512::copy_run(pd, ps, inner.size);
        else avx2::copy_run(pd, ps, inner.size);
      } else if (inner.ss == 0) {
        if (avx512) avx512::fill_run(pd, *ps, inner.size);
        else avx2::fill_run(pd, *ps, inner.size);
      } else {
        if (avx512) avx512::gather_run(pd, ps, inner.ss, inner.size);
        else avx2::gather_run(pd, ps, inner.ss, inner.size);
      }
      for (int d = n_outer - 1; d >= 0; --d) {  // next outer index
        if (++idx[d] < outer[d].size) {
          od += outer[d].ds;
          os += outer[d].ss;
          break;
        }
        od -= outer[d].ds * (outer[d].size - 1);
        os -= outer[d].ss * (outer[d].size - 1);
        idx[d] = 0;
      }
    }
  });
  return true;
#else
  return false;
#endif
}

}  // namespace graft::kernels::cpu
