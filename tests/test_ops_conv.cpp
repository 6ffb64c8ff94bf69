// matmul, linear, conv2d and pooling: gradient checks (first and second order), kernels against
// plain-loop oracles with poisoned outputs, values against PyTorch 1.13, and bad-input messages.
#include <cmath>

#include "harness.hpp"

using namespace graft;
using namespace graft_test;

namespace {
// Deterministic inputs shared with PyTorch: x.flatten()[i] = sin(a i + b), float64.
Tensor det(const Shape& s, double a = 0.37, double b = 0.1) {
  std::vector<double> v(size_t(s.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(double(i) * a + b);
  return from_vector(v, s, DType::Float64);
}

Tensor vec(const std::vector<double>& v, const Shape& s) { return from_vector(v, s, DType::Float64); }

struct ConvCase {
  Shape x, w;
  Conv2dParams p;
};

// The oracle: the library's reference loops (direct convolution, include/graft/ops/conv2d.hpp) in
// float64. out [N, O, OH, OW] from x [N, C, H, W], w [O, C/G, KH, KW], b [O].
Tensor conv2d_direct(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dParams& p) {
  const Tensor x = x_in.to(DType::Float64).contiguous(), w = w_in.to(DType::Float64).contiguous();
  const Tensor b = b_in.to(DType::Float64).contiguous();
  const Conv2dGeometry g = conv2d_geometry(x.shape(), w.shape(), p);
  Tensor out = empty({g.N, g.O, g.OH, g.OW}, DType::Float64);
  kernels::cpu::conv2d_forward_reference<double>(out.data<double>(), x.data<double>(), w.data<double>(),
                                                 b.data<double>(), g);
  return out;
}

// The adjoint of conv2d_direct (the reference backward loops, float64): {dx, dw, db} for dout.
std::vector<Tensor> conv2d_direct_backward(const Tensor& dout_in, const Tensor& x_in, const Tensor& w_in,
                                           const Conv2dParams& p) {
  const Tensor x = x_in.to(DType::Float64).contiguous(), w = w_in.to(DType::Float64).contiguous();
  const Tensor dout = dout_in.to(DType::Float64).contiguous();
  const Conv2dGeometry g = conv2d_geometry(x.shape(), w.shape(), p);
  Tensor dx = empty(x.shape(), DType::Float64), dw = zeros(w.shape(), DType::Float64);
  Tensor db = zeros({g.O}, DType::Float64);
  kernels::cpu::conv2d_backward_reference<double>(dx.data<double>(), dw.data<double>(), db.data<double>(),
                                                  dout.data<double>(), x.data<double>(), w.data<double>(), g);
  return {dx, dw, db};
}

const std::vector<ConvCase> kConvCases = {
    {{2, 3, 7, 6}, {4, 3, 3, 3}, {{2, 2}, {1, 1}, {1, 1}, 1}},  // stride 2, padding 1
    {{1, 2, 9, 8}, {3, 2, 3, 2}, {{1, 1}, {2, 1}, {2, 3}, 1}},  // dilation, uneven padding
    {{2, 4, 6, 5}, {6, 2, 3, 3}, {{1, 2}, {1, 0}, {1, 1}, 2}},  // groups 2
    {{2, 4, 6, 6}, {8, 1, 3, 3}, {{2, 2}, {1, 1}, {1, 1}, 4}},  // depthwise, channel multiplier 2
    {{1, 3, 9, 7}, {3, 1, 3, 2}, {{2, 1}, {2, 0}, {2, 3}, 3}},  // depthwise: dilation, uneven padding, odd sizes
    {{2, 2, 5, 5}, {2, 1, 5, 5}, {{1, 1}, {2, 2}, {1, 1}, 2}},  // depthwise 5x5, as EfficientNet's
    {{2, 3, 7, 8}, {3, 1, 3, 3}, {{1, 1}, {0, 0}, {1, 1}, 3}},  // depthwise, no padding (padded before: TF SAME)
    {{1, 4, 9, 8}, {4, 1, 5, 5}, {{2, 2}, {0, 0}, {1, 1}, 4}},  // depthwise 5x5 stride 2, no padding
    {{1, 2, 9, 9}, {2, 1, 3, 3}, {{2, 1}, {0, 0}, {2, 2}, 2}},  // depthwise, no padding, dilation 2
    {{2, 5, 4, 3}, {3, 5, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 1}},  // pointwise 1x1 (cols = x)
    {{3, 40, 2, 2}, {24, 40, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 1}},  // 1x1 on a small map: one GEMM over the batch
    {{5, 36, 1, 1}, {20, 36, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 1}},  // 1x1 on a 1x1 map (a network's head)
    {{2, 8, 9, 8}, {12, 8, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 1}},   // 1x1, L = 72: per-image GEMMs
};
}  // namespace

// ---- matmul ------------------------------------------------------------------------------------
GRADCHECK_CASE("matmul", "1-D operands: dot and promotion") {
  gradcheck1([](auto& in) { return matmul(in[0], in[1]); }, {rand_in({4}), rand_in({4}, -1, 1, 3)});
  gradcheck1([](auto& in) { return matmul(in[0], in[1]); }, {rand_in({4}), rand_in({4, 3}, -1, 1, 3)});
  gradcheck1([](auto& in) { return matmul(in[0], in[1]); }, {rand_in({3, 4}), rand_in({4}, -1, 1, 3)});
  gradcheck1([](auto& in) { return matmul(in[0], in[1]); }, {rand_in({4}), rand_in({2, 4, 3}, -1, 1, 3)});
  gradcheck1([](auto& in) { return matmul(in[0], in[1]); }, {rand_in({2, 3, 4}), rand_in({4}, -1, 1, 3)});
}
GRADCHECK_CASE("matmul", "2-D with transposed (non-contiguous) operands") {
  gradcheck1([](auto& in) { return matmul(in[0], in[1]); }, {rand_noncontig({3, 4}), rand_noncontig({4, 5}, -1, 1, 3)});
  gradcheck1([](auto& in) { return matmul(in[0], in[1].transpose(-1, -2)); },
             {rand_in({3, 4}), rand_in({5, 4}, -1, 1, 3)});
  gradcheck1([](auto& in) { return matmul(in[0].t(), in[1]); }, {rand_in({4, 3}), rand_in({4, 5}, -1, 1, 3)});
}
GRADCHECK_CASE("matmul", "batched with broadcast batch dims") {
  gradcheck1([](auto& in) { return matmul(in[0], in[1]); }, {rand_in({2, 1, 3, 4}), rand_in({3, 4, 2}, -1, 1, 3)});
  gradcheck1([](auto& in) { return matmul(in[0], in[1]); }, {rand_in({3, 4}), rand_in({2, 4, 5}, -1, 1, 3)});
  gradcheck1([](auto& in) { return matmul(in[0], in[1]); }, {rand_noncontig({2, 3, 4}), rand_in({4, 5}, -1, 1, 3)});
  gradcheck1([](auto& in) { return matmul(in[0], in[1].transpose(-1, -2)); },
             {rand_in({2, 3, 4}), rand_in({1, 5, 4}, -1, 1, 3)});
}
GRADCHECK_CASE("matmul", "second order (create_graph through da = g b^T, db = a^T g)") {
  gradcheck(
      [](auto& in) {
        GradModeGuard on(true);
        Tensor y = matmul(in[0], in[1]);
        return autograd::grad({y}, {in[0], in[1]}, {in[2]}, true, true);
      },
      {rand_in({2, 3, 4}), rand_in({4, 2}, -1, 1, 3), rand_in({2, 3, 2}, -1, 1, 4)});
}

TEST_CASE("matmul kernel matches a triple loop, poisoned output, both dtypes", "[matmul]") {
  for (DType dt : {DType::Float32, DType::Float64}) {
    // a [2, 1, 3, 5] broadcast against b^T with b [3, 4, 5]: transposed, stride-0 batch dims.
    const Tensor a = det({2, 1, 3, 5}).to(dt), bt = det({3, 4, 5}, 0.53, 0.2).to(dt);
    const Tensor b = bt.transpose(-1, -2);
    Tensor out = empty({2, 3, 3, 4}, dt);
    poison(out);
    matmul_kernel.cpu(out, a.expand({2, 3, 3, 5}), b.expand({2, 3, 5, 4}));
    const auto av = a.to_vector(), bv = bt.to_vector();
    std::vector<double> ref;
    for (int i0 = 0; i0 < 2; ++i0)
      for (int i1 = 0; i1 < 3; ++i1)
        for (int m = 0; m < 3; ++m)
          for (int n = 0; n < 4; ++n) {
            double s = 0;
            for (int k = 0; k < 5; ++k) s += av[size_t((i0 * 3 + m) * 5 + k)] * bv[size_t((i1 * 4 + n) * 5 + k)];
            ref.push_back(s);
          }
    GRAFT_REQUIRE_CLOSE(out, vec(ref, {2, 3, 3, 4}).to(dt), tol_for(dt));
  }
}

TEST_CASE("matmul matches PyTorch on broadcast batches", "[matmul][parity]") {
  const Tensor y = matmul(det({2, 1, 3, 4}), det({3, 4, 2}, 0.53, 0.2));
  const Tensor expected =
      vec({0.7753229063518918,  0.07244885680091151, 1.5162194112624416,  1.4807789735315073,  -0.5003667522249226,
           0.1960804132044779,  0.6979449200653121,  1.222637132012479,   -0.9938873294753032, -0.2535014648702729,
           -0.8781796774613526, -1.2686079112602187, -1.4104736244466773, -1.1850851552274484, -0.6117522636793997,
           -1.2500850708731603, 1.299536481411618,   0.9583906670381465,  -1.606957543766771,  -1.4452211143497409,
           0.20895585034790165, -0.4581615055009003, 1.6448502765515016,  1.3621366184081805,  0.8346353736213741,
           0.02344798462579456, 1.0295351677846054,  1.272860044973089,   -0.6479361214090431, 0.20737659136105335,
           0.8474144313198493,  1.4238827481767249,  -1.1458635952470781, -0.7001791433903677, -1.0552090585109823,
           -1.5508555088711913},
          {2, 3, 3, 2});
  GRAFT_REQUIRE_CLOSE(y, expected, kTolF64);
  REQUIRE(matmul(det({4}), det({4}, 0.5)).shape() == Shape{});
  REQUIRE(matmul(det({4}), det({2, 4, 3})).shape() == Shape{2, 3});
  REQUIRE(matmul(det({2, 3, 4}), det({4})).shape() == Shape{2, 3});
  REQUIRE(matmul(det({5, 2, 3, 4}), det({4, 6})).shape() == Shape{5, 2, 3, 6});
}

TEST_CASE("matmul errors name both shapes", "[matmul][errors]") {
  require_error([] { (void)matmul(zeros({2, 3}), zeros({4, 5})); }, {"matmul", "[2, 3]", "[4, 5]"});
  require_error([] { (void)matmul(zeros({3}), zeros({4})); }, {"matmul", "[3]", "[4]"});
  require_error([] { (void)matmul(zeros({2, 2, 3}), zeros({3, 3, 4})); }, {"matmul", "[2, 2, 3]", "[3, 3, 4]"});
  require_error([] { (void)matmul(zeros({2, 3}), zeros({3, 4}, DType::Float64)); }, {"matmul", "float32", "float64"});
}

// ---- linear ------------------------------------------------------------------------------------
GRADCHECK_CASE("linear", "3-D input, with and without bias") {
  gradcheck1([](auto& in) { return linear(in[0], in[1], in[2]); },
             {rand_in({2, 3, 4}), rand_in({5, 4}, -1, 1, 3), rand_in({5}, -1, 1, 4)});
  gradcheck1([](auto& in) { return linear(in[0], in[1]); }, {rand_noncontig({2, 3, 4}), rand_in({5, 4}, -1, 1, 3)});
}

TEST_CASE("linear equals x w^T + b and checks shapes", "[linear]") {
  const Tensor x = det({2, 3, 4}), w = det({5, 4}, 0.53), b = det({5}, 1.1);
  const Tensor y = linear(x, w, b);
  REQUIRE(y.shape() == Shape{2, 3, 5});
  const auto xv = x.to_vector(), wv = w.to_vector(), bv = b.to_vector(), yv = y.to_vector();
  for (int r = 0; r < 6; ++r)
    for (int o = 0; o < 5; ++o) {
      double s = bv[size_t(o)];
      for (int i = 0; i < 4; ++i) s += xv[size_t(r * 4 + i)] * wv[size_t(o * 4 + i)];
      REQUIRE(std::abs(yv[size_t(r * 5 + o)] - s) <= kTolF64.atol + kTolF64.rtol * std::abs(s));
    }
  require_error([&] { (void)linear(x, det({5, 3})); }, {"linear", "[2, 3, 4]", "[5, 3]"});
  require_error([&] { (void)linear(x, w, det({4})); }, {"linear", "bias", "[5]", "[4]"});
}

// ---- conv2d ------------------------------------------------------------------------------------
GRADCHECK_CASE("conv2d", "stride 2 / padding 1, dilation 2, groups 2, depthwise, 1x1; with bias") {
  for (const ConvCase& c : kConvCases) {
    const Conv2dParams p = c.p;
    INFO("x " << c.x << " w " << c.w << " groups " << p.groups);
    gradcheck1([p](auto& in) { return conv2d(in[0], in[1], in[2], p.stride, p.padding, p.dilation, p.groups); },
               {rand_in(c.x), rand_in(c.w, -1, 1, 3), rand_in({c.w[0]}, -1, 1, 4)});
  }
}
GRADCHECK_CASE("conv2d", "non-contiguous input, no bias, 3-D [C, H, W] input") {
  gradcheck1(
      [](auto& in) {
        return conv2d(in[0], in[1], Tensor(), {1, 2}, {1, 1});
      },
      {rand_noncontig({2, 3, 5, 6}), rand_in({4, 3, 2, 3}, -1, 1, 3)});
  gradcheck1(
      [](auto& in) {
        return conv2d(in[0], in[1], in[2], {2, 1}, {0, 1});
      },
      {rand_in({3, 5, 6}), rand_in({2, 3, 3, 3}, -1, 1, 3), rand_in({2}, -1, 1, 4)});
}
GRADCHECK_CASE("conv2d", "second order (create_graph), grouped with bias") {
  gradcheck(
      [](auto& in) {
        GradModeGuard on(true);
        Tensor y = conv2d(in[0], in[1], in[2], {2, 1}, {1, 1}, {1, 2}, 2);
        return autograd::grad({y}, {in[0], in[1], in[2]}, {in[3]}, true, true);
      },
      {rand_in({2, 4, 5, 6}), rand_in({4, 2, 2, 2}, -1, 1, 3), rand_in({4}, -1, 1, 4),
       rand_in({2, 4, 3, 6}, -1, 1, 5)});
}

TEST_CASE("conv2d kernels match direct loops, poisoned outputs, both dtypes, every ISA", "[conv2d]") {
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    for (DType dt : {DType::Float32, DType::Float64}) {
      for (const ConvCase& c : kConvCases) {
        INFO("dtype " << dtype_name(dt) << " x " << c.x << " w " << c.w << " groups " << c.p.groups);
        const Tensor x = det(c.x).to(dt), w = det(c.w, 0.53, 0.2).to(dt), b = det({c.w[0]}, 1.1, 0.3).to(dt);
        const Tensor ref = conv2d_direct(x, w, b, c.p);
        Tensor out = empty(ref.shape(), dt);
        poison(out);
        conv2d_kernel.cpu(out, x, w, b, c.p);
        GRAFT_REQUIRE_CLOSE(out, ref.to(dt), tol_for(dt));

        const Tensor dout = det(ref.shape(), 0.71, 0.4).to(dt);
        const auto refs = conv2d_direct_backward(dout, x, w, c.p);
        Tensor dx = empty(x.shape(), dt);
        poison(dx);
        Tensor dw = det(w.shape(), 0.29, 0.5).to(dt);  // accumulated into
        Tensor db = det({c.w[0]}, 0.17, 0.6).to(dt);
        const Tensor dw0 = dw.clone(), db0 = db.clone();
        conv2d_backward_kernel.cpu(dx, dw, db, dout, x, w, x.shape(), w.shape(), c.p);
        GRAFT_REQUIRE_CLOSE(dx, refs[0].to(dt), tol_for(dt));
        GRAFT_REQUIRE_CLOSE(dw, (dw0.to(DType::Float64) + refs[1]).to(dt), tol_for(dt));
        GRAFT_REQUIRE_CLOSE(db, (db0.to(DType::Float64) + refs[2]).to(dt), tol_for(dt));
      }
    }
  });
}

TEST_CASE("conv2d matches PyTorch (groups 2, stride, padding, dilation)", "[conv2d][parity]") {
  // F.conv2d(x, w, b, (2, 1), (1, 1), (1, 2), 2), x [2, 4, 5, 6], w [6, 2, 3, 2]: the first 8 and
  // the last 4 of the 216 outputs (the kernel test above covers every element against direct loops).
  const Tensor y =
      conv2d(det({2, 4, 5, 6}), det({6, 2, 3, 2}, 0.53, 0.2), det({6}, 1.1, 0.3), {2, 1}, {1, 1}, {1, 2}, 2);
  REQUIRE(y.shape() == Shape{2, 6, 3, 6});
  const Tensor flat = y.reshape({216});
  GRAFT_REQUIRE_CLOSE(flat.narrow(0, 0, 8),
                      vec({1.439281565948849, 2.404759814097263, 2.0366152531742396, 1.4328216455517895,
                           0.6750996234977551, 0.18032207446903215, -0.3755886766064045, -0.34455402134775387},
                          {8}),
                      kTolF64);
  GRAFT_REQUIRE_CLOSE(flat.narrow(0, 212, 4),
                      vec({1.1339814123827152, 1.538783449796129, 1.672436640602839, 0.5675957064594153}, {4}),
                      kTolF64);
}

TEST_CASE("conv2d with a frozen input computes no input gradient", "[conv2d][autograd]") {
  const Tensor x = rand_in({2, 3, 6, 6});  // requires_grad false: first layer / frozen backbone
  const Tensor w = rand_in({4, 3, 3, 3}, -1, 1, 3).set_requires_grad();
  Tensor y = conv2d(x, w, Tensor(), {1, 1}, {1, 1});
  REQUIRE(y.grad_fn()->next_edges.size() == 3);
  REQUIRE(!y.grad_fn()->next_edges[0].valid());  // x
  REQUIRE(!y.grad_fn()->next_edges[2].valid());  // undefined bias
  sum(y * y).backward();
  const Tensor gw = w.grad().clone();
  const Tensor x2 = x.clone().set_requires_grad();
  const Tensor w2 = w.detach().clone().set_requires_grad();
  sum(pow(conv2d(x2, w2, Tensor(), {1, 1}, {1, 1}), 2.0)).backward();
  GRAFT_REQUIRE_CLOSE(gw, w2.grad(), kTolF64);
  // Nothing requires grad: no node at all.
  REQUIRE(conv2d(x, w.detach()).grad_fn() == nullptr);
}

TEST_CASE("conv2d bad inputs name the op, expected and actual", "[conv2d][errors]") {
  require_error(
      [] {
        (void)conv2d(zeros({1, 4, 8, 8}), zeros({6, 3, 3, 3}));
      },
      {"conv2d", "[6, 3, 3, 3]", "3 channels", "[1, 4, 8, 8]", "4 channels"});
  require_error(
      [] {
        (void)conv2d(zeros({1, 6, 8, 8}), zeros({4, 2, 3, 3}), Tensor(), {1, 1}, {0, 0}, {1, 1}, 4);
      },
      {"conv2d", "C = 6", "groups = 4"});
  require_error(
      [] {
        (void)conv2d(zeros({1, 3, 4, 4}), zeros({2, 3, 7, 3}), Tensor(), {1, 1}, {1, 1});
      },
      {"conv2d", "kernel size (7 x 3", "padded input (6 x 6)", "[1, 3, 4, 4]"});
  require_error(
      [] {
        (void)conv2d(zeros({1, 3, 5, 5}), zeros({2, 3, 3, 3}), Tensor(), {1, 1}, {0, 0}, {3, 1});
      },
      {"conv2d", "kernel size (7 x 3", "padded input (5 x 5)"});
  require_error([] { (void)conv2d(zeros({3, 8}), zeros({2, 3, 3, 3})); }, {"conv2d", "4-D", "[3, 8]"});
  require_error(
      [] {
        (void)conv2d(zeros({1, 3, 5, 5}), zeros({2, 3, 3, 3}), zeros({3}));
      },
      {"conv2d", "bias", "[2]", "[3]"});
  require_error(
      [] {
        (void)conv2d(zeros({1, 3, 5, 5}), zeros({2, 3, 3, 3}, DType::Float64));
      },
      {"conv2d", "float32", "float64"});
}

TEST_CASE("conv2d on a ResNet-sized layer finishes", "[conv2d][sanity]") {
  // [8, 64, 56, 56] x [64, 64, 3, 3], float32, padding 1: a smoke test of the reference path.
  Generator g(7);
  const Tensor x = randn({8, 64, 56, 56}, DType::Float32, g), w = randn({64, 64, 3, 3}, DType::Float32, g);
  const Tensor y = conv2d(x, w, Tensor(), {1, 1}, {1, 1});
  REQUIRE(y.shape() == Shape{8, 64, 56, 56});
  REQUIRE(std::isfinite(y.to_vector()[12345]));
}

// ---- pooling -----------------------------------------------------------------------------------
GRADCHECK_CASE("max_pool2d", "padding, stride, dilation, ceil_mode, 3-D input, non-contiguous") {
  // Distinct values keep the argmax away from ties, where max is not differentiable.
  gradcheck1([](auto& in) { return max_pool2d(in[0], {3, 2}, {2, 2}, {1, 1}, {1, 2}, true); }, {rand_in({2, 2, 5, 7})});
  gradcheck1([](auto& in) { return max_pool2d(in[0], {2, 2}); }, {rand_noncontig({1, 3, 4, 6})});
  gradcheck1([](auto& in) { return max_pool2d(in[0], {3, 3}, {2, 2}, {1, 1}, {1, 1}, false); }, {rand_in({3, 6, 6})});
}
GRADCHECK_CASE("avg_pool2d", "padding, ceil_mode, count_include_pad on and off") {
  gradcheck1([](auto& in) { return avg_pool2d(in[0], {3, 3}, {2, 2}, {1, 1}, true, false); }, {rand_in({2, 2, 5, 7})});
  gradcheck1([](auto& in) { return avg_pool2d(in[0], {3, 2}, {2, 1}, {1, 1}, true, true); }, {rand_in({1, 2, 6, 5})});
  gradcheck1([](auto& in) { return avg_pool2d(in[0], {2, 2}); }, {rand_noncontig({3, 4, 6})});
}
GRADCHECK_CASE("adaptive_avg_pool2d", "5x7 -> 3x2 (windows overlap), 4x4 -> 1x1, up-sampling 3x2 -> 4x5") {
  gradcheck1([](auto& in) { return adaptive_avg_pool2d(in[0], {3, 2}); }, {rand_in({2, 2, 5, 7})});
  gradcheck1([](auto& in) { return adaptive_avg_pool2d(in[0], {1, 1}); }, {rand_noncontig({2, 3, 4, 4})});
  gradcheck1([](auto& in) { return adaptive_avg_pool2d(in[0], {4, 5}); }, {rand_in({2, 3, 2})});
}
GRADCHECK_CASE("max_pool2d", "second order (create_graph)") {
  gradcheck(
      [](auto& in) {
        GradModeGuard on(true);
        Tensor y = max_pool2d(in[0], {2, 3}, {1, 2}, {1, 1});
        return autograd::grad({y * y}, {in[0]}, {in[1]}, true, true);
      },
      {rand_in({1, 2, 4, 5}), rand_in({1, 2, 5, 3}, -1, 1, 3)});
}
GRADCHECK_CASE("avg_pool2d", "second order (create_graph)") {
  gradcheck(
      [](auto& in) {
        GradModeGuard on(true);
        Tensor y = avg_pool2d(in[0], {3, 2}, {2, 1}, {1, 1}, true, false);
        return autograd::grad({y * y}, {in[0]}, {in[1]}, true, true);
      },
      {rand_in({1, 2, 5, 4}), rand_in({1, 2, 3, 5}, -1, 1, 3)});
}
GRADCHECK_CASE("adaptive_avg_pool2d", "second order (create_graph)") {
  gradcheck(
      [](auto& in) {
        GradModeGuard on(true);
        Tensor y = adaptive_avg_pool2d(in[0], {3, 2});
        return autograd::grad({y * y}, {in[0]}, {in[1]}, true, true);
      },
      {rand_in({1, 2, 5, 7}), rand_in({1, 2, 3, 2}, -1, 1, 3)});
}

TEST_CASE("pooling matches PyTorch values", "[pool][parity]") {
  const Tensor x = det({1, 2, 5, 7});
  GRAFT_REQUIRE_CLOSE(
      max_pool2d(x, {3, 2}, {2, 2}, {1, 1}, {1, 2}, true),
      vec({0.4528862853790683, 0.9356160015533859,  0.9356160015533859,  0.9289597150038692, 0.9264154954967662,
           0.9264154954967662, 0.7491743483316894,  0.7491743483316894,  0.9264154954967662, 0.9264154954967662,
           0.4302574547137703, -0.2535714644950138, 0.7536707851417809,  0.9997393370368531, 0.9997393370368531,
           0.722881349511976,  0.7181558375448988,  0.7181558375448988,  0.9426371367702988, 0.9426371367702988,
           0.7181558375448988, 0.7181558375448988,  0.12691556102786788, 0.12691556102786788},
          {1, 2, 3, 4}),
      kTolF64);
  GRAFT_REQUIRE_CLOSE(avg_pool2d(x, {3, 3}, {2, 2}, {1, 1}, true, false),
                      vec({0.267655233986573,    0.21972732586406685,   0.06850328607406929,   -0.07613125506595192,
                           0.1682141859413122,   0.058244823464758594,  -0.10275140706490678,  -0.19778799811187106,
                           0.019996911884180513, -0.12012663902695082,  -0.2442117887075611,   -0.26209314477277446,
                           0.24727794040976364,  0.15171175855598748,   -0.030363377249454593, -0.16664415669357657,
                           0.09702536833777421,  -0.026900224622665496, -0.16973286898830697,  -0.22768446878033055,
                           -0.08136116442513788, -0.1977120842349093,   -0.25988576978930916,  -0.22270425443837413},
                          {1, 2, 3, 4}),
                      kTolF64);
  GRAFT_REQUIRE_CLOSE(avg_pool2d(x, {3, 3}, {2, 2}, {1, 1}, true, true),
                      vec({0.11895788177181021,   0.1464848839093779,    0.045668857382712855,  -0.0338361133626453,
                           0.11214279062754147,   0.058244823464758594,  -0.10275140706490678,  -0.13185866540791402,
                           0.008887516392969117,  -0.08008442601796723,  -0.16280785913837406,  -0.11648584212123309,
                           0.10990130684878384,   0.10114117237065831,   -0.020242251499636394, -0.07406406964158958,
                           0.06468357889184947,   -0.026900224622665496, -0.16973286898830697,  -0.1517896458535537,
                           -0.036160517522283504, -0.1318080561566062,   -0.17325717985953942,  -0.09897966863927739},
                          {1, 2, 3, 4}),
                      kTolF64);
  GRAFT_REQUIRE_CLOSE(adaptive_avg_pool2d(x, {3, 2}),
                      vec({0.23182455674891944, 0.02033909533507476, 0.09310720501705629, -0.13204457737639402,
                           -0.07260797718809389, -0.24613994453437016, 0.18039711058081373, -0.07423333151870576,
                           0.013861114118974121, -0.18588905616199006, -0.15669412026421056, -0.24364346109342738},
                          {1, 2, 3, 2}),
                      kTolF64);
}

TEST_CASE("max_pool2d routes the gradient to the first maximum on ties, as PyTorch", "[pool][parity]") {
  const Tensor x =
      vec({0, 1, 1, 2, 2, 2, 1, 1, 0, -1, -1, -2, -2, -2, -2, -1, -1, 0, 1, 1}, {1, 1, 4, 5}).set_requires_grad();
  Tensor y = max_pool2d(x, {2, 2}, {1, 1});
  GRAFT_REQUIRE_CLOSE(y.detach(), vec({2, 1, 2, 2, 2, 1, 1, 0, -1, 0, 1, 1}, {1, 1, 3, 4}), kTolF64);
  y.backward(det({1, 1, 3, 4}, 0.71, 0.4));
  GRAFT_REQUIRE_CLOSE(x.grad(),
                      vec({0.0,
                           0.8956986856800476,
                           0.0,
                           1.543281277235029,
                           0.0,
                           0.2911697485635423,
                           -0.7231881240865118,
                           -0.9986280112074989,
                           -0.791454699905466,
                           0.0,
                           -0.2017901307561289,
                           0.0,
                           0.0,
                           0.0,
                           0.0,
                           0.0,
                           0.0,
                           0.48539481567229026,
                           1.875292005234337,
                           0.0},
                          {1, 1, 4, 5}),
                      kTolF64);
}

TEST_CASE("pool kernels write every output (poisoned), both dtypes", "[pool]") {
  for (DType dt : {DType::Float32, DType::Float64}) {
    const Tensor x = det({2, 3, 5, 7}).to(dt);
    const Pool2dParams p{{3, 2}, {2, 2}, {1, 1}, {1, 2}, true, false};
    Tensor out = empty({2, 3, 3, 4}, dt), idx = empty({2, 3, 3, 4}, DType::Int64);
    poison(out);
    max_pool2d_kernel.cpu(out, idx, x, p);
    GRAFT_REQUIRE_CLOSE(out, max_pool2d(x.to(DType::Float64), {3, 2}, {2, 2}, {1, 1}, {1, 2}, true).to(dt),
                        tol_for(dt));
    Tensor dx = empty(x.shape(), dt);
    poison(dx);
    max_pool2d_backward_kernel.cpu(dx, det({2, 3, 3, 4}).to(dt), idx);
    REQUIRE(close_report(dx, dx, tol_for(dt)).empty());  // no NaN left
    poison(dx);
    avg_pool2d_backward_kernel.cpu(dx, det({2, 3, 3, 4}).to(dt),
                                   Pool2dParams{{3, 3}, {2, 2}, {1, 1}, {1, 1}, true, false});
    REQUIRE(close_report(dx, dx, tol_for(dt)).empty());
    poison(dx);
    adaptive_avg_pool2d_backward_kernel.cpu(dx, det({2, 3, 3, 2}).to(dt));
    REQUIRE(close_report(dx, dx, tol_for(dt)).empty());
  }
}

TEST_CASE("pool output sizes follow PyTorch's ceil_mode rule", "[pool]") {
  // {H, kernel, stride, padding, dilation, expected OH with ceil_mode} from PyTorch 1.13.
  const int64_t cases[][6] = {{5, 3, 2, 1, 1, 3}, {6, 3, 2, 1, 1, 4},  {7, 2, 2, 0, 1, 4},
                              {8, 3, 3, 1, 1, 3}, {10, 3, 4, 1, 2, 3}, {4, 2, 3, 1, 1, 2}};
  for (const auto& c : cases) {
    INFO("H " << c[0] << " k " << c[1] << " s " << c[2] << " p " << c[3] << " d " << c[4]);
    const Tensor y =
        max_pool2d(zeros({1, 1, c[0], c[0]}), {c[1], c[1]}, {c[2], c[2]}, {c[3], c[3]}, {c[4], c[4]}, true);
    REQUIRE(y.size(-1) == c[5]);
  }
  REQUIRE(max_pool2d(zeros({1, 1, 5, 5}), {2, 2}).shape() == Shape{1, 1, 2, 2});  // stride defaults to kernel
  REQUIRE(max_pool2d(zeros({1, 1, 5, 5}), {2, 2}, {0, 0}, {0, 0}, {1, 1}, true).shape() == Shape{1, 1, 3, 3});
}

TEST_CASE("pooling bad inputs name the op, expected and actual", "[pool][errors]") {
  require_error([] { (void)max_pool2d(zeros({5, 5}), {2, 2}); }, {"max_pool2d", "4-D", "[5, 5]"});
  require_error([] { (void)avg_pool2d(zeros({5, 5}), {2, 2}); }, {"avg_pool2d", "4-D", "[5, 5]"});
  require_error([] { (void)adaptive_avg_pool2d(zeros({5, 5}), {2, 2}); }, {"adaptive_avg_pool2d", "4-D", "[5, 5]"});
  require_error([] { (void)max_pool2d(zeros({1, 1, 5, 5}), {2, 2}, {1, 1}, {2, 2}); }, {"max_pool2d", "padding"});
  require_error([] { (void)avg_pool2d(zeros({1, 1, 2, 2}), {3, 3}); }, {"avg_pool2d", "[1, 1, 2, 2]", "too small"});
  require_error([] { (void)adaptive_avg_pool2d(zeros({1, 1, 5, 5}), {0, 2}); }, {"adaptive_avg_pool2d", "{0, 2}"});
}
