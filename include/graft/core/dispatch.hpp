// graft/core/dispatch.hpp - the one place each op picks its kernel, and the registry of ops.
//
// Every op has one KernelSlot: a function pointer per device type. The CPU entry is set where the
// op is defined (the reference loops today; the entry itself chooses AVX2/AVX-512 at run time once
// those kernels exist). The CUDA entry is filled by <graft/cuda.cuh> during static
// initialization, so code compiled by g++ reaches kernels compiled by nvcc in another translation
// unit. A CUDA tensor meeting an empty slot throws, naming the op and the build flag.
#pragma once
#include <map>
#include <string>

#include "graft/core/device.hpp"
#include "graft/core/error.hpp"

namespace graft {

template <class Fn>
struct KernelSlot {
  const char* op;
  Fn cpu = nullptr;
  Fn cuda = nullptr;

  Fn get(Device d) const {
    Fn f = d.is_cpu() ? cpu : cuda;
    GRAFT_CHECK(f != nullptr, op, "no kernel for device ", d,
                d.is_cuda() ? ": CUDA backend not compiled in (build with -DGRAFT_CUDA=ON and "
                              "include <graft/cuda.cuh> in one .cu file)"
                            : "");
    return f;
  }
};

// The registry of ops, for tests that check coverage (every differentiable op has a gradient
// check and a PyTorch parity case).
struct OpInfo {
  std::string name;
  bool differentiable = true;
};

inline std::map<std::string, OpInfo>& op_registry() {
  static std::map<std::string, OpInfo> r;
  return r;
}

inline bool register_op(const char* name, bool differentiable = true) {
  op_registry()[name] = OpInfo{name, differentiable};
  return true;
}

// GRAFT_REGISTER_OP(name, differentiable): put once in the header that defines the op.
#define GRAFT_REGISTER_OP(NAME, DIFF) \
  inline const bool graft_registered_op_##NAME = ::graft::register_op(#NAME, DIFF)

}  // namespace graft
