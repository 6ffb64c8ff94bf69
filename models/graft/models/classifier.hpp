// graft/models/classifier.hpp - the interface every image classifier of the model zoo shares, so
// transfer code (feature extraction, fine-tuning, the registry in models/registry.hpp) never needs
// to know a model's class:
//
//   std::shared_ptr<models::ImageClassifier> net = models::create_classifier("resnet50", {.num_classes = 10});
//   Tensor f = net->forward_features(x);          // pooled backbone features [B, num_features()]
//   Tensor logits = net->forward_head(f);         // [B, num_classes]; forward(x) = forward_head(forward_features(x))
//   Tensor z = net->forward_head(f, /*pre_logits=*/true);  // the final Linear's input [B, head_hidden_size()]
//   net->reset_classifier(5);                     // a fresh final Linear (torch's default init); 0 = Identity
//   auto maps = net->forward_intermediates(x, {"layer2", "layer4"});   // feature_names() lists the stages
//
// As timm's forward_head(x, pre_logits): the head is whatever runs after the pooled features. For
// most models it is dropout + one Linear, so pre_logits returns the features again (after dropout in
// training mode); MobileNetV3's torchvision head is Linear-Hardswish-Dropout-Linear and pre_logits
// returns the second Linear's input (head_hidden_size() = 1024 or 1280, not num_features()).
// classifier_name() is the module that reset_classifier replaces ("fc", "head", "_fc",
// "classifier.3"); its parameters are the "new head" of the transfer recipes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "graft/models/common.hpp"
#include "graft/models/features.hpp"
#include "graft/nn.hpp"

namespace graft::models {

class ImageClassifier : public nn::Module {
 public:
  using nn::Module::Module;

  // x [B, in_chans(), H, W] -> pooled features [B, num_features()].
  virtual Tensor forward_features(const Tensor& x) = 0;
  // features [B, num_features()] -> logits [B, num_classes] (pre_logits: the final Linear's input).
  virtual Tensor forward_head(const Tensor& features, bool pre_logits = false) = 0;
  Tensor forward(const Tensor& x) override { return forward_head(forward_features(x)); }

  // Replaces the final Linear with Linear(head_hidden_size(), num_classes), torch's default init;
  // 0 = Identity (forward then returns the pre-logits).
  virtual void reset_classifier(int64_t num_classes) = 0;
  // The dotted name of the module reset_classifier replaces.
  std::string classifier_name() const override = 0;
  nn::Module& classifier() { return *find_module(classifier_name()); }

  virtual int64_t num_features() const = 0;
  virtual int64_t head_hidden_size() const { return num_features(); }
  virtual int64_t in_chans() const = 0;

  // Named stages, in order (models/features.hpp); forward_intermediates runs only as far as needed.
  virtual std::vector<std::string> feature_names() = 0;
  virtual NamedFeatures forward_intermediates(const Tensor& x, const std::vector<std::string>& names) = 0;

 protected:
  // A new head in the model's dtype, device and train / eval mode, so reset_classifier on a model moved
  // to float64, to a GPU or into eval mode (then fuse_for_inference) keeps working.
  nn::ModulePtr fit_to_model(nn::ModulePtr head) {
    for (const Tensor& p : parameters())
      if (is_floating(p.dtype())) {
        head->to(p.dtype());
        head->to(p.device());
        break;
      }
    head->train(is_training());
    return head;
  }
  // The module at a dotted path ("classifier.3"), or an error naming the path.
  nn::Module* find_module(const std::string& path) {
    for (auto& [name, mod] : named_modules())
      if (name == path) return mod;
    throw Error(detail::concat(type_name(), ": no module named '", path, "'"));
  }
};

}  // namespace graft::models
