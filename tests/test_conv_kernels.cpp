// tests/test_conv_kernels.cpp - the fast conv2d kernels (kernels/graft/kernels/cpu/conv2d.hpp) against
// the reference direct loops (include/graft/ops/conv2d.hpp) under every CPU ISA this machine has, on
// shapes with tails (odd channels, H and W that no vector width divides), groups, depthwise 3x3 / 5x5
// at stride 1 and 2 with and without padding, dilation, 1x1 (per image and batched), the ResNet stem;
// forward and both backward passes, outputs poisoned; and results independent of the thread count.
//
// Tolerance: kTolF32 between the float32 kernel and the float64 reference run on the same float32
// values. Inputs are uniform in [-1, 1), weights scaled by 1 / sqrt(Cg KH KW) and dout by
// 1 / sqrt(N OH OW), as a network's are, so sums of a few thousand terms stay O(1).
#include <cmath>
#include <cstring>

#include "harness.hpp"

using namespace graft;
using namespace graft_test;

namespace {

struct KernelCase {
  Shape x, w;
  Conv2dParams p;
  const char* what;
};

// Uniform in [-scale, scale), float32.
Tensor uniform_f32(const Shape& s, double scale, Generator& gen) {
  return sub(mul(rand(s, DType::Float64, gen), 2.0 * scale), scale).to(DType::Float32);
}

Tensor reference_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p) {
  const Tensor x64 = x.to(DType::Float64), w64 = w.to(DType::Float64), b64 = b.to(DType::Float64);
  const Conv2dGeometry g = conv2d_geometry(x.shape(), w.shape(), p);
  Tensor out = empty({g.N, g.O, g.OH, g.OW}, DType::Float64);
  kernels::cpu::conv2d_forward_reference<double>(out.data<double>(), x64.data<double>(), w64.data<double>(),
                                                 b64.data<double>(), g);
  return out;
}

// {dx, dw0 + dw, db0 + db} from the reference loops in float64.
std::vector<Tensor> reference_backward(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& dw0,
                                       const Tensor& db0, const Conv2dParams& p) {
  const Tensor x64 = x.to(DType::Float64), w64 = w.to(DType::Float64), d64 = dout.to(DType::Float64);
  const Conv2dGeometry g = conv2d_geometry(x.shape(), w.shape(), p);
  Tensor dx = empty(x.shape(), DType::Float64), dw = dw0.to(DType::Float64).clone(), db = db0.to(DType::Float64).clone();
  kernels::cpu::conv2d_backward_reference<double>(dx.data<double>(), dw.data<double>(), db.data<double>(),
                                                  d64.data<double>(), x64.data<double>(), w64.data<double>(), g);
  return {dx, dw, db};
}

const std::vector<KernelCase> kKernelCases = {
    {{1, 3, 17, 19}, {5, 3, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}, "3x3 pad 1, odd sizes"},
    {{2, 7, 23, 18}, {11, 7, 3, 3}, {{2, 2}, {1, 1}, {1, 1}, 1}, "3x3 stride 2"},
    {{1, 3, 45, 47}, {20, 3, 7, 7}, {{2, 2}, {3, 3}, {1, 1}, 1}, "7x7 stride 2 pad 3 (ResNet stem)"},
    {{1, 37, 30, 29}, {130, 37, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}, "130 outputs: two row tiles, many column tiles"},
    {{2, 6, 15, 13}, {9, 2, 3, 3}, {{2, 1}, {1, 0}, {1, 1}, 3}, "groups 3, stride (2, 1)"},
    {{1, 5, 21, 22}, {6, 5, 3, 2}, {{1, 2}, {2, 1}, {2, 3}, 1}, "dilation (2, 3), uneven padding"},
    {{3, 1, 20, 21}, {8, 1, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}, "one input channel (Cg = 1, G = 1)"},
    {{2, 17, 33, 35}, {17, 1, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 17}, "depthwise 3x3 stride 1 pad 1"},
    {{1, 19, 34, 31}, {19, 1, 3, 3}, {{2, 2}, {1, 1}, {1, 1}, 19}, "depthwise 3x3 stride 2 pad 1"},
    {{2, 13, 18, 17}, {13, 1, 3, 3}, {{2, 2}, {0, 0}, {1, 1}, 13}, "depthwise 3x3 stride 2 no padding"},
    {{2, 7, 29, 30}, {7, 1, 5, 5}, {{1, 1}, {2, 2}, {1, 1}, 7}, "depthwise 5x5 stride 1 pad 2"},
    {{1, 9, 34, 37}, {9, 1, 5, 5}, {{2, 2}, {2, 2}, {1, 1}, 9}, "depthwise 5x5 stride 2 pad 2"},
    {{1, 11, 15, 16}, {11, 1, 5, 5}, {{2, 2}, {0, 0}, {1, 1}, 11}, "depthwise 5x5 stride 2 no padding (TF SAME)"},
    {{2, 6, 19, 20}, {12, 1, 3, 3}, {{1, 1}, {2, 2}, {2, 2}, 6}, "depthwise multiplier 2, dilation 2"},
    {{1, 5, 12, 50}, {5, 1, 3, 5}, {{3, 2}, {1, 2}, {1, 1}, 5}, "depthwise 3x5, stride (3, 2)"},
    {{1, 3, 12, 12}, {3, 1, 9, 9}, {{1, 1}, {4, 4}, {1, 1}, 3}, "depthwise 9x9 (more taps than the fast kernel's)"},
    {{2, 33, 20, 19}, {100, 33, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 1}, "1x1 per image (L = 380)"},
    {{5, 40, 7, 7}, {24, 40, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 1}, "1x1 batched (L = 49)"},
    {{1, 40, 7, 7}, {24, 40, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 1}, "1x1 per image at batch 1 (L = 49)"},
    {{3, 36, 1, 1}, {20, 36, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 1}, "1x1 on a 1x1 map"},
    {{2, 33, 21, 19}, {17, 33, 1, 1}, {{2, 2}, {0, 0}, {1, 1}, 1}, "1x1 stride 2 (ResNet downsample)"},
    {{1, 8, 9, 9}, {16, 2, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 4}, "grouped 1x1"},
};

// Random shapes: any channel counts, groups, kernel, stride, padding, dilation that give an output.
std::vector<KernelCase> random_cases(int count, uint64_t seed) {
  Generator gen(seed);
  auto pick = [&](int64_t lo, int64_t hi) {  // uniform in [lo, hi]
    return lo + std::min<int64_t>(hi - lo, int64_t(rand({1}, DType::Float64, gen).item<double>() * double(hi - lo + 1)));
  };
  std::vector<KernelCase> cases;
  while (int(cases.size()) < count) {
    const bool depthwise = pick(0, 2) == 0;
    const int64_t G = depthwise ? pick(1, 24) : pick(1, 3);
    const int64_t Cg = depthwise ? 1 : pick(1, 9), Og = depthwise ? pick(1, 2) : pick(1, 40);
    const int64_t KH = pick(1, 5), KW = pick(1, 5), s = pick(1, 2), ph = pick(0, KH / 2), pw = pick(0, KW / 2);
    const int64_t dil = pick(0, 3) == 0 ? 2 : 1;
    const int64_t N = pick(1, 3), H = pick(1, 40), W = pick(1, 40);
    if ((KH - 1) * dil + 1 > H + 2 * ph || (KW - 1) * dil + 1 > W + 2 * pw) continue;
    cases.push_back({{N, G * Cg, H, W}, {G * Og, Cg, KH, KW}, {{s, pick(1, 2)}, {ph, pw}, {dil, dil}, G}, "random"});
  }
  return cases;
}

void check_case(const KernelCase& c, Generator& gen) {
  const Conv2dGeometry g = conv2d_geometry(c.x, c.w, c.p);
  INFO(c.what << ": x " << c.x << " w " << c.w << " stride {" << c.p.stride[0] << ", " << c.p.stride[1]
              << "} padding {" << c.p.padding[0] << ", " << c.p.padding[1] << "} dilation {" << c.p.dilation[0]
              << ", " << c.p.dilation[1] << "} groups " << c.p.groups);
  const Tensor x = uniform_f32(c.x, 1.0, gen);
  const Tensor w = uniform_f32(c.w, 1.0 / std::sqrt(double(g.R)), gen);
  const Tensor b = uniform_f32({g.O}, 1.0, gen);
  Tensor out = empty({g.N, g.O, g.OH, g.OW});
  poison(out);
  conv2d_kernel.cpu(out, x, w, b, c.p);
  GRAFT_REQUIRE_CLOSE(out, reference_forward(x, w, b, c.p), kTolF32);
  Tensor out_nobias = empty(out.shape());
  poison(out_nobias);
  conv2d_kernel.cpu(out_nobias, x, w, Tensor(), c.p);
  GRAFT_REQUIRE_CLOSE(out_nobias, reference_forward(x, w, zeros({g.O}), c.p), kTolF32);

  const Tensor dout = uniform_f32(out.shape(), 1.0 / std::sqrt(double(g.N * g.L)), gen);
  const Tensor dw0 = uniform_f32(c.w, 1.0, gen), db0 = uniform_f32({g.O}, 1.0, gen);  // accumulated into
  const auto refs = reference_backward(dout, x, w, dw0, db0, c.p);
  Tensor dx = empty(c.x), dw = dw0.clone(), db = db0.clone();
  poison(dx);
  conv2d_backward_kernel.cpu(dx, dw, db, dout, x, w, c.x, c.w, c.p);
  GRAFT_REQUIRE_CLOSE(dx, refs[0], kTolF32);
  GRAFT_REQUIRE_CLOSE(dw, refs[1], kTolF32);
  GRAFT_REQUIRE_CLOSE(db, refs[2], kTolF32);
  // Each gradient alone (x or weight undefined, as the autograd node passes them).
  Tensor dx_only = empty(c.x);
  poison(dx_only);
  conv2d_backward_kernel.cpu(dx_only, Tensor(), Tensor(), dout, Tensor(), w, c.x, c.w, c.p);
  GRAFT_REQUIRE_CLOSE(dx_only, refs[0], kTolF32);
  Tensor dw_only = dw0.clone();
  conv2d_backward_kernel.cpu(Tensor(), dw_only, Tensor(), dout, x, Tensor(), c.x, c.w, c.p);
  GRAFT_REQUIRE_CLOSE(dw_only, refs[1], kTolF32);
}

}  // namespace

TEST_CASE("conv2d fast kernels match the reference loops on shapes with tails, every ISA", "[conv2d][kernels]") {
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    Generator gen(11);
    for (const KernelCase& c : kKernelCases) check_case(c, gen);
  });
}

TEST_CASE("conv2d fast kernels match the reference loops on random shapes, every ISA", "[conv2d][kernels]") {
  const std::vector<KernelCase> cases = random_cases(40, 5);
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    Generator gen(12);
    for (const KernelCase& c : cases) check_case(c, gen);
  });
}

TEST_CASE("conv2d fast kernels give the same bits on 1 and 3 threads", "[conv2d][kernels]") {
  const int saved = get_num_threads();
  struct RestoreThreads {
    int n;
    ~RestoreThreads() { set_num_threads(n); }
  } restore{saved};
  const std::vector<KernelCase> cases = {
      {{1, 37, 30, 29}, {130, 37, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}, "tiled GEMM, batch 1"},
      {{3, 16, 12, 12}, {24, 16, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}, "small: one (image, group) per task"},
      {{2, 24, 33, 31}, {24, 1, 5, 5}, {{2, 2}, {2, 2}, {1, 1}, 24}, "depthwise"},
      {{4, 64, 6, 6}, {96, 64, 1, 1}, {{1, 1}, {0, 0}, {1, 1}, 1}, "batched 1x1"},
  };
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    for (const KernelCase& c : cases) {
      INFO(c.what);
      Generator gen(3);
      const Conv2dGeometry g = conv2d_geometry(c.x, c.w, c.p);
      const Tensor x = uniform_f32(c.x, 1.0, gen), w = uniform_f32(c.w, 0.2, gen), b = uniform_f32({g.O}, 1.0, gen);
      const Tensor dout = uniform_f32({g.N, g.O, g.OH, g.OW}, 0.1, gen);
      std::vector<Tensor> results[2];
      for (int run = 0; run < 2; ++run) {
        set_num_threads(run == 0 ? 1 : 3);
        Tensor out = empty(dout.shape()), dx = empty(c.x), dw = zeros(c.w), db = zeros({g.O});
        conv2d_kernel.cpu(out, x, w, b, c.p);
        conv2d_backward_kernel.cpu(dx, dw, db, dout, x, w, c.x, c.w, c.p);
        results[run] = {out, dx, dw, db};
      }
      for (size_t i = 0; i < 4; ++i) CHECK(same_bits(results[0][i], results[1][i]));
    }
  });
}

TEST_CASE("conv2d forward packs the GEMM's panels from the image with the bits of im2col then gemm",
          "[conv2d][kernels]") {
  // The implicit GEMM (Im2colPacker) against cols written out by plain loops and the same ISA's gemm
  // with the bias epilogue: the packing must place every element, zero included, where packing the
  // materialized cols would.
  std::vector<KernelCase> cases(kKernelCases.begin(), kKernelCases.begin() + 6);  // the im2col ones (Cg > 1, not 1x1)
  cases.push_back({{2, 64, 20, 21}, {64, 64, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}, "64 channels: b packed by gemm too"});
  cases.push_back({{1, 8, 40, 9}, {50, 8, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}, "L = 360: panels span output rows"});
  for_each_cpu_isa([&](kernels::cpu::CpuIsa isa) {
    if (isa == kernels::cpu::CpuIsa::Scalar) return;  // the scalar path is the float64 reference
    for (const KernelCase& c : cases) {
      INFO(c.what);
      Generator gen(21);
      const Conv2dGeometry g = conv2d_geometry(c.x, c.w, c.p);
      const Tensor x = uniform_f32(c.x, 1.0, gen), w = uniform_f32(c.w, 0.2, gen), b = uniform_f32({g.O}, 1.0, gen);
      Tensor out = empty({g.N, g.O, g.OH, g.OW});
      conv2d_kernel.cpu(out, x, w, b, c.p);
      std::vector<float> expected(size_t(g.N * g.O * g.L)), cols(size_t(g.R * g.L));
      const float *xs = x.data<float>(), *ws = w.data<float>(), *bs = b.data<float>();
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t grp = 0; grp < g.G; ++grp) {
          for (int64_t r = 0; r < g.R; ++r)
            for (int64_t l = 0; l < g.L; ++l) {
              const int64_t ch = r / (g.KH * g.KW), kh = (r / g.KW) % g.KH, kw = r % g.KW;
              const int64_t ih = l / g.OW * g.sh - g.ph + kh * g.dh, iw = l % g.OW * g.sw - g.pw + kw * g.dw;
              const bool inside = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
              cols[size_t(r * g.L + l)] = inside ? xs[((n * g.C + grp * g.Cg + ch) * g.H + ih) * g.W + iw] : 0.0f;
            }
          kernels::cpu::GemmEpilogue<float> ep;
          ep.bias = bs + grp * g.Og;
          ep.bias_per_row = true;
          kernels::cpu::gemm<float>(g.Og, g.L, g.R, ws + grp * g.Og * g.R, g.R, 1, cols.data(), g.L, 1,
                                    expected.data() + (n * g.O + grp * g.Og) * g.L, g.L, false, &ep);
        }
      CHECK(std::memcmp(out.data<float>(), expected.data(), expected.size() * sizeof(float)) == 0);
    }
  });
}

TEST_CASE("conv2d slot declares its fast ISAs", "[conv2d][kernels]") {
  CHECK(kernel_slot_registry().at("conv2d").cpu_fast == "avx2 avx512");
  CHECK(kernel_slot_registry().at("conv2d_backward").cpu_fast == "avx2 avx512");
}
