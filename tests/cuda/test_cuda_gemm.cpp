// [cuda] the GEMM kernels of kernels/graft/kernels/cuda/gemm.cuh behind matmul and linear: each kernel
// (pinned through gemm_plan::forced_gemm_path, and the one chosen by size) against the CPU on shapes no
// tile divides, transposed and offset views (the float4 paths and their scalar fallbacks), broadcast
// batches, K = 0, float64; linear with every fused activation, with and without bias, forward and
// backward; TF32 under set_float32_matmul_precision("high").
//
// Two kinds of inputs. randn: compared with the float32 tolerance of tests/harness.hpp (the GPU and
// CPU sums differ by rounding only). Dyadic (k / 8 with |k| <= 40): every product and partial sum of
// the shapes below is exact in float32 (6 significant bits a factor, |sum| < 2^14 on a grid of 2^-6),
// and exact in TF32, so every kernel must agree with the CPU bit for bit, whatever its order of
// summation; that is how the large shapes (sums of 512 terms) are checked without a looser tolerance.
//
// TF32: the tensor cores multiply the inputs rounded to TF32 (cvt.rna: nearest, ties away) exactly and
// sum in float32, so the CPU product of the inputs pre-rounded by gemm_plan::round_to_tf32 matches the
// GPU within the float32 tolerance; no TF32 tolerance is needed.
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "graft/core/precision.hpp"
#include "graft/kernels/cuda/gemm_plan.hpp"
#include "op_harness.hpp"

using namespace graft;
using cuda_test::check_op;
using cuda_test::expect_close;
using cuda_test::expect_exact;
using cuda_test::gpu;
using cuda_test::randn_leaf;
namespace plan = graft::kernels::cuda::gemm_plan;

namespace {

// Pins the GEMM kernel for float32 problems for its scope (-1: chosen by size).
struct PinGemmPath {
  explicit PinGemmPath(int path) { plan::forced_gemm_path = path; }
  ~PinGemmPath() { plan::forced_gemm_path = -1; }
};

// set_float32_matmul_precision for its scope.
struct MatmulPrecisionScope {
  explicit MatmulPrecisionScope(const std::string& p) : old(get_float32_matmul_precision()) {
    set_float32_matmul_precision(p);
  }
  ~MatmulPrecisionScope() { set_float32_matmul_precision(old); }
  std::string old;
};

struct PathCase {
  int path;
  const char* name;
};
// The float32 SIMT kernels, each pinned, and the choice by size.
const std::vector<PathCase> kSimtPaths = {{-1, "chosen by size"},
                                          {int(plan::GemmPath::Tiled64), "tiled 64x64"},
                                          {int(plan::GemmPath::WarpTiled), "warp-tiled 128x128"}};

// k / 8 with k = round(8 randn) clamped to [-40, 40], as a float32 (or float64) CPU tensor.
Tensor dyadic(const Shape& s, uint64_t seed, DType dt = DType::Float32) {
  Generator g(seed);
  std::vector<double> v = randn(s, DType::Float64, g).to_vector();
  for (double& x : v) x = std::fmax(-40.0, std::fmin(40.0, std::nearbyint(8.0 * x))) / 8.0;
  return from_vector(v, s, dt);
}

// t with every element rounded to TF32 (CPU, float32).
Tensor tf32_rounded(const Tensor& t) {
  std::vector<double> v = t.detach().contiguous().to_vector();
  for (double& x : v) x = double(plan::round_to_tf32(float(x)));
  return from_vector(v, t.shape(), DType::Float32);
}

// a @ b on the GPU against the CPU, bit for bit (dyadic inputs): the product, and both gradients for a
// dyadic upstream gradient. transposed: a is given as [*, K, M] and b as [*, N, K], and the product is
// of their transposed views (read in place on both devices).
void expect_exact_product(const std::string& what, const Tensor& a, const Tensor& b, uint64_t seed,
                          bool transposed = false) {
  auto product = [transposed](const Tensor& x, const Tensor& y) {
    return transposed ? matmul(x.transpose(-1, -2), y.transpose(-1, -2)) : matmul(x, y);
  };
  const Tensor ac = a.detach().clone().set_requires_grad(), bc = b.detach().clone().set_requires_grad();
  const Tensor out_c = product(ac, bc);
  const Tensor r = dyadic(out_c.shape(), seed, a.dtype());
  const std::vector<Tensor> gc = autograd::grad({out_c}, {ac, bc}, {r});
  const Tensor ag = a.detach().to(gpu()).set_requires_grad(), bg = b.detach().to(gpu()).set_requires_grad();
  const Tensor out_g = product(ag, bg);
  expect_exact(what, out_g, out_c.detach());
  const std::vector<Tensor> gg = autograd::grad({out_g}, {ag, bg}, {r.to(gpu())});
  expect_exact(what + ": gradient of a", gg[0], gc[0]);
  expect_exact(what + ": gradient of b", gg[1], gc[1]);
}

Tensor mm(const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }

const std::vector<Activation> kActivations = {Activation::None, Activation::Relu,     Activation::Relu6,
                                              Activation::Silu, Activation::GeluTanh, Activation::Gelu};

}  // namespace

TEST_CASE("CUDA matmul float32, each SIMT kernel: tails, transposes, offsets, batches, K = 0", "[cuda]") {
  for (const PathCase& pc : kSimtPaths) {
    const PinGemmPath pin(pc.path);
    const std::string k = std::string(pc.name) + ": ";
    // M x K x N with tails no tile divides (check_op also runs them on transposed storage).
    check_op(k + "1x1x1", mm, {randn_leaf({1, 1}, 1), randn_leaf({1, 1}, 2)});
    check_op(k + "70x45x131", mm, {randn_leaf({70, 45}, 3), randn_leaf({45, 131}, 4)});
    check_op(k + "127x129x65", mm, {randn_leaf({127, 129}, 5), randn_leaf({129, 65}, 6)});
    check_op(k + "transposed views 70x45x131", [](const auto& in) { return matmul(in[0].t(), in[1].t()); },
             {randn_leaf({45, 70}, 7), randn_leaf({131, 45}, 8)});
    // Multiples of 4 everywhere: the float4 loads and stores (row-major here, the outer-contiguous
    // layouts on check_op's transposed copies).
    check_op(k + "128x64x96 (float4 paths)", mm, {randn_leaf({128, 64}, 9), randn_leaf({64, 96}, 10)});
    // Offset views: rows a multiple of 4 floats apart but the data 4 bytes past a 16-byte boundary,
    // so the loads must fall back to scalars.
    check_op(k + "offset views (unaligned)",
             [](const auto& in) { return matmul(in[0].slice(1, 1, 65), in[1].slice(1, 1, 97)); },
             {randn_leaf({96, 68}, 11), randn_leaf({64, 100}, 12)});
    // Batches: [3, 5, 17, 9] @ [9, 20] (folded into one GEMM by matmul), both operands broadcast
    // (stride-0 batch dims), and a plain batch.
    check_op(k + "batched, broadcast rhs", mm, {randn_leaf({3, 5, 17, 9}, 13), randn_leaf({9, 20}, 14)});
    check_op(k + "batched, both broadcast", mm, {randn_leaf({2, 1, 8, 33}, 15), randn_leaf({1, 3, 33, 8}, 16)});
    check_op(k + "batched 4 x 37x29x41", mm, {randn_leaf({4, 37, 29}, 17), randn_leaf({4, 29, 41}, 18)});
    // Large and exact: dyadic inputs, bit for bit with the CPU, forward and both gradients.
    expect_exact_product(k + "256x512x128 (exact)", dyadic({256, 512}, 19), dyadic({512, 128}, 20), 21);
    expect_exact_product(k + "batched 3 x 130x260x199 (exact)", dyadic({3, 130, 260}, 22), dyadic({3, 260, 199}, 23),
                         24);
    expect_exact_product(k + "transposed views 200x300x140 (exact)", dyadic({300, 200}, 25), dyadic({140, 300}, 26),
                         27, /*transposed=*/true);
    // K = 0: an empty sum, every element 0 (the output comes from the caching allocator unwritten).
    {
      Tensor poison = full({4, 5}, std::nan("")).to(gpu());  // a freed block of the same size ...
      poison = Tensor();                                      // ... that the product may reuse
      expect_exact(k + "K = 0", matmul(zeros({4, 0}).to(gpu()), zeros({0, 5}).to(gpu())), zeros({4, 5}));
    }
  }
}

TEST_CASE("CUDA matmul float64", "[cuda]") {
  const DType f64 = DType::Float64;
  check_op("float64 70x45x131", mm, {randn_leaf({70, 45}, 31, 1.0, f64), randn_leaf({45, 131}, 32, 1.0, f64)});
  check_op("float64 transposed views", [](const auto& in) { return matmul(in[0].t(), in[1].t()); },
           {randn_leaf({45, 70}, 33, 1.0, f64), randn_leaf({131, 45}, 34, 1.0, f64)});
  check_op("float64 batched, both broadcast", mm,
           {randn_leaf({2, 1, 8, 33}, 35, 1.0, f64), randn_leaf({1, 3, 33, 8}, 36, 1.0, f64)});
  expect_exact_product("float64 256x512x128 (exact)", dyadic({256, 512}, 37, f64), dyadic({512, 128}, 38, f64), 39);
}

TEST_CASE("CUDA linear: bias and activation fused in the GEMM's epilogue, forward and backward", "[cuda]") {
  for (const PathCase& pc : kSimtPaths) {
    const PinGemmPath pin(pc.path);
    for (const Activation act : kActivations)
      for (const bool with_bias : {true, false}) {
        const std::string what = std::string(pc.name) + ": linear, " + activation_name(act) +
                                 (with_bias ? ", bias" : ", no bias");
        const Tensor x = randn_leaf({2, 19, 45}, 41), w = randn_leaf({131, 45}, 42, 0.5),
                     b = with_bias ? randn_leaf({131}, 43) : Tensor();
        auto fn = [act](const auto& in) { return linear(in[0], in[1], in[2], act); };
        // Nothing records: the activation runs in the kernel's epilogue (as on the CPU).
        cuda_test::OpOptions forward_only;
        forward_only.backward = false;
        check_op(what + " (fused activation)", fn, {x.detach(), w.detach(), with_bias ? b.detach() : Tensor()},
                 forward_only);
        // Recording: the bias is fused, the activation is its own op; every gradient.
        check_op(what + " (recorded)", fn, {x, w, b});
      }
  }
  const DType f64 = DType::Float64;
  check_op("float64 linear, gelu, bias", [](const auto& in) { return linear(in[0], in[1], in[2], Activation::Gelu); },
           {randn_leaf({37, 45}, 44, 1.0, f64), randn_leaf({23, 45}, 45, 1.0, f64), randn_leaf({23}, 46, 1.0, f64)});
  // in = 0: out = act(bias) in every row.
  const Tensor b0 = randn_leaf({7}, 47).detach();
  expect_close("linear with in = 0: relu(bias)", linear(zeros({5, 0}).to(gpu()), zeros({7, 0}).to(gpu()), b0.to(gpu()),
                                                        Activation::Relu),
               linear(zeros({5, 0}), zeros({7, 0}), b0, Activation::Relu));
}

TEST_CASE("CUDA matmul and linear in TF32 (set_float32_matmul_precision(\"high\"))", "[cuda]") {
  Generator g(51);
  const Tensor a = randn({70, 45}, DType::Float32, g), b = randn({45, 131}, DType::Float32, g);
  const Tensor ref_fp32 = matmul(a, b), ref_tf32 = matmul(tf32_rounded(a), tf32_rounded(b));
  {
    const MatmulPrecisionScope high("high");
    const Tensor out = matmul(a.to(gpu()), b.to(gpu()));
    expect_close("TF32 70x45x131 vs the CPU product of TF32-rounded inputs", out, ref_tf32);
    // The tensor cores are really in use: the inputs' dropped 13 bits move the result far past the
    // float32 tolerance.
    INFO("TF32 result vs the exact float32 product");
    CHECK(!graft_test::close_report(out.cpu(), ref_fp32, graft_test::kTolF32).empty());
    expect_close("TF32 transposed views", matmul(a.t().contiguous().to(gpu()).t(), b.t().contiguous().to(gpu()).t()),
                 ref_tf32);
    Tensor ba = randn({2, 1, 8, 33}, DType::Float32, g), bb = randn({1, 3, 33, 8}, DType::Float32, g);
    expect_close("TF32 batched, both broadcast", matmul(ba.to(gpu()), bb.to(gpu())),
                 matmul(tf32_rounded(ba), tf32_rounded(bb)));
    // Offset views (scalar loads) and the float4 paths, tails in every dim.
    const Tensor wide = randn({96, 68}, DType::Float32, g), rhs = randn({64, 100}, DType::Float32, g);
    expect_close("TF32 offset views", matmul(wide.to(gpu()).slice(1, 1, 65), rhs.to(gpu()).slice(1, 1, 97)),
                 matmul(tf32_rounded(wide.slice(1, 1, 65)), tf32_rounded(rhs.slice(1, 1, 97))));
    // Dyadic inputs are TF32 values already: bit for bit, large shapes, gradients, every layout.
    expect_exact_product("TF32 256x512x128 (exact)", dyadic({256, 512}, 52), dyadic({512, 128}, 53), 54);
    expect_exact_product("TF32 batched 3 x 130x260x199 (exact)", dyadic({3, 130, 260}, 55), dyadic({3, 260, 199}, 56),
                         57);
    expect_exact_product("TF32 transposed views 200x300x140 (exact)", dyadic({300, 200}, 58), dyadic({140, 300}, 59),
                         60, /*transposed=*/true);
    expect_exact("TF32 K = 0", matmul(zeros({4, 0}).to(gpu()), zeros({0, 5}).to(gpu())), zeros({4, 5}));
    // linear: the epilogue adds the (unrounded) bias to the TF32 product and applies the activation.
    const Tensor x = randn({37, 45}, DType::Float32, g), w = randn({23, 45}, DType::Float32, g),
                 bias = randn({23}, DType::Float32, g);
    for (const Activation act : kActivations)
      expect_close(std::string("TF32 linear, ") + activation_name(act),
                   linear(x.to(gpu()), w.to(gpu()), bias.to(gpu()), act),
                   linear(tf32_rounded(x), tf32_rounded(w), bias, act));
    // "medium" takes TF32 too (as PyTorch's CUDA matmul does).
    set_float32_matmul_precision("medium");
    expect_close("\"medium\" is TF32", matmul(a.to(gpu()), b.to(gpu())), ref_tf32);
  }
  // Back to "highest": exact float32 again.
  CHECK(get_float32_matmul_precision() == "highest");
  expect_close("\"highest\" after \"high\": float32", matmul(a.to(gpu()), b.to(gpu())), ref_fp32);
}

TEST_CASE("CUDA matmul and linear in bfloat16 on the tensor cores (mma.m16n8k16), forward and backward", "[cuda]") {
  // Against the CPU's bfloat16 ops (float32 sums, one rounding), within the bfloat16 tolerance.
  // Dyadic inputs (k / 8) make every sum exact in float32 on both sides, so those must agree bit for bit.
  const DType bf = DType::BFloat16;
  auto bf16 = [&](const Tensor& t) { return t.detach().to(bf); };
  for (const auto& [m, n, k] : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {17, 9, 33}, {128, 128, 32}, {130, 257, 70},
                                                                    {300, 200, 512}}) {
    INFO("m " << m << " n " << n << " k " << k);
    const Tensor a = bf16(randn_leaf({m, k}, 71)), b = bf16(randn_leaf({k, n}, 72));
    expect_close("bf16 matmul", matmul(a.to(gpu()), b.to(gpu())), matmul(a, b));
    expect_close("bf16 matmul, transposed operands", matmul(bf16(a.t().contiguous()).to(gpu()).t(), b.to(gpu())),
                 matmul(a, b));
    const Tensor ad = bf16(dyadic({m, k}, 73)), bd = bf16(dyadic({k, n}, 74));  // k / 8: exact in bfloat16 too
    if (k <= 70) expect_exact("bf16 matmul, dyadic inputs", matmul(ad.to(gpu()), bd.to(gpu())), matmul(ad, bd));
  }
  const Tensor ab = bf16(randn_leaf({3, 1, 40, 24}, 75)), bb = bf16(randn_leaf({4, 24, 30}, 76));
  expect_close("bf16 matmul, broadcast batches", matmul(ab.to(gpu()), bb.to(gpu())), matmul(ab, bb));
  for (const Activation act : {Activation::None, Activation::Relu, Activation::Gelu}) {
    const Tensor x = bf16(randn_leaf({2, 19, 45}, 77)), w = bf16(randn_leaf({131, 45}, 78, 0.5)),
                 bias = bf16(randn_leaf({131}, 79));
    NoGradGuard ng;
    expect_close(std::string("bf16 linear, bias, ") + activation_name(act),
                 linear(x.to(gpu()), w.to(gpu()), bias.to(gpu()), act), linear(x, w, bias, act));
  }
  // backward: every gradient in bfloat16, as on the CPU
  const Tensor x = bf16(randn_leaf({33, 45}, 80)).set_requires_grad(), w = bf16(randn_leaf({20, 45}, 81)).set_requires_grad();
  const Tensor xg = x.detach().to(gpu()).set_requires_grad(), wg = w.detach().to(gpu()).set_requires_grad();
  const Tensor g = bf16(randn_leaf({33, 20}, 82));
  const auto cpu = autograd::grad({linear(x, w)}, {x, w}, {g});
  const auto dev = autograd::grad({linear(xg, wg)}, {xg, wg}, {g.to(gpu())});
  expect_close("bf16 linear dx", dev[0], cpu[0]);
  expect_close("bf16 linear dweight", dev[1], cpu[1]);
  // under autocast on the GPU: float32 weights, bfloat16 products, float32 gradients
  const Tensor w32 = randn_leaf({20, 45}, 83).detach().to(gpu()).set_requires_grad();
  Tensor loss;
  {
    AutocastGuard amp(bf, DeviceType::CUDA);
    const Tensor y = linear(randn_leaf({8, 45}, 84).detach().to(gpu()), w32);
    CHECK(y.dtype() == bf);
    loss = sum(y);
  }
  CHECK(loss.dtype() == DType::Float32);
  loss.backward();
  CHECK(w32.grad().dtype() == DType::Float32);
}

TEST_CASE("CUDA matmul and linear in float16 on the tensor cores (mma.m16n8k16), forward and backward", "[cuda]") {
  // The bfloat16 kernel's float16 twin, against the CPU's float16 ops (float32 sums, one rounding).
  const DType h = DType::Float16;
  auto f16 = [&](const Tensor& t) { return t.detach().to(h); };
  for (const auto& [m, n, k] : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {17, 9, 33}, {130, 257, 70}, {300, 200, 512}}) {
    INFO("m " << m << " n " << n << " k " << k);
    const Tensor a = f16(randn_leaf({m, k}, 91)), b = f16(randn_leaf({k, n}, 92));
    expect_close("f16 matmul", matmul(a.to(gpu()), b.to(gpu())), matmul(a, b));
    const Tensor ad = f16(dyadic({m, k}, 93)), bd = f16(dyadic({k, n}, 94));
    if (k <= 70) expect_exact("f16 matmul, dyadic inputs", matmul(ad.to(gpu()), bd.to(gpu())), matmul(ad, bd));
  }
  const Tensor x = f16(randn_leaf({2, 19, 45}, 95)).set_requires_grad(), w = f16(randn_leaf({131, 45}, 96, 0.5)),
               bias = f16(randn_leaf({131}, 97));
  {
    NoGradGuard ng;
    expect_close("f16 linear, bias, gelu", linear(x.to(gpu()), w.to(gpu()), bias.to(gpu()), Activation::Gelu),
                 linear(x, w, bias, Activation::Gelu));
  }
  const Tensor xg = x.detach().to(gpu()).set_requires_grad();
  const Tensor g = f16(randn_leaf({2, 19, 131}, 98));
  const auto cpu = autograd::grad({linear(x, w, bias)}, {x}, {g});
  const auto dev = autograd::grad({linear(xg, w.to(gpu()), bias.to(gpu()))}, {xg}, {g.to(gpu())});
  CHECK(dev[0].dtype() == h);
  expect_close("f16 linear dx", dev[0], cpu[0]);
}

TEST_CASE("CUDA 16-bit matmul and linear: the simple and the pipelined kernel (pinned), both formats", "[cuda]") {
  // Operands k-contiguous (x @ W^T, a @ b^T views), so the pipelined kernel (cp.async, ldmatrix) fits;
  // K a multiple of 8 but not of the 32-deep k step, M and N off the 128 tiles. Each kernel against the
  // CPU op on the same values; dyadic inputs make the sums exact, so the two kernels agree bit for bit.
  using graft::kernels::cuda::gemm_plan::Bf16GemmKernel;
  using graft::kernels::cuda::gemm_plan::forced_bf16_gemm_kernel;
  struct Unpin {
    ~Unpin() { forced_bf16_gemm_kernel = -1; }
  } unpin;
  for (const DType dt : {DType::BFloat16, DType::Float16}) {
    auto cast = [&](const Tensor& t) { return t.detach().to(dt); };
    const Tensor x = cast(randn_leaf({3, 70, 72}, 101)), w = cast(randn_leaf({150, 72}, 102, 0.5));
    const Tensor bias = cast(randn_leaf({150}, 103));
    const Tensor a = cast(randn_leaf({2, 130, 40}, 104)), bt = cast(randn_leaf({2, 257, 40}, 105));
    const Tensor ad = cast(dyadic({131, 64}, 106)), btd = cast(dyadic({129, 64}, 107));
    for (const Bf16GemmKernel k : {Bf16GemmKernel::Simple, Bf16GemmKernel::Pipelined}) {
      INFO(dtype_name(dt) << ", " << graft::kernels::cuda::gemm_plan::bf16_gemm_kernel_name(k));
      forced_bf16_gemm_kernel = int(k);
      NoGradGuard ng;
      expect_close("linear, bias, relu", linear(x.to(gpu()), w.to(gpu()), bias.to(gpu()), Activation::Relu),
                   linear(x, w, bias, Activation::Relu));
      expect_close("batched a @ b^T", matmul(a.to(gpu()), bt.to(gpu()).transpose(-1, -2)), matmul(a, bt.transpose(-1, -2)));
      expect_exact("dyadic a @ b^T", matmul(ad.to(gpu()), btd.to(gpu()).t()), matmul(ad, btd.t()));
      expect_close("an empty product (K = 0)", matmul(cast(zeros({5, 0})).to(gpu()), cast(zeros({0, 7})).to(gpu())),
                   cast(zeros({5, 7})));
    }
  }
}

TEST_CASE("CUDA matmul and linear: bad input throws with the shapes", "[cuda]") {
  const Tensor a = randn({3, 4}).to(gpu()), b = randn({5, 6}).to(gpu());
  CHECK_THROWS_WITH(matmul(a, b), Catch::Contains("cannot be multiplied") && Catch::Contains("[3, 4]"));
  CHECK_THROWS_WITH(matmul(a, randn({4, 2}, DType::Float64).to(gpu())), Catch::Contains("expected equal dtypes"));
  CHECK_THROWS_WITH(matmul(a, randn({4, 2})), Catch::Contains("different devices"));
  CHECK_THROWS_WITH(linear(a, randn({7, 5}).to(gpu())), Catch::Contains("does not match weight"));
  CHECK_THROWS_WITH(linear(a, randn({7, 4}).to(gpu()), randn({6}).to(gpu())), Catch::Contains("bias must have shape [7]"));
  CHECK_THROWS_WITH(matmul(ones({3, 4}, DType::Int64).to(gpu()), ones({4, 2}, DType::Int64).to(gpu())),
                    Catch::Contains("floating-point"));
}
