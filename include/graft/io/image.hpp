// graft/io/image.hpp - decode PNG, JPEG and BMP images (stb_image) and write PNG (stb_image_write).
//
// Not part of graft.hpp: include it where images are read (it compiles stb into that translation
// unit, see "Why stb is static" below).
//
//   graft::io::ImageU8 raw = graft::io::read_image_u8("cat.jpg");   // HWC uint8, raw.pixels
//   graft::Tensor x = graft::io::read_image("cat.jpg");             // [3, H, W] float32 in [0, 1]
//   graft::io::write_png("out.png", x);                             // [C, H, W] float in [0, 1]
//
// Contracts
//   read_image / decode_image: CHW float32, value = byte / 255 exactly as torchvision's ToTensor.
//     The mode picks the channels (default RGB, like PIL's convert("RGB")): gray is replicated to
//     RGB, alpha is dropped without compositing (as PIL does). Gray from colour uses stb's luma
//     (77 R + 150 G + 29 B) >> 8, which can differ from PIL's "L" by one level. 16-bit PNGs are
//     reduced to 8 bits. GIF and animated formats are not read.
//   Every failure throws graft::Error "image: <file>: <what>" - a missing or unreadable file, an
//   empty file, bytes that are no PNG/JPEG/BMP, truncated or malformed structure (graft walks the
//   PNG chunks and the JPEG marker segments itself, naming the byte offset, and refuses the JPEG
//   Huffman tables that overflow Debian's stb_image; a BMP shorter than its header says), or
//   stb_image's own reason for corrupt data,
//   dimensions above kMaxImageSide / kMaxImagePixels (checked from the header, before any
//   allocation). Bad bytes never crash and never yield a silently wrong image.
#pragma once
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "graft/graft.hpp"

// ---- Why stb is static --------------------------------------------------------------------------
// A header-only library has no .cpp file to hold the one STB_IMAGE_IMPLEMENTATION, and defining the
// implementation in a header with external linkage would give duplicate symbols as soon as two
// translation units include it. So stb is compiled here with STB_IMAGE_STATIC /
// STB_IMAGE_WRITE_STATIC: every stbi_* function is `static`, one private copy per translation unit
// that includes this header (some code size, which is why this header is opt-in), never clashing
// with another copy of stb elsewhere in the program.
// The graft functions below are ordinary inline functions (external linkage), so any inline function
// or template, graft's own (data::ImageFolder::get) or a user's, may call them. An inline function
// must mean the same entities in every translation unit (the one-definition rule), so they never
// name a TU-local stbi_* function: they call stb through one program-wide table of function pointers,
// detail_image::stb(), which the first translation unit that includes this header fills with its
// own copy during static initialization (registration below, the only TU-local part; every copy is
// the same code, so which one wins does not matter). Consequence: a translation unit must not include
// <stb/stb_image.h> or <stb/stb_image_write.h> itself before this header (its extern declarations
// would clash with the static definitions, a compile error, never a silent one).
// Only formats with a magic number are compiled in (TGA has none: a text file could decode as one).
#if defined(STBI_INCLUDE_STB_IMAGE_H) || defined(INCLUDE_STB_IMAGE_WRITE_H)
#error "graft/io/image.hpp compiles its own static stb_image; include it before any stb header"
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO  // graft reads files itself, to name them in errors
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>
#undef STB_IMAGE_IMPLEMENTATION
#undef STB_IMAGE_WRITE_IMPLEMENTATION

namespace graft::io {

// Limits checked from the image header before decoding: larger images are corrupt or hostile input
// here (8192 x 8192 is 64 Mpx; a float32 RGB tensor of that is 768 MiB).
inline constexpr int64_t kMaxImageSide = int64_t(1) << 15;
inline constexpr int64_t kMaxImagePixels = int64_t(1) << 26;

// Channels to decode to; values as torchvision.io.ImageReadMode.
enum class ImageMode : int { Unchanged = 0, Gray = 1, GrayAlpha = 2, RGB = 3, RGBA = 4 };

// Raw 8-bit pixels, row-major HWC: pixels[(y * width + x) * channels + c].
struct ImageU8 {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;

  uint8_t at(int64_t y, int64_t x, int64_t c) const {
    return pixels[static_cast<size_t>((y * width + x) * channels + c)];
  }
};

// [C, H, W] float32 with value = byte / 255 (torchvision's ToTensor).
inline Tensor image_to_tensor(const ImageU8& img) {
  GRAFT_CHECK(img.channels > 0 && int64_t(img.pixels.size()) == img.height * img.width * img.channels,
              "image_to_tensor", "pixels hold ", img.pixels.size(), " bytes, expected ", img.height, " x ",
              img.width, " x ", img.channels);
  Tensor t = empty(Shape{img.channels, img.height, img.width}, DType::Float32);
  float* out = t.data<float>();
  const int64_t plane = img.height * img.width;
  for (int64_t p = 0; p < plane; ++p)
    for (int64_t c = 0; c < img.channels; ++c)
      out[c * plane + p] = static_cast<float>(img.pixels[static_cast<size_t>(p * img.channels + c)]) / 255.0f;
  return t;
}

// [C, H, W] (C in 1..4) floating tensor in [0, 1] -> bytes: clamp(v * 255 + 0.5, 0, 255) truncated,
// as torchvision.utils.save_image. NaN becomes 0.
inline ImageU8 tensor_to_image(const Tensor& chw) {
  GRAFT_CHECK(chw.defined() && chw.dim() == 3 && chw.size(0) >= 1 && chw.size(0) <= 4, "tensor_to_image",
              "expected a [C, H, W] tensor with C in 1..4, got ", chw.defined() ? chw.shape().str() : "undefined");
  GRAFT_CHECK(is_floating(chw.dtype()), "tensor_to_image", "expected a floating tensor, got ",
              dtype_name(chw.dtype()));
  const std::vector<double> v = chw.cpu().to_vector();
  ImageU8 img;
  img.channels = chw.size(0);
  img.height = chw.size(1);
  img.width = chw.size(2);
  img.pixels.resize(v.size());
  const int64_t plane = img.height * img.width;
  for (int64_t c = 0; c < img.channels; ++c)
    for (int64_t p = 0; p < plane; ++p) {
      const double x = v[static_cast<size_t>(c * plane + p)] * 255.0 + 0.5;
      const double clamped = std::isnan(x) ? 0.0 : std::min(255.0, std::max(0.0, x));
      img.pixels[static_cast<size_t>(p * img.channels + c)] = static_cast<uint8_t>(clamped);
    }
  return img;
}

namespace detail_image {

inline std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::error_code ec;
  GRAFT_CHECK(std::filesystem::exists(path, ec), "image", path, ": no such file");
  GRAFT_CHECK(std::filesystem::is_regular_file(path, ec), "image", path, ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  GRAFT_CHECK(in.good(), "image", path, ": cannot open (", std::strerror(errno), ")");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  GRAFT_CHECK(size >= 0, "image", path, ": cannot determine the file size");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0) in.read(reinterpret_cast<char*>(bytes.data()), size);
  GRAFT_CHECK(in.good() || size == 0, "image", path, ": read failed after ", in.gcount(), " of ", size,
              " bytes");
  return bytes;
}

inline bool has_prefix(const uint8_t* data, size_t size, std::initializer_list<uint8_t> magic) {
  if (size < magic.size()) return false;
  size_t i = 0;
  for (uint8_t m : magic)
    if (data[i++] != m) return false;
  return true;
}

// JPEG: walks the marker segments from SOI to EOI, skipping entropy-coded data after each SOS
// (where every 0xFF is stuffed as FF 00 or is a restart marker FF D0..D7), and validates every DHT
// (Huffman table) segment: Debian's stb_image (2.27) writes past a 257-byte array when a table
// declares more than 256 codes, so such a file must never reach it. The walk is strict (a byte that
// should start a marker but is not 0xFF is an error), so stb cannot parse a segment it did not see.
// Each scan must also use only Huffman and quantization tables defined before it: stb does not
// initialise its tables, so a scan naming an undefined one would decode from uninitialised memory.
inline void check_jpeg_structure(const uint8_t* data, size_t size, const std::string& source) {
  size_t pos = 2;  // after SOI
  bool dc_defined[4] = {}, ac_defined[4] = {}, quant_defined[4] = {};
  std::vector<int> frame_quant;  // the quantization table id of each frame component (SOF)
  for (;;) {
    GRAFT_CHECK(pos < size, "image", source,
                ": truncated JPEG: no end-of-image marker (FF D9) before the end at byte offset ", size);
    GRAFT_CHECK(data[pos] == 0xFF, "image", source, ": corrupt JPEG: expected a marker (FF xx) at byte offset ", pos,
                ", found 0x", std::hex, int(data[pos]), std::dec);
    const size_t marker_at = pos;
    while (pos < size && data[pos] == 0xFF) ++pos;  // fill bytes
    GRAFT_CHECK(pos < size, "image", source, ": truncated JPEG: marker at byte offset ", marker_at, " is cut off");
    const uint8_t marker = data[pos++];
    if (marker == 0xD9) return;                                    // EOI
    if ((marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) continue;  // no length field
    GRAFT_CHECK(marker != 0x00 && marker != 0xD8, "image", source, ": corrupt JPEG: invalid marker FF ", std::hex,
                int(marker), std::dec, " at byte offset ", marker_at);
    GRAFT_CHECK(size - pos >= 2, "image", source, ": truncated JPEG: the length of the segment at byte offset ",
                marker_at, " is cut off");
    const size_t len = (size_t(data[pos]) << 8) | data[pos + 1];
    GRAFT_CHECK(len >= 2 && len <= size - pos, "image", source, ": truncated JPEG: segment FF ", std::hex, int(marker),
                std::dec, " at byte offset ", marker_at, " declares ", len, " bytes, ", size - pos, " left");
    if (marker == 0xC4) {  // DHT: tables of 1 byte class/id, 16 code counts, then the values
      size_t t = pos + 2;
      const size_t seg_end = pos + len;
      while (t < seg_end) {
        GRAFT_CHECK(seg_end - t >= 17, "image", source, ": corrupt JPEG: Huffman table at byte offset ", t,
                    " needs 17 header bytes, its DHT segment has ", seg_end - t, " left");
        const int tc = data[t] >> 4, th = data[t] & 15;
        GRAFT_CHECK(tc <= 1 && th <= 3, "image", source, ": corrupt JPEG: Huffman table at byte offset ", t,
                    " has class ", tc, " and id ", th, " (expected class 0..1, id 0..3)");
        size_t codes = 0;
        for (int i = 1; i <= 16; ++i) codes += data[t + size_t(i)];
        GRAFT_CHECK(codes <= 256, "image", source, ": corrupt JPEG: Huffman table at byte offset ", t, " declares ",
                    codes, " codes (at most 256)");
        GRAFT_CHECK(seg_end - t - 17 >= codes, "image", source, ": corrupt JPEG: Huffman table at byte offset ", t,
                    " declares ", codes, " values, its DHT segment has ", seg_end - t - 17, " bytes left");
        t += 17 + codes;
        (tc == 0 ? dc_defined : ac_defined)[th] = true;
      }
    }
    if (marker == 0xDB) {  // DQT: tables of 1 byte precision/id, then 64 values of 1 or 2 bytes
      size_t t = pos + 2;
      const size_t seg_end = pos + len;
      while (t < seg_end) {
        const int pq = data[t] >> 4, tq = data[t] & 15;
        const size_t need = 1 + (pq == 0 ? 64 : 128);
        GRAFT_CHECK(pq <= 1 && tq <= 3 && seg_end - t >= need, "image", source,
                    ": corrupt JPEG: quantization table at byte offset ", t, " (precision ", pq, ", id ", tq,
                    ") needs ", need, " bytes, its DQT segment has ", seg_end - t, " left");
        quant_defined[tq] = true;
        t += need;
      }
    }
    if (marker >= 0xC0 && marker <= 0xC2 && len >= 8) {  // SOF0..2: P, Y, X, Nf, then Nf x (C, HV, Tq)
      const size_t nf = data[pos + 7];
      frame_quant.clear();
      for (size_t c = 0; c < nf && 8 + 3 * c + 2 < len; ++c) frame_quant.push_back(data[pos + 8 + 3 * c + 2]);
    }
    if (marker == 0xDA) {  // SOS: Ns, Ns x (C, Td/Ta), Ss, Se, Ah/Al
      const size_t ns = len >= 3 ? data[pos + 2] : 0;
      GRAFT_CHECK(ns >= 1 && ns <= 4 && len == 6 + 2 * ns, "image", source,
                  ": corrupt JPEG: scan header at byte offset ", marker_at, " has ", ns, " components and length ",
                  len, " (expected 1..4 and 6 + 2 x components)");
      const int ss = data[pos + 3 + 2 * ns], se = data[pos + 4 + 2 * ns], ah = data[pos + 5 + 2 * ns] >> 4;
      for (size_t c = 0; c < ns; ++c) {
        const int td = data[pos + 4 + 2 * c] >> 4, ta = data[pos + 4 + 2 * c] & 15;
        const bool dc_ok = !(ss == 0 && ah == 0) || (td <= 3 && dc_defined[td]);
        const bool ac_ok = se == 0 || (ta <= 3 && ac_defined[ta]);
        GRAFT_CHECK(dc_ok && ac_ok, "image", source, ": corrupt JPEG: scan at byte offset ", marker_at,
                    " uses Huffman tables DC ", td, " / AC ", ta, " that no DHT segment before it defines");
      }
      for (int q : frame_quant)
        GRAFT_CHECK(q <= 3 && quant_defined[q], "image", source, ": corrupt JPEG: scan at byte offset ", marker_at,
                    " needs quantization table ", q, ", which no DQT segment before it defines");
    }
    pos += len;
    if (marker == 0xDA) {  // SOS: skip the entropy-coded data up to the next real marker
      while (pos + 1 < size && !(data[pos] == 0xFF && data[pos + 1] != 0x00 &&
                                 !(data[pos + 1] >= 0xD0 && data[pos + 1] <= 0xD7)))
        ++pos;
      GRAFT_CHECK(pos + 1 < size, "image", source,
                  ": truncated JPEG: no end-of-image marker (FF D9) after the scan starting at byte offset ",
                  marker_at, " (file is ", size, " bytes)");
    }
  }
}

// Structure checks stb_image does not make (run before stb parses anything): stb reads zeros past
// the end of a buffer, so a truncated JPEG or BMP would decode "successfully" with a grey or black
// tail, and a malformed JPEG Huffman table would overflow Debian's stb (check_jpeg_structure).
inline void check_complete(const uint8_t* data, size_t size, const std::string& source) {
  if (has_prefix(data, size, {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A})) {
    // PNG: walk the chunks (u32 big-endian length, 4-byte type, data, u32 CRC) up to IEND.
    size_t at = 8;
    for (;;) {
      GRAFT_CHECK(size - at >= 8, "image", source, ": truncated PNG: chunk header at byte offset ", at,
                  " needs 8 bytes, ", size - at, " left (no IEND chunk)");
      const uint32_t len = (uint32_t(data[at]) << 24) | (uint32_t(data[at + 1]) << 16) |
                           (uint32_t(data[at + 2]) << 8) | uint32_t(data[at + 3]);
      const std::string type(reinterpret_cast<const char*>(data + at + 4), 4);
      GRAFT_CHECK(len <= size - at - 8 && size - at - 8 - len >= 4, "image", source, ": truncated PNG: chunk '",
                  type, "' at byte offset ", at, " declares ", len, " data bytes + 4 CRC bytes, ", size - at - 8,
                  " left");
      if (type == "IEND") break;
      at += 12 + size_t(len);
    }
  } else if (has_prefix(data, size, {0xFF, 0xD8})) {
    check_jpeg_structure(data, size, source);
  } else if (has_prefix(data, size, {'B', 'M'}) && size >= 6) {
    uint32_t declared = 0;  // bfSize, little-endian at offset 2 (0 in some writers: then unchecked)
    std::memcpy(&declared, data + 2, 4);
    GRAFT_CHECK(declared == 0 || declared <= size, "image", source, ": truncated BMP: the header at byte offset 2 ",
                "declares ", declared, " bytes, the file has ", size);
  }
}

// The stb entry points graft calls, taken from one translation unit's static copy of stb (see "Why
// stb is static"). Set during static initialization by the first translation unit that includes this
// header (in each unit the registration runs before any static initializer written after the
// include), never changed after.
struct StbApi {
  int (*info_from_memory)(const stbi_uc* buffer, int len, int* x, int* y, int* comp);
  stbi_uc* (*load_from_memory)(const stbi_uc* buffer, int len, int* x, int* y, int* comp, int req_comp);
  void (*image_free)(void* pixels);
  const char* (*failure_reason)();
  int (*write_png_to_func)(stbi_write_func* func, void* context, int w, int h, int comp, const void* data,
                           int stride_in_bytes);
};

inline std::atomic<const StbApi*> registered_stb{nullptr};  // constant-initialized: null until a TU registers

// The first registration wins; returns true so that it can initialize a TU-local flag.
inline bool register_stb(const StbApi* api) {
  const StbApi* none = nullptr;
  registered_stb.compare_exchange_strong(none, api);
  return true;
}

inline const StbApi& stb() {
  const StbApi* api = registered_stb.load(std::memory_order_acquire);
  GRAFT_CHECK(api != nullptr, "image", "stb_image is not registered yet: an image function was called from a "
              "static initializer that runs before those of every translation unit including graft/io/image.hpp");
  return *api;
}

}  // namespace detail_image

namespace {  // TU-local: this translation unit's copy of stb, offered to detail_image::stb()
const detail_image::StbApi kThisUnitsStb{&stbi_info_from_memory, &stbi_load_from_memory, &stbi_image_free,
                                         &stbi_failure_reason, &stbi_write_png_to_func};
[[maybe_unused]] const bool kThisUnitsStbRegistered = detail_image::register_stb(&kThisUnitsStb);
}  // namespace

// Decodes PNG / JPEG / BMP bytes to HWC uint8 with the channels `mode` asks for. `source` names the
// bytes in errors (a file path, or e.g. "<memory>"). max_pixels (at most kMaxImagePixels) lowers the
// pixel limit, e.g. for untrusted uploads: a 1 KB JPEG can declare 64 Mpx.
inline ImageU8 decode_image_u8(const uint8_t* data, size_t size, const std::string& source,
                               ImageMode mode = ImageMode::RGB, int64_t max_pixels = kMaxImagePixels) {
  const detail_image::StbApi& stb = detail_image::stb();
  max_pixels = std::min(max_pixels, kMaxImagePixels);
  GRAFT_CHECK(size > 0, "image", source, ": empty (0 bytes), not an image");
  GRAFT_CHECK(size <= size_t(std::numeric_limits<int>::max()), "image", source, ": ", size,
              " bytes is more than stb_image can read (", std::numeric_limits<int>::max(), ")");
  const int len = static_cast<int>(size);
  const bool known = detail_image::has_prefix(data, size, {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A}) ||
                     detail_image::has_prefix(data, size, {0xFF, 0xD8}) ||
                     detail_image::has_prefix(data, size, {'B', 'M'});
  GRAFT_CHECK(known, "image", source, ": not an image (the first bytes are no PNG, JPEG or BMP signature)");

  GRAFT_CHECK(int(mode) >= 0 && int(mode) <= 4, "image", source, ": invalid ImageMode ", int(mode),
              " (expected 0..4)");
  if (detail_image::has_prefix(data, size, {0x89, 'P', 'N', 'G'}) && size >= 24 &&
      std::memcmp(data + 12, "IHDR", 4) == 0) {
    // The IHDR dimensions, read here so that sizes past stb's own limit are reported as such.
    auto be32 = [&](size_t o) {
      return (uint32_t(data[o]) << 24) | (uint32_t(data[o + 1]) << 16) | (uint32_t(data[o + 2]) << 8) | data[o + 3];
    };
    const int64_t pw = be32(16), ph = be32(20);
    GRAFT_CHECK(pw <= kMaxImageSide && ph <= kMaxImageSide && pw * ph <= max_pixels, "image", source,
                ": absurd dimensions ", pw, " x ", ph, " in the PNG header at byte offset 16 (limit ",
                kMaxImageSide, " per side and ", max_pixels, " pixels)");
  }
  detail_image::check_complete(data, size, source);  // before stb parses anything
  int w = 0, h = 0, file_channels = 0;
  if (!stb.info_from_memory(data, len, &w, &h, &file_channels))
    GRAFT_CHECK(false, "image", source, ": cannot read the image header (stb_image: ", stb.failure_reason(), ")");
  GRAFT_CHECK(w > 0 && h > 0 && w <= kMaxImageSide && h <= kMaxImageSide && int64_t(w) * h <= max_pixels,
              "image", source, ": absurd dimensions ", w, " x ", h, " (limit ", kMaxImageSide,
              " per side and ", max_pixels, " pixels)");

  const int want = static_cast<int>(mode);
  int dw = 0, dh = 0, dc = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stb.load_from_memory(data, len, &dw, &dh, &dc, want),
                                                   stb.image_free);
  GRAFT_CHECK(pixels != nullptr, "image", source, ": decoding failed (stb_image: ", stb.failure_reason(), ")");
  GRAFT_ASSERT(dw == w && dh == h);
  ImageU8 img;
  img.height = dh;
  img.width = dw;
  img.channels = want == 0 ? dc : want;
  img.pixels.assign(pixels.get(), pixels.get() + img.height * img.width * img.channels);
  return img;
}

inline ImageU8 read_image_u8(const std::string& path, ImageMode mode = ImageMode::RGB) {
  const std::vector<uint8_t> bytes = detail_image::read_file_bytes(path);
  return decode_image_u8(bytes.data(), bytes.size(), path, mode);
}

// [C, H, W] float32 in [0, 1]; C = 3 for the default RGB mode.
inline Tensor decode_image(const uint8_t* data, size_t size, const std::string& source,
                           ImageMode mode = ImageMode::RGB) {
  return image_to_tensor(decode_image_u8(data, size, source, mode));
}

inline Tensor read_image(const std::string& path, ImageMode mode = ImageMode::RGB) {
  return image_to_tensor(read_image_u8(path, mode));
}

// PNG bytes of an HWC uint8 image with 1..4 channels.
inline std::vector<uint8_t> encode_png(const ImageU8& img) {
  GRAFT_CHECK(img.channels >= 1 && img.channels <= 4 && img.height > 0 && img.width > 0 &&
                  int64_t(img.pixels.size()) == img.height * img.width * img.channels,
              "encode_png", "expected 1..4 channels and height x width x channels bytes, got ", img.height, " x ",
              img.width, " x ", img.channels, " with ", img.pixels.size(), " bytes");
  GRAFT_CHECK(img.height <= kMaxImageSide && img.width <= kMaxImageSide, "encode_png", "image ", img.height,
              " x ", img.width, " exceeds ", kMaxImageSide, " per side");
  const detail_image::StbApi& stb = detail_image::stb();
  std::vector<uint8_t> out;
  auto append = [](void* ctx, void* bytes, int n) {
    auto* v = static_cast<std::vector<uint8_t>*>(ctx);
    v->insert(v->end(), static_cast<uint8_t*>(bytes), static_cast<uint8_t*>(bytes) + n);
  };
  const int ok = stb.write_png_to_func(append, &out, int(img.width), int(img.height), int(img.channels),
                                        img.pixels.data(), int(img.width * img.channels));
  GRAFT_CHECK(ok != 0, "encode_png", "stb_image_write failed for a ", img.height, " x ", img.width, " x ",
              img.channels, " image");
  return out;
}

inline void write_png(const std::string& path, const ImageU8& img) {
  const std::vector<uint8_t> bytes = encode_png(img);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  GRAFT_CHECK(out.good(), "write_png", path, ": cannot open for writing (", std::strerror(errno), ")");
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  out.close();
  GRAFT_CHECK(out.good(), "write_png", path, ": write failed");
}

// [C, H, W] floating tensor in [0, 1] (see tensor_to_image) -> PNG file.
inline void write_png(const std::string& path, const Tensor& chw) { write_png(path, tensor_to_image(chw)); }

}  // namespace graft::io
