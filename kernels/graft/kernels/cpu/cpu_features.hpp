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
#include <cstdlib>
#include <string>

#include "graft/core/error.hpp"

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

}  // namespace graft::kernels::cpu
