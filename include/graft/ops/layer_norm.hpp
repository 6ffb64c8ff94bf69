// graft/ops/layer_norm.hpp - layer normalization over the trailing dims (PyTorch's
// F.layer_norm), with llm.c-style reference kernels: the forward saves each row's mean and rstd,
// the backward uses them.
//
// Shapes: x [*, normalized_shape] seen as [M, N]  (N = numel of normalized_shape)
//         weight, bias: normalized_shape, optional (undefined = 1 and 0)
//         mean, rstd [M] (saved for backward, x's dtype)
//   norm = (x - mean) * rstd,  rstd = 1 / sqrt(biased var + eps),  out = norm * weight + bias
//   dnorm = dout * weight
//   dx = rstd * (dnorm - mean_row(dnorm) - norm * mean_row(dnorm * norm))
//   dweight += sum_rows dout * norm,  dbias += sum_rows dout
#pragma once
#include <cmath>

#include "graft/kernels/cpu/layer_norm.hpp"
#include "graft/ops/autocast.hpp"
#include "graft/ops/minmax.hpp"  // chunk_rows

namespace graft {

namespace kernels::cpu {
// out, x contiguous [M, N]; mean, rstd contiguous [M]; weight, bias contiguous [N] or undefined.
// Row statistics are computed in double (two passes). The reference (float64, GRAFT_CPU_ISA=scalar,
// the tests' oracle); layer_norm_forward below is the CPU entry.
inline void layer_norm_forward_reference(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                               const Tensor& weight, const Tensor& bias, int64_t M, int64_t N, double eps) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), "layer_norm", T, [&] {
    T* po = out.data<T>();
    T* pmean = mean.data<T>();
    T* prstd = rstd.data<T>();
    const T* px = x.data<T>();
    const T* pw = weight.defined() ? weight.data<T>() : nullptr;
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;
    parallel_for(0, M, chunk_rows(N), [&](int64_t lo, int64_t hi) {
      for (int64_t m = lo; m < hi; ++m) {
        const T* row = px + m * N;  // [N]
        T* orow = po + m * N;       // [N]
        double mu = 0;
        for (int64_t j = 0; j < N; ++j) mu += double(row[j]);
        mu /= double(N);
        double var = 0;
        for (int64_t j = 0; j < N; ++j) var += (double(row[j]) - mu) * (double(row[j]) - mu);
        var /= double(N);
        const double rs = 1.0 / std::sqrt(var + eps);
        for (int64_t j = 0; j < N; ++j) {
          const double norm = (double(row[j]) - mu) * rs;
          const double w = pw ? double(pw[j]) : 1.0, b = pb ? double(pb[j]) : 0.0;
          orow[j] = T(norm * w + b);
        }
        pmean[m] = T(mu);
        prstd[m] = T(rs);
      }
    });
  });
}

// dx contiguous [M, N] or undefined (not needed); dweight, dbias contiguous [N] or undefined,
// accumulated into (+=). dout, x contiguous [M, N]; weight [N] or undefined; mean, rstd [M].
inline void layer_norm_backward_reference(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                                const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                int64_t M, int64_t N) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), "layer_norm_backward", T, [&] {
    const T* pdo = dout.data<T>();
    const T* px = x.data<T>();
    const T* pw = weight.defined() ? weight.data<T>() : nullptr;
    const T* pmean = mean.data<T>();
    const T* prstd = rstd.data<T>();
    const int64_t grain = chunk_rows(N);
    if (dx.defined()) {
      T* pdx = dx.data<T>();
      parallel_for(0, M, grain, [&](int64_t lo, int64_t hi) {
        for (int64_t m = lo; m < hi; ++m) {
          const T* row = px + m * N;
          const T* drow = pdo + m * N;
          const double mu = double(pmean[m]), rs = double(prstd[m]);
          double dnorm_mean = 0, dnorm_norm_mean = 0;
          for (int64_t j = 0; j < N; ++j) {
            const double dnorm = double(drow[j]) * (pw ? double(pw[j]) : 1.0);
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * (double(row[j]) - mu) * rs;
          }
          dnorm_mean /= double(N);
          dnorm_norm_mean /= double(N);
          for (int64_t j = 0; j < N; ++j) {
            const double norm = (double(row[j]) - mu) * rs;
            const double dnorm = double(drow[j]) * (pw ? double(pw[j]) : 1.0);
            pdx[m * N + j] = T(rs * (dnorm - dnorm_mean - norm * dnorm_norm_mean));
          }
        }
      });
    }
    if (dweight.defined() || dbias.defined()) {
      // Columns are independent: each thread owns a range of j and walks all rows.
      T* pdw = dweight.defined() ? dweight.data<T>() : nullptr;
      T* pdb = dbias.defined() ? dbias.data<T>() : nullptr;
      parallel_for(0, N, chunk_rows(M), [&](int64_t lo, int64_t hi) {
        for (int64_t j = lo; j < hi; ++j) {
          double dw = 0, db = 0;
          for (int64_t m = 0; m < M; ++m) {
            const double d = double(pdo[m * N + j]);
            dw += d * (double(px[m * N + j]) - double(pmean[m])) * double(prstd[m]);
            db += d;
          }
          if (pdw) pdw[j] += T(dw);
          if (pdb) pdb[j] += T(db);
        }
      });
    }
  });
}

// The CPU entries: the fast float32 kernels (kernels/graft/kernels/cpu/layer_norm.hpp), else the
// references above.
inline void layer_norm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                               const Tensor& weight, const Tensor& bias, int64_t M, int64_t N, double eps) {
  if (x.dtype() == DType::Float32 &&
      layer_norm_forward_fast(out.data<float>(), mean.data<float>(), rstd.data<float>(), x.data<float>(),
                              weight.defined() ? weight.data<float>() : nullptr,
                              bias.defined() ? bias.data<float>() : nullptr, M, N, eps))
    return;
  layer_norm_forward_reference(out, mean, rstd, x, weight, bias, M, N, eps);
}
inline void layer_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                                const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                int64_t M, int64_t N) {
  if (x.dtype() == DType::Float32 && dout.dtype() == DType::Float32 &&
      layer_norm_backward_fast(dx.defined() ? dx.data<float>() : nullptr,
                               dweight.defined() ? dweight.data<float>() : nullptr,
                               dbias.defined() ? dbias.data<float>() : nullptr, dout.data<float>(), x.data<float>(),
                               weight.defined() ? weight.data<float>() : nullptr, mean.data<float>(),
                               rstd.data<float>(), M, N))
    return;
  layer_norm_backward_reference(dx, dweight, dbias, dout, x, weight, mean, rstd, M, N);
}
}  // namespace kernels::cpu

using LayerNormKernel = void (*)(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& x,
                                 const Tensor& weight, const Tensor& bias, int64_t M, int64_t N, double eps);
using LayerNormBackwardKernel = void (*)(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                         const Tensor& dout, const Tensor& x, const Tensor& weight,
                                         const Tensor& mean, const Tensor& rstd, int64_t M, int64_t N);
GRAFT_KERNEL_SLOT(LayerNormKernel, layer_norm_kernel, "layer_norm", kernels::cpu::layer_norm_forward, "avx2 avx512");
GRAFT_KERNEL_SLOT(LayerNormBackwardKernel, layer_norm_backward_kernel, "layer_norm_backward",
                  kernels::cpu::layer_norm_backward, "avx2 avx512");

namespace autograd {
class LayerNormBackward final : public Node {
 public:
  std::string name() const override { return "LayerNormBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    GRAFT_CHECK(!GradMode::enabled(), name(), "second derivative (create_graph) is not implemented");
    const Tensor x = x_.unpack(this), weight = weight_.unpack(this);
    const Tensor mean = mean_.unpack(this), rstd = rstd_.unpack(this);
    const Tensor dout = grads[0].contiguous();
    Tensor dx, dweight, dbias;
    if (needs_input_grad(0)) dx = empty(x.shape(), x.dtype(), x.device());
    if (needs_input_grad(1)) dweight = zeros(normalized_shape, x.dtype(), x.device());
    if (needs_input_grad(2)) dbias = zeros(normalized_shape, x.dtype(), x.device());
    layer_norm_backward_kernel.get(x.device())(dx, dweight, dbias, dout, x, weight, mean, rstd, M, N);
    return {dx, dweight, dbias};
  }
  void release_saved() override {
    x_.release();
    weight_.release();
    mean_.release();
    rstd_.release();
  }
  SavedTensor x_, weight_, mean_, rstd_;
  Shape normalized_shape;
  int64_t M = 0, N = 0;
};
}  // namespace autograd

namespace detail_layer_norm {
// weight or bias: undefined, or of shape normalized_shape with x's dtype and device.
inline void check_param(const Tensor& p, const char* what, const Shape& normalized_shape, const Tensor& x) {
  if (!p.defined()) return;
  GRAFT_CHECK(p.shape() == normalized_shape, "layer_norm", what, " should have shape normalized_shape ",
              normalized_shape, ", got ", p.shape());
  GRAFT_CHECK(p.dtype() == x.dtype(), "layer_norm", what, " should have the input's dtype ", dtype_name(x.dtype()),
              ", got ", dtype_name(p.dtype()));
  GRAFT_CHECK(p.device() == x.device(), "layer_norm", what, " is on ", p.device(), ", the input on ", x.device());
}
}  // namespace detail_layer_norm

// Normalizes x over its trailing dims `normalized_shape` (mean 0, biased variance 1), then scales
// by weight and shifts by bias when they are defined. As torch.nn.functional.layer_norm.
inline Tensor layer_norm(const Tensor& x_in, const Shape& normalized_shape, const Tensor& weight_in = Tensor(),
                         const Tensor& bias_in = Tensor(), double eps = 1e-5) {
  GRAFT_CHECK(x_in.defined(), "layer_norm", "undefined tensor argument");
  GRAFT_CHECK(is_floating(x_in.dtype()), "layer_norm", "expected a floating-point input, got ",
              dtype_name(x_in.dtype()));
  if (is_reduced_float(x_in.dtype()))  // autocast's float32 kind: weight and bias widened too
    return float32_op(x_in, [&](const Tensor& xf) {
      return layer_norm(xf, normalized_shape, as_float32_if_reduced(weight_in), as_float32_if_reduced(bias_in), eps);
    });
  const int k = normalized_shape.rank(), lead = x_in.dim() - k;
  GRAFT_CHECK(k >= 1, "layer_norm", "normalized_shape must have at least one dim, got ", normalized_shape);
  bool matches = lead >= 0;
  for (int i = 0; matches && i < k; ++i) matches = x_in.size(lead + i) == normalized_shape[i];
  GRAFT_CHECK(matches, "layer_norm", "normalized_shape ", normalized_shape, " expects an input of shape [*, ",
              normalized_shape.str().substr(1), ", got input shape ", x_in.shape());
  detail_layer_norm::check_param(weight_in, "weight", normalized_shape, x_in);
  detail_layer_norm::check_param(bias_in, "bias", normalized_shape, x_in);

  const Tensor x = x_in.contiguous();
  const Tensor weight = weight_in.defined() ? weight_in.contiguous() : Tensor();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  const int64_t N = normalized_shape.numel();
  int64_t M = 1;
  for (int i = 0; i < lead; ++i) M *= x.size(i);
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  Tensor mean = empty({M}, x.dtype(), x.device()), rstd = empty({M}, x.dtype(), x.device());
  layer_norm_kernel.get(x.device())(out, mean, rstd, x.detach(), weight.defined() ? weight.detach() : Tensor(),
                                    bias.defined() ? bias.detach() : Tensor(), M, N, eps);
  if (autograd::any_requires_grad({&x, &weight, &bias})) {
    auto node = std::make_shared<autograd::LayerNormBackward>();
    node->x_ = x;
    node->weight_ = weight;
    node->mean_ = mean;
    node->rstd_ = rstd;
    node->normalized_shape = normalized_shape;
    node->M = M;
    node->N = N;
    autograd::connect(node, {x, weight, bias}, {out});
  }
  return out;
}

GRAFT_REGISTER_OP(layer_norm, true);

}  // namespace graft
