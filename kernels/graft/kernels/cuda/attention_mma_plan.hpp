// graft/kernels/cuda/attention_mma_plan.hpp - the index math of the 16-bit attention kernels on the
// tensor cores (attention_mma.cuh), in a header that compiles without nvcc, so
// tests/test_cuda_attention_host.cpp checks it on the CPU: which head-dim variant a problem takes, the
// tile shapes and shared-memory sizes, where a warp's mma.sync.m16n8k16 fragments read a shared tile
// (and that those reads are free of bank conflicts), and how a score tile's accumulator fragments are
// reused, unchanged, as the left operand of the next product (FlashAttention-2's register reuse).
//
// Every product of the forward and backward passes has one of two shapes, so the kernels have two warp
// primitives (attention_mma.cuh):
//   smem x smem   acc[16 x N] += A B^T: A a 16-row slice of a shared tile [row][k], B a shared tile
//                 [n][k]; both k-contiguous, so every fragment register is one 32-bit read
//   regs x smem   acc[16 x N] += P B^T: P a warp's 16 x K accumulator (K / 8 tiles of m16n8), rounded to
//                 16 bits and repacked in registers as the A fragments; B a shared tile [n][k]
// Products whose right operand is not k-contiguous in memory (P V, dS K, P^T dO, dS^T Q) stage it
// transposed: the shared tile of V is [d][key], of K [d][key], of dO [d][query], of Q [d][query].
//
//   forward      one block per (b, 64-query tile), 4 warps of 16 query rows. Key tiles of 64:
//                S = Q K^T (smem x smem), online softmax on the accumulator, O += P V (regs x smem)
//   backward_kv  one block per (b, 64-key tile), 4 warps of 16 key rows. Query steps of 32:
//                S^T = K Q^T, dP^T = V dO^T (smem x smem); P^T, dS^T elementwise; dV += (P^T mult) dO,
//                dK += scale dS^T Q (regs x smem)
//   backward_q   one block per (b, 64-query tile), 4 warps of 16 query rows. Key steps of 32:
//                S = Q K^T, dP = dO V^T (smem x smem); dS elementwise; dQ += scale dS K (regs x smem)
// Head-dim variants 32, 64, 128 (E and Ev up to the variant; the shared tiles are zero past them).
#pragma once
#include <cstddef>
#include <cstdint>

#include "graft/core/dtype.hpp"  // GRAFT_HOST_DEVICE
#include "graft/kernels/cuda/attention_plan.hpp"
#include "graft/kernels/cuda/gemm_plan.hpp"

namespace graft::kernels::cuda::attention_mma_plan {
using gemm_plan::bf16_mma_a_col;
using gemm_plan::bf16_mma_a_row;
using gemm_plan::bf16_mma_b_row;
using gemm_plan::mma_b_col;
using gemm_plan::mma_c_col;
using gemm_plan::mma_c_row;

// ---- tile shapes ------------------------------------------------------------------------------
constexpr int kWarps = 4, kBlockThreads = 32 * kWarps;
constexpr int kWarpRows = 16;                 // the rows (queries or keys) of one warp: one m16 tile
constexpr int kBlockRows = kWarps * kWarpRows;  // 64: the resident tile of a block
constexpr int kForwardKeys = 64;              // the key tile the forward streams
constexpr int kBackwardStep = 32;             // the query (backward_kv) or key (backward_q) step
constexpr int kMaxHeadDim = 128;
constexpr int kPad = 8;                       // halves a shared row is padded by (16 bytes)
GRAFT_HOST_DEVICE constexpr int ld(int cols) { return cols + kPad; }

// The head-dim variant (32, 64, 128) of a problem with head dims E (q, k) and Ev (v), 0: none (over 128;
// such problems run the float32 kernels on widened copies).
GRAFT_HOST_DEVICE constexpr int head_dim_variant(int64_t E, int64_t Ev) {
  const int64_t d = E > Ev ? E : Ev;
  return d <= 32 ? 32 : d <= 64 ? 64 : d <= kMaxHeadDim ? kMaxHeadDim : 0;
}

// ---- shared memory ----------------------------------------------------------------------------
// Each kernel's shared memory: float row statistics first (lse and D of the resident or streamed
// queries), then 16-bit tiles, each [rows][ld(cols)]:
//   forward      q [64][D], k [64][D], v^T [D][64]
//   backward_kv  k [64][D], v [64][D], q [32][D], q^T [D][32], dO [32][D], dO^T [D][32]; lse, D [32]
//   backward_q   q [64][D], dO [64][D], k [32][D], v [32][D], k^T [D][32]; lse, D [64]
struct SmemLayout {
  int stat_floats = 0;  // lse [n] then D [n]
  int tile_halves[6] = {};
  int tiles = 0;
  GRAFT_HOST_DEVICE constexpr size_t tile_offset(int t) const {  // in halves, from the end of the statistics
    size_t off = 0;
    for (int i = 0; i < t; ++i) off += size_t(tile_halves[i]);
    return off;
  }
  GRAFT_HOST_DEVICE constexpr size_t bytes() const { return size_t(stat_floats) * 4 + tile_offset(tiles) * 2; }
};
GRAFT_HOST_DEVICE constexpr SmemLayout forward_smem(int d) {
  return {0, {kBlockRows * ld(d), kForwardKeys * ld(d), d * ld(kForwardKeys)}, 3};
}
GRAFT_HOST_DEVICE constexpr SmemLayout backward_kv_smem(int d) {
  const int step = kBackwardStep;
  return {2 * step,
          {kBlockRows * ld(d), kBlockRows * ld(d), step * ld(d), d * ld(step), step * ld(d), d * ld(step)},
          6};
}
GRAFT_HOST_DEVICE constexpr SmemLayout backward_q_smem(int d) {
  const int step = kBackwardStep;
  return {2 * kBlockRows, {kBlockRows * ld(d), kBlockRows * ld(d), step * ld(d), step * ld(d), d * ld(step)}, 5};
}
using attention_plan::kHopperSmemOptin;  // bytes of shared memory a block may opt in to on H100/H200
static_assert(backward_kv_smem(kMaxHeadDim).bytes() <= kHopperSmemOptin, "the largest variant fits");
static_assert(backward_q_smem(kMaxHeadDim).bytes() <= kHopperSmemOptin, "the largest variant fits");
static_assert(forward_smem(kMaxHeadDim).bytes() <= kHopperSmemOptin, "the largest variant fits");

// ---- fragment reads of a k-contiguous shared tile -----------------------------------------------
// The half index, in a tile [outer][k] with rows of `ldk` halves, of the first (lower-k) element of
// register r of lane's A fragment (16 x 16 at rows row0.., k k0..) and of its B fragment (16 x 8 at
// outer n0.., k k0..). The second element of a register is the next half.
GRAFT_HOST_DEVICE constexpr int a_frag_index(int lane, int r, int row0, int k0, int ldk) {
  return (row0 + bf16_mma_a_row(lane, r)) * ldk + k0 + bf16_mma_a_col(lane, r);
}
GRAFT_HOST_DEVICE constexpr int b_frag_index(int lane, int r, int n0, int k0, int ldk) {
  return (n0 + mma_b_col(lane)) * ldk + k0 + bf16_mma_b_row(lane, r);
}

// ---- register reuse: an accumulator row block as the next A operand ----------------------------
// A warp's 16 x K accumulator is K / 8 m16n8 tiles c[j][0..3]. k step t of the next product (its k
// columns 16 t .. 16 t + 15) takes A register r from tile 2 t + a_from_c_tile(r), registers
// a_from_c_reg(r) and + 1 (low and high half): the same rows and columns the PTX layouts give both.
GRAFT_HOST_DEVICE constexpr int a_from_c_tile(int r) { return r / 2; }
GRAFT_HOST_DEVICE constexpr int a_from_c_reg(int r) { return 2 * (r % 2); }

// ---- row reductions on the accumulator -----------------------------------------------------------
// The lanes holding one accumulator row are the 4 of a quad (lane / 4 equal): a row's max and sum are
// two xor shuffles, over lane ^ 1 and lane ^ 2 (attention_mma.cuh's quad_max, quad_sum).
GRAFT_HOST_DEVICE constexpr int quad_of(int lane) { return lane / 4; }

}  // namespace graft::kernels::cuda::attention_mma_plan
