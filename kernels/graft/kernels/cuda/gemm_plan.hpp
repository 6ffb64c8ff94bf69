// graft/kernels/cuda/gemm_plan.hpp - the index math of the CUDA GEMM kernels (gemm.cuh), in a header
// that compiles without nvcc, so tests/test_cuda_gemm_host.cpp checks it on the CPU: which kernel a
// problem takes, where each thread's elements of a tile are, the mma.sync fragment layouts, the
// shared-memory addresses (and that the hot accesses are free of bank conflicts), the order in which
// blocks walk the output tiles, and the TF32 rounding the tensor cores' inputs get.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstring>

#include "graft/core/dtype.hpp"  // GRAFT_HOST_DEVICE

namespace graft::kernels::cuda::gemm_plan {

// ---- which kernel ----------------------------------------------------------------------------
//   Tiled64    64 x 64 x 16 block tile, 16 x 16 threads of 4 x 4: float64, and float32 problems too small
//              to give every SM a 128 x 128 tile
//   WarpTiled  FP32 SIMT: 128 x 128 x 8 block tile, 8 warps of 64 x 32, threads of 8 x 8, double buffered
//   Tf32       TF32 tensor cores (mma.sync m16n8k8): 128 x 128 x 16 block tile, 8 warps of 64 x 32
enum class GemmPath { Tiled64 = 0, WarpTiled = 1, Tf32 = 2 };

inline const char* gemm_path_name(GemmPath p) {
  switch (p) {
    case GemmPath::Tiled64: return "tiled 64x64 (SIMT)";
    case GemmPath::WarpTiled: return "warp-tiled 128x128 (SIMT)";
    case GemmPath::Tf32: return "TF32 mma.sync 128x128";
  }
  return "?";
}

// Tests and the benchmark pin a kernel here (-1: choose by size). A pinned float32 path is taken for
// float32 problems whatever the precision setting; float64 always takes Tiled64.
inline std::atomic<int> forced_gemm_path{-1};

GRAFT_HOST_DEVICE constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The kernel for an M x N output (batches of them). tf32: float32 and the matmul precision allows
// TF32 (graft/core/precision.hpp). The 128 x 128 SIMT kernel needs a tile per SM to beat the 64 x 64 one.
inline GemmPath choose_gemm_path(bool is_float32, bool tf32, int64_t M, int64_t N, int64_t batches, int sm_count) {
  if (!is_float32) return GemmPath::Tiled64;
  const int forced = forced_gemm_path.load(std::memory_order_relaxed);
  if (forced >= 0) return static_cast<GemmPath>(forced);
  if (tf32) return GemmPath::Tf32;
  return ceil_div(M, 128) * ceil_div(N, 128) * batches >= sm_count ? GemmPath::WarpTiled : GemmPath::Tiled64;
}

// ---- tile shapes -------------------------------------------------------------------------------
constexpr int kWarpTiledBM = 128, kWarpTiledBN = 128, kWarpTiledBK = 8, kWarpTiledThreads = 256;
constexpr int kTf32BM = 128, kTf32BN = 128, kTf32BK = 16, kTf32Threads = 256;
// Shared-memory row lengths (floats), padded so the accesses below are free of bank conflicts:
constexpr int kWarpTiledLd = kWarpTiledBM + 4;  // SIMT tiles are s[k][outer]; +4 keeps float4 alignment
constexpr int kTf32LdOuter = kTf32BM + 8;       // TF32 s[k][outer] ("outer-major"): 136 = 8 mod 32
constexpr int kTf32LdK = kTf32BK + 4;           // TF32 s[outer][k] ("k-major"): 20
static_assert(kWarpTiledBM == kWarpTiledBN && kTf32BM == kTf32BN, "one loader serves both operands");
static_assert(kWarpTiledLd % 4 == 0 && kTf32LdOuter % 4 == 0 && kTf32LdK % 4 == 0, "float4 rows stay aligned");

// ---- global -> shared: one operand tile ---------------------------------------------------------
// Both operands are loaded as an (outer, k) matrix: a as (m, k), b as (n, k), so one loader serves
// both. A tile is tile_outer x tile_k; each thread loads float4 pieces of it, piece r of thread tid at:
//   k_contiguous (the operand's k stride is the unit one: a row-major, b transposed):
//       4 consecutive k of one outer row: outer = idx / (tile_k / 4), k = 4 (idx % (tile_k / 4))
//   else (outer contiguous: a transposed, b row-major):
//       4 consecutive outer of one k:     k = idx / (tile_outer / 4), outer = 4 (idx % (tile_outer / 4))
// with idx = tid + r * threads. Consecutive threads walk the contiguous direction (coalesced).
struct TilePos {
  int outer, k;
};
GRAFT_HOST_DEVICE constexpr TilePos tile_vector_position(bool k_contiguous, int tile_outer, int tile_k, int threads,
                                                         int tid, int r) {
  const int idx = tid + r * threads;
  return k_contiguous ? TilePos{idx / (tile_k / 4), 4 * (idx % (tile_k / 4))}
                      : TilePos{4 * (idx % (tile_outer / 4)), idx / (tile_outer / 4)};
}

// Whether an operand's tiles can be read as aligned float4: the unit stride is along the loaded
// direction, the other stride and every batch stride are multiples of 4 floats, the base is 16-byte
// aligned, and the extent along the unit stride is a multiple of 4 (a float4 is then wholly inside or
// wholly past the edge). Otherwise the loader reads the same positions one float at a time.
inline bool float4_loads_ok(const void* base, int64_t unit_stride, int64_t other_stride, int64_t extent_along,
                            bool batch_strides_multiple_of_4) {
  return unit_stride == 1 && other_stride % 4 == 0 && extent_along % 4 == 0 && batch_strides_multiple_of_4 &&
         reinterpret_cast<uintptr_t>(base) % 16 == 0;
}

// ---- the SIMT warp-tiled kernel's threads ------------------------------------------------------
// 8 warps as 2 (m) x 4 (n), each 64 x 32 of the 128 x 128 tile; a warp's 32 lanes as 8 (m) x 4 (n),
// each owning 2 x 2 blocks of 4 x 4: rows i = 0..7 and columns j = 0..7 of thread tid are at
//   row = 64 (warp / 4) + 32 (i / 4) + 4 (lane / 4) + i % 4
//   col = 32 (warp % 4) + 16 (j / 4) + 4 (lane % 4) + j % 4
// so at each k a lane reads two float4 of a's tile and two of b's, and the 8 (4) lanes that read
// different ones read 32 (16) consecutive floats: no bank conflicts, the rest broadcast.
GRAFT_HOST_DEVICE constexpr int simt_row(int tid, int i) {
  return 64 * ((tid / 32) / 4) + 32 * (i / 4) + 4 * ((tid % 32) / 4) + i % 4;
}
GRAFT_HOST_DEVICE constexpr int simt_col(int tid, int j) {
  return 32 * ((tid / 32) % 4) + 16 * (j / 4) + 4 * ((tid % 32) % 4) + j % 4;
}

// ---- the TF32 kernel's warps and the mma.sync.m16n8k8 fragments ---------------------------------
// 8 warps as 2 (m) x 4 (n), each 64 x 32: 4 m16 tiles x 4 n8 tiles of mma.sync.m16n8k8.
GRAFT_HOST_DEVICE constexpr int tf32_warp_row0(int warp) { return 64 * (warp / 4); }
GRAFT_HOST_DEVICE constexpr int tf32_warp_col0(int warp) { return 32 * (warp % 4); }
// The PTX ISA's fragment layouts of mma.m16n8k8 with .tf32 inputs (group = lane / 4, t = lane % 4):
//   a (16 x 8, row):  a[r] at row group + 8 (r % 2), col t + 4 (r / 2)          r = 0..3
//   b (8 x 8, col):   b[r] at row (k) t + 4 r, col (n) group                     r = 0..1
//   c (16 x 8, f32):  c[r] at row group + 8 (r / 2), col 2 t + r % 2             r = 0..3
GRAFT_HOST_DEVICE constexpr int mma_a_row(int lane, int r) { return lane / 4 + 8 * (r % 2); }
GRAFT_HOST_DEVICE constexpr int mma_a_col(int lane, int r) { return lane % 4 + 4 * (r / 2); }
GRAFT_HOST_DEVICE constexpr int mma_b_row(int lane, int r) { return lane % 4 + 4 * r; }
GRAFT_HOST_DEVICE constexpr int mma_b_col(int lane) { return lane / 4; }
GRAFT_HOST_DEVICE constexpr int mma_c_row(int lane, int r) { return lane / 4 + 8 * (r / 2); }
GRAFT_HOST_DEVICE constexpr int mma_c_col(int lane, int r) { return 2 * (lane % 4) + r % 2; }
// bfloat16 mma.sync.m16n8k16 (PTX ISA, "matrix fragments for mma.m16n8k16"): register r of a lane holds
// two k-consecutive elements, the lower k in the low half. a (16 x 16, row): r = 0..3 at row
// bf16_mma_a_row, k bf16_mma_a_col and + 1; b (16 x 8, col): r = 0..1 at k bf16_mma_b_row and + 1,
// column mma_b_col; c as for TF32 (mma_c_row, mma_c_col).
GRAFT_HOST_DEVICE constexpr int bf16_mma_a_row(int lane, int r) { return lane / 4 + 8 * (r % 2); }
GRAFT_HOST_DEVICE constexpr int bf16_mma_a_col(int lane, int r) { return 2 * (lane % 4) + 8 * (r / 2); }
GRAFT_HOST_DEVICE constexpr int bf16_mma_b_row(int lane, int r) { return 2 * (lane % 4) + 8 * r; }
// The bfloat16 kernel: 128 x 128 block tile, k steps of 32, 8 warps of 64 x 32 (tf32_warp_row0 / col0);
// shared tiles [outer][k] with rows of kBf16LdK halves (80 bytes: the 8 rows a fragment read touches
// fall in distinct banks).
constexpr int kBf16BM = 128, kBf16BN = 128, kBf16BK = 32, kBf16Threads = 256, kBf16LdK = kBf16BK + 8;

// ---- the pipelined 16-bit kernel: cp.async staging and ldmatrix fragments -----------------------
// Two 16-bit kernels share the block and warp tiles above (gemm_bf16.cuh):
//   Simple     element-by-element loads of any strides into one shared buffer
//   Pipelined  both operands k-contiguous: 16-byte cp.async copies into two buffers (the next k step
//              in flight during the mma of this one), fragments read by ldmatrix.x4
enum class Bf16GemmKernel { Simple = 0, Pipelined = 1 };
inline const char* bf16_gemm_kernel_name(Bf16GemmKernel k) {
  return k == Bf16GemmKernel::Pipelined ? "16-bit mma.sync 128x128, cp.async + ldmatrix" : "16-bit mma.sync 128x128";
}
// Tests and the benchmark pin one here (-1: Pipelined where it fits, else Simple).
inline std::atomic<int> forced_bf16_gemm_kernel{-1};

// Whether the pipelined kernel takes a problem: a (i, p) at i a_rs + p and b (p, j) at j b_cs + p (k
// contiguous in both), every row start and batch offset 16-byte aligned (8 halves: the strides, the
// batch strides and the data pointers' element offsets), and K a multiple of 8, so a 16-byte copy
// never straddles the end of a row.
inline bool pipelined_fits(int64_t K, int64_t a_rs, int64_t a_cs, int64_t b_rs, int64_t b_cs,
                           const int64_t* batch_strides, int n_batch_strides, uintptr_t a_addr, uintptr_t b_addr) {
  if (a_cs != 1 || b_rs != 1 || K % 8 != 0 || a_rs % 8 != 0 || b_cs % 8 != 0) return false;
  for (int i = 0; i < n_batch_strides; ++i)
    if (batch_strides[i] % 8 != 0) return false;
  return a_addr % 16 == 0 && b_addr % 16 == 0;
}

// The cp.async copies of one [128][32] operand tile: chunk c (of 512, two per thread: c = tid and
// tid + 256) is 8 halves, row c / 4, k (c % 4) 8.
constexpr int kBf16Chunks = kBf16BM * kBf16BK / 8;
GRAFT_HOST_DEVICE constexpr int bf16_chunk_row(int c) { return c / (kBf16BK / 8); }
GRAFT_HOST_DEVICE constexpr int bf16_chunk_k(int c) { return c % (kBf16BK / 8) * 8; }

// ldmatrix.x4 (PTX: lanes 8 m .. 8 m + 7 give the row addresses of matrix m; register m of lane t
// receives row t / 4, halves 2 (t % 4), + 1 of matrix m). The row address lane supplies:
//   a  (the 16 x 16 A fragment at rows row0.., k k0..): matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7),
//      (rows 0-7, k 8-15), (rows 8-15, k 8-15), i.e. registers r = 0..3 of bf16_mma_a_row / _col
//   b  (two n8 B fragments at outer n0.., k k0..): matrices (n 0-7, k 0-7), (n 0-7, k 8-15),
//      (n 8-15, k 0-7), (n 8-15, k 8-15), i.e. registers b[j][r] for j = m / 2, r = m % 2
GRAFT_HOST_DEVICE constexpr int ldmatrix_a_row(int lane) { return 8 * ((lane / 8) % 2) + lane % 8; }
GRAFT_HOST_DEVICE constexpr int ldmatrix_a_k(int lane) { return 8 * (lane / 16); }
GRAFT_HOST_DEVICE constexpr int ldmatrix_b_outer(int lane) { return 8 * (lane / 16) + lane % 8; }
GRAFT_HOST_DEVICE constexpr int ldmatrix_b_k(int lane) { return 8 * ((lane / 8) % 2); }

// Where element (outer, k) of a TF32 operand tile lives in shared memory. The layout follows the
// operand's global layout, so the global -> shared copy is one float4 store per piece:
//   k_contiguous:  s[outer][k], rows of kTf32LdK      else:  s[k][outer], rows of kTf32LdOuter
// Either way the fragment reads (8 groups x 4 t of a warp) hit 32 different banks.
GRAFT_HOST_DEVICE constexpr int tf32_smem_index(bool k_contiguous, int outer, int k) {
  return k_contiguous ? outer * kTf32LdK + k : k * kTf32LdOuter + outer;
}
constexpr int kTf32TileFloats = kTf32BM * kTf32LdK > kTf32BK * kTf32LdOuter ? kTf32BM * kTf32LdK
                                                                            : kTf32BK * kTf32LdOuter;

// ---- the order of the output tiles -------------------------------------------------------------
// Block b of a 1-D grid computes output tile (tm, tn). Blocks run roughly in order of b, so b walks
// the tiles in groups of `group` tile rows, column by column inside a group: the blocks running at one
// time share a few row panels of a and column panels of b, which stay in L2 (Triton's "grouped
// ordering"). A bijection of [0, tiles_m tiles_n) onto the tiles.
struct TileCoord {
  int64_t tm, tn;
};
GRAFT_HOST_DEVICE constexpr TileCoord tile_of_block(int64_t b, int64_t tiles_m, int64_t tiles_n, int64_t group) {
  const int64_t per_group = group * tiles_n;
  const int64_t first_m = (b / per_group) * group;
  const int64_t rows = tiles_m - first_m < group ? tiles_m - first_m : group;  // the last group may be short
  const int64_t within = b % per_group;
  return TileCoord{first_m + within % rows, within / rows};
}
constexpr int64_t kTileGroup = 8;

// ---- TF32 ---------------------------------------------------------------------------------------
// x rounded to TF32 as cvt.rna.tf32.f32 does: to nearest with ties away from zero at 10 explicit
// mantissa bits, the low 13 bits of the float32 then zero. Adding half of the dropped range to the
// magnitude bits and truncating is exactly that (a carry into the exponent is the correct round-up,
// to the next binade or to infinity). Infinities and NaN pass unchanged. Tests use it to form the
// product the tensor cores compute: TF32 x TF32 products are exact in float32.
inline float round_to_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  float y;
  std::memcpy(&y, &u, 4);
  return y;
}

}  // namespace graft::kernels::cuda::gemm_plan
