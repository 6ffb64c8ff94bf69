// tests/test_attention_kernels.cpp - the tiled flash-attention kernels (kernels/graft/kernels/cpu/attention.hpp)
// against the plain reference of graft/ops/attention.hpp, under every ISA this CPU has.
//
// The oracle is the op in float64 (always the reference); the float32 op under each ISA (scalar: the
// reference in float32; avx2, avx512: the fast kernels) must match it within kTolF32, forward and every
// gradient. Sequence lengths 1, 7, 33, 100, 130 do not divide the 64 x 64 tile nor the vector width.
#include <string>
#include <vector>

#include "harness.hpp"
#include "graft/kernels/cpu/attention.hpp"

namespace {

using namespace graft;
using namespace graft_test;

enum class Mask { None, Padding, Causal, PaddingAndCausal, Float };
const char* mask_name(Mask m) {
  switch (m) {
    case Mask::None: return "none";
    case Mask::Padding: return "padding";
    case Mask::Causal: return "causal";
    case Mask::PaddingAndCausal: return "padding+causal";
    case Mask::Float: return "float";
  }
  return "?";
}

// The keys batch b0 of B0 keeps: all for b0 = 0, then fewer (at least one).
int64_t kept_keys(int64_t b0, int64_t S) { return std::max<int64_t>(1, S - b0 * (S / 3 + 1)); }

// The attn_mask for a case with batch dims [B0, H] (undefined for None and Causal).
Tensor make_mask(Mask m, int64_t B0, int64_t L, int64_t S) {
  if (m == Mask::Padding) {  // [B0, 1, 1, S], as BERT's
    std::vector<int64_t> keep(size_t(B0 * S));
    for (int64_t b = 0; b < B0; ++b)
      for (int64_t j = 0; j < S; ++j) keep[size_t(b * S + j)] = j < kept_keys(b, S);
    return from_vector(keep, {B0, 1, 1, S}, DType::Bool);
  }
  if (m == Mask::PaddingAndCausal) {  // [B0, 1, L, S]
    std::vector<int64_t> keep(size_t(B0 * L * S));
    for (int64_t b = 0; b < B0; ++b)
      for (int64_t i = 0; i < L; ++i)
        for (int64_t j = 0; j < S; ++j) keep[size_t((b * L + i) * S + j)] = j < kept_keys(b, S) && j <= i;
    return from_vector(keep, {B0, 1, L, S}, DType::Bool);
  }
  if (m == Mask::Float) return rand_in({L, S}, -2.0, 0.5, 17);  // [L, S], broadcast over [B0, H]
  return Tensor();
}

struct Result {
  Tensor out, dq, dk, dv;
};

// The op in dtype dt from float64 inputs, and its gradients under sum(out * g). Re-seeds the default
// generator first, so dropout draws the same mask in every call.
Result run(const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& mask, double dropout_p, bool causal,
           const Tensor& g, DType dt) {
  Tensor q = q0.to(dt).clone().set_requires_grad();
  Tensor k = k0.to(dt).clone().set_requires_grad();
  Tensor v = v0.to(dt).clone().set_requires_grad();
  manual_seed(11);
  Tensor o = scaled_dot_product_attention(q, k, v, mask, dropout_p, causal);
  sum(mul(o, g.to(dt))).backward();
  return {o.detach(), q.grad(), k.grad(), v.grad()};
}

void require_result_close(const Result& fast, const Result& ref) {
  {
    INFO("out");
    GRAFT_REQUIRE_CLOSE(fast.out, ref.out.to(DType::Float32), kTolF32);
  }
  {
    INFO("dq");
    GRAFT_REQUIRE_CLOSE(fast.dq, ref.dq.to(DType::Float32), kTolF32);
  }
  {
    INFO("dk");
    GRAFT_REQUIRE_CLOSE(fast.dk, ref.dk.to(DType::Float32), kTolF32);
  }
  {
    INFO("dv");
    GRAFT_REQUIRE_CLOSE(fast.dv, ref.dv.to(DType::Float32), kTolF32);
  }
}

struct Case {
  int64_t L, S, E, Ev;
};

// One case under every ISA: lead dims [2, 3] (B = 6 heads).
void check_case(const Case& c, Mask m, double dropout_p = 0.0) {
  const int64_t B0 = 2, H = 3;
  INFO("L " << c.L << " S " << c.S << " E " << c.E << " Ev " << c.Ev << " mask " << mask_name(m) << " dropout "
            << dropout_p);
  const Tensor q = rand_in({B0, H, c.L, c.E}, -1, 1, 1);
  const Tensor k = rand_in({B0, H, c.S, c.E}, -1, 1, 2);
  const Tensor v = rand_in({B0, H, c.S, c.Ev}, -1, 1, 3);
  const Tensor g = rand_in({B0, H, c.L, c.Ev}, -1, 1, 4);
  const Tensor mask = make_mask(m, B0, c.L, c.S);
  const bool causal = m == Mask::Causal;
  const Result ref = run(q, k, v, mask, dropout_p, causal, g, DType::Float64);
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    require_result_close(run(q, k, v, mask, dropout_p, causal, g, DType::Float32), ref);
  });
}

}  // namespace

TEST_CASE("attention kernels: fast forward and backward match the reference", "[attention-kernels]") {
  for (int64_t E : {8, 32, 64, 80})
    for (int64_t n : {1, 7, 33, 100, 130})
      for (Mask m : {Mask::None, Mask::Padding, Mask::Causal, Mask::PaddingAndCausal}) check_case({n, n, E, E}, m);
}

TEST_CASE("attention kernels: L != S, Ev != E, float masks", "[attention-kernels]") {
  const Case cases[] = {{7, 130, 32, 32}, {130, 33, 32, 32}, {1, 100, 64, 64}, {100, 1, 8, 8},
                        {33, 100, 64, 32}, {100, 7, 8, 80}, {65, 129, 80, 17}};
  for (const Case& c : cases)
    for (Mask m : {Mask::None, Mask::Padding, Mask::Causal, Mask::PaddingAndCausal, Mask::Float}) check_case(c, m);
}

TEST_CASE("attention kernels: dropout draws the reference's mask for the same seed", "[attention-kernels]") {
  for (double p : {0.1, 0.5, 1.0}) {
    check_case({33, 33, 32, 32}, Mask::None, p);
    check_case({100, 130, 64, 64}, Mask::Padding, p);
    check_case({130, 130, 8, 8}, Mask::Causal, p);
  }
}

TEST_CASE("attention kernels: a fully masked row gives zeros and no gradient", "[attention-kernels]") {
  const int64_t B0 = 2, L = 70, S = 67, E = 16;
  std::vector<int64_t> keep(size_t(B0 * S), 1);
  for (int64_t j = 0; j < S; ++j) keep[size_t(S + j)] = 0;  // batch 1 sees no key
  const Tensor mask = from_vector(keep, {B0, 1, 1, S}, DType::Bool);
  const Tensor q = rand_in({B0, 2, L, E}, -1, 1, 1), k = rand_in({B0, 2, S, E}, -1, 1, 2);
  const Tensor v = rand_in({B0, 2, S, E}, -1, 1, 3), g = rand_in({B0, 2, L, E}, -1, 1, 4);
  const Result ref = run(q, k, v, mask, 0.0, false, g, DType::Float64);
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    const Result r = run(q, k, v, mask, 0.0, false, g, DType::Float32);
    require_result_close(r, ref);
    for (double x : r.out.select(0, 1).to_vector()) REQUIRE(x == 0.0);
    for (double x : r.dq.select(0, 1).to_vector()) REQUIRE(x == 0.0);
    for (double x : r.dk.select(0, 1).to_vector()) REQUIRE(x == 0.0);
    for (double x : r.dv.select(0, 1).to_vector()) REQUIRE(x == 0.0);
  });
}

TEST_CASE("attention kernels write every output element (outputs poisoned)", "[attention-kernels]") {
  using namespace kernels::cpu;
  const int64_t B = 3, L = 100, S = 33, E = 32, Ev = 17;
  const Tensor q = rand_in({B, L, E}, -1, 1, 1, DType::Float32), k = rand_in({B, S, E}, -1, 1, 2, DType::Float32);
  const Tensor v = rand_in({B, S, Ev}, -1, 1, 3, DType::Float32), dout = rand_in({B, L, Ev}, -1, 1, 4, DType::Float32);
  const Tensor bias = rand_in({L, S}, -1, 1, 5, DType::Float32).expand({B, L, S});
  for (bool causal : {false, true}) {
    for_each_cpu_isa([&](CpuIsa isa) {
      const Tensor out = empty({B, L, Ev}, DType::Float32), lse = empty({B, L}, DType::Float32);
      const Tensor dq = empty({B, L, E}, DType::Float32), dk = empty({B, S, E}, DType::Float32);
      const Tensor dv = empty({B, S, Ev}, DType::Float32);
      for (const Tensor& t : {out, lse, dq, dk, dv}) poison(t);
      const Tensor b = causal ? Tensor() : bias;
      const bool fast = attention_forward_fast(out, lse, q, k, v, b, Tensor(), 0.0, causal, 0.3);
      REQUIRE(fast == (isa != CpuIsa::Scalar));
      if (!fast) attention_forward_cpu(out, lse, q, k, v, b, Tensor(), 0.0, causal, 0.3);
      attention_backward_cpu(dq, dk, dv, dout, q, k, v, out, lse, b, Tensor(), 0.0, causal, 0.3);
      for (const Tensor& t : {out, lse, dq, dk, dv})
        for (double x : t.to_vector()) REQUIRE(!std::isnan(x));
    });
  }
}

TEST_CASE("attention kernels: results do not depend on the thread count", "[attention-kernels]") {
  const int64_t B0 = 2, H = 3, L = 130, S = 100, E = 32;
  const Tensor q = rand_in({B0, H, L, E}, -1, 1, 1), k = rand_in({B0, H, S, E}, -1, 1, 2);
  const Tensor v = rand_in({B0, H, S, E}, -1, 1, 3), g = rand_in({B0, H, L, E}, -1, 1, 4);
  const Tensor mask = make_mask(Mask::Padding, B0, L, S);
  const int saved = get_num_threads();
  for_each_cpu_isa([&](kernels::cpu::CpuIsa) {
    set_num_threads(1);
    const Result one = run(q, k, v, mask, 0.2, false, g, DType::Float32);
    set_num_threads(3);
    const Result three = run(q, k, v, mask, 0.2, false, g, DType::Float32);
    set_num_threads(saved);
    REQUIRE(one.out.to_vector() == three.out.to_vector());
    REQUIRE(one.dq.to_vector() == three.dq.to_vector());
    REQUIRE(one.dk.to_vector() == three.dk.to_vector());
    REQUIRE(one.dv.to_vector() == three.dv.to_vector());
  });
  set_num_threads(saved);
}

TEST_CASE("attention kernels: head views, broadcast k/v, a strided incoming gradient", "[attention-kernels]") {
  // As BERT / ViT / MultiheadAttention call it: q, k, v are [B0, T, H, E] projections viewed as
  // [B0, H, T, E]; the output is transposed back and flattened (its gradient arrives strided). Also k, v
  // broadcast over the heads ([B0, 1, S, E]).
  const int64_t B0 = 2, H = 3;
  for (const Case& c : {Case{33, 33, 32, 32}, Case{130, 100, 64, 64}, Case{7, 65, 8, 17}}) {
    for (bool broadcast_kv : {false, true}) {
      INFO("L " << c.L << " S " << c.S << " E " << c.E << " Ev " << c.Ev << " broadcast k/v " << broadcast_kv);
      const int64_t Hk = broadcast_kv ? 1 : H;
      const Tensor q0 = rand_in({B0, c.L, H, c.E}, -1, 1, 1), k0 = rand_in({B0, c.S, Hk, c.E}, -1, 1, 2);
      const Tensor v0 = rand_in({B0, c.S, Hk, c.Ev}, -1, 1, 3), g = rand_in({B0, c.L, H * c.Ev}, -1, 1, 4);
      const Tensor mask = make_mask(Mask::Padding, B0, c.L, c.S);
      auto go = [&](DType dt) {
        Tensor q = q0.to(dt).clone().set_requires_grad(), k = k0.to(dt).clone().set_requires_grad();
        Tensor v = v0.to(dt).clone().set_requires_grad();
        Tensor o = scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask);
        sum(mul(o.transpose(1, 2).reshape({B0, c.L, H * c.Ev}), g.to(dt))).backward();
        return Result{o.detach(), q.grad(), k.grad(), v.grad()};
      };
      const Result ref = go(DType::Float64);
      for_each_cpu_isa([&](kernels::cpu::CpuIsa) { require_result_close(go(DType::Float32), ref); });
    }
  }
}
