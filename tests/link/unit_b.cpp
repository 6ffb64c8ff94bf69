// link_all_headers, unit B (see unit_a.cpp).
#include "all_public_headers.hpp"

#include <filesystem>
#include <string>
#include <unistd.h>

std::string write_one_image_folder() {
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("graft_link_all_headers." + std::to_string(::getpid()));
  fs::create_directories(root / "only_class");
  graft::manual_seed(0);
  graft::io::write_png((root / "only_class" / "a.png").string(), graft::rand({3, 5, 7}));
  return root.string();
}
