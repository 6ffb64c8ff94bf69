// graft/ops/view.hpp - views: new shapes and strides over the same storage, no copy
// (reshape copies only when no view is possible). Each records how to route the gradient back.
#pragma once
#include <algorithm>
#include <numeric>

#include "graft/autograd/node.hpp"
#include "graft/core/dispatch.hpp"
#include "graft/ops/copy.hpp"

namespace graft {

Tensor sum_to(const Tensor& x, const Shape& shape);  // graft/ops/reduce.hpp

namespace detail_view {
// Resolves one -1 in `s` from numel; checks the element count.
inline Shape infer_shape(const Shape& s, int64_t numel, const char* op, const Shape& from) {
  Shape out = s;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < s.rank(); ++i) {
    if (s[i] == -1) {
      GRAFT_CHECK(infer < 0, op, "only one dimension can be -1, got ", s);
      infer = i;
    } else {
      GRAFT_CHECK(s[i] >= 0, op, "invalid extent ", s[i], " in shape ", s);
      known *= s[i];
    }
  }
  if (infer >= 0) {
    GRAFT_CHECK(known != 0 && numel % known == 0, op, "shape ", s, " is invalid for input of shape ",
                from, " (", numel, " elements)");
    out[infer] = numel / known;
  }
  GRAFT_CHECK(out.numel() == numel, op, "shape ", s, " is invalid for input of shape ", from, " (",
              numel, " elements)");
  return out;
}

// Strides for viewing (shape, strides) as new_shape without copying, or false if impossible
// (PyTorch's computeStride: merge runs of dims that are laid out contiguously).
inline bool view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape, Shape& out) {
  out = new_shape;
  if (shape.numel() <= 1) {  // empty or one element: any layout works
    out = contiguous_strides(new_shape);
    return true;
  }
  int view_d = new_shape.rank() - 1;
  int64_t chunk_base_stride = strides.rank() ? strides[strides.rank() - 1] : 1;
  int64_t tensor_numel = 1, view_numel = 1;
  for (int d = shape.rank() - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}
}  // namespace detail_view

inline Tensor Tensor::view(const Shape& s) const {
  const Shape ns = detail_view::infer_shape(s, numel(), "view", shape());
  Shape st;
  GRAFT_CHECK(detail_view::view_strides(shape(), strides(), ns, st), "view",
              "cannot view a tensor of shape ", shape(), " and strides ", strides(), " as ", ns,
              "; use reshape (which copies)");
  Tensor out = make_view(*this, ns, st, offset());
  const Shape in_shape = shape();
  autograd::record_shape_op("ViewBackward", *this, out,
                            [in_shape](std::vector<Tensor>& g) { return std::vector<Tensor>{g[0].reshape(in_shape)}; });
  return out;
}

inline Tensor Tensor::reshape(const Shape& s) const {
  const Shape ns = detail_view::infer_shape(s, numel(), "reshape", shape());
  Shape st;
  if (detail_view::view_strides(shape(), strides(), ns, st)) return view(ns);
  return contiguous().view(ns);
}

inline Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape(Shape{1});
  const int s = wrap_dim(start, dim(), "flatten"), e = wrap_dim(end, dim(), "flatten");
  GRAFT_CHECK(s <= e, "flatten", "start dim ", start, " is after end dim ", end);
  Shape ns;
  for (int i = 0; i < s; ++i) ns.push_back(size(i));
  int64_t m = 1;
  for (int i = s; i <= e; ++i) m *= size(i);
  ns.push_back(m);
  for (int i = e + 1; i < dim(); ++i) ns.push_back(size(i));
  return reshape(ns);
}

inline Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  GRAFT_CHECK(int(dims.size()) == dim(), "permute", "got ", dims.size(), " dims for a tensor of rank ",
              dim());
  Shape ns, st;
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int d = wrap_dim(dims[i], dim(), "permute");
    GRAFT_CHECK(inverse[size_t(d)] == -1, "permute", "dim ", d, " appears twice");
    inverse[size_t(d)] = int64_t(i);
    ns.push_back(size(d));
    st.push_back(strides()[d]);
  }
  Tensor out = make_view(*this, ns, st, offset());
  autograd::record_shape_op("PermuteBackward", *this, out,
                            [inverse](std::vector<Tensor>& g) { return std::vector<Tensor>{g[0].permute(inverse)}; });
  return out;
}

inline Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  std::vector<int64_t> p(static_cast<size_t>(this->dim()));
  std::iota(p.begin(), p.end(), 0);
  if (dim() == 0) return *this;
  std::swap(p[size_t(wrap_dim(d0, dim(), "transpose"))], p[size_t(wrap_dim(d1, dim(), "transpose"))]);
  return permute(p);
}

inline Tensor Tensor::t() const {
  GRAFT_CHECK(dim() <= 2, "t", "expects a tensor with <= 2 dims, got shape ", shape());
  return dim() < 2 ? *this : transpose(0, 1);
}

// Gradient of a strided slice: zeros of the input's shape with g written into the slice. Itself
// differentiable (its backward slices again), so create_graph works through views.
inline Tensor slice_backward(const Tensor& g, const Shape& in_shape, int dim, int64_t start, int64_t end,
                             int64_t step) {
  Tensor out = zeros(in_shape, g.dtype(), g.device());
  {
    Tensor dst = out.slice(dim, start, end, step);  // out does not require grad: a plain view
    copy_into(dst, g);
  }
  autograd::record_shape_op("SliceBackwardBackward", g, out, [=](std::vector<Tensor>& gg) {
    return std::vector<Tensor>{gg[0].slice(dim, start, end, step)};
  });
  return out;
}

inline Tensor Tensor::slice(int64_t dim_, int64_t start, int64_t end, int64_t step) const {
  const int d = wrap_dim(dim_, dim(), "slice");
  GRAFT_CHECK(step > 0, "slice", "step must be positive, got ", step);
  const int64_t n = size(d);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape ns = shape(), st = strides();
  ns[d] = (end - start + step - 1) / step;
  st[d] = strides()[d] * step;
  Tensor out = make_view(*this, ns, st, offset() + start * strides()[d]);
  const Shape in_shape = shape();
  autograd::record_shape_op("SliceBackward", *this, out, [=](std::vector<Tensor>& g) {
    return std::vector<Tensor>{slice_backward(g[0], in_shape, d, start, end, step)};
  });
  return out;
}

inline Tensor Tensor::narrow(int64_t dim_, int64_t start, int64_t length) const {
  const int d = wrap_dim(dim_, dim(), "narrow");
  if (start < 0) start += size(d);
  GRAFT_CHECK(start >= 0 && length >= 0 && start + length <= size(d), "narrow", "start ", start,
              " + length ", length, " exceeds dim ", d, " of size ", size(d));
  return slice(d, start, start + length, 1);
}

inline Tensor Tensor::select(int64_t dim_, int64_t index) const {
  const int d = wrap_dim(dim_, dim(), "select");
  const int64_t n = size(d);
  GRAFT_CHECK(index >= -n && index < n, "select", "index ", index, " out of range for dim ", d,
              " of size ", n);
  if (index < 0) index += n;
  return slice(d, index, index + 1, 1).squeeze(d);
}

inline Tensor Tensor::expand(const Shape& s) const {
  GRAFT_CHECK(s.rank() >= dim(), "expand", "target shape ", s, " has fewer dims than the tensor's ",
              shape());
  Shape ns, st;
  const int lead = s.rank() - dim();
  for (int i = 0; i < s.rank(); ++i) {
    const int j = i - lead;
    const int64_t cur = j >= 0 ? size(j) : 1;
    const int64_t want = s[i] == -1 ? cur : s[i];
    GRAFT_CHECK(j >= 0 || s[i] != -1, "expand", "-1 not allowed for the new leading dim ", i);
    GRAFT_CHECK(cur == want || cur == 1, "expand", "cannot expand shape ", shape(), " to ", s,
                " (dim ", i, ": ", cur, " vs ", want, ")");
    ns.push_back(want);
    st.push_back(j >= 0 && cur == want ? strides()[j] : 0);
  }
  Tensor out = make_view(*this, ns, st, offset());
  const Shape in_shape = shape();
  autograd::record_shape_op("ExpandBackward", *this, out,
                            [in_shape](std::vector<Tensor>& g) { return std::vector<Tensor>{sum_to(g[0], in_shape)}; });
  return out;
}

inline Tensor Tensor::squeeze() const {
  Shape ns;
  for (int i = 0; i < dim(); ++i)
    if (size(i) != 1) ns.push_back(size(i));
  return reshape(ns);
}
inline Tensor Tensor::squeeze(int64_t dim_) const {
  if (dim() == 0) return *this;
  const int d = wrap_dim(dim_, dim(), "squeeze");
  if (size(d) != 1) return *this;
  Shape ns = shape(), st = strides();
  ns.erase(d);
  st.erase(d);
  Tensor out = make_view(*this, ns, st, offset());
  const Shape in_shape = shape();
  autograd::record_shape_op("SqueezeBackward", *this, out,
                            [in_shape](std::vector<Tensor>& g) { return std::vector<Tensor>{g[0].reshape(in_shape)}; });
  return out;
}
inline Tensor Tensor::unsqueeze(int64_t dim_) const {
  const int d = wrap_dim(dim_, dim() + 1, "unsqueeze");
  Shape ns = shape(), st = strides();
  const int64_t stride = d < dim() ? strides()[d] * size(d) : 1;
  ns.insert(d, 1);
  st.insert(d, stride);
  Tensor out = make_view(*this, ns, st, offset());
  autograd::record_shape_op("UnsqueezeBackward", *this, out,
                            [d](std::vector<Tensor>& g) { return std::vector<Tensor>{g[0].squeeze(d)}; });
  return out;
}

GRAFT_REGISTER_OP(view, true);
GRAFT_REGISTER_OP(reshape, true);
GRAFT_REGISTER_OP(flatten, true);
GRAFT_REGISTER_OP(permute, true);
GRAFT_REGISTER_OP(transpose, true);
GRAFT_REGISTER_OP(narrow, true);
GRAFT_REGISTER_OP(slice, true);
GRAFT_REGISTER_OP(select, true);
GRAFT_REGISTER_OP(expand, true);
GRAFT_REGISTER_OP(squeeze, true);
GRAFT_REGISTER_OP(unsqueeze, true);

}  // namespace graft
