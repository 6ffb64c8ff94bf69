// graft/kernels/cuda/reduce_plan.hpp - the index math and the launch shapes of the CUDA row
// reductions of reduce.cuh (var, max / argmax, amax, amax_backward's tie count, grad_norm). Plain
// C++ (GRAFT_HOST_DEVICE), no CUDA header: the CPU suite tests it (tests/test_cuda_reduce_index_host.cpp).
//
// A row reduction reduces `rows` rows of `len` elements each. Row r of x contiguous
// [outer, len, inner] is r = o * inner + i: it starts at o * len * inner + i and steps by inner
// (inner == 1: the rows [M, K] of a contiguous block). Output r is written to position r.
//
// Three ways to run it, chosen by plan_row_reduce from the shape alone (so a run repeats its bits):
//   ThreadPerRow  one thread walks a row in order: short rows (len <= 64), or many rows that are
//                 columns of [outer, len, inner] with inner >= 32 (adjacent threads read adjacent
//                 elements, so the loads coalesce).
//   WarpPerRow    8 warps per 256-thread block, one row each: lane l reads elements l, l + 32, ...;
//                 the 32 lane results merge by shuffles. Many (>= 1024) rows of at most 8192.
//   Blocks        block (c, r') reduces chunk c of row r = r' + j gridDim.y; 256 threads read the
//                 chunk strided by 256, merge by shuffles then shared memory; with more than one chunk
//                 a second kernel merges each row's chunk results (one warp per row). Chunks: enough
//                 blocks to fill the GPU 4 times over (132 SMs), each chunk at least 2048 elements,
//                 at most 256 chunks -- the sum kernel's rule.
#pragma once
#include <algorithm>
#include <cstdint>

#include "graft/core/dtype.hpp"  // GRAFT_HOST_DEVICE

namespace graft::kernels::cuda {

// Rows of x contiguous [outer, len, inner], `rows` = outer * inner of them.
struct RowLayout {
  int64_t rows = 0, len = 0, inner = 1;
  // Offset of row r's first element; its element k is at start(r) + k * inner.
  GRAFT_HOST_DEVICE int64_t start(int64_t r) const { return (r / inner) * len * inner + r % inner; }
};

enum class RowReduceMode { ThreadPerRow, WarpPerRow, Blocks };

constexpr int kRowReduceBlock = 256;                  // threads per block, every mode
constexpr int kRowsPerWarpBlock = kRowReduceBlock / 32;
constexpr int64_t kThreadRowMaxLen = 64;              // ThreadPerRow: rows at most this long
constexpr int64_t kWarpRowMinRows = 1024, kWarpRowMaxLen = 8192;
constexpr int64_t kBusyBlocks = 4 * 132;              // 4 blocks per SM of an H100 / H200
constexpr int64_t kMinChunkLen = 2048;
constexpr int kMaxChunks = 256;
constexpr int64_t kMaxGridX = 65535LL * 32, kMaxGridY = 65535;

struct RowReducePlan {
  RowReduceMode mode = RowReduceMode::ThreadPerRow;
  int chunks = 1;             // Blocks: chunks per row (> 1: a second pass merges them)
  int64_t grid_x = 1, grid_y = 1;  // the first kernel's grid (grid_y > 1 only in Blocks mode)
};

inline RowReducePlan plan_row_reduce(const RowLayout& l) {
  RowReducePlan p;
  const auto capped = [](int64_t blocks, int64_t cap) { return std::max<int64_t>(1, std::min(blocks, cap)); };
  if (l.len <= kThreadRowMaxLen || (l.inner >= 32 && l.rows >= 8192)) {
    p.mode = RowReduceMode::ThreadPerRow;
    p.grid_x = capped((l.rows + kRowReduceBlock - 1) / kRowReduceBlock, kMaxGridX);
    return p;
  }
  if (l.rows >= kWarpRowMinRows && l.len <= kWarpRowMaxLen) {
    p.mode = RowReduceMode::WarpPerRow;
    p.grid_x = capped((l.rows + kRowsPerWarpBlock - 1) / kRowsPerWarpBlock, kMaxGridX);
    return p;
  }
  p.mode = RowReduceMode::Blocks;
  int64_t chunks = std::clamp<int64_t>((kBusyBlocks + l.rows - 1) / l.rows, 1, kMaxChunks);
  chunks = std::max<int64_t>(1, std::min<int64_t>(chunks, l.len / kMinChunkLen));
  p.chunks = int(chunks);
  p.grid_x = chunks;
  p.grid_y = capped(l.rows, kMaxGridY);
  return p;
}

// Chunk c of `chunks` over a row of len elements: [chunk_begin, chunk_end), ceil(len / chunks) long
// (the last one shorter; empty when c * per >= len, which the merge treats as no elements).
GRAFT_HOST_DEVICE inline int64_t chunk_per(int64_t len, int chunks) { return (len + chunks - 1) / chunks; }
GRAFT_HOST_DEVICE inline int64_t chunk_begin(int64_t len, int chunks, int c) {
  const int64_t b = int64_t(c) * chunk_per(len, chunks);
  return b < len ? b : len;
}
GRAFT_HOST_DEVICE inline int64_t chunk_end(int64_t len, int chunks, int c) {
  const int64_t e = (int64_t(c) + 1) * chunk_per(len, chunks);
  return e < len ? e : len;
}

// The value-and-index state of max / min (and amax / amin, which drop the index): k < 0 means "no
// element yet". merge_extreme is the CPU reference's rule (replaces_extreme, ops/minmax.hpp) made
// symmetric, so any grouping of the elements gives the sequential scan's answer: a NaN beats any
// number, and between two NaNs or two equal values the lower index wins (the first occurrence,
// also between 0.0 and -0.0, so the bits match too).
template <class T>
struct ExtremeState {
  T v;
  int64_t k;
};
template <class T>
GRAFT_HOST_DEVICE inline ExtremeState<T> merge_extreme(ExtremeState<T> a, ExtremeState<T> b, bool is_max) {
  if (a.k < 0) return b;
  if (b.k < 0) return a;
  const bool a_nan = a.v != a.v, b_nan = b.v != b.v;
  if (a_nan || b_nan) {
    if (a_nan && b_nan) return a.k < b.k ? a : b;
    return a_nan ? a : b;
  }
  if (a.v == b.v) return a.k < b.k ? a : b;
  return (is_max ? a.v > b.v : a.v < b.v) ? a : b;
}

}  // namespace graft::kernels::cuda
