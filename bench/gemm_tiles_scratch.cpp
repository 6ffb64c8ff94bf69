// bench/gemm_tiles_scratch.cpp - the experiment behind the GEMM's register tile and blocking
// (kernels/graft/kernels/cpu/gemm.hpp): one packed driver with other MR x NR tiles, KC / MC / NC
// blocks and two loop orders, every variant timed in turn in one process (best of N rounds), one
// thread, both operands packed. "b in L1": the old order (jr outer, the KC x NR b micro-panel reused
// from L1 by every row tile); "a in L1": gemm.hpp's order (ir outer, the MR x KC a micro-panel reused
// by the b micro-panels streaming from L2). Timing only: rows past a block's last whole tile are
// skipped (under 1% of the work at n = 1024, 2048). Self-contained (AVX-512); not in the CMake build:
//   g++ -std=c++20 -O2 bench/gemm_tiles_scratch.cpp -o /tmp/gemm_tiles -pthread
//   /tmp/gemm_tiles 1024 40 && /tmp/gemm_tiles 2048 10 && /tmp/gemm_tiles 2048 10 16   (n, rounds, ldc - n)
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// c[0:MR, 0:16 NV] (+)= a_panel [kc][MR] * b_panel [kc][16 NV] (full tiles only: n is a multiple of all).
template <int MR, int NV>
__attribute__((target("avx512f"))) void micro(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                              bool overwrite) {
  constexpr int NR = NV * 16;
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int h = 0; h < NV; ++h) acc[r][h] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int h = 0; h < NV; ++h) bv[h] = _mm512_loadu_ps(b + p * NR + h * 16);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 ar = _mm512_set1_ps(a[p * MR + r]);
#pragma GCC unroll 4
      for (int h = 0; h < NV; ++h) acc[r][h] = _mm512_fmadd_ps(ar, bv[h], acc[r][h]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int h = 0; h < NV; ++h) {
      float* dst = c + r * ldc + h * 16;
      _mm512_storeu_ps(dst, overwrite ? acc[r][h] : _mm512_add_ps(_mm512_loadu_ps(dst), acc[r][h]));
    }
}

// packed [rows / MR][kc][MR] from a [rows, kc] (row stride lda); packed [cols / NR][kc][NR] from b [kc, cols].
template <int MR>
void pack_a(int64_t rows, int64_t kc, const float* a, int64_t lda, float* packed) {
  for (int64_t i0 = 0; i0 < rows; i0 += MR, packed += kc * MR)
    for (int64_t r = 0; r < MR; ++r)
      for (int64_t p = 0; p < kc; ++p) packed[p * MR + r] = a[(i0 + r) * lda + p];
}
template <int NR>
void pack_b(int64_t kc, int64_t cols, const float* b, int64_t ldb, float* packed) {
  for (int64_t p = 0; p < kc; ++p)
    for (int64_t q = 0; q < cols / NR; ++q)
      std::copy(b + p * ldb + q * NR, b + p * ldb + q * NR + NR, packed + (q * kc + p) * NR);
}

struct Blocks {
  int64_t kc, mc, nc;
};

// c [n, n] = a @ b, all n x n, c with row stride ldc; a in L1 (ir outer) or b in L1 (jr outer).
template <int MR, int NV>
void gemm(bool a_in_l1, Blocks bl, int64_t n, const float* a, const float* b, float* c, int64_t ldc) {
  constexpr int64_t NR = NV * 16;
  static std::vector<float> ap, bp;
  ap.resize(size_t(bl.mc * bl.kc + MR * bl.kc)), bp.resize(size_t(bl.kc * bl.nc));
  // a in L1: ic (L3 block of a) > pc > jc (L2 block of b) > ir > jr; b in L1: jc > pc > ic > jr > ir.
  for (int64_t outer = 0; outer < n; outer += a_in_l1 ? bl.mc : bl.nc)
    for (int64_t pc = 0; pc < n; pc += bl.kc) {
      const int64_t kc = std::min(bl.kc, n - pc);
      for (int64_t inner = 0; inner < n; inner += a_in_l1 ? bl.nc : bl.mc) {
        const int64_t ic = a_in_l1 ? outer : inner, jc = a_in_l1 ? inner : outer;
        const int64_t mc = std::min(bl.mc, n - ic), nc = std::min(bl.nc, n - jc);
        pack_a<MR>(mc / MR * MR, kc, a + ic * n + pc, n, ap.data());
        pack_b<NR>(kc, nc, b + pc * n + jc, n, bp.data());
        auto tile = [&](int64_t ir, int64_t jr) {
          micro<MR, NV>(kc, ap.data() + ir / MR * kc * MR, bp.data() + jr / NR * kc * NR, c + (ic + ir) * ldc + jc + jr,
                        ldc, pc == 0);
        };
        if (a_in_l1) {
          for (int64_t ir = 0; ir + MR <= mc; ir += MR)
            for (int64_t jr = 0; jr < nc; jr += NR) tile(ir, jr);
        } else {
          for (int64_t jr = 0; jr < nc; jr += NR)
            for (int64_t ir = 0; ir + MR <= mc; ir += MR) tile(ir, jr);
        }
      }
    }
}

struct Case {
  std::string name;
  std::function<void(int64_t, const float*, const float*, float*, int64_t)> run;
  double best = 1e30;
};
template <int MR, int NV>
Case variant(bool a_in_l1, Blocks bl) {
  const std::string name = std::to_string(MR) + "x" + std::to_string(NV * 16) + (a_in_l1 ? " a in L1 " : " b in L1 ") +
                           std::to_string(bl.kc) + "/" + std::to_string(bl.mc) + "/" + std::to_string(bl.nc);
  return {name, [=](int64_t n, const float* a, const float* b, float* c, int64_t ldc) {
            gemm<MR, NV>(a_in_l1, bl, n, a, b, c, ldc);
          }};
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 1024;  // a multiple of 64 and of the tiles' MR below
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 8;
  const int64_t ldc = n + (argc > 3 ? std::atoll(argv[3]) : 0);
  std::vector<float> a(size_t(n * n)), b(size_t(n * n)), c(size_t(n * ldc));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> uniform(-1, 1);
  for (auto& x : a) x = uniform(rng);
  for (auto& x : b) x = uniform(rng);
  std::vector<Case> cases = {variant<12, 2>(false, {256, 144, 4096}), variant<12, 2>(true, {384, 1008, 480}),
                             variant<14, 2>(true, {384, 1008, 480}),  variant<8, 3>(true, {384, 1008, 480}),
                             variant<6, 4>(true, {256, 1008, 512}),   variant<6, 4>(true, {384, 1008, 512}),
                             variant<6, 4>(true, {512, 1008, 256})};
  for (int r = 0; r < rounds; ++r)
    for (Case& cs : cases) {
      const double t0 = now();
      cs.run(n, a.data(), b.data(), c.data(), ldc);
      cs.best = std::min(cs.best, now() - t0);
    }
  for (const Case& cs : cases)
    std::printf("n=%lld ldc=%lld  %-28s %6.1f GFLOP/s\n", (long long)n, (long long)ldc, cs.name.c_str(),
                2.0 * double(n) * double(n) * double(n) / cs.best / 1e9);
}
