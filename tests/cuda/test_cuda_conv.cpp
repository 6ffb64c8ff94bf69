// [cuda] conv2d, forward and backward (kernels/graft/kernels/cuda/conv2d.cuh) against the CPU: the
// implicit GEMMs on ResNet-like layers (7x7 stride 2, 3x3 stride 1 and 2, 1x1 stride 1 and 2) and on
// tails (odd channel counts, spatial sizes no tile divides, more than one 64-row tile, split-K over
// several chunks), dilation, groups, strides above the kernel size; the depthwise kernels (3x3 and
// 5x5 at stride 2 as in EfficientNet-Lite, a channel multiplier, one input channel); with and without
// bias, batch 1 and 3, float32 and float64, gradients of x, weight and bias, and a frozen x (only
// dweight and dbias). Then the slots called directly with poisoned outputs and pre-filled dweight /
// dbias (the backward accumulates), and bad input; bfloat16 and float16 against float32 on the same values.
//
// Scale. The weight and the bias enter the op as w * c and b * c with c = 1 / sqrt(N OH OW), the leaves
// w and b drawn with standard deviations sqrt(N OH OW / (Cg KH KW)) and 1. So the effective weight has
// the 1 / sqrt(Cg KH KW) of an initialized network, the outputs and dx are O(1), and the gradients of
// the leaves, c times sums of N OH OW terms, are O(1) too, as with a mean loss: the float32 rounding
// of those sums then stays far below tests/harness.hpp's atol. The tolerances are the harness's.
#include <cmath>

#include "op_harness.hpp"

using namespace graft;
using cuda_test::check_op;
using cuda_test::expect_close;
using cuda_test::gpu;
using cuda_test::randn_leaf;

namespace conv_cuda_test {

struct ConvCase {
  const char* name;
  Shape x, w;
  std::array<int64_t, 2> stride, padding, dilation;
  int64_t groups;
  bool bias;
};

Conv2dParams params(const ConvCase& c) { return {c.stride, c.padding, c.dilation, c.groups}; }

std::string describe(const ConvCase& c) {
  std::ostringstream os;
  os << c.name << ": x " << c.x << " w " << c.w << " stride {" << c.stride[0] << ", " << c.stride[1] << "} padding {"
     << c.padding[0] << ", " << c.padding[1] << "} dilation {" << c.dilation[0] << ", " << c.dilation[1] << "} groups "
     << c.groups << (c.bias ? ", bias" : ", no bias");
  return os.str();
}

// check_op on conv2d(x, w c, b c) (see "Scale" above). frozen_x: x does not require grad.
void check_conv(const ConvCase& c, DType dt, uint64_t seed, bool frozen_x = false) {
  const Conv2dGeometry g = conv2d_geometry(c.x, c.w, params(c));
  const double scale = 1.0 / std::sqrt(double(g.N * g.L));
  Tensor x = randn_leaf(c.x, seed, 1.0, dt);
  if (frozen_x) x = x.detach();
  const Tensor w = randn_leaf(c.w, seed + 1, std::sqrt(double(g.N * g.L) / double(g.R)), dt);
  const Tensor b = c.bias ? randn_leaf({g.O}, seed + 2, 1.0, dt) : Tensor();
  const ConvCase cc = c;
  check_op(
      describe(c) + (dt == DType::Float64 ? ", float64" : "") + (frozen_x ? ", frozen x" : ""),
      [cc, scale](const std::vector<Tensor>& in) {
        const Tensor bias = in[2].defined() ? in[2] * scale : Tensor();
        return conv2d(in[0], in[1] * scale, bias, cc.stride, cc.padding, cc.dilation, cc.groups);
      },
      {x, w, b});
}

// General (implicit GEMM) convolutions. Sizes: 64-row tiles of O, 64-column tiles of N OH OW and 16-deep
// steps of Cg KH KW, none of which these divide.
const std::vector<ConvCase> kGemmCases = {
    {"ResNet stem 7x7 stride 2 pad 3", {1, 3, 37, 35}, {16, 3, 7, 7}, {2, 2}, {3, 3}, {1, 1}, 1, false},
    {"3x3 stride 1 pad 1, batch 3", {3, 17, 15, 13}, {20, 17, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, true},
    {"3x3 stride 2 pad 1", {1, 16, 17, 18}, {33, 16, 3, 3}, {2, 2}, {1, 1}, {1, 1}, 1, false},
    {"1x1 stride 1, 65 outputs from 70 channels", {3, 70, 9, 7}, {65, 70, 1, 1}, {1, 1}, {0, 0}, {1, 1}, 1, true},
    {"1x1 stride 2 (ResNet downsample)", {2, 24, 15, 14}, {40, 24, 1, 1}, {2, 2}, {0, 0}, {1, 1}, 1, false},
    {"3 channels to 5, 3x3 pad 1, batch 3", {3, 3, 11, 9}, {5, 3, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, true},
    {"dilation 2, 5 channels to 17", {1, 5, 19, 17}, {17, 5, 3, 3}, {1, 1}, {2, 2}, {2, 2}, 1, true},
    {"groups 2, 3x3 pad 1", {2, 10, 12, 13}, {14, 5, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 2, true},
    {"groups 2, 3x2, stride (2, 1), padding (1, 0)", {1, 6, 13, 11}, {10, 3, 3, 2}, {2, 1}, {1, 0}, {1, 1}, 2, false},
    {"stride 3 above the 2x2 kernel (phases no tap reaches)", {1, 4, 11, 10}, {6, 4, 2, 2}, {3, 3}, {0, 0}, {1, 1}, 1,
     true},
    {"130 outputs from 37 channels: three row tiles", {1, 37, 30, 29}, {130, 37, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1,
     false},
    {"many split-K chunks of the weight gradient", {3, 8, 40, 38}, {12, 8, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, true},
};

// Depthwise (Cg = 1): the direct kernels.
const std::vector<ConvCase> kDepthwiseCases = {
    {"depthwise 3x3 stride 1 pad 1", {2, 17, 14, 15}, {17, 1, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 17, true},
    {"depthwise 3x3 stride 2 pad 1, batch 3", {3, 24, 15, 16}, {24, 1, 3, 3}, {2, 2}, {1, 1}, {1, 1}, 24, false},
    {"depthwise 5x5 stride 2 pad 2 (EfficientNet-Lite)", {1, 40, 17, 19}, {40, 1, 5, 5}, {2, 2}, {2, 2}, {1, 1}, 40,
     true},
    {"depthwise 5x5 stride 2 no padding (TF same, padded before)", {1, 11, 16, 15}, {11, 1, 5, 5}, {2, 2}, {0, 0},
     {1, 1}, 11, false},
    {"depthwise multiplier 2, dilation 2", {1, 6, 13, 12}, {12, 1, 3, 3}, {1, 1}, {2, 2}, {2, 2}, 6, true},
    {"one input channel, 8 outputs (Cg = 1, groups 1)", {2, 1, 12, 13}, {8, 1, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, true},
};


TEST_CASE("CUDA conv2d implicit GEMM: ResNet layers, tails, dilation, groups", "[cuda]") {
  uint64_t seed = 100;
  for (const ConvCase& c : kGemmCases) check_conv(c, DType::Float32, seed += 3);
}

TEST_CASE("CUDA conv2d depthwise: 3x3 and 5x5 at stride 1 and 2, multiplier, one channel", "[cuda]") {
  uint64_t seed = 200;
  for (const ConvCase& c : kDepthwiseCases) check_conv(c, DType::Float32, seed += 3);
}

TEST_CASE("CUDA conv2d float64", "[cuda]") {
  const std::vector<ConvCase> cases = {
      {"7x7 stride 2 pad 3", {1, 3, 15, 13}, {6, 3, 7, 7}, {2, 2}, {3, 3}, {1, 1}, 1, true},
      {"3x3 stride 2, groups 2, dilation 2", {2, 6, 13, 12}, {10, 3, 3, 3}, {2, 2}, {2, 2}, {2, 2}, 2, true},
      {"1x1 stride 1", {3, 9, 5, 7}, {70, 9, 1, 1}, {1, 1}, {0, 0}, {1, 1}, 1, false},
      {"depthwise 5x5 stride 2 pad 2", {2, 5, 13, 11}, {5, 1, 5, 5}, {2, 2}, {2, 2}, {1, 1}, 5, true},
      {"depthwise 3x3 stride 2 multiplier 2", {1, 3, 12, 11}, {6, 1, 3, 3}, {2, 2}, {1, 1}, {1, 1}, 3, false},
  };
  uint64_t seed = 300;
  for (const ConvCase& c : cases) check_conv(c, DType::Float64, seed += 3);
}

// bfloat16 / float16 (the tensor-core kernels; depthwise ones widened by the op) against the float32 CPU
// op on the same values: the leaves are drawn at the "Scale" above, rounded to dt; the CPU computes in
// float32 from their widened copies, the GPU in dt (float32 sums, one rounding). Output and every
// gradient within dt's tolerance of the float32 answer.
void check_conv_16(const ConvCase& c, DType dt, uint64_t seed) {
  INFO(describe(c) << " in " << dtype_name(dt));
  const Conv2dGeometry g = conv2d_geometry(c.x, c.w, params(c));
  const double scale = 1.0 / std::sqrt(double(g.N * g.L));
  std::vector<Tensor> leaves = {randn_leaf(c.x, seed, 1.0).detach().to(dt),
                                randn_leaf(c.w, seed + 1, std::sqrt(double(g.N * g.L) / double(g.R)) * scale).detach().to(dt),
                                c.bias ? randn_leaf({g.O}, seed + 2, scale).detach().to(dt) : Tensor()};
  auto run = [&](const std::vector<Tensor>& in) {
    return conv2d(in[0], in[1], in[2], c.stride, c.padding, c.dilation, c.groups);
  };
  std::vector<Tensor> cpu, dev, cpu_wrt, dev_wrt;
  for (const Tensor& t : leaves) {
    cpu.push_back(t.defined() ? t.to(DType::Float32).set_requires_grad() : Tensor());
    dev.push_back(t.defined() ? t.to(gpu()).set_requires_grad() : Tensor());
    if (t.defined()) {
      cpu_wrt.push_back(cpu.back());
      dev_wrt.push_back(dev.back());
    }
  }
  const Tensor out32 = run(cpu), out = run(dev);
  CHECK(out.dtype() == dt);
  const graft_test::Tol tol = graft_test::tol_for(dt);
  expect_close("output", out.to(DType::Float32), out32.detach(), tol);
  Generator gr(seed + 3);
  const Tensor r = randn(out32.shape(), DType::Float32, gr).to(dt);
  const std::vector<Tensor> g32 = autograd::grad({sum(out32 * r.to(DType::Float32))}, cpu_wrt);
  const std::vector<Tensor> g16 = autograd::grad({sum(out * r.to(gpu()))}, dev_wrt);
  for (size_t i = 0; i < g32.size(); ++i) {
    CHECK(g16[i].dtype() == dt);
    expect_close("gradient of input " + std::to_string(i), g16[i].to(DType::Float32), g32[i], tol);
  }
}

TEST_CASE("CUDA conv2d in bfloat16 and float16 on the tensor cores (depthwise widened)", "[cuda]") {
  for (const DType dt : {DType::BFloat16, DType::Float16}) {
    uint64_t seed = 500;
    for (const ConvCase& c : kGemmCases) check_conv_16(c, dt, seed += 3);
    check_conv_16(kDepthwiseCases[2], dt, seed += 3);
    check_conv_16(kDepthwiseCases[5], dt, seed += 3);
  }
}

TEST_CASE("CUDA conv2d with a frozen input: only dweight and dbias", "[cuda]") {
  uint64_t seed = 400;
  check_conv(kGemmCases[0], DType::Float32, seed += 3, true);   // the stem: the image needs no gradient
  check_conv(kGemmCases[11], DType::Float32, seed += 3, true);  // split-K
  check_conv(kDepthwiseCases[2], DType::Float32, seed += 3, true);
}

// The slots themselves: outputs poisoned with NaN (an element no thread writes fails), dweight and
// dbias pre-filled (they accumulate), each gradient alone as the autograd node asks for it.
TEST_CASE("CUDA conv2d slots: poisoned outputs, accumulated dweight and dbias, one gradient at a time", "[cuda]") {
  const std::vector<ConvCase> cases = {kGemmCases[2], kGemmCases[9], kGemmCases[10], kGemmCases[11], kDepthwiseCases[1],
                                       kDepthwiseCases[4]};
  Generator gen(500);
  for (const ConvCase& c : cases) {
    INFO(describe(c));
    const Conv2dParams p = params(c);
    const Conv2dGeometry g = conv2d_geometry(c.x, c.w, p);
    const Shape out_shape{g.N, g.O, g.OH, g.OW};
    const Tensor x = randn(c.x, DType::Float32, gen);
    const Tensor w = mul(randn(c.w, DType::Float32, gen), 1.0 / std::sqrt(double(g.R))).contiguous();
    const Tensor b = randn({g.O}, DType::Float32, gen);
    const Tensor dout = mul(randn(out_shape, DType::Float32, gen), 1.0 / std::sqrt(double(g.N * g.L))).contiguous();
    const Tensor dw0 = randn(c.w, DType::Float32, gen), db0 = randn({g.O}, DType::Float32, gen);
    auto nan_on_gpu = [](const Shape& s) { return full(s, std::nan(""), DType::Float32).to(gpu()); };

    Tensor out_cpu = empty(out_shape);
    conv2d_kernel.get(kCPU)(out_cpu, x, w, b, p);
    const Tensor out_gpu = nan_on_gpu(out_shape);
    conv2d_kernel.get(gpu())(out_gpu, x.to(gpu()), w.to(gpu()), b.to(gpu()), p);
    expect_close("forward", out_gpu, out_cpu);
    const Tensor out_nobias = nan_on_gpu(out_shape);
    conv2d_kernel.get(gpu())(out_nobias, x.to(gpu()), w.to(gpu()), Tensor(), p);
    Tensor out_nobias_cpu = empty(out_shape);
    conv2d_kernel.get(kCPU)(out_nobias_cpu, x, w, Tensor(), p);
    expect_close("forward without bias", out_nobias, out_nobias_cpu);

    Tensor dx_cpu = empty(c.x), dw_cpu = dw0.clone(), db_cpu = db0.clone();
    conv2d_backward_kernel.get(kCPU)(dx_cpu, dw_cpu, db_cpu, dout, x, w, c.x, c.w, p);
    const Tensor dx_gpu = nan_on_gpu(c.x), dw_gpu = dw0.to(gpu()), db_gpu = db0.to(gpu());
    conv2d_backward_kernel.get(gpu())(dx_gpu, dw_gpu, db_gpu, dout.to(gpu()), x.to(gpu()), w.to(gpu()), c.x, c.w, p);
    expect_close("dx", dx_gpu, dx_cpu);
    expect_close("dweight accumulated", dw_gpu, dw_cpu);
    expect_close("dbias accumulated", db_gpu, db_cpu);

    const Tensor dx_only = nan_on_gpu(c.x);
    conv2d_backward_kernel.get(gpu())(dx_only, Tensor(), Tensor(), dout.to(gpu()), Tensor(), w.to(gpu()), c.x, c.w, p);
    expect_close("dx alone (x undefined)", dx_only, dx_cpu);
    const Tensor dw_only = dw0.to(gpu());
    conv2d_backward_kernel.get(gpu())(Tensor(), dw_only, Tensor(), dout.to(gpu()), x.to(gpu()), Tensor(), c.x, c.w, p);
    expect_close("dweight alone (weight undefined)", dw_only, dw_cpu);
  }
}

TEST_CASE("CUDA conv2d: batch 0, and bad input throws naming the problem", "[cuda]") {
  // An empty batch: an empty output, and gradients that are zero or empty.
  const Tensor x0 = zeros({0, 3, 8, 8}).to(gpu()).set_requires_grad();
  const Tensor w0 = randn_leaf({4, 3, 3, 3}, 601).detach().to(gpu()).set_requires_grad();
  const Tensor y0 = conv2d(x0, w0, Tensor(), {1, 1}, {1, 1});
  CHECK(y0.shape() == Shape{0, 4, 8, 8});
  const auto g0 = autograd::grad({y0}, {x0, w0}, {zeros({0, 4, 8, 8}).to(gpu())});
  CHECK(g0[0].shape() == Shape{0, 3, 8, 8});
  expect_close("dweight of an empty batch", g0[1], zeros({4, 3, 3, 3}));

  const Tensor x = randn_leaf({1, 4, 9, 9}, 602).detach().to(gpu());
  const Tensor w = randn_leaf({6, 4, 3, 3}, 603).detach().to(gpu());
  cuda_test::expect_throws_with([&] { conv2d(x, w.to(kCPU)); }, "one device");
  cuda_test::expect_throws_with([&] { conv2d(x, randn_leaf({6, 3, 3, 3}, 604).detach().to(gpu())); }, "channels");
  cuda_test::expect_throws_with([&] { conv2d(x, w, Tensor(), {1, 1}, {0, 0}, {1, 1}, 3); }, "not divisible by groups");
  cuda_test::expect_throws_with([&] { conv2d(x, randn_leaf({6, 4, 11, 11}, 605).detach().to(gpu())); }, "larger than the padded input");
  // float16 has no GPU convolution yet: it runs in float32 and rounds, as on the CPU
  expect_exact("float16 conv2d (float32, rounded)", conv2d(x.to(DType::Float16), w.to(DType::Float16)),
               conv2d(x.to(kCPU).to(DType::Float16), w.to(kCPU).to(DType::Float16)));
}

}  // namespace conv_cuda_test
