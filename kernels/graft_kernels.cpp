// kernels/graft_kernels.cpp - every CPU kernel, compiled once for a program built with
// GRAFT_COMPILED_KERNELS (include/graft/core/dispatch.hpp; CMake: link graft::compiled).
//
// Header-only, each translation unit that includes graft.hpp compiles all the kernels again (about
// 35 s of g++ -O2 each). A program with GRAFT_COMPILED_KERNELS defined in every unit gets empty
// kernel slots instead, and this unit fills them during static initialization. It must include
// every header that defines a slot (GRAFT_KERNEL_SLOT); the ctest compiled_kernels fails, naming the
// slot, if one stays empty.
#define GRAFT_KERNELS_IMPLEMENTATION
#include "graft/graft.hpp"
#include "graft/optim/adam.hpp"
#include "graft/optim/clip.hpp"
