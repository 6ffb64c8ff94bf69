// examples/cli.hpp - what every example shares: declared command-line options with --help, a
// progress bar with ETA and live metrics, and a plain-text results table.
//
//   examples::Cli cli("fine_tune", "Fine-tunes a pretrained ResNet on ...");
//   const int epochs = cli.option("epochs", 5, "training epochs");
//   const std::string data = cli.option("data", std::string(""), "folder with the converted data sets");
//   cli.parse(argc, argv);        // --help prints the options with their defaults and exits 0
//
//   examples::Progress bar("epoch 1", steps);
//   for (...) { ...; bar.update(step + 1, {{"loss", loss}, {"acc", acc}}); }
//   bar.finish();
//
// The progress bar redraws one line of stderr (a carriage return) at most 10 times a second, and
// prints plain lines when stderr is not a terminal, so logs stay readable.
#pragma once
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace examples {

class Cli {
 public:
  Cli(std::string program, std::string about) : program_(std::move(program)), about_(std::move(about)) {}

  // Declares --name with a default; returns a reference filled in by parse().
  template <class T>
  const T& option(const std::string& name, T def, const std::string& help) {
    auto value = std::make_shared<T>(std::move(def));
    Opt o{name, help, describe(*value), [value, name, this](const std::string& s) { *value = convert<T>(name, s); }};
    opts_.push_back(std::move(o));
    holders_.push_back(value);
    return *value;
  }

  void parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        usage(stdout);
        std::exit(0);
      }
      if (arg.rfind("--", 0) != 0) fail("unexpected argument '" + arg + "'");
      std::string key = arg.substr(2), val;
      const size_t eq = key.find('=');
      const bool inline_value = eq != std::string::npos;
      if (inline_value) val = key.substr(eq + 1), key = key.substr(0, eq);
      Opt* opt = nullptr;
      for (auto& o : opts_)
        if (o.name == key) opt = &o;
      if (!opt) fail("unknown option --" + key);
      if (!inline_value) {
        if (i + 1 >= argc) fail("--" + key + " needs a value");
        val = argv[++i];
      }
      opt->set(val);
    }
  }

  [[noreturn]] void fail(const std::string& why) const {
    std::fprintf(stderr, "%s: %s (try --help)\n", program_.c_str(), why.c_str());
    std::exit(2);
  }

 private:
  struct Opt {
    std::string name, help, def;
    std::function<void(const std::string&)> set;
  };
  template <class T>
  T convert(const std::string& name, const std::string& s) const {
    char* end = nullptr;
    if constexpr (std::is_same_v<T, std::string>) {
      return s;
    } else if constexpr (std::is_same_v<T, bool>) {
      if (s == "1" || s == "true" || s == "yes") return true;
      if (s == "0" || s == "false" || s == "no") return false;
      fail("--" + name + " expects true or false, got '" + s + "'");
    } else if constexpr (std::is_floating_point_v<T>) {
      const double v = std::strtod(s.c_str(), &end);
      if (s.empty() || *end) fail("--" + name + " expects a number, got '" + s + "'");
      return T(v);
    } else {
      const long long v = std::strtoll(s.c_str(), &end, 10);
      if (s.empty() || *end) fail("--" + name + " expects an integer, got '" + s + "'");
      return T(v);
    }
  }
  template <class T>
  static std::string describe(const T& v) {
    if constexpr (std::is_same_v<T, std::string>) return v.empty() ? "\"\"" : v;
    else if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
    else return std::to_string(v);
  }
  void usage(FILE* out) const {
    std::fprintf(out, "usage: %s [options]\n\n%s\n\noptions:\n", program_.c_str(), about_.c_str());
    for (const auto& o : opts_)
      std::fprintf(out, "  --%-18s %s (default %s)\n", o.name.c_str(), o.help.c_str(), o.def.c_str());
    std::fprintf(out, "  --%-18s %s\n", "help", "this text");
  }
  std::string program_, about_;
  std::vector<Opt> opts_;
  std::vector<std::shared_ptr<void>> holders_;
};

inline std::string format_seconds(double s) {
  const long t = long(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

class Progress {
 public:
  Progress(std::string label, int64_t total)
      : label_(std::move(label)), total_(total > 0 ? total : 1), start_(Clock::now()), tty_(::isatty(2)) {}

  void update(int64_t done, const std::vector<std::pair<std::string, double>>& metrics = {}) {
    const auto now = Clock::now();
    const bool last = done >= total_;
    if (!last && std::chrono::duration<double>(now - last_draw_).count() < (tty_ ? 0.1 : 10.0)) return;
    last_draw_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double eta = done > 0 ? elapsed / double(done) * double(total_ - done) : 0.0;
    const int width = 24, filled = int(double(width) * double(done) / double(total_));
    std::string bar(size_t(filled), '#');
    bar.append(size_t(width - filled), '.');
    std::string m;
    char buf[64];
    for (const auto& [k, v] : metrics) {
      std::snprintf(buf, sizeof buf, " %s %.4g", k.c_str(), v);
      m += buf;
    }
    std::fprintf(stderr, "%s%s [%s] %lld/%lld %s ETA %s%s%s", tty_ ? "\r" : "", label_.c_str(), bar.c_str(),
                 (long long)done, (long long)total_, format_seconds(elapsed).c_str(),
                 format_seconds(eta).c_str(), m.c_str(), tty_ ? "\033[K" : "\n");
    std::fflush(stderr);
  }
  void finish() {
    if (tty_) std::fprintf(stderr, "\n");
  }
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  using Clock = std::chrono::steady_clock;
  std::string label_;
  int64_t total_;
  Clock::time_point start_, last_draw_{};
  bool tty_;
};

// A results table printed with aligned columns.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(FILE* out = stdout) const {
    std::vector<size_t> w;
    for (const auto& r : rows_)
      for (size_t c = 0; c < r.size(); ++c) {
        if (w.size() <= c) w.push_back(0);
        w[c] = std::max(w[c], r[c].size());
      }
    for (size_t i = 0; i < rows_.size(); ++i) {
      for (size_t c = 0; c < rows_[i].size(); ++c)
        std::fprintf(out, "%s%-*s", c ? "  " : "", int(w[c]), rows_[i][c].c_str());
      std::fprintf(out, "\n");
      if (i == 0) {
        for (size_t c = 0; c < w.size(); ++c) std::fprintf(out, "%s%s", c ? "  " : "", std::string(w[c], '-').c_str());
        std::fprintf(out, "\n");
      }
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace examples
