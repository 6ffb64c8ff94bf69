// graft/kernels/cuda/attention_mma.cuh - scaled dot-product attention for bfloat16 and float16 on the
// tensor cores (mma.sync.m16n8k16, float32 accumulation), forward and backward: FlashAttention-2 with
// the contract of attention.cuh (the same arguments, masks, dropout draws and fully-masked rows).
// q, k, v, bias, out, dO, dq, dk, dv are 16-bit; lse [B, L] and D [B, L] are float32.
//
// Tiles, warps and the two warp primitives: attention_mma_plan.hpp (its index math is tested on the
// host). What each element goes through:
//   S = Q K^T summed in float32; s scale + bias, -inf where masked; the online softmax in float32
//   (running max m and sum l per row, O rescaled by e^(m_old - m_new)); P mult rounded to 16 bits as
//   the left operand of O += P V (as FlashAttention-2 does); O / l rounded once on store.
//   Backward: P recomputed as e^(s - lse) in float32, dS = scale P (dP mult - D); P mult and dS rounded
//   to 16 bits as operands of dV, dK, dQ, which sum in float32 and are rounded once on store.
// Loads go element by element into shared memory (any strides, zero past the edges; the transposed
// tiles V^T, K^T, Q^T, dO^T are written that way too), single-buffered: the step after this first
// version is cp.async double buffering with ldmatrix, then wgmma with TMA.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "graft/kernels/cuda/attention_args.cuh"
#include "graft/kernels/cuda/attention_mma_plan.hpp"
#include "graft/kernels/cuda/mma16.cuh"

namespace graft::kernels::cuda {

namespace attention_mma_detail {
using namespace attention_mma_plan;
using attention_detail::AttentionArgs;
using attention_plan::ceil_div;
using attention_plan::keys_seen;
using attention_plan::takes_part;
using Args16 = AttentionArgs<uint16_t, float>;

using mma16::Format;
using mma16::load_pair;
using mma16::pack_pair;

// ---- the two warp primitives (attention_mma_plan.hpp) ------------------------------------------
// acc[16 x 8 kN8] += A B^T: A rows [16][kK] at a (rows of lda halves), B [8 kN8][kK] at b (rows of ldb).
template <class F, int kN8, int kK>
__device__ inline void warp_mma_ss(float (&acc)[kN8][4], const uint16_t* a, int lda, const uint16_t* b, int ldb,
                                   int lane) {
#pragma unroll
  for (int k0 = 0; k0 < kK; k0 += 16) {
    uint32_t af[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) af[r] = load_pair(a + a_frag_index(lane, r, 0, k0, lda));
#pragma unroll
    for (int j = 0; j < kN8; ++j) {
      const uint32_t bf[2] = {load_pair(b + b_frag_index(lane, 0, 8 * j, k0, ldb)),
                              load_pair(b + b_frag_index(lane, 1, 8 * j, k0, ldb))};
      F::mma(acc[j], af, bf);
    }
  }
}

// acc[16 x 8 kN8] += P B^T: P the warp's 16 x kK accumulator (kK / 8 m16n8 tiles, rounded to 16 bits
// here), B [8 kN8][kK] at b (rows of ldb halves).
template <class F, int kN8, int kK>
__device__ inline void warp_mma_rs(float (&acc)[kN8][4], const float (&p)[kK / 8][4], const uint16_t* b, int ldb,
                                   int lane) {
#pragma unroll
  for (int t = 0; t < kK / 16; ++t) {
    uint32_t af[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const float* c = p[2 * t + a_from_c_tile(r)];
      af[r] = pack_pair<F>(c[a_from_c_reg(r)], c[a_from_c_reg(r) + 1]);
    }
#pragma unroll
    for (int j = 0; j < kN8; ++j) {
      const uint32_t bf[2] = {load_pair(b + b_frag_index(lane, 0, 8 * j, 16 * t, ldb)),
                              load_pair(b + b_frag_index(lane, 1, 8 * j, 16 * t, ldb))};
      F::mma(acc[j], af, bf);
    }
  }
}

// A row's reduction over the 4 lanes of its quad.
__device__ inline float quad_max(float v) {
#pragma unroll
  for (int s = 1; s < 4; s *= 2) {
    const float o = __shfl_xor_sync(0xffffffffu, v, s);
    v = o > v || o != o ? o : v;  // NaN propagates
  }
  return v;
}
__device__ inline float quad_sum(float v) {
#pragma unroll
  for (int s = 1; s < 4; s *= 2) v += __shfl_xor_sync(0xffffffffu, v, s);
  return v;
}

// ---- shared tiles ---------------------------------------------------------------------------------
// dst [kRows][ld(kCols)] <- src's rows row0 .. row0 + rows, columns 0 .. cols (zero elsewhere).
// transposed: dst [kCols][ld(kRows)] holds element (r, c) at dst[c][r].
template <int kRows, int kCols, bool kTransposed = false>
__device__ inline void load_tile(uint16_t* dst, const uint16_t* src, int64_t rs, int64_t cs, int64_t row0, int rows,
                                 int64_t cols) {
  for (int idx = int(threadIdx.x); idx < kRows * kCols; idx += kBlockThreads) {
    const int r = idx / kCols, c = idx % kCols;
    const uint16_t x = r < rows && c < cols ? src[(row0 + r) * rs + int64_t(c) * cs] : uint16_t(0);
    dst[kTransposed ? c * ld(kRows) + r : r * ld(kCols) + c] = x;
  }
}
// slse, sd [n] <- lse and D of query rows i0 .. i0 + rows of batch b (past them: -inf and 0)
__device__ inline void load_row_stats(float* slse, float* sd, const Args16& a, int64_t b, int64_t i0, int rows,
                                      int n) {
  for (int t = int(threadIdx.x); t < n; t += kBlockThreads) {
    slse[t] = t < rows ? a.lse[b * a.L + i0 + t] : -INFINITY;
    sd[t] = t < rows ? a.drow[b * a.L + i0 + t] : 0.0f;
  }
}

template <class F>
__device__ inline float bias_at(const Args16& a, const uint16_t* biasb, int64_t i, int64_t j) {
  return biasb != nullptr ? F::widen(biasb[i * a.bm.rs + j * a.bm.cs]) : 0.0f;
}

// P mult and scale dS of score (i, j) (attention.cuh's score_grad, 16-bit bias): zero outside the tile,
// where masked and for a fully masked row. s and dp are the raw dot products q.k and dO.v.
template <class F>
__device__ inline void score_grad(float& pd, float& ds, const Args16& a, const uint16_t* biasb, int64_t b, int64_t i,
                                  int64_t j, bool in_tile, float s, float dp, float lse, float d) {
  pd = ds = 0.0f;
  if (!in_tile || !takes_part(a.causal, i, j) || lse == -INFINITY) return;
  const float p = expf(s * a.scale + bias_at<F>(a, biasb, i, j) - lse);
  const float mult = attention_detail::keep_multiplier(a, b, i, j);
  pd = p * mult;
  ds = a.scale * (p * (dp * mult - d));
}

template <class T>
__device__ inline T* shared_tile(unsigned char* smem, const SmemLayout& lay, int t) {
  return reinterpret_cast<T*>(smem + size_t(lay.stat_floats) * 4) + lay.tile_offset(t);
}

// Block tile `tile` of a [B, n] row range cut in kBlockRows: its batch b, first row and row count.
struct RowTile {
  int64_t b, first;
  int rows;
};
__device__ inline RowTile row_tile(int64_t tile, int64_t n) {
  const int64_t per_batch = ceil_div(n, kBlockRows), first = tile % per_batch * kBlockRows;
  return {tile / per_batch, first, int(n - first < kBlockRows ? n - first : kBlockRows)};
}
// Batch b's matrix of an operand (null stays null: the bias may be absent).
template <class T>
__device__ inline T* in_batch(T* p, const attention_plan::BatchedMatrix& m, int64_t b) {
  return p != nullptr ? p + m.batch_offset(b) : nullptr;
}

// ---- forward --------------------------------------------------------------------------------------
// One (b, 64-query tile) per block iteration; warp w owns query rows 16 w .. 16 w + 15 of the tile.
// Lane's accumulator registers r hold rows mma_c_row(lane, r), i.e. half h = r / 2 of its two rows.
template <bool kBf16, int kD>
__global__ void __launch_bounds__(kBlockThreads) forward_mma(const Args16 a) {
  using F = Format<kBf16>;
  constexpr SmemLayout lay = forward_smem(kD);
  constexpr int ldd = ld(kD), kKeyTiles = kForwardKeys / 8, kOutTiles = kD / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t* sq = shared_tile<uint16_t>(smem, lay, 0);   // [64][ld(D)]
  uint16_t* sk = shared_tile<uint16_t>(smem, lay, 1);   // [64][ld(D)]
  uint16_t* svt = shared_tile<uint16_t>(smem, lay, 2);  // [D][ld(64)]: V^T
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32, row0 = kWarpRows * warp;
  for (int64_t tile = blockIdx.x; tile < a.B * ceil_div(a.L, kBlockRows); tile += gridDim.x) {
    const auto [b, i0, bq] = row_tile(tile, a.L);
    const uint16_t *kb = in_batch(a.k, a.km, b), *vb = in_batch(a.v, a.vm, b), *biasb = in_batch(a.bias, a.bm, b);
    __syncthreads();  // the previous tile's reads of sq are done
    load_tile<kBlockRows, kD>(sq, in_batch(a.q, a.qm, b), a.qm.rs, a.qm.cs, i0, bq, a.E);
    float o[kOutTiles][4] = {};  // O, unnormalized
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // running max, this lane's part of the sum
    const int64_t key_end = keys_seen(a.causal, i0, bq, a.S);
    for (int64_t j0 = 0; j0 < key_end; j0 += kForwardKeys) {
      const int bk = int(key_end - j0 < kForwardKeys ? key_end - j0 : kForwardKeys);
      __syncthreads();  // (1) the previous key tile's reads of sk, svt are done
      load_tile<kForwardKeys, kD>(sk, kb, a.km.rs, a.km.cs, j0, bk, a.E);
      load_tile<kForwardKeys, kD, true>(svt, vb, a.vm.rs, a.vm.cs, j0, bk, a.Ev);
      __syncthreads();  // (2) q, k and v^T in place
      float s[kKeyTiles][4] = {};
      warp_mma_ss<F, kKeyTiles, kD>(s, sq + row0 * ldd, ldd, sk, ldd, lane);
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int rl = row0 + mma_c_row(lane, r), cl = 8 * j + mma_c_col(lane, r);
          const int64_t i = i0 + rl, jj = j0 + cl;
          const bool part = rl < bq && cl < bk && takes_part(a.causal, i, jj);
          s[j][r] = part ? s[j][r] * a.scale + bias_at<F>(a, biasb, i, jj) : -INFINITY;
          const float x = s[j][r], mx = tile_max[r / 2];
          tile_max[r / 2] = x > mx || x != x ? x : mx;
        }
      float m_new[2], alpha[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float t = quad_max(tile_max[h]);
        m_new[h] = t > m[h] || t != t ? t : m[h];
        alpha[h] = m_new[h] == -INFINITY ? 1.0f : expf(m[h] - m_new[h]);  // m = -inf: 0
        l[h] *= alpha[h];
        m[h] = m_new[h];
      }
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          // every key so far masked (m = -inf): P = 0; else a masked score's e^(-inf) is 0
          const float p = m_new[r / 2] == -INFINITY ? 0.0f : expf(s[j][r] - m_new[r / 2]);
          l[r / 2] += p;
          const int rl = row0 + mma_c_row(lane, r), cl = 8 * j + mma_c_col(lane, r);
          const bool part = rl < bq && cl < bk;  // p = 0 where the mask or causality excludes the key
          s[j][r] = part ? p * attention_detail::keep_multiplier(a, b, i0 + rl, j0 + cl) : 0.0f;
        }
#pragma unroll
      for (int n = 0; n < kOutTiles; ++n)
#pragma unroll
        for (int r = 0; r < 4; ++r) o[n][r] *= alpha[r / 2];
      warp_mma_rs<F, kOutTiles, kForwardKeys>(o, s, svt, ld(kForwardKeys), lane);
    }
    uint16_t* ob = in_batch(a.out, a.om, b);
    float inv[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      l[h] = quad_sum(l[h]);
      inv[h] = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;  // l = 0: a fully masked row, zeros
    }
#pragma unroll
    for (int n = 0; n < kOutTiles; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int rl = row0 + mma_c_row(lane, r), col = 8 * n + mma_c_col(lane, r);
        if (rl < bq && col < a.Ev) ob[(i0 + rl) * a.om.rs + col * a.om.cs] = F::narrow(o[n][r] * inv[r / 2]);
      }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int rl = row0 + mma_c_row(lane, 2 * h);
      if (lane % 4 == 0 && rl < bq) a.lse[b * a.L + i0 + rl] = l[h] > 0.0f ? m[h] + logf(l[h]) : -INFINITY;
    }
  }
}

// ---- backward -------------------------------------------------------------------------------------
// D = rowsum(dO * O) in float32, one warp per query row.
template <bool kBf16>
__global__ void __launch_bounds__(256) backward_rowsum_16(const Args16 a) {
  using F = Format<kBf16>;
  const int64_t warps = int64_t(gridDim.x) * 8;
  for (int64_t row = int64_t(blockIdx.x) * 8 + threadIdx.x / 32; row < a.B * a.L; row += warps) {
    const int64_t b = row / a.L, i = row % a.L;
    const uint16_t* dob = a.dout + a.dom.batch_offset(b) + i * a.dom.rs;
    const uint16_t* ob = a.out + a.om.batch_offset(b) + i * a.om.rs;
    float d = 0.0f;
    for (int64_t e = threadIdx.x % 32; e < a.Ev; e += 32) d += F::widen(dob[e * a.dom.cs]) * F::widen(ob[e * a.om.cs]);
    for (int s = 16; s > 0; s /= 2) d += __shfl_xor_sync(0xffffffffu, d, s);
    if (threadIdx.x % 32 == 0) a.drow[row] = d;
  }
}

// Writes acc (a warp's 16 x D accumulator at tile rows row0.., rows < rows valid, columns < cols) rounded.
template <class F, int kN8>
__device__ inline void store_rows(uint16_t* dst, const attention_plan::BatchedMatrix& m, int64_t b, int64_t first,
                                  int row0, int rows, int64_t cols, const float (&acc)[kN8][4], int lane) {
  if (dst == nullptr) return;
  uint16_t* db = in_batch(dst, m, b);
#pragma unroll
  for (int n = 0; n < kN8; ++n)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int rl = row0 + mma_c_row(lane, r), col = 8 * n + mma_c_col(lane, r);
      if (rl < rows && col < cols) db[(first + rl) * m.rs + col * m.cs] = F::narrow(acc[n][r]);
    }
}

// dK and dV: one (b, 64-key tile) per block iteration, warp w owns key rows 16 w ..; query steps of 32.
template <bool kBf16, int kD>
__global__ void __launch_bounds__(kBlockThreads) backward_kv_mma(const Args16 a) {
  using F = Format<kBf16>;
  constexpr SmemLayout lay = backward_kv_smem(kD);
  constexpr int ldd = ld(kD), kStep = kBackwardStep, kStepTiles = kStep / 8, kOutTiles = kD / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  float* slse = reinterpret_cast<float*>(smem);            // [32]
  float* sd = slse + kStep;                                 // [32]
  uint16_t* sk = shared_tile<uint16_t>(smem, lay, 0);      // [64][ld(D)]
  uint16_t* sv = shared_tile<uint16_t>(smem, lay, 1);      // [64][ld(D)]
  uint16_t* sq = shared_tile<uint16_t>(smem, lay, 2);      // [32][ld(D)]
  uint16_t* sqt = shared_tile<uint16_t>(smem, lay, 3);     // [D][ld(32)]: Q^T
  uint16_t* sdo = shared_tile<uint16_t>(smem, lay, 4);     // [32][ld(D)]
  uint16_t* sdot = shared_tile<uint16_t>(smem, lay, 5);    // [D][ld(32)]: dO^T
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32, row0 = kWarpRows * warp;
  for (int64_t tile = blockIdx.x; tile < a.B * ceil_div(a.S, kBlockRows); tile += gridDim.x) {
    const auto [b, j0, bk] = row_tile(tile, a.S);
    const uint16_t *qb = in_batch(a.q, a.qm, b), *dob = in_batch(a.dout, a.dom, b), *biasb = in_batch(a.bias, a.bm, b);
    __syncthreads();  // the previous tile's reads of sk, sv are done
    load_tile<kBlockRows, kD>(sk, in_batch(a.k, a.km, b), a.km.rs, a.km.cs, j0, bk, a.E);
    load_tile<kBlockRows, kD>(sv, in_batch(a.v, a.vm, b), a.vm.rs, a.vm.cs, j0, bk, a.Ev);
    float dk[kOutTiles][4] = {}, dv[kOutTiles][4] = {};
    // causal: queries before j0 see none of these keys
    for (int64_t i0 = a.causal ? j0 : 0; i0 < a.L; i0 += kStep) {
      const int bq = int(a.L - i0 < kStep ? a.L - i0 : kStep);
      __syncthreads();  // (1) the previous step's reads are done
      load_tile<kStep, kD>(sq, qb, a.qm.rs, a.qm.cs, i0, bq, a.E);
      load_tile<kStep, kD, true>(sqt, qb, a.qm.rs, a.qm.cs, i0, bq, a.E);
      load_tile<kStep, kD>(sdo, dob, a.dom.rs, a.dom.cs, i0, bq, a.Ev);
      load_tile<kStep, kD, true>(sdot, dob, a.dom.rs, a.dom.cs, i0, bq, a.Ev);
      load_row_stats(slse, sd, a, b, i0, bq, kStep);
      __syncthreads();  // (2) every tile in place
      float st[kStepTiles][4] = {}, dpt[kStepTiles][4] = {};  // S^T and dP^T: 16 keys x 32 queries
      warp_mma_ss<F, kStepTiles, kD>(st, sk + row0 * ldd, ldd, sq, ldd, lane);
      warp_mma_ss<F, kStepTiles, kD>(dpt, sv + row0 * ldd, ldd, sdo, ldd, lane);
#pragma unroll
      for (int j = 0; j < kStepTiles; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int kl = row0 + mma_c_row(lane, r), ql = 8 * j + mma_c_col(lane, r);
          score_grad<F>(st[j][r], dpt[j][r], a, biasb, b, i0 + ql, j0 + kl, kl < bk && ql < bq, st[j][r], dpt[j][r],
                        slse[ql], sd[ql]);
        }
      warp_mma_rs<F, kOutTiles, kStep>(dv, st, sdot, ld(kStep), lane);  // dV += (P mult)^T dO
      warp_mma_rs<F, kOutTiles, kStep>(dk, dpt, sqt, ld(kStep), lane);  // dK += scale dS^T Q
    }
    store_rows<F>(a.dk, a.dkm, b, j0, row0, bk, a.E, dk, lane);
    store_rows<F>(a.dv, a.dvm, b, j0, row0, bk, a.Ev, dv, lane);
  }
}

// dQ: one (b, 64-query tile) per block iteration, warp w owns query rows 16 w ..; key steps of 32.
template <bool kBf16, int kD>
__global__ void __launch_bounds__(kBlockThreads) backward_q_mma(const Args16 a) {
  using F = Format<kBf16>;
  constexpr SmemLayout lay = backward_q_smem(kD);
  constexpr int ldd = ld(kD), kStep = kBackwardStep, kStepTiles = kStep / 8, kOutTiles = kD / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  float* slse = reinterpret_cast<float*>(smem);           // [64]
  float* sd = slse + kBlockRows;                           // [64]
  uint16_t* sq = shared_tile<uint16_t>(smem, lay, 0);     // [64][ld(D)]
  uint16_t* sdo = shared_tile<uint16_t>(smem, lay, 1);    // [64][ld(D)]
  uint16_t* sk = shared_tile<uint16_t>(smem, lay, 2);     // [32][ld(D)]
  uint16_t* sv = shared_tile<uint16_t>(smem, lay, 3);     // [32][ld(D)]
  uint16_t* skt = shared_tile<uint16_t>(smem, lay, 4);    // [D][ld(32)]: K^T
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32, row0 = kWarpRows * warp;
  for (int64_t tile = blockIdx.x; tile < a.B * ceil_div(a.L, kBlockRows); tile += gridDim.x) {
    const auto [b, i0, bq] = row_tile(tile, a.L);
    const uint16_t *kb = in_batch(a.k, a.km, b), *vb = in_batch(a.v, a.vm, b), *biasb = in_batch(a.bias, a.bm, b);
    __syncthreads();  // the previous tile's reads of sq, sdo and the statistics are done
    load_tile<kBlockRows, kD>(sq, in_batch(a.q, a.qm, b), a.qm.rs, a.qm.cs, i0, bq, a.E);
    load_tile<kBlockRows, kD>(sdo, in_batch(a.dout, a.dom, b), a.dom.rs, a.dom.cs, i0, bq, a.Ev);
    load_row_stats(slse, sd, a, b, i0, bq, kBlockRows);
    float dq[kOutTiles][4] = {};
    const int64_t key_end = keys_seen(a.causal, i0, bq, a.S);
    for (int64_t j0 = 0; j0 < key_end; j0 += kStep) {
      const int bk = int(key_end - j0 < kStep ? key_end - j0 : kStep);
      __syncthreads();  // (1) the previous step's reads of sk, sv, skt are done
      load_tile<kStep, kD>(sk, kb, a.km.rs, a.km.cs, j0, bk, a.E);
      load_tile<kStep, kD, true>(skt, kb, a.km.rs, a.km.cs, j0, bk, a.E);
      load_tile<kStep, kD>(sv, vb, a.vm.rs, a.vm.cs, j0, bk, a.Ev);
      __syncthreads();  // (2) every tile in place
      float s[kStepTiles][4] = {}, dp[kStepTiles][4] = {};  // S and dP: 16 queries x 32 keys
      warp_mma_ss<F, kStepTiles, kD>(s, sq + row0 * ldd, ldd, sk, ldd, lane);
      warp_mma_ss<F, kStepTiles, kD>(dp, sdo + row0 * ldd, ldd, sv, ldd, lane);
#pragma unroll
      for (int j = 0; j < kStepTiles; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int ql = row0 + mma_c_row(lane, r), kl = 8 * j + mma_c_col(lane, r);
          float pd;
          score_grad<F>(pd, s[j][r], a, biasb, b, i0 + ql, j0 + kl, ql < bq && kl < bk, s[j][r], dp[j][r], slse[ql],
                        sd[ql]);
        }
      warp_mma_rs<F, kOutTiles, kStep>(dq, s, skt, ld(kStep), lane);  // dQ += scale dS K
    }
    store_rows<F>(a.dq, a.dqm, b, i0, row0, bq, a.E, dq, lane);
  }
}

// ---- host side ------------------------------------------------------------------------------------
template <class Kernel>
void launch(Kernel kernel, const Args16& a, int64_t tiles, size_t smem_bytes, cudaStream_t stream) {
  GRAFT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_bytes)));
  kernel<<<grid_for(tiles, 1), kBlockThreads, smem_bytes, stream>>>(a);
  GRAFT_CUDA_CHECK(cudaGetLastError());
}

template <bool kBf16, int kD>
void forward_variant(const Args16& a, cudaStream_t stream) {
  launch(forward_mma<kBf16, kD>, a, a.B * ceil_div(a.L, kBlockRows), forward_smem(kD).bytes(), stream);
}
template <bool kBf16, int kD>
void backward_variant(const Args16& a, cudaStream_t stream) {
  if ((a.dk != nullptr || a.dv != nullptr) && a.S > 0)
    launch(backward_kv_mma<kBf16, kD>, a, a.B * ceil_div(a.S, kBlockRows), backward_kv_smem(kD).bytes(), stream);
  if (a.dq != nullptr)
    launch(backward_q_mma<kBf16, kD>, a, a.B * ceil_div(a.L, kBlockRows), backward_q_smem(kD).bytes(), stream);
}

template <bool kBf16>
void forward_16(const Args16& a, int d, cudaStream_t stream) {
  if (d == 32) forward_variant<kBf16, 32>(a, stream);
  if (d == 64) forward_variant<kBf16, 64>(a, stream);
  if (d == 128) forward_variant<kBf16, 128>(a, stream);
}
template <bool kBf16>
void backward_16(const Args16& a, int d, cudaStream_t stream) {
  if (a.L > 0) {
    backward_rowsum_16<kBf16><<<blocks_for_rows(a.B * a.L, 8), 256, 0, stream>>>(a);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  }
  if (d == 32) backward_variant<kBf16, 32>(a, stream);
  if (d == 64) backward_variant<kBf16, 64>(a, stream);
  if (d == 128) backward_variant<kBf16, 128>(a, stream);
}
}  // namespace attention_mma_detail

// attention.cuh's forward for bfloat16 / float16 q, k, v (and bias) with head dims up to 128 (the op
// runs larger ones in float32); lse is float32.
inline void attention_forward_mma(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& bias, const Tensor& keep, double dropout_p,
                                  bool is_causal, double scale) {
  using namespace attention_mma_detail;
  const Args16 a = attention_detail::make_args<uint16_t, float>(q, k, v, out, lse, bias, keep, dropout_p, is_causal,
                                                                scale);
  const int d = head_dim_variant(a.E, a.Ev);
  GRAFT_CHECK(d != 0, "scaled_dot_product_attention (cuda, 16-bit)", "head dims up to ", kMaxHeadDim,
              ", got E = ", a.E, " and Ev = ", a.Ev);
  const KernelLaunch at(lse.device());
  if (q.dtype() == DType::BFloat16) forward_16<true>(a, d, at.stream);
  else forward_16<false>(a, d, at.stream);
}

// attention.cuh's backward for the same problems; D [B, L] is float32.
inline void attention_backward_mma(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                                   const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                   const Tensor& lse, const Tensor& bias, const Tensor& keep, double dropout_p,
                                   bool is_causal, double scale) {
  using namespace attention_mma_detail;
  Args16 a = attention_detail::make_args<uint16_t, float>(q, k, v, out, lse, bias, keep, dropout_p, is_causal, scale);
  attention_detail::set_backward_args(a, dq, dk, dv, dout);
  if (a.B == 0) return;
  const Tensor drow = empty(Shape{a.B, a.L}, DType::Float32, lse.device());
  a.drow = static_cast<float*>(drow.data_ptr());
  if (a.L == 0) a.dq = nullptr;  // no query rows: nothing to write in dq
  const int d = head_dim_variant(a.E, a.Ev);
  GRAFT_CHECK(d != 0, "scaled_dot_product_attention_backward (cuda, 16-bit)", "head dims up to ", kMaxHeadDim,
              ", got E = ", a.E, " and Ev = ", a.Ev);
  const KernelLaunch at(lse.device());
  if (q.dtype() == DType::BFloat16) backward_16<true>(a, d, at.stream);
  else backward_16<false>(a, d, at.stream);
}

}  // namespace graft::kernels::cuda
