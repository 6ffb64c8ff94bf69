// bench/gpu/conv_bench.cu - ResNet-50's distinct convolution layers, forward + backward, Graft's CUDA
// conv2d (kernels/graft/kernels/cuda/conv2d.cuh, reached through the public op and autograd) against
// cuDNN in the same run.
//   layers   the 23 distinct (C, O, kernel, stride, input side) of torchvision's ResNet-50 at 224x224,
//            batch N (64; --quick: 32), NCHW float32, each with how often ResNet-50 has it
//   graft    out = conv2d(x, w) (no bias, as ResNet), then out.backward(dout): dweight, and dx except
//            for the stem (its input is the image, as in training)
//   cuDNN    the same three passes (the stem without backward data), each with the fastest algorithm
//            cudnnFind* measures, CUDNN_FMA_MATH: exact FP32, no tensor cores, as Graft's kernels
// Each layer is first checked: Graft's out, dx and dweight against cuDNN's, max |graft - cudnn| /
// max |cudnn| <= 1e-3 (float32 sums of up to N * 56 * 56 = 2e5 terms in other orders differ by about
// 1e-5; a wrong result is off by O(1)). Then timed: 2 warm-up runs, the median of the timed runs
// (CUDA events around each forward + backward). Prints `| row | graft | baseline | ratio |` rows, in
// milliseconds per forward + backward, ratio = cuDNN time / Graft time (>= 1: Graft faster), and a
// total over ResNet-50's 53 convolutions (each layer's time times its count). Exit 0; 1 if a check
// failed or a CUDA / cuDNN call did; 77 without a visible GPU.
//   graft_gpu_conv_bench [--quick]
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "graft/graft.hpp"

namespace {

using namespace graft;

struct ConvLayer {
  int64_t C, O, k, stride, side;  // input channels, output channels, kernel side, stride, input side
  int count;                      // how many of ResNet-50's convolutions have this shape
  bool stem() const { return C == 3; }
  int64_t pad() const { return k / 2; }
  int64_t out_side() const { return (side + 2 * pad() - k) / stride + 1; }
};

// torchvision's ResNet-50 (v1.5: stride on the 3x3), 224x224 input.
const std::vector<ConvLayer> kResNet50Convs = {
    {3, 64, 7, 2, 224, 1},                                                                   // conv1
    {64, 64, 1, 1, 56, 1},      {64, 64, 3, 1, 56, 3},     {64, 256, 1, 1, 56, 4},          // layer1
    {256, 64, 1, 1, 56, 2},                                                                  //
    {256, 128, 1, 1, 56, 1},    {128, 128, 3, 2, 56, 1},   {128, 512, 1, 1, 28, 4},         // layer2
    {256, 512, 1, 2, 56, 1},    {512, 128, 1, 1, 28, 3},   {128, 128, 3, 1, 28, 3},         //
    {512, 256, 1, 1, 28, 1},    {256, 256, 3, 2, 28, 1},   {256, 1024, 1, 1, 14, 6},        // layer3
    {512, 1024, 1, 2, 28, 1},   {1024, 256, 1, 1, 14, 5},  {256, 256, 3, 1, 14, 5},         //
    {1024, 512, 1, 1, 14, 1},   {512, 512, 3, 2, 14, 1},   {512, 2048, 1, 1, 7, 3},         // layer4
    {1024, 2048, 1, 2, 14, 1},  {2048, 512, 1, 1, 7, 2},   {512, 512, 3, 1, 7, 2},          //
};

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
void cudnn_check(cudnnStatus_t s, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + ": " + cudnnGetErrorString(s));
}

// max |a - b| / max |b| over two tensors of one shape (copied to the host).
double relative_error(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = std::fabs(x[i] - y[i]);
    diff = std::isnan(d) ? INFINITY : std::max(diff, d);
    scale = std::max(scale, std::fabs(y[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

// Median milliseconds of fn over `runs` timed runs after 2 warm-ups (events on the default stream,
// where Graft's kernels and cuDNN's run).
template <class Fn>
double median_ms(int runs, Fn&& fn) {
  cudaEvent_t start, stop;
  cuda_check(cudaEventCreate(&start), "cudaEventCreate");
  cuda_check(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < 2; ++i) fn();
  std::vector<float> ms;
  for (int i = 0; i < runs; ++i) {
    cuda_check(cudaEventRecord(start), "cudaEventRecord");
    fn();
    cuda_check(cudaEventRecord(stop), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    cuda_check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// cuDNN's descriptors and its fastest algorithms (exact FP32) for one layer, on Graft's device buffers.
struct CudnnConv {
  cudnnHandle_t handle;
  cudnnTensorDescriptor_t x_desc, y_desc;
  cudnnFilterDescriptor_t w_desc;
  cudnnConvolutionDescriptor_t conv_desc;
  cudnnConvolutionFwdAlgo_t fwd;
  cudnnConvolutionBwdDataAlgo_t bwd_data;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;

  CudnnConv(cudnnHandle_t h, const ConvLayer& l, int64_t N) : handle(h) {
    const int n = int(N), c = int(l.C), o = int(l.O), k = int(l.k), s = int(l.side), os = int(l.out_side());
    cudnn_check(cudnnCreateTensorDescriptor(&x_desc), "cudnnCreateTensorDescriptor");
    cudnn_check(cudnnCreateTensorDescriptor(&y_desc), "cudnnCreateTensorDescriptor");
    cudnn_check(cudnnCreateFilterDescriptor(&w_desc), "cudnnCreateFilterDescriptor");
    cudnn_check(cudnnCreateConvolutionDescriptor(&conv_desc), "cudnnCreateConvolutionDescriptor");
    cudnn_check(cudnnSetTensor4dDescriptor(x_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, s, s), "x descriptor");
    cudnn_check(cudnnSetTensor4dDescriptor(y_desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, o, os, os), "y descriptor");
    cudnn_check(cudnnSetFilter4dDescriptor(w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, o, c, k, k), "w descriptor");
    cudnn_check(cudnnSetConvolution2dDescriptor(conv_desc, int(l.pad()), int(l.pad()), int(l.stride), int(l.stride), 1,
                                                1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                "convolution descriptor");
    cudnn_check(cudnnSetConvolutionMathType(conv_desc, CUDNN_FMA_MATH), "cudnnSetConvolutionMathType");
    int returned = 0;
    cudnnConvolutionFwdAlgoPerf_t f[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    cudnn_check(cudnnFindConvolutionForwardAlgorithm(h, x_desc, w_desc, conv_desc, y_desc,
                                                     CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, f),
                "cudnnFindConvolutionForwardAlgorithm");
    fwd = pick(f, returned, "forward").algo;
    workspace_bytes = std::max(workspace_bytes, pick(f, returned, "forward").memory);
    cudnnConvolutionBwdDataAlgoPerf_t d[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    cudnn_check(cudnnFindConvolutionBackwardDataAlgorithm(h, w_desc, y_desc, conv_desc, x_desc,
                                                          CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, d),
                "cudnnFindConvolutionBackwardDataAlgorithm");
    bwd_data = pick(d, returned, "backward data").algo;
    workspace_bytes = std::max(workspace_bytes, pick(d, returned, "backward data").memory);
    cudnnConvolutionBwdFilterAlgoPerf_t w[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    cudnn_check(cudnnFindConvolutionBackwardFilterAlgorithm(h, x_desc, y_desc, conv_desc, w_desc,
                                                            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, w),
                "cudnnFindConvolutionBackwardFilterAlgorithm");
    bwd_filter = pick(w, returned, "backward filter").algo;
    workspace_bytes = std::max(workspace_bytes, pick(w, returned, "backward filter").memory);
    if (workspace_bytes) cuda_check(cudaMalloc(&workspace, workspace_bytes), "cudaMalloc (cuDNN workspace)");
  }
  ~CudnnConv() {
    cudaFree(workspace);
    cudnnDestroyConvolutionDescriptor(conv_desc);
    cudnnDestroyFilterDescriptor(w_desc);
    cudnnDestroyTensorDescriptor(y_desc);
    cudnnDestroyTensorDescriptor(x_desc);
  }
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  // The results come sorted by time; the first that ran successfully with FMA math.
  template <class Perf>
  static const Perf& pick(const Perf* p, int n, const char* what) {
    for (int i = 0; i < n; ++i)
      if (p[i].status == CUDNN_STATUS_SUCCESS) return p[i];
    throw std::runtime_error(std::string("cuDNN found no ") + what + " algorithm");
  }

  // y = conv(x, w); dx = conv^T(dy, w) unless null; dw = conv_w(x, dy). All device pointers.
  void run(float* y, const float* x, const float* w, float* dx, float* dw, const float* dy) const {
    const float one = 1.0f, zero = 0.0f;
    cudnn_check(cudnnConvolutionForward(handle, &one, x_desc, x, w_desc, w, conv_desc, fwd, workspace, workspace_bytes,
                                        &zero, y_desc, y),
                "cudnnConvolutionForward");
    if (dx)
      cudnn_check(cudnnConvolutionBackwardData(handle, &one, w_desc, w, y_desc, dy, conv_desc, bwd_data, workspace,
                                               workspace_bytes, &zero, x_desc, dx),
                  "cudnnConvolutionBackwardData");
    cudnn_check(cudnnConvolutionBackwardFilter(handle, &one, x_desc, x, y_desc, dy, conv_desc, bwd_filter, workspace,
                                               workspace_bytes, &zero, w_desc, dw),
                "cudnnConvolutionBackwardFilter");
  }
};

float* ptr(const Tensor& t) { return static_cast<float*>(t.data_ptr()); }

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("graft_gpu_conv_bench: SKIPPED (no CUDA device visible)\n");
    return 77;
  }
  const int64_t N = quick ? 32 : 64;
  const int runs = quick ? 5 : 10;
  try {
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    std::printf("# ResNet-50 convolutions, batch %lld, float32 NCHW, forward + backward, on %s; cuDNN %zu, "
                "FMA math (no tensor cores); ms per forward + backward\n",
                (long long)N, prop.name, cudnnGetVersion());
    std::printf("| row | graft | baseline | ratio |\n|---|---|---|---|\n");
    cudnnHandle_t handle;
    cudnn_check(cudnnCreate(&handle), "cudnnCreate");
    const Device gpu = cuda(0);
    bool all_right = true;
    double graft_total = 0, cudnn_total = 0;
    for (const ConvLayer& l : kResNet50Convs) {
      const int64_t os = l.out_side();
      Generator g(uint64_t(l.C * 7919 + l.O * 31 + l.k * 7 + l.stride));
      const Tensor x = randn({N, l.C, l.side, l.side}, DType::Float32, g).to(gpu);
      const Tensor w = (randn({l.O, l.C, l.k, l.k}, DType::Float32, g) * (1.0 / std::sqrt(double(l.C * l.k * l.k)))).to(gpu);
      const Tensor dy = randn({N, l.O, os, os}, DType::Float32, g).to(gpu);
      const Tensor xg = x.detach().set_requires_grad(!l.stem()), wg = w.detach().set_requires_grad();
      auto graft_pass = [&] {
        wg.zero_grad();
        xg.zero_grad();
        const Tensor y = conv2d(xg, wg, Tensor(), {l.stride, l.stride}, {l.pad(), l.pad()});
        y.backward(dy);
        return y;
      };
      const CudnnConv ref(handle, l, N);
      const Tensor y_ref = empty({N, l.O, os, os}, DType::Float32, gpu), dw_ref = empty(w.shape(), DType::Float32, gpu);
      const Tensor dx_ref = l.stem() ? Tensor() : empty(x.shape(), DType::Float32, gpu);
      auto cudnn_pass = [&] { ref.run(ptr(y_ref), ptr(x), ptr(w), l.stem() ? nullptr : ptr(dx_ref), ptr(dw_ref), ptr(dy)); };

      char row[160];
      std::snprintf(row, sizeof row, "conv %lld->%lld %lldx%lld/%lld @%lld (x%d)", (long long)l.C, (long long)l.O,
                    (long long)l.k, (long long)l.k, (long long)l.stride, (long long)l.side, l.count);
      const Tensor y = graft_pass();
      cudnn_pass();
      cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
      const double e_out = relative_error(y, y_ref), e_dw = relative_error(wg.grad(), dw_ref);
      const double e_dx = l.stem() ? 0.0 : relative_error(xg.grad(), dx_ref);
      if (!(e_out <= 1e-3 && e_dw <= 1e-3 && e_dx <= 1e-3)) {
        std::printf("| %s | WRONG: relative error out %.2g, dx %.2g, dweight %.2g | - | - |\n", row, e_out, e_dx, e_dw);
        all_right = false;
        continue;
      }
      const double t_graft = median_ms(runs, graft_pass), t_cudnn = median_ms(runs, cudnn_pass);
      graft_total += l.count * t_graft;
      cudnn_total += l.count * t_cudnn;
      std::printf("| %s | %.3f | %.3f | %.2f |\n", row, t_graft, t_cudnn, t_cudnn / t_graft);
      std::fflush(stdout);
    }
    if (all_right)
      std::printf("| total: ResNet-50's 53 convolutions, forward + backward | %.2f | %.2f | %.2f |\n", graft_total,
                  cudnn_total, cudnn_total / graft_total);
    cudnnDestroy(handle);
    return all_right ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "graft_gpu_conv_bench: %s\n", e.what());
    return 1;
  }
}
