// graft/ops/matmul.hpp - matrix products: matmul (torch.matmul semantics) and linear. The CPU kernel
// is kernels::cpu::gemm (graft/kernels/cpu/gemm.hpp: AVX-512 / AVX2 chosen at run time, gemm_reference
// the scalar twin), which conv2d uses too.
//
// Shapes (torch.matmul):
//   a [K]          b [K]          -> []                 dot product
//   a [M, K]       b [K, N]       -> [M, N]
//   a [K]          b [*, K, N]    -> [*, N]             a is promoted to [1, K], the 1 removed after
//   a [*, M, K]    b [K]          -> [*, M]             b is promoted to [K, 1], the 1 removed after
//   a [*a, M, K]   b [*b, K, N]   -> [broadcast(*a, *b), M, N]
// linear: x [*, in], weight [out, in], bias [out] -> [*, out]   (y = x weight^T + bias)
//
// Backward: da = g b^T, db = a^T g, written with matmul itself (so they are differentiable again
// for create_graph) and reduced over broadcast batch dims with sum_to. The transposes are views:
// the kernel takes row and column strides, so no copy is made.
#pragma once
#include <algorithm>
#include <vector>

#include "graft/autograd/node.hpp"
#include "graft/core/activation.hpp"
#include "graft/core/dispatch.hpp"
#include "graft/core/parallel.hpp"
#include "graft/core/precision.hpp"  // set_float32_matmul_precision: TF32 for float32 products on CUDA
#include "graft/kernels/cpu/gemm.hpp"
#include "graft/kernels/cpu/gemm_bf16.hpp"
#include "graft/ops/autocast.hpp"
#include "graft/ops/elementwise.hpp"
#include "graft/ops/reduce.hpp"
#include "graft/ops/view.hpp"

namespace graft {

namespace kernels::cpu {

// out[*batch, M, N] = a[*batch, M, K] @ b[*batch, K, N].
//   out contiguous; a and b of out's dtype, already expanded to the batch shape (stride 0 on
//   broadcast batch dims), any strides. Fewer products than threads: one after another, each split
//   over the threads inside gemm; else whole products in parallel.
//   bfloat16: on a CPU with AMX or AVX512_BF16, gemm_bf16 (kernels/cpu/gemm_bf16.hpp) into float32,
//   rounded on store; otherwise (and float16) the operands widened to float32 (widen_operand), the
//   float32 GEMM, the result rounded on store.
inline void matmul_forward(const Tensor& out, const Tensor& a, const Tensor& b) {
  const int r = out.dim();
  const int64_t M = out.size(r - 2), N = out.size(r - 1), K = a.size(r - 1);
  const ProductBatch batch = product_batch(out.shape(), a.strides(), b.strides());
  if (out.dtype() == DType::BFloat16 && active_bf16_gemm_path() != Bf16GemmPath::Widen) {
    const Tensor wide = empty(out.shape(), DType::Float32);
    float* pw = wide.data<float>();
    const BFloat16 *pa = a.data<BFloat16>(), *pb = b.data<BFloat16>();
    for_each_offset2(batch.shape, batch.a_strides, batch.b_strides, [&](int64_t i, int64_t oa, int64_t ob) {
      gemm_bf16(M, N, K, pa + oa, a.stride(r - 2), a.stride(r - 1), pb + ob, b.stride(r - 2), b.stride(r - 1),
                pw + i * M * N, N);
    });
    return copy_into(out, wide);
  }
  if (is_reduced_float(out.dtype())) {
    const Tensor wide = empty(out.shape(), DType::Float32);
    matmul_forward(wide, widen_operand(a), widen_operand(b));
    return copy_into(out, wide);
  }
  GRAFT_DISPATCH_FLOAT(out.dtype(), "matmul", T, [&] {
    const int64_t B = batch.shape.numel();
    std::vector<int64_t> a_off(static_cast<size_t>(B)), b_off(static_cast<size_t>(B));  // element offset of each batch
    for_each_offset2(batch.shape, batch.a_strides, batch.b_strides, [&](int64_t i, int64_t oa, int64_t ob) {
      a_off[size_t(i)] = oa;
      b_off[size_t(i)] = ob;
    });
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* po = out.data<T>();
    const int64_t a_rs = a.stride(r - 2), a_cs = a.stride(r - 1);
    const int64_t b_rs = b.stride(r - 2), b_cs = b.stride(r - 1);
    auto product = [&](int64_t bi) {
      gemm<T>(M, N, K, pa + a_off[size_t(bi)], a_rs, a_cs, pb + b_off[size_t(bi)], b_rs, b_cs, po + bi * M * N, N,
              /*accumulate=*/false);
    };
    if (B < get_num_threads()) {
      for (int64_t bi = 0; bi < B; ++bi) product(bi);  // each product is split over the threads inside gemm
    } else {
      parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {  // whole products per thread (gemm runs serially)
        for (int64_t bi = lo; bi < hi; ++bi) product(bi);
      });
    }
  });
}

}  // namespace kernels::cpu

using MatmulKernel = void (*)(const Tensor& out, const Tensor& a, const Tensor& b);
GRAFT_KERNEL_SLOT(MatmulKernel, matmul_kernel, "matmul", kernels::cpu::matmul_forward, "avx2 avx512");

Tensor matmul(const Tensor& a, const Tensor& b);

namespace autograd {
// out = a @ b with a [*a, M, K], b [*b, K, N] (both rank >= 2).
class MatmulBackward final : public Node {
 public:
  std::string name() const override { return "MatmulBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    const Tensor& g = grads[0];  // [*batch, M, N]
    Tensor da, db;
    if (needs_input_grad(0)) da = sum_to(matmul(g, b_.unpack(this).transpose(-1, -2)), a_shape);
    if (needs_input_grad(1)) db = sum_to(matmul(a_.unpack(this).transpose(-1, -2), g), b_shape);
    return {da, db};
  }
  void release_saved() override {
    a_.release();
    b_.release();
  }
  SavedTensor a_, b_;  // a is kept only when b needs a gradient, and b only when a does
  Shape a_shape, b_shape;
};
}  // namespace autograd

namespace detail_matmul {
// The batched product of operands of rank >= 2; records MatmulBackward.
inline Tensor matmul_nd(const Tensor& a, const Tensor& b) {
  const int ra = a.dim(), rb = b.dim();
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  GRAFT_ASSERT(b.size(-2) == K);  // matmul checked it, naming the user's shapes
  Shape a_batch, b_batch;
  for (int d = 0; d < ra - 2; ++d) a_batch.push_back(a.size(d));
  for (int d = 0; d < rb - 2; ++d) b_batch.push_back(b.size(d));
  Shape out_shape = broadcast_shapes(a_batch, b_batch, "matmul");
  Shape a_full = out_shape, b_full = out_shape;
  out_shape.push_back(M);
  out_shape.push_back(N);
  a_full.push_back(M);
  a_full.push_back(K);
  b_full.push_back(K);
  b_full.push_back(N);
  Tensor out = empty(out_shape, a.dtype(), a.device());
  if (out.numel() > 0) matmul_kernel.get(a.device())(out, a.detach().expand(a_full), b.detach().expand(b_full));
  if (autograd::any_requires_grad({&a, &b})) {
    auto node = std::make_shared<autograd::MatmulBackward>();
    node->a_shape = a.shape();
    node->b_shape = b.shape();
    if (b.requires_grad()) node->a_ = a;
    if (a.requires_grad()) node->b_ = b;
    autograd::connect(node, {a, b}, {out});
  }
  return out;
}
}  // namespace detail_matmul

// torch.matmul (see the shape table at the top). a and b: same floating dtype, same device. Under
// autocast float32 operands are cast to its dtype first (ops/autocast.hpp).
inline Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  GRAFT_CHECK(a_in.defined() && b_in.defined(), "matmul", "undefined tensor argument");
  const Tensor a = autocast::lower(a_in), b = autocast::lower(b_in);
  GRAFT_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul", "both arguments need at least 1 dim, got shapes ", a.shape(),
              " and ", b.shape());
  GRAFT_CHECK(a.dtype() == b.dtype(), "matmul", "expected equal dtypes, got ", dtype_name(a.dtype()), " and ",
              dtype_name(b.dtype()));
  GRAFT_CHECK(is_floating(a.dtype()), "matmul", "expected a floating-point tensor, got ", dtype_name(a.dtype()));
  GRAFT_CHECK(a.device() == b.device(), "matmul", "tensors on different devices: ", a.device(), " and ", b.device());
  const int64_t K = a.size(-1);
  const int64_t Kb = b.dim() == 1 ? b.size(0) : b.size(-2);
  GRAFT_CHECK(K == Kb, "matmul", "shapes ", a.shape(), " and ", b.shape(), " cannot be multiplied (inner dims ", K,
              " and ", Kb, " differ)");
  for (int i = 3; i <= std::min(a.dim(), b.dim()); ++i) {  // batch dims, from the right
    const int64_t da = a.size(-i), db = b.size(-i);
    GRAFT_CHECK(da == db || da == 1 || db == 1, "matmul", "shapes ", a.shape(), " and ", b.shape(),
                " have batch dims that cannot be broadcast (", da, " vs ", db, ")");
  }
  if (a.dim() == 1 && b.dim() == 1) return detail_matmul::matmul_nd(a.unsqueeze(0), b.unsqueeze(1)).reshape(Shape{});
  if (a.dim() == 1) return detail_matmul::matmul_nd(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return detail_matmul::matmul_nd(a, b.unsqueeze(1)).squeeze(-1);
  if (a.dim() > 2 && b.dim() == 2) {
    // [*, M, K] @ [K, N]: fold the batch into the rows (one GEMM; db = a^T g is then [K, N] directly
    // instead of a batch of [K, N] products summed afterwards).
    Shape out_shape = a.shape();
    out_shape[out_shape.rank() - 1] = b.size(1);
    int64_t rows = 1;
    for (int d = 0; d + 1 < a.dim(); ++d) rows *= a.size(d);
    return detail_matmul::matmul_nd(a.reshape({rows, K}), b).reshape(out_shape);
  }
  return detail_matmul::matmul_nd(a, b);
}

namespace kernels::cpu {
// out[rows, out_f] = act(x[rows, in] weight[out_f, in]^T + bias[out_f]): one GEMM, the bias and the
// activation applied by its epilogue as each tile is finished. x and weight contiguous, bias
// contiguous or undefined, all of out's dtype. bfloat16 / float16 as matmul_forward (the epilogue runs
// on the float32 sums, before the rounding).
inline void linear_forward(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                           Activation act) {
  if (out.dtype() == DType::BFloat16 && active_bf16_gemm_path() != Bf16GemmPath::Widen) {
    const int64_t rows = x.size(0), in = x.size(1), out_f = weight.size(0);
    const Tensor wide = empty(out.shape(), DType::Float32), wide_bias = widen_operand(bias);
    gemm_bf16(rows, out_f, in, x.data<BFloat16>(), in, 1, weight.data<BFloat16>(), 1, in, wide.data<float>(), out_f);
    GemmEpilogue<float> ep;
    ep.bias = wide_bias.defined() ? wide_bias.data<float>() : nullptr;
    ep.act = act;
    if (ep.bias || act != Activation::None)
      parallel_for(0, rows, 64, [&](int64_t lo, int64_t hi) {
        gemm_epilogue_reference<float>(ep, lo, 0, hi - lo, out_f, wide.data<float>() + lo * out_f, out_f);
      });
    return copy_into(out, wide);
  }
  if (is_reduced_float(out.dtype())) {
    const Tensor wide = empty(out.shape(), DType::Float32);
    linear_forward(wide, widen_operand(x), widen_operand(weight), widen_operand(bias), act);
    return copy_into(out, wide);
  }
  GRAFT_DISPATCH_FLOAT(out.dtype(), "linear", T, [&] {
    const int64_t rows = x.size(0), in = x.size(1), out_f = weight.size(0);
    GemmEpilogue<T> ep;
    ep.bias = bias.defined() ? bias.data<T>() : nullptr;
    ep.act = act;
    // b[p, j] = weight[j, p]: weight read in place as the transposed operand.
    gemm<T>(rows, out_f, in, x.data<T>(), in, 1, weight.data<T>(), 1, in, out.data<T>(), out_f, /*accumulate=*/false,
            &ep);
  });
}
}  // namespace kernels::cpu

using LinearKernel = void (*)(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                              Activation act);
GRAFT_KERNEL_SLOT(LinearKernel, linear_kernel, "linear", kernels::cpu::linear_forward, "avx2 avx512");

namespace autograd {
// y = x2d weight^T + bias with x2d [rows, in], weight [out, in], bias [out] (or undefined).
// dx = g weight, dweight = g^T x2d, dbias = sum over rows of g: matmul and sum, so differentiable again.
class LinearBackward final : public Node {
 public:
  std::string name() const override { return "LinearBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    const Tensor& g = grads[0];  // [rows, out]
    Tensor dx, dw, db;
    if (needs_input_grad(0)) dx = matmul(g, weight_.unpack(this));
    if (needs_input_grad(1)) dw = matmul(g.t(), x_.unpack(this));
    if (needs_input_grad(2)) db = sum(g, {0});
    return {dx, dw, db};
  }
  void release_saved() override {
    x_.release();
    weight_.release();
  }
  SavedTensor x_, weight_;  // x only when weight needs a gradient, weight only when x does
};
}  // namespace autograd

// y = act(x weight^T + bias): x [*, in], weight [out, in], bias [out] or undefined -> y [*, out].
// One GEMM computes it (the linear slot: CPU, and CUDA's gemm.cuh), the bias and the activation
// fused into its epilogue. When autograd records, the activation is applied as its own op (its
// backward needs the pre-activation), so only the bias is fused. A device whose slot is empty runs
// matmul + add + the activation op. Under autocast x, weight and bias are cast to its dtype (the weight
// and bias through the scope's cache).
inline Tensor linear(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in = Tensor(),
                     Activation act = Activation::None) {
  GRAFT_CHECK(x_in.defined() && weight_in.defined(), "linear", "undefined input or weight");
  const Tensor x = autocast::lower(x_in), weight = autocast::lower_weight(weight_in),
               bias = autocast::lower_weight(bias_in);
  GRAFT_CHECK(weight.dim() == 2, "linear", "weight must be 2-D [out, in], got shape ", weight.shape());
  GRAFT_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear", "input of shape ", x.shape(),
              " does not match weight of shape ", weight.shape(), " (expected last dim ", weight.size(1), ")");
  GRAFT_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)), "linear", "bias must have shape [",
              weight.size(0), "], got ", bias.shape());
  GRAFT_CHECK(x.dtype() == weight.dtype() && (!bias.defined() || bias.dtype() == x.dtype()), "linear",
              "expected equal dtypes, got input ", dtype_name(x.dtype()), ", weight ", dtype_name(weight.dtype()),
              bias.defined() ? ", bias " : "", bias.defined() ? dtype_name(bias.dtype()) : "");
  GRAFT_CHECK(is_floating(x.dtype()), "linear", "expected a floating-point tensor, got ", dtype_name(x.dtype()));
  GRAFT_CHECK(x.device() == weight.device() && (!bias.defined() || bias.device() == x.device()), "linear",
              "tensors on different devices");
  auto apply_act = [&](const Tensor& y) { return activation(y, act); };
  if (!x.device().is_cpu() && !linear_kernel.has(x.device())) {
    const Tensor y = matmul(x, weight.t());
    return apply_act(bias.defined() ? y + bias : y);
  }
  const bool record = autograd::any_requires_grad({&x, &weight, &bias});
  const int64_t in = weight.size(1), out_f = weight.size(0);
  int64_t rows = 1;
  for (int d = 0; d + 1 < x.dim(); ++d) rows *= x.size(d);
  const Tensor x2d = x.reshape({rows, in});
  Shape out_shape = x.shape();
  out_shape[out_shape.rank() - 1] = out_f;
  Tensor out = empty({rows, out_f}, x.dtype(), x.device());
  linear_kernel.get(x.device())(out, x2d.detach().contiguous(), weight.detach().contiguous(),
                                bias.defined() ? bias.detach().contiguous() : Tensor(),
                                record ? Activation::None : act);
  if (record) {
    auto node = std::make_shared<autograd::LinearBackward>();
    if (weight.requires_grad()) node->x_ = x2d;
    if (x.requires_grad()) node->weight_ = weight;
    autograd::connect(node, {x2d, weight, bias}, {out});
    return apply_act(out.reshape(out_shape));
  }
  return out.reshape(out_shape);
}

GRAFT_REGISTER_OP(matmul, true);
GRAFT_REGISTER_OP(linear, true);

}  // namespace graft
