// graft/nn.hpp - modules and layers (torch.nn): include it on purpose; graft/graft.hpp does not.
//
//   graft/nn/module.hpp       nn::Module: named parameters, buffers, children; state_dict; load_state_dict
//   graft/nn/layers.hpp       Linear, Conv2d, BatchNorm2d, LayerNorm, Dropout, Embedding, pools,
//                             activations, Identity, Flatten, Sequential, ModuleList
//   graft/nn/transformer.hpp  MultiheadAttention, TransformerEncoderLayer, PatchEmbed, PositionEmbedding
//
// Example:
//   auto net = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
//       std::make_shared<nn::Linear>(4, 8), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(8, 2)});
//   Tensor y = net->forward(randn({3, 4}));        // [3, 2]
//   for (auto& [name, t] : net->state_dict()) ...  // "0.weight", "0.bias", "2.weight", "2.bias"
#pragma once

#include "graft/nn/module.hpp"
#include "graft/nn/layers.hpp"
#include "graft/nn/transformer.hpp"
