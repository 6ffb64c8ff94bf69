// graft/ops/loss.hpp - losses: cross_entropy, binary_cross_entropy_with_logits, mse_loss
// (torch.nn.functional semantics, reduction None / Mean / Sum).
//
// Each loss has a forward kernel that writes the per-element loss and a backward kernel that takes
// the per-element upstream gradient dloss [n]; for Sum/Mean dloss is a stride-0 view of one value
// (dout, or dout / divisor for Mean). The op sums the per-element loss for Sum/Mean: in double (the
// reference), or for float32 on AVX2 / AVX-512 by the fast sum of kernels/graft/kernels/cpu/reduce.hpp
// (float within blocks of 4096, double across, in an order fixed by n: thread-count independent).
// Kernels: the references below (every dtype) and, for float32 on AVX2 / AVX-512, the fast ones of
// kernels/graft/kernels/cpu/loss.hpp (cross_entropy [N, C], bce_with_logits, mse_loss).
// Weights (cross_entropy's weight, bce's pos_weight) are constants: as in PyTorch, passing one that
// requires grad is an error. Second derivatives (create_graph through a loss) are not implemented
// and throw.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>

#include "graft/kernels/cpu/loss.hpp"
#include "graft/ops/index.hpp"
#include "graft/ops/reduce.hpp"

namespace graft {

enum class Reduction { None, Mean, Sum };

namespace detail_loss {
// The op's output from the contiguous per-element loss: itself (None), else a 0-d tensor holding
// its sum (Sum) or sum / mean_divisor (Mean), summed in double.
inline Tensor reduce_loss(const Tensor& per_element, Reduction reduction, double mean_divisor) {
  if (reduction == Reduction::None) return per_element;
  if (per_element.dtype() == DType::Float32 && per_element.device().is_cpu()) {
    float s = 0.0f;  // the fast float32 sum: deterministic, independent of the thread count
    const int64_t n = per_element.numel();
    if (n == 0 || kernels::cpu::sum_forward_fast(&s, per_element.data<float>(), Shape{n}, {true})) {
      const double v = reduction == Reduction::Mean ? double(s) / mean_divisor : double(s);
      return full(Shape{}, v, DType::Float32, per_element.device());
    }
  }
  return GRAFT_DISPATCH_FLOAT(per_element.dtype(), "loss", T, [&] {
    const T* p = per_element.data<T>();
    double s = 0.0;
    for (int64_t i = 0, n = per_element.numel(); i < n; ++i) s += double(p[i]);
    if (reduction == Reduction::Mean) s /= mean_divisor;
    return full(Shape{}, s, per_element.dtype(), per_element.device());
  });
}

// The upstream gradient of each of n loss elements, as a 1-D tensor [n] (stride 0 unless None).
inline Tensor per_element_grad(const Tensor& dout, Reduction reduction, double mean_divisor, int64_t n) {
  if (reduction == Reduction::None) return dout.contiguous().reshape({n});
  const double g = dout.item() / (reduction == Reduction::Mean ? mean_divisor : 1.0);
  return full(Shape{1}, g, dout.dtype(), dout.device()).expand({n});
}

// Loss backward kernels are not linear in the saved inputs: no second derivative.
inline void check_first_order(const autograd::Node* node) {
  GRAFT_CHECK(!GradMode::enabled(), node->name(),
              "second derivative (create_graph through a loss) is not implemented");
}

inline void check_constant_weight(const Tensor& w, const char* op, const char* what) {
  GRAFT_CHECK(!(GradMode::enabled() && w.defined() && w.requires_grad()), op, what,
              " requires grad, but the loss is not differentiable with respect to it (as in PyTorch); detach it");
}
}  // namespace detail_loss

namespace kernels::cpu {

// ---- cross_entropy ---------------------------------------------------------------------------------
// logits [N, C, S] (S = product of the extra dims d1.., 1 for [N, C]), target [N, S] int64 in [0, C)
// or ignore_index, weight [C] or undefined (all 1); all contiguous. For each position i = (n, s),
// with lp_c = logits[n, c, s] - lse[i]:
//   lse[i]  = log sum_c exp(logits[n, c, s])
//   loss[i] = (1 - eps) * (-w[y] lp_y) + eps / C * (-sum_c w[c] lp_c),   0 where y == ignore_index
inline void cross_entropy_forward_reference(const Tensor& loss, const Tensor& lse, const Tensor& logits,
                                  const Tensor& target, const Tensor& weight, int64_t ignore_index,
                                  double label_smoothing) {
  GRAFT_DISPATCH_FLOAT(logits.dtype(), "cross_entropy", T, [&] {
    const int64_t N = logits.shape()[0], C = logits.shape()[1], S = logits.shape()[2];
    const T* x = logits.data<T>();
    const int64_t* y = target.data<int64_t>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    T* out = loss.data<T>();
    T* plse = lse.data<T>();
    const double eps = label_smoothing;
    parallel_for(0, N * S, std::max<int64_t>(1, 4096 / std::max<int64_t>(C, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const int64_t n = i / S, s = i % S;
        const T* row = x + n * C * S + s;  // row[c * S] = logits[n, c, s]
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t c = 0; c < C; ++c) m = std::max(m, double(row[c * S]));
        double sumexp = 0.0;
        for (int64_t c = 0; c < C; ++c) sumexp += std::exp(double(row[c * S]) - m);
        const double l = m + std::log(sumexp);
        plse[i] = T(l);
        if (y[i] == ignore_index) {
          out[i] = T(0);
          continue;
        }
        const double wy = w ? double(w[y[i]]) : 1.0;
        double value = (1.0 - eps) * -wy * (double(row[y[i] * S]) - l);
        if (eps > 0.0) {
          double smooth = 0.0;
          for (int64_t c = 0; c < C; ++c) smooth -= (w ? double(w[c]) : 1.0) * (double(row[c * S]) - l);
          value += eps / double(C) * smooth;
        }
        out[i] = T(value);
      }
    });
  });
}

// dlogits [N, C, S] from dloss [N*S] (stride 0 allowed); with p_c = exp(logits - lse), W = sum_c w[c]:
//   dlogits[n, c, s] = dloss[i] * ((1 - eps) w[y] (p_c - [c == y]) + eps / C (W p_c - w[c])),
// 0 for ignored positions. Every element of dlogits is written.
inline void cross_entropy_backward_reference(const Tensor& dlogits, const Tensor& dloss, const Tensor& logits,
                                   const Tensor& lse, const Tensor& target, const Tensor& weight,
                                   int64_t ignore_index, double label_smoothing) {
  GRAFT_DISPATCH_FLOAT(logits.dtype(), "cross_entropy_backward", T, [&] {
    const int64_t N = logits.shape()[0], C = logits.shape()[1], S = logits.shape()[2];
    const T* x = logits.data<T>();
    const T* plse = lse.data<T>();
    const int64_t* y = target.data<int64_t>();
    const T* w = weight.defined() ? weight.data<T>() : nullptr;
    const T* dl = static_cast<const T*>(dloss.data_ptr());
    const int64_t dl_stride = dloss.numel() > 1 ? dloss.strides()[0] : 0;
    T* dx = dlogits.data<T>();
    const double eps = label_smoothing;
    double wsum = double(C);
    if (w) {
      wsum = 0.0;
      for (int64_t c = 0; c < C; ++c) wsum += double(w[c]);
    }
    parallel_for(0, N * S, std::max<int64_t>(1, 4096 / std::max<int64_t>(C, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const int64_t n = i / S, s = i % S;
        const T* row = x + n * C * S + s;
        T* drow = dx + n * C * S + s;
        if (y[i] == ignore_index) {
          for (int64_t c = 0; c < C; ++c) drow[c * S] = T(0);
          continue;
        }
        const double g = double(dl[i * dl_stride]);
        const double a = (1.0 - eps) * (w ? double(w[y[i]]) : 1.0), b = eps / double(C);
        for (int64_t c = 0; c < C; ++c) {
          const double p = std::exp(double(row[c * S]) - double(plse[i]));
          const double wc = w ? double(w[c]) : 1.0;
          drow[c * S] = T(g * (a * (p - (c == y[i] ? 1.0 : 0.0)) + b * (wsum * p - wc)));
        }
      }
    });
  });
}

// The CPU entries: logits [N, C] (S == 1) in float32 take the fast kernels
// (kernels/graft/kernels/cpu/loss.hpp), everything else the references above.
inline void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& target,
                                  const Tensor& weight, int64_t ignore_index, double label_smoothing) {
  const int64_t N = logits.shape()[0], C = logits.shape()[1], S = logits.shape()[2];
  if (logits.dtype() == DType::Float32 && S == 1 && C > 0 &&
      cross_entropy_forward_fast(loss.data<float>(), lse.data<float>(), logits.data<float>(), target.data<int64_t>(),
                                 weight.defined() ? weight.data<float>() : nullptr, N, C, ignore_index,
                                 label_smoothing))
    return;
  cross_entropy_forward_reference(loss, lse, logits, target, weight, ignore_index, label_smoothing);
}
inline void cross_entropy_backward(const Tensor& dlogits, const Tensor& dloss, const Tensor& logits,
                                   const Tensor& lse, const Tensor& target, const Tensor& weight,
                                   int64_t ignore_index, double label_smoothing) {
  const int64_t N = logits.shape()[0], C = logits.shape()[1], S = logits.shape()[2];
  if (logits.dtype() == DType::Float32 && dloss.dtype() == DType::Float32 && S == 1 && C > 0 &&
      cross_entropy_backward_fast(dlogits.data<float>(), static_cast<const float*>(dloss.data_ptr()),
                                  dloss.numel() > 1 ? dloss.strides()[0] : 0, logits.data<float>(),
                                  lse.data<float>(), target.data<int64_t>(),
                                  weight.defined() ? weight.data<float>() : nullptr, N, C, ignore_index,
                                  label_smoothing))
    return;
  cross_entropy_backward_reference(dlogits, dloss, logits, lse, target, weight, ignore_index, label_smoothing);
}

// ---- binary_cross_entropy_with_logits --------------------------------------------------------------
// loss, logits, target, pos_weight [n] contiguous (pos_weight undefined: 1). With L = 1 + (pw - 1) t
// and softplus(-x) = max(-x, 0) + log1p(exp(-|x|)) (no overflow for any x):
//   loss = (1 - t) x + L softplus(-x)
inline void bce_with_logits_forward_reference(const Tensor& loss, const Tensor& logits, const Tensor& target,
                                              const Tensor& pos_weight) {
  GRAFT_DISPATCH_FLOAT(logits.dtype(), "binary_cross_entropy_with_logits", T, [&] {
    const T* x = logits.data<T>();
    const T* t = target.data<T>();
    const T* pw = pos_weight.defined() ? pos_weight.data<T>() : nullptr;
    T* out = loss.data<T>();
    parallel_for(0, logits.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const double xi = double(x[i]), ti = double(t[i]);
        const double sp = std::max(-xi, 0.0) + std::log1p(std::exp(-std::abs(xi)));
        const double L = pw ? 1.0 + (double(pw[i]) - 1.0) * ti : 1.0;
        out[i] = T((1.0 - ti) * xi + L * sp);
      }
    });
  });
}

// dlogits = dloss (L sigmoid(x) - pw t);  dtarget = dloss ((pw - 1) softplus(-x) - x)  (pw = 1 when
// undefined). dlogits / dtarget undefined: not computed. dloss [n], stride 0 allowed.
inline void bce_with_logits_backward_reference(const Tensor& dlogits, const Tensor& dtarget, const Tensor& dloss,
                                               const Tensor& logits, const Tensor& target,
                                               const Tensor& pos_weight) {
  GRAFT_DISPATCH_FLOAT(logits.dtype(), "binary_cross_entropy_with_logits_backward", T, [&] {
    const T* x = logits.data<T>();
    const T* t = target.data<T>();
    const T* pw = pos_weight.defined() ? pos_weight.data<T>() : nullptr;
    const T* dl = static_cast<const T*>(dloss.data_ptr());
    const int64_t dl_stride = dloss.numel() > 1 ? dloss.strides()[0] : 0;
    T* dx = dlogits.defined() ? dlogits.data<T>() : nullptr;
    T* dt = dtarget.defined() ? dtarget.data<T>() : nullptr;
    parallel_for(0, logits.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const double xi = double(x[i]), ti = double(t[i]), g = double(dl[i * dl_stride]);
        const double pwi = pw ? double(pw[i]) : 1.0;
        if (dx) {
          const double sig = xi >= 0 ? 1.0 / (1.0 + std::exp(-xi)) : std::exp(xi) / (1.0 + std::exp(xi));
          dx[i] = T(g * ((1.0 + (pwi - 1.0) * ti) * sig - pwi * ti));
        }
        if (dt) {
          const double sp = std::max(-xi, 0.0) + std::log1p(std::exp(-std::abs(xi)));
          dt[i] = T(g * ((pwi - 1.0) * sp - xi));
        }
      }
    });
  });
}

// ---- mse_loss --------------------------------------------------------------------------------------
// loss [n] = (input - target)^2; all contiguous.
inline void mse_forward_reference(const Tensor& loss, const Tensor& input, const Tensor& target) {
  GRAFT_DISPATCH_FLOAT(input.dtype(), "mse_loss", T, [&] {
    const T* a = input.data<T>();
    const T* b = target.data<T>();
    T* out = loss.data<T>();
    parallel_for(0, input.numel(), 1 << 15, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) out[i] = (a[i] - b[i]) * (a[i] - b[i]);
    });
  });
}

// dinput = 2 dloss (input - target), dtarget = -dinput; undefined outputs are skipped.
inline void mse_backward_reference(const Tensor& dinput, const Tensor& dtarget, const Tensor& dloss,
                                   const Tensor& input, const Tensor& target) {
  GRAFT_DISPATCH_FLOAT(input.dtype(), "mse_loss_backward", T, [&] {
    const T* a = input.data<T>();
    const T* b = target.data<T>();
    const T* dl = static_cast<const T*>(dloss.data_ptr());
    const int64_t dl_stride = dloss.numel() > 1 ? dloss.strides()[0] : 0;
    T* da = dinput.defined() ? dinput.data<T>() : nullptr;
    T* db = dtarget.defined() ? dtarget.data<T>() : nullptr;
    parallel_for(0, input.numel(), 1 << 15, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const T g = T(2) * dl[i * dl_stride] * (a[i] - b[i]);
        if (da) da[i] = g;
        if (db) db[i] = -g;
      }
    });
  });
}

// The CPU entries of the bce and mse slots: float32 takes the fast kernels
// (kernels/graft/kernels/cpu/loss.hpp), everything else (and GRAFT_CPU_ISA=scalar) the references.
namespace detail_loss {
inline int64_t dloss_stride(const Tensor& dloss) { return dloss.numel() > 1 ? dloss.strides()[0] : 0; }
inline float* data_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
}  // namespace detail_loss

inline void bce_with_logits_forward(const Tensor& loss, const Tensor& logits, const Tensor& target,
                                    const Tensor& pos_weight) {
  if (logits.dtype() == DType::Float32 &&
      bce_with_logits_forward_fast(loss.data<float>(), logits.data<float>(), target.data<float>(),
                                   detail_loss::data_or_null(pos_weight), logits.numel()))
    return;
  bce_with_logits_forward_reference(loss, logits, target, pos_weight);
}
inline void bce_with_logits_backward(const Tensor& dlogits, const Tensor& dtarget, const Tensor& dloss,
                                     const Tensor& logits, const Tensor& target, const Tensor& pos_weight) {
  if (logits.dtype() == DType::Float32 && dloss.dtype() == DType::Float32 &&
      bce_with_logits_backward_fast(detail_loss::data_or_null(dlogits), detail_loss::data_or_null(dtarget),
                                    static_cast<const float*>(dloss.data_ptr()), detail_loss::dloss_stride(dloss),
                                    logits.data<float>(), target.data<float>(),
                                    detail_loss::data_or_null(pos_weight), logits.numel()))
    return;
  bce_with_logits_backward_reference(dlogits, dtarget, dloss, logits, target, pos_weight);
}
inline void mse_forward(const Tensor& loss, const Tensor& input, const Tensor& target) {
  if (input.dtype() == DType::Float32 &&
      mse_forward_fast(loss.data<float>(), input.data<float>(), target.data<float>(), input.numel()))
    return;
  mse_forward_reference(loss, input, target);
}
inline void mse_backward(const Tensor& dinput, const Tensor& dtarget, const Tensor& dloss, const Tensor& input,
                         const Tensor& target) {
  if (input.dtype() == DType::Float32 && dloss.dtype() == DType::Float32 &&
      mse_backward_fast(detail_loss::data_or_null(dinput), detail_loss::data_or_null(dtarget),
                        static_cast<const float*>(dloss.data_ptr()), detail_loss::dloss_stride(dloss),
                        input.data<float>(), target.data<float>(), input.numel()))
    return;
  mse_backward_reference(dinput, dtarget, dloss, input, target);
}

// cross_entropy's target check and the mean's divisor: first_bad = the first position whose target is
// neither in [0, C) nor ignore_index (-1 if none) and bad_value its target; total_weight = the sum of
// the weights (1 without weight) of the kept targets, in position order. target [n] int64 contiguous,
// weight [C] contiguous or undefined.
inline void cross_entropy_targets(const Tensor& target, const Tensor& weight, int64_t C, int64_t ignore_index,
                                  int64_t* first_bad, int64_t* bad_value, double* total_weight) {
  const int64_t* py = target.data<int64_t>();
  const std::vector<double> wv = weight.defined() ? weight.to_vector() : std::vector<double>();
  *first_bad = -1;
  *bad_value = 0;
  double total = 0.0;
  for (int64_t i = 0; i < target.numel(); ++i) {
    if (py[i] == ignore_index) continue;
    if (py[i] < 0 || py[i] >= C) {
      *first_bad = i;
      *bad_value = py[i];
      break;
    }
    total += weight.defined() ? wv[size_t(py[i])] : 1.0;
  }
  *total_weight = total;
}

}  // namespace kernels::cpu

using CrossEntropyTargetsKernel = void (*)(const Tensor& target, const Tensor& weight, int64_t C, int64_t ignore_index,
                                           int64_t* first_bad, int64_t* bad_value, double* total_weight);
GRAFT_KERNEL_SLOT(CrossEntropyTargetsKernel, cross_entropy_targets_kernel, "cross_entropy_targets",
                  kernels::cpu::cross_entropy_targets);
using CrossEntropyKernel = void (*)(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& target,
                                    const Tensor& weight, int64_t ignore_index, double label_smoothing);
using CrossEntropyBackwardKernel = void (*)(const Tensor& dlogits, const Tensor& dloss, const Tensor& logits,
                                            const Tensor& lse, const Tensor& target, const Tensor& weight,
                                            int64_t ignore_index, double label_smoothing);
using BceKernel = void (*)(const Tensor& loss, const Tensor& logits, const Tensor& target, const Tensor& pos_weight);
using BceBackwardKernel = void (*)(const Tensor& dlogits, const Tensor& dtarget, const Tensor& dloss,
                                   const Tensor& logits, const Tensor& target, const Tensor& pos_weight);
using MseKernel = void (*)(const Tensor& loss, const Tensor& input, const Tensor& target);
using MseBackwardKernel = void (*)(const Tensor& dinput, const Tensor& dtarget, const Tensor& dloss,
                                   const Tensor& input, const Tensor& target);
GRAFT_KERNEL_SLOT(CrossEntropyKernel, cross_entropy_kernel, "cross_entropy", kernels::cpu::cross_entropy_forward,
                  "avx2 avx512");
GRAFT_KERNEL_SLOT(CrossEntropyBackwardKernel, cross_entropy_backward_kernel, "cross_entropy_backward",
                  kernels::cpu::cross_entropy_backward, "avx2 avx512");
GRAFT_KERNEL_SLOT(BceKernel, bce_with_logits_kernel, "binary_cross_entropy_with_logits",
                  kernels::cpu::bce_with_logits_forward, "avx2 avx512");
GRAFT_KERNEL_SLOT(BceBackwardKernel, bce_with_logits_backward_kernel, "binary_cross_entropy_with_logits_backward",
                  kernels::cpu::bce_with_logits_backward, "avx2 avx512");
GRAFT_KERNEL_SLOT(MseKernel, mse_kernel, "mse_loss", kernels::cpu::mse_forward, "avx2 avx512");
GRAFT_KERNEL_SLOT(MseBackwardKernel, mse_backward_kernel, "mse_loss_backward", kernels::cpu::mse_backward,
                  "avx2 avx512");

// ---- cross_entropy -----------------------------------------------------------------------------------
namespace autograd {
class CrossEntropyBackward final : public Node {
 public:
  std::string name() const override { return "CrossEntropyBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    detail_loss::check_first_order(this);
    const Tensor logits = logits_.unpack(this);
    const Tensor dloss = detail_loss::per_element_grad(grads[0], reduction, mean_divisor, lse_.unpack(this).numel());
    Tensor dlogits = empty(logits.shape(), logits.dtype(), logits.device());
    cross_entropy_backward_kernel.get(logits.device())(dlogits, dloss, logits, lse_.unpack(this),
                                                       target_.unpack(this), weight_.unpack(this), ignore_index,
                                                       label_smoothing);
    return {dlogits.reshape(logits_shape), Tensor()};
  }
  void release_saved() override {
    logits_.release();
    lse_.release();
    target_.release();
    weight_.release();
  }
  Reduction reduction = Reduction::Mean;
  double mean_divisor = 1.0;
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;
  Shape logits_shape;
  SavedTensor logits_, lse_, target_, weight_;  // [N, C, S], [N*S], [N, S] int64, [C] or undefined
};
}  // namespace autograd

// logits [N, C] or [N, C, d1, ...] with target [N] or [N, d1, ...] int64 class indices, or logits
// [C] with a 0-d target. Mean divides by the summed weight of the non-ignored targets (their count
// without weight), label smoothing term included, exactly as PyTorch; all targets ignored gives NaN.
inline Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction = Reduction::Mean,
                            int64_t ignore_index = -100, double label_smoothing = 0.0,
                            const Tensor& weight = Tensor()) {
  const char* op = "cross_entropy";
  GRAFT_CHECK(logits.defined() && target.defined(), op, "undefined tensor argument");
  GRAFT_CHECK(is_floating(logits.dtype()), op, "logits must be floating-point, got ", dtype_name(logits.dtype()));
  if (is_reduced_float(logits.dtype()))  // autocast's float32 kind (ops/autocast.hpp)
    return float32_op(logits, [&](const Tensor& lf) {
      return cross_entropy(lf, target, reduction, ignore_index, label_smoothing, as_float32_if_reduced(weight));
    });
  GRAFT_CHECK(logits.dim() >= 1, op, "logits must have shape [C], [N, C] or [N, C, d1, ...], got ", logits.shape());
  GRAFT_CHECK(target.dtype() == DType::Int64, op, "target must be int64 class indices, got ",
              dtype_name(target.dtype()), " (class-probability targets are not supported)");
  GRAFT_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, op, "label_smoothing must be in [0, 1], got ",
              label_smoothing);
  const int64_t N = logits.dim() == 1 ? 1 : logits.size(0);
  const int64_t C = logits.dim() == 1 ? logits.size(0) : logits.size(1);
  Shape target_shape;  // logits' shape without the class dim
  for (int d = 0; d < logits.dim(); ++d)
    if (d != (logits.dim() == 1 ? 0 : 1)) target_shape.push_back(logits.size(d));
  const int64_t S = N == 0 ? 0 : target_shape.numel() / N;
  GRAFT_CHECK(target.shape() == target_shape, op, "target has shape ", target.shape(), " but logits of shape ",
              logits.shape(), " need a target of shape ", target_shape);
  const DType dt = logits.dtype();
  Tensor w;
  if (weight.defined()) {
    GRAFT_CHECK(weight.dim() == 1 && weight.size(0) == C, op, "weight must have shape [", C, "], got ",
                weight.shape());
    GRAFT_CHECK(is_floating(weight.dtype()), op, "weight must be floating-point, got ", dtype_name(weight.dtype()));
    detail_loss::check_constant_weight(weight, op, "weight");
    w = weight.detach().to(dt).contiguous();
  }
  const Tensor y = target.detach().contiguous().reshape({N, S});
  int64_t first_bad = -1, bad_value = 0;
  double total_weight = 0.0;  // Mean's divisor
  cross_entropy_targets_kernel.get(y.device())(y.reshape({N * S}), w, C, ignore_index, &first_bad, &bad_value,
                                               &total_weight);
  GRAFT_CHECK(first_bad < 0, op, "target ", bad_value, " at position ",
              detail_index::position_str(target_shape, first_bad < 0 ? 0 : first_bad), " is out of range for ", C,
              " classes (expected in [0, ", C - 1, "] or ignore_index ", ignore_index, ")");
  const Tensor x = logits.detach().contiguous().reshape({N, C, S});
  Tensor per = empty(Shape{N * S}, dt, logits.device());
  Tensor lse = empty(Shape{N * S}, dt, logits.device());
  if (per.numel() > 0)
    cross_entropy_kernel.get(logits.device())(per, lse, x, y, w, ignore_index, label_smoothing);
  Tensor out = detail_loss::reduce_loss(per.reshape(target_shape), reduction, total_weight);
  if (autograd::any_requires_grad({&logits})) {
    auto node = std::make_shared<autograd::CrossEntropyBackward>();
    node->reduction = reduction;
    node->mean_divisor = total_weight;
    node->ignore_index = ignore_index;
    node->label_smoothing = label_smoothing;
    node->logits_shape = logits.shape();
    node->logits_ = x;
    node->lse_ = lse;
    node->target_ = y;
    node->weight_ = w;
    autograd::connect(node, {logits, Tensor()}, {out});
  }
  return out;
}

// ---- binary_cross_entropy_with_logits --------------------------------------------------------------
namespace autograd {
class BceWithLogitsBackward final : public Node {
 public:
  std::string name() const override { return "BinaryCrossEntropyWithLogitsBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    detail_loss::check_first_order(this);
    const Tensor x = logits_.unpack(this), t = target_.unpack(this);
    const Tensor dloss = detail_loss::per_element_grad(grads[0], reduction, double(x.numel()), x.numel());
    Tensor dx = needs_input_grad(0) ? empty(x.shape(), x.dtype(), x.device()) : Tensor();
    Tensor dt = needs_input_grad(1) ? empty(x.shape(), x.dtype(), x.device()) : Tensor();
    bce_with_logits_backward_kernel.get(x.device())(dx, dt, dloss, x, t, pos_weight_.unpack(this));
    return {dx, dt};
  }
  void release_saved() override {
    logits_.release();
    target_.release();
    pos_weight_.release();
  }
  Reduction reduction = Reduction::Mean;
  SavedTensor logits_, target_, pos_weight_;  // logits' shape, contiguous (pos_weight broadcast)
};
}  // namespace autograd

// logits, target of equal shape (target in [0, 1], differentiable too); pos_weight broadcastable to
// logits' shape (usually [C] for the last dim), weighting the positive term.
inline Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                               Reduction reduction = Reduction::Mean,
                                               const Tensor& pos_weight = Tensor()) {
  const char* op = "binary_cross_entropy_with_logits";
  GRAFT_CHECK(logits.defined() && target.defined(), op, "undefined tensor argument");
  GRAFT_CHECK(is_floating(logits.dtype()) && is_floating(target.dtype()), op,
              "logits and target must be floating-point, got ", dtype_name(logits.dtype()), " and ",
              dtype_name(target.dtype()));
  GRAFT_CHECK(target.shape() == logits.shape(), op, "target has shape ", target.shape(), " but logits have shape ",
              logits.shape(), "; they must match");
  if (is_reduced_float(logits.dtype()))  // autocast's float32 kind (ops/autocast.hpp)
    return float32_op(logits, [&](const Tensor& lf) {
      return binary_cross_entropy_with_logits(lf, as_float32_if_reduced(target), reduction,
                                              as_float32_if_reduced(pos_weight));
    });
  const DType dt = logits.dtype();
  const Tensor t = target.to(dt);  // differentiable
  Tensor pw;
  if (pos_weight.defined()) {
    GRAFT_CHECK(is_floating(pos_weight.dtype()), op, "pos_weight must be floating-point, got ",
                dtype_name(pos_weight.dtype()));
    GRAFT_CHECK(detail_index::broadcasts_to(pos_weight.shape(), logits.shape()), op, "pos_weight of shape ",
                pos_weight.shape(), " cannot be broadcast to the logits' shape ", logits.shape());
    detail_loss::check_constant_weight(pos_weight, op, "pos_weight");
    pw = pos_weight.detach().to(dt).expand(logits.shape()).contiguous();
  }
  const Tensor x = logits.detach().contiguous();
  const Tensor tc = t.detach().contiguous();
  Tensor per = empty(logits.shape(), dt, logits.device());
  if (per.numel() > 0) bce_with_logits_kernel.get(logits.device())(per, x, tc, pw);
  Tensor out = detail_loss::reduce_loss(per, reduction, double(per.numel()));
  if (autograd::any_requires_grad({&logits, &t})) {
    auto node = std::make_shared<autograd::BceWithLogitsBackward>();
    node->reduction = reduction;
    node->logits_ = x;
    node->target_ = tc;
    node->pos_weight_ = pw;
    autograd::connect(node, {logits, t}, {out});
  }
  return out;
}

// ---- mse_loss ----------------------------------------------------------------------------------------
namespace autograd {
class MseLossBackward final : public Node {
 public:
  std::string name() const override { return "MseLossBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    detail_loss::check_first_order(this);
    const Tensor a = input_.unpack(this), b = target_.unpack(this);
    const Tensor dloss = detail_loss::per_element_grad(grads[0], reduction, double(a.numel()), a.numel());
    Tensor da = needs_input_grad(0) ? empty(a.shape(), a.dtype(), a.device()) : Tensor();
    Tensor db = needs_input_grad(1) ? empty(a.shape(), a.dtype(), a.device()) : Tensor();
    mse_backward_kernel.get(a.device())(da, db, dloss, a, b);
    if (da.defined()) da = sum_to(da, input_shape);
    if (db.defined()) db = sum_to(db, target_shape);
    return {da, db};
  }
  void release_saved() override {
    input_.release();
    target_.release();
  }
  Reduction reduction = Reduction::Mean;
  Shape input_shape, target_shape;
  SavedTensor input_, target_;  // both broadcast to the common shape, contiguous
};
}  // namespace autograd

// mean/sum/none of (input - target)^2; the two broadcast against each other (PyTorch warns, allows).
inline Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean) {
  const char* op = "mse_loss";
  GRAFT_CHECK(input.defined() && target.defined(), op, "undefined tensor argument");
  GRAFT_CHECK(is_floating(input.dtype()) && is_floating(target.dtype()), op,
              "input and target must be floating-point, got ", dtype_name(input.dtype()), " and ",
              dtype_name(target.dtype()));
  const DType dt = promote(input.dtype(), target.dtype());
  if (is_reduced_float(dt))  // autocast's float32 kind (ops/autocast.hpp)
    return float32_op(input.to(dt), [&](const Tensor& xf) { return mse_loss(xf, target.to(DType::Float32), reduction); });
  const Shape shape = broadcast_shapes(input.shape(), target.shape(), op);
  const Tensor a = input.to(dt), b = target.to(dt);  // differentiable
  const Tensor ac = a.detach().expand(shape).contiguous(), bc = b.detach().expand(shape).contiguous();
  Tensor per = empty(shape, dt, a.device());
  if (per.numel() > 0) mse_kernel.get(a.device())(per, ac, bc);
  Tensor out = detail_loss::reduce_loss(per, reduction, double(per.numel()));
  if (autograd::any_requires_grad({&a, &b})) {
    auto node = std::make_shared<autograd::MseLossBackward>();
    node->reduction = reduction;
    node->input_shape = a.shape();
    node->target_shape = b.shape();
    node->input_ = ac;
    node->target_ = bc;
    autograd::connect(node, {a, b}, {out});
  }
  return out;
}

GRAFT_REGISTER_OP(cross_entropy, true);
GRAFT_REGISTER_OP(binary_cross_entropy_with_logits, true);
GRAFT_REGISTER_OP(mse_loss, true);

}  // namespace graft
