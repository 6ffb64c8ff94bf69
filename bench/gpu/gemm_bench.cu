// bench/gpu/gemm_bench.cu - Graft's GEMM kernels (kernels/graft/kernels/cuda/gemm.cuh), step by step in
// the manner of the SGEMM worklogs, against cuBLAS in the same run:
//   naive            one thread per output, a row of a times a column of b (worklog step 1; only here)
//   tiled 64x64      gemm_tiled: shared-memory tiles, 4 x 4 outputs per thread ("2D blocktiling")
//   warp-tiled       gemm_warptiled: 128 x 128 x 8, 8 warps of 64 x 32, 8 x 8 per thread, float4, double
//                    buffered ("warptiling")
//     baseline: cublasSgemm with CUBLAS_DEFAULT_MATH (exact FP32, no tensor cores)
//   tf32 mma.sync    gemm_tf32: 128 x 128 x 16, mma.sync.m16n8k8 on TF32-rounded inputs
//     baseline: cublasSgemm with CUBLAS_TF32_TENSOR_OP_MATH
//   bf16 mma.sync    gemm_bf16_mma (gemm_bf16.cuh): 128 x 128 x 32, mma.sync.m16n8k16 on bfloat16 operands,
//                    float32 sums, bfloat16 output
//     baseline: cublasGemmEx, bfloat16 in and out, CUBLAS_COMPUTE_32F (checked: <= 1e-2 relative)
//   bf16 cp.async+ldmatrix  gemm_16_pipelined: the same tiles, b stored transposed (k-contiguous, as a
//                    linear layer's weight), double-buffered cp.async copies, ldmatrix fragments
// Square row-major problems n x n x n, n = 1024, 2048, 4096, 8192 (--quick: up to 4096, fewer runs).
// Each result is first checked against cuBLAS (max |c - c_ref| / max |c_ref| <= 1e-4 for FP32,
// against the TF32 cuBLAS result <= 2e-3 for TF32), then timed: 2 warm-up runs, then the median of
// the timed runs (CUDA events around each). Prints markdown rows `| row | graft | baseline | ratio |`
// in TFLOP/s (2 n^3 / time); exit 0, 1 if a result was wrong, 77 without a visible GPU.
//   graft_gpu_gemm_bench [--quick]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "graft/core/dtype.hpp"
#include "graft/kernels/cuda/gemm.cuh"
#include "graft/kernels/cuda/gemm_bf16.cuh"

namespace {

using namespace graft::kernels::cuda::gemm_detail;

#define BENCH_CHECK(expr)                                                                \
  do {                                                                                   \
    cudaError_t e_ = (expr);                                                             \
    if (e_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "%s failed: %s\n", #expr, cudaGetErrorString(e_));            \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)
#define BENCH_CUBLAS(expr)                                               \
  do {                                                                   \
    cublasStatus_t s_ = (expr);                                          \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                   \
      std::fprintf(stderr, "%s failed: status %d\n", #expr, int(s_));    \
      std::exit(1);                                                      \
    }                                                                    \
  } while (0)

// Step 1 of the worklogs: c[i, j] = sum_p a[i, p] b[p, j], one thread per output, threadIdx.x along j
// (consecutive threads read consecutive b and write consecutive c).
__global__ void gemm_naive(float* c, const float* a, const float* b, int n) {
  const int i = blockIdx.y * blockDim.y + threadIdx.y, j = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n || j >= n) return;
  float acc = 0.f;
  for (int p = 0; p < n; ++p) acc = fmaf(a[size_t(i) * n + p], b[size_t(p) * n + j], acc);
  c[size_t(i) * n + j] = acc;
}

// The median over `runs` timed calls of f (after 2 warm-up calls), in milliseconds.
double median_ms(const std::function<void()>& f, int runs) {
  f();
  f();
  BENCH_CHECK(cudaGetLastError());
  BENCH_CHECK(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  BENCH_CHECK(cudaEventCreate(&start));
  BENCH_CHECK(cudaEventCreate(&stop));
  std::vector<double> ms;
  for (int r = 0; r < runs; ++r) {
    BENCH_CHECK(cudaEventRecord(start));
    f();
    BENCH_CHECK(cudaEventRecord(stop));
    BENCH_CHECK(cudaEventSynchronize(stop));
    float t = 0.f;
    BENCH_CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(double(t));
  }
  BENCH_CHECK(cudaGetLastError());
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// max |c - ref| / max |ref| over n2 elements of two device buffers.
double relative_error(const float* c, const float* ref, size_t n2) {
  std::vector<float> hc(n2), hr(n2);
  BENCH_CHECK(cudaMemcpy(hc.data(), c, n2 * sizeof(float), cudaMemcpyDeviceToHost));
  BENCH_CHECK(cudaMemcpy(hr.data(), ref, n2 * sizeof(float), cudaMemcpyDeviceToHost));
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n2; ++i) {
    const double d = std::fabs(double(hc[i]) - double(hr[i]));
    diff = d > diff || d != d ? d : diff;  // NaN wins
    scale = std::max(scale, std::fabs(double(hr[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

// The same for bfloat16 device buffers.
double relative_error_bf16(const uint16_t* c, const uint16_t* ref, size_t n2) {
  std::vector<graft::BFloat16> hc(n2), hr(n2);
  BENCH_CHECK(cudaMemcpy(hc.data(), c, n2 * 2, cudaMemcpyDeviceToHost));
  BENCH_CHECK(cudaMemcpy(hr.data(), ref, n2 * 2, cudaMemcpyDeviceToHost));
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n2; ++i) {
    const double d = std::fabs(double(float(hc[i])) - double(float(hr[i])));
    diff = d > diff || d != d ? d : diff;
    scale = std::max(scale, std::fabs(double(float(hr[i]))));
  }
  return scale > 0 ? diff / scale : diff;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIPPED (no CUDA device visible)\n");
    return 77;
  }
  cudaDeviceProp prop{};
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::fprintf(stderr, "gemm_bench on %s (%d SMs), TFLOP/s = 2 n^3 / median time\n", prop.name,
               prop.multiProcessorCount);
  cublasHandle_t handle;
  BENCH_CUBLAS(cublasCreate(&handle));

  const std::vector<int> sizes = quick ? std::vector<int>{1024, 2048, 4096} : std::vector<int>{1024, 2048, 4096, 8192};
  const int runs = quick ? 5 : 10;
  bool all_right = true;
  std::printf("| row | graft | baseline | ratio |\n|---|---|---|---|\n");
  for (const int n : sizes) {
    const size_t n2 = size_t(n) * n;
    std::vector<float> host(n2);
    std::mt19937 rng{uint32_t(n)};
    std::uniform_real_distribution<float> uni(-1.f, 1.f);
    float *a, *b, *c, *ref, *ref_tf32;
    BENCH_CHECK(cudaMalloc(&a, n2 * sizeof(float)));
    BENCH_CHECK(cudaMalloc(&b, n2 * sizeof(float)));
    BENCH_CHECK(cudaMalloc(&c, n2 * sizeof(float)));
    BENCH_CHECK(cudaMalloc(&ref, n2 * sizeof(float)));
    BENCH_CHECK(cudaMalloc(&ref_tf32, n2 * sizeof(float)));
    for (float& x : host) x = uni(rng);
    BENCH_CHECK(cudaMemcpy(a, host.data(), n2 * sizeof(float), cudaMemcpyHostToDevice));
    for (float& x : host) x = uni(rng);
    BENCH_CHECK(cudaMemcpy(b, host.data(), n2 * sizeof(float), cudaMemcpyHostToDevice));

    // Row-major c = a b is column-major c^T = b^T a^T: cuBLAS gets b first.
    const float one = 1.f, zero = 0.f;
    auto cublas_into = [&](float* out, cublasMath_t math) {
      BENCH_CUBLAS(cublasSetMathMode(handle, math));
      BENCH_CUBLAS(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, b, n, a, n, &zero, out, n));
    };
    cublas_into(ref, CUBLAS_DEFAULT_MATH);
    cublas_into(ref_tf32, CUBLAS_TF32_TENSOR_OP_MATH);
    BENCH_CHECK(cudaDeviceSynchronize());
    const double tflop = 2.0 * double(n) * n * n * 1e-12;
    const double cublas_fp32 = tflop / (median_ms([&] { cublas_into(c, CUBLAS_DEFAULT_MATH); }, runs) * 1e-3);
    const double cublas_tf32 = tflop / (median_ms([&] { cublas_into(c, CUBLAS_TF32_TENSOR_OP_MATH); }, runs) * 1e-3);

    // The operands as the kernels see them: a (m, k) k-contiguous, b (n, k) n-contiguous, both float4-able.
    const graft::kernels::cuda::Strided none{};
    const TileOperand ta{a, none, n, 1, n, true}, tb{b, none, 1, n, n, true};
    const Operand ao{none, n, 1}, bo{none, n, 1};
    const Epilogue<float> ep{};
    struct Step {
      std::string name;
      std::function<void()> launch;
      bool tf32;
    };
    std::vector<Step> steps;
    if (n <= 4096)
      steps.push_back({"naive", [&] {
                         gemm_naive<<<dim3(unsigned(n / 16), unsigned(n / 16)), dim3(16, 16)>>>(c, a, b, n);
                       }, false});
    steps.push_back({"tiled 64x64", [&] {
                       gemm_tiled<float><<<grid_of_tiles(n, n, BM, BN, 1, "bench"), kThreads>>>(c, a, ao, b, bo, n, n,
                                                                                                   n, 1, ep);
                     }, false});
    steps.push_back({"warp-tiled 128x128", [&] {
                       gemm_warptiled<true, false><<<grid_of_tiles(n, n, kWarpTiledBM, kWarpTiledBN, 1, "bench"),
                                                     kWarpTiledThreads>>>(c, ta, tb, n, n, n, 1, ep, true);
                     }, false});
    steps.push_back({"tf32 mma.sync 128x128", [&] {
                       gemm_tf32<true, false><<<grid_of_tiles(n, n, kTf32BM, kTf32BN, 1, "bench"), kTf32Threads>>>(
                           c, ta, tb, n, n, n, 1, ep, true);
                     }, true});
    for (const Step& s : steps) {
      BENCH_CHECK(cudaMemset(c, 0xff, n2 * sizeof(float)));  // NaN: an unwritten output fails the check
      s.launch();
      BENCH_CHECK(cudaGetLastError());
      BENCH_CHECK(cudaDeviceSynchronize());
      const double err = relative_error(c, s.tf32 ? ref_tf32 : ref, n2);
      const double tol = s.tf32 ? 2e-3 : 1e-4;
      const std::string row = (s.tf32 ? "tf32 " : "fp32 ") + s.name + " " + std::to_string(n);
      const double base = s.tf32 ? cublas_tf32 : cublas_fp32;
      if (!(err <= tol)) {
        all_right = false;
        std::printf("| %s | WRONG (error %.2e > %.0e) | %.1f | - |\n", row.c_str(), err, tol, base);
        continue;
      }
      const double t = tflop / (median_ms(s.launch, s.name == "naive" ? std::max(3, runs / 3) : runs) * 1e-3);
      std::printf("| %s | %.1f | %.1f | %.2f |\n", row.c_str(), t, base, t / base);
    }
    // bfloat16: the same operands rounded to bfloat16
    {
      std::vector<graft::BFloat16> hb(n2);
      uint16_t *a16, *b16, *c16, *ref16;
      BENCH_CHECK(cudaMalloc(&a16, n2 * 2));
      BENCH_CHECK(cudaMalloc(&b16, n2 * 2));
      BENCH_CHECK(cudaMalloc(&c16, n2 * 2));
      BENCH_CHECK(cudaMalloc(&ref16, n2 * 2));
      for (const auto& [dev, src] : {std::pair<uint16_t*, float*>{a16, a}, {b16, b}}) {
        BENCH_CHECK(cudaMemcpy(host.data(), src, n2 * sizeof(float), cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < n2; ++i) hb[i] = graft::BFloat16(host[i]);
        BENCH_CHECK(cudaMemcpy(dev, hb.data(), n2 * 2, cudaMemcpyHostToDevice));
      }
      auto cublas_bf16 = [&](uint16_t* out) {
        BENCH_CUBLAS(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
        BENCH_CUBLAS(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, b16, CUDA_R_16BF, n, a16, CUDA_R_16BF,
                                  n, &zero, out, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      };
      cublas_bf16(ref16);
      BENCH_CHECK(cudaDeviceSynchronize());
      const double cublas_bf = tflop / (median_ms([&] { cublas_bf16(c16); }, runs) * 1e-3);
      auto launch = [&] {
        graft::kernels::cuda::gemm_bf16_detail::gemm_bf16_mma<true><<<grid_of_tiles(n, n, kBf16BM, kBf16BN, 1, "bench"),
                                                                       kBf16Threads>>>(c16, a16, ao, b16, bo, n, n, n, 1, ep);
      };
      BENCH_CHECK(cudaMemset(c16, 0xff, n2 * 2));
      launch();
      BENCH_CHECK(cudaGetLastError());
      BENCH_CHECK(cudaDeviceSynchronize());
      const double err = relative_error_bf16(c16, ref16, n2);
      const std::string row = "bf16 mma.sync 128x128 " + std::to_string(n);
      if (!(err <= 1e-2)) {
        all_right = false;
        std::printf("| %s | WRONG (error %.2e > 1e-2) | %.1f | - |\n", row.c_str(), err, cublas_bf);
      } else {
        const double t = tflop / (median_ms(launch, runs) * 1e-3);
        std::printf("| %s | %.1f | %.1f | %.2f |\n", row.c_str(), t, cublas_bf, t / cublas_bf);
      }
      {  // the pipelined kernel (cp.async, ldmatrix) needs b k-contiguous: the same b, stored transposed
        uint16_t* bt16;
        BENCH_CHECK(cudaMalloc(&bt16, n2 * 2));
        std::vector<graft::BFloat16> hbt(n2);
        BENCH_CHECK(cudaMemcpy(hb.data(), b16, n2 * 2, cudaMemcpyDeviceToHost));
        for (int i = 0; i < n; ++i)
          for (int j = 0; j < n; ++j) hbt[size_t(j) * n + i] = hb[size_t(i) * n + j];
        BENCH_CHECK(cudaMemcpy(bt16, hbt.data(), n2 * 2, cudaMemcpyHostToDevice));
        graft::kernels::cuda::gemm_detail::Operand bto = bo;
        bto.rs = 1;
        bto.cs = n;
        auto launch_p = [&] {
          graft::kernels::cuda::gemm_bf16_detail::gemm_16_pipelined<true>
              <<<grid_of_tiles(n, n, kBf16BM, kBf16BN, 1, "bench"), kBf16Threads>>>(c16, a16, ao, bt16, bto, n, n, n, 1,
                                                                                    ep);
        };
        BENCH_CHECK(cudaMemset(c16, 0xff, n2 * 2));
        launch_p();
        BENCH_CHECK(cudaGetLastError());
        BENCH_CHECK(cudaDeviceSynchronize());
        const double errp = relative_error_bf16(c16, ref16, n2);
        const std::string rowp = "bf16 mma.sync cp.async+ldmatrix 128x128 " + std::to_string(n);
        if (!(errp <= 1e-2)) {
          all_right = false;
          std::printf("| %s | WRONG (error %.2e > 1e-2) | %.1f | - |\n", rowp.c_str(), errp, cublas_bf);
        } else {
          const double t = tflop / (median_ms(launch_p, runs) * 1e-3);
          std::printf("| %s | %.1f | %.1f | %.2f |\n", rowp.c_str(), t, cublas_bf, t / cublas_bf);
        }
        cudaFree(bt16);
      }
      cudaFree(a16);
      cudaFree(b16);
      cudaFree(c16);
      cudaFree(ref16);
    }
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    cudaFree(ref);
    cudaFree(ref_tf32);
  }
  cublasDestroy(handle);
  return all_right ? 0 : 1;
}
