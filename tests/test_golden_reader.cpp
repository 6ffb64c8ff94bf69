// The golden-file reader: a good file round-trips, and each kind of corrupt file is rejected with a
// graft::Error naming the file and the byte offset of the bad field.
#include <cstring>

#include "golden.hpp"
#include "harness.hpp"

using namespace graft;
using namespace graft_test;

namespace {
// Builds golden-format bytes by hand.
struct Bytes {
  std::vector<uint8_t> b;
  template <class T>
  Bytes& put(T v) {
    const size_t n = b.size();
    b.resize(n + sizeof(T));
    std::memcpy(b.data() + n, &v, sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint32_t>(uint32_t(s.size()));
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& header(uint32_t cases, uint32_t version = 1) {
    b.insert(b.end(), {'G', 'R', 'A', 'F', 'T', 'G', 'L', 'D'});
    return put<uint32_t>(version).put<uint32_t>(cases);
  }
};

// One case "c" / op "add" holding key "x": float32 [2, 3] with values 0.5, 1.5, ...
Bytes good_file() {
  Bytes f;
  f.header(1).str("c").str("add").put<uint32_t>(1).str("x").put<uint8_t>(0).put<uint8_t>(2);
  f.put<int64_t>(2).put<int64_t>(3);
  for (int i = 0; i < 6; ++i) f.put<float>(float(i) + 0.5f);
  return f;
}
}  // namespace

TEST_CASE("golden reader: a well-formed file round-trips", "[golden]") {
  const GoldenFile g = parse_golden(good_file().b, "mem.bin");
  REQUIRE(g.version == 1);
  REQUIRE(g.cases.size() == 1);
  REQUIRE(g.cases[0].name == "c");
  REQUIRE(g.cases[0].op == "add");
  const Tensor& x = g.cases[0].at("x");
  REQUIRE(x.dtype() == DType::Float32);
  REQUIRE(x.shape() == Shape{2, 3});
  REQUIRE(x.to_vector() == std::vector<double>{0.5, 1.5, 2.5, 3.5, 4.5, 5.5});
  require_error([&] { (void)g.cases[0].at("y"); }, {"golden", "'c'", "'y'"});
}

TEST_CASE("golden reader: wrong magic", "[golden][errors]") {
  Bytes f = good_file();
  f.b[5] = 'X';
  require_error([&] { parse_golden(f.b, "bad_magic.bin"); }, {"bad_magic.bin", "magic", "byte offset 0"});
}

TEST_CASE("golden reader: unsupported version", "[golden][errors]") {
  Bytes f;
  f.header(0, 2);
  require_error([&] { parse_golden(f.b, "v2.bin"); }, {"v2.bin", "unsupported version 2", "byte offset 8"});
}

TEST_CASE("golden reader: truncated data", "[golden][errors]") {
  Bytes f = good_file();
  f.b.resize(f.b.size() - 3);  // cut into the float data, which starts at byte 55
  require_error([&] { parse_golden(f.b, "cut.bin"); }, {"cut.bin", "truncated tensor data", "byte offset 55"});
  Bytes h;
  h.b = {'G', 'R', 'A'};
  require_error([&] { parse_golden(h.b, "tiny.bin"); }, {"tiny.bin", "truncated magic", "byte offset 0"});
}

TEST_CASE("golden reader: unknown dtype code", "[golden][errors]") {
  Bytes f = good_file();
  f.b[37] = 9;  // the dtype byte: 16 header + 5 name + 7 op + 4 count + 5 key = byte 37
  require_error([&] { parse_golden(f.b, "dtype.bin"); }, {"dtype.bin", "unknown dtype code 9", "'x'", "byte offset 37"});
}

TEST_CASE("golden reader: absurd rank, extent, counts and string length", "[golden][errors]") {
  Bytes rank = good_file();
  rank.b[38] = 40;
  require_error([&] { parse_golden(rank.b, "rank.bin"); }, {"rank.bin", "absurd rank 40", "byte offset 38"});

  Bytes extent;
  extent.header(1).str("c").str("add").put<uint32_t>(1).str("x").put<uint8_t>(0).put<uint8_t>(1);
  extent.put<int64_t>(int64_t(1) << 40);
  require_error([&] { parse_golden(extent.b, "extent.bin"); }, {"extent.bin", "absurd extent", "byte offset 39"});

  Bytes negative;
  negative.header(1).str("c").str("add").put<uint32_t>(1).str("x").put<uint8_t>(0).put<uint8_t>(1);
  negative.put<int64_t>(-3);
  require_error([&] { parse_golden(negative.b, "neg.bin"); }, {"neg.bin", "absurd extent -3", "byte offset 39"});

  Bytes cases;
  cases.header(0xffffffffu);
  require_error([&] { parse_golden(cases.b, "cases.bin"); }, {"cases.bin", "absurd case count", "byte offset 12"});

  Bytes name;
  name.header(1).put<uint32_t>(1u << 30).put<uint64_t>(0).put<uint32_t>(0);
  require_error([&] { parse_golden(name.b, "name.bin"); }, {"name.bin", "absurd length", "case name", "byte offset 16"});
}

TEST_CASE("golden reader: bad bool bytes and trailing garbage", "[golden][errors]") {
  Bytes boolean;
  boolean.header(1).str("c").str("where").put<uint32_t>(1).str("m").put<uint8_t>(6).put<uint8_t>(1);
  boolean.put<int64_t>(2).put<uint8_t>(1).put<uint8_t>(7);
  require_error([&] { parse_golden(boolean.b, "bool.bin"); }, {"bool.bin", "holds byte 7", "byte offset 50"});

  Bytes trailing = good_file();
  trailing.put<uint8_t>(0);
  require_error([&] { parse_golden(trailing.b, "trail.bin"); }, {"trail.bin", "trailing", "byte offset 79"});
}

TEST_CASE("golden reader: a missing file names the path", "[golden][errors]") {
  require_error([] { read_golden("/nonexistent/ops_golden.bin"); }, {"/nonexistent/ops_golden.bin", "gen_goldens.py"});
}
