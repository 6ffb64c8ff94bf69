// The one .cu file of the CUDA test program: it fills the KernelSlots with the CUDA kernels.
#include <graft/cuda.cuh>

int graft_test_cuda_device_count() { return graft::cuda_device_count(); }
