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
#pragma once
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "graft/ops/index.hpp"
#include "graft/ops/reduce.hpp"

namespace graft {

namespace kernels::cpu {

// q [B, L, E], k [B, S, E], v [B, S, Ev]; bias [B, L, S] added to the scores (undefined: none);
// drop [B, L, S] dropout multipliers 0 or 1 / (1 - p) (undefined: none); all contiguous, one dtype.
// Writes probs [B, L, S] (softmax before dropout) and out [B, L, Ev]. Parallel over the B*L query rows.
inline void attention_forward(const Tensor& out, const Tensor& probs, const Tensor& q, const Tensor& k,
                              const Tensor& v, const Tensor& bias, const Tensor& drop, bool is_causal, double scale) {
  GRAFT_DISPATCH_FLOAT(q.dtype(), "scaled_dot_product_attention", T, [&] {
    const int64_t B = q.shape()[0], L = q.shape()[1], E = q.shape()[2], S = k.shape()[1], Ev = v.shape()[2];
    const T* pq = q.data<T>();
    const T* pk = k.data<T>();
    const T* pv = v.data<T>();
    const T* pbias = bias.defined() ? bias.data<T>() : nullptr;
    const T* pdrop = drop.defined() ? drop.data<T>() : nullptr;
    T* pp = probs.data<T>();
    T* po = out.data<T>();
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
          continue;
        }
        double sum = 0.0;
        for (int64_t j = 0; j < S; ++j) {
          const double e = std::exp(double(p[j]) - m);
          p[j] = T(e);
          sum += e;
        }
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

}  // namespace kernels::cpu

using AttentionKernel = void (*)(const Tensor& out, const Tensor& probs, const Tensor& q, const Tensor& k,
                                 const Tensor& v, const Tensor& bias, const Tensor& drop, bool is_causal,
                                 double scale);
using AttentionBackwardKernel = void (*)(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                         const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                                         const Tensor& drop, double scale);
inline KernelSlot<AttentionKernel> attention_kernel{"scaled_dot_product_attention", &kernels::cpu::attention_forward};
inline KernelSlot<AttentionBackwardKernel> attention_backward_kernel{"scaled_dot_product_attention_backward",
                                                                     &kernels::cpu::attention_backward};

namespace detail_attention {
// lead + [a, b]
inline Shape with_last2(const Shape& lead, int64_t a, int64_t b) {
  Shape s = lead;
  s.push_back(a);
  s.push_back(b);
  return s;
}
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
    const Tensor q = q_.unpack(this), k = k_.unpack(this), v = v_.unpack(this);
    const int64_t B = q.size(0), L = q.size(1), E = q.size(2), S = k.size(1), Ev = v.size(2);
    const Tensor dout = grads[0].contiguous().reshape({B, L, Ev});
    Tensor dq = needs_input_grad(0) ? empty(q.shape(), q.dtype(), q.device()) : Tensor();
    Tensor dk = needs_input_grad(1) ? empty(k.shape(), k.dtype(), k.device()) : Tensor();
    Tensor dv = needs_input_grad(2) ? empty(v.shape(), v.dtype(), v.device()) : Tensor();
    attention_backward_kernel.get(q.device())(dq, dk, dv, dout, q, k, v, probs_.unpack(this), drop_.unpack(this),
                                              scale);
    using detail_attention::with_last2;
    if (dq.defined()) dq = sum_to(dq.reshape(with_last2(batch, L, E)), q_shape);
    if (dk.defined()) dk = sum_to(dk.reshape(with_last2(batch, S, E)), k_shape);
    if (dv.defined()) dv = sum_to(dv.reshape(with_last2(batch, S, Ev)), v_shape);
    return {dq, dk, dv, Tensor()};
  }
  void release_saved() override {
    q_.release();
    k_.release();
    v_.release();
    probs_.release();
    drop_.release();
  }
  double scale = 1.0;
  Shape batch, q_shape, k_shape, v_shape;
  SavedTensor q_, k_, v_, probs_, drop_;  // [B, L, E], [B, S, E], [B, S, Ev], [B, L, S], [B, L, S] or undefined
};
}  // namespace autograd

inline Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const Tensor& attn_mask = Tensor(), double dropout_p = 0.0,
                                           bool is_causal = false, std::optional<double> scale = std::nullopt) {
  using detail_attention::with_last2;
  const char* op = "scaled_dot_product_attention";
  GRAFT_CHECK(q.defined() && k.defined() && v.defined(), op, "undefined q, k or v");
  GRAFT_CHECK(q.dim() >= 2 && k.dim() >= 2 && v.dim() >= 2, op, "q, k and v need at least 2 dims, got shapes ",
              q.shape(), ", ", k.shape(), " and ", v.shape());
  GRAFT_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), op, "q, k and v must have one dtype, got ",
              dtype_name(q.dtype()), ", ", dtype_name(k.dtype()), " and ", dtype_name(v.dtype()));
  GRAFT_CHECK(is_floating(q.dtype()), op, "expected floating-point q, k, v, got ", dtype_name(q.dtype()));
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
  const double sc = scale.value_or(1.0 / std::sqrt(double(E)));
  const Tensor qc = q.detach().expand(with_last2(batch, L, E)).contiguous().reshape({B, L, E});
  const Tensor kc = k.detach().expand(with_last2(batch, S, E)).contiguous().reshape({B, S, E});
  const Tensor vc = v.detach().expand(with_last2(batch, S, Ev)).contiguous().reshape({B, S, Ev});
  Tensor bias;  // [B, L, S] additive
  if (attn_mask.defined()) {
    const Shape scores = with_last2(batch, L, S);
    GRAFT_CHECK(detail_index::broadcasts_to(attn_mask.shape(), scores), op, "attn_mask of shape ",
                attn_mask.shape(), " cannot be broadcast to the scores' shape ", scores);
    if (attn_mask.dtype() == DType::Bool) {
      const Tensor m = attn_mask.detach().expand(scores).contiguous();
      bias = empty(Shape{B, L, S}, dt, q.device());
      GRAFT_DISPATCH_FLOAT(dt, op, T, [&] {
        const bool* pm = m.data<bool>();
        T* pb = bias.data<T>();
        for (int64_t i = 0; i < B * L * S; ++i) pb[i] = pm[i] ? T(0) : -std::numeric_limits<T>::infinity();
      });
    } else {
      GRAFT_CHECK(is_floating(attn_mask.dtype()), op, "attn_mask must be bool or floating-point, got ",
                  dtype_name(attn_mask.dtype()));
      bias = attn_mask.detach().to(dt).expand(scores).contiguous().reshape({B, L, S});
    }
  }
  Tensor drop;  // [B, L, S] inverted-dropout multipliers
  if (dropout_p > 0.0) {
    drop = empty(Shape{B, L, S}, dt, q.device());
    GRAFT_DISPATCH_FLOAT(dt, op, T, [&] {
      const T keep_scale = dropout_p < 1.0 ? T(1.0 / (1.0 - dropout_p)) : T(0);
      T* pd = drop.data<T>();
      Generator& gen = default_generator();
      for (int64_t i = 0; i < B * L * S; ++i) pd[i] = gen.uniform() >= dropout_p ? keep_scale : T(0);
    });
  }
  Tensor out = empty(Shape{B, L, Ev}, dt, q.device());
  Tensor probs = empty(Shape{B, L, S}, dt, q.device());
  attention_kernel.get(q.device())(out, probs, qc, kc, vc, bias, drop, is_causal, sc);
  out = out.reshape(with_last2(batch, L, Ev));
  if (autograd::any_requires_grad({&q, &k, &v})) {
    auto node = std::make_shared<autograd::ScaledDotProductAttentionBackward>();
    node->scale = sc;
    node->batch = batch;
    node->q_shape = q.shape();
    node->k_shape = k.shape();
    node->v_shape = v.shape();
    node->q_ = qc;
    node->k_ = kc;
    node->v_ = vc;
    node->probs_ = probs;
    node->drop_ = drop;
    autograd::connect(node, {q, k, v, Tensor()}, {out});
  }
  return out;
}

GRAFT_REGISTER_OP(scaled_dot_product_attention, true);

}  // namespace graft
