// graft/cuda.cuh - the CUDA backend. Include it in exactly one .cu file compiled by nvcc; code
// compiled by g++ then reaches these kernels through the ops' KernelSlots, which this header fills
// during static initialization.
//
//   // backend.cu (nvcc -std=c++20 -arch=sm_90a)
//   #include <graft/cuda.cuh>
//   // main.cpp (g++)
//   Tensor x = randn({1024}).to(graft::cuda());   // from the caching allocator
//   Tensor y = relu(x) * 2.0;                      // CUDA kernels
//
// Device memory comes from the caching allocator of graft/cuda/runtime.cuh (also: device and stream
// guards, events, cuda_memory_stats, cuda_empty_cache); kernels run on the thread's current stream of
// their tensors' device. Every kernel slot has a CUDA kernel (docs/ARCHITECTURE.md's table); an op
// whose slot had none would throw "<op>: no kernel for device cuda:0", never fall back to the CPU.
// The families, one header each in kernels/graft/kernels/cuda/: copies and dtype conversion,
// elementwise (forward and backward), comparisons and where; sum, var, max / min with indices, amax
// (the CPU's tie rules bit for bit), clip_grad_norm_'s norms; matmul and linear (FP32 warp-tiled
// SIMT GEMM, TF32 mma.sync under set_float32_matmul_precision("high"), bias and activation fused);
// conv2d (implicit-GEMM forward, dx and split-K dweight; direct depthwise kernels); scaled dot-product
// attention (tiled online softmax forward and backward, masks and dropout draws on the GPU); softmax
// and log_softmax, layer norm, batch norm (training, running and frozen statistics), pooling,
// dropout (Philox4x32-10), embedding, cat / index_select / gather / pad, the losses (cross-entropy
// with its target check on the GPU, BCE with logits, MSE), the fused SGD and Adam / AdamW updates.
// Optional vendor backends (vendor.cuh): cuBLAS for matmul / linear and cuDNN for conv2d, used only
// when selected (GRAFT_CUDA_LIBS=cublas,cudnn or graft::set_cuda_libs; graft/core/cuda_libs.hpp).
#pragma once
#include <cuda_runtime.h>

#include "graft/cuda/runtime.cuh"
#include "graft/graft.hpp"
#include "graft/kernels/cuda/attention.cuh"
#include "graft/kernels/cuda/batch_norm.cuh"
#include "graft/kernels/cuda/compare.cuh"
#include "graft/kernels/cuda/conv2d.cuh"
#include "graft/kernels/cuda/dropout.cuh"
#include "graft/kernels/cuda/elementwise.cuh"
#include "graft/kernels/cuda/embedding.cuh"
#include "graft/kernels/cuda/gemm.cuh"
#include "graft/kernels/cuda/index.cuh"
#include "graft/kernels/cuda/reduce.cuh"
#include "graft/kernels/cuda/softmax.cuh"
#include "graft/kernels/cuda/layer_norm.cuh"
#include "graft/kernels/cuda/loss.cuh"
#include "graft/kernels/cuda/optim.cuh"
#include "graft/kernels/cuda/pool.cuh"
#include "graft/kernels/cuda/vendor.cuh"
#include "graft/optim/adam.hpp"
#include "graft/optim/clip.hpp"

namespace graft {

inline const bool graft_cuda_backend_registered = [] {
  g_allocators[static_cast<int>(DeviceType::CUDA)] = &cuda_allocator();
  conv2d_kernel.cuda = &kernels::cuda::conv2d_forward_vendor_aware;
  conv2d_backward_kernel.cuda = &kernels::cuda::conv2d_backward_vendor_aware;
  copy_kernel.cuda = &kernels::cuda::copy_forward;
  binary_kernel.cuda = &kernels::cuda::binary_forward;
  unary_kernel.cuda = &kernels::cuda::unary_forward;
  unary_backward_kernel.cuda = &kernels::cuda::unary_backward;
  sum_kernel.cuda = &kernels::cuda::sum_forward;
  matmul_kernel.cuda = &kernels::cuda::matmul_forward_vendor_aware;
  linear_kernel.cuda = &kernels::cuda::linear_forward_vendor_aware;
  softmax_kernel.cuda = &kernels::cuda::softmax_forward;
  softmax_backward_kernel.cuda = &kernels::cuda::softmax_backward;
  log_softmax_kernel.cuda = &kernels::cuda::log_softmax_forward;
  log_softmax_backward_kernel.cuda = &kernels::cuda::log_softmax_backward;
  layer_norm_kernel.cuda = &kernels::cuda::layer_norm_forward;
  layer_norm_backward_kernel.cuda = &kernels::cuda::layer_norm_backward;
  compare_kernel.cuda = &kernels::cuda::compare_forward;
  where_kernel.cuda = &kernels::cuda::where_forward;
  batch_norm_kernel.cuda = &kernels::cuda::batch_norm_forward;
  batch_norm_backward_kernel.cuda = &kernels::cuda::batch_norm_backward;
  dropout_kernel.cuda = &kernels::cuda::dropout_forward;
  dropout_backward_kernel.cuda = &kernels::cuda::dropout_backward;
  index_range_kernel.cuda = &kernels::cuda::index_range_check;
  embedding_kernel.cuda = &kernels::cuda::embedding_forward;
  embedding_backward_kernel.cuda = &kernels::cuda::embedding_backward;
  bce_with_logits_kernel.cuda = &kernels::cuda::bce_with_logits_forward;
  bce_with_logits_backward_kernel.cuda = &kernels::cuda::bce_with_logits_backward;
  mse_kernel.cuda = &kernels::cuda::mse_loss_forward;
  mse_backward_kernel.cuda = &kernels::cuda::mse_loss_backward;
  cross_entropy_targets_kernel.cuda = &kernels::cuda::cross_entropy_targets;
  cross_entropy_kernel.cuda = &kernels::cuda::cross_entropy_forward;
  cross_entropy_backward_kernel.cuda = &kernels::cuda::cross_entropy_backward;
  max_pool2d_kernel.cuda = &kernels::cuda::max_pool2d_forward;
  max_pool2d_backward_kernel.cuda = &kernels::cuda::max_pool2d_backward;
  max_pool2d_gather_kernel.cuda = &kernels::cuda::max_pool2d_gather;
  avg_pool2d_kernel.cuda = &kernels::cuda::avg_pool2d_forward;
  avg_pool2d_backward_kernel.cuda = &kernels::cuda::avg_pool2d_backward;
  adaptive_avg_pool2d_kernel.cuda = &kernels::cuda::adaptive_avg_pool2d_forward;
  adaptive_avg_pool2d_backward_kernel.cuda = &kernels::cuda::adaptive_avg_pool2d_backward;
  sgd_update_kernel.cuda = &kernels::cuda::sgd_update;
  adam_update_kernel.cuda = &kernels::cuda::adam_update;
  attention_kernel.cuda = &kernels::cuda::attention_forward;
  attention_backward_kernel.cuda = &kernels::cuda::attention_backward;
  attention_dropout_kernel.cuda = &kernels::cuda::attention_dropout_keep;
  var_kernel.cuda = &kernels::cuda::var_forward;
  var_backward_kernel.cuda = &kernels::cuda::var_backward;
  max_dim_kernel.cuda = &kernels::cuda::max_dim_forward;
  max_dim_backward_kernel.cuda = &kernels::cuda::max_dim_backward;
  amax_kernel.cuda = &kernels::cuda::amax_forward;
  amax_backward_kernel.cuda = &kernels::cuda::amax_backward;
  grad_norm_kernel.cuda = &kernels::cuda::grad_norm_part;
  cat_kernel.cuda = &kernels::cuda::cat_forward;
  index_select_kernel.cuda = &kernels::cuda::index_select_forward;
  index_select_backward_kernel.cuda = &kernels::cuda::index_select_backward;
  gather_kernel.cuda = &kernels::cuda::gather_forward;
  gather_backward_kernel.cuda = &kernels::cuda::gather_backward;
  pad_kernel.cuda = &kernels::cuda::pad_forward;
  kernels::cuda::vendor_detail::record_vendor_libs();
  return true;
}();

}  // namespace graft
