// graft/kernels/cpu/isa/begin_avx512.hpp - opens a region whose functions are compiled for AVX-512
// (F, DQ, BW, VL: every Intel and AMD AVX-512 CPU since Skylake-SP has all four; cpu_features.hpp
// checks them together). As isa/begin_avx2.hpp; closed by isa/end.hpp.
#if defined(__x86_64__) && defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c"))), \
                             apply_to = function)
#elif defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")
// GCC 12 reports the `__Y = __Y` of _mm512_undefined_ps() / _mm256_undefined_pd() inside its own
// intrinsics (max, reduce_add, ...) as "(maybe) used uninitialized" once they are inlined (GCC bug
// 105593, fixed in 13); that is by design of the intrinsics, not ours.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#define GRAFT_ISA avx512
