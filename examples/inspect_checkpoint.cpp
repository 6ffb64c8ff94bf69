// inspect_checkpoint: lists the tensors of a checkpoint (.safetensors, or a PyTorch .pth/.bin zip
// checkpoint) and, with --model, loads it into a Graft model and prints the load report.
//
//   ./inspect_checkpoint FILE [--model resnet18|resnet50|vit_tiny_patch16_224]
#include <cstdio>
#include <string>

#include "graft/io/safetensors.hpp"
#include "graft/io/torch_checkpoint.hpp"
#include "graft/models/resnet.hpp"
#include "graft/models/vit.hpp"

using namespace graft;

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::printf("usage: inspect_checkpoint FILE [--model resnet18|resnet50|vit_tiny_patch16_224]\n");
    return argc < 2 ? 2 : 0;
  }
  const std::string path = argv[1];
  const std::string model_name = argc >= 4 && std::string(argv[2]) == "--model" ? argv[3] : "";
  try {
    nn::StateDict sd;
    if (ends_with(path, ".safetensors")) {
      for (auto& [k, v] : io::load_safetensors(path)) sd.emplace_back(k, v);
    } else {
      sd = io::load_torch_checkpoint(path);
    }
    int64_t total = 0;
    for (const auto& [name, t] : sd) {
      std::printf("%-60s %-9s %s\n", name.c_str(), dtype_name(t.dtype()), t.shape().str().c_str());
      total += t.numel();
    }
    std::printf("%zu tensors, %lld elements\n", sd.size(), static_cast<long long>(total));
    if (model_name.empty()) return 0;
    std::shared_ptr<nn::Module> model;
    if (model_name == "resnet18") model = models::resnet18();
    else if (model_name == "resnet50") model = models::resnet50();
    else if (model_name == "vit_tiny_patch16_224") model = models::vit_tiny_patch16_224();
    else throw Error("inspect_checkpoint: unknown model '" + model_name + "'");
    const nn::LoadReport r = model->load_state_dict(sd, /*strict=*/false);
    std::printf("into %s: %zu missing, %zu unexpected, %zu mis-shaped\n", model_name.c_str(), r.missing.size(),
                r.unexpected.size(), r.mismatched.size());
    for (const auto& k : r.missing) std::printf("  missing    %s\n", k.c_str());
    for (const auto& k : r.unexpected) std::printf("  unexpected %s\n", k.c_str());
    for (const auto& m : r.mismatched)
      std::printf("  mis-shaped %s: model %s, checkpoint %s\n", m.name.c_str(), m.expected.str().c_str(),
                  m.actual.str().c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "inspect_checkpoint: %s\n", e.what());
    return 1;
  }
  return 0;
}
