// tests/test_cuda_conv_host.cpp - the index math of the CUDA convolution kernels
// (kernels/graft/kernels/cuda/conv2d_plan.hpp), checked on the CPU: no GPU and no CUDA header needed.
//   FastDivmod           against / and % over many divisors and numerators up to 2^31 - 1
//   conv2d_dx_taps       against a brute-force search over the taps
//   the three GEMMs      emulated on the host with the kernels' own decoding (im2col_column / _row /
//                        _offset, the dx phases with dx_column / dx_tap, the split-K chunks of the
//                        weight gradient), in float64, against the reference loops of
//                        graft/ops/conv2d.hpp; every dx element written by exactly one phase
// The emulations loop the way a thread block's tile does (group, column p, row m, reduction k), so a
// wrong decode or a missed phase fails here; what only a GPU can check (the tiling, shared memory,
// synchronization) is in tests/cuda/test_cuda_conv.cpp.
#include <cmath>
#include <vector>

#include "graft/kernels/cuda/conv2d_plan.hpp"
#include "graft/kernels/cuda/gemm_plan.hpp"
#include "harness.hpp"

using namespace graft;
using namespace graft_test;

// A named namespace (the suite is a unity build): nothing here leaks into the other test files.
namespace conv_host_test {
using kernels::cuda::Conv2dDims;
using kernels::cuda::Conv2dDxPhase;
using kernels::cuda::FastDivmod;

struct Case {
  Shape x, w;
  Conv2dParams p;
};

// ResNet / EfficientNet-like layers at small sizes, and the corners: stride above the kernel and above
// the input, dilation with stride, groups, 1x1 stride 2, uneven padding.
const std::vector<Case> kCases = {
    {{2, 3, 13, 11}, {5, 3, 7, 7}, {{2, 2}, {3, 3}, {1, 1}, 1}},
    {{1, 6, 9, 10}, {4, 6, 3, 3}, {{1, 1}, {1, 1}, {1, 1}, 1}},
    {{2, 5, 9, 8}, {7, 5, 3, 3}, {{2, 2}, {1, 1}, {1, 1}, 1}},
    {{2, 4, 9, 7}, {6, 4, 1, 1}, {{2, 2}, {0, 0}, {1, 1}, 1}},
    {{1, 4, 11, 12}, {6, 2, 3, 3}, {{1, 1}, {2, 2}, {2, 2}, 2}},
    {{1, 3, 12, 13}, {2, 3, 3, 2}, {{3, 2}, {1, 0}, {2, 3}, 1}},
    {{1, 2, 7, 6}, {3, 2, 2, 2}, {{4, 5}, {1, 2}, {1, 1}, 1}},    // stride above the kernel: untouched rows
    {{1, 2, 3, 3}, {2, 2, 3, 3}, {{5, 4}, {1, 1}, {1, 1}, 1}},    // stride above the input
    {{2, 6, 10, 9}, {6, 2, 3, 3}, {{2, 2}, {2, 2}, {2, 2}, 3}},   // dilation 2 with stride 2, groups 3
    {{1, 17, 8, 9}, {5, 17, 3, 3}, {{2, 1}, {1, 1}, {1, 1}, 1}},
};

Conv2dGeometry geometry(const Case& c) { return conv2d_geometry(c.x, c.w, c.p); }

std::string describe(const Case& c) {
  std::ostringstream os;
  os << "x " << c.x << " w " << c.w << " stride {" << c.p.stride[0] << ", " << c.p.stride[1] << "} padding {"
     << c.p.padding[0] << ", " << c.p.padding[1] << "} dilation {" << c.p.dilation[0] << ", " << c.p.dilation[1]
     << "} groups " << c.p.groups;
  return os.str();
}

// forward_gemm's sums: out[n, g Og + o, l] = bias + sum over r of w_g[o, r] cols_g[r, p].
std::vector<double> emulate_forward(const Conv2dGeometry& g, const double* x, const double* w, const double* b) {
  const Conv2dDims d = kernels::cuda::conv2d_dims(g);
  std::vector<double> out(size_t(g.N * g.O * g.L), std::nan(""));
  for (int grp = 0; grp < d.G; ++grp)
    for (int p = 0; p < d.N * d.L; ++p) {
      const auto col = kernels::cuda::im2col_column(d, p);
      const double* x_img = x + (int64_t(col.n) * d.C + int64_t(grp) * d.Cg) * d.H * d.W;
      int n, l;
      d.by_l.divmod(p, n, l);
      for (int o = 0; o < d.Og; ++o) {
        double acc = 0;
        for (int r = 0; r < d.R; ++r) {
          const int64_t at = kernels::cuda::im2col_offset(d, kernels::cuda::im2col_row(d, r), col.ih0, col.iw0);
          if (at >= 0) acc += w[(int64_t(grp) * d.Og + o) * d.R + r] * x_img[at];
        }
        const int oc = grp * d.Og + o;
        out[size_t((int64_t(n) * d.O + oc) * d.L + l)] = acc + b[oc];
      }
    }
  return out;
}

// dx_gemm's sums, phase by phase; writes[e] counts the writes of dx element e.
std::vector<double> emulate_dx(const Conv2dGeometry& g, const double* dout, const double* w, std::vector<int>& writes) {
  const Conv2dDims d = kernels::cuda::conv2d_dims(g);
  std::vector<double> dx(size_t(g.N * g.C * g.H * g.W), std::nan(""));
  writes.assign(dx.size(), 0);
  for (int rh = 0; rh < d.sh; ++rh)
    for (int rw = 0; rw < d.sw; ++rw) {
      const Conv2dDxPhase f = kernels::cuda::conv2d_dx_phase(g, rh, rw);
      for (int grp = 0; grp < d.G; ++grp)
        for (int p = 0; p < d.N * f.Hr * f.Wr; ++p) {
          const auto col = kernels::cuda::dx_column(f, p);
          const double* dout_img = dout + (int64_t(col.n) * d.O + int64_t(grp) * d.Og) * d.L;
          for (int c = 0; c < d.Cg; ++c) {
            double acc = 0;
            for (int q = 0; q < f.K; ++q) {
              const auto tap = kernels::cuda::dx_tap(f, q);
              REQUIRE(tap.o < d.Og);
              REQUIRE((tap.kh >= 0 && tap.kh < d.KH && tap.kw >= 0 && tap.kw < d.KW));
              const int oh = col.i + tap.doh, ow = col.j + tap.dow;
              if (oh < 0 || oh >= d.OH || ow < 0 || ow >= d.OW) continue;
              const double wv = w[((int64_t(grp) * d.Og + tap.o) * d.Cg + c) * d.KH * d.KW + tap.kh * d.KW + tap.kw];
              acc += wv * dout_img[int64_t(tap.o) * d.L + oh * d.OW + ow];
            }
            const int ih = f.rh + d.sh * col.i, iw = f.rw + d.sw * col.j;
            const size_t e = size_t(((int64_t(col.n) * d.C + int64_t(grp) * d.Cg + c) * d.H + ih) * d.W + iw);
            dx[e] = acc;
            ++writes[e];
          }
        }
    }
  return dx;
}

// dweight_gemm's sums over the chunks of a split, then add_partials.
std::vector<double> emulate_dweight(const Conv2dGeometry& g, const double* dout, const double* x,
                                    kernels::cuda::Conv2dSplit split) {
  const Conv2dDims d = kernels::cuda::conv2d_dims(g);
  const int64_t OR = g.O * g.R, P = g.N * g.L;
  std::vector<double> partial(size_t(split.splits * OR), std::nan(""));
  for (int z = 0; z < split.splits; ++z) {
    const int k_begin = z * split.chunk, k_end = int(std::min<int64_t>(P, k_begin + split.chunk));
    for (int grp = 0; grp < d.G; ++grp)
      for (int o = 0; o < d.Og; ++o)
        for (int r = 0; r < d.R; ++r) {
          const auto row = kernels::cuda::im2col_row(d, r);
          double acc = 0;
          for (int p = k_begin; p < k_end; ++p) {
            const auto col = kernels::cuda::im2col_column(d, p);
            const int l = p - col.n * d.L;
            const int64_t at = kernels::cuda::im2col_offset(d, row, col.ih0, col.iw0);
            if (at < 0) continue;
            acc += dout[(int64_t(col.n) * d.O + int64_t(grp) * d.Og + o) * d.L + l] *
                   x[(int64_t(col.n) * d.C + int64_t(grp) * d.Cg) * d.H * d.W + at];
          }
          partial[size_t(z * OR + (int64_t(grp) * d.Og + o) * d.R + r)] = acc;
        }
  }
  std::vector<double> dw(size_t(OR), 0.0);
  for (int64_t e = 0; e < OR; ++e)
    for (int z = 0; z < split.splits; ++z) dw[size_t(e)] += partial[size_t(z * OR + e)];
  return dw;
}

Tensor as_tensor(const std::vector<double>& v, const Shape& s) {
  Tensor t = empty(s, DType::Float64);
  std::copy(v.begin(), v.end(), t.data<double>());
  return t;
}


TEST_CASE("cuda conv2d plan: FastDivmod equals / and %", "[cuda_host][conv2d]") {
  std::vector<int32_t> divisors;
  for (int32_t d = 1; d <= 1100; ++d) divisors.push_back(d);
  for (int64_t k = 11; k <= 30; ++k)
    for (int64_t delta : {-1, 0, 1}) divisors.push_back(int32_t((int64_t(1) << k) + delta));
  for (int32_t d : {3136, 12544, 50176, 802816, 1000003, 2147483647}) divisors.push_back(d);
  for (int32_t d : divisors) {
    const FastDivmod f(d);
    auto check = [&](int64_t n64) {
      if (n64 < 0 || n64 > 2147483647) return;
      const int32_t n = int32_t(n64);
      int32_t q, r;
      f.divmod(n, q, r);
      if (q != n / d || r != n % d) FAIL("FastDivmod(" << d << "): " << n << " -> " << q << ", " << r);
    };
    for (int64_t n = 0; n < 3000; ++n) check(n);
    for (int64_t m = 1; m < 2147483647 / d && m < 4000; m = m * 3 + 1)
      for (int64_t delta : {-1, 0, 1}) check(m * d + delta);
    for (int64_t top = 2147483647; top > 2147483647 - 3000; --top) check(top);
  }
  SUCCEED("every divisor");
}

TEST_CASE("cuda conv2d plan: conv2d_dx_taps lists exactly the taps that reach a phase", "[cuda_host][conv2d]") {
  for (int64_t s = 1; s <= 6; ++s)
    for (int64_t dil = 1; dil <= 5; ++dil)
      for (int64_t pad = 0; pad <= 5; ++pad)
        for (int64_t K = 1; K <= 8; ++K)
          for (int64_t r = 0; r < s; ++r) {
            INFO("stride " << s << " dilation " << dil << " pad " << pad << " K " << K << " residue " << r);
            const auto t = kernels::cuda::conv2d_dx_taps(r, pad, dil, s, K);
            std::vector<int64_t> want;
            for (int64_t k = 0; k < K; ++k)
              if (((r + pad - k * dil) % s + s) % s == 0) want.push_back(k);
            REQUIRE(int64_t(t.count) == int64_t(want.size()));
            for (int64_t i = 0; i < t.count; ++i) {
              const int64_t k = t.first + i * t.step;
              REQUIRE(k == want[size_t(i)]);
              // input r + s j reads output j + offset through tap k: (j + offset) s - pad + k dil = r + s j
              const int64_t offset = t.offset0 - i * t.offset_step;
              REQUIRE(offset * s - pad + k * dil == r);
            }
          }
}

TEST_CASE("cuda conv2d plan: split-K chunks cover the reduction once", "[cuda_host][conv2d]") {
  for (int64_t tiles : {1, 3, 9, 100, 528, 5000})
    for (int64_t K : {1, 15, 16, 17, 511, 512, 513, 4096, 200704, 802816})
      for (int64_t target : {1, 100, 528}) {
        INFO("tiles " << tiles << " K " << K << " target " << target);
        const auto s = kernels::cuda::conv2d_split_k(tiles, K, 16, 512, target, 64);
        REQUIRE(s.splits >= 1);
        REQUIRE(s.splits <= 64);
        REQUIRE(s.chunk % 16 == 0);
        REQUIRE(s.chunk >= 512);
        REQUIRE(int64_t(s.splits - 1) * s.chunk < K);
        REQUIRE(int64_t(s.splits) * s.chunk >= K);
        if (tiles >= target) REQUIRE(s.splits == 1);
      }
}

TEST_CASE("cuda conv2d plan: the emulated implicit GEMMs equal the reference loops", "[cuda_host][conv2d]") {
  Generator gen(5);
  for (const Case& c : kCases) {
    INFO(describe(c));
    const Conv2dGeometry g = geometry(c);
    REQUIRE(kernels::cuda::conv2d_fits_int32(g));
    const Tensor x = randn(c.x, DType::Float64, gen), w = randn(c.w, DType::Float64, gen);
    const Tensor b = randn({g.O}, DType::Float64, gen);
    const Shape out_shape{g.N, g.O, g.OH, g.OW};
    const Tensor dout = randn(out_shape, DType::Float64, gen);

    Tensor ref_out = empty(out_shape, DType::Float64);
    kernels::cpu::conv2d_forward_reference<double>(ref_out.data<double>(), x.data<double>(), w.data<double>(),
                                                   b.data<double>(), g);
    const Tensor out = as_tensor(emulate_forward(g, x.data<double>(), w.data<double>(), b.data<double>()), out_shape);
    GRAFT_REQUIRE_CLOSE(out, ref_out, kTolF64);

    Tensor ref_dx = empty(c.x, DType::Float64), ref_dw = zeros(c.w, DType::Float64);
    kernels::cpu::conv2d_backward_reference<double>(ref_dx.data<double>(), ref_dw.data<double>(), nullptr,
                                                    dout.data<double>(), x.data<double>(), w.data<double>(), g);
    std::vector<int> writes;
    const Tensor dx = as_tensor(emulate_dx(g, dout.data<double>(), w.data<double>(), writes), c.x);
    for (size_t e = 0; e < writes.size(); ++e)
      if (writes[e] != 1) FAIL("dx element " << e << " written " << writes[e] << " times by the phases");
    GRAFT_REQUIRE_CLOSE(dx, ref_dx, kTolF64);

    // One chunk, and chunks of 16 positions (as many splits as the reduction allows).
    for (int64_t min_chunk : {int64_t(1) << 30, int64_t(16)}) {
      const auto split = kernels::cuda::conv2d_split_k(1, g.N * g.L, 16, min_chunk, 1 << 20, 1 << 20);
      INFO("splits " << split.splits << " of " << split.chunk);
      const Tensor dw = as_tensor(emulate_dweight(g, dout.data<double>(), x.data<double>(), split), c.w);
      GRAFT_REQUIRE_CLOSE(dw, ref_dw, kTolF64);
    }
  }
}

}  // namespace conv_host_test

TEST_CASE("cuda conv2d plan: the 16-bit tensor-core tiles: warps cover the block tile, fragment reads conflict-free",
          "[cuda_host][conv2d]") {
  using namespace kernels::cuda;
  using namespace kernels::cuda::gemm_plan;
  // 8 warps of 16 x 32 (four m16n8 tiles each) cover the 64 x 64 tile once
  std::vector<int> hits(size_t(kConvTile * kConvTile), 0);
  for (int warp = 0; warp < 8; ++warp)
    for (int lane = 0; lane < 32; ++lane)
      for (int j = 0; j < 4; ++j)
        for (int r = 0; r < 4; ++r)
          ++hits[size_t((mma16_warp_row0(warp) + mma_c_row(lane, r)) * kConvTile + mma16_warp_col0(warp) + 8 * j +
                        mma_c_col(lane, r))];
  for (int h : hits) REQUIRE(h == 1);
  // [outer][k] rows of kLd16 halves: one k step is one m16n8k16 step; every register is an aligned word
  // and the 32 lanes of one register read 32 distinct banks, for every warp's rows and columns
  REQUIRE(kConvStep == 16);
  REQUIRE(kLd16 % 2 == 0);
  for (int warp = 0; warp < 8; ++warp) {
    for (int r = 0; r < 4; ++r) {
      std::vector<int> banks(32, 0);
      for (int lane = 0; lane < 32; ++lane) {
        const int half = (mma16_warp_row0(warp) + bf16_mma_a_row(lane, r)) * kLd16 + bf16_mma_a_col(lane, r);
        REQUIRE(half % 2 == 0);
        ++banks[size_t(half / 2 % 32)];
      }
      for (int b : banks) CHECK(b == 1);
    }
    for (int j = 0; j < 4; ++j)
      for (int r = 0; r < 2; ++r) {
        std::vector<int> banks(32, 0);
        for (int lane = 0; lane < 32; ++lane) {
          const int half = (mma16_warp_col0(warp) + 8 * j + mma_b_col(lane)) * kLd16 + bf16_mma_b_row(lane, r);
          REQUIRE(half % 2 == 0);
          ++banks[size_t(half / 2 % 32)];
        }
        for (int b : banks) CHECK(b == 1);
      }
  }
}
