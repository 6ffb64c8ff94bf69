// graft/core/storage.hpp - raw bytes on a device, allocated through a per-device Allocator.
//
// CPU storage is 64-byte aligned and comes from a caching allocator: freed blocks go to a free list
// keyed by rounded size and are handed out again (like PyTorch's CUDA caching allocator, on the
// host). The CUDA allocator is registered by <graft/cuda.cuh> at static-initialization time; a
// build without it throws when a CUDA tensor is requested.
//
// The bytes tensors hold on the CPU, now and at their peak (torch.cuda.memory_allocated /
// max_memory_allocated / reset_peak_memory_stats, for the host; cuda_memory_stats is the GPU's):
//   graft::cpu_reset_peak_memory_stats();
//   train_step();
//   size_t peak = graft::cpu_memory_stats().peak_allocated_bytes;   // rounded block sizes
// They count tensor storage only: kernels' scratch buffers and borrowed memory maps are not in them.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "graft/core/device.hpp"
#include "graft/core/error.hpp"

namespace graft {

// One per device type; every call names the device (its index picks the GPU).
struct Allocator {
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes, Device d) = 0;
  virtual void deallocate(void* p, size_t nbytes, Device d) = 0;
  // Copies between a device of this type and the host, or between two devices of this type.
  virtual void copy_to_host(void* dst, const void* src, size_t nbytes, Device src_device) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t nbytes, Device dst_device) = 0;
  virtual void copy_within(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) = 0;
  virtual void fill_zero(void* dst, size_t nbytes, Device d) = 0;
};

class CpuCachingAllocator final : public Allocator {
 public:
  static constexpr size_t kAlign = 64;
  static constexpr size_t kMaxCachedBytes = size_t(1) << 30;  // keep at most 1 GiB of free blocks

  void* allocate(size_t nbytes, Device) override {
    const size_t n = round(nbytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(n);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        cached_bytes_ -= n;
        count_allocation(n);
        return p;
      }
    }
    void* p = std::aligned_alloc(kAlign, n);
    GRAFT_CHECK(p != nullptr, "CpuCachingAllocator", "out of memory allocating ", n, " bytes");
    std::lock_guard<std::mutex> lock(mu_);
    count_allocation(n);
    return p;
  }
  void deallocate(void* p, size_t nbytes, Device) override {
    const size_t n = round(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    allocated_bytes_ -= n;
    if (cached_bytes_ + n > kMaxCachedBytes) {
      std::free(p);
      return;
    }
    free_.emplace(n, p);
    cached_bytes_ += n;
  }
  void copy_to_host(void* d, const void* s, size_t n, Device) override { copy(d, s, n); }
  void copy_from_host(void* d, const void* s, size_t n, Device) override { copy(d, s, n); }
  void copy_within(void* d, Device, const void* s, Device, size_t n) override { copy(d, s, n); }
  void fill_zero(void* d, size_t n, Device) override {
    if (n) std::memset(d, 0, n);
  }
  // Returns every cached block to the system.
  void release_cached() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& kv : free_) std::free(kv.second);
    free_.clear();
    cached_bytes_ = 0;
  }
  size_t cached_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_bytes_;
  }
  // Bytes in blocks handed out and not yet freed (rounded sizes), and their peak since the last
  // reset_peak_stats().
  size_t allocated_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return allocated_bytes_;
  }
  size_t peak_allocated_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_allocated_bytes_;
  }
  void reset_peak_stats() {
    std::lock_guard<std::mutex> lock(mu_);
    peak_allocated_bytes_ = allocated_bytes_;
  }
  ~CpuCachingAllocator() override { release_cached(); }

 private:
  void count_allocation(size_t n) {  // mu_ held
    allocated_bytes_ += n;
    if (allocated_bytes_ > peak_allocated_bytes_) peak_allocated_bytes_ = allocated_bytes_;
  }
  static void copy(void* d, const void* s, size_t n) {
    if (n) std::memcpy(d, s, n);
  }
  // Small sizes round to 64 bytes, larger ones to a multiple of 1/8 of their power of two, so
  // similar sizes share blocks without wasting more than 12.5%.
  static size_t round(size_t n) {
    if (n <= 512) return n == 0 ? kAlign : (n + kAlign - 1) / kAlign * kAlign;
    size_t p = 1;
    while (p < n) p <<= 1;
    const size_t step = p / 8 < kAlign ? kAlign : p / 8;
    return (n + step - 1) / step * step;
  }
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_;
  size_t cached_bytes_ = 0;
  size_t allocated_bytes_ = 0, peak_allocated_bytes_ = 0;
};

inline CpuCachingAllocator& cpu_allocator() {
  static CpuCachingAllocator a;
  return a;
}

// The CPU tensors' memory (see the top of this header).
struct CpuMemoryStats {
  size_t allocated_bytes = 0;       // held by live storages now
  size_t peak_allocated_bytes = 0;  // the most held at once since cpu_reset_peak_memory_stats()
  size_t cached_bytes = 0;          // freed blocks kept for reuse (not in allocated_bytes)
};
inline CpuMemoryStats cpu_memory_stats() {
  const CpuCachingAllocator& a = cpu_allocator();
  return {a.allocated_bytes(), a.peak_allocated_bytes(), a.cached_bytes()};
}
inline void cpu_reset_peak_memory_stats() { cpu_allocator().reset_peak_stats(); }

// One allocator slot per device type; CUDA's is filled by <graft/cuda.cuh>.
inline Allocator* g_allocators[kNumDeviceTypes] = {nullptr, nullptr};

inline Allocator& allocator_for(Device d) {
  if (d.is_cpu()) return cpu_allocator();
  Allocator* a = g_allocators[static_cast<int>(d.type)];
  GRAFT_CHECK(a != nullptr, "allocate", "CUDA backend not compiled in: include <graft/cuda.cuh> in ",
              "one .cu file compiled with nvcc and build with -DGRAFT_CUDA=ON (device ", d, ")");
  return *a;
}

// Storage: an owned block (or a borrowed one, e.g. a memory-mapped checkpoint) plus the version
// counter that every view of it shares. In-place ops bump the version; autograd checks it.
class Storage {
 public:
  Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
    data_ = nbytes ? allocator_for(device).allocate(nbytes, device) : nullptr;
    owned_ = true;
  }
  // Borrows external memory; `keep_alive` owns it (for example a memory map).
  Storage(void* data, size_t nbytes, Device device, std::shared_ptr<void> keep_alive)
      : data_(data), nbytes_(nbytes), device_(device), keep_alive_(std::move(keep_alive)) {}
  ~Storage() {
    if (owned_ && data_) allocator_for(device_).deallocate(data_, nbytes_, device_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  bool owned_ = false;
  std::shared_ptr<void> keep_alive_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace graft
