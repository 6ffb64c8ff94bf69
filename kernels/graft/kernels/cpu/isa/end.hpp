// graft/kernels/cpu/isa/end.hpp - closes the region opened by isa/begin_avx2.hpp or begin_avx512.hpp.
#if defined(__x86_64__) && defined(__clang__)
#pragma clang attribute pop
#elif defined(__x86_64__) && defined(__GNUC__)
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
#undef GRAFT_ISA
