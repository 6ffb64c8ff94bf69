// graft/kernels/cuda/conv2d.cuh - 2-D convolution on the GPU, forward and both backward passes, NCHW:
// x [N, C, H, W], weight [O, Cg, KH, KW] (OIHW), out [N, O, OH, OW], groups, float32, float64, and
// bfloat16 / float16 (not depthwise).
// The slots' contracts of graft/ops/conv2d.hpp: every tensor contiguous; the forward writes
// out = conv2d(x, w) + bias (bias may be undefined); the backward overwrites dx and accumulates (+=)
// dweight and dbias, each only when defined (x is undefined when dweight is, weight when dx is).
// Sizes and names as in graft/core/conv2d_geometry.hpp; the index math is in conv2d_plan.hpp.
//
// General convolutions (Cg > 1): three implicit GEMMs per group, with no im2col buffer in global
// memory: the tiles of the im2col matrix are gathered into shared memory as they are needed
// (taps in the padding read 0).
//   forward  out_g [Og, N OH OW] = w_g [Og, R] @ cols_g [R, N OH OW], bias added in the epilogue;
//            cols_g[(c, kh, kw), (n, oh, ow)] = x[n, g Cg + c, oh sh - ph + kh dh, ow sw - pw + kw dw]
//   dx       one GEMM per phase (rh, rw) of the stride, the inputs ih = rh + sh i, iw = rw + sw j:
//            dx_g [Cg, N Hr Wr] = w_g^T [Cg, (o, kh, kw)] @ dout_g gathered [(o, kh, kw), N Hr Wr],
//            over only the taps that reach the phase (conv2d_dx_taps), so stride 2 multiplies no zeros
//            of a dilated dout. A phase no tap reaches gets zeros. Overwrites dx.
//   dweight  dw_g [Og, R] += dout_g [Og, N OH OW] @ cols_g^T [N OH OW, R]. When the output tiles alone
//            do not fill the GPU, the reduction is cut into chunks (split-K, conv2d_split_k): chunk z
//            writes its own partial [O, R] and add_partials adds the partials into dw in chunk order:
//            deterministic, no atomics.
//   dbias    one block per output channel sums dout over (n, oh, ow) in double (bias_grad).
// GEMM tiling: a block of 256 threads computes a BM x BN = 64 x 64 tile of the output, walking the
// reduction in steps of BK = 16 through double-buffered shared memory (a step's global loads are in
// flight, in registers, while the previous step is multiplied); each thread accumulates TM x TN =
// 4 x 4 outputs in registers: rows ty TM + i, columns tx + 16 j (tx = t % 16, ty = t / 16), so a warp's
// stores are runs of 16 consecutive columns. Accumulation in T in increasing k within a chunk, as in
// gemm.cuh; the results differ from the CPU's only by rounding. Grid: x = column tiles, y = (group,
// row tile) pairs (looping past 65535), z = chunks of the reduction (dweight only).
//
// Depthwise (Cg = 1, O = C multiplier): direct kernels, since a GEMM over KH KW terms is all overhead.
//   forward  a thread per output element, its KH KW taps (block x: the plane (n, o), y: a run of it)
//   dx       a thread per input element gathering from the outputs whose windows hold it (no atomics)
//   dweight  a block per (o, tap) summing dout * x over (n, oh, ow) in double
//
// bfloat16 / float16 (general convolutions): the same three implicit GEMMs, loaders and grids on the
// tensor cores (mma.sync.m16n8k16, float32 accumulation; the section "bfloat16 / float16 on the tensor
// cores" below). Depthwise 16-bit convolutions are widened to float32 by the op.
//
// Not here yet: TF32 mma.sync for float32, 128-bit loads (the gathers are scalar), NHWC, split-K for
// the forward and dx (batch 1 at 7 x 7 gives few column tiles), a shared-memory tiled depthwise kernel,
// 16-bit depthwise kernels.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "graft/core/conv2d_geometry.hpp"
#include "graft/core/dtype.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"
#include "graft/kernels/cuda/conv2d_plan.hpp"
#include "graft/kernels/cuda/gemm_plan.hpp"  // the mma.m16n8k16 fragment layouts
#include "graft/kernels/cuda/mma16.cuh"
#include "graft/kernels/cuda/reduce.cuh"  // block_sum

namespace graft::kernels::cuda {

namespace conv2d_detail {
using reduce_detail::block_sum;
using reduce_detail::kReduceBlock;

constexpr int BM = kConvTile, BN = kConvTile, BK = kConvStep, TM = 4, TN = 4;
constexpr int kThreads = (BM / TM) * (BN / TN);  // 256
constexpr int kLoads = BM * BK / kThreads;       // elements of each operand a thread loads per step: 4
// The two ways a thread t loads its kLoads elements of a BK-deep tile:
//   along k: k = t % BK, rows (A) or columns (B) t / BK + kStepAlongK j   (a warp: 16 consecutive k, 2 rows)
//   along n: column t % BN, k = t / BN + kStepAlongN j                    (a warp: 32 consecutive columns)
constexpr int kStepAlongK = kThreads / BK;  // 16
constexpr int kStepAlongN = kThreads / BN;  // 4
static_assert(BM == BN && BM / kStepAlongK == kLoads && BK / kStepAlongN == kLoads,
              "both load mappings cover a BK x 64 tile with kLoads elements per thread");
static_assert(kThreads == kReduceBlock, "the depthwise and bias kernels use block_sum's block size");

// One reduction step's tiles of both operands, twice (double buffering).
template <class T>
struct Tiles {
  T a[2][BK][BM + 1];  // a[buf][k][m] = A[m0 + m, kt + k]   (+1: stores along m spread over the banks)
  T b[2][BK][BN + 1];  // b[buf][k][n] = B[kt + k, n0 + n]
};

// (graft::min, the op, hides CUDA's min(int, int) in these namespaces.)
__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

__device__ __forceinline__ int tile_tx() { return int(threadIdx.x) % (BN / TN); }
__device__ __forceinline__ int tile_ty() { return int(threadIdx.x) / (BN / TN); }

// acc[i][j] += sum over k < BK of a[k][ty TM + i] * b[k][tx + j BN / TN].
template <class T>
__device__ __forceinline__ void multiply_tile(T (&acc)[TM][TN], const T (&a)[BK][BM + 1], const T (&b)[BK][BN + 1]) {
  const int tx = tile_tx(), ty = tile_ty();
#pragma unroll
  for (int k = 0; k < BK; ++k) {
    T af[TM], bf[TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) af[i] = a[k][ty * TM + i];
#pragma unroll
    for (int j = 0; j < TN; ++j) bf[j] = b[k][tx + j * (BN / TN)];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = fma(af[i], bf[j], acc[i][j]);
  }
}

// acc += A[m0 :, k_begin : k_end] @ B[k_begin : k_end, n0 :] for the block's tile. A Loader holds one
// step's global loads in registers: fetch(kt, k_end) reads the elements of the step kt this thread
// owns (0 outside the operands and at k >= k_end), stash(put_a, put_b) hands each to put_a(k, m, v)
// or put_b(k, n, v), which store it in the shared tiles (here [k][outer]; k-contiguous for the tensor
// cores). Every thread of the block calls it with the same k_begin, k_end (it synchronizes).
template <class T, class Loader>
__device__ __forceinline__ void reduce_tiles(T (&acc)[TM][TN], Tiles<T>& sm, Loader& ld, int k_begin, int k_end) {
  if (k_begin >= k_end) return;
  auto stash = [&](int buf) {
    ld.stash([&](int k, int m, T v) { sm.a[buf][k][m] = v; }, [&](int k, int n, T v) { sm.b[buf][k][n] = v; });
  };
  ld.fetch(k_begin, k_end);
  stash(0);
  __syncthreads();
  int buf = 0;
  for (int kt = k_begin; kt < k_end; kt += BK) {
    const bool more = kt + BK < k_end;
    if (more) ld.fetch(kt + BK, k_end);  // in flight during the multiply
    multiply_tile(acc, sm.a[buf], sm.b[buf]);
    // The other buffer was last read in the previous step, which every thread finished before the
    // barrier at its end, so it can be overwritten now.
    if (more) stash(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }
}

// ---- forward --------------------------------------------------------------------------------------
// A = w_g [Og, R] (weight rows, contiguous), loaded along k; B = cols_g [R, N OH OW], gathered along n:
// thread t owns column p = n0 + t % BN (decoded once per tile) and decodes each of its 4 rows r.
template <class T>
struct ForwardLoader {
  Conv2dDims d;
  const T* w;  // w[g Og + m0, 0, 0, 0]: the tile's first row
  const T* x;  // x[n, g Cg] of this thread's column, or null past the last column
  int rows;    // rows of A in the tile: min(BM, Og - m0)
  Im2colColumn col;
  T ra[kLoads], rb[kLoads];

  __device__ __forceinline__ ForwardLoader(const T* x_all, const T* w_all, const Conv2dDims& dims, int grp, int m0,
                                           int p)
      : d(dims), w(w_all + (int64_t(grp) * dims.Og + m0) * dims.R), x(nullptr), rows(imin(BM, dims.Og - m0)),
        col{0, 0, 0} {
    if (p < d.N * d.L) {
      col = im2col_column(d, p);
      x = x_all + (int64_t(col.n) * d.C + int64_t(grp) * d.Cg) * d.H * d.W;
    }
  }
  __device__ __forceinline__ void fetch(int kt, int k_end) {
    const int t = int(threadIdx.x);
    const int k = kt + t % BK;
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int m = t / BK + kStepAlongK * j;
      ra[j] = m < rows && k < k_end ? w[int64_t(m) * d.R + k] : T(0);
    }
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int r = kt + t / BN + kStepAlongN * j;
      const int64_t at = x != nullptr && r < k_end ? im2col_offset(d, im2col_row(d, r), col.ih0, col.iw0) : -1;
      rb[j] = at >= 0 ? x[at] : T(0);
    }
  }
  template <class PutA, class PutB>
  __device__ __forceinline__ void stash(PutA&& put_a, PutB&& put_b) const {
    const int t = int(threadIdx.x);
#pragma unroll
    for (int j = 0; j < kLoads; ++j) put_a(t % BK, t / BK + kStepAlongK * j, ra[j]);
#pragma unroll
    for (int j = 0; j < kLoads; ++j) put_b(t / BN + kStepAlongN * j, t % BN, rb[j]);
  }
};

// out [N, O, OH, OW] = conv2d(x, w) + bias (bias may be null). m_tiles = row tiles per group.
template <class T>
__global__ void __launch_bounds__(kThreads)
    forward_gemm(T* __restrict__ out, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                 Conv2dDims d, int m_tiles) {
  __shared__ Tiles<T> sm;
  const int P = d.N * d.L, n0 = int(blockIdx.x) * BN;
  const int tx = tile_tx(), ty = tile_ty();
  for (int gy = int(blockIdx.y); gy < d.G * m_tiles; gy += int(gridDim.y)) {
    const int grp = gy / m_tiles, m0 = (gy % m_tiles) * BM;
    ForwardLoader<T> ld(x, w, d, grp, m0, n0 + int(threadIdx.x) % BN);
    T acc[TM][TN] = {};
    reduce_tiles(acc, sm, ld, 0, d.R);
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int p = n0 + tx + j * (BN / TN);
      if (p >= P) continue;
      int n, l;
      d.by_l.divmod(p, n, l);
#pragma unroll
      for (int i = 0; i < TM; ++i) {
        const int o = m0 + ty * TM + i;
        if (o >= d.Og) continue;
        const int oc = grp * d.Og + o;
        out[(int64_t(n) * d.O + oc) * d.L + l] = acc[i][j] + (bias != nullptr ? bias[oc] : T(0));
      }
    }
  }
}

// ---- dx -------------------------------------------------------------------------------------------
// Phase f: A[c, q] = w[g Og + o, c, kh, kw] for q = (o, kh, kw) of the phase's taps (dx_tap), loaded
// along k: thread t decodes its q = kt + t % BK once per step and reads 4 channels c, KH KW apart.
// B[q, p] = dout[n, g Og + o, i + doh, j + dow] for column p = (n, i, j) (0 outside dout), gathered
// along n: thread t owns column n0 + t % BN (decoded once per tile) and decodes each of its 4 rows q.
template <class T>
struct DxLoader {
  Conv2dDims d;
  Conv2dDxPhase f;
  const T* w;     // w[g Og, m0, 0, 0]: the group's first output channel at the tile's first channel
  const T* dout;  // dout[n, g Og] of this thread's column, or null past the last column
  int rows;       // rows of A in the tile: min(BM, Cg - m0)
  DxColumn col;
  T ra[kLoads], rb[kLoads];

  __device__ __forceinline__ DxLoader(const T* dout_all, const T* w_all, const Conv2dDims& dims,
                                      const Conv2dDxPhase& phase, int grp, int m0, int p)
      : d(dims), f(phase), w(w_all + int64_t(grp) * dims.Og * dims.R + int64_t(m0) * dims.KH * dims.KW),
        dout(nullptr), rows(imin(BM, dims.Cg - m0)), col{0, 0, 0} {
    if (p < d.N * f.Hr * f.Wr) {
      col = dx_column(f, p);
      dout = dout_all + (int64_t(col.n) * d.O + int64_t(grp) * d.Og) * d.L;
    }
  }
  __device__ __forceinline__ void fetch(int kt, int k_end) {
    const int t = int(threadIdx.x);
    const int q = kt + t % BK;
    int64_t wq = -1;  // offset of w[g Og + o, m0, kh, kw] from w
    if (q < k_end) {
      const DxTap tap = dx_tap(f, q);
      wq = int64_t(tap.o) * d.R + tap.kh * d.KW + tap.kw;
    }
#pragma unroll
    for (int jj = 0; jj < kLoads; ++jj) {
      const int m = t / BK + kStepAlongK * jj;
      ra[jj] = m < rows && wq >= 0 ? w[wq + int64_t(m) * d.KH * d.KW] : T(0);
    }
#pragma unroll
    for (int jj = 0; jj < kLoads; ++jj) {
      const int qq = kt + t / BN + kStepAlongN * jj;
      T v = T(0);
      if (dout != nullptr && qq < k_end) {
        const DxTap tap = dx_tap(f, qq);
        const int oh = col.i + tap.doh, ow = col.j + tap.dow;
        if (oh >= 0 && oh < d.OH && ow >= 0 && ow < d.OW) v = dout[int64_t(tap.o) * d.L + oh * d.OW + ow];
      }
      rb[jj] = v;
    }
  }
  template <class PutA, class PutB>
  __device__ __forceinline__ void stash(PutA&& put_a, PutB&& put_b) const {
    const int t = int(threadIdx.x);
#pragma unroll
    for (int jj = 0; jj < kLoads; ++jj) put_a(t % BK, t / BK + kStepAlongK * jj, ra[jj]);
#pragma unroll
    for (int jj = 0; jj < kLoads; ++jj) put_b(t / BN + kStepAlongN * jj, t % BN, rb[jj]);
  }
};

// dx[n, g Cg + c, rh + sh i, rw + sw j] for the columns (n, i, j) of phase f; m_tiles = row tiles of Cg.
template <class T>
__global__ void __launch_bounds__(kThreads)
    dx_gemm(T* __restrict__ dx, const T* __restrict__ dout, const T* __restrict__ w, Conv2dDims d, Conv2dDxPhase f,
            int m_tiles) {
  __shared__ Tiles<T> sm;
  const int P = d.N * f.Hr * f.Wr, n0 = int(blockIdx.x) * BN;
  const int tx = tile_tx(), ty = tile_ty();
  for (int gy = int(blockIdx.y); gy < d.G * m_tiles; gy += int(gridDim.y)) {
    const int grp = gy / m_tiles, m0 = (gy % m_tiles) * BM;
    DxLoader<T> ld(dout, w, d, f, grp, m0, n0 + int(threadIdx.x) % BN);
    T acc[TM][TN] = {};
    reduce_tiles(acc, sm, ld, 0, f.K);
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int p = n0 + tx + j * (BN / TN);
      if (p >= P) continue;
      const DxColumn col = dx_column(f, p);
      const int ih = f.rh + d.sh * col.i, iw = f.rw + d.sw * col.j;
#pragma unroll
      for (int i = 0; i < TM; ++i) {
        const int c = m0 + ty * TM + i;
        if (c >= d.Cg) continue;
        dx[((int64_t(col.n) * d.C + int64_t(grp) * d.Cg + c) * d.H + ih) * d.W + iw] = acc[i][j];
      }
    }
  }
}

// ---- dweight --------------------------------------------------------------------------------------
// A = dout_g [Og, N OH OW], B = cols_g^T [N OH OW, R], both loaded along k: thread t decodes its
// position p = kt + t % BK = (n, oh, ow) once per step and reads dout there for its 4 rows o (a warp:
// runs of 16 consecutive positions) and x at its 4 columns r = (c, kh, kw), decoded once per tile.
template <class T>
struct DweightLoader {
  Conv2dDims d;
  const T* dout;  // dout[0, g Og + m0]
  const T* x;     // x[0, g Cg]
  int rows;       // rows of A in the tile: min(BM, Og - m0)
  Im2colRow row[kLoads];  // the thread's columns r of B (rows of cols_g)
  bool row_ok[kLoads];    // r < R
  T ra[kLoads], rb[kLoads];

  __device__ __forceinline__ DweightLoader(const T* dout_all, const T* x_all, const Conv2dDims& dims, int grp, int m0,
                                           int n0)
      : d(dims), dout(dout_all + (int64_t(grp) * dims.Og + m0) * dims.L),
        x(x_all + int64_t(grp) * dims.Cg * dims.H * dims.W), rows(imin(BM, dims.Og - m0)) {
#pragma unroll
    for (int jj = 0; jj < kLoads; ++jj) {
      const int r = n0 + int(threadIdx.x) / BK + kStepAlongK * jj;
      row_ok[jj] = r < d.R;
      row[jj] = im2col_row(d, row_ok[jj] ? r : 0);
    }
  }
  __device__ __forceinline__ void fetch(int kt, int k_end) {
    const int t = int(threadIdx.x);
    const int p = kt + t % BK;
    const bool ok = p < k_end;
    const Im2colColumn col = im2col_column(d, ok ? p : 0);
    const int l = ok ? p - col.n * d.L : 0;
    const T* dn = dout + int64_t(col.n) * d.O * d.L + l;      // dout[n, g Og + m0, oh, ow]
    const T* xn = x + int64_t(col.n) * d.C * d.H * d.W;        // x[n, g Cg]
#pragma unroll
    for (int jj = 0; jj < kLoads; ++jj) {
      const int m = t / BK + kStepAlongK * jj;
      ra[jj] = ok && m < rows ? dn[int64_t(m) * d.L] : T(0);
    }
#pragma unroll
    for (int jj = 0; jj < kLoads; ++jj) {
      const int64_t at = ok && row_ok[jj] ? im2col_offset(d, row[jj], col.ih0, col.iw0) : -1;
      rb[jj] = at >= 0 ? xn[at] : T(0);
    }
  }
  template <class PutA, class PutB>
  __device__ __forceinline__ void stash(PutA&& put_a, PutB&& put_b) const {
    const int t = int(threadIdx.x);
#pragma unroll
    for (int jj = 0; jj < kLoads; ++jj) put_a(t % BK, t / BK + kStepAlongK * jj, ra[jj]);
#pragma unroll
    for (int jj = 0; jj < kLoads; ++jj) put_b(t % BK, t / BK + kStepAlongK * jj, rb[jj]);
  }
};

// Chunk z = blockIdx.z of the reduction, positions [z chunk, min(N OH OW, (z + 1) chunk)): its tile of
// dw [O, R] is added into dw when partial is null (one chunk), else written to partial[z] [O, R].
template <class T>
__global__ void __launch_bounds__(kThreads)
    dweight_gemm(T* __restrict__ dw, T* __restrict__ partial, const T* __restrict__ dout, const T* __restrict__ x,
                 Conv2dDims d, int m_tiles, int chunk) {
  __shared__ Tiles<T> sm;
  const int P = d.N * d.L, n0 = int(blockIdx.x) * BN;
  const int k_begin = int(blockIdx.z) * chunk, k_end = imin(P, k_begin + chunk);
  T* part = partial != nullptr ? partial + int64_t(blockIdx.z) * d.O * d.R : nullptr;
  const int tx = tile_tx(), ty = tile_ty();
  for (int gy = int(blockIdx.y); gy < d.G * m_tiles; gy += int(gridDim.y)) {
    const int grp = gy / m_tiles, m0 = (gy % m_tiles) * BM;
    DweightLoader<T> ld(dout, x, d, grp, m0, n0);
    T acc[TM][TN] = {};
    reduce_tiles(acc, sm, ld, k_begin, k_end);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int o = m0 + ty * TM + i;
      if (o >= d.Og) continue;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int r = n0 + tx + j * (BN / TN);
        if (r >= d.R) continue;
        const int64_t at = (int64_t(grp) * d.Og + o) * d.R + r;
        if (part != nullptr)
          part[at] = acc[i][j];
        else
          dw[at] += acc[i][j];
      }
    }
  }
}

// dw[e] += sum over z < splits of partial[z n + e], in order of z; e < n = O R.
template <class T>
__global__ void add_partials(T* __restrict__ dw, const T* __restrict__ partial, int64_t n, int splits) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    T s = T(0);
    for (int z = 0; z < splits; ++z) s += partial[z * n + e];
    dw[e] += s;
  }
}

// ---- dbias ----------------------------------------------------------------------------------------
// db[o] += sum over (n, l) of dout[n, o, l], a block per channel (looping past the grid), in double.
template <class T>
__global__ void __launch_bounds__(kReduceBlock) bias_grad(T* __restrict__ db, const T* __restrict__ dout, int N, int O,
                                                          int L) {
  for (int o = int(blockIdx.x); o < O; o += int(gridDim.x)) {
    double s = 0;
    for (int n = 0; n < N; ++n) {
      const T* dp = dout + (int64_t(n) * O + o) * L;
      for (int l = int(threadIdx.x); l < L; l += kReduceBlock) s += double(dp[l]);
    }
    s = block_sum(s);
    if (threadIdx.x == 0) db[o] += T(s);
  }
}

// ---- bfloat16 / float16 on the tensor cores (the general convolutions) ------------------------------
// The same three implicit GEMMs and loaders, with T = uint16_t: the loaders move 16-bit patterns (a
// zero pattern is +0). A step's tiles are staged k-contiguous, [outer][k] with rows of kLd16 halves, for
// mma.sync.m16n8k16 with float32 accumulation (mma16.cuh); 8 warps as 4 (m) x 2 (n), each 16 x 32 of the
// 64 x 64 tile, four m16n8 tiles per k step of 16 (conv2d_plan.hpp: mma16_warp_row0 / col0, kLd16).
// Outputs are rounded once: out and dx on store; dweight and dbias add their float32 sums to the
// 16-bit gradient and round the total (split-K partials stay float32 until then).
struct Tiles16 {
  uint16_t a[2][BM][kLd16];  // a[buf][m][k] = A[m0 + m, kt + k]
  uint16_t b[2][BN][kLd16];  // b[buf][n][k] = B[kt + k, n0 + n]
};

// acc (the warp's 16 x 32: four m16n8 tiles) += A[m0 :, k_begin : k_end] @ B[k_begin : k_end, n0 :];
// reduce_tiles' double buffering, with the loaders' elements stashed k-contiguous.
template <class F, class Loader>
__device__ __forceinline__ void reduce_tiles_mma(float (&acc)[4][4], Tiles16& sm, Loader& ld, int k_begin, int k_end) {
  if (k_begin >= k_end) return;
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int wm = mma16_warp_row0(warp), wn = mma16_warp_col0(warp);
  auto stash = [&](int buf) {
    ld.stash([&](int k, int m, uint16_t v) { sm.a[buf][m][k] = v; }, [&](int k, int n, uint16_t v) { sm.b[buf][n][k] = v; });
  };
  ld.fetch(k_begin, k_end);
  stash(0);
  __syncthreads();
  int buf = 0;
  for (int kt = k_begin; kt < k_end; kt += BK) {
    const bool more = kt + BK < k_end;
    if (more) ld.fetch(kt + BK, k_end);  // in flight during the multiply
    uint32_t af[4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
      af[r] = mma16::load_pair(&sm.a[buf][wm + gemm_plan::bf16_mma_a_row(lane, r)][gemm_plan::bf16_mma_a_col(lane, r)]);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint16_t* bn = sm.b[buf][wn + 8 * j + gemm_plan::mma_b_col(lane)];
      const uint32_t bf[2] = {mma16::load_pair(bn + gemm_plan::bf16_mma_b_row(lane, 0)),
                              mma16::load_pair(bn + gemm_plan::bf16_mma_b_row(lane, 1))};
      F::mma(acc[j], af, bf);
    }
    if (more) stash(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }
}

// The tile coordinates (m, n) of a warp's accumulator register acc[j][r].
__device__ __forceinline__ int mma16_m(int r) {
  return mma16_warp_row0(int(threadIdx.x) / 32) + gemm_plan::mma_c_row(int(threadIdx.x) % 32, r);
}
__device__ __forceinline__ int mma16_n(int j, int r) {
  return mma16_warp_col0(int(threadIdx.x) / 32) + 8 * j + gemm_plan::mma_c_col(int(threadIdx.x) % 32, r);
}

// forward_gemm in 16 bits: out = round(conv2d(x, w) + bias).
template <bool kBf16>
__global__ void __launch_bounds__(kThreads)
    forward_gemm16(uint16_t* __restrict__ out, const uint16_t* __restrict__ x, const uint16_t* __restrict__ w,
                   const uint16_t* __restrict__ bias, Conv2dDims d, int m_tiles) {
  using F = mma16::Format<kBf16>;
  __shared__ Tiles16 sm;
  const int P = d.N * d.L, n0 = int(blockIdx.x) * BN;
  for (int gy = int(blockIdx.y); gy < d.G * m_tiles; gy += int(gridDim.y)) {
    const int grp = gy / m_tiles, m0 = (gy % m_tiles) * BM;
    ForwardLoader<uint16_t> ld(x, w, d, grp, m0, n0 + int(threadIdx.x) % BN);
    float acc[4][4] = {};
    reduce_tiles_mma<F>(acc, sm, ld, 0, d.R);
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int p = n0 + mma16_n(j, r), o = m0 + mma16_m(r);
        if (p >= P || o >= d.Og) continue;
        int n, l;
        d.by_l.divmod(p, n, l);
        const int oc = grp * d.Og + o;
        out[(int64_t(n) * d.O + oc) * d.L + l] = F::narrow(acc[j][r] + (bias != nullptr ? F::widen(bias[oc]) : 0.0f));
      }
  }
}

// dx_gemm in 16 bits (phase f; overwrites its positions of dx).
template <bool kBf16>
__global__ void __launch_bounds__(kThreads)
    dx_gemm16(uint16_t* __restrict__ dx, const uint16_t* __restrict__ dout, const uint16_t* __restrict__ w,
              Conv2dDims d, Conv2dDxPhase f, int m_tiles) {
  using F = mma16::Format<kBf16>;
  __shared__ Tiles16 sm;
  const int P = d.N * f.Hr * f.Wr, n0 = int(blockIdx.x) * BN;
  for (int gy = int(blockIdx.y); gy < d.G * m_tiles; gy += int(gridDim.y)) {
    const int grp = gy / m_tiles, m0 = (gy % m_tiles) * BM;
    DxLoader<uint16_t> ld(dout, w, d, f, grp, m0, n0 + int(threadIdx.x) % BN);
    float acc[4][4] = {};
    reduce_tiles_mma<F>(acc, sm, ld, 0, f.K);
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int p = n0 + mma16_n(j, r), c = m0 + mma16_m(r);
        if (p >= P || c >= d.Cg) continue;
        const DxColumn col = dx_column(f, p);
        const int ih = f.rh + d.sh * col.i, iw = f.rw + d.sw * col.j;
        dx[((int64_t(col.n) * d.C + int64_t(grp) * d.Cg + c) * d.H + ih) * d.W + iw] = F::narrow(acc[j][r]);
      }
  }
}

// dweight_gemm in 16 bits: chunk z's float32 sums added into dw and rounded (one chunk), or written to
// partial[z] [O, R] (float32).
template <bool kBf16>
__global__ void __launch_bounds__(kThreads)
    dweight_gemm16(uint16_t* __restrict__ dw, float* __restrict__ partial, const uint16_t* __restrict__ dout,
                   const uint16_t* __restrict__ x, Conv2dDims d, int m_tiles, int chunk) {
  using F = mma16::Format<kBf16>;
  __shared__ Tiles16 sm;
  const int P = d.N * d.L, n0 = int(blockIdx.x) * BN;
  const int k_begin = int(blockIdx.z) * chunk, k_end = imin(P, k_begin + chunk);
  float* part = partial != nullptr ? partial + int64_t(blockIdx.z) * d.O * d.R : nullptr;
  for (int gy = int(blockIdx.y); gy < d.G * m_tiles; gy += int(gridDim.y)) {
    const int grp = gy / m_tiles, m0 = (gy % m_tiles) * BM;
    DweightLoader<uint16_t> ld(dout, x, d, grp, m0, n0);
    float acc[4][4] = {};
    reduce_tiles_mma<F>(acc, sm, ld, k_begin, k_end);
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int o = m0 + mma16_m(r), rr = n0 + mma16_n(j, r);
        if (o >= d.Og || rr >= d.R) continue;
        const int64_t at = (int64_t(grp) * d.Og + o) * d.R + rr;
        if (part != nullptr)
          part[at] = acc[j][r];
        else
          dw[at] = F::narrow(F::widen(dw[at]) + acc[j][r]);
      }
  }
}

// dw[e] = round(dw[e] + sum over z < splits of partial[z n + e]), the partials in order of z.
template <bool kBf16>
__global__ void add_partials16(uint16_t* __restrict__ dw, const float* __restrict__ partial, int64_t n, int splits) {
  using F = mma16::Format<kBf16>;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int z = 0; z < splits; ++z) s += partial[z * n + e];
    dw[e] = F::narrow(F::widen(dw[e]) + s);
  }
}

// db[o] = round(db[o] + sum over (n, l) of dout[n, o, l]), summed in double.
template <bool kBf16>
__global__ void __launch_bounds__(kReduceBlock) bias_grad16(uint16_t* __restrict__ db, const uint16_t* __restrict__ dout,
                                                            int N, int O, int L) {
  using F = mma16::Format<kBf16>;
  for (int o = int(blockIdx.x); o < O; o += int(gridDim.x)) {
    double s = 0;
    for (int n = 0; n < N; ++n) {
      const uint16_t* dp = dout + (int64_t(n) * O + o) * L;
      for (int l = int(threadIdx.x); l < L; l += kReduceBlock) s += double(F::widen(dp[l]));
    }
    s = block_sum(s);
    if (threadIdx.x == 0) db[o] = F::narrow(float(double(F::widen(db[o])) + s));
  }
}

// ---- depthwise (Cg = 1) ---------------------------------------------------------------------------
// Output channel o reads input channel o / Og (Og = the multiplier); w [O, 1, KH, KW].

// out[n, o, oh, ow] = bias[o] + sum over (kh, kw) of w[o, 0, kh, kw] x[n, o / Og, ih, iw].
// Block x: the plane (n, o); thread t of block y: positions l = y 256 + t, then + 256 gridDim.y.
template <class T>
__global__ void __launch_bounds__(kReduceBlock)
    depthwise_forward(T* __restrict__ out, const T* __restrict__ x, const T* __restrict__ w,
                      const T* __restrict__ bias, Conv2dDims d) {
  const int64_t plane = blockIdx.x;
  const int n = int(plane / d.O), o = int(plane % d.O);
  const T* xp = x + (int64_t(n) * d.C + o / d.Og) * d.H * d.W;  // [H, W]
  const T* wo = w + int64_t(o) * d.KH * d.KW;                    // [KH, KW]
  const T b = bias != nullptr ? bias[o] : T(0);
  T* op = out + plane * d.L;  // [OH, OW]
  for (int l = int(blockIdx.y * blockDim.x + threadIdx.x); l < d.L; l += int(gridDim.y * blockDim.x)) {
    int oh, ow;
    d.by_ow.divmod(l, oh, ow);
    const int ih0 = oh * d.sh - d.ph, iw0 = ow * d.sw - d.pw;
    T acc = b;
    for (int kh = 0; kh < d.KH; ++kh) {
      const int ih = ih0 + kh * d.dh;
      if (ih < 0 || ih >= d.H) continue;
      for (int kw = 0; kw < d.KW; ++kw) {
        const int iw = iw0 + kw * d.dw;
        if (iw >= 0 && iw < d.W) acc = fma(wo[kh * d.KW + kw], xp[int64_t(ih) * d.W + iw], acc);
      }
    }
    op[l] = acc;
  }
}

// dx[n, c, ih, iw] = sum over m < Og, (kh, kw) of w[c Og + m, 0, kh, kw] dout[n, c Og + m, oh, ow] over
// the outputs with oh sh = ih + ph - kh dh and ow sw = iw + pw - kw dw. Block x: the plane (n, c).
template <class T>
__global__ void __launch_bounds__(kReduceBlock)
    depthwise_dx(T* __restrict__ dx, const T* __restrict__ dout, const T* __restrict__ w, Conv2dDims d) {
  const int64_t plane = blockIdx.x;
  const int n = int(plane / d.C), c = int(plane % d.C);
  T* dxp = dx + plane * d.H * d.W;  // [H, W]
  const int HW = d.H * d.W;
  for (int e = int(blockIdx.y * blockDim.x + threadIdx.x); e < HW; e += int(gridDim.y * blockDim.x)) {
    int ih, iw;
    d.by_w.divmod(e, ih, iw);
    T acc = T(0);
    for (int m = 0; m < d.Og; ++m) {
      const int o = c * d.Og + m;
      const T* dp = dout + (int64_t(n) * d.O + o) * d.L;  // [OH, OW]
      const T* wo = w + int64_t(o) * d.KH * d.KW;
      for (int kh = 0; kh < d.KH; ++kh) {
        const int th = ih + d.ph - kh * d.dh;
        if (th < 0 || th % d.sh != 0) continue;
        const int oh = th / d.sh;
        if (oh >= d.OH) continue;
        for (int kw = 0; kw < d.KW; ++kw) {
          const int tw = iw + d.pw - kw * d.dw;
          if (tw < 0 || tw % d.sw != 0) continue;
          const int ow = tw / d.sw;
          if (ow < d.OW) acc = fma(wo[kh * d.KW + kw], dp[int64_t(oh) * d.OW + ow], acc);
        }
      }
    }
    dxp[e] = acc;
  }
}

// dw[o, 0, kh, kw] += sum over (n, oh, ow) of dout[n, o, oh, ow] x[n, o / Og, ih, iw], in double.
// Block (x, y): output channel o and tap (kh, kw) (each looping past the grid).
template <class T>
__global__ void __launch_bounds__(kReduceBlock)
    depthwise_dweight(T* __restrict__ dw, const T* __restrict__ dout, const T* __restrict__ x, Conv2dDims d) {
  const int taps = d.KH * d.KW;
  for (int o = int(blockIdx.x); o < d.O; o += int(gridDim.x))
    for (int tap = int(blockIdx.y); tap < taps; tap += int(gridDim.y)) {
      int kh, kw;
      d.by_kw.divmod(tap, kh, kw);
      double s = 0;
      for (int n = 0; n < d.N; ++n) {
        const T* dp = dout + (int64_t(n) * d.O + o) * d.L;                 // [OH, OW]
        const T* xp = x + (int64_t(n) * d.C + o / d.Og) * d.H * d.W;        // [H, W]
        for (int l = int(threadIdx.x); l < d.L; l += kReduceBlock) {
          int oh, ow;
          d.by_ow.divmod(l, oh, ow);
          const int ih = oh * d.sh - d.ph + kh * d.dh, iw = ow * d.sw - d.pw + kw * d.dw;
          if (ih >= 0 && ih < d.H && iw >= 0 && iw < d.W) s += double(dp[l]) * double(xp[int64_t(ih) * d.W + iw]);
        }
      }
      s = block_sum(s);
      if (threadIdx.x == 0) dw[int64_t(o) * taps + tap] += T(s);
    }
}

// ---- host side ------------------------------------------------------------------------------------
inline unsigned grid_limit(int64_t blocks, int64_t limit) { return unsigned(std::max<int64_t>(1, std::min(blocks, limit))); }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline Conv2dDims checked_dims(const Conv2dGeometry& g, const char* op) {
  GRAFT_CHECK(conv2d_fits_int32(g), op, "sizes beyond the CUDA kernels' 32-bit indices (input [", g.N, ", ", g.C,
              ", ", g.H, ", ", g.W, "], weight [", g.O, ", ", g.Cg, ", ", g.KH, ", ", g.KW, "], output ", g.OH, " x ",
              g.OW, "): each of N OH OW, N H W, Cg KH KW, Og KH KW, N O, N C must stay below 2^30");
  return conv2d_dims(g);
}

inline int multiprocessors(Device dev) {
  int count = 0;
  GRAFT_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev.index));
  return count;
}

// The kernels of one element type: float32 and float64 on the SIMT cores, 16-bit on the tensor cores
// (the patterns as uint16_t; partial sums in float32; no depthwise kernels: the op widens those).
template <class T>
struct SimtKernels {
  using Elem = T;
  using Partial = T;
  static constexpr bool kDepthwise = true;
  static constexpr auto forward = forward_gemm<T>;
  static constexpr auto dx = dx_gemm<T>;
  static constexpr auto dweight = dweight_gemm<T>;
  static constexpr auto add = add_partials<T>;
  static constexpr auto bias = bias_grad<T>;
};
template <bool kBf16>
struct TensorCoreKernels {
  using Elem = uint16_t;
  using Partial = float;
  static constexpr bool kDepthwise = false;
  static constexpr auto forward = forward_gemm16<kBf16>;
  static constexpr auto dx = dx_gemm16<kBf16>;
  static constexpr auto dweight = dweight_gemm16<kBf16>;
  static constexpr auto add = add_partials16<kBf16>;
  static constexpr auto bias = bias_grad16<kBf16>;
};

// fn.template operator()<Kernels>() with the kernel set of dtype dt.
template <class Fn>
void with_kernels(DType dt, const char* op, Fn&& fn) {
  if (dt == DType::BFloat16) return fn.template operator()<TensorCoreKernels<true>>();
  if (dt == DType::Float16) return fn.template operator()<TensorCoreKernels<false>>();
  GRAFT_DISPATCH_FLOAT(dt, op, T, [&] { fn.template operator()<SimtKernels<T>>(); });
}

}  // namespace conv2d_detail

// The conv2d slot's CUDA entry (contract at the top of this file).
inline void conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                           const Conv2dParams& p) {
  using namespace conv2d_detail;
  if (out.numel() == 0) return;
  const Conv2dGeometry g = conv2d_geometry(x.shape(), weight.shape(), p);
  const Conv2dDims d = checked_dims(g, "conv2d (cuda)");
  with_kernels(out.dtype(), "conv2d (cuda)", [&]<class K>() {
    using T = typename K::Elem;
    const KernelLaunch at(out.device());
    T* po = data_or_null<T>(out);
    const T *px = data_or_null<T>(x), *pw = data_or_null<T>(weight), *pb = data_or_null<T>(bias);
    if (g.depthwise()) {
      GRAFT_CHECK(K::kDepthwise, "conv2d (cuda)", "no 16-bit depthwise kernel (the op runs it in float32)");
      if constexpr (K::kDepthwise) {
        const dim3 grid(unsigned(g.N * g.O), grid_limit(ceil_div(g.L, kReduceBlock), 65535));
        depthwise_forward<T><<<grid, kReduceBlock, 0, at.stream>>>(po, px, pw, pb, d);
      }
    } else {
      const int m_tiles = int(ceil_div(g.Og, BM));
      const dim3 grid(unsigned(ceil_div(g.N * g.L, BN)), grid_limit(g.G * m_tiles, 65535));
      K::forward<<<grid, kThreads, 0, at.stream>>>(po, px, pw, pb, d, m_tiles);
    }
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

// The conv2d_backward slot's CUDA entry: dx overwritten, dweight and dbias accumulated (+=), each only
// when defined.
inline void conv2d_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dout,
                            const Tensor& x, const Tensor& weight, const Shape& x_shape, const Shape& w_shape,
                            const Conv2dParams& p) {
  using namespace conv2d_detail;
  const Conv2dGeometry g = conv2d_geometry(x_shape, w_shape, p);
  const Conv2dDims d = checked_dims(g, "conv2d_backward (cuda)");
  with_kernels(dout.dtype(), "conv2d_backward (cuda)", [&]<class K>() {
    using T = typename K::Elem;
    const KernelLaunch at(dout.device());
    if (g.N * g.L == 0) return;  // an empty batch: dx is empty too, nothing reaches dweight or dbias
    GRAFT_CHECK(K::kDepthwise || !g.depthwise(), "conv2d_backward (cuda)",
                "no 16-bit depthwise kernel (the op runs it in float32)");
    const T* pd = data_or_null<T>(dout);
    if (dx.defined()) {
      T* pdx = data_or_null<T>(dx);
      const T* pw = data_or_null<T>(weight);
      if (g.depthwise()) {
        if constexpr (K::kDepthwise) {
          const dim3 grid(unsigned(g.N * g.C), grid_limit(ceil_div(g.H * g.W, kReduceBlock), 65535));
          depthwise_dx<T><<<grid, kReduceBlock, 0, at.stream>>>(pdx, pd, pw, d);
          GRAFT_CUDA_CHECK(cudaGetLastError());
        }
      } else {
        const int m_tiles = int(ceil_div(g.Cg, BM));
        for (int64_t rh = 0; rh < g.sh; ++rh)
          for (int64_t rw = 0; rw < g.sw; ++rw) {
            const Conv2dDxPhase f = conv2d_dx_phase(g, rh, rw);
            const int64_t cols = g.N * f.Hr * f.Wr;
            if (cols == 0) continue;  // the stride is larger than the input: no input position here
            const dim3 grid(unsigned(ceil_div(cols, BN)), grid_limit(g.G * m_tiles, 65535));
            K::dx<<<grid, kThreads, 0, at.stream>>>(pdx, pd, pw, d, f, m_tiles);
            GRAFT_CUDA_CHECK(cudaGetLastError());
          }
      }
    }
    if (dweight.defined()) {
      T* pdw = data_or_null<T>(dweight);
      const T* px = data_or_null<T>(x);
      if (g.depthwise()) {
        if constexpr (K::kDepthwise) {
          const dim3 grid(grid_limit(g.O, int64_t(1) << 30), grid_limit(g.KH * g.KW, 65535));
          depthwise_dweight<T><<<grid, kReduceBlock, 0, at.stream>>>(pdw, pd, px, d);
          GRAFT_CUDA_CHECK(cudaGetLastError());
        }
      } else {
        const int m_tiles = int(ceil_div(g.Og, BM));
        const int64_t tiles = g.G * m_tiles * ceil_div(g.R, BN);
        // About 4 blocks per multiprocessor in all; chunks of at least 32 steps; at most 64 partials.
        const Conv2dSplit split = conv2d_split_k(tiles, g.N * g.L, BK, 32 * BK, 4 * multiprocessors(dout.device()), 64);
        const dim3 grid(unsigned(ceil_div(g.R, BN)), grid_limit(g.G * m_tiles, 65535), unsigned(split.splits));
        using Partial = typename K::Partial;
        if (split.splits == 1) {
          K::dweight<<<grid, kThreads, 0, at.stream>>>(pdw, static_cast<Partial*>(nullptr), pd, px, d, m_tiles,
                                                       split.chunk);
          GRAFT_CUDA_CHECK(cudaGetLastError());
        } else {
          // Allocated on this stream (the caching allocator's blocks are stream-ordered), freed after
          // the launches are queued: a later user of the block runs after them on the same stream.
          const DType partial_dt = std::is_same_v<Partial, float> ? DType::Float32 : DType::Float64;
          const Tensor partial = empty(Shape{split.splits, g.O, g.R}, partial_dt, dout.device());
          Partial* pp = data_or_null<Partial>(partial);
          K::dweight<<<grid, kThreads, 0, at.stream>>>(pdw, pp, pd, px, d, m_tiles, split.chunk);
          GRAFT_CUDA_CHECK(cudaGetLastError());
          K::add<<<grid_for(g.O * g.R, 256), 256, 0, at.stream>>>(pdw, pp, g.O * g.R, split.splits);
          GRAFT_CUDA_CHECK(cudaGetLastError());
        }
      }
    }
    if (dbias.defined()) {
      K::bias<<<grid_limit(g.O, 65535), kReduceBlock, 0, at.stream>>>(data_or_null<T>(dbias), pd, d.N, d.O, d.L);
      GRAFT_CUDA_CHECK(cudaGetLastError());
    }
  });
}

}  // namespace graft::kernels::cuda
