// graft/core/parallel.hpp - the one thread pool every CPU kernel uses.
//
// Size: GRAFT_NUM_THREADS if set, else the number of CPUs this process may run on (its affinity
// mask: `taskset -c 0 prog` gets 1 thread), else std::thread::hardware_concurrency().
// set_num_threads() changes it.
//
//   parallel_for(0, n, grain, [&](int64_t lo, int64_t hi) { for (i = lo; i < hi; ++i) ... });
//   parallel_for_claimed(0, n, [&](int64_t i) { ... });   coarse items, claimed one at a time
//
// Rules every kernel can rely on:
// - [begin, end) is cut into at most num_threads() contiguous chunks of at least `grain` items;
//   each item is handed to exactly one call. A kernel whose result must not depend on the thread
//   count makes each output element's arithmetic independent of where the cuts fall.
// - No nested regions: parallel_for inside a chunk runs serially in that thread.
// - Regions are never serialized behind an unrelated one: when another thread (a DataLoader worker,
//   say) holds the pool, the caller runs its range itself instead of waiting.
// - The first exception thrown by any chunk is rethrown by parallel_for, after every chunk ended.
//
// Workers spin briefly after a region before they sleep, so the back-to-back small regions of a
// batch-1 forward pass do not pay a futex wake-up each.
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace graft {

namespace parallel_detail {
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}
// A non-owning reference to a callable (int64_t lo, int64_t hi): no allocation per region.
struct RangeFn {
  const void* object = nullptr;
  void (*call)(const void*, int64_t, int64_t) = nullptr;
  void operator()(int64_t lo, int64_t hi) const { call(object, lo, hi); }
};
template <class F>
RangeFn make_range_fn(const F& f) {
  return RangeFn{&f, [](const void* o, int64_t lo, int64_t hi) { (*static_cast<const F*>(o))(lo, hi); }};
}
}  // namespace parallel_detail

class ThreadPool {
 public:
  static constexpr int kMaxThreads = 4096;  // chunks per region fit the claim word's 16 bits
  explicit ThreadPool(int n) { start(std::min(n, kMaxThreads)); }
  ~ThreadPool() { stop(); }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return int(workers_.size()) + 1; }  // the caller works too

  // Not while a region runs (tests and set-up code call it).
  void resize(int n) {
    std::lock_guard<std::mutex> region(region_mu_);
    stop();
    start(std::min(n, kMaxThreads));
  }

  // Runs fn(lo, hi) over [begin, end) (see the rules at the top); blocks until done.
  void run(int64_t begin, int64_t end, int64_t grain, parallel_detail::RangeFn fn) {
    const int64_t n = end - begin;
    if (n <= 0) return;
    const int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(grain, 1));
    const int64_t chunks = std::min<int64_t>(max_chunks, num_threads());
    if (chunks <= 1 || in_worker()) {
      fn(begin, end);
      return;
    }
    std::unique_lock<std::mutex> region(region_mu_, std::try_to_lock);
    if (!region.owns_lock()) {  // another thread's region holds the workers: do the work here
      fn(begin, end);
      return;
    }
    // Publish the job, then open it for claiming with one release store of the claim word.
    job_fn_ = fn;
    job_begin_ = begin;
    job_end_ = end;
    job_step_ = (n + chunks - 1) / chunks;
    pending_.store(chunks, std::memory_order_relaxed);
    error_ = nullptr;
    const uint64_t gen = generation_.load(std::memory_order_relaxed) + 1;
    claim_.store(claim_word(gen, chunks, 0), std::memory_order_release);
    {
      std::lock_guard<std::mutex> lock(mu_);
      generation_.store(gen, std::memory_order_release);
    }
    wake_cv_.notify_all();
    work_on_chunks(gen);
    wait_until_done();
    if (error_) std::rethrow_exception(error_);
  }

  static bool& in_worker() {
    thread_local bool w = false;
    return w;
  }

 private:
  static constexpr int kSpinRounds = 4000;  // ~0.1-0.5 ms of pause instructions before sleeping

  void start(int n) {
    quit_.store(false, std::memory_order_relaxed);
    for (int i = 0; i + 1 < n; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_.store(true, std::memory_order_relaxed);
    }
    wake_cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  void worker_loop() {
    in_worker() = true;
    uint64_t seen = generation_.load(std::memory_order_acquire);
    for (;;) {
      for (int i = 0; i < kSpinRounds && generation_.load(std::memory_order_acquire) == seen &&
                      !quit_.load(std::memory_order_relaxed);
           ++i)
        parallel_detail::cpu_relax();
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lock(mu_);
        wake_cv_.wait(lock, [&] {
          return quit_.load(std::memory_order_relaxed) || generation_.load(std::memory_order_acquire) != seen;
        });
      }
      if (quit_.load(std::memory_order_relaxed)) return;
      seen = generation_.load(std::memory_order_acquire);
      work_on_chunks(seen);
    }
  }

  // The claim word: generation (low 32 bits of it) | number of chunks (16 bits) | next chunk (16 bits).
  // Everything a claim decides on is in one atomic, so a claim succeeds only for the region it names.
  static uint64_t claim_word(uint64_t gen, int64_t chunks, int64_t next) {
    return ((gen & 0xffffffffu) << 32) | (uint64_t(chunks) << 16) | uint64_t(next);
  }

  // Claims chunks of region `gen` until none is left. A worker that wakes late, after region gen
  // ended, fails the generation check of the claim and returns without touching the job.
  void work_on_chunks(uint64_t gen) {
    const bool was_worker = in_worker();
    in_worker() = true;
    const uint64_t tag = gen & 0xffffffffu;
    for (;;) {
      uint64_t cur = claim_.load(std::memory_order_acquire);
      int64_t chunk = -1;
      while ((cur >> 32) == tag && (cur & 0xffffu) < ((cur >> 16) & 0xffffu)) {
        if (claim_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel)) {
          chunk = int64_t(cur & 0xffffu);
          break;
        }
      }
      if (chunk < 0) break;
      // The job fields are stable here: the region cannot end before this claimed chunk is done.
      const int64_t lo = job_begin_ + chunk * job_step_;
      const int64_t hi = std::min(job_end_, lo + job_step_);
      try {
        if (lo < hi) job_fn_(lo, hi);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu_);
        if (!error_) error_ = std::current_exception();
      }
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mu_);
        done_cv_.notify_all();
      }
    }
    in_worker() = was_worker;
  }

  void wait_until_done() {
    for (int i = 0; i < kSpinRounds && pending_.load(std::memory_order_acquire) != 0; ++i) parallel_detail::cpu_relax();
    if (pending_.load(std::memory_order_acquire) == 0) return;
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  }

  std::vector<std::thread> workers_;
  std::mutex region_mu_;  // held by the thread whose region owns the workers
  std::mutex mu_;         // guards sleeping and waking (wake_cv_, done_cv_)
  std::mutex error_mu_;
  std::condition_variable wake_cv_, done_cv_;
  std::atomic<bool> quit_{false};
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> pending_{0};
  parallel_detail::RangeFn job_fn_;
  int64_t job_begin_ = 0, job_end_ = 0, job_step_ = 1;
  std::exception_ptr error_;
};

// The CPUs this process may run on (sched_getaffinity), else hardware_concurrency(), at least 1.
inline int available_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned h = std::thread::hardware_concurrency();
  return h ? int(h) : 1;
}

inline int default_num_threads() {
  if (const char* s = std::getenv("GRAFT_NUM_THREADS")) {
    const int n = std::atoi(s);
    if (n > 0) return n;
  }
  return available_cpus();
}

inline ThreadPool& thread_pool() {
  static ThreadPool pool(default_num_threads());
  return pool;
}
inline int get_num_threads() { return thread_pool().num_threads(); }
inline void set_num_threads(int n) { thread_pool().resize(std::max(1, n)); }

template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, F&& fn) {
  if (end - begin <= grain) {
    fn(begin, end);
    return;
  }
  thread_pool().run(begin, end, grain, parallel_detail::make_range_fn(fn));
}

// fn(i) for every i in [begin, end), each item claimed one at a time by whichever thread is free,
// in increasing order. For a few coarse items (the images of a batch, a GEMM's column slabs): on
// these shared machines one core often runs slower than the other, and parallel_for's contiguous
// chunks would wait for it. Each item still goes to exactly one call; inside a region it runs
// serially, like parallel_for.
template <class F>
void parallel_for_claimed(int64_t begin, int64_t end, F&& fn) {
  const int64_t threads = std::min<int64_t>(end - begin, get_num_threads());
  if (threads <= 1 || ThreadPool::in_worker()) {
    for (int64_t i = begin; i < end; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next{begin};
  parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < end;
         i = next.fetch_add(1, std::memory_order_relaxed))
      fn(i);
  });
}

}  // namespace graft
