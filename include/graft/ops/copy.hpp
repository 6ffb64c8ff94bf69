// graft/ops/copy.hpp - strided copy with dtype conversion: contiguous, clone, to(dtype),
// to(device), and the in-place ops optimizers use (fill_, zero_, copy_, add_, mul_).
#pragma once
#include <cstring>

#include "graft/autograd/node.hpp"
#include "graft/core/dispatch.hpp"
#include "graft/kernels/cpu/convert.hpp"
#include "graft/kernels/cpu/copy.hpp"
#include "graft/ops/creation.hpp"

namespace graft {

namespace kernels::cpu {
// dst[i] = convert(src[i]) for every index of dst; src has dst's shape (broadcast strides allowed).
// The reference (every dtype pair, GRAFT_CPU_ISA=scalar, the tests' oracle).
inline void copy_forward_reference(const Tensor& dst, const Tensor& src) {
  GRAFT_DISPATCH_ALL(dst.dtype(), "copy", D, [&] {
    GRAFT_DISPATCH_ALL(src.dtype(), "copy", S, [&] {
      D* d = static_cast<D*>(dst.data_ptr());
      const S* s = static_cast<const S*>(src.data_ptr());
      if (dst.is_contiguous() && src.is_contiguous()) {
        for (int64_t i = 0, n = dst.numel(); i < n; ++i) d[i] = static_cast<D>(static_cast<double>(s[i]));
        return;
      }
      // Walk src's layout and write dst in its own layout.
      std::vector<int64_t> src_offsets;
      src_offsets.reserve(size_t(src.numel()));
      for_each_offset(src.shape(), src.strides(), [&](int64_t o) { src_offsets.push_back(o); });
      size_t k = 0;
      for_each_offset(dst.shape(), dst.strides(),
                      [&](int64_t o) { d[o] = static_cast<D>(static_cast<double>(s[src_offsets[k++]])); });
    });
  });
}

// The dtype pairs copy_run_16bit takes: float32 <-> bfloat16 / float16, and one 16-bit dtype to itself.
inline bool is_16bit_copy(DType dd, DType sd) {
  return (dd == DType::Float32 && is_reduced_float(sd)) || (sd == DType::Float32 && is_reduced_float(dd)) ||
         (dd == sd && is_reduced_float(dd));
}

// n elements from s to d, both contiguous, for a pair is_16bit_copy takes.
inline void copy_run_16bit(void* d, DType dd, const void* s, DType sd, int64_t n) {
  if (dd == sd) return void(std::memcpy(d, s, size_t(n) * 2));
  if (dd == DType::BFloat16) return convert_run(static_cast<BFloat16*>(d), static_cast<const float*>(s), n);
  if (dd == DType::Float16) return convert_run(static_cast<Float16*>(d), static_cast<const float*>(s), n);
  if (sd == DType::BFloat16) return convert_run(static_cast<float*>(d), static_cast<const BFloat16*>(s), n);
  convert_run(static_cast<float*>(d), static_cast<const Float16*>(s), n);
}

// The CPU entry: float32 to float32 takes the fast strided copy (kernels/graft/kernels/cpu/copy.hpp);
// float32 <-> bfloat16 / float16 and 16-bit to 16-bit, contiguous or with a unit inner stride on both
// sides (a head view of attention, a permute that keeps the last dim), the vector conversion
// (kernels/graft/kernels/cpu/convert.hpp) run by run; everything else (other dtypes, layouts they
// decline) the reference.
inline void copy_forward(const Tensor& dst, const Tensor& src) {
  if (dst.dtype() == DType::Float32 && src.dtype() == DType::Float32 &&
      copy_float_fast(dst.data<float>(), dst.strides(), src.data<float>(), src.strides(), dst.shape()))
    return;
  const DType dd = dst.dtype(), sd = src.dtype();
  const size_t de = dtype_size(dd), se = dtype_size(sd);
  char* d = static_cast<char*>(dst.data_ptr());
  const char* s = static_cast<const char*>(src.data_ptr());
  if (!is_16bit_copy(dd, sd)) return copy_forward_reference(dst, src);
  if (dst.is_contiguous() && src.is_contiguous()) return copy_run_16bit(d, dd, s, sd, dst.numel());
  const int r = dst.dim();
  if (r >= 1 && dst.stride(r - 1) == 1 && src.stride(r - 1) == 1) {
    const int64_t n = dst.size(r - 1);
    Shape outer, outer_d, outer_s;
    for (int i = 0; i + 1 < r; ++i) {
      outer.push_back(dst.size(i));
      outer_d.push_back(dst.stride(i));
      outer_s.push_back(src.stride(i));
    }
    std::vector<int64_t> src_rows;  // src's offset of each row, in dst's row order
    src_rows.reserve(size_t(outer.numel()));
    for_each_offset(outer, outer_s, [&](int64_t os) { src_rows.push_back(os); });
    size_t row = 0;
    for_each_offset(outer, outer_d, [&](int64_t od) {
      copy_run_16bit(d + od * int64_t(de), dd, s + src_rows[row++] * int64_t(se), sd, n);
    });
    return;
  }
  copy_forward_reference(dst, src);
}
}  // namespace kernels::cpu

using CopyKernel = void (*)(const Tensor& dst, const Tensor& src);
GRAFT_KERNEL_SLOT(CopyKernel, copy_kernel, "copy", kernels::cpu::copy_forward, "avx2 avx512");

// Copies between devices: contiguous same-dtype bytes through the allocators.
inline void copy_across_devices(const Tensor& dst, const Tensor& src) {
  Tensor s = src.device().is_cpu() ? src.contiguous().to(dst.dtype()) : src.contiguous();
  GRAFT_CHECK(s.dtype() == dst.dtype(), "copy", "cross-device copy needs equal dtypes (", dtype_name(s.dtype()),
              " to ", dtype_name(dst.dtype()), ")");
  GRAFT_CHECK(dst.is_contiguous(), "copy", "cross-device copy needs a contiguous destination");
  const size_t n = size_t(dst.numel()) * dtype_size(dst.dtype());
  if (dst.device().is_cpu()) {
    allocator_for(s.device()).copy_to_host(dst.data_ptr(), s.data_ptr(), n, s.device());
  } else if (s.device().is_cpu()) {
    allocator_for(dst.device()).copy_from_host(dst.data_ptr(), s.data_ptr(), n, dst.device());
  } else {
    allocator_for(dst.device()).copy_within(dst.data_ptr(), dst.device(), s.data_ptr(), s.device(), n);
  }
}

// Copies src (broadcast to dst's shape) into dst, converting dtype. No autograd.
inline void copy_into(const Tensor& dst, const Tensor& src) {
  GRAFT_CHECK(dst.defined() && src.defined(), "copy_", "undefined tensor");
  Shape b = broadcast_shapes(dst.shape(), src.shape(), "copy_");
  GRAFT_CHECK(b == dst.shape(), "copy_", "source shape ", src.shape(),
              " cannot be broadcast to destination shape ", dst.shape());
  Tensor s = src.shape() == dst.shape() ? src : src.detach().expand(dst.shape());
  if (dst.numel() == 0) return;
  if (dst.device() != s.device()) {
    copy_across_devices(dst, s);
  } else {
    copy_kernel.get(dst.device())(dst, s);
  }
}

// ---- contiguous / clone / to: differentiable ---------------------------------------------------
namespace autograd {
// Gradient of a copy: the incoming gradient converted back to the source's dtype and device.
class CopyBackward final : public Node {
 public:
  std::string name() const override { return name_; }
  std::vector<Tensor> apply(std::vector<Tensor>& g) override {
    Tensor d = g[0];
    if (d.device() != src_device) d = d.to(src_device);
    if (d.dtype() != src_dtype) d = d.to(src_dtype);
    return {d};
  }
  std::string name_ = "CloneBackward";
  DType src_dtype = DType::Float32;
  Device src_device;
};
}  // namespace autograd

inline Tensor copy_as(const Tensor& x, DType dt, Device dev, const char* node_name) {
  Tensor out = empty(x.shape(), dt, dev);
  copy_into(out, x);
  if (is_floating(dt) && autograd::any_requires_grad({&x})) {
    auto node = std::make_shared<autograd::CopyBackward>();
    node->name_ = node_name;
    node->src_dtype = x.dtype();
    node->src_device = x.device();
    autograd::connect(node, {x}, {out});
  }
  return out;
}

inline Tensor Tensor::clone() const { return copy_as(*this, dtype(), device(), "CloneBackward"); }
inline Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }
inline Tensor Tensor::to(DType dt) const {
  return dt == dtype() ? *this : copy_as(*this, dt, device(), "ToDtypeBackward");
}
inline Tensor Tensor::to(Device d) const {
  return d == device() ? *this : copy_as(*this, dtype(), d, "ToDeviceBackward");
}
GRAFT_REGISTER_OP(clone, true);
GRAFT_REGISTER_OP(contiguous, true);
GRAFT_REGISTER_OP(to_dtype, true);

// ---- in place ----------------------------------------------------------------------------------
inline void check_inplace(const Tensor& t, const char* op) {
  GRAFT_CHECK(t.defined(), op, "tensor is undefined");
  GRAFT_CHECK(!(GradMode::enabled() && t.requires_grad()), op,
              "in-place change of a tensor that requires grad while grad mode is on; wrap it in "
              "NoGradGuard (as optimizers do) or use the out-of-place op");
}
inline Tensor& Tensor::fill_(double v) {
  check_inplace(*this, "fill_");
  copy_into(*this, full(Shape{}, v, dtype()));
  storage()->bump_version();
  return *this;
}
inline Tensor& Tensor::zero_() { return fill_(0.0); }
inline Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  copy_into(*this, src);
  storage()->bump_version();
  return *this;
}

}  // namespace graft
