// graft/ops/attention.hpp - scaled dot-product attention
// (torch.nn.functional.scaled_dot_product_attention), one op with its own forward and backward.
//
// Shapes: q [*, L, E], k [*, S, E], v [*, S, Ev]; the leading dims * broadcast (usually [B, H])
//         attn_mask bool (true = takes part) or floating (added to the scores), broadcastable to
//         [*, L, S]; a BERT padding mask is [B, 1, 1, S]
//         out [*, L, Ev]
// Math:   scores = scale q k^T + mask (scale defaults to 1 / sqrt(E)); is_causal masks key j > query i
//         (top-left aligned, as PyTorch); P = softmax over keys; out = dropout(P) v.
// Contract: attn_mask together with is_causal is an error (as in PyTorch). A query row whose every
//         score is masked (-inf) gets zero probabilities and a zero output row, and passes no gradient
//         back: PyTorch returns NaN there, which poisons a whole padded batch. dropout_p > 0 applies
//         inverted dropout to P with default_generator() (always, like PyTorch: pass 0 at eval time).
//         The mask gets no gradient. Second derivatives are not implemented (create_graph throws).
// Backward (llm.c's attention_backward): with Pd = P * dropmask,
//         dV = Pd^T dO;  dP = (dO V^T) * dropmask;  dS = P * (dP - rowsum(dP * P));
//         dQ = scale dS K;  dK = scale dS^T Q.
// Kernels: float32 on AVX2 / AVX-512 runs the tiled flash-attention kernels of
//         graft/kernels/cpu/attention.hpp: no [*, L, S] matrix of scores is stored (the node saves q,
//         k, v, the output and the log-sum-exp per query row, the mask as a broadcast view and the
//         dropout draws as bools), q, k, v are read in place (head views are not copied), and the
//         output and dq, dk, dv are laid out like q, k, v (a [B, H, L, E] view of a [B, L, H, E]
//         buffer for heads cut from one projection, so transposing back is free). float64 and
//         GRAFT_CPU_ISA=scalar run the plain reference below on contiguous copies; its backward
//         recomputes the probabilities. The dropout draws are the same either way: one
//         default_generator().uniform() per element of [*, L, S] in row-major order, kept when >= p.
//         CUDA tensors run graft/kernels/cuda/attention.cuh (tiled FlashAttention-2 kernels for
//         float32 head dims <= 128, a warp per row otherwise; bfloat16 and float16 on the tensor cores,
//         attention_mma.cuh, for head dims <= 128); there the draws come from Philox4x32-10
//         under one key from default_generator(): reproducible for a seed, but another mask than the
//         CPU's for the same seed (as PyTorch's devices differ). A bool mask becomes the additive one
//         (0 / -inf, the mask's own shape) by `where` on the mask's device, so nothing of a device
//         tensor is touched on the host.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "graft/core/random.hpp"
#include "graft/kernels/cpu/attention.hpp"
#include "graft/kernels/cuda/attention_mma_plan.hpp"
#include "graft/ops/autocast.hpp"
#include "graft/ops/creation.hpp"
#include "graft/ops/elementwise.hpp"
#include "graft/ops/index.hpp"
#include "graft/ops/reduce.hpp"

namespace graft {

namespace kernels::cpu {

// q [B, L, E], k [B, S, E], v [B, S, Ev]; bias [B, L, S] added to the scores (undefined: none);
// drop [B, L, S] dropout multipliers 0 or 1 / (1 - p) (undefined: none); all contiguous, one dtype.
// Writes probs [B, L, S] (softmax before dropout) and out [B, L, Ev], and lse [B, L] if defined (the
// log-sum-exp of each row's scores, -inf for a fully masked row). Parallel over the B*L query rows.
// The plain reference (the oracle of the fast kernels, the float64 and GRAFT_CPU_ISA=scalar path).
inline void attention_forward(const Tensor& out, const Tensor& probs, const Tensor& q, const Tensor& k,
                              const Tensor& v, const Tensor& bias, const Tensor& drop, bool is_causal, double scale,
                              const Tensor& lse = Tensor()) {
  GRAFT_DISPATCH_FLOAT(q.dtype(), "scaled_dot_product_attention", T, [&] {
    const int64_t B = q.shape()[0], L = q.shape()[1], E = q.shape()[2], S = k.shape()[1], Ev = v.shape()[2];
    const T* pq = q.data<T>();
    const T* pk = k.data<T>();
    const T* pv = v.data<T>();
    const T* pbias = bias.defined() ? bias.data<T>() : nullptr;
    const T* pdrop = drop.defined() ? drop.data<T>() : nullptr;
    T* pp = probs.data<T>();
    T* po = out.data<T>();
    T* plse = lse.defined() ? lse.data<T>() : nullptr;
    const double neg_inf = -std::numeric_limits<double>::infinity();
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(S * (E + Ev), 1));
    parallel_for(0, B * L, grain, [&](int64_t lo, int64_t hi) {
      for (int64_t row = lo; row < hi; ++row) {
        const int64_t b = row / L, i = row % L;
        const T* qi = pq + row * E;       // [E]
        const T* kb = pk + b * S * E;     // [S, E]
        const T* vb = pv + b * S * Ev;    // [S, Ev]
        T* p = pp + row * S;              // [S]: scores, then probabilities
        T* o = po + row * Ev;             // [Ev]
        double m = neg_inf;
        for (int64_t j = 0; j < S; ++j) {
          if (is_causal && j > i) {
            p[j] = T(neg_inf);
            continue;
          }
          double s = 0.0;
          for (int64_t e = 0; e < E; ++e) s += double(qi[e]) * double(kb[j * E + e]);
          s = s * scale + (pbias ? double(pbias[row * S + j]) : 0.0);
          p[j] = T(s);
          m = std::max(m, s);
        }
        for (int64_t c = 0; c < Ev; ++c) o[c] = T(0);
        if (m == neg_inf) {  // fully masked row: zeros (see the header)
          for (int64_t j = 0; j < S; ++j) p[j] = T(0);
          if (plse) plse[row] = T(neg_inf);
          continue;
        }
        double sum = 0.0;
        for (int64_t j = 0; j < S; ++j) {
          const double e = std::exp(double(p[j]) - m);
          p[j] = T(e);
          sum += e;
        }
        if (plse) plse[row] = T(m + std::log(sum));
        const double inv = 1.0 / sum;
        for (int64_t j = 0; j < S; ++j) {
          p[j] = T(double(p[j]) * inv);
          const T pd = pdrop ? p[j] * pdrop[row * S + j] : p[j];
          if (pd == T(0)) continue;
          for (int64_t c = 0; c < Ev; ++c) o[c] += pd * vb[j * Ev + c];
        }
      }
    });
  });
}

// dq [B, L, E], dk [B, S, E], dv [B, S, Ev] (each undefined: not computed) from dout [B, L, Ev] and
// the forward's q, k, v, probs, drop. Two passes so no two threads write one row: query rows (b, i)
// make dS and dq, then key rows (b, j) make dk and dv. Every element of the defined outputs is written.
inline void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                               const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                               const Tensor& drop, double scale) {
  GRAFT_DISPATCH_FLOAT(q.dtype(), "scaled_dot_product_attention_backward", T, [&] {
    const int64_t B = q.shape()[0], L = q.shape()[1], E = q.shape()[2], S = k.shape()[1], Ev = v.shape()[2];
    const T* pq = q.data<T>();
    const T* pk = k.data<T>();
    const T* pv = v.data<T>();
    const T* pp = probs.data<T>();
    const T* pdrop = drop.defined() ? drop.data<T>() : nullptr;
    const T* pdo = dout.data<T>();
    T* pdq = dq.defined() ? dq.data<T>() : nullptr;
    T* pdk = dk.defined() ? dk.data<T>() : nullptr;
    T* pdv = dv.defined() ? dv.data<T>() : nullptr;
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(S * (E + Ev), 1));
    std::vector<T> ds;  // dS [B, L, S]
    if (pdq || pdk) {
      ds.assign(size_t(B * L * S), T(0));
      parallel_for(0, B * L, grain, [&](int64_t lo, int64_t hi) {
        for (int64_t row = lo; row < hi; ++row) {
          const int64_t b = row / L;
          const T* doi = pdo + row * Ev;    // [Ev]
          const T* vb = pv + b * S * Ev;    // [S, Ev]
          const T* p = pp + row * S;        // [S]
          T* d = ds.data() + row * S;       // [S]: dP, then dS
          double rowsum = 0.0;
          for (int64_t j = 0; j < S; ++j) {
            if (p[j] == T(0)) continue;     // masked or underflowed: dS = P * (...) = 0
            double dp = 0.0;
            for (int64_t c = 0; c < Ev; ++c) dp += double(doi[c]) * double(vb[j * Ev + c]);
            if (pdrop) dp *= double(pdrop[row * S + j]);
            d[j] = T(dp);
            rowsum += double(p[j]) * dp;
          }
          for (int64_t j = 0; j < S; ++j) d[j] = T(double(p[j]) * (double(d[j]) - rowsum));
          if (!pdq) continue;
          const T* kb = pk + b * S * E;     // [S, E]
          T* dqi = pdq + row * E;           // [E]
          for (int64_t e = 0; e < E; ++e) dqi[e] = T(0);
          for (int64_t j = 0; j < S; ++j) {
            if (d[j] == T(0)) continue;
            const T sdj = T(scale) * d[j];
            for (int64_t e = 0; e < E; ++e) dqi[e] += sdj * kb[j * E + e];
          }
        }
      });
    }
    if (!pdk && !pdv) return;
    parallel_for(0, B * S, grain, [&](int64_t lo, int64_t hi) {
      for (int64_t col = lo; col < hi; ++col) {
        const int64_t b = col / S, j = col % S;
        T* dkj = pdk ? pdk + col * E : nullptr;   // [E]
        T* dvj = pdv ? pdv + col * Ev : nullptr;  // [Ev]
        if (dkj)
          for (int64_t e = 0; e < E; ++e) dkj[e] = T(0);
        if (dvj)
          for (int64_t c = 0; c < Ev; ++c) dvj[c] = T(0);
        for (int64_t i = 0; i < L; ++i) {
          const int64_t row = b * L + i;
          if (dkj && ds[size_t(row * S + j)] != T(0)) {
            const T sd = T(scale) * ds[size_t(row * S + j)];
            for (int64_t e = 0; e < E; ++e) dkj[e] += sd * pq[row * E + e];
          }
          if (dvj) {
            const T pd = pdrop ? pp[row * S + j] * pdrop[row * S + j] : pp[row * S + j];
            if (pd == T(0)) continue;
            for (int64_t c = 0; c < Ev; ++c) dvj[c] += pd * pdo[row * Ev + c];
          }
        }
      }
    });
  });
}

// The CPU entries of the slots below. Shapes as in graft/kernels/cpu/attention.hpp: q [*batch, L, E],
// k [*batch, S, E], v [*batch, S, Ev] and bias [*batch, L, S] (undefined: none) are views of any strides
// (broadcast dims stride 0); out, dout, dq, dk, dv [*batch, ...] likewise (outputs not broadcast;
// dq, dk, dv undefined: not computed); lse [B, L] contiguous, B = numel(batch); keep undefined or bool
// [B, L, S] (the dropout draws). The fast kernels take float32 under AVX2 / AVX-512; otherwise the
// reference runs on contiguous copies, the multipliers keep ? 1 / (1 - dropout_p) : 0, and its backward
// recomputes the probabilities.
namespace attention_reference {
// t [*batch, rows, cols] -> contiguous [B, rows, cols]
inline Tensor flat(const Tensor& t, int64_t B) {
  return t.defined() ? t.contiguous().reshape({B, t.size(-2), t.size(-1)}) : Tensor();
}
// A contiguous [B, rows, cols] buffer for the output t (undefined if t is)
inline Tensor buffer(const Tensor& t, int64_t B) {
  return t.defined() ? empty(Shape{B, t.size(-2), t.size(-1)}, t.dtype(), t.device()) : Tensor();
}
inline void copy_back(const Tensor& t, const Tensor& buf) {
  if (t.defined()) copy_into(t, buf.reshape(t.shape()));
}
inline Tensor drop(const Tensor& keep, double dropout_p, DType dt) {
  if (!keep.defined()) return Tensor();
  Tensor drop = empty(keep.shape(), dt, keep.device());
  GRAFT_DISPATCH_FLOAT(dt, "scaled_dot_product_attention", T, [&] {
    const T keep_scale = dropout_p < 1.0 ? T(1.0 / (1.0 - dropout_p)) : T(0);
    const bool* pk = keep.data<bool>();
    T* pd = drop.data<T>();
    for (int64_t i = 0; i < keep.numel(); ++i) pd[i] = pk[i] ? keep_scale : T(0);
  });
  return drop;
}
}  // namespace attention_reference

inline void attention_forward_cpu(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& bias, const Tensor& keep, double dropout_p,
                                  bool is_causal, double scale) {
  if (is_reduced_float(q.dtype())) {  // bfloat16 / float16: float32 operands (lse is float32), rounded on store
    const Tensor wide = empty(out.shape(), DType::Float32);
    attention_forward_cpu(wide, lse, widen_operand(q), widen_operand(k), widen_operand(v), widen_operand(bias), keep,
                          dropout_p, is_causal, scale);
    return copy_into(out, wide);
  }
  if (attention_forward_fast(out, lse, q, k, v, bias, keep, dropout_p, is_causal, scale)) return;
  using namespace attention_reference;
  const int64_t B = lse.shape()[0];
  const Tensor o = buffer(out, B), probs = empty(Shape{B, q.size(-2), k.size(-2)}, q.dtype(), q.device());
  attention_forward(o, probs, flat(q, B), flat(k, B), flat(v, B), flat(bias, B), drop(keep, dropout_p, q.dtype()),
                    is_causal, scale, lse);
  copy_back(out, o);
}

inline void attention_backward_cpu(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                   const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                   const Tensor& lse, const Tensor& bias, const Tensor& keep, double dropout_p,
                                   bool is_causal, double scale) {
  if (is_reduced_float(q.dtype())) {
    auto wide_like = [](const Tensor& t) { return t.defined() ? empty(t.shape(), DType::Float32) : Tensor(); };
    const Tensor wdq = wide_like(dq), wdk = wide_like(dk), wdv = wide_like(dv);
    attention_backward_cpu(wdq, wdk, wdv, widen_operand(dout), widen_operand(q), widen_operand(k), widen_operand(v),
                           widen_operand(out), lse, widen_operand(bias), keep, dropout_p, is_causal, scale);
    if (dq.defined()) copy_into(dq, wdq);
    if (dk.defined()) copy_into(dk, wdk);
    if (dv.defined()) copy_into(dv, wdv);
    return;
  }
  if (attention_backward_fast(dq, dk, dv, dout, q, k, v, out, lse, bias, keep, dropout_p, is_causal, scale)) return;
  using namespace attention_reference;
  const int64_t B = lse.shape()[0];
  const Tensor qf = flat(q, B), kf = flat(k, B), vf = flat(v, B), d = drop(keep, dropout_p, q.dtype());
  const Tensor probs = empty(Shape{B, q.size(-2), k.size(-2)}, q.dtype(), q.device());
  attention_forward(buffer(out, B), probs, qf, kf, vf, flat(bias, B), d, is_causal, scale);
  const Tensor dqf = buffer(dq, B), dkf = buffer(dk, B), dvf = buffer(dv, B);
  attention_backward(dqf, dkf, dvf, flat(dout, B), qf, kf, vf, probs, d, scale);
  copy_back(dq, dqf);
  copy_back(dk, dkf);
  copy_back(dv, dvf);
}

// keep bool [B, L, S] contiguous <- the dropout draws: one gen.uniform() per element in row-major
// order, kept (true) when >= dropout_p.
inline void attention_dropout_keep(const Tensor& keep, double dropout_p, Generator& gen) {
  bool* pk = keep.data<bool>();
  for (int64_t i = 0; i < keep.numel(); ++i) pk[i] = gen.uniform() >= dropout_p;
}

}  // namespace kernels::cpu

using AttentionKernel = void (*)(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                                 const Tensor& v, const Tensor& bias, const Tensor& keep, double dropout_p,
                                 bool is_causal, double scale);
using AttentionBackwardKernel = void (*)(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                         const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                         const Tensor& lse, const Tensor& bias, const Tensor& keep,
                                         double dropout_p, bool is_causal, double scale);
GRAFT_KERNEL_SLOT(AttentionKernel, attention_kernel, "scaled_dot_product_attention",
                  kernels::cpu::attention_forward_cpu, "avx2 avx512");
GRAFT_KERNEL_SLOT(AttentionBackwardKernel, attention_backward_kernel, "scaled_dot_product_attention_backward",
                  kernels::cpu::attention_backward_cpu, "avx2 avx512");
using AttentionDropoutKernel = void (*)(const Tensor& keep, double dropout_p, Generator& gen);
GRAFT_KERNEL_SLOT(AttentionDropoutKernel, attention_dropout_kernel, "scaled_dot_product_attention_dropout",
                  kernels::cpu::attention_dropout_keep);

namespace detail_attention {
// lead + [a, b]
inline Shape with_last2(const Shape& lead, int64_t a, int64_t b) {
  Shape s = lead;
  s.push_back(a);
  s.push_back(b);
  return s;
}
// An empty tensor of like's shape with its last dim set to cols, laid out in like's dim order (dims
// sorted by decreasing stride, the last dim innermost). Heads cut from one projection, [B, H, L, E] as
// a transposed [B, L, H, E], so give an output (and gradients) that the caller's inverse transpose
// reads without a copy, as PyTorch's CPU flash attention does. Contiguous when like is, or has a
// broadcast (stride 0) dim.
inline Tensor empty_like_layout(const Tensor& like, int64_t cols) {
  const int r = like.dim();
  Shape shape = like.shape();
  shape[r - 1] = cols;
  bool broadcast = false;
  for (int d = 0; d < r; ++d) broadcast = broadcast || (like.strides()[d] == 0 && like.shape()[d] > 1);
  if (broadcast || like.is_contiguous()) return empty(shape, like.dtype(), like.device());
  std::vector<int64_t> order(static_cast<size_t>(r));  // order[p]: the dim stored p-th from the outside
  for (int d = 0; d < r; ++d) order[size_t(d)] = d;
  std::stable_sort(order.begin(), order.end() - 1,
                   [&](int64_t a, int64_t b) { return like.strides()[int(a)] > like.strides()[int(b)]; });
  Shape stored;
  std::vector<int64_t> back(static_cast<size_t>(r));  // back[d]: where dim d is stored
  for (int p = 0; p < r; ++p) {
    stored.push_back(shape[int(order[size_t(p)])]);
    back[size_t(order[size_t(p)])] = p;
  }
  return empty(stored, like.dtype(), like.device()).permute(back);
}
inline Tensor empty_like_layout(const Tensor& like) { return empty_like_layout(like, like.size(-1)); }
inline Shape leading_dims(const Shape& s) {
  Shape lead;
  for (int i = 0; i + 2 < s.rank(); ++i) lead.push_back(s[i]);
  return lead;
}
}  // namespace detail_attention

namespace autograd {
class ScaledDotProductAttentionBackward final : public Node {
 public:
  std::string name() const override { return "ScaledDotProductAttentionBackward"; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    GRAFT_CHECK(!GradMode::enabled(), name(), "second derivative (create_graph through attention) is not implemented");
    const Tensor q = q_.unpack(this), k = k_.unpack(this), v = v_.unpack(this);  // [*batch, ., .] views
    Tensor dout = grads[0];  // [*batch, L, Ev]
    if (dout.dim() > 0 && dout.strides()[dout.dim() - 1] != 1) dout = dout.contiguous();
    using detail_attention::empty_like_layout;
    Tensor dq = needs_input_grad(0) ? empty_like_layout(q) : Tensor();
    Tensor dk = needs_input_grad(1) ? empty_like_layout(k) : Tensor();
    Tensor dv = needs_input_grad(2) ? empty_like_layout(v) : Tensor();
    attention_backward_kernel.get(q.device())(dq, dk, dv, dout, q, k, v, out_.unpack(this), lse_.unpack(this),
                                              bias_.unpack(this), keep_.unpack(this), dropout_p, is_causal, scale);
    if (dq.defined()) dq = sum_to(dq, q_shape);
    if (dk.defined()) dk = sum_to(dk, k_shape);
    if (dv.defined()) dv = sum_to(dv, v_shape);
    return {dq, dk, dv, Tensor()};
  }
  void release_saved() override {
    q_.release();
    k_.release();
    v_.release();
    out_.release();
    lse_.release();
    bias_.release();
    keep_.release();
  }
  double scale = 1.0, dropout_p = 0.0;
  bool is_causal = false;
  Shape q_shape, k_shape, v_shape;
  SavedTensor q_, k_, v_, out_, lse_;  // views [*batch, L, E], [*batch, S, E], [*batch, S, Ev], [*batch, L, Ev]; [B, L]
  SavedTensor bias_, keep_;            // a view broadcast to [*batch, L, S], bool [B, L, S]; or undefined
};
}  // namespace autograd

// Under autocast float32 q, k, v (and a float mask) are cast to its dtype; bfloat16 / float16 attention
// computes in float32 (the log-sum-exp it saves is float32) and rounds its output on store.
inline Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                           const Tensor& attn_mask = Tensor(), double dropout_p = 0.0,
                                           bool is_causal = false, std::optional<double> scale = std::nullopt) {
  using detail_attention::with_last2;
  const char* op = "scaled_dot_product_attention";
  GRAFT_CHECK(q_in.defined() && k_in.defined() && v_in.defined(), op, "undefined q, k or v");
  const Tensor q = autocast::lower(q_in), k = autocast::lower(k_in), v = autocast::lower(v_in);
  GRAFT_CHECK(q.dim() >= 2 && k.dim() >= 2 && v.dim() >= 2, op, "q, k and v need at least 2 dims, got shapes ",
              q.shape(), ", ", k.shape(), " and ", v.shape());
  GRAFT_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), op, "q, k and v must have one dtype, got ",
              dtype_name(q.dtype()), ", ", dtype_name(k.dtype()), " and ", dtype_name(v.dtype()));
  GRAFT_CHECK(is_floating(q.dtype()), op, "expected floating-point q, k, v, got ", dtype_name(q.dtype()));
  GRAFT_CHECK(q.device() == k.device() && q.device() == v.device(), op, "q, k and v must be on one device, got ",
              q.device(), ", ", k.device(), " and ", v.device());
  GRAFT_CHECK(!attn_mask.defined() || attn_mask.device() == q.device(), op, "attn_mask is on ",
              attn_mask.defined() ? attn_mask.device() : q.device(), " but q, k, v are on ", q.device());
  const int64_t L = q.size(-2), E = q.size(-1), S = k.size(-2), Ev = v.size(-1);
  GRAFT_CHECK(k.size(-1) == E, op, "q has head dim E = ", E, " (shape ", q.shape(), ") but k has head dim ",
              k.size(-1), " (shape ", k.shape(), ")");
  GRAFT_CHECK(v.size(-2) == S, op, "k has S = ", S, " keys (shape ", k.shape(), ") but v has ", v.size(-2),
              " (shape ", v.shape(), ")");
  GRAFT_CHECK(!(is_causal && attn_mask.defined()), op,
              "attn_mask and is_causal cannot both be set (as in PyTorch); fold the causal mask into attn_mask");
  GRAFT_CHECK(dropout_p >= 0.0 && dropout_p <= 1.0, op, "dropout_p must be in [0, 1], got ", dropout_p);
  const Shape batch = broadcast_shapes(broadcast_shapes(detail_attention::leading_dims(q.shape()),
                                                        detail_attention::leading_dims(k.shape()), op),
                                       detail_attention::leading_dims(v.shape()), op);
  const int64_t B = batch.numel();
  const DType dt = q.dtype();
  // 16-bit GPU attention runs on the tensor cores for head dims up to 128; larger ones in float32, rounded
  if (is_reduced_float(dt) && !q.device().is_cpu() && kernels::cuda::attention_mma_plan::head_dim_variant(E, Ev) == 0)
    return scaled_dot_product_attention(q.to(DType::Float32), k.to(DType::Float32), v.to(DType::Float32),
                                        as_float32_if_reduced(attn_mask), dropout_p, is_causal, scale)
        .to(dt);
  const double sc = scale.value_or(1.0 / std::sqrt(double(E)));
  // views broadcast to the batch (no copies: the kernels read any strides)
  const Tensor qe = q.detach().expand(with_last2(batch, L, E));
  const Tensor ke = k.detach().expand(with_last2(batch, S, E));
  const Tensor ve = v.detach().expand(with_last2(batch, S, Ev));
  Tensor bias;  // additive, a view broadcast to [*batch, L, S] (never materialized)
  if (attn_mask.defined()) {
    const Shape scores = with_last2(batch, L, S);
    GRAFT_CHECK(detail_index::broadcasts_to(attn_mask.shape(), scores), op, "attn_mask of shape ",
                attn_mask.shape(), " cannot be broadcast to the scores' shape ", scores);
    if (attn_mask.dtype() == DType::Bool) {  // 0 where true (takes part), -inf where not; the mask's shape
      const Tensor m = attn_mask.detach();
      const Tensor zero = full(Shape{}, 0.0, dt, m.device());
      const Tensor neg_inf = full(Shape{}, -std::numeric_limits<double>::infinity(), dt, m.device());
      bias = where(m, zero, neg_inf).expand(scores);
    } else {
      GRAFT_CHECK(is_floating(attn_mask.dtype()), op, "attn_mask must be bool or floating-point, got ",
                  dtype_name(attn_mask.dtype()));
      bias = attn_mask.detach().to(dt).expand(scores);
    }
  }
  Tensor keep;  // bool [B, L, S]: the dropout draws, kept where uniform() >= dropout_p
  if (dropout_p > 0.0) {
    keep = empty(Shape{B, L, S}, DType::Bool, q.device());
    attention_dropout_kernel.get(q.device())(keep, dropout_p, default_generator());
  }
  const Tensor out = detail_attention::empty_like_layout(qe, Ev);  // [*batch, L, Ev]
  const Tensor lse = empty(Shape{B, L}, is_reduced_float(dt) ? DType::Float32 : dt, q.device());
  attention_kernel.get(q.device())(out, lse, qe, ke, ve, bias, keep, dropout_p, is_causal, sc);
  if (autograd::any_requires_grad({&q, &k, &v})) {
    auto node = std::make_shared<autograd::ScaledDotProductAttentionBackward>();
    node->scale = sc;
    node->dropout_p = dropout_p;
    node->is_causal = is_causal;
    node->q_shape = q.shape();
    node->k_shape = k.shape();
    node->v_shape = v.shape();
    node->q_ = qe;
    node->k_ = ke;
    node->v_ = ve;
    node->out_ = autograd::SavedTensor(out, true);
    node->lse_ = lse;
    node->bias_ = bias;
    node->keep_ = keep;
    autograd::connect(node, {q, k, v, Tensor()}, {out});
  }
  return out;
}

GRAFT_REGISTER_OP(scaled_dot_product_attention, true);

}  // namespace graft
