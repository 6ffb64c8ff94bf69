// graft/kernels/cuda/attention_plan.hpp - the index math of the CUDA attention kernels
// (attention.cuh), in a header that compiles without nvcc, so tests/test_cuda_attention_host.cpp
// checks it on the CPU: which kernel a problem takes, how a [*batch, rows, cols] view is addressed,
// which tiles causal masking skips, where each thread's elements of a tile are, the shared-memory
// sizes, and that the hot shared-memory accesses are free of bank conflicts.
//
// The tiled (float32) kernels work on tiles of kBlockQ = 64 queries x kBlockK = 64 keys with 256
// threads as a 16 x 16 grid: thread tid = 16 ty + tx owns the 4 x 4 micro tile of tile rows
// 4 ty + r (r < 4) and tile columns tx + 16 c (c < 4), and of a [64, D] accumulator (O, dQ, dK, dV) the
// rows 4 ty + r and columns tx + 16 c (c < D / 16). A tile row's 16 threads are one half of a warp, so
// row reductions are 4 shuffles.
#pragma once
#include <cstddef>
#include <cstdint>

#include "graft/core/dtype.hpp"  // GRAFT_HOST_DEVICE
#include "graft/core/shape.hpp"

namespace graft::kernels::cuda::attention_plan {

// ---- tile shapes ------------------------------------------------------------------------------
constexpr int kBlockQ = 64, kBlockK = 64;   // queries x keys of a tile
constexpr int kThreads = 256;                // per block of the tiled kernels: a 16 x 16 grid
constexpr int kGroupCols = 16;               // threads along a tile row (tx)
constexpr int kThreadRows = 4, kThreadCols = 4;  // the micro tile of one thread
static_assert(kThreads / kGroupCols * kThreadRows == kBlockQ && kBlockQ == kBlockK, "the grid covers a tile");
static_assert(kGroupCols * kThreadCols == kBlockK, "the grid covers a tile");
constexpr int kMaxTiledHeadDim = 128;        // E and Ev the tiled kernels take (variants 64 and 128)
constexpr int kRowThreads = 256;             // per block of the per-row kernels: 8 warps, a row each
constexpr int kRowsPerBlock = kRowThreads / 32;

// Shared-memory row lengths (floats). Head-dim tiles s[row][e] are padded to an odd length (so the
// 16 rows tx + 16 c read at one e fall in 16 different banks, and rows 4 ty and 4 (ty + 1) in
// different ones); score tiles s[row][col] to 68 (4 * 68 = 16 mod 32: the two tile rows a warp writes
// at once fall in disjoint halves of the banks).
GRAFT_HOST_DEVICE constexpr int head_ld(int max_d) { return max_d + 1; }
constexpr int kScoreLd = kBlockK + 4;

// Shared floats of each tiled kernel, for the head-dim variant max_d (64 or 128):
//   forward      q tile, one k-then-v tile [64][head_ld], P [64][kScoreLd]
//   backward_kv  k, v, q, dO tiles [64][head_ld], P^T and dS^T [64][kScoreLd], lse and D [64]
//   backward_q   q, dO, k, v tiles [64][head_ld], dS [64][kScoreLd], lse and D [64]
constexpr size_t forward_smem_floats(int max_d) {
  return size_t(kBlockQ + kBlockK) * head_ld(max_d) + size_t(kBlockQ) * kScoreLd;
}
constexpr size_t backward_kv_smem_floats(int max_d) {
  return size_t(2 * kBlockK + 2 * kBlockQ) * head_ld(max_d) + size_t(2 * kBlockK) * kScoreLd + 2 * kBlockQ;
}
constexpr size_t backward_q_smem_floats(int max_d) {
  return size_t(2 * kBlockQ + 2 * kBlockK) * head_ld(max_d) + size_t(kBlockQ) * kScoreLd + 2 * kBlockQ;
}
constexpr size_t kHopperSmemOptin = 232448;  // bytes of shared memory a block may opt in to on H100/H200
static_assert(backward_kv_smem_floats(kMaxTiledHeadDim) * 4 <= kHopperSmemOptin, "the largest variant fits");
static_assert(forward_smem_floats(kMaxTiledHeadDim) * 4 <= kHopperSmemOptin, "the largest variant fits");

// ---- which kernel -----------------------------------------------------------------------------
// The head-dim variant (64 or 128) of the tiled kernels for a problem, or 0 for the per-row kernels
// (float64, or a head dim E or Ev over 128).
inline int tiled_head_dim(bool is_float32, int64_t E, int64_t Ev) {
  if (!is_float32) return 0;
  const int64_t d = E > Ev ? E : Ev;
  return d <= 64 ? 64 : d <= kMaxTiledHeadDim ? kMaxTiledHeadDim : 0;
}
// Whether a variant's kernel, needing smem_bytes (its *_smem_floats * 4), fits the device's opt-in
// limit; one that does not takes the per-row kernels (GPUs with less shared memory than Hopper).
inline bool tiled_fits(size_t smem_bytes, int64_t smem_optin) { return int64_t(smem_bytes) <= smem_optin; }

GRAFT_HOST_DEVICE constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- addressing -------------------------------------------------------------------------------
// A [*batch, rows, cols] view of any strides (a broadcast dim has stride 0): element (b, i, j), b the
// batch dims flattened row-major, is at batch_offset(b) + i * rs + j * cs elements from the data pointer.
struct BatchedMatrix {
  int batch_rank = 0;
  int64_t batch_size[kMaxDims] = {};
  int64_t batch_stride[kMaxDims] = {};
  int64_t rs = 0, cs = 0;
  GRAFT_HOST_DEVICE int64_t batch_offset(int64_t b) const {
    int64_t off = 0;
    for (int d = batch_rank - 1; d >= 0; --d) {
      off += (b % batch_size[d]) * batch_stride[d];
      b /= batch_size[d];
    }
    return off;
  }
  GRAFT_HOST_DEVICE int64_t offset(int64_t b, int64_t i, int64_t j) const {
    return batch_offset(b) + i * rs + j * cs;
  }
};

// The BatchedMatrix of a view of shape `shape` (rank >= 2) and strides `strides`.
inline BatchedMatrix batched_matrix(const Shape& shape, const Shape& strides) {
  BatchedMatrix m;
  const int r = shape.rank();
  m.batch_rank = r - 2;
  for (int d = 0; d < r - 2; ++d) {
    m.batch_size[d] = shape[d];
    m.batch_stride[d] = strides[d];
  }
  m.rs = strides[r - 2];
  m.cs = strides[r - 1];
  return m;
}

// ---- causal masking (top-left aligned: query i sees keys j <= i) -------------------------------
GRAFT_HOST_DEVICE constexpr bool takes_part(bool causal, int64_t i, int64_t j) { return !causal || j <= i; }
// The keys the query rows [i0, i0 + rows) see at all: [0, keys_seen).
GRAFT_HOST_DEVICE constexpr int64_t keys_seen(bool causal, int64_t i0, int64_t rows, int64_t S) {
  return causal && i0 + rows < S ? i0 + rows : S;
}
// The first query tile (its first row) that sees any key of [j0, ...): queries before j0 see none.
GRAFT_HOST_DEVICE constexpr int64_t first_query_tile(bool causal, int64_t j0) {
  return causal ? j0 / kBlockQ * kBlockQ : 0;
}

// ---- the thread grid of a tile ----------------------------------------------------------------
// Tile row (query or key, see each kernel) r of thread tid's micro tile, and its column c; the
// accumulator column c of a [64, D] tile is tile_col(tid, c) too (c < D / 16).
GRAFT_HOST_DEVICE constexpr int tile_row(int tid, int r) { return tid / kGroupCols * kThreadRows + r; }
GRAFT_HOST_DEVICE constexpr int tile_col(int tid, int c) { return tid % kGroupCols + kGroupCols * c; }

// Element `n` of the dropout draws [B, L, S] (row-major) is word n % 4 of Philox4x32-10 at counter
// (n / 4) under the call's key (dropout.cuh's scheme).
GRAFT_HOST_DEVICE constexpr uint64_t philox_counter(int64_t n) { return uint64_t(n) / 4; }
GRAFT_HOST_DEVICE constexpr int philox_word(int64_t n) { return int(n % 4); }

// The number of shared-memory transactions (wavefronts) of one warp's 32-bit accesses at the float
// indices idx[0..31]: the most distinct indices that fall in one of the 32 banks (1 = conflict-free;
// lanes reading one index share it).
inline int smem_wavefronts(const int64_t (&idx)[32]) {
  int worst = 0;
  for (int bank = 0; bank < 32; ++bank) {
    int64_t seen[32];
    int n = 0;
    for (int lane = 0; lane < 32; ++lane) {
      if (((idx[lane] % 32) + 32) % 32 != bank) continue;
      bool dup = false;
      for (int s = 0; s < n; ++s) dup = dup || seen[s] == idx[lane];
      if (!dup) seen[n++] = idx[lane];
    }
    worst = n > worst ? n : worst;
  }
  return worst;
}

}  // namespace graft::kernels::cuda::attention_plan
