// graft/kernels/cuda/embedding.cuh - embedding lookup and its backward on the GPU, and the index
// check the indexing ops run first (graft/ops/embedding.hpp, graft/ops/index.hpp).
//   index_range_check(index64, n, &first_bad, &bad_value): the first position holding a value outside
//     [0, n), found on the GPU (one block, a min-reduction); only the two results come back.
//   embedding_forward(out [n, D], weight [V, D], indices [n]): a thread per output element.
//   embedding_backward(dweight [V, D] zeroed, dout [n, D], indices [n], padding_idx): a thread per
//     column walking the tokens in order, as the CPU kernel does, so a token repeated in the batch
//     adds up in the same order: the same bits, no atomics. (Sorting the tokens first, as PyTorch
//     does, would use more threads; this is the plain version.)
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "graft/core/dtype.hpp"
#include "graft/core/storage.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"

namespace graft::kernels::cuda {

namespace embedding_detail {
constexpr int kCheckBlock = 1024;

__global__ void __launch_bounds__(kCheckBlock) first_out_of_range(long long* result, const int64_t* p, int64_t m,
                                                                  int64_t n) {
  __shared__ long long firsts[kCheckBlock / 32];
  long long first = m;
  for (int64_t i = threadIdx.x; i < m; i += kCheckBlock)
    if ((p[i] < 0 || p[i] >= n) && i < first) first = i;
  for (int off = 16; off > 0; off /= 2) {
    const long long o = __shfl_down_sync(0xffffffffu, first, off);
    first = o < first ? o : first;
  }
  if (threadIdx.x % 32 == 0) firsts[threadIdx.x / 32] = first;
  __syncthreads();
  if (threadIdx.x == 0) {
    long long f = m;
    for (int k = 0; k < kCheckBlock / 32; ++k) f = firsts[k] < f ? firsts[k] : f;
    result[0] = f == m ? -1 : f;
    result[1] = f == m ? 0 : p[f];
  }
}

template <class T>
__global__ void lookup(T* out, const T* w, const int64_t* idx, int64_t n, int64_t D) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n * D; e += int64_t(gridDim.x) * blockDim.x)
    out[e] = w[idx[e / D] * D + e % D];
}

template <class T>
__global__ void scatter_columns(T* dw, const T* g, const int64_t* idx, int64_t n, int64_t D, int64_t padding_idx) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < D; c += int64_t(gridDim.x) * blockDim.x)
    for (int64_t i = 0; i < n; ++i)
      if (idx[i] != padding_idx) dw[idx[i] * D + c] += g[i * D + c];
}
}  // namespace embedding_detail

inline void index_range_check(const Tensor& index64, int64_t n, int64_t* first_bad, int64_t* bad_value) {
  using namespace embedding_detail;
  *first_bad = -1;
  *bad_value = 0;
  const int64_t m = index64.numel();
  if (m == 0) return;
  const auto r = fetch_from_device<2>(index64.device(), [&](long long* result, cudaStream_t stream) {
    first_out_of_range<<<1, kCheckBlock, 0, stream>>>(result, static_cast<const int64_t*>(index64.data_ptr()), m, n);
  });
  *first_bad = r[0];
  *bad_value = r[1];
}

inline void embedding_forward(const Tensor& out, const Tensor& weight, const Tensor& indices) {
  using namespace embedding_detail;
  const int64_t n = indices.numel(), D = weight.shape()[1];
  if (n * D == 0) return;
  GRAFT_DISPATCH_FLOAT(weight.dtype(), "embedding (cuda)", T, [&] {
    const KernelLaunch at(out.device());
    lookup<T><<<grid_for(n * D, 256), 256, 0, at.stream>>>(static_cast<T*>(out.data_ptr()),
                                                           static_cast<const T*>(weight.data_ptr()),
                                                           static_cast<const int64_t*>(indices.data_ptr()), n, D);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void embedding_backward(const Tensor& dweight, const Tensor& dout, const Tensor& indices, int64_t padding_idx) {
  using namespace embedding_detail;
  const int64_t n = indices.numel(), D = dweight.shape()[1];
  if (n * D == 0) return;
  GRAFT_DISPATCH_FLOAT(dweight.dtype(), "embedding_backward (cuda)", T, [&] {
    const KernelLaunch at(dweight.device());
    scatter_columns<T><<<grid_for(D, 128), 128, 0, at.stream>>>(
        static_cast<T*>(dweight.data_ptr()), static_cast<const T*>(dout.data_ptr()),
        static_cast<const int64_t*>(indices.data_ptr()), n, D, padding_idx);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace graft::kernels::cuda
