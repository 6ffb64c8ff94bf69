// graft/ops/autocast.hpp - how ops treat the reduced floats (bfloat16, float16): autocast's casts
// (core/autocast.hpp holds the state) and the float32 path of ops without a 16-bit kernel.
//
// Three kinds of op, as in torch.autocast's op lists:
//   lower precision  matmul, linear, conv2d, scaled_dot_product_attention: under autocast their float32
//                    operands are cast to the autocast dtype (autocast::lower; a weight through the
//                    scope's cache, autocast::lower_weight) and they compute in it: float32 accumulation
//                    in the kernel, the result rounded to the reduced dtype.
//   float32          softmax, log_softmax, layer_norm, batch_norm, the losses, sum, mean, var
//                    (float32_op): a reduced input is widened to float32 and, under autocast, the result
//                    stays float32; without autocast it is rounded back to the input's dtype.
//   the rest         elementwise ops, pooling, max / min, dropout, ... run in their inputs' dtype
//                    (binary ops promote: bfloat16 + float32 is float32); one without a 16-bit kernel
//                    widens to float32, runs the float32 kernel and rounds the result (widened).
// Each cast is an autograd op (Tensor::to), so gradients reach float32 weights in float32. The
// autograd engine turns autocast off while it runs backward: a backward op runs in the dtypes its
// forward saw.
#pragma once
#include "graft/autograd/grad_mode.hpp"
#include "graft/core/autocast.hpp"
#include "graft/ops/copy.hpp"

namespace graft {

namespace autocast {

// Whether autocast is on for t's device type (on this thread).
inline bool active(const Tensor& t) { return t.defined() && autocast_enabled(t.device().type); }

// An operand of a lower-precision op: float32 -> the autocast dtype, recorded by autograd. Other
// dtypes (float64, an already reduced tensor, integers) and tensors outside autocast are unchanged.
inline Tensor lower(const Tensor& t) {
  if (!active(t) || t.dtype() != DType::Float32) return t;
  return t.to(autocast_dtype(t.device().type));
}

// A weight or bias operand of a lower-precision op: as lower, but a leaf (a parameter, trainable or
// frozen) is cast once per scope and the cast reused until the weight changes (its storage version:
// an optimizer step, load_state_dict, copy_) or a use needs autograd to record where the cached cast
// did not. The cache is dropped when the thread's outermost AutocastGuard exits.
inline Tensor lower_weight(const Tensor& t) {
  if (!active(t) || t.dtype() != DType::Float32) return t;
  if (!t.is_leaf()) return lower(t);
  auto& s = autocast_detail::state();
  const DType dt = autocast_dtype(t.device().type);
  const bool record = GradMode::enabled() && t.requires_grad();
  auto it = s.cache.find(t.impl());
  if (it != s.cache.end()) {
    const autocast_detail::CastEntry& e = it->second;
    if (e.version == t.version() && e.cast.dtype() == dt && (e.recorded || !record)) {
      ++s.cache_hits;
      return e.cast;
    }
  }
  ++s.cache_misses;
  Tensor cast = t.to(dt);
  s.cache[t.impl()] = autocast_detail::CastEntry{t, cast, t.version(), record};
  return cast;
}

}  // namespace autocast

// An op of autocast's float32 kind on input x: f(x) for any other dtype; for a reduced x, f on x
// widened to float32, the result float32 under autocast and rounded back to x's dtype without it.
template <class F>
inline Tensor float32_op(const Tensor& x, F&& f) {
  if (!x.defined() || !is_reduced_float(x.dtype())) return f(x);
  Tensor y = f(x.to(DType::Float32));
  return autocast::active(x) ? y : y.to(x.dtype());
}

// An op without a 16-bit kernel on a reduced x: f on x widened to float32, rounded back to x's dtype
// (what a kernel computing in float32 registers and rounding on store gives). Both casts are recorded.
template <class F>
inline Tensor widened(const Tensor& x, F&& f) {
  if (!x.defined() || !is_reduced_float(x.dtype())) return f(x);
  return f(x.to(DType::Float32)).to(x.dtype());
}

// A reduced-float tensor as float32 (any other dtype unchanged), or undefined: the "other operands" of
// an op run by float32_op / widened (a layer norm's weight, a loss's target).
inline Tensor as_float32_if_reduced(const Tensor& t) {
  return t.defined() && is_reduced_float(t.dtype()) ? t.to(DType::Float32) : t;
}

namespace kernels::cpu {
// For a kernel that computes in float32: x as float32 (x itself when it is), not recorded by
// autograd. Dims broadcast with stride 0 stay broadcast (the compact tensor is converted, then
// expanded), other layouts become contiguous.
inline Tensor widen_operand(const Tensor& x) {
  if (!x.defined() || x.dtype() == DType::Float32) return x;
  Tensor compact = x.detach();
  for (int d = 0; d < x.dim(); ++d)
    if (x.stride(d) == 0 && x.size(d) > 1) compact = compact.narrow(d, 0, 1);
  Tensor wide = empty(compact.shape(), DType::Float32, x.device());
  copy_into(wide, compact);
  return wide.shape() == x.shape() ? wide : wide.expand(x.shape());
}
}  // namespace kernels::cpu

}  // namespace graft
