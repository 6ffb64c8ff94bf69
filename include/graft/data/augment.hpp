// graft/data/augment.hpp - per-example training augmentation, torchvision.transforms style.
//
// Not part of graft.hpp. Each transform is a callable (const Tensor& img, Generator& gen) -> Tensor
// on a float32/float64 image [..., C, H, W] and converts to graft::data::ExampleTransform; random
// ones draw only from `gen`, so a DataLoader (which seeds gen from (seed, epoch, index)) gives the
// same augmented batches whatever its number of threads.
//
//   using namespace graft::data;
//   ExampleTransform train_tf = augment::Compose({
//       augment::RandomResizedCrop(224),                 // scale (0.08, 1), ratio (3/4, 4/3)
//       augment::RandomHorizontalFlip(0.5),
//       augment::Normalize(graft::transforms::kImageNetMean, graft::transforms::kImageNetStd)});
//   ExampleTransform cifar_tf = augment::Compose({augment::RandomCrop(32, 4), augment::RandomHorizontalFlip()});
//
// Contracts (torchvision 0.14's algorithms; the random numbers come from graft's Generator, so the
// draws themselves differ from torch's):
//   RandomCrop(size, padding): zero-pad every side by `padding`, then the window top-left is
//     (uniform in [0, H - h], uniform in [0, W - w]); an image smaller than the crop after padding
//     is an error naming both sizes.
//   RandomHorizontalFlip(p): with probability p reverses the last (width) axis.
//   RandomResizedCrop(size, scale, ratio): get_params() is torchvision's: up to 10 tries of
//     area fraction ~ U(scale), log aspect ratio ~ U(log ratio), w = round(sqrt(A * r)),
//     h = round(sqrt(A / r)) (round half to even), accepted when 0 < w <= W and 0 < h <= H, then a
//     uniform position; else the central crop clamped to the ratio range. The window is resized with
//     transforms::resize (antialiased bilinear, i.e. torchvision's antialias=True / PIL path).
//   Resize, CenterCrop, Normalize: transforms::resize / center_crop / normalize; they ignore gen.
//   Outputs are new contiguous tensors without autograd history.
#pragma once
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "graft/data/dataset.hpp"
#include "graft/data/transforms.hpp"
#include "graft/graft.hpp"

namespace graft::data::augment {

namespace detail_augment {

inline Tensor checked(const Tensor& img, const char* op) {
  GRAFT_CHECK(img.defined(), op, "the image tensor is undefined");
  GRAFT_CHECK(img.dim() >= 3, op, "expected an image [..., C, H, W], got shape ", img.shape().str());
  GRAFT_CHECK(img.dtype() == DType::Float32 || img.dtype() == DType::Float64, op,
              "expected a float32 or float64 image, got ", dtype_name(img.dtype()));
  GRAFT_CHECK(img.device() == kCPU, op, "expected a CPU tensor");
  return img.detach().contiguous();
}

// A uniform double in [lo, hi).
inline double uniform_in(Generator& gen, double lo, double hi) { return lo + (hi - lo) * gen.uniform(); }

}  // namespace detail_augment

// A crop window in pixels.
struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
  bool operator==(const CropBox&) const = default;
};

// The height x width window at box of [..., C, H, W], as a new contiguous tensor.
inline Tensor crop(const Tensor& img, const CropBox& box) {
  const Tensor x = detail_augment::checked(img, "crop");
  GRAFT_CHECK(box.top >= 0 && box.left >= 0 && box.height > 0 && box.width > 0 &&
                  box.top + box.height <= x.size(-2) && box.left + box.width <= x.size(-1),
              "crop", "window (top ", box.top, ", left ", box.left, ", ", box.height, " x ", box.width,
              ") does not fit an image of ", x.size(-2), " x ", x.size(-1));
  return x.narrow(-2, box.top, box.height).narrow(-1, box.left, box.width).contiguous();
}

// Zero-pads the last two axes by `padding` on every side.
inline Tensor pad_zeros(const Tensor& img, int64_t padding) {
  const Tensor x = detail_augment::checked(img, "pad");
  GRAFT_CHECK(padding >= 0, "pad", "padding must be >= 0, got ", padding);
  if (padding == 0) return x.clone();
  const int64_t h = x.size(-2), w = x.size(-1);
  Shape s = x.shape();
  s[s.rank() - 2] = h + 2 * padding;
  s[s.rank() - 1] = w + 2 * padding;
  Tensor out = zeros(s, x.dtype());
  NoGradGuard no_grad;
  out.narrow(-2, padding, h).narrow(-1, padding, w).copy_(x);
  return out;
}

// Reverses the last (width) axis.
inline Tensor horizontal_flip(const Tensor& img) {
  const Tensor x = detail_augment::checked(img, "horizontal_flip");
  Tensor out = empty(x.shape(), x.dtype());
  const int64_t w = x.size(-1), rows = x.numel() / std::max<int64_t>(w, 1);
  GRAFT_DISPATCH_FLOAT(x.dtype(), "horizontal_flip", T, [&] {
    const T* src = x.data<T>();
    T* dst = out.data<T>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < w; ++c) dst[r * w + c] = src[r * w + (w - 1 - c)];
  });
  return out;
}

class RandomCrop {
 public:
  RandomCrop(int64_t size, int64_t padding = 0) : RandomCrop(transforms::ImageSize{size, size}, padding) {}
  RandomCrop(transforms::ImageSize size, int64_t padding = 0) : size_(size), padding_(padding) {
    GRAFT_CHECK(size.height > 0 && size.width > 0, "RandomCrop", "the crop size must be positive, got ",
                size.height, " x ", size.width);
    GRAFT_CHECK(padding >= 0, "RandomCrop", "padding must be >= 0, got ", padding);
  }
  // The window in the padded image of padded_height x padded_width (torchvision's get_params).
  CropBox get_params(int64_t padded_height, int64_t padded_width, Generator& gen) const {
    GRAFT_CHECK(padded_height >= size_.height && padded_width >= size_.width, "RandomCrop", "crop size ",
                size_.height, " x ", size_.width, " is larger than the (padded) image ", padded_height, " x ",
                padded_width);
    if (padded_height == size_.height && padded_width == size_.width) return {0, 0, size_.height, size_.width};
    const int64_t top = uniform_index(gen, padded_height - size_.height + 1);
    const int64_t left = uniform_index(gen, padded_width - size_.width + 1);
    return {top, left, size_.height, size_.width};
  }
  Tensor operator()(const Tensor& img, Generator& gen) const {
    const Tensor padded = pad_zeros(img, padding_);
    return crop(padded, get_params(padded.size(-2), padded.size(-1), gen));
  }

 private:
  transforms::ImageSize size_;
  int64_t padding_;
};

class RandomHorizontalFlip {
 public:
  explicit RandomHorizontalFlip(double p = 0.5) : p_(p) {
    GRAFT_CHECK(p >= 0.0 && p <= 1.0, "RandomHorizontalFlip", "p must be in [0, 1], got ", p);
  }
  Tensor operator()(const Tensor& img, Generator& gen) const {
    const Tensor x = detail_augment::checked(img, "RandomHorizontalFlip");
    return gen.uniform() < p_ ? horizontal_flip(x) : x.clone();
  }

 private:
  double p_;
};

class RandomResizedCrop {
 public:
  explicit RandomResizedCrop(int64_t size, std::pair<double, double> scale = {0.08, 1.0},
                             std::pair<double, double> ratio = {3.0 / 4.0, 4.0 / 3.0})
      : RandomResizedCrop(transforms::ImageSize{size, size}, scale, ratio) {}
  RandomResizedCrop(transforms::ImageSize size, std::pair<double, double> scale = {0.08, 1.0},
                    std::pair<double, double> ratio = {3.0 / 4.0, 4.0 / 3.0})
      : size_(size), scale_(scale), ratio_(ratio) {
    GRAFT_CHECK(size.height > 0 && size.width > 0, "RandomResizedCrop", "the output size must be positive, got ",
                size.height, " x ", size.width);
    GRAFT_CHECK(scale.first > 0 && scale.first <= scale.second, "RandomResizedCrop",
                "scale must be (lo, hi) with 0 < lo <= hi, got (", scale.first, ", ", scale.second, ")");
    GRAFT_CHECK(ratio.first > 0 && ratio.first <= ratio.second, "RandomResizedCrop",
                "ratio must be (lo, hi) with 0 < lo <= hi, got (", ratio.first, ", ", ratio.second, ")");
  }

  // torchvision.transforms.RandomResizedCrop.get_params for an image of height x width.
  CropBox get_params(int64_t height, int64_t width, Generator& gen) const {
    const double area = double(height) * double(width);
    const double log_lo = std::log(ratio_.first), log_hi = std::log(ratio_.second);
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double target_area = area * detail_augment::uniform_in(gen, scale_.first, scale_.second);
      const double aspect = std::exp(detail_augment::uniform_in(gen, log_lo, log_hi));
      const auto w = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area * aspect)));  // half to even
      const auto h = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area / aspect)));
      if (w > 0 && w <= width && h > 0 && h <= height) {
        const int64_t top = uniform_index(gen, height - h + 1);
        const int64_t left = uniform_index(gen, width - w + 1);
        return {top, left, h, w};
      }
    }
    // Fallback: the central crop, its aspect ratio clamped to [ratio.first, ratio.second].
    const double in_ratio = double(width) / double(height);
    int64_t w = width, h = height;
    if (in_ratio < ratio_.first) {
      h = static_cast<int64_t>(std::nearbyint(double(w) / ratio_.first));
    } else if (in_ratio > ratio_.second) {
      w = static_cast<int64_t>(std::nearbyint(double(h) * ratio_.second));
    }
    return {(height - h) / 2, (width - w) / 2, h, w};
  }

  Tensor operator()(const Tensor& img, Generator& gen) const {
    const Tensor x = detail_augment::checked(img, "RandomResizedCrop");
    return transforms::resize(crop(x, get_params(x.size(-2), x.size(-1), gen)), size_);
  }

 private:
  transforms::ImageSize size_;
  std::pair<double, double> scale_, ratio_;
};

// transforms::resize: Resize(shorter) scales the shorter side, Resize({h, w}) to exactly h x w.
class Resize {
 public:
  explicit Resize(int64_t shorter) : shorter_(shorter) {
    GRAFT_CHECK(shorter > 0, "Resize", "the shorter side must be positive, got ", shorter);
  }
  explicit Resize(transforms::ImageSize size) : size_(size) {}
  Tensor operator()(const Tensor& img, Generator&) const {
    return shorter_ > 0 ? transforms::resize_shorter(img, shorter_) : transforms::resize(img, size_);
  }

 private:
  int64_t shorter_ = 0;
  transforms::ImageSize size_;
};

class CenterCrop {
 public:
  explicit CenterCrop(int64_t size) : size_{size, size} {}
  explicit CenterCrop(transforms::ImageSize size) : size_(size) {}
  Tensor operator()(const Tensor& img, Generator&) const {
    return transforms::center_crop(img, size_.height, size_.width);
  }

 private:
  transforms::ImageSize size_;
};

class Normalize {
 public:
  Normalize(std::vector<double> mean, std::vector<double> std) : mean_(std::move(mean)), std_(std::move(std)) {}
  Tensor operator()(const Tensor& img, Generator&) const { return transforms::normalize(img, mean_, std_); }

 private:
  std::vector<double> mean_, std_;
};

// Applies the transforms in order, all drawing from the one generator.
class Compose {
 public:
  Compose(std::vector<ExampleTransform> transforms) : transforms_(std::move(transforms)) {
    for (size_t i = 0; i < transforms_.size(); ++i)
      GRAFT_CHECK(static_cast<bool>(transforms_[i]), "Compose", "transform ", i, " is empty");
  }
  Tensor operator()(const Tensor& img, Generator& gen) const {
    Tensor x = img;
    for (const ExampleTransform& t : transforms_) x = t(x, gen);
    return x;
  }

 private:
  std::vector<ExampleTransform> transforms_;
};

}  // namespace graft::data::augment
