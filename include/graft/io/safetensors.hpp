// graft/io/safetensors.hpp - read and write safetensors files (https://github.com/huggingface/safetensors).
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   graft::io::SafetensorsFile f("model.safetensors");
//   for (const std::string& name : f.names()) std::cout << name << f.tensor(name).shape() << "\n";
//   graft::io::save_safetensors("out.safetensors", {{"fc.weight", w}, {"fc.bias", b}},
//                               {{"format", "pt"}});
//
// File layout (all integers little-endian):
//
//   bytes [0, 8)          u64 N, the header length
//   bytes [8, 8 + N)      JSON object: "__metadata__" -> {string: string} (optional), and for each
//                         tensor  name -> {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]}
//   bytes [8 + N, end)    the data section; tensor bytes are [8 + N + b, 8 + N + e), row-major
//
// Reading contract (SafetensorsFile): the file is memory-mapped and validated when opened, before
// any tensor is handed out. It throws graft::Error "safetensors: <file>: ..." naming the byte offset
// or tensor name, the expected and the actual value, when:
//   - the file is shorter than 8 bytes, or N > 100 MB (kMaxHeaderBytes), or 8 + N runs past the end;
//   - the header is not valid JSON (the JSON error names the file offset), not an object, nests
//     deeper than 16 levels, or holds more than 4M JSON values (kSafetensorsMaxJsonValues);
//   - an entry is not {dtype, shape, data_offsets} (missing or extra keys, wrong JSON types);
//   - a dtype is unknown, or known to safetensors but not to Graft (I8, U8, F8_*, ...);
//   - the rank exceeds 8, a dimension is negative or not an integer, or the byte size overflows;
//   - data_offsets are not [begin, end] with begin <= end <= data section size, or end - begin is
//     not numel * dtype size;
//   - ranges overlap, leave a gap, or do not end exactly at the end of the file (the format
//     requires the ranges to tile the data section, as the reference implementation checks);
//   - "__metadata__" is not an object of strings.
// tensor(name) returns a contiguous CPU tensor that BORROWS the memory map (no copy; the map lives
// as long as any tensor does). Two exceptions, both copies: a range not aligned to its dtype size
// (possible only in files from other writers), and zero-element tensors. BOOL tensors are checked
// to hold only bytes 0 and 1 when handed out. Writes through a borrowed tensor stay in this
// process (copy-on-write map, see mmap.hpp).
//
// Writing contract (save_safetensors): tensors are written contiguous, in dtype-size order (largest
// first, stable), so every range is aligned to its dtype size; the header is padded with spaces to
// a multiple of 8 bytes, as the reference writer does. The write is atomic: the bytes go to
// "<path>.tmp.<pid>", are fsync'ed, then renamed over <path>; any failure (unwritable directory,
// a tensor that cannot be written) removes the temporary file and leaves an existing <path> intact.
#pragma once
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "graft/graft.hpp"
#include "graft/io/json.hpp"
#include "graft/io/mmap.hpp"

namespace graft::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors I/O reads and writes tensor bytes as they are in memory: little-endian hosts only");

inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;  // the reference's limit
inline constexpr int kSafetensorsMaxJsonDepth = 16;
// A tensor entry is about 10 JSON values, so this allows ~400k tensors while bounding the parsed
// header's memory (about 100 bytes per value) to well under 1 GB for any 100 MB header.
inline constexpr size_t kSafetensorsMaxJsonValues = size_t(1) << 22;

// One tensor of the header. begin/end are relative to the start of the data section.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::Float32;
  Shape shape;
  uint64_t begin = 0, end = 0;
  size_t header_offset = 0;  // file offset of this entry's JSON object, for error messages
};

// The safetensors dtype string of a Graft dtype, and back (false when s is not one Graft has).
inline const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "F32";
    case DType::Float64: return "F64";
    case DType::BFloat16: return "BF16";
    case DType::Float16: return "F16";
    case DType::Int32: return "I32";
    case DType::Int64: return "I64";
    case DType::Bool: return "BOOL";
  }
  return "?";
}
inline bool safetensors_dtype_from_name(std::string_view s, DType& out) {
  static constexpr DType kAll[] = {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16,
                                   DType::Int32,   DType::Int64,   DType::Bool};
  for (DType t : kAll)
    if (s == safetensors_dtype_name(t)) {
      out = t;
      return true;
    }
  return false;
}
// Dtypes the format defines that Graft has no tensor type for.
inline bool safetensors_dtype_known_unsupported(std::string_view s) {
  static constexpr std::string_view kNames[] = {"I8",      "U8",      "I16",     "U16", "U32",
                                                "U64",     "F8_E4M3", "F8_E5M2", "F8_E8M0",
                                                "F6_E2M3", "F6_E3M2", "F4",      "C64"};
  return std::find(std::begin(kNames), std::end(kNames), s) != std::end(kNames);
}

class SafetensorsFile {
 public:
  // Maps and validates the file.
  explicit SafetensorsFile(const std::string& path) {
    std::shared_ptr<MappedFile> map = MappedFile::open(path);
    data_ = map->data();
    size_ = map->size();
    owner_ = std::move(map);
    source_ = path;
    parse();
  }
  // Validates a copy of `size` bytes (the fuzz target's entry point); `source` names it in errors.
  static SafetensorsFile from_memory(const void* data, size_t size, const std::string& source = "<memory>") {
    auto bytes = std::make_shared<std::vector<uint8_t>>(size);
    if (size) std::memcpy(bytes->data(), data, size);
    return SafetensorsFile(bytes, bytes->data(), size, source);
  }

  const std::string& path() const { return source_; }
  // Tensor names in header order.
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    n.reserve(entries_.size());
    for (const auto& e : entries_) n.push_back(e.name);
    return n;
  }
  size_t size() const { return entries_.size(); }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const { return entries_[lookup(name)]; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // File offset of the data section (8 + header length).
  uint64_t data_offset() const { return data_start_; }

  // The tensor, borrowing the map (see the contract at the top).
  Tensor tensor(const std::string& name) const {
    const SafetensorsEntry& e = entries_[lookup(name)];
    const size_t nbytes = size_t(e.end - e.begin);
    uint8_t* p = data_ + data_start_ + e.begin;
    if (e.dtype == DType::Bool) {
      for (size_t i = 0; i < nbytes; ++i)
        GRAFT_CHECK(p[i] <= 1, "safetensors", source_, ": tensor \"", e.name, "\": BOOL element ", i,
                    " at file offset ", data_start_ + e.begin + i, " is byte ", int(p[i]),
                    ", expected 0 or 1");
    }
    const bool aligned = reinterpret_cast<uintptr_t>(p) % dtype_size(e.dtype) == 0;
    if (nbytes == 0 || !aligned) {
      Tensor t = empty(e.shape, e.dtype);
      if (nbytes) std::memcpy(t.data_ptr(), p, nbytes);
      return t;
    }
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = std::make_shared<Storage>(static_cast<void*>(p), nbytes, kCPU, owner_);
    impl->shape = e.shape;
    impl->strides = contiguous_strides(e.shape);
    impl->dtype = e.dtype;
    return Tensor(std::move(impl));
  }

 private:
  SafetensorsFile(std::shared_ptr<void> owner, uint8_t* data, size_t size, std::string source)
      : owner_(std::move(owner)), data_(data), size_(size), source_(std::move(source)) {
    parse();
  }

  template <class... A>
  [[noreturn]] void fail(A&&... parts) const {
    throw Error(detail::concat("safetensors: ", source_, ": ", std::forward<A>(parts)...));
  }

  size_t lookup(const std::string& name) const {
    auto it = index_.find(name);
    if (it != index_.end()) return it->second;
    std::vector<std::string> sorted = names();
    std::sort(sorted.begin(), sorted.end());
    std::string some;
    for (size_t i = 0; i < sorted.size() && i < 5; ++i) some += (i ? ", \"" : "\"") + sorted[i] + "\"";
    if (sorted.size() > 5) some += ", ...";
    fail("no tensor named \"", name, "\"; the file has ", sorted.size(), " tensor(s)",
         sorted.empty() ? "" : ": ", some);
  }

  void parse() {
    if (size_ < 8)
      fail("file is ", size_, " bytes, too short for the 8-byte header length at offset 0");
    uint64_t n = 0;
    std::memcpy(&n, data_, 8);
    if (n > kSafetensorsMaxHeaderBytes)
      fail("header length ", n, " (u64 at offset 0) exceeds the limit of ", kSafetensorsMaxHeaderBytes, " bytes");
    if (n > size_ - 8)
      fail("header length ", n, " (u64 at offset 0) runs past the end of the file: the header would end at byte ",
           8 + n, " but the file is ", size_, " bytes");
    data_start_ = 8 + n;
    const uint64_t data_len = size_ - data_start_;

    JsonValue root;
    try {
      root = parse_json(std::string_view(reinterpret_cast<const char*>(data_) + 8, size_t(n)), source_, 8,
                        kSafetensorsMaxJsonDepth, kSafetensorsMaxJsonValues);
    } catch (const Error& e) {
      throw Error(std::string("safetensors: header: ") + e.what());
    }
    if (!root.is_object())
      fail("header at offset 8 is a JSON ", JsonValue::kind_name(root.kind()), ", expected an object");

    for (const auto& [key, value] : root.as_object()) {
      if (key == "__metadata__") {
        parse_metadata(value);
        continue;
      }
      entries_.push_back(parse_entry(key, value, data_len));
      index_.emplace(key, entries_.size() - 1);
    }
    check_ranges_tile(data_len);
  }

  void parse_metadata(const JsonValue& v) {
    if (!v.is_object())
      fail("\"__metadata__\" at byte ", v.offset(), " is a JSON ", JsonValue::kind_name(v.kind()),
           ", expected an object of strings");
    for (const auto& [k, s] : v.as_object()) {
      if (!s.is_string())
        fail("\"__metadata__\" key \"", k, "\" at byte ", s.offset(), " is a JSON ",
             JsonValue::kind_name(s.kind()), ", expected a string");
      metadata_.emplace(k, s.as_string());
    }
  }

  SafetensorsEntry parse_entry(const std::string& name, const JsonValue& v, uint64_t data_len) const {
    SafetensorsEntry e;
    e.name = name;
    e.header_offset = v.offset();
    const std::string where = detail::concat("tensor \"", name, "\" (header byte ", v.offset(), "): ");
    if (!v.is_object()) fail(where, "entry is a JSON ", JsonValue::kind_name(v.kind()), ", expected an object");
    for (const auto& kv : v.as_object())
      if (kv.first != "dtype" && kv.first != "shape" && kv.first != "data_offsets")
        fail(where, "unexpected key \"", kv.first, "\" (expected dtype, shape, data_offsets)");
    const JsonValue* dt = v.find("dtype");
    const JsonValue* shape = v.find("shape");
    const JsonValue* offsets = v.find("data_offsets");
    if (!dt || !shape || !offsets) fail(where, "missing key \"", !dt ? "dtype" : !shape ? "shape" : "data_offsets", "\"");

    // dtype
    if (!dt->is_string()) fail(where, "dtype at byte ", dt->offset(), " is not a string");
    const std::string& ds = dt->as_string();
    if (!safetensors_dtype_from_name(ds, e.dtype)) {
      if (safetensors_dtype_known_unsupported(ds))
        fail(where, "dtype \"", ds, "\" is not supported by Graft (supported: F32 F64 BF16 F16 I32 I64 BOOL)");
      fail(where, "unknown dtype \"", ds, "\" at byte ", dt->offset());
    }

    // shape, and the byte size it implies (overflow-checked)
    if (!shape->is_array()) fail(where, "shape at byte ", shape->offset(), " is not an array");
    const auto& dims = shape->as_array();
    if (dims.size() > size_t(kMaxDims))
      fail(where, "shape has rank ", dims.size(), ", more than Graft's maximum of ", kMaxDims);
    uint64_t numel = 1;
    bool overflow = false;
    for (const JsonValue& d : dims) {
      if (!d.is_int()) fail(where, "shape entry at byte ", d.offset(), " is not an integer");
      const int64_t x = d.as_int();
      if (x < 0) fail(where, "shape entry at byte ", d.offset(), " is negative (", x, ")");
      e.shape.push_back(x);
      overflow |= __builtin_mul_overflow(numel, uint64_t(x), &numel);
    }
    uint64_t nbytes = 0;
    overflow |= __builtin_mul_overflow(numel, uint64_t(dtype_size(e.dtype)), &nbytes);
    if (overflow) fail(where, "shape ", e.shape, " of ", ds, " overflows 64-bit byte sizes");

    // data_offsets
    if (!offsets->is_array() || offsets->as_array().size() != 2)
      fail(where, "data_offsets at byte ", offsets->offset(), " is not an array of two integers");
    const JsonValue& b = offsets->as_array()[0];
    const JsonValue& en = offsets->as_array()[1];
    if (!b.is_int() || !en.is_int() || b.as_int() < 0 || en.as_int() < 0)
      fail(where, "data_offsets at byte ", offsets->offset(), " must be two non-negative integers");
    e.begin = uint64_t(b.as_int());
    e.end = uint64_t(en.as_int());
    if (e.begin > e.end) fail(where, "data_offsets [", e.begin, ", ", e.end, "] at byte ", offsets->offset(), " end before they begin");
    if (e.end > data_len)
      fail(where, "data_offsets [", e.begin, ", ", e.end, "] at byte ", offsets->offset(),
           " run past the data section, which is ", data_len, " bytes (file offsets ", data_start_, " to ", size_, ")");
    if (e.end - e.begin != nbytes)
      fail(where, "shape ", e.shape, " of ", ds, " needs ", nbytes, " bytes but data_offsets [", e.begin, ", ",
           e.end, "] at byte ", offsets->offset(), " hold ", e.end - e.begin);
    return e;
  }

  // The ranges, sorted by offset, must tile [0, data_len): no overlap, no gap, nothing after.
  void check_ranges_tile(uint64_t data_len) const {
    std::vector<const SafetensorsEntry*> order;
    for (const auto& e : entries_) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    uint64_t covered = 0;
    const SafetensorsEntry* prev = nullptr;
    for (const SafetensorsEntry* e : order) {
      if (e->begin < covered)
        fail("tensor \"", e->name, "\" bytes [", e->begin, ", ", e->end, ") overlap tensor \"", prev->name,
             "\" bytes [", prev->begin, ", ", prev->end, ") (data section offsets; file offset ",
             data_start_ + e->begin, ")");
      if (e->begin > covered)
        fail("data section bytes [", covered, ", ", e->begin, ") (file offset ", data_start_ + covered,
             ") belong to no tensor: the gap ends where tensor \"", e->name, "\" begins");
      covered = e->end;
      prev = e;
    }
    if (covered != data_len)
      fail("data section bytes [", covered, ", ", data_len, ") (file offset ", data_start_ + covered,
           ") after the last tensor belong to no tensor");
  }

  std::shared_ptr<void> owner_;  // the MappedFile or the from_memory copy
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string source_;
  uint64_t data_start_ = 0;
  std::vector<SafetensorsEntry> entries_;  // header order
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Every tensor of the file by name, each borrowing the one memory map.
inline std::map<std::string, Tensor> load_safetensors(const std::string& path) {
  SafetensorsFile f(path);
  std::map<std::string, Tensor> out;
  for (const auto& e : f.entries()) out.emplace(e.name, f.tensor(e.name));
  return out;
}

namespace safetensors_detail {

inline void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    GRAFT_CHECK(w > 0, "save_safetensors", path, ": write failed: ", std::strerror(errno));
    p += w;
    n -= size_t(w);
  }
}

// Owns the temporary file until commit(); otherwise closes and removes it.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    GRAFT_CHECK(fd_ >= 0, "save_safetensors", path_, ": cannot create: ", std::strerror(errno));
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  void commit(const std::string& final_path) {
    GRAFT_CHECK(::fsync(fd_) == 0, "save_safetensors", path_, ": fsync failed: ", std::strerror(errno));
    const int rc = ::close(fd_);
    fd_ = -1;
    GRAFT_CHECK(rc == 0, "save_safetensors", path_, ": close failed: ", std::strerror(errno));
    GRAFT_CHECK(::rename(path_.c_str(), final_path.c_str()) == 0, "save_safetensors", final_path,
                ": cannot rename ", path_, " over it: ", std::strerror(errno));
    committed_ = true;
    // Make the rename itself durable (best effort: some file systems refuse fsync on directories).
    const size_t slash = final_path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : final_path.substr(0, slash);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace safetensors_detail

// Writes `tensors` (any layout, CPU or not; copied to contiguous CPU bytes one at a time) and
// `metadata` to `path` atomically. Names must be non-empty, unique and not "__metadata__".
inline void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  // Validate everything that can be checked before touching the disk.
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    GRAFT_CHECK(!name.empty(), "save_safetensors", path, ": tensor ", i, " has an empty name");
    GRAFT_CHECK(name != "__metadata__", "save_safetensors", path, ": tensor ", i,
                " is named \"__metadata__\", which the format reserves");
    GRAFT_CHECK(seen.emplace(name, i).second, "save_safetensors", path, ": duplicate tensor name \"", name,
                "\" (entries ", seen[name], " and ", i, ")");
    GRAFT_CHECK(t.defined(), "save_safetensors", path, ": tensor \"", name, "\" is undefined");
  }

  // Layout: largest dtype first (stable), so each range starts aligned to its element size.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].second.dtype()) > dtype_size(tensors[b].second.dtype());
  });

  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      header += (first ? "" : ",") + json_quote(k) + ":" + json_quote(v);
      first = false;
    }
    header += "}";
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    const auto& [name, t] = tensors[i];
    const uint64_t nbytes = uint64_t(t.numel()) * dtype_size(t.dtype());
    if (header.size() > 1) header += ",";
    header += json_quote(name) + ":{\"dtype\":\"" + safetensors_dtype_name(t.dtype()) + "\",\"shape\":[";
    for (int d = 0; d < t.dim(); ++d) {
      if (d) header += ",";
      header += std::to_string(t.size(d));
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + nbytes) + "]}";
    offset += nbytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // pad so the data section is 8-byte aligned
  GRAFT_CHECK(header.size() <= kSafetensorsMaxHeaderBytes, "save_safetensors", path, ": header of ",
              header.size(), " bytes exceeds the format's limit of ", kSafetensorsMaxHeaderBytes);
  // The header must read back: this catches names or metadata that are not valid UTF-8.
  try {
    (void)parse_json(header, path + " (header being written)", 8, kSafetensorsMaxJsonDepth);
  } catch (const Error& e) {
    throw Error(detail::concat("save_safetensors: ", path, ": a tensor name or metadata string is not valid ",
                               "UTF-8, so the header would not read back: ", e.what()));
  }

  safetensors_detail::TempFile tmp(path + ".tmp." + std::to_string(::getpid()));
  const uint64_t n = header.size();
  safetensors_detail::write_all(tmp.fd(), &n, 8, tmp.path());
  safetensors_detail::write_all(tmp.fd(), header.data(), header.size(), tmp.path());
  for (size_t i : order) {
    const auto& [name, t] = tensors[i];
    Tensor c = t.detach();
    if (!c.device().is_cpu()) c = c.cpu();
    c = c.contiguous();
    const size_t nbytes = size_t(c.numel()) * dtype_size(c.dtype());
    const auto* p = static_cast<const uint8_t*>(nbytes ? c.data_ptr() : nullptr);
    if (c.dtype() == DType::Bool) {
      for (size_t k = 0; k < nbytes; ++k)
        GRAFT_CHECK(p[k] <= 1, "save_safetensors", path, ": tensor \"", name, "\": bool element ", k,
                    " holds byte ", int(p[k]), ", expected 0 or 1");
    }
    safetensors_detail::write_all(tmp.fd(), p, nbytes, tmp.path());
  }
  tmp.commit(path);
}

}  // namespace graft::io
