// graft/core/parallel.hpp - the one thread pool every CPU kernel uses.
//
// Size: GRAFT_NUM_THREADS if set, else std::thread::hardware_concurrency(). set_num_threads()
// changes it. parallel_for called from inside a pool task runs serially (no nested regions).
//
//   parallel_for(0, n, grain, [&](int64_t lo, int64_t hi) { for (i = lo; i < hi; ++i) ... });
#pragma once
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace graft {

class ThreadPool {
 public:
  explicit ThreadPool(int n) { start(n); }
  ~ThreadPool() { stop(); }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return int(workers_.size()) + 1; }  // the caller works too

  void resize(int n) {
    stop();
    start(n);
  }

  // Runs fn(lo, hi) over [begin, end) split into chunks of at least `grain`; blocks until done.
  // The first exception thrown by any chunk is rethrown here.
  void run(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    const int64_t n = end - begin;
    if (n <= 0) return;
    const int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(grain, 1));
    const int64_t chunks = std::min<int64_t>(max_chunks, num_threads());
    if (chunks <= 1 || in_worker()) {
      fn(begin, end);
      return;
    }
    std::unique_lock<std::mutex> call_lock(call_mu_);  // one parallel region at a time
    const int64_t step = (n + chunks - 1) / chunks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &fn;
      job_begin_ = begin;
      job_end_ = end;
      job_step_ = step;
      next_chunk_ = 0;
      num_chunks_ = chunks;
      pending_ = chunks;
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    work_on_chunks(true);
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  static bool& in_worker() {
    thread_local bool w = false;
    return w;
  }

 private:
  void start(int n) {
    quit_ = false;
    for (int i = 0; i + 1 < n; ++i)
      workers_.emplace_back([this] {
        in_worker() = true;
        uint64_t seen = 0;
        for (;;) {
          {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return quit_ || generation_ != seen; });
            if (quit_) return;
            seen = generation_;
          }
          work_on_chunks(false);
        }
      });
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }
  void work_on_chunks(bool caller) {
    const bool was = in_worker();
    if (caller) in_worker() = true;
    for (;;) {
      int64_t c;
      const std::function<void(int64_t, int64_t)>* job;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (job_ == nullptr || next_chunk_ >= num_chunks_) break;
        c = next_chunk_++;
        job = job_;
      }
      const int64_t lo = job_begin_ + c * job_step_;
      const int64_t hi = std::min(job_end_, lo + job_step_);
      try {
        if (lo < hi) (*job)(lo, hi);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error_) error_ = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
    if (caller) in_worker() = was;
  }

  std::vector<std::thread> workers_;
  std::mutex mu_, call_mu_;
  std::condition_variable cv_, done_cv_;
  bool quit_ = false;
  uint64_t generation_ = 0;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_begin_ = 0, job_end_ = 0, job_step_ = 1, next_chunk_ = 0, num_chunks_ = 0, pending_ = 0;
  std::exception_ptr error_;
};

inline int default_num_threads() {
  if (const char* s = std::getenv("GRAFT_NUM_THREADS")) {
    const int n = std::atoi(s);
    if (n > 0) return n;
  }
  const unsigned h = std::thread::hardware_concurrency();
  return h ? int(h) : 1;
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
  thread_pool().run(begin, end, grain, std::function<void(int64_t, int64_t)>(std::forward<F>(fn)));
}

}  // namespace graft
