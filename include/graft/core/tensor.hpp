// graft/core/tensor.hpp - Tensor: a shared handle to a strided, dtype- and device-tagged view of a
// Storage, plus the autograd metadata (requires_grad, grad, grad_fn).
//
// Copying a Tensor copies the handle (both refer to the same data), as in PyTorch. Kernels do not
// use Tensor directly: they take a typed pointer (data<T>()) or a TensorView<T, Rank>.
//
// Shapes:  shape()   extents, rank <= 8
//          strides() in elements; 0 for broadcast dims; any sign-free layout from views
//          offset()  in elements from the start of the storage
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "graft/core/device.hpp"
#include "graft/core/dtype.hpp"
#include "graft/core/shape.hpp"
#include "graft/core/storage.hpp"

namespace graft {

namespace autograd {
class Node;
}  // namespace autograd

struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // --- metadata -----------------------------------------------------------------------------
  const Shape& shape() const;
  const Shape& strides() const;
  int dim() const;
  int64_t size(int64_t d) const;
  int64_t stride(int64_t d) const;
  int64_t numel() const;
  int64_t offset() const;
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const;
  uint64_t version() const;  // of the storage; bumped by in-place ops
  const std::string& name() const;
  Tensor& set_name(std::string n);

  // --- data access (CPU) --------------------------------------------------------------------
  // Pointer to element [0,...,0]; checks the dtype. Throws for tensors not on the CPU.
  template <class T> T* data() const;
  void* data_ptr() const;  // untyped, any device
  template <class T> T item() const;  // the single element, converted to T
  double item() const { return item<double>(); }
  std::vector<double> to_vector() const;  // all elements in row-major order, as double

  // --- autograd -----------------------------------------------------------------------------
  bool requires_grad() const;
  // Only on leaves (tensors that no differentiable op produced).
  Tensor& set_requires_grad(bool r = true);
  bool is_leaf() const;
  const Tensor& grad() const;           // undefined until a backward reaches this leaf
  void set_grad(const Tensor& g) const;
  void zero_grad() const;               // drops .grad (sets it undefined), as set_to_none=True
  const std::shared_ptr<autograd::Node>& grad_fn() const;
  uint32_t output_nr() const;
  void retain_grad() const;             // keep .grad on a non-leaf too
  // Backward from this tensor. grad defaults to 1 for a one-element tensor.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false,
                bool create_graph = false) const;
  Tensor detach() const;                // same data, no history, requires_grad false

  // --- views and copies (differentiable; defined in graft/ops/view.hpp) -----------------------
  Tensor view(const Shape& s) const;    // requires a compatible stride layout; -1 infers one dim
  Tensor reshape(const Shape& s) const; // a view when possible, else a copy
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;                     // transpose of a 2-D tensor
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor expand(const Shape& s) const;  // -1 keeps a dim; size-1 dims broadcast with stride 0
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dt) const;            // differentiable between floating dtypes
  Tensor to(Device d) const;
  Tensor cpu() const { return to(kCPU); }

  // --- in place (defined in graft/ops/inplace.hpp). They bump the version counter and refuse
  // tensors that require grad while grad mode is on (use NoGradGuard, as optimizers do).
  Tensor& fill_(double v);
  Tensor& zero_();
  Tensor& copy_(const Tensor& src);     // broadcasts src, converts dtype
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& mul_(double s);

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  DType dtype = DType::Float32;
  std::string name;
  // autograd
  bool requires_grad = false;  // leaf flag; a non-leaf requires grad when grad_fn is set
  bool retains_grad = false;
  Tensor grad;
  std::shared_ptr<autograd::Node> grad_fn;
  uint32_t output_nr = 0;
  std::weak_ptr<autograd::Node> grad_accumulator;
};

// ---- factories (no autograd history) ----------------------------------------------------------
inline Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = kCPU) {
  for (int i = 0; i < shape.rank(); ++i)
    GRAFT_CHECK(shape[i] >= 0, "empty", "negative extent ", shape[i], " in shape ", shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(size_t(shape.numel()) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// A new handle onto the same storage with the given geometry (no autograd history).
inline Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// ---- member definitions that need only the impl ----------------------------------------------
inline const Shape& Tensor::shape() const { return impl_->shape; }
inline const Shape& Tensor::strides() const { return impl_->strides; }
inline int Tensor::dim() const { return impl_->shape.rank(); }
inline int64_t Tensor::size(int64_t d) const { return impl_->shape[wrap_dim(d, dim(), "size")]; }
inline int64_t Tensor::stride(int64_t d) const {
  return impl_->strides[wrap_dim(d, dim(), "stride")];
}
inline int64_t Tensor::numel() const { return impl_->shape.numel(); }
inline int64_t Tensor::offset() const { return impl_->offset; }
inline DType Tensor::dtype() const { return impl_->dtype; }
inline Device Tensor::device() const { return impl_->storage->device(); }
inline const std::shared_ptr<Storage>& Tensor::storage() const { return impl_->storage; }
inline uint64_t Tensor::version() const { return impl_->storage->version(); }
inline const std::string& Tensor::name() const { return impl_->name; }
inline Tensor& Tensor::set_name(std::string n) {
  impl_->name = std::move(n);
  return *this;
}
inline bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int i = dim() - 1; i >= 0; --i) {
    if (impl_->shape[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}
inline void* Tensor::data_ptr() const {
  GRAFT_CHECK(defined(), "data_ptr", "tensor is undefined");
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * int64_t(dtype_size(dtype()));
}
template <class T>
T* Tensor::data() const {
  GRAFT_CHECK(defined(), "data", "tensor is undefined");
  GRAFT_CHECK(dtype() == dtype_v<T>, "data", "expected dtype ", dtype_name(dtype_v<T>), ", got ",
              dtype_name(dtype()));
  GRAFT_CHECK(device().is_cpu(), "data", "tensor is on ", device(), "; call .cpu() first");
  return static_cast<T*>(data_ptr());
}
template <class T>
T Tensor::item() const {
  GRAFT_CHECK(defined() && numel() == 1, "item", "expected a tensor with one element, got shape ",
              defined() ? shape().str() : std::string("(undefined)"));
  Tensor c = device().is_cpu() ? *this : cpu();
  return GRAFT_DISPATCH_ALL(dtype(), "item", S, [&] {
    return static_cast<T>(static_cast<double>(*c.template data<S>()));
  });
}

// Calls f(offset) for every element of `shape` laid out with `strides`, in row-major order.
// The reference kernels use it for arbitrary (non-contiguous, broadcast) layouts.
template <class F>
inline void for_each_offset(const Shape& shape, const Shape& strides, F&& f) {
  const int r = shape.rank();
  const int64_t n = shape.numel();
  if (n == 0) return;
  int64_t idx[kMaxDims] = {0};
  int64_t off = 0;
  for (int64_t i = 0; i < n; ++i) {
    f(off);
    for (int d = r - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) {
        off += strides[d];
        break;
      }
      off -= strides[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}

inline std::vector<double> Tensor::to_vector() const {
  Tensor c = device().is_cpu() ? *this : cpu();
  std::vector<double> out;
  out.reserve(size_t(numel()));
  GRAFT_DISPATCH_ALL(dtype(), "to_vector", T, [&] {
    const T* p = static_cast<const T*>(c.data_ptr());
    for_each_offset(c.shape(), c.strides(),
                    [&](int64_t o) { out.push_back(static_cast<double>(p[o])); });
  });
  return out;
}

}  // namespace graft
