// tests/test_io_torch.cpp - PyTorch zip checkpoints: zip reader, pickle VM, load_torch_checkpoint.
//
// Good checkpoints and the expected tensors come from tools/gen_torch_testdata.py (torch 1.13); the
// crafted bad files it writes stay here as regression tests. Pickle and zip corner cases are built
// as byte buffers in this file.
#include "harness.hpp"
#include "golden.hpp"

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "graft/io/torch_checkpoint.hpp"

namespace {
using namespace graft_test;
using graft::io::load_torch_checkpoint;
namespace torchio_pk = graft::io::pickle;

std::string torchio_path(const std::string& name) { return std::string(GRAFT_TEST_DATA_DIR) + "/torch/" + name; }

std::vector<uint8_t> torchio_read_bytes(const std::string& name) {
  std::ifstream f(torchio_path(name), std::ios::binary);
  REQUIRE(f.good());
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// A byte string from a literal that may hold NULs (the literal's own terminator is dropped).
template <size_t N>
std::string torchio_b(const char (&s)[N]) {
  return std::string(s, N - 1);
}

torchio_pk::Pickle torchio_unpickle(const std::string& bytes) {
  return torchio_pk::unpickle(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), "buf");
}

const graft::Tensor& torchio_find(const graft::io::NamedTensors& named, const std::string& name) {
  for (const auto& [n, t] : named)
    if (n == name) return t;
  FAIL("no tensor named " << name);
  return named.front().second;
}

// Every case of expected.bin: same names in the same order, same dtype, shape and exact values.
void torchio_check_case(const GoldenCase& c) {
  INFO("checkpoint " << c.name);
  const auto named = load_torch_checkpoint(torchio_path(c.name));
  REQUIRE(named.size() == c.tensors.size());
  for (size_t i = 0; i < named.size(); ++i) {
    const auto& [name, t] = named[i];
    const auto& [ename, e] = c.tensors[i];
    INFO("tensor " << i << " '" << ename << "'");
    CHECK(name == ename);
    CHECK(t.name() == ename);
    REQUIRE(t.dtype() == e.dtype());
    REQUIRE(t.shape() == e.shape());
    CHECK(t.to_vector() == e.to_vector());  // stored bits, no arithmetic: exact
  }
}

// The central-directory record of `name` in an archive's bytes (offset of "PK\1\2").
size_t torchio_central_record(const std::vector<uint8_t>& b, const std::string& name) {
  for (size_t p = 0; p + 46 <= b.size(); ++p) {
    if (b[p] == 'P' && b[p + 1] == 'K' && b[p + 2] == 1 && b[p + 3] == 2) {
      uint16_t n;
      std::memcpy(&n, &b[p + 28], 2);
      if (p + 46 + n <= b.size() && std::string(b.begin() + std::ptrdiff_t(p + 46), b.begin() + std::ptrdiff_t(p + 46 + n)) == name)
        return p;
    }
  }
  FAIL("no central record for " << name);
  return 0;
}

}  // namespace

TEST_CASE("torch checkpoints: every tensor matches what torch saved", "[io][torch]") {
  const GoldenFile g = read_golden(torchio_path("expected.bin"));
  REQUIRE(g.cases.size() == 7);  // five zip checkpoints, two in the legacy format
  for (const auto& c : g.cases) torchio_check_case(c);
}

TEST_CASE("torch checkpoints: the legacy (pre-1.6) format keeps views and shared storages", "[io][torch]") {
  const auto named = load_torch_checkpoint(torchio_path("legacy_views.pth"));
  const auto& base = torchio_find(named, "base");
  const auto& t = torchio_find(named, "t");
  CHECK(t.storage() == base.storage());
  CHECK(t.strides() == graft::Shape{1, 4});
  CHECK(torchio_find(named, "col").offset() == 2);
  // Truncations: inside a pickle, inside a storage's size, inside a storage's data.
  const std::vector<uint8_t> full = torchio_read_bytes("legacy_views.pth");
  auto cut = [&](size_t n) {
    return [&full, n] {
      const std::vector<uint8_t> b(full.begin(), full.begin() + std::ptrdiff_t(n));
      load_torch_checkpoint(std::span<const uint8_t>(b), "cut.pth");
    };
  };
  require_error(cut(40), {"cut.pth", "sys_info pickle at byte 21", "past the end"});
  require_error(cut(full.size() - 4), {"cut.pth", "legacy format, byte offset", "storage", "bytes are left"});
  std::vector<uint8_t> magic = full;
  magic[5] ^= 0xff;
  require_error([&] { load_torch_checkpoint(std::span<const uint8_t>(magic), "magic.pth"); },
                {"magic.pth", "bad magic number"});
}

TEST_CASE("torch checkpoints: dtypes of every supported storage", "[io][torch]") {
  const auto named = load_torch_checkpoint(torchio_path("dtypes.pth"));
  CHECK(torchio_find(named, "f64").dtype() == graft::DType::Float64);
  CHECK(torchio_find(named, "f16").dtype() == graft::DType::Float16);
  CHECK(torchio_find(named, "bf16").dtype() == graft::DType::BFloat16);
  CHECK(torchio_find(named, "i32").dtype() == graft::DType::Int32);
  CHECK(torchio_find(named, "flag").dtype() == graft::DType::Bool);
  const auto& i64 = torchio_find(named, "i64");
  REQUIRE(i64.dtype() == graft::DType::Int64);
  CHECK(i64.data<int64_t>()[0] == -(int64_t(1) << 40));
  CHECK(i64.data<int64_t>()[2] == (int64_t(1) << 50));
  const auto& s = torchio_find(named, "scalar");
  CHECK(s.dim() == 0);
  CHECK(s.item<float>() == 2.5f);
}

TEST_CASE("torch checkpoints: views keep strides, offsets and shared storage", "[io][torch]") {
  const auto named = load_torch_checkpoint(torchio_path("views.pth"));
  const auto& base = torchio_find(named, "base");
  const auto& t = torchio_find(named, "t");
  const auto& row = torchio_find(named, "row");
  const auto& col = torchio_find(named, "col");
  const auto& alone = torchio_find(named, "alone_t");
  CHECK(t.storage() == base.storage());
  CHECK(row.storage() == base.storage());
  CHECK(col.storage() == base.storage());
  CHECK(t.shape() == graft::Shape{4, 3});
  CHECK(t.strides() == graft::Shape{1, 4});
  CHECK_FALSE(t.is_contiguous());
  CHECK(row.offset() == 4);
  CHECK(col.offset() == 2);
  CHECK(col.strides() == graft::Shape{4});
  CHECK(alone.shape() == graft::Shape{5, 2});
  CHECK(alone.strides() == graft::Shape{1, 5});
  CHECK(alone.storage()->nbytes() == 10 * sizeof(float));
  // A write through one view shows through the others, as in PyTorch.
  base.data<float>()[1 * 4 + 2] = 42.0f;
  CHECK(row.data<float>()[2] == 42.0f);
  CHECK(t.to_vector()[2 * 3 + 1] == 42.0);
  // Tensors borrow the file's copy-on-write memory map: the write never reaches the file.
  const auto again = load_torch_checkpoint(torchio_path("views.pth"));
  CHECK(torchio_find(again, "base").data<float>()[1 * 4 + 2] != 42.0f);
}

TEST_CASE("torch checkpoints: whole pickled module gives state_dict names and order", "[io][torch]") {
  const auto from_module = load_torch_checkpoint(torchio_path("module.pth"));
  const auto from_sd = load_torch_checkpoint(torchio_path("state_dict.pth"));
  REQUIRE(from_module.size() == from_sd.size());
  for (size_t i = 0; i < from_sd.size(); ++i) CHECK(from_module[i].first == from_sd[i].first);
  CHECK(from_module[0].first == "0.weight");
  CHECK(from_module.back().first == "4.bias");
  CHECK(torchio_find(from_module, "1.num_batches_tracked").dtype() == graft::DType::Int64);
  CHECK(torchio_find(from_module, "1.num_batches_tracked").item<int64_t>() == 1);
}

TEST_CASE("torch checkpoints: crafted bad files name the file, entry or offset", "[io][torch]") {
  require_error([] { load_torch_checkpoint(torchio_path("bad_truncated.pth")); },
                {"bad_truncated.pth", "end of central directory", "not found"});
  require_error([] { load_torch_checkpoint(torchio_path("bad_cd_offset.pth")); },
                {"bad_cd_offset.pth", "central directory", "byte offset 2147483632", "runs past"});
  require_error([] { load_torch_checkpoint(torchio_path("bad_entry_size.pth")); },
                {"bad_entry_size.pth", "entry 'state_dict/data/0'", "runs past the central directory", "byte offset"});
  require_error([] { load_torch_checkpoint(torchio_path("bad_opcode.pth")); },
                {"bad_opcode.pth", "archive/data.pkl", "unsupported opcode 0x69 ('i')", "byte offset 2"});
  require_error([] { load_torch_checkpoint(torchio_path("bad_memo.pth")); },
                {"bad_memo.pth", "memo index 7 out of range", "byte offset 2"});
  require_error([] { load_torch_checkpoint(torchio_path("bad_underflow.pth")); },
                {"bad_underflow.pth", "stack underflow", "opcode 0x52", "byte offset 3"});
  require_error([] { load_torch_checkpoint(torchio_path("bad_storage_small.pth")); },
                {"bad_storage_small.pth", "tensor 'w'", "sizes [9]", "storage '0' of 4 elements", "too small"});
  require_error([] { load_torch_checkpoint(torchio_path("missing.pth")); }, {"missing.pth", "cannot open"});
}

TEST_CASE("torch checkpoints: patched archives", "[io][torch]") {
  const auto good = torchio_read_bytes("state_dict.pth");
  const size_t rec = torchio_central_record(good, "state_dict/data/0");
  auto load = [](const std::vector<uint8_t>& b) { load_torch_checkpoint(std::span<const uint8_t>(b), "patched.pth"); };

  SECTION("DEFLATE entry") {
    auto b = good;
    b[rec + 10] = 8;  // method
    require_error([&] { load(b); }, {"patched.pth", "'state_dict/data/0'", "compressed entries not supported"});
  }
  SECTION("CRC mismatch: a flipped data byte is never a silent wrong tensor") {
    auto b = good;
    graft::io::ZipArchive zip(std::span<const uint8_t>(good), "x");
    b[zip.find("state_dict/data/0")->data_offset + 5] ^= 0x40;
    require_error([&] { load(b); }, {"patched.pth", "'state_dict/data/0'", "CRC-32 mismatch"});
  }
  SECTION("overlapping entries") {
    auto b = good;
    const size_t rec1 = torchio_central_record(good, "state_dict/data/1");
    std::memcpy(&b[rec1 + 42], &good[rec + 42], 4);  // data/1's local header := data/0's
    require_error([&] { load(b); }, {"patched.pth", "overlaps"});
  }
  SECTION("local header offset out of range") {
    auto b = good;
    const uint32_t far = 0x7ffffff0;
    std::memcpy(&b[rec + 42], &far, 4);
    require_error([&] { load(b); }, {"patched.pth", "entry 'state_dict/data/0'", "local header offset out of range",
                                     "byte offset 2147483632"});
  }
  SECTION("bool storage byte that is not 0 or 1 (with a matching CRC)") {
    auto b = torchio_read_bytes("dtypes.pth");
    const size_t r = torchio_central_record(b, "dtypes/data/5");  // the BoolStorage of "flag"
    graft::io::ZipArchive zip(std::span<const uint8_t>(b), "x");
    const graft::io::ZipEntry e = *zip.find("dtypes/data/5");
    b[e.data_offset + 1] = 2;
    const uint32_t crc = graft::io::detail_zip::crc32(std::span<const uint8_t>(b).subspan(e.data_offset, e.compressed_size));
    std::memcpy(&b[r + 16], &crc, 4);
    require_error([&] { load(b); }, {"patched.pth", "tensor 'flag'", "'dtypes/data/5' byte 1", "not a bool"});
  }
  SECTION("legacy format") {
    const std::vector<uint8_t> legacy = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc};
    require_error([&] { load(legacy); }, {"patched.pth", "legacy"});
  }
  SECTION("not a checkpoint: no data.pkl") {
    auto b = good;
    const size_t r = torchio_central_record(good, "state_dict/data.pkl");
    b[r + 46 + 11] = 'x';  // "state_dict/xata.pkl" (the CRC covers data, not names)
    require_error([&] { load(b); }, {"patched.pth", "data.pkl"});
  }
}

TEST_CASE("zip reader: entries and spans", "[io][torch]") {
  const auto good = torchio_read_bytes("state_dict.pth");
  graft::io::ZipArchive zip(std::span<const uint8_t>(good), "state_dict.pth");
  REQUIRE(zip.entries().size() == 11);
  CHECK(zip.entries()[0].name == "state_dict/data.pkl");
  const auto w = zip.read("state_dict/data/0");
  CHECK(w.size() == 2 * 3 * 3 * 3 * sizeof(float));
  const auto v = zip.read("state_dict/version");
  CHECK(std::string(v.begin(), v.end()) == "3\n");
  require_error([&] { zip.read("nope"); }, {"state_dict.pth", "no entry named 'nope'"});
  const auto opened = graft::io::ZipArchive::open(torchio_path("state_dict.pth"));
  CHECK(opened.entries().size() == 11);
  // Every truncation of a real archive either parses or throws graft::Error: never a crash.
  for (size_t n = 0; n < good.size(); n += 7) {
    try {
      graft::io::ZipArchive z(std::span<const uint8_t>(good.data(), n), "cut");
    } catch (const graft::Error&) {
    }
  }
}

TEST_CASE("pickle VM: values, memo, never executes", "[io][torch]") {
  // ( -32768, {'a': [1, -2, 3.5, None, True], 'b': (b'xy', 'long'), 'c': os.system('ls'), 'e': 'ls'} )
  const torchio_pk::Pickle p = torchio_unpickle(torchio_b(
      "\x80\x02"
      "\x8a\x02\x00\x80"                                                   // LONG1 -32768
      "}q\x00("                                                            // EMPTY_DICT BINPUT MARK
      "X\x01\x00\x00\x00" "a](K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88" "e"
      "X\x01\x00\x00\x00" "bC\x02xy\x8c\x04long\x86"
      "X\x01\x00\x00\x00" "ccos\nsystem\nX\x02\x00\x00\x00lsq\x01\x85R"
      "X\x01\x00\x00\x00" "eh\x01"
      "u\x86."));
  const torchio_pk::Value* root = p.root();
  REQUIRE(root->kind == torchio_pk::Kind::Tuple);
  REQUIRE(root->items.size() == 2);
  CHECK(root->items[0]->integer == -32768);  // sign-extended
  const torchio_pk::Value* d = root->items[1];
  REQUIRE(d->kind == torchio_pk::Kind::Dict);
  const torchio_pk::Value* a = d->get("a");
  REQUIRE(a->kind == torchio_pk::Kind::List);
  REQUIRE(a->items.size() == 5);
  CHECK(a->items[0]->integer == 1);
  CHECK(a->items[1]->integer == -2);
  CHECK(a->items[2]->real == 3.5);
  CHECK(a->items[3]->kind == torchio_pk::Kind::None);
  CHECK(a->items[4]->boolean);
  const torchio_pk::Value* b = d->get("b");
  REQUIRE(b->kind == torchio_pk::Kind::Tuple);
  CHECK(b->items[0]->kind == torchio_pk::Kind::Bytes);
  CHECK(b->items[0]->text == "xy");
  CHECK(b->items[1]->text == "long");
  const torchio_pk::Value* c = d->get("c");
  REQUIRE(c->kind == torchio_pk::Kind::Object);  // kept symbolically, never called
  CHECK(c->callable->is_global("os", "system"));
  CHECK(c->args->items[0]->text == "ls");
  CHECK(d->get("e") == c->args->items[0]);  // BINGET returns the memoized value itself
}

TEST_CASE("pickle VM: cyclic values do not leak or hang", "[io][torch]") {
  // l = []; l.append(l)
  const torchio_pk::Pickle p = torchio_unpickle(torchio_b("\x80\x02]q\x00h\x00" "a."));
  REQUIRE(p.root()->kind == torchio_pk::Kind::List);
  CHECK(p.root()->items[0] == p.root());
}

TEST_CASE("pickle VM: malformed input throws naming opcode and offset", "[io][torch]") {
  auto bad = [](const std::string& bytes, const std::vector<std::string>& parts) {
    require_error([&] { torchio_unpickle(bytes); }, parts);
  };
  bad(torchio_b("\x80\x02\xff"), {"pickle: buf", "unsupported opcode 0xff", "byte offset 2"});
  bad(torchio_b("\x80\x02h\x03."), {"memo index 3 out of range", "byte offset 2"});
  bad(torchio_b("\x80\x02j\x00\x00\x00\x01."), {"memo index 16777216 out of range"});
  bad(torchio_b("\x80\x02R."), {"stack underflow", "byte offset 2"});
  bad(torchio_b("\x80\x02(K\x01u."), {"odd number of items", "byte offset 5"});
  bad(torchio_b("\x80\x02K\x01t."), {"no MARK", "byte offset 4"});
  bad(torchio_b("\x80\x02X\xff\xff\xff\x7f" "abc"), {"string of 2147483647 bytes runs past the end", "byte offset 2"});
  bad(torchio_b("\x80\x02T\xff\xff\xff\xff"), {"negative string length"});
  bad(torchio_b("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00."), {"does not fit in 64 bits"});
  bad(torchio_b("\x80\x02K\x01"), {"no STOP"});
  bad(torchio_b("\x80\x02K"), {"runs past the end", "byte offset 2"});
  bad(torchio_b("\x80\x02" "cos"), {"no newline"});
  bad(std::string(2000, '('), {"marks nested deeper than 1024", "byte offset 1024"});
  bad(torchio_b("\x80\x02K\x00K\x01K\x02s."), {"expects a dict below the items, got a int"});
  bad(torchio_b("\x80\x02K\x01K\x02R."), {"arguments are a int, not a tuple"});
  // persistent ids: wrong shape, unsupported storage type (naming the key), absurd numel
  bad(torchio_b("\x80\x02K\x01Q."), {"persistent id is not", "byte offset 4"});
  bad(torchio_b("\x80\x02(X\x07\x00\x00\x00storagectorch\nComplexFloatStorage\nX\x01\x00\x00\x00" "7"
                "X\x03\x00\x00\x00" "cpuK\x02tQ."),
      {"storage '7'", "torch.ComplexFloatStorage", "unsupported"});
  bad(torchio_b("\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "7"
                "X\x03\x00\x00\x00" "cpuJ\xff\xff\xff\xfftQ."),
      {"storage '7'", "absurd element count -1"});
  bad(torchio_b("\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n(K\x00K\x00))\x89}tR."),
      {"_rebuild_tensor_v2: argument 0 is a int, not a storage"});
}

TEST_CASE("torch checkpoints: the state_dict search survives cyclic containers", "[io][torch]") {
  // d = {}; d["state_dict"] = d; d["model"] = d
  const torchio_pk::Pickle p = torchio_unpickle(torchio_b("\x80\x02}q\x00(X\x0a\x00\x00\x00state_dicth\x00"
                                                  "X\x05\x00\x00\x00modelh\x00u."));
  REQUIRE(p.root()->kind == torchio_pk::Kind::Dict);
  CHECK(graft::io::detail_torch::find_model(p.root()) == nullptr);
}

TEST_CASE("torch checkpoints: nested dicts, unsupported dtypes, no state_dict", "[io][torch]") {
  // nested.pth: {"epoch", "arch", "best", "state_dict", "optimizer"} -> the "state_dict" entry
  const auto named = load_torch_checkpoint(torchio_path("nested.pth"));
  CHECK(named.size() == 9);
  CHECK(named[0].first == "0.weight");
  require_error([] { load_torch_checkpoint(torchio_path("bad_dtype.pth")); },
                {"bad_dtype.pth", "storage '0'", "torch.ByteStorage", "unsupported", "byte offset"});
  require_error([] { load_torch_checkpoint(torchio_path("bad_no_state_dict.pth")); },
                {"bad_no_state_dict.pth", "no state_dict found", "'epoch', 'arch'"});
}
