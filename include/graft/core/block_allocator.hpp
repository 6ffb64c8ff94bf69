// graft/core/block_allocator.hpp - the bookkeeping of a caching device allocator, apart from the
// device: big segments from a backend (cudaMalloc for the CUDA allocator, a fake in the tests) are cut
// into blocks; a freed block goes back to its stream's pool, merged with the free blocks beside it,
// and is handed out again. The device is asked again only when no cached block fits.
//
// The policy is PyTorch's CUDA caching allocator's (c10/cuda/CUDACachingAllocator.cpp), so the
// memory a model takes is what PyTorch users expect:
//   - request sizes round up to 512 bytes (kMinBlock): every block stays 512-byte aligned;
//   - small requests (<= 1 MiB) are cut from 2 MiB segments, requests up to 10 MiB from 20 MiB
//     segments, larger ones get a segment of their own size rounded up to 2 MiB (segment_size);
//   - the free block chosen is the smallest one of the stream that fits; it is split when the rest is
//     worth keeping: at least 512 bytes in the small pool, more than 1 MiB in the large one;
//   - a block belongs to the stream it was allocated on, and is reused only on that stream: work still
//     queued on the stream may be using it after the host freed it, and only that stream's later work
//     is ordered after that;
//   - when the backend has no memory left, every segment without a block in use is returned to it and
//     the request is tried once more, then it throws, naming the size, the device and the statistics;
//   - empty_cache() returns every segment without a block in use.
//
//   BlockAllocator alloc(backend, "cuda:0");
//   void* p = alloc.allocate(nbytes, stream);   // stream: an opaque id (cudaStream_t), 0 = default
//   alloc.deallocate(p);                        // throws for a pointer it did not hand out
//   alloc.stats();                              // current and peak bytes, counts (BlockAllocatorStats)
//
// Thread-safe (one mutex). The blocks and segments are host-side records; the backend is called with
// the lock held, so it must not call back into the allocator.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "graft/core/error.hpp"

namespace graft {

// Where the segments come from. alloc returns nullptr when the device is out of memory (any other
// failure throws); free gets back exactly the pointers alloc returned.
struct SegmentBackend {
  virtual ~SegmentBackend() = default;
  virtual void* alloc(size_t nbytes) = 0;
  virtual void free(void* p) = 0;
};

struct BlockAllocatorStats {
  size_t allocated_bytes = 0, peak_allocated_bytes = 0;  // in blocks handed out (rounded sizes)
  size_t requested_bytes = 0;                            // what the callers asked for, in use now
  size_t reserved_bytes = 0, peak_reserved_bytes = 0;    // in segments held from the backend
  int64_t active_blocks = 0, segments = 0;
  int64_t allocations = 0;     // allocate calls that returned a block
  int64_t cache_hits = 0;      // ... of them served from a cached free block, without the backend
  int64_t backend_allocs = 0, backend_frees = 0;
  int64_t oom_retries = 0;     // backend out of memory, cache released and tried again
};

class BlockAllocator {
 public:
  static constexpr size_t kMinBlock = 512;                 // rounding and alignment of every block
  static constexpr size_t kSmallRequest = size_t(1) << 20;  // <= this: the small pool
  static constexpr size_t kSmallSegment = size_t(2) << 20;
  static constexpr size_t kLargeSegment = size_t(20) << 20;
  static constexpr size_t kOwnSegmentFrom = size_t(10) << 20;  // >= this: a segment of its own
  static constexpr size_t kRoundLarge = size_t(2) << 20;

  BlockAllocator(SegmentBackend& backend, std::string device_name)
      : backend_(backend), device_(std::move(device_name)) {}
  BlockAllocator(const BlockAllocator&) = delete;
  BlockAllocator& operator=(const BlockAllocator&) = delete;
  // Returns every segment. Blocks still in use are a caller's leak; their memory goes back too.
  ~BlockAllocator() {
    for (auto& seg : segments_) backend_.free(seg.second->ptr);
  }

  static size_t round_size(size_t nbytes) {
    return nbytes < kMinBlock ? kMinBlock : (nbytes + kMinBlock - 1) / kMinBlock * kMinBlock;
  }
  // The segment a request of `size` (rounded) bytes is cut from when no cached block fits.
  static size_t segment_size(size_t size) {
    if (size <= kSmallRequest) return kSmallSegment;
    if (size < kOwnSegmentFrom) return kLargeSegment;
    return (size + kRoundLarge - 1) / kRoundLarge * kRoundLarge;
  }

  // A block of at least nbytes (0 gives a 512-byte block, so every pointer is distinct), 512-byte
  // aligned relative to the segment's start, for use on `stream`.
  void* allocate(size_t nbytes, uintptr_t stream = 0) {
    GRAFT_CHECK(nbytes <= (size_t(1) << 50), "BlockAllocator", device_, ": request of ", nbytes, " bytes is too large");
    const size_t size = round_size(nbytes);
    const bool small = size <= kSmallRequest;
    std::lock_guard<std::mutex> lock(mu_);
    Block* b = take_free(small, stream, size);
    if (b) {
      ++stats_.cache_hits;
    } else {
      b = new_segment(small, stream, size);
    }
    if (b->size - size >= split_threshold(small)) split(b, size);
    b->allocated = true;
    b->requested = nbytes;
    allocated_.emplace(b->ptr, b);
    stats_.allocated_bytes += b->size;
    stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
    stats_.requested_bytes += nbytes;
    ++stats_.active_blocks;
    ++stats_.allocations;
    return b->ptr;
  }

  void deallocate(void* p) {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = allocated_.find(static_cast<char*>(p));
    GRAFT_CHECK(it != allocated_.end(), "BlockAllocator", device_, ": free of ", p,
                ", which this allocator did not hand out or was freed already");
    Block* b = it->second;
    allocated_.erase(it);
    stats_.allocated_bytes -= b->size;
    stats_.requested_bytes -= b->requested;
    --stats_.active_blocks;
    b->allocated = false;
    b->requested = 0;
    b = merge_with_free_neighbours(b);
    pool(b->small).insert(b);
  }

  // Returns every segment that has no block in use to the backend.
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_unused_segments();
  }

  BlockAllocatorStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_peak_stats() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_allocated_bytes = stats_.allocated_bytes;
    stats_.peak_reserved_bytes = stats_.reserved_bytes;
  }
  // The size of the block p points to (rounded), for callers and tests; throws for unknown pointers.
  size_t block_size(const void* p) const {
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = allocated_.find(static_cast<char*>(const_cast<void*>(p)));
    GRAFT_CHECK(it != allocated_.end(), "BlockAllocator", device_, ": ", p, " is not an allocated block");
    return it->second->size;
  }

  // The invariants, for the tests: each segment is tiled by its blocks, in address order, with
  // consistent neighbour links; no two free blocks are neighbours (they would have been merged); the
  // pools hold exactly the free blocks; the byte counts add up. Throws naming the first broken one.
  void check_invariants() const {
    std::lock_guard<std::mutex> lock(mu_);
    size_t reserved = 0, allocated = 0;
    int64_t active = 0;
    size_t free_blocks = 0;
    for (const auto& [base, seg] : segments_) {
      reserved += seg->segment_size;
      GRAFT_CHECK(seg->prev == nullptr, "BlockAllocator invariant", "a segment's first block has a prev");
      size_t covered = 0;
      for (const Block* b = seg; b; b = b->next) {
        GRAFT_CHECK(b->ptr == seg->ptr + covered, "BlockAllocator invariant", "block at ", static_cast<void*>(b->ptr),
                    " leaves a gap or overlaps in its segment");
        GRAFT_CHECK(b->size % kMinBlock == 0 && b->size > 0, "BlockAllocator invariant", "block size ", b->size);
        GRAFT_CHECK(!b->next || b->next->prev == b, "BlockAllocator invariant", "broken neighbour link");
        GRAFT_CHECK(b->stream == seg->stream && b->small == seg->small, "BlockAllocator invariant",
                    "a block's stream or pool differs from its segment's");
        if (b->allocated) {
          allocated += b->size;
          ++active;
          GRAFT_CHECK(allocated_.count(b->ptr) == 1, "BlockAllocator invariant", "allocated block not indexed");
        } else {
          ++free_blocks;
          GRAFT_CHECK(pool(b->small).count(const_cast<Block*>(b)) == 1, "BlockAllocator invariant",
                      "free block missing from its pool");
          GRAFT_CHECK(!b->next || b->next->allocated, "BlockAllocator invariant", "two free neighbours not merged");
        }
        covered += b->size;
      }
      GRAFT_CHECK(covered == seg->segment_size, "BlockAllocator invariant", "blocks cover ", covered, " of a ",
                  seg->segment_size, "-byte segment");
    }
    GRAFT_CHECK(free_blocks == small_pool_.size() + large_pool_.size(), "BlockAllocator invariant",
                "pools hold ", small_pool_.size() + large_pool_.size(), " blocks, segments have ", free_blocks, " free");
    GRAFT_CHECK(reserved == stats_.reserved_bytes && allocated == stats_.allocated_bytes &&
                    active == stats_.active_blocks && int64_t(segments_.size()) == stats_.segments,
                "BlockAllocator invariant", "statistics disagree with the blocks");
  }

 private:
  struct Block {
    char* ptr = nullptr;
    size_t size = 0;
    size_t segment_size = 0;  // on a segment's first block only: the whole segment's size
    uintptr_t stream = 0;
    bool small = false, allocated = false;
    size_t requested = 0;
    Block *prev = nullptr, *next = nullptr;  // neighbours in the segment, by address
  };
  // Free blocks by (stream, size, address): lower_bound gives the stream's smallest block that fits.
  struct BySize {
    bool operator()(const Block* a, const Block* b) const {
      if (a->stream != b->stream) return a->stream < b->stream;
      if (a->size != b->size) return a->size < b->size;
      return a->ptr < b->ptr;
    }
  };
  using Pool = std::set<Block*, BySize>;

  static size_t split_threshold(bool small) { return small ? kMinBlock : kSmallRequest + 1; }
  Pool& pool(bool small) { return small ? small_pool_ : large_pool_; }
  const Pool& pool(bool small) const { return small ? small_pool_ : large_pool_; }

  Block* take_free(bool small, uintptr_t stream, size_t size) {
    Pool& p = pool(small);
    Block key;
    key.stream = stream;
    key.size = size;
    const auto it = p.lower_bound(&key);
    if (it == p.end() || (*it)->stream != stream) return nullptr;
    Block* b = *it;
    p.erase(it);
    return b;
  }

  Block* new_segment(bool small, uintptr_t stream, size_t size) {
    const size_t seg = segment_size(size);
    void* mem = backend_.alloc(seg);
    if (!mem) {
      ++stats_.oom_retries;
      release_unused_segments();
      mem = backend_.alloc(seg);
    }
    GRAFT_CHECK(mem != nullptr, "BlockAllocator", device_, ": out of memory allocating ", size, " bytes (a ", seg,
                "-byte segment); ", stats_.allocated_bytes, " bytes in use in ", stats_.active_blocks, " blocks, ",
                stats_.reserved_bytes, " reserved in ", stats_.segments, " segments (the unused ones were released first)");
    auto owner = std::make_unique<Block>();
    Block* b = owner.get();
    b->ptr = static_cast<char*>(mem);
    b->size = b->segment_size = seg;
    b->stream = stream;
    b->small = small;
    blocks_.emplace(b, std::move(owner));
    segments_.emplace(b->ptr, b);
    ++stats_.backend_allocs;
    ++stats_.segments;
    stats_.reserved_bytes += seg;
    stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
    return b;
  }

  // b keeps its first `size` bytes; the rest becomes a free block after it.
  void split(Block* b, size_t size) {
    auto owner = std::make_unique<Block>();
    Block* rest = owner.get();
    rest->ptr = b->ptr + size;
    rest->size = b->size - size;
    rest->stream = b->stream;
    rest->small = b->small;
    rest->prev = b;
    rest->next = b->next;
    if (b->next) b->next->prev = rest;
    b->next = rest;
    b->size = size;
    blocks_.emplace(rest, std::move(owner));
    pool(rest->small).insert(rest);
  }

  // Absorbs the free neighbours of the free block b (taking them out of the pool); returns the
  // merged block (b, or its previous neighbour when that was free).
  Block* merge_with_free_neighbours(Block* b) {
    if (b->next && !b->next->allocated) {
      Block* n = b->next;
      pool(n->small).erase(n);
      b->size += n->size;
      b->next = n->next;
      if (n->next) n->next->prev = b;
      blocks_.erase(n);
    }
    if (b->prev && !b->prev->allocated) {
      Block* p = b->prev;
      pool(p->small).erase(p);
      p->size += b->size;
      p->next = b->next;
      if (b->next) b->next->prev = p;
      blocks_.erase(b);
      b = p;
    }
    return b;
  }

  void release_unused_segments() {
    for (auto it = segments_.begin(); it != segments_.end();) {
      Block* b = it->second;
      if (b->allocated || b->next) {  // a block in use, or a free block with a neighbour in use
        ++it;
        continue;
      }
      pool(b->small).erase(b);
      backend_.free(b->ptr);
      ++stats_.backend_frees;
      --stats_.segments;
      stats_.reserved_bytes -= b->segment_size;
      blocks_.erase(b);
      it = segments_.erase(it);
    }
  }

  SegmentBackend& backend_;
  std::string device_;
  mutable std::mutex mu_;
  std::unordered_map<Block*, std::unique_ptr<Block>> blocks_;  // owns every block record
  std::map<char*, Block*> segments_;                           // first block of each segment
  std::unordered_map<char*, Block*> allocated_;                // blocks in use, by pointer
  Pool small_pool_, large_pool_;
  BlockAllocatorStats stats_;
};

}  // namespace graft
