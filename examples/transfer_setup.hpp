// transfer_setup.hpp - what feature_extraction and fine_tune share before training: the pretrained
// model (a graft-convert checkpoint, or random weights) and the labelled images it is transferred to.
//
//   examples::TransferModel m = examples::load_transfer_model({.checkpoint = "lite0.safetensors"}, 3);
//   std::printf("%s\n", m.load_summary.c_str());
//   examples::TransferData d = examples::load_transfer_data({.images = "photos", .image_size = 224}, m);
//   m.reset_classifier(d.num_classes);
//   Tensor f = m.features(d.test.x);          // [N, m.num_features]
//
// Model: the architecture comes from the checkpoint's "architecture" metadata (graft-convert writes
// it) or --arch; the head is always replaced by a fresh Linear(num_features, classes of the data).
// Input channels: the checkpoint's, unless --in-chans asks for others; a 3-channel checkpoint's first
// conv is then adapted as graft-convert does (1 channel sums RGB), any other change is an error.
// Images: ImageFolder pictures are decoded as gray for a 1-channel model and as RGB for a 3-channel
// one; MNIST's gray digits are repeated to 3 channels for a 3-channel model. Normalization: the
// registry's mean / std for the arch (models/registry.hpp: EfficientNet-Lite (x - 127/255) / (128/255),
// the others ImageNet's), their means for one channel.
// Split: per class (increasing label order), Generator(seed) shuffles the class's examples and the
// first round(val_frac * n) (at least 1, at most n - 1) are held out; of the rest, labels_per_class
// > 0 keeps that many per class (data::stratified_split with seed + 1), 0 keeps all.
// Preprocessing without augmentation: MNIST resized to image_size x image_size; folder images resized
// so the shorter side is image_size, then center-cropped to a square. Every held-out and training
// image is preprocessed once (so a corrupt file fails before training, naming it). With augmentation
// the training examples are re-drawn each time from a data::Dataset: ImageFolder RandomResizedCrop +
// horizontal flip, MNIST RandomCrop with zero padding 2 (before normalization).
#pragma once
#include <graft/graft.hpp>
#include <graft/data/augment.hpp>
#include <graft/data/dataset.hpp>
#include <graft/data/packaged.hpp>
#include <graft/data/transforms.hpp>
#include <graft/io/safetensors.hpp>
#include <graft/nn.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../weights_import/name_maps.hpp"
#include "cli.hpp"
#include "transfer_recipes.hpp"

namespace examples {

using graft::Tensor;

// ---- the model --------------------------------------------------------------------------------

// The model and data options feature_extraction and fine_tune share, declared on their Cli.
struct SetupOptions {
  explicit SetupOptions(Cli& cli)
      : checkpoint(cli.option("checkpoint", std::string(""), "graft-convert output (.safetensors)")),
        arch(cli.option("arch", std::string(""),
                        "an image arch of graft-convert --list, e.g. resnet18, efficientnet_lite0, "
                        "vit_tiny_patch16_224 (default: the checkpoint's)")),
        random_init(cli.option("random-init", false, "untrained weights instead of --checkpoint (testing)")),
        images(cli.option("images", std::string(""), "an ImageFolder root: DIR/<class>/<images>")),
        mnist(cli.option("mnist", std::string(""), "mnist5k.safetensors (tools/prepare_data.py)")),
        val_frac(cli.option("val-frac", 0.2, "fraction of each class held out")),
        per_class(cli.option("labels-per-class", int64_t(0), "training labels per class (0: all)")),
        image_size(cli.option("image-size", int64_t(224), "input side in pixels")),
        in_chans(cli.option("in-chans", int64_t(0), "model input channels (0: the checkpoint's)")) {}
  const std::string& checkpoint;
  const std::string& arch;
  const bool& random_init;
  const std::string& images;
  const std::string& mnist;
  const double& val_frac;
  const int64_t& per_class;
  const int64_t& image_size;
  const int64_t& in_chans;
};

struct ModelOptions {
  std::string checkpoint;  // a graft-convert output; empty with random_init
  std::string arch;        // empty: the checkpoint's "architecture" metadata
  int64_t in_chans = 0;    // 0: the checkpoint's (random init: the data's)
  bool random_init = false;
  uint64_t seed = 0;  // random weights and the new head
};

// The registry entry of an image arch (an unknown one lists the known and the closest).
inline const graft::models::ModelInfo& image_arch_info(const std::string& arch) {
  const graft::models::ModelInfo& info = graft::models::model_info(arch);
  GRAFT_CHECK(info.modality == "image", "model", "--arch ", arch, " is a ", info.modality,
              " model; these examples transfer image classifiers (see text_classification for text)");
  return info;
}

struct TransferModel {
  std::shared_ptr<graft::models::ImageClassifier> net;
  std::string arch, family;      // family: the checkpoint naming (graft-convert --family)
  int64_t in_chans = 0;
  int64_t num_features = 0;      // the classifier's input width (ImageClassifier::head_hidden_size)
  int64_t input_size = 0;        // a ViT's fixed input side (its position embedding); 0: any
  std::string head_name;         // "_fc" / "fc" / "head" / "classifier.1"
  std::vector<double> mean, std;  // normalization, one value per input channel
  std::string load_summary;      // what was loaded, for the log

  // images [B, in_chans, S, S] -> the classifier's input [B, num_features] (the pre-logits: pooled
  // features for most models, after MobileNetV3's first head Linear + Hardswish)
  Tensor features(const Tensor& x) const { return net->forward_head(net->forward_features(x), /*pre_logits=*/true); }
  graft::nn::Module& classifier() const { return net->classifier(); }
  // A fresh Linear(num_features, num_classes) head (torch's default init, from the default generator).
  void reset_classifier(int64_t num_classes) const { net->reset_classifier(num_classes); }
};

inline int64_t metadata_int(const std::map<std::string, std::string>& meta, const std::string& key, int64_t fallback) {
  const auto it = meta.find(key);
  if (it == meta.end()) return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  return (it->second.empty() || *end) ? fallback : int64_t(v);
}

// data_chans: the data's channels (1 MNIST, 3 ImageFolder), the model's when random_init and no --in-chans.
inline TransferModel load_transfer_model(const ModelOptions& o, int64_t data_chans) {
  using namespace graft;
  GRAFT_CHECK(o.random_init || !o.checkpoint.empty(), "model",
              "--checkpoint is required (a graft-convert output), or --random-init for untrained weights");
  GRAFT_CHECK(!(o.random_init && !o.checkpoint.empty()), "model", "give --checkpoint or --random-init, not both");
  GRAFT_CHECK(o.in_chans >= 0, "model", "--in-chans must be >= 0, got ", o.in_chans);
  TransferModel m;
  m.arch = o.arch;
  std::map<std::string, Tensor> weights;
  int64_t ckpt_chans = 0, ckpt_classes = 0;
  if (!o.random_init) {
    io::SafetensorsFile f(o.checkpoint);
    const auto& meta = f.metadata();
    const auto arch_it = meta.find("architecture");
    if (m.arch.empty()) {
      GRAFT_CHECK(arch_it != meta.end(), "model", o.checkpoint,
                  ": no \"architecture\" metadata (not a graft-convert output?); give --arch");
      m.arch = arch_it->second;
    } else {
      GRAFT_CHECK(arch_it == meta.end() || arch_it->second == m.arch, "model", o.checkpoint, " holds a ",
                  arch_it == meta.end() ? std::string() : arch_it->second, ", not the --arch ", m.arch);
    }
    const models::ModelInfo& info = image_arch_info(m.arch);
    weights = io::load_safetensors(o.checkpoint);
    const auto stem = weights.find(info.first_conv), head = weights.find(info.head + ".weight");
    GRAFT_CHECK(stem != weights.end() && stem->second.dim() == 4, "model", o.checkpoint, ": no first conv '",
                info.first_conv, "' [O, C, kh, kw]: is it a ", m.arch, " checkpoint?");
    ckpt_chans = stem->second.size(1);
    ckpt_classes = head != weights.end() ? head->second.size(0) : metadata_int(meta, "num_classes", 0);
    m.in_chans = o.in_chans > 0 ? o.in_chans : ckpt_chans;
    if (m.in_chans != ckpt_chans) {
      GRAFT_CHECK(ckpt_chans == 3, "model", o.checkpoint, ": the first conv takes ", ckpt_chans,
                  ckpt_chans == 1 ? " channel" : " channels", ", not the --in-chans ", m.in_chans,
                  ": convert the original checkpoint again with graft-convert --in-chans ", m.in_chans);
      stem->second = convert::adapt_input_conv(stem->second, m.in_chans, info.first_conv);
    }
  } else {
    GRAFT_CHECK(!m.arch.empty(), "model", "--random-init needs --arch");
    image_arch_info(m.arch);
    m.in_chans = o.in_chans > 0 ? o.in_chans : data_chans;
  }
  GRAFT_CHECK(m.in_chans == 1 || m.in_chans == 3, "model", "the model takes ", m.in_chans,
              " input channels; the images here are gray (1) or RGB (3)");

  const models::ModelInfo& info = image_arch_info(m.arch);
  m.family = info.naming;
  manual_seed(o.seed);
  m.net = models::create_classifier(m.arch, {std::max<int64_t>(ckpt_classes, 1), m.in_chans});
  m.num_features = m.net->head_hidden_size();
  m.input_size = info.fixed_input_size ? info.input_size : 0;
  m.head_name = m.net->classifier_name();
  if (!o.random_init) {
    const nn::LoadReport r = m.net->load_state_dict_map(weights, /*strict=*/false);
    GRAFT_CHECK(r.ok(), "model", o.checkpoint, " does not fit ", m.arch, ": ", r.str());
    m.load_summary = detail::concat("loaded ", o.checkpoint, ": ", m.arch, ", ", r.found, " of ", r.model_keys,
                                    " tensors, nothing missing or unexpected; ", ckpt_chans, " input channel",
                                    ckpt_chans == 1 ? "" : "s",
                                    m.in_chans != ckpt_chans ? detail::concat(" (adapted to ", m.in_chans, ")") : "",
                                    ", ", ckpt_classes, "-class head");
  } else {
    m.load_summary = detail::concat("random weights (--random-init, seed ", o.seed, "): ", m.arch, ", ", m.in_chans,
                                    " input channel", m.in_chans == 1 ? "" : "s");
  }
  const std::vector<double>& mean = info.mean;
  const std::vector<double>& std = info.std;
  if (m.in_chans == 3) {
    m.mean = mean, m.std = std;
  } else {
    m.mean = {(mean[0] + mean[1] + mean[2]) / 3.0};
    m.std = {(std[0] + std[1] + std[2]) / 3.0};
  }
  return m;
}

// ---- the data ---------------------------------------------------------------------------------

struct DataOptions {
  std::string images;  // an ImageFolder root
  std::string mnist;   // mnist5k.safetensors (tools/prepare_data.py)
  double val_frac = 0.2;
  int64_t labels_per_class = 0;  // 0: every non-held-out example
  int64_t image_size = 224;
  bool augment = false;  // also build train_augmented
  uint64_t seed = 0;
};

struct TransferData {
  std::vector<std::string> classes;
  int64_t num_classes = 0;
  LabelledSet train, test;  // preprocessed (no augmentation) and normalized
  // With DataOptions::augment: example i is training example i, randomly augmented from its generator
  // (load it with data::load_batch, which seeds the generator from (seed, epoch, index)).
  std::shared_ptr<const graft::data::Dataset> train_augmented;
  std::string summary;  // for the log
};

// Held-out and training indices (see the top): returns (held_out, train), each sorted ascending.
inline std::pair<std::vector<int64_t>, std::vector<int64_t>> held_out_split(const std::vector<int64_t>& labels,
                                                                            double val_frac, uint64_t seed) {
  GRAFT_CHECK(val_frac > 0.0 && val_frac < 1.0, "data", "--val-frac must be in (0, 1), got ", val_frac);
  std::map<int64_t, std::vector<int64_t>> by_class;
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(int64_t(i));
  graft::Generator gen(seed);
  std::vector<int64_t> held, rest;
  for (auto& [label, idx] : by_class) {
    const int64_t n = int64_t(idx.size());
    GRAFT_CHECK(n >= 2, "data", "class ", label, " has ", n,
                " example: a class needs at least 2 (one held out, one to train on)");
    const int64_t k = std::clamp<int64_t>(int64_t(std::llround(val_frac * double(n))), 1, n - 1);
    const std::vector<int64_t> perm = graft::data::random_permutation(n, gen);
    for (int64_t j = 0; j < n; ++j) (j < k ? held : rest).push_back(idx[size_t(perm[size_t(j)])]);
  }
  std::sort(held.begin(), held.end());
  std::sort(rest.begin(), rest.end());
  return {std::move(held), std::move(rest)};
}

namespace detail_setup {

inline std::vector<int64_t> pick(const std::vector<int64_t>& v, const std::vector<int64_t>& idx) {
  std::vector<int64_t> out;
  for (int64_t i : idx) out.push_back(v[size_t(i)]);
  return out;
}

// Held-out and training indices into a dataset with these labels.
inline std::pair<std::vector<int64_t>, std::vector<int64_t>> split(const std::vector<int64_t>& labels,
                                                                   const DataOptions& o) {
  auto [held, pool] = held_out_split(labels, o.val_frac, o.seed);
  if (o.labels_per_class <= 0) return {held, pool};
  const std::vector<int64_t> picked =
      graft::data::stratified_split(pick(labels, pool), o.labels_per_class, o.seed + 1).first;
  return {held, pick(pool, picked)};
}

inline Tensor labels_tensor(const std::vector<int64_t>& labels) {
  return graft::from_vector(labels, {int64_t(labels.size())});
}

}  // namespace detail_setup

inline TransferData load_transfer_data(const DataOptions& o, const TransferModel& m) {
  using namespace graft;
  namespace aug = graft::data::augment;
  GRAFT_CHECK(o.images.empty() != o.mnist.empty(), "data", "give one data set: --images DIR or --mnist FILE");
  GRAFT_CHECK(o.image_size >= 8, "data", "--image-size must be >= 8, got ", o.image_size);
  GRAFT_CHECK(m.input_size == 0 || m.input_size == o.image_size, "data", m.arch, " takes ", m.input_size, "x",
              m.input_size, " images (its position embedding), got --image-size ", o.image_size);
  GRAFT_CHECK(o.labels_per_class >= 0, "data", "--labels-per-class must be >= 0, got ", o.labels_per_class);
  const int64_t S = o.image_size;
  TransferData d;
  NoGradGuard no_grad;
  if (!o.mnist.empty()) {
    const data::LabelledImages mnist = data::load_mnist5k(o.mnist);
    const std::vector<int64_t> labels(mnist.labels.data<int64_t>(), mnist.labels.data<int64_t>() + mnist.labels.numel());
    const auto [held, train] = detail_setup::split(labels, o);
    for (int c = 0; c < 10; ++c) d.classes.push_back(std::to_string(c));
    Tensor x = transforms::resize(mnist.images, S, S);  // [5000, 1, S, S] in [0, 1]
    if (m.in_chans == 3) x = cat({x, x, x}, 1);
    const LabelledSet raw{x, mnist.labels};
    const LabelledSet raw_train = take_rows(raw, train);
    d.test = take_rows(raw, held);
    d.test.x = transforms::normalize(d.test.x, m.mean, m.std);
    d.train = {transforms::normalize(raw_train.x, m.mean, m.std), raw_train.y};
    if (o.augment)
      d.train_augmented = std::make_shared<data::MappedDataset>(
          std::make_shared<data::TensorDataset>(raw_train.x, raw_train.y),
          aug::Compose({aug::RandomCrop(S, 2), aug::Normalize(m.mean, m.std)}));
    d.summary = detail::concat("MNIST ", o.mnist, ": ", labels.size(), " digits");
  } else {
    const io::ImageMode mode = m.in_chans == 1 ? io::ImageMode::Gray : io::ImageMode::RGB;
    auto folder = std::make_shared<data::ImageFolder>(o.images, data::ExampleTransform{}, mode);
    d.classes = folder->classes();
    const std::vector<int64_t> labels = data::dataset_labels(*folder);
    const auto [held, train] = detail_setup::split(labels, o);
    auto load = [&](const std::vector<int64_t>& idx) {  // decode, resize, center-crop, normalize
      std::vector<Tensor> xs;
      for (int64_t i : idx) {
        const Tensor img = folder->get(i).input;
        xs.push_back(transforms::normalize(transforms::center_crop(transforms::resize_shorter(img, S), S), m.mean, m.std));
      }
      return LabelledSet{stack(xs, 0), detail_setup::labels_tensor(detail_setup::pick(labels, idx))};
    };
    d.test = load(held);
    d.train = load(train);
    if (o.augment) {
      auto augmented = std::make_shared<data::ImageFolder>(
          o.images, aug::Compose({aug::RandomResizedCrop(S), aug::RandomHorizontalFlip(), aug::Normalize(m.mean, m.std)}),
          mode);
      d.train_augmented = std::make_shared<data::Subset>(augmented, train);
    }
    d.summary = detail::concat("ImageFolder ", o.images, ": ", labels.size(), " images");
  }
  d.num_classes = int64_t(d.classes.size());
  std::string names;
  for (size_t c = 0; c < d.classes.size() && c < 10; ++c) names += (c ? ", " : "") + d.classes[c];
  if (d.classes.size() > 10) names += ", ...";
  d.summary += detail::concat(" in ", d.num_classes, " classes (", names, "); ", d.test.size(), " held out (--val-frac ",
                              o.val_frac, "), ", d.train.size(), " to train on",
                              o.labels_per_class > 0 ? detail::concat(" (", o.labels_per_class, " per class)") : "",
                              "; inputs ", m.in_chans, "x", S, "x", S, o.augment ? ", augmented" : "");
  return d;
}

}  // namespace examples
