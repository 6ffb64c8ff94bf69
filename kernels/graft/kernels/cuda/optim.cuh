// graft/kernels/cuda/optim.cuh - the fused SGD and Adam / AdamW updates on the GPU: one pass over a
// parameter's elements, the same float operations as the CPU reference loops (sgd_update_reference,
// adam_update_reference in optim/sgd.hpp and optim/adam.hpp), so the same bits: fma is exact-rounded
// on both, and nvcc's default -prec-div / -prec-sqrt make / and sqrt correctly rounded.
//   sgd_update(p, g, buf, c), adam_update(p, g, m, v, c): the slots' contracts (p, g, buf / m, v
//   contiguous, one dtype and shape; buf undefined when momentum is 0).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "graft/core/dtype.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cpu/optim.hpp"  // SgdCoefficients, AdamCoefficients
#include "graft/kernels/cuda/common.cuh"

namespace graft::kernels::cuda {

namespace optim_detail {
constexpr unsigned kOptimBlock = 256;

// The coefficients in the compute type C (float for float, double for double), as the references cast them.
template <class T>
using Compute = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
__global__ void sgd_kernel(T* p, const T* g, T* buf, int64_t n, Compute<T> neg_lr, Compute<T> weight_decay,
                           Compute<T> momentum, Compute<T> one_minus_dampening, bool use_decay, bool use_momentum,
                           bool nesterov, bool first_step) {
  using C = Compute<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const C pi = C(p[i]);
    C d = C(g[i]);
    if (use_decay) d = fma(pi, weight_decay, d);
    if (use_momentum) {
      buf[i] = T(first_step ? d : fma(d, one_minus_dampening, C(buf[i]) * momentum));
      const C b = C(buf[i]);
      d = nesterov ? fma(b, momentum, d) : b;
    }
    p[i] = T(fma(d, neg_lr, pi));
  }
}

template <class T>
__global__ void adam_kernel(T* p, const T* g, T* m, T* v, int64_t n, Compute<T> decay_factor, Compute<T> weight_decay,
                            Compute<T> beta1, Compute<T> one_minus_beta1, Compute<T> beta2, Compute<T> one_minus_beta2,
                            Compute<T> bias_correction2_sqrt, Compute<T> neg_step_size, Compute<T> eps,
                            bool use_decay_factor, bool use_weight_decay) {
  using C = Compute<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    C pi = C(p[i]), gi = C(g[i]);
    if (use_decay_factor) pi = pi * decay_factor;      // AdamW
    if (use_weight_decay) gi = fma(pi, weight_decay, gi);  // Adam
    m[i] = T(fma(gi, one_minus_beta1, C(m[i]) * beta1));
    v[i] = T(fma(one_minus_beta2 * gi, gi, C(v[i]) * beta2));
    const C denom = sqrt(C(v[i])) / bias_correction2_sqrt + eps;
    p[i] = T(pi + (neg_step_size * C(m[i])) / denom);
  }
}
}  // namespace optim_detail

inline void sgd_update(const Tensor& p, const Tensor& g, const Tensor& buf, const cpu::SgdCoefficients& c) {
  using namespace optim_detail;
  const int64_t n = p.numel();
  if (n == 0) return;
  GRAFT_DISPATCH_FLOAT(p.dtype(), "sgd_update (cuda)", T, [&] {
    using C = Compute<T>;
    const KernelLaunch at(p.device());
    sgd_kernel<T><<<grid_for(n, kOptimBlock), kOptimBlock, 0, at.stream>>>(
        static_cast<T*>(p.data_ptr()), static_cast<const T*>(g.data_ptr()),
        buf.defined() ? static_cast<T*>(buf.data_ptr()) : nullptr, n, C(c.neg_lr), C(c.weight_decay), C(c.momentum),
        C(c.one_minus_dampening), c.weight_decay != 0.0, c.momentum != 0.0, c.nesterov, c.first_step);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

inline void adam_update(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v,
                        const cpu::AdamCoefficients& c) {
  using namespace optim_detail;
  const int64_t n = p.numel();
  if (n == 0) return;
  GRAFT_DISPATCH_FLOAT(p.dtype(), "adam_update (cuda)", T, [&] {
    using C = Compute<T>;
    const KernelLaunch at(p.device());
    adam_kernel<T><<<grid_for(n, kOptimBlock), kOptimBlock, 0, at.stream>>>(
        static_cast<T*>(p.data_ptr()), static_cast<const T*>(g.data_ptr()), static_cast<T*>(m.data_ptr()),
        static_cast<T*>(v.data_ptr()), n, C(c.decay_factor), C(c.weight_decay), C(c.beta1), C(c.one_minus_beta1),
        C(c.beta2), C(c.one_minus_beta2), C(c.bias_correction2_sqrt), C(c.neg_step_size), C(c.eps),
        c.decay_factor != 1.0, c.weight_decay != 0.0);
    GRAFT_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace graft::kernels::cuda
