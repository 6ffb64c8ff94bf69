// graft/kernels/cuda/dropout.cuh - inverted dropout on the GPU with a counter-based generator.
//   dropout_forward(out, mask, x, p, gen), dropout_backward(dx, dout, mask): the slots' contracts of
//   graft/ops/dropout.hpp (all contiguous; mask = 1 / (1 - p) where kept, 0 where dropped).
//
// Each call takes one 64-bit key from `gen` (so a seed fixes every mask of a run, and consecutive
// calls differ), and element i's uniform comes from Philox4x32-10 (Salmon et al., "Parallel random
// numbers: as easy as 1, 2, 3", SC 2011) at counter (i / 4, 0) under that key, word i % 4: any thread
// can compute any element's draw, so the mask does not depend on the launch shape. The CPU kernel
// draws from `gen` serially instead, so the same seed gives a different (equally distributed) mask
// on the two devices; PyTorch's masks differ between its devices too.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "graft/core/dtype.hpp"
#include "graft/core/random.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"

namespace graft::kernels::cuda {

namespace dropout_detail {
struct U32x4 {
  uint32_t v[4];
};

// Philox4x32 with 10 rounds: counter c, key k.
__device__ inline U32x4 philox4x32_10(U32x4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    const uint32_t hi0 = __umulhi(M0, c.v[0]), lo0 = M0 * c.v[0];
    const uint32_t hi1 = __umulhi(M1, c.v[2]), lo1 = M1 * c.v[2];
    c = U32x4{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    k0 += W0;
    k1 += W1;
  }
  return c;
}

// Four elements per thread per step, one Philox call each: words 0..3 for elements 4q .. 4q + 3.
template <class T>
__global__ void forward_kernel(T* out, T* mask, const T* x, int64_t n, double p, T scale, uint64_t key) {
  const uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
  const int64_t quads = (n + 3) / 4;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < quads; q += int64_t(gridDim.x) * blockDim.x) {
    const U32x4 r = philox4x32_10(U32x4{{uint32_t(q), uint32_t(uint64_t(q) >> 32), 0u, 0u}}, k0, k1);
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int64_t i = 4 * q + w;
      if (i >= n) break;
      const double u = double(r.v[w]) * (1.0 / 4294967296.0);  // [0, 1), 32 bits
      const T m = u >= p ? scale : T(0);
      mask[i] = m;
      out[i] = x[i] * m;
    }
  }
}

template <class T>
__global__ void backward_kernel(T* dx, const T* dout, const T* mask, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = dout[i] * mask[i];
}
}  // namespace dropout_detail

inline void dropout_forward(const Tensor& out, const Tensor& mask, const Tensor& x, double p, Generator& gen) {
  using namespace dropout_detail;
  const int64_t n = x.numel();
  const uint64_t key = gen.next_u64();  // drawn even for an empty tensor: the stream does not depend on sizes
  if (n == 0) return;
  GRAFT_DISPATCH_FLOAT(x.dtype(), "dropout (cuda)", T, [&] {
    const T scale = p < 1.0 ? T(1.0 / (1.0 - p)) : T(0);
    const KernelLaunch at(out.device());
    forward_kernel<T><<<grid_for((n + 3) / 4, 256), 256, 0, at.stream>>>(
        static_cast<T*>(out.data_ptr()), static_cast<T*>(mask.data_ptr()), static_cast<const T*>(x.data_ptr()), n, p,
        scale, key);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void dropout_backward(const Tensor& dx, const Tensor& dout, const Tensor& mask) {
  using namespace dropout_detail;
  const int64_t n = dx.numel();
  if (n == 0) return;
  GRAFT_DISPATCH_FLOAT(dx.dtype(), "dropout_backward (cuda)", T, [&] {
    const KernelLaunch at(dx.device());
    backward_kernel<T><<<grid_for(n, 256), 256, 0, at.stream>>>(static_cast<T*>(dx.data_ptr()),
                                                                static_cast<const T*>(dout.data_ptr()),
                                                                static_cast<const T*>(mask.data_ptr()), n);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace graft::kernels::cuda
