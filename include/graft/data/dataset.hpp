// graft/data/dataset.hpp - datasets: indexed collections of (input, label) examples, as torch.utils.data.
//
// Not part of graft.hpp (the example also includes graft/data/augment.hpp). A dataset is held by std::shared_ptr<const Dataset> so a DataLoader's
// worker threads can keep it alive (graft/data/loader.hpp). Typical transfer-learning setup:
//
//   using namespace graft::data;
//   auto train = std::make_shared<ImageFolder>("photos/train", augment::Compose({
//       augment::RandomResizedCrop(224), augment::RandomHorizontalFlip(),
//       augment::Normalize(graft::transforms::kImageNetMean, graft::transforms::kImageNetStd)}));
//   // train->classes() == {"cat", "dog"} (sorted folder names -> labels 0, 1)
//   auto [few, rest] = stratified_split(dataset_labels(*train), /*per_class=*/10, /*seed=*/0);
//   auto few_shot = std::make_shared<Subset>(train, few);  // 10 labelled images per class
//
// Contracts:
//   Dataset::get(i) and get(i, gen) must be thread-safe: a DataLoader calls them from several threads
//   at once (const, no shared mutable state). Random transforms draw only from the `gen` they are
//   given, so an example is a pure function of (index, gen's seed): reproducible whatever the
//   number of loader threads. ImageFolder's and MappedDataset's get(i) without a generator use
//   Generator(example_seed(0, 0, i)); Subset forwards to its base.
//   Inputs are returned without autograd history (requires_grad false).
//   Indices out of [0, size()) throw graft::Error naming the index and the size.
#pragma once
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "graft/graft.hpp"
#include "graft/io/image.hpp"

namespace graft::data {

// One example: an input tensor (e.g. an image [C, H, W] float32) and its class label.
struct Example {
  Tensor input;
  int64_t label = 0;
};

// A per-example transform: takes the input and the example's generator, returns the new input.
using ExampleTransform = std::function<Tensor(const Tensor&, Generator&)>;

// The seed of the generator an example's random transforms draw from: a hash (splitmix64 steps) of
// (loader seed, epoch, dataset index), so every example of every epoch gets its own stream.
inline uint64_t example_seed(uint64_t seed, int64_t epoch, int64_t index) {
  auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  return mix(mix(mix(seed) ^ uint64_t(epoch)) ^ uint64_t(index));
}

// A uniform integer in [0, n) (n >= 1): next_u64() % n, redrawing the few values at the top of the
// 64-bit range that would make the remainder biased.
inline int64_t uniform_index(Generator& gen, int64_t n) {
  GRAFT_ASSERT(n >= 1);
  const uint64_t un = uint64_t(n);
  const uint64_t limit = UINT64_MAX - UINT64_MAX % un;  // [0, limit) holds whole copies of [0, n)
  uint64_t x = gen.next_u64();
  while (x >= limit) x = gen.next_u64();
  return int64_t(x % un);
}

// A random permutation of 0..n-1 (Fisher-Yates), reproducible for a given generator state.
inline std::vector<int64_t> random_permutation(int64_t n, Generator& gen) {
  std::vector<int64_t> p(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[size_t(i)], p[size_t(uniform_index(gen, i + 1))]);
  return p;
}

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // The example at `index` (deterministic datasets implement this one).
  virtual Example get(int64_t index) const = 0;
  // The example at `index`, random transforms drawing from `gen`. Datasets with random transforms
  // override this; the default ignores gen.
  virtual Example get(int64_t index, Generator& gen) const {
    (void)gen;
    return get(index);
  }
  // The label alone; datasets that can answer without decoding the input override it.
  virtual int64_t label(int64_t index) const { return get(index).label; }

 protected:
  void check_index(int64_t index, const char* component) const {
    GRAFT_CHECK(index >= 0 && index < size(), component, "index ", index, " is out of range for a dataset of ",
                size(), " examples");
  }
};

// All labels of a dataset, in index order (through Dataset::label, so ImageFolder decodes nothing).
inline std::vector<int64_t> dataset_labels(const Dataset& ds) {
  std::vector<int64_t> out(size_t(ds.size()));
  for (int64_t i = 0; i < ds.size(); ++i) out[size_t(i)] = ds.label(i);
  return out;
}

// Checks that every label of ds is a class index of a num_classes-way head, before training: a label
// out of [0, num_classes) throws graft::Error naming the label, its dataset index and the valid range
// (cross_entropy would name only its position in one batch). ImageFolder decodes nothing for this.
inline void check_labels(const Dataset& ds, int64_t num_classes, const std::string& what = "dataset") {
  GRAFT_CHECK(num_classes >= 1, "check_labels", "num_classes must be >= 1, got ", num_classes);
  for (int64_t i = 0; i < ds.size(); ++i) {
    const int64_t y = ds.label(i);
    GRAFT_CHECK(y >= 0 && y < num_classes, "check_labels", what, ": label ", y, " at index ", i, " of ", ds.size(),
                " is out of range for a ", num_classes, "-class head (expected in [0, ", num_classes - 1,
                "]); ", y < 0 ? std::string("labels are class indices, >= 0")
                              : detail::concat("a head needs ", y + 1, " classes for it, or fix the labels"));
  }
}

// Examples are slices of inputs [N, ...] (views sharing its storage) with labels [N] int64.
class TensorDataset : public Dataset {
 public:
  TensorDataset(const Tensor& inputs, const Tensor& labels) {
    GRAFT_CHECK(inputs.defined() && labels.defined(), "TensorDataset", "inputs and labels must be defined");
    GRAFT_CHECK(inputs.dim() >= 1, "TensorDataset", "inputs must be [N, ...], got a 0-d tensor");
    GRAFT_CHECK(labels.dtype() == DType::Int64, "TensorDataset", "labels must be int64, got ",
                dtype_name(labels.dtype()));
    GRAFT_CHECK(labels.dim() == 1 && labels.size(0) == inputs.size(0), "TensorDataset", "labels must be [N] = [",
                inputs.size(0), "] to match inputs ", inputs.shape().str(), ", got ", labels.shape().str());
    inputs_ = inputs.detach();
    const std::vector<double> l = labels.to_vector();
    labels_.assign(l.begin(), l.end());
  }
  using Dataset::get;
  int64_t size() const override { return int64_t(labels_.size()); }
  Example get(int64_t index) const override {
    check_index(index, "TensorDataset");
    return {inputs_.select(0, index), labels_[size_t(index)]};
  }
  int64_t label(int64_t index) const override {
    check_index(index, "TensorDataset");
    return labels_[size_t(index)];
  }

 private:
  Tensor inputs_;
  std::vector<int64_t> labels_;
};

// The examples base[indices[0]], base[indices[1]], ... (torch.utils.data.Subset).
class Subset : public Dataset {
 public:
  Subset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices)
      : base_(std::move(base)), indices_(std::move(indices)) {
    GRAFT_CHECK(base_ != nullptr, "Subset", "the base dataset is null");
    const int64_t n = base_->size();
    for (size_t k = 0; k < indices_.size(); ++k)
      GRAFT_CHECK(indices_[k] >= 0 && indices_[k] < n, "Subset", "indices[", k, "] = ", indices_[k],
                  " is out of range for a base dataset of ", n, " examples");
  }
  int64_t size() const override { return int64_t(indices_.size()); }
  Example get(int64_t index) const override {
    check_index(index, "Subset");
    return base_->get(indices_[size_t(index)]);
  }
  Example get(int64_t index, Generator& gen) const override {
    check_index(index, "Subset");
    return base_->get(indices_[size_t(index)], gen);
  }
  int64_t label(int64_t index) const override {
    check_index(index, "Subset");
    return base_->label(indices_[size_t(index)]);
  }
  const std::vector<int64_t>& indices() const { return indices_; }

 private:
  std::shared_ptr<const Dataset> base_;
  std::vector<int64_t> indices_;
};

// Picks `per_class` examples of every class (distinct label) for a few-labels experiment: per class,
// in increasing label order, one generator Generator(seed) shuffles that class's indices and the
// first per_class are picked. Returns (picked, rest), each sorted ascending; together they hold every
// index once. A class with fewer than per_class examples is an error naming it.
inline std::pair<std::vector<int64_t>, std::vector<int64_t>> stratified_split(const std::vector<int64_t>& labels,
                                                                              int64_t per_class, uint64_t seed) {
  GRAFT_CHECK(per_class >= 0, "stratified_split", "per_class must be >= 0, got ", per_class);
  std::map<int64_t, std::vector<int64_t>> by_class;  // label -> indices, ascending
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(int64_t(i));
  Generator gen(seed);
  std::vector<int64_t> picked, rest;
  for (auto& [label, indices] : by_class) {
    GRAFT_CHECK(int64_t(indices.size()) >= per_class, "stratified_split", "class ", label, " has ",
                indices.size(), " examples, fewer than the ", per_class, " per class requested");
    const std::vector<int64_t> perm = random_permutation(int64_t(indices.size()), gen);
    for (size_t k = 0; k < perm.size(); ++k)
      (int64_t(k) < per_class ? picked : rest).push_back(indices[size_t(perm[k])]);
  }
  std::sort(picked.begin(), picked.end());
  std::sort(rest.begin(), rest.end());
  return {std::move(picked), std::move(rest)};
}

// Applies fn(input, gen) to every example of base (labels unchanged); the base's own random
// transforms, if any, draw from the same generator first.
class MappedDataset : public Dataset {
 public:
  MappedDataset(std::shared_ptr<const Dataset> base, ExampleTransform fn) : base_(std::move(base)), fn_(std::move(fn)) {
    GRAFT_CHECK(base_ != nullptr, "MappedDataset", "the base dataset is null");
    GRAFT_CHECK(static_cast<bool>(fn_), "MappedDataset", "the transform is empty");
  }
  int64_t size() const override { return base_->size(); }
  Example get(int64_t index) const override {
    Generator gen(example_seed(0, 0, index));
    return get(index, gen);
  }
  Example get(int64_t index, Generator& gen) const override {
    check_index(index, "MappedDataset");
    Example ex = base_->get(index, gen);
    NoGradGuard no_grad;
    ex.input = fn_(ex.input, gen).detach();
    return ex;
  }
  int64_t label(int64_t index) const override { return base_->label(index); }

 private:
  std::shared_ptr<const Dataset> base_;
  ExampleTransform fn_;
};

// root/<class>/**/<image> (torchvision.datasets.ImageFolder): class folders sorted by name give
// labels 0..C-1; files with extension .png .jpg .jpeg .bmp (any case), searched recursively inside
// each class folder, ordered by (folder path, file name) as torchvision's sorted(os.walk(...));
// other files and files directly in root are ignored. Images are decoded by graft::io::read_image
// when get() is called (a corrupt file throws graft::Error "ImageFolder: could not decode <path>
// (example i of N, class 'c'): <the decoder's reason>"), then `transform` is applied.
// Errors at construction: root missing or not a folder, no class folders, a class folder without
// images (each naming the path).
class ImageFolder : public Dataset {
 public:
  struct Sample {
    std::string path;
    int64_t label = 0;
  };

  explicit ImageFolder(const std::string& root, ExampleTransform transform = {},
                       io::ImageMode mode = io::ImageMode::RGB)
      : root_(root), transform_(std::move(transform)), mode_(mode) {
    namespace fs = std::filesystem;
    std::error_code ec;
    GRAFT_CHECK(fs::exists(root, ec), "ImageFolder", root, ": no such folder");
    GRAFT_CHECK(fs::is_directory(root, ec), "ImageFolder", root, ": not a folder");
    for (const fs::directory_entry& e : fs::directory_iterator(root))
      if (e.is_directory()) classes_.push_back(e.path().filename().string());
    std::sort(classes_.begin(), classes_.end());
    GRAFT_CHECK(!classes_.empty(), "ImageFolder", root,
                ": no class folders (expected root/<class>/<image files>)");
    for (size_t c = 0; c < classes_.size(); ++c) {
      const fs::path class_dir = fs::path(root) / classes_[c];
      std::vector<std::pair<std::string, std::string>> found;  // (folder, file name)
      for (const fs::directory_entry& e :
           fs::recursive_directory_iterator(class_dir, fs::directory_options::follow_directory_symlink))
        if (e.is_regular_file() && has_image_extension(e.path()))
          found.emplace_back(e.path().parent_path().string(), e.path().filename().string());
      GRAFT_CHECK(!found.empty(), "ImageFolder", class_dir.string(),
                  ": class folder without images (.png .jpg .jpeg .bmp)");
      std::sort(found.begin(), found.end());
      for (const auto& [dir, name] : found) samples_.push_back({(fs::path(dir) / name).string(), int64_t(c)});
    }
  }

  using Dataset::get;
  int64_t size() const override { return int64_t(samples_.size()); }
  Example get(int64_t index) const override {
    Generator gen(example_seed(0, 0, index));
    return get(index, gen);
  }
  Example get(int64_t index, Generator& gen) const override {
    check_index(index, "ImageFolder");
    const Sample& s = samples_[size_t(index)];
    Tensor img;
    try {
      img = io::read_image(s.path, mode_);
    } catch (const Error& e) {
      throw Error(detail::concat("ImageFolder: could not decode ", s.path, " (example ", index, " of ", size(),
                                 ", class '", classes_[size_t(s.label)], "'): ", e.what(),
                                 "; remove or replace the file"));
    }
    if (transform_) {
      NoGradGuard no_grad;
      img = transform_(img, gen).detach();
    }
    return {img, s.label};
  }
  int64_t label(int64_t index) const override {
    check_index(index, "ImageFolder");
    return samples_[size_t(index)].label;
  }

  const std::vector<std::string>& classes() const { return classes_; }
  const std::vector<Sample>& samples() const { return samples_; }
  const std::string& root() const { return root_; }

  static bool has_image_extension(const std::filesystem::path& p) {
    std::string ext = p.extension().string();
    for (char& ch : ext) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
  }

 private:
  std::string root_;
  ExampleTransform transform_;
  io::ImageMode mode_;
  std::vector<std::string> classes_;
  std::vector<Sample> samples_;
};

}  // namespace graft::data
