// graft/kernels/cuda/index_plan.hpp - the index math of the CUDA indexing kernels of index.cuh (cat,
// index_select, gather, pad): plain C++ (GRAFT_HOST_DEVICE), no CUDA header, so the CPU suite tests
// it (tests/test_cuda_reduce_index_host.cpp).
//
// The data-moving kernels (cat, index_select) copy in "units" of 1, 2, 4, 8 or 16 bytes: the widest
// that divides every row length in bytes and every pointer, so a float row of 4k elements at aligned
// addresses moves as 16-byte vectors, and any odd size or offset falls back to narrower units (down
// to single bytes) instead of reading misaligned.
#pragma once
#include <cstdint>
#include <initializer_list>

#include "graft/core/dtype.hpp"  // GRAFT_HOST_DEVICE
#include "graft/core/shape.hpp"  // kMaxDims

namespace graft::kernels::cuda {

// The widest of unit, unit / 2, ..., 1 that divides v (unit a power of two <= 16).
inline int narrow_unit(int unit, uint64_t v) {
  while (v % uint64_t(unit) != 0) unit /= 2;
  return unit;
}
// The widest of 16, 8, 4, 2, 1 that divides every value (byte counts, addresses).
inline int widest_unit(std::initializer_list<uint64_t> values) {
  int unit = 16;
  for (uint64_t v : values) unit = narrow_unit(unit, v);
  return unit;
}

// index_select: out [outer, m, row] = x [outer, n, row] at rows index[j] of the middle dim, a row
// being `row` units. Output unit e is (r, j, c) = (e / (m row), (e / row) % m, e % row); its source
// unit is (r n + index[j]) row + c.
struct SelectRows {
  int64_t outer = 0, n = 0, m = 0, row = 0;
  GRAFT_HOST_DEVICE int64_t index_position(int64_t e) const { return (e / row) % m; }
  GRAFT_HOST_DEVICE int64_t source(int64_t e, int64_t index_value) const {
    const int64_t r = e / (m * row), c = e % row;
    return (r * n + index_value) * row + c;
  }
};

// cat: input t [outer, len_t] (units) goes to columns [start_t, start_t + len_t) of out
// [outer, out_row]: its unit e lands at (e / len_t) out_row + start_t + e % len_t.
GRAFT_HOST_DEVICE inline int64_t cat_destination(int64_t e, int64_t len, int64_t start, int64_t out_row) {
  const int64_t r = e / len;
  return r * out_row + start + (e - r * len);
}

// gather / gather_backward over index contiguous of shape size[0..rank) and x contiguous (strides
// x_stride): element i of index (row-major) with coordinates c reads x at
//   sum_{k != dim} c_k x_stride[k] + index[i] x_stride[dim].
// The backward walks "columns": the elements that differ only in coordinate `dim` (the ones that can
// hit the same element of dx), in increasing order along dim, as the CPU loop meets them.
struct GatherGeometry {
  int rank = 0, dim = 0;
  int64_t size[kMaxDims] = {};      // index's shape
  int64_t x_stride[kMaxDims] = {};  // x's contiguous strides

  // Offset in x of element i of index, minus the index's own contribution (index[i] x_stride[dim]).
  GRAFT_HOST_DEVICE int64_t x_base(int64_t i) const {
    int64_t off = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t c = i % size[d];
      i /= size[d];
      if (d != dim) off += c * x_stride[d];
    }
    return off;
  }
  GRAFT_HOST_DEVICE int64_t dim_stride_x() const { return rank == 0 ? 0 : x_stride[dim]; }
  // Elements of index along dim (1 for a 0-d index) and their distance in index's layout.
  GRAFT_HOST_DEVICE int64_t column_len() const { return rank == 0 ? 1 : size[dim]; }
  GRAFT_HOST_DEVICE int64_t dim_stride_index() const {
    int64_t s = 1;
    for (int d = rank - 1; d > dim; --d) s *= size[d];
    return s;
  }
  GRAFT_HOST_DEVICE int64_t columns() const {
    int64_t n = 1;
    for (int d = 0; d < rank; ++d)
      if (d != dim) n *= size[d];
    return n;
  }
  // Column col (row-major over index's shape without dim): its first element's offset in index, and
  // the matching x_base.
  GRAFT_HOST_DEVICE void column_start(int64_t col, int64_t* index_off, int64_t* x_off) const {
    int64_t io = 0, xo = 0, istride = 1;
    for (int d = rank - 1; d >= 0; --d) {
      if (d != dim) {
        const int64_t c = col % size[d];
        col /= size[d];
        io += c * istride;
        xo += c * x_stride[d];
      }
      istride *= size[d];
    }
    *index_off = io;
    *x_off = xo;
  }
};

// pad: out contiguous of out_size, x contiguous of x_size, x shifted by before[d] along each dim
// (negative: cropped). source(o) is the x element that output element o copies, or -1 where o
// lies outside x (it takes the fill value).
struct PadGeometry {
  int rank = 0;
  int64_t out_size[kMaxDims] = {}, x_size[kMaxDims] = {}, before[kMaxDims] = {};
  GRAFT_HOST_DEVICE int64_t source(int64_t o) const {
    int64_t src = 0, stride = 1;
    bool inside = true;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t i = o % out_size[d] - before[d];
      o /= out_size[d];
      inside = inside && i >= 0 && i < x_size[d];
      src += i * stride;
      stride *= x_size[d];
    }
    return inside ? src : -1;
  }
};

}  // namespace graft::kernels::cuda
