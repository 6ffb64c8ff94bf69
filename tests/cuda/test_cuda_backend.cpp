// CUDA backend against the CPU reference. Compiled by g++ (this file) and linked with
// cuda_backend.cu (nvcc): the ops below reach the CUDA kernels through the KernelSlots the .cu
// filled at static initialization. Exits 77 (ctest: skipped) when no GPU is visible. With --op-table
// it prints the kernel coverage table instead (this binary sees the CPU and the CUDA slots).
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "graft/graft.hpp"
#include "graft/optim/adam.hpp"  // their kernel slots belong in --op-table too
#include "graft/optim/clip.hpp"

int graft_test_cuda_device_count();
int graft_test_cuda_runtime();  // cuda_backend.cu: allocator, streams, events, staged copies

using namespace graft;

namespace {
int passed = 0, failed = 0;

// |gpu - cpu| <= atol + rtol |cpu| per element (float32: 1e-5, 1e-4), NaN fails.
void check(const std::string& what, const Tensor& gpu, const Tensor& cpu) {
  const auto g = gpu.cpu().to_vector(), c = cpu.to_vector();
  bool ok = g.size() == c.size() && gpu.shape() == cpu.shape();
  for (size_t i = 0; ok && i < g.size(); ++i) ok = std::abs(g[i] - c[i]) <= 1e-5 + 1e-4 * std::abs(c[i]);
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
  (ok ? passed : failed)++;
}
// Bit for bit (the fused optimizer kernels promise the CPU reference's float operations).
void check_exact(const std::string& what, const Tensor& gpu, const Tensor& cpu) {
  const bool ok = gpu.shape() == cpu.shape() && gpu.cpu().to_vector() == cpu.to_vector();
  std::printf("%s %s (bit for bit)\n", ok ? "PASS" : "FAIL", what.c_str());
  (ok ? passed : failed)++;
}
}  // namespace

int main(int argc, char** argv) {
  // --op-table: the kernel coverage table of docs/ARCHITECTURE.md (tools/op_table.sh), needs no GPU.
  if (argc > 1 && std::string(argv[1]) == "--op-table") {
    std::fputs(kernel_coverage_table().c_str(), stdout);
    return 0;
  }
  if (graft_test_cuda_device_count() == 0) {
    std::printf("no CUDA device visible: skipping the CUDA backend tests\n");
    return 77;
  }
  const Device gpu = cuda(0);
  Generator gen(7);
  Tensor a = randn({33, 17}, DType::Float32, gen), b = randn({17}, DType::Float32, gen);
  check("copy round trip", a.to(gpu), a);
  check("transpose copy", a.to(gpu).transpose(0, 1).contiguous(), a.transpose(0, 1).contiguous());
  check("dtype conversion", a.to(gpu).to(DType::Float64), a.to(DType::Float64));
  check("broadcast add", a.to(gpu) + b.to(gpu), a + b);
  check("mul", a.to(gpu) * a.to(gpu), a * a);
  for (auto [name, fn] : std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>>{
           {"exp", [](const Tensor& x) { return exp(x); }},
           {"tanh", [](const Tensor& x) { return tanh(x); }},
           {"gelu", [](const Tensor& x) { return gelu(x); }},
           {"silu", [](const Tensor& x) { return silu(x); }},
           {"relu6", [](const Tensor& x) { return relu6(x * 4.0); }}})
    check(name, fn(a.to(gpu)), fn(a));
  check("sum over dim 0", sum(a.to(gpu), {0}), sum(a, {0}));
  // matmul: tails that no 64 x 64 tile divides, transposed views read in place, a broadcast batch,
  // float64; then linear and its backward through matmul.
  {
    Tensor m1 = randn({70, 45}, DType::Float32, gen), m2 = randn({45, 131}, DType::Float32, gen);
    check("matmul 70x45 @ 45x131", matmul(m1.to(gpu), m2.to(gpu)), matmul(m1, m2));
    check("matmul of transposed views", matmul(m2.to(gpu).t(), m1.to(gpu).t()), matmul(m2.t(), m1.t()));
    Tensor bat = randn({3, 5, 17, 9}, DType::Float32, gen), rhs = randn({9, 20}, DType::Float32, gen);
    check("batched matmul, broadcast rhs", matmul(bat.to(gpu), rhs.to(gpu)), matmul(bat, rhs));
    Tensor bl = randn({2, 1, 8, 33}, DType::Float32, gen), br = randn({1, 3, 33, 8}, DType::Float32, gen);
    check("batched matmul, both broadcast", matmul(bl.to(gpu), br.to(gpu)), matmul(bl, br));
    Tensor d1 = m1.to(DType::Float64), d2 = m2.to(DType::Float64);
    check("matmul float64", matmul(d1.to(gpu), d2.to(gpu)), matmul(d1, d2));
    check("matmul with K = 0", matmul(zeros({4, 0}).to(gpu), zeros({0, 5}).to(gpu)), zeros({4, 5}));
    Tensor w = randn({13, 45}, DType::Float32, gen), bias = randn({13}, DType::Float32, gen);
    Tensor wg = w.to(gpu).set_requires_grad(), wc = w.clone().set_requires_grad();
    Tensor xg2 = m1.to(gpu).set_requires_grad(), xc2 = m1.clone().set_requires_grad();
    sum(linear(xg2, wg, bias.to(gpu), Activation::Relu)).backward();
    sum(linear(xc2, wc, bias, Activation::Relu)).backward();
    check("linear + relu backward: dx", xg2.grad(), xc2.grad());
    check("linear + relu backward: dweight", wg.grad(), wc.grad());
  }
  check("sum all", sum(a.to(gpu)), sum(a));
  // Long reductions take the block and two-pass kernels: all of 300 000, rows of 5000 (chunked), a
  // strided middle dim, and a float64 sum.
  {
    Tensor big = randn({300000}, DType::Float32, gen), rows = randn({7, 5000}, DType::Float32, gen);
    check("sum of 300000 (chunks, second pass)", sum(big.to(gpu)), sum(big));
    check("sum of rows of 5000", sum(rows.to(gpu), {1}), sum(rows, {1}));
    Tensor t3 = randn({6, 300, 11}, DType::Float32, gen);
    check("sum over a strided middle dim", sum(t3.to(gpu).transpose(0, 2), {1}), sum(t3.transpose(0, 2), {1}));
    check("sum float64", sum(big.to(DType::Float64).to(gpu)), sum(big.to(DType::Float64)));
  }
  // softmax / log_softmax over the last dim (rows longer than a warp) and over a middle dim
  // (strided rows), forward and backward through autograd.
  {
    Tensor logits = randn({6, 4, 77}, DType::Float32, gen), up = randn({6, 4, 77}, DType::Float32, gen);
    for (int64_t dim : {int64_t(2), int64_t(1)}) {
      for (bool log : {false, true}) {
        const std::string name = std::string(log ? "log_softmax" : "softmax") + " over dim " + std::to_string(dim);
        auto f = [&](const Tensor& x) { return log ? log_softmax(x, dim) : softmax(x, dim); };
        Tensor xg3 = logits.to(gpu).set_requires_grad(), xc3 = logits.clone().set_requires_grad();
        Tensor yg = f(xg3), yc = f(xc3);
        check(name, yg, yc);
        sum(yg * up.to(gpu)).backward();
        sum(yc * up).backward();
        check(name + " backward", xg3.grad(), xc3.grad());
      }
    }
  }
  // layer_norm over the last dim (768, BERT's width) and the last two dims, with and without affine
  // parameters; its backward to x, weight and bias.
  {
    Tensor xl = randn({5, 7, 768}, DType::Float32, gen), wl = randn({768}, DType::Float32, gen),
           bl = randn({768}, DType::Float32, gen), upl = randn({5, 7, 768}, DType::Float32, gen);
    Tensor xg4 = xl.to(gpu).set_requires_grad(), xc4 = xl.clone().set_requires_grad();
    Tensor wg4 = wl.to(gpu).set_requires_grad(), wc4 = wl.clone().set_requires_grad();
    Tensor bg4 = bl.to(gpu).set_requires_grad(), bc4 = bl.clone().set_requires_grad();
    Tensor yg4 = layer_norm(xg4, {768}, wg4, bg4), yc4 = layer_norm(xc4, {768}, wc4, bc4);
    check("layer_norm over 768", yg4, yc4);
    sum(yg4 * upl.to(gpu)).backward();
    sum(yc4 * upl).backward();
    check("layer_norm backward: dx", xg4.grad(), xc4.grad());
    check("layer_norm backward: dweight", wg4.grad(), wc4.grad());
    check("layer_norm backward: dbias", bg4.grad(), bc4.grad());
    check("layer_norm over the last two dims, no affine", layer_norm(xl.to(gpu), {7, 768}), layer_norm(xl, {7, 768}));
  }
  // cross_entropy: [N, C] with a class weight, label smoothing and ignore_index; [N, C, S] (strided
  // classes); forward, backward, and a bad target named by the check that runs on the GPU.
  {
    Tensor lg = randn({37, 50}, DType::Float32, gen), cw = rand({50}, DType::Float32, gen) + 0.5;
    std::vector<int64_t> tv;
    for (int i = 0; i < 37; ++i) tv.push_back(i % 5 == 0 ? -100 : (i * 7) % 50);
    Tensor tg = from_vector(tv, {37});
    Tensor lgg = lg.to(gpu).set_requires_grad(), lgc = lg.clone().set_requires_grad();
    Tensor lossg = cross_entropy(lgg, tg.to(gpu), Reduction::Mean, -100, 0.1, cw.to(gpu));
    Tensor lossc = cross_entropy(lgc, tg, Reduction::Mean, -100, 0.1, cw);
    check("cross_entropy (weight, smoothing, ignore_index)", lossg, lossc);
    lossg.backward();
    lossc.backward();
    check("cross_entropy backward", lgg.grad(), lgc.grad());
    Tensor lg3 = randn({4, 9, 6}, DType::Float32, gen), tg3 = randint(0, 9, {4, 6}, DType::Int64, gen);
    check("cross_entropy [N, C, S], no reduction", cross_entropy(lg3.to(gpu), tg3.to(gpu), Reduction::None),
          cross_entropy(lg3, tg3, Reduction::None));
    std::vector<int64_t> bad = tv;
    bad[12] = 50;
    const Tensor tb = from_vector(bad, {37}).to(gpu);
    bool named = false;
    try {
      (void)cross_entropy(lg.to(gpu), tb);
    } catch (const std::exception& e) {
      named = std::string(e.what()).find("target 50 at position [12] is out of range") != std::string::npos;
    }
    std::printf("%s cross_entropy names a bad target found on the GPU\n", named ? "PASS" : "FAIL");
    (named ? passed : failed)++;
  }
  // embedding: lookup, backward with repeated tokens and a padding row (the same bits as the CPU:
  // the same order of additions), and an out-of-range index named by the check on the GPU.
  {
    Tensor table = randn({20, 33}, DType::Float32, gen);
    std::vector<int64_t> ids;
    for (int i = 0; i < 45; ++i) ids.push_back((i * 7) % 20);
    Tensor idg = from_vector(ids, {5, 9});
    Tensor tgp = table.to(gpu).set_requires_grad(), tcp = table.clone().set_requires_grad();
    Tensor eg = embedding(idg.to(gpu), tgp, 3), ec = embedding(idg, tcp, 3);
    check("embedding lookup", eg, ec);
    Tensor upe = randn({5, 9, 33}, DType::Float32, gen);
    sum(eg * upe.to(gpu)).backward();
    sum(ec * upe).backward();
    check_exact("embedding backward (repeated tokens, padding_idx 3)", tgp.grad(), tcp.grad());
    ids[17] = 20;
    bool named = false;
    try {
      (void)embedding(from_vector(ids, {5, 9}).to(gpu), table.to(gpu));
    } catch (const std::exception& e) {
      named = std::string(e.what()).find("index 20 at position [1, 8] is out of range") != std::string::npos;
    }
    std::printf("%s embedding names a bad index found on the GPU\n", named ? "PASS" : "FAIL");
    (named ? passed : failed)++;
  }
  // dropout: about 1 - p kept, each kept element scaled by exactly 1 / (1 - p), the same mask for the
  // same seed and another for the next call, and the backward is dout * mask.
  {
    const int64_t n = 1 << 20;
    Tensor ones_g = ones({n}).to(gpu).set_requires_grad();
    Generator g1(42), g2(42);
    Tensor d1 = dropout(ones_g, 0.3, true, g1), d2 = dropout(ones_g.detach(), 0.3, true, g2);
    Tensor d3 = dropout(ones_g.detach(), 0.3, true, g1);
    const std::vector<double> v1 = d1.cpu().to_vector();
    int64_t kept = 0;
    bool scaled = true;
    for (double v : v1) {
      if (v != 0.0) ++kept;
      scaled = scaled && (v == 0.0 || v == double(float(1.0 / 0.7)));
    }
    const double frac = double(kept) / double(n);  // 0.7 +- 5 standard deviations (0.00045 each)
    std::printf("%s dropout keeps %.4f of %lld (expected 0.7), kept values exactly 1 / 0.7\n",
                std::abs(frac - 0.7) < 0.0023 && scaled ? "PASS" : "FAIL", frac, (long long)n);
    (std::abs(frac - 0.7) < 0.0023 && scaled ? passed : failed)++;
    const bool same = v1 == d2.cpu().to_vector(), differs = v1 != d3.cpu().to_vector();
    std::printf("%s dropout: same seed, same mask; next call, another\n", same && differs ? "PASS" : "FAIL");
    (same && differs ? passed : failed)++;
    Tensor upd = randn({n}, DType::Float32, gen);
    sum(d1 * upd.to(gpu)).backward();
    check("dropout backward = dout * mask", ones_g.grad(), upd * d1.cpu());
  }
  // batch_norm: training statistics (and the running ones updated), then eval with the running
  // statistics; the backward to x, weight and bias in training mode.
  {
    Tensor xb = randn({6, 5, 7, 9}, DType::Float32, gen) * 3.0 + 1.0, wb = randn({5}, DType::Float32, gen),
           bb = randn({5}, DType::Float32, gen), upb = randn({6, 5, 7, 9}, DType::Float32, gen);
    Tensor rmg = zeros({5}).to(gpu), rvg = ones({5}).to(gpu), rmc = zeros({5}), rvc = ones({5});
    Tensor xgb = xb.to(gpu).set_requires_grad(), xcb = xb.clone().set_requires_grad();
    Tensor wgb = wb.to(gpu).set_requires_grad(), wcb = wb.clone().set_requires_grad();
    Tensor bgb = bb.to(gpu).set_requires_grad(), bcb = bb.clone().set_requires_grad();
    Tensor yb_g = batch_norm(xgb, rmg, rvg, wgb, bgb, true, 0.1, 1e-5);
    Tensor yb_c = batch_norm(xcb, rmc, rvc, wcb, bcb, true, 0.1, 1e-5);
    check("batch_norm training", yb_g, yb_c);
    check("batch_norm running mean", rmg, rmc);
    check("batch_norm running var", rvg, rvc);
    sum(yb_g * upb.to(gpu)).backward();
    sum(yb_c * upb).backward();
    check("batch_norm backward: dx", xgb.grad(), xcb.grad());
    check("batch_norm backward: dweight", wgb.grad(), wcb.grad());
    check("batch_norm backward: dbias", bgb.grad(), bcb.grad());
    check("batch_norm eval", batch_norm(xb.to(gpu), rmg, rvg, wb.to(gpu), bb.to(gpu), false, 0.1, 1e-5),
          batch_norm(xb, rmc, rvc, wb, bb, false, 0.1, 1e-5));
  }
  // Pooling: ResNet's 3x3 stride-2 pad-1 max pool, a ceil-mode average without the padding in the
  // divisor, the adaptive average to 1 x 1 and to 3 x 2; each forward and backward (max pooling's
  // backward bit for bit: the CPU's fast kernel keeps the reference's order; the averages' does not).
  {
    Tensor xp = randn({2, 3, 11, 10}, DType::Float32, gen);
    auto both = [&](const std::string& name, const std::function<Tensor(const Tensor&)>& f, bool exact = false) {
      Tensor xg5 = xp.to(gpu).set_requires_grad(), xc5 = xp.clone().set_requires_grad();
      Tensor yg5 = f(xg5), yc5 = f(xc5);
      check(name, yg5, yc5);
      Tensor up5 = randn(yc5.shape(), DType::Float32, gen);
      sum(yg5 * up5.to(gpu)).backward();
      sum(yc5 * up5).backward();
      if (exact)
        check_exact(name + " backward", xg5.grad(), xc5.grad());
      else
        check(name + " backward", xg5.grad(), xc5.grad());
    };
    both("max_pool2d 3x3 s2 p1", [](const Tensor& x) { return max_pool2d(x, {3, 3}, {2, 2}, {1, 1}); }, true);
    both("avg_pool2d 3x3 s2 p1 ceil, padding not counted",
         [](const Tensor& x) { return avg_pool2d(x, {3, 3}, {2, 2}, {1, 1}, true, false); });
    both("adaptive_avg_pool2d to 1x1", [](const Tensor& x) { return adaptive_avg_pool2d(x, {1, 1}); });
    both("adaptive_avg_pool2d to 3x2", [](const Tensor& x) { return adaptive_avg_pool2d(x, {3, 2}); });
  }
  // Comparisons (broadcast, float and int64) and where, through the ops that use them.
  {
    Tensor ca = randn({7, 5}, DType::Float32, gen), cb = randn({5}, DType::Float32, gen);
    check("a > b (broadcast)", gt(ca.to(gpu), cb.to(gpu)).cpu().to(DType::Float32), gt(ca, cb).to(DType::Float32));
    Tensor ia = randint(0, 4, {9}, DType::Int64, gen), ib = randint(0, 4, {9}, DType::Int64, gen);
    check("int64 a == b", eq(ia.to(gpu), ib.to(gpu)).cpu().to(DType::Float32), eq(ia, ib).to(DType::Float32));
    check("where(a > b, a, b)", where(gt(ca.to(gpu), cb.to(gpu)), ca.to(gpu), cb.to(gpu)),
          where(gt(ca, cb), ca, cb));
  }
  // binary_cross_entropy_with_logits (with pos_weight) and mse_loss, forward and backward.
  {
    Tensor bx = randn({40, 3}, DType::Float32, gen) * 4.0, bt = rand({40, 3}, DType::Float32, gen),
           bp = rand({3}, DType::Float32, gen) + 0.5;
    Tensor bxg = bx.to(gpu).set_requires_grad(), bxc = bx.clone().set_requires_grad();
    Tensor lb_g = binary_cross_entropy_with_logits(bxg, bt.to(gpu), Reduction::Mean, bp.to(gpu));
    Tensor lb_c = binary_cross_entropy_with_logits(bxc, bt, Reduction::Mean, bp);
    check("bce_with_logits (pos_weight)", lb_g, lb_c);
    lb_g.backward();
    lb_c.backward();
    check("bce_with_logits backward", bxg.grad(), bxc.grad());
    Tensor mxg = bx.to(gpu).set_requires_grad(), mxc = bx.clone().set_requires_grad();
    Tensor lm_g = mse_loss(mxg, bt.to(gpu)), lm_c = mse_loss(mxc, bt);
    check("mse_loss", lm_g, lm_c);
    lm_g.backward();
    lm_c.backward();
    check("mse_loss backward", mxg.grad(), mxc.grad());
  }
  // The fused optimizer updates: three steps of SGD (momentum, Nesterov, weight decay) and of AdamW on
  // the same parameters and gradients, GPU against CPU.
  {
    Tensor p0 = randn({1000, 3}, DType::Float32, gen), g0 = randn({1000, 3}, DType::Float32, gen);
    for (int which = 0; which < 2; ++which) {
      Tensor pg = p0.to(gpu).set_requires_grad(), pc = p0.clone().set_requires_grad();
      std::unique_ptr<optim::Optimizer> og, oc;
      if (which == 0) {
        og = std::make_unique<optim::SGD>(std::vector<Tensor>{pg}, 0.1, 0.9, 0.0, 1e-2, true);
        oc = std::make_unique<optim::SGD>(std::vector<Tensor>{pc}, 0.1, 0.9, 0.0, 1e-2, true);
      } else {
        og = std::make_unique<optim::AdamW>(std::vector<Tensor>{pg}, 1e-2);
        oc = std::make_unique<optim::AdamW>(std::vector<Tensor>{pc}, 1e-2);
      }
      for (int step = 0; step < 3; ++step) {
        pg.set_grad(g0.to(gpu) * double(step + 1));
        pc.set_grad(g0 * double(step + 1));
        og->step();
        oc->step();
      }
      check_exact(which == 0 ? "SGD nesterov, 3 steps" : "AdamW, 3 steps", pg.detach(), pc.detach());
    }
  }
  // Autograd on the GPU: d/dx sum(silu(x) * b) against the CPU.
  Tensor xg = a.to(gpu).set_requires_grad(), xc = a.clone().set_requires_grad();
  sum(silu(xg) * b.to(gpu)).backward();
  sum(silu(xc) * b).backward();
  check("silu backward", xg.grad(), xc.grad());
  failed += graft_test_cuda_runtime();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
