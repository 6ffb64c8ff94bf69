// graft/kernels/cuda/attention_args.cuh - what the CUDA attention kernels read and write, shared by the
// float32 / float64 kernels (attention.cuh) and the 16-bit tensor-core kernels (attention_mma.cuh):
// the operands' pointers and views, the dropout draws, the problem's sizes and flags.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/attention_plan.hpp"
#include "graft/kernels/cuda/common.cuh"

namespace graft::kernels::cuda::attention_detail {
using namespace attention_plan;

// Everything a kernel reads or writes (null pointer: not present / not wanted). Passed by value.
// T: the operands' element (float, double; uint16_t for bfloat16 / float16 bits); F: the statistics'
// and scalars' type (T, or float for 16-bit operands).
template <class T, class F = T>
struct AttentionArgs {
  const T* q = nullptr;     BatchedMatrix qm;    // [B, L, E]
  const T* k = nullptr;     BatchedMatrix km;    // [B, S, E]
  const T* v = nullptr;     BatchedMatrix vm;    // [B, S, Ev]
  const T* bias = nullptr;  BatchedMatrix bm;    // [B, L, S], added to the scores
  const bool* keep = nullptr;                    // [B, L, S] contiguous, the dropout draws
  F keep_scale = F(1);                           // 1 / (1 - p), 0 for p = 1
  T* out = nullptr;         BatchedMatrix om;    // [B, L, Ev] (forward writes, backward reads)
  F* lse = nullptr;                              // [B, L] contiguous (forward writes, backward reads)
  const T* dout = nullptr;  BatchedMatrix dom;   // [B, L, Ev]
  F* drow = nullptr;                             // [B, L] contiguous: D = rowsum(dO * O) (backward)
  T* dq = nullptr;          BatchedMatrix dqm;   // [B, L, E]
  T* dk = nullptr;          BatchedMatrix dkm;   // [B, S, E]
  T* dv = nullptr;          BatchedMatrix dvm;   // [B, S, Ev]
  int64_t B = 0, L = 0, S = 0, E = 0, Ev = 0;
  bool causal = false;
  F scale = F(1);
};

// The dropout multiplier of score (b, i, j): 1 without dropout.
template <class T, class F>
__device__ inline F keep_multiplier(const AttentionArgs<T, F>& a, int64_t b, int64_t i, int64_t j) {
  return a.keep == nullptr ? F(1) : a.keep[(b * a.L + i) * a.S + j] ? a.keep_scale : F(0);
}

inline BatchedMatrix matrix_of(const Tensor& t) {
  return t.defined() ? batched_matrix(t.shape(), t.strides()) : BatchedMatrix{};
}

// The forward's arguments (the backward adds its own with set_backward_args).
template <class T, class F = T>
AttentionArgs<T, F> make_args(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                              const Tensor& bias, const Tensor& keep, double dropout_p, bool is_causal, double scale) {
  AttentionArgs<T, F> a;
  a.q = static_cast<const T*>(q.data_ptr());
  a.qm = matrix_of(q);
  a.k = static_cast<const T*>(k.data_ptr());
  a.km = matrix_of(k);
  a.v = static_cast<const T*>(v.data_ptr());
  a.vm = matrix_of(v);
  a.bias = data_or_null<const T>(bias);
  a.bm = matrix_of(bias);
  a.keep = data_or_null<const bool>(keep);
  a.keep_scale = dropout_p < 1.0 ? F(1.0 / (1.0 - dropout_p)) : F(0);
  a.out = static_cast<T*>(out.data_ptr());
  a.om = matrix_of(out);
  a.lse = static_cast<F*>(lse.data_ptr());
  a.B = lse.shape()[0];
  a.L = q.size(-2);
  a.S = k.size(-2);
  a.E = q.size(-1);
  a.Ev = v.size(-1);
  a.causal = is_causal;
  a.scale = F(scale);
  return a;
}

// The backward's own arguments: dO and the gradients wanted (undefined: not computed).
template <class T, class F>
void set_backward_args(AttentionArgs<T, F>& a, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                       const Tensor& dout) {
  a.dout = static_cast<const T*>(dout.data_ptr());
  a.dom = matrix_of(dout);
  a.dq = data_or_null<T>(dq);
  a.dqm = matrix_of(dq);
  a.dk = data_or_null<T>(dk);
  a.dkm = matrix_of(dk);
  a.dv = data_or_null<T>(dv);
  a.dvm = matrix_of(dv);
}

}  // namespace graft::kernels::cuda::attention_detail
