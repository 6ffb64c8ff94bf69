// graft/transfer/feature_cache.hpp - compute a frozen backbone's features once, then train a linear
// probe on them for as many epochs as it takes (feature extraction, the cheapest transfer recipe).
//
//   transfer::FeatureCache cache([&](const Tensor& x) { return backbone->forward_features(x); }, 64);
//   const Tensor& train_f = cache.get("train", train_images);   // [N, F]: backbone run once, in batches
//   const Tensor& test_f = cache.get("test", test_images);
//   for (epoch ...) { ... head->forward(train_f.narrow(0, i, b)) ... }     // no backbone work at all
//
// The backbone runs under NoGradGuard (no graph, no gradient work) on batches of batch_size rows; the
// caller puts the model in eval mode (BatchNorm with running statistics, no dropout). get() with a key
// already cached checks that the inputs are the same rows (shape and a checksum) and throws naming the
// key otherwise, so a stale cache is never used silently.
#pragma once
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "graft/graft.hpp"

namespace graft::transfer {

class FeatureCache {
 public:
  using Backbone = std::function<Tensor(const Tensor&)>;
  explicit FeatureCache(Backbone backbone, int64_t batch_size = 64)
      : backbone_(std::move(backbone)), batch_size_(batch_size) {
    GRAFT_CHECK(backbone_ != nullptr, "FeatureCache", "no backbone function");
    GRAFT_CHECK(batch_size >= 1, "FeatureCache", "batch_size must be >= 1, got ", batch_size);
  }

  const Tensor& get(const std::string& key, const Tensor& inputs) {
    GRAFT_CHECK(inputs.defined() && inputs.dim() >= 1 && inputs.size(0) >= 1, "FeatureCache", "'", key,
                "': inputs must have at least one row");
    const double sum = checksum(inputs);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      GRAFT_CHECK(it->second.input_shape == inputs.shape() && it->second.checksum == sum, "FeatureCache", "'", key,
                  "' was cached for other inputs (shape ", it->second.input_shape, ", now ", inputs.shape(),
                  "); use another key or clear() it");
      return it->second.features;
    }
    NoGradGuard no_grad;
    const int64_t n = inputs.size(0);
    std::vector<Tensor> parts;
    for (int64_t start = 0; start < n; start += batch_size_) {
      const Tensor f = backbone_(inputs.narrow(0, start, std::min(batch_size_, n - start)));
      ++calls_;
      GRAFT_CHECK(f.dim() == 2 && f.size(0) == std::min(batch_size_, n - start), "FeatureCache", "'", key,
                  "': the backbone should return [batch, features], got ", f.shape());
      parts.push_back(f.detach());
    }
    Entry e{inputs.shape(), sum, parts.size() == 1 ? parts[0].contiguous() : cat(parts, 0)};
    return entries_.emplace(key, std::move(e)).first->second.features;
  }

  bool contains(const std::string& key) const { return entries_.count(key) != 0; }
  void clear() { entries_.clear(); }
  // Backbone batches run so far (what the cache saves: a probe of E epochs would otherwise run E times as many).
  int64_t backbone_calls() const { return calls_; }

 private:
  struct Entry {
    Shape input_shape;
    double checksum;
    Tensor features;
  };
  // Sum and position-weighted sum of the values: cheap, and changes when rows are reordered.
  static double checksum(const Tensor& t) {
    const auto v = t.to_vector();
    double s = 0, w = 0;
    for (size_t i = 0; i < v.size(); ++i) s += v[i], w += v[i] * double(i % 1009 + 1);
    return s + 1e-3 * w;
  }
  Backbone backbone_;
  int64_t batch_size_;
  int64_t calls_ = 0;
  std::map<std::string, Entry> entries_;
};

}  // namespace graft::transfer
