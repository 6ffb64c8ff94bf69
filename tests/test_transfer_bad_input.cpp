// tests/test_transfer_bad_input.cpp - bad input in transfer learning gets a clear graft::Error, never a
// crash (issue 4, "Bad input"): a checkpoint for another architecture, a head of another size, a
// dataset folder with undecodable images, labels out of range, learning rates that are not finite or
// that make the loss diverge. Each case checks the exception type and the parts of the message that
// say what was wrong. Models are random-weight (no downloads); checkpoints are built in memory or
// written to a temp folder.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "../weights_import/name_maps.hpp"
#include "graft/data/dataset.hpp"
#include "graft/data/loader.hpp"
#include "graft/io/image.hpp"
#include "graft/io/safetensors.hpp"
#include "graft/models/efficientnet_lite.hpp"
#include "graft/optim/adam.hpp"
#include "graft/optim/schedule.hpp"
#include "graft/optim/sgd.hpp"
#include "graft/train/guard.hpp"
#include "harness.hpp"

using namespace graft;
using Catch::Contains;

namespace {

namespace fs = std::filesystem;

// A fresh folder under the temp dir, removed when the object goes.
struct BadInputTmpDir {
  fs::path path;
  explicit BadInputTmpDir(const std::string& what) {
    static int n = 0;
    path = fs::temp_directory_path() /
           ("graft_test_bad_input_" + what + "_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~BadInputTmpDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The message of the graft::Error fn throws ("" when it throws none).
std::string bad_input_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::shared_ptr<nn::Sequential> bad_input_mlp(int64_t in, int64_t hidden, int64_t classes) {
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(std::make_shared<nn::Linear>(in, hidden));
  net->push_back(std::make_shared<nn::ReLU>());
  net->push_back(std::make_shared<nn::Linear>(hidden, classes));
  return net;
}

}  // namespace

// ---- a checkpoint for another architecture ---------------------------------------------------------

TEST_CASE("bad_input: a ResNet-18 checkpoint into EfficientNet-Lite0 says another architecture, briefly",
          "[bad_input]") {
  auto resnet = models::resnet18(10);
  auto lite = models::efficientnet_lite0(10);
  const nn::StateDict r18 = resnet->state_dict();
  const size_t lite_keys = lite->state_dict().size();
  const Tensor stem_before = lite->state_dict().front().second.clone();

  CHECK_THROWS_AS(lite->load_state_dict(r18), Error);
  CHECK_THROWS_WITH(lite->load_state_dict(r18),
                    Contains("load_state_dict: error(s) loading state dict into EfficientNet:") &&
                        Contains("only 0 of the model's " + std::to_string(lite_keys) + " keys") &&
                        Contains("looks like a checkpoint for another architecture") &&
                        Contains("missing keys: '_conv_stem.weight'") && Contains("unexpected keys: 'conv1.weight'") &&
                        Contains(std::to_string(lite_keys) + " in all") &&
                        Contains(std::to_string(r18.size()) + " in all"));
  // Readable: counts and the first few names, not every key of both models.
  const std::string msg = bad_input_message([&] { lite->load_state_dict(r18); });
  INFO(msg);
  CHECK(msg.size() < 1000);
  CHECK(msg.find("layer4.1.bn2.running_var") == std::string::npos);
  CHECK(graft_test::max_abs_diff(lite->state_dict().front().second, stem_before) == 0.0);  // nothing copied

  // Non-strict returns the full report and copies nothing that does not fit.
  const nn::LoadReport rep = lite->load_state_dict(r18, /*strict=*/false);
  CHECK(rep.found == 0);
  CHECK(rep.model_keys == lite_keys);
  CHECK(rep.missing.size() == lite_keys);
  CHECK(rep.unexpected.size() == r18.size());
  CHECK(rep.looks_like_other_architecture());
  CHECK(graft_test::max_abs_diff(lite->state_dict().front().second, stem_before) == 0.0);
}

TEST_CASE("bad_input: a ViT checkpoint into ResNet-18 says another architecture; resnet18 into resnet34 does not",
          "[bad_input]") {
  auto vit = models::vit_tiny_patch16_224(10);
  auto resnet = models::resnet18(10);
  const nn::StateDict vsd = vit->state_dict();
  CHECK_THROWS_AS(resnet->load_state_dict(vsd), Error);
  CHECK_THROWS_WITH(resnet->load_state_dict(vsd), Contains("into ResNet") &&
                                                      Contains("looks like a checkpoint for another architecture") &&
                                                      Contains("missing keys: 'conv1.weight'") &&
                                                      Contains("unexpected keys: 'cls_token'"));

  // Same family, more blocks: most keys are found, so only the missing blocks are named.
  auto r34 = models::resnet34(10);
  const nn::StateDict r18 = resnet->state_dict();
  const std::string msg = bad_input_message([&] { r34->load_state_dict(r18); });
  INFO(msg);
  CHECK_THAT(msg, Contains("missing keys: 'layer1.2.conv1.weight'"));
  CHECK(msg.find("another architecture") == std::string::npos);
  CHECK(msg.find("unexpected keys") == std::string::npos);
}

TEST_CASE("bad_input: graft-convert of a ResNet checkpoint with --family efficientnet-lite names the family",
          "[bad_input]") {
  BadInputTmpDir tmp("convert");
  const std::string in = (tmp.path / "resnet18.safetensors").string();
  const std::string out = (tmp.path / "out.safetensors").string();
  io::save_safetensors(in, models::resnet18()->state_dict());

  const convert::ConvertOptions o{"efficientnet-lite", "efficientnet_lite0", in, out, 10, -1};
  CHECK_THROWS_AS(convert::convert_file(o), Error);
  CHECK_THROWS_WITH(convert::convert_file(o),
                    Contains("graft-convert") && Contains(in) && Contains("does not fit efficientnet_lite0") &&
                        Contains("not family 'efficientnet-lite'") && Contains("try --family torchvision-resnet") &&
                        Contains("missing keys: '_conv_stem.weight'"));
  CHECK(!fs::exists(out));  // nothing written

  // A file that is not a checkpoint at all: the reader names it.
  const std::string text = (tmp.path / "notes.pth").string();
  std::ofstream(text) << "these are not weights\n";
  const convert::ConvertOptions t{"torchvision-resnet", "resnet18", text, out, 10, -1};
  CHECK_THROWS_AS(convert::convert_file(t), Error);
  CHECK_THROWS_WITH(convert::convert_file(t), Contains("notes.pth"));
}

// ---- a head of another size ------------------------------------------------------------------------

TEST_CASE("bad_input: a 1000-class head into a 10-class model names the key, both shapes and the fix",
          "[bad_input]") {
  auto r1000 = models::resnet18(1000);
  auto r10 = models::resnet18(10);
  const nn::StateDict sd = r1000->state_dict();
  CHECK_THROWS_AS(r10->load_state_dict(sd), Error);
  CHECK_THROWS_WITH(r10->load_state_dict(sd),
                    Contains("size mismatch for 'fc.weight': expected shape [10, 512], got [1000, 512]") &&
                        Contains("size mismatch for 'fc.bias': expected shape [10], got [1000]") &&
                        Contains("the checkpoint has 1000 classes, the model 10") &&
                        Contains("reset_classifier(10)") && Contains("load with strict=false"));
  const std::string msg = bad_input_message([&] { r10->load_state_dict(sd); });
  CHECK(msg.find("another architecture") == std::string::npos);

  auto lite1000 = models::efficientnet_lite0(1000);
  auto lite10 = models::efficientnet_lite0(10);
  const nn::StateDict lsd = lite1000->state_dict();
  CHECK_THROWS_AS(lite10->load_state_dict(lsd), Error);
  CHECK_THROWS_WITH(lite10->load_state_dict(lsd),
                    Contains("size mismatch for '_fc.weight': expected shape [10, 1280], got [1000, 1280]") &&
                        Contains("reset_classifier(10)"));

  // The suggested fix works: load into a 1000-class model, then reset the head.
  REQUIRE(lite10->load_state_dict(lsd, /*strict=*/false).mismatched.size() == 2);
  auto fixed = models::efficientnet_lite0(1000);
  fixed->load_state_dict(lsd);
  fixed->reset_classifier(10);
  CHECK(fixed->state_dict().back().second.shape() == Shape{10});

  // A mis-shaped key that is not a head gets no head advice.
  nn::StateDict body = r10->state_dict();
  for (auto& [k, t] : body)
    if (k == "layer2.0.conv1.weight") t = zeros({128, 32, 3, 3});
  const std::string body_msg = bad_input_message([&] { r10->load_state_dict(body); });
  INFO(body_msg);
  CHECK_THAT(body_msg, Contains("size mismatch for 'layer2.0.conv1.weight'"));
  CHECK(body_msg.find("reset_classifier") == std::string::npos);
}

// ---- a dataset folder with unreadable images -------------------------------------------------------

TEST_CASE("bad_input: ImageFolder and DataLoader name an image that cannot be decoded", "[bad_input]") {
  BadInputTmpDir tmp("folder");
  const fs::path root = tmp.path;
  fs::create_directories(root / "cat");
  fs::create_directories(root / "dog");
  const Tensor img = rand({3, 6, 6});
  io::write_png((root / "cat" / "a.png").string(), img);
  io::write_png((root / "cat" / "b.png").string(), img);
  io::write_png((root / "dog" / "a.png").string(), img);
  std::ofstream(root / "dog" / "b_text.png") << "this is a text file, not a png\n";
  {
    std::ifstream jpg(std::string(GRAFT_TEST_DATA_DIR) + "/images/photo.jpg", std::ios::binary);
    REQUIRE(jpg.good());
    const std::string bytes((std::istreambuf_iterator<char>(jpg)), std::istreambuf_iterator<char>());
    REQUIRE(bytes.size() > 100);
    std::ofstream(root / "dog" / "c_truncated.jpg", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  auto folder = std::make_shared<data::ImageFolder>(root.string());
  REQUIRE(folder->size() == 5);
  const std::string text_path = folder->samples()[3].path, jpg_path = folder->samples()[4].path;
  REQUIRE(text_path == (root / "dog" / "b_text.png").string());
  REQUIRE(jpg_path == (root / "dog" / "c_truncated.jpg").string());
  CHECK(folder->get(0).input.shape() == Shape{3, 6, 6});

  CHECK_THROWS_AS(folder->get(3), Error);
  CHECK_THROWS_WITH(folder->get(3), Contains("ImageFolder: could not decode " + text_path) &&
                                        Contains("example 3 of 5, class 'dog'") && Contains("not an image"));
  CHECK_THROWS_AS(folder->get(4), Error);
  CHECK_THROWS_WITH(folder->get(4), Contains("could not decode " + jpg_path) && Contains("JPEG"));

  // Through a DataLoader with worker threads: the batch holding the bad file rethrows its error in
  // the consumer, and the earlier batches arrive.
  for (int workers : {0, 2}) {
    INFO("num_workers " << workers);
    data::DataLoader loader(folder, {.batch_size = 2, .num_workers = workers});
    int64_t delivered = 0;
    auto run = [&] {
      delivered = 0;
      for (const data::Batch& b : loader) delivered += b.inputs.size(0);
    };
    CHECK_THROWS_AS(run(), Error);
    CHECK(delivered == 2);  // batch 0 (indices 0, 1); batch 1 holds index 3
    CHECK_THROWS_WITH(run(), Contains("ImageFolder: could not decode " + text_path));
  }
}

// ---- labels out of range ---------------------------------------------------------------------------

TEST_CASE("bad_input: a label out of range for a 10-class head names the label, its position and the range",
          "[bad_input]") {
  auto net = bad_input_mlp(4, 8, 10);
  Generator g(3);
  const Tensor x = randn({8, 4}, DType::Float32, g);
  std::vector<int64_t> labels = {0, 1, 2, 3, 4, 5, 12, 7};  // 12 at dataset index 6
  auto ds = std::make_shared<data::TensorDataset>(x, from_vector(labels, Shape{8}));

  // Through the model's logits: cross_entropy names the target, its position in the batch, the range.
  data::DataLoader plain(ds, {.batch_size = 4});
  auto train_epoch = [&] {
    for (const data::Batch& b : plain) cross_entropy(net->forward(b.inputs), b.labels).backward();
  };
  CHECK_THROWS_AS(train_epoch(), Error);
  CHECK_THROWS_WITH(train_epoch(), Contains("cross_entropy: target 12 at position [2]") &&
                                       Contains("out of range for 10 classes") && Contains("[0, 9]"));
  const Tensor neg = from_vector(std::vector<int64_t>{0, -3}, Shape{2});
  CHECK_THROWS_AS(cross_entropy(net->forward(x.narrow(0, 0, 2)), neg), Error);
  CHECK_THROWS_WITH(cross_entropy(net->forward(x.narrow(0, 0, 2)), neg),
                    Contains("target -3 at position [1]") && Contains("[0, 9]"));

  // The loader checks labels itself when told the number of classes (dataset index included), also
  // with worker threads.
  for (int workers : {0, 2}) {
    INFO("num_workers " << workers);
    data::DataLoader checked(ds, {.batch_size = 4, .num_workers = workers, .num_classes = 10});
    auto run = [&] {
      for (const data::Batch& b : checked) (void)b;
    };
    CHECK_THROWS_AS(run(), Error);
    CHECK_THROWS_WITH(run(), Contains("DataLoader: label 12 of example 2 of the batch (dataset index 6)") &&
                                 Contains("out of range for 10 classes (expected in [0, 9])"));
  }

  // Or before training, over the whole dataset.
  CHECK_THROWS_AS(data::check_labels(*ds, 10), Error);
  CHECK_THROWS_WITH(data::check_labels(*ds, 10), Contains("label 12 at index 6 of 8") &&
                                                     Contains("10-class head") && Contains("[0, 9]"));
  CHECK_NOTHROW(data::check_labels(*ds, 13));
  auto negative = std::make_shared<data::TensorDataset>(x.narrow(0, 0, 2), neg);
  CHECK_THROWS_WITH(data::check_labels(*negative, 10), Contains("label -3 at index 1") && Contains(">= 0"));
}

// ---- learning rates --------------------------------------------------------------------------------

TEST_CASE("bad_input: a NaN, infinite or negative learning rate is refused where it is set", "[bad_input]") {
  auto net = bad_input_mlp(4, 8, 10);
  const double nan = std::nan(""), inf = INFINITY;
  CHECK_THROWS_AS(optim::SGD(net->parameters(), nan), Error);
  CHECK_THROWS_WITH(optim::SGD(net->parameters(), nan), Contains("SGD") && Contains("invalid learning rate nan"));
  CHECK_THROWS_WITH(optim::SGD(net->parameters(), inf), Contains("SGD") && Contains("invalid learning rate inf"));
  CHECK_THROWS_WITH(optim::Adam(net->parameters(), -1e-3), Contains("Adam") && Contains("invalid learning rate -0.001"));
  CHECK_THROWS_AS(optim::AdamW(net->parameters(), -inf), Error);

  // A parameter group's own lr.
  std::vector<optim::ParamGroup> groups = {{"backbone", net->child("0")->parameters(), 1e-4},
                                           {"head", net->child("2")->parameters(), inf}};
  CHECK_THROWS_AS(optim::AdamW(groups, 1e-3), Error);
  CHECK_THROWS_WITH(optim::AdamW(groups, 1e-3), Contains("AdamW") && Contains("group 'head'") &&
                                                    Contains("invalid learning rate inf"));

  // Set after construction: set_lr refuses it, a group edited by hand fails the next step.
  optim::SGD opt(net->parameters(), 0.1);
  CHECK_THROWS_WITH(opt.set_lr(nan), Contains("SGD: set_lr: invalid learning rate nan"));
  CHECK(opt.lr() == 0.1);
  cross_entropy(net->forward(randn({2, 4})), from_vector(std::vector<int64_t>{1, 2}, Shape{2})).backward();
  const Tensor w_before = net->child("0")->parameters()[0].clone();
  opt.param_groups()[0].lr = -0.5;
  CHECK_THROWS_AS(opt.step(), Error);
  CHECK_THROWS_WITH(opt.step(), Contains("SGD: step: group 0 has learning rate -0.5"));
  CHECK(graft_test::max_abs_diff(net->child("0")->parameters()[0], w_before) == 0.0);  // no update

  // A schedule whose factor is not finite, or that overflows the lr.
  struct NanSchedule : optim::Schedule {
    double factor(int64_t step) const override { return step >= 3 ? std::nan("") : 1.0; }
  };
  optim::Adam adam(net->parameters(), 1e-3);
  NanSchedule bad_schedule;
  CHECK_NOTHROW(bad_schedule.apply(adam, 2));
  CHECK_THROWS_AS(bad_schedule.apply(adam, 3), Error);
  CHECK_THROWS_WITH(bad_schedule.apply(adam, 3), Contains("Schedule: factor(3) is nan"));
  CHECK(adam.lr() == 1e-3);  // unchanged
  optim::StepLR explode(1, 1e300);
  CHECK_THROWS_WITH(explode.apply(adam, 2), Contains("factor(2) is inf"));
  optim::Adam big(net->parameters(), 1e300);
  optim::StepLR grow(1, 1e10);
  CHECK_THROWS_WITH(grow.apply(big, 1), Contains("Schedule: step 1: group 0") && Contains("learning rate inf"));
}

TEST_CASE("bad_input: a huge learning rate stops training at the step, naming the tensor", "[bad_input]") {
  // SGD lr 1e10 on a small MLP with cross_entropy: the first update blows the weights up and a later
  // loss is not finite. The guards stop there, naming the step and the parameter.
  auto train = [](double lr, int64_t& step) {
    auto net = bad_input_mlp(8, 32, 10);
    Generator g(7);
    {
      NoGradGuard ng;
      for (Tensor& p : net->parameters()) p.copy_(mul(randn(p.shape(), DType::Float32, g), 0.5));
    }
    const Tensor x = randn({16, 8}, DType::Float32, g);
    const Tensor y = randint(0, 10, {16}, DType::Int64, g);
    optim::SGD opt(net->parameters(), lr);
    for (step = 0; step < 50; ++step) {
      opt.zero_grad();
      const Tensor loss = cross_entropy(net->forward(x), y);
      train::check_finite_loss(loss, step, *net, "cross_entropy");
      loss.backward();
      train::check_finite_grads(*net, step);
      opt.step();
      train::check_finite_params(*net, step);
    }
  };
  int64_t step = -1;
  CHECK_NOTHROW(train(1e-2, step));  // a sane lr trains all 50 steps
  CHECK(step == 50);

  CHECK_THROWS_AS(train(1e10, step), Error);
  const std::string msg = bad_input_message([&] { train(1e10, step); });
  INFO(msg);
  CHECK(step >= 1);
  CHECK(step < 50);
  CHECK_THAT(msg, Contains("training stopped at step " + std::to_string(step) + ": "));
  CHECK_THAT(msg, Contains("'0.weight'") || Contains("'0.bias'") || Contains("'2.weight'") || Contains("'2.bias'"));
  CHECK_THAT(msg, Contains("cross_entropy is") || Contains("gradient of '") || Contains("parameter '"));

  // The loss guard with the model names the non-finite parameter, else the largest one.
  auto net = bad_input_mlp(4, 8, 10);
  const Tensor nan_loss = full({}, NAN);
  CHECK_THROWS_WITH(train::check_finite_loss(nan_loss, 17, *net, "cross_entropy"),
                    Contains("training stopped at step 17: cross_entropy is nan") &&
                        Contains("the largest parameter is '") && Contains("max |value|"));
  Tensor w2 = net->child("2")->parameters()[0];
  {
    NoGradGuard ng;
    w2.data<float>()[5] = INFINITY;
  }
  CHECK_THROWS_AS(train::check_finite_loss(nan_loss, 4, *net), Error);
  CHECK_THROWS_WITH(train::check_finite_loss(nan_loss, 4, *net),
                    Contains("step 4: loss is nan") && Contains("parameter '2.weight' (shape [10, 8]) holds inf") &&
                        Contains("element 5"));
  CHECK_THROWS_WITH(train::check_finite_params(*net, 9), Contains("step 9: parameter '2.weight'"));
  CHECK_NOTHROW(train::check_finite_loss(full({}, 1.5), 3, *net));
}
