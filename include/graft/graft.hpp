// graft/graft.hpp - the core of Graft: tensors, autograd, and the CPU reference ops.
//
// Overview
//   Tensor            dtype- and device-tagged strided view of a Storage (graft/core/tensor.hpp)
//   autograd          dynamic tape: requires_grad, backward, grad(), custom Function (graft/autograd/)
//   ops               free functions in namespace graft, each with its backward beside it (graft/ops/)
//   kernels           plain-loop CPU references reached through one KernelSlot per op
//
// Example (compiles as is; see examples/train_mlp.cpp for a whole training loop):
//
//   #include <graft/graft.hpp>
//   using namespace graft;
//   int main() {
//     manual_seed(0);
//     Tensor w = randn({3, 2}).set_requires_grad();
//     Tensor x = randn({4, 3});
//     Tensor loss = mean(pow(relu(matmul(x, w)), 2.0));
//     loss.backward();
//     std::cout << w.grad() << "\n";       // d loss / d w, shape [3, 2]
//   }
#pragma once

#include "graft/core/dtype.hpp"
#include "graft/core/shape.hpp"
#include "graft/core/device.hpp"
#include "graft/core/storage.hpp"
#include "graft/core/tensor.hpp"
#include "graft/core/view.hpp"
#include "graft/core/dispatch.hpp"
#include "graft/core/parallel.hpp"
#include "graft/core/random.hpp"
#include "graft/core/cuda_libs.hpp"  // set_cuda_libs: cuBLAS / cuDNN instead of the own CUDA kernels
#include "graft/autograd/grad_mode.hpp"
#include "graft/autograd/node.hpp"
#include "graft/autograd/function.hpp"
#include "graft/core/print.hpp"
#include "graft/core/autocast.hpp"   // AutocastGuard: bfloat16 / float16 matrix products
#include "graft/ops/creation.hpp"
#include "graft/ops/copy.hpp"
#include "graft/ops/view.hpp"
#include "graft/ops/elementwise.hpp"
#include "graft/ops/reduce.hpp"
#include "graft/ops/minmax.hpp"
#include "graft/ops/var.hpp"
#include "graft/ops/softmax.hpp"
#include "graft/ops/layer_norm.hpp"
#include "graft/ops/batch_norm.hpp"
#include "graft/ops/matmul.hpp"
#include "graft/ops/conv2d.hpp"
#include "graft/ops/pool.hpp"
#include "graft/ops/pad.hpp"
#include "graft/optim/sgd.hpp"
#include "graft/ops/index.hpp"
#include "graft/ops/embedding.hpp"
#include "graft/ops/dropout.hpp"
#include "graft/ops/loss.hpp"
#include "graft/ops/attention.hpp"
#include "graft/ops/autocast.hpp"
#include "graft/optim/grad_scaler.hpp"
#include "graft/autograd/engine.hpp"
#include "graft/autograd/checkpoint.hpp"  // checkpoint(fn, inputs): recompute activations in backward
