// graft/kernels/cuda/attention.cuh - scaled dot-product attention on the GPU, forward and backward,
// and the dropout draws: the slots' contracts of graft/ops/attention.hpp.
//   q [*batch, L, E], k [*batch, S, E], v [*batch, S, Ev], bias [*batch, L, S] (additive mask,
//   undefined: none), out and dout [*batch, L, Ev], dq, dk, dv like q, k, v: views of any strides
//   (broadcast inputs have stride-0 dims), the batch dims flattened row-major to b < B.
//   lse [B, L] contiguous (the log-sum-exp of each row's scores; -inf for a fully masked row);
//   keep bool [B, L, S] contiguous (the dropout draws: multiplier 1 / (1 - p) where true, 0 where not).
// Math: s_ij = scale q_i . k_j + bias_ij, -inf where masked (causal: j > i); P = softmax_j(s);
//   out = (P * mult) v. Backward (FlashAttention-2): D_i = dO_i . O_i,  P recomputed as e^(s - lse),
//   dV = (P * mult)^T dO,  dP = (dO V^T) * mult,  dS = P (dP - D),  dQ = scale dS K,  dK = scale dS^T Q.
//
// Two kernel families, chosen per call (attention_plan::tiled_head_dim):
//   tiled (float32, E and Ev <= 128; variants for head dims <= 64 and <= 128), FlashAttention-2:
//     forward_tiled   one block per (b, 64-query tile): the q tile stays in shared memory; 64-key
//                     tiles of k, then v, stream through one shared buffer; the 64 x 64 scores live
//                     in registers (4 x 4 per thread), the running max m and sum l of each row in
//                     registers, O (4 x D/16 per thread) rescaled by e^(m_old - m_new); only P * mult
//                     goes through shared memory for O += P V. Never an L x S matrix.
//     backward_kv     one block per (b, 64-key tile): k, v tiles resident; for each query tile, P^T
//                     and dS^T are recomputed into shared memory, dV and dK accumulate in registers.
//     backward_q      one block per (b, 64-query tile): q, dO resident; for each key tile dS is
//                     recomputed and dQ accumulates in registers. A separate pass rather than
//                     atomics, so every output element has one writer and results repeat bit for bit.
//     Shared-memory loads are scalar (any strides; no alignment needed), padded to be free of bank
//     conflicts (attention_plan.hpp, tested on the host); fp32 FMAs, expf.
//   per-row (float64, any head dim; float32 with a head dim over 128): the plain twin of the CPU
//     reference. One warp per query row (forward, dQ) or key row (dK, dV); lanes stride the head dim,
//     dot products are summed in double by shuffles; the forward makes one pass for m and l (online)
//     and one for O = sum_j e^(s_j - lse) mult_j v_j, accumulated in place in the output row.
// Both families mask alike: a fully masked row gets zeros and lse = -inf, and passes no gradient.
//
// Dropout: attention_dropout_keep fills keep with Philox4x32-10 (dropout.cuh's generator and
// counter scheme: element n is word n % 4 at counter n / 4) under one key from the generator. The CPU
// draws gen.uniform() serially, so one seed gives another (equally distributed) mask on each device;
// a seed fixes the GPU mask, and forward and backward read the same saved draws.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "graft/core/dtype.hpp"
#include "graft/core/random.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/attention_args.cuh"
#include "graft/kernels/cuda/attention_mma.cuh"
#include "graft/kernels/cuda/attention_plan.hpp"
#include "graft/kernels/cuda/common.cuh"
#include "graft/kernels/cuda/dropout.cuh"

namespace graft::kernels::cuda {

namespace attention_detail {
using namespace attention_plan;

// ---- the tiled float32 kernels --------------------------------------------------------------------

// Max and sum over the 16 threads of a tile row (one half of the warp; every lane takes part). The max
// lets NaN win, as the CPU's does.
__device__ inline float tile_row_max(float v) {
#pragma unroll
  for (int off = kGroupCols / 2; off > 0; off /= 2) {
    const float o = __shfl_xor_sync(0xffffffffu, v, off);
    v = o > v || o != o ? o : v;
  }
  return v;
}
__device__ inline float tile_row_sum(float v) {
#pragma unroll
  for (int off = kGroupCols / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// dst[r][c] (rows head_ld(kMaxD) apart) <- src[(row0 + r) rs + c cs] for r < rows, c < cols, and 0 for
// the rest of the [64][kMaxD] tile (tail rows and columns past the head dim, so no read of the tile
// meets uninitialized memory). Consecutive threads take consecutive columns (coalesced when cs = 1).
template <int kMaxD>
__device__ inline void load_tile(float* dst, const float* src, int64_t rs, int64_t cs, int64_t row0, int rows,
                                 int64_t cols) {
  constexpr int ld = head_ld(kMaxD);
  for (int idx = int(threadIdx.x); idx < kBlockQ * kMaxD; idx += kThreads) {
    const int r = idx / kMaxD, c = idx % kMaxD;
    dst[r * ld + c] = r < rows && c < cols ? src[(row0 + r) * rs + int64_t(c) * cs] : 0.0f;
  }
}

// lse and D of query rows i0 .. i0 + rows of batch b into slse, sd [64] (tail rows: -inf and 0).
__device__ inline void load_row_stats(float* slse, float* sd, const AttentionArgs<float>& a, int64_t b, int64_t i0,
                                      int rows) {
  for (int t = int(threadIdx.x); t < kBlockQ; t += kThreads) {
    slse[t] = t < rows ? a.lse[b * a.L + i0 + t] : -INFINITY;
    sd[t] = t < rows ? a.drow[b * a.L + i0 + t] : 0.0f;
  }
}

// Forward, one (b, query tile) per block iteration. Thread tid: query rows tile_row(tid, r), key
// columns tile_col(tid, c) of the scores; output columns tile_col(tid, c), c < kMaxD / 16.
template <int kMaxD>
__global__ void __launch_bounds__(kThreads) forward_tiled(const AttentionArgs<float> a) {
  static_assert(kMaxD % kGroupCols == 0 && kMaxD <= kMaxTiledHeadDim, "head-dim variant");
  constexpr int ld = head_ld(kMaxD), kOutCols = kMaxD / kGroupCols;
  extern __shared__ float smem[];
  float* sq = smem;                   // [kBlockQ][ld]  the query tile
  float* skv = sq + kBlockQ * ld;     // [kBlockK][ld]  the key tile, then the value tile
  float* sp = skv + kBlockK * ld;     // [kBlockQ][kScoreLd]  P * mult of the key tile
  const int tid = int(threadIdx.x);
  const int64_t q_tiles = ceil_div(a.L, kBlockQ);
  for (int64_t tile = blockIdx.x; tile < a.B * q_tiles; tile += gridDim.x) {
    const int64_t b = tile / q_tiles, i0 = tile % q_tiles * kBlockQ;
    const int bq = int(a.L - i0 < kBlockQ ? a.L - i0 : kBlockQ);
    const float* kb = a.k + a.km.batch_offset(b);  // [S, E]
    const float* vb = a.v + a.vm.batch_offset(b);  // [S, Ev]
    const float* biasb = a.bias != nullptr ? a.bias + a.bm.batch_offset(b) : nullptr;  // [L, S]
    __syncthreads();  // the previous tile's reads of sq are done
    load_tile<kMaxD>(sq, a.q + a.qm.batch_offset(b), a.qm.rs, a.qm.cs, i0, bq, a.E);
    float o[kThreadRows][kOutCols];  // O of rows tile_row(tid, r), columns tile_col(tid, c), unnormalized
    float m[kThreadRows], l[kThreadRows];  // running max and sum of e^(s - m) of each row
#pragma unroll
    for (int r = 0; r < kThreadRows; ++r) {
      m[r] = -INFINITY;
      l[r] = 0.0f;
#pragma unroll
      for (int c = 0; c < kOutCols; ++c) o[r][c] = 0.0f;
    }
    const int64_t key_end = keys_seen(a.causal, i0, bq, a.S);
    for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
      const int bk = int(key_end - j0 < kBlockK ? key_end - j0 : kBlockK);
      __syncthreads();  // (1) the previous key tile's reads of skv (v) and sp are done
      load_tile<kMaxD>(skv, kb, a.km.rs, a.km.cs, j0, bk, a.E);
      __syncthreads();  // (2) q and k tiles in place
      float s[kThreadRows][kThreadCols] = {};  // s[r][c]: query tile_row(tid, r) . key tile_col(tid, c)
      for (int e = 0; e < int(a.E); ++e) {
        float qv[kThreadRows], kv[kThreadCols];
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r) qv[r] = sq[tile_row(tid, r) * ld + e];
#pragma unroll
        for (int c = 0; c < kThreadCols; ++c) kv[c] = skv[tile_col(tid, c) * ld + e];
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r)
#pragma unroll
          for (int c = 0; c < kThreadCols; ++c) s[r][c] = fmaf(qv[r], kv[c], s[r][c]);
      }
#pragma unroll
      for (int r = 0; r < kThreadRows; ++r) {
        const int rl = tile_row(tid, r);
        const int64_t i = i0 + rl;
        bool part[kThreadCols];
        float block_max = -INFINITY;
#pragma unroll
        for (int c = 0; c < kThreadCols; ++c) {
          const int cl = tile_col(tid, c);
          const int64_t j = j0 + cl;
          part[c] = rl < bq && cl < bk && takes_part(a.causal, i, j);
          s[r][c] = part[c] ? s[r][c] * a.scale + (biasb != nullptr ? biasb[i * a.bm.rs + j * a.bm.cs] : 0.0f)
                            : -INFINITY;
          block_max = s[r][c] > block_max || s[r][c] != s[r][c] ? s[r][c] : block_max;
        }
        block_max = tile_row_max(block_max);
        const float m_new = block_max > m[r] || block_max != block_max ? block_max : m[r];
        float row_sum = 0.0f;
#pragma unroll
        for (int c = 0; c < kThreadCols; ++c) {
          // every key so far masked (m_new = -inf): P = 0; else a masked score's e^(-inf) is 0
          const float p = m_new == -INFINITY ? 0.0f : expf(s[r][c] - m_new);
          row_sum += p;
          const float mult = part[c] ? keep_multiplier(a, b, i, j0 + tile_col(tid, c)) : 0.0f;
          sp[rl * kScoreLd + tile_col(tid, c)] = p * mult;
        }
        row_sum = tile_row_sum(row_sum);
        const float alpha = m_new == -INFINITY ? 1.0f : expf(m[r] - m_new);  // m[r] = -inf: 0
        l[r] = l[r] * alpha + row_sum;
        m[r] = m_new;
#pragma unroll
        for (int c = 0; c < kOutCols; ++c) o[r][c] *= alpha;
      }
      __syncthreads();  // (3) every read of skv (k) is done, sp is written
      load_tile<kMaxD>(skv, vb, a.vm.rs, a.vm.cs, j0, bk, a.Ev);
      __syncthreads();  // (4) the value tile in place
      for (int jj = 0; jj < bk; ++jj) {
        float pv[kThreadRows], vv[kOutCols];
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r) pv[r] = sp[tile_row(tid, r) * kScoreLd + jj];
#pragma unroll
        for (int c = 0; c < kOutCols; ++c) vv[c] = skv[jj * ld + tile_col(tid, c)];
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r)
#pragma unroll
          for (int c = 0; c < kOutCols; ++c) o[r][c] = fmaf(pv[r], vv[c], o[r][c]);
      }
    }
    float* ob = a.out + a.om.batch_offset(b);
#pragma unroll
    for (int r = 0; r < kThreadRows; ++r) {
      const int rl = tile_row(tid, r);
      if (rl >= bq) continue;
      const int64_t i = i0 + rl;
      const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;  // l = 0: a fully masked row, zeros
#pragma unroll
      for (int c = 0; c < kOutCols; ++c) {
        const int col = tile_col(tid, c);
        if (col < a.Ev) ob[i * a.om.rs + col * a.om.cs] = o[r][c] * inv;
      }
      if (tid % kGroupCols == 0) a.lse[b * a.L + i] = l[r] > 0.0f ? m[r] + logf(l[r]) : -INFINITY;
    }
  }
}

// P and dS of one score: p = e^(s scale + bias - lse) where the score takes part (0 elsewhere, and
// for a fully masked row), dS = scale P (dP mult - D). s and dp are the raw dot products q.k, dO.v.
struct ScoreGrad {
  float pd;  // P * mult
  float ds;  // scale * dS
};
__device__ inline ScoreGrad score_grad(const AttentionArgs<float>& a, const float* biasb, int64_t b, int64_t i,
                                       int64_t j, bool in_tile, float s, float dp, float lse, float d) {
  if (!in_tile || !takes_part(a.causal, i, j) || lse == -INFINITY) return {0.0f, 0.0f};
  const float x = s * a.scale + (biasb != nullptr ? biasb[i * a.bm.rs + j * a.bm.cs] : 0.0f);
  const float p = expf(x - lse);  // a masked (-inf) score: 0
  const float mult = keep_multiplier(a, b, i, j);
  return {p * mult, a.scale * (p * (dp * mult - d))};
}

// dK and dV, one (b, key tile) per block iteration. Thread tid: key rows tile_row(tid, r), query
// columns tile_col(tid, c) of the transposed scores; dK, dV columns tile_col(tid, c), c < kMaxD / 16.
template <int kMaxD>
__global__ void __launch_bounds__(kThreads) backward_kv_tiled(const AttentionArgs<float> a) {
  static_assert(kMaxD % kGroupCols == 0 && kMaxD <= kMaxTiledHeadDim, "head-dim variant");
  constexpr int ld = head_ld(kMaxD), kOutCols = kMaxD / kGroupCols;
  extern __shared__ float smem[];
  float* sk = smem;                       // [kBlockK][ld]  the key tile
  float* sv = sk + kBlockK * ld;          // [kBlockK][ld]  the value tile
  float* sq = sv + kBlockK * ld;          // [kBlockQ][ld]  a query tile
  float* sdo = sq + kBlockQ * ld;         // [kBlockQ][ld]  its dO
  float* spd = sdo + kBlockQ * ld;        // [kBlockK][kScoreLd]  (P * mult)^T
  float* sds = spd + kBlockK * kScoreLd;  // [kBlockK][kScoreLd]  (scale dS)^T
  float* slse = sds + kBlockK * kScoreLd; // [kBlockQ]
  float* sd = slse + kBlockQ;             // [kBlockQ]  D
  const int tid = int(threadIdx.x);
  const bool want_dk = a.dk != nullptr, want_dv = a.dv != nullptr;
  const int64_t k_tiles = ceil_div(a.S, kBlockK);
  for (int64_t tile = blockIdx.x; tile < a.B * k_tiles; tile += gridDim.x) {
    const int64_t b = tile / k_tiles, j0 = tile % k_tiles * kBlockK;
    const int bk = int(a.S - j0 < kBlockK ? a.S - j0 : kBlockK);
    const float* qb = a.q + a.qm.batch_offset(b);       // [L, E]
    const float* dob = a.dout + a.dom.batch_offset(b);  // [L, Ev]
    const float* biasb = a.bias != nullptr ? a.bias + a.bm.batch_offset(b) : nullptr;
    __syncthreads();  // the previous tile's reads of sk, sv are done
    load_tile<kMaxD>(sk, a.k + a.km.batch_offset(b), a.km.rs, a.km.cs, j0, bk, a.E);
    load_tile<kMaxD>(sv, a.v + a.vm.batch_offset(b), a.vm.rs, a.vm.cs, j0, bk, a.Ev);
    float dk[kThreadRows][kOutCols], dv[kThreadRows][kOutCols];
#pragma unroll
    for (int r = 0; r < kThreadRows; ++r)
#pragma unroll
      for (int c = 0; c < kOutCols; ++c) dk[r][c] = dv[r][c] = 0.0f;
    for (int64_t i0 = first_query_tile(a.causal, j0); i0 < a.L; i0 += kBlockQ) {
      const int bq = int(a.L - i0 < kBlockQ ? a.L - i0 : kBlockQ);
      __syncthreads();  // (1) the previous query tile's reads of sq, sdo, spd, sds are done
      load_tile<kMaxD>(sq, qb, a.qm.rs, a.qm.cs, i0, bq, a.E);
      load_tile<kMaxD>(sdo, dob, a.dom.rs, a.dom.cs, i0, bq, a.Ev);
      load_row_stats(slse, sd, a, b, i0, bq);
      __syncthreads();  // (2) tiles in place
      float s[kThreadRows][kThreadCols] = {};   // key tile_row(tid, r) . query tile_col(tid, c)
      float dp[kThreadRows][kThreadCols] = {};  // value tile_row(tid, r) . dO of query tile_col(tid, c)
      for (int e = 0; e < int(a.E); ++e) {
        float kv[kThreadRows], qv[kThreadCols];
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r) kv[r] = sk[tile_row(tid, r) * ld + e];
#pragma unroll
        for (int c = 0; c < kThreadCols; ++c) qv[c] = sq[tile_col(tid, c) * ld + e];
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r)
#pragma unroll
          for (int c = 0; c < kThreadCols; ++c) s[r][c] = fmaf(kv[r], qv[c], s[r][c]);
      }
      if (want_dk)
        for (int e = 0; e < int(a.Ev); ++e) {
          float vv[kThreadRows], dov[kThreadCols];
#pragma unroll
          for (int r = 0; r < kThreadRows; ++r) vv[r] = sv[tile_row(tid, r) * ld + e];
#pragma unroll
          for (int c = 0; c < kThreadCols; ++c) dov[c] = sdo[tile_col(tid, c) * ld + e];
#pragma unroll
          for (int r = 0; r < kThreadRows; ++r)
#pragma unroll
            for (int c = 0; c < kThreadCols; ++c) dp[r][c] = fmaf(vv[r], dov[c], dp[r][c]);
        }
#pragma unroll
      for (int r = 0; r < kThreadRows; ++r)
#pragma unroll
        for (int c = 0; c < kThreadCols; ++c) {
          const int jl = tile_row(tid, r), il = tile_col(tid, c);
          const ScoreGrad g =
              score_grad(a, biasb, b, i0 + il, j0 + jl, il < bq && jl < bk, s[r][c], dp[r][c], slse[il], sd[il]);
          spd[jl * kScoreLd + il] = g.pd;
          sds[jl * kScoreLd + il] = g.ds;
        }
      __syncthreads();  // (3) P^T and dS^T in place
      for (int ii = 0; ii < bq; ++ii) {
        float pv[kThreadRows], dsv[kThreadRows], dov[kOutCols], qv[kOutCols];
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r) {
          pv[r] = spd[tile_row(tid, r) * kScoreLd + ii];
          dsv[r] = sds[tile_row(tid, r) * kScoreLd + ii];
        }
#pragma unroll
        for (int c = 0; c < kOutCols; ++c) {
          dov[c] = sdo[ii * ld + tile_col(tid, c)];
          qv[c] = sq[ii * ld + tile_col(tid, c)];
        }
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r)
#pragma unroll
          for (int c = 0; c < kOutCols; ++c) {
            dv[r][c] = fmaf(pv[r], dov[c], dv[r][c]);
            dk[r][c] = fmaf(dsv[r], qv[c], dk[r][c]);
          }
      }
    }
#pragma unroll
    for (int r = 0; r < kThreadRows; ++r) {
      const int jl = tile_row(tid, r);
      if (jl >= bk) continue;
      const int64_t j = j0 + jl;
#pragma unroll
      for (int c = 0; c < kOutCols; ++c) {
        const int col = tile_col(tid, c);
        if (want_dk && col < a.E) a.dk[a.dkm.offset(b, j, col)] = dk[r][c];
        if (want_dv && col < a.Ev) a.dv[a.dvm.offset(b, j, col)] = dv[r][c];
      }
    }
  }
}

// dQ, one (b, query tile) per block iteration. Thread tid: query rows tile_row(tid, r), key columns
// tile_col(tid, c) of the scores; dQ columns tile_col(tid, c), c < kMaxD / 16.
template <int kMaxD>
__global__ void __launch_bounds__(kThreads) backward_q_tiled(const AttentionArgs<float> a) {
  static_assert(kMaxD % kGroupCols == 0 && kMaxD <= kMaxTiledHeadDim, "head-dim variant");
  constexpr int ld = head_ld(kMaxD), kOutCols = kMaxD / kGroupCols;
  extern __shared__ float smem[];
  float* sq = smem;                       // [kBlockQ][ld]  the query tile
  float* sdo = sq + kBlockQ * ld;         // [kBlockQ][ld]  its dO
  float* sk = sdo + kBlockQ * ld;         // [kBlockK][ld]  a key tile
  float* sv = sk + kBlockK * ld;          // [kBlockK][ld]  its values
  float* sds = sv + kBlockK * ld;         // [kBlockQ][kScoreLd]  scale dS
  float* slse = sds + kBlockQ * kScoreLd; // [kBlockQ]
  float* sd = slse + kBlockQ;             // [kBlockQ]  D
  const int tid = int(threadIdx.x);
  const int64_t q_tiles = ceil_div(a.L, kBlockQ);
  for (int64_t tile = blockIdx.x; tile < a.B * q_tiles; tile += gridDim.x) {
    const int64_t b = tile / q_tiles, i0 = tile % q_tiles * kBlockQ;
    const int bq = int(a.L - i0 < kBlockQ ? a.L - i0 : kBlockQ);
    const float* kb = a.k + a.km.batch_offset(b);
    const float* vb = a.v + a.vm.batch_offset(b);
    const float* biasb = a.bias != nullptr ? a.bias + a.bm.batch_offset(b) : nullptr;
    __syncthreads();  // the previous tile's reads of sq, sdo, slse, sd are done
    load_tile<kMaxD>(sq, a.q + a.qm.batch_offset(b), a.qm.rs, a.qm.cs, i0, bq, a.E);
    load_tile<kMaxD>(sdo, a.dout + a.dom.batch_offset(b), a.dom.rs, a.dom.cs, i0, bq, a.Ev);
    load_row_stats(slse, sd, a, b, i0, bq);
    float dq[kThreadRows][kOutCols];
#pragma unroll
    for (int r = 0; r < kThreadRows; ++r)
#pragma unroll
      for (int c = 0; c < kOutCols; ++c) dq[r][c] = 0.0f;
    const int64_t key_end = keys_seen(a.causal, i0, bq, a.S);
    for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
      const int bk = int(key_end - j0 < kBlockK ? key_end - j0 : kBlockK);
      __syncthreads();  // (1) the previous key tile's reads of sk, sds are done
      load_tile<kMaxD>(sk, kb, a.km.rs, a.km.cs, j0, bk, a.E);
      load_tile<kMaxD>(sv, vb, a.vm.rs, a.vm.cs, j0, bk, a.Ev);
      __syncthreads();  // (2) tiles in place
      float s[kThreadRows][kThreadCols] = {};   // query tile_row(tid, r) . key tile_col(tid, c)
      float dp[kThreadRows][kThreadCols] = {};  // dO of query tile_row(tid, r) . value tile_col(tid, c)
      for (int e = 0; e < int(a.E); ++e) {
        float qv[kThreadRows], kv[kThreadCols];
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r) qv[r] = sq[tile_row(tid, r) * ld + e];
#pragma unroll
        for (int c = 0; c < kThreadCols; ++c) kv[c] = sk[tile_col(tid, c) * ld + e];
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r)
#pragma unroll
          for (int c = 0; c < kThreadCols; ++c) s[r][c] = fmaf(qv[r], kv[c], s[r][c]);
      }
      for (int e = 0; e < int(a.Ev); ++e) {
        float dov[kThreadRows], vv[kThreadCols];
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r) dov[r] = sdo[tile_row(tid, r) * ld + e];
#pragma unroll
        for (int c = 0; c < kThreadCols; ++c) vv[c] = sv[tile_col(tid, c) * ld + e];
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r)
#pragma unroll
          for (int c = 0; c < kThreadCols; ++c) dp[r][c] = fmaf(dov[r], vv[c], dp[r][c]);
      }
#pragma unroll
      for (int r = 0; r < kThreadRows; ++r)
#pragma unroll
        for (int c = 0; c < kThreadCols; ++c) {
          const int il = tile_row(tid, r), jl = tile_col(tid, c);
          sds[il * kScoreLd + jl] =
              score_grad(a, biasb, b, i0 + il, j0 + jl, il < bq && jl < bk, s[r][c], dp[r][c], slse[il], sd[il]).ds;
        }
      __syncthreads();  // (3) dS in place
      for (int jj = 0; jj < bk; ++jj) {
        float dsv[kThreadRows], kv[kOutCols];
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r) dsv[r] = sds[tile_row(tid, r) * kScoreLd + jj];
#pragma unroll
        for (int c = 0; c < kOutCols; ++c) kv[c] = sk[jj * ld + tile_col(tid, c)];
#pragma unroll
        for (int r = 0; r < kThreadRows; ++r)
#pragma unroll
          for (int c = 0; c < kOutCols; ++c) dq[r][c] = fmaf(dsv[r], kv[c], dq[r][c]);
      }
    }
#pragma unroll
    for (int r = 0; r < kThreadRows; ++r) {
      const int il = tile_row(tid, r);
      if (il >= bq) continue;
#pragma unroll
      for (int c = 0; c < kOutCols; ++c) {
        const int col = tile_col(tid, c);
        if (col < a.E) a.dq[a.dqm.offset(b, i0 + il, col)] = dq[r][c];
      }
    }
  }
}

// ---- the per-row kernels (any dtype, any head dim) ------------------------------------------------

// s_ij = scale q_i . k_j + bias_ij in double, the same on every lane (qi, kj: the rows' first
// elements; their elements cs apart).
template <class T>
__device__ inline double row_score(const AttentionArgs<T>& a, const T* qi, const T* kj, const T* biasb, int64_t i,
                                   int64_t j, int lane) {
  double acc = 0.0;
  for (int64_t e = lane; e < a.E; e += 32) acc += double(qi[e * a.qm.cs]) * double(kj[e * a.km.cs]);
  return warp_all_sum(acc) * double(a.scale) + (biasb != nullptr ? double(biasb[i * a.bm.rs + j * a.bm.cs]) : 0.0);
}

// dO_i . v_j in double, the same on every lane.
template <class T>
__device__ inline double row_dout_v(const AttentionArgs<T>& a, const T* doi, const T* vj, int lane) {
  double acc = 0.0;
  for (int64_t c = lane; c < a.Ev; c += 32) acc += double(doi[c * a.dom.cs]) * double(vj[c * a.vm.cs]);
  return warp_all_sum(acc);
}

// Forward, one warp per query row (b, i): pass 1 finds the row's max m and sum l of e^(s - m) online,
// pass 2 accumulates O = sum_j e^(s_j - lse) mult_j v_j in the output row (each lane its columns).
template <class T>
__global__ void __launch_bounds__(kRowThreads) forward_rows(const AttentionArgs<T> a) {
  const int lane = int(threadIdx.x) % 32;
  for (int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32; row < a.B * a.L;
       row += int64_t(gridDim.x) * kRowsPerBlock) {
    const int64_t b = row / a.L, i = row % a.L;
    const T* qi = a.q + a.qm.offset(b, i, 0);
    const T* kb = a.k + a.km.batch_offset(b);
    const T* vb = a.v + a.vm.batch_offset(b);
    const T* biasb = a.bias != nullptr ? a.bias + a.bm.batch_offset(b) : nullptr;
    T* oi = a.out + a.om.offset(b, i, 0);
    const int64_t key_end = keys_seen(a.causal, i, 1, a.S);
    double m = -INFINITY, l = 0.0;
    for (int64_t j = 0; j < key_end; ++j) {
      const double s = row_score(a, qi, kb + j * a.km.rs, biasb, i, j, lane);
      if (s == -INFINITY) continue;
      if (s > m) {
        l = l * exp(m - s) + 1.0;
        m = s;
      } else {
        l += exp(s - m);
      }
    }
    for (int64_t c = lane; c < a.Ev; c += 32) oi[c * a.om.cs] = T(0);
    if (!(l > 0.0)) {  // fully masked row: zeros (see the contract)
      if (lane == 0) a.lse[row] = T(-INFINITY);
      continue;
    }
    const double lse = m + log(l);
    for (int64_t j = 0; j < key_end; ++j) {
      const double p = exp(row_score(a, qi, kb + j * a.km.rs, biasb, i, j, lane) - lse);
      const T pd = T(p) * keep_multiplier(a, b, i, j);
      if (pd == T(0)) continue;
      const T* vj = vb + j * a.vm.rs;
      for (int64_t c = lane; c < a.Ev; c += 32) oi[c * a.om.cs] += pd * vj[c * a.vm.cs];
    }
    if (lane == 0) a.lse[row] = T(lse);
  }
}

// D = rowsum(dO * O), one warp per row (b, i), summed in double.
template <class T>
__global__ void __launch_bounds__(kRowThreads) backward_rowsum(const AttentionArgs<T> a) {
  const int lane = int(threadIdx.x) % 32;
  for (int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32; row < a.B * a.L;
       row += int64_t(gridDim.x) * kRowsPerBlock) {
    const int64_t b = row / a.L, i = row % a.L;
    const T* doi = a.dout + a.dom.offset(b, i, 0);
    const T* oi = a.out + a.om.offset(b, i, 0);
    double acc = 0.0;
    for (int64_t c = lane; c < a.Ev; c += 32) acc += double(doi[c * a.dom.cs]) * double(oi[c * a.om.cs]);
    acc = warp_all_sum(acc);
    if (lane == 0) a.drow[row] = T(acc);
  }
}

// dQ, one warp per query row (b, i): dQ_i = scale sum_j P_ij (dP_ij mult_ij - D_i) k_j, in place.
template <class T>
__global__ void __launch_bounds__(kRowThreads) backward_q_rows(const AttentionArgs<T> a) {
  const int lane = int(threadIdx.x) % 32;
  for (int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32; row < a.B * a.L;
       row += int64_t(gridDim.x) * kRowsPerBlock) {
    const int64_t b = row / a.L, i = row % a.L;
    const T* qi = a.q + a.qm.offset(b, i, 0);
    const T* doi = a.dout + a.dom.offset(b, i, 0);
    const T* kb = a.k + a.km.batch_offset(b);
    const T* vb = a.v + a.vm.batch_offset(b);
    const T* biasb = a.bias != nullptr ? a.bias + a.bm.batch_offset(b) : nullptr;
    T* dqi = a.dq + a.dqm.offset(b, i, 0);
    for (int64_t e = lane; e < a.E; e += 32) dqi[e * a.dqm.cs] = T(0);
    const double lse = double(a.lse[row]), d = double(a.drow[row]);
    if (lse == -INFINITY) continue;  // fully masked row: no gradient
    const int64_t key_end = keys_seen(a.causal, i, 1, a.S);
    for (int64_t j = 0; j < key_end; ++j) {
      const T* kj = kb + j * a.km.rs;
      const double p = exp(row_score(a, qi, kj, biasb, i, j, lane) - lse);
      if (p == 0.0) continue;
      const double mult = double(keep_multiplier(a, b, i, j));
      const double dp = row_dout_v(a, doi, vb + j * a.vm.rs, lane) * mult;
      const T sds = T(double(a.scale) * (p * (dp - d)));
      for (int64_t e = lane; e < a.E; e += 32) dqi[e * a.dqm.cs] += sds * kj[e * a.km.cs];
    }
  }
}

// dK and dV, one warp per key row (b, j): dV_j = sum_i P_ij mult_ij dO_i,
// dK_j = scale sum_i P_ij (dP_ij mult_ij - D_i) q_i, in place.
template <class T>
__global__ void __launch_bounds__(kRowThreads) backward_kv_rows(const AttentionArgs<T> a) {
  const int lane = int(threadIdx.x) % 32;
  for (int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32; row < a.B * a.S;
       row += int64_t(gridDim.x) * kRowsPerBlock) {
    const int64_t b = row / a.S, j = row % a.S;
    const T* kj = a.k + a.km.offset(b, j, 0);
    const T* vj = a.v + a.vm.offset(b, j, 0);
    const T* qb = a.q + a.qm.batch_offset(b);
    const T* dob = a.dout + a.dom.batch_offset(b);
    const T* biasb = a.bias != nullptr ? a.bias + a.bm.batch_offset(b) : nullptr;
    T* dkj = a.dk != nullptr ? a.dk + a.dkm.offset(b, j, 0) : nullptr;
    T* dvj = a.dv != nullptr ? a.dv + a.dvm.offset(b, j, 0) : nullptr;
    if (dkj != nullptr)
      for (int64_t e = lane; e < a.E; e += 32) dkj[e * a.dkm.cs] = T(0);
    if (dvj != nullptr)
      for (int64_t c = lane; c < a.Ev; c += 32) dvj[c * a.dvm.cs] = T(0);
    for (int64_t i = a.causal ? j : 0; i < a.L; ++i) {
      const double lse = double(a.lse[b * a.L + i]);
      if (lse == -INFINITY) continue;
      const T* qi = qb + i * a.qm.rs;
      const T* doi = dob + i * a.dom.rs;
      const double p = exp(row_score(a, qi, kj, biasb, i, j, lane) - lse);
      if (p == 0.0) continue;
      const T mult = keep_multiplier(a, b, i, j);
      if (dvj != nullptr) {
        const T pd = T(p) * mult;
        for (int64_t c = lane; c < a.Ev; c += 32) dvj[c * a.dvm.cs] += pd * doi[c * a.dom.cs];
      }
      if (dkj != nullptr) {
        const double dp = row_dout_v(a, doi, vj, lane) * double(mult);
        const T sds = T(double(a.scale) * (p * (dp - double(a.drow[b * a.L + i]))));
        for (int64_t e = lane; e < a.E; e += 32) dkj[e * a.dkm.cs] += sds * qi[e * a.qm.cs];
      }
    }
  }
}

// ---- dropout draws ----------------------------------------------------------------------------------

// keep[n] = (word n % 4 of Philox4x32-10 at counter n / 4 under key) / 2^32 >= p; four per thread per step.
__global__ void dropout_keep_kernel(bool* keep, int64_t n, double p, uint64_t key) {
  using dropout_detail::philox4x32_10;
  using dropout_detail::U32x4;
  const uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  const int64_t quads = (n + 3) / 4;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < quads; q += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t counter = philox_counter(4 * q);
    const U32x4 r = philox4x32_10(U32x4{{uint32_t(counter), uint32_t(counter >> 32), 0u, 0u}}, k0, k1);
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int64_t i = 4 * q + w;
      if (i >= n) break;
      keep[i] = double(r.v[philox_word(i)]) * (1.0 / 4294967296.0) >= p;  // [0, 1), 32 bits
    }
  }
}

// ---- host side ------------------------------------------------------------------------------------

// The dynamic shared memory a block of the device may opt in to.
inline int64_t smem_optin_bytes(Device d) {
  int optin = 0;
  GRAFT_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, d.index));
  return optin;
}

// Launches kernel<<<min(tiles, cap), kThreads, smem_floats * 4>>>(a) (opting in to the shared memory).
template <class Args>
void launch_tiled(void (*kernel)(Args), const Args& a, int64_t tiles, size_t smem_floats, cudaStream_t stream) {
  const size_t bytes = smem_floats * sizeof(float);
  GRAFT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  kernel<<<grid_for(tiles, 1), kThreads, bytes, stream>>>(a);
  GRAFT_CUDA_CHECK(cudaGetLastError());
}

template <int kMaxD>
void backward_tiled(const AttentionArgs<float>& a, cudaStream_t stream) {
  if ((a.dk != nullptr || a.dv != nullptr) && a.S > 0)
    launch_tiled(backward_kv_tiled<kMaxD>, a, a.B * ceil_div(a.S, kBlockK), backward_kv_smem_floats(kMaxD), stream);
  if (a.dq != nullptr)
    launch_tiled(backward_q_tiled<kMaxD>, a, a.B * ceil_div(a.L, kBlockQ), backward_q_smem_floats(kMaxD), stream);
}

// The tiled kernels of head-dim variant hd (64, 128; 0: none): launched, true; float64 never.
inline bool forward_tiled_for(const AttentionArgs<float>& a, int hd, cudaStream_t stream) {
  const int64_t tiles = a.B * ceil_div(a.L, kBlockQ);
  if (hd == 64) launch_tiled(forward_tiled<64>, a, tiles, forward_smem_floats(64), stream);
  if (hd == 128) launch_tiled(forward_tiled<128>, a, tiles, forward_smem_floats(128), stream);
  return hd != 0;
}
inline bool forward_tiled_for(const AttentionArgs<double>&, int, cudaStream_t) { return false; }
inline bool backward_tiled_for(const AttentionArgs<float>& a, int hd, cudaStream_t stream) {
  if (hd == 64) backward_tiled<64>(a, stream);
  if (hd == 128) backward_tiled<128>(a, stream);
  return hd != 0;
}
inline bool backward_tiled_for(const AttentionArgs<double>&, int, cudaStream_t) { return false; }

// The head-dim variant of the tiled kernels (64, 128) for a problem on device d, or 0 (per-row).
inline int tiled_variant(DType dt, int64_t E, int64_t Ev, bool backward, Device d) {
  const int hd = tiled_head_dim(dt == DType::Float32, E, Ev);
  if (hd == 0) return 0;
  const size_t floats = backward ? backward_kv_smem_floats(hd) : forward_smem_floats(hd);
  return tiled_fits(floats * sizeof(float), smem_optin_bytes(d)) ? hd : 0;
}
}  // namespace attention_detail

// Forward (see the top of this file): writes out [*batch, L, Ev] and lse [B, L].
inline void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& bias, const Tensor& keep, double dropout_p, bool is_causal, double scale) {
  using namespace attention_detail;
  if (lse.numel() == 0) return;  // B L = 0: nothing to write
  if (is_reduced_float(q.dtype()))  // bfloat16 / float16: the tensor-core kernels (attention_mma.cuh)
    return attention_forward_mma(out, lse, q, k, v, bias, keep, dropout_p, is_causal, scale);
  GRAFT_DISPATCH_FLOAT(q.dtype(), "scaled_dot_product_attention (cuda)", T, [&] {
    const AttentionArgs<T> a = make_args<T>(q, k, v, out, lse, bias, keep, dropout_p, is_causal, scale);
    const KernelLaunch at(lse.device());
    if (forward_tiled_for(a, tiled_variant(q.dtype(), a.E, a.Ev, false, lse.device()), at.stream)) return;
    forward_rows<T><<<blocks_for_rows(a.B * a.L, kRowsPerBlock), kRowThreads, 0, at.stream>>>(a);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

// Backward: writes dq, dk, dv (each undefined: not computed) from dout and the forward's tensors.
inline void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                               const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                               const Tensor& bias, const Tensor& keep, double dropout_p, bool is_causal, double scale) {
  using namespace attention_detail;
  if (!dq.defined() && !dk.defined() && !dv.defined()) return;
  if (is_reduced_float(q.dtype()))
    return attention_backward_mma(dq, dk, dv, dout, q, k, v, out, lse, bias, keep, dropout_p, is_causal, scale);
  const Device dev = lse.device();
  GRAFT_DISPATCH_FLOAT(q.dtype(), "scaled_dot_product_attention_backward (cuda)", T, [&] {
    AttentionArgs<T> a = make_args<T>(q, k, v, out, lse, bias, keep, dropout_p, is_causal, scale);
    set_backward_args(a, dq, dk, dv, dout);
    if (a.B == 0) return;
    const Tensor drow = empty(Shape{a.B, a.L}, q.dtype(), dev);  // D [B, L]
    a.drow = static_cast<T*>(drow.data_ptr());
    const KernelLaunch at(dev);
    if (a.L > 0) {
      backward_rowsum<T><<<blocks_for_rows(a.B * a.L, kRowsPerBlock), kRowThreads, 0, at.stream>>>(a);
      GRAFT_CUDA_CHECK(cudaGetLastError());
    } else {
      a.dq = nullptr;  // no query rows: nothing to write in dq
    }
    if (backward_tiled_for(a, tiled_variant(q.dtype(), a.E, a.Ev, true, dev), at.stream)) return;
    if ((a.dk != nullptr || a.dv != nullptr) && a.S > 0) {
      backward_kv_rows<T><<<blocks_for_rows(a.B * a.S, kRowsPerBlock), kRowThreads, 0, at.stream>>>(a);
      GRAFT_CUDA_CHECK(cudaGetLastError());
    }
    if (a.dq != nullptr) {
      backward_q_rows<T><<<blocks_for_rows(a.B * a.L, kRowsPerBlock), kRowThreads, 0, at.stream>>>(a);
      GRAFT_CUDA_CHECK(cudaGetLastError());
    }
  });
}

// keep bool [B, L, S] contiguous <- the dropout draws (see the top of this file); one key from gen per
// call, drawn even for an empty tensor.
inline void attention_dropout_keep(const Tensor& keep, double dropout_p, Generator& gen) {
  using namespace attention_detail;
  const uint64_t key = gen.next_u64();
  const int64_t n = keep.numel();
  if (n == 0) return;
  const KernelLaunch at(keep.device());
  dropout_keep_kernel<<<grid_for((n + 3) / 4, 256), 256, 0, at.stream>>>(static_cast<bool*>(keep.data_ptr()), n,
                                                                         dropout_p, key);
  GRAFT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace graft::kernels::cuda
