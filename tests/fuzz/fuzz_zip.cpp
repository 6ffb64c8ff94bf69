// tests/fuzz/fuzz_zip.cpp - libFuzzer target: the zip reader and the whole checkpoint loader.
//
// corpus: tests/data/torch
// Build and run (seed corpus: the committed checkpoints, good and crafted):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Ikernels \
//       tests/fuzz/fuzz_zip.cpp -o fuzz_zip
//   mkdir -p /tmp/corpus_zip && ./fuzz_zip -max_total_time=60 /tmp/corpus_zip tests/data/torch
// Any input must either parse or throw graft::Error; a crash, a sanitizer report or a leak is a bug.
// Skip the CRC-32 check (zip.hpp) so that mutated pickles and storages get past it.
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION 1
#endif
#include <cstddef>
#include <cstdint>
#include <span>

#include "graft/io/torch_checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  try {
    graft::io::ZipArchive zip(bytes, "fuzz.zip");
    for (const auto& e : zip.entries()) {
      try {
        (void)zip.read(e);
      } catch (const graft::Error&) {
      }
    }
  } catch (const graft::Error&) {
  }
  try {
    const auto named = graft::io::load_torch_checkpoint(bytes, "fuzz.pth");
    for (const auto& [name, t] : named) (void)t.to_vector();  // touches every element of every view
  } catch (const graft::Error&) {
  }
  return 0;
}
