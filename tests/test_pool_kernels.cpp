// The fast float32 pooling kernels (kernels/graft/kernels/cpu/pool.hpp) through the CPU entries of
// the pooling KernelSlots, against the references in include/graft/ops/pool.hpp, under every CPU
// ISA this machine has (scalar runs the reference itself, avx2 and avx512 the fast bodies). Shapes
// with tails (widths 1, 7, 17, 33, 100, 1000), strides, padding, dilation, ceil_mode,
// count_include_pad; outputs poisoned with NaN before each call; max pooling with ties, NaN and
// -inf inputs must give the reference's values and indices exactly; results must not depend on the
// thread count.
#include <cstring>

#include "harness.hpp"

using namespace graft;
using namespace graft_test;

// A named namespace around the whole file, test cases included: the suite is a unity build, and a
// using-directive would clash with other files' helpers of the same name.
namespace pool_kernels_test {

Tensor poisoned(const Shape& s) {
  Tensor t = empty(s, DType::Float32);
  poison(t);
  return t;
}
Tensor poisoned_indices(const Shape& s) {
  Tensor t = empty(s, DType::Int64);
  std::fill(t.data<int64_t>(), t.data<int64_t>() + t.numel(), int64_t(-7));
  return t;
}

// "" when actual equals expected element by element (NaN where and only where expected is NaN).
std::string exact_report(const Tensor& actual, const Tensor& expected) {
  if (actual.shape() != expected.shape()) return "shape " + actual.shape().str() + " != " + expected.shape().str();
  const float* a = actual.data<float>();
  const float* e = expected.data<float>();
  for (int64_t i = 0; i < actual.numel(); ++i)
    if (!(a[i] == e[i] || (std::isnan(a[i]) && std::isnan(e[i]))))
      return "element " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs expected " + std::to_string(e[i]);
  return "";
}
std::string index_report(const Tensor& actual, const Tensor& expected) {
  const int64_t* a = actual.data<int64_t>();
  const int64_t* e = expected.data<int64_t>();
  for (int64_t i = 0; i < actual.numel(); ++i)
    if (a[i] != e[i])
      return "index " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs expected " + std::to_string(e[i]);
  return "";
}
#define POOL_REQUIRE_EMPTY(report_expr) \
  do {                                  \
    const std::string report_ = report_expr; \
    INFO(report_);                      \
    REQUIRE(report_.empty());           \
  } while (0)


Shape pool_out_shape(const Shape& x, const Pool2dParams& p) { return detail_pool::check_pool_args("test", x, p); }

// Random input in [-2, 2); with `ties`, rounded to quarters so windows hold equal maxima; with
// `specials`, every 7th element NaN and every 11th -inf, and plane 0 all -inf.
Tensor pool_input(const Shape& s, uint64_t seed, bool ties, bool specials) {
  Tensor x = rand_in(s, -2.0, 2.0, seed, DType::Float32);
  float* p = x.data<float>();
  const int64_t plane = s[2] * s[3];
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (ties) p[i] = std::round(p[i] * 4.0f) / 4.0f;
    if (specials) {
      if (i < plane || i % 11 == 3) p[i] = -std::numeric_limits<float>::infinity();
      if (i % 7 == 2 && i >= plane) p[i] = std::numeric_limits<float>::quiet_NaN();
    }
  }
  return x;
}

// max_pool2d forward (values and indices exact), backward (exact: same scatter order) and gather.
void check_max_pool(const Shape& xs, const Pool2dParams& p, uint64_t seed) {
  const Shape os = pool_out_shape(xs, p);
  INFO("x " << xs << " kernel {" << p.kernel[0] << ", " << p.kernel[1] << "} stride {" << p.stride[0] << ", "
            << p.stride[1] << "} padding {" << p.padding[0] << ", " << p.padding[1] << "} dilation {" << p.dilation[0]
            << ", " << p.dilation[1] << "} ceil_mode " << p.ceil_mode);
  for (int variant = 0; variant < 3; ++variant) {
    INFO("input variant " << variant << " (0 random, 1 ties, 2 ties with NaN and -inf)");
    const Tensor x = pool_input(xs, seed + uint64_t(variant), variant >= 1, variant == 2);
    Tensor ref = poisoned(os), ref_idx = poisoned_indices(os);
    kernels::cpu::max_pool2d_forward_reference(ref, ref_idx, x, p);
    const Tensor dout = rand_in(os, -1.0, 1.0, seed + 10, DType::Float32);
    Tensor ref_dx = poisoned(xs);
    kernels::cpu::max_pool2d_backward_reference(ref_dx, dout, ref_idx);
    const Tensor src = rand_in(xs, -1.0, 1.0, seed + 11, DType::Float32);
    Tensor ref_g = poisoned(os);
    kernels::cpu::max_pool2d_gather_reference(ref_g, src, ref_idx);
    for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
      Tensor out = poisoned(os), idx = poisoned_indices(os);
      max_pool2d_kernel.cpu(out, idx, x, p);
      POOL_REQUIRE_EMPTY(exact_report(out, ref));
      POOL_REQUIRE_EMPTY(index_report(idx, ref_idx));
      Tensor dx = poisoned(xs);
      max_pool2d_backward_kernel.cpu(dx, dout, ref_idx);
      REQUIRE(same_bits(dx, ref_dx));
      Tensor g = poisoned(os);
      max_pool2d_gather_kernel.cpu(g, src, ref_idx);
      REQUIRE(same_bits(g, ref_g));
    });
  }
}

void check_avg_pool(const Shape& xs, const Pool2dParams& p, uint64_t seed) {
  const Shape os = pool_out_shape(xs, p);
  INFO("x " << xs << " kernel {" << p.kernel[0] << ", " << p.kernel[1] << "} stride {" << p.stride[0] << ", "
            << p.stride[1] << "} padding {" << p.padding[0] << ", " << p.padding[1] << "} ceil_mode " << p.ceil_mode
            << " count_include_pad " << p.count_include_pad);
  const Tensor x = rand_in(xs, -2.0, 2.0, seed, DType::Float32);
  const Tensor dout = rand_in(os, -1.0, 1.0, seed + 1, DType::Float32);
  Tensor ref = poisoned(os), ref_dx = poisoned(xs);
  kernels::cpu::avg_pool2d_forward_reference(ref, x, p);
  kernels::cpu::avg_pool2d_backward_reference(ref_dx, dout, p);
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    Tensor out = poisoned(os), dx = poisoned(xs);
    avg_pool2d_kernel.cpu(out, x, p);
    GRAFT_REQUIRE_CLOSE(out, ref, kTolF32);
    avg_pool2d_backward_kernel.cpu(dx, dout, p);
    GRAFT_REQUIRE_CLOSE(dx, ref_dx, kTolF32);
  });
}

void check_adaptive(const Shape& xs, int64_t oh, int64_t ow, uint64_t seed) {
  const Shape os{xs[0], xs[1], oh, ow};
  INFO("x " << xs << " -> " << oh << " x " << ow);
  const Tensor x = rand_in(xs, -2.0, 2.0, seed, DType::Float32);
  const Tensor dout = rand_in(os, -1.0, 1.0, seed + 1, DType::Float32);
  Tensor ref = poisoned(os), ref_dx = poisoned(xs);
  kernels::cpu::adaptive_avg_pool2d_forward_reference(ref, x);
  kernels::cpu::adaptive_avg_pool2d_backward_reference(ref_dx, dout);
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    Tensor out = poisoned(os), dx = poisoned(xs);
    adaptive_avg_pool2d_kernel.cpu(out, x);
    GRAFT_REQUIRE_CLOSE(out, ref, kTolF32);
    adaptive_avg_pool2d_backward_kernel.cpu(dx, dout);
    GRAFT_REQUIRE_CLOSE(dx, ref_dx, kTolF32);
  });
}

Pool2dParams params(std::array<int64_t, 2> k, std::array<int64_t, 2> s, std::array<int64_t, 2> pad,
                    std::array<int64_t, 2> d = {1, 1}, bool ceil_mode = false, bool count_include_pad = true) {
  return Pool2dParams{k, s, pad, d, ceil_mode, count_include_pad};
}



TEST_CASE("max_pool2d fast kernels equal the reference: values, indices, ties, NaN, -inf", "[pool-kernels]") {
  check_max_pool({1, 3, 112, 112}, params({3, 3}, {2, 2}, {1, 1}), 1);  // the ResNet stem
  for (int64_t w : {1, 7, 17, 33, 100}) {
    INFO("width " << w);
    check_max_pool({2, 3, 9, w}, params({1, 1}, {1, 1}, {0, 0}), 2);
    if (w >= 3) {
      check_max_pool({2, 3, 9, w}, params({3, 3}, {2, 2}, {1, 1}), 3);
      check_max_pool({2, 3, 9, w}, params({3, 3}, {1, 1}, {1, 1}), 4);
      check_max_pool({1, 2, 8, w}, params({2, 3}, {1, 2}, {1, 1}, {1, 1}, true), 5);
    }
    if (w >= 5) {
      check_max_pool({2, 3, 9, w}, params({2, 2}, {2, 2}, {0, 0}), 6);
      check_max_pool({2, 2, 7, w}, params({3, 2}, {2, 2}, {1, 1}, {1, 2}, true), 7);
      check_max_pool({1, 2, 11, w}, params({3, 3}, {3, 3}, {1, 1}, {2, 2}, true), 8);
      check_max_pool({1, 2, 7, w}, params({5, 4}, {3, 4}, {2, 2}, {1, 1}, true), 9);
    }
  }
  check_max_pool({1, 1, 5, 1000}, params({2, 3}, {2, 3}, {1, 1}, {1, 1}, true), 10);
  check_max_pool({1, 1, 1, 1}, params({1, 1}, {1, 1}, {0, 0}), 11);
}

TEST_CASE("avg_pool2d fast kernels match the reference: padding, ceil_mode, count_include_pad", "[pool-kernels]") {
  for (bool include_pad : {true, false})
    for (bool ceil_mode : {false, true}) {
      INFO("count_include_pad " << include_pad << " ceil_mode " << ceil_mode);
      for (int64_t w : {3, 7, 17, 33, 100}) {
        INFO("width " << w);
        check_avg_pool({2, 3, 9, w}, params({3, 3}, {1, 1}, {1, 1}, {1, 1}, ceil_mode, include_pad), 20);
        check_avg_pool({2, 3, 9, w}, params({3, 3}, {2, 2}, {1, 1}, {1, 1}, ceil_mode, include_pad), 21);
        check_avg_pool({2, 3, 9, w}, params({2, 2}, {2, 2}, {0, 0}, {1, 1}, ceil_mode, include_pad), 22);
        check_avg_pool({1, 2, 6, w}, params({3, 2}, {2, 1}, {1, 1}, {1, 1}, ceil_mode, include_pad), 23);
        if (w >= 5) check_avg_pool({1, 2, 8, w}, params({5, 4}, {3, 3}, {2, 2}, {1, 1}, ceil_mode, include_pad), 24);
      }
      check_avg_pool({1, 1, 4, 1000}, params({2, 3}, {1, 3}, {1, 1}, {1, 1}, ceil_mode, include_pad), 25);
    }
  check_avg_pool({1, 1, 1, 1}, params({1, 1}, {1, 1}, {0, 0}), 26);
}

TEST_CASE("adaptive_avg_pool2d fast kernels match the reference: global and general windows", "[pool-kernels]") {
  check_adaptive({2, 512, 7, 7}, 1, 1, 30);  // ResNet's global average pool
  check_adaptive({1, 2048, 7, 7}, 1, 1, 31);
  check_adaptive({3, 5, 1, 1}, 1, 1, 32);
  check_adaptive({2, 3, 15, 17}, 1, 1, 33);
  check_adaptive({2, 3, 2, 3}, 1, 1, 34);
  check_adaptive({2, 2, 5, 7}, 3, 2, 35);
  check_adaptive({2, 3, 2, 3}, 4, 5, 36);
  check_adaptive({1, 2, 33, 100}, 7, 7, 37);
  check_adaptive({1, 2, 9, 1000}, 2, 17, 38);
}

TEST_CASE("pool fast kernels do not depend on the thread count", "[pool-kernels]") {
  const Shape xs{2, 37, 23, 29};
  const Pool2dParams mp = params({3, 3}, {2, 2}, {1, 1});
  const Pool2dParams ap = params({3, 3}, {2, 2}, {1, 1}, {1, 1}, true, false);
  const Shape mos = pool_out_shape(xs, mp), aos = pool_out_shape(xs, ap);
  const Tensor x = pool_input(xs, 40, true, false);
  const Tensor dm = rand_in(mos, -1.0, 1.0, 41, DType::Float32), da = rand_in(aos, -1.0, 1.0, 42, DType::Float32);
  const Tensor dg = rand_in({2, 37, 1, 1}, -1.0, 1.0, 43, DType::Float32);
  const Tensor dq = rand_in({2, 37, 4, 5}, -1.0, 1.0, 44, DType::Float32);
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    require_thread_count_invariant([&] {
      Tensor out = poisoned(mos), idx = poisoned_indices(mos), dx = poisoned(xs);
      max_pool2d_kernel.cpu(out, idx, x, mp);
      max_pool2d_backward_kernel.cpu(dx, dm, idx);
      Tensor aout = poisoned(aos), adx = poisoned(xs);
      avg_pool2d_kernel.cpu(aout, x, ap);
      avg_pool2d_backward_kernel.cpu(adx, da, ap);
      Tensor gout = poisoned({2, 37, 1, 1}), gdx = poisoned(xs), qout = poisoned({2, 37, 4, 5}), qdx = poisoned(xs);
      adaptive_avg_pool2d_kernel.cpu(gout, x);
      adaptive_avg_pool2d_backward_kernel.cpu(gdx, dg);
      adaptive_avg_pool2d_kernel.cpu(qout, x);
      adaptive_avg_pool2d_backward_kernel.cpu(qdx, dq);
      return std::vector<Tensor>{out, idx, dx, aout, adx, gout, gdx, qout, qdx};
    });
  });
}

}  // namespace pool_kernels_test
