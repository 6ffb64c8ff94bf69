// graft/ops/dropout.hpp - inverted dropout (torch.nn.functional.dropout).
//
// Shapes: x [*] -> out [*]
// Contract: training and 0 < p < 1: each element is kept with probability 1 - p and scaled by
//           1 / (1 - p), else zeroed; p == 1 zeroes everything; !training or p == 0 returns x itself.
//           The mask comes from `gen`, drawn serially in x's row-major order, so a seed fixes it
//           (not PyTorch's stream: only the distribution matches).
// Backward: dx = dout * mask, mask[i] = 1 / (1 - p) where kept, 0 where dropped (saved, x's shape).
#pragma once
#include "graft/core/random.hpp"
#include "graft/ops/autocast.hpp"
#include "graft/ops/index.hpp"

namespace graft {

namespace kernels::cpu {

// out [n] = x [n] * mask [n], mask drawn from gen: 1 / (1 - p) with probability 1 - p, else 0.
// All contiguous. Serial on purpose: the generator's stream order is what makes a seed reproducible.
inline void dropout_forward(const Tensor& out, const Tensor& mask, const Tensor& x, double p, Generator& gen) {
  GRAFT_DISPATCH_FLOAT(x.dtype(), "dropout", T, [&] {
    const T scale = p < 1.0 ? T(1.0 / (1.0 - p)) : T(0);
    const T* px = x.data<T>();
    T* o = out.data<T>();
    T* m = mask.data<T>();
    for (int64_t i = 0, n = x.numel(); i < n; ++i) {
      m[i] = gen.uniform() >= p ? scale : T(0);
      o[i] = px[i] * m[i];
    }
  });
}

// dx [n] = dout [n] * mask [n]; all contiguous.
inline void dropout_backward(const Tensor& dx, const Tensor& dout, const Tensor& mask) {
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "dropout_backward", T, [&] {
    const T* g = dout.data<T>();
    const T* m = mask.data<T>();
    T* d = dx.data<T>();
    parallel_for(0, dx.numel(), 1 << 15, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) d[i] = g[i] * m[i];
    });
  });
}

}  // namespace kernels::cpu

using DropoutKernel = void (*)(const Tensor& out, const Tensor& mask, const Tensor& x, double p, Generator& gen);
using DropoutBackwardKernel = void (*)(const Tensor& dx, const Tensor& dout, const Tensor& mask);
GRAFT_KERNEL_SLOT(DropoutKernel, dropout_kernel, "dropout", kernels::cpu::dropout_forward);
GRAFT_KERNEL_SLOT(DropoutBackwardKernel, dropout_backward_kernel, "dropout_backward", kernels::cpu::dropout_backward);

namespace autograd {
class DropoutBackward final : public Node {
 public:
  std::string name() const override { return "DropoutBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    detail_index::check_first_order(this, grads[0]);
    const Tensor mask = mask_.unpack(this);
    Tensor dx = empty(mask.shape(), mask.dtype(), mask.device());
    dropout_backward_kernel.get(dx.device())(dx, grads[0].contiguous(), mask);
    return {dx};
  }
  void release_saved() override { mask_.release(); }
  SavedTensor mask_;  // x's shape and dtype, contiguous: 1 / (1 - p) or 0
};
}  // namespace autograd

inline Tensor dropout(const Tensor& x, double p, bool training, Generator& gen = default_generator()) {
  GRAFT_CHECK(x.defined(), "dropout", "undefined tensor argument");
  GRAFT_CHECK(p >= 0.0 && p <= 1.0, "dropout", "probability p must be in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  GRAFT_CHECK(is_floating(x.dtype()), "dropout", "expected a floating-point tensor, got ", dtype_name(x.dtype()));
  if (is_reduced_float(x.dtype()))  // no 16-bit kernel: float32, rounded (ops/autocast.hpp)
    return widened(x, [&](const Tensor& xf) { return dropout(xf, p, training, gen); });
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  Tensor mask = empty(x.shape(), x.dtype(), x.device());
  dropout_kernel.get(x.device())(out, mask, x.detach().contiguous(), p, gen);
  if (autograd::any_requires_grad({&x})) {
    auto node = std::make_shared<autograd::DropoutBackward>();
    node->mask_ = mask;
    autograd::connect(node, {x}, {out});
  }
  return out;
}

GRAFT_REGISTER_OP(dropout, true);

}  // namespace graft
