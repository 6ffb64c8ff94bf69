// The fast float32 elementwise kernels (kernels/graft/kernels/cpu/elementwise.hpp) against the
// reference loops of graft/ops/elementwise.hpp, under every CPU ISA the machine has: every unary op
// forward and backward, binary ops on contiguous and broadcast operands, the in-place add_ / mul_.
// Outputs are poisoned with NaN first; sizes leave tails for both vector widths, and the largest
// span several threads' chunks.
#include <cmath>

#include "harness.hpp"

using namespace graft;
using namespace graft_test;
using kernels::cpu::CpuIsa;

namespace {

const std::vector<int64_t> kSizes = {1, 7, 15, 17, 33, 100, 1000, 70001};

// As close_report, except that equal values (infinities included) and NaN where NaN is expected
// match: the special-value inputs below expect them.
std::string match_report(const Tensor& actual, const Tensor& expected, Tol tol) {
  if (actual.shape() != expected.shape()) return "shape " + actual.shape().str() + " != " + expected.shape().str();
  const auto a = actual.to_vector(), e = expected.to_vector();
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == e[i] || (std::isnan(a[i]) && std::isnan(e[i]))) continue;
    const double diff = std::abs(a[i] - e[i]);
    if (!(diff <= tol.atol + tol.rtol * std::abs(e[i])))
      return detail::concat("element ", i, ": ", a[i], " vs expected ", e[i], " (|diff| ", diff, ")");
  }
  return "";
}
#define REQUIRE_MATCH(actual, expected, tol)                                   \
  do {                                                                         \
    const std::string report_ = match_report(actual, expected, tol);           \
    INFO(report_);                                                             \
    REQUIRE(report_.empty());                                                  \
  } while (0)

struct UnaryCase {
  UnaryOp op;
  double p0, p1, lo, hi;  // parameters; the input range
};
const std::vector<UnaryCase> kUnaryCases = {
    {UnaryOp::Neg, 0, 0, -5, 5},       {UnaryOp::Abs, 0, 0, -5, 5},      {UnaryOp::Exp, 0, 0, -20, 20},
    {UnaryOp::Log, 0, 0, 1e-3, 50},    {UnaryOp::Sqrt, 0, 0, 1e-3, 50},  {UnaryOp::Rsqrt, 0, 0, 1e-2, 50},
    {UnaryOp::Tanh, 0, 0, -6, 6},      {UnaryOp::Sigmoid, 0, 0, -20, 20}, {UnaryOp::Relu, 0, 0, -5, 5},
    {UnaryOp::Relu6, 0, 0, -3, 9},     {UnaryOp::GeluErf, 0, 0, -6, 6},  {UnaryOp::GeluTanh, 0, 0, -6, 6},
    {UnaryOp::Silu, 0, 0, -20, 20},    {UnaryOp::Hardswish, 0, 0, -5, 5}, {UnaryOp::PowScalar, 2, 0, -3, 3},
    {UnaryOp::PowScalar, 3, 0, -3, 3}, {UnaryOp::PowScalar, 1, 0, -3, 3}, {UnaryOp::PowScalar, 2.5, 0, 0.1, 3},
    {UnaryOp::Clamp, -0.5, 0.3, -1, 1},
};
std::string case_name(const UnaryCase& c) { return detail::concat(unary_name(c.op), "(p0 ", c.p0, ", p1 ", c.p1, ")"); }

Tensor rand_f32(const Shape& s, double lo, double hi, uint64_t seed) {
  return rand_in(s, lo, hi, seed).to(DType::Float32).contiguous();
}

// Inputs where the ops have edges: infinities, NaN, signed zeros, huge and tiny values (12: a tail).
Tensor special_inputs() {
  return from_vector(std::vector<float>{-INFINITY, -100.f, -20.f, -1.f, -0.f, 0.f, 1e-30f, 1.f, 20.f, 100.f, INFINITY, NAN},
                     {12});
}

}  // namespace

TEST_CASE("elementwise kernels: unary forward and backward, fast vs reference, every op", "[elementwise_kernels]") {
  for_each_cpu_isa([&](CpuIsa isa) {
    for (const UnaryCase& c : kUnaryCases) {
      for (int64_t n : kSizes) {
        INFO(case_name(c) << ", n = " << n << ", ISA " << cpu_isa_name(isa));
        const Tensor x = rand_f32({n}, c.lo, c.hi, uint64_t(n) + 3);
        Tensor y_ref = empty({n}), y = empty({n});
        kernels::cpu::unary_forward(y_ref, x, c.op, c.p0, c.p1);
        poison(y);
        unary_kernel.cpu(y, x, c.op, c.p0, c.p1);
        GRAFT_REQUIRE_CLOSE(y, y_ref, kTolF32);
        // The fast kernel took the case (or, under scalar, declined it).
        Tensor y_fast = empty({n});
        REQUIRE(kernels::cpu::unary_forward_fast(y_fast, x, c.op, c.p0, c.p1) ==
                (isa != CpuIsa::Scalar && kernels::cpu::unary_has_fast(c.op, c.p0)));

        Tensor d_ref = empty({n}), d = empty({n});
        kernels::cpu::unary_backward(d_ref, x, y_ref, c.op, c.p0, c.p1);
        poison(d);
        unary_backward_kernel.cpu(d, x, y_ref, c.op, c.p0, c.p1);
        GRAFT_REQUIRE_CLOSE(d, d_ref, kTolF32);
      }
    }
  });
}

TEST_CASE("elementwise kernels: unary ops at infinities, NaN, zeros and large inputs", "[elementwise_kernels]") {
  const Tensor x = special_inputs();
  for_each_cpu_isa([&](CpuIsa isa) {
    for (const UnaryCase& c : kUnaryCases) {
      INFO(case_name(c) << ", ISA " << cpu_isa_name(isa));
      Tensor y_ref = empty({12}), y = empty({12});
      kernels::cpu::unary_forward(y_ref, x, c.op, c.p0, c.p1);
      poison(y);
      unary_kernel.cpu(y, x, c.op, c.p0, c.p1);
      REQUIRE_MATCH(y, y_ref, kTolF32);
      // Backward from the kernel's own y (the reference's y may differ in the last bits).
      Tensor d_ref = empty({12}), d = empty({12});
      kernels::cpu::unary_backward(d_ref, x, y, c.op, c.p0, c.p1);
      poison(d);
      unary_backward_kernel.cpu(d, x, y, c.op, c.p0, c.p1);
      REQUIRE_MATCH(d, d_ref, kTolF32);
    }
  });
}

TEST_CASE("elementwise kernels: binary ops, contiguous and broadcast, fast vs reference", "[elementwise_kernels]") {
  struct Layout {
    Shape a, b;
    bool transpose_a;  // a non-contiguous: the fast path declines it, the reference runs
  };
  const std::vector<Layout> layouts = {
      {{1}, {1}, false},           {{17}, {17}, false},        {{1000}, {1000}, false},
      {{70001}, {70001}, false},   {{7, 33}, {33}, false},     {{3, 70001}, {70001}, false},  // row of b reused
      {{15, 17}, {}, false},       {{}, {15, 17}, false},      {{5, 100}, {5, 1}, false},     // scalar, column
      {{1, 33}, {7, 33}, false},   {{4, 3, 17}, {4, 1, 17}, false}, {{9, 17}, {9, 17}, true},
  };
  const BinaryOp ops[] = {BinaryOp::Add, BinaryOp::Sub,     BinaryOp::Mul,    BinaryOp::Div,
                          BinaryOp::Pow, BinaryOp::Maximum, BinaryOp::Minimum};
  for_each_cpu_isa([&](CpuIsa isa) {
    for (const Layout& l : layouts) {
      for (BinaryOp op : ops) {
        const bool positive = op == BinaryOp::Pow || op == BinaryOp::Div;
        Tensor a = rand_f32(l.a, positive ? 0.5 : -2, 2, 5);
        if (l.transpose_a) a = rand_f32({l.a[1], l.a[0]}, -2, 2, 5).transpose(0, 1);
        Tensor b = rand_f32(l.b, positive ? 0.5 : -2, 2, 6);
        if (op == BinaryOp::Maximum && b.numel() > 3) {  // NaN on either side propagates
          b.data<float>()[1] = NAN;
          if (!l.transpose_a && a.numel() > 3) a.data<float>()[2] = NAN;
        }
        const Shape shape = broadcast_shapes(l.a, l.b, "test");
        INFO("a " << l.a << ", b " << l.b << ", op " << int(op) << ", ISA " << cpu_isa_name(isa));
        Tensor ref = empty(shape), out = empty(shape);
        kernels::cpu::binary_forward(ref, a.expand(shape), b.expand(shape), op);
        poison(out);
        binary_kernel.cpu(out, a.expand(shape), b.expand(shape), op);
        REQUIRE_MATCH(out, ref, kTolF32);
        Tensor out_fast = empty(shape);
        REQUIRE(kernels::cpu::binary_forward_fast(out_fast, a.expand(shape), b.expand(shape), op) ==
                (isa != CpuIsa::Scalar && op != BinaryOp::Pow && !l.transpose_a));
      }
    }
  });
}

TEST_CASE("in-place add_ and mul_ write into their own storage", "[elementwise_kernels]") {
  for_each_cpu_isa([&](CpuIsa isa) {
    INFO("ISA " << cpu_isa_name(isa));
    NoGradGuard ng;
    struct Case {
      Shape y, other;
      DType dy, dother;
      double alpha;
    };
    const std::vector<Case> cases = {
        {{1000}, {1000}, DType::Float32, DType::Float32, 1.0},
        {{70001}, {70001}, DType::Float32, DType::Float32, -0.01},
        {{7, 33}, {33}, DType::Float32, DType::Float32, 0.5},      // a row of other reused
        {{5, 17}, {5, 1}, DType::Float32, DType::Float32, 2.0},    // a column
        {{15}, {}, DType::Float32, DType::Float32, -3.0},          // a scalar
        {{7, 33}, {7, 33}, DType::Float64, DType::Float64, 0.25},  // the reference loop
        {{17}, {17}, DType::Float32, DType::Float64, 0.1},         // other converted first
        {{17}, {17}, DType::Int64, DType::Int64, 2.0},
        {{17}, {17}, DType::Int64, DType::Int64, 0.5},             // int * fractional -> float32, truncated
    };
    for (const Case& c : cases) {
      INFO("y " << c.y << " " << dtype_name(c.dy) << ", other " << c.other << " " << dtype_name(c.dother)
                << ", alpha " << c.alpha);
      Tensor y = rand_in(c.y, -3, 3, 11).to(c.dy), other = rand_in(c.other, -3, 3, 12).to(c.dother);
      const Tensor expected = add(y, mul(other, c.alpha).to(c.dy));
      const void* storage_before = y.data_ptr();
      const uint64_t v = y.version();
      y.add_(other, c.alpha);
      REQUIRE(y.data_ptr() == storage_before);
      REQUIRE(y.version() == v + 1);
      REQUIRE(y.dtype() == c.dy);
      GRAFT_REQUIRE_CLOSE(y, expected, tol_for(c.dy));
      const Tensor expected2 = mul(y, c.alpha).to(c.dy);
      y.mul_(c.alpha);
      REQUIRE(y.version() == v + 2);
      GRAFT_REQUIRE_CLOSE(y, expected2, tol_for(c.dy));
    }
    // A strided destination (the reference path), and other overlapping it shifted by one element.
    Tensor base = rand_in({9, 17}, -1, 1, 13).to(DType::Float32);
    Tensor yt = base.transpose(0, 1);
    const Tensor other = rand_in({17, 9}, -1, 1, 14).to(DType::Float32);
    const Tensor expected = add(yt, mul(other, -2.0));
    yt.add_(other, -2.0);
    GRAFT_REQUIRE_CLOSE(yt, expected, kTolF32);
    GRAFT_REQUIRE_CLOSE(base, expected.transpose(0, 1), kTolF32);
    Tensor line = rand_in({100}, -1, 1, 15).to(DType::Float32);
    const Tensor shifted_expected = add(line.narrow(0, 0, 99), line.narrow(0, 1, 99));
    Tensor head = line.narrow(0, 0, 99);
    head.add_(line.narrow(0, 1, 99));
    GRAFT_REQUIRE_CLOSE(head, shifted_expected, kTolF32);
    Tensor twice = rand_in({33}, -1, 1, 16).to(DType::Float32);
    const Tensor doubled = twice * 2.0;
    twice.add_(twice);  // the very same elements: fine in place
    GRAFT_REQUIRE_CLOSE(twice, doubled, kTolF32);
    require_error([&] { zeros({3}).add_(zeros({4})); }, {"add_", "[4]", "[3]"});
  });
}

TEST_CASE("elementwise kernels: the slots declare their fast ISAs", "[elementwise_kernels]") {
  for (const char* slot : {"binary", "unary", "unary_backward"})
    REQUIRE(kernel_slot_registry().at(slot).cpu_fast == "avx2 avx512");
}
