// graft/data/loader.hpp - DataLoader: batches of a Dataset, shuffled per epoch, optionally loaded by
// background threads (torch.utils.data.DataLoader).
//
// Not part of graft.hpp.
//
//   auto ds = std::make_shared<graft::data::ImageFolder>("photos/train", train_tf);
//   graft::data::DataLoader loader(ds, {.batch_size = 32, .shuffle = true, .seed = 0, .num_workers = 4});
//   for (int epoch = 0; epoch < 10; ++epoch)
//     for (const graft::data::Batch& b : loader) {  // b.inputs [B, 3, 224, 224], b.labels [B] int64
//       ...
//     }
//
// Contracts:
//   Epochs: every iteration (begin()) is a new epoch: it uses epoch() and then advances it by one;
//     set_epoch(e) picks the epoch of the next iteration (as DistributedSampler.set_epoch). With
//     shuffle, the order is random_permutation(N, Generator(seed + epoch)); without, 0..N-1.
//   Example randomness: example i of epoch e is loaded as dataset.get(i, gen) with
//     gen = Generator(example_seed(seed, e, i)), so batches are identical for any num_workers.
//   Labels: with num_classes > 0 a label outside [0, num_classes) fails its batch (graft::Error naming
//     the label, its batch position, dataset index and the range), re-thrown as below.
//   Batches: consecutive batch_size slices of the order; the last is smaller unless drop_last
//     drops it; size() counts them. inputs = stack of the example inputs ([B, ...]); examples of
//     one batch must share shape and dtype (else graft::Error naming both shapes and indices).
//   Threads: num_workers = 0 loads each batch in the consumer thread when it is reached.
//     num_workers > 0 starts that many std::threads per iteration; they claim batches in order and
//     at most num_workers * prefetch batches are loaded ahead of the consumer. Batches are delivered
//     in order. An exception thrown while loading batch k is re-thrown by the consumer when it
//     reaches batch k (same type when it is a graft::Error, message kept). Leaving the loop early
//     (break, or an exception) destroys the iterator, which stops and joins its threads; the
//     iterator owns everything the threads use (the dataset by shared_ptr), so the DataLoader
//     itself may be destroyed first. Datasets must make get() thread-safe (graft/data/dataset.hpp).
#pragma once
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "graft/data/dataset.hpp"
#include "graft/graft.hpp"

namespace graft::data {

struct LoaderOptions {
  int64_t batch_size = 1;
  bool shuffle = false;
  bool drop_last = false;
  uint64_t seed = 0;
  int num_workers = 0;
  int prefetch = 2;  // batches each worker may load ahead (PyTorch's prefetch_factor)
  // > 0: every label must be in [0, num_classes), else loading the batch throws graft::Error naming
  // the label, its position in the batch, its dataset index and the valid range. 0: not checked.
  int64_t num_classes = 0;
};

struct Batch {
  Tensor inputs;                 // [B, ...] the stacked example inputs
  Tensor labels;                 // [B] int64
  std::vector<int64_t> indices;  // the dataset indices of the B examples
};

// Loads the examples `indices` of `epoch` (each drawing from Generator(example_seed(seed, epoch,
// index))) and stacks them into one batch.
inline Batch load_batch(const Dataset& dataset, const std::vector<int64_t>& indices, uint64_t seed, int64_t epoch,
                        int64_t num_classes = 0) {
  GRAFT_CHECK(!indices.empty(), "DataLoader", "a batch needs at least one example");
  NoGradGuard no_grad;
  std::vector<Tensor> inputs;
  std::vector<int64_t> labels;
  inputs.reserve(indices.size());
  labels.reserve(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) {
    Generator gen(example_seed(seed, epoch, indices[k]));
    Example ex = dataset.get(indices[k], gen);
    GRAFT_CHECK(ex.input.defined(), "DataLoader", "dataset index ", indices[k], " returned an undefined input");
    GRAFT_CHECK(k == 0 || ex.input.shape() == inputs.front().shape(), "DataLoader", "example ", k,
                " of the batch (dataset index ", indices[k], ") has input shape ", ex.input.shape().str(),
                " but example 0 (dataset index ", indices[0], ") has ", inputs.front().shape().str(),
                "; resize or crop the inputs to one size");
    GRAFT_CHECK(k == 0 || ex.input.dtype() == inputs.front().dtype(), "DataLoader", "example ", k,
                " of the batch (dataset index ", indices[k], ") has dtype ", dtype_name(ex.input.dtype()),
                " but example 0 (dataset index ", indices[0], ") has ", dtype_name(inputs.front().dtype()));
    GRAFT_CHECK(num_classes <= 0 || (ex.label >= 0 && ex.label < num_classes), "DataLoader", "label ", ex.label,
                " of example ", k, " of the batch (dataset index ", indices[k], ") is out of range for ", num_classes,
                " classes (expected in [0, ", num_classes - 1, "])");
    inputs.push_back(ex.input.detach().contiguous());
    labels.push_back(ex.label);
  }
  Batch b;
  b.inputs = stack(inputs, 0);
  b.labels = from_vector(labels, Shape{int64_t(labels.size())});
  b.indices = indices;
  return b;
}

namespace detail_loader {

// One iteration over the loader: the epoch's batch plan and, with num_workers > 0, the threads that
// load it. Destruction stops and joins the threads.
class EpochRun {
 public:
  EpochRun(std::shared_ptr<const Dataset> dataset, const LoaderOptions& opt, int64_t epoch,
           std::vector<std::vector<int64_t>> plan)
      : dataset_(std::move(dataset)), opt_(opt), epoch_(epoch), plan_(std::move(plan)) {
    capacity_ = int64_t(opt_.num_workers) * opt_.prefetch;
    const int64_t threads = std::min<int64_t>(opt_.num_workers, int64_t(plan_.size()));
    try {
      for (int64_t t = 0; t < threads; ++t) workers_.emplace_back([this] { worker_loop(); });
    } catch (...) {
      shutdown();
      throw;
    }
  }
  ~EpochRun() { shutdown(); }
  EpochRun(const EpochRun&) = delete;
  EpochRun& operator=(const EpochRun&) = delete;

  // Moves the next batch into out; false when the epoch is over. Rethrows a loading error.
  bool next(Batch& out) {
    if (next_batch_ >= int64_t(plan_.size())) return false;
    const int64_t b = next_batch_++;
    if (workers_.empty()) {
      out = load_batch(*dataset_, plan_[size_t(b)], opt_.seed, epoch_, opt_.num_classes);
      return true;
    }
    Result r;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ready_cv_.wait(lock, [&] { return ready_.count(b) > 0; });
      r = std::move(ready_[b]);
      ready_.erase(b);
      consumer_at_ = b + 1;  // one more slot free for the workers
    }
    work_cv_.notify_all();
    if (r.error) std::rethrow_exception(r.error);
    out = std::move(r.batch);
    return true;
  }

 private:
  struct Result {
    Batch batch;
    std::exception_ptr error;
  };

  void worker_loop() {
    for (;;) {
      int64_t b = 0;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_cv_.wait(lock, [&] {
          return stop_ || next_claim_ >= int64_t(plan_.size()) || next_claim_ < consumer_at_ + capacity_;
        });
        if (stop_ || next_claim_ >= int64_t(plan_.size())) return;
        b = next_claim_++;
      }
      Result r;
      try {
        r.batch = load_batch(*dataset_, plan_[size_t(b)], opt_.seed, epoch_, opt_.num_classes);
      } catch (...) {
        r.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        ready_[b] = std::move(r);
      }
      ready_cv_.notify_all();
    }
  }

  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : workers_)
      if (t.joinable()) t.join();
    workers_.clear();
  }

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions opt_;
  int64_t epoch_;
  std::vector<std::vector<int64_t>> plan_;  // batch b -> its dataset indices
  int64_t next_batch_ = 0;                  // consumer side only

  std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_;
  bool stop_ = false;
  int64_t capacity_ = 0;
  int64_t next_claim_ = 0;   // the next batch a worker will load
  int64_t consumer_at_ = 0;  // the batch the consumer waits for next
  std::map<int64_t, Result> ready_;
  std::vector<std::thread> workers_;  // last member: joined before the rest is destroyed
};

}  // namespace detail_loader

class DataLoader {
 public:
  // An input iterator over one epoch's batches; owns the epoch's threads. Move-only.
  class Iterator {
   public:
    Iterator() = default;  // the end
    Iterator(Iterator&&) noexcept = default;
    Iterator& operator=(Iterator&&) noexcept = default;
    Iterator(const Iterator&) = delete;
    Iterator& operator=(const Iterator&) = delete;

    const Batch& operator*() const { return current_; }
    const Batch* operator->() const { return &current_; }
    Iterator& operator++() {
      if (run_ && !run_->next(current_)) {
        run_.reset();  // joins the threads
        current_ = Batch{};
      }
      return *this;
    }
    // Two iterators are equal when both are at the end, or are the same iterator.
    bool operator==(const Iterator& o) const { return this == &o || (!run_ && !o.run_); }
    bool operator!=(const Iterator& o) const { return !(*this == o); }

   private:
    friend class DataLoader;
    explicit Iterator(std::unique_ptr<detail_loader::EpochRun> run) : run_(std::move(run)) { ++*this; }
    std::unique_ptr<detail_loader::EpochRun> run_;
    Batch current_;
  };

  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options = {})
      : dataset_(std::move(dataset)), opt_(options) {
    GRAFT_CHECK(dataset_ != nullptr, "DataLoader", "the dataset is null");
    GRAFT_CHECK(opt_.batch_size >= 1, "DataLoader", "batch_size must be >= 1, got ", opt_.batch_size);
    GRAFT_CHECK(opt_.num_workers >= 0, "DataLoader", "num_workers must be >= 0, got ", opt_.num_workers);
    GRAFT_CHECK(opt_.prefetch >= 1, "DataLoader", "prefetch must be >= 1, got ", opt_.prefetch);
    GRAFT_CHECK(opt_.num_classes >= 0, "DataLoader", "num_classes must be >= 0 (0: labels not checked), got ",
                opt_.num_classes);
  }

  // Batches per epoch.
  int64_t size() const {
    const int64_t n = dataset_->size();
    return opt_.drop_last ? n / opt_.batch_size : (n + opt_.batch_size - 1) / opt_.batch_size;
  }
  const Dataset& dataset() const { return *dataset_; }
  const LoaderOptions& options() const { return opt_; }

  // The epoch the next iteration uses (then advances by one).
  int64_t epoch() const { return epoch_; }
  void set_epoch(int64_t epoch) { epoch_ = epoch; }

  // The dataset indices in the order epoch `epoch` visits them (before drop_last).
  std::vector<int64_t> sample_order(int64_t epoch) const {
    const int64_t n = dataset_->size();
    if (opt_.shuffle) {
      Generator gen(opt_.seed + uint64_t(epoch));
      return random_permutation(n, gen);
    }
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), int64_t(0));
    return order;
  }

  Iterator begin() {
    const int64_t epoch = epoch_++;
    const std::vector<int64_t> order = sample_order(epoch);
    std::vector<std::vector<int64_t>> plan(static_cast<size_t>(size()));
    for (size_t b = 0; b < plan.size(); ++b) {
      const size_t lo = b * size_t(opt_.batch_size), hi = std::min(order.size(), lo + size_t(opt_.batch_size));
      plan[b].assign(order.begin() + std::ptrdiff_t(lo), order.begin() + std::ptrdiff_t(hi));
    }
    return Iterator(std::make_unique<detail_loader::EpochRun>(dataset_, opt_, epoch, std::move(plan)));
  }
  Iterator end() const { return Iterator(); }

 private:
  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions opt_;
  int64_t epoch_ = 0;
};

}  // namespace graft::data
