// graft/core/print.hpp - operator<< for tensors, in PyTorch's layout:
//   tensor([[ 0.1000, -2.0000],
//           [ 3.5000,  4.0000]], dtype=float32, grad_fn=<MulBackward>)
// Large tensors show the first and last 3 entries of each dim with "..." between.
#pragma once
#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>

#include "graft/autograd/node.hpp"

namespace graft {

namespace detail_print {
inline constexpr int64_t kEdge = 3;         // entries shown at each end of a long dim
inline constexpr int64_t kThreshold = 1000; // summarize tensors with more elements than this

inline std::string format_value(double v, DType dt) {
  char buf[64];
  if (!is_floating(dt)) {
    if (dt == DType::Bool) return v != 0.0 ? "True" : "False";
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  } else if (std::isnan(v)) {
    return "nan";
  } else if (std::isinf(v)) {
    return v > 0 ? "inf" : "-inf";
  } else if (v != 0.0 && (std::abs(v) >= 1e8 || std::abs(v) < 1e-4)) {
    std::snprintf(buf, sizeof buf, "%.4e", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.4f", v);
  }
  return buf;
}

inline void print_dim(std::ostream& os, const Tensor& t, const std::vector<double>& vals, int d,
                      int64_t base, const std::vector<int64_t>& row_major, size_t width, bool summarize,
                      int indent) {
  const int64_t n = t.size(d);
  os << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kEdge && i == kEdge) {
      os << (d + 1 == t.dim() ? "..., " : "...,\n" + std::string(size_t(indent + 1), ' '));
      i = n - kEdge - 1;
      continue;
    }
    const int64_t off = base + i * row_major[size_t(d)];
    if (d + 1 == t.dim()) {
      std::string s = format_value(vals[size_t(off)], t.dtype());
      if (s.size() < width) s = std::string(width - s.size(), ' ') + s;
      os << s;
    } else {
      print_dim(os, t, vals, d + 1, off, row_major, width, summarize, indent + 1);
    }
    if (i + 1 < n) os << (d + 1 == t.dim() ? ", " : ",\n" + std::string(size_t(indent + 1), ' '));
  }
  os << "]";
}
}  // namespace detail_print

inline std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "tensor(undefined)";
  const std::vector<double> vals = t.to_vector();
  os << "tensor(";
  if (t.dim() == 0) {
    os << detail_print::format_value(vals[0], t.dtype());
  } else {
    size_t width = 0;
    for (double v : vals) width = std::max(width, detail_print::format_value(v, t.dtype()).size());
    std::vector<int64_t> row_major(size_t(t.dim()));
    int64_t acc = 1;
    for (int d = t.dim() - 1; d >= 0; --d) {
      row_major[size_t(d)] = acc;
      acc *= t.size(d);
    }
    detail_print::print_dim(os, t, vals, 0, 0, row_major, width, t.numel() > detail_print::kThreshold, 7);
  }
  os << ", dtype=" << dtype_name(t.dtype());
  if (!t.device().is_cpu()) os << ", device=" << t.device();
  if (t.grad_fn()) {
    os << ", grad_fn=<" << t.grad_fn()->name() << ">";
  } else if (t.requires_grad()) {
    os << ", requires_grad=true";
  }
  return os << ")";
}

}  // namespace graft
