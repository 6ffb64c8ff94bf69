// JSON parser, memory map, and safetensors read/write: round trips of every dtype, a file written
// by the reference implementation (Python `safetensors`), atomic writes, and one crafted bad file
// per kind of corruption (tests/data/safetensors/, written by tools/gen_safetensors_testdata.py),
// each rejected with a graft::Error naming the file and the offset or key.
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "golden.hpp"
#include "graft/io/json.hpp"
#include "graft/io/mmap.hpp"
#include "graft/io/safetensors.hpp"
#include "harness.hpp"

using namespace graft;
using namespace graft_test;

namespace {

namespace fs = std::filesystem;

const std::string kStDataDir = std::string(GRAFT_TEST_DATA_DIR) + "/safetensors/";

// A fresh scratch directory per test case, removed at the end.
struct StScratchDir {
  fs::path dir;
  StScratchDir() {
    static int counter = 0;
    dir = fs::temp_directory_path() /
          ("graft_st_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~StScratchDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

std::vector<uint8_t> st_read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void st_write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// The raw bytes of a tensor in row-major order.
std::vector<uint8_t> st_tensor_bytes(const Tensor& t) {
  Tensor c = t.contiguous();
  const size_t n = size_t(c.numel()) * dtype_size(c.dtype());
  std::vector<uint8_t> out(n);
  if (n) std::memcpy(out.data(), c.data_ptr(), n);
  return out;
}

void st_require_same(const Tensor& actual, const Tensor& expected, const std::string& name) {
  INFO("tensor " << name);
  REQUIRE(actual.dtype() == expected.dtype());
  REQUIRE(actual.shape() == expected.shape());
  REQUIRE(st_tensor_bytes(actual) == st_tensor_bytes(expected));
}

// One tensor of every dtype, random values, some non-contiguous.
std::vector<std::pair<std::string, Tensor>> st_every_dtype() {
  std::vector<std::pair<std::string, Tensor>> ts;
  ts.emplace_back("bf16", rand_in({3, 5}, -4, 4, 11, DType::Float32).to(DType::BFloat16));
  ts.emplace_back("f32", rand_in({2, 3, 4}, -1, 1, 12, DType::Float32));
  ts.emplace_back("f64_transposed", rand_in({4, 3}, -1, 1, 13, DType::Float64).t());  // non-contiguous
  ts.emplace_back("f16", rand_in({7}, -2, 2, 14, DType::Float32).to(DType::Float16));
  Tensor i32 = empty({5}, DType::Int32);
  for (int i = 0; i < 5; ++i) i32.data<int32_t>()[i] = (i - 2) * 100003;
  ts.emplace_back("i32", i32);
  Tensor i64 = empty({2, 2}, DType::Int64);
  for (int i = 0; i < 4; ++i) i64.data<int64_t>()[i] = (int64_t(1) << 40) * (i - 1) + 7;
  ts.emplace_back("i64", i64);
  Tensor b = empty({3}, DType::Bool);
  b.data<bool>()[0] = true;
  b.data<bool>()[1] = false;
  b.data<bool>()[2] = true;
  ts.emplace_back("mask", b);
  ts.emplace_back("scalar", scalar_tensor(2.5, DType::Float32));
  ts.emplace_back("empty", zeros({0, 4}, DType::Float32));
  return ts;
}

}  // namespace

// ---- JSON --------------------------------------------------------------------------------------

TEST_CASE("json: parses every kind of value, keeps key order", "[io][json]") {
  const io::JsonValue v = io::parse_json(
      R"( {"b": [1, -2, 3.5, 1e3, -0.25E-2, 9223372036854775807, 92233720368547758070],
            "a": {"t": true, "f": false, "n": null},
            "s": "q\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "empty": {}, "e2": []} )",
      "inline");
  REQUIRE(v.is_object());
  const auto& obj = v.as_object();
  REQUIRE(obj.size() == 5);
  CHECK(obj[0].first == "b");
  CHECK(obj[1].first == "a");
  const auto& arr = v.at("b").as_array();
  REQUIRE(arr.size() == 7);
  CHECK(arr[0].as_int() == 1);
  CHECK(arr[1].as_int() == -2);
  CHECK(!arr[2].is_int());
  CHECK(arr[2].as_double() == 3.5);
  CHECK(!arr[3].is_int());
  CHECK(arr[3].as_double() == 1000.0);
  CHECK(arr[4].as_double() == -0.0025);
  CHECK(arr[5].as_int() == INT64_MAX);
  CHECK(!arr[6].is_int());  // beyond int64: a double only
  CHECK(arr[6].as_double() == 92233720368547758070.0);
  CHECK(v.at("a").at("t").as_bool());
  CHECK(!v.at("a").at("f").as_bool());
  CHECK(v.at("a").at("n").is_null());
  CHECK(v.at("s").as_string() == "q\"\\/\b\f\n\r\t\xC3\xA9\xF0\x9F\x98\x80");
  CHECK(v.at("empty").as_object().empty());
  CHECK(v.at("e2").as_array().empty());
  CHECK(v.find("missing") == nullptr);
  require_error([&] { (void)v.at("missing"); }, {"missing"});
  require_error([&] { (void)v.at("s").as_int(); }, {"expected number", "got string"});
  require_error([&] { (void)arr[2].as_int(); }, {"expected an integer"});
}

TEST_CASE("json: rejects malformed input naming the source and byte offset", "[io][json]") {
  struct Bad {
    const char* text;
    size_t offset;
    const char* what;
  };
  const Bad cases[] = {
      {"[1, 2,]", 6, "expected a value"},
      {"{\"a\": 1,}", 8, "expected a string key"},
      {"012", 0, "leading zero"},
      {"[1.]", 3, "digit after '.'"},
      {"1e", 2, "exponent"},
      {"-", 1, "expected a digit"},
      {"\"\\ud800\"", 1, "high surrogate"},
      {"\"\\udc00\"", 1, "lone low surrogate"},
      {"\"\\ud800\\u0041\"", 7, "low surrogate"},
      {"\"\\x\"", 1, "invalid escape"},
      {"\"\\u12G4\"", 5, "hex digit"},
      {"\"a\nb\"", 2, "raw control character"},
      {"\"abc", 0, "unterminated string"},
      {"\"\xC3\x28\"", 2, "UTF-8"},
      {"\"\xE0\x80\x80\"", 2, "UTF-8"},   // overlong
      {"\"\xED\xA0\x80\"", 2, "UTF-8"},   // encoded surrogate
      {"\"\xFF\"", 1, "UTF-8"},
      {"{\"k\": 1, \"k\": 2}", 9, "duplicate key \"k\""},
      {"{} x", 3, "trailing"},
      {"nul", 0, "unexpected character"},
      {"NaN", 0, "unexpected character"},
      {"", 0, "end of input"},
      {"[1 2]", 3, "expected ',' or ']'"},
      {"{\"a\" 1}", 5, "expected ':'"},
      {"// c\n{}", 0, "unexpected character"},
  };
  for (const Bad& c : cases) {
    INFO("input: " << c.text);
    require_error([&] { io::parse_json(c.text, "src.json", 100); },
                  {"json: src.json: byte " + std::to_string(100 + c.offset) + ":", c.what});
  }
}

TEST_CASE("json: depth limit bounds nesting", "[io][json]") {
  const std::string ok = std::string(8, '[') + std::string(8, ']');
  CHECK_NOTHROW(io::parse_json(ok, "d", 0, 8));
  const std::string deep = std::string(9, '[') + std::string(9, ']');
  require_error([&] { io::parse_json(deep, "d", 0, 8); }, {"byte 8", "nesting deeper than the limit of 8"});
  const std::string huge(100000, '[');  // no stack overflow with the default limit
  require_error([&] { io::parse_json(huge, "d"); }, {"byte 64", "nesting"});
}

TEST_CASE("json: value-count limit bounds memory", "[io][json]") {
  CHECK(io::parse_json("[1,2,3,4]", "v", 0, 64, 5).as_array().size() == 4);
  require_error([&] { io::parse_json("[1,2,3,4,5]", "v", 0, 64, 5); }, {"byte 9", "more than the limit of 5 values"});
}

TEST_CASE("json: json_quote output parses back to the same string", "[io][json]") {
  const std::string s = std::string("a\"b\\c\n\t\x01\x1f/") + "\xC3\xA9";
  CHECK(io::parse_json(io::json_quote(s)).as_string() == s);
  CHECK(io::json_quote("x\x01") == "\"x\\u0001\"");
}

// ---- memory map --------------------------------------------------------------------------------

TEST_CASE("mmap: maps a file, an empty file, and names the file on failure", "[io][mmap]") {
  StScratchDir tmp;
  st_write_bytes(tmp.file("a.bin"), {1, 2, 3});
  auto m = io::MappedFile::open(tmp.file("a.bin"));
  REQUIRE(m->size() == 3);
  CHECK(m->data()[2] == 3);
  st_write_bytes(tmp.file("empty.bin"), {});
  auto e = io::MappedFile::open(tmp.file("empty.bin"));
  CHECK(e->size() == 0);
  require_error([&] { io::MappedFile::open(tmp.file("nope.bin")); }, {"nope.bin", "cannot open"});
  require_error([&] { io::MappedFile::open(tmp.dir.string()); }, {tmp.dir.string(), "not a regular file"});
}

// ---- safetensors: round trips --------------------------------------------------------------------

TEST_CASE("safetensors: round trip of every dtype, with metadata", "[io][safetensors]") {
  StScratchDir tmp;
  const std::string path = tmp.file("all.safetensors");
  const auto ts = st_every_dtype();
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "quote \" and \\ and \xC3\xA9"}};
  io::save_safetensors(path, ts, meta);

  // The header length is a multiple of 8, so the data section is 8-byte aligned.
  const auto bytes = st_read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);

  io::SafetensorsFile f(path);
  CHECK(f.metadata() == meta);
  CHECK(f.size() == ts.size());
  CHECK(f.data_offset() == 8 + n);
  for (const auto& [name, t] : ts) {
    REQUIRE(f.contains(name));
    const io::SafetensorsEntry& e = f.entry(name);
    CHECK(e.begin % dtype_size(e.dtype) == 0);  // largest dtypes first keeps every range aligned
    const Tensor got = f.tensor(name);
    CHECK(got.is_contiguous());
    CHECK(got.device() == kCPU);
    st_require_same(got, t, name);
  }
  // Names in header order: written largest dtype first, stable.
  const std::vector<std::string> expect_order = {"f64_transposed", "i64",   "f32",  "i32", "scalar",
                                                 "empty",          "bf16",  "f16",  "mask"};
  CHECK(f.names() == expect_order);

  const auto all = io::load_safetensors(path);
  REQUIRE(all.size() == ts.size());
  for (const auto& [name, t] : ts) st_require_same(all.at(name), t, name);
}

TEST_CASE("safetensors: tensors borrow the map, outlive the file object, copy-on-write", "[io][safetensors]") {
  StScratchDir tmp;
  const std::string path = tmp.file("w.safetensors");
  const Tensor a = rand_in({4, 4}, -1, 1, 21, DType::Float32);
  const Tensor b = rand_in({3}, -1, 1, 22, DType::Float32);
  io::save_safetensors(path, {{"a", a}, {"b", b}});
  Tensor ta, tb;
  {
    io::SafetensorsFile f(path);
    ta = f.tensor("a");
    tb = f.tensor("b");
    // Both views point into the same mapping, at the distance their offsets say: no copy.
    const auto* pa = static_cast<const uint8_t*>(ta.data_ptr());
    const auto* pb = static_cast<const uint8_t*>(tb.data_ptr());
    CHECK(pb - pa == int64_t(f.entry("b").begin) - int64_t(f.entry("a").begin));
    CHECK(ta.storage()->nbytes() == 64);
  }  // the SafetensorsFile is gone; the tensors keep the map alive
  st_require_same(ta, a, "a");
  st_require_same(tb, b, "b");
  // An in-place write changes this process's copy only: the file is untouched.
  ta.fill_(3.0);
  CHECK(ta.data<float>()[5] == 3.0f);
  io::SafetensorsFile again(path);
  st_require_same(again.tensor("a"), a, "a after writing through a borrowed tensor");
}

TEST_CASE("safetensors: an empty file of tensors round-trips", "[io][safetensors]") {
  StScratchDir tmp;
  const std::string path = tmp.file("none.safetensors");
  io::save_safetensors(path, {});
  io::SafetensorsFile f(path);
  CHECK(f.size() == 0);
  CHECK(f.metadata().empty());
  require_error([&] { f.tensor("x"); }, {path, "no tensor named \"x\"", "0 tensor(s)"});
}

TEST_CASE("safetensors: reads a file written by the reference implementation", "[io][safetensors]") {
  const std::string path = kStDataDir + "reference.safetensors";
  io::SafetensorsFile f(path);
  CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "pt"}});
  const GoldenFile golden = read_golden(kStDataDir + "reference_expected.bin");
  REQUIRE(golden.cases.size() == 1);
  const GoldenCase& c = golden.cases[0];
  REQUIRE(f.size() == c.tensors.size());
  for (const auto& [name, expected] : c.tensors) {
    REQUIRE(f.contains(name));
    st_require_same(f.tensor(name), expected, name);
  }
  // Values, not only bytes: the float32 tensor agrees with the golden within the float32 tolerance
  // (it is bit-identical, so this also checks the comparison itself).
  GRAFT_REQUIRE_CLOSE(f.tensor("f32").to(DType::Float64), c.find("f32")->to(DType::Float64), kTolF32);
  CHECK(f.tensor("empty").shape() == Shape({0, 4}));
  CHECK(f.tensor("scalar").dim() == 0);
  CHECK(f.tensor("scalar").item() == 3.25);
}

TEST_CASE("safetensors: a missing key names the key and lists available ones", "[io][safetensors]") {
  const std::string path = kStDataDir + "reference.safetensors";
  io::SafetensorsFile f(path);
  require_error([&] { f.tensor("fc.weight"); },
                {"safetensors: ", path, "no tensor named \"fc.weight\"", "10 tensor(s)", "\"bf16\"", "..."});
  require_error([&] { f.entry("nope"); }, {"\"nope\""});
}

// ---- safetensors: bad files --------------------------------------------------------------------

TEST_CASE("safetensors: each crafted bad file is rejected naming the file and the offset or key",
          "[io][safetensors]") {
  struct Bad {
    const char* file;
    std::vector<std::string> parts;
  };
  const std::vector<Bad> cases = {
      {"bad_truncated_length", {"file is 5 bytes", "offset 0"}},
      {"bad_header_past_end", {"header length 1000", "offset 0", "past the end", "10 bytes"}},
      {"bad_header_too_large", {"header length 200000000", "offset 0", "exceeds the limit"}},
      {"bad_invalid_json", {"byte 40", "expected a string key"}},
      {"bad_unknown_dtype", {"tensor \"a\"", "unknown dtype \"Q4\"", "byte 22"}},
      {"bad_unsupported_dtype", {"tensor \"a\"", "dtype \"I8\" is not supported"}},
      {"bad_offsets_out_of_range", {"tensor \"a\"", "[0, 64]", "run past the data section", "8 bytes"}},
      {"bad_overlap", {"tensor \"b\"", "[4, 12)", "overlap tensor \"a\"", "[0, 8)"}},
      {"bad_gap", {"[4, 8)", "belong to no tensor", "tensor \"b\""}},
      {"bad_trailing_bytes", {"[4, 8)", "after the last tensor"}},
      {"bad_shape_size_mismatch", {"tensor \"a\"", "shape [3]", "needs 12 bytes", "hold 8"}},
      {"bad_absurd_rank", {"tensor \"a\"", "rank 9", "maximum of 8"}},
      {"bad_negative_dim", {"tensor \"a\"", "negative (-2)", "byte"}},
      {"bad_shape_overflow", {"tensor \"a\"", "overflows"}},
      {"bad_metadata_not_string", {"\"__metadata__\" key \"epoch\"", "expected a string"}},
      {"bad_deep_nesting", {"byte 28", "nesting deeper than the limit of 16"}},
  };
  for (const Bad& c : cases) {
    const std::string path = kStDataDir + c.file + ".safetensors";
    INFO("file " << path);
    std::vector<std::string> parts = c.parts;
    parts.push_back(path);
    require_error([&] { io::SafetensorsFile f(path); }, parts);
    // The same bytes from memory give the same message, with the source name instead.
    const auto bytes = st_read_bytes(path);
    std::vector<std::string> mem_parts = c.parts;
    mem_parts.push_back("mem:" + std::string(c.file));
    require_error([&] { io::SafetensorsFile::from_memory(bytes.data(), bytes.size(), "mem:" + std::string(c.file)); },
                  mem_parts);
  }
}

TEST_CASE("safetensors: a BOOL byte other than 0 or 1 is rejected when read", "[io][safetensors]") {
  const std::string path = kStDataDir + "bad_bool_value.safetensors";
  io::SafetensorsFile f(path);
  require_error([&] { f.tensor("m"); }, {path, "tensor \"m\"", "element 1", "file offset", "byte 2"});
}

TEST_CASE("safetensors: every truncation of a valid file is an error, never a crash", "[io][safetensors]") {
  const auto bytes = st_read_bytes(kStDataDir + "reference.safetensors");
  REQUIRE(bytes.size() > 100);
  for (size_t n = 0; n < bytes.size(); ++n) {
    INFO("prefix of " << n << " bytes");
    CHECK_THROWS_AS(io::SafetensorsFile::from_memory(bytes.data(), n, "prefix"), Error);
  }
  CHECK_NOTHROW(io::SafetensorsFile::from_memory(bytes.data(), bytes.size(), "whole"));
}

TEST_CASE("safetensors: misaligned ranges from other writers are copied, values intact", "[io][safetensors]") {
  // Header padded to 9 bytes: the data section starts at file offset 17, so the F32 tensor is
  // misaligned in the map and must be copied, not borrowed.
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::vector<uint8_t> b(8);
  const std::string padded = header + std::string((9 - header.size() % 8) % 8 + 8, ' ');
  const uint64_t n = padded.size();
  std::memcpy(b.data(), &n, 8);
  b.insert(b.end(), padded.begin(), padded.end());
  const float vals[2] = {1.25f, -7.5f};
  const auto* vb = reinterpret_cast<const uint8_t*>(vals);
  b.insert(b.end(), vb, vb + 8);
  auto f = io::SafetensorsFile::from_memory(b.data(), b.size(), "misaligned");
  const Tensor t = f.tensor("a");
  REQUIRE(reinterpret_cast<uintptr_t>(t.data_ptr()) % 4 == 0);
  CHECK(t.data<float>()[0] == 1.25f);
  CHECK(t.data<float>()[1] == -7.5f);
}

// ---- safetensors: the writer ---------------------------------------------------------------------

TEST_CASE("safetensors: a failed write leaves an existing file intact and no temporary", "[io][safetensors]") {
  StScratchDir tmp;
  const std::string path = tmp.file("model.safetensors");
  const Tensor a = rand_in({2, 2}, -1, 1, 31, DType::Float32);
  io::save_safetensors(path, {{"a", a}}, {{"v", "1"}});
  const auto before = st_read_bytes(path);

  SECTION("a tensor that throws mid-write (a BOOL byte that is not 0 or 1)") {
    Tensor bad = empty({4}, DType::Bool);
    std::memset(bad.data_ptr(), 0, 4);
    reinterpret_cast<uint8_t*>(bad.data_ptr())[2] = 2;
    // "big" is written first (larger dtype), so the failure happens after data reached the file.
    const Tensor big = rand_in({64}, -1, 1, 32, DType::Float64);
    require_error([&] { io::save_safetensors(path, {{"big", big}, {"bad", bad}}); },
                  {"save_safetensors", path, "tensor \"bad\"", "element 2", "byte 2"});
  }
  SECTION("invalid names are refused before anything is written") {
    require_error([&] { io::save_safetensors(path, {{"x", a}, {"x", a}}); }, {path, "duplicate tensor name \"x\""});
    require_error([&] { io::save_safetensors(path, {{"__metadata__", a}}); }, {path, "reserves"});
    require_error([&] { io::save_safetensors(path, {{"", a}}); }, {path, "empty name"});
    require_error([&] { io::save_safetensors(path, {{"u", Tensor()}}); }, {path, "\"u\" is undefined"});
    require_error([&] { io::save_safetensors(path, {{"bad\xFFname", a}}); }, {path, "not valid UTF-8", "byte"});
    require_error([&] { io::save_safetensors(path, {{"ok", a}}, {{"k", "\xC3"}}); }, {path, "not valid UTF-8"});
  }
  CHECK(st_read_bytes(path) == before);
  io::SafetensorsFile f(path);
  st_require_same(f.tensor("a"), a, "a");
  CHECK(f.metadata().at("v") == "1");
  // Only the original file is in the directory: the temporary was removed.
  int files = 0;
  for (const auto& entry : fs::directory_iterator(tmp.dir)) {
    (void)entry;
    ++files;
  }
  CHECK(files == 1);
}

TEST_CASE("safetensors: unwritable destinations fail naming the path and leave nothing behind",
          "[io][safetensors]") {
  StScratchDir tmp;
  const Tensor a = rand_in({3}, -1, 1, 41, DType::Float32);
  const std::string missing_dir = tmp.file("no_such_dir") + "/m.safetensors";
  require_error([&] { io::save_safetensors(missing_dir, {{"a", a}}); }, {missing_dir, "cannot create"});

  // The destination is an existing directory: the rename fails after the data was written.
  fs::create_directories(tmp.dir / "occupied");
  fs::create_directories(tmp.dir / "occupied" / "child");  // a non-empty directory cannot be replaced
  const std::string dir_path = tmp.file("occupied");
  require_error([&] { io::save_safetensors(dir_path, {{"a", a}}); }, {dir_path, "cannot rename"});
  CHECK(fs::is_directory(dir_path));
  int files = 0;
  for (const auto& entry : fs::directory_iterator(tmp.dir)) {
    (void)entry;
    ++files;
  }
  CHECK(files == 1);  // only "occupied": no temporary left
}
