// tests/test_resnext.cpp - the grouped and widened ResNets (ResNeXt, Wide ResNet, ResNet-152) against
// torchvision 0.14.
//
// Committed data: tests/data/models/resnext_keys.bin, torchvision's state_dict keys and shapes of
// resnet152, resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet50_2 and wide_resnet101_2
// (`$GRAFT_PYTHON tools/gen_resnext_goldens.py`).
// Big data (`$GRAFT_PYTHON tools/gen_resnext_goldens.py DIR`, read from $GRAFT_MODEL_DATA): seeded
// resnext50_32x4d weights with eval-mode features and logits, and a small grouped ResNet's float64
// training-mode step (loss, gradients, running statistics).
#include <map>
#include <string>

#include "golden.hpp"
#include "model_keys.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/models/registry.hpp"
#include "graft/models/resnet.hpp"
#include "graft/nn.hpp"
#include "harness.hpp"

namespace {

using namespace graft;
using graft_test::GoldenCase;

const GoldenCase& resnext_keys_case(const std::string& name) {
  static const graft_test::GoldenFile file = graft_test::read_golden(GRAFT_TEST_DATA_DIR "/models/resnext_keys.bin");
  for (const auto& c : file.cases)
    if (c.name == name) return c;
  throw Error("test_resnext: no golden case '" + name + "'");
}

std::string resnext_big_file(const std::string& file) {
  return graft_test::model_data_file(file, "tools/gen_resnext_goldens.py");
}

nn::StateDict resnext_prefixed(const GoldenCase& c, const std::string& prefix) {
  nn::StateDict out;
  for (const auto& [k, t] : c.tensors)
    if (k.rfind(prefix, 0) == 0) out.emplace_back(k.substr(prefix.size()), t);
  return out;
}

}  // namespace

TEST_CASE("resnext: every grouped and wide ResNet has torchvision's keys, order and shapes", "[resnext]") {
  // Built without initialization (only names and shapes matter here): 450M parameters in all.
  for (const std::string name : {"resnet152", "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
                                 "wide_resnet50_2", "wide_resnet101_2"}) {
    INFO(name);
    graft_test::require_same_keys(models::create(name, {.init_weights = false})->state_dict(),
                                  resnext_keys_case("keys_" + name));
  }
}

TEST_CASE("resnext: ResNeXt-50 32x4d matches torchvision (features and logits, eval)", "[resnext][big]") {
  auto model = models::resnext50_32x4d();
  REQUIRE(model->load_state_dict(io::load_safetensors(resnext_big_file("resnext50_32x4d.safetensors"))).ok());
  model->eval();
  const graft_test::GoldenFile file = graft_test::read_golden(resnext_big_file("resnext50_32x4d_golden.bin"));
  const GoldenCase& c = file.cases.at(0);
  NoGradGuard no_grad;
  const Tensor features = model->forward_features(c.at("x"));
  GRAFT_REQUIRE_CLOSE(features, c.at("features"), graft_test::kTolF32);
  GRAFT_REQUIRE_CLOSE(model->forward_head(features), c.at("out"), graft_test::kTolF32);
  // The same through the common interface, and with every BatchNorm folded into its (grouped) conv.
  models::ImageClassifier& net = *model;
  model->fuse_for_inference();
  GRAFT_REQUIRE_CLOSE(net.forward(c.at("x")), c.at("out"), graft_test::kTolF32);
}

TEST_CASE("resnext: a grouped ResNet's training step matches torchvision in float64", "[resnext][big]") {
  const graft_test::GoldenFile file = graft_test::read_golden(resnext_big_file("resnext_small_train.bin"));
  const GoldenCase& c = file.cases.at(0);
  models::ResNet model(models::ResNetBlock::Bottleneck, {1, 1, 1, 1}, 10, 3, /*groups=*/4, /*width_per_group=*/8);
  model.to(DType::Float64);
  REQUIRE(model.load_state_dict(resnext_prefixed(c, "sd.")).ok());
  model.train();
  const Tensor loss = sum(mul(model.forward(c.at("x")), c.at("w")));
  GRAFT_REQUIRE_CLOSE(loss, c.at("loss"), graft_test::kTolF64);
  loss.backward();
  std::map<std::string, Tensor> params;
  for (const auto& [k, p] : model.named_parameters()) params.emplace(k, p);
  size_t checked = 0;
  for (const auto& [k, g] : resnext_prefixed(c, "grad.")) {
    INFO("grad of " << k);
    REQUIRE(params.count(k) == 1);
    GRAFT_REQUIRE_CLOSE(params.at(k).grad(), g, graft_test::kTolF64);
    ++checked;
  }
  CHECK(checked == 9);
  std::map<std::string, Tensor> state;
  for (const auto& [k, t] : model.state_dict()) state.emplace(k, t);
  for (const auto& [k, t] : resnext_prefixed(c, "running.")) {
    INFO("buffer " << k);
    GRAFT_REQUIRE_CLOSE(state.at(k), t, graft_test::kTolF64);
  }
}

TEST_CASE("resnext: widths, groups and bad configurations", "[resnext]") {
  // torchvision's width = planes * width_per_group / 64 * groups: 128 in ResNeXt-50's layer1, in 32 groups.
  init::SkipInitGuard no_init;  // shapes only
  auto rx = models::resnext50_32x4d(10);
  auto* block = dynamic_cast<models::Bottleneck*>((*rx->stages[0])[0].get());
  REQUIRE(block != nullptr);
  CHECK(block->conv2->out_channels == 128);
  CHECK(block->conv2->weight.shape() == Shape{128, 4, 3, 3});
  auto wide = models::wide_resnet50_2(10, 1);
  CHECK(dynamic_cast<models::Bottleneck*>((*wide->stages[0])[0].get())->conv2->weight.shape() == Shape{128, 128, 3, 3});
  CHECK(wide->in_chans() == 1);
  CHECK(wide->num_features() == 2048);
  graft_test::require_error(
      [] { models::ResNet(models::ResNetBlock::Basic, {2, 2, 2, 2}, 10, 3, 32, 4); },
      {"ResNet", "BasicBlock only supports groups 1 and width_per_group 64", "32", "4"});
  graft_test::require_error([] { models::ResNet(models::ResNetBlock::Bottleneck, {1, 1, 1, 1}, 10, 3, 0, 4); },
                            {"ResNet", "groups and width_per_group must be >= 1"});
}
