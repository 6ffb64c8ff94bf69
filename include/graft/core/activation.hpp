// graft/core/activation.hpp - the activations a kernel can fuse into its output write (the GEMM's
// epilogue, used by linear and conv2d). Shared by ops/ and kernels/ (includes go ops -> kernels -> core).
#pragma once

namespace graft {

enum class Activation {
  None,
  Relu,      // max(x, 0); NaN stays NaN
  Relu6,     // min(max(x, 0), 6)
  Silu,      // x sigmoid(x)
  GeluTanh,  // gelu(x, approximate="tanh")
  Gelu,      // gelu(x): 0.5 x (1 + erf(x / sqrt 2))
};

inline const char* activation_name(Activation a) {
  switch (a) {
    case Activation::None: return "none";
    case Activation::Relu: return "relu";
    case Activation::Relu6: return "relu6";
    case Activation::Silu: return "silu";
    case Activation::GeluTanh: return "gelu_tanh";
    case Activation::Gelu: return "gelu";
  }
  return "unknown";
}

}  // namespace graft
