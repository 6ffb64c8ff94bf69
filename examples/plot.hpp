// examples/plot.hpp - a small line-plot writer for the examples (PNG, no dependency beyond graft's
// own stb-based PNG encoder): white background, framed axes with tick marks, numeric tick labels and
// light grey grid lines, each series as a 2-pixel polyline with a filled square marker per point, a
// legend box, a title and axis labels. Text is drawn with the embedded 5x7 bitmap font below.
//
//   examples::PlotOptions opt;
//   opt.title = "Held-out accuracy"; opt.x_label = "labels per class"; opt.y_label = "accuracy";
//   opt.log_x = true; opt.x_ticks = {10, 50, 100};
//   examples::write_line_plot("accuracy.png", {{"scratch", {10, 50, 100}, {0.45, 0.80, 0.88}, {214, 39, 40}},
//                                              {"fine-tune", {10, 50, 100}, {0.80, 0.93, 0.96}, {31, 119, 180}}},
//                             opt);
//
// Ranges: x spans the data (and x_ticks), with a small inset so end markers clear the frame; y spans
// y_min..y_max, or, for a bound not given, the data rounded out to the tick step (1, 2 or 5 x 10^k,
// at most six intervals). Ticks: x_ticks when given, else 1, 2, 5 x 10^k steps (log_x: the 1, 2, 5 x
// 10^k values, or the decades alone when those are too many). The y-axis label is written
// horizontally above the plot's top-left corner. The legend goes inside the plot area at the corner
// (top-left, bottom-right, top-right, bottom-left, in that order of preference) that covers the
// fewest pixels of the series. Points outside a given y range are clipped at the frame.
//
// Errors (graft::Error, "line_plot: ..."): no series, a series without points, x and y lengths that
// differ, a non-finite value, x <= 0 with log_x, y_min >= y_max, an image too small for its labels,
// a path whose directory does not exist. The file is written to a temporary name next to the target
// and renamed over it, so a reader never sees half a PNG.
//
// Text is drawn at 2x on images from 480 x 320 up, 1x below; the title one size larger when it fits.
//
// render_line_plot() returns the pixels (and, optionally, where things were drawn: PlotLayout) without
// touching the disk; write_line_plot() renders and writes.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <graft/io/image.hpp>

namespace examples {

using Rgb = std::array<uint8_t, 3>;

struct Series {
  std::string name;
  std::vector<double> x, y;
  Rgb color{0, 0, 0};
};

struct PlotOptions {
  std::string title, x_label, y_label;
  int width = 640, height = 420;
  bool log_x = false;
  std::optional<double> y_min, y_max;
  std::vector<double> x_ticks;  // empty: chosen automatically
};

// ---- The bitmap font ------------------------------------------------------------------------------
// Printable ASCII 32..126, 5 columns x 7 rows per glyph; row r of a glyph is kRows[r], bit 4 the
// leftmost column. A glyph cell is 6 x 7 pixels (one blank column after each glyph), times the scale.
// Lowercase letters with descenders (g j p q y) sit raised, as on 5x7 character LCDs.
namespace plot_font {

inline constexpr int kGlyphWidth = 5, kGlyphHeight = 7, kAdvance = 6;

inline constexpr uint8_t kGlyphs[95][kGlyphHeight] = {
    {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000},  // ' '
    {0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000, 0b00100},  // '!'
    {0b01010, 0b01010, 0b01010, 0b00000, 0b00000, 0b00000, 0b00000},  // '"'
    {0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010},  // '#'
    {0b00100, 0b01111, 0b10100, 0b01110, 0b00101, 0b11110, 0b00100},  // '$'
    {0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011},  // '%'
    {0b01100, 0b10010, 0b10100, 0b01000, 0b10101, 0b10010, 0b01101},  // '&'
    {0b00100, 0b00100, 0b01000, 0b00000, 0b00000, 0b00000, 0b00000},  // '\''
    {0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010},  // '('
    {0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000},  // ')'
    {0b00000, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0b00000},  // '*'
    {0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000},  // '+'
    {0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000},  // ','
    {0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000},  // '-'
    {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100},  // '.'
    {0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000},  // '/'
    {0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110},  // '0'
    {0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110},  // '1'
    {0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111},  // '2'
    {0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110},  // '3'
    {0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010},  // '4'
    {0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110},  // '5'
    {0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110},  // '6'
    {0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000},  // '7'
    {0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110},  // '8'
    {0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100},  // '9'
    {0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000},  // ':'
    {0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b00100, 0b01000},  // ';'
    {0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010},  // '<'
    {0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000},  // '='
    {0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000},  // '>'
    {0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100},  // '?'
    {0b01110, 0b10001, 0b00001, 0b01101, 0b10101, 0b10101, 0b01110},  // '@'
    {0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001},  // 'A'
    {0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110},  // 'B'
    {0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110},  // 'C'
    {0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100},  // 'D'
    {0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111},  // 'E'
    {0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000},  // 'F'
    {0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111},  // 'G'
    {0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001},  // 'H'
    {0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110},  // 'I'
    {0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100},  // 'J'
    {0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001},  // 'K'
    {0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111},  // 'L'
    {0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001},  // 'M'
    {0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001},  // 'N'
    {0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110},  // 'O'
    {0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000},  // 'P'
    {0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101},  // 'Q'
    {0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001},  // 'R'
    {0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110},  // 'S'
    {0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100},  // 'T'
    {0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110},  // 'U'
    {0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100},  // 'V'
    {0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010},  // 'W'
    {0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001},  // 'X'
    {0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100},  // 'Y'
    {0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111},  // 'Z'
    {0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110},  // '['
    {0b00000, 0b10000, 0b01000, 0b00100, 0b00010, 0b00001, 0b00000},  // '\\'
    {0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110},  // ']'
    {0b00100, 0b01010, 0b10001, 0b00000, 0b00000, 0b00000, 0b00000},  // '^'
    {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111},  // '_'
    {0b01000, 0b00100, 0b00010, 0b00000, 0b00000, 0b00000, 0b00000},  // '`'
    {0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111},  // 'a'
    {0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110},  // 'b'
    {0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110},  // 'c'
    {0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111},  // 'd'
    {0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110},  // 'e'
    {0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000},  // 'f'
    {0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110},  // 'g'
    {0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001},  // 'h'
    {0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110},  // 'i'
    {0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b10010, 0b01100},  // 'j'
    {0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010},  // 'k'
    {0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110},  // 'l'
    {0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001},  // 'm'
    {0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001},  // 'n'
    {0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110},  // 'o'
    {0b00000, 0b00000, 0b11110, 0b10001, 0b11110, 0b10000, 0b10000},  // 'p'
    {0b00000, 0b00000, 0b01101, 0b10011, 0b01111, 0b00001, 0b00001},  // 'q'
    {0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000},  // 'r'
    {0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110},  // 's'
    {0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110},  // 't'
    {0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101},  // 'u'
    {0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100},  // 'v'
    {0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010},  // 'w'
    {0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001},  // 'x'
    {0b00000, 0b00000, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110},  // 'y'
    {0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111},  // 'z'
    {0b00010, 0b00100, 0b00100, 0b01000, 0b00100, 0b00100, 0b00010},  // '{'
    {0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100},  // '|'
    {0b01000, 0b00100, 0b00100, 0b00010, 0b00100, 0b00100, 0b01000},  // '}'
    {0b00000, 0b00000, 0b01000, 0b10101, 0b00010, 0b00000, 0b00000},  // '~'
};

// The rows of c's glyph; characters outside 32..126 are drawn as '?'.
inline constexpr const uint8_t* glyph(char c) {
  const int code = static_cast<unsigned char>(c);
  return kGlyphs[(code >= 32 && code <= 126) ? code - 32 : '?' - 32];
}
inline constexpr bool glyph_bit(char c, int row, int col) { return (glyph(c)[row] >> (kGlyphWidth - 1 - col)) & 1; }
// Width in pixels of text drawn at `scale` (no trailing blank column), and its height.
inline int text_width(const std::string& text, int scale) {
  return text.empty() ? 0 : (int(text.size()) * kAdvance - 1) * scale;
}
inline int text_height(int scale) { return kGlyphHeight * scale; }

}  // namespace plot_font

// ---- Colours and where things were drawn --------------------------------------------------------------
inline constexpr Rgb kPlotBackground{255, 255, 255};
inline constexpr Rgb kPlotGrid{225, 225, 225};
inline constexpr Rgb kPlotAxis{0, 0, 0};
inline constexpr Rgb kPlotText{0, 0, 0};
inline constexpr Rgb kPlotLegendBorder{150, 150, 150};

// Half-open pixel rectangle [x0, x1) x [y0, y1).
struct PixelRect {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  bool contains(int x, int y) const { return x >= x0 && x < x1 && y >= y0 && y < y1; }
};

struct PlotLayout {
  // The frame: pixel columns `left`, `right` and rows `top`, `bottom` carry its lines; the bottom
  // row is the x axis, the left column the y axis.
  int left = 0, top = 0, right = 0, bottom = 0;
  int x_inset = 0;  // data x_lo..x_hi map to columns left + x_inset .. right - x_inset
  double x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;  // data ranges (x_lo/x_hi before log10 when log_x)
  bool log_x = false;
  std::vector<double> x_ticks, y_ticks;
  int text_scale = 1, title_scale = 1;
  PixelRect title, x_label, y_label, legend;  // empty rectangles for absent text / legend

  // Pixel column and row of a data point (rounded to the nearest pixel).
  int column(double x) const {
    const double t = log_x ? (std::log10(x) - std::log10(x_lo)) / (std::log10(x_hi) - std::log10(x_lo))
                           : (x - x_lo) / (x_hi - x_lo);
    return left + x_inset + int(std::lround(t * double(right - left - 2 * x_inset)));
  }
  int row(double y) const { return bottom - int(std::lround((y - y_lo) / (y_hi - y_lo) * double(bottom - top))); }
};

namespace detail_plot {

// 1, 2 or 5 x 10^k: the smallest such step that splits `span` into at most `intervals` pieces.
inline double nice_step(double span, int intervals) {
  const double raw = span / intervals;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f <= 1.0 + 1e-9 ? 1.0 : f <= 2.0 + 1e-9 ? 2.0 : f <= 5.0 + 1e-9 ? 5.0 : 10.0) * mag;
}

// k * step for every integer k with lo <= k * step <= hi (a little slack for rounding).
inline std::vector<double> multiples_in(double lo, double hi, double step) {
  std::vector<double> out;
  const double eps = step * 1e-9;
  for (double k = std::ceil((lo - eps) / step); k * step <= hi + eps; k += 1.0) out.push_back(k * step);
  return out;
}

// A tick label: fixed decimals as the step needs them (0.1 -> one decimal), %g for huge values.
inline std::string tick_label(double v, double step) {
  char buf[48];
  if (std::fabs(v) < step * 1e-6) v = 0.0;  // no "-0.0"
  if (step > 0 && std::fabs(v) < 1e6 && step >= 1e-6) {
    const int decimals = std::max(0, int(-std::floor(std::log10(step) + 1e-9)));
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  } else {
    std::snprintf(buf, sizeof buf, "%g", v);
  }
  return buf;
}

// A label for a user-given tick: %g keeps 10, 50, 100 and 0.25 as written.
inline std::string user_tick_label(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

struct Canvas {
  graft::io::ImageU8 img;

  Canvas(int w, int h) {
    img.width = w, img.height = h, img.channels = 3;
    img.pixels.assign(size_t(w) * size_t(h) * 3, 255);
  }
  void set(int x, int y, const Rgb& c) {
    if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
    uint8_t* p = &img.pixels[(size_t(y) * size_t(img.width) + size_t(x)) * 3];
    p[0] = c[0], p[1] = c[1], p[2] = c[2];
  }
  Rgb get(int x, int y) const {
    const uint8_t* p = &img.pixels[(size_t(y) * size_t(img.width) + size_t(x)) * 3];
    return {p[0], p[1], p[2]};
  }
  // Fills [x0, x1) x [y0, y1), clipped to `clip`.
  void fill(int x0, int y0, int x1, int y1, const Rgb& c, const PixelRect& clip) {
    for (int y = std::max(y0, clip.y0); y < std::min(y1, clip.y1); ++y)
      for (int x = std::max(x0, clip.x0); x < std::min(x1, clip.x1); ++x) set(x, y, c);
  }
  void fill(const PixelRect& r, const Rgb& c) { fill(r.x0, r.y0, r.x1, r.y1, c, r); }
  void outline(const PixelRect& r, const Rgb& c) {
    for (int x = r.x0; x < r.x1; ++x) set(x, r.y0, c), set(x, r.y1 - 1, c);
    for (int y = r.y0; y < r.y1; ++y) set(r.x0, y, c), set(r.x1 - 1, y, c);
  }
  // A 2-pixel line from (x0, y0) to (x1, y1): Bresenham, each step stamping a 2 x 2 block whose
  // top-left pixel is on the line, clipped to `clip`. No anti-aliasing.
  void line2(int x0, int y0, int x1, int y1, const Rgb& c, const PixelRect& clip) {
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
    const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
      fill(x0, y0, x0 + 2, y0 + 2, c, clip);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  }
  // Text with its top-left corner at (x, y); each font pixel becomes a scale x scale block.
  void text(int x, int y, const std::string& s, int scale, const Rgb& c) {
    for (size_t i = 0; i < s.size(); ++i)
      for (int r = 0; r < plot_font::kGlyphHeight; ++r)
        for (int col = 0; col < plot_font::kGlyphWidth; ++col)
          if (plot_font::glyph_bit(s[i], r, col)) {
            const int px = x + (int(i) * plot_font::kAdvance + col) * scale, py = y + r * scale;
            for (int by = 0; by < scale; ++by)
              for (int bx = 0; bx < scale; ++bx) set(px + bx, py + by, c);
          }
  }
};

inline void check_series(const std::vector<Series>& series, const PlotOptions& opt) {
  GRAFT_CHECK(!series.empty(), "line_plot", "no series to draw");
  for (const Series& s : series) {
    GRAFT_CHECK(!s.x.empty(), "line_plot", "series '", s.name, "' has no points");
    GRAFT_CHECK(s.x.size() == s.y.size(), "line_plot", "series '", s.name, "' has ", s.x.size(),
                " x values but ", s.y.size(), " y values");
    for (size_t i = 0; i < s.x.size(); ++i) {
      GRAFT_CHECK(std::isfinite(s.x[i]) && std::isfinite(s.y[i]), "line_plot", "series '", s.name, "' point ", i,
                  " is (", s.x[i], ", ", s.y[i], "); values must be finite");
      GRAFT_CHECK(!opt.log_x || s.x[i] > 0, "line_plot", "series '", s.name, "' point ", i, " has x = ", s.x[i],
                  ", which a log x axis cannot show (x must be > 0)");
    }
  }
  GRAFT_CHECK(opt.width >= 160 && opt.height >= 120 && opt.width <= 8192 && opt.height <= 8192, "line_plot",
              "image size ", opt.width, " x ", opt.height, " is outside 160 x 120 .. 8192 x 8192");
  for (const std::optional<double>& b : {opt.y_min, opt.y_max})
    GRAFT_CHECK(!b || std::isfinite(*b), "line_plot", "y_min and y_max must be finite, got ", *b);
  GRAFT_CHECK(!(opt.y_min && opt.y_max) || *opt.y_min < *opt.y_max, "line_plot", "y_min (", opt.y_min.value_or(0),
              ") must be below y_max (", opt.y_max.value_or(0), ")");
  for (double t : opt.x_ticks)
    GRAFT_CHECK(std::isfinite(t) && (!opt.log_x || t > 0), "line_plot", "x tick ", t,
                opt.log_x ? " must be finite and > 0 on a log x axis" : " must be finite");
}

}  // namespace detail_plot

// The plot as RGB pixels; `layout`, when given, receives where the frame, ticks, text and legend went.
inline graft::io::ImageU8 render_line_plot(const std::vector<Series>& series, const PlotOptions& opt,
                                           PlotLayout* layout = nullptr) {
  using namespace detail_plot;
  check_series(series, opt);
  PlotLayout L;
  L.log_x = opt.log_x;
  L.text_scale = (opt.width >= 480 && opt.height >= 320) ? 2 : 1;
  const int s = L.text_scale, th = plot_font::text_height(s);
  const int outer = 5 * s, tick_len = 5, gap = 3 * s;
  // The title one size up when it fits across the image.
  L.title_scale = plot_font::text_width(opt.title, s + 1) <= opt.width - 2 * outer ? s + 1 : s;

  // ---- Data ranges and ticks.
  double x_lo = series[0].x[0], x_hi = x_lo, y_lo = series[0].y[0], y_hi = y_lo;
  for (const Series& sr : series)
    for (size_t i = 0; i < sr.x.size(); ++i) {
      x_lo = std::min(x_lo, sr.x[i]), x_hi = std::max(x_hi, sr.x[i]);
      y_lo = std::min(y_lo, sr.y[i]), y_hi = std::max(y_hi, sr.y[i]);
    }
  for (double t : opt.x_ticks) x_lo = std::min(x_lo, t), x_hi = std::max(x_hi, t);
  if (opt.y_min) y_lo = std::min(y_lo, *opt.y_min);
  if (opt.y_max) y_hi = std::max(y_hi, *opt.y_max);
  if (y_hi == y_lo) {  // one value: open a range around it
    const double pad = y_lo == 0 ? 1.0 : std::fabs(y_lo) * 0.1;
    y_lo -= pad, y_hi += pad;
  }
  const double y_step =
      nice_step((opt.y_max ? *opt.y_max : y_hi) - (opt.y_min ? *opt.y_min : y_lo), 6);
  L.y_lo = opt.y_min ? *opt.y_min : std::floor(y_lo / y_step + 1e-9) * y_step;
  L.y_hi = opt.y_max ? *opt.y_max : std::ceil(y_hi / y_step - 1e-9) * y_step;
  L.y_ticks = multiples_in(L.y_lo, L.y_hi, y_step);

  double x_step = 0;
  if (x_hi == x_lo) {  // one x value: a symmetric range around it
    if (opt.log_x) x_lo /= 2, x_hi *= 2;
    else x_lo -= x_lo == 0 ? 1.0 : std::fabs(x_lo) * 0.1, x_hi += x_hi == 0 ? 1.0 : std::fabs(x_hi) * 0.1;
  }
  if (!opt.x_ticks.empty()) {
    L.x_ticks = opt.x_ticks;
  } else if (opt.log_x) {
    for (int k = int(std::floor(std::log10(x_lo))); k <= int(std::ceil(std::log10(x_hi))); ++k)
      for (double m : {1.0, 2.0, 5.0}) {
        const double v = m * std::pow(10.0, k);
        if (v >= x_lo * (1 - 1e-9) && v <= x_hi * (1 + 1e-9)) L.x_ticks.push_back(v);
      }
    if (L.x_ticks.size() > 8) {
      std::vector<double> decades;
      for (double v : L.x_ticks)
        if (std::fabs(std::log10(v) - std::round(std::log10(v))) < 1e-9) decades.push_back(v);
      L.x_ticks = decades;
    }
  } else {
    x_step = nice_step(x_hi - x_lo, 6);
    L.x_ticks = multiples_in(x_lo, x_hi, x_step);
  }
  L.x_lo = x_lo, L.x_hi = x_hi;
  std::vector<std::string> x_labels, y_labels;
  for (double t : L.x_ticks)
    x_labels.push_back(!opt.x_ticks.empty() || opt.log_x ? user_tick_label(t) : tick_label(t, x_step));
  for (double t : L.y_ticks) y_labels.push_back(tick_label(t, y_step));

  // ---- Layout, outside in.
  int y_label_w = 0, x_label_w_last = 0;
  for (const std::string& l : y_labels) y_label_w = std::max(y_label_w, plot_font::text_width(l, s));
  if (!x_labels.empty()) x_label_w_last = plot_font::text_width(x_labels.back(), s);
  int top = outer;
  if (!opt.title.empty()) {
    L.title = {0, top, plot_font::text_width(opt.title, L.title_scale), top + plot_font::text_height(L.title_scale)};
    top = L.title.y1 + 2 * gap;
  }
  if (!opt.y_label.empty()) {
    L.y_label = {outer, top, outer + plot_font::text_width(opt.y_label, s), top + th};
    top = L.y_label.y1 + 2 * gap + th / 2;  // clear of the top tick label, centred on the frame
  } else {
    top = std::max(top, outer + th / 2 + 1);  // room for half the top tick label
  }
  L.top = top;
  L.left = outer + y_label_w + gap + tick_len;
  L.bottom = opt.height - 1 - outer - (opt.x_label.empty() ? 0 : th + 2 * gap) - th - gap - tick_len;
  L.x_inset = 4 * s + 4;
  L.right = opt.width - 1 - outer - std::max(0, x_label_w_last / 2 - L.x_inset) - 4 * s;
  GRAFT_CHECK(L.right - L.left >= 40 && L.bottom - L.top >= 40, "line_plot", "a ", opt.width, " x ", opt.height,
              " image leaves no room for the plot area after its labels; make it larger");
  if (!opt.title.empty()) {  // centred over the plot area, kept inside the image
    const int w = L.title.x1;
    const int x0 = std::clamp((L.left + L.right - w) / 2, 0, std::max(0, opt.width - w));
    L.title.x0 = x0, L.title.x1 = x0 + w;
  }
  if (!opt.x_label.empty()) {
    const int w = plot_font::text_width(opt.x_label, s);
    const int x0 = std::clamp((L.left + L.right - w) / 2, 0, std::max(0, opt.width - w));
    const int y0 = L.bottom + tick_len + gap + th + 2 * gap;
    L.x_label = {x0, y0, x0 + w, y0 + th};
  }

  // ---- Grid, frame, ticks and tick labels.
  Canvas cv(opt.width, opt.height);
  const PixelRect inside{L.left + 1, L.top + 1, L.right, L.bottom};  // within the frame lines
  const PixelRect frame_box{L.left, L.top, L.right + 1, L.bottom + 1};
  for (size_t i = 0; i < L.x_ticks.size(); ++i) {
    const int cx = L.column(L.x_ticks[i]);
    cv.fill(cx, inside.y0, cx + 1, inside.y1, kPlotGrid, inside);
    cv.fill(cx, L.bottom + 1, cx + 1, L.bottom + 1 + tick_len, kPlotAxis, {0, 0, opt.width, opt.height});
    const int w = plot_font::text_width(x_labels[i], s);
    cv.text(cx - w / 2, L.bottom + tick_len + gap, x_labels[i], s, kPlotText);
  }
  for (size_t i = 0; i < L.y_ticks.size(); ++i) {
    const int cy = L.row(L.y_ticks[i]);
    cv.fill(inside.x0, cy, inside.x1, cy + 1, kPlotGrid, inside);
    cv.fill(L.left - tick_len, cy, L.left, cy + 1, kPlotAxis, {0, 0, opt.width, opt.height});
    const int w = plot_font::text_width(y_labels[i], s);
    cv.text(L.left - tick_len - gap - w, cy - th / 2, y_labels[i], s, kPlotText);
  }
  cv.outline(frame_box, kPlotAxis);

  // ---- Series: every polyline, then every marker on top.
  const int marker = 2 * s + 1;  // half-size: squares of (2 * marker + 1) pixels a side
  for (const Series& sr : series)
    for (size_t i = 1; i < sr.x.size(); ++i)
      cv.line2(L.column(sr.x[i - 1]), L.row(sr.y[i - 1]), L.column(sr.x[i]), L.row(sr.y[i]), sr.color, frame_box);
  for (const Series& sr : series)
    for (size_t i = 0; i < sr.x.size(); ++i) {
      const int cx = L.column(sr.x[i]), cy = L.row(sr.y[i]);
      cv.fill(cx - marker, cy - marker, cx + marker + 1, cy + marker + 1, sr.color, frame_box);
    }

  // ---- Legend: the corner whose box covers the fewest series pixels.
  int name_w = 0;
  for (const Series& sr : series) name_w = std::max(name_w, plot_font::text_width(sr.name, s));
  const int swatch_w = 8 * s + 4, row_h = th + 2 * gap, pad = 2 * gap;
  const int lw = pad + swatch_w + gap + name_w + pad, lh = pad + int(series.size()) * row_h - 2 * gap + pad;
  const int margin = 3 * gap;
  if (lw + 2 * margin <= inside.x1 - inside.x0 && lh + 2 * margin <= inside.y1 - inside.y0) {
    const int xl = inside.x0 + margin, xr = inside.x1 - margin - lw;
    const int yt = inside.y0 + margin, yb = inside.y1 - margin - lh;
    const PixelRect corners[4] = {{xl, yt, xl + lw, yt + lh},
                                  {xr, yb, xr + lw, yb + lh},
                                  {xr, yt, xr + lw, yt + lh},
                                  {xl, yb, xl + lw, yb + lh}};
    auto ink = [&](const PixelRect& r) {
      int n = 0;
      for (int y = r.y0 - gap; y < r.y1 + gap; ++y)
        for (int x = r.x0 - gap; x < r.x1 + gap; ++x) {
          const Rgb c = cv.get(x, y);
          for (const Series& sr : series) n += c == sr.color;
        }
      return n;
    };
    int best = 0, best_ink = ink(corners[0]);
    for (int k = 1; k < 4 && best_ink > 0; ++k)
      if (const int n = ink(corners[k]); n < best_ink) best = k, best_ink = n;
    L.legend = corners[best];
    cv.fill(L.legend, kPlotBackground);
    cv.outline(L.legend, kPlotLegendBorder);
    for (size_t i = 0; i < series.size(); ++i) {
      const int y0 = L.legend.y0 + pad + int(i) * row_h, x0 = L.legend.x0 + pad;
      cv.fill({x0, y0, x0 + swatch_w, y0 + th}, series[i].color);
      cv.text(x0 + swatch_w + gap, y0, series[i].name, s, kPlotText);
    }
  }

  // ---- Title and axis labels.
  if (!opt.title.empty()) cv.text(L.title.x0, L.title.y0, opt.title, L.title_scale, kPlotText);
  if (!opt.x_label.empty()) cv.text(L.x_label.x0, L.x_label.y0, opt.x_label, s, kPlotText);
  if (!opt.y_label.empty()) cv.text(L.y_label.x0, L.y_label.y0, opt.y_label, s, kPlotText);
  if (layout) *layout = L;
  return std::move(cv.img);
}

// Writing calls graft::io::encode_png, which is TU-local (graft/io/image.hpp, "Why stb is static"),
// so this function is TU-local too: an inline function with external linkage may not call it.
namespace {

inline void write_line_plot(const std::string& path, const std::vector<Series>& series, const PlotOptions& opt) {
  namespace fs = std::filesystem;
  GRAFT_CHECK(!path.empty(), "line_plot", "empty output path");
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  GRAFT_CHECK(fs::is_directory(dir, ec), "line_plot", path, ": directory '", dir.string(), "' does not exist");
  GRAFT_CHECK(!fs::is_directory(target, ec), "line_plot", path, ": is a directory");
  const std::vector<uint8_t> bytes = graft::io::encode_png(render_line_plot(series, opt));

  // Write a temporary file beside the target, then rename it over the target (atomic on POSIX).
  const fs::path tmp = fs::path(path + ".tmp." + std::to_string(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    GRAFT_CHECK(out.good(), "line_plot", tmp.string(), ": cannot open for writing (", std::strerror(errno), ")");
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    out.close();
    if (!out.good()) {
      fs::remove(tmp, ec);
      GRAFT_CHECK(false, "line_plot", tmp.string(), ": write failed");
    }
  }
  fs::rename(tmp, target, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    GRAFT_CHECK(false, "line_plot", path, ": cannot rename the temporary file into place (", ec.message(), ")");
  }
}

}  // namespace

}  // namespace examples
