// tests/test_registry.cpp - the model registry (models/graft/models/registry.hpp): every arch builds
// through models::create with the metadata the registry states (head, first conv, feature width,
// input channels), its keys pass its checkpoint naming's table (weights_import/name_maps.hpp), the
// common ImageClassifier interface works through a base pointer, and bad names get the closest one.
#include <functional>
#include <set>
#include <string>

#include "../weights_import/name_maps.hpp"
#include "graft/models/registry.hpp"
#include "harness.hpp"

namespace {

using namespace graft;

// The archs built in the sweep below. The others share their class and code with a checked sibling
// and have their keys compared with torchvision's / timm's elsewhere (test_resnext, test_models,
// test_timm_models), but are too large to build in a unit test (45M-127M parameters each).
bool registry_is_heavy(const std::string& arch) {
  static const std::set<std::string> heavy = {"resnet101", "resnet152", "resnext101_32x8d", "resnext101_64x4d",
                                              "wide_resnet50_2", "wide_resnet101_2", "vit_base_patch16_224",
                                              "vit_base_patch32_224", "deit_base_patch16_224",
                                              "deit_base_distilled_patch16_224", "bert",
                                              "convnext_small", "vit-base-patch16-224", "vit-large-patch16-224",
                                              "deit-base-patch16-224", "distilbert-base-uncased",
                                              "distilbert-base-cased", "timm/resnet101", "timm/convnext_small"};
  return heavy.count(arch) > 0;
}

// The message fn throws (a test failure when it does not throw a graft::Error).
std::string registry_error_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("expected a graft::Error");
  return "";
}

}  // namespace

TEST_CASE("registry: every image arch builds with the head, first conv and widths its entry states",
          "[registry]") {
  size_t checked = 0;
  for (const models::ModelInfo& info : models::registry()) {
    if (info.modality != "image" || registry_is_heavy(info.arch)) continue;
    INFO(info.arch);
    // Zero-filled weights (init_weights = false): only shapes and names matter here.
    auto net = models::create_classifier(info.arch, {.num_classes = 7, .in_chans = 1, .init_weights = false});
    CHECK(net->classifier_name() == info.head);
    CHECK(net->num_features() == info.num_features);
    CHECK(net->in_chans() == 1);
    CHECK(info.mean.size() == 3);
    CHECK(info.std.size() == 3);
    CHECK(info.input_size >= 224);
    const nn::StateDict sd = net->state_dict();
    bool found_conv = false, found_head = false;
    const convert::FamilyTable& table = convert::family_table(info.naming);
    for (const auto& [k, t] : sd) {
      INFO("key " << k);
      CHECK(convert::map_name(table, k) == k);  // the naming's table accepts every key
      if (k == info.first_conv) {
        found_conv = true;
        CHECK(t.dim() == 4);
        CHECK(t.size(1) == 1);
      }
      if (k == info.head + ".weight") {
        found_head = true;
        CHECK(t.shape() == Shape{7, net->head_hidden_size()});
      }
    }
    CHECK(found_conv);
    CHECK(found_head);

    // Forward through the base pointer: logits, features, pre-logits; then a headless model.
    net->eval();
    NoGradGuard no_grad;
    const int64_t side = info.fixed_input_size ? info.input_size : 64;
    const Tensor x = randn({1, 1, side, side});
    const Tensor f = net->forward_features(x);
    CHECK(f.shape() == Shape{1, info.num_features});
    CHECK(net->forward_head(f, /*pre_logits=*/true).shape() == Shape{1, net->head_hidden_size()});
    CHECK(net->forward(x).shape() == Shape{1, 7});
    const std::vector<std::string> stages = net->feature_names();
    REQUIRE(stages.size() >= 2);
    CHECK(stages.back() == "features");
    const models::NamedFeatures last = net->forward_intermediates(x, {stages.back()});
    REQUIRE(last.size() == 1);
    GRAFT_REQUIRE_CLOSE(last[0].second, f, graft_test::kTolF32);
    net->reset_classifier(0);
    CHECK(net->forward(x).shape() == Shape{1, net->head_hidden_size()});
    ++checked;
  }
  CHECK(checked >= 20);
}

TEST_CASE("registry: text models, names, globs and the closest name", "[registry]") {
  auto bert = models::create("all-minilm-l6-v2", {.num_classes = 3});
  CHECK(bert->type_name() == "BertModel");
  CHECK(bert->classifier_name() == "classifier");
  graft_test::require_error([] { models::create_classifier("all-minilm-l6-v2"); },
                            {"all-minilm-l6-v2 is a text model", "models::create"});
  graft_test::require_error([] { models::create("all-minilm-l6-v2", {.num_classes = 3, .in_chans = 3}); },
                            {"text model", "in_chans"});
  graft_test::require_error([] { models::create("resnet18", {.num_classes = -1}); }, {"num_classes must be >= 0"});

  graft_test::require_error([] { models::model_info("resnt50"); },
                            {"unknown arch 'resnt50'", "did you mean 'resnet50'", "known: resnet18"});
  graft_test::require_error([] { models::create_classifier("vit_tiny_patch16"); },
                            {"did you mean 'vit_tiny_patch16_224'"});
  CHECK(models::list_models("resnext*") ==
        std::vector<std::string>{"resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"});
  CHECK(models::list_models().size() == models::registry().size());
  for (const std::string& a : models::list_models("*_224")) CHECK(models::model_info(a).family == "vit");
  CHECK(models::list_models("nothing*").empty());

  // Names are unique, and every naming has a table in weights_import/ that lists the arch.
  std::set<std::string> names;
  for (const models::ModelInfo& m : models::registry()) {
    INFO(m.arch);
    CHECK(names.insert(m.arch).second);
    const convert::FamilyTable& t = convert::family_table(m.naming);
    const std::vector<std::string> archs = t.archs();
    CHECK(std::find(archs.begin(), archs.end(), m.arch) != archs.end());
    CHECK(convert::list_archs().find(m.arch + " ") != std::string::npos);
  }
}

TEST_CASE("registry: graft-convert takes the arch's head and first conv from the registry", "[registry][convert]") {
  // A ResNeXt through the torchvision-resnet table: 10 classes, 1 channel.
  auto src = models::resnext50_32x4d();
  convert::ConvertOptions o{"torchvision-resnet", "resnext50_32x4d", "", "", 10, 1};
  auto [model, r] = convert::convert_state_dict(o, src->state_dict(), "rx.pth");
  CHECK(r.missing == std::vector<std::string>{"fc.weight", "fc.bias"});
  CHECK(r.source_in_chans == 3);
  CHECK(r.in_chans == 1);
  REQUIRE(r.adapted.size() == 1);
  CHECK(r.adapted[0].find("conv1.weight [64, 3, 7, 7] -> [64, 1, 7, 7]") != std::string::npos);

  // An arch of another naming, and an unknown one.
  convert::ConvertOptions wrong{"timm-vit", "resnet18", "", "", -1, -1};
  graft_test::require_error([&] { convert::convert_state_dict(wrong, models::resnet18()->state_dict(), "r.pth"); },
                            {"arch 'resnet18' has torchvision-resnet names", "use --family torchvision-resnet"});
  convert::ConvertOptions typo{"torchvision-resnet", "resnext50", "", "", -1, -1};
  graft_test::require_error([&] { convert::convert_state_dict(typo, {}, "r.pth"); },
                            {"unknown arch 'resnext50'", "resnext50_32x4d"});
}

TEST_CASE("registry: a mis-shaped head is named from the model's classifier_name", "[registry]") {
  auto vit1000 = models::create_classifier("vit_tiny_patch16_224");
  auto vit10 = models::create_classifier("vit_tiny_patch16_224", {.num_classes = 10});
  graft_test::require_error([&] { vit10->load_state_dict(vit1000->state_dict()); },
                            {"'head.weight' is the classifier head", "reset_classifier(10)"});
  // A module without a classifier gets no head advice for the same mismatch.
  nn::Sequential seq{std::make_shared<nn::Linear>(4, 3)};
  nn::Sequential other{std::make_shared<nn::Linear>(4, 5)};
  const std::string msg = registry_error_message([&] { seq.load_state_dict(other.state_dict()); });
  CHECK(msg.find("size mismatch for '0.weight'") != std::string::npos);
  CHECK(msg.find("classifier head") == std::string::npos);
}

TEST_CASE("registry: init_weights = false zero-fills and leaves the generator alone", "[registry]") {
  manual_seed(5);
  const double expected = randn({1}).item<double>();
  manual_seed(5);
  auto net = models::create_classifier("resnet18", {.num_classes = 10, .init_weights = false});
  CHECK(randn({1}).item<double>() == expected);  // nothing was drawn
  for (const auto& [k, t] : net->state_dict()) {
    if (k.find("running_var") != std::string::npos || k.find("num_batches") != std::string::npos ||
        k.find("bn") != std::string::npos || k.find("downsample.1") != std::string::npos)
      continue;  // BatchNorm's constants (1, 0) are set, not drawn
    INFO(k);
    CHECK(max(abs(t)).item<double>() == 0.0);
  }
  // The guard ends with create(): the next model is initialized again.
  auto fresh = models::create_classifier("resnet18", {.num_classes = 10});
  CHECK(max(abs(fresh->state_dict().front().second)).item<double>() > 0.0);
  CHECK_FALSE(init::skip_init_flag());
}

TEST_CASE("registry: reset_classifier keeps the model's dtype and mode on every family", "[registry]") {
  for (const std::string arch : {"resnet18", "vit_tiny_patch16_224", "efficientnet_lite0", "mobilenet_v3_small",
                                 "efficientnet_b0", "convnext_tiny"}) {
    INFO(arch);
    auto net = models::create_classifier(arch, {.num_classes = 5, .init_weights = false});
    net->to(DType::Float64);
    net->eval();
    net->reset_classifier(3);
    CHECK_FALSE(net->classifier().is_training());
    for (const auto& [k, t] : net->classifier().state_dict()) CHECK(t.dtype() == DType::Float64);
    CHECK(net->classifier().state_dict().front().second.size(0) == 3);
  }
}
