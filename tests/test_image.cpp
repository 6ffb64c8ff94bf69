// tests/test_image.cpp - image decoding (stb_image vs PIL), the PNG writer, torchvision-style
// transforms against torchvision 0.14 goldens, and bad input. Data: tests/data/images/, written by
// tools/gen_image_goldens.py (which documents each case).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "graft/data/transforms.hpp"
#include "graft/io/image.hpp"
#include "golden.hpp"
#include "harness.hpp"

namespace {

using graft::Tensor;
namespace gio = graft::io;
namespace gtf = graft::transforms;

// JPEG decoders may legally differ (the standard allows IDCT error; PIL uses libjpeg-turbo's
// integer IDCT, stb_image its own IDCT and chroma upsampling): decoded bytes may differ by a few
// levels. Stated once; PNG decoding is compared exactly.
constexpr int kJpegDecoderTolLevels = 2;

const std::string kImageDir = std::string(GRAFT_TEST_DATA_DIR) + "/images/";

const graft_test::GoldenFile& image_goldens_file() {
  static const graft_test::GoldenFile file = graft_test::read_golden(kImageDir + "image_golden.bin");
  return file;
}

const graft_test::GoldenCase& image_golden_case(const std::string& name) {
  for (const auto& c : image_goldens_file().cases)
    if (c.name == name) return c;
  FAIL("no golden case " << name);
  throw;  // unreachable
}

std::vector<int64_t> image_golden_ints(const graft_test::GoldenCase& c, const std::string& key) {
  std::vector<int64_t> out;
  for (double v : c.at(key).to_vector()) out.push_back(int64_t(v));
  return out;
}

std::vector<uint8_t> image_test_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// The largest |a - b| in byte levels between an image and a golden tensor of byte / 255 values.
int image_max_level_diff(const gio::ImageU8& img, const Tensor& golden_chw) {
  REQUIRE(golden_chw.shape() == graft::Shape({img.channels, img.height, img.width}));
  const std::vector<double> g = golden_chw.to_vector();
  int worst = 0;
  for (int64_t c = 0; c < img.channels; ++c)
    for (int64_t y = 0; y < img.height; ++y)
      for (int64_t x = 0; x < img.width; ++x) {
        const int expected = int(std::lround(g[size_t((c * img.height + y) * img.width + x)] * 255.0));
        worst = std::max(worst, std::abs(int(img.at(y, x, c)) - expected));
      }
  return worst;
}

}  // namespace

TEST_CASE("image: PNG and BMP decoding match PIL exactly, JPEG within the decoder tolerance", "[image]") {
  for (const char* name : {"gradient.png", "gradient.bmp", "gray.png", "rgba.png", "photo.png", "photo.jpg"}) {
    INFO(name);
    const auto& gc = image_golden_case(std::string("decode_") + name);
    const gio::ImageU8 img = gio::read_image_u8(kImageDir + name);
    REQUIRE(img.channels == 3);
    const int diff = image_max_level_diff(img, gc.at("out"));
    if (!std::string(name).ends_with(".jpg"))
      CHECK(diff == 0);
    else
      CHECK(diff <= kJpegDecoderTolLevels);
    // The tensor API is byte / 255 in float32, as ToTensor.
    const Tensor t = gio::read_image(kImageDir + name);
    REQUIRE(t.dtype() == graft::DType::Float32);
    REQUIRE(t.shape() == graft::Shape({3, img.height, img.width}));
    CHECK(t.data<float>()[5] == float(img.pixels[size_t(5 * 3)]) / 255.0f);
  }
}

TEST_CASE("image: modes, decoding from memory, and the PNG writer round trip", "[image]") {
  const auto gray = gio::read_image_u8(kImageDir + "gray.png", gio::ImageMode::Unchanged);
  CHECK(gray.channels == 1);
  CHECK(gray.height == 21);
  CHECK(gray.width == 17);
  const auto rgba = gio::read_image_u8(kImageDir + "rgba.png", gio::ImageMode::Unchanged);
  CHECK(rgba.channels == 4);
  const auto rgb_as_rgba = gio::read_image_u8(kImageDir + "gradient.png", gio::ImageMode::RGBA);
  REQUIRE(rgb_as_rgba.channels == 4);
  CHECK(rgb_as_rgba.at(3, 5, 3) == 255);
  // Gray replicated to RGB.
  const auto gray_rgb = gio::read_image_u8(kImageDir + "gray.png");
  CHECK(gray_rgb.at(7, 4, 0) == gray.at(7, 4, 0));
  CHECK(gray_rgb.at(7, 4, 2) == gray.at(7, 4, 0));

  const std::vector<uint8_t> bytes = image_test_bytes(kImageDir + "photo.jpg");
  const auto from_memory = gio::decode_image_u8(bytes.data(), bytes.size(), "<memory>");
  CHECK(from_memory.pixels == gio::read_image_u8(kImageDir + "photo.jpg").pixels);

  // write -> read gives the same bytes, for raw images and for [C, H, W] tensors in [0, 1].
  const std::string tmp = (std::filesystem::temp_directory_path() / "graft_test_image_roundtrip.png").string();
  for (const char* name : {"photo.png", "rgba.png", "gray.png"}) {
    INFO(name);
    const auto img = gio::read_image_u8(kImageDir + name, gio::ImageMode::Unchanged);
    gio::write_png(tmp, img);
    const auto back = gio::read_image_u8(tmp, gio::ImageMode::Unchanged);
    CHECK(back.channels == img.channels);
    CHECK(back.pixels == img.pixels);
    gio::write_png(tmp, gio::image_to_tensor(img));
    CHECK(gio::read_image_u8(tmp, gio::ImageMode::Unchanged).pixels == img.pixels);
  }
  // Out-of-range and NaN values are clamped when writing.
  Tensor odd = graft::tensor({-0.5, 0.5, 2.0, std::nan("")}).view(graft::Shape{1, 2, 2});
  CHECK(gio::tensor_to_image(odd).pixels == std::vector<uint8_t>{0, 128, 255, 0});
  std::remove(tmp.c_str());
}

TEST_CASE("image: resize (antialiased bilinear) matches torchvision", "[image]") {
  int checked = 0;
  for (const auto& gc : image_goldens_file().cases) {
    if (!gc.name.starts_with("resize_")) continue;
    INFO(gc.name);
    const Tensor x = gio::read_image(kImageDir + gc.op);
    const std::vector<int64_t> size = image_golden_ints(gc, "attr_size");
    Tensor y;
    if (size.size() == 2)
      y = gtf::resize(x, size[0], size[1]);
    else if (gc.has("attr_max_size"))
      y = gtf::resize_shorter(x, size[0], image_golden_ints(gc, "attr_max_size")[0]);
    else
      y = gtf::resize(x, size[0]);
    GRAFT_REQUIRE_CLOSE(y, gc.at("out"), graft_test::kTolF32);
    // float64 computes the same resampling.
    GRAFT_REQUIRE_CLOSE(gtf::resize(x.to(graft::DType::Float64), graft::transforms::ImageSize{y.size(1), y.size(2)}),
                        gc.at("out"), graft_test::kTolF32);
    ++checked;
  }
  CHECK(checked == 7);

  // Same size: an unchanged copy.
  const Tensor photo = gio::read_image(kImageDir + "photo.png");
  const Tensor same = gtf::resize(photo, 48, 64);
  GRAFT_REQUIRE_CLOSE(same, photo, graft_test::kTolF32);
  CHECK(same.data_ptr() != photo.data_ptr());

  // The output-size rule of resize(size=[n], max_size).
  CHECK(gtf::resized_size(48, 64, 24) == gtf::ImageSize{24, 32});
  CHECK(gtf::resized_size(64, 48, 36) == gtf::ImageSize{48, 36});
  CHECK(gtf::resized_size(375, 500, 256) == gtf::ImageSize{256, 341});
  CHECK(gtf::resized_size(48, 64, 20, 25) == gtf::ImageSize{19, 25});
}

TEST_CASE("image: center_crop, normalize and the eval pipeline match torchvision", "[image]") {
  int crops = 0;
  for (const auto& gc : image_goldens_file().cases) {
    if (!gc.name.starts_with("center_crop_")) continue;
    INFO(gc.name);
    const std::vector<int64_t> size = image_golden_ints(gc, "attr_size");
    GRAFT_REQUIRE_CLOSE(gtf::center_crop(gio::read_image(kImageDir + gc.op), size[0], size[1]), gc.at("out"),
                        graft_test::kTolF32);
    ++crops;
  }
  CHECK(crops == 6);

  const auto& norm = image_golden_case("normalize_gradient.png");
  const Tensor gradient = gio::read_image(kImageDir + "gradient.png");
  GRAFT_REQUIRE_CLOSE(gtf::normalize(gradient, gtf::kImageNetMean, gtf::kImageNetStd), norm.at("out"),
                      graft_test::kTolF32);

  for (const char* name : {"photo.png", "rgba.png"}) {
    INFO(name);
    const auto& gc = image_golden_case(std::string("pipeline_") + name);
    const int64_t rs = image_golden_ints(gc, "attr_resize")[0], cs = image_golden_ints(gc, "attr_crop")[0];
    GRAFT_REQUIRE_CLOSE(gtf::imagenet_eval(gio::read_image(kImageDir + name), rs, cs), gc.at("out"),
                        graft_test::kTolF32);
  }
}

TEST_CASE("image: batched transforms equal the per-image ones", "[image]") {
  const Tensor a = gio::read_image(kImageDir + "photo.png");
  const Tensor b = gtf::normalize(a, {0.2, 0.3, 0.4}, {0.5, 0.5, 0.5});  // a second, different image
  const Tensor batch = gtf::stack_images({a, b});
  REQUIRE(batch.shape() == graft::Shape({2, 3, 48, 64}));
  const Tensor out = gtf::imagenet_eval(batch, 30, 27);
  REQUIRE(out.shape() == graft::Shape({2, 3, 27, 27}));
  GRAFT_REQUIRE_CLOSE(out.select(0, 0), gtf::imagenet_eval(a, 30, 27), graft_test::kTolF32);
  GRAFT_REQUIRE_CLOSE(out.select(0, 1), gtf::imagenet_eval(b, 30, 27), graft_test::kTolF32);
  // A padded crop of a batch.
  const Tensor padded = gtf::center_crop(batch, 50, 70);
  GRAFT_REQUIRE_CLOSE(padded.select(0, 1), gtf::center_crop(b, 50, 70), graft_test::kTolF32);
  CHECK(padded.select(0, 1).select(0, 0).select(0, 0).select(0, 0).item() == 0.0);  // the padding
}

TEST_CASE("image: bad files give graft::Error naming the file and the reason", "[image]") {
  using graft_test::require_error;
  const std::string bad = kImageDir + "bad/";
  require_error([&] { gio::read_image(bad + "not_an_image.txt"); }, {"image: ", "not_an_image.txt", "not an image"});
  require_error([&] { gio::read_image(bad + "empty.png"); }, {"empty.png", "empty (0 bytes)"});
  require_error([&] { gio::read_image(bad + "truncated.png"); },
                {"truncated.png", "truncated PNG", "chunk 'IDAT'", "byte offset 33"});
  require_error([&] { gio::read_image(bad + "corrupt_zlib.png"); },
                {"corrupt_zlib.png", "decoding failed (stb_image: "});
  require_error([&] { gio::read_image(bad + "truncated.jpg"); },
                {"truncated.jpg", "truncated JPEG", "end-of-image marker", "byte offset"});
  require_error([&] { gio::read_image(bad + "dht_overflow.jpg"); },
                {"dht_overflow.jpg", "Huffman table at byte offset", "declares 4080 codes (at most 256)"});
  require_error([&] { gio::read_image(bad + "fuzz_undefined_huffman.jpg"); },
                {"fuzz_undefined_huffman.jpg", "corrupt JPEG"});
  {
    const std::vector<uint8_t> photo = image_test_bytes(kImageDir + "photo.png");
    require_error([&] { gio::decode_image_u8(photo.data(), photo.size(), "<upload>", gio::ImageMode::RGB, 1000); },
                  {"<upload>", "absurd dimensions 64 x 48", "1000 pixels"});
  }
  require_error([&] { gio::read_image(bad + "huge_dims.png"); }, {"huge_dims.png", "absurd dimensions", "100000"});
  require_error([&] { gio::read_image(bad + "does_not_exist.png"); }, {"does_not_exist.png", "no such file"});
  require_error([&] { gio::read_image(kImageDir); }, {"not a regular file"});
  require_error([&] { gio::read_image(kImageDir + "gray.png", gio::ImageMode(7)); }, {"invalid ImageMode 7"});
  const uint8_t bmp_header[] = {'B', 'M', 0xFF, 0xFF, 0, 0, 0, 0, 0, 0};
  require_error([&] { gio::decode_image(bmp_header, sizeof(bmp_header), "<bmp>"); }, {"<bmp>"});
}

TEST_CASE("image: every truncation of a valid file throws, never crashes or decodes", "[image]") {
  for (const char* name : {"gradient.png", "gradient.bmp", "photo.png", "photo.jpg", "rgba.png"}) {
    INFO(name);
    const std::vector<uint8_t> bytes = image_test_bytes(kImageDir + name);
    REQUIRE(bytes.size() > 100);
    gio::decode_image_u8(bytes.data(), bytes.size(), name);  // the whole file decodes
    for (size_t n = 0; n < bytes.size(); ++n) {
      INFO("prefix of " << n << " bytes");
      CHECK_THROWS_AS(gio::decode_image_u8(bytes.data(), n, name), graft::Error);
    }
  }
}

TEST_CASE("image: corrupted bytes throw graft::Error or decode, never crash", "[image]") {
  for (const char* name : {"gradient.png", "photo.jpg"}) {
    std::vector<uint8_t> bytes = image_test_bytes(kImageDir + name);
    uint64_t state = 12345;
    for (int trial = 0; trial < 300; ++trial) {
      std::vector<uint8_t> mutated = bytes;
      for (int k = 0; k < 3; ++k) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        mutated[size_t((state >> 33) % mutated.size())] ^= uint8_t(1 + ((state >> 20) % 255));
      }
      try {
        const auto img = gio::decode_image_u8(mutated.data(), mutated.size(), name);
        CHECK(img.pixels.size() == size_t(img.height * img.width * img.channels));
      } catch (const graft::Error&) {
      }
    }
  }
}

TEST_CASE("image: transform errors name the problem", "[image]") {
  using graft_test::require_error;
  const Tensor x = gio::read_image(kImageDir + "gradient.png");
  require_error([&] { gtf::normalize(x, {0.5, 0.5}, {1.0, 1.0}); }, {"normalize", "3 channels", "mean has 2"});
  require_error([&] { gtf::normalize(x, {0.5, 0.5, 0.5}, {1.0, 0.0, 1.0}); }, {"normalize", "std[1] is 0"});
  require_error([&] { gtf::resize(x, 0, 5); }, {"resize", "positive"});
  require_error([&] { gtf::resize_shorter(x, 20, 20); }, {"resize", "max_size = 20", "strictly greater"});
  require_error([&] { gtf::resize(x.select(0, 0), 5); }, {"resize", "[..., C, H, W]"});
  require_error([&] { gtf::center_crop(x.to(graft::DType::Int64), 4); },
                {"center_crop", "float32 or float64", "int64"});
  require_error([&] { gtf::stack_images({x, gtf::center_crop(x, 4)}); }, {"stack_images", "image 1", "image 0"});
}
