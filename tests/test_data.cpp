// tests/test_data.cpp - Dataset, Subset, stratified_split, ImageFolder, augmentation and DataLoader
// (graft/data/{dataset,augment,loader}.hpp). Data: tests/data/data/ (tiny images, see its README.md);
// a few folders are made under the system temp dir for the empty-folder errors.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "graft/data/augment.hpp"
#include "graft/data/dataset.hpp"
#include "graft/data/loader.hpp"
#include "harness.hpp"

namespace {

using graft::Generator;
using graft::Shape;
using graft::Tensor;
namespace gd = graft::data;
namespace aug = graft::data::augment;
namespace gtf = graft::transforms;

const std::string kDataTestDir = std::string(GRAFT_TEST_DATA_DIR) + "/data/";

// inputs [n, 2, 3, 4] float32 with x[i] = i + small distinct values, labels i % classes.
std::shared_ptr<gd::TensorDataset> data_test_tensor_dataset(int64_t n, int64_t classes = 3) {
  Tensor x = graft_test::rand_in(Shape{n, 2, 3, 4}, 0.0, 1.0, 7, graft::DType::Float32);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < n; ++i) labels.push_back(i % classes);
  return std::make_shared<gd::TensorDataset>(x, graft::from_vector(labels, Shape{n}));
}

std::vector<int64_t> data_test_flat_indices(gd::DataLoader& loader) {
  std::vector<int64_t> out;
  for (const gd::Batch& b : loader) out.insert(out.end(), b.indices.begin(), b.indices.end());
  return out;
}

// A fresh empty folder under the temp dir.
std::filesystem::path data_test_temp_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("graft_test_data_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Inputs of shape [1, 2 + (i % 2), 2]: examples 0 and 1 differ in shape.
class DataTestRaggedDataset : public gd::Dataset {
 public:
  using gd::Dataset::get;
  int64_t size() const override { return 4; }
  gd::Example get(int64_t i) const override { return {graft::zeros(Shape{1, 2 + (i % 2), 2}), 0}; }
};

// Counts get() calls (atomically; get is called from loader threads) and sleeps a little, so a
// loader is still busy when the consumer leaves early.
class DataTestSlowDataset : public gd::Dataset {
 public:
  explicit DataTestSlowDataset(std::shared_ptr<std::atomic<int>> calls) : calls_(std::move(calls)) {}
  using gd::Dataset::get;
  int64_t size() const override { return 64; }
  gd::Example get(int64_t i) const override {
    ++*calls_;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return {graft::full(Shape{2}, double(i)), i};
  }

 private:
  std::shared_ptr<std::atomic<int>> calls_;
};

void data_test_require_same_batches(const std::vector<gd::Batch>& a, const std::vector<gd::Batch>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    REQUIRE(a[k].indices == b[k].indices);
    REQUIRE(a[k].labels.to_vector() == b[k].labels.to_vector());
    REQUIRE(a[k].inputs.shape() == b[k].inputs.shape());
    REQUIRE(a[k].inputs.to_vector() == b[k].inputs.to_vector());  // bit-identical
  }
}

std::vector<gd::Batch> data_test_collect(gd::DataLoader& loader) {
  std::vector<gd::Batch> out;
  for (const gd::Batch& b : loader) out.push_back(b);
  return out;
}

}  // namespace

TEST_CASE("data: TensorDataset and Subset", "[data]") {
  auto ds = data_test_tensor_dataset(5);
  REQUIRE(ds->size() == 5);
  const gd::Example ex = ds->get(3);
  REQUIRE(ex.label == 0);
  REQUIRE(ex.input.shape() == Shape{2, 3, 4});
  REQUIRE(!ex.input.requires_grad());
  REQUIRE(ds->label(4) == 1);
  graft_test::require_error([&] { ds->get(5); }, {"TensorDataset", "index 5", "5 examples"});
  graft_test::require_error([&] { gd::TensorDataset(graft::zeros(Shape{3, 2}), graft::zeros(Shape{3})); },
                            {"TensorDataset", "int64", "float32"});
  graft_test::require_error(
      [&] { gd::TensorDataset(graft::zeros(Shape{3, 2}), graft::zeros(Shape{4}, graft::DType::Int64)); },
      {"TensorDataset", "[N] = [3]", "[4]"});

  gd::Subset sub(ds, {4, 0, 2});
  REQUIRE(sub.size() == 3);
  REQUIRE(sub.label(0) == 1);
  REQUIRE(sub.get(1).input.to_vector() == ds->get(0).input.to_vector());
  REQUIRE(gd::dataset_labels(sub) == std::vector<int64_t>{1, 0, 2});
  graft_test::require_error([&] { gd::Subset(ds, {0, 7}); }, {"Subset", "indices[1] = 7", "5 examples"});
  graft_test::require_error([&] { sub.get(-1); }, {"Subset", "index -1"});
}

TEST_CASE("data: stratified_split picks per_class of each class, reproducibly", "[data]") {
  std::vector<int64_t> labels;
  for (int i = 0; i < 40; ++i) labels.push_back(i % 5 == 4 ? 7 : i % 3);  // class sizes 11, 10, 11, 8
  const auto [picked, rest] = gd::stratified_split(labels, 3, 11);
  REQUIRE(picked.size() == 12);
  REQUIRE(rest.size() == 28);
  std::map<int64_t, int> per_class;
  for (int64_t i : picked) ++per_class[labels[size_t(i)]];
  REQUIRE(per_class == std::map<int64_t, int>{{0, 3}, {1, 3}, {2, 3}, {7, 3}});
  std::set<int64_t> all(picked.begin(), picked.end());
  all.insert(rest.begin(), rest.end());
  REQUIRE(all.size() == 40);  // disjoint, and together every index
  REQUIRE(std::is_sorted(picked.begin(), picked.end()));
  REQUIRE(gd::stratified_split(labels, 3, 11).first == picked);
  bool some_seed_differs = false;
  for (uint64_t s = 12; s < 16; ++s) some_seed_differs |= gd::stratified_split(labels, 3, s).first != picked;
  REQUIRE(some_seed_differs);
  REQUIRE(gd::stratified_split(labels, 0, 1).first.empty());
  graft_test::require_error([&] { gd::stratified_split(labels, 9, 0); },
                            {"stratified_split", "class 7", "8 examples", "9 per class"});
}

TEST_CASE("data: ImageFolder classes, labels and order", "[data]") {
  gd::ImageFolder folder(kDataTestDir + "folder");
  REQUIRE(folder.classes() == std::vector<std::string>{"ant", "bee", "cat"});
  std::vector<std::string> rel;
  std::vector<int64_t> labels;
  for (const auto& s : folder.samples()) {
    rel.push_back(std::filesystem::relative(s.path, kDataTestDir + "folder").generic_string());
    labels.push_back(s.label);
  }
  // Sorted by (folder, name) as torchvision's sorted(os.walk): ant/ before ant/sub/; .txt/.md ignored.
  REQUIRE(rel == std::vector<std::string>{"ant/a1.png", "ant/a2.bmp", "ant/sub/a0.png", "bee/b0.PNG", "bee/b1.png",
                                          "cat/c0.jpg", "cat/c1.png"});
  REQUIRE(labels == std::vector<int64_t>{0, 0, 0, 1, 1, 2, 2});
  REQUIRE(gd::dataset_labels(folder) == labels);

  const gd::Example a1 = folder.get(0);
  REQUIRE(a1.label == 0);
  REQUIRE(a1.input.shape() == Shape{3, 4, 5});
  REQUIRE(a1.input.to_vector()[1] == Approx(20.0 / 255.0));  // R of pixel (0, 1)
  REQUIRE(a1.input.to_vector()[0] == 1.0);                          // the white pixel (0, 0)
  REQUIRE(folder.get(6).input.shape() == Shape{3, 4, 5});           // grayscale file -> RGB

  gd::ImageFolder gray(kDataTestDir + "folder", {}, graft::io::ImageMode::Gray);
  REQUIRE(gray.get(6).input.shape() == Shape{1, 4, 5});
  REQUIRE(gray.get(6).input.to_vector()[1] == Approx(60.0 / 255.0));

  // The transform sees the decoded image and the example's generator.
  gd::ImageFolder cropped(kDataTestDir + "folder", aug::Compose({aug::CenterCrop(2), aug::RandomHorizontalFlip(1.0)}));
  REQUIRE(cropped.get(3).input.shape() == Shape{3, 2, 2});
  graft_test::require_error([&] { folder.get(7); }, {"ImageFolder", "index 7", "7 examples"});
}

TEST_CASE("data: ImageFolder errors name the folder or file", "[data]") {
  graft_test::require_error([&] { gd::ImageFolder(kDataTestDir + "no_such_dir"); }, {"ImageFolder", "no_such_dir"});
  const auto empty_root = data_test_temp_dir("empty_root");
  std::ofstream(empty_root / "stray.png") << "x";  // files in root are no classes
  graft_test::require_error([&] { gd::ImageFolder(empty_root.string()); },
                            {"ImageFolder", empty_root.string(), "no class folders"});
  const auto no_images = data_test_temp_dir("no_images");
  std::filesystem::create_directories(no_images / "a");
  std::filesystem::create_directories(no_images / "b");
  std::ofstream(no_images / "a" / "x.png") << "x";
  std::ofstream(no_images / "b" / "notes.txt") << "x";
  graft_test::require_error([&] { gd::ImageFolder(no_images.string()); },
                            {"ImageFolder", (no_images / "b").string(), "without images"});
  std::filesystem::remove_all(empty_root);
  std::filesystem::remove_all(no_images);

  gd::ImageFolder corrupt(kDataTestDir + "corrupt");
  REQUIRE(corrupt.size() == 4);
  REQUIRE(corrupt.get(1).input.shape() == Shape{3, 4, 5});
  graft_test::require_error([&] { corrupt.get(2); }, {"c_broken.png", "truncated PNG"});
}

TEST_CASE("data: DataLoader order, epochs, drop_last", "[data]") {
  auto ds = data_test_tensor_dataset(10);
  SECTION("sequential, last batch smaller") {
    gd::DataLoader loader(ds, {.batch_size = 4});
    REQUIRE(loader.size() == 3);
    std::vector<int64_t> sizes;
    for (const gd::Batch& b : loader) {
      sizes.push_back(b.inputs.size(0));
      REQUIRE(b.inputs.shape() == Shape{b.inputs.size(0), 2, 3, 4});
      REQUIRE(b.labels.dtype() == graft::DType::Int64);
      for (size_t k = 0; k < b.indices.size(); ++k) {
        REQUIRE(b.labels.to_vector()[k] == double(b.indices[k] % 3));
        REQUIRE(b.inputs.select(0, int64_t(k)).to_vector() == ds->get(b.indices[k]).input.to_vector());
      }
    }
    REQUIRE(sizes == std::vector<int64_t>{4, 4, 2});
    REQUIRE(data_test_flat_indices(loader) == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  }
  SECTION("drop_last") {
    gd::DataLoader loader(ds, {.batch_size = 4, .drop_last = true});
    REQUIRE(loader.size() == 2);
    int batches = 0;
    for (const gd::Batch& b : loader) {
      REQUIRE(b.inputs.size(0) == 4);
      ++batches;
    }
    REQUIRE(batches == 2);
    gd::DataLoader exact(ds, {.batch_size = 5, .drop_last = true});
    REQUIRE(exact.size() == 2);
    gd::DataLoader too_big(ds, {.batch_size = 11, .drop_last = true});
    REQUIRE(too_big.size() == 0);
    REQUIRE(too_big.begin() == too_big.end());
  }
  SECTION("shuffle: a permutation, new each epoch, reproducible from the seed") {
    gd::DataLoader loader(ds, {.batch_size = 3, .shuffle = true, .seed = 5});
    const std::vector<int64_t> e0 = data_test_flat_indices(loader);
    const std::vector<int64_t> e1 = data_test_flat_indices(loader);
    REQUIRE(loader.epoch() == 2);
    std::vector<int64_t> sorted = e0;
    std::sort(sorted.begin(), sorted.end());
    REQUIRE(sorted == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    REQUIRE(e0 != e1);
    REQUIRE(e0 == loader.sample_order(0));
    REQUIRE(e1 == loader.sample_order(1));
    gd::DataLoader again(ds, {.batch_size = 3, .shuffle = true, .seed = 5});
    REQUIRE(data_test_flat_indices(again) == e0);
    again.set_epoch(1);  // DistributedSampler style
    REQUIRE(data_test_flat_indices(again) == e1);
    gd::DataLoader other_seed(ds, {.batch_size = 3, .shuffle = true, .seed = 6});
    REQUIRE(data_test_flat_indices(other_seed) != e0);
  }
}

TEST_CASE("data: DataLoader batches are identical with 0, 1 and 4 workers", "[data]") {
  auto base = data_test_tensor_dataset(23);
  auto augmented = std::make_shared<gd::MappedDataset>(
      base, aug::Compose({aug::RandomCrop(3, 1), aug::RandomHorizontalFlip(0.5)}));
  std::vector<std::vector<gd::Batch>> runs;
  for (int workers : {0, 1, 4}) {
    gd::DataLoader loader(augmented, {.batch_size = 4, .shuffle = true, .seed = 3, .num_workers = workers,
                                      .prefetch = 1});
    std::vector<gd::Batch> two_epochs = data_test_collect(loader);
    const std::vector<gd::Batch> e1 = data_test_collect(loader);
    two_epochs.insert(two_epochs.end(), e1.begin(), e1.end());
    REQUIRE(two_epochs.size() == 12);
    REQUIRE(two_epochs[0].inputs.shape() == Shape{4, 2, 3, 3});
    runs.push_back(two_epochs);
  }
  data_test_require_same_batches(runs[0], runs[1]);
  data_test_require_same_batches(runs[0], runs[2]);
  // The augmentation differs between epochs for the same example.
  const auto find = [](const std::vector<gd::Batch>& bs, size_t from, int64_t index) {
    for (size_t k = from; k < from + 6; ++k)
      for (size_t j = 0; j < bs[k].indices.size(); ++j)
        if (bs[k].indices[j] == index) return bs[k].inputs.select(0, int64_t(j)).to_vector();
    return std::vector<double>{};
  };
  int differ = 0;
  for (int64_t i = 0; i < 23; ++i) differ += find(runs[0], 0, i) != find(runs[0], 6, i);
  REQUIRE(differ > 10);
  // An example equals the dataset's get(i, Generator(example_seed(seed, epoch, i))).
  Generator g(gd::example_seed(3, 0, runs[0][0].indices[0]));
  REQUIRE(runs[0][0].inputs.select(0, 0).to_vector() == augmented->get(runs[0][0].indices[0], g).input.to_vector());
}

TEST_CASE("data: DataLoader worker errors surface in the consumer", "[data]") {
  auto corrupt = std::make_shared<gd::ImageFolder>(kDataTestDir + "corrupt");
  for (int workers : {0, 1, 4}) {
    INFO("num_workers " << workers);
    gd::DataLoader loader(corrupt, {.batch_size = 1, .num_workers = workers, .prefetch = 2});
    std::vector<int64_t> seen;
    graft_test::require_error(
        [&] {
          for (const gd::Batch& b : loader) seen.push_back(b.indices[0]);
        },
        {"c_broken.png", "truncated PNG"});
    REQUIRE(seen == std::vector<int64_t>{0, 1});  // in order, up to the broken one
    // The loader still works for the next epoch (the error again, no hang).
    graft_test::require_error([&] { data_test_collect(loader); }, {"c_broken.png"});
  }
  auto ragged = std::make_shared<DataTestRaggedDataset>();
  for (int workers : {0, 2}) {
    gd::DataLoader loader(ragged, {.batch_size = 2, .num_workers = workers});
    graft_test::require_error([&] { data_test_collect(loader); },
                              {"DataLoader", "dataset index 1", "[1, 3, 2]", "dataset index 0", "[1, 2, 2]"});
  }
  graft_test::require_error([&] { gd::DataLoader(ragged, {.batch_size = 0}); }, {"DataLoader", "batch_size", "0"});
  graft_test::require_error([&] { gd::DataLoader(ragged, {.num_workers = -1}); }, {"DataLoader", "num_workers"});
  graft_test::require_error([&] { gd::DataLoader(nullptr); }, {"DataLoader", "null"});
}

TEST_CASE("data: leaving a DataLoader loop early joins its threads", "[data]") {
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto slow = std::make_shared<DataTestSlowDataset>(calls);
  {
    gd::DataLoader loader(slow, {.batch_size = 2, .num_workers = 4, .prefetch = 1});
    for (const gd::Batch& b : loader) {
      REQUIRE(b.indices == std::vector<int64_t>{0, 1});
      break;  // the iterator is destroyed here, joining 4 threads mid-epoch
    }
    // Bounded prefetch: at most batch 0 + num_workers * prefetch batches were loaded (2 examples each).
    REQUIRE(calls->load() <= 2 * (1 + 4 * 1));
    int n = 0;
    for (const gd::Batch& b : loader) n += int(b.indices.size());
    REQUIRE(n == 64);
  }
  // The iterator owns the epoch: destroying the loader first is fine.
  auto loader = std::make_unique<gd::DataLoader>(slow, gd::LoaderOptions{.batch_size = 8, .num_workers = 3});
  gd::DataLoader::Iterator it = loader->begin();
  loader.reset();
  int batches = 0;
  for (; it != gd::DataLoader::Iterator(); ++it) ++batches;
  REQUIRE(batches == 8);
  // An iterator dropped right after begin(), threads still loading.
  gd::DataLoader fresh(slow, {.batch_size = 1, .num_workers = 4, .prefetch = 4});
  { gd::DataLoader::Iterator dropped = fresh.begin(); }
}

TEST_CASE("data: flip and RandomCrop on a hand-made image", "[data]") {
  // x[c, y, x] = 100 c + 10 y + x, [2, 3, 4]
  std::vector<float> v;
  for (int c = 0; c < 2; ++c)
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 4; ++x) v.push_back(float(100 * c + 10 * y + x));
  const Tensor img = graft::from_vector(v, Shape{2, 3, 4});
  const Tensor flipped = aug::horizontal_flip(img);
  REQUIRE(flipped.to_vector()[0] == 3.0);
  REQUIRE(flipped.to_vector()[17] == 112.0);  // c 1, y 1, x 1 <- x 2
  Generator g0(1);
  REQUIRE(aug::RandomHorizontalFlip(1.0)(img, g0).to_vector() == flipped.to_vector());
  REQUIRE(aug::RandomHorizontalFlip(0.0)(img, g0).to_vector() == img.to_vector());
  int flips = 0;
  for (uint64_t s = 0; s < 200; ++s) {
    Generator g(s);
    flips += aug::RandomHorizontalFlip(0.5)(img, g).to_vector() == flipped.to_vector();
  }
  REQUIRE(flips > 60);
  REQUIRE(flips < 140);

  // padding 0: a window of the image, at the box get_params draws from the same seed.
  const aug::RandomCrop crop2x3(gtf::ImageSize{2, 3});
  std::set<std::pair<int64_t, int64_t>> corners;
  for (uint64_t s = 0; s < 50; ++s) {
    Generator ga(s), gb(s);
    const Tensor out = crop2x3(img, ga);
    const aug::CropBox box = crop2x3.get_params(3, 4, gb);
    corners.insert({box.top, box.left});
    REQUIRE(out.shape() == Shape{2, 2, 3});
    REQUIRE(out.to_vector()[0] == double(10 * box.top + box.left));
    REQUIRE(out.to_vector()[6 + 5] == double(100 + 10 * (box.top + 1) + box.left + 2));
    Generator gc(s);
    REQUIRE(crop2x3(img, gc).to_vector() == out.to_vector());  // deterministic given the seed
  }
  REQUIRE(corners.size() == 4);  // every window position (2 x 2) occurs
  Generator g1(0);
  REQUIRE(aug::RandomCrop(gtf::ImageSize{3, 4})(img, g1).to_vector() == img.to_vector());

  // padding 1: a 3 x 4 window of the zero-padded 5 x 6 image.
  const aug::RandomCrop padded(gtf::ImageSize{3, 4}, 1);
  for (uint64_t s = 0; s < 20; ++s) {
    Generator ga(s), gb(s);
    const Tensor out = padded(img, ga);
    const aug::CropBox box = padded.get_params(5, 6, gb);
    const Tensor expect = aug::crop(aug::pad_zeros(img, 1), box);
    REQUIRE(out.to_vector() == expect.to_vector());
  }
  const Tensor p = aug::pad_zeros(img, 1);
  REQUIRE(p.shape() == Shape{2, 5, 6});
  REQUIRE(p.to_vector()[0] == 0.0);
  REQUIRE(p.to_vector()[7] == 0.0 + 0);   // (1, 1) <- x[0, 0, 0] = 0
  REQUIRE(p.to_vector()[8] == 1.0);       // (1, 2) <- x[0, 0, 1]
  REQUIRE(p.to_vector()[30 + 7] == 100.0);
  Generator g2(0);
  graft_test::require_error([&] { aug::RandomCrop(5)(img, g2); }, {"RandomCrop", "5 x 5", "3 x 4"});
  graft_test::require_error([&] { aug::RandomHorizontalFlip(1.5); }, {"RandomHorizontalFlip", "1.5"});
  graft_test::require_error([&] { aug::horizontal_flip(graft::zeros(Shape{3, 4})); }, {"horizontal_flip", "[3, 4]"});
}

TEST_CASE("data: RandomResizedCrop follows torchvision's get_params", "[data]") {
  const Tensor img = graft_test::rand_in(Shape{3, 20, 30}, 0.0, 1.0, 3, graft::DType::Float32);
  const aug::RandomResizedCrop rrc(8);
  std::set<int64_t> heights;
  for (uint64_t s = 0; s < 30; ++s) {
    Generator ga(s), gb(s);
    const Tensor out = rrc(img, ga);
    REQUIRE(out.shape() == Shape{3, 8, 8});
    const aug::CropBox box = rrc.get_params(20, 30, gb);
    REQUIRE(box.top >= 0);
    REQUIRE(box.left >= 0);
    REQUIRE(box.top + box.height <= 20);
    REQUIRE(box.left + box.width <= 30);
    const double area = double(box.height * box.width) / 600.0, r = double(box.width) / double(box.height);
    REQUIRE(area <= 1.0);
    REQUIRE(area >= 0.05);  // 0.08 before rounding the sides
    REQUIRE(r >= 0.6);
    REQUIRE(r <= 1.6);
    heights.insert(box.height);
    const Tensor expect = gtf::resize(img.narrow(1, box.top, box.height).narrow(2, box.left, box.width), 8, 8);
    REQUIRE(out.to_vector() == expect.to_vector());  // resize(crop) of the window it chose
  }
  REQUIRE(heights.size() > 5);
  // Rectangular output size.
  Generator g(0);
  REQUIRE(aug::RandomResizedCrop(gtf::ImageSize{4, 6})(img, g).shape() == Shape{3, 4, 6});
  // Fallback: scale > 1 never fits, so the central crop with the ratio clamped to [3/4, 4/3]:
  // a 10 x 4 image (ratio 0.4) -> w = 4, h = round(4 / 0.75) = 5, at ((10 - 5) / 2, 0).
  const aug::RandomResizedCrop never_fits(4, {2.0, 3.0});
  REQUIRE(never_fits.get_params(10, 4, g) == aug::CropBox{2, 0, 5, 4});
  REQUIRE(never_fits.get_params(4, 10, g) == aug::CropBox{0, 2, 4, 5});  // w = round(4 * 4/3) = 5
  REQUIRE(never_fits.get_params(6, 7, g) == aug::CropBox{0, 0, 6, 7});   // ratio in range: whole image
  graft_test::require_error([&] { aug::RandomResizedCrop(4, {0.5, 0.1}); }, {"RandomResizedCrop", "scale"});
}

TEST_CASE("data: Resize, CenterCrop, Normalize, Compose wrap transforms.hpp", "[data]") {
  const Tensor img = graft_test::rand_in(Shape{3, 12, 9}, 0.0, 1.0, 4, graft::DType::Float32);
  Generator g(0);
  REQUIRE(aug::Resize(6)(img, g).to_vector() == gtf::resize(img, 6).to_vector());
  REQUIRE(aug::Resize(gtf::ImageSize{5, 7})(img, g).to_vector() == gtf::resize(img, 5, 7).to_vector());
  REQUIRE(aug::CenterCrop(4)(img, g).to_vector() == gtf::center_crop(img, 4).to_vector());
  const aug::Normalize norm(gtf::kImageNetMean, gtf::kImageNetStd);
  REQUIRE(norm(img, g).to_vector() == gtf::normalize(img, gtf::kImageNetMean, gtf::kImageNetStd).to_vector());
  const aug::Compose pipeline({aug::Resize(6), aug::CenterCrop(4), norm});
  REQUIRE(pipeline(img, g).to_vector() == gtf::imagenet_eval(img, 6, 4).to_vector());
  graft_test::require_error([&] { aug::Compose({aug::Resize(6), gd::ExampleTransform{}}); },
                            {"Compose", "transform 1", "empty"});
}

TEST_CASE("data: loader threads and the consumer share the op thread pool", "[data]") {
  // Transforms running graft ops (which use parallel_for) in 4 loader threads while the consumer
  // runs ops too: same results as loading in the consumer thread (and clean under TSan).
  Tensor big = graft_test::rand_in(Shape{16, 3, 48, 48}, 0.0, 1.0, 9, graft::DType::Float32);
  std::vector<int64_t> labels(16, 1);
  auto base = std::make_shared<gd::TensorDataset>(big, graft::from_vector(labels, Shape{16}));
  auto mapped = std::make_shared<gd::MappedDataset>(base, [](const Tensor& x, Generator& gen) {
    return graft::exp(x * gen.uniform() + 1.0);
  });
  std::vector<std::vector<gd::Batch>> runs;
  for (int workers : {0, 4}) {
    gd::DataLoader loader(mapped, {.batch_size = 2, .shuffle = true, .seed = 1, .num_workers = workers});
    std::vector<gd::Batch> batches;
    for (const gd::Batch& b : loader) {
      const Tensor consumer_side = graft::sum(graft::exp(b.inputs * 0.5));  // the consumer uses the pool meanwhile
      REQUIRE(std::isfinite(consumer_side.item()));
      batches.push_back(b);
    }
    runs.push_back(batches);
  }
  data_test_require_same_batches(runs[0], runs[1]);
}
