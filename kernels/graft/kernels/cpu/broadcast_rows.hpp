// graft/kernels/cpu/broadcast_rows.hpp - a broadcast elementwise op as rows of contiguous work.
//
// BroadcastRows plans out = f(a, b) over out's shape with a and b given by strides (0 on broadcast
// dims): dims are merged where both operands allow it and size-1 dims dropped, so each row is the
// last merged dim with one stride per operand (often 1 or 0). Used by the reference binary kernel
// (graft/ops/elementwise.hpp) and the fast one (elementwise.hpp here).
#pragma once
#include <cstdint>

#include "graft/core/shape.hpp"

namespace graft::kernels::cpu {

// The dims of a broadcast binary op, merged where both operands allow it (stride[d] ==
// stride[d + 1] * size[d + 1] for a and b) and size-1 dims dropped, so [N, C, H, W] * [N, C, 1, 1]
// becomes N C rows of H W elements times one scalar each. The last dim is the row.
struct BroadcastRows {
  int rank = 0;  // merged dims, the last one being the row
  int64_t size[kMaxDims] = {}, sa[kMaxDims] = {}, sb[kMaxDims] = {};
  int64_t rows() const {
    int64_t r = 1;
    for (int d = 0; d + 1 < rank; ++d) r *= size[d];
    return r;
  }
  int64_t row_len() const { return rank ? size[rank - 1] : 1; }
  // Offsets of row r in a and b.
  void row_offsets(int64_t r, int64_t& oa, int64_t& ob) const {
    oa = ob = 0;
    for (int d = rank - 2; d >= 0; --d) {
      const int64_t i = r % size[d];
      r /= size[d];
      oa += i * sa[d];
      ob += i * sb[d];
    }
  }
};

inline BroadcastRows broadcast_rows(const Shape& shape, const Shape& sa, const Shape& sb) {
  BroadcastRows p;
  for (int d = 0; d < shape.rank(); ++d) {
    if (shape[d] == 1) continue;
    if (p.rank > 0) {
      const int q = p.rank - 1;  // merge the previous (outer) dim into this one when both allow it
      if (p.sa[q] == sa[d] * shape[d] && p.sb[q] == sb[d] * shape[d]) {
        p.size[q] *= shape[d];
        p.sa[q] = sa[d];
        p.sb[q] = sb[d];
        continue;
      }
    }
    p.size[p.rank] = shape[d];
    p.sa[p.rank] = sa[d];
    p.sb[p.rank] = sb[d];
    ++p.rank;
  }
  return p;
}

}  // namespace graft::kernels::cpu
