// graft/data/transforms.hpp - torchvision-style image transforms on [C, H, W] / [N, C, H, W] tensors.
//
// Not part of graft.hpp. Typical ImageNet evaluation preprocessing:
//
//   graft::Tensor x = graft::io::read_image("cat.jpg");           // [3, H, W] float32 in [0, 1]
//   x = graft::transforms::resize(x, 256);                        // shorter side to 256
//   x = graft::transforms::center_crop(x, 224, 224);              // [3, 224, 224]
//   x = graft::transforms::normalize(x, graft::transforms::kImageNetMean, graft::transforms::kImageNetStd);
//   // or all three: graft::transforms::imagenet_eval(x)
//
// Contracts (each matches torchvision 0.14's tensor path, checked by tests/test_image.cpp):
//   Inputs are float32 or float64 CPU tensors [..., C, H, W] (any leading batch dims); outputs are
//   new contiguous tensors of the same dtype that do not require grad (preprocessing, not a layer).
//   resize: torchvision.transforms.functional.resize(x, size, BILINEAR, max_size, antialias=True),
//     i.e. torch's _upsample_bilinear2d_aa: separable triangle filtering whose support grows with
//     the downscale factor (PIL's ImagingResample), width pass then height pass. Only the antialiased
//     bilinear mode exists here.
//   center_crop: F.center_crop, including its Python round-half-to-even offsets and its zero padding
//     when the crop is larger than the image.
//   normalize: F.normalize, (x - mean[c]) / std[c] computed in the tensor's dtype.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "graft/graft.hpp"

namespace graft::transforms {

inline const std::vector<double> kImageNetMean = {0.485, 0.456, 0.406};
inline const std::vector<double> kImageNetStd = {0.229, 0.224, 0.225};

struct ImageSize {
  int64_t height = 0, width = 0;
  bool operator==(const ImageSize&) const = default;
};

namespace detail_transforms {

// Checks a [..., C, H, W] float CPU image and returns it contiguous.
inline Tensor checked_image(const Tensor& img, const char* op) {
  GRAFT_CHECK(img.defined(), op, "the image tensor is undefined");
  GRAFT_CHECK(img.dim() >= 3, op, "expected an image [..., C, H, W], got shape ", img.shape().str());
  GRAFT_CHECK(img.dtype() == DType::Float32 || img.dtype() == DType::Float64, op,
              "expected a float32 or float64 image, got ", dtype_name(img.dtype()));
  GRAFT_CHECK(img.device() == kCPU, op, "expected a CPU tensor");
  GRAFT_CHECK(img.size(-1) > 0 && img.size(-2) > 0, op, "empty image, shape ", img.shape().str());
  return img.detach().contiguous();
}

inline Shape with_hw(const Shape& s, int64_t h, int64_t w) {
  Shape out = s;
  out[s.rank() - 2] = h;
  out[s.rank() - 1] = w;
  return out;
}

// One axis of the antialiased resampling (torch's _compute_weights_aa, bilinear filter): output
// index i reads inputs [start[i], start[i] + count[i]) with weights[i * max_taps + j]. Computed in T
// (float for float32 images, as torch does) so the window bounds truncate exactly as torch's.
template <class T>
struct AxisWeights {
  int64_t max_taps = 0;
  std::vector<int64_t> start, count;
  std::vector<T> weights;
};

template <class T>
AxisWeights<T> antialias_bilinear_weights(int64_t in_size, int64_t out_size) {
  const T scale = static_cast<T>(in_size) / static_cast<T>(out_size);  // align_corners=False, no scale given
  const T support = scale >= T(1) ? scale : T(1);                     // (interp_size / 2) * max(scale, 1)
  const T invscale = scale >= T(1) ? T(1) / scale : T(1);
  AxisWeights<T> aw;
  aw.max_taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  aw.start.resize(size_t(out_size));
  aw.count.resize(size_t(out_size));
  aw.weights.assign(size_t(out_size * aw.max_taps), T(0));
  for (int64_t i = 0; i < out_size; ++i) {
    const T center = scale * (static_cast<T>(i) + T(0.5));
    const int64_t xmin = std::max<int64_t>(static_cast<int64_t>(center - support + T(0.5)), 0);
    const int64_t xsize = std::min<int64_t>(static_cast<int64_t>(center + support + T(0.5)), in_size) - xmin;
    GRAFT_ASSERT(xsize >= 1 && xsize <= aw.max_taps);
    T* w = aw.weights.data() + i * aw.max_taps;
    T total = 0;
    for (int64_t j = 0; j < xsize; ++j) {
      const T x = std::abs((static_cast<T>(j + xmin) - center + T(0.5)) * invscale);
      w[j] = x < T(1) ? T(1) - x : T(0);  // triangle filter
      total += w[j];
    }
    if (total != T(0))
      for (int64_t j = 0; j < xsize; ++j) w[j] /= total;
    aw.start[size_t(i)] = xmin;
    aw.count[size_t(i)] = xsize;
  }
  return aw;
}

// out[p, i, q] = sum_j in[p, start[i] + j, q] * w[i, j], for a contiguous [outer, in_len, inner]
// input and [outer, out_len, inner] output (inner = 1 resamples rows, inner = W resamples columns).
template <class T>
void resample_axis(const T* in, T* out, int64_t outer, int64_t in_len, int64_t inner, const AxisWeights<T>& aw) {
  const int64_t out_len = int64_t(aw.start.size());
  for (int64_t p = 0; p < outer; ++p)
    for (int64_t i = 0; i < out_len; ++i) {
      const T* w = aw.weights.data() + i * aw.max_taps;
      const T* src = in + (p * in_len + aw.start[size_t(i)]) * inner;
      T* dst = out + (p * out_len + i) * inner;
      for (int64_t q = 0; q < inner; ++q) {
        T acc = src[q] * w[0];
        for (int64_t j = 1; j < aw.count[size_t(i)]; ++j) acc += src[j * inner + q] * w[j];
        dst[q] = acc;
      }
    }
}

}  // namespace detail_transforms

// The output size torchvision computes for resize(size=[shorter]) (with max_size) on an h x w image:
// the shorter side becomes `shorter`, the longer int(shorter * long / short); when that exceeds
// max_size the longer side becomes max_size and the shorter int(max_size * shorter / longer).
inline ImageSize resized_size(int64_t height, int64_t width, int64_t shorter, std::optional<int64_t> max_size = {}) {
  GRAFT_CHECK(height > 0 && width > 0, "resize", "image size must be positive, got ", height, " x ", width);
  GRAFT_CHECK(shorter > 0, "resize", "the requested shorter side must be positive, got ", shorter);
  const bool w_is_short = width <= height;
  const int64_t short_in = w_is_short ? width : height, long_in = w_is_short ? height : width;
  int64_t new_short = shorter;
  int64_t new_long = static_cast<int64_t>(static_cast<double>(shorter * long_in) / static_cast<double>(short_in));
  if (max_size) {
    GRAFT_CHECK(*max_size > shorter, "resize", "max_size = ", *max_size,
                " must be strictly greater than the requested shorter side ", shorter);
    if (new_long > *max_size) {
      new_short = static_cast<int64_t>(static_cast<double>(*max_size * new_short) / static_cast<double>(new_long));
      new_long = *max_size;
    }
  }
  return w_is_short ? ImageSize{new_long, new_short} : ImageSize{new_short, new_long};
}

// Resizes [..., C, H, W] to [..., C, height, width] (antialiased bilinear, see the contract above).
// Same size in and out returns an unchanged copy.
inline Tensor resize(const Tensor& img, ImageSize size) {
  const Tensor x = detail_transforms::checked_image(img, "resize");
  GRAFT_CHECK(size.height > 0 && size.width > 0, "resize", "the output size must be positive, got ", size.height,
              " x ", size.width);
  const int64_t h = x.size(-2), w = x.size(-1);
  const int64_t planes = x.numel() / (h * w);
  if (size.height == h && size.width == w) return x.clone();
  Tensor out = empty(detail_transforms::with_hw(x.shape(), size.height, size.width), x.dtype());
  GRAFT_DISPATCH_FLOAT(x.dtype(), "resize", T, [&] {
    // Width pass [planes * h, w] -> [planes * h, out_w], then height pass [planes, h, out_w] -> [planes, out_h, out_w].
    const auto ww = detail_transforms::antialias_bilinear_weights<T>(w, size.width);
    const auto wh = detail_transforms::antialias_bilinear_weights<T>(h, size.height);
    std::vector<T> tmp(size_t(planes * h * size.width));
    detail_transforms::resample_axis<T>(x.data<T>(), tmp.data(), planes * h, w, 1, ww);
    detail_transforms::resample_axis<T>(tmp.data(), out.data<T>(), planes, h, size.width, wh);
  });
  return out;
}

inline Tensor resize(const Tensor& img, int64_t height, int64_t width) { return resize(img, ImageSize{height, width}); }

// Resizes so the shorter side is `shorter`, the longer capped by max_size (torchvision's
// resize(x, [shorter], max_size=...)); output size as resized_size(). A separate name, so that
// resize(x, 20, 30) can only mean height x width.
inline Tensor resize_shorter(const Tensor& img, int64_t shorter, std::optional<int64_t> max_size = {}) {
  GRAFT_CHECK(img.defined() && img.dim() >= 3, "resize", "expected an image [..., C, H, W], got shape ",
              img.defined() ? img.shape().str() : "undefined");
  return resize(img, resized_size(img.size(-2), img.size(-1), shorter, max_size));
}

// Resizes so the shorter side is `shorter` (torchvision's resize(x, shorter)).
inline Tensor resize(const Tensor& img, int64_t shorter) { return resize_shorter(img, shorter); }

// The central height x width window; zero-padded first (as torchvision) when it is larger than the image.
inline Tensor center_crop(const Tensor& img, int64_t height, int64_t width) {
  Tensor x = detail_transforms::checked_image(img, "center_crop");
  GRAFT_CHECK(height > 0 && width > 0, "center_crop", "the crop size must be positive, got ", height, " x ", width);
  int64_t h = x.size(-2), w = x.size(-1);
  if (height > h || width > w) {
    const int64_t pad_top = height > h ? (height - h) / 2 : 0, pad_left = width > w ? (width - w) / 2 : 0;
    const int64_t new_h = std::max(h, height), new_w = std::max(w, width);
    Tensor padded = zeros(detail_transforms::with_hw(x.shape(), new_h, new_w), x.dtype());
    const int64_t planes = x.numel() / (h * w);
    GRAFT_DISPATCH_FLOAT(x.dtype(), "center_crop", T, [&] {
      const T* src = x.data<T>();
      T* dst = padded.data<T>();
      for (int64_t p = 0; p < planes; ++p)
        for (int64_t y = 0; y < h; ++y)
          for (int64_t c = 0; c < w; ++c)
            dst[(p * new_h + y + pad_top) * new_w + c + pad_left] = src[(p * h + y) * w + c];
    });
    x = padded;
    h = new_h;
    w = new_w;
  }
  // Python's round((h - height) / 2): the half-way case rounds to the even integer.
  auto round_half_even_half = [](int64_t d) { return d % 2 == 0 ? d / 2 : ((d / 2) % 2 == 0 ? d / 2 : d / 2 + 1); };
  const int64_t top = round_half_even_half(h - height), left = round_half_even_half(w - width);
  return x.narrow(-2, top, height).narrow(-1, left, width).contiguous();
}

inline Tensor center_crop(const Tensor& img, int64_t size) { return center_crop(img, size, size); }

// (x - mean[c]) / std[c] over the channel dim (-3), in the image's dtype as torchvision.
inline Tensor normalize(const Tensor& img, const std::vector<double>& mean, const std::vector<double>& std) {
  const Tensor x = detail_transforms::checked_image(img, "normalize");
  const int64_t channels = x.size(-3), plane = x.size(-2) * x.size(-1);
  GRAFT_CHECK(int64_t(mean.size()) == channels && int64_t(std.size()) == channels, "normalize", "the image has ",
              channels, " channels but mean has ", mean.size(), " and std ", std.size(), " values");
  for (size_t c = 0; c < std.size(); ++c)
    GRAFT_CHECK(std[c] != 0.0, "normalize", "std[", c, "] is 0 (division by zero)");
  Tensor out = empty(x.shape(), x.dtype());
  const int64_t planes = x.numel() / plane;
  GRAFT_DISPATCH_FLOAT(x.dtype(), "normalize", T, [&] {
    const T* src = x.data<T>();
    T* dst = out.data<T>();
    for (int64_t p = 0; p < planes; ++p) {
      const T m = static_cast<T>(mean[size_t(p % channels)]), s = static_cast<T>(std[size_t(p % channels)]);
      for (int64_t i = 0; i < plane; ++i) dst[p * plane + i] = (src[p * plane + i] - m) / s;
    }
  });
  return out;
}

// resize(shorter side) -> center_crop(crop x crop) -> normalize(ImageNet): torchvision's standard
// evaluation preprocessing (Resize(256), CenterCrop(224), ToTensor, Normalize).
inline Tensor imagenet_eval(const Tensor& img, int64_t resize_to = 256, int64_t crop = 224) {
  return normalize(center_crop(resize(img, resize_to), crop, crop), kImageNetMean, kImageNetStd);
}

// Stacks equally shaped [C, H, W] images into one [N, C, H, W] batch (error names the odd one out).
inline Tensor stack_images(const std::vector<Tensor>& images) {
  GRAFT_CHECK(!images.empty(), "stack_images", "expected at least one image");
  for (size_t i = 0; i < images.size(); ++i) {
    GRAFT_CHECK(images[i].defined() && images[i].dim() == 3, "stack_images", "image ", i,
                " must be [C, H, W], got ", images[i].defined() ? images[i].shape().str() : "undefined");
    GRAFT_CHECK(images[i].shape() == images[0].shape(), "stack_images", "image ", i, " has shape ",
                images[i].shape().str(), " but image 0 has ", images[0].shape().str(),
                " (resize / center_crop them to one size first)");
  }
  NoGradGuard no_grad;
  std::vector<Tensor> detached;
  for (const Tensor& t : images) detached.push_back(t.detach());
  return stack(detached, 0);
}

}  // namespace graft::transforms
