// graft/io/mmap.hpp - a memory map of a whole file (POSIX), owned through a shared_ptr.
//
// Checkpoint tensors borrow the map (Storage's borrowing constructor with the MappedFile as
// keep_alive), so loading costs no copy and pages are read on first touch.
//
//   std::shared_ptr<MappedFile> m = MappedFile::open("model.safetensors");
//   const uint8_t* p = m->data();  // m->size() bytes
//
// Contract:
//   - The file is opened read-only and mapped MAP_PRIVATE with PROT_READ | PROT_WRITE: a write
//     through a borrowed tensor (an in-place op) copies the page for this process and never reaches
//     the file, instead of crashing on a read-only page.
//   - An empty file gives size() == 0 and data() == nullptr (mmap refuses length 0).
//   - Failures (missing file, a directory, mmap error) throw graft::Error naming the file and the
//     system error.
//   - Like every memory map, the file must not be truncated by another process while mapped (the
//     kernel would raise SIGBUS on access past the new end).
#pragma once
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "graft/core/error.hpp"

namespace graft::io {

class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    GRAFT_CHECK(fd >= 0, "mmap", path, ": cannot open: ", std::strerror(errno));
    struct FdCloser {
      int fd;
      ~FdCloser() { ::close(fd); }
    } closer{fd};  // the map stays valid after the descriptor is closed
    struct stat st {};
    GRAFT_CHECK(::fstat(fd, &st) == 0, "mmap", path, ": cannot stat: ", std::strerror(errno));
    GRAFT_CHECK(S_ISREG(st.st_mode), "mmap", path, ": not a regular file");
    auto m = std::shared_ptr<MappedFile>(new MappedFile());
    m->path_ = path;
    m->size_ = static_cast<size_t>(st.st_size);
    if (m->size_ == 0) return m;
    void* p = ::mmap(nullptr, m->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    GRAFT_CHECK(p != MAP_FAILED, "mmap", path, ": mmap of ", m->size_, " bytes failed: ", std::strerror(errno));
    m->data_ = static_cast<uint8_t*>(p);
    return m;
  }

  ~MappedFile() {
    if (data_) ::munmap(data_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // Writable only in the copy-on-write sense above.
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace graft::io
