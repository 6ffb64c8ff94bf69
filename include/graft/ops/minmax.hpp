// graft/ops/minmax.hpp - value-selecting reductions: max/min over one dim (values and int64
// indices), max/min of everything, amax/amin over a set of dims, argmax/argmin.
//
// Shapes: max(x, dim)  x [d0, ..., dn-1] seen as [outer, n, inner] around dim (n = d_dim)
//                      values, indices: x's shape without dim (kept as 1 when keepdim)
//         amax(x, D)   x seen as [M, K]: its kept dims first, the dims in D last (empty D = all)
//                      out: x's shape without the dims in D (kept as 1 when keepdim)
// Gradients, as PyTorch: max/min over a dim send dvalues to the selected index only; max(x),
// min(x), amax and amin split it evenly among the elements equal to the result (ties).
// NaN propagates: a slice holding a NaN yields NaN, and the index of its first NaN.
// Ties in the values: the first occurrence wins.
#pragma once
#include <algorithm>
#include <utility>
#include <vector>

#include "graft/ops/reduce.hpp"

namespace graft {

// Layout helpers shared by the row-wise reductions and normalizations (var, softmax, layer_norm,
// batch_norm).
namespace detail_rows {
// x [d0, ..., dn-1] seen as [outer, n, inner] around dim d; a 0-d tensor is [1, 1, 1].
struct DimSplit {
  int64_t outer = 1, n = 1, inner = 1;
};
inline DimSplit split_at(const Shape& s, int d) {
  DimSplit r;
  if (s.rank() == 0) return r;
  for (int i = 0; i < d; ++i) r.outer *= s[i];
  r.n = s[d];
  for (int i = d + 1; i < s.rank(); ++i) r.inner *= s[i];
  return r;
}
// x's shape with dim d removed, or kept as 1 when keepdim (a 0-d tensor stays 0-d).
inline Shape without_dim(const Shape& s, int d, bool keepdim) {
  Shape out = s;
  if (s.rank() == 0) return out;
  if (keepdim) {
    out[d] = 1;
  } else {
    out.erase(d);
  }
  return out;
}
// The permutation that puts the kept dims first and the reduced dims (mask) last, each in order.
inline std::vector<int64_t> kept_then_reduced(const std::vector<bool>& mask) {
  std::vector<int64_t> perm;
  for (size_t i = 0; i < mask.size(); ++i)
    if (!mask[i]) perm.push_back(int64_t(i));
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i]) perm.push_back(int64_t(i));
  return perm;
}
inline std::vector<int64_t> inverse_permutation(const std::vector<int64_t>& perm) {
  std::vector<int64_t> inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inv[size_t(perm[i])] = int64_t(i);
  return inv;
}
inline int64_t kept_count(const Shape& s, const std::vector<bool>& mask) {
  int64_t m = 1;
  for (int i = 0; i < s.rank(); ++i)
    if (!mask[size_t(i)]) m *= s[i];
  return m;
}
// x (detached) as a contiguous [M, K] block: kept dims first, reduced dims last.
inline Tensor to_rows(const Tensor& x, const std::vector<bool>& mask) {
  return x.detach().permute(kept_then_reduced(mask)).contiguous();
}
// The inverse of to_rows for a gradient: rows [M, K] laid out as x's permuted shape, back to
// x's shape (contiguous).
inline Tensor from_rows(const Tensor& rows, const Shape& x_shape, const std::vector<bool>& mask) {
  const auto perm = kept_then_reduced(mask);
  Shape permuted;
  for (int64_t p : perm) permuted.push_back(x_shape[int(p)]);
  const Tensor v = make_view(rows, permuted, contiguous_strides(permuted), rows.offset());
  return v.permute(inverse_permutation(perm)).contiguous();
}
}  // namespace detail_rows

namespace kernels::cpu {

// Rows per parallel_for chunk for rows of `row_length` elements: about 16K elements per chunk,
// so small inputs stay on the calling thread.
inline int64_t chunk_rows(int64_t row_length) {
  return std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(1, row_length));
}

// True when candidate a replaces the current best b: a NaN beats any number, and once a NaN is
// held nothing replaces it; otherwise a strictly greater (smaller for min) value wins, so the
// first occurrence of the extreme is kept.
template <class T>
inline bool replaces_extreme(T a, T b, bool is_max) {
  if (b != b) return false;
  if (a != a) return true;
  return is_max ? a > b : a < b;
}

// values[o, i] = max_k x[o, k, i] (min when !is_max); indices[o, i] = the k that attains it.
// x contiguous [outer, n, inner] with n >= 1; values [outer, inner] of x's dtype (may be undefined,
// for argmax), indices [outer, inner] int64; both contiguous.
inline void max_dim_forward_reference(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t outer,
                            int64_t n, int64_t inner, bool is_max) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), is_max ? "max" : "min", T, [&] {
    const T* px = x.data<T>();
    T* pv = values.defined() ? values.data<T>() : nullptr;
    int64_t* pi = indices.data<int64_t>();
    const int64_t rows = outer * inner;
    parallel_for(0, rows, chunk_rows(n), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const T* row = px + (r / inner) * n * inner + r % inner;  // row[k * inner], k < n
        T best = row[0];
        int64_t best_k = 0;
        for (int64_t k = 1; k < n; ++k) {
          const T v = row[k * inner];
          if (replaces_extreme(v, best, is_max)) {
            best = v;
            best_k = k;
          }
        }
        if (pv) pv[r] = best;
        pi[r] = best_k;
      }
    });
  });
}

// The CPU entry: the fast float32 kernel (kernels/graft/kernels/cpu/reduce.hpp), else the reference.
inline void max_dim_forward(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t outer, int64_t n,
                            int64_t inner, bool is_max) {
  if (x.dtype() == DType::Float32 &&
      max_dim_forward_fast(values.defined() ? values.data<float>() : nullptr, indices.data<int64_t>(),
                           x.data<float>(), outer, n, inner, is_max))
    return;
  max_dim_forward_reference(values, indices, x, outer, n, inner, is_max);
}

// dx[o, indices[o, i], i] = dvalues[o, i]; every other element of dx is 0.
// dx contiguous [outer, n, inner]; dvalues, indices contiguous [outer, inner].
inline void max_dim_backward_reference(const Tensor& dx, const Tensor& dvalues, const Tensor& indices,
                                       int64_t outer, int64_t n, int64_t inner) {
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "max_backward", T, [&] {
    T* pdx = dx.data<T>();
    const T* pdv = dvalues.data<T>();
    const int64_t* pi = indices.data<int64_t>();
    parallel_for(0, outer, chunk_rows(n * inner), [&](int64_t lo, int64_t hi) {
      for (int64_t o = lo; o < hi; ++o) {
        T* block = pdx + o * n * inner;  // [n, inner]
        std::fill(block, block + n * inner, T(0));
        for (int64_t i = 0; i < inner; ++i) block[pi[o * inner + i] * inner + i] = pdv[o * inner + i];
      }
    });
  });
}

// The CPU entry: the fast float32 kernel (kernels/graft/kernels/cpu/reduce.hpp), else the reference.
inline void max_dim_backward(const Tensor& dx, const Tensor& dvalues, const Tensor& indices, int64_t outer,
                             int64_t n, int64_t inner) {
  if (dx.dtype() == DType::Float32 && dvalues.dtype() == DType::Float32 &&
      max_dim_backward_fast(dx.data<float>(), dvalues.data<float>(), indices.data<int64_t>(), outer, n, inner))
    return;
  max_dim_backward_reference(dx, dvalues, indices, outer, n, inner);
}

// out[m] = max_k x[m, k] (min when !is_max), NaN propagating. x contiguous [M, K], K >= 1.
inline void amax_forward_reference(const Tensor& out, const Tensor& x, int64_t M, int64_t K, bool is_max) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), is_max ? "amax" : "amin", T, [&] {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    parallel_for(0, M, chunk_rows(K), [&](int64_t lo, int64_t hi) {
      for (int64_t m = lo; m < hi; ++m) {
        const T* row = px + m * K;
        T best = row[0];
        for (int64_t k = 1; k < K; ++k)
          if (replaces_extreme(row[k], best, is_max)) best = row[k];
        po[m] = best;
      }
    });
  });
}

// The CPU entry: the fast float32 kernel (kernels/graft/kernels/cpu/reduce.hpp), else the reference.
inline void amax_forward(const Tensor& out, const Tensor& x, int64_t M, int64_t K, bool is_max) {
  if (x.dtype() == DType::Float32 && amax_forward_fast(out.data<float>(), x.data<float>(), M, K, is_max)) return;
  amax_forward_reference(out, x, M, K, is_max);
}

// dx[m, k] = dout[m] / count_m where x[m, k] equals out[m] (both NaN counts as equal), else 0;
// count_m is the number of such ties. dx, x contiguous [M, K]; dout, out contiguous [M].
inline void amax_backward_reference(const Tensor& dx, const Tensor& dout, const Tensor& x, const Tensor& out,
                                    int64_t M, int64_t K) {
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "amax_backward", T, [&] {
    T* pdx = dx.data<T>();
    const T* pdo = dout.data<T>();
    const T* px = x.data<T>();
    const T* po = out.data<T>();
    parallel_for(0, M, chunk_rows(K), [&](int64_t lo, int64_t hi) {
      for (int64_t m = lo; m < hi; ++m) {
        const T* row = px + m * K;
        const T best = po[m];
        auto ties = [&](T v) { return v == best || (v != v && best != best); };
        int64_t count = 0;
        for (int64_t k = 0; k < K; ++k) count += ties(row[k]) ? 1 : 0;
        const T share = pdo[m] / T(count);
        for (int64_t k = 0; k < K; ++k) pdx[m * K + k] = ties(row[k]) ? share : T(0);
      }
    });
  });
}

// The CPU entry: the fast float32 kernel (kernels/graft/kernels/cpu/reduce.hpp), else the reference.
inline void amax_backward(const Tensor& dx, const Tensor& dout, const Tensor& x, const Tensor& out, int64_t M,
                          int64_t K) {
  if (dx.dtype() == DType::Float32 && dout.dtype() == DType::Float32 && x.dtype() == DType::Float32 &&
      amax_backward_fast(dx.data<float>(), dout.data<float>(), x.data<float>(), out.data<float>(), M, K))
    return;
  amax_backward_reference(dx, dout, x, out, M, K);
}

}  // namespace kernels::cpu

using MaxDimKernel = void (*)(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t outer,
                              int64_t n, int64_t inner, bool is_max);
using MaxDimBackwardKernel = void (*)(const Tensor& dx, const Tensor& dvalues, const Tensor& indices,
                                      int64_t outer, int64_t n, int64_t inner);
using AmaxKernel = void (*)(const Tensor& out, const Tensor& x, int64_t M, int64_t K, bool is_max);
using AmaxBackwardKernel = void (*)(const Tensor& dx, const Tensor& dout, const Tensor& x, const Tensor& out,
                                    int64_t M, int64_t K);
GRAFT_KERNEL_SLOT(MaxDimKernel, max_dim_kernel, "max", kernels::cpu::max_dim_forward, "avx2 avx512");
GRAFT_KERNEL_SLOT(MaxDimBackwardKernel, max_dim_backward_kernel, "max_backward", kernels::cpu::max_dim_backward,
                  "avx2 avx512");
GRAFT_KERNEL_SLOT(AmaxKernel, amax_kernel, "amax", kernels::cpu::amax_forward, "avx2 avx512");
GRAFT_KERNEL_SLOT(AmaxBackwardKernel, amax_backward_kernel, "amax_backward", kernels::cpu::amax_backward,
                  "avx2 avx512");

namespace autograd {
// Gradient of max/min over one dim: dvalues scattered to the selected indices.
class MaxDimBackward final : public Node {
 public:
  std::string name() const override { return is_max ? "MaxBackward" : "MinBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    GRAFT_CHECK(!GradMode::enabled(), name(), "second derivative (create_graph) is not implemented");
    const Tensor indices = indices_.unpack(this);
    const Tensor dvalues = grads[0].contiguous();
    Tensor dx = empty(x_shape, dvalues.dtype(), dvalues.device());
    max_dim_backward_kernel.get(dx.device())(dx, dvalues, indices, split.outer, split.n, split.inner);
    return {dx};
  }
  void release_saved() override { indices_.release(); }
  bool is_max = true;
  SavedTensor indices_;
  Shape x_shape;
  detail_rows::DimSplit split;
};

// Gradient of amax/amin (and of max(x), min(x)): dout split evenly among the ties.
class AmaxBackward final : public Node {
 public:
  std::string name() const override { return name_; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    GRAFT_CHECK(!GradMode::enabled(), name(), "second derivative (create_graph) is not implemented");
    const Tensor x = x_.unpack(this), out = out_.unpack(this);
    const Tensor rows = detail_rows::to_rows(x, mask);  // [M, K]
    const int64_t K = detail_reduce::reduced_count(x.shape(), mask), M = detail_rows::kept_count(x.shape(), mask);
    Tensor drows = empty(rows.shape(), rows.dtype(), rows.device());
    amax_backward_kernel.get(x.device())(drows, grads[0].contiguous(), rows, out.contiguous(), M, K);
    return {detail_rows::from_rows(drows, x.shape(), mask)};
  }
  void release_saved() override {
    x_.release();
    out_.release();
  }
  std::string name_ = "AmaxBackward";
  SavedTensor x_, out_;
  std::vector<bool> mask;
};
}  // namespace autograd

namespace detail_minmax {
inline void check_input(const Tensor& x, const char* op) {
  GRAFT_CHECK(x.defined(), op, "undefined tensor argument");
  GRAFT_CHECK(is_floating(x.dtype()), op, "expected a floating-point tensor, got ", dtype_name(x.dtype()));
}

// Values (undefined when !want_values) and int64 indices of the extreme over dim.
inline std::pair<Tensor, Tensor> extreme_dim(const Tensor& x, int64_t dim, bool keepdim, bool is_max,
                                             bool want_values, const char* op) {
  check_input(x, op);
  if (is_reduced_float(x.dtype())) {  // in float32; the extremes are values of x, so rounding back is exact
    auto [values, indices] = extreme_dim(x.to(DType::Float32), dim, keepdim, is_max, want_values, op);
    return {values.defined() ? values.to(x.dtype()) : values, indices};
  }
  const int d = wrap_dim(dim, x.dim(), op);
  const detail_rows::DimSplit split = detail_rows::split_at(x.shape(), d);
  GRAFT_CHECK(split.n > 0, op, "cannot reduce over dim ", dim, " of size 0 (input shape ", x.shape(), ")");
  const Shape out_shape = detail_rows::without_dim(x.shape(), d, keepdim);
  const Tensor xc = x.detach().contiguous();
  Tensor values = want_values ? empty(out_shape, x.dtype(), x.device()) : Tensor();
  Tensor indices = empty(out_shape, DType::Int64, x.device());
  max_dim_kernel.get(x.device())(values, indices, xc, split.outer, split.n, split.inner, is_max);
  if (want_values && autograd::any_requires_grad({&x})) {
    auto node = std::make_shared<autograd::MaxDimBackward>();
    node->is_max = is_max;
    node->indices_ = autograd::SavedTensor(indices, true);
    node->x_shape = x.shape();
    node->split = split;
    autograd::connect(node, {x}, {values, indices});
  }
  return {values, indices};
}

// The extreme over the dims in `dims` (empty = all), gradient split among ties.
inline Tensor extreme_dims(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, bool is_max,
                           const char* op, const char* node_name) {
  check_input(x, op);
  if (is_reduced_float(x.dtype()))
    return widened(x, [&](const Tensor& xf) { return extreme_dims(xf, dims, keepdim, is_max, op, node_name); });
  const auto mask = detail_reduce::dim_mask(dims, x.dim(), op);
  const int64_t K = detail_reduce::reduced_count(x.shape(), mask), M = detail_rows::kept_count(x.shape(), mask);
  GRAFT_CHECK(K > 0, op, "cannot reduce over zero elements (input shape ", x.shape(), ")");
  Tensor out = empty(detail_reduce::reduced_shape(x.shape(), mask, keepdim), x.dtype(), x.device());
  amax_kernel.get(x.device())(out, detail_rows::to_rows(x, mask), M, K, is_max);
  if (autograd::any_requires_grad({&x})) {
    auto node = std::make_shared<autograd::AmaxBackward>();
    node->name_ = node_name;
    node->x_ = x;
    node->out_ = autograd::SavedTensor(out, true);
    node->mask = mask;
    autograd::connect(node, {x}, {out});
  }
  return out;
}
}  // namespace detail_minmax

// (values, indices) of the maximum over dim; indices are int64, the first occurrence of the max.
inline std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false) {
  return detail_minmax::extreme_dim(x, dim, keepdim, true, true, "max");
}
inline std::pair<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false) {
  return detail_minmax::extreme_dim(x, dim, keepdim, false, true, "min");
}
// The maximum of all elements, as a 0-d tensor.
inline Tensor max(const Tensor& x) {
  return detail_minmax::extreme_dims(x, {}, false, true, "max", "MaxAllBackward");
}
inline Tensor min(const Tensor& x) {
  return detail_minmax::extreme_dims(x, {}, false, false, "min", "MinAllBackward");
}

// The maximum over `dims` (empty = all dims).
inline Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false) {
  return detail_minmax::extreme_dims(x, dims, keepdim, true, "amax", "AmaxBackward");
}
inline Tensor amin(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false) {
  return detail_minmax::extreme_dims(x, dims, keepdim, false, "amin", "AminBackward");
}

// int64 index of the maximum over dim (first occurrence; NaN counts as the maximum).
inline Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false) {
  return detail_minmax::extreme_dim(x, dim, keepdim, true, false, "argmax").second;
}
inline Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false) {
  return detail_minmax::extreme_dim(x, dim, keepdim, false, false, "argmin").second;
}
// Index of the maximum in the flattened tensor, as a 0-d int64 tensor.
inline Tensor argmax(const Tensor& x) {
  GRAFT_CHECK(x.defined(), "argmax", "undefined tensor argument");
  return argmax(x.detach().reshape({-1}), 0).reshape(Shape{});
}
inline Tensor argmin(const Tensor& x) {
  GRAFT_CHECK(x.defined(), "argmin", "undefined tensor argument");
  return argmin(x.detach().reshape({-1}), 0).reshape(Shape{});
}

GRAFT_REGISTER_OP(max, true);
GRAFT_REGISTER_OP(min, true);
GRAFT_REGISTER_OP(max_all, true);
GRAFT_REGISTER_OP(min_all, true);
GRAFT_REGISTER_OP(amax, true);
GRAFT_REGISTER_OP(amin, true);
GRAFT_REGISTER_OP(argmax, false);
GRAFT_REGISTER_OP(argmin, false);

}  // namespace graft
