// graft/core/precision.hpp - how float32 matrix products may be computed, like PyTorch's
// torch.set_float32_matmul_precision. Read by the kernels (the CUDA GEMM), set by the user.
//
//   graft::set_float32_matmul_precision("high");     // float32 matmul / linear on CUDA: TF32 tensor cores
//   graft::set_float32_matmul_precision("highest");  // exact float32 (the default)
//
//   "highest"  float32 products and sums (the default; the CPU always computes so)
//   "high"     CUDA: the inputs rounded to TF32 (10 explicit mantissa bits, round to nearest, ties
//              away from zero), products on the tensor cores, sums in float32
//   "medium"   as "high" (PyTorch allows bfloat16 there; Graft has no bfloat16 GEMM, and PyTorch's
//              CUDA matmul also takes TF32 for both)
// float64 products are never affected. The setting is process-wide (an atomic), as in PyTorch.
#pragma once
#include <atomic>
#include <string>

#include "graft/core/error.hpp"

namespace graft {

enum class MatmulPrecision { Highest, High, Medium };

namespace detail {
inline std::atomic<MatmulPrecision>& float32_matmul_precision_setting() {
  static std::atomic<MatmulPrecision> p{MatmulPrecision::Highest};
  return p;
}
}  // namespace detail

inline MatmulPrecision float32_matmul_precision() {
  return detail::float32_matmul_precision_setting().load(std::memory_order_relaxed);
}

inline void set_float32_matmul_precision(MatmulPrecision p) {
  detail::float32_matmul_precision_setting().store(p, std::memory_order_relaxed);
}

// "highest", "high" or "medium" (torch.set_float32_matmul_precision's names); anything else throws.
inline void set_float32_matmul_precision(const std::string& name) {
  MatmulPrecision p;
  if (name == "highest")
    p = MatmulPrecision::Highest;
  else if (name == "high")
    p = MatmulPrecision::High;
  else if (name == "medium")
    p = MatmulPrecision::Medium;
  else
    throw Error(detail::concat("set_float32_matmul_precision: expected \"highest\", \"high\" or \"medium\", got \"",
                               name, "\""));
  set_float32_matmul_precision(p);
}

inline std::string get_float32_matmul_precision() {
  switch (float32_matmul_precision()) {
    case MatmulPrecision::Highest: return "highest";
    case MatmulPrecision::High: return "high";
    case MatmulPrecision::Medium: return "medium";
  }
  return "highest";
}

// Whether float32 GEMMs may round their inputs to TF32 (every setting but "highest").
inline bool float32_matmul_allows_tf32() { return float32_matmul_precision() != MatmulPrecision::Highest; }

}  // namespace graft
