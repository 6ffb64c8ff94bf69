// The fast float32 row and reduction kernels (kernels/graft/kernels/cpu/{softmax, layer_norm,
// batch_norm, reduce, copy, loss}.hpp) against their references in include/graft/ops/, under every
// CPU ISA this machine has (harness for_each_cpu_isa: scalar runs the reference itself, avx2 and
// avx512 the fast bodies). Row lengths with tails (1, 7, 17, 100, 384, 1000, 30522), several dims,
// outputs poisoned with NaN before each call, NaN inputs propagating as in the reference, and results
// that do not depend on the thread count.
#include "harness.hpp"

using namespace graft;
using namespace graft_test;

namespace norm_kernels_test {

const std::vector<int64_t> kRowLengths = {1, 7, 17, 100, 384, 1000, 30522};

// Random float32 input in [lo, hi).
Tensor rand32(const Shape& s, uint64_t seed, double lo = -2.0, double hi = 2.0) {
  return rand_in(s, lo, hi, seed, DType::Float32);
}
Tensor poisoned(const Shape& s, DType dt = DType::Float32) {
  Tensor t = empty(s, dt);
  poison(t);
  return t;
}
// A copy of t (float32) with element i (flat, contiguous) set to NaN.
Tensor with_nan(const Tensor& t, int64_t i) {
  Tensor c = t.clone();
  c.data<float>()[i] = std::numeric_limits<float>::quiet_NaN();
  return c;
}
// As close_report, but an element NaN in both is equal (NaN inputs must give NaN where the
// reference gives NaN, and only there).
std::string close_or_both_nan(const Tensor& actual, const Tensor& expected, Tol tol) {
  if (actual.shape() != expected.shape()) return "shape " + actual.shape().str() + " != " + expected.shape().str();
  const auto a = actual.to_vector(), e = expected.to_vector();
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(e[i])) continue;
    if (!(std::abs(a[i] - e[i]) <= tol.atol + tol.rtol * std::abs(e[i])))
      return "element " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs expected " + std::to_string(e[i]);
  }
  return "";
}
#define NORM_REQUIRE_CLOSE_NAN(actual, expected)                                          \
  do {                                                                                     \
    const std::string report_ = norm_kernels_test::close_or_both_nan(actual, expected, kTolF32); \
    INFO(report_);                                                                         \
    REQUIRE(report_.empty());                                                              \
  } while (0)

}  // namespace norm_kernels_test

using namespace norm_kernels_test;

// ---- softmax / log_softmax ----------------------------------------------------------------------------
namespace norm_kernels_test {
// The slot entries (fast under avx2/avx512) against the references, forward and backward.
void check_softmax(const Shape& shape, int dim, uint64_t seed) {
  const auto split = detail_rows::split_at(shape, dim);
  const Tensor x = rand32(shape, seed, -4, 4), dy = rand32(shape, seed + 1, -1, 1);
  for (bool log : {false, true}) {
    INFO("shape " << shape << " dim " << dim << (log ? " log_softmax" : " softmax"));
    const auto& fwd = log ? log_softmax_kernel : softmax_kernel;
    const auto& bwd = log ? log_softmax_backward_kernel : softmax_backward_kernel;
    auto fwd_ref = log ? kernels::cpu::log_softmax_forward_reference : kernels::cpu::softmax_forward_reference;
    auto bwd_ref = log ? kernels::cpu::log_softmax_backward_reference : kernels::cpu::softmax_backward_reference;
    Tensor y_ref = poisoned(shape), dx_ref = poisoned(shape);
    fwd_ref(y_ref, x, split.outer, split.n, split.inner);
    bwd_ref(dx_ref, dy, y_ref, split.outer, split.n, split.inner);
    for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
      Tensor y = poisoned(shape), dx = poisoned(shape);
      fwd.cpu(y, x, split.outer, split.n, split.inner);
      GRAFT_REQUIRE_CLOSE(y, y_ref, kTolF32);
      bwd.cpu(dx, dy, y_ref, split.outer, split.n, split.inner);
      GRAFT_REQUIRE_CLOSE(dx, dx_ref, kTolF32);
    });
  }
}
}  // namespace norm_kernels_test

TEST_CASE("softmax kernels: last dim, rows with tails, against the reference", "[norm-kernels]") {
  uint64_t seed = 10;
  for (int64_t n : kRowLengths) check_softmax({n > 1000 ? 2 : 5, n}, 1, seed++);
  check_softmax({2, 3, 129}, 2, seed++);
  check_softmax({1, 1}, 1, seed++);
}

TEST_CASE("softmax kernels: inner dims (vectorized across the inner stride)", "[norm-kernels]") {
  uint64_t seed = 30;
  for (const auto& [shape, dim] : std::vector<std::pair<Shape, int>>{
           {{3, 17, 5}, 1}, {{2, 7, 33}, 1}, {{4, 100, 16}, 1}, {{17, 3}, 0}, {{1000, 7}, 0}, {{2, 3, 4, 5}, 1}})
    check_softmax(shape, dim, seed++);
}

TEST_CASE("softmax kernels: a NaN makes its row NaN, as the reference", "[norm-kernels]") {
  for (const auto& [shape, dim] : std::vector<std::pair<Shape, int>>{{{4, 100}, 1}, {{3, 17, 5}, 1}, {{4, 7}, 1}}) {
    const auto split = detail_rows::split_at(shape, dim);
    for (int64_t at : {int64_t(0), int64_t(13)}) {
      const Tensor x = with_nan(rand32(shape, 3), at);
      for (bool log : {false, true}) {
        auto fwd_ref = log ? kernels::cpu::log_softmax_forward_reference : kernels::cpu::softmax_forward_reference;
        Tensor y_ref = poisoned(shape);
        fwd_ref(y_ref, x, split.outer, split.n, split.inner);
        for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
          Tensor y = poisoned(shape);
          (log ? log_softmax_kernel : softmax_kernel).cpu(y, x, split.outer, split.n, split.inner);
          NORM_REQUIRE_CLOSE_NAN(y, y_ref);
        });
      }
    }
  }
}

// ---- layer_norm ---------------------------------------------------------------------------------------
TEST_CASE("layer_norm kernels: forward and backward, rows with tails, with and without affine", "[norm-kernels]") {
  uint64_t seed = 50;
  for (int64_t N : kRowLengths) {
    for (int64_t M : {int64_t(1), N > 1000 ? int64_t(3) : int64_t(37)}) {
      for (bool affine : {false, true}) {
        INFO("M " << M << " N " << N << (affine ? " affine" : ""));
        const Tensor x = rand32({M, N}, seed, -3, 5), dout = rand32({M, N}, seed + 1, -1, 1);
        const Tensor w = affine ? rand32({N}, seed + 2, 0.5, 1.5) : Tensor();
        const Tensor b = affine ? rand32({N}, seed + 3) : Tensor();
        const Tensor dw0 = rand32({N}, seed + 4), db0 = rand32({N}, seed + 5);  // accumulated into
        ++seed;
        Tensor out_ref = poisoned({M, N}), mean_ref = poisoned({M}), rstd_ref = poisoned({M});
        kernels::cpu::layer_norm_forward_reference(out_ref, mean_ref, rstd_ref, x, w, b, M, N, 1e-5);
        Tensor dx_ref = poisoned({M, N}), dw_ref = dw0.clone(), db_ref = db0.clone();
        kernels::cpu::layer_norm_backward_reference(dx_ref, dw_ref, db_ref, dout, x, w, mean_ref, rstd_ref, M, N);
        for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
          Tensor out = poisoned({M, N}), mean = poisoned({M}), rstd = poisoned({M});
          layer_norm_kernel.cpu(out, mean, rstd, x, w, b, M, N, 1e-5);
          GRAFT_REQUIRE_CLOSE(out, out_ref, kTolF32);
          GRAFT_REQUIRE_CLOSE(mean, mean_ref, kTolF32);
          GRAFT_REQUIRE_CLOSE(rstd, rstd_ref, kTolF32);
          Tensor dx = poisoned({M, N}), dw = dw0.clone(), db = db0.clone();
          layer_norm_backward_kernel.cpu(dx, dw, db, dout, x, w, mean_ref, rstd_ref, M, N);
          GRAFT_REQUIRE_CLOSE(dx, dx_ref, kTolF32);
          GRAFT_REQUIRE_CLOSE(dw, dw_ref, kTolF32);
          GRAFT_REQUIRE_CLOSE(db, db_ref, kTolF32);
          Tensor dx_only = poisoned({M, N});  // dweight / dbias not wanted
          layer_norm_backward_kernel.cpu(dx_only, Tensor(), Tensor(), dout, x, w, mean_ref, rstd_ref, M, N);
          GRAFT_REQUIRE_CLOSE(dx_only, dx_ref, kTolF32);
        });
      }
    }
  }
}

TEST_CASE("layer_norm kernels: a NaN makes its row NaN; results independent of the thread count",
          "[norm-kernels]") {
  const int64_t M = 64, N = 100;
  const Tensor x = with_nan(rand32({M, N}, 7), 3 * N + 5), dout = rand32({M, N}, 8);
  Tensor out_ref = poisoned({M, N}), mean_ref = poisoned({M}), rstd_ref = poisoned({M});
  kernels::cpu::layer_norm_forward_reference(out_ref, mean_ref, rstd_ref, x, Tensor(), Tensor(), M, N, 1e-5);
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    Tensor out = poisoned({M, N}), mean = poisoned({M}), rstd = poisoned({M});
    layer_norm_kernel.cpu(out, mean, rstd, x, Tensor(), Tensor(), M, N, 1e-5);
    NORM_REQUIRE_CLOSE_NAN(out, out_ref);
    NORM_REQUIRE_CLOSE_NAN(mean, mean_ref);
  });
  const Tensor xc = rand32({512, 384}, 9), dc = rand32({512, 384}, 10), w = rand32({384}, 11);
  require_thread_count_invariant([&] {
    Tensor out = empty({512, 384}), mean = empty({512}), rstd = empty({512});
    layer_norm_kernel.cpu(out, mean, rstd, xc, w, Tensor(), 512, 384, 1e-5);
    Tensor dx = empty({512, 384}), dw = zeros({384}), db = zeros({384});
    layer_norm_backward_kernel.cpu(dx, dw, db, dc, xc, w, mean, rstd, 512, 384);
    return std::vector<Tensor>{out, dx, dw, db};
  });
}

// ---- batch_norm ---------------------------------------------------------------------------------------
TEST_CASE("batch_norm kernels: training and eval, forward and backward, NCHW with tails", "[norm-kernels]") {
  uint64_t seed = 70;
  for (const Shape& s : std::vector<Shape>{{2, 3, 1}, {4, 5, 7}, {2, 3, 17}, {3, 4, 100}, {2, 2, 1000},
                                           {16, 8, 49}, {1, 3, 30522}, {7, 1, 384}}) {
    const int64_t N = s[0], C = s[1], S = s[2];
    for (bool training : {true, false}) {
      for (bool affine : {false, true}) {
        INFO("shape " << s << (training ? " training" : " eval") << (affine ? " affine" : ""));
        const Tensor x = rand32(s, seed, -1, 3), dout = rand32(s, seed + 1, -1, 1);
        const Tensor w = affine ? rand32({C}, seed + 2, 0.5, 1.5) : Tensor();
        const Tensor b = affine ? rand32({C}, seed + 3) : Tensor();
        const Tensor rm0 = rand32({C}, seed + 4, -0.5, 0.5), rv0 = rand32({C}, seed + 5, 0.5, 2.0);
        const Tensor dw0 = rand32({C}, seed + 6), db0 = rand32({C}, seed + 7);
        ++seed;
        Tensor out_ref = poisoned(s), mean_ref = poisoned({C}), rstd_ref = poisoned({C});
        Tensor rm_ref = rm0.clone(), rv_ref = rv0.clone();
        kernels::cpu::batch_norm_forward_reference(out_ref, mean_ref, rstd_ref, x, w, b, rm_ref, rv_ref, N, C, S,
                                                   training, 0.1, 1e-5);
        Tensor dx_ref = poisoned(s), dw_ref = dw0.clone(), db_ref = db0.clone();
        kernels::cpu::batch_norm_backward_reference(dx_ref, dw_ref, db_ref, dout, x, w, mean_ref, rstd_ref, N, C, S,
                                                    training);
        for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
          Tensor out = poisoned(s), mean = poisoned({C}), rstd = poisoned({C});
          Tensor rm = rm0.clone(), rv = rv0.clone();
          batch_norm_kernel.cpu(out, mean, rstd, x, w, b, rm, rv, N, C, S, training, 0.1, 1e-5);
          GRAFT_REQUIRE_CLOSE(out, out_ref, kTolF32);
          GRAFT_REQUIRE_CLOSE(mean, mean_ref, kTolF32);
          GRAFT_REQUIRE_CLOSE(rstd, rstd_ref, kTolF32);
          GRAFT_REQUIRE_CLOSE(rm, rm_ref, kTolF32);
          GRAFT_REQUIRE_CLOSE(rv, rv_ref, kTolF32);
          Tensor dx = poisoned(s), dw = dw0.clone(), db = db0.clone();
          batch_norm_backward_kernel.cpu(dx, dw, db, dout, x, w, mean_ref, rstd_ref, N, C, S, training);
          GRAFT_REQUIRE_CLOSE(dx, dx_ref, kTolF32);
          GRAFT_REQUIRE_CLOSE(dw, dw_ref, kTolF32);
          GRAFT_REQUIRE_CLOSE(db, db_ref, kTolF32);
          if (training) {  // untracked running statistics
            Tensor out2 = poisoned(s), mean2 = poisoned({C}), rstd2 = poisoned({C});
            batch_norm_kernel.cpu(out2, mean2, rstd2, x, w, b, Tensor(), Tensor(), N, C, S, true, 0.1, 1e-5);
            GRAFT_REQUIRE_CLOSE(out2, out_ref, kTolF32);
          }
        });
      }
    }
  }
}

TEST_CASE("batch_norm kernels: a NaN makes its channel NaN; results independent of the thread count",
          "[norm-kernels]") {
  const int64_t N = 4, C = 3, S = 50;
  const Tensor x = with_nan(rand32({N, C, S}, 12), (2 * C + 1) * S + 7);
  Tensor out_ref = poisoned({N, C, S}), mean_ref = poisoned({C}), rstd_ref = poisoned({C});
  kernels::cpu::batch_norm_forward_reference(out_ref, mean_ref, rstd_ref, x, Tensor(), Tensor(), Tensor(), Tensor(), N,
                                             C, S, true, 0.1, 1e-5);
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    Tensor out = poisoned({N, C, S}), mean = poisoned({C}), rstd = poisoned({C});
    batch_norm_kernel.cpu(out, mean, rstd, x, Tensor(), Tensor(), Tensor(), Tensor(), N, C, S, true, 0.1, 1e-5);
    NORM_REQUIRE_CLOSE_NAN(out, out_ref);
    NORM_REQUIRE_CLOSE_NAN(mean, mean_ref);
  });
  const Tensor xc = rand32({8, 16, 196}, 13), dc = rand32({8, 16, 196}, 14);
  require_thread_count_invariant([&] {
    Tensor out = empty({8, 16, 196}), mean = empty({16}), rstd = empty({16});
    batch_norm_kernel.cpu(out, mean, rstd, xc, Tensor(), Tensor(), Tensor(), Tensor(), 8, 16, 196, true, 0.1, 1e-5);
    Tensor dx = empty({8, 16, 196}), dw = zeros({16}), db = zeros({16});
    batch_norm_backward_kernel.cpu(dx, dw, db, dc, xc, Tensor(), mean, rstd, 8, 16, 196, true);
    return std::vector<Tensor>{out, mean, rstd, dx, dw, db};
  });
}

// ---- sum / sum_to / mean / var -------------------------------------------------------------------------
TEST_CASE("sum kernel: rows, columns, the batch-norm shape, full sums, against the reference", "[norm-kernels]") {
  uint64_t seed = 90;
  const std::vector<std::pair<Shape, std::vector<int64_t>>> cases = {
      {{7}, {}},
      {{100003}, {}},
      {{5, 17}, {1}},
      {{5, 17}, {0}},
      {{1000, 7}, {0}},
      {{3, 30522}, {1}},
      {{2, 30522}, {0}},
      {{384, 100}, {0}},
      {{3, 4, 5, 6}, {0, 2}},
      {{3, 4, 5, 6}, {1, 3}},
      {{3, 4, 5, 6}, {0, 2, 3}},
      {{3, 4, 5, 6}, {0, 1, 2, 3}},
      {{3, 4, 5, 6}, {1}},
      {{3, 4, 5, 6}, {0, 1}},
      {{3, 4, 5, 6}, {0, 1, 3}},
      {{2, 3, 4, 5, 6}, {0, 2, 4}},   // three reduced groups: the reference
      {{16, 17, 7, 7}, {0, 2, 3}},    // an NCHW bias gradient
      {{4, 1, 5, 1, 7}, {0, 1, 3}},   // size-1 dims
      {{1, 1}, {0, 1}},
  };
  for (const auto& [shape, dims] : cases) {
    INFO("shape " << shape << " dims " << dims.size());
    const Tensor x = rand32(shape, seed++, -1, 1);
    const auto mask = detail_reduce::dim_mask(dims, shape.rank(), "sum");
    const Shape kd = detail_reduce::keepdim_shape(shape, mask);
    Tensor ref = poisoned(kd);
    kernels::cpu::sum_forward_reference(ref, x, mask);
    for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
      Tensor out = poisoned(kd);
      sum_kernel.cpu(out, x, mask);
      GRAFT_REQUIRE_CLOSE(out, ref, kTolF32);
      GRAFT_REQUIRE_CLOSE(sum(x, dims, true), ref, kTolF32);
    });
  }
  // a non-contiguous input takes the reference
  const Tensor t = rand32({17, 33}, 5).transpose(0, 1);
  Tensor ref = poisoned({33, 1});
  kernels::cpu::sum_forward_reference(ref, t, {false, true});
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) { GRAFT_REQUIRE_CLOSE(sum(t, {1}, true), ref, kTolF32); });
}

TEST_CASE("sum_to (bias gradients), mean and var on the fast kernels; NaN propagates; thread-count invariant",
          "[norm-kernels]") {
  const Tensor g = rand32({8, 16, 14, 14}, 21), gl = rand32({4, 33, 100}, 22);
  Tensor ref_c = poisoned({16, 1, 1}), ref_l = poisoned({100});
  kernels::cpu::sum_forward_reference(ref_c.reshape({1, 16, 1, 1}), g, {true, false, true, true});
  kernels::cpu::sum_forward_reference(ref_l.reshape({1, 1, 100}), gl, {true, true, false});
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    GRAFT_REQUIRE_CLOSE(sum_to(g, {16, 1, 1}), ref_c, kTolF32);
    GRAFT_REQUIRE_CLOSE(sum_to(gl, {100}), ref_l, kTolF32);
    GRAFT_REQUIRE_CLOSE(mean(gl, {0, 1}), div(ref_l, 132.0), kTolF32);
    const Tensor xn = with_nan(gl, 5 * 100 + 7);  // column 7
    Tensor nref = poisoned({1, 1, 100});
    kernels::cpu::sum_forward_reference(nref, xn, {true, true, false});
    NORM_REQUIRE_CLOSE_NAN(sum_to(xn, {100}), nref.reshape({100}));
    NORM_REQUIRE_CLOSE_NAN(sum(with_nan(g, 3)), sum(with_nan(g, 3).to(DType::Float64)).to(DType::Float32));
  });
  require_thread_count_invariant([&] {
    return std::vector<Tensor>{sum_to(g, {16, 1, 1}), sum_to(gl, {100}), sum(g), sum(gl, {2})};
  });

  uint64_t seed = 40;
  for (int64_t K : kRowLengths) {
    for (int64_t correction : {0, 1}) {
      const int64_t M = K > 1000 ? 2 : 9;
      const Tensor x = rand32({M, K}, seed++, -1, 3), dout = rand32({M}, seed++);
      Tensor ref = poisoned({M}), dref = poisoned({M, K});
      kernels::cpu::var_forward_reference(ref, x, M, K, correction);
      kernels::cpu::var_backward_reference(dref, dout, x, M, K, correction);
      for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
        INFO("var K " << K << " correction " << correction);
        Tensor out = poisoned({M}), dx = poisoned({M, K});
        var_kernel.cpu(out, x, M, K, correction);
        if (K > correction) GRAFT_REQUIRE_CLOSE(out, ref, kTolF32);
        else NORM_REQUIRE_CLOSE_NAN(out, ref);
        var_backward_kernel.cpu(dx, dout, x, M, K, correction);
        if (K > correction) GRAFT_REQUIRE_CLOSE(dx, dref, kTolF32);
      });
    }
  }
}

// ---- max / min / argmax / amax ------------------------------------------------------------------------
TEST_CASE("max / argmax / amax kernels: first occurrence, ties, NaN, any dim", "[norm-kernels]") {
  uint64_t seed = 80;
  std::vector<std::pair<Shape, int>> cases;
  for (int64_t n : kRowLengths) cases.push_back({{n > 1000 ? 2 : 5, n}, 1});
  for (const auto& c : std::vector<std::pair<Shape, int>>{{{3, 17, 5}, 1}, {{2, 7, 33}, 1}, {{1000, 7}, 0}, {{5, 1}, 1}})
    cases.push_back(c);
  for (const auto& [shape, dim] : cases) {
    const auto split = detail_rows::split_at(shape, dim);
    // Values on a coarse grid (ties), one row with a NaN, one with two NaNs.
    Tensor x = rand32(shape, seed++, -4, 4);
    float* px = x.data<float>();
    for (int64_t i = 0; i < x.numel(); ++i) px[i] = std::round(px[i] * 2.0f) / 2.0f;
    const int64_t last_row = (split.outer - 1) * split.n * split.inner;  // element 0 of the last outer block
    if (split.n > 3) {
      px[last_row + 2 * split.inner] = std::numeric_limits<float>::quiet_NaN();
      px[last_row + (split.n - 1) * split.inner] = std::numeric_limits<float>::quiet_NaN();
    }
    const Shape out_shape = detail_rows::without_dim(shape, dim, false);
    for (bool is_max : {true, false}) {
      INFO("shape " << shape << " dim " << dim << (is_max ? " max" : " min"));
      Tensor v_ref = poisoned(out_shape), i_ref = empty(out_shape, DType::Int64);
      kernels::cpu::max_dim_forward_reference(v_ref, i_ref, x, split.outer, split.n, split.inner, is_max);
      std::vector<bool> mask(size_t(shape.rank()), false);
      mask[size_t(dim)] = true;
      const Tensor rows = detail_rows::to_rows(x, mask);
      const int64_t M = split.outer * split.inner;
      Tensor a_ref = poisoned({M});
      kernels::cpu::amax_forward_reference(a_ref, rows, M, split.n, is_max);
      for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
        Tensor v = poisoned(out_shape), idx = full(out_shape, -1.0, DType::Int64);
        max_dim_kernel.cpu(v, idx, x, split.outer, split.n, split.inner, is_max);
        NORM_REQUIRE_CLOSE_NAN(v, v_ref);
        REQUIRE(idx.to_vector() == i_ref.to_vector());
        Tensor idx_only = full(out_shape, -1.0, DType::Int64);  // argmax: no values
        max_dim_kernel.cpu(Tensor(), idx_only, x, split.outer, split.n, split.inner, is_max);
        REQUIRE(idx_only.to_vector() == i_ref.to_vector());
        Tensor a = poisoned({M});
        amax_kernel.cpu(a, rows, M, split.n, is_max);
        NORM_REQUIRE_CLOSE_NAN(a, a_ref);
      });
    }
  }
}

// ---- strided copy ---------------------------------------------------------------------------------------
TEST_CASE("copy kernel: permutations, transposes, slices and broadcasts copy exactly", "[norm-kernels]") {
  const Tensor base = rand32({2, 3, 5, 7}, 31);
  std::vector<Tensor> views;
  std::vector<int64_t> perm = {0, 1, 2, 3};
  do {
    views.push_back(base.permute(perm));
  } while (std::next_permutation(perm.begin(), perm.end()));
  views.push_back(rand32({17, 33}, 32).transpose(0, 1));
  views.push_back(rand32({2, 5, 7, 33}, 33).permute({0, 3, 1, 2}));  // NHWC -> NCHW
  views.push_back(rand32({2, 7, 5, 33}, 34).permute({0, 2, 3, 1}));  // NCHW -> NHWC
  views.push_back(rand32({1, 7}, 35).expand({5, 7}));
  views.push_back(rand32({5, 1}, 36).expand({5, 1000}));
  views.push_back(rand32({3, 1, 17}, 37).expand({3, 4, 17}));
  views.push_back(rand32({9, 40}, 38).narrow(1, 3, 33));
  views.push_back(rand32({9, 40, 3}, 39).narrow(1, 3, 33).select(2, 1));  // strided inner dim
  views.push_back(rand32({100003}, 40));
  views.push_back(rand32({50, 3}, 41).select(1, 2));
  views.push_back(rand32({1}, 42).expand({70000}));
  for (size_t v = 0; v < views.size(); ++v) {
    INFO("view " << v << " shape " << views[v].shape() << " strides " << views[v].strides());
    Tensor ref = poisoned(views[v].shape());
    kernels::cpu::copy_forward_reference(ref, views[v]);
    for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
      Tensor out = poisoned(views[v].shape());
      copy_kernel.cpu(out, views[v]);
      REQUIRE(same_bits(out, ref));
      REQUIRE(same_bits(views[v].contiguous(), ref));
      if (views[v].dim() == 2) {  // into a transposed destination
        Tensor dst = empty({views[v].size(1), views[v].size(0)}).transpose(0, 1);
        poison(dst);
        copy_kernel.cpu(dst, views[v]);
        REQUIRE(same_bits(dst, ref));
      }
    });
  }
  require_thread_count_invariant([&] { return std::vector<Tensor>{rand32({4, 56, 56, 16}, 43).permute({0, 3, 1, 2}).contiguous()}; });
}

// ---- cross_entropy --------------------------------------------------------------------------------------
TEST_CASE("cross_entropy kernels: class counts with tails, weights, label smoothing, ignore_index",
          "[norm-kernels]") {
  uint64_t seed = 60;
  for (int64_t C : kRowLengths) {
    const int64_t N = C > 1000 ? 3 : 11;
    std::vector<double> t;
    for (int64_t i = 0; i < N; ++i) t.push_back(i == 2 ? -100.0 : double((i * 7919) % C));
    const Tensor target = from_vector(t, {N, 1}, DType::Int64);
    const Tensor logits = rand32({N, C, 1}, seed++, -5, 5);
    for (bool weighted : {false, true}) {
      for (double smoothing : {0.0, 0.1}) {
        INFO("C " << C << (weighted ? " weighted" : "") << " label_smoothing " << smoothing);
        const Tensor w = weighted ? rand32({C}, seed++, 0.2, 2.0) : Tensor();
        const Tensor dloss = rand32({N}, seed++, -1, 1), dmean = full({1}, 0.25).expand({N});
        Tensor loss_ref = poisoned({N}), lse_ref = poisoned({N});
        kernels::cpu::cross_entropy_forward_reference(loss_ref, lse_ref, logits, target, w, -100, smoothing);
        Tensor dx_ref = poisoned({N, C, 1}), dxm_ref = poisoned({N, C, 1});
        kernels::cpu::cross_entropy_backward_reference(dx_ref, dloss, logits, lse_ref, target, w, -100, smoothing);
        kernels::cpu::cross_entropy_backward_reference(dxm_ref, dmean, logits, lse_ref, target, w, -100, smoothing);
        for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
          Tensor loss = poisoned({N}), lse = poisoned({N});
          cross_entropy_kernel.cpu(loss, lse, logits, target, w, -100, smoothing);
          GRAFT_REQUIRE_CLOSE(loss, loss_ref, kTolF32);
          GRAFT_REQUIRE_CLOSE(lse, lse_ref, kTolF32);
          Tensor dx = poisoned({N, C, 1}), dxm = poisoned({N, C, 1});
          cross_entropy_backward_kernel.cpu(dx, dloss, logits, lse_ref, target, w, -100, smoothing);
          GRAFT_REQUIRE_CLOSE(dx, dx_ref, kTolF32);
          cross_entropy_backward_kernel.cpu(dxm, dmean, logits, lse_ref, target, w, -100, smoothing);
          GRAFT_REQUIRE_CLOSE(dxm, dxm_ref, kTolF32);
        });
      }
    }
  }
  // a NaN logit makes its row's loss NaN
  const Tensor logits = with_nan(rand32({4, 17, 1}, 70), 17 + 3);
  const Tensor target = from_vector(std::vector<double>{1, 2, 3, 4}, {4, 1}, DType::Int64);
  Tensor loss_ref = poisoned({4}), lse_ref = poisoned({4});
  kernels::cpu::cross_entropy_forward_reference(loss_ref, lse_ref, logits, target, Tensor(), -100, 0.0);
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    Tensor loss = poisoned({4}), lse = poisoned({4});
    cross_entropy_kernel.cpu(loss, lse, logits, target, Tensor(), -100, 0.0);
    NORM_REQUIRE_CLOSE_NAN(loss, loss_ref);
    NORM_REQUIRE_CLOSE_NAN(lse, lse_ref);
  });
}

TEST_CASE("norm kernels: the fast ISAs are registered in the slots", "[norm-kernels]") {
  for (const char* op : {"softmax", "softmax_backward", "log_softmax", "log_softmax_backward", "layer_norm",
                         "layer_norm_backward", "batch_norm", "batch_norm_backward", "sum", "var", "var_backward",
                         "copy", "cross_entropy", "cross_entropy_backward", "max", "amax"}) {
    INFO(op);
    REQUIRE(kernel_slot_registry().at(op).cpu_fast == "avx2 avx512");
  }
}
