// tests/test_examples_plot.cpp - examples/plot.hpp, the line-plot writer: the PNG read back through
// graft's image reader has the requested size, series colours at the data points' screen positions
// (computed here from the frame, independently of the plot's own mapping), white background away from
// everything, grid and frame where the layout says, the legend swatches, and text whose pixels are
// exactly the font's bitmap; the font table itself; nice tick ranges; the atomic write; bad input.
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "../examples/plot.hpp"
#include "harness.hpp"

namespace {

namespace plot_test {

namespace fs = std::filesystem;
using examples::PlotLayout;
using examples::PlotOptions;
using examples::Rgb;
using examples::Series;

const Rgb kRed{214, 39, 40}, kGreen{44, 160, 44}, kBlue{31, 119, 180};

Rgb pixel(const graft::io::ImageU8& img, int x, int y) {
  return {img.at(y, x, 0), img.at(y, x, 1), img.at(y, x, 2)};
}

// A fresh, empty directory under the system temp dir.
fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Every pixel of `box` must be the text colour where `text`'s glyphs have a bit and background
// elsewhere; returns the number of text-coloured pixels (-1 on the first mismatch).
long check_text(const graft::io::ImageU8& img, const examples::PixelRect& box, const std::string& text, int scale) {
  namespace pf = examples::plot_font;
  long ink = 0;
  for (int y = box.y0; y < box.y1; ++y)
    for (int x = box.x0; x < box.x1; ++x) {
      const int gx = (x - box.x0) / scale, gy = (y - box.y0) / scale;
      const int ch = gx / pf::kAdvance, col = gx % pf::kAdvance;
      const bool bit = col < pf::kGlyphWidth && pf::glyph_bit(text[size_t(ch)], gy, col);
      const Rgb want = bit ? examples::kPlotText : examples::kPlotBackground;
      if (pixel(img, x, y) != want) return -1;
      ink += bit;
    }
  return ink;
}

long font_bits(const std::string& text) {
  long n = 0;
  for (char c : text)
    for (int r = 0; r < examples::plot_font::kGlyphHeight; ++r)
      for (int col = 0; col < examples::plot_font::kGlyphWidth; ++col) n += examples::plot_font::glyph_bit(c, r, col);
  return n;
}

}  // namespace plot_test

using namespace plot_test;

TEST_CASE("plot: the font has a distinct, in-range glyph for every printable character", "[plot]") {
  namespace pf = examples::plot_font;
  std::set<std::vector<uint8_t>> seen;
  for (int c = 32; c <= 126; ++c) {
    const uint8_t* g = pf::glyph(char(c));
    std::vector<uint8_t> rows(g, g + pf::kGlyphHeight);
    for (uint8_t r : rows) CHECK(r < (1u << pf::kGlyphWidth));
    CHECK((c == ' ') == (font_bits(std::string(1, char(c))) == 0));
    CHECK(seen.insert(rows).second);  // no two characters share a bitmap
  }
  CHECK(pf::glyph('\n') == pf::glyph('?'));
  // Spot checks against the bitmaps as drawn: 'L' is a left bar and a bottom bar, '1' has 10 bits.
  CHECK(font_bits("L") == 7 + 4);
  CHECK(font_bits("1") == 10);
  CHECK(pf::text_width("abc", 2) == (3 * 6 - 1) * 2);
}

TEST_CASE("plot: PNG read back shows the series, grid, legend and text where the layout puts them", "[plot]") {
  const fs::path dir = fresh_dir("graft_test_examples_plot");
  const std::string path = (dir / "plot.png").string();
  PlotOptions opt;
  opt.title = "Known series";
  opt.x_label = "labels per class";
  opt.y_label = "accuracy";
  opt.y_min = 0.0, opt.y_max = 1.0;
  // Green runs along the top and red just below (the top-left corner is taken, so the legend goes
  // bottom-right); blue is one point. Grid: every 0.2 on both axes.
  const std::vector<Series> series = {{"high", {0.0, 0.5, 1.0}, {0.9, 0.9, 0.85}, kGreen},
                                      {"middle", {0.0, 1.0}, {0.7, 0.75}, kRed},
                                      {"dot", {0.6}, {0.45}, kBlue}};
  examples::write_line_plot(path, series, opt);
  PlotLayout L;
  const graft::io::ImageU8 rendered = examples::render_line_plot(series, opt, &L);
  const graft::io::ImageU8 img = graft::io::read_image_u8(path, graft::io::ImageMode::RGB);

  REQUIRE(img.width == 640);
  REQUIRE(img.height == 420);
  CHECK(img.pixels == rendered.pixels);
  // Only the plot is left in the directory: the temporary file was renamed into place.
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);

  // The frame is where the layout says: its corners and sides are axis-coloured.
  REQUIRE(L.left > 0);
  REQUIRE(L.right < img.width - 1);
  REQUIRE(L.top > 0);
  REQUIRE(L.bottom < img.height - 1);
  const int mid_x = (L.left + L.right) / 2, mid_y = (L.top + L.bottom) / 2;
  CHECK(pixel(img, L.left, mid_y) == examples::kPlotAxis);
  CHECK(pixel(img, L.right, L.top + 3) == examples::kPlotAxis);
  CHECK(pixel(img, mid_x, L.bottom) == examples::kPlotAxis);
  CHECK(pixel(img, mid_x, L.top) == examples::kPlotAxis);
  CHECK(L.y_ticks.size() == 6);  // 0, 0.2, ..., 1

  // Screen position, computed here from the frame: x in [0, 1] spans the frame less the inset, y in
  // [0, 1] spans bottom..top.
  auto col = [&](double x) { return L.left + L.x_inset + int(std::lround(x * (L.right - L.left - 2 * L.x_inset))); };
  auto row = [&](double y) { return L.bottom - int(std::lround(y * (L.bottom - L.top))); };
  REQUIRE(L.legend.x1 > L.legend.x0);
  CHECK(L.legend.x0 > mid_x);  // bottom-right
  CHECK(L.legend.y0 > mid_y);
  for (const Series& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      INFO(s.name << " point " << i);
      CHECK(L.column(s.x[i]) == col(s.x[i]));
      CHECK(L.row(s.y[i]) == row(s.y[i]));
      REQUIRE(!L.legend.contains(col(s.x[i]), row(s.y[i])));
      CHECK(pixel(img, col(s.x[i]), row(s.y[i])) == s.color);
      CHECK(pixel(img, col(s.x[i]) + 2, row(s.y[i]) - 2) == s.color);  // the marker square
    }
  // Along the green line between its first two points (horizontal at 0.9).
  CHECK(pixel(img, col(0.25), row(0.9)) == kGreen);
  CHECK(pixel(img, col(0.25), row(0.9) + 1) == kGreen);  // 2 pixels thick

  // Far from all lines, text and the legend: white; on a grid line between series: grid grey.
  REQUIRE(!L.legend.contains(col(0.1), row(0.25)));
  CHECK(pixel(img, col(0.1), row(0.25)) == examples::kPlotBackground);
  CHECK(pixel(img, col(0.3), row(0.55)) == examples::kPlotBackground);
  CHECK(pixel(img, col(0.2), row(0.25)) == examples::kPlotGrid);
  CHECK(pixel(img, col(0.1), row(0.2)) == examples::kPlotGrid);
  CHECK(pixel(img, img.width - 2, img.height - 2) == examples::kPlotBackground);

  // The legend: each series' swatch colour inside it, covering at least a text-height square.
  const int th = examples::plot_font::text_height(L.text_scale);
  for (const Series& s : series) {
    long n = 0;
    for (int y = L.legend.y0; y < L.legend.y1; ++y)
      for (int x = L.legend.x0; x < L.legend.x1; ++x) n += pixel(img, x, y) == s.color;
    INFO(s.name);
    CHECK(n >= long(th) * th);
  }

  // Text: the pixels of the title and axis labels are exactly the font bitmaps, scaled.
  const int s = L.text_scale, ts = L.title_scale;
  CHECK(L.title.x1 - L.title.x0 == examples::plot_font::text_width(opt.title, ts));
  CHECK(check_text(img, L.title, opt.title, ts) == font_bits(opt.title) * ts * ts);
  CHECK(check_text(img, L.x_label, opt.x_label, s) == font_bits(opt.x_label) * s * s);
  CHECK(check_text(img, L.y_label, opt.y_label, s) == font_bits(opt.y_label) * s * s);
  CHECK(font_bits(opt.x_label) > 50);

  // Writing again replaces the file in place.
  examples::write_line_plot(path, {series[0]}, opt);
  CHECK(graft::io::read_image_u8(path).pixels == examples::render_line_plot({series[0]}, opt).pixels);
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);
  fs::remove_all(dir);
}

TEST_CASE("plot: automatic ranges round out to 1, 2, 5 x 10^k ticks; log x spaces decades evenly", "[plot]") {
  PlotOptions opt;
  PlotLayout L;
  examples::render_line_plot({{"acc", {10, 50, 100}, {0.45, 0.80, 0.96}, kRed}}, opt, &L);
  CHECK(L.y_lo == Approx(0.4));
  CHECK(L.y_hi == Approx(1.0));
  REQUIRE(L.y_ticks.size() == 7);
  for (size_t i = 0; i < 7; ++i) CHECK(L.y_ticks[i] == Approx(0.4 + 0.1 * double(i)));

  examples::render_line_plot({{"n", {0, 1}, {3, 47}, kRed}}, opt, &L);
  CHECK(L.y_lo == 0);
  CHECK(L.y_hi == 50);
  CHECK(L.y_ticks == std::vector<double>{0, 10, 20, 30, 40, 50});

  examples::render_line_plot({{"flat", {0, 1}, {2, 2}, kRed}}, opt, &L);  // one value: a range around it
  CHECK(L.y_lo < 2);
  CHECK(L.y_hi > 2);

  opt.log_x = true;
  opt.x_ticks = {10, 50, 100};
  examples::render_line_plot({{"acc", {10, 50, 100}, {0.45, 0.80, 0.96}, kRed}}, opt, &L);
  CHECK(L.x_ticks == opt.x_ticks);
  CHECK(L.column(10) == L.left + L.x_inset);
  CHECK(L.column(100) == L.right - L.x_inset);
  CHECK(std::abs(L.column(std::sqrt(1000.0)) - (L.left + L.right) / 2) <= 1);

  opt.x_ticks.clear();  // automatic log ticks: 1, 2, 5 x 10^k inside the data
  examples::render_line_plot({{"acc", {10, 50, 100}, {0.45, 0.80, 0.96}, kRed}}, opt, &L);
  CHECK(L.x_ticks == std::vector<double>{10, 20, 50, 100});
}

TEST_CASE("plot: bad input throws graft::Error naming the problem", "[plot]") {
  const PlotOptions opt;
  const Series good{"good", {1, 2}, {0.5, 0.6}, kRed};
  const std::string tmp = (fs::temp_directory_path() / "graft_test_examples_plot_bad.png").string();
  using Catch::Contains;
  CHECK_THROWS_AS(examples::write_line_plot(tmp, {}, opt), graft::Error);
  CHECK_THROWS_WITH(examples::write_line_plot(tmp, {}, opt), Contains("no series"));
  CHECK_THROWS_WITH(examples::render_line_plot({good, {"empty", {}, {}, kBlue}}, opt),
                    Contains("'empty'") && Contains("no points"));
  CHECK_THROWS_WITH(examples::render_line_plot({{"short", {1, 2, 3}, {0.1, 0.2}, kBlue}}, opt),
                    Contains("'short'") && Contains("3 x values but 2 y values"));
  CHECK_THROWS_WITH(examples::render_line_plot({{"nan", {1, 2}, {0.1, std::nan("")}, kBlue}}, opt),
                    Contains("'nan'") && Contains("point 1") && Contains("finite"));
  CHECK_THROWS_WITH(examples::render_line_plot({{"inf", {1, HUGE_VAL}, {0.1, 0.2}, kBlue}}, opt),
                    Contains("'inf'") && Contains("finite"));
  PlotOptions log_opt;
  log_opt.log_x = true;
  CHECK_THROWS_WITH(examples::render_line_plot({{"zero", {0, 1}, {0.1, 0.2}, kBlue}}, log_opt),
                    Contains("'zero'") && Contains("log x axis"));
  PlotOptions bad_range;
  bad_range.y_min = 1.0, bad_range.y_max = 0.5;
  CHECK_THROWS_WITH(examples::render_line_plot({good}, bad_range), Contains("y_min") && Contains("below y_max"));
  PlotOptions tiny;
  tiny.width = 20, tiny.height = 10;
  CHECK_THROWS_WITH(examples::render_line_plot({good}, tiny), Contains("image size 20 x 10"));
  const std::string missing = (fs::temp_directory_path() / "graft_no_such_dir_for_plot" / "p.png").string();
  fs::remove_all(fs::temp_directory_path() / "graft_no_such_dir_for_plot");
  CHECK_THROWS_WITH(examples::write_line_plot(missing, {good}, opt),
                    Contains("graft_no_such_dir_for_plot") && Contains("does not exist"));
  CHECK_THROWS_WITH(examples::write_line_plot(fs::temp_directory_path().string(), {good}, opt),
                    Contains("is a directory"));
  CHECK(!fs::exists(tmp));  // nothing was written for any of the bad calls
}

}  // namespace
