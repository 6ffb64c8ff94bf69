// graft/core/cuda_libs.hpp - which vendor libraries the CUDA backend may use instead of Graft's own
// kernels: cuBLAS for matmul and linear, cuDNN for conv2d forward and backward
// (kernels/graft/kernels/cuda/vendor.cuh). They are the baselines Graft's kernels are measured
// against, and optional backends; Graft's kernels are the default and always stay available.
//
//   GRAFT_CUDA_LIBS=cublas,cudnn ./train       // read once, at the first query
//   graft::set_cuda_libs({"cublas"});          // overrides the environment from then on
//   graft::set_cuda_libs({});                  // Graft's own kernels (the default)
//   std::vector<std::string> on = graft::cuda_libs();
//
// Names: "cublas", "cudnn" (comma-separated in the variable; spaces and empty items ignored). An
// unknown name throws naming it; so does "cudnn" when the CUDA backend was built without cuDNN (the
// backend records that at registration; a CPU-only program accepts both names, which then select
// nothing). A selected library is still used only where it can take the operands (vendor.cuh says
// when); elsewhere the op runs Graft's kernel. Process-wide, like set_float32_matmul_precision.
// Plain C++: no CUDA header.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "graft/core/error.hpp"

namespace graft {

enum class CudaLib : unsigned { Cublas = 1u, Cudnn = 2u };

namespace detail {

struct CudaLibsState {
  std::atomic<int> selected{-1};     // bit set of CudaLib; -1: GRAFT_CUDA_LIBS not read yet
  std::atomic<unsigned> missing{0};  // libraries the CUDA backend was built without (set at registration)
  std::atomic<uint64_t> calls[2] = {0, 0};  // how many ops each library ran (cublas, cudnn)
};

inline CudaLibsState& cuda_libs_state() {
  static CudaLibsState s;
  return s;
}

inline const char* cuda_lib_name(CudaLib lib) { return lib == CudaLib::Cublas ? "cublas" : "cudnn"; }
inline int cuda_lib_slot(CudaLib lib) { return lib == CudaLib::Cublas ? 0 : 1; }

// One name to its bit; `where` names the caller in the error.
inline unsigned cuda_lib_bit(const std::string& name, const char* where) {
  unsigned bit = 0;
  if (name == "cublas")
    bit = unsigned(CudaLib::Cublas);
  else if (name == "cudnn")
    bit = unsigned(CudaLib::Cudnn);
  else
    throw Error(concat(where, ": unknown CUDA library \"", name, "\" (expected \"cublas\" or \"cudnn\")"));
  if (cuda_libs_state().missing.load(std::memory_order_relaxed) & bit)
    throw Error(concat(where, ": \"", name, "\" selected, but this build of the CUDA backend has no ", name,
                       " (CMake found no cudnn.h / libcudnn.so; GRAFT_HAVE_CUDNN is undefined)"));
  return bit;
}

// "cublas, cudnn" -> bits: items split at commas, surrounding spaces dropped, empty items ignored.
inline unsigned parse_cuda_libs(const std::string& list, const char* where) {
  unsigned bits = 0;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    size_t b = start, e = end;
    while (b < e && (list[b] == ' ' || list[b] == '\t')) ++b;
    while (e > b && (list[e - 1] == ' ' || list[e - 1] == '\t')) --e;
    if (e > b) bits |= cuda_lib_bit(list.substr(b, e - b), where);
    start = end + 1;
  }
  return bits;
}

// The selection, reading GRAFT_CUDA_LIBS the first time (a bad value throws at every query until
// set_cuda_libs replaces it).
inline unsigned selected_cuda_libs() {
  CudaLibsState& s = cuda_libs_state();
  int v = s.selected.load(std::memory_order_acquire);
  if (v >= 0) return unsigned(v);
  const char* env = std::getenv("GRAFT_CUDA_LIBS");
  const int parsed = int(env ? parse_cuda_libs(env, "GRAFT_CUDA_LIBS") : 0u);
  s.selected.compare_exchange_strong(v, parsed, std::memory_order_acq_rel);  // a concurrent set_cuda_libs wins
  return unsigned(s.selected.load(std::memory_order_acquire));
}

// Called by the CUDA backend's registration (vendor.cuh) for a library it was built without.
inline void mark_cuda_lib_missing(CudaLib lib) {
  cuda_libs_state().missing.fetch_or(unsigned(lib), std::memory_order_relaxed);
}

// Called by vendor.cuh each time a library runs an op (the tests check that the library ran).
inline void count_cuda_lib_call(CudaLib lib) {
  cuda_libs_state().calls[cuda_lib_slot(lib)].fetch_add(1, std::memory_order_relaxed);
}

}  // namespace detail

// Whether `lib` is selected (GRAFT_CUDA_LIBS or set_cuda_libs).
inline bool cuda_lib_selected(CudaLib lib) { return (detail::selected_cuda_libs() & unsigned(lib)) != 0; }

// Whether `lib` can be selected: false only for a library the CUDA backend was built without.
inline bool cuda_lib_available(CudaLib lib) {
  return (detail::cuda_libs_state().missing.load(std::memory_order_relaxed) & unsigned(lib)) == 0;
}

// Selects exactly these libraries ({} for none); an unknown or missing name throws and changes nothing.
inline void set_cuda_libs(const std::vector<std::string>& names) {
  unsigned bits = 0;
  for (const std::string& n : names) bits |= detail::cuda_lib_bit(n, "set_cuda_libs");
  detail::cuda_libs_state().selected.store(int(bits), std::memory_order_release);
}

// The selected libraries, in the order cublas, cudnn.
inline std::vector<std::string> cuda_libs() {
  const unsigned bits = detail::selected_cuda_libs();
  std::vector<std::string> names;
  for (CudaLib lib : {CudaLib::Cublas, CudaLib::Cudnn})
    if (bits & unsigned(lib)) names.emplace_back(detail::cuda_lib_name(lib));
  return names;
}

// How many ops `lib` has run in this process (matmul / linear calls for cublas; conv2d forward and
// backward calls for cudnn).
inline uint64_t cuda_lib_calls(CudaLib lib) {
  return detail::cuda_libs_state().calls[detail::cuda_lib_slot(lib)].load(std::memory_order_relaxed);
}

}  // namespace graft
