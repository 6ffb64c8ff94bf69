// graft/kernels/cpu/attention.hpp - tiled (flash) attention for float32 on AVX2 and AVX-512: no
// L x S matrix of scores or probabilities is ever held, only kBlockQ x kBlockK tiles.
//
// The contract is scaled_dot_product_attention's (graft/ops/attention.hpp, which also holds the plain
// reference this is tested against). Shapes, all float32; [*batch, ...] tensors are views of any
// strides whose batch dims flatten (row-major) to b < B, so head views [B, H, T, E] cut from one
// projection are read in place (broadcast dims have stride 0):
//   q [*batch, L, E], k [*batch, S, E], v [*batch, S, Ev]        read through the GEMM (any strides)
//   bias  the additive mask as [*batch, L, S] (a padding mask [B0, 1, 1, S] stays S floats a batch);
//         undefined: none
//   keep  bool [B, L, S] contiguous, the dropout draws (true = kept, multiplier 1 / (1 - p)); undefined: none
//   out, dout [*batch, L, Ev]; dq, dk, dv like q, k, v          unit column stride (rows are vectors)
//   lse [B, L] contiguous
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
// take the call: not float32, the active ISA is scalar (GRAFT_CPU_ISA=scalar), or an out/dout/dq/dk/dv
// without unit column stride; the op's CPU entry then runs the reference.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
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

// A batch of matrices x[b, i, j] = data[offset[b] + i * rs + j * cs] (b < B): a [*batch, rows, cols]
// view of any strides, its batch dims flattened row-major into b (broadcast dims have stride 0).
// data is not const so one type serves inputs and outputs; the kernels write only the outputs.
struct BatchedRows {
  float* data = nullptr;
  const int64_t* offset = nullptr;  // [B]
  int64_t rs = 0, cs = 1;
  float* row(int64_t b, int64_t i) const { return data + offset[b] + i * rs; }
  bool defined() const { return data != nullptr; }
};

// What the per-ISA bodies (attention.inc) read and write. Undefined members: not present / not wanted.
// q, k, v, bias: any strides (they are read through the GEMM, or element by element); out, dout, dq,
// dk, dv: unit column stride (rows are read and written as vectors).
struct AttentionProblem {
  BatchedRows q;     // [B, L, E]
  BatchedRows k;     // [B, S, E]
  BatchedRows v;     // [B, S, Ev]
  BatchedRows bias;  // [B, L, S], added to the scores
  const bool* keep = nullptr;  // [B, L, S], contiguous
  float keep_scale = 1.0f;     // 1 / (1 - dropout_p), 0 when dropout_p = 1
  BatchedRows out;   // [B, L, Ev] (forward writes, backward reads)
  float* lse = nullptr;  // [B, L], contiguous (forward writes, backward reads)
  BatchedRows dout;  // [B, L, Ev]
  BatchedRows dq;    // [B, L, E]
  BatchedRows dk;    // [B, S, E]
  BatchedRows dv;    // [B, S, Ev]
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

// The offsets of t [*batch, rows, cols] for each flat b < B (the batch dims unravelled row-major, as
// the op flattens them); stored in `offsets`, which must outlive the result.
inline BatchedRows batched_rows(const Tensor& t, int64_t B, std::vector<int64_t>& offsets) {
  if (!t.defined()) return {};
  const int nb = t.dim() - 2;
  offsets.assign(size_t(B), 0);
  for (int64_t b = 0; b < B; ++b) {
    int64_t rest = b, off = 0;
    for (int d = nb - 1; d >= 0; --d) {
      off += (rest % t.shape()[d]) * t.strides()[d];
      rest /= t.shape()[d];
    }
    offsets[size_t(b)] = off;
  }
  return {const_cast<float*>(t.data<float>()), offsets.data(), t.strides()[nb], t.strides()[nb + 1]};
}

// The offsets behind a problem's BatchedRows (one vector per operand).
struct ProblemOffsets {
  std::vector<int64_t> q, k, v, bias, out, dout, dq, dk, dv;
};

// The problem shared by forward and backward, from the op's tensors (see the top of this file).
inline AttentionProblem make_problem(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                     const Tensor& lse, const Tensor& bias, const Tensor& keep, double dropout_p,
                                     bool is_causal, double scale, ProblemOffsets& offsets) {
  AttentionProblem a;
  a.L = q.size(-2);
  a.E = q.size(-1);
  a.S = k.size(-2);
  a.Ev = v.size(-1);
  a.B = lse.shape()[0];
  a.q = batched_rows(q, a.B, offsets.q);
  a.k = batched_rows(k, a.B, offsets.k);
  a.v = batched_rows(v, a.B, offsets.v);
  a.out = batched_rows(out, a.B, offsets.out);
  a.bias = batched_rows(bias, a.B, offsets.bias);
  a.lse = lse.data<float>();
  a.causal = is_causal;
  a.scale = float(scale);
  if (keep.defined()) {
    a.keep = keep.data<bool>();
    a.keep_scale = dropout_p < 1.0 ? float(1.0 / (1.0 - dropout_p)) : 0.0f;
  }
  return a;
}

inline bool unit_column_stride(const Tensor& t) { return !t.defined() || t.strides()[t.dim() - 1] == 1 || t.size(-1) <= 1; }

// The fast path takes float32 CPU tensors under AVX2 or AVX-512 (x86 only) whose rows it reads or
// writes as vectors have unit column stride.
inline bool takes(const Tensor& q, std::initializer_list<const Tensor*> rows) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (q.dtype() != DType::Float32 || !q.device().is_cpu() || active_cpu_isa() == CpuIsa::Scalar) return false;
  for (const Tensor* t : rows)
    if (!unit_column_stride(*t)) return false;
  return true;
#else
  (void)q;
  (void)rows;
  return false;
#endif
}

}  // namespace attention_detail

// q [*batch, L, E], k [*batch, S, E], v [*batch, S, Ev], bias [*batch, L, S] or undefined (any strides);
// keep bool [B, L, S] or undefined. Writes out [*batch, L, Ev] (unit column stride) and lse [B, L]
// (contiguous), B = numel(batch). Returns false (nothing written) when it does not take the call.
inline bool attention_forward_fast(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                                   const Tensor& v, const Tensor& bias, const Tensor& keep, double dropout_p,
                                   bool is_causal, double scale) {
  using namespace attention_detail;
  if (!takes(q, {&out})) return false;
  ProblemOffsets offsets;
  const AttentionProblem a = make_problem(q, k, v, out, lse, bias, keep, dropout_p, is_causal, scale, offsets);
  const int64_t q_blocks = (a.L + kBlockQ - 1) / kBlockQ;
  const CpuIsa isa = active_cpu_isa();
  // one task = (b, query block): about kBlockQ * S * (E + Ev) multiply-adds
  const int64_t task_work = std::min(a.L, kBlockQ) * std::max<int64_t>(a.S, 1) * (a.E + a.Ev);
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(task_work, 1));
  parallel_for(0, a.B * q_blocks, grain, [&](int64_t lo, int64_t hi) {
    std::vector<float> scratch(size_t(kBlockQ * kBlockK + 2 * kBlockQ));
    float* s_tile = scratch.data();             // [kBlockQ][kBlockK]
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

// Writes dq [*batch, L, E], dk [*batch, S, E], dv [*batch, S, Ev] (each undefined: not computed; unit
// column stride) from dout [*batch, L, Ev] (unit column stride) and the forward's inputs, out and lse.
// Returns false (nothing written) when it does not take the call.
inline bool attention_backward_fast(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                    const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                    const Tensor& lse, const Tensor& bias, const Tensor& keep, double dropout_p,
                                    bool is_causal, double scale) {
  using namespace attention_detail;
  if (!takes(q, {&out, &dout, &dq, &dk, &dv})) return false;
  ProblemOffsets offsets;
  AttentionProblem a = make_problem(q, k, v, out, lse, bias, keep, dropout_p, is_causal, scale, offsets);
  a.dout = batched_rows(dout, a.B, offsets.dout);
  a.dq = batched_rows(dq, a.B, offsets.dq);
  a.dk = batched_rows(dk, a.B, offsets.dk);
  a.dv = batched_rows(dv, a.B, offsets.dv);
  if (!a.dq.defined() && !a.dk.defined() && !a.dv.defined()) return true;
  const CpuIsa isa = active_cpu_isa();
  // one task = one b: about 3 L S (E + Ev) multiply-adds
  const int64_t task_work = 3 * std::max<int64_t>(a.L, 1) * std::max<int64_t>(a.S, 1) * (a.E + a.Ev);
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(task_work, 1));
  parallel_for(0, a.B, grain, [&](int64_t lo, int64_t hi) {
    std::vector<float> scratch(size_t(3 * kBlockQ * kBlockK + a.L));
    float* s_tile = scratch.data();              // [kBlockQ][kBlockK]
    float* p_tile = s_tile + kBlockQ * kBlockK;  // [kBlockQ][kBlockK]
    float* d_tile = p_tile + kBlockQ * kBlockK;  // [kBlockQ][kBlockK]
    float* d_row = d_tile + kBlockQ * kBlockK;   // [L]
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
