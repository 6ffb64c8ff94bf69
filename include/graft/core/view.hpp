// graft/core/view.hpp - TensorView<T, Rank>: the typed, fixed-rank window kernels index through.
//
//   auto x = input.view_as<float, 4>();   // checks dtype float32, rank 4, CPU
//   x(n, c, h, w)                          // element at offset + n*s0 + c*s1 + h*s2 + w*s3
#pragma once
#include <array>
#include <cstdint>

#include "graft/core/tensor.hpp"

namespace graft {

template <class T, int Rank>
struct TensorView {
  T* data = nullptr;                   // element [0,...,0]
  std::array<int64_t, Rank> size{};    // extents
  std::array<int64_t, Rank> stride{};  // in elements

  template <class... I>
  T& operator()(I... i) const {
    static_assert(sizeof...(I) == Rank, "TensorView: wrong number of indices");
    const int64_t idx[] = {static_cast<int64_t>(i)...};
    int64_t off = 0;
    for (int d = 0; d < Rank; ++d) off += idx[d] * stride[size_t(d)];
    return data[off];
  }
};

template <class T, int Rank>
TensorView<T, Rank> view_as(const Tensor& t, const char* op = "view_as") {
  GRAFT_CHECK(t.defined(), op, "tensor is undefined");
  GRAFT_CHECK(t.dim() == Rank, op, "expected a tensor of rank ", Rank, ", got shape ", t.shape());
  TensorView<T, Rank> v;
  v.data = t.data<T>();
  for (int d = 0; d < Rank; ++d) {
    v.size[size_t(d)] = t.shape()[d];
    v.stride[size_t(d)] = t.strides()[d];
  }
  return v;
}

}  // namespace graft
