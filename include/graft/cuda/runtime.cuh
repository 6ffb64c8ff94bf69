// graft/cuda/runtime.cuh - the CUDA runtime under Graft's device tensors: which GPU and stream work
// goes to, events, the caching allocator, and copies between host and device through pinned staging
// buffers. Included by <graft/cuda.cuh> (one .cu file per program, compiled by nvcc).
//
//   CudaDeviceGuard g(1);                       // cudaSetDevice(1) for the scope, then back
//   CudaStream s(graft::cuda(0));               // a new non-blocking stream on GPU 0
//   { CudaStreamGuard sg(s); y = relu(x); }     // this thread's work on cuda:0 goes to s
//   CudaEvent e; e.record(s); e.synchronize();
//   cuda_memory_stats(graft::cuda(0));          // BlockAllocatorStats: in use, reserved, peaks
//   cuda_empty_cache();                         // cached blocks back to the driver
//
// The allocator is graft/core/block_allocator.hpp (PyTorch's caching policy) over cudaMalloc, one
// per GPU; a block is tagged with the stream current when it was allocated and reused only on that
// stream. Host<->device copies are synchronous for the caller (the host buffer may be reused when
// they return); above 1 MiB they go through two pinned buffers per GPU, so the memcpy into one
// overlaps the DMA out of the other.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "graft/core/block_allocator.hpp"
#include "graft/core/storage.hpp"
#include "graft/core/stream.hpp"
#include "graft/kernels/cuda/common.cuh"

namespace graft {

// Number of visible CUDA devices (0 when there is no GPU or driver).
inline int cuda_device_count() {
  static const int n = [] {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      (void)cudaGetLastError();  // clear the sticky "no device" error
      return 0;
    }
    return count;
  }();
  return n;
}

// Throws unless d is a CUDA device this process can see.
inline void check_cuda_device(Device d, const char* what) {
  GRAFT_CHECK(d.is_cuda(), what, "expected a CUDA device, got ", d);
  const int n = cuda_device_count();
  GRAFT_CHECK(d.index >= 0 && d.index < n, what, d, ": no such device (", n, " CUDA device", n == 1 ? "" : "s",
              " visible)");
}

// An owned, non-blocking stream on one GPU.
class CudaStream {
 public:
  explicit CudaStream(Device d) : device_(d) {
    check_cuda_device(d, "CudaStream");
    CudaDeviceGuard g(d.index);
    GRAFT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~CudaStream() {
    if (stream_) (void)cudaStreamDestroy(stream_);  // returns at once; queued work still completes
  }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  cudaStream_t get() const { return stream_; }
  Device device() const { return device_; }
  void synchronize() const { GRAFT_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  Device device_;
  cudaStream_t stream_ = nullptr;
};

// Makes `s` this thread's current stream of its device for the guard's scope.
class CudaStreamGuard {
 public:
  explicit CudaStreamGuard(const CudaStream& s) : device_(s.device()), previous_(current_stream_id(s.device())) {
    set_current_stream_id(device_, reinterpret_cast<uintptr_t>(s.get()));
  }
  ~CudaStreamGuard() { set_current_stream_id(device_, previous_); }
  CudaStreamGuard(const CudaStreamGuard&) = delete;
  CudaStreamGuard& operator=(const CudaStreamGuard&) = delete;

 private:
  Device device_;
  uintptr_t previous_;
};

// A CUDA event: record on a stream, wait for it on the host or on another stream, time between two.
class CudaEvent {
 public:
  explicit CudaEvent(bool timing = false) {
    GRAFT_CUDA_CHECK(cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming));
  }
  ~CudaEvent() { (void)cudaEventDestroy(event_); }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  void record(cudaStream_t s) { GRAFT_CUDA_CHECK(cudaEventRecord(event_, s)); }
  void record(const CudaStream& s) { record(s.get()); }
  void synchronize() const { GRAFT_CUDA_CHECK(cudaEventSynchronize(event_)); }
  void block(cudaStream_t s) const { GRAFT_CUDA_CHECK(cudaStreamWaitEvent(s, event_, 0)); }  // s waits for it
  bool query() const {
    const cudaError_t e = cudaEventQuery(event_);
    if (e == cudaErrorNotReady) {
      (void)cudaGetLastError();
      return false;
    }
    GRAFT_CUDA_CHECK(e);
    return true;
  }
  // Milliseconds from `start` (recorded earlier, both with timing on) to this event.
  float elapsed_ms(const CudaEvent& start) const {
    float ms = 0;
    GRAFT_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, event_));
    return ms;
  }
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// Segments for one GPU's BlockAllocator: cudaMalloc / cudaFree on that device. Out of memory is
// nullptr (the allocator then releases its cache and retries); any other error throws.
class CudaSegmentBackend final : public SegmentBackend {
 public:
  explicit CudaSegmentBackend(int index) : index_(index) {}
  void* alloc(size_t nbytes) override {
    CudaDeviceGuard g(index_);
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, nbytes);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    GRAFT_CUDA_CHECK(e);
    return p;
  }
  void free(void* p) override {
    CudaDeviceGuard g(index_);
    GRAFT_CUDA_CHECK(cudaFree(p));
  }

 private:
  int index_;
};

class CudaCachingAllocator final : public Allocator {
 public:
  static constexpr size_t kStagingBytes = size_t(1) << 20;  // each pinned buffer; larger copies are chunked

  void* allocate(size_t nbytes, Device d) override {
    return gpu(d).blocks->allocate(nbytes, current_stream_id(d));
  }
  void deallocate(void* p, size_t, Device d) override { gpu(d).blocks->deallocate(p); }

  void copy_from_host(void* dst, const void* src, size_t n, Device d) override {
    if (n == 0) return;
    PerGpu& g = gpu(d);
    CudaDeviceGuard guard(d.index);
    const cudaStream_t s = cuda_current_stream(d);
    if (n <= kStagingBytes) {  // small: the driver stages pageable memory itself
      GRAFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s));
      GRAFT_CUDA_CHECK(cudaStreamSynchronize(s));
      return;
    }
    std::lock_guard<std::mutex> lock(g.staging_mu);
    g.ensure_staging();
    for (size_t off = 0, i = 0; off < n; off += kStagingBytes, ++i) {
      const size_t len = std::min(kStagingBytes, n - off), b = i % 2;
      if (i >= 2) g.staged[b]->synchronize();  // the DMA that last read this buffer is done
      std::memcpy(g.staging[b], static_cast<const char*>(src) + off, len);
      GRAFT_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, g.staging[b], len, cudaMemcpyHostToDevice, s));
      g.staged[b]->record(s);
    }
    GRAFT_CUDA_CHECK(cudaStreamSynchronize(s));
  }

  void copy_to_host(void* dst, const void* src, size_t n, Device d) override {
    if (n == 0) return;
    PerGpu& g = gpu(d);
    CudaDeviceGuard guard(d.index);
    const cudaStream_t s = cuda_current_stream(d);
    if (n <= kStagingBytes) {
      GRAFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, s));
      GRAFT_CUDA_CHECK(cudaStreamSynchronize(s));
      return;
    }
    std::lock_guard<std::mutex> lock(g.staging_mu);
    g.ensure_staging();
    const size_t chunks = (n + kStagingBytes - 1) / kStagingBytes;
    auto start = [&](size_t i) {  // DMA chunk i into buffer i % 2
      const size_t off = i * kStagingBytes, len = std::min(kStagingBytes, n - off);
      GRAFT_CUDA_CHECK(cudaMemcpyAsync(g.staging[i % 2], static_cast<const char*>(src) + off, len,
                                       cudaMemcpyDeviceToHost, s));
      g.staged[i % 2]->record(s);
    };
    start(0);
    for (size_t i = 0; i < chunks; ++i) {
      if (i + 1 < chunks) start(i + 1);  // the next chunk's DMA runs while this one is copied out
      const size_t off = i * kStagingBytes, len = std::min(kStagingBytes, n - off);
      g.staged[i % 2]->synchronize();
      std::memcpy(static_cast<char*>(dst) + off, g.staging[i % 2], len);  // chunk i + 2 reuses the buffer after
    }
  }

  // Within one GPU: stream-ordered on its current stream. Between two GPUs: the destination's stream
  // waits for the source's, and the copy is complete on return (the source block may then be reused
  // on its own stream).
  void copy_within(void* dst, Device dd, const void* src, Device sd, size_t n) override {
    if (n == 0) return;
    (void)gpu(dd), (void)gpu(sd);
    const cudaStream_t s = cuda_current_stream(dd);
    if (dd == sd) {
      CudaDeviceGuard guard(dd.index);
      GRAFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, s));
      return;
    }
    CudaEvent src_ready;
    {
      CudaDeviceGuard guard(sd.index);
      src_ready.record(cuda_current_stream(sd));
    }
    CudaDeviceGuard guard(dd.index);
    src_ready.block(s);
    GRAFT_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dd.index, src, sd.index, n, s));
    GRAFT_CUDA_CHECK(cudaStreamSynchronize(s));
  }

  void fill_zero(void* dst, size_t n, Device d) override {
    if (n == 0) return;
    (void)gpu(d);
    CudaDeviceGuard guard(d.index);
    GRAFT_CUDA_CHECK(cudaMemsetAsync(dst, 0, n, cuda_current_stream(d)));
  }

  BlockAllocatorStats stats(Device d) { return gpu(d).blocks->stats(); }
  void reset_peak_stats(Device d) { gpu(d).blocks->reset_peak_stats(); }
  // Cached blocks of every GPU back to the driver (blocks in use stay).
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& g : gpus_)
      if (g) g->blocks->empty_cache();
  }

 private:
  struct PerGpu {
    explicit PerGpu(int index)
        : backend(index), blocks(std::make_unique<BlockAllocator>(backend, "cuda:" + std::to_string(index))), index(index) {}
    ~PerGpu() {
      for (void* p : staging)
        if (p) (void)cudaFreeHost(p);
    }
    void ensure_staging() {  // under staging_mu
      if (staging[0]) return;
      CudaDeviceGuard g(index);
      for (int b = 0; b < 2; ++b) {
        GRAFT_CUDA_CHECK(cudaMallocHost(&staging[b], kStagingBytes));
        staged[b] = std::make_unique<CudaEvent>();
      }
    }
    CudaSegmentBackend backend;
    std::unique_ptr<BlockAllocator> blocks;
    int index;
    std::mutex staging_mu;
    void* staging[2] = {nullptr, nullptr};
    std::unique_ptr<CudaEvent> staged[2];  // recorded after the last DMA through each buffer
  };

  PerGpu& gpu(Device d) {
    check_cuda_device(d, "CudaCachingAllocator");
    std::lock_guard<std::mutex> lock(mu_);
    if (gpus_.empty()) gpus_.resize(size_t(cuda_device_count()));
    auto& g = gpus_[size_t(d.index)];
    if (!g) g = std::make_unique<PerGpu>(d.index);
    return *g;
  }

  std::mutex mu_;
  std::vector<std::unique_ptr<PerGpu>> gpus_;
};

inline CudaCachingAllocator& cuda_allocator() {
  static CudaCachingAllocator a;
  return a;
}

inline BlockAllocatorStats cuda_memory_stats(Device d) { return cuda_allocator().stats(d); }
inline void cuda_reset_peak_memory_stats(Device d) { cuda_allocator().reset_peak_stats(d); }
inline void cuda_empty_cache() { cuda_allocator().empty_cache(); }

}  // namespace graft
