// graft/ops/index.hpp - joining and indexing: cat (concat), stack, split, index_select, gather.
//
// Shapes (PyTorch semantics):
//   cat(ts, d)              ts[t] equal except in dim d          -> sizes summed along d
//   stack(ts, d)            ts[t] all of shape s                 -> s with a new dim of size len(ts) at d
//   split(x, n | sizes, d)  x                                    -> views of x along d (differentiable via narrow)
//   index_select(x, d, i)   x [.., n, ..], i [m] int64/int32     -> [.., m, ..]
//   gather(x, d, i)         x, i int64 of equal rank, i.size(k) <= x.size(k) for k != d -> i's shape,
//                           out[.., j, ..] = x[.., i[.., j, ..], ..] (index replaces the coordinate d)
// Indices must lie in [0, size) (no negative wrapping, as in PyTorch); a bad one throws naming the op,
// the value, its position and the valid range.
//
// Backward: cat and stack route dout back through narrow views (no copy, differentiable).
// index_select's backward is index_add (duplicate indices accumulate) and gather's is scatter_add;
// both are plain kernels linear in dout, so a second derivative works while dout itself carries
// no history and throws otherwise.
#pragma once
#include <cstring>
#include <string>
#include <vector>

#include "graft/autograd/node.hpp"
#include "graft/core/dispatch.hpp"
#include "graft/core/parallel.hpp"
#include "graft/ops/autocast.hpp"
#include "graft/ops/copy.hpp"
#include "graft/ops/view.hpp"

namespace graft {

namespace kernels::cpu {
// The first position of index64 (int64, contiguous) holding a value outside [0, n): first_bad (-1 if
// none) and bad_value. Ops check their indices with it before any kernel reads them.
inline void index_range_check(const Tensor& index64, int64_t n, int64_t* first_bad, int64_t* bad_value) {
  const int64_t* p = index64.data<int64_t>();
  *first_bad = -1;
  *bad_value = 0;
  for (int64_t i = 0, m = index64.numel(); i < m; ++i)
    if (p[i] < 0 || p[i] >= n) {
      *first_bad = i;
      *bad_value = p[i];
      return;
    }
}
}  // namespace kernels::cpu

using IndexRangeKernel = void (*)(const Tensor& index64, int64_t n, int64_t* first_bad, int64_t* bad_value);
GRAFT_KERNEL_SLOT(IndexRangeKernel, index_range_kernel, "index_range_check", kernels::cpu::index_range_check);

namespace detail_index {
// "[i0, i1, ...]": the multi-index of the element at row-major position `linear` of `shape`.
inline std::string position_str(const Shape& shape, int64_t linear) {
  std::vector<int64_t> idx(size_t(shape.rank()), 0);
  for (int d = shape.rank() - 1; d >= 0; --d) {
    if (shape[d] > 0) {
      idx[size_t(d)] = linear % shape[d];
      linear /= shape[d];
    }
  }
  std::string s = "[";
  for (size_t i = 0; i < idx.size(); ++i) s += (i ? ", " : "") + std::to_string(idx[i]);
  return s + "]";
}

// The index tensor as contiguous int64 (converting int32 where the op accepts it), on `data_device`,
// the device of the tensor it indexes (the kernels read both there).
inline Tensor index_as_int64(const Tensor& index, const char* op, bool allow_int32, Device data_device) {
  GRAFT_CHECK(index.defined(), op, "index tensor is undefined");
  const bool ok = index.dtype() == DType::Int64 || (allow_int32 && index.dtype() == DType::Int32);
  GRAFT_CHECK(ok, op, "index must be ", allow_int32 ? "int64 or int32" : "int64", ", got ",
              dtype_name(index.dtype()));
  GRAFT_CHECK(index.device() == data_device, op, "index is on ", index.device(), " but the tensor it indexes is on ",
              data_device);
  return index.detach().to(DType::Int64).contiguous();
}

// Throws unless every index lies in [0, n); `what` describes the range ("dim 0 of size 5").
inline void check_index_range(const Tensor& index64, int64_t n, const char* op, const std::string& what) {
  int64_t first_bad = -1, bad_value = 0;
  index_range_kernel.get(index64.device())(index64, n, &first_bad, &bad_value);
  GRAFT_CHECK(first_bad < 0, op, "index ", bad_value, " at position ",
              detail_index::position_str(index64.shape(), first_bad < 0 ? 0 : first_bad), " is out of range for ",
              what, " (expected in [0, ", n - 1, "])");
}

// Backward kernels that are linear in dout are exact under create_graph only while dout has no
// history; beyond that the second derivative is not implemented.
inline void check_first_order(const autograd::Node* node, const Tensor& dout) {
  GRAFT_CHECK(!(GradMode::enabled() && dout.requires_grad()), node->name(),
              "second derivative (create_graph with a gradient that requires grad) is not implemented");
}

// True when `from` broadcasts to `to` without changing `to`.
inline bool broadcasts_to(const Shape& from, const Shape& to) {
  if (from.rank() > to.rank()) return false;
  for (int i = 0; i < from.rank(); ++i) {
    const int64_t f = from[from.rank() - 1 - i], t = to[to.rank() - 1 - i];
    if (f != t && f != 1) return false;
  }
  return true;
}

// Product of the extents before and after dim d.
inline int64_t outer_size(const Shape& s, int d) {
  int64_t n = 1;
  for (int i = 0; i < d; ++i) n *= s[i];
  return n;
}
inline int64_t inner_size(const Shape& s, int d) {
  int64_t n = 1;
  for (int i = d + 1; i < s.rank(); ++i) n *= s[i];
  return n;
}
}  // namespace detail_index

namespace kernels::cpu {

// out [outer, total, inner] contiguous; inputs[t] [outer, n_t, inner] contiguous, written at rows
// [offset_t, offset_t + n_t) of out's middle dim (offset_t = n_0 + ... + n_{t-1}). Any dtype:
// rows move as bytes. The backward is narrow views of dout (see CatBackward).
inline void cat_forward(const Tensor& out, const std::vector<Tensor>& inputs, int dim) {
  const int64_t outer = detail_index::outer_size(out.shape(), dim);
  const int64_t inner = detail_index::inner_size(out.shape(), dim);
  const int64_t total = out.shape()[dim];
  const int64_t esize = int64_t(dtype_size(out.dtype()));
  char* o = static_cast<char*>(out.data_ptr());
  parallel_for(0, outer, 64, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      int64_t offset = 0;
      for (const Tensor& t : inputs) {
        const int64_t n = t.shape()[dim];
        if (n * inner > 0) {  // an empty input may have no storage (a null data pointer) at all
          const char* src = static_cast<const char*>(t.data_ptr()) + r * n * inner * esize;
          std::memcpy(o + (r * total + offset) * inner * esize, src, size_t(n * inner * esize));
        }
        offset += n;
      }
    }
  });
}

// out [outer, m, inner] = x [outer, n, inner] at rows index[0..m) of the middle dim. x, out
// contiguous of any dtype; index [m] int64, already checked to lie in [0, n).
inline void index_select_forward(const Tensor& out, const Tensor& x, const Tensor& index, int dim) {
  const int64_t outer = detail_index::outer_size(x.shape(), dim);
  const int64_t inner = detail_index::inner_size(x.shape(), dim);
  const int64_t n = x.shape()[dim], m = index.numel();
  const int64_t row_bytes = inner * int64_t(dtype_size(x.dtype()));
  const int64_t* idx = index.data<int64_t>();
  const char* px = static_cast<const char*>(x.data_ptr());
  char* o = static_cast<char*>(out.data_ptr());
  parallel_for(0, outer * m, 256, [&](int64_t lo, int64_t hi) {
    for (int64_t rj = lo; rj < hi; ++rj) {
      const int64_t r = rj / m, j = rj % m;
      std::memcpy(o + rj * row_bytes, px + (r * n + idx[j]) * row_bytes, size_t(row_bytes));
    }
  });
}

// dx [outer, n, inner] += dout [outer, m, inner] at rows index[0..m) (index_add): rows named twice
// accumulate. dx zero-filled and contiguous, dout contiguous, float32/float64. Parallel over outer
// only: within one outer slice two j may hit the same row.
inline void index_select_backward(const Tensor& dx, const Tensor& dout, const Tensor& index, int dim) {
  if (is_reduced_float(dx.dtype())) {  // sums in float32, rounded once
    const Tensor wide = widen_operand(dx);
    index_select_backward(wide, widen_operand(dout), index, dim);
    return copy_into(dx, wide);
  }
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "index_select_backward", T, [&] {
    const int64_t outer = detail_index::outer_size(dx.shape(), dim);
    const int64_t inner = detail_index::inner_size(dx.shape(), dim);
    const int64_t n = dx.shape()[dim], m = index.numel();
    const int64_t* idx = index.data<int64_t>();
    const T* g = dout.data<T>();
    T* d = dx.data<T>();
    parallel_for(0, outer, 16, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r)
        for (int64_t j = 0; j < m; ++j) {
          T* drow = d + (r * n + idx[j]) * inner;
          const T* grow = g + (r * m + j) * inner;
          for (int64_t c = 0; c < inner; ++c) drow[c] += grow[c];
        }
    });
  });
}

// out (index's shape, contiguous) = x at the coordinates of each index element with coordinate
// `dim` replaced by the index value. x contiguous of any dtype; index contiguous int64, checked.
inline void gather_forward(const Tensor& out, const Tensor& x, const Tensor& index, int dim) {
  GRAFT_DISPATCH_ALL(x.dtype(), "gather", T, [&] {
    Shape base = x.strides();  // x's strides over index's shape; dim's coordinate comes from index
    base[dim] = 0;
    const int64_t sd = x.strides()[dim];
    const int64_t* idx = index.data<int64_t>();
    const T* px = x.data<T>();
    T* o = out.data<T>();
    int64_t i = 0;
    for_each_offset(index.shape(), base, [&](int64_t ox) {
      o[i] = px[ox + idx[i] * sd];
      ++i;
    });
  });
}

// dx += scatter_add of dout along dim (the adjoint of gather_forward). dx zero-filled, contiguous;
// dout contiguous of index's shape; float32/float64. Serial: any two elements may hit one slot.
inline void gather_backward(const Tensor& dx, const Tensor& dout, const Tensor& index, int dim) {
  if (is_reduced_float(dx.dtype())) {  // sums in float32, rounded once
    const Tensor wide = widen_operand(dx);
    gather_backward(wide, widen_operand(dout), index, dim);
    return copy_into(dx, wide);
  }
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "gather_backward", T, [&] {
    Shape base = dx.strides();
    base[dim] = 0;
    const int64_t sd = dx.strides()[dim];
    const int64_t* idx = index.data<int64_t>();
    const T* g = dout.data<T>();
    T* d = dx.data<T>();
    int64_t i = 0;
    for_each_offset(index.shape(), base, [&](int64_t ox) {
      d[ox + idx[i] * sd] += g[i];
      ++i;
    });
  });
}

}  // namespace kernels::cpu

using CatKernel = void (*)(const Tensor& out, const std::vector<Tensor>& inputs, int dim);
using IndexSelectKernel = void (*)(const Tensor& out, const Tensor& x, const Tensor& index, int dim);
using GatherKernel = void (*)(const Tensor& out, const Tensor& x, const Tensor& index, int dim);
GRAFT_KERNEL_SLOT(CatKernel, cat_kernel, "cat", kernels::cpu::cat_forward);
GRAFT_KERNEL_SLOT(IndexSelectKernel, index_select_kernel, "index_select", kernels::cpu::index_select_forward);
GRAFT_KERNEL_SLOT(IndexSelectKernel, index_select_backward_kernel, "index_select_backward",
                  kernels::cpu::index_select_backward);
GRAFT_KERNEL_SLOT(GatherKernel, gather_kernel, "gather", kernels::cpu::gather_forward);
GRAFT_KERNEL_SLOT(GatherKernel, gather_backward_kernel, "gather_backward", kernels::cpu::gather_backward);

// ---- cat / stack ---------------------------------------------------------------------------------
namespace autograd {
// dinput[t] = dout.narrow(dim, start[t], length[t]); a skipped 1-D empty input gets an empty gradient.
class CatBackward final : public Node {
 public:
  std::string name() const override { return "CatBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    std::vector<Tensor> out(start.size());
    for (size_t t = 0; t < start.size(); ++t) {
      if (!needs_input_grad(t)) continue;
      out[t] = skipped[t] ? zeros(Shape{0}, grads[0].dtype(), grads[0].device())
                          : grads[0].narrow(dim, start[t], length[t]);
    }
    return out;
  }
  int dim = 0;
  std::vector<int64_t> start, length;
  std::vector<bool> skipped;
};
}  // namespace autograd

// Concatenates along `dim`. Shapes must match except in dim; dtypes promote as in PyTorch. 1-D empty
// tensors (shape [0]) are skipped, PyTorch's legacy rule.
inline Tensor cat(const std::vector<Tensor>& ts, int64_t dim = 0) {
  GRAFT_CHECK(!ts.empty(), "cat", "expected a non-empty list of tensors");
  auto is_legacy_empty = [](const Tensor& t) { return t.dim() == 1 && t.numel() == 0; };
  size_t ref = 0;  // the first tensor that is not a skipped [0]
  for (size_t i = 0; i < ts.size(); ++i) GRAFT_CHECK(ts[i].defined(), "cat", "tensor ", i, " is undefined");
  while (ref + 1 < ts.size() && is_legacy_empty(ts[ref])) ++ref;
  const Tensor& r = ts[ref];
  GRAFT_CHECK(r.dim() > 0, "cat", "tensor ", ref, " is zero-dimensional and cannot be concatenated");
  const int d = wrap_dim(dim, r.dim(), "cat");
  DType dt = r.dtype();
  Shape out_shape = r.shape();
  out_shape[d] = 0;
  std::vector<bool> skipped(ts.size(), false);
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = ts[i];
    if (i != ref && is_legacy_empty(t) && r.dim() != 1) {
      skipped[i] = true;
      continue;
    }
    GRAFT_CHECK(t.dim() == r.dim(), "cat", "tensor ", i, " has shape ", t.shape(), " but tensor ", ref,
                " has shape ", r.shape(), " (ranks differ)");
    for (int k = 0; k < r.dim(); ++k)
      GRAFT_CHECK(k == d || t.size(k) == r.size(k), "cat", "tensor ", i, " has shape ", t.shape(),
                  " but tensor ", ref, " has shape ", r.shape(), "; sizes must match except in dim ", d);
    GRAFT_CHECK(t.device() == r.device(), "cat", "tensor ", i, " is on ", t.device(), " but tensor ", ref,
                " is on ", r.device());
    dt = promote(dt, t.dtype());
    out_shape[d] += t.size(d);
  }
  std::vector<Tensor> parts(ts.size());  // converted to the promoted dtype (differentiable)
  std::vector<Tensor> kernel_inputs;     // detached, contiguous, skipped ones left out
  auto node = std::make_shared<autograd::CatBackward>();
  node->dim = d;
  int64_t offset = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    parts[i] = skipped[i] ? ts[i] : ts[i].to(dt);
    node->skipped.push_back(skipped[i]);
    node->start.push_back(offset);
    node->length.push_back(skipped[i] ? 0 : parts[i].size(d));
    if (skipped[i]) continue;
    offset += parts[i].size(d);
    kernel_inputs.push_back(parts[i].detach().contiguous());
  }
  Tensor out = empty(out_shape, dt, r.device());
  if (out.numel() > 0) cat_kernel.get(out.device())(out, kernel_inputs, d);
  if (is_floating(dt) && autograd::any_requires_grad(parts)) autograd::connect(node, parts, {out});
  return out;
}

inline Tensor concat(const std::vector<Tensor>& ts, int64_t dim = 0) { return cat(ts, dim); }

// Joins equal-shaped tensors along a new dim: cat of each unsqueezed at dim.
inline Tensor stack(const std::vector<Tensor>& ts, int64_t dim = 0) {
  GRAFT_CHECK(!ts.empty(), "stack", "expected a non-empty list of tensors");
  for (size_t i = 0; i < ts.size(); ++i) {
    GRAFT_CHECK(ts[i].defined(), "stack", "tensor ", i, " is undefined");
    GRAFT_CHECK(ts[i].shape() == ts[0].shape(), "stack", "tensor ", i, " has shape ", ts[i].shape(),
                " but tensor 0 has shape ", ts[0].shape(), "; stack needs equal shapes");
  }
  const int d = wrap_dim(dim, ts[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  parts.reserve(ts.size());
  for (const Tensor& t : ts) parts.push_back(t.unsqueeze(d));
  return cat(parts, d);
}

// ---- split ---------------------------------------------------------------------------------------
// Chunks of split_size along dim (the last one smaller when the size does not divide), as views.
inline std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0) {
  GRAFT_CHECK(x.defined(), "split", "undefined tensor argument");
  GRAFT_CHECK(x.dim() > 0, "split", "cannot split a zero-dimensional tensor");
  const int d = wrap_dim(dim, x.dim(), "split");
  const int64_t n = x.size(d);
  GRAFT_CHECK(split_size > 0 || (split_size == 0 && n == 0), "split", "split_size must be positive, got ",
              split_size, " (dim ", d, " has size ", n, ")");
  std::vector<Tensor> out;
  if (n == 0) return {x.narrow(d, 0, 0)};
  for (int64_t start = 0; start < n; start += split_size)
    out.push_back(x.narrow(d, start, std::min(split_size, n - start)));
  return out;
}

// Pieces of the given sizes along dim (they must sum to the dim's size), as views.
inline std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0) {
  GRAFT_CHECK(x.defined(), "split", "undefined tensor argument");
  GRAFT_CHECK(x.dim() > 0, "split", "cannot split a zero-dimensional tensor");
  const int d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    GRAFT_CHECK(s >= 0, "split", "split sizes must be non-negative, got ", s);
    total += s;
  }
  GRAFT_CHECK(total == x.size(d), "split", "split sizes sum to ", total, " but dim ", d, " of shape ",
              x.shape(), " has size ", x.size(d));
  std::vector<Tensor> out;
  int64_t start = 0;
  for (int64_t s : sizes) {
    out.push_back(x.narrow(d, start, s));
    start += s;
  }
  return out;
}

// ---- index_select --------------------------------------------------------------------------------
namespace autograd {
class IndexSelectBackward final : public Node {
 public:
  std::string name() const override { return "IndexSelectBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    detail_index::check_first_order(this, grads[0]);
    const Tensor index = index_.unpack(this);
    Tensor dx = zeros(x_shape, grads[0].dtype(), grads[0].device());
    index_select_backward_kernel.get(dx.device())(dx, grads[0].contiguous(), index, dim);
    return {dx};
  }
  void release_saved() override { index_.release(); }
  int dim = 0;
  Shape x_shape;
  SavedTensor index_;  // int64 [m], contiguous
};
}  // namespace autograd

// x's slices along dim at the positions in index (1-D, int64 or int32); differentiable in x.
inline Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  GRAFT_CHECK(x.defined(), "index_select", "undefined tensor argument");
  GRAFT_CHECK(index.defined() && index.dim() <= 1, "index_select", "index must be 1-D, got shape ",
              index.defined() ? index.shape().str() : std::string("(undefined)"));
  if (x.dim() == 0) return index_select(x.reshape({1}), 0, index).reshape(index.dim() == 0 ? Shape{} : Shape{index.numel()});
  const int d = wrap_dim(dim, x.dim(), "index_select");
  const Tensor idx = detail_index::index_as_int64(index, "index_select", true, x.device()).reshape({index.numel()});
  detail_index::check_index_range(idx, x.size(d), "index_select",
                                  detail::concat("dim ", d, " of size ", x.size(d)));
  Shape out_shape = x.shape();
  out_shape[d] = idx.numel();
  Tensor out = empty(out_shape, x.dtype(), x.device());
  if (out.numel() > 0) index_select_kernel.get(x.device())(out, x.detach().contiguous(), idx, d);
  if (is_floating(x.dtype()) && autograd::any_requires_grad({&x})) {
    auto node = std::make_shared<autograd::IndexSelectBackward>();
    node->dim = d;
    node->x_shape = x.shape();
    node->index_ = idx;
    autograd::connect(node, {x}, {out});
  }
  return out;
}

// ---- gather ----------------------------------------------------------------------------------------
namespace autograd {
class GatherBackward final : public Node {
 public:
  std::string name() const override { return "GatherBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    detail_index::check_first_order(this, grads[0]);
    const Tensor index = index_.unpack(this);
    Tensor dx = zeros(x_shape, grads[0].dtype(), grads[0].device());
    gather_backward_kernel.get(dx.device())(dx, grads[0].contiguous(), index, dim);
    return {dx};
  }
  void release_saved() override { index_.release(); }
  int dim = 0;
  Shape x_shape;
  SavedTensor index_;  // int64, contiguous, the output's shape
};
}  // namespace autograd

inline Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  GRAFT_CHECK(x.defined(), "gather", "undefined tensor argument");
  const Tensor idx = detail_index::index_as_int64(index, "gather", false, x.device());
  GRAFT_CHECK(idx.dim() == x.dim(), "gather", "index has shape ", idx.shape(), " but input has shape ",
              x.shape(), "; they must have the same number of dims");
  const int d = wrap_dim(dim, x.dim(), "gather");
  for (int k = 0; k < x.dim(); ++k)
    GRAFT_CHECK(k == d || idx.size(k) <= x.size(k), "gather", "index has shape ", idx.shape(),
                " but input has shape ", x.shape(), "; index.size(", k, ") must be <= input.size(", k,
                ") for every dim other than ", d);
  const int64_t n = x.dim() == 0 ? 1 : x.size(d);
  detail_index::check_index_range(idx, n, "gather", detail::concat("dim ", d, " of size ", n));
  Tensor out = empty(idx.shape(), x.dtype(), x.device());
  if (out.numel() > 0) gather_kernel.get(x.device())(out, x.detach().contiguous(), idx, d);
  if (is_floating(x.dtype()) && autograd::any_requires_grad({&x})) {
    auto node = std::make_shared<autograd::GatherBackward>();
    node->dim = d;
    node->x_shape = x.shape();
    node->index_ = idx;
    autograd::connect(node, {x}, {out});
  }
  return out;
}

GRAFT_REGISTER_OP(cat, true);
GRAFT_REGISTER_OP(stack, true);
GRAFT_REGISTER_OP(split, true);
GRAFT_REGISTER_OP(index_select, true);
GRAFT_REGISTER_OP(gather, true);

}  // namespace graft
