// tests/cuda/op_harness.hpp - the one harness of the CUDA tests (the idea of ggml's test-backend-ops):
// an op runs on CPU tensors (the reference kernels, or the fast CPU kernels that are tested against
// them) and on GPU copies of the same tensors; outputs and gradients must agree within the
// tolerances of tests/harness.hpp, stated once per dtype.
//
//   TEST_CASE("softmax", "[cuda]") {
//     cuda_test::check_op("softmax over dim 1", [](const auto& in) { return softmax(in[0], 1); },
//                         {cuda_test::randn_leaf({6, 77, 4})});
//   }
//
// check_op runs the op three ways: on the CPU, on the GPU with the inputs as given, and on the GPU
// with every input of rank >= 1 made non-contiguous (same values, strided storage), so kernels that
// read strides are checked on both layouts. With backward (the default), the CPU inputs that require
// grad are differentiated through sum(out * r) with one random r, and each GPU gradient is compared
// with the CPU one.
//
// Without a GPU these tests never run: tests/cuda/main.cpp exits 77 for each of them, and ctest lists
// each by name as skipped.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "../harness.hpp"

namespace cuda_test {
using namespace graft;
using graft_test::Tol;

inline Device gpu() { return cuda(0); }

// Compares a GPU result (any device) with the CPU one: same shape and dtype, every element within
// tol (default: tests/harness.hpp's tolerance of the dtype; integer and bool results exactly).
inline void expect_close(const std::string& what, const Tensor& gpu_result, const Tensor& cpu_result,
                         std::optional<Tol> tol = std::nullopt) {
  INFO(what);
  REQUIRE(gpu_result.defined());
  REQUIRE(cpu_result.defined());
  CHECK(gpu_result.device().is_cuda());
  CHECK(gpu_result.dtype() == cpu_result.dtype());
  const Tol t = tol ? *tol : is_floating(cpu_result.dtype()) ? graft_test::tol_for(cpu_result.dtype()) : Tol{0, 0};
  const std::string report = graft_test::close_report(gpu_result.cpu(), cpu_result, t);
  INFO(report);
  CHECK(report.empty());
}

// Bit for bit (for kernels that promise the CPU reference's float operations, or integer results).
inline void expect_exact(const std::string& what, const Tensor& gpu_result, const Tensor& cpu_result) {
  INFO(what << " (bit for bit)");
  REQUIRE(gpu_result.defined());
  REQUIRE(cpu_result.defined());
  CHECK(gpu_result.shape() == cpu_result.shape());
  CHECK(gpu_result.cpu().to_vector() == cpu_result.to_vector());
}

// f() must throw a graft::Error whose message contains needle.
inline void expect_throws_with(const std::function<void()>& f, const std::string& needle) {
  INFO("expected an error containing \"" << needle << "\"");
  try {
    f();
    FAIL("no exception");
  } catch (const Error& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}

// The same values in non-contiguous storage on t's device: rank >= 2 as the transpose of a
// contiguous tensor with the last two dims swapped, rank 1 as every other element of a tensor twice
// as long. Rank 0 and empty tensors come back unchanged. Keeps requires_grad off (a leaf is made by
// the caller).
inline Tensor noncontiguous(const Tensor& t) {
  NoGradGuard ng;
  if (t.dim() == 0 || t.numel() == 0) return t.detach();
  if (t.dim() == 1) {
    Tensor wide = zeros({2 * t.shape()[0]}, t.dtype()).to(t.device());
    Tensor v = wide.slice(0, 0, 2 * t.shape()[0], 2);
    v.copy_(t);
    return v;
  }
  Tensor v = t.transpose(-1, -2).contiguous().transpose(-1, -2);
  if (v.is_contiguous()) {  // last two dims of size 1: go through every other element of dim 0
    Shape wide_shape = t.shape();
    wide_shape[0] *= 2;
    Tensor wide = zeros(wide_shape, t.dtype()).to(t.device());
    v = wide.slice(0, 0, wide_shape[0], 2);
    v.copy_(t);
  }
  return v;
}

// A float32 CPU leaf that requires grad, from one generator per call site's seed.
inline Tensor randn_leaf(const Shape& s, uint64_t seed = 1, double scale = 1.0, DType dt = DType::Float32) {
  Generator g(seed);
  Tensor t = randn(s, dt, g);
  if (scale != 1.0) {
    NoGradGuard ng;
    t = (t * scale).contiguous();
  }
  return t.set_requires_grad();
}

struct OpOptions {
  bool backward = true;        // compare the gradients of the CPU inputs that require grad
  bool noncontiguous = true;   // also run the GPU op on non-contiguous copies of the inputs
  bool exact = false;          // outputs and gradients bit for bit
  std::optional<Tol> tol;      // default: tests/harness.hpp's tolerance of the output dtype
  uint64_t seed = 99;          // of the upstream gradient r
};
// Options for a kernel that promises the CPU's float operations: outputs and gradients bit for bit.
inline OpOptions bit_for_bit() {
  OpOptions o;
  o.exact = true;
  return o;
}
using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

inline void check_op(const std::string& name, const OpFn& fn, const std::vector<Tensor>& cpu_inputs,
                     OpOptions opt = {}) {
  const Tensor cpu_out = fn(cpu_inputs);
  const bool differentiate = opt.backward && cpu_out.requires_grad() && is_floating(cpu_out.dtype());
  Tensor r;
  std::vector<Tensor> cpu_grads(cpu_inputs.size());
  if (differentiate) {
    Generator g(opt.seed);
    r = randn(cpu_out.shape(), cpu_out.dtype(), g);
    std::vector<Tensor> wrt;
    std::vector<size_t> which;
    for (size_t i = 0; i < cpu_inputs.size(); ++i)
      if (cpu_inputs[i].defined() && cpu_inputs[i].requires_grad()) {
        wrt.push_back(cpu_inputs[i]);
        which.push_back(i);
      }
    const std::vector<Tensor> grads = autograd::grad({sum(cpu_out * r)}, wrt, {}, false, false, true);
    for (size_t k = 0; k < which.size(); ++k) cpu_grads[which[k]] = grads[k];
  }
  for (int layout = 0; layout < (opt.noncontiguous ? 2 : 1); ++layout) {
    const std::string what = name + (layout == 0 ? "" : " (non-contiguous inputs)");
    std::vector<Tensor> in(cpu_inputs.size());
    std::vector<Tensor> wrt;
    for (size_t i = 0; i < cpu_inputs.size(); ++i) {
      if (!cpu_inputs[i].defined()) continue;
      Tensor d = cpu_inputs[i].detach().to(gpu());
      if (layout == 1) d = noncontiguous(d);
      if (cpu_grads[i].defined()) {
        d.set_requires_grad();
        wrt.push_back(d);
      }
      in[i] = d;
    }
    const Tensor out = fn(in);
    if (opt.exact)
      expect_exact(what, out, cpu_out.detach());
    else
      expect_close(what, out, cpu_out.detach(), opt.tol);
    if (!differentiate || wrt.empty()) continue;
    const std::vector<Tensor> grads = autograd::grad({sum(out * r.to(gpu()))}, wrt, {}, false, false, true);
    size_t k = 0;
    for (size_t i = 0; i < cpu_inputs.size(); ++i) {
      if (!cpu_grads[i].defined()) continue;
      const std::string gw = what + ": gradient of input " + std::to_string(i);
      if (opt.exact)
        expect_exact(gw, grads[k], cpu_grads[i]);
      else
        expect_close(gw, grads[k], cpu_grads[i], opt.tol);
      ++k;
    }
  }
}

}  // namespace cuda_test
