// graft/kernels/cpu/isa/for_each_isa.hpp - compiles one kernel body once per vector ISA.
//
// A fast CPU kernel is written once, in a body file, against the vector type VecF of
// vec/vec_avx2.hpp and vec/vec_avx512.hpp (same interface, 8 or 16 float lanes). Its header does
//
//   #define GRAFT_KERNEL_BODY "graft/kernels/cpu/softmax.inc"
//   #include "graft/kernels/cpu/isa/for_each_isa.hpp"
//
// and gets graft::kernels::cpu::avx2::<functions> and graft::kernels::cpu::avx512::<functions>,
// each compiled for its ISA (the body opens `namespace graft::kernels::cpu::GRAFT_ISA`). The header
// then picks one at run time by active_cpu_isa() (cpu_features.hpp); the scalar path is the op's
// plain reference in include/graft/ops/. This is how Highway's foreach_target works; ggml writes
// each ISA out by hand instead. On other architectures the body is not compiled and the dispatch
// takes the reference.
#ifndef GRAFT_KERNEL_BODY
#error "define GRAFT_KERNEL_BODY (the body file to compile per ISA) before including for_each_isa.hpp"
#endif
#include "graft/kernels/cpu/vec/vec_avx2.hpp"
#include "graft/kernels/cpu/vec/vec_avx512.hpp"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "graft/kernels/cpu/isa/begin_avx2.hpp"
#include GRAFT_KERNEL_BODY
#include "graft/kernels/cpu/isa/end.hpp"
#include "graft/kernels/cpu/isa/begin_avx512.hpp"
#include GRAFT_KERNEL_BODY
#include "graft/kernels/cpu/isa/end.hpp"
#endif
#undef GRAFT_KERNEL_BODY
