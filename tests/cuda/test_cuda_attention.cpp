// tests/cuda/test_cuda_attention.cpp - [cuda] scaled_dot_product_attention on the GPU
// (kernels/graft/kernels/cuda/attention.cuh) against the CPU: forward and the gradients of q, k, v,
// contiguous and non-contiguous inputs (tests/cuda/op_harness.hpp, the tolerances of tests/harness.hpp).
// The shapes reach both kernel families: the tiled float32 kernels (head dims <= 64 and <= 128) and
// the per-row kernels (float64, head dims over 128), with sequence lengths no 64-tile divides.
// Dropout draws another mask on the GPU than on the CPU (Philox vs the serial generator), so it is
// checked by its rate, by seed, and against a CPU formula fed the GPU's own mask. bfloat16 and float16
// (the tensor-core kernels, attention_mma.cuh) are checked against the float32 CPU op on the same values.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "graft/nn/transformer.hpp"
#include "op_harness.hpp"

using namespace graft;
using cuda_test::check_op;
using cuda_test::expect_close;
using cuda_test::expect_exact;
using cuda_test::gpu;
using cuda_test::randn_leaf;

namespace {

// BERT's padding mask, bool [B0, 1, 1, S]: batch b keeps its first S - b (S / 3 + 1) keys (at least one).
Tensor padding_mask(int64_t B0, int64_t S) {
  std::vector<int64_t> keep(size_t(B0 * S));
  for (int64_t b = 0; b < B0; ++b)
    for (int64_t j = 0; j < S; ++j) keep[size_t(b * S + j)] = j < std::max<int64_t>(1, S - b * (S / 3 + 1));
  return from_vector(keep, {B0, 1, 1, S}, DType::Bool);
}

// A random tensor that does not require grad (masks).
Tensor randn_const(const Shape& s, uint64_t seed, DType dt = DType::Float32) {
  Generator g(seed);
  return randn(s, dt, g);
}

std::string dims(int64_t L, int64_t S, int64_t E, int64_t Ev) {
  return " L " + std::to_string(L) + " S " + std::to_string(S) + " E " + std::to_string(E) + " Ev " +
         std::to_string(Ev);
}

// q [B0, H, L, E], k [B0, H, S, E], v [B0, H, S, Ev] leaves (float32 unless dt says otherwise).
std::vector<Tensor> qkv(int64_t B0, int64_t H, int64_t L, int64_t S, int64_t E, int64_t Ev, uint64_t seed,
                        DType dt = DType::Float32) {
  return {randn_leaf({B0, H, L, E}, seed, 1.0, dt), randn_leaf({B0, H, S, E}, seed + 1, 1.0, dt),
          randn_leaf({B0, H, S, Ev}, seed + 2, 1.0, dt)};
}

Tensor attend(const std::vector<Tensor>& in, bool causal = false) {
  return scaled_dot_product_attention(in[0], in[1], in[2], in.size() > 3 ? in[3] : Tensor(), 0.0, causal);
}

}  // namespace

TEST_CASE("CUDA attention: BERT-like shapes, head dims 32, 64, 128 and over, tails", "[cuda]") {
  for (int64_t S : {37, 128})  // B 2, H 4, D 64: BERT / ViT heads; 37 leaves a tail tile
    check_op("attention B2 H4" + dims(S, S, 64, 64), [](const auto& in) { return attend(in); },
             qkv(2, 4, S, S, 64, 64, 10 + uint64_t(S)));
  const int64_t cases[][4] = {
      {100, 100, 32, 32},    // the 64 variant, two tiles with a tail
      {100, 100, 128, 128},  // the 128 variant
      {70, 70, 48, 17},      // Ev != E, neither a multiple of 16
      {65, 129, 128, 64},    // the 128 variant by E alone; one row and one key past a tile
      {1, 1, 8, 8},          // one query, one key
      {33, 70, 160, 160},    // head dim over 128: the per-row kernels in float32
      {20, 9, 8, 200},       // Ev over 128 only
  };
  for (const auto& c : cases)
    check_op("attention B2 H3" + dims(c[0], c[1], c[2], c[3]), [](const auto& in) { return attend(in); },
             qkv(2, 3, c[0], c[1], c[2], c[3], 20 + uint64_t(c[2])));
}

TEST_CASE("CUDA attention: padding mask, causal, additive float mask", "[cuda]") {
  for (int64_t S : {37, 128}) {
    std::vector<Tensor> in = qkv(2, 4, S, S, 64, 64, 30 + uint64_t(S));
    in.push_back(padding_mask(2, S));  // bool [2, 1, 1, S]; the harness also moves it non-contiguous
    check_op("attention, bool padding mask [B, 1, 1, S]," + dims(S, S, 64, 64), [](const auto& i) { return attend(i); },
             in);
  }
  const int64_t causal_cases[][4] = {{37, 37, 64, 64}, {130, 130, 64, 64}, {130, 130, 128, 128},
                                     {37, 100, 32, 32}, {100, 37, 64, 64}, {70, 70, 160, 160}};
  for (const auto& c : causal_cases)  // top-left aligned when L != S, as PyTorch
    check_op("attention, causal," + dims(c[0], c[1], c[2], c[3]), [](const auto& in) { return attend(in, true); },
             qkv(2, 3, c[0], c[1], c[2], c[3], 40 + uint64_t(c[0])));
  {
    std::vector<Tensor> in = qkv(2, 4, 37, 100, 64, 64, 50);
    in.push_back(randn_const({37, 100}, 51));  // [L, S] broadcast over [B, H]
    check_op("attention, additive float mask [L, S]", [](const auto& i) { return attend(i); }, in);
  }
  {
    std::vector<Tensor> in = qkv(2, 3, 70, 70, 32, 32, 52);
    in.push_back(randn_const({2, 3, 70, 70}, 53));  // a full [B, H, L, S] mask
    check_op("attention, additive float mask [B, H, L, S]", [](const auto& i) { return attend(i); }, in);
  }
  {
    std::vector<Tensor> in = qkv(2, 3, 70, 70, 144, 144, 54);
    in.push_back(padding_mask(2, 70));
    check_op("attention, padding mask, per-row kernels (E 144)", [](const auto& i) { return attend(i); }, in);
  }
}

TEST_CASE("CUDA attention: cross-attention, broadcast k/v, head views of one projection", "[cuda]") {
  for (const auto& c : {std::vector<int64_t>{37, 128}, std::vector<int64_t>{128, 37}, std::vector<int64_t>{5, 200}})
    check_op("cross-attention" + dims(c[0], c[1], 64, 64), [](const auto& in) { return attend(in); },
             qkv(2, 4, c[0], c[1], 64, 64, 60 + uint64_t(c[0])));
  // k and v shared by the heads: [B, 1, S, E], broadcast (stride 0) over H
  check_op("attention, k and v broadcast over the heads",
           [](const auto& in) { return attend(in); },
           {randn_leaf({2, 4, 37, 64}, 70), randn_leaf({2, 1, 50, 64}, 71), randn_leaf({2, 1, 50, 64}, 72)});
  // as BERT and MultiheadAttention call it: q, k, v cut from [B, T, H * E] projections, viewed
  // [B, H, T, E]; the output transposed back (its gradient arrives strided)
  const int64_t B0 = 2, T = 37, H = 4, E = 64;
  check_op("attention on head views of [B, T, H E], output back to [B, T, H E]",
           [=](const auto& in) {
             auto heads = [&](const Tensor& x) { return x.reshape({B0, T, H, E}).transpose(1, 2); };
             const Tensor o = scaled_dot_product_attention(heads(in[0]), heads(in[1]), heads(in[2]), in[3]);
             return o.transpose(1, 2).reshape({B0, T, H * E});
           },
           {randn_leaf({B0, T, H * E}, 73), randn_leaf({B0, T, H * E}, 74), randn_leaf({B0, T, H * E}, 75),
            padding_mask(B0, T)});
}

TEST_CASE("CUDA attention float64 (the per-row kernels)", "[cuda]") {
  check_op("attention float64" + dims(37, 37, 64, 64), [](const auto& in) { return attend(in); },
           qkv(2, 4, 37, 37, 64, 64, 80, DType::Float64));
  check_op("attention float64, causal, cross" + dims(70, 33, 16, 40),
           [](const auto& in) { return attend(in, true); }, qkv(2, 2, 70, 33, 16, 40, 83, DType::Float64));
  std::vector<Tensor> in = qkv(2, 2, 33, 70, 32, 32, 86, DType::Float64);
  in.push_back(padding_mask(2, 70));
  check_op("attention float64, padding mask", [](const auto& i) { return attend(i); }, in);
  std::vector<Tensor> inf = qkv(2, 2, 33, 70, 32, 32, 89, DType::Float64);
  inf.push_back(randn_const({33, 70}, 92, DType::Float64));
  check_op("attention float64, additive mask", [](const auto& i) { return attend(i); }, inf);
}

TEST_CASE("CUDA attention: a fully masked row gives zeros and passes no gradient", "[cuda]") {
  // batch 1 sees no key at all; for E 64 (tiled), 160 (per-row float32) and float64
  for (const auto& [E, dt] : {std::pair{int64_t(64), DType::Float32}, std::pair{int64_t(160), DType::Float32},
                              std::pair{int64_t(32), DType::Float64}}) {
    INFO("E " << E << " " << dtype_name(dt));
    const int64_t B0 = 2, L = 70, S = 67;
    std::vector<int64_t> keep(size_t(B0 * S), 1);
    for (int64_t j = 0; j < S; ++j) keep[size_t(S + j)] = 0;
    const Tensor mask = from_vector(keep, {B0, 1, 1, S}, DType::Bool).to(gpu());
    std::vector<Tensor> in = qkv(B0, 2, L, S, E, E, 95, dt);
    for (Tensor& t : in) t = t.detach().to(gpu()).set_requires_grad();
    const Tensor o = scaled_dot_product_attention(in[0], in[1], in[2], mask);
    sum(o * randn_const(o.shape(), 96, dt).to(gpu())).backward();
    for (double x : o.cpu().select(0, 1).to_vector()) REQUIRE(x == 0.0);
    for (const Tensor& t : in)
      for (double x : t.grad().cpu().select(0, 1).to_vector()) REQUIRE(x == 0.0);
    for (double x : o.cpu().select(0, 0).to_vector()) REQUIRE(std::isfinite(x));
  }
}

TEST_CASE("CUDA attention kernels write every output element (outputs poisoned)", "[cuda]") {
  // The slots called directly with NaN-filled outputs, against the CPU slots: the tiled kernels (E 64,
  // and E 100 / Ev 17 in the 128 variant), the per-row ones (E 144, float64); causal and a bias.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const int64_t cases[][3] = {{64, 64, 0}, {100, 17, 0}, {144, 144, 0}, {32, 32, 1}};
  for (const auto& c : cases) {
    const DType dt = c[2] ? DType::Float64 : DType::Float32;
    const int64_t B = 3, L = 100, S = 33, E = c[0], Ev = c[1];
    const Tensor q = randn_const({B, L, E}, 101, dt), k = randn_const({B, S, E}, 102, dt);
    const Tensor v = randn_const({B, S, Ev}, 103, dt), dout = randn_const({B, L, Ev}, 104, dt);
    const Tensor bias = randn_const({L, S}, 105, dt).expand({B, L, S});
    for (bool causal : {false, true}) {
      INFO("E " << E << " Ev " << Ev << " " << dtype_name(dt) << (causal ? " causal" : " with a bias"));
      const Tensor b = causal ? Tensor() : bias;
      const Tensor out = empty({B, L, Ev}, dt), lse = empty({B, L}, dt);
      const Tensor dq = empty({B, L, E}, dt), dk = empty({B, S, E}, dt), dv = empty({B, S, Ev}, dt);
      attention_kernel.get(kCPU)(out, lse, q, k, v, b, Tensor(), 0.0, causal, 0.3);
      attention_backward_kernel.get(kCPU)(dq, dk, dv, dout, q, k, v, out, lse, b, Tensor(), 0.0, causal, 0.3);
      auto poisoned = [&](const Shape& s) { return full(s, nan, dt, gpu()); };
      const Tensor gout = poisoned({B, L, Ev}), glse = poisoned({B, L});
      const Tensor gdq = poisoned({B, L, E}), gdk = poisoned({B, S, E}), gdv = poisoned({B, S, Ev});
      const Tensor gq = q.to(gpu()), gk = k.to(gpu()), gv = v.to(gpu()), gb = causal ? Tensor() : b.to(gpu());
      attention_kernel.get(gpu())(gout, glse, gq, gk, gv, gb, Tensor(), 0.0, causal, 0.3);
      attention_backward_kernel.get(gpu())(gdq, gdk, gdv, dout.to(gpu()), gq, gk, gv, gout, glse, gb, Tensor(), 0.0,
                                           causal, 0.3);
      expect_close("out", gout, out);
      expect_close("lse", glse, lse);
      expect_close("dq", gdq, dq);
      expect_close("dk", gdk, dk);
      expect_close("dv", gdv, dv);
      // only some gradients wanted: the others stay undefined, the wanted ones are the same
      const Tensor gdv2 = poisoned({B, S, Ev});
      attention_backward_kernel.get(gpu())(Tensor(), Tensor(), gdv2, dout.to(gpu()), gq, gk, gv, gout, glse, gb,
                                           Tensor(), 0.0, causal, 0.3);
      expect_exact("dv alone", gdv2, gdv.cpu());
    }
  }
}

TEST_CASE("CUDA attention dropout: rate, reproducible by seed, forward and backward use the same draws", "[cuda]") {
  const int64_t B0 = 2, H = 4, L = 128, S = 128, E = 64;
  const double p = 0.3;
  // q = 0 makes every score 0 (P = 1 / S) and v = I makes out[b, h, i, j] = keep_ij / ((1 - p) S):
  // the output shows the mask the GPU drew.
  const Tensor zq = zeros({B0, H, L, E}, DType::Float32, gpu()), rk = randn_const({B0, H, S, E}, 111).to(gpu());
  const Tensor eye = from_vector([&] {
    std::vector<double> e(size_t(S * S), 0.0);
    for (int64_t j = 0; j < S; ++j) e[size_t(j * S + j)] = 1.0;
    return e;
  }(), {S, S}, DType::Float32).to(gpu());
  auto drawn_mask = [&](uint64_t seed) {  // float 0 / 1 [B0, H, L, S]
    manual_seed(seed);
    const Tensor o = scaled_dot_product_attention(zq, rk, eye, Tensor(), p);
    return (o * double(S) * (1.0 - p)).cpu();
  };
  const Tensor m1 = drawn_mask(7), m2 = drawn_mask(7), m3 = drawn_mask(8);
  const std::vector<double> v1 = m1.to_vector();
  int64_t kept = 0;
  bool binary = true;
  for (double x : v1) {
    kept += x > 0.5;
    binary = binary && (std::abs(x) < 1e-5 || std::abs(x - 1.0) < 1e-5);
  }
  const double frac = double(kept) / double(v1.size());  // 0.7 +- 5 standard deviations (0.00127 each)
  INFO("kept " << frac << " of " << v1.size());
  CHECK(binary);
  CHECK(std::abs(frac - (1.0 - p)) < 0.0064);
  CHECK(v1 == m2.to_vector());  // same seed, same mask
  CHECK(v1 != m3.to_vector());  // another seed, another
  {
    manual_seed(7);  // consecutive calls draw consecutive keys: different masks
    const Tensor a = scaled_dot_product_attention(zq, rk, eye, Tensor(), p).cpu();
    const Tensor b = scaled_dot_product_attention(zq, rk, eye, Tensor(), p).cpu();
    CHECK(a.to_vector() != b.to_vector());
  }
  // Real q, k, v with seed 7: the GPU op against the CPU formula softmax(scale q k^T) * mask / (1 - p) v
  // built from the GPU's mask m1, forward and every gradient.
  const std::vector<Tensor> in = qkv(B0, H, L, S, E, E, 112);
  const Tensor keep = gt(m1, 0.5).to(DType::Float32);
  const Tensor r = randn_const({B0, H, L, E}, 115);
  const double scale = 1.0 / std::sqrt(double(E));
  const Tensor probs = softmax(matmul(in[0], in[1].transpose(-1, -2)) * scale, -1);
  const Tensor ref = matmul(probs * keep * (1.0 / (1.0 - p)), in[2]);
  const std::vector<Tensor> ref_grads = autograd::grad({sum(ref * r)}, {in[0], in[1], in[2]});
  std::vector<Tensor> g;
  for (const Tensor& t : in) g.push_back(t.detach().to(gpu()).set_requires_grad());
  manual_seed(7);
  const Tensor out = scaled_dot_product_attention(g[0], g[1], g[2], Tensor(), p);
  expect_close("dropout forward against the CPU formula with the GPU's mask", out, ref.detach());
  const std::vector<Tensor> grads = autograd::grad({sum(out * r.to(gpu()))}, {g[0], g[1], g[2]});
  expect_close("dropout dq", grads[0], ref_grads[0]);
  expect_close("dropout dk", grads[1], ref_grads[1]);
  expect_close("dropout dv", grads[2], ref_grads[2]);
  // p = 1 drops everything: zeros out, zero gradients
  const Tensor all = scaled_dot_product_attention(g[0], g[1], g[2], Tensor(), 1.0);
  for (double x : all.cpu().to_vector()) REQUIRE(x == 0.0);
}

TEST_CASE("CUDA attention through nn::MultiheadAttention", "[cuda]") {
  // batch-first, 64 wide, 4 heads of 16; self-attention and cross-attention with a float attn_mask
  auto cpu_m = std::make_shared<nn::MultiheadAttention>(64, 4, 0.0, true, /*batch_first=*/true);
  auto gpu_m = std::make_shared<nn::MultiheadAttention>(64, 4, 0.0, true, true);
  {
    NoGradGuard ng;
    Generator gen(121);
    for (auto& [name, t] : cpu_m->named_parameters()) t.copy_(randn(t.shape(), DType::Float32, gen) * 0.2);
  }
  gpu_m->load_state_dict(cpu_m->state_dict());
  gpu_m->to(gpu());
  const Tensor x = randn_leaf({2, 37, 64}, 122), mem = randn_leaf({2, 50, 64}, 123);
  const Tensor am = randn_const({37, 50}, 124);
  for (bool cross : {false, true}) {
    INFO((cross ? "cross-attention with a float attn_mask [L, S]" : "self-attention"));
    cpu_m->zero_grad();
    gpu_m->zero_grad();
    const Tensor xg = x.detach().to(gpu()).set_requires_grad(), mg = mem.detach().to(gpu()).set_requires_grad();
    const Tensor yc = cross ? cpu_m->attention(x, mem, mem, Tensor(), am) : cpu_m->forward(x);
    const Tensor yg = cross ? gpu_m->attention(xg, mg, mg, Tensor(), am.to(gpu())) : gpu_m->forward(xg);
    expect_close("MultiheadAttention output", yg, yc.detach());
    const Tensor r = randn_const(yc.shape(), 125);
    const std::vector<Tensor> wrt_c = cross ? std::vector<Tensor>{x, mem} : std::vector<Tensor>{x};
    const std::vector<Tensor> wrt_g = cross ? std::vector<Tensor>{xg, mg} : std::vector<Tensor>{xg};
    const std::vector<Tensor> gc = autograd::grad({sum(yc * r)}, wrt_c, {}, true);
    const std::vector<Tensor> gg = autograd::grad({sum(yg * r.to(gpu()))}, wrt_g, {}, true);
    for (size_t i = 0; i < gc.size(); ++i) expect_close("MultiheadAttention input gradient", gg[i], gc[i]);
    sum(yc * r).backward();
    sum(yg * r.to(gpu())).backward();
    expect_close("MultiheadAttention in_proj_weight gradient", gpu_m->in_proj_weight.grad(),
                 cpu_m->in_proj_weight.grad());
  }
}

namespace {
// The 16-bit kernels (attention_mma.cuh) against the float32 CPU op on the same values: inputs rounded
// to dt, the CPU computes in float32 from their widened copies, the GPU in dt (float32 sums; P and dS
// rounded to dt as operands, as FlashAttention-2 does). Output and the gradients of q, k, v must be
// within dt's tolerance of the float32 answer; layout 1 runs the GPU on non-contiguous copies.
void check_attention_16(const std::string& name, DType dt, const std::vector<Tensor>& in32, const Tensor& mask,
                        bool causal, double dropout_p = 0.0) {
  INFO(name << " in " << dtype_name(dt));
  std::vector<Tensor> cpu(3);
  for (int i = 0; i < 3; ++i) cpu[size_t(i)] = in32[size_t(i)].detach().to(dt).to(DType::Float32).set_requires_grad();
  const Tensor out32 = scaled_dot_product_attention(cpu[0], cpu[1], cpu[2], mask, dropout_p, causal);
  const Tensor r16 = randn_const(out32.shape(), 131).to(dt);
  const std::vector<Tensor> g32 = autograd::grad({sum(out32 * r16.to(DType::Float32))}, cpu);
  const Tensor mask_gpu = mask.defined() ? mask.to(gpu()) : Tensor();
  for (int layout = 0; layout < 2; ++layout) {
    std::vector<Tensor> dev(3);
    for (int i = 0; i < 3; ++i) {
      Tensor d = in32[size_t(i)].detach().to(dt).to(gpu());
      dev[size_t(i)] = (layout == 0 ? d : cuda_test::noncontiguous(d)).set_requires_grad();
    }
    const Tensor out = scaled_dot_product_attention(dev[0], dev[1], dev[2], mask_gpu, dropout_p, causal);
    CHECK(out.dtype() == dt);
    const std::string what = layout == 0 ? name : name + " (non-contiguous inputs)";
    const graft_test::Tol tol = graft_test::tol_for(dt);
    expect_close(what + ": output", out.to(DType::Float32), out32.detach(), tol);
    const std::vector<Tensor> g = autograd::grad({sum(out * r16.to(gpu()))}, dev);
    for (int i = 0; i < 3; ++i) {
      CHECK(g[size_t(i)].dtype() == dt);
      expect_close(what + ": gradient of " + "qkv"[i], g[size_t(i)].to(DType::Float32), g32[size_t(i)], tol);
    }
  }
}
}  // namespace

TEST_CASE("CUDA attention in bfloat16 and float16 on the tensor cores: head dims, tails, masks, causal", "[cuda]") {
  for (const DType dt : {DType::BFloat16, DType::Float16}) {
    const int64_t cases[][4] = {
        {37, 37, 64, 64},     // BERT / ViT heads, one tile with a tail
        {128, 128, 64, 64},   // whole tiles
        {100, 100, 32, 32},   // the 32 variant
        {130, 70, 128, 128},  // the 128 variant, cross-attention with tails
        {70, 70, 48, 17},     // E != Ev, neither a multiple of 16 (zero-padded tiles)
        {1, 1, 8, 8},         // one query, one key
        {20, 9, 8, 160},      // Ev over 128: the float32 kernels on widened copies, rounded
    };
    for (const auto& c : cases)
      check_attention_16("attention B2 H3" + dims(c[0], c[1], c[2], c[3]), dt,
                         qkv(2, 3, c[0], c[1], c[2], c[3], 140 + uint64_t(c[2])), Tensor(), false);
    check_attention_16("causal" + dims(100, 100, 64, 64), dt, qkv(2, 2, 100, 100, 64, 64, 150), Tensor(), true);
    check_attention_16("causal, L > S" + dims(90, 40, 32, 32), dt, qkv(2, 2, 90, 40, 32, 32, 153), Tensor(), true);
    check_attention_16("bool padding mask [B, 1, 1, S]" + dims(77, 77, 64, 64), dt, qkv(2, 4, 77, 77, 64, 64, 156),
                       padding_mask(2, 77), false);
    check_attention_16("additive float mask [L, S]" + dims(50, 66, 64, 64), dt, qkv(2, 2, 50, 66, 64, 64, 159),
                       randn_const({50, 66}, 162), false);
  }
}

TEST_CASE("CUDA attention in bfloat16: a fully masked row, dropout, MultiheadAttention under autocast", "[cuda]") {
  const DType bf = DType::BFloat16;
  {  // batch 1 sees no key: zeros, no gradient, lse -inf (checked through the zeros)
    const int64_t B0 = 2, L = 70, S = 67;
    std::vector<int64_t> keep(size_t(B0 * S), 1);
    for (int64_t j = 0; j < S; ++j) keep[size_t(S + j)] = 0;
    const Tensor mask = from_vector(keep, {B0, 1, 1, S}, DType::Bool).to(gpu());
    std::vector<Tensor> in = qkv(B0, 2, L, S, 64, 64, 165);
    for (Tensor& t : in) t = t.detach().to(bf).to(gpu()).set_requires_grad();
    const Tensor o = scaled_dot_product_attention(in[0], in[1], in[2], mask);
    sum(o * randn_const(o.shape(), 166).to(bf).to(gpu())).backward();
    for (double x : o.cpu().select(0, 1).to_vector()) REQUIRE(x == 0.0);
    for (const Tensor& t : in)
      for (double x : t.grad().cpu().select(0, 1).to_vector()) REQUIRE(x == 0.0);
    for (double x : o.cpu().select(0, 0).to_vector()) REQUIRE(std::isfinite(x));
  }
  {  // dropout: the GPU's own draws, forward and backward; p = 1 drops everything
    std::vector<Tensor> in = qkv(1, 2, 40, 40, 32, 32, 168);
    for (Tensor& t : in) t = t.detach().to(bf).to(gpu());
    manual_seed(5);
    const Tensor a = scaled_dot_product_attention(in[0], in[1], in[2], Tensor(), 0.3);
    manual_seed(5);
    const Tensor b = scaled_dot_product_attention(in[0], in[1], in[2], Tensor(), 0.3);
    expect_exact("bf16 dropout, same seed", a, b.cpu());
    const Tensor none = scaled_dot_product_attention(in[0], in[1], in[2], Tensor(), 1.0);
    for (double x : none.cpu().to_vector()) REQUIRE(x == 0.0);
  }
  {  // nn::MultiheadAttention under bf16 autocast: GPU against CPU autocast (float32 weights on both)
    auto cpu_m = std::make_shared<nn::MultiheadAttention>(64, 4, 0.0, true, /*batch_first=*/true);
    auto gpu_m = std::make_shared<nn::MultiheadAttention>(64, 4, 0.0, true, true);
    gpu_m->load_state_dict(cpu_m->state_dict());
    gpu_m->to(gpu());
    const Tensor x = randn_leaf({2, 37, 64}, 170);
    Tensor yc, yg;
    {
      AutocastGuard amp(bf, DeviceType::CPU);
      yc = cpu_m->forward(x);
    }
    {
      AutocastGuard amp(bf, DeviceType::CUDA);
      yg = gpu_m->forward(x.detach().to(gpu()));
    }
    CHECK(yg.dtype() == bf);
    expect_close("MultiheadAttention under bf16 autocast", yg.to(DType::Float32), yc.to(DType::Float32),
                 graft_test::kTolModelBF16);
  }
}

TEST_CASE("CUDA attention: bad input throws with a clear message", "[cuda]") {
  const Tensor q = randn_const({2, 4, 8, 16}, 131).to(gpu()), k = randn_const({2, 4, 9, 16}, 132).to(gpu());
  const Tensor v = randn_const({2, 4, 9, 16}, 133).to(gpu());
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k.cpu(), v), Catch::Contains("must be on one device"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, v, padding_mask(2, 9)), Catch::Contains("attn_mask is on cpu"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, v, padding_mask(2, 5).to(gpu())),
                    Catch::Contains("cannot be broadcast"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, v, padding_mask(2, 9).to(gpu()), 0.0, true),
                    Catch::Contains("cannot both be set"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, randn_const({2, 4, 9, 8}, 134).to(gpu()), v),
                    Catch::Contains("head dim"));
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, k, v, ones({9}, DType::Int64).to(gpu())),
                    Catch::Contains("must be bool or floating-point"));
  {  // no second derivative through attention
    const Tensor qg = q.detach().set_requires_grad();
    const Tensor o = scaled_dot_product_attention(qg, k, v);
    CHECK_THROWS_WITH(autograd::grad({sum(o * o)}, {qg}, {}, false, true), Catch::Contains("second derivative"));
  }
}
