// graft/kernels/cuda/vendor.cuh - cuBLAS and cuDNN as optional backends of four slots, selected with
// GRAFT_CUDA_LIBS or graft::set_cuda_libs (graft/core/cuda_libs.hpp); Graft's own kernels are the
// default and the fallback. The slot functions registered by graft/cuda.cuh are the *_vendor_aware
// entries below: each checks whether its library is selected and can take the operands, else calls
// Graft's kernel (gemm.cuh, conv2d.cuh) unchanged. Linking: a program that includes this header (via
// <graft/cuda.cuh>) links CUDA::cublas, and cuDNN's libcudnn when compiled with GRAFT_HAVE_CUDNN
// (CMake's graft::cuda_backend does both; without cuDNN found it leaves GRAFT_HAVE_CUDNN undefined,
// the cuDNN path is compiled out and selecting "cudnn" throws).
//
// cuBLAS, matmul and linear: one cublasGemmStridedBatchedEx per call, on the row-major problem read
// column-major (vendor_plan.hpp): C [N, M] = op(b) op(a), ldc = N. float32 computes in
// CUBLAS_COMPUTE_32F, or CUBLAS_COMPUTE_32F_FAST_TF32 when set_float32_matmul_precision allows TF32;
// float64 in CUBLAS_COMPUTE_64F. Taken when both operands have a unit stride in one of their matrix
// dims (vendor_plan::cublas_operand), the batch dims collapse to one stride per operand
// (vendor_plan::single_batch_stride), K > 0 and every size fits cuBLAS's int; else Graft's GEMM.
// linear's bias and activation are applied after, in place, by add_bias_activation: the same scalar
// math as gemm.cuh's fused epilogue (gemm_detail::finish).
//
// cuDNN, conv2d: NCHW float32 / float64 (every tensor contiguous, the slots' contract), groups via
// cudnnSetConvolutionGroupCount, cross-correlation as Graft's conv2d. Forward: cudnnConvolutionForward
// (beta 0), then cudnnAddTensor for the bias. Backward: cudnnConvolutionBackwardData overwrites dx
// (beta 0); BackwardFilter and BackwardBias accumulate (beta 1), as the slot's contract says. The
// algorithm is cuDNN's heuristic choice (cudnnGet...Algorithm_v7, no benchmarking): the first that
// succeeds in CUDNN_FMA_MATH (exact float32 / float64), or with tensor cores when
// set_float32_matmul_precision allows TF32 for float32; its workspace comes from Graft's caching
// allocator on the current stream. A pass cuDNN refuses (no algorithm, CUDNN_STATUS_NOT_SUPPORTED,
// or sizes past its int) runs Graft's kernel for that output.
//
// Handles: one cublasHandle_t and one cudnnHandle_t per device, created on first use on that device
// and kept for the process (not destroyed at exit: the CUDA context may be gone by then). A mutex per
// handle covers binding the caller's current stream (cublasSetStream / cudnnSetStream) and enqueuing
// the call, so threads with different streams may share it.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#ifdef GRAFT_HAVE_CUDNN
#include <cudnn.h>
#endif

#include <cstdint>
#include <mutex>
#include <type_traits>

#include "graft/core/activation.hpp"
#include "graft/core/conv2d_geometry.hpp"
#include "graft/core/cuda_libs.hpp"
#include "graft/core/dtype.hpp"
#include "graft/core/precision.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"
#include "graft/kernels/cuda/conv2d.cuh"
#include "graft/kernels/cuda/gemm.cuh"
#include "graft/kernels/cuda/gemm_bf16.cuh"
#include "graft/kernels/cuda/vendor_plan.hpp"

namespace graft::kernels::cuda {

namespace vendor_detail {
using namespace vendor_plan;

constexpr int kMaxDevices = 64;

inline const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cublasStatus_t (unknown)";
  }
}

#define GRAFT_CUBLAS_CHECK(expr, op)                                                                     \
  do {                                                                                                   \
    const cublasStatus_t graft_st_ = (expr);                                                             \
    if (graft_st_ != CUBLAS_STATUS_SUCCESS)                                                              \
      throw ::graft::Error(::graft::detail::concat(op, ": ", #expr, " failed: ",                         \
                                                   ::graft::kernels::cuda::vendor_detail::cublas_status_name(graft_st_))); \
  } while (0)

// A library handle of one device, created on first use with that device current.
template <class Handle>
struct DeviceHandle {
  std::mutex mutex;  // held while the handle is bound to a stream and a call is enqueued
  Handle handle{};
  bool created = false;
};

inline DeviceHandle<cublasHandle_t>& cublas_handle(int device) {
  static DeviceHandle<cublasHandle_t> handles[kMaxDevices];
  GRAFT_CHECK(device >= 0 && device < kMaxDevices, "cublas", "device index ", device, " out of range");
  return handles[device];
}

// ---- cuBLAS: out[z] = a[z] @ b[z] ---------------------------------------------------------------
// One operand of the GEMM as cuBLAS reads it.
struct CublasMatrix {
  CublasOperand layout;
  int64_t batch_stride;
};

// The whole problem as one strided-batched cuBLAS call, if cuBLAS can express it.
struct CublasGemm {
  CublasMatrix a, b;
  int64_t M, N, K, batches;
};

// a's (i, p) at i a_rs + p a_cs, b's (p, j) at p b_rs + j b_cs; batch dims `batch` with the operands'
// strides a_bst, b_bst.
inline bool plan_cublas_gemm(int64_t M, int64_t N, int64_t K, const Shape& batch, const Shape& a_bst,
                             const Shape& b_bst, int64_t a_rs, int64_t a_cs, int64_t b_rs, int64_t b_cs,
                             CublasGemm* g) {
  const int64_t batches = batch.numel();
  if (K <= 0 || M > kCublasIntMax || N > kCublasIntMax || K > kCublasIntMax || batches > kCublasIntMax) return false;
  CublasGemm p{};
  p.M = M, p.N = N, p.K = K, p.batches = batches;
  // a [M, K] as cuBLAS's a^T [K, M]; b [K, N] as b^T [N, K].
  if (!cublas_operand(M, K, a_rs, a_cs, &p.a.layout) || !cublas_operand(K, N, b_rs, b_cs, &p.b.layout)) return false;
  if (p.a.layout.ld > kCublasIntMax || p.b.layout.ld > kCublasIntMax) return false;
  if (!single_batch_stride(batch, a_bst, &p.a.batch_stride) || !single_batch_stride(batch, b_bst, &p.b.batch_stride))
    return false;
  *g = p;
  return true;
}

template <class T>
void run_cublas_gemm(T* out, const T* a, const T* b, const CublasGemm& g, Device dev, const char* op) {
  constexpr bool kFloat = std::is_same_v<T, float>;
  const cudaDataType_t type = kFloat ? CUDA_R_32F : CUDA_R_64F;
  const cublasComputeType_t compute =
      kFloat ? (float32_matmul_allows_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F) : CUBLAS_COMPUTE_64F;
  const T one = T(1), zero = T(0);
  const KernelLaunch at(dev);
  DeviceHandle<cublasHandle_t>& h = cublas_handle(dev.index);
  std::lock_guard<std::mutex> lock(h.mutex);
  if (!h.created) {
    GRAFT_CUBLAS_CHECK(cublasCreate(&h.handle), op);
    h.created = true;
  }
  GRAFT_CUBLAS_CHECK(cublasSetStream(h.handle, at.stream), op);
  // C [N, M] (column-major, ldc = N) = op(b) [N, K] op(a) [K, M].
  GRAFT_CUBLAS_CHECK(
      cublasGemmStridedBatchedEx(h.handle, g.b.layout.transposed ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 g.a.layout.transposed ? CUBLAS_OP_T : CUBLAS_OP_N, int(g.N), int(g.M), int(g.K), &one,
                                 b, type, int(g.b.layout.ld), g.b.batch_stride, a, type, int(g.a.layout.ld),
                                 g.a.batch_stride, &zero, out, type, int(g.N), g.M * g.N, int(g.batches), compute,
                                 CUBLAS_GEMM_DEFAULT),
      op);
  detail::count_cuda_lib_call(CudaLib::Cublas);
}

// out[r, f] = act(out[r, f] + bias[f]) in place, out contiguous [rows, F]; a thread per element
// (grid-stride loop). gemm_detail::finish is the fused epilogue's own math.
template <class T>
__global__ void add_bias_activation(T* __restrict__ out, int64_t n, int64_t F, gemm_detail::Epilogue<T> ep) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = gemm_detail::finish(ep, out[i], i % F);
}

// ---- cuDNN ---------------------------------------------------------------------------------------
#ifdef GRAFT_HAVE_CUDNN
#define GRAFT_CUDNN_CHECK(expr, op)                                                                        \
  do {                                                                                                     \
    const cudnnStatus_t graft_st_ = (expr);                                                                \
    if (graft_st_ != CUDNN_STATUS_SUCCESS)                                                                 \
      throw ::graft::Error(::graft::detail::concat(op, ": ", #expr, " failed: ", cudnnGetErrorString(graft_st_))); \
  } while (0)

inline DeviceHandle<cudnnHandle_t>& cudnn_handle(int device) {
  static DeviceHandle<cudnnHandle_t> handles[kMaxDevices];
  GRAFT_CHECK(device >= 0 && device < kMaxDevices, "cudnn", "device index ", device, " out of range");
  return handles[device];
}

// The descriptors of one convolution, destroyed with it.
struct CudnnConv {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  const char* op;

  CudnnConv(const Conv2dGeometry& g, DType dt, const char* op_name) : op(op_name) {
    const cudnnDataType_t t = dt == DType::Float32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
    GRAFT_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x), op);
    GRAFT_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y), op);
    GRAFT_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bias), op);
    GRAFT_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w), op);
    GRAFT_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv), op);
    GRAFT_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, t, int(g.N), int(g.C), int(g.H), int(g.W)), op);
    GRAFT_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, t, int(g.N), int(g.O), int(g.OH), int(g.OW)), op);
    GRAFT_CUDNN_CHECK(cudnnSetTensor4dDescriptor(bias, CUDNN_TENSOR_NCHW, t, 1, int(g.O), 1, 1), op);
    GRAFT_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, t, CUDNN_TENSOR_NCHW, int(g.O), int(g.Cg), int(g.KH), int(g.KW)), op);
    GRAFT_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, int(g.ph), int(g.pw), int(g.sh), int(g.sw), int(g.dh),
                                                      int(g.dw), CUDNN_CROSS_CORRELATION, t),
                      op);
    GRAFT_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, int(g.G)), op);
    int n = 0, c = 0, h = 0, wd = 0;
    GRAFT_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv, x, w, &n, &c, &h, &wd), op);
    GRAFT_CHECK(n == g.N && c == g.O && h == g.OH && wd == g.OW, op, "cuDNN's output [", n, ", ", c, ", ", h, ", ",
                wd, "] differs from Graft's [", g.N, ", ", g.O, ", ", g.OH, ", ", g.OW, "]");
  }
  ~CudnnConv() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (bias) cudnnDestroyTensorDescriptor(bias);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;
};

// Whether cuDNN's int sizes hold the convolution (every tensor below 2^31 elements).
inline bool cudnn_fits(const Conv2dGeometry& g) {
  const int64_t lim = kCublasIntMax;
  return g.N * g.C * g.H * g.W <= lim && g.N * g.O * g.OH * g.OW <= lim && g.O * g.Cg * g.KH * g.KW <= lim;
}

// Binds the device's handle to the current stream for the scope, holding its mutex.
struct CudnnCall {
  KernelLaunch at;
  DeviceHandle<cudnnHandle_t>& h;
  std::lock_guard<std::mutex> lock;
  CudnnCall(Device dev, const char* op) : at(dev), h(cudnn_handle(dev.index)), lock(h.mutex) {
    if (!h.created) {
      GRAFT_CUDNN_CHECK(cudnnCreate(&h.handle), op);
      h.created = true;
    }
    GRAFT_CUDNN_CHECK(cudnnSetStream(h.handle, at.stream), op);
  }
};

// A workspace of `bytes` from the caching allocator, on the current stream (freed after the call is
// queued: a later user of the block runs after it on the same stream, as in conv2d.cuh).
inline Tensor cudnn_workspace(size_t bytes, Device dev) {
  return empty(Shape{int64_t((bytes + 7) / 8)}, DType::Float64, dev);
}

// Runs one pass with the first of cuDNN's heuristic choices (perf[0..count), best first) that
// reported success, uses tensor cores only if allowed (float32 with TF32 allowed: the algorithm's own
// math type; else CUDNN_FMA_MATH, exact float32 / float64), and whose workspace query and launch
// cuDNN accepts: workspace_size(algo, &bytes) and run(algo, workspace, bytes) return a status.
// False when none does (nothing was written: cuDNN refuses before it launches anything).
template <class Perf, class WorkspaceSize, class Run>
bool run_first_algorithm(const CudnnConv& d, const Perf* perf, int count, bool allow_tensor_ops, Device dev,
                         WorkspaceSize&& workspace_size, Run&& run) {
  for (int i = 0; i < count; ++i) {
    const Perf& p = perf[i];
    if (p.status != CUDNN_STATUS_SUCCESS) continue;
    const bool tensor_op = p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (tensor_op && !allow_tensor_ops) continue;
    GRAFT_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, allow_tensor_ops ? p.mathType : CUDNN_FMA_MATH), d.op);
    size_t bytes = 0;
    if (workspace_size(p.algo, &bytes) != CUDNN_STATUS_SUCCESS) continue;
    const Tensor ws = cudnn_workspace(bytes, dev);
    const cudnnStatus_t st = run(p.algo, ws.data_ptr(), bytes);
    if (st == CUDNN_STATUS_NOT_SUPPORTED) continue;
    GRAFT_CUDNN_CHECK(st, d.op);
    detail::count_cuda_lib_call(CudaLib::Cudnn);
    return true;
  }
  return false;
}

inline bool cudnn_tensor_ops_allowed(DType dt) { return dt == DType::Float32 && float32_matmul_allows_tf32(); }

// The heuristics are asked with the math type the pass may use (CUDNN_DEFAULT_MATH admits TF32 on
// Ampere and later, so exact float32 asks with CUDNN_FMA_MATH).
inline void set_query_math(const CudnnConv& d, DType dt) {
  GRAFT_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, cudnn_tensor_ops_allowed(dt) ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH),
                    d.op);
}

// out = conv(x, w) (+ bias). False (nothing written) when cuDNN has no algorithm for it.
template <class T>
bool cudnn_forward(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                   const Conv2dGeometry& g) {
  const CudnnConv d(g, out.dtype(), "conv2d (cudnn)");
  set_query_math(d, out.dtype());
  CudnnCall call(out.device(), d.op);
  cudnnHandle_t h = call.h.handle;
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int found = 0;
  GRAFT_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                           &found, perf),
                    d.op);
  const T one = T(1), zero = T(0);
  const bool done = run_first_algorithm(
      d, perf, found, cudnn_tensor_ops_allowed(out.dtype()), out.device(),
      [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
        return cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.w, d.conv, d.y, algo, bytes);
      },
      [&](cudnnConvolutionFwdAlgo_t algo, void* ws, size_t bytes) {
        return cudnnConvolutionForward(h, &one, d.x, x.data_ptr(), d.w, weight.data_ptr(), d.conv, algo, ws, bytes,
                                       &zero, d.y, out.data_ptr());
      });
  if (done && bias.defined())
    GRAFT_CUDNN_CHECK(cudnnAddTensor(h, &one, d.bias, bias.data_ptr(), &one, d.y, out.data_ptr()), d.op);
  return done;
}

// dx = conv^T(dout, w), overwritten. False (nothing written) when cuDNN has no algorithm for it.
template <class T>
bool cudnn_backward_data(const Tensor& dx, const Tensor& dout, const Tensor& weight, const Conv2dGeometry& g) {
  const CudnnConv d(g, dout.dtype(), "conv2d_backward (cudnn)");
  set_query_math(d, dout.dtype());
  CudnnCall call(dout.device(), d.op);
  cudnnHandle_t h = call.h.handle;
  cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
  int found = 0;
  GRAFT_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x,
                                                                CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &found, perf),
                    d.op);
  const T one = T(1), zero = T(0);
  return run_first_algorithm(
      d, perf, found, cudnn_tensor_ops_allowed(dout.dtype()), dout.device(),
      [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
        return cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.w, d.y, d.conv, d.x, algo, bytes);
      },
      [&](cudnnConvolutionBwdDataAlgo_t algo, void* ws, size_t bytes) {
        return cudnnConvolutionBackwardData(h, &one, d.w, weight.data_ptr(), d.y, dout.data_ptr(), d.conv, algo, ws,
                                            bytes, &zero, d.x, dx.data_ptr());
      });
}

// dweight += conv_w(x, dout). False (nothing written) when cuDNN has no algorithm for it.
template <class T>
bool cudnn_backward_filter(const Tensor& dweight, const Tensor& dout, const Tensor& x, const Conv2dGeometry& g) {
  const CudnnConv d(g, dout.dtype(), "conv2d_backward (cudnn)");
  set_query_math(d, dout.dtype());
  CudnnCall call(dout.device(), d.op);
  cudnnHandle_t h = call.h.handle;
  cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
  int found = 0;
  GRAFT_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w,
                                                                  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &found, perf),
                    d.op);
  const T one = T(1);
  return run_first_algorithm(
      d, perf, found, cudnn_tensor_ops_allowed(dout.dtype()), dout.device(),
      [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.x, d.y, d.conv, d.w, algo, bytes);
      },
      [&](cudnnConvolutionBwdFilterAlgo_t algo, void* ws, size_t bytes) {
        return cudnnConvolutionBackwardFilter(h, &one, d.x, x.data_ptr(), d.y, dout.data_ptr(), d.conv, algo, ws, bytes,
                                              &one, d.w, dweight.data_ptr());
      });
}

// dbias += sum over (n, oh, ow) of dout. False (nothing written) when cuDNN does not support it.
template <class T>
bool cudnn_backward_bias(const Tensor& dbias, const Tensor& dout, const Conv2dGeometry& g) {
  const CudnnConv d(g, dout.dtype(), "conv2d_backward (cudnn)");
  CudnnCall call(dout.device(), d.op);
  const T one = T(1);
  const cudnnStatus_t st =
      cudnnConvolutionBackwardBias(call.h.handle, &one, d.y, dout.data_ptr(), &one, d.bias, dbias.data_ptr());
  if (st == CUDNN_STATUS_NOT_SUPPORTED) return false;
  GRAFT_CUDNN_CHECK(st, d.op);
  detail::count_cuda_lib_call(CudaLib::Cudnn);
  return true;
}
#endif  // GRAFT_HAVE_CUDNN

// Recorded at registration (graft/cuda.cuh): a backend built without cuDNN refuses to select it.
inline bool record_vendor_libs() {
#ifndef GRAFT_HAVE_CUDNN
  detail::mark_cuda_lib_missing(CudaLib::Cudnn);
#endif
  return true;
}

}  // namespace vendor_detail

// ---- the slot entries graft/cuda.cuh registers ------------------------------------------------------

// matmul: cuBLAS when selected and it can read the operands, else gemm.cuh's matmul_forward.
inline void matmul_forward_vendor_aware(const Tensor& out, const Tensor& a, const Tensor& b) {
  using namespace vendor_detail;
  if (is_reduced_float(out.dtype())) return matmul_forward_16(out, a, b);  // Graft's tensor-core kernel
  if (cuda_lib_selected(CudaLib::Cublas) && out.numel() > 0 && out.is_contiguous()) {
    const int r = out.dim();
    Shape batch, a_bst, b_bst;
    for (int d = 0; d < r - 2; ++d) {
      batch.push_back(out.size(d));
      a_bst.push_back(a.stride(d));
      b_bst.push_back(b.stride(d));
    }
    CublasGemm g;
    if (plan_cublas_gemm(out.size(r - 2), out.size(r - 1), a.size(r - 1), batch, a_bst, b_bst, a.stride(r - 2),
                         a.stride(r - 1), b.stride(r - 2), b.stride(r - 1), &g)) {
      GRAFT_DISPATCH_FLOAT(out.dtype(), "matmul (cublas)", T, [&] {
        run_cublas_gemm<T>(static_cast<T*>(out.data_ptr()), static_cast<const T*>(a.data_ptr()),
                           static_cast<const T*>(b.data_ptr()), g, out.device(), "matmul (cublas)");
      });
      return;
    }
  }
  matmul_forward(out, a, b);
}

// linear: cuBLAS's GEMM then add_bias_activation when selected and eligible, else gemm.cuh's
// linear_forward (bias and activation fused there).
inline void linear_forward_vendor_aware(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                                        Activation act) {
  using namespace vendor_detail;
  if (is_reduced_float(out.dtype())) return linear_forward_16(out, x, weight, bias, act);
  if (cuda_lib_selected(CudaLib::Cublas) && out.numel() > 0 && out.is_contiguous() &&
      (!bias.defined() || bias.is_contiguous())) {
    const int64_t rows = x.size(0), K = x.size(1), F = weight.size(0);
    CublasGemm g;
    // b [K, F] is weight read in place: b(k, f) = weight[f, k].
    if (plan_cublas_gemm(rows, F, K, Shape{}, Shape{}, Shape{}, x.stride(0), x.stride(1), weight.stride(1),
                         weight.stride(0), &g)) {
      GRAFT_DISPATCH_FLOAT(out.dtype(), "linear (cublas)", T, [&] {
        T* po = static_cast<T*>(out.data_ptr());
        run_cublas_gemm<T>(po, static_cast<const T*>(x.data_ptr()), static_cast<const T*>(weight.data_ptr()), g,
                           out.device(), "linear (cublas)");
        if (bias.defined() || act != Activation::None) {
          gemm_detail::Epilogue<T> ep;
          ep.bias = data_or_null<const T>(bias);
          ep.act = act;
          const KernelLaunch at(out.device());
          add_bias_activation<T><<<grid_for(out.numel(), 256), 256, 0, at.stream>>>(po, out.numel(), F, ep);
          GRAFT_CUDA_CHECK(cudaGetLastError());
        }
      });
      return;
    }
  }
  linear_forward(out, x, weight, bias, act);
}

// conv2d: cuDNN when selected (and built in) and it has an algorithm, else conv2d.cuh's conv2d_forward.
inline void conv2d_forward_vendor_aware(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                                        const Conv2dParams& p) {
#ifdef GRAFT_HAVE_CUDNN
  using namespace vendor_detail;
  if (cuda_lib_selected(CudaLib::Cudnn) && out.numel() > 0) {
    const Conv2dGeometry g = conv2d_geometry(x.shape(), weight.shape(), p);
    if (cudnn_fits(g)) {
      bool done = false;
      GRAFT_DISPATCH_FLOAT(out.dtype(), "conv2d (cudnn)", T, [&] { done = cudnn_forward<T>(out, x, weight, bias, g); });
      if (done) return;
    }
  }
#endif
  conv2d_forward(out, x, weight, bias, p);
}

// conv2d_backward: each of dx, dweight, dbias by cuDNN when selected and it has an algorithm for that
// pass; the passes it does not take go to conv2d.cuh's conv2d_backward (undefined outputs are skipped
// there, so each pass runs exactly once).
inline void conv2d_backward_vendor_aware(const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                         const Tensor& dout, const Tensor& x, const Tensor& weight,
                                         const Shape& x_shape, const Shape& w_shape, const Conv2dParams& p) {
#ifdef GRAFT_HAVE_CUDNN
  using namespace vendor_detail;
  const Conv2dGeometry g = conv2d_geometry(x_shape, w_shape, p);
  if (cuda_lib_selected(CudaLib::Cudnn) && g.N * g.L > 0 && cudnn_fits(g)) {
    Tensor rest_dx = dx, rest_dw = dweight, rest_db = dbias;  // what Graft's kernel still has to do
    GRAFT_DISPATCH_FLOAT(dout.dtype(), "conv2d_backward (cudnn)", T, [&] {
      if (dx.defined() && cudnn_backward_data<T>(dx, dout, weight, g)) rest_dx = Tensor();
      if (dweight.defined() && cudnn_backward_filter<T>(dweight, dout, x, g)) rest_dw = Tensor();
      if (dbias.defined() && cudnn_backward_bias<T>(dbias, dout, g)) rest_db = Tensor();
    });
    if (rest_dx.defined() || rest_dw.defined() || rest_db.defined())
      conv2d_backward(rest_dx, rest_dw, rest_db, dout, x, weight, x_shape, w_shape, p);
    return;
  }
#endif
  conv2d_backward(dx, dweight, dbias, dout, x, weight, x_shape, w_shape, p);
}

}  // namespace graft::kernels::cuda
