// [cuda] the optional vendor backends of kernels/graft/kernels/cuda/vendor.cuh: with "cublas" selected,
// matmul and linear (tails, transposed views, batches, broadcast batches, float64, every activation,
// backward) against the CPU; with "cudnn" selected, conv2d forward and backward (3x3 s1 p1, 7x7 s2 p3,
// 1x1 s2, groups 2, depthwise, float64) against the CPU. Each case also checks through
// graft::cuda_lib_calls that the library really ran, so a silent fall back to Graft's kernels fails.
// The selection API: names, bad names, the default restored after each case (SelectLibs).
//
// Tolerances: the float32 / float64 ones of tests/harness.hpp. cuBLAS in CUBLAS_COMPUTE_32F and cuDNN
// in CUDNN_FMA_MATH compute exact float32 products; their sums differ from the CPU's by order only,
// like Graft's kernels. TF32 (set_float32_matmul_precision("high")) is checked on dyadic inputs
// (k / 8, |k| <= 40: 6 significant bits, exact in TF32 whatever cuBLAS's rounding), so no TF32
// tolerance is needed.
#include <array>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "graft/core/cuda_libs.hpp"
#include "graft/core/precision.hpp"
#include "op_harness.hpp"

using namespace graft;
using cuda_test::check_op;
using cuda_test::expect_close;
using cuda_test::gpu;
using cuda_test::randn_leaf;

namespace vendor_cuda_test {

// Selects `names` for the scope; restores the previous selection after.
struct SelectLibs {
  explicit SelectLibs(const std::vector<std::string>& names) : saved(cuda_libs()) { set_cuda_libs(names); }
  ~SelectLibs() { set_cuda_libs(saved); }
  std::vector<std::string> saved;
};

struct PrecisionScope {
  explicit PrecisionScope(const std::string& p) : saved(get_float32_matmul_precision()) {
    set_float32_matmul_precision(p);
  }
  ~PrecisionScope() { set_float32_matmul_precision(saved); }
  std::string saved;
};

// Runs f and requires that `lib` ran at least once during it.
void expect_library_ran(CudaLib lib, const std::string& what, const std::function<void()>& f) {
  const uint64_t before = cuda_lib_calls(lib);
  f();
  INFO(what << ": " << detail::cuda_lib_name(lib) << " calls before " << before << ", after " << cuda_lib_calls(lib));
  CHECK(cuda_lib_calls(lib) > before);
}

// k / 8 with k = round(8 randn) clamped to [-40, 40].
Tensor dyadic(const Shape& s, uint64_t seed) {
  Generator g(seed);
  std::vector<double> v = randn(s, DType::Float64, g).to_vector();
  for (double& x : v) x = std::fmax(-40.0, std::fmin(40.0, std::nearbyint(8.0 * x))) / 8.0;
  return from_vector(v, s, DType::Float32);
}

struct ConvCase {
  const char* name;
  Shape x, w;
  std::array<int64_t, 2> stride, padding;
  int64_t groups;
  bool bias;
};

// check_op on conv2d(x, w scale, b scale), the weights scaled so the outputs are of order 1
// (as test_cuda_conv.cpp does).
void check_conv(const ConvCase& c, DType dt, uint64_t seed) {
  const Conv2dGeometry g = conv2d_geometry(c.x, c.w, Conv2dParams{c.stride, c.padding, {1, 1}, c.groups});
  const double scale = 1.0 / std::sqrt(double(g.N * g.L));
  const Tensor x = randn_leaf(c.x, seed, 1.0, dt);
  const Tensor w = randn_leaf(c.w, seed + 1, std::sqrt(double(g.N * g.L) / double(g.R)), dt);
  const Tensor b = c.bias ? randn_leaf({g.O}, seed + 2, 1.0, dt) : Tensor();
  std::ostringstream what;
  what << c.name << ": x " << c.x << " w " << c.w << " groups " << c.groups << (c.bias ? ", bias" : ", no bias")
       << (dt == DType::Float64 ? ", float64" : "");
  const ConvCase cc = c;
  expect_library_ran(CudaLib::Cudnn, what.str(), [&] {
    check_op(
        what.str(),
        [cc, scale](const std::vector<Tensor>& in) {
          const Tensor bias = in[2].defined() ? in[2] * scale : Tensor();
          return conv2d(in[0], in[1] * scale, bias, cc.stride, cc.padding, {1, 1}, cc.groups);
        },
        {x, w, b});
  });
}

const std::vector<ConvCase> kConvCases = {
    {"3x3 stride 1 pad 1", {2, 13, 11, 9}, {17, 13, 3, 3}, {1, 1}, {1, 1}, 1, true},
    {"7x7 stride 2 pad 3 (ResNet stem)", {1, 3, 29, 27}, {16, 3, 7, 7}, {2, 2}, {3, 3}, 1, false},
    {"1x1 stride 2 (ResNet downsample)", {2, 24, 15, 14}, {40, 24, 1, 1}, {2, 2}, {0, 0}, 1, true},
    {"3x3 groups 2", {2, 12, 10, 11}, {18, 6, 3, 3}, {1, 1}, {1, 1}, 2, true},
    {"3x3 depthwise stride 2", {2, 16, 13, 12}, {16, 1, 3, 3}, {2, 2}, {1, 1}, 16, true},
};

}  // namespace vendor_cuda_test
namespace vt = vendor_cuda_test;

TEST_CASE("cuda libs: selection by name, bad names throw, the default is Graft's kernels", "[cuda]") {
  const std::vector<std::string> saved = cuda_libs();
  {
    const vt::SelectLibs none(std::vector<std::string>{});
    CHECK(cuda_libs().empty());
    CHECK_FALSE(cuda_lib_selected(CudaLib::Cublas));
    // Nothing selected: Graft's kernels run, cuBLAS does not.
    const uint64_t before = cuda_lib_calls(CudaLib::Cublas);
    const Tensor a = randn_leaf({9, 7}, 801).detach(), b = randn_leaf({7, 5}, 802).detach();
    expect_close("matmul, no library selected", matmul(a.to(gpu()), b.to(gpu())), matmul(a, b));
    CHECK(cuda_lib_calls(CudaLib::Cublas) == before);
  }
  {
    const vt::SelectLibs cublas({"cublas"});
    CHECK(cuda_libs() == std::vector<std::string>{"cublas"});
    cuda_test::expect_throws_with([] { set_cuda_libs({"cublas", "mkl"}); }, "\"mkl\"");
    CHECK(cuda_libs() == std::vector<std::string>{"cublas"});  // a failed call changes nothing
  }
  if (cuda_lib_available(CudaLib::Cudnn)) {
    const vt::SelectLibs both({"cudnn", "cublas"});
    CHECK(cuda_libs() == std::vector<std::string>{"cublas", "cudnn"});
  } else {
    cuda_test::expect_throws_with([] { set_cuda_libs({"cudnn"}); }, "no cudnn");
  }
  CHECK(cuda_libs() == saved);
}

TEST_CASE("cuBLAS matmul: tails, transposed views, batches, broadcast, float64, backward", "[cuda]") {
  const vt::SelectLibs cublas({"cublas"});
  auto mm = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
  vt::expect_library_ran(CudaLib::Cublas, "2-D", [&] {
    check_op("cublas 70x45x131", mm, {randn_leaf({70, 45}, 811), randn_leaf({45, 131}, 812)});
  });
  vt::expect_library_ran(CudaLib::Cublas, "transposed", [&] {
    check_op("cublas transposed views 33x19x27", [](const auto& in) { return matmul(in[0].t(), in[1].t()); },
             {randn_leaf({19, 33}, 813), randn_leaf({27, 19}, 814)});
  });
  vt::expect_library_ran(CudaLib::Cublas, "batched", [&] {
    check_op("cublas batched [3, 2] x 21x17x29", mm, {randn_leaf({3, 2, 21, 17}, 815), randn_leaf({3, 2, 17, 29}, 816)});
  });
  vt::expect_library_ran(CudaLib::Cublas, "broadcast", [&] {
    check_op("cublas broadcast a [1] over b [4]", mm, {randn_leaf({1, 13, 11}, 817), randn_leaf({4, 11, 6}, 818)});
  });
  // A broadcast batch dim between two real ones: no single batch stride, Graft's kernel (still right).
  check_op("broadcast [2, 1] x [1, 3] (Graft's kernel)", mm,
           {randn_leaf({2, 1, 5, 7}, 819), randn_leaf({1, 3, 7, 4}, 820)});
  vt::expect_library_ran(CudaLib::Cublas, "vector", [&] {
    check_op("cublas matrix @ vector", mm, {randn_leaf({17, 23}, 821), randn_leaf({23}, 822)});
  });
  const DType f64 = DType::Float64;
  vt::expect_library_ran(CudaLib::Cublas, "float64", [&] {
    check_op("cublas float64 transposed", [](const auto& in) { return matmul(in[0].t(), in[1]); },
             {randn_leaf({31, 20}, 823, 1.0, f64), randn_leaf({31, 9}, 824, 1.0, f64)});
  });
  // K = 0: Graft's kernel (out = 0).
  expect_close("K = 0", matmul(zeros({4, 0}).to(gpu()), zeros({0, 5}).to(gpu())), zeros({4, 5}));
  // TF32 on vt::dyadic inputs: exact in TF32, so within the float32 tolerance of the CPU.
  {
    const vt::PrecisionScope high("high");
    const Tensor a = vt::dyadic({67, 40}, 825), b = vt::dyadic({40, 35}, 826);
    vt::expect_library_ran(CudaLib::Cublas, "tf32", [&] {
      expect_close("cublas TF32, vt::dyadic inputs", matmul(a.to(gpu()), b.to(gpu())), matmul(a, b));
    });
  }
}

TEST_CASE("cuBLAS linear: bias and every activation after the GEMM, forward and backward", "[cuda]") {
  const vt::SelectLibs cublas({"cublas"});
  for (const Activation act : {Activation::None, Activation::Relu, Activation::Relu6, Activation::Silu,
                               Activation::GeluTanh, Activation::Gelu})
    for (const bool with_bias : {true, false}) {
      const std::string what = std::string("cublas linear, ") + activation_name(act) + (with_bias ? ", bias" : "");
      const Tensor x = randn_leaf({2, 19, 45}, 831), w = randn_leaf({37, 45}, 832, 0.5),
                   b = with_bias ? randn_leaf({37}, 833) : Tensor();
      auto fn = [act](const auto& in) { return linear(in[0], in[1], in[2], act); };
      cuda_test::OpOptions forward_only;
      forward_only.backward = false;
      vt::expect_library_ran(CudaLib::Cublas, what, [&] {
        check_op(what + " (no grad)", fn, {x.detach(), w.detach(), with_bias ? b.detach() : Tensor()}, forward_only);
        check_op(what + " (recorded)", fn, {x, w, b});
      });
    }
  const DType f64 = DType::Float64;
  vt::expect_library_ran(CudaLib::Cublas, "float64 linear", [&] {
    check_op("cublas float64 linear, gelu, bias",
             [](const auto& in) { return linear(in[0], in[1], in[2], Activation::Gelu); },
             {randn_leaf({23, 45}, 834, 1.0, f64), randn_leaf({11, 45}, 835, 1.0, f64), randn_leaf({11}, 836, 1.0, f64)});
  });
}

TEST_CASE("cuDNN conv2d: 3x3, 7x7 stride 2, 1x1 stride 2, groups, depthwise, forward and backward", "[cuda]") {
  if (!cuda_lib_available(CudaLib::Cudnn)) {
    cuda_test::expect_throws_with([] { set_cuda_libs({"cudnn"}); }, "no cudnn");
    return;
  }
  const vt::SelectLibs cudnn({"cudnn"});
  uint64_t seed = 850;
  for (const vt::ConvCase& c : vt::kConvCases) vt::check_conv(c, DType::Float32, seed += 3);
  vt::check_conv(vt::kConvCases[0], DType::Float64, seed += 3);
  vt::check_conv(vt::kConvCases[3], DType::Float64, seed += 3);
}
