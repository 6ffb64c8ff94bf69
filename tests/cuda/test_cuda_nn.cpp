// [cuda] softmax / log_softmax, layer norm, batch norm, pooling, dropout, embedding: each against the
// CPU, forward and backward, contiguous and non-contiguous (tests/cuda/op_harness.hpp).
#include "op_harness.hpp"

using namespace graft;
using cuda_test::check_op;
using cuda_test::expect_close;
using cuda_test::expect_exact;
using cuda_test::gpu;
using cuda_test::randn_leaf;

TEST_CASE("CUDA softmax and log_softmax over the last and a middle dim", "[cuda]") {
  // Rows longer than a warp (77) and strided rows (dim 1 of [6, 77, 4]).
  for (int64_t dim : {int64_t(1), int64_t(2)})
    for (bool log : {false, true}) {
      const std::string name = std::string(log ? "log_softmax" : "softmax") + " over dim " + std::to_string(dim);
      check_op(name, [=](const auto& in) { return log ? log_softmax(in[0], dim) : softmax(in[0], dim); },
               {randn_leaf(dim == 2 ? Shape{6, 4, 77} : Shape{6, 77, 4}, 41 + dim)});
    }
  check_op("softmax float64", [](const auto& in) { return softmax(in[0], -1); },
           {randn_leaf({5, 130}, 45, 1.0, DType::Float64)});
}

TEST_CASE("CUDA layer_norm over 768 and over the last two dims", "[cuda]") {
  check_op("layer_norm over 768, affine",
           [](const auto& in) { return layer_norm(in[0], {768}, in[1], in[2]); },
           {randn_leaf({5, 7, 768}, 51), randn_leaf({768}, 52), randn_leaf({768}, 53)});
  check_op("layer_norm over the last two dims, no affine", [](const auto& in) { return layer_norm(in[0], {7, 33}); },
           {randn_leaf({5, 7, 33}, 54)});
  check_op("layer_norm float64", [](const auto& in) { return layer_norm(in[0], {40}, in[1], in[2]); },
           {randn_leaf({9, 40}, 55, 1.0, DType::Float64), randn_leaf({40}, 56, 1.0, DType::Float64),
            randn_leaf({40}, 57, 1.0, DType::Float64)});
}

TEST_CASE("CUDA batch_norm: training statistics, running statistics, eval", "[cuda]") {
  Generator g(61);
  const Tensor x = randn_leaf({6, 5, 7, 9}, 62, 3.0), w = randn_leaf({5}, 63), b = randn_leaf({5}, 64);
  Tensor rmg = zeros({5}).to(gpu()), rvg = ones({5}).to(gpu()), rmc = zeros({5}), rvc = ones({5});
  // The harness runs the GPU op twice (two layouts): each updates the running statistics once, so
  // the CPU side is run twice too before comparing them.
  check_op("batch_norm training (forward and backward to x, weight, bias)",
           [&](const auto& in) {
             const bool on_gpu = in[0].device().is_cuda();
             return batch_norm(in[0], on_gpu ? rmg : rmc, on_gpu ? rvg : rvc, in[1], in[2], true, 0.1, 1e-5);
           },
           {x, w, b});
  {
    NoGradGuard ng;
    (void)batch_norm(x.detach(), rmc, rvc, w.detach(), b.detach(), true, 0.1, 1e-5);
  }
  expect_close("running mean after two updates", rmg, rmc);
  expect_close("running var after two updates", rvg, rvc);
  check_op("batch_norm eval (running statistics)",
           [&](const auto& in) {
             const bool on_gpu = in[0].device().is_cuda();
             return batch_norm(in[0], on_gpu ? rmg : rmc, on_gpu ? rvg : rvc, in[1], in[2], false, 0.1, 1e-5);
           },
           {x, w, b});
}

TEST_CASE("CUDA pooling: max, average, adaptive average", "[cuda]") {
  const Tensor x = randn_leaf({2, 3, 11, 10}, 71);
  // Max pooling's backward bit for bit: the CPU's fast kernel keeps the reference's order.
  check_op("max_pool2d 3x3 s2 p1", [](const auto& in) { return max_pool2d(in[0], {3, 3}, {2, 2}, {1, 1}); }, {x},
           cuda_test::bit_for_bit());
  check_op("avg_pool2d 3x3 s2 p1 ceil, padding not counted",
           [](const auto& in) { return avg_pool2d(in[0], {3, 3}, {2, 2}, {1, 1}, true, false); }, {x});
  check_op("adaptive_avg_pool2d to 1x1", [](const auto& in) { return adaptive_avg_pool2d(in[0], {1, 1}); }, {x});
  check_op("adaptive_avg_pool2d to 3x2", [](const auto& in) { return adaptive_avg_pool2d(in[0], {3, 2}); }, {x});
}

TEST_CASE("CUDA dropout: rate, scale, reproducible by seed, backward = dout * mask", "[cuda]") {
  const int64_t n = 1 << 20;
  Tensor ones_g = ones({n}).to(gpu()).set_requires_grad();
  Generator g1(42), g2(42);
  Tensor d1 = dropout(ones_g, 0.3, true, g1), d2 = dropout(ones_g.detach(), 0.3, true, g2);
  Tensor d3 = dropout(ones_g.detach(), 0.3, true, g1);
  const std::vector<double> v1 = d1.cpu().to_vector();
  int64_t kept = 0;
  bool scaled = true;
  for (double v : v1) {
    if (v != 0.0) ++kept;
    scaled = scaled && (v == 0.0 || v == double(float(1.0 / 0.7)));
  }
  const double frac = double(kept) / double(n);  // 0.7 +- 5 standard deviations (0.00045 each)
  INFO("kept " << frac << " of " << n);
  CHECK(std::abs(frac - 0.7) < 0.0023);
  CHECK(scaled);
  CHECK(v1 == d2.cpu().to_vector());  // same seed, same mask
  CHECK(v1 != d3.cpu().to_vector());  // the next call, another
  Generator gu(43);
  Tensor up = randn({n}, DType::Float32, gu);
  sum(d1 * up.to(gpu())).backward();
  expect_exact("dropout backward = dout * mask", ones_g.grad(), up * d1.cpu());
}

TEST_CASE("CUDA embedding: lookup, backward with repeated tokens and padding, bad index", "[cuda]") {
  std::vector<int64_t> ids;
  for (int i = 0; i < 45; ++i) ids.push_back((i * 7) % 20);
  const Tensor idx = from_vector(ids, {5, 9});
  // The backward bit for bit: the same order of additions as the CPU.
  check_op("embedding (padding_idx 3)", [&](const auto& in) { return embedding(idx.to(in[0].device()), in[0], 3); },
           {randn_leaf({20, 33}, 81)}, cuda_test::bit_for_bit());
  ids[17] = 20;
  std::string what;
  try {
    (void)embedding(from_vector(ids, {5, 9}).to(gpu()), randn({20, 33}).to(gpu()));
  } catch (const std::exception& e) {
    what = e.what();
  }
  INFO(what);
  CHECK(what.find("index 20 at position [1, 8] is out of range") != std::string::npos);
}
