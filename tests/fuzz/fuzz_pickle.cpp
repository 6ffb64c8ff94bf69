// tests/fuzz/fuzz_pickle.cpp - libFuzzer target: the pickle VM and the state_dict search over its
// result (no zip: storages are never materialized).
// corpus: tests/data/pickle
//
// Build and run (seed corpus: the data.pkl of each committed checkpoint, extracted once):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Ikernels \
//       tests/fuzz/fuzz_pickle.cpp -o fuzz_pickle
//   mkdir -p /tmp/corpus_pkl && (cd /tmp/corpus_pkl && for f in /work/main/tests/data/torch/*.pth; do \
//       unzip -p "$f" '*/data.pkl' > "$(basename "$f").pkl" 2>/dev/null; done)
//   ./fuzz_pickle -max_total_time=60 /tmp/corpus_pkl
// Any input must either unpickle or throw graft::Error; a crash, a sanitizer report or a leak is a bug.
#include <cstddef>
#include <cstdint>
#include <span>

#include "graft/io/torch_checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto p = graft::io::pickle::unpickle(std::span<const uint8_t>(data, size), "fuzz.pkl");
    // The same search load_torch_checkpoint does (bounded depth, cyclic values allowed).
    (void)graft::io::detail_torch::find_model(p.root());
    (void)graft::io::detail_torch::describe_root(p.root());
  } catch (const graft::Error&) {
  }
  return 0;
}
