// tests/test_optim_kernels.cpp - the fused optimizer updates and gradient-norm kernels
// (kernels/graft/kernels/cpu/optim.hpp) against their plain references (optim/sgd.hpp, adam.hpp,
// clip.hpp) under every CPU ISA, on sizes with tails, with NaN / inf inputs and poisoned outputs;
// the optimizers' float64 path against the tensor-op formulas; zero_grad in place.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "harness.hpp"
#include "graft/optim/adam.hpp"
#include "graft/optim/clip.hpp"
#include "graft/optim/sgd.hpp"

namespace {

using namespace graft;
using graft_test::for_each_cpu_isa;
using graft_test::kTolF32;
using graft_test::kTolF64;
using kernels::cpu::AdamCoefficients;
using kernels::cpu::CpuIsa;
using kernels::cpu::SgdCoefficients;

const int64_t kSizes[] = {1, 7, 17, 1000, 100003};

// Random float32 values in [lo, hi) of n elements; with special, a NaN at n / 2 and an inf at n - 1
// (n >= 3), which the update must carry exactly as the reference does.
std::vector<float> random_floats(int64_t n, double lo, double hi, uint64_t seed, bool special = false) {
  const Tensor t = graft_test::rand_in({n}, lo, hi, seed, DType::Float32);
  std::vector<float> v(t.data<float>(), t.data<float>() + n);
  if (special && n >= 3) {
    v[size_t(n / 2)] = std::numeric_limits<float>::quiet_NaN();
    v[size_t(n - 1)] = std::numeric_limits<float>::infinity();
  }
  return v;
}

Tensor tensor_of(const std::vector<float>& v) {
  Tensor t = empty({int64_t(v.size())}, DType::Float32);
  std::memcpy(t.data<float>(), v.data(), v.size() * sizeof(float));
  return t;
}

// Same NaN positions, and every other element within the float32 tolerance of the reference
// (infinities equal). Also counts the elements whose bits differ: the kernels are written to agree
// with the reference to the last bit.
void require_same_update(const Tensor& actual, const std::vector<float>& expected, const char* what) {
  const float* a = actual.data<float>();
  int64_t differing_bits = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double x = a[i], e = expected[i];
    const bool ok = std::isnan(e) ? std::isnan(x)
                    : std::isinf(e) ? x == e
                                    : std::abs(x - e) <= kTolF32.atol + kTolF32.rtol * std::abs(e);
    if (!ok) {
      INFO(what << " element " << i << " of " << expected.size() << ": " << x << " vs reference " << e);
      REQUIRE(ok);
    }
    differing_bits += std::memcmp(&a[i], &expected[i], sizeof(float)) != 0;
  }
  INFO(what << ": " << differing_bits << " of " << expected.size() << " elements differ in their bits");
  CHECK(differing_bits == 0);
}

}  // namespace

TEST_CASE("optim kernels: fused SGD update equals the reference under every ISA", "[optim][optim_kernels]") {
  for_each_cpu_isa([&](CpuIsa isa) {
    for (const int64_t n : kSizes)
      for (const double momentum : {0.0, 0.9})
        for (const double dampening : {0.0, 0.25})
          for (const bool nesterov : {false, true})
            for (const double weight_decay : {0.0, 0.05})
              for (const bool first_step : {false, true})
                for (const bool special : {false, true}) {
                  if (momentum == 0.0 && (dampening != 0.0 || nesterov || first_step)) continue;
                  if (nesterov && dampening != 0.0) continue;
                  INFO(kernels::cpu::cpu_isa_name(isa) << " n " << n << " momentum " << momentum << " dampening "
                                                       << dampening << " nesterov " << nesterov << " wd "
                                                       << weight_decay << " first " << first_step << " special "
                                                       << special);
                  SgdCoefficients c;
                  c.neg_lr = -0.1;
                  c.weight_decay = weight_decay;
                  c.momentum = momentum;
                  c.one_minus_dampening = 1.0 - dampening;
                  c.nesterov = nesterov;
                  c.first_step = first_step;
                  std::vector<float> p = random_floats(n, -2, 2, 11, special);
                  std::vector<float> g = random_floats(n, -1, 1, 12, special);
                  std::vector<float> buf = random_floats(n, -1, 1, 13);
                  Tensor tp = tensor_of(p), tg = tensor_of(g), tbuf;
                  if (momentum != 0.0) {
                    tbuf = tensor_of(buf);
                    if (first_step) graft_test::poison(tbuf);  // written, never read
                  }
                  sgd_update_kernel.get(kCPU)(tp, tg, tbuf, c);
                  kernels::cpu::sgd_update_reference(p.data(), g.data(), buf.data(), n, c);
                  require_same_update(tp, p, "p");
                  if (momentum != 0.0) require_same_update(tbuf, buf, "momentum_buffer");
                  REQUIRE(std::memcmp(tg.data<float>(), g.data(), size_t(n) * sizeof(float)) == 0);
                }
  });
}

TEST_CASE("optim kernels: fused Adam / AdamW update equals the reference under every ISA",
          "[optim][optim_kernels]") {
  for_each_cpu_isa([&](CpuIsa isa) {
    for (const int64_t n : kSizes)
      for (const bool decoupled : {false, true})
        for (const double weight_decay : {0.0, 0.1})
          for (const double t : {1.0, 3.0})
            for (const double eps : {1e-8, 0.0})
              for (const bool special : {false, true}) {
                INFO(kernels::cpu::cpu_isa_name(isa) << " n " << n << " decoupled " << decoupled << " wd "
                                                     << weight_decay << " t " << t << " eps " << eps << " special "
                                                     << special);
                const double lr = 1e-2, b1 = 0.9, b2 = 0.999;
                AdamCoefficients c;
                c.decay_factor = decoupled ? 1.0 - lr * weight_decay : 1.0;
                c.weight_decay = decoupled ? 0.0 : weight_decay;
                c.beta1 = b1;
                c.one_minus_beta1 = 1.0 - b1;
                c.beta2 = b2;
                c.one_minus_beta2 = 1.0 - b2;
                c.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(b2, t));
                c.neg_step_size = -(lr / (1.0 - std::pow(b1, t)));
                c.eps = eps;
                std::vector<float> p = random_floats(n, -2, 2, 21, special);
                std::vector<float> g = random_floats(n, -1, 1, 22, special);
                std::vector<float> m = random_floats(n, -0.1, 0.1, 23);
                std::vector<float> v = random_floats(n, 0, 0.01, 24);
                if (t == 1.0) {  // the first step starts from zeros (with eps 0 and g 0: 0 / 0)
                  std::fill(m.begin(), m.end(), 0.0f);
                  std::fill(v.begin(), v.end(), 0.0f);
                  g[0] = 0.0f;
                }
                Tensor tp = tensor_of(p), tg = tensor_of(g), tm = tensor_of(m), tv = tensor_of(v);
                adam_update_kernel.get(kCPU)(tp, tg, tm, tv, c);
                kernels::cpu::adam_update_reference(p.data(), g.data(), m.data(), v.data(), n, c);
                require_same_update(tp, p, "p");
                require_same_update(tm, m, "exp_avg");
                require_same_update(tv, v, "exp_avg_sq");
              }
  });
}

TEST_CASE("optim kernels: gradient norms and scaling equal the double reference under every ISA",
          "[optim][optim_kernels]") {
  for_each_cpu_isa([&](CpuIsa isa) {
    for (const int64_t n : {int64_t(1), int64_t(7), int64_t(17), int64_t(1000), int64_t(100003), int64_t(300001)})
      for (const double norm_type : {1.0, 2.0, 3.0, std::numeric_limits<double>::infinity()}) {
        INFO(kernels::cpu::cpu_isa_name(isa) << " n " << n << " norm_type " << norm_type);
        const std::vector<float> x = random_floats(n, -3, 3, 31);
        const Tensor tx = tensor_of(x);
        const double fast = grad_norm_kernel.get(kCPU)(tx, norm_type);
        const double ref = kernels::cpu::grad_norm_reference(x.data(), n, norm_type);
        INFO("fast " << fast << " reference " << ref);
        REQUIRE(std::abs(fast - ref) <= kTolF32.atol + kTolF32.rtol * std::abs(ref));
        if (std::isinf(norm_type)) REQUIRE(fast == ref);
        // A non-finite element makes the part NaN, whichever path ran.
        for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
          std::vector<float> y = x;
          y[size_t(n - 1)] = bad;
          REQUIRE(std::isnan(grad_norm_kernel.get(kCPU)(tensor_of(y), norm_type)));
        }
      }
    // Finite elements whose float squares overflow: the double reference decides (finite).
    const std::vector<float> huge(33, 1e20f);
    const double part = grad_norm_kernel.get(kCPU)(tensor_of(huge), 2.0);
    REQUIRE(std::abs(part - 33 * 1e40) <= 1e-6 * 33 * 1e40);
    // In-place scaling, as g.mul_(s).
    for (const int64_t n : kSizes) {
      std::vector<float> x = random_floats(n, -3, 3, 32, true);
      Tensor tx = tensor_of(x);
      kernels::cpu::grad_scale(tx, 0.3);
      for (float& e : x) e = e * 0.3f;
      require_same_update(tx, x, "scaled gradient");
    }
  });
}

TEST_CASE("optim kernels: the updates and norms do not depend on the thread count", "[optim][optim_kernels]") {
  const int threads = get_num_threads();
  const int64_t n = 1000003;
  const std::vector<float> p0 = random_floats(n, -2, 2, 41), g = random_floats(n, -1, 1, 42);
  std::vector<std::vector<float>> results;
  std::vector<double> norms;
  for (const int t : {1, 2, 3}) {
    set_num_threads(t);
    Tensor p = tensor_of(p0), m = zeros({n}), v = zeros({n}), tg = tensor_of(g);
    AdamCoefficients c;
    c.neg_step_size = -1e-2;
    c.bias_correction2_sqrt = std::sqrt(0.001);
    adam_update_kernel.get(kCPU)(p, tg, m, v, c);
    results.emplace_back(p.data<float>(), p.data<float>() + n);
    norms.push_back(grad_norm_kernel.get(kCPU)(tg, 2.0));
  }
  set_num_threads(threads);
  for (size_t k = 1; k < results.size(); ++k) {
    REQUIRE(std::memcmp(results[k].data(), results[0].data(), size_t(n) * sizeof(float)) == 0);
    REQUIRE(norms[k] == norms[0]);
  }
}

TEST_CASE("optim kernels: float64 optimizers follow the tensor-op formulas; odd layouts; versions",
          "[optim][optim_kernels]") {
  // The step of each optimizer written with tensor ops (float64), as the headers state it.
  const int64_t n = 37;
  Tensor p = graft_test::rand_in({n}, -1, 1, 51);
  p.set_requires_grad(true);
  Tensor q = p.detach().clone();  // the oracle's parameter
  Tensor m = zeros({n}, DType::Float64), v = zeros({n}, DType::Float64), buf;
  const double lr = 0.05, wd = 0.1, b1 = 0.8, b2 = 0.99, eps = 1e-6, momentum = 0.9, dampening = 0.2;
  optim::Adam adam({p}, lr, {b1, b2}, eps, wd);
  optim::SGD sgd({p}, lr, momentum, dampening, wd);
  for (int step = 1; step <= 3; ++step) {
    const Tensor grad = graft_test::rand_in({n}, -1, 1, uint64_t(60 + step));
    p.set_grad(grad.clone());
    const uint64_t version = p.version();
    adam.step();
    CHECK(p.version() > version);
    NoGradGuard no_grad;
    const Tensor gq = grad + q * wd;
    m = m * b1 + gq * (1 - b1);
    v = v * b2 + gq * gq * (1 - b2);
    const double bc1 = 1 - std::pow(b1, step), bc2_sqrt = std::sqrt(1 - std::pow(b2, step));
    q = q - (m / (sqrt(v) / bc2_sqrt + eps)) * (lr / bc1);
    GRAFT_REQUIRE_CLOSE(p, q, kTolF64);
  }
  for (int step = 1; step <= 3; ++step) {
    const Tensor grad = graft_test::rand_in({n}, -1, 1, uint64_t(70 + step));
    p.set_grad(grad.clone());
    sgd.step();
    NoGradGuard no_grad;
    const Tensor d = grad + q * wd;
    buf = step == 1 ? d : buf * momentum + d * (1 - dampening);
    q = q - buf * lr;
    GRAFT_REQUIRE_CLOSE(p, q, kTolF64);
    GRAFT_REQUIRE_CLOSE(sgd.momentum_buffer(0), buf, kTolF64);
  }

  // A non-contiguous float32 parameter and gradient update as their contiguous copies do.
  Tensor base = graft_test::rand_in({5, 9}, -1, 1, 81, DType::Float32);
  Tensor odd = base.transpose(0, 1);  // [9, 5], not contiguous
  REQUIRE(!odd.is_contiguous());
  odd.set_requires_grad(true);
  Tensor dense = odd.detach().contiguous().clone();
  dense.set_requires_grad(true);
  const Tensor g = graft_test::rand_in({5, 9}, -1, 1, 82, DType::Float32).transpose(0, 1);
  odd.set_grad(g);
  dense.set_grad(g.contiguous());
  optim::AdamW a1({odd}, 0.1), a2({dense}, 0.1);
  for (int s = 0; s < 2; ++s) {
    a1.step();
    a2.step();
  }
  GRAFT_REQUIRE_CLOSE(odd, dense, kTolF32);
  REQUIRE(graft_test::max_abs_diff(odd, dense) == 0.0);
}

TEST_CASE("optim kernels: zero_grad(false) clears gradients in place", "[optim][optim_kernels]") {
  Tensor w = graft_test::rand_in({300, 301}, -1, 1, 91, DType::Float32);
  Tensor b = graft_test::rand_in({7}, -1, 1, 92, DType::Float32);
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  w.set_grad(graft_test::rand_in({300, 301}, -1, 1, 93, DType::Float32));
  Tensor bt = graft_test::rand_in({7, 3}, -1, 1, 95, DType::Float32).select(1, 1);  // stride 3
  b.set_grad(bt);
  REQUIRE(!b.grad().is_contiguous());
  optim::SGD opt({w, b}, 0.1);
  const void* wdata = w.grad().data_ptr();
  const uint64_t version = w.grad().version();
  opt.zero_grad(/*set_to_none=*/false);
  REQUIRE(w.grad().data_ptr() == wdata);  // the same storage, cleared
  CHECK(w.grad().version() > version);
  GRAFT_REQUIRE_CLOSE(w.grad(), zeros({300, 301}), kTolF32);
  GRAFT_REQUIRE_CLOSE(b.grad(), zeros({7}), kTolF32);
  for (const double e : w.grad().to_vector()) REQUIRE(std::signbit(e) == false);
  opt.zero_grad();
  CHECK(!w.grad().defined());
}

TEST_CASE("optim kernels: clip_grad_norm_ over many gradients equals the double formula", "[optim][optim_kernels]") {
  for_each_cpu_isa([&](CpuIsa isa) {
    INFO(kernels::cpu::cpu_isa_name(isa));
    std::vector<Tensor> ps;
    double sum_sq = 0;
    for (const int64_t n : {int64_t(3), int64_t(1000), int64_t(70001), int64_t(17)}) {
      Tensor p = zeros({n});
      p.set_requires_grad(true);
      p.set_grad(graft_test::rand_in({n}, -1, 1, uint64_t(100 + n), DType::Float32));
      for (const double e : p.grad().to_vector()) sum_sq += e * e;
      ps.push_back(p);
    }
    std::vector<Tensor> before;
    for (const Tensor& p : ps) before.push_back(p.grad().clone());
    const double total = optim::clip_grad_norm_(ps, 1.0);
    REQUIRE(std::abs(total - std::sqrt(sum_sq)) <= 1e-5 * std::sqrt(sum_sq));
    const float coef = float(1.0 / (total + 1e-6));
    for (size_t k = 0; k < ps.size(); ++k) GRAFT_REQUIRE_CLOSE(ps[k].grad(), before[k] * double(coef), kTolF32);
  });
}

TEST_CASE("optim kernels: bfloat16 and float16 parameters take the reference, computed in float",
          "[optim][optim_kernels]") {
  // Without momentum an SGD step rounds once (p = T(fma(fma(p, wd, g), -lr, p)) in float), so it
  // equals the float32 step on the same values, rounded to T.
  for (const DType dt : {DType::BFloat16, DType::Float16}) {
    INFO(dtype_name(dt));
    const Tensor p0 = graft_test::rand_in({19}, -1, 1, 201, DType::Float32).to(dt);
    const Tensor g0 = graft_test::rand_in({19}, -1, 1, 202, DType::Float32).to(dt);
    Tensor p = p0.clone(), q = p0.to(DType::Float32).clone();
    p.set_requires_grad(true);
    q.set_requires_grad(true);
    p.set_grad(g0.clone());
    q.set_grad(g0.to(DType::Float32));
    optim::SGD a({p}, 0.1, 0.0, 0.0, 0.05), b({q}, 0.1, 0.0, 0.0, 0.05);
    a.step();
    b.step();
    REQUIRE(p.dtype() == dt);
    REQUIRE(graft_test::max_abs_diff(p, q.to(dt)) == 0.0);
    REQUIRE(graft_test::max_abs_diff(p, p0) > 0.0);
  }
}
