// graft/core/stream.hpp - the current stream of each device, per thread, as an opaque id.
//
// Device work (CUDA kernels, copies, the caching allocator's blocks) goes to the calling thread's
// current stream of that device. Core code cannot name cudaStream_t, so a stream is an id here: the
// cudaStream_t's value for CUDA, 0 for the device's default stream (PyTorch's default too). The CUDA
// runtime (<graft/cuda.cuh>: CudaStream, CudaStreamGuard) sets it; kernels and the allocator read it,
// so a block is always tagged with the stream its producer ran on.
//
//   uintptr_t s = current_stream_id(d);       // 0 unless a CudaStreamGuard (or the setter) changed it
//   set_current_stream_id(d, s);             // this thread only
#pragma once
#include <array>
#include <cstdint>

#include "graft/core/device.hpp"
#include "graft/core/error.hpp"

namespace graft {

inline constexpr int kMaxDevicesPerType = 64;

namespace detail_stream {
inline std::array<uintptr_t, kMaxDevicesPerType>& current_ids(DeviceType t) {
  thread_local std::array<std::array<uintptr_t, kMaxDevicesPerType>, kNumDeviceTypes> ids{};
  return ids[static_cast<size_t>(t)];
}
inline void check_index(Device d) {
  GRAFT_CHECK(d.index >= 0 && d.index < kMaxDevicesPerType, "stream", "device index ", d.index, " of ", d,
              " is outside [0, ", kMaxDevicesPerType, ")");
}
}  // namespace detail_stream

inline uintptr_t current_stream_id(Device d) {
  detail_stream::check_index(d);
  return detail_stream::current_ids(d.type)[static_cast<size_t>(d.index)];
}
inline void set_current_stream_id(Device d, uintptr_t id) {
  detail_stream::check_index(d);
  detail_stream::current_ids(d.type)[static_cast<size_t>(d.index)] = id;
}

}  // namespace graft
