// graft/kernels/cpu/attention.hpp - tiled (flash) attention for float32 on AVX2 and AVX-512: no
// L x S matrix of scores or probabilities is ever held, only kBlockQ x kBlockK tiles.
//
// The contract is scaled_dot_product_attention's (graft/ops/attention.hpp, which also holds the plain
// reference this is tested against). Shapes, all float32 and contiguous unless said:
//   q [B, L, E], k [B, S, E], v [B, S, Ev], out [B, L, Ev], lse [B, L], dout/dq/dk/dv like out/q/k/v
//   bias  the additive mask broadcast to [*batch, L, S] (a view, any strides: a padding mask
//         [B0, 1, 1, S] stays S floats a batch); batch flattens to B; undefined: none
//   keep  bool [B, L, S], the dropout draws (true = kept, multiplier 1 / (1 - p)); undefined: none
// Forward (FlashAttention): for each (b, block of kBlockQ queries), over blocks of kBlockK keys,
//   S_blk = scale Q_blk K_blk^T + bias (GEMM), online softmax (running max m and sum l per row, the
//   accumulator rescaled by e^(m_old - m_new)), O += (P * keep) V_blk (GEMM); O /= l at the end and
//   lse = m + log l is stored for the backward (-inf for a fully masked row, whose output is zero).
// Backward (FlashAttention-2): per b, for each key block, for each query block in order, P is
//   recomputed from q, k and lse, then dV += Pd^T dO, dP = dO V^T, dS = P (dP - rowsum(dO * O)),
//   dQ += scale dS K, dK += scale dS^T Q, all on the GEMM.
// Threads: the forward splits (b, query block), the backward splits b; each output element has one
//   writer that sums in a fixed order, so results do not depend on the thread count.
//
// attention_forward_fast / attention_backward_fast return false (writing nothing) when they do not
// take the call: not float32, or the active ISA is scalar (GRAFT_CPU_ISA=scalar); the op then runs the
// reference.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "graft/core/parallel.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cpu/cpu_features.hpp"
#include "graft/kernels/cpu/gemm.hpp"

namespace graft::kernels::cpu::attention_detail {

// The tile: kBlockQ queries x kBlockK keys (a 16 KiB float tile, three of them in the backward).
inline constexpr int64_t kBlockQ = 64;
inline constexpr int64_t kBlockK = 64;
inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Raw pointers and sizes for the per-ISA bodies (attention.inc). Null pointers: not present / not wanted.
struct AttentionProblem {
  const float* q = nullptr;            // [B, L, E]
  const float* k = nullptr;            // [B, S, E]
  const float* v = nullptr;            // [B, S, Ev]
  const float* bias = nullptr;         // bias[b, i, j] = bias[bias_offset[b] + i * bias_rs + j * bias_cs]
  const int64_t* bias_offset = nullptr;  // [B]
  int64_t bias_rs = 0, bias_cs = 0;
  const bool* keep = nullptr;          // [B, L, S]
  float keep_scale = 1.0f;             // 1 / (1 - dropout_p), 0 when dropout_p = 1
  float* out = nullptr;                // [B, L, Ev] (forward writes, backward reads)
  float* lse = nullptr;                // [B, L]     (forward writes, backward reads)
  const float* dout = nullptr;         // [B, L, Ev]
  float* dq = nullptr;                 // [B, L, E]
  float* dk = nullptr;                 // [B, S, E]
  float* dv = nullptr;                 // [B, S, Ev]
  int64_t B = 0, L = 0, S = 0, E = 0, Ev = 0;
  bool causal = false;
  float scale = 1.0f;
};

// The GEMM (gemm.hpp, any strides) for the tiles; a plain function so the bodies call no template.
inline void block_gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                       int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate) {
  gemm<float>(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate);
}

}  // namespace graft::kernels::cpu::attention_detail

#define GRAFT_KERNEL_BODY "graft/kernels/cpu/attention.inc"
#include "graft/kernels/cpu/isa/for_each_isa.hpp"

namespace graft::kernels::cpu {

namespace attention_detail {

// The problem shared by forward and backward, from the op's tensors (see the top of this file).
// bias_offset receives the per-b offsets into bias.
inline AttentionProblem make_problem(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias,
                                     const Tensor& keep, double dropout_p, bool is_causal, double scale,
                                     std::vector<int64_t>& bias_offset) {
  AttentionProblem a;
  a.B = q.shape()[0];
  a.L = q.shape()[1];
  a.E = q.shape()[2];
  a.S = k.shape()[1];
  a.Ev = v.shape()[2];
  a.q = q.data<float>();
  a.k = k.data<float>();
  a.v = v.data<float>();
  a.causal = is_causal;
  a.scale = float(scale);
  if (bias.defined()) {
    // bias [*batch, L, S]: unravel each flat b over the batch dims (row-major, as the op flattens them)
    const int nb = bias.dim() - 2;
    bias_offset.assign(size_t(a.B), 0);
    for (int64_t b = 0; b < a.B; ++b) {
      int64_t rest = b, off = 0;
      for (int d = nb - 1; d >= 0; --d) {
        off += (rest % bias.shape()[d]) * bias.strides()[d];
        rest /= bias.shape()[d];
      }
      bias_offset[size_t(b)] = off;
    }
    a.bias = bias.data<float>();
    a.bias_offset = bias_offset.data();
    a.bias_rs = bias.strides()[nb];
    a.bias_cs = bias.strides()[nb + 1];
  }
  if (keep.defined()) {
    a.keep = keep.data<bool>();
    a.keep_scale = dropout_p < 1.0 ? float(1.0 / (1.0 - dropout_p)) : 0.0f;
  }
  return a;
}

// The fast path takes float32 CPU tensors under AVX2 or AVX-512 (x86 only).
inline bool takes(const Tensor& q) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return q.dtype() == DType::Float32 && q.device().is_cpu() && active_cpu_isa() != CpuIsa::Scalar;
#else
  return false;
#endif
}

}  // namespace attention_detail

// Writes out [B, L, Ev] and lse [B, L]. Returns false (nothing written) when it does not take the call.
inline bool attention_forward_fast(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                                   const Tensor& v, const Tensor& bias, const Tensor& keep, double dropout_p,
                                   bool is_causal, double scale) {
  using namespace attention_detail;
  if (!takes(q)) return false;
  std::vector<int64_t> bias_offset;
  AttentionProblem a = make_problem(q, k, v, bias, keep, dropout_p, is_causal, scale, bias_offset);
  a.out = out.data<float>();
  a.lse = lse.data<float>();
  const int64_t q_blocks = (a.L + kBlockQ - 1) / kBlockQ;
  const CpuIsa isa = active_cpu_isa();
  // one task = (b, query block): about kBlockQ * S * (E + Ev) multiply-adds
  const int64_t task_work = std::min(a.L, kBlockQ) * std::max<int64_t>(a.S, 1) * (a.E + a.Ev);
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(task_work, 1));
  parallel_for(0, a.B * q_blocks, grain, [&](int64_t lo, int64_t hi) {
    std::vector<float> scratch(size_t(kBlockQ * kBlockK + 2 * kBlockQ));
    float* s_tile = scratch.data();           // [kBlockQ][kBlockK]
    float* m_row = s_tile + kBlockQ * kBlockK;  // [kBlockQ]
    float* l_row = m_row + kBlockQ;             // [kBlockQ]
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t b = t / q_blocks, i0 = (t % q_blocks) * kBlockQ;
      const int64_t bq = std::min(kBlockQ, a.L - i0);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
      if (isa == CpuIsa::Avx512) avx512::attention_forward_block(a, b, i0, bq, s_tile, m_row, l_row);
      else avx2::attention_forward_block(a, b, i0, bq, s_tile, m_row, l_row);
#endif
    }
  });
  return true;
}

// Writes dq [B, L, E], dk [B, S, E], dv [B, S, Ev] (each undefined: not computed) from dout [B, L, Ev]
// and the forward's inputs, out and lse. Returns false (nothing written) when it does not take the call.
inline bool attention_backward_fast(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                    const Tensor& lse, const Tensor& bias, const Tensor& keep, double dropout_p,
                                    bool is_causal, double scale) {
  using namespace attention_detail;
  if (!takes(q)) return false;
  std::vector<int64_t> bias_offset;
  AttentionProblem a = make_problem(q, k, v, bias, keep, dropout_p, is_causal, scale, bias_offset);
  a.out = out.data<float>();
  a.lse = lse.data<float>();
  a.dout = dout.data<float>();
  a.dq = dq.defined() ? dq.data<float>() : nullptr;
  a.dk = dk.defined() ? dk.data<float>() : nullptr;
  a.dv = dv.defined() ? dv.data<float>() : nullptr;
  if (a.dq == nullptr && a.dk == nullptr && a.dv == nullptr) return true;
  const CpuIsa isa = active_cpu_isa();
  // one task = one b: about 3 L S (E + Ev) multiply-adds
  const int64_t task_work = 3 * std::max<int64_t>(a.L, 1) * std::max<int64_t>(a.S, 1) * (a.E + a.Ev);
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(task_work, 1));
  parallel_for(0, a.B, grain, [&](int64_t lo, int64_t hi) {
    std::vector<float> scratch(size_t(3 * kBlockQ * kBlockK + a.L));
    float* s_tile = scratch.data();                 // [kBlockQ][kBlockK]
    float* p_tile = s_tile + kBlockQ * kBlockK;     // [kBlockQ][kBlockK]
    float* d_tile = p_tile + kBlockQ * kBlockK;     // [kBlockQ][kBlockK]
    float* d_row = d_tile + kBlockQ * kBlockK;      // [L]
    for (int64_t b = lo; b < hi; ++b) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
      if (isa == CpuIsa::Avx512) avx512::attention_backward_batch(a, b, d_row, s_tile, p_tile, d_tile);
      else avx2::attention_backward_batch(a, b, d_row, s_tile, p_tile, d_tile);
#endif
    }
  });
  return true;
}

}  // namespace graft::kernels::cpu
