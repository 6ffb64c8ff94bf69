// tests/test_efficientnet.cpp - EfficientNet-Lite0/1/2 (efficientnet-lite-pytorch's names) against PyTorch,
// the constant-pad op it needs for TF "SAME" padding, and the "efficientnet-lite" converter family.
//
// Committed data: tests/data/efficientnet/efficientnet_keys.bin, the reference's state_dict keys and
// shapes for lite0/1/2 (written by `$GRAFT_PYTHON tools/gen_efficientnet_goldens.py`).
// Big data, generated on demand: `source tools/pyenv.sh && $GRAFT_PYTHON tools/gen_efficientnet_goldens.py DIR`
// writes the real ImageNet efficientnet-lite0 checkpoint (a byte copy of the package's legacy-format
// .pth, which the tests load, and the same tensors re-saved by torch.save as a zip, to compare the two
// readers), the photos, their PyTorch logits, three training-mode SGD steps from it (float64), and
// seeded lite1/lite2 weights with outputs; the "[big]" cases read them from $GRAFT_MODEL_DATA and
// FAIL, saying how to make them, when the variable is unset or a file is missing.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <numeric>

#include "../weights_import/name_maps.hpp"
#include "golden.hpp"
#include "model_keys.hpp"
#include "graft/data/transforms.hpp"
#include "graft/io/image.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/io/torch_checkpoint.hpp"
#include "graft/models/efficientnet_lite.hpp"
#include "graft/nn.hpp"
#include "graft/optim/sgd.hpp"
#include "harness.hpp"

namespace {

using namespace graft;
using graft_test::GoldenCase;
using graft_test::kTolF32;

const GoldenCase& effnet_keys_case(const std::string& name) {
  static const graft_test::GoldenFile file =
      graft_test::read_golden(GRAFT_TEST_DATA_DIR "/efficientnet/efficientnet_keys.bin");
  for (const auto& c : file.cases)
    if (c.name == name) return c;
  throw Error("test_efficientnet: no golden case '" + name + "'");
}

// $GRAFT_MODEL_DATA/<file>, or a test failure that says how to generate it.
std::string effnet_big_file(const std::string& file) {
  return graft_test::model_data_file(file, "tools/gen_efficientnet_goldens.py");
}

const GoldenCase& effnet_real_case(const std::string& name) {
  static const graft_test::GoldenFile file = graft_test::read_golden(effnet_big_file("efficientnet_lite0_real.bin"));
  for (const auto& c : file.cases)
    if (c.name == name) return c;
  throw Error("test_efficientnet: no case '" + name + "' in efficientnet_lite0_real.bin");
}

// The real ImageNet lite0, loaded strictly from the generator's copy of the package's .pth (eval mode).
std::shared_ptr<models::EfficientNetLite> effnet_real_lite0() {
  auto model = models::efficientnet_lite0();
  const nn::LoadReport report =
      model->load_state_dict(io::load_torch_checkpoint(effnet_big_file("efficientnet_lite0_legacy.pth")));
  REQUIRE(report.ok());
  model->eval();
  return model;
}

// Indices of the k largest values of each row of logits [B, C], largest first.
std::vector<std::vector<int64_t>> effnet_topk(const Tensor& logits, int64_t k) {
  const auto v = logits.to_vector();
  const int64_t B = logits.size(0), C = logits.size(1);
  std::vector<std::vector<int64_t>> out;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> idx(static_cast<size_t>(C));
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int64_t i, int64_t j) { return v[size_t(b * C + i)] > v[size_t(b * C + j)]; });
    out.emplace_back(idx.begin(), idx.begin() + k);
  }
  return out;
}
std::vector<std::vector<int64_t>> effnet_rows(const Tensor& t) {
  const auto v = t.to_vector();
  std::vector<std::vector<int64_t>> out(size_t(t.size(0)));
  for (int64_t b = 0; b < t.size(0); ++b)
    for (int64_t j = 0; j < t.size(1); ++j) out[size_t(b)].push_back(int64_t(v[size_t(b * t.size(1) + j)]));
  return out;
}

void effnet_require_same_keys(nn::Module& m, const std::string& case_name) {
  graft_test::require_same_keys(m.state_dict(), effnet_keys_case(case_name));
}

}  // namespace

// ---- the pad op --------------------------------------------------------------------------------
GRADCHECK_CASE("pad", "2-D asymmetric, value, negative (crop), 1-D and 3-D pads, non-contiguous") {
  using graft_test::gradcheck1;
  using graft_test::rand_in;
  gradcheck1([](auto& in) { return pad(in[0], {0, 1, 0, 1}); }, {rand_in({2, 2, 3, 4})});
  gradcheck1([](auto& in) { return pad(in[0], {1, 2, 2, 1}, 0.5); }, {graft_test::rand_noncontig({2, 3, 4})});
  gradcheck1([](auto& in) { return pad(in[0], {-1, 2}); }, {rand_in({3, 5})});
  gradcheck1([](auto& in) { return pad(in[0], {1, 0, -1, 2, 1, 1}, -1.0); }, {rand_in({2, 3, 4})});
}

GRADCHECK_CASE("pad", "second order (create_graph)") {
  graft_test::gradcheck(
      [](auto& in) {
        GradModeGuard on(true);
        Tensor y = pad(in[0], {1, 0, 2, 1});
        return autograd::grad({y * y}, {in[0]}, {in[1]}, true, true);
      },
      {graft_test::rand_in({1, 2, 3, 2}), graft_test::rand_in({1, 2, 6, 3}, -1, 1, 3)});
}

TEST_CASE("pad: values, shapes, dtypes and errors", "[efficientnet][pad]") {
  const Tensor x = arange(0, 6, 1, DType::Float32).reshape({2, 3});  // [[0 1 2] [3 4 5]]
  const Tensor y = pad(x, {1, 0, 0, 1}, 9.0);
  CHECK(y.shape() == Shape({3, 4}));
  CHECK(y.to_vector() == std::vector<double>{9, 0, 1, 2, 9, 3, 4, 5, 9, 9, 9, 9});
  CHECK(pad(x, {-1, -1}).to_vector() == std::vector<double>{1, 4});
  CHECK(pad(x, {}).to_vector() == x.to_vector());
  CHECK(pad(x.to(DType::Int64), {0, 1}, 7).to_vector() == std::vector<double>{0, 1, 2, 7, 3, 4, 5, 7});
  CHECK(pad(x, {0, 0, -2, 0}).shape() == Shape({0, 3}));
  graft_test::require_error([&] { pad(x, {1, 2, 3}); }, {"pad", "pairs", "3 values"});
  graft_test::require_error([&] { pad(x, {1, 1, 1, 1, 1, 1}); }, {"pad", "pad 3 dims", "[2, 3]", "only 2"});
  graft_test::require_error([&] { pad(x, {-2, -2}); }, {"pad", "(-2, -2)", "dim 1", "negative size -1"});
}

TEST_CASE("efficientnet: TF 'SAME' padding and the package's width/depth rounding", "[efficientnet]") {
  using models::detail_effnet::round_filters;
  using models::detail_effnet::round_repeats;
  using models::detail_effnet::same_padding;
  CHECK(same_padding(224, 3, 2, 1) == std::array<int64_t, 2>{0, 1});  // the stem at 224
  CHECK(same_padding(225, 3, 2, 1) == std::array<int64_t, 2>{1, 1});
  CHECK(same_padding(56, 5, 2, 1) == std::array<int64_t, 2>{1, 2});
  CHECK(same_padding(14, 5, 1, 1) == std::array<int64_t, 2>{2, 2});
  CHECK(same_padding(7, 1, 1, 1) == std::array<int64_t, 2>{0, 0});
  // lite2 (width 1.1): 16 24 48 88 120 208 352; lite1/2 repeats 2 -> 3, 3 -> 4, 4 -> 5
  const std::vector<int64_t> base = {16, 24, 40, 80, 112, 192, 320}, lite2 = {16, 24, 48, 88, 120, 208, 352};
  for (size_t i = 0; i < base.size(); ++i) CHECK(round_filters(base[i], 1.1) == lite2[i]);
  CHECK(round_repeats(2, 1.1) == 3);
  CHECK(round_repeats(3, 1.1) == 4);
  CHECK(round_repeats(4, 1.2) == 5);
  CHECK(round_repeats(3, 1.0) == 3);
}

TEST_CASE("efficientnet: state_dict keys and shapes equal the package's", "[efficientnet]") {
  auto lite0 = models::efficientnet_lite0();
  effnet_require_same_keys(*lite0, "keys_efficientnet_lite0");
  effnet_require_same_keys(*models::efficientnet_lite1(), "keys_efficientnet_lite1");
  effnet_require_same_keys(*models::efficientnet_lite2(), "keys_efficientnet_lite2");
  CHECK(lite0->num_parameters() == 4652008);  // the package's counts
  CHECK(models::efficientnet_lite1()->num_parameters() == 5416680);
  CHECK(models::efficientnet_lite2()->num_parameters() == 6092072);
  CHECK(lite0->_blocks->size() == 16);
  CHECK(models::efficientnet_lite2()->_blocks->size() == 21);
  auto b1 = std::dynamic_pointer_cast<models::MBConvBlock>((*lite0->_blocks)[1]);
  REQUIRE(b1 != nullptr);
  CHECK(b1->_depthwise_conv->options.stride == std::array<int64_t, 2>{2, 2});
  CHECK(!b1->has_skip());
  CHECK(std::dynamic_pointer_cast<models::MBConvBlock>((*lite0->_blocks)[2])->has_skip());
  CHECK(lite0->_bn0->options.eps == 1e-3);
}

TEST_CASE("efficientnet: reset_classifier, odd input sizes, bad inputs and configurations", "[efficientnet]") {
  auto model = models::efficientnet_lite0();
  model->eval();
  const nn::StateDict before = model->state_dict();
  model->reset_classifier(7);
  const nn::StateDict after = model->state_dict();
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    REQUIRE(after[i].first == before[i].first);
    if (after[i].first.rfind("_fc.", 0) == 0) continue;
    CHECK(after[i].second.impl() == before[i].second.impl());
  }
  CHECK(model->classifier().find_tensor("weight").shape() == Shape({7, 1280}));
  const Tensor x = graft_test::rand_in({2, 3, 45, 38}, -1.0, 1.0, 3, DType::Float32);  // odd sizes: SAME pads
  NoGradGuard no_grad;
  CHECK(model->extract_features(x).shape() == Shape({2, 1280, 2, 2}));  // ceil(45 / 32), ceil(38 / 32)
  const Tensor features = model->forward_features(x);
  CHECK(features.shape() == Shape({2, 1280}));
  CHECK(model->forward(x).shape() == Shape({2, 7}));
  model->reset_classifier(0);
  CHECK(model->classifier().type_name() == "Identity");
  GRAFT_REQUIRE_CLOSE(model->forward(x), features, kTolF32);
  CHECK(model->state_dict().size() == before.size() - 2);

  graft_test::require_error([&] { model->forward(zeros({1, 1, 32, 32})); },
                            {"EfficientNetLite", "expected input [B, 3, H, W]", "[1, 1, 32, 32]"});
  graft_test::require_error([] { models::efficientnet_lite_config(3); }, {"EfficientNetLite", "variant", "got 3"});
  graft_test::require_error([] { models::efficientnet_lite1(10, 0); }, {"EfficientNetLite", "in_chans", "got 10 and 0"});
  graft_test::require_error([&] { model->reset_classifier(-2); }, {"EfficientNetLite", "num_classes", "-2"});
  // A checkpoint with a wrong key, and one with the wrong number of input channels, fail strict loading.
  nn::StateDict renamed = models::efficientnet_lite0()->state_dict();
  renamed[6].first = "_blocks.0._dw_conv.weight";
  graft_test::require_error([&] { models::efficientnet_lite0()->load_state_dict(renamed); },
                            {"load_state_dict", "_blocks.0._depthwise_conv.weight", "_blocks.0._dw_conv.weight"});
  graft_test::require_error([] { models::efficientnet_lite0(1000, 1)->load_state_dict(models::efficientnet_lite0()->state_dict()); },
                            {"load_state_dict", "_conv_stem.weight", "[32, 1, 3, 3]", "[32, 3, 3, 3]"});
}

TEST_CASE("efficientnet: training mode reaches every parameter, a frozen backbone none",
          "[efficientnet]") {
  auto model = models::efficientnet_lite0(5);
  model->train();
  const Tensor x = graft_test::rand_in({2, 3, 32, 32}, -1.0, 1.0, 5, DType::Float32);
  SECTION("full fine-tuning (dropout and drop connect active)") {
    sum(model->forward(x)).backward();
    for (const auto& [name, p] : model->named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined());
    }
    CHECK(model->_bn0->num_batches_tracked.item<int64_t>() == 1);
  }
  SECTION("linear probe") {
    model->requires_grad_(false);
    model->reset_classifier(3);
    sum(model->forward(x)).backward();
    for (const auto& [name, p] : model->named_parameters()) {
      INFO(name);
      CHECK(p.grad().defined() == (name.rfind("_fc.", 0) == 0));
    }
  }
}

// ---- the real ImageNet checkpoint --------------------------------------------------------------
TEST_CASE("efficientnet: the real lite0 .pth loads strictly and matches PyTorch's logits and top-5", "[efficientnet][big]") {
  auto model = effnet_real_lite0();
  const GoldenCase& c = effnet_real_case("lite0_real");
  NoGradGuard no_grad;
  const Tensor features = model->forward_features(c.at("x"));
  GRAFT_REQUIRE_CLOSE(features, c.at("features"), kTolF32);
  const Tensor logits = model->classifier().forward(features);
  GRAFT_REQUIRE_CLOSE(logits, c.at("out"), kTolF32);
  CHECK(effnet_topk(logits, 5) == effnet_rows(c.at("top5")));
  const Tensor f64 = c.at("out_f64");
  std::printf("[parity] efficientnet_lite0 (real): features max|diff| %.3g, logits max|diff| %.3g (max |logit| %.3g); "
              "vs PyTorch float64: Graft %.3g, PyTorch float32 %.3g\n",
              graft_test::max_abs_diff(features, c.at("features")), graft_test::max_abs_diff(logits, c.at("out")),
              graft_test::max_abs_diff(c.at("out"), zeros_like(c.at("out"))),
              graft_test::max_abs_diff(logits.to(DType::Float64), f64),
              graft_test::max_abs_diff(c.at("out").to(DType::Float64), f64));
}

TEST_CASE("efficientnet: real lite0 with BatchNorm folded into the convs matches unfused and PyTorch",
          "[efficientnet][big]") {
  auto model = effnet_real_lite0();
  const GoldenCase& c = effnet_real_case("lite0_real");
  NoGradGuard no_grad;
  const Tensor unfused = model->forward(c.at("x"));
  // stem and head, then per block: expand (absent in block 0), depthwise, project
  REQUIRE(model->fuse_for_inference() == 2 + 16 * 3 - 1);
  const Tensor fused = model->forward(c.at("x"));
  GRAFT_REQUIRE_CLOSE(fused, unfused, kTolF32);
  GRAFT_REQUIRE_CLOSE(fused, c.at("out"), kTolF32);
  CHECK(effnet_topk(fused, 5) == effnet_rows(c.at("top5")));
  std::printf("[parity] efficientnet_lite0 (real) with BatchNorm folded: max|fused - unfused| %.3g, vs PyTorch %.3g\n",
              graft_test::max_abs_diff(fused, unfused), graft_test::max_abs_diff(fused, c.at("out")));
}

// Training mode against PyTorch: the real checkpoint with a new 10-class head, BatchNorm on batch
// statistics (momentum 0.1, the demo's), SAME padding, depthwise and pointwise convolutions, ReLU6 and
// the head all on the backward path. In float64 (kTolF64): loss at three SGD steps, every parameter's
// gradient at the first, every state_dict entry (running statistics and num_batches_tracked included)
// after the third. float32 gradients make no stable reference: among the ~2M ReLU6 inputs of such a
// batch one may lie within float32 rounding of 0 or 6 (in a float32 batch tried first, one was 2.4e-7
// in Graft and -2.5e-7 in float64), and its gradient then passes in one float32 implementation and not
// in the other, moving that BatchNorm channel's gradient 3x. The float32 model is checked on the loss.
TEST_CASE("efficientnet: real lite0 fine-tuning steps in training mode match PyTorch's", "[efficientnet][big]") {
  static const graft_test::GoldenFile file = graft_test::read_golden(effnet_big_file("efficientnet_lite0_train.bin"));
  REQUIRE(file.cases.size() == 1);
  const GoldenCase& c = file.cases[0];
  const nn::StateDict checkpoint = io::load_torch_checkpoint(effnet_big_file("efficientnet_lite0_legacy.pth"));
  auto make_model = [&](DType dtype) {
    models::EfficientNetLiteConfig cfg = models::efficientnet_lite_config(0, 10);
    cfg.dropout_rate = 0.0;  // no random masks: the same computation as the reference
    cfg.drop_connect_rate = 0.0;
    auto model = std::make_shared<models::EfficientNetLite>(cfg);
    nn::StateDict sd = checkpoint;
    for (auto& [key, t] : sd) {
      if (key == "_fc.weight") t = c.at("fc.weight");
      if (key == "_fc.bias") t = c.at("fc.bias");
    }
    REQUIRE(model->load_state_dict(sd).ok());
    for (auto& [name, m] : model->named_modules())
      if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(m)) bn->options.momentum = 0.1;
    model->to(dtype);
    model->train();
    return model;
  };
  const Tensor x = c.at("x"), y = c.at("y");
  {
    auto model = make_model(DType::Float32);
    NoGradGuard no_grad;
    GRAFT_REQUIRE_CLOSE(cross_entropy(model->forward(x.to(DType::Float32)), y), c.at("loss_f32"), kTolF32);
  }
  auto model = make_model(DType::Float64);
  optim::SGD opt(model->parameters(), 0.05, 0.9);
  const std::vector<double> expected_loss = c.at("loss").to_vector();
  double worst_grad = 0, worst_after = 0;
  for (int step = 0; step < 3; ++step) {
    opt.zero_grad();
    const Tensor loss = cross_entropy(model->forward(x), y);
    loss.backward();
    INFO("step " << step);
    GRAFT_REQUIRE_CLOSE(loss, full({}, expected_loss[size_t(step)], DType::Float64), kTolF64);
    if (step == 0)
      for (const auto& [name, p] : model->named_parameters()) {
        INFO("gradient of " << name);
        GRAFT_REQUIRE_CLOSE(p.grad(), c.at("grad." + name), kTolF64);
        worst_grad = std::max(worst_grad, graft_test::max_abs_diff(p.grad(), c.at("grad." + name)));
      }
    opt.step();
  }
  for (const auto& [key, t] : model->state_dict()) {
    INFO("after 3 steps: " << key);
    const Tensor& expected = c.at("after." + key);
    if (key.ends_with("num_batches_tracked")) {
      CHECK(t.item<int64_t>() == expected.item<int64_t>());
      continue;
    }
    GRAFT_REQUIRE_CLOSE(t, expected, kTolF64);
    worst_after = std::max(worst_after, graft_test::max_abs_diff(t, expected));
  }
  std::printf("[parity] efficientnet_lite0 (real) train mode, 3 SGD steps in float64: step-0 gradients max|diff| "
              "%.3g, state after max|diff| %.3g\n", worst_grad, worst_after);
}

// The package's own file (the one PyTorch ran) is in torch's legacy (pre-1.6, non-zip) format, which
// the cases above load directly; the generator also re-saved the same state_dict with torch.save (zip):
// both readers give the same names, order, dtypes, shapes and values.
TEST_CASE("efficientnet: the package's legacy-format .pth reads the same as its zip re-save", "[efficientnet][big]") {
  const auto legacy = io::load_torch_checkpoint(effnet_big_file("efficientnet_lite0_legacy.pth"));
  const auto zip = io::load_torch_checkpoint(effnet_big_file("efficientnet_lite0.pth"));
  REQUIRE(legacy.size() == zip.size());
  CHECK(legacy.size() == 296);
  for (size_t i = 0; i < legacy.size(); ++i) {
    INFO(legacy[i].first);
    REQUIRE(legacy[i].first == zip[i].first);
    REQUIRE(legacy[i].second.dtype() == zip[i].second.dtype());
    REQUIRE(legacy[i].second.shape() == zip[i].second.shape());
    CHECK(graft_test::max_abs_diff(legacy[i].second, zip[i].second) == 0.0);
  }
}

TEST_CASE("efficientnet: real lite0 at 201 x 173 matches the package's dynamic SAME padding", "[efficientnet][big]") {
  auto model = effnet_real_lite0();
  const GoldenCase& c = effnet_real_case("lite0_dynamic");
  NoGradGuard no_grad;
  const Tensor logits = model->forward(c.at("x"));
  GRAFT_REQUIRE_CLOSE(logits, c.at("out"), kTolF32);
  std::printf("[parity] efficientnet_lite0 (real, 201 x 173): logits max|diff| %.3g\n",
              graft_test::max_abs_diff(logits, c.at("out")));
}

TEST_CASE("efficientnet: Graft's own image pipeline gives PyTorch's top-5 on the photos", "[efficientnet][big]") {
  auto model = effnet_real_lite0();
  const GoldenCase& c = effnet_real_case("lite0_real");
  const std::vector<std::string> photos = {"chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg",
                                           "motorcycle_left.png"};
  std::vector<Tensor> images;
  for (const auto& p : photos) {
    Tensor img = io::read_image(effnet_big_file("photos/" + p));
    img = transforms::resize(img, 256);
    img = transforms::center_crop(img, 224, 224);
    images.push_back(transforms::normalize(img, models::kLiteMean, models::kLiteStd));
  }
  const Tensor x = transforms::stack_images(images);
  // PNG decoding is exact, so those inputs equal torchvision's; the JPEG decoders (stb vs libjpeg) may differ.
  for (size_t i = 0; i < photos.size(); ++i) {
    if (photos[i].ends_with(".jpg")) continue;
    INFO(photos[i]);
    GRAFT_REQUIRE_CLOSE(images[i], c.at("x").select(0, int64_t(i)), kTolF32);
  }
  NoGradGuard no_grad;
  const Tensor logits = model->forward(x);
  CHECK(effnet_topk(logits, 5) == effnet_rows(c.at("top5")));
  // The measured differences: each photo's logits against PyTorch's, next to that photo's smallest gap
  // between consecutive top-6 logits (the error a top-5 comparison tolerates).
  const std::vector<double> gaps = c.at("top_gap").to_vector();
  for (size_t i = 0; i < photos.size(); ++i)
    std::printf("[parity] efficientnet_lite0 (Graft pipeline) %s: logits max|diff| %.3g, top-6 gap %.3g\n",
                photos[i].c_str(),
                graft_test::max_abs_diff(logits.select(0, int64_t(i)), c.at("out").select(0, int64_t(i))), gaps[i]);
}

TEST_CASE("efficientnet: lite1 and lite2 (seeded weights) match the package at 240 and 260", "[efficientnet][big]") {
  for (int variant : {1, 2}) {
    const std::string name = "efficientnet_lite" + std::to_string(variant);
    INFO(name);
    auto model = std::make_shared<models::EfficientNetLite>(models::efficientnet_lite_config(variant));
    REQUIRE(model->load_state_dict(io::load_safetensors(effnet_big_file(name + ".safetensors"))).ok());
    model->eval();
    const graft_test::GoldenFile file = graft_test::read_golden(effnet_big_file(name + "_golden.bin"));
    REQUIRE(file.cases.size() == 1);
    const GoldenCase& c = file.cases[0];
    NoGradGuard no_grad;
    const Tensor features = model->forward_features(c.at("x"));
    GRAFT_REQUIRE_CLOSE(features, c.at("features"), kTolF32);
    const Tensor out = model->classifier().forward(features);
    GRAFT_REQUIRE_CLOSE(out, c.at("out"), kTolF32);
    std::printf("[parity] %s: features max|diff| %.3g, logits max|diff| %.3g (max |logit| %.3g)\n", name.c_str(),
                graft_test::max_abs_diff(features, c.at("features")), graft_test::max_abs_diff(out, c.at("out")),
                graft_test::max_abs_diff(c.at("out"), zeros_like(c.at("out"))));
  }
}

TEST_CASE("efficientnet: graft-convert turns the real .pth into 10 classes and 1 input channel", "[efficientnet][big][convert]") {
  const nn::StateDict source = io::load_torch_checkpoint(effnet_big_file("efficientnet_lite0_legacy.pth"));
  convert::ConvertOptions o;
  o.family = "efficientnet-lite";
  o.arch = "efficientnet_lite0";
  o.num_classes = 10;
  o.in_chans = 1;
  auto [module, r] = convert::convert_state_dict(o, source, "efficientnet_lite0.pth");
  CHECK(r.source_num_classes == 1000);
  CHECK(r.source_in_chans == 3);
  CHECK(r.mapped.size() == source.size() - 2);
  CHECK(r.dropped.size() == 2);  // _fc.weight, _fc.bias
  CHECK(r.missing == std::vector<std::string>{"_fc.weight", "_fc.bias"});
  REQUIRE(r.adapted.size() == 1);
  CHECK(r.adapted[0].find("_conv_stem.weight [32, 3, 3, 3] -> [32, 1, 3, 3]") != std::string::npos);
  auto model = std::dynamic_pointer_cast<models::EfficientNetLite>(module);
  REQUIRE(model != nullptr);
  // The stem is the sum over RGB; every other backbone tensor is the checkpoint's.
  const Tensor rgb = source[0].second;
  REQUIRE(source[0].first == "_conv_stem.weight");
  GRAFT_REQUIRE_CLOSE(model->_conv_stem->weight, sum(rgb, {1}, true), kTolF32);
  const nn::StateDict got = model->state_dict();
  for (size_t i = 1; i + 2 < got.size(); ++i) {
    INFO(got[i].first);
    REQUIRE(got[i].first == source[i].first);
    CHECK(got[i].second.to_vector() == source[i].second.to_vector());
  }
  CHECK(model->classifier().find_tensor("weight").shape() == Shape({10, 1280}));
  // A gray image gives the RGB model's features when its 3 channels are that gray (linearity of the stem).
  model->eval();
  auto rgb_model = effnet_real_lite0();
  const Tensor gray = graft_test::rand_in({1, 1, 64, 64}, -1.0, 1.0, 9, DType::Float32);
  NoGradGuard no_grad;
  GRAFT_REQUIRE_CLOSE(model->forward_features(gray), rgb_model->forward_features(cat({gray, gray, gray}, 1)), kTolF32);
  CHECK(model->forward(gray).shape() == Shape({1, 10}));
  graft_test::require_error(
      [&] {
        convert::ConvertOptions bad = o;
        bad.arch = "efficientnet_lite1";
        convert::convert_state_dict(bad, source, "efficientnet_lite0.pth");
      },
      {"graft-convert", "efficientnet_lite0.pth", "does not fit efficientnet_lite1"});
}
