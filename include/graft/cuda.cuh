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
// their tensors' device. Ops without a CUDA kernel yet throw "<op>: no kernel for device cuda:0"
// (never a silent CPU fallback). Covered so far: copies and dtype conversion, binary and unary
// elementwise (forward and backward), comparisons and where, sum, matmul (so linear and their backward passes), softmax
// and log_softmax, layer norm, batch norm (training, running and frozen statistics), max / avg /
// adaptive pooling, dropout (a counter-based generator), embedding (with the index check on the GPU), BCE with logits, MSE, cross-entropy (forward, backward and its target check on the GPU), the
// fused SGD and Adam / AdamW updates.
#pragma once
#include <cuda_runtime.h>

#include "graft/cuda/runtime.cuh"
#include "graft/graft.hpp"
#include "graft/kernels/cuda/batch_norm.cuh"
#include "graft/kernels/cuda/compare.cuh"
#include "graft/kernels/cuda/dropout.cuh"
#include "graft/kernels/cuda/elementwise.cuh"
#include "graft/kernels/cuda/embedding.cuh"
#include "graft/kernels/cuda/gemm.cuh"
#include "graft/kernels/cuda/reduce.cuh"
#include "graft/kernels/cuda/softmax.cuh"
#include "graft/kernels/cuda/layer_norm.cuh"
#include "graft/kernels/cuda/loss.cuh"
#include "graft/kernels/cuda/optim.cuh"
#include "graft/kernels/cuda/pool.cuh"
#include "graft/optim/adam.hpp"

namespace graft {

inline const bool graft_cuda_backend_registered = [] {
  g_allocators[static_cast<int>(DeviceType::CUDA)] = &cuda_allocator();
  copy_kernel.cuda = &kernels::cuda::copy_forward;
  binary_kernel.cuda = &kernels::cuda::binary_forward;
  unary_kernel.cuda = &kernels::cuda::unary_forward;
  unary_backward_kernel.cuda = &kernels::cuda::unary_backward;
  sum_kernel.cuda = &kernels::cuda::sum_forward;
  matmul_kernel.cuda = &kernels::cuda::matmul_forward;
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
  return true;
}();

}  // namespace graft
