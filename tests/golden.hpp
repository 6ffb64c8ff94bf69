// tests/golden.hpp - reader for the PyTorch golden files written by tools/gen_goldens.py.
//
// Format, version 1, little-endian (the generator's docstring is the full specification):
//   file   := "GRAFTGLD" u32 version u32 case_count case*
//   case   := string name, string op, u32 tensor_count, tensor*
//   tensor := string key, u8 dtype (graft::DType's enum order), u8 rank, i64 dims[rank], raw row-major data
//   string := u32 length, bytes
//
// Contract: parse_golden() either returns every case or throws graft::Error naming the file and the
// byte offset of the first bad field (wrong magic, unsupported version, truncated data, unknown dtype
// code, absurd rank, extent, element count or string length). It never reads past the buffer.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "graft/graft.hpp"

namespace graft_test {

inline constexpr char kGoldenMagic[8] = {'G', 'R', 'A', 'F', 'T', 'G', 'L', 'D'};
inline constexpr uint32_t kGoldenVersion = 1;
// Sanity limits: anything above is a corrupt file, not a test case.
inline constexpr uint32_t kGoldenMaxString = 4096;
inline constexpr int64_t kGoldenMaxNumel = int64_t(1) << 28;

struct GoldenCase {
  std::string name;
  std::string op;
  std::vector<std::pair<std::string, graft::Tensor>> tensors;  // in file order

  // The tensor stored under key, or nullptr.
  const graft::Tensor* find(const std::string& key) const {
    for (const auto& [k, t] : tensors)
      if (k == key) return &t;
    return nullptr;
  }
  bool has(const std::string& key) const { return find(key) != nullptr; }
  const graft::Tensor& at(const std::string& key) const {
    const graft::Tensor* t = find(key);
    GRAFT_CHECK(t != nullptr, "golden", "case '", name, "' has no tensor '", key, "'");
    return *t;
  }
};

struct GoldenFile {
  uint32_t version = 0;
  std::vector<GoldenCase> cases;
};

namespace detail_golden {

// A bounds-checked cursor over the file's bytes; every read names the offset it failed at.
class Cursor {
 public:
  Cursor(const std::vector<uint8_t>& bytes, const std::string& source) : bytes_(bytes), source_(source) {}

  size_t offset() const { return pos_; }
  bool at_end() const { return pos_ == bytes_.size(); }

  [[noreturn]] void fail(size_t at, const std::string& what) const {
    throw graft::Error(graft::detail::concat("golden: ", source_, ": ", what, " at byte offset ", at));
  }
  void need(size_t n, const char* what) const {
    if (n > bytes_.size() - pos_)
      fail(pos_, graft::detail::concat("truncated ", what, " (need ", n, " bytes, ", bytes_.size() - pos_,
                                       " left)"));
  }
  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));  // the file is little-endian, as is every target
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    const size_t at = pos_;
    const uint32_t n = read<uint32_t>(what);
    if (n > kGoldenMaxString)
      fail(at, graft::detail::concat("absurd length ", n, " of ", what, " (limit ", kGoldenMaxString, ")"));
    need(n, what);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  void read_bytes(void* dst, size_t n, const char* what) {
    need(n, what);
    if (n > 0) std::memcpy(dst, bytes_.data() + pos_, n);
    pos_ += n;
  }

 private:
  const std::vector<uint8_t>& bytes_;
  const std::string& source_;
  size_t pos_ = 0;
};

inline graft::Tensor read_tensor(Cursor& in, const std::string& key) {
  const size_t dtype_at = in.offset();
  const uint8_t code = in.read<uint8_t>("tensor dtype");
  if (code > uint8_t(graft::DType::Bool))
    in.fail(dtype_at, graft::detail::concat("unknown dtype code ", int(code), " for tensor '", key,
                                            "' (expected 0..", int(graft::DType::Bool), ")"));
  const auto dtype = graft::DType(code);
  const size_t rank_at = in.offset();
  const uint8_t rank = in.read<uint8_t>("tensor rank");
  if (rank > graft::kMaxDims)
    in.fail(rank_at, graft::detail::concat("absurd rank ", int(rank), " for tensor '", key, "' (at most ",
                                           graft::kMaxDims, ")"));
  graft::Shape shape;
  int64_t numel = 1;
  for (int d = 0; d < rank; ++d) {
    const size_t dim_at = in.offset();
    const int64_t extent = in.read<int64_t>("tensor dims");
    if (extent < 0 || extent > kGoldenMaxNumel || numel * extent > kGoldenMaxNumel)
      in.fail(dim_at, graft::detail::concat("absurd extent ", extent, " in dim ", d, " of tensor '", key,
                                            "' (at most ", kGoldenMaxNumel, " elements)"));
    numel *= extent;
    shape.push_back(extent);
  }
  graft::Tensor t = graft::empty(shape, dtype);
  in.read_bytes(t.data_ptr(), size_t(numel) * graft::dtype_size(dtype), "tensor data");
  if (dtype == graft::DType::Bool) {  // any byte other than 0/1 is not a bool
    const auto* p = static_cast<const uint8_t*>(t.data_ptr());
    for (int64_t i = 0; i < numel; ++i)
      if (p[i] > 1)
        in.fail(in.offset() - size_t(numel) + size_t(i),
                graft::detail::concat("bool tensor '", key, "' holds byte ", int(p[i])));
  }
  return t;
}

}  // namespace detail_golden

// Parses a whole golden file held in memory. `source` names it in error messages.
inline GoldenFile parse_golden(const std::vector<uint8_t>& bytes, const std::string& source) {
  detail_golden::Cursor in(bytes, source);
  char magic[8];
  in.read_bytes(magic, 8, "magic");
  if (std::memcmp(magic, kGoldenMagic, 8) != 0) in.fail(0, "wrong magic (expected \"GRAFTGLD\")");
  GoldenFile file;
  file.version = in.read<uint32_t>("version");
  if (file.version != kGoldenVersion)
    in.fail(8, graft::detail::concat("unsupported version ", file.version, " (this reader reads version ",
                                     kGoldenVersion, ")"));
  const size_t count_at = in.offset();
  const uint32_t count = in.read<uint32_t>("case count");
  // Each case takes at least 12 bytes (two string lengths and a tensor count).
  if (size_t(count) * 12 > bytes.size() - in.offset())
    in.fail(count_at, graft::detail::concat("absurd case count ", count, " for a file of ", bytes.size(), " bytes"));
  for (uint32_t c = 0; c < count; ++c) {
    GoldenCase gc;
    gc.name = in.read_string("case name");
    gc.op = in.read_string("case op");
    const size_t n_at = in.offset();
    const uint32_t n = in.read<uint32_t>("tensor count");
    // Each tensor takes at least 6 bytes (key length, dtype, rank).
    if (size_t(n) * 6 > bytes.size() - in.offset())
      in.fail(n_at, graft::detail::concat("absurd tensor count ", n, " in case '", gc.name, "'"));
    for (uint32_t i = 0; i < n; ++i) {
      std::string key = in.read_string("tensor key");
      graft::Tensor t = detail_golden::read_tensor(in, key);
      gc.tensors.emplace_back(std::move(key), std::move(t));
    }
    file.cases.push_back(std::move(gc));
  }
  if (!in.at_end()) in.fail(in.offset(), "trailing bytes after the last case");
  return file;
}

inline GoldenFile read_golden(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  GRAFT_CHECK(f.good(), "golden", "cannot open '", path, "' (regenerate with: /usr/bin/python3 tools/gen_goldens.py)");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return parse_golden(bytes, path);
}

}  // namespace graft_test
