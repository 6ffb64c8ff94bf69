// graft/ops/reduce.hpp - reductions over a set of dims: sum, mean, and sum_to (the gradient of a
// broadcast). Other reductions (max, argmax, var) follow the same pattern in their own headers.
//
// Shapes: x [d0, ..., dn-1], dims D (any subset; empty = all)
//         out: x's shape with each d in D removed (or kept as 1 when keepdim)
#pragma once
#include <vector>

#include "graft/kernels/cpu/reduce.hpp"
#include "graft/ops/elementwise.hpp"

namespace graft {

namespace detail_reduce {
// Normalizes `dims` (negative, duplicates) into a per-dim mask; empty means all dims.
inline std::vector<bool> dim_mask(const std::vector<int64_t>& dims, int rank, const char* op) {
  std::vector<bool> mask(size_t(rank), dims.empty());
  for (int64_t d : dims) {
    const int w = wrap_dim(d, rank, op);
    GRAFT_CHECK(rank == 0 || !mask[size_t(w)], op, "dim ", d, " appears more than once");
    if (rank > 0) mask[size_t(w)] = true;
  }
  return mask;
}
inline Shape keepdim_shape(const Shape& s, const std::vector<bool>& mask) {
  Shape out = s;
  for (int i = 0; i < s.rank(); ++i)
    if (mask[size_t(i)]) out[i] = 1;
  return out;
}
inline Shape reduced_shape(const Shape& s, const std::vector<bool>& mask, bool keepdim) {
  if (keepdim) return keepdim_shape(s, mask);
  Shape out;
  for (int i = 0; i < s.rank(); ++i)
    if (!mask[size_t(i)]) out.push_back(s[i]);
  return out;
}
inline int64_t reduced_count(const Shape& s, const std::vector<bool>& mask) {
  int64_t n = 1;
  for (int i = 0; i < s.rank(); ++i)
    if (mask[size_t(i)]) n *= s[i];
  return n;
}
// Strides that map each index of x's shape to its slot in the contiguous keepdim output.
inline Shape out_strides_over_input(const Shape& x_shape, const std::vector<bool>& mask) {
  const Shape kd = keepdim_shape(x_shape, mask);
  Shape st = contiguous_strides(kd);
  for (int i = 0; i < x_shape.rank(); ++i)
    if (mask[size_t(i)]) st[i] = 0;
  return st;
}
}  // namespace detail_reduce

namespace kernels::cpu {
// out[keepdim slot] = sum of x over the masked dims. out contiguous (keepdim layout), same dtype.
// Accumulates in double. The reference: the oracle of sum_forward_fast and its fallback.
inline void sum_forward_reference(const Tensor& out, const Tensor& x, const std::vector<bool>& mask) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), "sum", T, [&] {
    const Shape ost = detail_reduce::out_strides_over_input(x.shape(), mask);
    std::vector<double> acc(size_t(out.numel()), 0.0);
    const T* px = static_cast<const T*>(x.data_ptr());
    for_each_offset2(x.shape(), x.strides(), ost,
                     [&](int64_t, int64_t ix, int64_t io) { acc[size_t(io)] += double(px[ix]); });
    T* o = out.data<T>();
    for (size_t i = 0; i < acc.size(); ++i) o[i] = T(acc[i]);
  });
}

// The CPU entry: the fast float32 kernel (kernels/graft/kernels/cpu/reduce.hpp) for a contiguous
// input, else the reference.
inline void sum_forward(const Tensor& out, const Tensor& x, const std::vector<bool>& mask) {
  if (x.dtype() == DType::Float32 && x.is_contiguous() &&
      sum_forward_fast(out.data<float>(), x.data<float>(), x.shape(), mask))
    return;
  sum_forward_reference(out, x, mask);
}
}  // namespace kernels::cpu

using SumKernel = void (*)(const Tensor& out, const Tensor& x, const std::vector<bool>& mask);
GRAFT_KERNEL_SLOT(SumKernel, sum_kernel, "sum", kernels::cpu::sum_forward, "avx2 avx512");

inline Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false) {
  GRAFT_CHECK(x.defined(), "sum", "undefined tensor argument");
  GRAFT_CHECK(is_floating(x.dtype()), "sum", "expected a floating-point tensor, got ", dtype_name(x.dtype()));
  if (is_reduced_float(x.dtype()))  // autocast's float32 kind (ops/autocast.hpp)
    return float32_op(x, [&](const Tensor& xf) { return sum(xf, dims, keepdim); });
  const auto mask = detail_reduce::dim_mask(dims, x.dim(), "sum");
  const Shape kd = detail_reduce::keepdim_shape(x.shape(), mask);
  Tensor out = empty(kd, x.dtype(), x.device());
  sum_kernel.get(x.device())(out, x.detach(), mask);
  if (!keepdim) out = make_view(out, detail_reduce::reduced_shape(x.shape(), mask, false),
                                contiguous_strides(detail_reduce::reduced_shape(x.shape(), mask, false)), 0);
  if (autograd::any_requires_grad({&x})) {
    const Shape in_shape = x.shape();
    autograd::record_shape_op("SumBackward", x, out, [in_shape, kd](std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].reshape(kd).expand(in_shape)};
    });
  }
  return out;
}

inline Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false) {
  GRAFT_CHECK(x.defined(), "mean", "undefined tensor argument");
  if (is_reduced_float(x.dtype()))  // one rounding, of the float32 mean
    return float32_op(x, [&](const Tensor& xf) { return mean(xf, dims, keepdim); });
  const auto mask = detail_reduce::dim_mask(dims, x.dim(), "mean");
  const int64_t n = detail_reduce::reduced_count(x.shape(), mask);
  return div(sum(x, dims, keepdim), double(n));
}

// Sums x down to `shape` (the inverse of broadcasting `shape` up to x's shape).
inline Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int lead = x.dim() - shape.rank();
  GRAFT_CHECK(lead >= 0, "sum_to", "cannot reduce shape ", x.shape(), " to ", shape);
  std::vector<int64_t> dims;
  for (int i = 0; i < x.dim(); ++i) {
    const int j = i - lead;
    if (j < 0) {
      dims.push_back(i);
    } else if (shape[j] == 1 && x.size(i) != 1) {
      dims.push_back(i);
    } else {
      GRAFT_CHECK(shape[j] == x.size(i), "sum_to", "cannot reduce shape ", x.shape(), " to ", shape);
    }
  }
  if (dims.empty()) return x.reshape(shape);
  return sum(x, dims, true).reshape(shape);
}

GRAFT_REGISTER_OP(sum, true);
GRAFT_REGISTER_OP(mean, true);
GRAFT_REGISTER_OP(sum_to, true);

}  // namespace graft
