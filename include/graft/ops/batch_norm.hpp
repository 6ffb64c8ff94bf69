// graft/ops/batch_norm.hpp - batch normalization over the batch and spatial dims, exactly as
// torch.nn.functional.batch_norm, with reference kernels that save the per-channel mean and
// rstd for the backward (as llm.c's layernorm does per row).
//
// Shapes: x [N, C, *] seen as [N, C, S]  (S = product of the trailing dims, 1 for [N, C])
//         running_mean, running_var, weight, bias: [C]; weight/bias optional (undefined = 1, 0)
//         mean, rstd [C]: the statistics used, saved for backward
// training: mean, var = batch statistics over (N, S) (biased var for normalizing); defined running
//           statistics are updated in place: r = (1 - momentum) r + momentum * batch, with the
//           UNBIASED batch variance for running_var, and their version is bumped
// eval:     mean = running_mean, var = running_var (both required), constants for autograd
//   norm = (x - mean) * rstd,  rstd = 1 / sqrt(var + eps),  out = norm * weight + bias
// Backward, per channel c with count = N * S and dnorm = dout * weight:
//   training: dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
//   eval:     dx = rstd * dnorm
//   dweight += sum dout * norm,  dbias += sum dout   (both modes)
#pragma once
#include <cmath>

#include "graft/kernels/cpu/batch_norm.hpp"
#include "graft/ops/autocast.hpp"
#include "graft/ops/minmax.hpp"  // chunk_rows

namespace graft {

namespace kernels::cpu {
// out, x contiguous [N, C, S]; mean, rstd contiguous [C] (written); weight, bias contiguous [C] or
// undefined; running_mean, running_var contiguous [C], undefined in training when not tracked.
// Statistics accumulate in double. One task per channel. The reference (float64, GRAFT_CPU_ISA=scalar,
// the tests' oracle); batch_norm_forward below is the CPU entry.
inline void batch_norm_forward_reference(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                               const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                               const Tensor& running_var, int64_t N, int64_t C, int64_t S, bool training,
                               double momentum, double eps) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), "batch_norm", T, [&] {
    T* po = out.data<T>();
    T* pmean = mean.data<T>();
    T* prstd = rstd.data<T>();
    const T* px = x.data<T>();
    const T* pw = weight.defined() ? weight.data<T>() : nullptr;
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;
    T* prm = running_mean.defined() ? running_mean.data<T>() : nullptr;
    T* prv = running_var.defined() ? running_var.data<T>() : nullptr;
    const int64_t count = N * S;
    parallel_for(0, C, chunk_rows(count), [&](int64_t lo, int64_t hi) {
      for (int64_t c = lo; c < hi; ++c) {
        double mu, var;
        if (training) {
          mu = 0;
          for (int64_t n = 0; n < N; ++n)
            for (int64_t s = 0; s < S; ++s) mu += double(px[(n * C + c) * S + s]);
          mu /= double(count);
          var = 0;
          for (int64_t n = 0; n < N; ++n)
            for (int64_t s = 0; s < S; ++s) {
              const double d = double(px[(n * C + c) * S + s]) - mu;
              var += d * d;
            }
          const double unbiased = var / double(count - 1);
          var /= double(count);
          if (prm) prm[c] = T((1.0 - momentum) * double(prm[c]) + momentum * mu);
          if (prv) prv[c] = T((1.0 - momentum) * double(prv[c]) + momentum * unbiased);
        } else {
          mu = double(prm[c]);
          var = double(prv[c]);
        }
        const double rs = 1.0 / std::sqrt(var + eps);
        const double w = pw ? double(pw[c]) : 1.0, b = pb ? double(pb[c]) : 0.0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t s = 0; s < S; ++s) {
            const int64_t i = (n * C + c) * S + s;
            po[i] = T((double(px[i]) - mu) * rs * w + b);
          }
        pmean[c] = T(mu);
        prstd[c] = T(rs);
      }
    });
  });
}

// dx contiguous [N, C, S] or undefined (not needed); dweight, dbias contiguous [C] or undefined,
// accumulated into (+=). dout, x contiguous [N, C, S]; weight [C] or undefined; mean, rstd [C] from
// the forward. training selects the formula for dx (batch statistics depend on x, running ones do
// not). One task per channel.
inline void batch_norm_backward_reference(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                                const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                int64_t N, int64_t C, int64_t S, bool training) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), "batch_norm_backward", T, [&] {
    T* pdx = dx.defined() ? dx.data<T>() : nullptr;
    T* pdw = dweight.defined() ? dweight.data<T>() : nullptr;
    T* pdb = dbias.defined() ? dbias.data<T>() : nullptr;
    const T* pdo = dout.data<T>();
    const T* px = x.data<T>();
    const T* pw = weight.defined() ? weight.data<T>() : nullptr;
    const T* pmean = mean.data<T>();
    const T* prstd = rstd.data<T>();
    const int64_t count = N * S;
    parallel_for(0, C, chunk_rows(count), [&](int64_t lo, int64_t hi) {
      for (int64_t c = lo; c < hi; ++c) {
        const double mu = double(pmean[c]), rs = double(prstd[c]);
        const double w = pw ? double(pw[c]) : 1.0;
        double sum_dout = 0, sum_dout_norm = 0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t s = 0; s < S; ++s) {
            const int64_t i = (n * C + c) * S + s;
            sum_dout += double(pdo[i]);
            sum_dout_norm += double(pdo[i]) * (double(px[i]) - mu) * rs;
          }
        if (pdw) pdw[c] += T(sum_dout_norm);
        if (pdb) pdb[c] += T(sum_dout);
        if (!pdx) continue;
        // mean(dnorm) = w * sum_dout / count, mean(dnorm * norm) = w * sum_dout_norm / count
        const double dnorm_mean = training ? w * sum_dout / double(count) : 0.0;
        const double dnorm_norm_mean = training ? w * sum_dout_norm / double(count) : 0.0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t s = 0; s < S; ++s) {
            const int64_t i = (n * C + c) * S + s;
            const double norm = (double(px[i]) - mu) * rs;
            pdx[i] = T(rs * (double(pdo[i]) * w - dnorm_mean - norm * dnorm_norm_mean));
          }
      }
    });
  });
}

// The CPU entries: the fast float32 kernels (kernels/graft/kernels/cpu/batch_norm.hpp), else the
// references above.
inline void batch_norm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                               const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                               const Tensor& running_var, int64_t N, int64_t C, int64_t S, bool training,
                               double momentum, double eps) {
  auto ptr = [](const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; };
  if (x.dtype() == DType::Float32 &&
      batch_norm_forward_fast(ptr(out), ptr(mean), ptr(rstd), ptr(x), ptr(weight), ptr(bias), ptr(running_mean),
                              ptr(running_var), N, C, S, training, momentum, eps))
    return;
  batch_norm_forward_reference(out, mean, rstd, x, weight, bias, running_mean, running_var, N, C, S, training,
                               momentum, eps);
}
inline void batch_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                                const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                int64_t N, int64_t C, int64_t S, bool training) {
  auto ptr = [](const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; };
  if (x.dtype() == DType::Float32 && dout.dtype() == DType::Float32 &&
      batch_norm_backward_fast(ptr(dx), ptr(dweight), ptr(dbias), ptr(dout), ptr(x), ptr(weight), ptr(mean),
                               ptr(rstd), N, C, S, training))
    return;
  batch_norm_backward_reference(dx, dweight, dbias, dout, x, weight, mean, rstd, N, C, S, training);
}
}  // namespace kernels::cpu

using BatchNormKernel = void (*)(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                                 const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                                 const Tensor& running_var, int64_t N, int64_t C, int64_t S, bool training,
                                 double momentum, double eps);
using BatchNormBackwardKernel = void (*)(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                         const Tensor& dout, const Tensor& x, const Tensor& weight,
                                         const Tensor& mean, const Tensor& rstd, int64_t N, int64_t C, int64_t S,
                                         bool training);
GRAFT_KERNEL_SLOT(BatchNormKernel, batch_norm_kernel, "batch_norm", kernels::cpu::batch_norm_forward, "avx2 avx512");
GRAFT_KERNEL_SLOT(BatchNormBackwardKernel, batch_norm_backward_kernel, "batch_norm_backward",
                  kernels::cpu::batch_norm_backward, "avx2 avx512");

namespace autograd {
class BatchNormBackward final : public Node {
 public:
  std::string name() const override { return "BatchNormBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    GRAFT_CHECK(!GradMode::enabled(), name(), "second derivative (create_graph) is not implemented");
    const Tensor x = x_.unpack(this), weight = weight_.unpack(this);
    const Tensor mean = mean_.unpack(this), rstd = rstd_.unpack(this);
    const Tensor dout = grads[0].contiguous();
    Tensor dx, dweight, dbias;
    if (needs_input_grad(0)) dx = empty(x.shape(), x.dtype(), x.device());
    if (needs_input_grad(1)) dweight = zeros({C}, x.dtype(), x.device());
    if (needs_input_grad(2)) dbias = zeros({C}, x.dtype(), x.device());
    batch_norm_backward_kernel.get(x.device())(dx, dweight, dbias, dout, x, weight, mean, rstd, N, C, S, training);
    return {dx, dweight, dbias};
  }
  void release_saved() override {
    x_.release();
    weight_.release();
    mean_.release();
    rstd_.release();
  }
  SavedTensor x_, weight_, mean_, rstd_;
  int64_t N = 0, C = 0, S = 0;
  bool training = true;
};
}  // namespace autograd

namespace detail_batch_norm {
// A per-channel tensor: undefined, or shape [C] with x's dtype and device.
inline void check_channel_param(const Tensor& p, const char* what, int64_t C, const Tensor& x) {
  if (!p.defined()) return;
  GRAFT_CHECK(p.dim() == 1 && p.size(0) == C, "batch_norm", what, " should have shape [", C,
              "] (the channels of input shape ", x.shape(), "), got ", p.shape());
  GRAFT_CHECK(p.dtype() == x.dtype(), "batch_norm", what, " should have the input's dtype ", dtype_name(x.dtype()),
              ", got ", dtype_name(p.dtype()));
  GRAFT_CHECK(p.device() == x.device(), "batch_norm", what, " is on ", p.device(), ", the input on ", x.device());
}
}  // namespace detail_batch_norm

// Batch normalization of x [N, C, *] over N and the trailing dims, per channel. See the header
// comment for training and eval. Gradients flow to x, weight and bias in both modes; the running
// statistics are buffers, never differentiated.
inline Tensor batch_norm(const Tensor& x_in, const Tensor& running_mean, const Tensor& running_var,
                         const Tensor& weight_in, const Tensor& bias_in, bool training, double momentum = 0.1,
                         double eps = 1e-5) {
  GRAFT_CHECK(x_in.defined(), "batch_norm", "undefined tensor argument");
  GRAFT_CHECK(is_floating(x_in.dtype()), "batch_norm", "expected a floating-point input, got ",
              dtype_name(x_in.dtype()));
  if (is_reduced_float(x_in.dtype())) {
    // autocast's float32 kind: x, weight and bias widened; reduced running statistics (a bfloat16
    // checkpoint) are updated in float32 copies and rounded back
    const Tensor rm = as_float32_if_reduced(running_mean), rv = as_float32_if_reduced(running_var);
    Tensor out = float32_op(x_in, [&](const Tensor& xf) {
      return batch_norm(xf, rm, rv, as_float32_if_reduced(weight_in), as_float32_if_reduced(bias_in),
                        training, momentum, eps);
    });
    if (training && running_mean.defined() && !rm.is_same(running_mean)) {
      NoGradGuard ng;
      Tensor(running_mean).copy_(rm);  // a handle: the buffer's storage is written
      Tensor(running_var).copy_(rv);
    }
    return out;
  }
  GRAFT_CHECK(x_in.dim() >= 2, "batch_norm", "expected an input of shape [N, C, *], got ", x_in.shape());
  const int64_t N = x_in.size(0), C = x_in.size(1), S = C > 0 && N > 0 ? x_in.numel() / (N * C) : 0;
  GRAFT_CHECK(running_mean.defined() == running_var.defined(), "batch_norm",
              "running_mean and running_var must both be defined or both undefined, got running_mean ",
              running_mean.defined() ? "defined" : "undefined", " and running_var ",
              running_var.defined() ? "defined" : "undefined");
  GRAFT_CHECK(training || running_mean.defined(), "batch_norm",
              "running_mean and running_var are required when training is false, got undefined tensors");
  detail_batch_norm::check_channel_param(running_mean, "running_mean", C, x_in);
  detail_batch_norm::check_channel_param(running_var, "running_var", C, x_in);
  detail_batch_norm::check_channel_param(weight_in, "weight", C, x_in);
  detail_batch_norm::check_channel_param(bias_in, "bias", C, x_in);
  for (const Tensor* r : {&running_mean, &running_var})
    GRAFT_CHECK(!r->defined() || r->is_contiguous(), "batch_norm",
                "running statistics must be contiguous, got strides ", r->strides());
  GRAFT_CHECK(!training || N * S > 1, "batch_norm",
              "expected more than 1 value per channel when training, got input shape ", x_in.shape());

  const Tensor x = x_in.contiguous();
  const Tensor weight = weight_in.defined() ? weight_in.contiguous() : Tensor();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  Tensor mean = empty({C}, x.dtype(), x.device()), rstd = empty({C}, x.dtype(), x.device());
  // In training the kernel also updates the running statistics in place: a buffer update, which
  // records no autograd history (kernels never do); it bumps their version like any in-place op.
  batch_norm_kernel.get(x.device())(out, mean, rstd, x.detach(), weight.defined() ? weight.detach() : Tensor(),
                                    bias.defined() ? bias.detach() : Tensor(), running_mean, running_var, N, C, S,
                                    training, momentum, eps);
  if (training && running_mean.defined()) {
    running_mean.storage()->bump_version();
    running_var.storage()->bump_version();
  }
  if (autograd::any_requires_grad({&x, &weight, &bias})) {
    auto node = std::make_shared<autograd::BatchNormBackward>();
    node->x_ = x;
    node->weight_ = weight;
    node->mean_ = mean;
    node->rstd_ = rstd;
    node->N = N;
    node->C = C;
    node->S = S;
    node->training = training;
    autograd::connect(node, {x, weight, bias}, {out});
  }
  return out;
}

GRAFT_REGISTER_OP(batch_norm, true);

}  // namespace graft
