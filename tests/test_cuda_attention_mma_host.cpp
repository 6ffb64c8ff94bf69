// tests/test_cuda_attention_mma_host.cpp - the index math of the 16-bit tensor-core attention kernels
// (kernels/graft/kernels/cuda/attention_mma_plan.hpp), checked on the CPU: no GPU and no CUDA header
// needed. The head-dim variants, the shared-memory layouts, that fragment reads of every shared tile
// are free of bank conflicts, and - through a host emulation of one warp's mma.m16n8k16 built on the
// PTX fragment layouts - that the kernels' two warp primitives (smem x smem, and regs x smem with an
// accumulator reused as the A operand) compute the products they claim.
#include <array>
#include <cstdint>
#include <vector>

#include "harness.hpp"
#include "graft/kernels/cuda/attention_mma_plan.hpp"
#include "graft/kernels/cuda/attention_plan.hpp"  // smem_wavefronts

namespace {
using namespace graft::kernels::cuda::attention_mma_plan;
using graft::kernels::cuda::attention_plan::smem_wavefronts;

// One warp's accumulator of a 16 x 8 n8 product: acc[lane][j][r] (the m16n8 tiles j, registers r).
using Acc = std::vector<std::array<std::array<float, 4>, 16>>;  // up to 16 n8 tiles (128 columns)

// mma.m16n8k16 of one warp on the host, through the PTX fragment layouts: each lane's a registers
// (pairs of k-consecutive values) and b registers are placed where the layouts say, multiplied, and
// each c register gets the element of its (row, column).
void emulate_mma(Acc& acc, int j, const float (&a)[32][4][2], const float (&b)[32][2][2]) {
  float A[16][16] = {}, B[16][8] = {};
  for (int lane = 0; lane < 32; ++lane) {
    for (int r = 0; r < 4; ++r)
      for (int e = 0; e < 2; ++e) A[bf16_mma_a_row(lane, r)][bf16_mma_a_col(lane, r) + e] = a[lane][r][e];
    for (int r = 0; r < 2; ++r)
      for (int e = 0; e < 2; ++e) B[bf16_mma_b_row(lane, r) + e][mma_b_col(lane)] = b[lane][r][e];
  }
  for (int lane = 0; lane < 32; ++lane)
    for (int r = 0; r < 4; ++r)
      for (int k = 0; k < 16; ++k) acc[size_t(lane)][size_t(j)][size_t(r)] += A[mma_c_row(lane, r)][k] * B[k][mma_c_col(lane, r)];
}

// The B fragment of n8 tile j at k step k0 of a shared tile [n][k] (rows of ldb), as the kernels read it.
void b_fragment(float (&b)[32][2][2], const std::vector<float>& tile, int ldb, int j, int k0) {
  for (int lane = 0; lane < 32; ++lane)
    for (int r = 0; r < 2; ++r)
      for (int e = 0; e < 2; ++e) b[lane][r][e] = tile[size_t(b_frag_index(lane, r, 8 * j, k0, ldb) + e)];
}

// warp_mma_ss of attention_mma.cuh: acc += A B^T, A 16 rows of a shared tile [row][k] (lda), B [n][k] (ldb).
void warp_ss(Acc& acc, int n8, int kK, const std::vector<float>& a, int lda, const std::vector<float>& b, int ldb) {
  for (int k0 = 0; k0 < kK; k0 += 16) {
    float af[32][4][2];
    for (int lane = 0; lane < 32; ++lane)
      for (int r = 0; r < 4; ++r)
        for (int e = 0; e < 2; ++e) af[lane][r][e] = a[size_t(a_frag_index(lane, r, 0, k0, lda) + e)];
    for (int j = 0; j < n8; ++j) {
      float bf[32][2][2];
      b_fragment(bf, b, ldb, j, k0);
      emulate_mma(acc, j, af, bf);
    }
  }
}

// warp_mma_rs of attention_mma.cuh: acc += P B^T, P the warp's 16 x kK accumulator p, B [n][k] (ldb).
void warp_rs(Acc& acc, int n8, int kK, const Acc& p, const std::vector<float>& b, int ldb) {
  for (int t = 0; t < kK / 16; ++t) {
    float af[32][4][2];
    for (int lane = 0; lane < 32; ++lane)
      for (int r = 0; r < 4; ++r)
        for (int e = 0; e < 2; ++e)
          af[lane][r][e] = p[size_t(lane)][size_t(2 * t + a_from_c_tile(r))][size_t(a_from_c_reg(r) + e)];
    for (int j = 0; j < n8; ++j) {
      float bf[32][2][2];
      b_fragment(bf, b, ldb, j, 16 * t);
      emulate_mma(acc, j, af, bf);
    }
  }
}

// Small integers: every product and sum below is exact in float, so the checks are equalities.
float value(int seed, int i, int j) { return float((seed * 7 + i * 13 + j * 5) % 9 - 4); }

}  // namespace

TEST_CASE("cuda attention mma plan: head-dim variants and shared-memory layouts", "[cuda-attention-host]") {
  CHECK(head_dim_variant(8, 8) == 32);
  CHECK(head_dim_variant(32, 17) == 32);
  CHECK(head_dim_variant(33, 1) == 64);
  CHECK(head_dim_variant(64, 64) == 64);
  CHECK(head_dim_variant(48, 65) == 128);
  CHECK(head_dim_variant(128, 128) == 128);
  CHECK(head_dim_variant(129, 8) == 0);
  CHECK(head_dim_variant(8, 200) == 0);
  for (int d : {32, 64, 128}) {
    INFO("head dim variant " << d);
    // every tile starts on a 16-byte boundary (after the float statistics), so its 32-bit fragment reads
    // are aligned
    for (const SmemLayout& lay : {forward_smem(d), backward_kv_smem(d), backward_q_smem(d)}) {
      CHECK(lay.stat_floats * 4 % 16 == 0);
      for (int t = 0; t <= lay.tiles; ++t) CHECK(lay.tile_offset(t) * 2 % 16 == 0);
      CHECK(lay.bytes() <= kHopperSmemOptin);
    }
    CHECK(forward_smem(d).bytes() == size_t(2 * kBlockRows * ld(d) + d * ld(kForwardKeys)) * 2);
    CHECK(backward_kv_smem(d).bytes() ==
          size_t(2 * kBackwardStep) * 4 +
              size_t(2 * kBlockRows * ld(d) + 2 * kBackwardStep * ld(d) + 2 * d * ld(kBackwardStep)) * 2);
    CHECK(backward_q_smem(d).bytes() ==
          size_t(2 * kBlockRows) * 4 +
              size_t(2 * kBlockRows * ld(d) + 2 * kBackwardStep * ld(d) + d * ld(kBackwardStep)) * 2);
  }
  CHECK(kBlockThreads == 128);
  CHECK(kBlockRows == kWarps * 16);
}

TEST_CASE("cuda attention mma plan: fragment reads of every shared tile are free of bank conflicts",
          "[cuda-attention-host]") {
  // The k-contiguous tiles' row lengths: ld(D) for [rows][D] tiles, ld(64) and ld(32) for the transposed
  // [D][keys or queries] tiles. Each 32-bit register read of a warp hits 32 distinct banks.
  for (int cols : {32, 64, 128}) {
    const int ldk = ld(cols);
    INFO("row length " << ldk << " halves");
    for (int k0 = 0; k0 < cols; k0 += 16)
      for (int row0 : {0, 16, 32, 48}) {
        for (int r = 0; r < 4; ++r) {
          int64_t words[32];
          for (int lane = 0; lane < 32; ++lane) words[lane] = a_frag_index(lane, r, row0, k0, ldk) / 2;
          CHECK(smem_wavefronts(words) == 1);
        }
        for (int r = 0; r < 2; ++r) {
          int64_t words[32];
          for (int lane = 0; lane < 32; ++lane) words[lane] = b_frag_index(lane, r, row0, k0, ldk) / 2;
          CHECK(smem_wavefronts(words) == 1);
        }
      }
  }
  // every fragment register starts at an even half (one aligned 32-bit word)
  for (int lane = 0; lane < 32; ++lane)
    for (int r = 0; r < 4; ++r) {
      CHECK(a_frag_index(lane, r, 16, 32, ld(64)) % 2 == 0);
      CHECK(b_frag_index(lane, r % 2, 8, 16, ld(32)) % 2 == 0);
    }
}

TEST_CASE("cuda attention mma plan: an accumulator reused as the A operand, and the quad reductions",
          "[cuda-attention-host]") {
  // Register r of A at k step t holds, in its two halves, the elements of the accumulator registers
  // a_from_c_reg(r), + 1 of tile 2 t + a_from_c_tile(r): the same (row, column) by both PTX layouts.
  for (int t = 0; t < 4; ++t)
    for (int lane = 0; lane < 32; ++lane)
      for (int r = 0; r < 4; ++r)
        for (int e = 0; e < 2; ++e) {
          const int tile = 2 * t + a_from_c_tile(r), reg = a_from_c_reg(r) + e;
          INFO("t " << t << " lane " << lane << " r " << r << " e " << e);
          CHECK(bf16_mma_a_row(lane, r) == mma_c_row(lane, reg));
          CHECK(16 * t + bf16_mma_a_col(lane, r) + e == 8 * tile + mma_c_col(lane, reg));
        }
  // The lanes of a quad hold the same two rows; together their registers cover the 8 columns of each.
  for (int lane = 0; lane < 32; ++lane) {
    std::vector<int> cols(16, 0);
    for (int q = 0; q < 4; ++q) {
      const int partner = (lane & ~3) | q;
      CHECK(quad_of(partner) == quad_of(lane));
      CHECK((partner == (lane ^ 1)) + (partner == (lane ^ 2)) + (partner == (lane ^ 3)) + (partner == lane) == 1);
      for (int r = 0; r < 4; ++r) {
        CHECK(mma_c_row(partner, r) == mma_c_row(lane, r));
        ++cols[size_t(8 * (r / 2) + mma_c_col(partner, r))];
      }
    }
    for (int c : cols) CHECK(c == 1);
  }
}

TEST_CASE("cuda attention mma plan: the warp primitives compute S = Q K^T and O = S V (emulated mma)",
          "[cuda-attention-host]") {
  for (int d : {32, 64, 128}) {
    INFO("head dim " << d);
    const int ldd = ld(d), keys = kForwardKeys, ldk = ld(keys);
    // a warp's 16 query rows at tile row 16 (warp 1), 64 keys, V^T [d][keys]: as forward_mma lays them out
    std::vector<float> q(size_t(kBlockRows * ldd), 0.0f), k(size_t(keys * ldd), 0.0f), vt(size_t(d * ldk), 0.0f);
    for (int i = 0; i < kBlockRows; ++i)
      for (int e = 0; e < d; ++e) q[size_t(i * ldd + e)] = value(1, i, e);
    for (int j = 0; j < keys; ++j)
      for (int e = 0; e < d; ++e) {
        k[size_t(j * ldd + e)] = value(2, j, e);
        vt[size_t(e * ldk + j)] = value(3, j, e);  // v[j][e]
      }
    const int row0 = 16;
    const std::vector<float> qw(q.begin() + row0 * ldd, q.end());
    Acc s(32);
    for (auto& tiles : s)
      for (auto& t : tiles) t.fill(0.0f);
    warp_ss(s, keys / 8, d, qw, ldd, k, ldd);
    std::vector<float> sref(size_t(16 * keys), 0.0f);  // S[row][key] of the warp's rows
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < keys; ++j)
        for (int e = 0; e < d; ++e) sref[size_t(i * keys + j)] += value(1, row0 + i, e) * value(2, j, e);
    for (int lane = 0; lane < 32; ++lane)
      for (int j = 0; j < keys / 8; ++j)
        for (int r = 0; r < 4; ++r)
          REQUIRE(s[size_t(lane)][size_t(j)][size_t(r)] ==
                  sref[size_t(mma_c_row(lane, r) * keys + 8 * j + mma_c_col(lane, r))]);
    // O = S V through the accumulator reused as A (values scaled down so the products stay exact)
    for (auto& tiles : s)
      for (auto& t : tiles)
        for (float& x : t) x = float(int(x) % 5);
    Acc o(32);
    for (auto& tiles : o)
      for (auto& t : tiles) t.fill(0.0f);
    warp_rs(o, d / 8, keys, s, vt, ldk);
    for (int lane = 0; lane < 32; ++lane)
      for (int n = 0; n < d / 8; ++n)
        for (int r = 0; r < 4; ++r) {
          const int row = mma_c_row(lane, r), col = 8 * n + mma_c_col(lane, r);
          float want = 0.0f;
          for (int j = 0; j < keys; ++j)
            want += float(int(sref[size_t(row * keys + j)]) % 5) * value(3, j, col);
          REQUIRE(o[size_t(lane)][size_t(n)][size_t(r)] == want);
        }
  }
}
