// graft/io/zip.hpp - a bounds-checked reader for the zip archives torch.save writes.
//
// Not part of <graft/graft.hpp>: include it on purpose.
//
//   auto zip = graft::io::ZipArchive::open("model.pth");
//   for (const auto& e : zip.entries()) std::cout << e.name << " " << e.uncompressed_size << "\n";
//   std::span<const uint8_t> pkl = zip.read("archive/data.pkl");   // STORED entries only
//
// What is read: the end-of-central-directory record (searched backwards over at most the last
// 22 + 65535 bytes), the ZIP64 locator and record when present (torch always writes them), every
// central directory entry (with its ZIP64 extra field), and each entry's local header (to find where
// its data starts; local sizes are ignored, torch writes them as 0 with a data descriptor).
//
// Contract: ZipArchive either holds a consistent list of entries whose data ranges lie inside the
// archive and do not overlap each other, or the constructor throws graft::Error
// "zip: <file>: <entry or record>: <what> at byte offset N". read() returns a span into the archive
// bytes for STORED entries (after checking the CRC-32 unless told not to) and throws
// "compressed entries not supported" for any other method. It never reads outside the bytes.
// open() memory-maps the file through graft/io/mmap.hpp (keep_alive() owns the map). Fuzz builds
// (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION) skip the CRC check so mutations reach the parsers.
// Not supported: multi-disk archives, encryption, DEFLATE (torch never compresses).
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "graft/core/error.hpp"
#if __has_include("graft/io/mmap.hpp")
#include "graft/io/mmap.hpp"
#define GRAFT_IO_ZIP_HAS_MMAP 1
#endif

namespace graft::io {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;               // 0 = STORED, 8 = DEFLATE, ...
  uint16_t flags = 0;
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;  // byte offset of the "PK\3\4" record
  uint64_t data_offset = 0;          // byte offset of the first data byte
};

namespace detail_zip {

inline constexpr uint32_t kLocalSig = 0x04034b50;
inline constexpr uint32_t kCentralSig = 0x02014b50;
inline constexpr uint32_t kEocdSig = 0x06054b50;
inline constexpr uint32_t kZip64EocdSig = 0x06064b50;
inline constexpr uint32_t kZip64LocatorSig = 0x07064b50;
inline constexpr size_t kEocdSize = 22;
inline constexpr size_t kMaxComment = 65535;
inline constexpr uint64_t kMaxEntries = uint64_t(1) << 24;  // sanity bound, far above any checkpoint

inline const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

inline uint32_t crc32(std::span<const uint8_t> data) {
  const auto& t = crc_table();
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t b : data) c = t[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// Little-endian reads at an absolute offset, bounds-checked against the archive.
class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, const std::string& source) : bytes_(bytes), source_(source) {}
  size_t size() const { return bytes_.size(); }

  [[noreturn]] void fail(const std::string& where, uint64_t offset, const std::string& what) const {
    throw Error(detail::concat("zip: ", source_, ": ", where, ": ", what, " at byte offset ", offset));
  }
  void need(const std::string& where, uint64_t offset, uint64_t n) const {
    if (offset > bytes_.size() || n > bytes_.size() - offset)
      fail(where, offset,
           detail::concat("needs ", n, " bytes but the archive is ", bytes_.size(), " bytes long"));
  }
  template <class T>
  T get(uint64_t offset) const {  // caller has called need()
    T v;
    std::memcpy(&v, bytes_.data() + offset, sizeof(T));
    return v;
  }
  std::span<const uint8_t> span(uint64_t offset, uint64_t n) const { return bytes_.subspan(offset, n); }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& source_;
};

}  // namespace detail_zip

class ZipArchive {
 public:
  // Parses an archive held in `bytes`; `keep_alive` owns them (may be empty if the caller does).
  // `source` names the archive in error messages.
  ZipArchive(std::span<const uint8_t> bytes, std::string source, std::shared_ptr<void> keep_alive = {})
      : bytes_(bytes), source_(std::move(source)), keep_alive_(std::move(keep_alive)) {
    parse();
  }

  // Memory-maps the file at `path` (graft/io/mmap.hpp; without it the file is read into memory) and
  // parses it. keep_alive() owns the map.
  static ZipArchive open(const std::string& path) {
#ifdef GRAFT_IO_ZIP_HAS_MMAP
    std::shared_ptr<MappedFile> map = MappedFile::open(path);
    std::span<const uint8_t> mapped(map->data(), map->size());
    return ZipArchive(mapped, path, std::move(map));
#else
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    GRAFT_CHECK(f.good(), "zip", path, ": cannot open file");
    const std::streamoff n = f.tellg();
    GRAFT_CHECK(n >= 0, "zip", path, ": cannot determine file size");
    auto buf = std::make_shared<std::vector<uint8_t>>(size_t(n));
    f.seekg(0);
    if (n > 0) f.read(reinterpret_cast<char*>(buf->data()), n);
    GRAFT_CHECK(f.good(), "zip", path, ": read failed after ", f.gcount(), " of ", n, " bytes");
    std::span<const uint8_t> bytes(buf->data(), buf->size());
    return ZipArchive(bytes, path, std::move(buf));
#endif
  }

  const std::string& source() const { return source_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  std::span<const uint8_t> bytes() const { return bytes_; }
  const std::shared_ptr<void>& keep_alive() const { return keep_alive_; }

  // The entry named `name`, or nullptr.
  const ZipEntry* find(std::string_view name) const {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &entries_[it->second];
  }

  // The data of a STORED entry, a span into the archive bytes. Checks the CRC-32 when verify_crc.
  std::span<const uint8_t> read(const ZipEntry& e, bool verify_crc = true) const {
    GRAFT_CHECK(e.method == 0, "zip", source_, ": entry '", e.name, "' at byte offset ", e.local_header_offset,
                ": compressed entries not supported (method ", e.method,
                "; torch.save writes STORED entries, re-save without compression)");
    auto data = bytes_.subspan(e.data_offset, e.compressed_size);  // checked in parse()
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    verify_crc = false;  // fuzz builds only: let mutations reach the parsers behind the checksum
#endif
    if (verify_crc) {
      const uint32_t c = detail_zip::crc32(data);
      GRAFT_CHECK(c == e.crc32, "zip", source_, ": entry '", e.name, "' at byte offset ", e.data_offset,
                  ": CRC-32 mismatch (expected ", e.crc32, ", data gives ", c, ")");
    }
    return data;
  }
  std::span<const uint8_t> read(std::string_view name, bool verify_crc = true) const {
    const ZipEntry* e = find(name);
    GRAFT_CHECK(e != nullptr, "zip", source_, ": no entry named '", name, "'");
    return read(*e, verify_crc);
  }

 private:
  void parse() {
    using namespace detail_zip;
    Reader r(bytes_, source_);
    const uint64_t n = bytes_.size();
    if (n < kEocdSize) r.fail("end of central directory", 0, detail::concat("file too short for a zip archive (", n, " bytes)"));

    // 1. End of central directory: search backwards over the possible comment length.
    uint64_t eocd = UINT64_MAX;
    const uint64_t lowest = n - kEocdSize > kMaxComment ? n - kEocdSize - kMaxComment : 0;
    for (uint64_t p = n - kEocdSize + 1; p-- > lowest;) {
      if (r.get<uint32_t>(p) == kEocdSig && p + kEocdSize + r.get<uint16_t>(p + 20) == n) {
        eocd = p;
        break;
      }
    }
    if (eocd == UINT64_MAX)
      r.fail("end of central directory", n,
             "record not found in the last 64 KiB (not a zip archive, or truncated)");
    const uint16_t disk = r.get<uint16_t>(eocd + 4), cd_disk = r.get<uint16_t>(eocd + 6);
    uint64_t count = r.get<uint16_t>(eocd + 10);
    uint64_t cd_size = r.get<uint32_t>(eocd + 12);
    uint64_t cd_offset = r.get<uint32_t>(eocd + 16);
    if (disk != 0 || cd_disk != 0) r.fail("end of central directory", eocd, "multi-disk archives not supported");

    // 2. ZIP64: a locator right before the EOCD points at the ZIP64 record, whose values win.
    if (eocd >= 20 && r.get<uint32_t>(eocd - 20) == kZip64LocatorSig) {
      const uint64_t loc = eocd - 20;
      const uint64_t rec = r.get<uint64_t>(loc + 8);
      r.need("ZIP64 end of central directory", rec, 56);
      if (rec + 56 > loc) r.fail("ZIP64 end of central directory", rec, "record overlaps its locator");
      if (r.get<uint32_t>(rec) != kZip64EocdSig)
        r.fail("ZIP64 end of central directory", rec,
               detail::concat("bad signature 0x", std::hex, r.get<uint32_t>(rec)));
      count = r.get<uint64_t>(rec + 32);
      cd_size = r.get<uint64_t>(rec + 40);
      cd_offset = r.get<uint64_t>(rec + 48);
      eocd = rec;  // the central directory must end before this record
    }
    if (count > kMaxEntries)
      r.fail("end of central directory", eocd, detail::concat("absurd entry count ", count));
    if (cd_offset > eocd || cd_size > eocd - cd_offset)
      r.fail("central directory", cd_offset,
             detail::concat("offset ", cd_offset, " + size ", cd_size, " runs past the end-of-directory record at ", eocd));

    // 3. Central directory entries.
    uint64_t p = cd_offset;
    const uint64_t cd_end = cd_offset + cd_size;
    entries_.reserve(size_t(std::min<uint64_t>(count, cd_size / 46 + 1)));
    for (uint64_t i = 0; i < count; ++i) {
      const std::string where = detail::concat("central directory entry ", i);
      if (p + 46 > cd_end) r.fail(where, p, "runs past the end of the central directory");
      if (r.get<uint32_t>(p) != kCentralSig)
        r.fail(where, p, detail::concat("bad signature 0x", std::hex, r.get<uint32_t>(p)));
      ZipEntry e;
      e.flags = r.get<uint16_t>(p + 8);
      e.method = r.get<uint16_t>(p + 10);
      e.crc32 = r.get<uint32_t>(p + 16);
      e.compressed_size = r.get<uint32_t>(p + 20);
      e.uncompressed_size = r.get<uint32_t>(p + 24);
      const uint16_t name_len = r.get<uint16_t>(p + 28), extra_len = r.get<uint16_t>(p + 30),
                     comment_len = r.get<uint16_t>(p + 32);
      e.local_header_offset = r.get<uint32_t>(p + 42);
      const uint64_t var_len = uint64_t(name_len) + extra_len + comment_len;
      if (p + 46 + var_len > cd_end) r.fail(where, p, "name/extra/comment run past the end of the central directory");
      const auto name = r.span(p + 46, name_len);
      e.name.assign(name.begin(), name.end());
      if (e.flags & 1) r.fail(where + " '" + e.name + "'", p, "encrypted entries not supported");
      parse_zip64_extra(r, e, p + 46 + name_len, extra_len, where);
      p += 46 + var_len;
      index_.emplace(e.name, entries_.size());  // a repeated name: the first entry wins
      entries_.push_back(std::move(e));
    }

    // 4. Local headers: where each entry's data starts; data must lie before the central directory.
    for (auto& e : entries_) {
      const std::string where = "entry '" + e.name + "'";
      const uint64_t h = e.local_header_offset;
      if (h > cd_offset || 30 > cd_offset - h)
        r.fail(where, h, detail::concat("local header offset out of range (central directory starts at ", cd_offset, ")"));
      if (r.get<uint32_t>(h) != kLocalSig)
        r.fail(where, h, detail::concat("bad local header signature 0x", std::hex, r.get<uint32_t>(h)));
      const uint64_t data = h + 30 + r.get<uint16_t>(h + 26) + r.get<uint16_t>(h + 28);
      if (data > cd_offset || e.compressed_size > cd_offset - data)
        r.fail(where, data, detail::concat("data of ", e.compressed_size, " bytes runs past the central directory at ", cd_offset));
      if (e.method == 0 && e.compressed_size != e.uncompressed_size)
        r.fail(where, h, detail::concat("STORED entry with compressed size ", e.compressed_size,
                                        " != uncompressed size ", e.uncompressed_size));
      e.data_offset = data;
    }

    // 5. No two entries' [local header, data end) ranges overlap.
    std::vector<const ZipEntry*> sorted;
    for (const auto& e : entries_) sorted.push_back(&e);
    std::sort(sorted.begin(), sorted.end(),
              [](const ZipEntry* a, const ZipEntry* b) { return a->local_header_offset < b->local_header_offset; });
    for (size_t i = 1; i < sorted.size(); ++i) {
      const ZipEntry& a = *sorted[i - 1];
      const ZipEntry& b = *sorted[i];
      if (a.data_offset + a.compressed_size > b.local_header_offset)
        r.fail("entry '" + b.name + "'", b.local_header_offset,
               detail::concat("overlaps entry '", a.name, "' (data ends at ", a.data_offset + a.compressed_size, ")"));
    }
  }

  // ZIP64 extended information (id 0x0001): 64-bit sizes/offset for fields saturated at 0xFFFFFFFF.
  static void parse_zip64_extra(const detail_zip::Reader& r, ZipEntry& e, uint64_t at, uint64_t len,
                                const std::string& where) {
    const uint64_t end = at + len;
    while (at + 4 <= end) {
      const uint16_t id = r.get<uint16_t>(at), size = r.get<uint16_t>(at + 2);
      if (at + 4 + size > end) r.fail(where, at, "extra field runs past its declared length");
      if (id == 0x0001) {
        uint64_t q = at + 4;
        auto take = [&](uint64_t& field) {
          if (field != 0xFFFFFFFFu) return;
          if (q + 8 > at + 4 + size) r.fail(where, q, "ZIP64 extra field too short");
          field = r.get<uint64_t>(q);
          q += 8;
        };
        take(e.uncompressed_size);
        take(e.compressed_size);
        take(e.local_header_offset);
      }
      at += 4 + size;
    }
  }

  std::span<const uint8_t> bytes_;
  std::string source_;
  std::shared_ptr<void> keep_alive_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in entries_
};

}  // namespace graft::io
