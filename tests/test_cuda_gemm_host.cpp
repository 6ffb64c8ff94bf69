// tests/test_cuda_gemm_host.cpp - the CUDA GEMM's index math (kernels/graft/kernels/cuda/gemm_plan.hpp),
// checked on the CPU: these run without a GPU (and without nvcc). The tile loader covers each tile
// once, the SIMT threads and the mma.sync fragments cover theirs once, the hot shared-memory accesses
// are free of bank conflicts, the block order is a bijection onto the tiles, the kernel choice, the
// TF32 rounding (against a brute-force nearest-with-ties-away in double), and the precision setting.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "graft/core/precision.hpp"
#include "graft/kernels/cuda/gemm_plan.hpp"

using namespace graft::kernels::cuda::gemm_plan;

namespace {

// The 32 banks of 4-byte words: word addresses hit distinct banks iff their residues mod 32 differ.
bool distinct_banks(const std::vector<int>& word_addresses) {
  std::set<int> banks;
  for (int w : word_addresses) banks.insert(w % 32);
  return banks.size() == word_addresses.size();
}

// Every (outer, k) of a tile_outer x tile_k tile is in exactly one thread's float4 piece.
void check_loader_covers(bool k_contiguous, int tile_outer, int tile_k, int threads) {
  INFO("k_contiguous " << k_contiguous << ", tile " << tile_outer << " x " << tile_k << ", " << threads << " threads");
  const int pieces = tile_outer * tile_k / (4 * threads);
  REQUIRE(pieces * 4 * threads == tile_outer * tile_k);
  std::vector<int> hits(size_t(tile_outer * tile_k), 0);
  for (int tid = 0; tid < threads; ++tid)
    for (int r = 0; r < pieces; ++r) {
      const TilePos q = tile_vector_position(k_contiguous, tile_outer, tile_k, threads, tid, r);
      REQUIRE((k_contiguous ? q.k : q.outer) % 4 == 0);  // float4 pieces start 16-byte aligned
      for (int i = 0; i < 4; ++i) {
        const int o = k_contiguous ? q.outer : q.outer + i, k = k_contiguous ? q.k + i : q.k;
        REQUIRE(o < tile_outer);
        REQUIRE(k < tile_k);
        ++hits[size_t(o * tile_k + k)];
      }
    }
  for (int h : hits) REQUIRE(h == 1);
  // Coalescing: thread tid + 1's piece continues thread tid's along the contiguous dim (within a row).
  const TilePos q0 = tile_vector_position(k_contiguous, tile_outer, tile_k, threads, 0, 0);
  const TilePos q1 = tile_vector_position(k_contiguous, tile_outer, tile_k, threads, 1, 0);
  CHECK((k_contiguous ? q1.k - q0.k : q1.outer - q0.outer) == 4);
}

}  // namespace

TEST_CASE("CUDA GEMM plan: the tile loader covers each tile once, coalesced", "[cuda_host]") {
  for (bool kc : {true, false}) {
    check_loader_covers(kc, kWarpTiledBM, kWarpTiledBK, kWarpTiledThreads);
    check_loader_covers(kc, kTf32BM, kTf32BK, kTf32Threads);
  }
}

TEST_CASE("CUDA GEMM plan: SIMT warp tiling covers the 128 x 128 tile, conflict-free", "[cuda_host]") {
  std::vector<int> hits(128 * 128, 0);
  for (int tid = 0; tid < kWarpTiledThreads; ++tid)
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j) ++hits[size_t(simt_row(tid, i) * 128 + simt_col(tid, j))];
  for (int h : hits) REQUIRE(h == 1);
  for (int tid = 0; tid < kWarpTiledThreads; ++tid) {
    // The kernel reads rows row0 + {0..3, 32..35} and columns col0 + {0..3, 16..19} as float4.
    for (int i = 0; i < 8; ++i) REQUIRE(simt_row(tid, i) == simt_row(tid, 0) + 32 * (i / 4) + i % 4);
    for (int j = 0; j < 8; ++j) REQUIRE(simt_col(tid, j) == simt_col(tid, 0) + 16 * (j / 4) + j % 4);
    REQUIRE(simt_row(tid, 0) % 4 == 0);
    REQUIRE(simt_col(tid, 0) % 4 == 0);
  }
  for (int warp = 0; warp < kWarpTiledThreads / 32; ++warp) {
    // The distinct float4 a warp reads at one k are consecutive: 8 of a (32 floats), 4 of b (16).
    std::set<int> rows, cols;
    for (int lane = 0; lane < 32; ++lane) {
      rows.insert(simt_row(32 * warp + lane, 0));
      cols.insert(simt_col(32 * warp + lane, 0));
    }
    CHECK(rows.size() == 8);
    CHECK(*rows.rbegin() - *rows.begin() == 28);
    CHECK(cols.size() == 4);
    CHECK(*cols.rbegin() - *cols.begin() == 12);
    // Staging a k-contiguous piece transposed (s[k + i][outer], rows of kWarpTiledLd): 32 banks.
    for (int i = 0; i < 4; ++i) {
      std::vector<int> words;
      for (int lane = 0; lane < 32; ++lane) {
        const TilePos q = tile_vector_position(true, kWarpTiledBM, kWarpTiledBK, kWarpTiledThreads, 32 * warp + lane, 0);
        words.push_back((q.k + i) * kWarpTiledLd + q.outer);
      }
      INFO("warp " << warp << ", element " << i);
      CHECK(distinct_banks(words));
    }
  }
}

TEST_CASE("CUDA GEMM plan: mma.m16n8k8 fragments and the TF32 tiles", "[cuda_host]") {
  std::vector<int> a_hits(16 * 8, 0), b_hits(8 * 8, 0), c_hits(16 * 8, 0);
  for (int lane = 0; lane < 32; ++lane) {
    for (int r = 0; r < 4; ++r) ++a_hits[size_t(mma_a_row(lane, r) * 8 + mma_a_col(lane, r))];
    for (int r = 0; r < 2; ++r) ++b_hits[size_t(mma_b_row(lane, r) * 8 + mma_b_col(lane))];
    for (int r = 0; r < 4; ++r) ++c_hits[size_t(mma_c_row(lane, r) * 8 + mma_c_col(lane, r))];
  }
  for (int h : a_hits) REQUIRE(h == 1);
  for (int h : b_hits) REQUIRE(h == 1);
  for (int h : c_hits) REQUIRE(h == 1);
  // The 8 warps' 64 x 32 tiles cover the 128 x 128 block tile.
  std::vector<int> warp_hits(128 * 128, 0);
  for (int w = 0; w < kTf32Threads / 32; ++w)
    for (int i = 0; i < 64; ++i)
      for (int j = 0; j < 32; ++j) ++warp_hits[size_t((tf32_warp_row0(w) + i) * 128 + tf32_warp_col0(w) + j)];
  for (int h : warp_hits) REQUIRE(h == 1);
  for (bool kc : {true, false}) {
    INFO("k_contiguous " << kc);
    // Fragment reads: for each register, the 32 lanes hit 32 banks (a: rows of an m16 tile, b: of an n8 tile).
    for (int kk = 0; kk < kTf32BK; kk += 8)
      for (int base : {0, 16, 64, 112}) {  // the first row of an m16 / n8 tile
        for (int r = 0; r < 4; ++r) {
          std::vector<int> words;
          for (int lane = 0; lane < 32; ++lane)
            words.push_back(tf32_smem_index(kc, base + mma_a_row(lane, r), kk + mma_a_col(lane, r)));
          CHECK(distinct_banks(words));
        }
        for (int r = 0; r < 2; ++r) {
          std::vector<int> words;
          for (int lane = 0; lane < 32; ++lane)
            words.push_back(tf32_smem_index(kc, base + mma_b_col(lane), kk + mma_b_row(lane, r)));
          CHECK(distinct_banks(words));
        }
      }
    // Staging: every piece is 4 consecutive words at a 16-byte boundary, inside the stage, and the
    // tile's elements land at distinct words.
    std::set<int> words;
    for (int tid = 0; tid < kTf32Threads; ++tid)
      for (int r = 0; r < kTf32BM * kTf32BK / (4 * kTf32Threads); ++r) {
        const TilePos q = tile_vector_position(kc, kTf32BM, kTf32BK, kTf32Threads, tid, r);
        const int w0 = tf32_smem_index(kc, q.outer, q.k);
        REQUIRE(w0 % 4 == 0);
        for (int i = 0; i < 4; ++i) {
          const int o = kc ? q.outer : q.outer + i, k = kc ? q.k + i : q.k;
          REQUIRE(tf32_smem_index(kc, o, k) == w0 + i);
          REQUIRE(w0 + i < kTf32TileFloats);
          words.insert(w0 + i);
        }
      }
    CHECK(int(words.size()) == kTf32BM * kTf32BK);
  }
}

TEST_CASE("CUDA GEMM plan: bfloat16 mma.m16n8k16 fragments, and conflict-free 32-bit fragment reads", "[cuda_host]") {
  // Each lane's register r holds elements (row, k) and (row, k + 1) of a, (k, col) and (k + 1, col) of b:
  // together the 32 lanes cover a (16 x 16) and b (16 x 8) exactly once.
  std::vector<int> a_hits(16 * 16, 0), b_hits(16 * 8, 0);
  for (int lane = 0; lane < 32; ++lane) {
    for (int r = 0; r < 4; ++r)
      for (int e = 0; e < 2; ++e) ++a_hits[size_t(bf16_mma_a_row(lane, r) * 16 + bf16_mma_a_col(lane, r) + e)];
    for (int r = 0; r < 2; ++r)
      for (int e = 0; e < 2; ++e) ++b_hits[size_t((bf16_mma_b_row(lane, r) + e) * 8 + mma_b_col(lane))];
  }
  for (int h : a_hits) REQUIRE(h == 1);
  for (int h : b_hits) REQUIRE(h == 1);
  // Shared tiles [outer][k] of kBf16LdK halves: a fragment register is one aligned 32-bit word, and the
  // 32 lanes of one register read 32 distinct banks.
  REQUIRE(kBf16LdK % 2 == 0);
  for (int kk = 0; kk < kBf16BK; kk += 16)
    for (int base : {0, 16, 64, 112}) {
      for (int r = 0; r < 4; ++r) {
        std::vector<int> words;
        for (int lane = 0; lane < 32; ++lane)
          words.push_back(((base + bf16_mma_a_row(lane, r)) * kBf16LdK + kk + bf16_mma_a_col(lane, r)) / 2);
        CHECK(distinct_banks(words));
      }
      for (int r = 0; r < 2; ++r) {
        std::vector<int> words;
        for (int lane = 0; lane < 32; ++lane)
          words.push_back(((base + mma_b_col(lane)) * kBf16LdK + kk + bf16_mma_b_row(lane, r)) / 2);
        CHECK(distinct_banks(words));
      }
    }
  // The 8 warps' 64 x 32 tiles cover the 128 x 128 block tile (the TF32 kernel's warp layout).
  REQUIRE(kBf16Threads == kTf32Threads);
  REQUIRE(kBf16BM == 2 * 64);
  REQUIRE(kBf16BN == 4 * 32);
}

TEST_CASE("CUDA GEMM plan: the pipelined 16-bit kernel's copies, ldmatrix fragments and when it is taken",
          "[cuda_host]") {
  // The 512 16-byte chunks cover a [128][32] tile once; each starts on a 16-byte boundary of the
  // shared row (kBf16LdK halves = 80 bytes) and of a k-contiguous global row.
  std::vector<int> hits(size_t(kBf16BM * kBf16BK), 0);
  for (int c = 0; c < kBf16Chunks; ++c) {
    REQUIRE(bf16_chunk_k(c) % 8 == 0);
    REQUIRE((bf16_chunk_row(c) * kBf16LdK + bf16_chunk_k(c)) * 2 % 16 == 0);
    for (int e = 0; e < 8; ++e) ++hits[size_t(bf16_chunk_row(c) * kBf16BK + bf16_chunk_k(c) + e)];
  }
  for (int h : hits) REQUIRE(h == 1);
  REQUIRE(kBf16Chunks % kBf16Threads == 0);
  // ldmatrix.x4 emulated from the PTX ISA's description: lane 8 m + i gives the address of row i of
  // matrix m; register m of lane t receives halves 2 (t % 4), + 1 of row t / 4 of matrix m. The
  // registers must equal the direct fragment reads (bf16_mma_* layouts) of the same shared tile.
  // Element (outer, k) of the tile holds the code outer * 64 + k.
  auto ldmatrix = [](int (&got)[32][4][2], auto row_of, auto k_of, int row0, int k0) {
    for (int t = 0; t < 32; ++t)
      for (int m = 0; m < 4; ++m) {
        const int src = 8 * m + t / 4;  // the lane whose address is row t / 4 of matrix m
        for (int e = 0; e < 2; ++e) got[t][m][e] = (row0 + row_of(src)) * 64 + k0 + k_of(src) + 2 * (t % 4) + e;
      }
  };
  for (int row0 : {0, 16, 48, 112})
    for (int k0 : {0, 16}) {
      int a[32][4][2], b[32][4][2];
      ldmatrix(a, ldmatrix_a_row, ldmatrix_a_k, row0, k0);
      ldmatrix(b, ldmatrix_b_outer, ldmatrix_b_k, row0, k0);
      for (int lane = 0; lane < 32; ++lane)
        for (int e = 0; e < 2; ++e) {
          for (int r = 0; r < 4; ++r)  // A: register r of the m16 tile at row0
            REQUIRE(a[lane][r][e] == (row0 + bf16_mma_a_row(lane, r)) * 64 + k0 + bf16_mma_a_col(lane, r) + e);
          for (int m = 0; m < 4; ++m)  // B: register m % 2 of the n8 tile at row0 + 8 (m / 2)
            REQUIRE(b[lane][m][e] == (row0 + 8 * (m / 2) + mma_b_col(lane)) * 64 + k0 + bf16_mma_b_row(lane, m % 2) + e);
        }
      // each 8-lane phase of ldmatrix reads 8 rows of 16 bytes: in kBf16LdK rows they fill 32 distinct banks
      using Map = int (*)(int);
      for (auto [row_of, k_of] : {std::pair<Map, Map>{&ldmatrix_a_row, &ldmatrix_a_k},
                                  std::pair<Map, Map>{&ldmatrix_b_outer, &ldmatrix_b_k}})
        for (int m = 0; m < 4; ++m) {
          std::vector<int> words;
          for (int i = 0; i < 8; ++i) {
            const int lane = 8 * m + i, half = (row0 + row_of(lane)) * kBf16LdK + k0 + k_of(lane);
            REQUIRE(half * 2 % 16 == 0);  // ldmatrix's rows are 16-byte aligned
            for (int w = 0; w < 4; ++w) words.push_back(half / 2 + w);
          }
          CHECK(distinct_banks(words));
        }
    }
  // Taken only for k-contiguous operands with 16-byte aligned rows, batch offsets and pointers.
  const int64_t none[1] = {0}, batch8[2] = {64, 8}, batch3[1] = {3};
  CHECK(pipelined_fits(64, 64, 1, 1, 64, none, 0, 0x1000, 0x2000));      // x [M, 64] @ w [N, 64]^T
  CHECK(pipelined_fits(64, 64, 1, 1, 64, batch8, 2, 0x1000, 0x2010));
  CHECK_FALSE(pipelined_fits(64, 64, 1, 1, 64, batch3, 1, 0x1000, 0x2000));  // a batch stride of 3
  CHECK_FALSE(pipelined_fits(60, 60, 1, 1, 60, none, 0, 0x1000, 0x2000));    // K % 8 != 0
  CHECK_FALSE(pipelined_fits(64, 64, 1, 32, 1, none, 0, 0x1000, 0x2000));    // b row-major [K, N]
  CHECK_FALSE(pipelined_fits(64, 1, 64, 1, 64, none, 0, 0x1000, 0x2000));    // a transposed
  CHECK_FALSE(pipelined_fits(64, 64, 1, 1, 64, none, 0, 0x1002, 0x2000));    // a view at an odd offset
}

TEST_CASE("CUDA GEMM plan: the grouped block order is a bijection onto the tiles", "[cuda_host]") {
  for (int64_t tm : {1, 3, 8, 9, 17, 64})
    for (int64_t tn : {1, 2, 7, 8, 33}) {
      INFO(tm << " x " << tn << " tiles");
      std::vector<int> hits(size_t(tm * tn), 0);
      for (int64_t b = 0; b < tm * tn; ++b) {
        const TileCoord t = tile_of_block(b, tm, tn, kTileGroup);
        REQUIRE(t.tm >= 0);
        REQUIRE(t.tm < tm);
        REQUIRE(t.tn >= 0);
        REQUIRE(t.tn < tn);
        ++hits[size_t(t.tm * tn + t.tn)];
      }
      for (int h : hits) REQUIRE(h == 1);
    }
  // Inside a full group, consecutive blocks go down a column of 8 tile rows.
  CHECK(tile_of_block(0, 16, 16, 8).tm == 0);
  CHECK(tile_of_block(7, 16, 16, 8).tm == 7);
  CHECK(tile_of_block(8, 16, 16, 8).tn == 1);
  CHECK(tile_of_block(128, 16, 16, 8).tm == 8);
}

TEST_CASE("CUDA GEMM plan: the kernel choice and the float4 conditions", "[cuda_host]") {
  CHECK(choose_gemm_path(false, false, 4096, 4096, 1, 132) == GemmPath::Tiled64);  // float64
  CHECK(choose_gemm_path(false, true, 4096, 4096, 1, 132) == GemmPath::Tiled64);
  CHECK(choose_gemm_path(true, true, 10, 10, 1, 132) == GemmPath::Tf32);
  CHECK(choose_gemm_path(true, false, 4096, 4096, 1, 132) == GemmPath::WarpTiled);
  CHECK(choose_gemm_path(true, false, 256, 256, 1, 132) == GemmPath::Tiled64);  // 4 tiles of 128 for 132 SMs
  CHECK(choose_gemm_path(true, false, 256, 256, 64, 132) == GemmPath::WarpTiled);
  forced_gemm_path = int(GemmPath::WarpTiled);
  CHECK(choose_gemm_path(true, true, 10, 10, 1, 132) == GemmPath::WarpTiled);
  CHECK(choose_gemm_path(false, false, 4096, 4096, 1, 132) == GemmPath::Tiled64);  // float64 has one kernel
  forced_gemm_path = -1;

  alignas(16) float buf[8] = {};
  CHECK(float4_loads_ok(buf, 1, 64, 128, true));
  CHECK_FALSE(float4_loads_ok(buf + 1, 1, 64, 128, true));  // 4 bytes past a 16-byte boundary
  CHECK_FALSE(float4_loads_ok(buf, 2, 64, 128, true));      // not the unit stride
  CHECK_FALSE(float4_loads_ok(buf, 1, 66, 128, true));      // rows not 16-byte aligned
  CHECK_FALSE(float4_loads_ok(buf, 1, 64, 127, true));      // a piece would straddle the edge
  CHECK_FALSE(float4_loads_ok(buf, 1, 64, 128, false));     // a batch stride breaks the alignment
}

TEST_CASE("CUDA GEMM plan: round_to_tf32 is cvt.rna (nearest, ties away from zero)", "[cuda_host]") {
  auto bits = [](float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    return u;
  };
  // Brute force: the two TF32 neighbours of x (low 13 bits cleared, and one TF32 ulp further from 0),
  // the nearer one, ties away from zero; computed in double.
  auto reference = [&](float x) {
    uint32_t u = bits(x) & 0xffffe000u;
    float lo;
    std::memcpy(&lo, &u, 4);
    const uint32_t v = u + 0x2000u;
    float hi;
    std::memcpy(&hi, &v, 4);
    const double dlo = std::fabs(double(x) - double(lo)), dhi = std::fabs(double(hi) - double(x));
    return dhi <= dlo ? hi : lo;  // a tie goes to hi, the larger magnitude
  };
  CHECK(round_to_tf32(1.0f) == 1.0f);
  CHECK(round_to_tf32(1.0f + 0x1p-11f) == 1.0f + 0x1p-10f);   // a tie: away from zero
  CHECK(round_to_tf32(-1.0f - 0x1p-11f) == -1.0f - 0x1p-10f);
  CHECK(round_to_tf32(1.0f + 0x1p-11f - 0x1p-23f) == 1.0f);   // just below the tie
  CHECK(round_to_tf32(1.0f + 0x1p-10f + 0x1p-11f) == 1.0f + 0x1p-9f);  // a tie above an odd mantissa
  CHECK(std::isinf(round_to_tf32(std::numeric_limits<float>::max())));
  CHECK(std::isinf(round_to_tf32(std::numeric_limits<float>::infinity())));
  CHECK(std::isnan(round_to_tf32(std::nanf(""))));
  CHECK(round_to_tf32(0.0f) == 0.0f);
  uint32_t state = 12345u;
  for (int n = 0; n < 100000; ++n) {
    state = state * 1664525u + 1013904223u;  // every sign, exponent and mantissa pattern
    float x;
    std::memcpy(&x, &state, 4);
    if (!std::isfinite(x) || std::fabs(x) > 1e38f) continue;
    const float y = round_to_tf32(x);
    INFO("x = " << x << " (bits " << state << ")");
    REQUIRE((bits(y) & 0x1fffu) == 0);
    REQUIRE(y == reference(x));
  }
}

TEST_CASE("set_float32_matmul_precision: PyTorch's names, bad names throw", "[cuda_host]") {
  CHECK(graft::get_float32_matmul_precision() == "highest");
  CHECK_FALSE(graft::float32_matmul_allows_tf32());
  graft::set_float32_matmul_precision("high");
  CHECK(graft::get_float32_matmul_precision() == "high");
  CHECK(graft::float32_matmul_allows_tf32());
  graft::set_float32_matmul_precision("medium");
  CHECK(graft::float32_matmul_allows_tf32());
  CHECK_THROWS_WITH(graft::set_float32_matmul_precision("fast"),
                    Catch::Contains("expected \"highest\", \"high\" or \"medium\", got \"fast\""));
  CHECK(graft::get_float32_matmul_precision() == "medium");  // unchanged by the bad call
  graft::set_float32_matmul_precision("highest");
  CHECK_FALSE(graft::float32_matmul_allows_tf32());
}
