// [cuda] copies, dtype conversion, elementwise ops (forward and backward), comparisons and where,
// sum; the runtime (allocator, streams, events, staged copies) of tests/cuda/cuda_backend.cu.
#include "op_harness.hpp"

int graft_test_cuda_runtime();  // cuda_backend.cu: returns its number of failures (each printed)

using namespace graft;
using cuda_test::check_op;
using cuda_test::expect_close;
using cuda_test::expect_exact;
using cuda_test::gpu;
using cuda_test::randn_leaf;

TEST_CASE("CUDA runtime: caching allocator, streams, events, staged copies, Philox", "[cuda]") {
  CHECK(graft_test_cuda_runtime() == 0);
}

TEST_CASE("CUDA copies and dtype conversion", "[cuda]") {
  Generator g(7);
  Tensor a = randn({33, 17}, DType::Float32, g);
  expect_exact("copy round trip", a.to(gpu()), a);
  expect_exact("transposed copy", a.to(gpu()).transpose(0, 1).contiguous(), a.transpose(0, 1).contiguous());
  expect_exact("float32 -> float64", a.to(gpu()).to(DType::Float64), a.to(DType::Float64));
  Tensor i = randint(-50, 50, {5, 9}, DType::Int64, g);
  expect_exact("int64 -> float32", i.to(gpu()).to(DType::Float32), i.to(DType::Float32));
  expect_exact("copy_ of a broadcast operand into a strided view",
               [&] {
                 Tensor d = zeros({9, 5}).to(gpu());
                 d.transpose(0, 1).copy_(a.slice(1, 0, 9).slice(0, 0, 1).to(gpu()));
                 return d;
               }(),
               [&] {
                 Tensor d = zeros({9, 5});
                 d.transpose(0, 1).copy_(a.slice(1, 0, 9).slice(0, 0, 1));
                 return d;
               }());
}

TEST_CASE("CUDA binary elementwise with broadcast, forward and backward", "[cuda]") {
  const Tensor a = randn_leaf({33, 17}, 1), b = randn_leaf({17}, 2), c = randn_leaf({33, 1}, 3);
  check_op("a + b (broadcast row)", [](const auto& in) { return in[0] + in[1]; }, {a, b});
  check_op("a * c (broadcast column)", [](const auto& in) { return in[0] * in[1]; }, {a, c});
  check_op("a - b", [](const auto& in) { return in[0] - in[1]; }, {a, b});
  check_op("a / (|c| + 1)", [](const auto& in) { return in[0] / (abs(in[1]) + 1.0); }, {a, c});
  check_op("a * 2 + 1 (scalars)", [](const auto& in) { return in[0] * 2.0 + 1.0; }, {a});
  const Tensor d = randn_leaf({7, 5}, 4, 1.0, DType::Float64), e = randn_leaf({5}, 5, 1.0, DType::Float64);
  check_op("float64 a * b", [](const auto& in) { return in[0] * in[1]; }, {d, e});
}

TEST_CASE("CUDA elementwise: float4 paths, their tails, and unaligned views that cannot take them", "[cuda]") {
  // 4099 elements: float4 steps and a tail of 3. Views starting one element in are contiguous but
  // not 16-byte aligned, so they take the element-wise kernels; the results must not differ.
  const Tensor a = randn_leaf({4099}, 12), b = randn_leaf({4099}, 13);
  check_op("a * b (float4)", [](const auto& in) { return in[0] * in[1]; }, {a, b});
  check_op("a * 3 (float4, broadcast scalar)", [](const auto& in) { return in[0] * 3.0; }, {a});
  check_op("silu(a) (float4, forward and backward)", [](const auto& in) { return silu(in[0]); }, {a});
  const Tensor wide = randn_leaf({4100}, 14);
  check_op("unaligned views: a[1:] + b[1:], gelu(a[1:])",
           [](const auto& in) {
             const Tensor x = in[0].slice(0, 1, 4100), y = in[1].slice(0, 1, 4100);
             return gelu(x) + x * y;
           },
           {wide, randn_leaf({4100}, 15)});
}

TEST_CASE("CUDA unary elementwise, forward and backward", "[cuda]") {
  const Tensor a = randn_leaf({33, 17}, 11, 2.0);
  const std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>> ops = {
      {"exp", [](const Tensor& x) { return exp(x); }},
      {"tanh", [](const Tensor& x) { return tanh(x); }},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }},
      {"relu", [](const Tensor& x) { return relu(x); }},
      {"gelu", [](const Tensor& x) { return gelu(x); }},
      {"silu", [](const Tensor& x) { return silu(x); }},
      {"relu6", [](const Tensor& x) { return relu6(x * 4.0); }},
      {"hardswish", [](const Tensor& x) { return hardswish(x * 2.0); }},
      {"abs", [](const Tensor& x) { return abs(x); }},
      {"log(|x| + 0.1)", [](const Tensor& x) { return log(abs(x) + 0.1); }},
      {"sqrt(|x| + 0.1)", [](const Tensor& x) { return sqrt(abs(x) + 0.1); }},
  };
  for (const auto& [name, fn] : ops) check_op(name, [fn = fn](const auto& in) { return fn(in[0]); }, {a});
}

TEST_CASE("CUDA comparisons and where", "[cuda]") {
  Generator g(21);
  Tensor ca = randn({7, 5}, DType::Float32, g), cb = randn({5}, DType::Float32, g);
  expect_exact("a > b (broadcast)", gt(ca.to(gpu()), cb.to(gpu())), gt(ca, cb));
  Tensor ia = randint(0, 4, {9}, DType::Int64, g), ib = randint(0, 4, {9}, DType::Int64, g);
  expect_exact("int64 a == b", eq(ia.to(gpu()), ib.to(gpu())), eq(ia, ib));
  const Tensor x = randn_leaf({7, 5}, 22), y = randn_leaf({5}, 23);
  check_op("where(x > y, x, y)", [](const auto& in) { return where(gt(in[0], in[1]), in[0], in[1]); }, {x, y});
}

TEST_CASE("CUDA sum: whole tensors, rows, strided dims, long reductions", "[cuda]") {
  check_op("sum over dim 0", [](const auto& in) { return sum(in[0], {0}); }, {randn_leaf({33, 17}, 31)});
  check_op("sum of all", [](const auto& in) { return sum(in[0]); }, {randn_leaf({33, 17}, 32)});
  // Long reductions take the block and two-pass kernels.
  check_op("sum of 300000 (chunks, second pass)", [](const auto& in) { return sum(in[0]); },
           {randn_leaf({300000}, 33)});
  check_op("sum of rows of 5000", [](const auto& in) { return sum(in[0], {1}); }, {randn_leaf({7, 5000}, 34)});
  check_op("sum over a strided middle dim", [](const auto& in) { return sum(in[0].transpose(0, 2), {1}); },
           {randn_leaf({6, 300, 11}, 35)});
  check_op("sum float64", [](const auto& in) { return sum(in[0]); }, {randn_leaf({300000}, 36, 1.0, DType::Float64)});
  check_op("mean over dims 1 and 2, keepdim", [](const auto& in) { return mean(in[0], {1, 2}, true); },
           {randn_leaf({4, 9, 13}, 37)});
}

TEST_CASE("CUDA: mixing devices is refused, both devices named", "[cuda]") {
  bool named = false;
  try {
    (void)(ones({3}).to(gpu()) + ones({3}));
  } catch (const std::exception& e) {
    const std::string w = e.what();
    named = w.find("cuda:0") != std::string::npos && w.find("cpu") != std::string::npos;
    INFO(w);
  }
  CHECK(named);
}
