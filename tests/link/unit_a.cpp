// link_all_headers, unit A: includes every public header (generated all_public_headers.hpp), as
// does unit_b.cpp; the two link into one program, so a header that defines a function or variable
// without `inline` fails the link. At run time the two units share graft's inline functions: unit B
// writes a PNG (graft::io), unit A reads it back through data::ImageFolder, whose get() calls the
// image decoder from another unit's copy of the inline code.
#include "all_public_headers.hpp"

#include <cstdio>
#include <filesystem>
#include <string>

std::string write_one_image_folder();  // unit_b.cpp: a folder root/<class>/<one png>; returns root

int main() {
  namespace fs = std::filesystem;
  const std::string root = write_one_image_folder();
  const graft::data::ImageFolder folder(root);
  const graft::data::Example example = folder.get(0);
  fs::remove_all(root);
  const bool ok = folder.size() == 1 && example.input.shape() == graft::Shape{3, 5, 7};
  std::printf("link_all_headers: %d public headers in two units, linked; image round trip %s\n",
              GRAFT_LINK_HEADER_COUNT, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
