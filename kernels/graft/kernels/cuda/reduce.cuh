// graft/kernels/cuda/reduce.cuh - reductions on the GPU: sum over any set of dims, and the row
// reductions behind var, max / min (with indices), amax / amin, their backward passes and
// clip_grad_norm_'s per-gradient norm. Warp shuffles, then a block, then (for long reductions) a
// second pass over per-block partial results.
//
//   sum_forward(out, x, mask): out[o] = sum of x over the dims where mask is true, o running over the
//   other dims in row-major order (the sum slot's contract, ops/reduce.hpp). Any strides.
//
// Short reductions (at most 64 terms) take one thread per output. Longer ones give each output one or
// more blocks of 256 threads ("chunks" of its terms, as many as keep the GPU busy, at most 256); each
// thread adds its terms in order, the block adds the 256 sums by shuffles, and a second kernel adds an
// output's chunk sums, one warp per output. Sums are carried in double and rounded once, as the
// one-thread kernel does; the grouping is fixed by the shape, so a run repeats its bits.
//
// The row reductions (second half of this file) share one driver, run_row_reduce: an "op" says what
// a row's state is (a double sum, a value and its index, a tie count), how one element joins it, how
// two states merge, and what to write at the end; reduce_plan.hpp picks the thread mapping (a thread,
// a warp or blocks of chunks per row, by shape alone) and holds the index math. The slots' contracts
// (ops/var.hpp, ops/minmax.hpp, optim/clip.hpp), float32 and float64:
//   var_forward(out [M], x [M, K], M, K, correction): two passes in double, the mean, then
//     sum (x - mean)^2 / max(0, K - correction), as the CPU reference (the grouping of the sums differs).
//   var_backward(dx [M, K], dout [M], x, M, K, correction): the row means (the first pass again), then
//     dx = 2 dout (x - mean) / (K - correction), a thread per element.
//   max_dim_forward(values, indices, x [outer, n, inner], ...): the extreme and its int64 index per
//     (o, i); values may be undefined (argmax). The merge gives the CPU scan's answer exactly (NaN wins;
//     equal values and NaNs go to the first index: merge_extreme), so values and indices are bit-equal.
//   max_dim_backward(dx [outer, n, inner], dvalues, indices, ...): dvalues at the selected index, 0
//     elsewhere, a thread per element of dx (no zero-fill pass).
//   amax_forward(out [M], x [M, K], M, K, is_max): the same merge with the index dropped: bit-equal.
//   amax_backward(dx, dout, x, out, M, K): per row the number of ties (x == out, or both NaN) and
//     share = dout / count in T (the CPU's division), then dx = share at the ties, 0 elsewhere.
//   grad_norm_part(g, p): sum |g|^p in double (max |g| for p = inf), NaN when an element is not
//     finite; one row, the result copied back to the host (the slot returns a double).
#pragma once
#include <cuda_runtime.h>

#include <math_constants.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "graft/core/dtype.hpp"
#include "graft/core/storage.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"
#include "graft/kernels/cuda/reduce_plan.hpp"

namespace graft::kernels::cuda {

namespace reduce_detail {
constexpr int kReduceBlock = 256;

__device__ inline double warp_sum(double v) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;  // lane 0 holds the warp's sum
}

// The sum of v over the block's threads, on thread 0 (blockDim.x == kReduceBlock).
__device__ inline double block_sum(double v) {
  __shared__ double warp_sums[kReduceBlock / 32];
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  v = warp_sum(v);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kReduceBlock / 32 ? warp_sums[threadIdx.x] : 0.0;
  if (warp == 0) v = warp_sum(v);
  __syncthreads();  // warp_sums may be reused by the caller's next call
  return v;
}

// One thread per output: out[o] = sum_j x[outer(o) + inner(j)].
template <class T>
__global__ void sum_per_thread(T* out, const T* x, Strided outer, Strided inner, int64_t n_out, int64_t n_inner) {
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < n_out; o += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = strided_offset(outer, o);
    double acc = 0;
    for (int64_t j = 0; j < n_inner; ++j) acc += double(x[base + strided_offset(inner, j)]);
    out[o] = T(acc);
  }
}

// Block (c, o') for outputs o = o' + k gridDim.y: the sum of chunk c of output o's terms, to
// partial[o * chunks + c], or straight to out[o] when there is one chunk (partial == nullptr).
template <class T>
__global__ void __launch_bounds__(kReduceBlock) sum_chunks(T* out, double* partial, const T* x, Strided outer, Strided inner,
                                                     int64_t n_out, int64_t n_inner, int chunks) {
  const int c = int(blockIdx.x);
  const int64_t per = (n_inner + chunks - 1) / chunks, begin = c * per, end = begin + per < n_inner ? begin + per : n_inner;
  for (int64_t o = blockIdx.y; o < n_out; o += gridDim.y) {
    const int64_t base = strided_offset(outer, o);
    double acc = 0;
    for (int64_t j = begin + threadIdx.x; j < end; j += kReduceBlock) acc += double(x[base + strided_offset(inner, j)]);
    acc = block_sum(acc);
    if (threadIdx.x == 0) {
      if (partial)
        partial[o * chunks + c] = acc;
      else
        out[o] = T(acc);
    }
  }
}

// One warp per output: out[o] = sum over c of partial[o * chunks + c].
template <class T>
__global__ void sum_finish(T* out, const double* partial, int64_t n_out, int chunks) {
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  const int lane = int(threadIdx.x) % 32;
  for (int64_t o = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32; o < n_out; o += warps) {
    double acc = 0;
    for (int c = lane; c < chunks; c += 32) acc += partial[o * chunks + c];
    acc = warp_sum(acc);
    if (lane == 0) out[o] = T(acc);
  }
}
}  // namespace reduce_detail

inline void sum_forward(const Tensor& out, const Tensor& x, const std::vector<bool>& mask) {
  using namespace reduce_detail;
  Shape outer_shape, outer_strides, inner_shape, inner_strides;
  for (int d = 0; d < x.dim(); ++d) {
    if (mask[size_t(d)]) {
      inner_shape.push_back(x.size(d));
      inner_strides.push_back(x.strides()[d]);
    } else {
      outer_shape.push_back(x.size(d));
      outer_strides.push_back(x.strides()[d]);
    }
  }
  const int64_t n_out = out.numel(), n_inner = inner_shape.numel();
  if (n_out == 0) return;
  const Strided outer = make_strided(outer_shape, outer_strides), inner = make_strided(inner_shape, inner_strides);
  GRAFT_DISPATCH_FLOAT(x.dtype(), "sum (cuda)", T, [&] {
    const KernelLaunch at(out.device());
    T* po = static_cast<T*>(out.data_ptr());
    const T* px = static_cast<const T*>(x.data_ptr());
    if (n_inner <= 64) {
      sum_per_thread<T><<<grid_for(n_out, kReduceBlock), kReduceBlock, 0, at.stream>>>(po, px, outer, inner, n_out, n_inner);
      GRAFT_CUDA_CHECK(cudaGetLastError());
      return;
    }
    // Chunks per output: enough blocks for every SM a few times over, each chunk at least 2048 terms.
    const int64_t want_blocks = 4 * 132;
    int chunks = int(std::clamp<int64_t>((want_blocks + n_out - 1) / n_out, 1, 256));
    chunks = int(std::max<int64_t>(1, std::min<int64_t>(chunks, n_inner / 2048)));
    const dim3 grid(unsigned(chunks), unsigned(std::min<int64_t>(n_out, 65535)));
    if (chunks == 1) {
      sum_chunks<T><<<grid, kReduceBlock, 0, at.stream>>>(po, nullptr, px, outer, inner, n_out, n_inner, 1);
      GRAFT_CUDA_CHECK(cudaGetLastError());
      return;
    }
    // The partial sums live in a block of the caching allocator on this stream, freed (to the
    // stream's pool) right after the launches: later work on the stream runs after them.
    Allocator& alloc = allocator_for(out.device());
    const size_t bytes = size_t(n_out) * size_t(chunks) * sizeof(double);
    auto* partial = static_cast<double*>(alloc.allocate(bytes, out.device()));
    sum_chunks<T><<<grid, kReduceBlock, 0, at.stream>>>(po, partial, px, outer, inner, n_out, n_inner, chunks);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) {
      sum_finish<T><<<grid_for(n_out * 32, kReduceBlock), kReduceBlock, 0, at.stream>>>(po, partial, n_out, chunks);
      e = cudaGetLastError();
    }
    alloc.deallocate(partial, bytes, out.device());
    GRAFT_CUDA_CHECK(e);
  });
}

// ---- row reductions ------------------------------------------------------------------------------
namespace row_reduce_detail {

// A block of the caching allocator for the length of a scope (partial results, row means). Freed to
// the stream's pool when the scope ends, right after the launches: later work on the stream runs
// after them, as sum_forward's partial sums.
class DeviceScratch {
 public:
  DeviceScratch(Device d, size_t bytes) : d_(d), bytes_(bytes), p_(allocator_for(d).allocate(bytes, d)) {}
  ~DeviceScratch() { allocator_for(d_).deallocate(p_, bytes_, d_); }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  Device d_;
  size_t bytes_;
  void* p_;
};

// __shfl_down_sync of any trivially copyable state, 32 bits at a time.
template <class S>
__device__ inline S shfl_down_state(S s, int off) {
  static_assert(sizeof(S) % 4 == 0, "row-reduction states are whole 32-bit words");
  constexpr int kWords = int(sizeof(S) / 4);
  unsigned w[kWords];
  memcpy(w, &s, sizeof(S));
#pragma unroll
  for (int i = 0; i < kWords; ++i) w[i] = __shfl_down_sync(0xffffffffu, w[i], off);
  memcpy(&s, w, sizeof(S));
  return s;
}

// The merge of the 32 lanes' states, on lane 0 (all 32 lanes take part).
template <class Op>
__device__ inline typename Op::State warp_merge(const Op& op, typename Op::State s) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) s = op.merge(s, shfl_down_state(s, off));
  return s;
}

// The merge of the block's kRowReduceBlock states, on thread 0.
template <class Op>
__device__ inline typename Op::State block_merge(const Op& op, typename Op::State s) {
  constexpr int kWarps = kRowReduceBlock / 32;
  __shared__ typename Op::State warp_states[kWarps];
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  s = warp_merge(op, s);
  if (lane == 0) warp_states[warp] = s;
  __syncthreads();
  if (warp == 0) s = warp_merge(op, lane < kWarps ? warp_states[lane] : op.identity());
  __syncthreads();  // warp_states is reused by the next row of the caller's loop
  return s;
}

// The op concept (each op below):
//   State                          the running result of part of a row (trivially copyable)
//   Row row(r)                     what take needs of row r (its first element, a per-row value)
//   State identity()               no elements
//   void take(State&, Row, k)      element k of the row joins the state
//   State merge(State, State)      any grouping gives the same answer (up to rounding for sums)
//   void finish(r, State)          writes row r's result

// ThreadPerRow: thread r walks row r in order.
template <class Op>
__global__ void __launch_bounds__(kRowReduceBlock) rows_per_thread(Op op, int64_t rows, int64_t len) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x) {
    typename Op::State s = op.identity();
    const auto row = op.row(r);
    for (int64_t k = 0; k < len; ++k) op.take(s, row, k);
    op.finish(r, s);
  }
}

// WarpPerRow: warp w of block b takes rows b * kRowsPerWarpBlock + w, then every gridDim.x *
// kRowsPerWarpBlock-th; lane l reads elements l, l + 32, ...
template <class Op>
__global__ void __launch_bounds__(kRowReduceBlock) rows_per_warp(Op op, int64_t rows, int64_t len) {
  const int lane = int(threadIdx.x) % 32;
  const int64_t warps = int64_t(gridDim.x) * kRowsPerWarpBlock;
  for (int64_t r = int64_t(blockIdx.x) * kRowsPerWarpBlock + threadIdx.x / 32; r < rows; r += warps) {
    typename Op::State s = op.identity();
    const auto row = op.row(r);
    for (int64_t k = lane; k < len; k += 32) op.take(s, row, k);
    s = warp_merge(op, s);
    if (lane == 0) op.finish(r, s);
  }
}

// Blocks: block (c, r') reduces chunk c of rows r = r' + j gridDim.y (the loop is the same for the
// whole block, so the __syncthreads of block_merge are reached by every thread). Its state goes to
// partial[r * chunks + c], or is finished straight away when there is one chunk (partial == nullptr).
template <class Op>
__global__ void __launch_bounds__(kRowReduceBlock) row_chunks(Op op, typename Op::State* partial, int64_t rows,
                                                              int64_t len, int chunks) {
  const int c = int(blockIdx.x);
  const int64_t begin = chunk_begin(len, chunks, c), end = chunk_end(len, chunks, c);
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    typename Op::State s = op.identity();
    const auto row = op.row(r);
    for (int64_t k = begin + threadIdx.x; k < end; k += kRowReduceBlock) op.take(s, row, k);
    s = block_merge(op, s);
    if (threadIdx.x == 0) {
      if (partial)
        partial[r * chunks + c] = s;
      else
        op.finish(r, s);
    }
  }
}

// The second pass of Blocks: one warp per row merges its `chunks` states.
template <class Op>
__global__ void __launch_bounds__(kRowReduceBlock) merge_chunks(Op op, const typename Op::State* partial,
                                                                int64_t rows, int chunks) {
  const int lane = int(threadIdx.x) % 32;
  const int64_t warps = int64_t(gridDim.x) * kRowsPerWarpBlock;
  for (int64_t r = int64_t(blockIdx.x) * kRowsPerWarpBlock + threadIdx.x / 32; r < rows; r += warps) {
    typename Op::State s = op.identity();
    for (int c = lane; c < chunks; c += 32) s = op.merge(s, partial[r * chunks + c]);
    s = warp_merge(op, s);
    if (lane == 0) op.finish(r, s);
  }
}

// Enqueues the reduction of l's rows by op on stream (device d current); returns the first launch
// error (cudaSuccess when none) so callers can release their own buffers before throwing.
template <class Op>
cudaError_t run_row_reduce(const Op& op, const RowLayout& l, Device d, cudaStream_t stream) {
  if (l.rows == 0) return cudaSuccess;
  const RowReducePlan p = plan_row_reduce(l);
  switch (p.mode) {
    case RowReduceMode::ThreadPerRow:
      rows_per_thread<<<unsigned(p.grid_x), kRowReduceBlock, 0, stream>>>(op, l.rows, l.len);
      return cudaGetLastError();
    case RowReduceMode::WarpPerRow:
      rows_per_warp<<<unsigned(p.grid_x), kRowReduceBlock, 0, stream>>>(op, l.rows, l.len);
      return cudaGetLastError();
    case RowReduceMode::Blocks:
      break;
  }
  const dim3 grid(unsigned(p.grid_x), unsigned(p.grid_y));
  if (p.chunks == 1) {
    row_chunks<<<grid, kRowReduceBlock, 0, stream>>>(op, static_cast<typename Op::State*>(nullptr), l.rows, l.len, 1);
    return cudaGetLastError();
  }
  const DeviceScratch partial(d, size_t(l.rows) * size_t(p.chunks) * sizeof(typename Op::State));
  auto* states = partial.as<typename Op::State>();
  row_chunks<<<grid, kRowReduceBlock, 0, stream>>>(op, states, l.rows, l.len, p.chunks);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  merge_chunks<<<blocks_for_rows(l.rows, kRowsPerWarpBlock), kRowReduceBlock, 0, stream>>>(op, states, l.rows,
                                                                                           p.chunks);
  return cudaGetLastError();
}

// Row r of a RowLayout: its first element and the distance between its elements.
template <class T>
struct RowRef {
  const T* p;
  int64_t step;
  __device__ T operator[](int64_t k) const { return p[k * step]; }
};

// mean[r] = (sum of row r in double) / len: var's first pass.
template <class T>
struct RowMean {
  using State = double;
  using Row = RowRef<T>;
  const T* x;
  RowLayout l;
  double* mean;
  __device__ State identity() const { return 0.0; }
  __device__ Row row(int64_t r) const { return {x + l.start(r), l.inner}; }
  __device__ void take(State& s, const Row& row, int64_t k) const { s += double(row[k]); }
  __device__ State merge(State a, State b) const { return a + b; }
  __device__ void finish(int64_t r, State s) const { mean[r] = s / double(l.len); }
};

// out[r] = T(sum_k (x[r, k] - mean[r])^2 / divisor): var's second pass.
template <class T>
struct RowVariance {
  using State = double;
  struct Row {
    RowRef<T> x;
    double mean;
  };
  const T* x;
  RowLayout l;
  const double* mean;
  T* out;
  double divisor;
  __device__ State identity() const { return 0.0; }
  __device__ Row row(int64_t r) const { return {{x + l.start(r), l.inner}, mean[r]}; }
  __device__ void take(State& s, const Row& row, int64_t k) const {
    const double d = double(row.x[k]) - row.mean;
    s += d * d;
  }
  __device__ State merge(State a, State b) const { return a + b; }
  __device__ void finish(int64_t r, State s) const { out[r] = T(s / divisor); }
};

// The extreme of row r and its index (merge_extreme, reduce_plan.hpp); values / indices may be null.
template <class T>
struct RowExtreme {
  using State = ExtremeState<T>;
  using Row = RowRef<T>;
  const T* x;
  RowLayout l;
  T* values;
  int64_t* indices;
  bool is_max;
  __device__ State identity() const { return {T(0), -1}; }
  __device__ Row row(int64_t r) const { return {x + l.start(r), l.inner}; }
  __device__ void take(State& s, const Row& row, int64_t k) const { s = merge_extreme(s, State{row[k], k}, is_max); }
  __device__ State merge(State a, State b) const { return merge_extreme(a, b, is_max); }
  __device__ void finish(int64_t r, State s) const {
    if (values) values[r] = s.v;
    if (indices) indices[r] = s.k;
  }
};

// The tie rule of amax_backward_reference: v equals the row's extreme, or both are NaN.
template <class T>
__device__ inline bool is_tie(T v, T best) {
  return v == best || (v != v && best != best);
}

// share[r] = dout[r] / T(number of ties in row r), the CPU's division in T.
template <class T>
struct RowTieShare {
  using State = long long;
  struct Row {
    RowRef<T> x;
    T best;
  };
  const T* x;
  RowLayout l;
  const T* best;
  const T* dout;
  T* share;
  __device__ State identity() const { return 0; }
  __device__ Row row(int64_t r) const { return {{x + l.start(r), l.inner}, best[r]}; }
  __device__ void take(State& s, const Row& row, int64_t k) const { s += is_tie(row.x[k], row.best) ? 1 : 0; }
  __device__ State merge(State a, State b) const { return a + b; }
  __device__ void finish(int64_t r, State s) const { share[r] = dout[r] / T(s); }
};

// max(a, b) where a NaN wins.
__device__ inline double nan_max(double a, double b) { return a != a || b != b ? CUDART_NAN : (a > b ? a : b); }

// sum |x|^p in double (max |x| when inf_norm), an element that is not finite making it NaN; the
// result as the bits of a double in *result (one row: the whole gradient).
template <class T>
struct GradNorm {
  using State = double;
  using Row = RowRef<T>;
  const T* x;
  double p;
  bool inf_norm;
  long long* result;
  __device__ State identity() const { return 0.0; }
  __device__ Row row(int64_t) const { return {x, 1}; }
  __device__ void take(State& s, const Row& row, int64_t k) const {
    double a = fabs(double(row[k]));
    if (!isfinite(a)) a = CUDART_NAN;
    s = inf_norm ? nan_max(s, a) : s + (p == 2.0 ? a * a : pow(a, p));
  }
  __device__ State merge(State a, State b) const { return inf_norm ? nan_max(a, b) : a + b; }
  __device__ void finish(int64_t, State s) const { *result = __double_as_longlong(s); }
};

// dx[m, k] = T(2 dout[m] / divisor * (x[m, k] - mean[m])), dx, x contiguous [M, K].
template <class T>
__global__ void var_gradient(T* dx, const T* dout, const T* x, const double* mean, int64_t M, int64_t K,
                             double divisor) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < M * K; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = e / K;
    const double scale = 2.0 * double(dout[m]) / divisor;
    dx[e] = T(scale * (double(x[e]) - mean[m]));
  }
}

// dx[o, k, i] = dvalues[o, i] where k == indices[o, i], else 0 (dx [outer, n, inner] contiguous).
template <class T>
__global__ void scatter_selected(T* dx, const T* dvalues, const int64_t* indices, int64_t outer, int64_t n,
                                 int64_t inner) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < outer * n * inner;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = e / (n * inner), k = (e / inner) % n, j = o * inner + e % inner;
    dx[e] = indices[j] == k ? dvalues[j] : T(0);
  }
}

// dx[m, k] = share[m] at the ties of row m, else 0 (dx, x contiguous [M, K]).
template <class T>
__global__ void spread_ties(T* dx, const T* x, const T* best, const T* share, int64_t M, int64_t K) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < M * K; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = e / K;
    dx[e] = is_tie(x[e], best[m]) ? share[m] : T(0);
  }
}

constexpr unsigned kElementBlock = 256;
}  // namespace row_reduce_detail

inline void var_forward(const Tensor& out, const Tensor& x, int64_t M, int64_t K, int64_t correction) {
  using namespace row_reduce_detail;
  if (M == 0) return;
  const RowLayout l{M, K, 1};
  const double divisor = double(std::max<int64_t>(0, K - correction));
  GRAFT_DISPATCH_FLOAT(x.dtype(), "var (cuda)", T, [&] {
    const KernelLaunch at(out.device());
    const DeviceScratch mean(out.device(), size_t(M) * sizeof(double));
    const T* px = static_cast<const T*>(x.data_ptr());
    cudaError_t e = run_row_reduce(RowMean<T>{px, l, mean.as<double>()}, l, out.device(), at.stream);
    if (e == cudaSuccess)
      e = run_row_reduce(RowVariance<T>{px, l, mean.as<double>(), static_cast<T*>(out.data_ptr()), divisor}, l,
                         out.device(), at.stream);
    GRAFT_CUDA_CHECK(e);
  });
}

inline void var_backward(const Tensor& dx, const Tensor& dout, const Tensor& x, int64_t M, int64_t K,
                         int64_t correction) {
  using namespace row_reduce_detail;
  if (M * K == 0) return;
  const RowLayout l{M, K, 1};
  const double divisor = double(std::max<int64_t>(0, K - correction));
  GRAFT_DISPATCH_FLOAT(x.dtype(), "var_backward (cuda)", T, [&] {
    const KernelLaunch at(dx.device());
    const DeviceScratch mean(dx.device(), size_t(M) * sizeof(double));
    const T* px = static_cast<const T*>(x.data_ptr());
    cudaError_t e = run_row_reduce(RowMean<T>{px, l, mean.as<double>()}, l, dx.device(), at.stream);
    if (e == cudaSuccess) {
      var_gradient<T><<<grid_for(M * K, kElementBlock), kElementBlock, 0, at.stream>>>(
          static_cast<T*>(dx.data_ptr()), static_cast<const T*>(dout.data_ptr()), px, mean.as<double>(), M, K,
          divisor);
      e = cudaGetLastError();
    }
    GRAFT_CUDA_CHECK(e);
  });
}

inline void max_dim_forward(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t outer, int64_t n,
                            int64_t inner, bool is_max) {
  using namespace row_reduce_detail;
  const RowLayout l{outer * inner, n, inner};
  GRAFT_DISPATCH_FLOAT(x.dtype(), is_max ? "max (cuda)" : "min (cuda)", T, [&] {
    const KernelLaunch at(indices.device());
    GRAFT_CUDA_CHECK(run_row_reduce(RowExtreme<T>{static_cast<const T*>(x.data_ptr()), l, data_or_null<T>(values),
                                                  static_cast<int64_t*>(indices.data_ptr()), is_max},
                                    l, indices.device(), at.stream));
  });
}

inline void max_dim_backward(const Tensor& dx, const Tensor& dvalues, const Tensor& indices, int64_t outer, int64_t n,
                             int64_t inner) {
  using namespace row_reduce_detail;
  const int64_t total = outer * n * inner;
  if (total == 0) return;
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "max_backward (cuda)", T, [&] {
    const KernelLaunch at(dx.device());
    scatter_selected<T><<<grid_for(total, kElementBlock), kElementBlock, 0, at.stream>>>(
        static_cast<T*>(dx.data_ptr()), static_cast<const T*>(dvalues.data_ptr()),
        static_cast<const int64_t*>(indices.data_ptr()), outer, n, inner);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void amax_forward(const Tensor& out, const Tensor& x, int64_t M, int64_t K, bool is_max) {
  using namespace row_reduce_detail;
  const RowLayout l{M, K, 1};
  GRAFT_DISPATCH_FLOAT(x.dtype(), is_max ? "amax (cuda)" : "amin (cuda)", T, [&] {
    const KernelLaunch at(out.device());
    GRAFT_CUDA_CHECK(run_row_reduce(RowExtreme<T>{static_cast<const T*>(x.data_ptr()), l,
                                                  static_cast<T*>(out.data_ptr()), nullptr, is_max},
                                    l, out.device(), at.stream));
  });
}

inline void amax_backward(const Tensor& dx, const Tensor& dout, const Tensor& x, const Tensor& out, int64_t M,
                          int64_t K) {
  using namespace row_reduce_detail;
  if (M * K == 0) return;
  const RowLayout l{M, K, 1};
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "amax_backward (cuda)", T, [&] {
    const KernelLaunch at(dx.device());
    const DeviceScratch share(dx.device(), size_t(M) * sizeof(T));
    const T* px = static_cast<const T*>(x.data_ptr());
    const T* best = static_cast<const T*>(out.data_ptr());
    cudaError_t e = run_row_reduce(
        RowTieShare<T>{px, l, best, static_cast<const T*>(dout.data_ptr()), share.as<T>()}, l, dx.device(), at.stream);
    if (e == cudaSuccess) {
      spread_ties<T><<<grid_for(M * K, kElementBlock), kElementBlock, 0, at.stream>>>(
          static_cast<T*>(dx.data_ptr()), px, best, share.as<T>(), M, K);
      e = cudaGetLastError();
    }
    GRAFT_CUDA_CHECK(e);
  });
}

// The grad_norm slot (optim/clip.hpp): g contiguous on the GPU; the stream is synchronized to return.
inline double grad_norm_part(const Tensor& g, double norm_type) {
  using namespace row_reduce_detail;
  const int64_t n = g.numel();
  if (n == 0) return 0.0;
  const RowLayout l{1, n, 1};
  return GRAFT_DISPATCH_FLOAT(g.dtype(), "clip_grad_norm_ (cuda)", T, [&] {
    long long bits = 0;
    cudaError_t e;
    {
      const KernelLaunch at(g.device());
      const DeviceScratch result(g.device(), sizeof(long long));
      e = run_row_reduce(GradNorm<T>{static_cast<const T*>(g.data_ptr()), norm_type, std::isinf(norm_type),
                                     result.as<long long>()},
                         l, g.device(), at.stream);
      if (e == cudaSuccess)
        e = cudaMemcpyAsync(&bits, result.as<long long>(), sizeof bits, cudaMemcpyDeviceToHost, at.stream);
      if (e == cudaSuccess) e = cudaStreamSynchronize(at.stream);
    }
    GRAFT_CUDA_CHECK(e);
    double v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
  });
}

}  // namespace graft::kernels::cuda
