// bench/attention_scratch.cpp - scratch timing of scaled_dot_product_attention, fast kernels (detected ISA)
// vs the plain reference (set_cpu_isa(Scalar)), in one run. Not wired into bench/CMakeLists.txt; build with
//   g++ -std=c++20 -O2 -DNDEBUG -Iinclude -Ikernels -pthread bench/attention_scratch.cpp -o /tmp/attn_bench
#include <chrono>
#include <cstdio>
#include <vector>
#include <algorithm>

#include "graft/graft.hpp"

using namespace graft;
using Clock = std::chrono::steady_clock;

static Tensor randn_f32(const Shape& s, uint64_t seed) {
  Generator g(seed);
  Tensor t = rand(s, DType::Float32, g);
  NoGradGuard ng;
  return (t * 2.0 - 1.0).contiguous();
}

struct Times { double fwd_ms, fwdbwd_ms; };

static Times measure(int64_t B, int64_t H, int64_t L, int64_t E, bool mask, int reps, bool heads = false) {
  // heads: as BERT calls it, q/k/v are [B, L, H*E] projections viewed as [B, H, L, E], the output
  // transposed back to [B, L, H*E]
  Tensor qb = randn_f32(heads ? Shape{B, L, H, E} : Shape{B, H, L, E}, 1).set_requires_grad();
  Tensor kb = randn_f32(heads ? Shape{B, L, H, E} : Shape{B, H, L, E}, 2).set_requires_grad();
  Tensor vb = randn_f32(heads ? Shape{B, L, H, E} : Shape{B, H, L, E}, 3).set_requires_grad();
  Tensor g = randn_f32(heads ? Shape{B, L, H * E} : Shape{B, H, L, E}, 4);
  auto view = [&](const Tensor& t) { return heads ? t.transpose(1, 2) : t; };
  auto back = [&](const Tensor& o) { return heads ? o.transpose(1, 2).reshape({B, L, H * E}) : o; };
  Tensor &q = qb, &k = kb, &v = vb;
  Tensor m;
  if (mask) {
    std::vector<int64_t> keep(size_t(B * L));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < L; ++j) keep[size_t(b * L + j)] = j < L - 9 * b;
    m = from_vector(keep, {B, 1, 1, L}, DType::Bool);
  }
  std::vector<double> f, fb;
  for (int r = 0; r < reps; ++r) {
    {
      NoGradGuard ng;
      auto t0 = Clock::now();
      Tensor o = back(scaled_dot_product_attention(view(q), view(k), view(v), m));
      f.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    q.zero_grad(); k.zero_grad(); v.zero_grad();
    auto t0 = Clock::now();
    Tensor o = back(scaled_dot_product_attention(view(q), view(k), view(v), m));
    sum(mul(o, g)).backward();
    fb.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(f.begin(), f.end());
  std::sort(fb.begin(), fb.end());
  return {f[f.size() / 2], fb[fb.size() / 2]};
}

int main() {
  using namespace kernels::cpu;
  std::printf("threads %d, detected ISA %s\n", get_num_threads(), cpu_isa_name(detected_cpu_isa()));
  struct Shape_ { const char* name; int64_t B, H, L, E; bool mask; bool heads = false; };
  const Shape_ shapes[] = {{"MiniLM-like B8 H12 L128 E32", 8, 12, 128, 32, false},
                           {"MiniLM-like + padding mask", 8, 12, 128, 32, true},
                           {"BERT-base-like B8 H12 L128 E64", 8, 12, 128, 64, false},
                           {"BERT-base-like + padding mask", 8, 12, 128, 64, true},
                           {"MiniLM-like, BERT head views+mask", 8, 12, 128, 32, true, true},
                           {"BERT-base-like, head views+mask", 8, 12, 128, 64, true, true},
                           {"long: B1 H12 L1024 E64", 1, 12, 1024, 64, false}};
  for (const auto& s : shapes) {
    set_cpu_isa(CpuIsa::Scalar);
    const Times ref = measure(s.B, s.H, s.L, s.E, s.mask, s.L > 512 ? 2 : 4, s.heads);
    set_cpu_isa(detected_cpu_isa());
    const Times fast = measure(s.B, s.H, s.L, s.E, s.mask, 15, s.heads);
    std::printf("%-34s fwd: ref %8.2f ms  fast %7.3f ms  (x%5.1f) | fwd+bwd: ref %8.2f ms  fast %7.3f ms  (x%5.1f)\n",
                s.name, ref.fwd_ms, fast.fwd_ms, ref.fwd_ms / fast.fwd_ms, ref.fwdbwd_ms, fast.fwdbwd_ms,
                ref.fwdbwd_ms / fast.fwdbwd_ms);
  }
}
