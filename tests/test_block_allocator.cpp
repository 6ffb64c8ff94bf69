// BlockAllocator (graft/core/block_allocator.hpp), the bookkeeping of the CUDA caching allocator,
// tested on the host: its segments come from a fake backend over malloc that can run out of memory.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <map>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "graft/core/block_allocator.hpp"

using namespace graft;

namespace block_allocator_test {

constexpr size_t KiB = 1024, MiB = 1024 * 1024;

// Segments from malloc, at most `budget` bytes held at once (then alloc answers nullptr, as
// cudaMalloc's cudaErrorMemoryAllocation); counts what it was asked. The allocator calls it under its
// lock, so it needs none; `misuse` records a free of something it did not return (checked by the
// tests, since Catch2's assertions are not for other threads).
struct FakeBackend final : SegmentBackend {
  size_t budget = size_t(1) << 40, held = 0;
  int allocs = 0, frees = 0;
  bool misuse = false;
  std::map<void*, size_t> live;
  ~FakeBackend() override {
    for (auto& kv : live) std::free(kv.first);
  }
  void* alloc(size_t n) override {
    if (held + n > budget) return nullptr;
    void* p = std::malloc(n);  // untouched pages: virtual memory only
    if (!p) return nullptr;
    live.emplace(p, n);
    held += n;
    ++allocs;
    return p;
  }
  void free(void* p) override {
    const auto it = live.find(p);
    if (it == live.end()) {  // only what alloc returned, once
      misuse = true;
      return;
    }
    held -= it->second;
    live.erase(it);
    std::free(p);
    ++frees;
  }
};

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace block_allocator_test

using namespace block_allocator_test;

TEST_CASE("BlockAllocator rounds requests and sizes segments as PyTorch's CUDA allocator", "[block_allocator]") {
  CHECK(BlockAllocator::round_size(0) == 512);
  CHECK(BlockAllocator::round_size(1) == 512);
  CHECK(BlockAllocator::round_size(512) == 512);
  CHECK(BlockAllocator::round_size(513) == 1024);
  CHECK(BlockAllocator::segment_size(512) == 2 * MiB);
  CHECK(BlockAllocator::segment_size(1 * MiB) == 2 * MiB);
  CHECK(BlockAllocator::segment_size(1 * MiB + 512) == 20 * MiB);
  CHECK(BlockAllocator::segment_size(10 * MiB - 512) == 20 * MiB);
  CHECK(BlockAllocator::segment_size(10 * MiB) == 10 * MiB);
  CHECK(BlockAllocator::segment_size(11 * MiB + 512) == 12 * MiB);
}

TEST_CASE("BlockAllocator cuts small blocks from one segment, merges them back and reuses them", "[block_allocator]") {
  FakeBackend be;
  BlockAllocator a(be, "fake:0");
  std::vector<char*> p;
  for (size_t n : {size_t(100), size_t(512), size_t(513), size_t(4000), 64 * KiB}) p.push_back(static_cast<char*>(a.allocate(n)));
  a.check_invariants();
  CHECK(be.allocs == 1);  // one 2 MiB segment holds them all
  // Consecutive, each 512-aligned relative to the segment and as long as its rounded request.
  CHECK(p[1] == p[0] + 512);
  CHECK(p[2] == p[1] + 512);
  CHECK(p[3] == p[2] + 1024);
  CHECK(p[4] == p[3] + 4096);
  CHECK(a.block_size(p[2]) == 1024);
  BlockAllocatorStats s = a.stats();
  CHECK(s.allocated_bytes == 512 + 512 + 1024 + 4096 + 64 * KiB);
  CHECK(s.requested_bytes == 100 + 512 + 513 + 4000 + 64 * KiB);
  CHECK(s.reserved_bytes == 2 * MiB);
  CHECK(s.active_blocks == 5);
  // Freed out of order, every block merges with its free neighbours: one free block again.
  for (int i : {1, 3, 0, 4, 2}) {
    a.deallocate(p[size_t(i)]);
    a.check_invariants();
  }
  s = a.stats();
  CHECK(s.allocated_bytes == 0);
  CHECK(s.requested_bytes == 0);
  CHECK(s.active_blocks == 0);
  CHECK(s.reserved_bytes == 2 * MiB);  // cached, not returned
  // The same requests again come from the cache, at the same addresses.
  std::vector<char*> q;
  for (size_t n : {size_t(100), size_t(512), size_t(513), size_t(4000), 64 * KiB}) q.push_back(static_cast<char*>(a.allocate(n)));
  CHECK(q == p);
  CHECK(be.allocs == 1);
  CHECK(a.stats().cache_hits == 5 + 4);  // the first round's last four were cut from the fresh segment's rest
  for (char* x : q) a.deallocate(x);
  a.check_invariants();
}

TEST_CASE("BlockAllocator takes the smallest free block that fits", "[block_allocator]") {
  FakeBackend be;
  BlockAllocator a(be, "fake:0");
  // Blocks of 8, 1, 4 KiB separated by blocks kept in use, so the free ones cannot merge.
  void* big = a.allocate(8 * KiB);
  void* sep1 = a.allocate(512);
  void* one = a.allocate(1 * KiB);
  void* sep2 = a.allocate(512);
  void* four = a.allocate(4 * KiB);
  void* sep3 = a.allocate(512);
  a.deallocate(big);
  a.deallocate(one);
  a.deallocate(four);
  a.check_invariants();
  CHECK(a.allocate(3 * KiB) == four);  // 4 KiB fits best (8 KiB and the segment's rest are larger)
  CHECK(a.allocate(1 * KiB) == one);
  CHECK(a.allocate(6 * KiB) == big);
  a.check_invariants();
  CHECK(be.allocs == 1);
  (void)sep1, (void)sep2, (void)sep3;
}

TEST_CASE("BlockAllocator splits large blocks only when more than 1 MiB is left", "[block_allocator]") {
  FakeBackend be;
  BlockAllocator a(be, "fake:0");
  void* x = a.allocate(3 * MiB / 2);  // a 20 MiB segment: 18.5 MiB left, split off
  CHECK(a.block_size(x) == 3 * MiB / 2);
  void* y = a.allocate(18 * MiB);  // fits the 18.5 MiB rest; 0.5 MiB would be left: not split
  CHECK(static_cast<char*>(y) == static_cast<char*>(x) + 3 * MiB / 2);
  CHECK(a.block_size(y) == 18 * MiB + MiB / 2);
  CHECK(be.allocs == 1);
  void* z = a.allocate(12 * MiB);  // nothing free fits: a segment of its own, exactly 12 MiB
  CHECK(a.block_size(z) == 12 * MiB);
  CHECK(be.allocs == 2);
  a.deallocate(y);
  void* w = a.allocate(2 * MiB);  // from y's 18.5 MiB block: 16.5 MiB left, split off
  CHECK(w == y);
  CHECK(a.block_size(w) == 2 * MiB);
  a.check_invariants();
  CHECK(a.stats().reserved_bytes == 32 * MiB);
  // Small requests never come from the large pool's free space.
  void* s = a.allocate(1000);
  CHECK(be.allocs == 3);
  CHECK(a.stats().reserved_bytes == 34 * MiB);
  for (void* p : {x, z, w, s}) a.deallocate(p);
  a.check_invariants();
}

TEST_CASE("BlockAllocator reuses a block only on the stream it was allocated on", "[block_allocator]") {
  FakeBackend be;
  BlockAllocator a(be, "fake:0");
  void* p = a.allocate(4 * KiB, /*stream=*/1);
  a.deallocate(p);
  void* q = a.allocate(4 * KiB, /*stream=*/2);  // stream 2 may not take stream 1's block
  CHECK(q != p);
  CHECK(be.allocs == 2);
  void* r = a.allocate(4 * KiB, /*stream=*/1);
  CHECK(r == p);
  CHECK(be.allocs == 2);
  a.deallocate(q);
  a.deallocate(r);
  a.check_invariants();
}

TEST_CASE("BlockAllocator empty_cache returns only segments with no block in use", "[block_allocator]") {
  FakeBackend be;
  BlockAllocator a(be, "fake:0");
  void* small = a.allocate(1000);
  void* small2 = a.allocate(1000);
  void* large = a.allocate(12 * MiB);
  a.deallocate(large);
  a.deallocate(small);
  CHECK(a.stats().reserved_bytes == 14 * MiB);
  a.empty_cache();
  a.check_invariants();
  CHECK(be.frees == 1);  // the 12 MiB segment; the small one still holds small2
  CHECK(a.stats().reserved_bytes == 2 * MiB);
  a.deallocate(small2);
  a.empty_cache();
  CHECK(be.frees == 2);
  CHECK(be.live.empty());
  const BlockAllocatorStats s = a.stats();
  CHECK(s.reserved_bytes == 0);
  CHECK(s.segments == 0);
  CHECK(s.peak_reserved_bytes == 14 * MiB);
  CHECK(s.peak_allocated_bytes == 12 * MiB + 2 * 1024);
}

TEST_CASE("BlockAllocator releases the cache and retries when the backend runs out, then names the failure",
          "[block_allocator]") {
  FakeBackend be;
  be.budget = 30 * MiB;
  BlockAllocator a(be, "fake:3");
  void* p = a.allocate(16 * MiB);
  a.deallocate(p);  // 16 MiB cached
  void* q = a.allocate(20 * MiB);  // 16 + 20 > 30: the cached segment is returned, then it fits
  CHECK(a.stats().oom_retries == 1);
  CHECK(be.frees == 1);
  a.check_invariants();
  const std::string msg = what_of([&] { (void)a.allocate(12 * MiB); });
  CHECK(msg.find("fake:3") != std::string::npos);
  CHECK(msg.find("out of memory allocating 12582912 bytes") != std::string::npos);
  CHECK(msg.find("20971520 bytes in use") != std::string::npos);
  a.check_invariants();  // the failed request left nothing behind
  a.deallocate(q);
  a.check_invariants();
  CHECK(!be.misuse);
}

TEST_CASE("BlockAllocator refuses pointers it did not hand out", "[block_allocator]") {
  FakeBackend be;
  BlockAllocator a(be, "fake:0");
  char* p = static_cast<char*>(a.allocate(2000));
  CHECK(what_of([&] { a.deallocate(p + 512); }).find("did not hand out or was freed already") != std::string::npos);
  a.deallocate(p);
  CHECK(what_of([&] { a.deallocate(p); }).find("did not hand out or was freed already") != std::string::npos);
  CHECK_THROWS(a.block_size(p));
  a.deallocate(nullptr);  // a no-op, as free(nullptr)
  a.check_invariants();
}

TEST_CASE("BlockAllocator keeps its invariants under random traffic on several streams and threads",
          "[block_allocator]") {
  FakeBackend be;
  BlockAllocator a(be, "fake:0");
  std::atomic<int> overlaps{0};
  struct Live {
    unsigned char* p;
    size_t n;
    unsigned char tag;
  };
  // Each thread tags the first and last byte of its blocks and checks them before freeing: two live
  // blocks that overlapped would overwrite each other's tags.
  auto intact = [&](const Live& l) {
    if (l.n && (l.p[0] != l.tag || l.p[l.n - 1] != l.tag)) ++overlaps;
  };
  auto traffic = [&](unsigned seed, int steps, bool check) {
    std::mt19937 rng(seed);
    std::vector<Live> live;
    for (int step = 0; step < steps; ++step) {
      if (live.empty() || rng() % 5 < 3) {
        const unsigned kind = rng() % 10;
        const size_t n = kind < 6 ? rng() % (64 * KiB) : kind < 9 ? rng() % (4 * MiB) : rng() % (24 * MiB);
        const unsigned char tag = static_cast<unsigned char>(rng());
        auto* p = static_cast<unsigned char*>(a.allocate(n, rng() % 3));
        if (n) p[0] = p[n - 1] = tag;
        live.push_back({p, n, tag});
        if (live.size() > 40) {
          Live l = live.front();
          live.erase(live.begin());
          intact(l);
          a.deallocate(l.p);
        }
      } else {
        const size_t i = rng() % live.size();
        intact(live[i]);
        a.deallocate(live[i].p);
        live.erase(live.begin() + std::ptrdiff_t(i));
      }
      if (check && step % 16 == 0) a.check_invariants();
      if (step % 500 == 499) a.empty_cache();
    }
    for (const Live& l : live) {
      intact(l);
      a.deallocate(l.p);
    }
  };
  traffic(1, 3000, true);
  a.check_invariants();
  CHECK(a.stats().allocated_bytes == 0);
  CHECK(a.stats().cache_hits > 0);
  std::thread t1(traffic, 2u, 2000, false), t2(traffic, 3u, 2000, false);
  t1.join();
  t2.join();
  a.check_invariants();
  CHECK(a.stats().active_blocks == 0);
  a.empty_cache();
  CHECK(be.live.empty());
  CHECK(overlaps == 0);
  CHECK(!be.misuse);
}
