// graft/ops/elementwise.hpp - elementwise ops with numpy broadcasting: binary arithmetic,
// comparisons, where, and the unary math/activation family.
//
// Forward and backward of each op sit together. Binary ops promote dtypes as PyTorch does and
// reduce the gradient back to each operand's shape with sum_to. Unary backward is
// dx = dout * f'(x), with f'(x) from the kernel next to f(x); dout enters through the
// differentiable mul, so create_graph works in dout. Second derivatives in x are exact for the
// piecewise-linear ops (relu, relu6, clamp, abs, neg) and throw for the others.
//
// Kernels: the plain reference loops below (every dtype; the float64 path and GRAFT_CPU_ISA=scalar)
// and, for float32 on AVX2 / AVX-512, the fast kernels of kernels/graft/kernels/cpu/elementwise.hpp
// (every unary op forward and backward; binary ops but pow, compare and where on rows of unit or
// zero stride; add_ and mul_), tried first by the *_cpu entries. The op codes and scalar math are in
// core/scalar_ops.hpp.
#pragma once
#include <cmath>
#include <type_traits>

#include "graft/autograd/node.hpp"
#include "graft/core/activation.hpp"
#include "graft/core/dispatch.hpp"
#include "graft/core/parallel.hpp"
#include "graft/core/scalar_ops.hpp"
#include "graft/kernels/cpu/broadcast_rows.hpp"
#include "graft/kernels/cpu/elementwise.hpp"
#include "graft/ops/autocast.hpp"
#include "graft/ops/copy.hpp"
#include "graft/ops/view.hpp"

namespace graft {

namespace kernels::cpu {

// Calls f(i, oa, ob) with the offsets of element i of out's shape in two strided operands.
template <class F>
inline void for_each_offset2(const Shape& shape, const Shape& sa, const Shape& sb, F&& f) {
  const int r = shape.rank();
  const int64_t n = shape.numel();
  int64_t idx[kMaxDims] = {0};
  int64_t oa = 0, ob = 0;
  for (int64_t i = 0; i < n; ++i) {
    f(i, oa, ob);
    for (int d = r - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) {
        oa += sa[d];
        ob += sb[d];
        break;
      }
      oa -= sa[d] * (shape[d] - 1);
      ob -= sb[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}

// Calls g(f) with f the scalar function of op (a lambda per op, so row loops can vectorize).
template <class T, class G>
inline void with_binary_fn(BinaryOp op, G&& g) {
  switch (op) {
    case BinaryOp::Add: return g([](T x, T y) { return x + y; });
    case BinaryOp::Sub: return g([](T x, T y) { return x - y; });
    case BinaryOp::Mul: return g([](T x, T y) { return x * y; });
    case BinaryOp::Div: return g([](T x, T y) { return x / y; });
    default: return g([op](T x, T y) { return binary_scalar<T>(op, x, y); });
  }
}

// o[i] = f(a[i sa], b[i sb]) for i < n, with the common strides (1 or 0) as their own loops.
template <class T, class F>
inline void binary_row(T* o, const T* a, int64_t sa, const T* b, int64_t sb, int64_t n, F f) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const T bv = *b;
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const T av = *a;
    for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i * sa], b[i * sb]);
  }
}

// out = a (op) b. a and b are already broadcast to out's shape (stride 0 on broadcast dims) and
// have out's dtype; out is contiguous. Parallel over rows of the merged dims (broadcast_rows).
inline void binary_forward(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op) {
  auto run = [&](auto* o, const auto* pa, const auto* pb) {
    using T = std::remove_pointer_t<decltype(o)>;
    with_binary_fn<T>(op, [&](auto f) {
      if (a.is_contiguous() && b.is_contiguous()) {
        parallel_for(0, out.numel(), 1 << 15,
                     [&](int64_t lo, int64_t hi) { binary_row(o + lo, pa + lo, 1, pb + lo, 1, hi - lo, f); });
        return;
      }
      const BroadcastRows plan = broadcast_rows(out.shape(), a.strides(), b.strides());
      const int64_t len = plan.row_len(), inner_sa = plan.rank ? plan.sa[plan.rank - 1] : 0,
                    inner_sb = plan.rank ? plan.sb[plan.rank - 1] : 0;
      parallel_for(0, plan.rows(), std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(len, 1)),
                   [&](int64_t lo, int64_t hi) {
                     for (int64_t r = lo; r < hi; ++r) {
                       int64_t oa, ob;
                       plan.row_offsets(r, oa, ob);
                       binary_row(o + r * len, pa + oa, inner_sa, pb + ob, inner_sb, len, f);
                     }
                   });
    });
  };
  switch (out.dtype()) {
    case DType::Float32: return run(out.data<float>(), a.data<float>(), b.data<float>());
    case DType::Float64: return run(out.data<double>(), a.data<double>(), b.data<double>());
    case DType::Int32: return run(out.data<int32_t>(), a.data<int32_t>(), b.data<int32_t>());
    case DType::Int64: return run(out.data<int64_t>(), a.data<int64_t>(), b.data<int64_t>());
    default:
      throw Error(detail::concat("binary op: dtype ", dtype_name(out.dtype()),
                                 " not supported (expected float32, float64, int32 or int64)"));
  }
}

// out (bool) = a (cmp) b, broadcast as above; a and b have the same dtype.
inline void compare_forward(const Tensor& out, const Tensor& a, const Tensor& b, CompareOp op) {
  bool* o = out.data<bool>();
  GRAFT_DISPATCH_ALL(a.dtype(), "compare", T, [&] {
    const T* pa = static_cast<const T*>(a.data_ptr());
    const T* pb = static_cast<const T*>(b.data_ptr());
    for_each_offset2(out.shape(), a.strides(), b.strides(), [&](int64_t i, int64_t ia, int64_t ib) {
      const double x = static_cast<double>(pa[ia]), y = static_cast<double>(pb[ib]);
      switch (op) {
        case CompareOp::Eq: o[i] = x == y; break;
        case CompareOp::Ne: o[i] = x != y; break;
        case CompareOp::Lt: o[i] = x < y; break;
        case CompareOp::Le: o[i] = x <= y; break;
        case CompareOp::Gt: o[i] = x > y; break;
        case CompareOp::Ge: o[i] = x >= y; break;
      }
    });
  });
}

// out = cond ? a : b; all three broadcast to out's shape, a and b of out's dtype.
inline void where_forward(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  GRAFT_DISPATCH_ALL(out.dtype(), "where", T, [&] {
    T* o = out.data<T>();
    const bool* pc = cond.data<bool>();
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    std::vector<int64_t> oc;
    oc.reserve(size_t(out.numel()));
    for_each_offset(out.shape(), cond.strides(), [&](int64_t c) { oc.push_back(c); });
    for_each_offset2(out.shape(), a.strides(), b.strides(),
                     [&](int64_t i, int64_t ia, int64_t ib) { o[i] = pc[oc[size_t(i)]] ? pa[ia] : pb[ib]; });
  });
}

// Calls g(std::integral_constant<UnaryOp, op>{}): with the op a compile-time constant the switch in
// unary_scalar / unary_derivative folds away and the element loops vectorize.
template <class G>
inline void with_unary_op(UnaryOp op, G&& g) {
#define GRAFT_UNARY_CASE(name) \
  case UnaryOp::name: return g(std::integral_constant<UnaryOp, UnaryOp::name>{});
  switch (op) {
    GRAFT_UNARY_CASE(Neg) GRAFT_UNARY_CASE(Abs) GRAFT_UNARY_CASE(Exp) GRAFT_UNARY_CASE(Log)
    GRAFT_UNARY_CASE(Sqrt) GRAFT_UNARY_CASE(Rsqrt) GRAFT_UNARY_CASE(Tanh) GRAFT_UNARY_CASE(Sigmoid)
    GRAFT_UNARY_CASE(Relu) GRAFT_UNARY_CASE(Relu6) GRAFT_UNARY_CASE(GeluErf) GRAFT_UNARY_CASE(GeluTanh)
    GRAFT_UNARY_CASE(Silu) GRAFT_UNARY_CASE(Hardswish) GRAFT_UNARY_CASE(PowScalar) GRAFT_UNARY_CASE(Clamp)
  }
#undef GRAFT_UNARY_CASE
  throw Error("unary op: unknown op");
}

// out = f(x); x contiguous, same dtype as out.
inline void unary_forward(const Tensor& out, const Tensor& x, UnaryOp op, double p0, double p1) {
  GRAFT_DISPATCH_FLOAT(out.dtype(), unary_name(op), T, [&] {
    T* o = out.data<T>();
    const T* px = x.data<T>();
    with_unary_op(op, [&](auto op_c) {
      parallel_for(0, out.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) o[i] = unary_scalar<T>(op_c.value, px[i], T(p0), T(p1));
      });
    });
  });
}

// dfdx = f'(x) elementwise; x, y (= f(x)) contiguous.
inline void unary_backward(const Tensor& dfdx, const Tensor& x, const Tensor& y, UnaryOp op, double p0,
                           double p1) {
  GRAFT_DISPATCH_FLOAT(dfdx.dtype(), unary_name(op), T, [&] {
    T* d = dfdx.data<T>();
    const T* px = x.data<T>();
    const T* py = y.data<T>();
    with_unary_op(op, [&](auto op_c) {
      parallel_for(0, dfdx.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) d[i] = unary_derivative<T>(op_c.value, px[i], py[i], T(p0), T(p1));
      });
    });
  });
}

// y += alpha b in y's own storage (any layout); b has y's dtype and shape (broadcast strides
// allowed) and does not overlap y except as the very same elements. b * alpha is rounded before
// the add, as add(y, mul(b, alpha)) does. The reference of Tensor::add_.
inline void add_scaled_inplace(const Tensor& y, const Tensor& b, double alpha) {
  auto run = [&](auto* py, const auto* pb) {
    using T = std::remove_pointer_t<decltype(py)>;
    const T a = T(alpha);
    if (alpha == 1.0)
      for_each_offset2(y.shape(), y.strides(), b.strides(), [&](int64_t, int64_t oy, int64_t ob) { py[oy] += pb[ob]; });
    else
      for_each_offset2(y.shape(), y.strides(), b.strides(),
                       [&](int64_t, int64_t oy, int64_t ob) { py[oy] = py[oy] + T(pb[ob] * a); });
  };
  // bfloat16 / float16: y + alpha b in float, one rounding (PyTorch's add_ on reduced floats)
  auto run_reduced = [&](auto* py, const auto* pb) {
    using T = std::remove_pointer_t<decltype(py)>;
    const float a = float(alpha);
    for_each_offset2(y.shape(), y.strides(), b.strides(),
                     [&](int64_t, int64_t oy, int64_t ob) { py[oy] = T(float(py[oy]) + a * float(pb[ob])); });
  };
  switch (y.dtype()) {
    case DType::Float32: return run(y.data<float>(), b.data<float>());
    case DType::Float64: return run(y.data<double>(), b.data<double>());
    case DType::BFloat16: return run_reduced(y.data<BFloat16>(), b.data<BFloat16>());
    case DType::Float16: return run_reduced(y.data<Float16>(), b.data<Float16>());
    case DType::Int32: return run(y.data<int32_t>(), b.data<int32_t>());
    case DType::Int64: return run(y.data<int64_t>(), b.data<int64_t>());
    default:
      throw Error(detail::concat("add_: dtype ", dtype_name(y.dtype()), " not supported"));
  }
}

// y *= s in y's own storage (any layout), s rounded to y's dtype first (as mul(y, s)).
inline void scale_inplace(const Tensor& y, double s) {
  auto run = [&](auto* py) {
    using T = std::remove_pointer_t<decltype(py)>;
    const T v = T(s);
    for_each_offset(y.shape(), y.strides(), [&](int64_t o) { py[o] = py[o] * v; });
  };
  auto run_reduced = [&](auto* py) {
    using T = std::remove_pointer_t<decltype(py)>;
    const float v = float(s);
    for_each_offset(y.shape(), y.strides(), [&](int64_t o) { py[o] = T(float(py[o]) * v); });
  };
  switch (y.dtype()) {
    case DType::Float32: return run(y.data<float>());
    case DType::Float64: return run(y.data<double>());
    case DType::BFloat16: return run_reduced(y.data<BFloat16>());
    case DType::Float16: return run_reduced(y.data<Float16>());
    case DType::Int32: return run(y.data<int32_t>());
    case DType::Int64: return run(y.data<int64_t>());
    default:
      throw Error(detail::concat("mul_: dtype ", dtype_name(y.dtype()), " not supported"));
  }
}

// The CPU entries of the KernelSlots: the fast float32 kernel of kernels/graft/kernels/cpu/
// elementwise.hpp for the active ISA when it takes the case, else the reference above.
inline void binary_forward_cpu(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op) {
  if (!binary_forward_fast(out, a, b, op)) binary_forward(out, a, b, op);
}
inline void compare_forward_cpu(const Tensor& out, const Tensor& a, const Tensor& b, CompareOp op) {
  if (!compare_forward_fast(out, a, b, op)) compare_forward(out, a, b, op);
}
inline void where_forward_cpu(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  if (!where_forward_fast(out, cond, a, b)) where_forward(out, cond, a, b);
}
inline void unary_forward_cpu(const Tensor& out, const Tensor& x, UnaryOp op, double p0, double p1) {
  if (!unary_forward_fast(out, x, op, p0, p1)) unary_forward(out, x, op, p0, p1);
}
inline void unary_backward_cpu(const Tensor& dfdx, const Tensor& x, const Tensor& y, UnaryOp op, double p0,
                               double p1) {
  if (!unary_backward_fast(dfdx, x, y, op, p0, p1)) unary_backward(dfdx, x, y, op, p0, p1);
}

}  // namespace kernels::cpu

using BinaryKernel = void (*)(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op);
using CompareKernel = void (*)(const Tensor& out, const Tensor& a, const Tensor& b, CompareOp op);
using WhereKernel = void (*)(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b);
using UnaryKernel = void (*)(const Tensor& out, const Tensor& x, UnaryOp op, double p0, double p1);
using UnaryBackwardKernel = void (*)(const Tensor& dfdx, const Tensor& x, const Tensor& y, UnaryOp op,
                                     double p0, double p1);
GRAFT_KERNEL_SLOT(BinaryKernel, binary_kernel, "binary", kernels::cpu::binary_forward_cpu, "avx2 avx512");
GRAFT_KERNEL_SLOT(CompareKernel, compare_kernel, "compare", kernels::cpu::compare_forward_cpu, "avx2 avx512");
GRAFT_KERNEL_SLOT(WhereKernel, where_kernel, "where", kernels::cpu::where_forward_cpu, "avx2 avx512");
GRAFT_KERNEL_SLOT(UnaryKernel, unary_kernel, "unary", kernels::cpu::unary_forward_cpu, "avx2 avx512");
GRAFT_KERNEL_SLOT(UnaryBackwardKernel, unary_backward_kernel, "unary_backward", kernels::cpu::unary_backward_cpu,
                  "avx2 avx512");

Tensor sum_to(const Tensor& x, const Shape& shape);  // graft/ops/reduce.hpp
Tensor mul(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);
Tensor neg(const Tensor& x);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& x, double p);
Tensor log(const Tensor& x);

namespace detail_ew {
inline void check_pair(const Tensor& a, const Tensor& b, const char* op) {
  GRAFT_CHECK(a.defined() && b.defined(), op, "undefined tensor argument");
  GRAFT_CHECK(a.device() == b.device(), op, "tensors on different devices: ", a.device(), " and ",
              b.device());
}
// A 0-d tensor holding v in x's dtype (a Python scalar operand does not promote in PyTorch).
inline Tensor scalar_like(const Tensor& x, double v) {
  DType dt = x.dtype();
  if (!is_floating(dt) && v != std::floor(v)) dt = DType::Float32;
  return full(Shape{}, v, dt, x.device());
}
}  // namespace detail_ew

namespace autograd {
class BinaryBackward final : public Node {
 public:
  std::string name() const override {
    static const char* names[] = {"AddBackward", "SubBackward", "MulBackward", "DivBackward",
                                  "PowBackward", "MaximumBackward", "MinimumBackward"};
    return names[int(op)];
  }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    const Tensor& g = grads[0];
    Tensor da, db;
    const bool need_a = needs_input_grad(0), need_b = needs_input_grad(1);
    switch (op) {
      case BinaryOp::Add:
        if (need_a) da = g;
        if (need_b) db = g;
        break;
      case BinaryOp::Sub:
        if (need_a) da = g;
        if (need_b) db = neg(g);
        break;
      case BinaryOp::Mul:
        if (need_a) da = mul(g, b_.unpack(this));
        if (need_b) db = mul(g, a_.unpack(this));
        break;
      case BinaryOp::Div: {
        const Tensor b = b_.unpack(this);
        if (need_a) da = g / b;
        if (need_b) db = neg(g * a_.unpack(this) / (b * b));
        break;
      }
      case BinaryOp::Pow: {  // y = a^b: da = g b a^(b-1), db = g y log(a)
        const Tensor a = a_.unpack(this), b = b_.unpack(this);
        if (need_a) da = g * b * pow(a, b - 1.0);
        if (need_b) db = g * out_.unpack(this) * log(a);
        break;
      }
      case BinaryOp::Maximum:
      case BinaryOp::Minimum: {  // the gradient goes to the chosen operand; ties split evenly
        const Tensor a = a_.unpack(this), b = b_.unpack(this);
        const Tensor pick_a = op == BinaryOp::Maximum ? gt(a, b) : lt(a, b);
        const Tensor tie = eq(a, b);
        const Tensor half = g * 0.5;
        const Tensor zero = zeros_like(g);
        if (need_a) da = where(pick_a, g, where(tie, half, zero));
        if (need_b) db = where(pick_a, zero, where(tie, half, g));
        break;
      }
    }
    if (da.defined()) da = sum_to(da, a_shape);
    if (db.defined()) db = sum_to(db, b_shape);
    return {da, db};
  }
  void release_saved() override {
    a_.release();
    b_.release();
    out_.release();
  }
  BinaryOp op = BinaryOp::Add;
  SavedTensor a_, b_, out_;
  Shape a_shape, b_shape;
};
}  // namespace autograd

// a (op) b with broadcasting and type promotion; differentiable for floating dtypes.
inline Tensor binary(const Tensor& a_in, const Tensor& b_in, BinaryOp op, const char* name) {
  detail_ew::check_pair(a_in, b_in, name);
  const DType dt = promote(a_in.dtype(), b_in.dtype());
  const Shape shape = broadcast_shapes(a_in.shape(), b_in.shape(), name);
  if (is_reduced_float(dt))  // no 16-bit kernel: computed in float32, rounded (ops/autocast.hpp)
    return binary(a_in.to(DType::Float32), b_in.to(DType::Float32), op, name).to(dt);
  const Tensor a = a_in.to(dt), b = b_in.to(dt);
  Tensor out = empty(shape, dt, a.device());
  if (out.numel() > 0) binary_kernel.get(out.device())(out, a.detach().expand(shape), b.detach().expand(shape), op);
  if (is_floating(dt) && autograd::any_requires_grad({&a, &b})) {
    auto node = std::make_shared<autograd::BinaryBackward>();
    node->op = op;
    node->a_shape = a.shape();
    node->b_shape = b.shape();
    const bool needs_values = op != BinaryOp::Add && op != BinaryOp::Sub;
    if (needs_values) {
      node->a_ = a;
      node->b_ = b;
    }
    if (op == BinaryOp::Pow) node->out_ = autograd::SavedTensor(out, true);
    autograd::connect(node, {a, b}, {out});
  }
  return out;
}

inline Tensor add(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::Add, "add"); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::Sub, "sub"); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::Mul, "mul"); }
inline Tensor div(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::Div, "div"); }
inline Tensor pow(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::Pow, "pow"); }
inline Tensor maximum(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::Maximum, "maximum"); }
inline Tensor minimum(const Tensor& a, const Tensor& b) { return binary(a, b, BinaryOp::Minimum, "minimum"); }
inline Tensor add(const Tensor& a, double s) { return add(a, detail_ew::scalar_like(a, s)); }
inline Tensor sub(const Tensor& a, double s) { return sub(a, detail_ew::scalar_like(a, s)); }
inline Tensor mul(const Tensor& a, double s) { return mul(a, detail_ew::scalar_like(a, s)); }
inline Tensor div(const Tensor& a, double s) { return div(a, detail_ew::scalar_like(a, s)); }

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return sub(a, s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return div(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(double s, const Tensor& a) { return sub(detail_ew::scalar_like(a, s), a); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator/(double s, const Tensor& a) { return div(detail_ew::scalar_like(a, s), a); }

// ---- comparisons and where ---------------------------------------------------------------------
inline Tensor compare(const Tensor& a_in, const Tensor& b_in, CompareOp op, const char* name) {
  detail_ew::check_pair(a_in, b_in, name);
  const DType dt = promote(a_in.dtype(), b_in.dtype());
  const Shape shape = broadcast_shapes(a_in.shape(), b_in.shape(), name);
  Tensor a = a_in.detach().to(dt), b = b_in.detach().to(dt);
  Tensor out = empty(shape, DType::Bool, a.device());
  if (out.numel() > 0) compare_kernel.get(out.device())(out, a.expand(shape), b.expand(shape), op);
  return out;
}
inline Tensor eq(const Tensor& a, const Tensor& b) { return compare(a, b, CompareOp::Eq, "eq"); }
inline Tensor ne(const Tensor& a, const Tensor& b) { return compare(a, b, CompareOp::Ne, "ne"); }
inline Tensor lt(const Tensor& a, const Tensor& b) { return compare(a, b, CompareOp::Lt, "lt"); }
inline Tensor le(const Tensor& a, const Tensor& b) { return compare(a, b, CompareOp::Le, "le"); }
inline Tensor gt(const Tensor& a, const Tensor& b) { return compare(a, b, CompareOp::Gt, "gt"); }
inline Tensor ge(const Tensor& a, const Tensor& b) { return compare(a, b, CompareOp::Ge, "ge"); }
inline Tensor eq(const Tensor& a, double s) { return eq(a, detail_ew::scalar_like(a, s)); }
inline Tensor ne(const Tensor& a, double s) { return ne(a, detail_ew::scalar_like(a, s)); }
inline Tensor lt(const Tensor& a, double s) { return lt(a, detail_ew::scalar_like(a, s)); }
inline Tensor le(const Tensor& a, double s) { return le(a, detail_ew::scalar_like(a, s)); }
inline Tensor gt(const Tensor& a, double s) { return gt(a, detail_ew::scalar_like(a, s)); }
inline Tensor ge(const Tensor& a, double s) { return ge(a, detail_ew::scalar_like(a, s)); }


// cond ? a : b with broadcasting; differentiable in a and b.
inline Tensor where(const Tensor& cond, const Tensor& a_in, const Tensor& b_in) {
  detail_ew::check_pair(a_in, b_in, "where");
  GRAFT_CHECK(cond.defined() && cond.dtype() == DType::Bool, "where", "condition must be a bool tensor, got ",
              cond.defined() ? dtype_name(cond.dtype()) : "undefined");
  GRAFT_CHECK(cond.device() == a_in.device(), "where", "condition on ", cond.device(), " but the values on ",
              a_in.device());
  const DType dt = promote(a_in.dtype(), b_in.dtype());
  const Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a_in.shape(), "where"), b_in.shape(), "where");
  const Tensor a = a_in.to(dt), b = b_in.to(dt);
  Tensor out = empty(shape, dt, a.device());
  if (out.numel() > 0)
    where_kernel.get(out.device())(out, cond.expand(shape), a.detach().expand(shape), b.detach().expand(shape));
  if (autograd::any_requires_grad({&a, &b})) {
    const Shape sa = a.shape(), sb = b.shape();
    const Tensor c = cond;
    auto node = std::make_shared<autograd::ShapeNode>("WhereBackward", [=](std::vector<Tensor>& g) {
      const Tensor zero = zeros_like(g[0]);
      return std::vector<Tensor>{sum_to(where(c, g[0], zero), sa), sum_to(where(c, zero, g[0]), sb)};
    });
    autograd::connect(node, {a, b}, {out});
  }
  return out;
}

// ---- unary ---------------------------------------------------------------------------------------
namespace autograd {
class UnaryBackward final : public Node {
 public:
  std::string name() const override { return std::string(unary_name(op)) + "Backward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    const Tensor x = x_.unpack(this), y = y_.unpack(this);
    const bool piecewise_linear = op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::Relu ||
                                  op == UnaryOp::Relu6 || op == UnaryOp::Clamp;
    GRAFT_CHECK(!(GradMode::enabled() && x.requires_grad() && !piecewise_linear), name(),
                "second derivative (create_graph through ", unary_name(op), " in its input) is not implemented");
    Tensor dfdx = empty(x.shape(), x.dtype(), x.device());
    unary_backward_kernel.get(x.device())(dfdx, x.detach(), y, op, p0, p1);
    return {mul(grads[0], dfdx)};
  }
  void release_saved() override {
    x_.release();
    y_.release();
  }
  UnaryOp op = UnaryOp::Neg;
  double p0 = 0, p1 = 0;
  SavedTensor x_, y_;
};
}  // namespace autograd

inline Tensor unary(const Tensor& x_in, UnaryOp op, double p0 = 0.0, double p1 = 0.0) {
  const char* name = unary_name(op);
  GRAFT_CHECK(x_in.defined(), name, "undefined tensor argument");
  GRAFT_CHECK(is_floating(x_in.dtype()), name, "expected a floating-point tensor, got ", dtype_name(x_in.dtype()));
  if (is_reduced_float(x_in.dtype()))
    return widened(x_in, [&](const Tensor& xf) { return unary(xf, op, p0, p1); });
  const Tensor x = x_in.contiguous();
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) unary_kernel.get(x.device())(out, x, op, p0, p1);
  if (autograd::any_requires_grad({&x})) {
    auto node = std::make_shared<autograd::UnaryBackward>();
    node->op = op;
    node->p0 = p0;
    node->p1 = p1;
    node->x_ = x;
    node->y_ = autograd::SavedTensor(out, true);
    autograd::connect(node, {x}, {out});
  }
  return out;
}

inline Tensor neg(const Tensor& x) { return unary(x, UnaryOp::Neg); }
inline Tensor operator-(const Tensor& x) { return neg(x); }
inline Tensor abs(const Tensor& x) { return unary(x, UnaryOp::Abs); }
inline Tensor exp(const Tensor& x) { return unary(x, UnaryOp::Exp); }
inline Tensor log(const Tensor& x) { return unary(x, UnaryOp::Log); }
inline Tensor sqrt(const Tensor& x) { return unary(x, UnaryOp::Sqrt); }
inline Tensor rsqrt(const Tensor& x) { return unary(x, UnaryOp::Rsqrt); }
inline Tensor tanh(const Tensor& x) { return unary(x, UnaryOp::Tanh); }
inline Tensor sigmoid(const Tensor& x) { return unary(x, UnaryOp::Sigmoid); }
inline Tensor relu(const Tensor& x) { return unary(x, UnaryOp::Relu); }
inline Tensor relu6(const Tensor& x) { return unary(x, UnaryOp::Relu6); }
// approximate: "none" (erf, PyTorch's default) or "tanh"
inline Tensor gelu(const Tensor& x, const std::string& approximate = "none") {
  GRAFT_CHECK(approximate == "none" || approximate == "tanh", "gelu",
              "approximate must be \"none\" or \"tanh\", got \"", approximate, "\"");
  return unary(x, approximate == "none" ? UnaryOp::GeluErf : UnaryOp::GeluTanh);
}
inline Tensor silu(const Tensor& x) { return unary(x, UnaryOp::Silu); }
inline Tensor hardswish(const Tensor& x) { return unary(x, UnaryOp::Hardswish); }
// act(y) as its own op (the unfused form of the activations core/activation.hpp lists).
inline Tensor activation(const Tensor& y, Activation act) {
  switch (act) {
    case Activation::None: return y;
    case Activation::Relu: return relu(y);
    case Activation::Relu6: return relu6(y);
    case Activation::Silu: return silu(y);
    case Activation::GeluTanh: return gelu(y, "tanh");
    case Activation::Gelu: return gelu(y);
  }
  return y;
}
inline Tensor pow(const Tensor& x, double p) { return unary(x, UnaryOp::PowScalar, p); }
inline Tensor clamp(const Tensor& x, double lo, double hi) {
  GRAFT_CHECK(lo <= hi, "clamp", "min (", lo, ") must not exceed max (", hi, ")");
  return unary(x, UnaryOp::Clamp, lo, hi);
}

GRAFT_REGISTER_OP(add, true);
GRAFT_REGISTER_OP(sub, true);
GRAFT_REGISTER_OP(mul, true);
GRAFT_REGISTER_OP(div, true);
GRAFT_REGISTER_OP(pow, true);
GRAFT_REGISTER_OP(maximum, true);
GRAFT_REGISTER_OP(minimum, true);
GRAFT_REGISTER_OP(where, true);
GRAFT_REGISTER_OP(compare, false);
GRAFT_REGISTER_OP(neg, true);
GRAFT_REGISTER_OP(abs, true);
GRAFT_REGISTER_OP(exp, true);
GRAFT_REGISTER_OP(log, true);
GRAFT_REGISTER_OP(sqrt, true);
GRAFT_REGISTER_OP(rsqrt, true);
GRAFT_REGISTER_OP(tanh, true);
GRAFT_REGISTER_OP(sigmoid, true);
GRAFT_REGISTER_OP(relu, true);
GRAFT_REGISTER_OP(relu6, true);
GRAFT_REGISTER_OP(gelu, true);
GRAFT_REGISTER_OP(gelu_tanh, true);
GRAFT_REGISTER_OP(silu, true);
GRAFT_REGISTER_OP(hardswish, true);
GRAFT_REGISTER_OP(pow_scalar, true);
GRAFT_REGISTER_OP(clamp, true);

// ---- in place (optimizers) -----------------------------------------------------------------------
// Both write into the tensor's own storage (no temporary the size of *this); the result is that of
// copy_(add(*this, mul(other, alpha))) and copy_(mul(*this, s)): other broadcasts to this shape and
// is converted to this dtype, other * alpha computed in other's dtype (float32 for an integer other
// and a fractional alpha). The float32 fast path computes this + alpha other with one rounding
// (fma, as PyTorch's CPU add_); the reference rounds alpha other first.
inline Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace(*this, "add_");
  GRAFT_CHECK(other.defined(), "add_", "undefined tensor argument");
  GRAFT_CHECK(other.device() == device(), "add_", "tensors on different devices: ", device(), " and ",
              other.device());
  NoGradGuard ng;
  const Shape b = broadcast_shapes(shape(), other.shape(), "add_");
  GRAFT_CHECK(b == shape(), "add_", "other's shape ", other.shape(), " cannot be broadcast to this tensor's shape ",
              shape());
  if (numel() == 0) return *this;
  const bool same_dtype = other.dtype() == dtype();
  const bool exact_alpha = is_floating(dtype()) || alpha == std::floor(alpha);  // alpha in this dtype
  if (!device().is_cpu()) {  // the CUDA kernels: binary add into a temporary, then a copy
    const Tensor o = alpha == 1.0 ? other : mul(other, alpha);
    copy_into(*this, add(this->detach(), o.to(dtype())));
  } else {
    Tensor o = other.detach();
    double scale = alpha;
    if (!same_dtype || !exact_alpha) {  // other * alpha in other's dtype, converted: other's size
      o = (alpha == 1.0 ? o : mul(o, alpha)).to(dtype());
      scale = 1.0;
    } else if (o.storage() == storage() &&
               !(o.data_ptr() == data_ptr() && o.shape() == shape() && o.strides() == strides())) {
      o = o.clone();  // overlaps *this in another layout: read it before writing
    }
    const Tensor ob = o.expand(shape());
    if (!kernels::cpu::add_scaled_inplace_fast(*this, ob, scale)) kernels::cpu::add_scaled_inplace(*this, ob, scale);
  }
  storage()->bump_version();
  return *this;
}
inline Tensor& Tensor::mul_(double s) {
  check_inplace(*this, "mul_");
  NoGradGuard ng;
  if (numel() == 0) return *this;
  if (!device().is_cpu()) {
    copy_into(*this, mul(this->detach(), s));
  } else if (!is_floating(dtype()) && s != std::floor(s)) {  // mul promotes to float32, the copy truncates
    copy_into(*this, mul(this->detach(), s));
  } else if (!kernels::cpu::scale_inplace_fast(*this, s)) {
    kernels::cpu::scale_inplace(*this, s);
  }
  storage()->bump_version();
  return *this;
}

}  // namespace graft
