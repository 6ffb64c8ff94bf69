// graft/kernels/cpu/cpu_features.hpp - which x86 vector ISA the CPU kernels use, chosen once at run time.
//
//   detected_cpu_isa()  what the CPU (and OS) supports, from CPUID (__builtin_cpu_supports):
//                       Avx512 needs avx512f, dq, bw and vl (Skylake-SP and later, Zen 4 and later:
//                       the set isa/begin_avx512.hpp compiles for); Avx2 needs avx2 and fma; else Scalar.
//   active_cpu_isa()    what the kernels use: detected, capped by GRAFT_CPU_ISA=scalar|avx2|avx512
//                       (an unknown value throws graft::Error). Read once, then cached.
//   set_cpu_isa(isa)    for tests and benchmarks; throws if the CPU lacks isa. Meant to be called
//                       while no kernel runs ("set once at start"): the cache is a relaxed atomic.
//
// The ISAs are ordered: Scalar < Avx2 < Avx512, and capping takes the smaller one.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "graft/core/error.hpp"

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace graft::kernels::cpu {

enum class CpuIsa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

inline const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Scalar: return "scalar";
    case CpuIsa::Avx2: return "avx2";
    case CpuIsa::Avx512: return "avx512";
  }
  return "unknown";
}

inline CpuIsa detected_cpu_isa() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    return CpuIsa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::Avx2;
#endif
  return CpuIsa::Scalar;
}

// "scalar" | "avx2" | "avx512" -> CpuIsa; anything else throws, naming `what` (the variable) and the value.
inline CpuIsa parse_cpu_isa(const std::string& value, const char* what = "GRAFT_CPU_ISA") {
  if (value == "scalar") return CpuIsa::Scalar;
  if (value == "avx2") return CpuIsa::Avx2;
  if (value == "avx512") return CpuIsa::Avx512;
  throw Error(graft::detail::concat(what, ": unknown value '", value, "' (expected scalar, avx2 or avx512)"));
}

// Uncached: the detected ISA capped by $GRAFT_CPU_ISA (if set and not empty).
inline CpuIsa cpu_isa_from_environment() {
  const CpuIsa detected = detected_cpu_isa();
  const char* env = std::getenv("GRAFT_CPU_ISA");
  if (env == nullptr || *env == '\0') return detected;
  return std::min(detected, parse_cpu_isa(env));
}

namespace cpu_isa_detail {
inline constexpr int kCpuIsaUnset = -1;
inline std::atomic<int> active_cpu_isa_cache{kCpuIsaUnset};  // a CpuIsa, or kCpuIsaUnset
}  // namespace cpu_isa_detail

inline CpuIsa active_cpu_isa() {
  int isa = cpu_isa_detail::active_cpu_isa_cache.load(std::memory_order_relaxed);
  if (isa == cpu_isa_detail::kCpuIsaUnset) {
    isa = static_cast<int>(cpu_isa_from_environment());  // two racing first calls compute the same value
    cpu_isa_detail::active_cpu_isa_cache.store(isa, std::memory_order_relaxed);
  }
  return static_cast<CpuIsa>(isa);
}

inline const char* cpu_isa_name() { return cpu_isa_name(active_cpu_isa()); }

// Forces the ISA the kernels use (tests, benchmarks). Throws if the CPU lacks it.
inline void set_cpu_isa(CpuIsa isa) {
  const CpuIsa detected = detected_cpu_isa();
  if (isa > detected)
    throw Error(graft::detail::concat("set_cpu_isa: this CPU lacks ", cpu_isa_name(isa), " (detected ",
                                      cpu_isa_name(detected), ")"));
  cpu_isa_detail::active_cpu_isa_cache.store(static_cast<int>(isa), std::memory_order_relaxed);
}

// ---- bfloat16 matrix products ------------------------------------------------------------------
// Which instructions the bfloat16 GEMM (gemm_bf16.hpp) uses, separate from the float ISA above:
//   Amx         AMX-BF16 tiles (TDPBF16PS): Sapphire Rapids and later; needs the OS to grant the
//               tile state (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), asked once here)
//   Avx512Bf16  AVX512_BF16 (VDPBF16PS): Cooper Lake, Sapphire Rapids, Zen 4
//   Widen       neither: bfloat16 operands are widened to float32 for the float32 kernels
// detected_bf16_isa() reads CPUID (and XCR0, and asks for the tile permission); active_bf16_isa() caps
// it by GRAFT_BF16_ISA=widen|avx512_bf16|amx, and is Widen whenever the float ISA is below avx512.
enum class Bf16Isa { Widen = 0, Avx512Bf16 = 1, Amx = 2 };

inline const char* bf16_isa_name(Bf16Isa isa) {
  switch (isa) {
    case Bf16Isa::Widen: return "widen";
    case Bf16Isa::Avx512Bf16: return "avx512_bf16";
    case Bf16Isa::Amx: return "amx";
  }
  return "unknown";
}

namespace cpu_isa_detail {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
inline void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4]) {
  __asm__ volatile("cpuid" : "=a"(out[0]), "=b"(out[1]), "=c"(out[2]), "=d"(out[3]) : "a"(leaf), "c"(subleaf));
}
inline uint64_t xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}
inline Bf16Isa detect_bf16_isa() {
  if (detected_cpu_isa() < CpuIsa::Avx512) return Bf16Isa::Widen;
  uint32_t r[4];
  cpuid(0, 0, r);
  if (r[0] < 7) return Bf16Isa::Widen;
  cpuid(7, 0, r);
  const bool amx_bf16 = (r[3] >> 22) & 1u, amx_tile = (r[3] >> 24) & 1u;
  cpuid(7, 1, r);
  const bool avx512_bf16 = (r[0] >> 5) & 1u;
  if (amx_bf16 && amx_tile && ((xcr0() >> 17) & 3u) == 3u) {
    // Linux: the tile data state is off until the process asks for it (ARCH_REQ_XCOMP_PERM = 0x1023,
    // XFEATURE_XTILEDATA = 18); a kernel that refuses leaves AMX unusable.
    long ret = -1;
#if defined(__linux__)
    ret = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */);
#endif
    if (ret == 0) return Bf16Isa::Amx;
  }
  return avx512_bf16 ? Bf16Isa::Avx512Bf16 : Bf16Isa::Widen;
}
#else
inline Bf16Isa detect_bf16_isa() { return Bf16Isa::Widen; }
#endif
inline std::atomic<int> active_bf16_isa_cache{kCpuIsaUnset};
}  // namespace cpu_isa_detail

inline Bf16Isa detected_bf16_isa() {
  static const Bf16Isa isa = cpu_isa_detail::detect_bf16_isa();  // asks for the tile state once
  return isa;
}

inline Bf16Isa parse_bf16_isa(const std::string& value, const char* what = "GRAFT_BF16_ISA") {
  if (value == "widen") return Bf16Isa::Widen;
  if (value == "avx512_bf16") return Bf16Isa::Avx512Bf16;
  if (value == "amx") return Bf16Isa::Amx;
  throw Error(graft::detail::concat(what, ": unknown value '", value, "' (expected widen, avx512_bf16 or amx)"));
}

inline Bf16Isa active_bf16_isa() {
  if (active_cpu_isa() < CpuIsa::Avx512) return Bf16Isa::Widen;
  int isa = cpu_isa_detail::active_bf16_isa_cache.load(std::memory_order_relaxed);
  if (isa == cpu_isa_detail::kCpuIsaUnset) {
    Bf16Isa v = detected_bf16_isa();
    const char* env = std::getenv("GRAFT_BF16_ISA");
    if (env != nullptr && *env != '\0') v = std::min(v, parse_bf16_isa(env));
    isa = static_cast<int>(v);
    cpu_isa_detail::active_bf16_isa_cache.store(isa, std::memory_order_relaxed);
  }
  return static_cast<Bf16Isa>(isa);
}

// Forces the bfloat16 path (tests, benchmarks). Throws if the CPU lacks it.
inline void set_bf16_isa(Bf16Isa isa) {
  if (isa > detected_bf16_isa())
    throw Error(graft::detail::concat("set_bf16_isa: this CPU lacks ", bf16_isa_name(isa), " (detected ",
                                      bf16_isa_name(detected_bf16_isa()), ")"));
  cpu_isa_detail::active_bf16_isa_cache.store(static_cast<int>(isa), std::memory_order_relaxed);
}

}  // namespace graft::kernels::cpu
