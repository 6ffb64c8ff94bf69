// graft/kernels/cpu/isa/begin_avx2.hpp - opens a region whose functions are compiled for AVX2+FMA.
//
// Every function defined between this header and isa/end.hpp (templates included) gets
// target("avx2,fma,f16c"), so intrinsics inline into them, while the rest of the translation unit
// stays baseline x86-64 and one binary runs on any CPU: the caller checks active_cpu_isa() before
// calling in. Include every other header *before* opening a region (a standard header pulled in here
// would be compiled for AVX2 too). No include guard: a region is opened once per use.
#if defined(__x86_64__) && defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
// GCC 12 reports the `__Y = __Y` of _mm512_undefined_ps() / _mm256_undefined_pd() inside its own
// intrinsics (max, reduce_add, ...) as "(maybe) used uninitialized" once they are inlined (GCC bug
// 105593, fixed in 13); that is by design of the intrinsics, not ours.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#define GRAFT_ISA avx2
