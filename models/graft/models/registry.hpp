// graft/models/registry.hpp - every architecture Graft builds, by name, with what transfer code needs to
// know about it, in one table (as timm's create_model and its pretrained configs):
//
//   auto net = graft::models::create_classifier("resnet50", {.num_classes = 10, .in_chans = 1});
//   const graft::models::ModelInfo& info = graft::models::model_info("resnet50");
//   info.head;         // "fc": the module reset_classifier replaces, the new head of a transfer recipe
//   info.first_conv;   // "conv1.weight": the weight graft-convert adapts to another number of channels
//   info.naming;       // "torchvision-resnet": the checkpoint names (graft-convert --family)
//   info.mean, info.std, info.input_size;   // the input pipeline the pretrained weights expect
//   for (const auto& name : graft::models::list_models("resnext*")) ...
//
// create(arch, options) returns any model (BERT and DistilBERT included); create_classifier returns the image models
// through their common interface (models/classifier.hpp). An unknown name is an error listing the
// known ones and the closest. weights_import/name_maps.hpp holds only the key patterns of each naming;
// which arch uses which naming, head and first conv lives here.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "graft/models/bert.hpp"
#include "graft/models/classifier.hpp"
#include "graft/models/convnext.hpp"
#include "graft/models/distilbert.hpp"
#include "graft/models/efficientnet.hpp"
#include "graft/models/efficientnet_lite.hpp"
#include "graft/models/hf_vit.hpp"
#include "graft/models/mobilenet.hpp"
#include "graft/models/regnet.hpp"
#include "graft/models/resnet.hpp"
#include "graft/models/roberta.hpp"
#include "graft/models/timm_convnext.hpp"
#include "graft/models/timm_efficientnet.hpp"
#include "graft/models/vit.hpp"
#include "graft/nn.hpp"

namespace graft::models {

struct CreateOptions {
  int64_t num_classes = 1000;  // the head's outputs; 0 = no head (Identity: the model returns features)
  int64_t in_chans = 0;        // image channels; 0 = the model's (3); text models take none
  // false: every weight is zero-filled instead of initialized (init::SkipInitGuard), for a model that
  // loads a whole checkpoint next; a fraction of the build time of a large model.
  bool init_weights = true;
};

struct ModelInfo {
  std::string arch;        // "resnet50"
  std::string family;      // the Graft class family: "resnet", "vit", "efficientnet-lite", "bert", ...
  std::string source;      // whose definition and names: "torchvision", "timm", "huggingface", ...
  std::string naming;      // the checkpoint key table (graft-convert --family), weights_import/name_maps.hpp
  std::string modality;    // "image" or "text"
  std::string head;        // dotted module name of the classifier ("fc", "classifier.3")
  std::string first_conv;  // the input conv's weight ("" for text)
  int64_t num_features = 0;     // pooled feature width (forward_features)
  int64_t input_size = 0;       // the pretraining input side (224); 0 for text
  bool fixed_input_size = false;  // true when the model only takes input_size (a ViT's position embedding)
  std::vector<double> mean, std;  // per-channel RGB normalization of the pretrained weights
  std::function<nn::ModulePtr(const CreateOptions&)> make;
};

namespace detail_registry {

// An image classifier built by fn(num_classes, in_chans).
template <class Fn>
ModelInfo image(std::string arch, std::string family, std::string source, std::string naming, std::string head,
                std::string first_conv, int64_t num_features, Fn fn) {
  ModelInfo m;
  m.arch = std::move(arch), m.family = std::move(family), m.source = std::move(source);
  m.naming = std::move(naming), m.modality = "image", m.head = std::move(head);
  m.first_conv = std::move(first_conv), m.num_features = num_features, m.input_size = 224;
  m.mean = kImageNetMean, m.std = kImageNetStd;
  m.make = [fn](const CreateOptions& o) -> nn::ModulePtr { return fn(o.num_classes, o.in_chans > 0 ? o.in_chans : 3); };
  return m;
}

inline std::vector<ModelInfo> build_registry() {
  std::vector<ModelInfo> r;
  auto resnet = [&](const char* arch, auto fn, int64_t features) {
    r.push_back(image(arch, "resnet", "torchvision", "torchvision-resnet", "fc", "conv1.weight", features, fn));
  };
  resnet("resnet18", resnet18, 512);
  resnet("resnet34", resnet34, 512);
  resnet("resnet50", resnet50, 2048);
  resnet("resnet101", resnet101, 2048);
  resnet("resnet152", resnet152, 2048);
  resnet("resnext50_32x4d", resnext50_32x4d, 2048);
  resnet("resnext101_32x8d", resnext101_32x8d, 2048);
  resnet("resnext101_64x4d", resnext101_64x4d, 2048);
  resnet("wide_resnet50_2", wide_resnet50_2, 2048);
  resnet("wide_resnet101_2", wide_resnet101_2, 2048);

  auto torchvision = [&](const char* arch, const char* family, const char* naming, const char* head, auto fn,
                         int64_t features, int64_t input_size = 224) {
    ModelInfo m = image(arch, family, "torchvision", naming, head, "features.0.0.weight", features, fn);
    m.input_size = input_size;
    r.push_back(std::move(m));
  };
  torchvision("mobilenet_v2", "mobilenet", "torchvision-mobilenet", "classifier.1", mobilenet_v2, 1280);
  torchvision("mobilenet_v3_small", "mobilenet", "torchvision-mobilenet", "classifier.3", mobilenet_v3_small, 576);
  torchvision("mobilenet_v3_large", "mobilenet", "torchvision-mobilenet", "classifier.3", mobilenet_v3_large, 960);
  torchvision("efficientnet_b0", "efficientnet", "torchvision-efficientnet", "classifier.1", efficientnet_b0, 1280);
  torchvision("efficientnet_b1", "efficientnet", "torchvision-efficientnet", "classifier.1", efficientnet_b1, 1280, 240);
  torchvision("efficientnet_b2", "efficientnet", "torchvision-efficientnet", "classifier.1", efficientnet_b2, 1408, 288);
  torchvision("efficientnet_b3", "efficientnet", "torchvision-efficientnet", "classifier.1", efficientnet_b3, 1536, 300);
  torchvision("convnext_tiny", "convnext", "torchvision-convnext", "classifier.2", convnext_tiny, 768);
  torchvision("convnext_small", "convnext", "torchvision-convnext", "classifier.2", convnext_small, 768);

  // torchvision's RegNetX / RegNetY up to 3.2GF (models/regnet.hpp builds the larger ones too:
  // models::regnet("regnet_y_16gf")); features: the last stage's width.
  auto regnet = [&](const char* arch, auto fn, int64_t features) {
    r.push_back(image(arch, "regnet", "torchvision", "torchvision-regnet", "fc", "stem.0.weight", features, fn));
  };
  regnet("regnet_x_400mf", regnet_x_400mf, 400);
  regnet("regnet_x_800mf", regnet_x_800mf, 672);
  regnet("regnet_x_1_6gf", regnet_x_1_6gf, 912);
  regnet("regnet_x_3_2gf", regnet_x_3_2gf, 1008);
  regnet("regnet_y_400mf", regnet_y_400mf, 440);
  regnet("regnet_y_800mf", regnet_y_800mf, 784);
  regnet("regnet_y_1_6gf", regnet_y_1_6gf, 888);
  regnet("regnet_y_3_2gf", regnet_y_3_2gf, 1512);

  auto vit = [&](const char* arch, auto fn, int64_t dim) {
    ModelInfo m = image(arch, "vit", "timm", "timm-vit", "head", "patch_embed.proj.weight", dim, fn);
    m.fixed_input_size = true;
    r.push_back(std::move(m));
  };
  vit("vit_tiny_patch16_224", vit_tiny_patch16_224, 192);
  vit("vit_small_patch16_224", vit_small_patch16_224, 384);
  vit("vit_base_patch16_224", vit_base_patch16_224, 768);
  vit("vit_small_patch32_224", vit_small_patch32_224, 384);
  vit("vit_base_patch32_224", vit_base_patch32_224, 768);
  vit("deit_tiny_patch16_224", vit_tiny_patch16_224, 192);    // timm's DeiT without distillation
  vit("deit_small_patch16_224", vit_small_patch16_224, 384);  // token: the ViT layout and names
  vit("deit_base_patch16_224", vit_base_patch16_224, 768);
  // timm's distilled DeiT (VisionTransformerDistilled): dist_token and head_dist besides; the features
  // are the class and distillation tokens side by side, 2 * dim wide.
  vit("deit_tiny_distilled_patch16_224", deit_tiny_distilled_patch16_224, 2 * 192);
  vit("deit_small_distilled_patch16_224", deit_small_distilled_patch16_224, 2 * 384);
  vit("deit_base_distilled_patch16_224", deit_base_distilled_patch16_224, 2 * 768);

  // timm's own CNNs, named as on the Hugging Face hub ("timm/resnet50.a1_in1k" without the weight tag):
  // the bare names resnet50, convnext_tiny and efficientnet_b0 are torchvision's above. Each has its
  // own naming (checkpoint key table); timm's plain ResNets have torchvision's keys and differ only in
  // init (zero_init_last).
  auto timm_cnn = [&](const char* arch, const char* family, const char* naming, const char* head,
                      const char* first_conv, auto fn, int64_t features) {
    r.push_back(image(arch, family, "timm", naming, head, first_conv, features, fn));
  };
  timm_cnn("timm/resnet18", "resnet", "timm-resnet", "fc", "conv1.weight", timm::resnet18, 512);
  timm_cnn("timm/resnet34", "resnet", "timm-resnet", "fc", "conv1.weight", timm::resnet34, 512);
  timm_cnn("timm/resnet50", "resnet", "timm-resnet", "fc", "conv1.weight", timm::resnet50, 2048);
  timm_cnn("timm/resnet101", "resnet", "timm-resnet", "fc", "conv1.weight", timm::resnet101, 2048);
  timm_cnn("timm/resnet18d", "resnet", "timm-resnet", "fc", "conv1.0.weight", timm::resnet18d, 512);
  timm_cnn("timm/resnet34d", "resnet", "timm-resnet", "fc", "conv1.0.weight", timm::resnet34d, 512);
  timm_cnn("timm/resnet50d", "resnet", "timm-resnet", "fc", "conv1.0.weight", timm::resnet50d, 2048);
  timm_cnn("timm/convnext_tiny", "timm-convnext", "timm-convnext", "head.fc", "stem.0.weight", timm::convnext_tiny, 768);
  timm_cnn("timm/convnext_small", "timm-convnext", "timm-convnext", "head.fc", "stem.0.weight", timm::convnext_small,
           768);
  timm_cnn("timm/efficientnet_b0", "timm-efficientnet", "timm-efficientnet", "classifier", "conv_stem.weight",
           timm::efficientnet_b0, 1280);

  // Hugging Face ViTForImageClassification checkpoints (HF model ids without the organization).
  auto hf_vit_arch = [&](const char* arch, HFViTConfig (*config)(), std::vector<double> mean, std::vector<double> std) {
    ModelInfo m = image(arch, "hf-vit", "huggingface", "hf-vit", "classifier",
                        "embeddings.patch_embeddings.projection.weight", config().hidden_size,
                        [config](int64_t classes, int64_t chans) { return hf_vit(config(), classes, chans); });
    m.input_size = config().image_size;
    m.fixed_input_size = true;
    m.mean = std::move(mean), m.std = std::move(std);
    r.push_back(std::move(m));
  };
  const std::vector<double> half = {0.5, 0.5, 0.5};  // google/vit-*'s ViTImageProcessor image_mean / image_std
  hf_vit_arch("vit-base-patch16-224", HFViTConfig::vit_base_patch16_224, half, half);
  hf_vit_arch("vit-large-patch16-224", HFViTConfig::vit_large_patch16_224, half, half);
  hf_vit_arch("deit-tiny-patch16-224", HFViTConfig::deit_tiny_patch16_224, kImageNetMean, kImageNetStd);
  hf_vit_arch("deit-small-patch16-224", HFViTConfig::deit_small_patch16_224, kImageNetMean, kImageNetStd);
  hf_vit_arch("deit-base-patch16-224", HFViTConfig::deit_base_patch16_224, kImageNetMean, kImageNetStd);

  auto lite = [&](const char* arch, auto fn) {
    ModelInfo m = image(arch, "efficientnet-lite", "efficientnet-lite-pytorch", "efficientnet-lite", "_fc",
                        "_conv_stem.weight", 1280, fn);
    m.mean = kLiteMean, m.std = kLiteStd;
    r.push_back(std::move(m));
  };
  lite("efficientnet_lite0", efficientnet_lite0);
  lite("efficientnet_lite1", efficientnet_lite1);
  lite("efficientnet_lite2", efficientnet_lite2);

  // Text models (Hugging Face names): the classifier head "classifier", no image channels; config()
  // gives the architecture, width() its feature width.
  auto text = [&]<class Model, class Config>(const char* arch, const char* family, const char* naming,
                                             Config (*config)(), int64_t width) {
    ModelInfo m;
    m.arch = arch, m.family = family, m.source = "huggingface", m.naming = naming, m.modality = "text";
    m.head = "classifier";
    m.num_features = width;
    m.make = [config, arch = std::string(arch)](const CreateOptions& o) -> nn::ModulePtr {
      GRAFT_CHECK(o.in_chans <= 0, "models::create", arch, " is a text model: in_chans does not apply (got ",
                  o.in_chans, ")");
      Config c = config();
      c.num_classes = o.num_classes;
      return std::make_shared<Model>(c);
    };
    r.push_back(std::move(m));
  };
  auto bert = [&](const char* arch, BertConfig (*config)()) {
    text.template operator()<BertModel>(arch, "bert", "hf-bert", config, config().hidden_size);
  };
  bert("all-minilm-l6-v2", BertConfig::all_minilm_l6_v2);
  bert("bert", BertConfig::bert_base_uncased);  // bert-base-uncased; graft-convert --config reads any
  auto distilbert = [&](const char* arch, DistilBertConfig (*config)()) {
    text.template operator()<DistilBertModel>(arch, "distilbert", "hf-distilbert", config, config().dim);
  };
  distilbert("distilbert-base-uncased", DistilBertConfig::distilbert_base_uncased);
  distilbert("distilbert-base-cased", DistilBertConfig::distilbert_base_cased);
  // RoBERTa: RobertaForSequenceClassification's layout (the head on <s>: classifier.dense, out_proj)
  text.template operator()<RobertaModel>("roberta-base", "roberta", "hf-roberta", RobertaConfig::roberta_base,
                                         RobertaConfig::roberta_base().hidden_size);
  return r;
}

// Levenshtein distance, for "did you mean".
inline size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// Does `name` match a glob with '*' (any run) and '?' (one character)?
inline bool glob_match(const std::string& pattern, const std::string& name, size_t p = 0, size_t n = 0) {
  while (p < pattern.size()) {
    if (pattern[p] == '*') {
      for (size_t k = n; k <= name.size(); ++k)
        if (glob_match(pattern, name, p + 1, k)) return true;
      return false;
    }
    if (n >= name.size() || (pattern[p] != '?' && pattern[p] != name[n])) return false;
    ++p, ++n;
  }
  return n == name.size();
}

}  // namespace detail_registry

// Every registered architecture, in a fixed order (by family, then size).
inline const std::vector<ModelInfo>& registry() {
  static const std::vector<ModelInfo> r = detail_registry::build_registry();
  return r;
}

// Arch names matching a glob ("resnet*", "*_224"; "*" = all), in registry order.
inline std::vector<std::string> list_models(const std::string& pattern = "*") {
  std::vector<std::string> out;
  for (const ModelInfo& m : registry())
    if (detail_registry::glob_match(pattern, m.arch)) out.push_back(m.arch);
  return out;
}

// The closest registered arch name to `arch` (smallest edit distance).
inline std::string closest_model(const std::string& arch) {
  std::string best;
  size_t best_d = size_t(-1);
  for (const ModelInfo& m : registry()) {
    const size_t d = detail_registry::edit_distance(arch, m.arch);
    if (d < best_d) best = m.arch, best_d = d;
  }
  return best;
}

inline const ModelInfo* find_model_info(const std::string& arch) {
  for (const ModelInfo& m : registry())
    if (m.arch == arch) return &m;
  return nullptr;
}

// The registry entry of `arch`; an unknown name lists the known ones and the closest.
inline const ModelInfo& model_info(const std::string& arch) {
  if (const ModelInfo* m = find_model_info(arch)) return *m;
  std::string known;
  for (const ModelInfo& m : registry()) known += (known.empty() ? "" : ", ") + m.arch;
  throw Error(detail::concat("unknown arch '", arch, "': did you mean '", closest_model(arch), "'? (known: ", known,
                             ")"));
}

// A fresh model of `arch` (random weights, as its source library initializes them).
inline nn::ModulePtr create(const std::string& arch, const CreateOptions& options = {}) {
  GRAFT_CHECK(options.num_classes >= 0, "models::create", arch, ": num_classes must be >= 0, got ",
              options.num_classes);
  GRAFT_CHECK(options.in_chans >= 0, "models::create", arch, ": in_chans must be >= 0, got ", options.in_chans);
  const ModelInfo& info = model_info(arch);
  if (options.init_weights) return info.make(options);
  init::SkipInitGuard skip;
  return info.make(options);
}

// create() for an image classifier, through the interface transfer code uses.
inline std::shared_ptr<ImageClassifier> create_classifier(const std::string& arch, const CreateOptions& options = {}) {
  const ModelInfo& info = model_info(arch);
  GRAFT_CHECK(info.modality == "image", "models::create_classifier", arch, " is a ", info.modality,
              " model, not an image classifier: use models::create");
  auto net = std::dynamic_pointer_cast<ImageClassifier>(create(arch, options));
  GRAFT_CHECK(net != nullptr, "models::create_classifier", arch, " does not implement models::ImageClassifier");
  return net;
}

// The archs of one checkpoint naming (graft-convert --family), in registry order.
inline std::vector<std::string> archs_with_naming(const std::string& naming) {
  std::vector<std::string> out;
  for (const ModelInfo& m : registry())
    if (m.naming == naming) out.push_back(m.arch);
  return out;
}

}  // namespace graft::models
