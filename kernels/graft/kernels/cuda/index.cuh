// graft/kernels/cuda/index.cuh - joining and indexing on the GPU: the slots of graft/ops/index.hpp
// (cat, index_select and its backward, gather and its backward) and graft/ops/pad.hpp (pad). The
// index math lives in index_plan.hpp (tested on the CPU). Indices reach these kernels as contiguous
// int64 on the data's device, already checked to lie in range by the index_range_check slot
// (embedding.cuh), so no kernel here reads out of bounds.
//
//   cat_forward(out [outer, total, inner], inputs[t] [outer, n_t, inner], dim): one launch per 32
//     inputs with a table of their pointers; block row y = input t, grid.x strides over its units.
//   index_select_forward(out [outer, m, inner], x [outer, n, inner], index [m], dim): a thread per
//     unit of out.
//     Both move bytes, so every dtype: in units of 16, 8, 4, 2 or 1 bytes, the widest that divides
//     the row lengths in bytes and the pointers (widest_unit), so aligned rows move as 16-byte
//     vectors and odd sizes or offsets fall back to narrower units.
//   index_select_backward(dx [outer, n, inner] zeroed, dout [outer, m, inner], index [m], dim):
//     index_add, a thread per column (r, c) of dx walking j = 0 .. m-1 in order, as the CPU loop: the
//     same additions in the same order, so the same bits, no atomics. Its parallelism is outer * inner
//     (a 1-D index_add runs on one thread); sorting the indices first, as PyTorch does, would use
//     more threads.
//   gather_forward(out (index's shape), x, index, dim): a thread per element, any dtype (moved as
//     bytes of the element's size).
//   gather_backward(dx zeroed, dout (index's shape), index, dim): scatter_add, a thread per column
//     of index (its elements that differ only in coordinate dim: the only ones that can hit one
//     element of dx), walking it in order along dim: the CPU loop's order and bits, no atomics.
//   pad_forward(out, x, before, value): a thread per element of out, the fill value converted on
//     the host exactly as the CPU kernel converts it, any dtype.
// The backward passes take float32 and float64 (as the CPU kernels).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "graft/core/dtype.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"
#include "graft/kernels/cuda/index_plan.hpp"

namespace graft::kernels::cuda {

namespace index_detail {
constexpr unsigned kIndexBlock = 256;
constexpr int kCatBatch = 32;  // inputs per cat launch (the table is a kernel parameter, 776 bytes)

// Calls f(static_cast<U*>(nullptr)) with U the unsigned type of `bytes` bytes: with_element for an
// element's size (1, 2, 4, 8), with_unit also for 16 (uint4, the vector units of cat and index_select).
template <class F>
void with_element(int bytes, F&& f) {
  switch (bytes) {
    case 8: return f(static_cast<unsigned long long*>(nullptr));
    case 4: return f(static_cast<uint32_t*>(nullptr));
    case 2: return f(static_cast<uint16_t*>(nullptr));
    default: return f(static_cast<uint8_t*>(nullptr));
  }
}
template <class F>
void with_unit(int bytes, F&& f) {
  if (bytes == 16) return f(static_cast<uint4*>(nullptr));
  with_element(bytes, f);
}

inline uint64_t address(const void* p) { return uint64_t(reinterpret_cast<uintptr_t>(p)); }

// Internal invariant of the ops (index.hpp makes every index tensor on the data's device); a clear
// error instead of a device reading host memory if a caller breaks it.
inline void check_index_device(const Tensor& index, const Tensor& data, const char* op) {
  GRAFT_CHECK(index.device() == data.device(), op, "index is on ", index.device(), " but the tensor it indexes is on ",
              data.device());
}

struct CatTable {
  const void* src[kCatBatch];
  int64_t start[kCatBatch];  // where input t's units begin in a row of out
  int64_t len[kCatBatch];    // input t's units per row of out
};

// Block row t copies input t: its unit e to out[cat_destination(e, len_t, start_t, out_row)].
template <class U>
__global__ void cat_units(U* out, CatTable table, int64_t outer, int64_t out_row) {
  const int t = int(blockIdx.y);
  const int64_t len = table.len[t], count = outer * len, start = table.start[t];
  const U* src = static_cast<const U*>(table.src[t]);
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count; e += int64_t(gridDim.x) * blockDim.x)
    out[cat_destination(e, len, start, out_row)] = src[e];
}

// out unit e = x unit g.source(e, index[j]), j = g.index_position(e).
template <class U>
__global__ void select_units(U* out, const U* x, const int64_t* index, SelectRows g) {
  const int64_t count = g.outer * g.m * g.row;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count; e += int64_t(gridDim.x) * blockDim.x)
    out[e] = x[g.source(e, index[g.index_position(e)])];
}

// Thread (r, c): dx[r, index[j], c] += dout[r, j, c] for j = 0 .. m-1 in order.
template <class T>
__global__ void index_add_columns(T* dx, const T* dout, const int64_t* index, int64_t outer, int64_t n, int64_t m,
                                  int64_t inner) {
  for (int64_t col = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; col < outer * inner;
       col += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = col / inner, c = col % inner;
    T* d = dx + r * n * inner + c;           // d[k * inner]: dx[r, k, c]
    const T* g = dout + r * m * inner + c;   // g[j * inner]: dout[r, j, c]
    for (int64_t j = 0; j < m; ++j) d[index[j] * inner] += g[j * inner];
  }
}

// out[i] = x[g.x_base(i) + index[i] * x_stride[dim]], elements moved as U (the element's size).
template <class U>
__global__ void gather_elements(U* out, const U* x, const int64_t* index, GatherGeometry g, int64_t count) {
  const int64_t sd = g.dim_stride_x();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = x[g.x_base(i) + index[i] * sd];
}

// Thread per column of index: dx[x_off + index[p] x_stride[dim]] += dout[p] for the column's
// positions p = index_off + j * (index's stride along dim), j in order.
template <class T>
__global__ void scatter_add_columns(T* dx, const T* dout, const int64_t* index, GatherGeometry g) {
  const int64_t columns = g.columns(), len = g.column_len(), si = g.dim_stride_index(), sx = g.dim_stride_x();
  for (int64_t col = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; col < columns;
       col += int64_t(gridDim.x) * blockDim.x) {
    int64_t io = 0, xo = 0;
    g.column_start(col, &io, &xo);
    for (int64_t j = 0; j < len; ++j) {
      const int64_t p = io + j * si;
      dx[xo + index[p] * sx] += dout[p];
    }
  }
}

// out[o] = x[g.source(o)], or fill where that is -1.
template <class U>
__global__ void pad_elements(U* out, const U* x, PadGeometry g, int64_t count, U fill) {
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < count; o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t s = g.source(o);
    out[o] = s < 0 ? fill : x[s];
  }
}

inline int64_t outer_of(const Shape& s, int dim) {
  int64_t n = 1;
  for (int i = 0; i < dim; ++i) n *= s[i];
  return n;
}
inline int64_t inner_of(const Shape& s, int dim) {
  int64_t n = 1;
  for (int i = dim + 1; i < s.rank(); ++i) n *= s[i];
  return n;
}
}  // namespace index_detail

inline void cat_forward(const Tensor& out, const std::vector<Tensor>& inputs, int dim) {
  using namespace index_detail;
  const int64_t outer = outer_of(out.shape(), dim), inner = inner_of(out.shape(), dim);
  const uint64_t esize = dtype_size(out.dtype());
  const uint64_t row_bytes = uint64_t(out.shape()[dim] * inner) * esize;
  int unit = widest_unit({row_bytes, address(out.data_ptr())});
  for (const Tensor& t : inputs)
    unit = narrow_unit(narrow_unit(unit, uint64_t(t.shape()[dim] * inner) * esize), address(t.data_ptr()));
  const KernelLaunch at(out.device());
  with_unit(unit, [&](auto* tag) {
    using U = std::remove_pointer_t<decltype(tag)>;
    const int64_t out_row = int64_t(row_bytes / uint64_t(unit));
    int64_t start = 0;  // in units of a row of out
    for (size_t b = 0; b < inputs.size(); b += kCatBatch) {
      CatTable table{};
      const int count = int(std::min<size_t>(kCatBatch, inputs.size() - b));
      int64_t most = 0;
      for (int t = 0; t < count; ++t) {
        const Tensor& in = inputs[b + size_t(t)];
        table.src[t] = in.data_ptr();
        table.start[t] = start;
        table.len[t] = int64_t(uint64_t(in.shape()[dim] * inner) * esize / uint64_t(unit));
        start += table.len[t];
        most = std::max(most, outer * table.len[t]);
      }
      if (most == 0) continue;
      const dim3 grid(grid_for(most, kIndexBlock), unsigned(count));
      cat_units<U><<<grid, kIndexBlock, 0, at.stream>>>(static_cast<U*>(out.data_ptr()), table, outer, out_row);
      GRAFT_CUDA_CHECK(cudaGetLastError());
    }
  });
}

inline void index_select_forward(const Tensor& out, const Tensor& x, const Tensor& index, int dim) {
  using namespace index_detail;
  check_index_device(index, x, "index_select (cuda)");
  const int64_t inner = inner_of(x.shape(), dim);
  const uint64_t row_bytes = uint64_t(inner) * dtype_size(x.dtype());
  const int unit = widest_unit({row_bytes, address(x.data_ptr()), address(out.data_ptr())});
  const SelectRows g{outer_of(x.shape(), dim), x.shape()[dim], index.numel(), int64_t(row_bytes / uint64_t(unit))};
  const int64_t count = g.outer * g.m * g.row;
  if (count == 0) return;
  const KernelLaunch at(out.device());
  with_unit(unit, [&](auto* tag) {
    using U = std::remove_pointer_t<decltype(tag)>;
    select_units<U><<<grid_for(count, kIndexBlock), kIndexBlock, 0, at.stream>>>(
        static_cast<U*>(out.data_ptr()), static_cast<const U*>(x.data_ptr()),
        static_cast<const int64_t*>(index.data_ptr()), g);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void index_select_backward(const Tensor& dx, const Tensor& dout, const Tensor& index, int dim) {
  using namespace index_detail;
  check_index_device(index, dx, "index_select_backward (cuda)");
  const int64_t outer = outer_of(dx.shape(), dim), inner = inner_of(dx.shape(), dim);
  const int64_t n = dx.shape()[dim], m = index.numel();
  if (outer * inner == 0 || m == 0) return;
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "index_select_backward (cuda)", T, [&] {
    const KernelLaunch at(dx.device());
    index_add_columns<T><<<grid_for(outer * inner, kIndexBlock), kIndexBlock, 0, at.stream>>>(
        static_cast<T*>(dx.data_ptr()), static_cast<const T*>(dout.data_ptr()),
        static_cast<const int64_t*>(index.data_ptr()), outer, n, m, inner);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

// index's shape and x's contiguous strides, as the gather kernels read them.
inline GatherGeometry gather_geometry(const Shape& x_shape, const Shape& index_shape, int dim) {
  GatherGeometry g;
  g.rank = index_shape.rank();
  g.dim = dim;
  const Shape xs = contiguous_strides(x_shape);
  for (int d = 0; d < g.rank; ++d) {
    g.size[d] = index_shape[d];
    g.x_stride[d] = xs[d];
  }
  return g;
}

inline void gather_forward(const Tensor& out, const Tensor& x, const Tensor& index, int dim) {
  using namespace index_detail;
  check_index_device(index, x, "gather (cuda)");
  const int64_t count = index.numel();
  if (count == 0) return;
  const GatherGeometry g = gather_geometry(x.shape(), index.shape(), dim);
  const KernelLaunch at(out.device());
  with_element(int(dtype_size(x.dtype())), [&](auto* tag) {
    using U = std::remove_pointer_t<decltype(tag)>;
    gather_elements<U><<<grid_for(count, kIndexBlock), kIndexBlock, 0, at.stream>>>(
        static_cast<U*>(out.data_ptr()), static_cast<const U*>(x.data_ptr()),
        static_cast<const int64_t*>(index.data_ptr()), g, count);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void gather_backward(const Tensor& dx, const Tensor& dout, const Tensor& index, int dim) {
  using namespace index_detail;
  check_index_device(index, dx, "gather_backward (cuda)");
  if (index.numel() == 0) return;
  const GatherGeometry g = gather_geometry(dx.shape(), index.shape(), dim);
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "gather_backward (cuda)", T, [&] {
    const KernelLaunch at(dx.device());
    scatter_add_columns<T><<<grid_for(g.columns(), kIndexBlock), kIndexBlock, 0, at.stream>>>(
        static_cast<T*>(dx.data_ptr()), static_cast<const T*>(dout.data_ptr()),
        static_cast<const int64_t*>(index.data_ptr()), g);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void pad_forward(const Tensor& out, const Tensor& x, const std::vector<int64_t>& before, double value) {
  using namespace index_detail;
  const int64_t count = out.numel();
  if (count == 0) return;
  PadGeometry g;
  g.rank = x.dim();
  for (int d = 0; d < g.rank; ++d) {
    g.out_size[d] = out.shape()[d];
    g.x_size[d] = x.shape()[d];
    g.before[d] = before[size_t(d)];
  }
  // The fill value's bits, converted as the CPU kernel converts it (the half types through float).
  unsigned long long fill_bits = 0;
  GRAFT_DISPATCH_ALL(x.dtype(), "pad (cuda)", T, [&] {
    T fill;
    if constexpr (std::is_same_v<T, BFloat16> || std::is_same_v<T, Float16>)
      fill = T(static_cast<float>(value));
    else
      fill = static_cast<T>(value);
    static_assert(sizeof(T) <= sizeof fill_bits);
    std::memcpy(&fill_bits, &fill, sizeof(T));
  });
  const KernelLaunch at(out.device());
  with_element(int(dtype_size(x.dtype())), [&](auto* tag) {
    using U = std::remove_pointer_t<decltype(tag)>;
    U fill;
    std::memcpy(&fill, &fill_bits, sizeof(U));
    pad_elements<U><<<grid_for(count, kIndexBlock), kIndexBlock, 0, at.stream>>>(
        static_cast<U*>(out.data_ptr()), static_cast<const U*>(x.data_ptr()), g, count, fill);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace graft::kernels::cuda
