// tests/test_cuda_attention_host.cpp - the index math of the CUDA attention kernels
// (kernels/graft/kernels/cuda/attention_plan.hpp), checked on the CPU: no GPU and no CUDA header
// needed. How a [*batch, rows, cols] view is addressed, which tiles causal masking skips, that the
// 16 x 16 thread grid covers each tile element once and each accumulator column once, that the hot
// shared-memory accesses are free of bank conflicts, the shared-memory sizes and the kernel choice.
#include <cmath>
#include <vector>

#include "harness.hpp"
#include "graft/kernels/cuda/attention_plan.hpp"

namespace {
using namespace graft;
using namespace graft::kernels::cuda::attention_plan;

// v[b, i, j] of a [*batch, rows, cols] view through its BatchedMatrix equals the view's element.
void check_addressing(const Tensor& view) {
  const BatchedMatrix m = batched_matrix(view.shape(), view.strides());
  const int64_t rows = view.size(-2), cols = view.size(-1), B = view.numel() / std::max<int64_t>(rows * cols, 1);
  const std::vector<double> want = view.contiguous().to_vector();
  const float* base = view.data<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        INFO("b " << b << " i " << i << " j " << j);
        REQUIRE(double(base[m.offset(b, i, j)]) == want[size_t((b * rows + i) * cols + j)]);
      }
}

}  // namespace

TEST_CASE("cuda attention plan: a batched view of any strides is addressed like the tensor", "[cuda-attention-host]") {
  const Tensor x = arange(0.0, 2 * 3 * 5 * 7, 1.0, DType::Float32).reshape({2, 3, 5, 7});
  check_addressing(x);                              // contiguous
  check_addressing(x.permute({1, 0, 3, 2}));        // [3, 2, 7, 5]: every stride permuted
  check_addressing(x.transpose(1, 2));              // head views: [B, T, H, E] seen as [B, H, T, E]
  check_addressing(x.slice(3, 1, 7, 2));            // a column stride of 2
  check_addressing(x.narrow(0, 1, 1).expand({4, 3, 5, 7}));  // a broadcast (stride 0) batch dim
  const Tensor pad = arange(0.0, 2 * 9, 1.0, DType::Float32).reshape({2, 1, 1, 9});
  check_addressing(pad.expand({2, 4, 6, 9}));       // a padding mask broadcast over heads and queries
  check_addressing(x.reshape({6, 5, 7}).select(0, 4).unsqueeze(0));  // an offset view, batch of one
  check_addressing(x.reshape({210}).narrow(0, 0, 35).reshape({5, 7}));  // no batch dims (rank 2)
}

TEST_CASE("cuda attention plan: causal masking skips only tiles no query sees", "[cuda-attention-host]") {
  for (int64_t L : {1, 37, 63, 64, 65, 130, 200})
    for (int64_t S : {1, 37, 64, 100, 129, 256}) {
      INFO("L " << L << " S " << S);
      // forward and dQ: query tile i0 visits keys [0, keys_seen); every key a row of the tile sees is there
      for (int64_t i0 = 0; i0 < L; i0 += kBlockQ) {
        const int64_t bq = std::min<int64_t>(kBlockQ, L - i0);
        int64_t needed = 0;
        for (int64_t i = i0; i < i0 + bq; ++i)
          for (int64_t j = 0; j < S; ++j)
            if (takes_part(true, i, j)) needed = std::max(needed, j + 1);
        CHECK(keys_seen(true, i0, bq, S) == needed);
        CHECK(keys_seen(false, i0, bq, S) == S);
      }
      // dK, dV: key tile j0 visits query tiles from first_query_tile; none before it sees a key of the tile
      for (int64_t j0 = 0; j0 < S; j0 += kBlockK) {
        const int64_t first = first_query_tile(true, j0);
        CHECK(first % kBlockQ == 0);
        CHECK(first_query_tile(false, j0) == 0);
        const int64_t bk = std::min<int64_t>(kBlockK, S - j0);
        for (int64_t i = 0; i < std::min(first, L); ++i)
          for (int64_t j = j0; j < j0 + bk; ++j) CHECK_FALSE(takes_part(true, i, j));
        if (first < L) {  // the first visited tile is needed: its last row sees key j0 when it exists
          const int64_t last = std::min(first + kBlockQ, L) - 1;
          CHECK(takes_part(true, last, j0));
        }
      }
    }
}

TEST_CASE("cuda attention plan: the thread grid covers a tile once and its rows are half-warps",
          "[cuda-attention-host]") {
  std::vector<int> hits(size_t(kBlockQ * kBlockK), 0);
  for (int tid = 0; tid < kThreads; ++tid)
    for (int r = 0; r < kThreadRows; ++r)
      for (int c = 0; c < kThreadCols; ++c) ++hits[size_t(tile_row(tid, r) * kBlockK + tile_col(tid, c))];
  for (int h : hits) REQUIRE(h == 1);
  for (int max_d : {64, 128}) {
    // the accumulator [64, max_d]: each row's columns once among the threads holding that row
    std::vector<int> acc(size_t(kBlockQ * max_d), 0);
    for (int tid = 0; tid < kThreads; ++tid)
      for (int r = 0; r < kThreadRows; ++r)
        for (int c = 0; c < max_d / kGroupCols; ++c) ++acc[size_t(tile_row(tid, r) * max_d + tile_col(tid, c))];
    for (int h : acc) REQUIRE(h == 1);
  }
  // the shuffle partners of a row reduction (xor 8, 4, 2, 1 of the lane) hold the same rows, in one warp
  for (int tid = 0; tid < kThreads; ++tid)
    for (int off = kGroupCols / 2; off > 0; off /= 2) {
      const int partner = tid ^ off;
      REQUIRE(partner / 32 == tid / 32);
      for (int r = 0; r < kThreadRows; ++r) REQUIRE(tile_row(partner, r) == tile_row(tid, r));
    }
}

TEST_CASE("cuda attention plan: the hot shared-memory accesses are free of bank conflicts", "[cuda-attention-host]") {
  {  // the counter itself
    int64_t same[32], unit[32], two[32], wide[32];
    for (int l = 0; l < 32; ++l) {
      same[l] = 5;
      unit[l] = l;
      two[l] = 2 * l;
      wide[l] = 32 * l;
    }
    CHECK(smem_wavefronts(same) == 1);
    CHECK(smem_wavefronts(unit) == 1);
    CHECK(smem_wavefronts(two) == 2);
    CHECK(smem_wavefronts(wide) == 32);
  }
  for (int max_d : {64, 128}) {
    const int ld = head_ld(max_d);
    INFO("head dim variant " << max_d << " (row length " << ld << ")");
    for (int warp = 0; warp < kThreads / 32; ++warp) {
      for (int k = 0; k < max_d; k += 7) {
        for (int r = 0; r < kThreadRows; ++r) {
          int64_t idx[32];
          for (int l = 0; l < 32; ++l) idx[l] = int64_t(tile_row(32 * warp + l, r)) * ld + k;  // q[row][e]
          CHECK(smem_wavefronts(idx) == 1);
          for (int l = 0; l < 32; ++l) idx[l] = int64_t(tile_row(32 * warp + l, r)) * kScoreLd + k % kBlockK;
          CHECK(smem_wavefronts(idx) == 1);  // P[row][jj], dS[row][jj]
        }
        for (int c = 0; c < kThreadCols; ++c) {
          int64_t idx[32];
          for (int l = 0; l < 32; ++l) idx[l] = int64_t(tile_col(32 * warp + l, c)) * ld + k;  // k[col][e]
          CHECK(smem_wavefronts(idx) == 1);
        }
        for (int c = 0; c < max_d / kGroupCols; ++c) {
          int64_t idx[32];
          for (int l = 0; l < 32; ++l) idx[l] = int64_t(k % kBlockK) * ld + tile_col(32 * warp + l, c);  // v[jj][col]
          CHECK(smem_wavefronts(idx) == 1);
        }
      }
      for (int r = 0; r < kThreadRows; ++r)
        for (int c = 0; c < kThreadCols; ++c) {
          int64_t idx[32];  // the score-tile writes: P[row][col] and (P^T, dS^T)[key][query]
          for (int l = 0; l < 32; ++l)
            idx[l] = int64_t(tile_row(32 * warp + l, r)) * kScoreLd + tile_col(32 * warp + l, c);
          CHECK(smem_wavefronts(idx) == 1);
        }
    }
  }
}

TEST_CASE("cuda attention plan: shared memory and the kernel choice", "[cuda-attention-host]") {
  // floats: forward 2 * 64 * 129 + 64 * 68 = 20864 (83456 bytes); backward dK/dV 4 * 64 * 129 +
  // 2 * 64 * 68 + 128 = 41856 (167424 bytes); backward dQ 37504 (150016 bytes): all within Hopper's
  // 227 KiB opt-in, and the 64 variant (dK/dV 101888 bytes) leaves room for two blocks per SM.
  CHECK(forward_smem_floats(128) == 20864);
  CHECK(backward_kv_smem_floats(128) == 41856);
  CHECK(backward_q_smem_floats(128) == 37504);
  CHECK(backward_kv_smem_floats(64) * 4 * 2 <= kHopperSmemOptin);
  for (int d : {64, 128}) {
    CHECK(tiled_fits(forward_smem_floats(d) * 4, int64_t(kHopperSmemOptin)));
    CHECK(tiled_fits(backward_kv_smem_floats(d) * 4, int64_t(kHopperSmemOptin)));
    CHECK(tiled_fits(backward_q_smem_floats(d) * 4, int64_t(kHopperSmemOptin)));
  }
  CHECK_FALSE(tiled_fits(backward_kv_smem_floats(128) * 4, 101376));  // sm_86's 99 KiB: the per-row kernels
  CHECK(tiled_head_dim(true, 64, 64) == 64);
  CHECK(tiled_head_dim(true, 32, 17) == 64);
  CHECK(tiled_head_dim(true, 1, 1) == 64);
  CHECK(tiled_head_dim(true, 65, 64) == 128);
  CHECK(tiled_head_dim(true, 64, 128) == 128);
  CHECK(tiled_head_dim(true, 128, 128) == 128);
  CHECK(tiled_head_dim(true, 129, 64) == 0);
  CHECK(tiled_head_dim(true, 64, 160) == 0);
  CHECK(tiled_head_dim(false, 64, 64) == 0);  // float64: the per-row kernels
  // the dropout draws: element n is word n % 4 of counter n / 4
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(3), int64_t(4), int64_t(5), int64_t(1023), int64_t(1) << 40})
    CHECK(int64_t(4 * philox_counter(n)) + philox_word(n) == n);
}
