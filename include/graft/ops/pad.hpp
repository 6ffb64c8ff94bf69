// graft/ops/pad.hpp - constant padding of the last dims: torch.nn.functional.pad(x, pads, "constant", value).
//
// pads lists (before, after) pairs starting from the LAST dim, as PyTorch:
//   {left, right}                       pads dim -1
//   {left, right, top, bottom}          pads dims -1 and -2 (nn.ZeroPad2d's order)
//   {l, r, t, b, front, back, ...}      and so on; at most x.dim() pairs.
// Shapes: out[d] = x[d] + before[d] + after[d] for the padded dims, the others unchanged. A negative
// pad crops (as PyTorch); every out[d] must stay >= 0.
// Values: out[o] = x[o - before] where that index lies inside x, else `value`.
// Gradient: dx = pad(dout, -pads) (crop back; an element cropped away by a negative pad gets 0), which
// is itself a pad, so the backward is differentiable again (create_graph).
// Any dtype; the kernel copies rows of the contiguous output, in parallel over rows.
#pragma once
#include <algorithm>
#include <type_traits>
#include <vector>

#include "graft/autograd/node.hpp"
#include "graft/core/dispatch.hpp"
#include "graft/core/parallel.hpp"
#include "graft/ops/creation.hpp"
#include "graft/ops/view.hpp"

namespace graft {

namespace kernels::cpu {

// out [out_shape] (contiguous) = x [x_shape] (contiguous) shifted by before[d] along each dim d
// (before has one entry per dim of x, 0 for the dims not padded), `value` outside x.
inline void pad_forward(const Tensor& out, const Tensor& x, const std::vector<int64_t>& before, double value) {
  if (out.numel() == 0) return;
  GRAFT_DISPATCH_ALL(x.dtype(), "pad", T, [&] {
    const int rank = x.dim();
    const int64_t W = x.size(-1), OW = out.size(-1), rows = out.numel() / OW;
    const int64_t bw = before[size_t(rank - 1)];
    // the half types convert from float; the others straight from double
    const T fill = [&] {
      if constexpr (std::is_same_v<T, BFloat16> || std::is_same_v<T, Float16>) return T(static_cast<float>(value));
      else return static_cast<T>(value);
    }();
    const T* px = x.data<T>();
    T* po = out.data<T>();
    parallel_for(0, rows, 64, [&](int64_t lo, int64_t hi) {
      for (int64_t row = lo; row < hi; ++row) {
        T* orow = po + row * OW;  // [OW]
        // The input row of this output row: its coordinates over dims 0 .. rank-2, shifted back.
        int64_t in_row = 0, stride = 1, rest = row;
        bool inside = true;
        for (int d = rank - 2; d >= 0; --d) {
          const int64_t o = rest % out.size(d), i = o - before[size_t(d)];
          rest /= out.size(d);
          inside = inside && i >= 0 && i < x.size(d);
          in_row += i * stride;
          stride *= x.size(d);
        }
        if (!inside || W == 0) {
          std::fill(orow, orow + OW, fill);
          continue;
        }
        const T* xrow = px + in_row * W;  // [W]
        // columns [lo_c, hi_c) of the output come from x; the rest is fill
        const int64_t lo_c = std::clamp<int64_t>(bw, 0, OW), hi_c = std::clamp<int64_t>(bw + W, 0, OW);
        std::fill(orow, orow + lo_c, fill);
        for (int64_t c = lo_c; c < hi_c; ++c) orow[c] = xrow[c - bw];
        std::fill(orow + std::max(lo_c, hi_c), orow + OW, fill);
      }
    });
  });
}

}  // namespace kernels::cpu

using PadKernel = void (*)(const Tensor& out, const Tensor& x, const std::vector<int64_t>& before, double value);
GRAFT_KERNEL_SLOT(PadKernel, pad_kernel, "pad", kernels::cpu::pad_forward);

// Constant padding (see the top of this file). pads: (before, after) pairs from the last dim backwards.
inline Tensor pad(const Tensor& x_in, const std::vector<int64_t>& pads, double value = 0.0) {
  GRAFT_CHECK(x_in.defined(), "pad", "undefined input");
  GRAFT_CHECK(pads.size() % 2 == 0, "pad", "pads must hold (before, after) pairs, got ", pads.size(), " values");
  const int rank = x_in.dim();
  GRAFT_CHECK(int64_t(pads.size() / 2) <= rank, "pad", pads.size(), " pad values pad ", pads.size() / 2,
              " dims, but the input of shape ", x_in.shape(), " has only ", rank);
  std::vector<int64_t> before(size_t(rank), 0);
  Shape out_shape = x_in.shape();
  for (size_t k = 0; k < pads.size() / 2; ++k) {
    const int d = rank - 1 - int(k);
    before[size_t(d)] = pads[2 * k];
    out_shape[d] = x_in.size(d) + pads[2 * k] + pads[2 * k + 1];
    GRAFT_CHECK(out_shape[d] >= 0, "pad", "padding (", pads[2 * k], ", ", pads[2 * k + 1], ") of dim ", d,
                " (size ", x_in.size(d), ") of shape ", x_in.shape(), " gives a negative size ", out_shape[d]);
  }
  const Tensor x = x_in.contiguous();
  Tensor out = empty(out_shape, x.dtype(), x.device());
  pad_kernel.get(x.device())(out, x.detach(), before, value);
  std::vector<int64_t> negated(pads.size());
  for (size_t i = 0; i < pads.size(); ++i) negated[i] = -pads[i];
  autograd::record_shape_op("ConstantPadNdBackward", x, out, [negated](std::vector<Tensor>& g) {
    return std::vector<Tensor>{pad(g[0], negated, 0.0)};
  });
  return out;
}

GRAFT_REGISTER_OP(pad, true);

}  // namespace graft
