// tests/fuzz/fuzz_safetensors.cpp - libFuzzer target for the safetensors reader (and through it the
// JSON parser).
// corpus: tests/data/safetensors
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Ikernels \
//       tests/fuzz/fuzz_safetensors.cpp -o fuzz_safetensors
//   ./fuzz_safetensors -max_total_time=60 corpus/ tests/data/safetensors/
//
// Contract under test: any byte string either parses, and then every tensor can be read and every
// byte of it touched, or throws graft::Error. Anything else (a crash, a sanitizer report, another
// exception type, a timeout) is a bug.
#include <cstddef>
#include <cstdint>

#include "graft/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto f = graft::io::SafetensorsFile::from_memory(data, size, "fuzz");
    for (const auto& [k, v] : f.metadata()) (void)(k.size() + v.size());
    for (const std::string& name : f.names()) {
      const graft::Tensor t = f.tensor(name);
      const size_t nbytes = size_t(t.numel()) * graft::dtype_size(t.dtype());
      const auto* p = static_cast<const volatile uint8_t*>(nbytes ? t.data_ptr() : nullptr);
      unsigned sum = 0;
      for (size_t i = 0; i < nbytes; ++i) sum += p[i];  // ASan checks every byte is in bounds
      (void)sum;
    }
  } catch (const graft::Error&) {
    // rejected input: the expected outcome for most fuzz inputs
  }
  return 0;
}
