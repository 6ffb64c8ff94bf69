// kernels/graft_cuda_backend.cu - the CUDA backend compiled once, for programs whose own code is
// built by g++ (CMake: graft::cuda_backend, defined when GRAFT_CUDA is on; the examples and
// bench/gpu link it). <graft/cuda.cuh> registers the CUDA allocator and fills every op's CUDA kernel
// slot during static initialization, so `x.to(graft::cuda())` and every op on the result work from
// g++ code that never includes a CUDA header. An OBJECT library (as graft::compiled), so the linker
// keeps this unit although nothing refers to it by name. Built with GRAFT_COMPILED_KERNELS: the CPU
// kernels come from graft::compiled, not from nvcc's host pass of this file.
#include <graft/cuda.cuh>
