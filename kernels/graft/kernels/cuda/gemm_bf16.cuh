// graft/kernels/cuda/gemm_bf16.cuh - bfloat16 matrix products on the tensor cores: matmul and linear
// for bfloat16 tensors (float32 sums, the result rounded to bfloat16 once, as the CPU's kernels).
//
//   gemm_bf16_mma  mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32 (inline PTX), 128 x 128 block tile, k
//                  steps of 32, 8 warps of 64 x 32, each 4 x 4 mma tiles of 16 x 8 (the TF32 kernel's
//                  warp layout, gemm.cuh). Both operands are staged in shared memory k-contiguous
//                  ([outer][k], gemm_plan::kBf16LdK halves a row), so every fragment register is one
//                  32-bit read of two k-consecutive values (gemm_plan::bf16_mma_*: index math tested on
//                  the host). Loads read any strides, one element at a time, zero past the edges; this
//                  first version is single-buffered (the step after it: cp.async double buffering, then
//                  wgmma with TMA on sm_90a).
// The epilogue adds a float32 bias and applies the activation (gemm.cuh's finish), then rounds to
// nearest even as graft::BFloat16 does (NaN -> 0x7fc0).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "graft/core/dtype.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/gemm.cuh"

namespace graft::kernels::cuda {

namespace gemm_bf16_detail {
using namespace gemm_plan;
using gemm_detail::Epilogue;
using gemm_detail::Operand;

__device__ inline uint16_t round_to_bf16(float x) {
  const uint32_t u = __float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__device__ inline void mma_m16n8k16_bf16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// out[z] (bfloat16 bits, contiguous [M, N]) = epilogue(a[z] b[z]); a's (i, p) at a + off + i ao.rs + p ao.cs,
// b's (p, j) at b + off + p bo.rs + j bo.cs.
__global__ void __launch_bounds__(kBf16Threads, 1)
    gemm_bf16_mma(uint16_t* __restrict__ out, const uint16_t* __restrict__ a, Operand ao, const uint16_t* __restrict__ b,
                  Operand bo, int64_t M, int64_t N, int64_t K, int64_t batches, Epilogue<float> ep) {
  __shared__ __align__(16) uint16_t as[kBf16BM * kBf16LdK];
  __shared__ __align__(16) uint16_t bs[kBf16BN * kBf16LdK];
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const TileCoord tile = tile_of_block(blockIdx.x, ceil_div(M, kBf16BM), ceil_div(N, kBf16BN), kTileGroup);
  const int64_t m0 = tile.tm * kBf16BM, n0 = tile.tn * kBf16BN;
  const int wr0 = tf32_warp_row0(warp), wc0 = tf32_warp_col0(warp);
  for (int64_t z = blockIdx.z; z < batches; z += gridDim.z) {
    const uint16_t* az = a + strided_offset(ao.batch, z);
    const uint16_t* bz = b + strided_offset(bo.batch, z);
    float acc[4][4][4] = {};  // [m16 tile][n8 tile][fragment register]
    for (int64_t k0 = 0; k0 < K; k0 += kBf16BK) {
      // stage: thread tid loads elements e = tid + 256 q (q < 16) of each [128][32] tile, k fastest
      for (int e = tid; e < kBf16BM * kBf16BK; e += kBf16Threads) {
        const int o = e / kBf16BK, k = e % kBf16BK;
        const int64_t gk = k0 + k, gm = m0 + o, gn = n0 + o;
        as[o * kBf16LdK + k] = gm < M && gk < K ? az[gm * ao.rs + gk * ao.cs] : uint16_t(0);
        bs[o * kBf16LdK + k] = gn < N && gk < K ? bz[gk * bo.rs + gn * bo.cs] : uint16_t(0);
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kBf16BK; kk += 16) {
        uint32_t af[4][4], bf[4][2];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int r = 0; r < 4; ++r)
            af[i][r] = *reinterpret_cast<const uint32_t*>(
                as + (wr0 + 16 * i + bf16_mma_a_row(lane, r)) * kBf16LdK + kk + bf16_mma_a_col(lane, r));
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int r = 0; r < 2; ++r)
            bf[j][r] = *reinterpret_cast<const uint32_t*>(bs + (wc0 + 8 * j + mma_b_col(lane)) * kBf16LdK + kk +
                                                          bf16_mma_b_row(lane, r));
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) mma_m16n8k16_bf16(acc[i][j], af[i], bf[j]);
      }
      __syncthreads();
    }
    uint16_t* oz = out + z * M * N;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int64_t gm = m0 + wr0 + 16 * i + mma_c_row(lane, r);
        if (gm >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int64_t gn = n0 + wc0 + 8 * j + mma_c_col(lane, r);
          if (gn < N) oz[gm * N + gn] = round_to_bf16(gemm_detail::finish(ep, acc[i][j][r], gn));
        }
      }
  }
}

// out (bfloat16, contiguous [batches, M, N]) = epilogue(a b); bias: float32 [N] or null.
inline void run_gemm_bf16(const Tensor& out, const uint16_t* a, const Operand& ao, const uint16_t* b, const Operand& bo,
                          int64_t M, int64_t N, int64_t K, int64_t batches, const Epilogue<float>& ep, const char* op) {
  const KernelLaunch at(out.device());
  const dim3 grid = gemm_detail::grid_of_tiles(M, N, kBf16BM, kBf16BN, batches, op);
  gemm_bf16_mma<<<grid, kBf16Threads, 0, at.stream>>>(static_cast<uint16_t*>(out.data_ptr()), a, ao, b, bo, M, N, K,
                                                      batches, ep);
  GRAFT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace gemm_bf16_detail

// The matmul slot's CUDA entry for bfloat16 (gemm.cuh's contract).
inline void matmul_forward_bf16(const Tensor& out, const Tensor& a, const Tensor& b) {
  using namespace gemm_detail;
  if (out.numel() == 0) return;
  const MatmulProblem p = matmul_problem(out, a, b);
  gemm_bf16_detail::run_gemm_bf16(out, static_cast<const uint16_t*>(a.data_ptr()), p.ao,
                                  static_cast<const uint16_t*>(b.data_ptr()), p.bo, p.M, p.N, p.K, p.batches,
                                  Epilogue<float>{}, "matmul (cuda, bfloat16)");
}

// The linear slot's CUDA entry for bfloat16: the bias (bfloat16) is widened to float32 for the epilogue.
inline void linear_forward_bf16(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                                Activation act) {
  using namespace gemm_detail;
  if (out.numel() == 0) return;
  const MatmulProblem p = linear_problem(x, weight);
  const Tensor bias32 = bias.defined() ? bias.contiguous().to(DType::Float32) : Tensor();
  Epilogue<float> ep;
  ep.bias = data_or_null<const float>(bias32);
  ep.act = act;
  gemm_bf16_detail::run_gemm_bf16(out, static_cast<const uint16_t*>(x.data_ptr()), p.ao,
                                  static_cast<const uint16_t*>(weight.data_ptr()), p.bo, p.M, p.N, p.K, 1, ep,
                                  "linear (cuda, bfloat16)");
}

}  // namespace graft::kernels::cuda
