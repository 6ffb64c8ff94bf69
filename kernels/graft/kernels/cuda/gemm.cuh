// graft/kernels/cuda/gemm.cuh - matmul on the GPU: a tiled SIMT GEMM in the shared-memory,
// register-blocked style of the SGEMM worklogs (step "2D blocktiling"), batched, any strides.
//
//   out[*batch, M, N] = a[*batch, M, K] @ b[*batch, K, N]     the matmul slot's contract (ops/matmul.hpp):
//   out contiguous; a and b of out's dtype, expanded to the batch shape (stride 0 on broadcast batch
//   dims), any strides (a transposed view is a stride swap, read in place).
//
// One thread block computes a BM x BN tile of out: it walks K in steps of BK, staging a BM x BK slice of a
// and a BK x BN slice of b in shared memory (zero past the edges), and each of its 16 x 16 threads
// accumulates a TM x TN = 4 x 4 block of the tile in registers. Accumulation is in T (float or double),
// in increasing k, like the CPU reference; the sums differ from it only by rounding.
// Next steps (kept in bench/ as they land): vectorized 128-bit loads and a transposed a tile, warp
// tiling, then TF32 on the tensor cores (mma.sync).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "graft/core/dtype.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"

namespace graft::kernels::cuda {

namespace gemm_detail {
constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;
constexpr int kThreads = (BM / TM) * (BN / TN);  // 256
static_assert(BM * BK % kThreads == 0 && BK * BN % kThreads == 0, "each thread loads whole slices");

// The strides of one operand: element (i, j) of batch z is at batch_offset(z) + i * rs + j * cs.
struct Operand {
  Strided batch;  // the batch dims' sizes and this operand's strides in them
  int64_t rs, cs;
};

template <class T>
__global__ void __launch_bounds__(kThreads) gemm_tiled(T* __restrict__ out, const T* __restrict__ a, Operand ao,
                                                       const T* __restrict__ b, Operand bo, int64_t M, int64_t N,
                                                       int64_t K, int64_t batches) {
  __shared__ T as[BK][BM + 1];  // as[k][m] = a[m0 + m, k0 + k]; +1: no bank conflicts on the transposed store
  __shared__ T bs[BK][BN];      // bs[k][n] = b[k0 + k, n0 + n]
  const int tid = int(threadIdx.x);
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);  // this thread's TM x TN block in the tile
  const int64_t m0 = int64_t(blockIdx.y) * BM, n0 = int64_t(blockIdx.x) * BN;
  for (int64_t z = blockIdx.z; z < batches; z += gridDim.z) {
    const T* az = a + strided_offset(ao.batch, z);
    const T* bz = b + strided_offset(bo.batch, z);
    T acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
    for (int64_t k0 = 0; k0 < K; k0 += BK) {
      // Stage the slices: consecutive threads take consecutive k of a row of a (contiguous when
      // a_cs = 1) and consecutive n of a row of b (contiguous when b_cs = 1).
#pragma unroll
      for (int e = tid; e < BM * BK; e += kThreads) {
        const int m = e / BK, k = e % BK;
        const int64_t gm = m0 + m, gk = k0 + k;
        as[k][m] = gm < M && gk < K ? az[gm * ao.rs + gk * ao.cs] : T(0);
      }
#pragma unroll
      for (int e = tid; e < BK * BN; e += kThreads) {
        const int k = e / BN, n = e % BN;
        const int64_t gk = k0 + k, gn = n0 + n;
        bs[k][n] = gk < K && gn < N ? bz[gk * bo.rs + gn * bo.cs] : T(0);
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < BK; ++k) {
        T af[TM], bf[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) af[i] = as[k][ty * TM + i];
#pragma unroll
        for (int j = 0; j < TN; ++j) bf[j] = bs[k][tx * TN + j];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fma(af[i], bf[j], acc[i][j]);
      }
      __syncthreads();  // the next slices overwrite as and bs
    }
    T* oz = out + z * M * N;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t gm = m0 + ty * TM + i;
      if (gm >= M) continue;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int64_t gn = n0 + tx * TN + j;
        if (gn < N) oz[gm * N + gn] = acc[i][j];
      }
    }
  }
}
}  // namespace gemm_detail

// The matmul slot's CUDA entry (contract at the top of this file).
inline void matmul_forward(const Tensor& out, const Tensor& a, const Tensor& b) {
  using namespace gemm_detail;
  const int r = out.dim();
  const int64_t M = out.size(r - 2), N = out.size(r - 1), K = a.size(r - 1);
  Shape batch, a_bst, b_bst;
  for (int d = 0; d < r - 2; ++d) {
    batch.push_back(out.size(d));
    a_bst.push_back(a.stride(d));
    b_bst.push_back(b.stride(d));
  }
  const int64_t batches = batch.numel();
  if (out.numel() == 0) return;
  GRAFT_CHECK(M <= int64_t(65535) * BM, "matmul (cuda)", "M = ", M, " rows exceed the grid's y limit");
  const Operand ao{make_strided(batch, a_bst), a.stride(r - 2), a.stride(r - 1)};
  const Operand bo{make_strided(batch, b_bst), b.stride(r - 2), b.stride(r - 1)};
  const dim3 grid(unsigned((N + BN - 1) / BN), unsigned((M + BM - 1) / BM),
                  unsigned(batches < 65535 ? batches : 65535));
  GRAFT_DISPATCH_FLOAT(out.dtype(), "matmul (cuda)", T, [&] {
    const KernelLaunch at(out.device());
    if (K == 0) {  // an empty sum: zeros
      GRAFT_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, size_t(out.numel()) * sizeof(T), at.stream));
      return;
    }
    gemm_tiled<T><<<grid, kThreads, 0, at.stream>>>(static_cast<T*>(out.data_ptr()), static_cast<const T*>(a.data_ptr()),
                                                    ao, static_cast<const T*>(b.data_ptr()), bo, M, N, K, batches);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace graft::kernels::cuda
