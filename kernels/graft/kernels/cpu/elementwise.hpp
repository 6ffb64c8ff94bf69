// graft/kernels/cpu/elementwise.hpp - fast float32 kernels of the elementwise ops.
//
// The ops, their contracts and the plain reference loops are in graft/ops/elementwise.hpp, whose
// CPU entries call these first. Each function here returns false, having written nothing, when it
// does not take the case (ISA scalar, a dtype other than float32, an op or layout without a kernel
// here); the entry then runs the reference.
//
//   unary_forward_fast(out, x, op, p0, p1)          out = f(x); x, out contiguous [n]
//   unary_backward_fast(dfdx, x, y, op, p0, p1)     dfdx = f'(x) given y = f(x); all contiguous
//   binary_forward_fast(out, a, b, op)              out = a (op) b; a, b broadcast views of out's
//                                                   shape; rows whose inner strides are 0 or 1
//                                                   (contiguous, a row of b reused, a scalar)
//   add_scaled_inplace_fast(y, b, alpha)            y += alpha b in y's storage; y contiguous, b
//                                                   broadcast to y's shape as rows (see above)
//   scale_inplace_fast(y, s)                        y *= s; y contiguous
//   compare_forward_fast(out, a, b, op)             out (bool) = a (cmp) b; a, b float32 broadcast
//                                                   views of out's shape, rows as binary_forward_fast
//   where_forward_fast(out, cond, a, b)             out = cond ? a : b; cond bool, a, b float32, all
//                                                   broadcast views of out's shape, rows whose inner
//                                                   strides are 0 or 1
//
// Every op of UnaryOp has a kernel except pow_scalar with an exponent other than 1, 2, 3; every
// BinaryOp except pow. exp, log, tanh, erf and sigmoid are the polynomial approximations of
// vec/math.inc (errors stated there), so results differ from libm's by a few ulp.
// Work is split into fixed chunks of kGrain elements (rows for binary ops), each computed by one
// thread with the same instructions, so results do not depend on the thread count.
#pragma once
#include <algorithm>
#include <cstdint>

#include "graft/core/parallel.hpp"
#include "graft/core/scalar_ops.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cpu/broadcast_rows.hpp"
#include "graft/kernels/cpu/cpu_features.hpp"

#define GRAFT_KERNEL_BODY "graft/kernels/cpu/elementwise.inc"
#include "graft/kernels/cpu/isa/for_each_isa.hpp"

namespace graft::kernels::cpu {

namespace elementwise_detail {
inline constexpr int64_t kGrain = int64_t(1) << 15;  // elements per task: tiny tensors stay serial

// The active vector ISA, or Scalar where this build has no vector code.
inline CpuIsa vector_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return active_cpu_isa();
#else
  return CpuIsa::Scalar;
#endif
}
}  // namespace elementwise_detail

inline bool unary_has_fast(UnaryOp op, double p0) {
  return op != UnaryOp::PowScalar || p0 == 1.0 || p0 == 2.0 || p0 == 3.0;
}
inline bool binary_has_fast(BinaryOp op) { return op != BinaryOp::Pow; }

inline bool unary_forward_fast(const Tensor& out, const Tensor& x, UnaryOp op, double p0, double p1) {
  const CpuIsa isa = elementwise_detail::vector_isa();
  if (isa == CpuIsa::Scalar || out.dtype() != DType::Float32 || x.dtype() != DType::Float32 ||
      !out.is_contiguous() || !x.is_contiguous() || !unary_has_fast(op, p0))
    return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  float* o = out.data<float>();
  const float* px = x.data<float>();
  parallel_for(0, out.numel(), elementwise_detail::kGrain, [&](int64_t lo, int64_t hi) {
    if (isa == CpuIsa::Avx512) avx512::unary_forward_row(op, px + lo, o + lo, hi - lo, float(p0), float(p1));
    else avx2::unary_forward_row(op, px + lo, o + lo, hi - lo, float(p0), float(p1));
  });
#endif
  return true;
}

inline bool unary_backward_fast(const Tensor& dfdx, const Tensor& x, const Tensor& y, UnaryOp op, double p0,
                                double p1) {
  const CpuIsa isa = elementwise_detail::vector_isa();
  if (isa == CpuIsa::Scalar || dfdx.dtype() != DType::Float32 || x.dtype() != DType::Float32 ||
      y.dtype() != DType::Float32 || !dfdx.is_contiguous() || !x.is_contiguous() || !y.is_contiguous() ||
      !unary_has_fast(op, p0))
    return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  float* d = dfdx.data<float>();
  const float* px = x.data<float>();
  const float* py = y.data<float>();
  parallel_for(0, dfdx.numel(), elementwise_detail::kGrain, [&](int64_t lo, int64_t hi) {
    if (isa == CpuIsa::Avx512) avx512::unary_backward_row(op, px + lo, py + lo, d + lo, hi - lo, float(p0), float(p1));
    else avx2::unary_backward_row(op, px + lo, py + lo, d + lo, hi - lo, float(p0), float(p1));
  });
#endif
  return true;
}

namespace elementwise_detail {
// Calls row(o, a, sa, b, sb, n) over out's shape as rows of at most kGrain elements, with a and b
// of out's shape (broadcast strides); false, calling nothing, unless every row's inner strides are
// 0 or 1. `o` and `a` may be the same tensor (in-place).
template <class Out = float, class Row>
inline bool for_each_unit_stride_row(const Tensor& out, const Tensor& a, const Tensor& b, Row row) {
  Out* o = out.data<Out>();
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  if (a.is_contiguous() && b.is_contiguous()) {
    parallel_for(0, out.numel(), kGrain, [&](int64_t lo, int64_t hi) { row(o + lo, pa + lo, 1, pb + lo, 1, hi - lo); });
    return true;
  }
  const BroadcastRows plan = broadcast_rows(out.shape(), a.strides(), b.strides());
  const int64_t len = plan.row_len(), sa = plan.rank ? plan.sa[plan.rank - 1] : 0,
                sb = plan.rank ? plan.sb[plan.rank - 1] : 0;
  if ((sa != 0 && sa != 1) || (sb != 0 && sb != 1)) return false;
  // Rows longer than kGrain are split too, so one long broadcast row still uses every thread.
  const int64_t pieces = std::max<int64_t>(1, (len + kGrain - 1) / kGrain), piece = (len + pieces - 1) / pieces;
  parallel_for(0, plan.rows() * pieces, std::max<int64_t>(1, kGrain / std::max<int64_t>(piece, 1)),
               [&](int64_t lo, int64_t hi) {
                 for (int64_t t = lo; t < hi; ++t) {
                   const int64_t r = t / pieces, begin = (t % pieces) * piece, n = std::min(piece, len - begin);
                   int64_t oa, ob;
                   plan.row_offsets(r, oa, ob);
                   row(o + r * len + begin, pa + oa + begin * sa, sa, pb + ob + begin * sb, sb, n);
                 }
               });
  return true;
}
}  // namespace elementwise_detail

inline bool binary_forward_fast(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp op) {
  const CpuIsa isa = elementwise_detail::vector_isa();
  if (isa == CpuIsa::Scalar || out.dtype() != DType::Float32 || a.dtype() != DType::Float32 ||
      b.dtype() != DType::Float32 || !out.is_contiguous() || !binary_has_fast(op))
    return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return elementwise_detail::for_each_unit_stride_row(
      out, a, b, [&](float* o, const float* pa, int64_t sa, const float* pb, int64_t sb, int64_t n) {
        if (isa == CpuIsa::Avx512) avx512::binary_row(op, o, pa, sa, pb, sb, n);
        else avx2::binary_row(op, o, pa, sa, pb, sb, n);
      });
#else
  return false;
#endif
}

inline bool add_scaled_inplace_fast(const Tensor& y, const Tensor& b, double alpha) {
  const CpuIsa isa = elementwise_detail::vector_isa();
  if (isa == CpuIsa::Scalar || y.dtype() != DType::Float32 || b.dtype() != DType::Float32 || !y.is_contiguous())
    return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return elementwise_detail::for_each_unit_stride_row(
      y, y, b, [&](float* o, const float*, int64_t, const float* pb, int64_t sb, int64_t n) {
        if (isa == CpuIsa::Avx512) avx512::add_scaled_row(o, pb, sb, n, float(alpha));
        else avx2::add_scaled_row(o, pb, sb, n, float(alpha));
      });
#else
  return false;
#endif
}

inline bool scale_inplace_fast(const Tensor& y, double s) {
  const CpuIsa isa = elementwise_detail::vector_isa();
  if (isa == CpuIsa::Scalar || y.dtype() != DType::Float32 || !y.is_contiguous()) return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  float* p = y.data<float>();
  parallel_for(0, y.numel(), elementwise_detail::kGrain, [&](int64_t lo, int64_t hi) {
    if (isa == CpuIsa::Avx512) avx512::scale_row(p + lo, hi - lo, float(s));
    else avx2::scale_row(p + lo, hi - lo, float(s));
  });
#endif
  return true;
}

inline bool compare_forward_fast(const Tensor& out, const Tensor& a, const Tensor& b, CompareOp op) {
  const CpuIsa isa = elementwise_detail::vector_isa();
  if (isa == CpuIsa::Scalar || out.dtype() != DType::Bool || a.dtype() != DType::Float32 ||
      b.dtype() != DType::Float32 || !out.is_contiguous())
    return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return elementwise_detail::for_each_unit_stride_row<bool>(
      out, a, b, [&](bool* o, const float* pa, int64_t sa, const float* pb, int64_t sb, int64_t n) {
        if (isa == CpuIsa::Avx512) avx512::compare_row(op, o, pa, sa, pb, sb, n);
        else avx2::compare_row(op, o, pa, sa, pb, sb, n);
      });
#else
  return false;
#endif
}

namespace elementwise_detail {
// BroadcastRows (broadcast_rows.hpp) for three operands: out's dims merged where all three allow it
// (stride[d] == stride[d + 1] * size[d + 1]), size-1 dims dropped; the last merged dim is the row.
struct BroadcastRows3 {
  int rank = 0;
  int64_t size[kMaxDims] = {}, stride[3][kMaxDims] = {};
  int64_t rows() const {
    int64_t r = 1;
    for (int d = 0; d + 1 < rank; ++d) r *= size[d];
    return r;
  }
  int64_t row_len() const { return rank ? size[rank - 1] : 1; }
  int64_t inner_stride(int k) const { return rank ? stride[k][rank - 1] : 0; }
  void row_offsets(int64_t r, int64_t (&off)[3]) const {
    off[0] = off[1] = off[2] = 0;
    for (int d = rank - 2; d >= 0; --d) {
      const int64_t i = r % size[d];
      r /= size[d];
      for (int k = 0; k < 3; ++k) off[k] += i * stride[k][d];
    }
  }
};

inline BroadcastRows3 broadcast_rows3(const Shape& shape, const Shape& s0, const Shape& s1, const Shape& s2) {
  const Shape* s[3] = {&s0, &s1, &s2};
  BroadcastRows3 p;
  for (int d = 0; d < shape.rank(); ++d) {
    if (shape[d] == 1) continue;
    if (p.rank > 0) {
      const int q = p.rank - 1;
      bool merge = true;
      for (int k = 0; k < 3; ++k) merge = merge && p.stride[k][q] == (*s[k])[d] * shape[d];
      if (merge) {
        p.size[q] *= shape[d];
        for (int k = 0; k < 3; ++k) p.stride[k][q] = (*s[k])[d];
        continue;
      }
    }
    p.size[p.rank] = shape[d];
    for (int k = 0; k < 3; ++k) p.stride[k][p.rank] = (*s[k])[d];
    ++p.rank;
  }
  return p;
}
}  // namespace elementwise_detail

inline bool where_forward_fast(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  const CpuIsa isa = elementwise_detail::vector_isa();
  if (isa == CpuIsa::Scalar || out.dtype() != DType::Float32 || cond.dtype() != DType::Bool ||
      a.dtype() != DType::Float32 || b.dtype() != DType::Float32 || !out.is_contiguous())
    return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  using elementwise_detail::kGrain;
  const elementwise_detail::BroadcastRows3 plan =
      elementwise_detail::broadcast_rows3(out.shape(), cond.strides(), a.strides(), b.strides());
  const int64_t len = plan.row_len(), sc = plan.inner_stride(0), sa = plan.inner_stride(1), sb = plan.inner_stride(2);
  if ((sc != 0 && sc != 1) || (sa != 0 && sa != 1) || (sb != 0 && sb != 1)) return false;
  float* o = out.data<float>();
  const bool* pc = cond.data<bool>();
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  // Rows cut into pieces of at most kGrain, as for_each_unit_stride_row.
  const int64_t pieces = std::max<int64_t>(1, (len + kGrain - 1) / kGrain), piece = (len + pieces - 1) / pieces;
  parallel_for(0, plan.rows() * pieces, std::max<int64_t>(1, kGrain / std::max<int64_t>(piece, 1)),
               [&](int64_t lo, int64_t hi) {
                 for (int64_t t = lo; t < hi; ++t) {
                   const int64_t r = t / pieces, begin = (t % pieces) * piece, n = std::min(piece, len - begin);
                   int64_t off[3];
                   plan.row_offsets(r, off);
                   const bool* c = pc + off[0] + begin * sc;
                   const float* ra = pa + off[1] + begin * sa;
                   const float* rb = pb + off[2] + begin * sb;
                   if (isa == CpuIsa::Avx512) avx512::where_row(o + r * len + begin, c, sc, ra, sa, rb, sb, n);
                   else avx2::where_row(o + r * len + begin, c, sc, ra, sa, rb, sb, n);
                 }
               });
  return true;
#else
  return false;
#endif
}

}  // namespace graft::kernels::cpu
