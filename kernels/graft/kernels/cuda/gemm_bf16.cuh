// graft/kernels/cuda/gemm_bf16.cuh - 16-bit matrix products on the tensor cores: matmul and linear
// for bfloat16 and float16 tensors (float32 sums, the result rounded to the operands' format once, as
// the CPU's kernels).
//
//   gemm_bf16_mma  mma.sync.m16n8k16.row.col.f32.{bf16,f16} (inline PTX, mma16.cuh), 128 x 128 block tile, k
//                  steps of 32, 8 warps of 64 x 32, each 4 x 4 mma tiles of 16 x 8 (the TF32 kernel's
//                  warp layout, gemm.cuh). Both operands are staged in shared memory k-contiguous
//                  ([outer][k], gemm_plan::kBf16LdK halves a row), so every fragment register is one
//                  32-bit read of two k-consecutive values (gemm_plan::bf16_mma_*: index math tested on
//                  the host). Loads read any strides, one element at a time, zero past the edges,
//                  into one shared buffer.
//   gemm_16_pipelined  the same tiles for k-contiguous operands (x @ W^T, gemm_plan::pipelined_fits):
//                  16-byte cp.async copies (zero-filled past the edges) into two shared buffers, the
//                  next k step in flight while this one is multiplied; fragments read by ldmatrix.x4.
//                  The step after it: wgmma with TMA on sm_90a.
// The epilogue adds a float32 bias and applies the activation (gemm.cuh's finish), then rounds to
// nearest even as graft::BFloat16 and graft::Float16 do (mma16.cuh).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "graft/core/dtype.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/gemm.cuh"
#include "graft/kernels/cuda/mma16.cuh"

namespace graft::kernels::cuda {

namespace gemm_bf16_detail {
using namespace gemm_plan;
using gemm_detail::Epilogue;
using gemm_detail::Operand;

// The 16 x 16 tiles of a warp's 64 x 32 result as a k step of 16 adds them: af[i] the A fragments of
// m16 tiles i, bf[j] the B fragments of n8 tiles j.
template <bool kBf16>
__device__ __forceinline__ void mma_warp_tile(float (&acc)[4][4][4], const uint32_t (&af)[4][4],
                                              const uint32_t (&bf)[4][2]) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) mma16::mma_m16n8k16<kBf16>(acc[i][j], af[i], bf[j]);
}

// oz (contiguous [M, N]) <- the warp's accumulators through the epilogue, rounded once.
template <bool kBf16>
__device__ __forceinline__ void store_warp_tile(uint16_t* oz, const float (&acc)[4][4][4], int64_t m0, int64_t n0,
                                                int64_t M, int64_t N, const Epilogue<float>& ep) {
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int wr0 = tf32_warp_row0(warp), wc0 = tf32_warp_col0(warp);
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int64_t gm = m0 + wr0 + 16 * i + mma_c_row(lane, r);
      if (gm >= M) continue;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t gn = n0 + wc0 + 8 * j + mma_c_col(lane, r);
        if (gn < N) oz[gm * N + gn] = mma16::Format<kBf16>::narrow(gemm_detail::finish(ep, acc[i][j][r], gn));
      }
    }
}

// out[z] (16-bit patterns, contiguous [M, N]; kBf16: bfloat16, else float16) = epilogue(a[z] b[z]); a's
// (i, p) at a + off + i ao.rs + p ao.cs, b's (p, j) at b + off + p bo.rs + j bo.cs.
template <bool kBf16>
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
            af[i][r] = mma16::load_pair(as + (wr0 + 16 * i + bf16_mma_a_row(lane, r)) * kBf16LdK + kk +
                                        bf16_mma_a_col(lane, r));
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int r = 0; r < 2; ++r)
            bf[j][r] = mma16::load_pair(bs + (wc0 + 8 * j + mma_b_col(lane)) * kBf16LdK + kk + bf16_mma_b_row(lane, r));
        mma_warp_tile<kBf16>(acc, af, bf);
      }
      __syncthreads();
    }
    store_warp_tile<kBf16>(out + z * M * N, acc, m0, n0, M, N, ep);
  }
}

// ---- the pipelined kernel (gemm_plan.hpp: pipelined_fits, the chunks, the ldmatrix addresses) ----
__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16 bytes global -> shared, asynchronously; zero-filled when !valid (src then unread).
__device__ __forceinline__ void cp_async_16(uint16_t* dst, const uint16_t* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const uint16_t* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}

// gemm_bf16_mma for k-contiguous operands (pipelined_fits): a (i, p) at i ao.rs + p, b (p, j) at j bo.cs + p.
// Stage s of the double buffer holds one k step of both operands; while the warps multiply stage s,
// the copies of the next step fill stage s ^ 1.
template <bool kBf16>
__global__ void __launch_bounds__(kBf16Threads, 1)
    gemm_16_pipelined(uint16_t* __restrict__ out, const uint16_t* __restrict__ a, Operand ao,
                      const uint16_t* __restrict__ b, Operand bo, int64_t M, int64_t N, int64_t K, int64_t batches,
                      Epilogue<float> ep) {
  __shared__ __align__(128) uint16_t as[2][kBf16BM * kBf16LdK];
  __shared__ __align__(128) uint16_t bs[2][kBf16BN * kBf16LdK];
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const TileCoord tile = tile_of_block(blockIdx.x, ceil_div(M, kBf16BM), ceil_div(N, kBf16BN), kTileGroup);
  const int64_t m0 = tile.tm * kBf16BM, n0 = tile.tn * kBf16BN;
  const int wr0 = tf32_warp_row0(warp), wc0 = tf32_warp_col0(warp);
  for (int64_t z = blockIdx.z; z < batches; z += gridDim.z) {
    const uint16_t* az = a + strided_offset(ao.batch, z);
    const uint16_t* bz = b + strided_offset(bo.batch, z);
    auto issue = [&](int s, int64_t k0) {  // stage s <- the k step at k0, zero past M, N and K
      for (int c = tid; c < kBf16Chunks; c += kBf16Threads) {
        const int o = bf16_chunk_row(c), k = bf16_chunk_k(c);
        const int64_t gk = k0 + k, gm = m0 + o, gn = n0 + o;
        const bool va = gm < M && gk < K, vb = gn < N && gk < K;
        cp_async_16(&as[s][o * kBf16LdK + k], va ? az + gm * ao.rs + gk : az, va);
        cp_async_16(&bs[s][o * kBf16LdK + k], vb ? bz + gn * bo.cs + gk : bz, vb);
      }
      cp_async_commit();
    };
    float acc[4][4][4] = {};
    issue(0, 0);
    int s = 0;
    for (int64_t k0 = 0; k0 < K; k0 += kBf16BK, s ^= 1) {
      if (k0 + kBf16BK < K) {
        issue(s ^ 1, k0 + kBf16BK);  // stage s ^ 1 was last read before the barrier ending the previous step
        cp_async_wait<1>();          // all but the newest group: stage s has landed
      } else {
        cp_async_wait<0>();
      }
      __syncthreads();  // every thread's copies of stage s are visible
#pragma unroll
      for (int kk = 0; kk < kBf16BK; kk += 16) {
        uint32_t af[4][4], bf[4][2];
#pragma unroll
        for (int i = 0; i < 4; ++i)
          ldmatrix_x4(af[i], &as[s][(wr0 + 16 * i + ldmatrix_a_row(lane)) * kBf16LdK + kk + ldmatrix_a_k(lane)]);
#pragma unroll
        for (int jp = 0; jp < 2; ++jp) {  // n8 tiles 2 jp and 2 jp + 1
          uint32_t r[4];
          ldmatrix_x4(r, &bs[s][(wc0 + 16 * jp + ldmatrix_b_outer(lane)) * kBf16LdK + kk + ldmatrix_b_k(lane)]);
          bf[2 * jp][0] = r[0];
          bf[2 * jp][1] = r[1];
          bf[2 * jp + 1][0] = r[2];
          bf[2 * jp + 1][1] = r[3];
        }
        mma_warp_tile<kBf16>(acc, af, bf);
      }
      __syncthreads();  // stage s is read by all before the next step's copies overwrite it
    }
    cp_async_wait<0>();  // K = 0: the first (zero-filled) group
    store_warp_tile<kBf16>(out + z * M * N, acc, m0, n0, M, N, ep);
  }
}

// The 16-bit kernel for a problem: the pinned one (forced_bf16_gemm_kernel; Pipelined only where it
// fits), else Pipelined where it fits.
inline Bf16GemmKernel choose_bf16_kernel(const uint16_t* a, const Operand& ao, const uint16_t* b, const Operand& bo,
                                         int64_t K) {
  int64_t strides[2 * kMaxDims];
  int n = 0;
  for (int d = 0; d < ao.batch.rank; ++d) strides[n++] = ao.batch.stride[d];
  for (int d = 0; d < bo.batch.rank; ++d) strides[n++] = bo.batch.stride[d];
  const bool fits = pipelined_fits(K, ao.rs, ao.cs, bo.rs, bo.cs, strides, n, reinterpret_cast<uintptr_t>(a),
                                   reinterpret_cast<uintptr_t>(b));
  const int forced = forced_bf16_gemm_kernel.load(std::memory_order_relaxed);
  if (forced == int(Bf16GemmKernel::Simple) || !fits) return Bf16GemmKernel::Simple;
  return Bf16GemmKernel::Pipelined;
}

// out (bfloat16 or float16, contiguous [batches, M, N]) = epilogue(a b); bias: float32 [N] or null.
inline void run_gemm_bf16(const Tensor& out, const uint16_t* a, const Operand& ao, const uint16_t* b, const Operand& bo,
                          int64_t M, int64_t N, int64_t K, int64_t batches, const Epilogue<float>& ep, const char* op) {
  const KernelLaunch at(out.device());
  const dim3 grid = gemm_detail::grid_of_tiles(M, N, kBf16BM, kBf16BN, batches, op);
  const bool bf16 = out.dtype() == DType::BFloat16;
  auto* kernel = choose_bf16_kernel(a, ao, b, bo, K) == Bf16GemmKernel::Pipelined
                     ? (bf16 ? gemm_16_pipelined<true> : gemm_16_pipelined<false>)
                     : (bf16 ? gemm_bf16_mma<true> : gemm_bf16_mma<false>);
  kernel<<<grid, kBf16Threads, 0, at.stream>>>(static_cast<uint16_t*>(out.data_ptr()), a, ao, b, bo, M, N, K, batches,
                                               ep);
  GRAFT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace gemm_bf16_detail

// The matmul slot's CUDA entry for bfloat16 and float16 (gemm.cuh's contract).
inline void matmul_forward_16(const Tensor& out, const Tensor& a, const Tensor& b) {
  using namespace gemm_detail;
  if (out.numel() == 0) return;
  const MatmulProblem p = matmul_problem(out, a, b);
  gemm_bf16_detail::run_gemm_bf16(out, static_cast<const uint16_t*>(a.data_ptr()), p.ao,
                                  static_cast<const uint16_t*>(b.data_ptr()), p.bo, p.M, p.N, p.K, p.batches,
                                  Epilogue<float>{}, "matmul (cuda, 16-bit)");
}

// The linear slot's CUDA entry for bfloat16 and float16: the bias (of the same dtype) is widened to
// float32 for the epilogue.
inline void linear_forward_16(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
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
                                  "linear (cuda, 16-bit)");
}

}  // namespace graft::kernels::cuda
