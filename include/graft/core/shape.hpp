// graft/core/shape.hpp - Shape: up to 8 extents stored inline (no heap), plus stride helpers.
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "graft/core/error.hpp"

namespace graft {

inline constexpr int kMaxDims = 8;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }

  int rank() const { return rank_; }
  int size() const { return rank_; }
  int64_t operator[](int i) const { return d_[static_cast<size_t>(i)]; }
  int64_t& operator[](int i) { return d_[static_cast<size_t>(i)]; }
  const int64_t* begin() const { return d_.data(); }
  const int64_t* end() const { return d_.data() + rank_; }
  const int64_t* data() const { return d_.data(); }

  void push_back(int64_t v) {
    GRAFT_CHECK(rank_ < kMaxDims, "Shape", "more than ", kMaxDims, " dimensions");
    d_[static_cast<size_t>(rank_++)] = v;
  }
  void insert(int pos, int64_t v) {
    GRAFT_CHECK(rank_ < kMaxDims, "Shape", "more than ", kMaxDims, " dimensions");
    for (int i = rank_; i > pos; --i) d_[size_t(i)] = d_[size_t(i - 1)];
    d_[size_t(pos)] = v;
    ++rank_;
  }
  void erase(int pos) {
    for (int i = pos; i + 1 < rank_; ++i) d_[size_t(i)] = d_[size_t(i + 1)];
    --rank_;
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= d_[size_t(i)];
    return n;
  }
  std::vector<int64_t> vec() const { return {begin(), end()}; }

  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a[i] != b[i]) return false;
    return true;
  }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(d_[size_t(i)]);
    return s + "]";
  }
  friend std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

 private:
  template <class It>
  void assign(It b, It e) {
    for (; b != e; ++b) push_back(static_cast<int64_t>(*b));
  }
  std::array<int64_t, kMaxDims> d_{};
  int rank_ = 0;
};

// Row-major (C-contiguous) strides, in elements.
inline Shape contiguous_strides(const Shape& shape) {
  Shape s = shape;
  int64_t acc = 1;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    s[i] = acc;
    acc *= shape[i] > 1 ? shape[i] : 1;
  }
  return s;
}

// Wraps a possibly negative dim index into [0, rank); throws naming the op otherwise.
inline int wrap_dim(int64_t dim, int rank, const char* op) {
  const int64_t r = rank == 0 ? 1 : rank;  // a scalar accepts dim 0 / -1 like PyTorch
  GRAFT_CHECK(dim >= -r && dim < r, op, "dim ", dim, " out of range for a tensor of rank ", rank,
              " (expected in [", -r, ", ", r - 1, "])");
  return static_cast<int>(dim < 0 ? dim + r : dim);
}

// The broadcast of two shapes (numpy rules); throws naming the op and both shapes.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const int r = a.rank() > b.rank() ? a.rank() : b.rank();
  Shape out;
  for (int i = 0; i < r; ++i) {
    const int ia = i - (r - a.rank()), ib = i - (r - b.rank());
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    GRAFT_CHECK(da == db || da == 1 || db == 1, op, "shapes ", a, " and ", b,
                " cannot be broadcast (dim ", i, ": ", da, " vs ", db, ")");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

// The batch of a batched matrix product out[*batch, M, N] = a[*batch, M, K] b[*batch, K, N] (a and b
// expanded to out's batch): out's leading dims, and a's and b's strides over them. The CPU and CUDA
// matmul kernels share it.
struct ProductBatch {
  Shape shape, a_strides, b_strides;
};
inline ProductBatch product_batch(const Shape& out, const Shape& a_strides, const Shape& b_strides) {
  ProductBatch p;
  for (int d = 0; d + 2 < out.rank(); ++d) {
    p.shape.push_back(out[d]);
    p.a_strides.push_back(a_strides[d]);
    p.b_strides.push_back(b_strides[d]);
  }
  return p;
}

}  // namespace graft
