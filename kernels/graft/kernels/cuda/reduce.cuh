// graft/kernels/cuda/reduce.cuh - sum over any set of dims on the GPU: warp shuffles, then a block,
// then (for long reductions) a second pass over per-block partial sums.
//
//   sum_forward(out, x, mask): out[o] = sum of x over the dims where mask is true, o running over the
//   other dims in row-major order (the sum slot's contract, ops/reduce.hpp). Any strides.
//
// Short reductions (at most 64 terms) take one thread per output. Longer ones give each output one or
// more blocks of 256 threads ("chunks" of its terms, as many as keep the GPU busy, at most 256); each
// thread adds its terms in order, the block adds the 256 sums by shuffles, and a second kernel adds an
// output's chunk sums, one warp per output. Sums are carried in double and rounded once, as the
// one-thread kernel does; the grouping is fixed by the shape, so a run repeats its bits.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "graft/core/dtype.hpp"
#include "graft/core/storage.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"

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

}  // namespace graft::kernels::cuda
