// graft/ops/var.hpp - variance over a set of dims, with Bessel-style correction.
//
// Shapes: x [d0, ..., dn-1] seen as [M, K]: its kept dims first, the dims in D last (empty D = all)
//         out: x's shape without the dims in D (kept as 1 when keepdim)
// var = sum_k (x[m, k] - mean_m)^2 / max(0, K - correction)   (correction 1: unbiased, 0: biased)
// As PyTorch, K <= correction gives inf or NaN rather than an error.
#pragma once
#include <vector>

#include "graft/ops/minmax.hpp"

namespace graft {

namespace kernels::cpu {
// out[m] = variance of row m of x. Two passes (mean, then squared deviations), accumulated in
// double. x contiguous [M, K]; out contiguous [M].
inline void var_forward_reference(const Tensor& out, const Tensor& x, int64_t M, int64_t K, int64_t correction) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), "var", T, [&] {
    const T* px = x.data<T>();
    T* po = out.data<T>();
    const double divisor = double(std::max<int64_t>(0, K - correction));
    parallel_for(0, M, chunk_rows(K), [&](int64_t lo, int64_t hi) {
      for (int64_t m = lo; m < hi; ++m) {
        const T* row = px + m * K;
        double mean = 0;
        for (int64_t k = 0; k < K; ++k) mean += double(row[k]);
        mean /= double(K);
        double ss = 0;
        for (int64_t k = 0; k < K; ++k) ss += (double(row[k]) - mean) * (double(row[k]) - mean);
        po[m] = T(ss / divisor);
      }
    });
  });
}

// dx[m, k] = dout[m] * 2 (x[m, k] - mean_m) / (K - correction). dx, x contiguous [M, K];
// dout contiguous [M].
inline void var_backward_reference(const Tensor& dx, const Tensor& dout, const Tensor& x, int64_t M, int64_t K,
                         int64_t correction) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), "var_backward", T, [&] {
    T* pdx = dx.data<T>();
    const T* pdo = dout.data<T>();
    const T* px = x.data<T>();
    const double divisor = double(std::max<int64_t>(0, K - correction));
    parallel_for(0, M, chunk_rows(K), [&](int64_t lo, int64_t hi) {
      for (int64_t m = lo; m < hi; ++m) {
        const T* row = px + m * K;
        double mean = 0;
        for (int64_t k = 0; k < K; ++k) mean += double(row[k]);
        mean /= double(K);
        const double scale = 2.0 * double(pdo[m]) / divisor;
        for (int64_t k = 0; k < K; ++k) pdx[m * K + k] = T(scale * (double(row[k]) - mean));
      }
    });
  });
}

// The CPU entries: the fast float32 kernels (kernels/graft/kernels/cpu/reduce.hpp), else the
// references above (float64, GRAFT_CPU_ISA=scalar).
inline void var_forward(const Tensor& out, const Tensor& x, int64_t M, int64_t K, int64_t correction) {
  if (x.dtype() == DType::Float32 &&
      var_forward_fast(out.data<float>(), x.data<float>(), M, K, double(std::max<int64_t>(0, K - correction))))
    return;
  var_forward_reference(out, x, M, K, correction);
}
inline void var_backward(const Tensor& dx, const Tensor& dout, const Tensor& x, int64_t M, int64_t K,
                         int64_t correction) {
  if (x.dtype() == DType::Float32 && dout.dtype() == DType::Float32 &&
      var_backward_fast(dx.data<float>(), dout.data<float>(), x.data<float>(), M, K,
                        double(std::max<int64_t>(0, K - correction))))
    return;
  var_backward_reference(dx, dout, x, M, K, correction);
}
}  // namespace kernels::cpu

using VarKernel = void (*)(const Tensor& out, const Tensor& x, int64_t M, int64_t K, int64_t correction);
using VarBackwardKernel = void (*)(const Tensor& dx, const Tensor& dout, const Tensor& x, int64_t M, int64_t K,
                                   int64_t correction);
GRAFT_KERNEL_SLOT(VarKernel, var_kernel, "var", kernels::cpu::var_forward, "avx2 avx512");
GRAFT_KERNEL_SLOT(VarBackwardKernel, var_backward_kernel, "var_backward", kernels::cpu::var_backward, "avx2 avx512");

namespace autograd {
class VarBackward final : public Node {
 public:
  std::string name() const override { return "VarBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    GRAFT_CHECK(!GradMode::enabled(), name(), "second derivative (create_graph) is not implemented");
    const Tensor x = x_.unpack(this);
    const Tensor rows = detail_rows::to_rows(x, mask);  // [M, K]
    const int64_t K = detail_reduce::reduced_count(x.shape(), mask), M = detail_rows::kept_count(x.shape(), mask);
    Tensor drows = empty(rows.shape(), rows.dtype(), rows.device());
    var_backward_kernel.get(x.device())(drows, grads[0].contiguous(), rows, M, K, correction);
    return {detail_rows::from_rows(drows, x.shape(), mask)};
  }
  void release_saved() override { x_.release(); }
  SavedTensor x_;
  std::vector<bool> mask;
  int64_t correction = 1;
};
}  // namespace autograd

// Variance of x over `dims` (empty = all dims), dividing by max(0, K - correction) where K is the
// number of elements reduced.
inline Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, int64_t correction = 1,
                  bool keepdim = false) {
  GRAFT_CHECK(x.defined(), "var", "undefined tensor argument");
  GRAFT_CHECK(is_floating(x.dtype()), "var", "expected a floating-point tensor, got ", dtype_name(x.dtype()));
  if (is_reduced_float(x.dtype()))  // autocast's float32 kind (ops/autocast.hpp)
    return float32_op(x, [&](const Tensor& xf) { return var(xf, dims, correction, keepdim); });
  const auto mask = detail_reduce::dim_mask(dims, x.dim(), "var");
  const int64_t K = detail_reduce::reduced_count(x.shape(), mask), M = detail_rows::kept_count(x.shape(), mask);
  Tensor out = empty(detail_reduce::reduced_shape(x.shape(), mask, keepdim), x.dtype(), x.device());
  var_kernel.get(x.device())(out, detail_rows::to_rows(x, mask), M, K, correction);
  if (autograd::any_requires_grad({&x})) {
    auto node = std::make_shared<autograd::VarBackward>();
    node->x_ = x;
    node->mask = mask;
    node->correction = correction;
    autograd::connect(node, {x}, {out});
  }
  return out;
}

GRAFT_REGISTER_OP(var, true);

}  // namespace graft
