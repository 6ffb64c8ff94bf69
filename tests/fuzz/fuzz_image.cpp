// tests/fuzz/fuzz_image.cpp - libFuzzer target for image decoding (graft's PNG chunk walk, JPEG and
// BMP completeness checks, then stb_image's PNG / JPEG / BMP decoders).
//
//   bash tools/fuzz.sh   (all targets), or by hand:
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Ikernels \
//       tests/fuzz/fuzz_image.cpp -o fuzz_image
//   mkdir -p /tmp/corpus_img && cp -r tests/data/images/. /tmp/corpus_img/
//   ./fuzz_image -max_total_time=60 -rss_limit_mb=2048 /tmp/corpus_img
// corpus: tests/data/images
//
// Contract under test: any byte string either decodes to an image whose every byte can be read, or
// throws graft::Error. A crash, a sanitizer report or another exception type is a bug.
#include <cstddef>
#include <cstdint>

#include "graft/io/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (auto mode : {graft::io::ImageMode::Unchanged, graft::io::ImageMode::RGB}) {
    try {
      // 1 Mpx: a few-byte JPEG may declare 64 Mpx, slow to decode but valid; keep runs fast.
      const graft::io::ImageU8 img = graft::io::decode_image_u8(data, size, "fuzz", mode, int64_t(1) << 20);
      unsigned sum = 0;
      for (uint8_t v : img.pixels) sum += v;
      (void)sum;
    } catch (const graft::Error&) {
    }
  }
  return 0;
}
