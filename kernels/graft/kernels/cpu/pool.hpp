// graft/kernels/cpu/pool.hpp - fast float32 2-D pooling over contiguous planes (body: pool.inc,
// compiled for AVX2 and AVX-512). Contract and references: include/graft/ops/pool.hpp.
//
//   max_pool2d_forward_fast(out, indices, x, planes, g)        out, indices [planes, OH, OW]
//   max_pool2d_backward_fast(dx, dout, indices, planes, HW, OHW)
//   max_pool2d_gather_fast(out, src, indices, planes, HW, OHW)
//   avg_pool2d_forward_fast(out, x, planes, g)                  divisor per g.count_include_pad
//   avg_pool2d_backward_fast(dx, dout, planes, g)
//   adaptive_avg_pool2d_forward_fast(out, x, planes, g)         g: H, W, OH, OW only
//   adaptive_avg_pool2d_backward_fast(dx, dout, planes, g)
// x, dx [planes, H, W]; all contiguous. Each returns false (nothing written) when the active ISA is
// scalar or the shape is one the fast path does not take; the caller then runs the reference.
// Threads split the planes; a plane is computed by one thread in a fixed order, so results do not
// depend on the thread count.
// Exactness: max pooling (values, indices, NaN and tie rules), its backward (same scatter order)
// and the gather equal the reference bit for bit. The averages sum rows before columns (the
// reference adds each window row-major), so they agree to rounding (the tests hold them to kTolF32).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "graft/kernels/cpu/reduce.hpp"  // fast_cpu_isa, tasks_per_chunk

namespace graft::kernels::cpu {

// The geometry of a pooling of [H, W] planes to [OH, OW]: window of output (oh, ow) at rows
// oh SH - PH + kh DH (kh < KH), columns likewise (include/graft/ops/pool.hpp).
struct PoolWindow2d {
  int64_t H, W, OH, OW;
  int64_t KH = 1, KW = 1, SH = 1, SW = 1, PH = 0, PW = 0, DH = 1, DW = 1;
  bool count_include_pad = true;
};

// The avg pooling divisor of the window starting at (hs, ws) (negative: in the padding): the window
// clipped to the padded input (count_include_pad) or to the input.
inline int64_t avg_pool_divisor(int64_t hs, int64_t ws, const PoolWindow2d& g) {
  const int64_t he = std::min(hs + g.KH, g.H + g.PH), we = std::min(ws + g.KW, g.W + g.PW);
  if (g.count_include_pad) return (he - hs) * (we - ws);
  return (std::min(he, g.H) - std::max<int64_t>(hs, 0)) * (std::min(we, g.W) - std::max<int64_t>(ws, 0));
}

// The adaptive window [start, end) of output i along a dim of input size in and output size out
// (PyTorch's rule): [floor(i in / out), ceil((i + 1) in / out)).
inline int64_t adaptive_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
inline int64_t adaptive_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

// The column phase layout of pool.inc: the window column offsets off = kw DW - PW split as
// off = a SW + q (0 <= q < SW); phase rows cover j in [a_min, a_min + L), L = OW + a_max - a_min.
struct PoolColumnPhases {
  int64_t a_min = 0, L = 0;
};
inline int64_t pool_floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
// col_off [KW] = where tap kw of output 0 lies in the phase layout [SW, L].
inline PoolColumnPhases pool_column_phases(const PoolWindow2d& g, std::vector<int64_t>& col_off) {
  PoolColumnPhases cp;
  cp.a_min = pool_floor_div(-g.PW, g.SW);
  const int64_t a_max = pool_floor_div((g.KW - 1) * g.DW - g.PW, g.SW);
  cp.L = g.OW + a_max - cp.a_min;
  col_off.resize(size_t(g.KW));
  for (int64_t kw = 0; kw < g.KW; ++kw) {
    const int64_t off = kw * g.DW - g.PW, a = pool_floor_div(off, g.SW), q = off - a * g.SW;
    col_off[size_t(kw)] = q * cp.L + (a - cp.a_min);
  }
  return cp;
}

}  // namespace graft::kernels::cpu

#define GRAFT_KERNEL_BODY "graft/kernels/cpu/pool.inc"
#include "graft/kernels/cpu/isa/for_each_isa.hpp"

namespace graft::kernels::cpu {

inline bool max_pool2d_forward_fast(float* out, int64_t* indices, const float* x, int64_t planes,
                                    const PoolWindow2d& g) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  // Indices within a plane travel as floats: exact below 2^24 (tap offsets are smaller still).
  if ((g.H + g.PH + 1) * (g.W + g.PW + 1) >= (int64_t(1) << 24)) return false;
  // Each window's first in-image row and column (the reference's start tap); a window with none
  // takes the reference.
  std::vector<int64_t> ih_first(size_t(g.OH), -1), iw_first(size_t(g.OW), -1);
  for (int64_t oh = 0; oh < g.OH; ++oh)
    for (int64_t kh = 0; kh < g.KH && ih_first[size_t(oh)] < 0; ++kh) {
      const int64_t ih = oh * g.SH - g.PH + kh * g.DH;
      if (ih >= 0 && ih < g.H) ih_first[size_t(oh)] = ih;
    }
  for (int64_t ow = 0; ow < g.OW; ++ow)
    for (int64_t kw = 0; kw < g.KW && iw_first[size_t(ow)] < 0; ++kw) {
      const int64_t iw = ow * g.SW - g.PW + kw * g.DW;
      if (iw >= 0 && iw < g.W) iw_first[size_t(ow)] = iw;
    }
  if (std::find(ih_first.begin(), ih_first.end(), -1) != ih_first.end() ||
      std::find(iw_first.begin(), iw_first.end(), -1) != iw_first.end())
    return false;
  std::vector<float> col_base(size_t(g.OW)), iw_first_f(size_t(g.OW));
  for (int64_t ow = 0; ow < g.OW; ++ow) {
    col_base[size_t(ow)] = float(ow * g.SW - g.PW);
    iw_first_f[size_t(ow)] = float(iw_first[size_t(ow)]);
  }
  std::vector<int64_t> col_off;
  const PoolColumnPhases cp = pool_column_phases(g, col_off);
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  const int64_t work = g.H * g.W + g.OH * g.OW * g.KH * g.KW;
  parallel_for(0, planes, tasks_per_chunk(work), [&](int64_t lo, int64_t hi) {
    std::vector<float> phases(size_t(g.H * g.SW * cp.L));  // [H, SW, L]
    if (avx512)
      avx512::max_pool2d_planes(out, indices, x, g, cp, col_off.data(), ih_first.data(), col_base.data(),
                                iw_first_f.data(), phases.data(), lo, hi);
    else
      avx2::max_pool2d_planes(out, indices, x, g, cp, col_off.data(), ih_first.data(), col_base.data(),
                              iw_first_f.data(), phases.data(), lo, hi);
  });
  return true;
#else
  return false;
#endif
}

inline bool max_pool2d_backward_fast(float* dx, const float* dout, const int64_t* indices, int64_t planes,
                                     int64_t HW, int64_t OHW) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  parallel_for(0, planes, tasks_per_chunk(HW + 2 * OHW), [&](int64_t lo, int64_t hi) {
    if (avx512) avx512::max_pool2d_backward_planes(dx, dout, indices, HW, OHW, lo, hi);
    else avx2::max_pool2d_backward_planes(dx, dout, indices, HW, OHW, lo, hi);
  });
  return true;
#else
  return false;
#endif
}

// A gather has nothing to vectorize without integer lanes: the fast path is the reference's loop
// run in parallel over the planes.
inline bool max_pool2d_gather_fast(float* out, const float* src, const int64_t* indices, int64_t planes, int64_t HW,
                                   int64_t OHW) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  parallel_for(0, planes, tasks_per_chunk(2 * OHW), [&](int64_t lo, int64_t hi) {
    for (int64_t plane = lo; plane < hi; ++plane)
      for (int64_t o = 0; o < OHW; ++o) out[plane * OHW + o] = src[plane * HW + indices[plane * OHW + o]];
  });
  return true;
#else
  return false;
#endif
}

// divisor [OH, OW] of avg pooling (the same for every plane).
inline std::vector<float> avg_pool_divisors(const PoolWindow2d& g) {
  std::vector<float> d(size_t(g.OH * g.OW));
  for (int64_t oh = 0; oh < g.OH; ++oh)
    for (int64_t ow = 0; ow < g.OW; ++ow)
      d[size_t(oh * g.OW + ow)] = float(avg_pool_divisor(oh * g.SH - g.PH, ow * g.SW - g.PW, g));
  return d;
}

inline bool avg_pool2d_forward_fast(float* out, const float* x, int64_t planes, const PoolWindow2d& g) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  std::vector<int64_t> col_off;
  const PoolColumnPhases cp = pool_column_phases(g, col_off);
  const std::vector<float> divisor = avg_pool_divisors(g);
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  const int64_t work = g.OH * (g.KH * g.W + g.SW * cp.L + g.KW * g.OW);
  parallel_for(0, planes, tasks_per_chunk(work), [&](int64_t lo, int64_t hi) {
    std::vector<float> rowsum(size_t(g.W)), phases(size_t(g.SW * cp.L));
    if (avx512)
      avx512::avg_pool2d_planes(out, x, g, cp, col_off.data(), divisor.data(), rowsum.data(), phases.data(), lo, hi);
    else
      avx2::avg_pool2d_planes(out, x, g, cp, col_off.data(), divisor.data(), rowsum.data(), phases.data(), lo, hi);
  });
  return true;
#else
  return false;
#endif
}

inline bool avg_pool2d_backward_fast(float* dx, const float* dout, int64_t planes, const PoolWindow2d& g) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  std::vector<int64_t> col_off;
  const PoolColumnPhases cp = pool_column_phases(g, col_off);
  const std::vector<float> divisor = avg_pool_divisors(g);
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  const int64_t work = g.H * g.W + g.OH * (g.KH * g.W + g.SW * cp.L + g.KW * g.OW);
  parallel_for(0, planes, tasks_per_chunk(work), [&](int64_t lo, int64_t hi) {
    std::vector<float> colrow(size_t(g.W)), phases(size_t(g.SW * cp.L));
    if (avx512)
      avx512::avg_pool2d_backward_planes(dx, dout, g, cp, col_off.data(), divisor.data(), colrow.data(),
                                         phases.data(), lo, hi);
    else
      avx2::avg_pool2d_backward_planes(dx, dout, g, cp, col_off.data(), divisor.data(), colrow.data(),
                                       phases.data(), lo, hi);
  });
  return true;
#else
  return false;
#endif
}

// The adaptive windows of every output row and column (adaptive_start / adaptive_end).
struct AdaptiveWindows {
  std::vector<int64_t> h0, h1, w0, w1;  // rows [h0[oh], h1[oh]), columns [w0[ow], w1[ow])
};
inline AdaptiveWindows adaptive_windows(const PoolWindow2d& g) {
  AdaptiveWindows a;
  for (int64_t i = 0; i < g.OH; ++i) {
    a.h0.push_back(adaptive_start(i, g.H, g.OH));
    a.h1.push_back(adaptive_end(i, g.H, g.OH));
  }
  for (int64_t i = 0; i < g.OW; ++i) {
    a.w0.push_back(adaptive_start(i, g.W, g.OW));
    a.w1.push_back(adaptive_end(i, g.W, g.OW));
  }
  return a;
}

inline bool adaptive_avg_pool2d_forward_fast(float* out, const float* x, int64_t planes, const PoolWindow2d& g) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  const int64_t HW = g.H * g.W;
  if (g.OH == 1 && g.OW == 1) {  // global average pool: each plane's mean
    parallel_for(0, planes, tasks_per_chunk(HW), [&](int64_t lo, int64_t hi) {
      if (avx512) avx512::global_avg_pool_planes(out, x, HW, lo, hi);
      else avx2::global_avg_pool_planes(out, x, HW, lo, hi);
    });
    return true;
  }
  const AdaptiveWindows a = adaptive_windows(g);
  parallel_for(0, planes, tasks_per_chunk(2 * HW + g.OH * g.OW), [&](int64_t lo, int64_t hi) {
    std::vector<float> rowsum(size_t(g.W));
    if (avx512)
      avx512::adaptive_avg_pool2d_planes(out, x, g, a.h0.data(), a.h1.data(), a.w0.data(), a.w1.data(),
                                         rowsum.data(), lo, hi);
    else
      avx2::adaptive_avg_pool2d_planes(out, x, g, a.h0.data(), a.h1.data(), a.w0.data(), a.w1.data(), rowsum.data(),
                                       lo, hi);
  });
  return true;
#else
  return false;
#endif
}

inline bool adaptive_avg_pool2d_backward_fast(float* dx, const float* dout, int64_t planes, const PoolWindow2d& g) {
#if GRAFT_CPU_KERNELS_X86
  if (!fast_cpu_isa()) return false;
  const bool avx512 = active_cpu_isa() == CpuIsa::Avx512;
  const int64_t HW = g.H * g.W;
  if (g.OH == 1 && g.OW == 1) {
    parallel_for(0, planes, tasks_per_chunk(HW), [&](int64_t lo, int64_t hi) {
      if (avx512) avx512::global_avg_pool_backward_planes(dx, dout, HW, lo, hi);
      else avx2::global_avg_pool_backward_planes(dx, dout, HW, lo, hi);
    });
    return true;
  }
  const AdaptiveWindows a = adaptive_windows(g);
  parallel_for(0, planes, tasks_per_chunk(3 * HW + g.OH * g.OW), [&](int64_t lo, int64_t hi) {
    std::vector<float> colrow(size_t(g.W));
    if (avx512)
      avx512::adaptive_avg_pool2d_backward_planes(dx, dout, g, a.h0.data(), a.h1.data(), a.w0.data(), a.w1.data(),
                                                  colrow.data(), lo, hi);
    else
      avx2::adaptive_avg_pool2d_backward_planes(dx, dout, g, a.h0.data(), a.h1.data(), a.w0.data(), a.w1.data(),
                                                colrow.data(), lo, hi);
  });
  return true;
#else
  return false;
#endif
}

}  // namespace graft::kernels::cpu
