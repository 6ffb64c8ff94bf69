// The fast float32 kernels of compare, where (kernels/graft/kernels/cpu/elementwise.hpp),
// binary_cross_entropy_with_logits and mse_loss forward and backward (loss.hpp), and the gradients
// of max over a dim and of amax (reduce.hpp), against the reference loops of their op headers under
// every CPU ISA the machine has. Outputs are poisoned first (NaN for floats, the negation of the
// expected value for bools); sizes leave tails for both vector widths; NaN inputs are included.
#include <cmath>

#include "harness.hpp"

using namespace graft;
using namespace graft_test;
using kernels::cpu::CpuIsa;

// A named namespace around the whole file, test cases included: the suite is a unity build, and the
// other test files' helpers (kSizes, rand_f32, ...) live in the same translation unit.
namespace misc_kernels_test {

const std::vector<int64_t> kSizes = {1, 7, 15, 17, 33, 100, 1000, 70001};

Tensor rand_f32(const Shape& s, double lo, double hi, uint64_t seed) {
  return rand_in(s, lo, hi, seed).to(DType::Float32).contiguous();
}

// Every element equal, or both NaN (the kernels that copy or select values must give them bit for bit,
// NaN included).
std::string equal_report(const Tensor& actual, const Tensor& expected) {
  if (actual.shape() != expected.shape()) return "shape " + actual.shape().str() + " != " + expected.shape().str();
  const auto a = actual.to_vector(), e = expected.to_vector();
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == e[i] || (std::isnan(a[i]) && std::isnan(e[i]))))
      return detail::concat("element ", i, ": ", a[i], " vs expected ", e[i]);
  return "";
}
// As close_report, except that NaN where NaN is expected and equal infinities match.
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
#define REQUIRE_REPORT_EMPTY(expr)   \
  do {                               \
    const std::string report_ = expr; \
    INFO(report_);                   \
    REQUIRE(report_.empty());        \
  } while (0)

// NaN at a few positions of a contiguous float32 tensor.
void put_nans(const Tensor& t, std::initializer_list<int64_t> at) {
  for (int64_t i : at)
    if (i < t.numel()) t.data<float>()[i] = NAN;
}

// A bool tensor of shape s from the signs of random values (made by the reference compare).
Tensor random_bools(const Shape& s, uint64_t seed) {
  const Tensor x = rand_f32(s, -1, 1, seed), zero = zeros(Shape{}, DType::Float32);
  Tensor c = empty(s, DType::Bool);
  kernels::cpu::compare_forward(c, x, zero.expand(s), CompareOp::Gt);
  return c;
}

// out = !expected in every element: an element the kernel does not write fails.
void poison_bools(const Tensor& out, const Tensor& expected) {
  bool* o = out.data<bool>();
  const bool* e = expected.data<bool>();
  for (int64_t i = 0; i < out.numel(); ++i) o[i] = !e[i];
}

struct Layout {
  Shape a, b;
  bool transpose_a;  // a non-contiguous with an inner stride > 1: the fast path declines it
};
const std::vector<Layout> kLayouts = {
    {{1}, {1}, false},           {{17}, {17}, false},        {{1000}, {1000}, false},
    {{70001}, {70001}, false},   {{7, 33}, {33}, false},     {{3, 70001}, {70001}, false},
    {{15, 17}, {}, false},       {{}, {15, 17}, false},      {{5, 100}, {5, 1}, false},
    {{1, 33}, {7, 33}, false},   {{4, 3, 17}, {4, 1, 17}, false}, {{9, 17}, {9, 17}, true},
};
Tensor layout_operand(const Shape& s, bool transpose, uint64_t seed) {
  if (!transpose) return rand_f32(s, -2, 2, seed);
  return rand_f32({s[1], s[0]}, -2, 2, seed).transpose(0, 1);
}

TEST_CASE("misc kernels: compare, fast vs reference, broadcast, ties and NaN", "[misc-kernels]") {
  const CompareOp ops[] = {CompareOp::Eq, CompareOp::Ne, CompareOp::Lt, CompareOp::Le, CompareOp::Gt, CompareOp::Ge};
  for_each_cpu_isa([&](CpuIsa isa) {
    for (const Layout& l : kLayouts) {
      Tensor a = layout_operand(l.a, l.transpose_a, 5);
      Tensor b = rand_f32(l.b, -2, 2, 6);
      // Ties: some of b equal to a (where both are plain contiguous of the same size), NaN on both sides.
      if (!l.transpose_a && a.numel() == b.numel())
        for (int64_t i = 0; i < b.numel(); i += 3) b.data<float>()[i] = a.data<float>()[i];
      if (b.numel() > 3) put_nans(b, {1, b.numel() - 1});
      if (!l.transpose_a && a.numel() > 3) put_nans(a, {2, a.numel() - 2});
      const Shape shape = broadcast_shapes(l.a, l.b, "test");
      for (CompareOp op : ops) {
        INFO("a " << l.a << ", b " << l.b << ", op " << int(op) << ", ISA " << cpu_isa_name(isa));
        Tensor ref = empty(shape, DType::Bool), out = empty(shape, DType::Bool);
        kernels::cpu::compare_forward(ref, a.expand(shape), b.expand(shape), op);
        poison_bools(out, ref);
        compare_kernel.cpu(out, a.expand(shape), b.expand(shape), op);
        REQUIRE_REPORT_EMPTY(equal_report(out, ref));
        Tensor probe = empty(shape, DType::Bool);
        REQUIRE(kernels::cpu::compare_forward_fast(probe, a.expand(shape), b.expand(shape), op) ==
                (isa != CpuIsa::Scalar && !l.transpose_a));
      }
    }
  });
}

TEST_CASE("misc kernels: compare at infinities, zeros and NaN follows IEEE", "[misc-kernels]") {
  // Every pair of the specials (13 x 13 = 169: a tail for both widths).
  const std::vector<float> v = {-INFINITY, -1e30f, -1.f, -1e-40f, -0.f,     0.f, 1e-40f,
                                1.f,       1.5f,   1e30f, INFINITY, NAN,     -NAN};
  const int64_t k = int64_t(v.size());
  std::vector<float> av, bv;
  for (float x : v)
    for (float y : v) {
      av.push_back(x);
      bv.push_back(y);
    }
  const Tensor a = from_vector(av, {k * k}), b = from_vector(bv, {k * k});
  for_each_cpu_isa([&](CpuIsa isa) {
    for (CompareOp op : {CompareOp::Eq, CompareOp::Ne, CompareOp::Lt, CompareOp::Le, CompareOp::Gt, CompareOp::Ge}) {
      INFO("op " << int(op) << ", ISA " << cpu_isa_name(isa));
      Tensor out = empty({k * k}, DType::Bool);
      compare_kernel.cpu(out, a, b, op);
      const bool* o = out.data<bool>();
      for (int64_t i = 0; i < k * k; ++i) {
        const float x = av[size_t(i)], y = bv[size_t(i)];
        const bool expect = op == CompareOp::Eq ? x == y : op == CompareOp::Ne ? x != y : op == CompareOp::Lt ? x < y
                            : op == CompareOp::Le ? x <= y : op == CompareOp::Gt ? x > y : x >= y;
        INFO("element " << i << ": " << x << " vs " << y);
        REQUIRE(o[i] == expect);
      }
    }
  });
}

TEST_CASE("misc kernels: where, fast vs reference, broadcast condition and operands, NaN", "[misc-kernels]") {
  struct WhereLayout {
    Shape c, a, b;
    bool transpose_a;
  };
  const std::vector<WhereLayout> layouts = {
      {{1}, {1}, {1}, false},          {{17}, {17}, {17}, false},          {{70001}, {70001}, {70001}, false},
      {{7, 33}, {33}, {7, 33}, false}, {{7, 33}, {}, {}, false},           {{5, 1}, {5, 100}, {100}, false},
      {{}, {15, 17}, {15, 17}, false}, {{4, 1, 17}, {4, 3, 17}, {1}, false}, {{3, 1000}, {3, 1}, {1, 1000}, false},
      {{1, 33}, {7, 1}, {7, 33}, false}, {{9, 17}, {9, 17}, {9, 17}, true},
  };
  for_each_cpu_isa([&](CpuIsa isa) {
    for (const WhereLayout& l : layouts) {
      const Shape shape = broadcast_shapes(broadcast_shapes(l.c, l.a, "test"), l.b, "test");
      const Tensor c = random_bools(l.c, 7);
      Tensor a = layout_operand(l.a, l.transpose_a, 8);
      Tensor b = rand_f32(l.b, -2, 2, 9);
      if (b.numel() > 3) put_nans(b, {0, 3});
      if (!l.transpose_a && a.numel() > 3) put_nans(a, {1, a.numel() - 1});
      INFO("cond " << l.c << ", a " << l.a << ", b " << l.b << ", ISA " << cpu_isa_name(isa));
      Tensor ref = empty(shape), out = empty(shape);
      kernels::cpu::where_forward(ref, c.expand(shape), a.expand(shape), b.expand(shape));
      poison(out);
      where_kernel.cpu(out, c.expand(shape), a.expand(shape), b.expand(shape));
      REQUIRE_REPORT_EMPTY(equal_report(out, ref));
      Tensor probe = empty(shape);
      REQUIRE(kernels::cpu::where_forward_fast(probe, c.expand(shape), a.expand(shape), b.expand(shape)) ==
              (isa != CpuIsa::Scalar && !l.transpose_a));
    }
  });
}

TEST_CASE("misc kernels: binary_cross_entropy_with_logits forward and backward, fast vs reference",
          "[misc-kernels]") {
  for_each_cpu_isa([&](CpuIsa isa) {
    for (int64_t n : kSizes) {
      for (bool with_pw : {false, true}) {
        INFO("n = " << n << ", pos_weight " << with_pw << ", ISA " << cpu_isa_name(isa));
        const Tensor x = rand_f32({n}, -30, 30, uint64_t(n) + 1);  // both tails of softplus
        const Tensor t = rand_f32({n}, 0, 1, uint64_t(n) + 2);
        const Tensor pw = with_pw ? rand_f32({n}, 0.2, 3, uint64_t(n) + 3) : Tensor();
        Tensor ref = empty({n}), out = empty({n});
        kernels::cpu::bce_with_logits_forward_reference(ref, x, t, pw);
        poison(out);
        bce_with_logits_kernel.cpu(out, x, t, pw);
        GRAFT_REQUIRE_CLOSE(out, ref, kTolF32);
        Tensor probe = empty({n});  // the fast kernel took the case (or, under scalar, declined it)
        REQUIRE(kernels::cpu::bce_with_logits_forward_fast(probe.data<float>(), x.data<float>(), t.data<float>(),
                                                           pw.defined() ? pw.data<float>() : nullptr,
                                                           n) == (isa != CpuIsa::Scalar));

        // dloss: one value for the run (Sum / Mean, stride 0) or one per element (None).
        for (bool per_element : {false, true}) {
          const Tensor dl = per_element ? rand_f32({n}, -2, 2, uint64_t(n) + 4)
                                        : full(Shape{1}, 0.37, DType::Float32).expand({n});
          for (int which = 0; which < 3; ++which) {  // both, dlogits only, dtarget only
            INFO("dloss per element " << per_element << ", outputs " << which);
            Tensor dx_ref = which != 2 ? empty({n}) : Tensor(), dt_ref = which != 1 ? empty({n}) : Tensor();
            Tensor dx = which != 2 ? empty({n}) : Tensor(), dt = which != 1 ? empty({n}) : Tensor();
            kernels::cpu::bce_with_logits_backward_reference(dx_ref, dt_ref, dl, x, t, pw);
            if (dx.defined()) poison(dx);
            if (dt.defined()) poison(dt);
            bce_with_logits_backward_kernel.cpu(dx, dt, dl, x, t, pw);
            if (dx.defined()) GRAFT_REQUIRE_CLOSE(dx, dx_ref, kTolF32);
            if (dt.defined()) GRAFT_REQUIRE_CLOSE(dt, dt_ref, kTolF32);
          }
        }
      }
    }
  });
}

TEST_CASE("misc kernels: binary_cross_entropy_with_logits at infinities, NaN and large logits", "[misc-kernels]") {
  const std::vector<float> xs = {-INFINITY, -200.f, -88.f, -20.f, -1e-30f,  0.f, 1e-30f,
                                 0.5f,      20.f,   88.f,  200.f, INFINITY, NAN, 3.f};
  const std::vector<float> ts = {0.f, 0.3f, 1.f, 0.5f, 0.f, 1.f, 0.2f, NAN, 1.f, 0.f, 0.7f, 0.f, 0.4f, 0.9f};
  const Tensor x = from_vector(xs, {14}), t = from_vector(ts, {14});
  const Tensor dl = rand_f32({14}, -2, 2, 3);
  for_each_cpu_isa([&](CpuIsa isa) {
    INFO("ISA " << cpu_isa_name(isa));
    Tensor ref = empty({14}), out = empty({14});
    kernels::cpu::bce_with_logits_forward_reference(ref, x, t, Tensor());
    poison(out);
    bce_with_logits_kernel.cpu(out, x, t, Tensor());
    REQUIRE_REPORT_EMPTY(match_report(out, ref, kTolF32));
    Tensor dx_ref = empty({14}), dt_ref = empty({14}), dx = empty({14}), dt = empty({14});
    kernels::cpu::bce_with_logits_backward_reference(dx_ref, dt_ref, dl, x, t, Tensor());
    poison(dx);
    poison(dt);
    bce_with_logits_backward_kernel.cpu(dx, dt, dl, x, t, Tensor());
    REQUIRE_REPORT_EMPTY(match_report(dx, dx_ref, kTolF32));
    REQUIRE_REPORT_EMPTY(match_report(dt, dt_ref, kTolF32));
  });
}

TEST_CASE("misc kernels: mse_loss forward and backward, fast vs reference (identical)", "[misc-kernels]") {
  for_each_cpu_isa([&](CpuIsa isa) {
    for (int64_t n : kSizes) {
      INFO("n = " << n << ", ISA " << cpu_isa_name(isa));
      const Tensor a = rand_f32({n}, -3, 3, uint64_t(n) + 5), b = rand_f32({n}, -3, 3, uint64_t(n) + 6);
      put_nans(a, {3, n - 1});
      Tensor ref = empty({n}), out = empty({n});
      kernels::cpu::mse_forward_reference(ref, a, b);
      poison(out);
      mse_kernel.cpu(out, a, b);
      REQUIRE_REPORT_EMPTY(equal_report(out, ref));
      Tensor probe = empty({n});
      REQUIRE(kernels::cpu::mse_forward_fast(probe.data<float>(), a.data<float>(), b.data<float>(), n) ==
              (isa != CpuIsa::Scalar));
      for (bool per_element : {false, true}) {
        const Tensor dl = per_element ? rand_f32({n}, -2, 2, uint64_t(n) + 7)
                                      : full(Shape{1}, -0.61, DType::Float32).expand({n});
        for (int which = 0; which < 3; ++which) {
          INFO("dloss per element " << per_element << ", outputs " << which);
          Tensor da_ref = which != 2 ? empty({n}) : Tensor(), db_ref = which != 1 ? empty({n}) : Tensor();
          Tensor da = which != 2 ? empty({n}) : Tensor(), db = which != 1 ? empty({n}) : Tensor();
          kernels::cpu::mse_backward_reference(da_ref, db_ref, dl, a, b);
          if (da.defined()) poison(da);
          if (db.defined()) poison(db);
          mse_backward_kernel.cpu(da, db, dl, a, b);
          if (da.defined()) REQUIRE_REPORT_EMPTY(equal_report(da, da_ref));
          if (db.defined()) REQUIRE_REPORT_EMPTY(equal_report(db, db_ref));
        }
      }
    }
  });
}

TEST_CASE("misc kernels: loss reductions match the reference and do not depend on the thread count",
          "[misc-kernels]") {
  const int saved_threads = get_num_threads();
  for (int64_t n : {int64_t(1), int64_t(33), int64_t(1000), int64_t(300001)}) {
    const Tensor a = rand_f32({n}, -3, 3, uint64_t(n) + 8), b = rand_f32({n}, -3, 3, uint64_t(n) + 9);
    const Tensor t = rand_f32({n}, 0, 1, uint64_t(n) + 10);
    for (Reduction r : {Reduction::Mean, Reduction::Sum}) {
      INFO("n = " << n << ", reduction " << int(r));
      Tensor mse_ref, bce_ref;  // the references (double sums), from the scalar pass, which runs first
      for_each_cpu_isa([&](CpuIsa isa) {
        INFO("ISA " << cpu_isa_name(isa));
        if (isa == CpuIsa::Scalar) {
          mse_ref = mse_loss(a, b, r);
          bce_ref = binary_cross_entropy_with_logits(a, t, r);
        }
        std::vector<double> mse_by_threads, bce_by_threads;
        for (int threads : {1, 2, 3}) {
          set_num_threads(threads);
          const Tensor m = mse_loss(a, b, r), c = binary_cross_entropy_with_logits(a, t, r);
          GRAFT_REQUIRE_CLOSE(m, mse_ref, kTolF32);
          GRAFT_REQUIRE_CLOSE(c, bce_ref, kTolF32);
          mse_by_threads.push_back(m.item());
          bce_by_threads.push_back(c.item());
        }
        for (size_t i = 1; i < mse_by_threads.size(); ++i) {
          REQUIRE(mse_by_threads[i] == mse_by_threads[0]);
          REQUIRE(bce_by_threads[i] == bce_by_threads[0]);
        }
      });
    }
  }
  set_num_threads(saved_threads);
}

TEST_CASE("misc kernels: max over a dim, backward, fast vs reference", "[misc-kernels]") {
  struct Split {
    int64_t outer, n, inner;
  };
  const std::vector<Split> splits = {{1, 1, 1},   {7, 1, 1},   {5, 17, 1},   {3, 1000, 1}, {1, 70001, 1},
                                     {4, 5, 7},   {3, 9, 17},  {2, 100, 33}, {1, 3, 1000}, {6, 1, 15},
                                     {1, 33, 70001}};
  for_each_cpu_isa([&](CpuIsa isa) {
    for (const Split& s : splits) {
      INFO("outer " << s.outer << ", n " << s.n << ", inner " << s.inner << ", ISA " << cpu_isa_name(isa));
      const Tensor x = rand_f32({s.outer, s.n, s.inner}, -2, 2, uint64_t(s.n) + 11);
      put_nans(x, {5});
      Tensor values = empty({s.outer, s.inner}), indices = empty({s.outer, s.inner}, DType::Int64);
      kernels::cpu::max_dim_forward_reference(values, indices, x, s.outer, s.n, s.inner, true);
      const Tensor dv = rand_f32({s.outer, s.inner}, -2, 2, 12);
      Tensor ref = empty({s.outer, s.n, s.inner}), dx = empty({s.outer, s.n, s.inner});
      kernels::cpu::max_dim_backward_reference(ref, dv, indices, s.outer, s.n, s.inner);
      poison(dx);
      max_dim_backward_kernel.cpu(dx, dv, indices, s.outer, s.n, s.inner);
      REQUIRE_REPORT_EMPTY(equal_report(dx, ref));
      Tensor probe = empty({s.outer, s.n, s.inner});
      REQUIRE(kernels::cpu::max_dim_backward_fast(probe.data<float>(), dv.data<float>(), indices.data<int64_t>(),
                                                  s.outer, s.n, s.inner) == (isa != CpuIsa::Scalar));
    }
  });
}

TEST_CASE("misc kernels: amax backward splits among ties as the reference, NaN rows included", "[misc-kernels]") {
  struct Rows {
    int64_t M, K;
  };
  const std::vector<Rows> rows = {{1, 1},    {7, 1},   {5, 7},     {3, 17},    {4, 33},
                                  {2, 1000}, {9, 100}, {1, 70001}, {2, 100003}};
  for_each_cpu_isa([&](CpuIsa isa) {
    for (const Rows& r : rows) {
      for (bool is_max : {true, false}) {
        INFO("M " << r.M << ", K " << r.K << ", max " << is_max << ", ISA " << cpu_isa_name(isa));
        // Values on a coarse grid (many ties of the extreme); row 1 holds NaNs (their ties are the NaNs).
        Tensor x = rand_f32({r.M, r.K}, -2, 2, uint64_t(r.K) + 13);
        float* px = x.data<float>();
        for (int64_t i = 0; i < x.numel(); ++i) px[i] = std::round(px[i] * 2.0f) / 2.0f;
        if (r.M > 1) {
          px[r.K] = NAN;
          px[2 * r.K - 1] = NAN;
        }
        Tensor out = empty({r.M});
        kernels::cpu::amax_forward_reference(out, x, r.M, r.K, is_max);
        const Tensor dout = rand_f32({r.M}, -2, 2, 14);
        Tensor ref = empty({r.M, r.K}), dx = empty({r.M, r.K});
        kernels::cpu::amax_backward_reference(ref, dout, x, out, r.M, r.K);
        poison(dx);
        amax_backward_kernel.cpu(dx, dout, x, out, r.M, r.K);
        REQUIRE_REPORT_EMPTY(equal_report(dx, ref));
        Tensor probe = empty({r.M, r.K});
        REQUIRE(kernels::cpu::amax_backward_fast(probe.data<float>(), dout.data<float>(), x.data<float>(),
                                                 out.data<float>(), r.M, r.K) == (isa != CpuIsa::Scalar));
      }
    }
  });
}

}  // namespace misc_kernels_test
