// graft/models/common.hpp - small pieces the model zoo shares: ImageNet's normalization and
// torchvision's channel rounding.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "graft/data/transforms.hpp"

namespace graft::models {

// The per-channel RGB mean and std (of [0, 1] pixels) torchvision's and timm's ImageNet weights expect.
using transforms::kImageNetMean;
using transforms::kImageNetStd;

// torchvision.models._utils._make_divisible: v rounded to the nearest multiple of divisor (at least
// divisor), plus divisor when that rounded down by more than 10%. MobileNet and EfficientNet widths.
inline int64_t make_divisible(double v, int64_t divisor = 8) {
  int64_t rounded = std::max<int64_t>(divisor, int64_t(v + double(divisor) / 2.0) / divisor * divisor);
  if (double(rounded) < 0.9 * v) rounded += divisor;
  return rounded;
}

}  // namespace graft::models
