// [cuda] the transfer tools on device tensors, unchanged: the gradient-reversal layer, a frozen
// backbone (no gradients, no optimizer state), BatchNorm statistics frozen apart from the weights.
#include "graft/optim/adam.hpp"
#include "graft/transfer/grl.hpp"
#include "op_harness.hpp"

using namespace graft;
using cuda_test::check_op;
using cuda_test::expect_close;
using cuda_test::gpu;
using cuda_test::randn_leaf;

namespace {
// conv -> bn -> relu -> pool -> flatten -> linear, seeded (the same weights on both devices).
std::shared_ptr<nn::Sequential> small_cnn() {
  manual_seed(5);
  nn::Conv2dOptions o;
  o.padding = {1, 1};
  return std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Conv2d>(3, 8, 3, o), std::make_shared<nn::BatchNorm2d>(8), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}), std::make_shared<nn::Flatten>(),
      std::make_shared<nn::Linear>(8, 4)});
}
Tensor buffer(nn::Module& m, const std::string& name) {
  for (auto& [n, t] : m.named_buffers())
    if (n == name) return t;
  FAIL("no buffer " << name);
  return Tensor();
}
}  // namespace

TEST_CASE("CUDA gradient reversal: identity forward, -lambda times the gradient backward", "[cuda]") {
  check_op("grad_reverse(x * w, 0.7)", [](const auto& in) { return transfer::grad_reverse(in[0] * in[1], 0.7); },
           {randn_leaf({9, 13}, 121), randn_leaf({13}, 122)});
}

TEST_CASE("CUDA frozen backbone and frozen BatchNorm statistics", "[cuda]") {
  auto cpu_net = small_cnn(), gpu_net = small_cnn();
  gpu_net->to(gpu());
  for (auto* net : {cpu_net.get(), gpu_net.get()}) {
    net->freeze_up_to("1");    // conv and batch norm weights frozen, the head trains
    net->freeze_norm_stats();  // and the running statistics stay as they are, in training mode too
    net->train();
  }
  Generator g(123);
  const Tensor x = randn({4, 3, 9, 7}, DType::Float32, g), y = from_vector(std::vector<int64_t>{0, 3, 1, 2}, {4});
  const Tensor mean_before = buffer(*cpu_net, "1.running_mean").clone();
  std::vector<Tensor> cpu_params, gpu_params;
  for (auto& [name, p] : cpu_net->named_parameters()) cpu_params.push_back(p);
  for (auto& [name, p] : gpu_net->named_parameters()) gpu_params.push_back(p);
  optim::AdamW cpu_opt(cpu_params, 1e-2), gpu_opt(gpu_params, 1e-2);
  for (int step = 0; step < 2; ++step) {
    Tensor lc = cross_entropy(cpu_net->forward(x), y), lg = cross_entropy(gpu_net->forward(x.to(gpu())), y.to(gpu()));
    expect_close("loss at step " + std::to_string(step), lg, lc.detach());
    cpu_opt.zero_grad();
    gpu_opt.zero_grad();
    lc.backward();
    lg.backward();
    for (size_t i = 0; i < gpu_params.size(); ++i) {
      INFO("parameter " << i);
      CHECK(gpu_params[i].grad().defined() == cpu_params[i].grad().defined());
      CHECK(gpu_params[i].grad().defined() == gpu_params[i].requires_grad());
    }
    cpu_opt.step();
    gpu_opt.step();
  }
  for (size_t i = 0; i < gpu_params.size(); ++i)
    expect_close("parameter " + std::to_string(i) + " after two steps", gpu_params[i].detach(), cpu_params[i].detach());
  // Frozen statistics: unchanged on the GPU after two training-mode forward passes.
  expect_close("running mean unchanged", buffer(*gpu_net, "1.running_mean"), mean_before);
}
