// graft/ops/embedding.hpp - embedding lookup (torch.nn.functional.embedding).
//
// Shapes: indices [*] int64/int32, weight [V, D] float -> out [*, D], out[..., :] = weight[indices[...], :]
// Contract: every index lies in [0, V) (no negative wrapping, as in PyTorch), else a graft::Error
//           naming the index, its position and V. padding_idx (in [-V, V), negative counts from
//           the end) only affects the backward: that row of dweight stays zero.
// Backward: dweight[v, :] = sum over positions i with indices[i] == v (v != padding_idx) of dout[i, :].
#pragma once
#include <algorithm>
#include <optional>

#include "graft/ops/autocast.hpp"
#include "graft/ops/index.hpp"

namespace graft {

namespace kernels::cpu {

// out [n, D] = weight [V, D] at rows indices [n]; all contiguous, indices checked.
inline void embedding_forward(const Tensor& out, const Tensor& weight, const Tensor& indices) {
  GRAFT_DISPATCH_ALL(weight.dtype(), "embedding", T, [&] {  // row copies: any dtype
    const int64_t n = indices.numel(), D = weight.shape()[1];
    const int64_t* idx = indices.data<int64_t>();
    const T* w = weight.data<T>();
    T* o = out.data<T>();
    parallel_for(0, n, 64, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) std::copy(w + idx[i] * D, w + (idx[i] + 1) * D, o + i * D);
    });
  });
}

// dweight [V, D] += dout [n, D] scattered to rows indices [n], skipping padding_idx (-1: none).
// dweight zero-filled; all contiguous. Parallel over column blocks: a token repeated in the batch
// hits the same row, so rows cannot be split between threads, columns can.
inline void embedding_backward(const Tensor& dweight, const Tensor& dout, const Tensor& indices,
                               int64_t padding_idx) {
  if (is_reduced_float(dweight.dtype())) {  // sums in float32, rounded once
    const Tensor wide = widen_operand(dweight);
    embedding_backward(wide, widen_operand(dout), indices, padding_idx);
    return copy_into(dweight, wide);
  }
  GRAFT_DISPATCH_FLOAT(dweight.dtype(), "embedding_backward", T, [&] {
    const int64_t n = indices.numel(), D = dweight.shape()[1];
    const int64_t* idx = indices.data<int64_t>();
    const T* g = dout.data<T>();
    T* dw = dweight.data<T>();
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1));
    parallel_for(0, D, grain, [&](int64_t c0, int64_t c1) {
      for (int64_t i = 0; i < n; ++i) {
        if (idx[i] == padding_idx) continue;
        T* row = dw + idx[i] * D;
        const T* grow = g + i * D;
        for (int64_t c = c0; c < c1; ++c) row[c] += grow[c];
      }
    });
  });
}

}  // namespace kernels::cpu

using EmbeddingKernel = void (*)(const Tensor& out, const Tensor& weight, const Tensor& indices);
using EmbeddingBackwardKernel = void (*)(const Tensor& dweight, const Tensor& dout, const Tensor& indices,
                                         int64_t padding_idx);
GRAFT_KERNEL_SLOT(EmbeddingKernel, embedding_kernel, "embedding", kernels::cpu::embedding_forward);
GRAFT_KERNEL_SLOT(EmbeddingBackwardKernel, embedding_backward_kernel, "embedding_backward",
                  kernels::cpu::embedding_backward);

namespace autograd {
class EmbeddingBackward final : public Node {
 public:
  std::string name() const override { return "EmbeddingBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    detail_index::check_first_order(this, grads[0]);
    const Tensor indices = indices_.unpack(this);
    Tensor dweight = zeros(weight_shape, grads[0].dtype(), grads[0].device());
    const Tensor dout = grads[0].contiguous();
    embedding_backward_kernel.get(dweight.device())(dweight, dout, indices, padding_idx);
    return {Tensor(), dweight};
  }
  void release_saved() override { indices_.release(); }
  Shape weight_shape;
  int64_t padding_idx = -1;
  SavedTensor indices_;  // int64 [n], contiguous
};
}  // namespace autograd

inline Tensor embedding(const Tensor& indices, const Tensor& weight,
                        std::optional<int64_t> padding_idx = std::nullopt) {
  GRAFT_CHECK(weight.defined() && weight.dim() == 2, "embedding", "weight must be 2-D [num_embeddings, dim], got ",
              weight.defined() ? weight.shape().str() : std::string("(undefined)"));
  GRAFT_CHECK(is_floating(weight.dtype()), "embedding", "weight must be floating-point, got ",
              dtype_name(weight.dtype()));
  const int64_t V = weight.size(0), D = weight.size(1);
  int64_t pad = -1;
  if (padding_idx) {
    GRAFT_CHECK(*padding_idx >= -V && *padding_idx < V, "embedding", "padding_idx ", *padding_idx,
                " is out of range for a weight with ", V, " rows (expected in [", -V, ", ", V - 1, "])");
    pad = *padding_idx < 0 ? *padding_idx + V : *padding_idx;
  }
  const Tensor idx = detail_index::index_as_int64(indices, "embedding", true, weight.device());
  detail_index::check_index_range(idx, V, "embedding", detail::concat("a weight with ", V, " rows"));
  Shape out_shape = idx.shape();
  out_shape.push_back(D);
  Tensor out = empty(out_shape, weight.dtype(), weight.device());
  const Tensor flat_idx = idx.reshape({idx.numel()});
  if (out.numel() > 0) embedding_kernel.get(weight.device())(out, weight.detach().contiguous(), flat_idx);
  if (autograd::any_requires_grad({&weight})) {
    auto node = std::make_shared<autograd::EmbeddingBackward>();
    node->weight_shape = weight.shape();
    node->padding_idx = pad;
    node->indices_ = flat_idx;
    autograd::connect(node, {Tensor(), weight}, {out});
  }
  return out;
}

GRAFT_REGISTER_OP(embedding, true);

}  // namespace graft
