// [cuda] losses (cross-entropy, BCE with logits, MSE) and the fused optimizer updates against the CPU.
#include <memory>

#include "graft/optim/adam.hpp"
#include "op_harness.hpp"

using namespace graft;
using cuda_test::check_op;
using cuda_test::expect_close;
using cuda_test::expect_exact;
using cuda_test::gpu;
using cuda_test::randn_leaf;

TEST_CASE("CUDA cross_entropy: weight, label smoothing, ignore_index, [N, C, S], bad target", "[cuda]") {
  std::vector<int64_t> tv;
  for (int i = 0; i < 37; ++i) tv.push_back(i % 5 == 0 ? -100 : (i * 7) % 50);
  const Tensor target = from_vector(tv, {37});
  Generator g(91);
  const Tensor cw = rand({50}, DType::Float32, g) + 0.5;
  check_op("cross_entropy (weight, smoothing 0.1, ignore_index -100), mean",
           [&](const auto& in) {
             const Device d = in[0].device();
             return cross_entropy(in[0], target.to(d), Reduction::Mean, -100, 0.1, cw.to(d));
           },
           {randn_leaf({37, 50}, 92)});
  const Tensor t3 = randint(0, 9, {4, 6}, DType::Int64, g);
  check_op("cross_entropy [N, C, S], no reduction",
           [&](const auto& in) { return cross_entropy(in[0], t3.to(in[0].device()), Reduction::None); },
           {randn_leaf({4, 9, 6}, 93)});
  std::vector<int64_t> bad = tv;
  bad[12] = 50;
  std::string what;
  try {
    (void)cross_entropy(randn({37, 50}).to(gpu()), from_vector(bad, {37}).to(gpu()));
  } catch (const std::exception& e) {
    what = e.what();
  }
  INFO(what);
  CHECK(what.find("target 50 at position [12] is out of range") != std::string::npos);
}

TEST_CASE("CUDA binary_cross_entropy_with_logits and mse_loss", "[cuda]") {
  Generator g(101);
  const Tensor t = rand({40, 3}, DType::Float32, g), pw = rand({3}, DType::Float32, g) + 0.5;
  check_op("bce_with_logits (pos_weight), mean",
           [&](const auto& in) {
             const Device d = in[0].device();
             return binary_cross_entropy_with_logits(in[0], t.to(d), Reduction::Mean, pw.to(d));
           },
           {randn_leaf({40, 3}, 102, 4.0)});
  check_op("mse_loss, mean", [&](const auto& in) { return mse_loss(in[0], t.to(in[0].device())); },
           {randn_leaf({40, 3}, 103)});
  check_op("mse_loss, sum", [&](const auto& in) { return mse_loss(in[0], t.to(in[0].device()), Reduction::Sum); },
           {randn_leaf({40, 3}, 104)});
}

TEST_CASE("CUDA fused SGD (momentum, Nesterov, weight decay) and AdamW: 3 steps bit for bit", "[cuda]") {
  Generator g(111);
  Tensor p0 = randn({1000, 3}, DType::Float32, g), g0 = randn({1000, 3}, DType::Float32, g);
  for (int which = 0; which < 2; ++which) {
    Tensor pg = p0.to(gpu()).set_requires_grad(), pc = p0.clone().set_requires_grad();
    std::unique_ptr<optim::Optimizer> og, oc;
    if (which == 0) {
      og = std::make_unique<optim::SGD>(std::vector<Tensor>{pg}, 0.1, 0.9, 0.0, 1e-2, true);
      oc = std::make_unique<optim::SGD>(std::vector<Tensor>{pc}, 0.1, 0.9, 0.0, 1e-2, true);
    } else {
      og = std::make_unique<optim::AdamW>(std::vector<Tensor>{pg}, 1e-2);
      oc = std::make_unique<optim::AdamW>(std::vector<Tensor>{pc}, 1e-2);
    }
    for (int step = 0; step < 3; ++step) {
      pg.set_grad(g0.to(gpu()) * double(step + 1));
      pc.set_grad(g0 * double(step + 1));
      og->step();
      oc->step();
    }
    expect_exact(which == 0 ? "SGD nesterov, 3 steps" : "AdamW, 3 steps", pg.detach(), pc.detach());
  }
}
