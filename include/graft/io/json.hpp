// graft/io/json.hpp - a small, strict JSON parser (RFC 8259) and the string quoting a writer needs.
//
// Used for the safetensors header and for Hugging Face config.json files. Not included by
// <graft/graft.hpp>: include it on purpose.
//
//   JsonValue v = parse_json(text, "config.json");
//   int64_t layers = v.at("num_hidden_layers").as_int();
//
// Contract:
//   - Accepts exactly RFC 8259: one value surrounded by optional whitespace; objects, arrays,
//     strings (escapes \" \\ \/ \b \f \n \r \t \uXXXX, surrogate pairs combined, raw bytes must be
//     valid UTF-8, no raw control characters), numbers, true, false, null.
//   - Rejects (graft::Error "json: <source>: byte <offset>: <what>") trailing commas, comments,
//     leading zeros, NaN/Infinity, lone surrogates, duplicate object keys, trailing garbage, and
//     nesting deeper than max_depth, and more than max_values values (each parsed value costs about
//     100 bytes of memory, so a caller reading untrusted input bounds both). Offsets are byte offsets in the source plus `base_offset`, so a
//     caller parsing a slice of a file (the safetensors header starts at byte 8) reports file
//     offsets.
//   - Numbers: every number has a double value; an integer literal (no fraction, no exponent) that
//     fits int64 also has an exact int64 value (is_int()).
//   - Objects keep their keys in file order.
#pragma once
#include <charconv>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "graft/core/error.hpp"

namespace graft::io {

class JsonValue {
 public:
  enum class Kind : uint8_t { Null, Bool, Number, String, Array, Object };
  using Array = std::vector<JsonValue>;
  using Object = std::vector<std::pair<std::string, JsonValue>>;

  JsonValue() = default;
  Kind kind() const { return kind_; }
  // Byte offset (including the parser's base_offset) where this value starts in its source.
  size_t offset() const { return offset_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_number() const { return kind_ == Kind::Number; }
  bool is_int() const { return kind_ == Kind::Number && is_int_; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }

  // Typed access; each throws graft::Error naming the expected and actual kind and the offset.
  bool as_bool() const {
    expect(Kind::Bool);
    return bool_;
  }
  double as_double() const {
    expect(Kind::Number);
    return double_;
  }
  int64_t as_int() const {
    expect(Kind::Number);
    GRAFT_CHECK(is_int_, "json", "byte ", offset_, ": expected an integer, got ", double_);
    return int_;
  }
  const std::string& as_string() const {
    expect(Kind::String);
    return string_;
  }
  const Array& as_array() const {
    expect(Kind::Array);
    return *array_;
  }
  const Object& as_object() const {
    expect(Kind::Object);
    return *object_;
  }
  // Object member by key: nullptr when absent (find) or graft::Error naming the key (at).
  const JsonValue* find(std::string_view key) const {
    for (const auto& kv : as_object())
      if (kv.first == key) return &kv.second;
    return nullptr;
  }
  const JsonValue& at(std::string_view key) const {
    const JsonValue* v = find(key);
    GRAFT_CHECK(v != nullptr, "json", "byte ", offset_, ": object has no key \"", key, "\"");
    return *v;
  }

  static const char* kind_name(Kind k) {
    switch (k) {
      case Kind::Null: return "null";
      case Kind::Bool: return "bool";
      case Kind::Number: return "number";
      case Kind::String: return "string";
      case Kind::Array: return "array";
      case Kind::Object: return "object";
    }
    return "?";
  }

 private:
  friend class JsonParser;
  void expect(Kind k) const {
    GRAFT_CHECK(kind_ == k, "json", "byte ", offset_, ": expected ", kind_name(k), ", got ",
                kind_name(kind_));
  }
  Kind kind_ = Kind::Null;
  bool bool_ = false;
  bool is_int_ = false;
  int64_t int_ = 0;
  double double_ = 0;
  size_t offset_ = 0;
  std::string string_;
  std::shared_ptr<Array> array_;    // shared_ptr keeps JsonValue cheap to move and copy
  std::shared_ptr<Object> object_;
};

// Recursive descent over a byte range; depth is bounded, so the recursion is too.
class JsonParser {
 public:
  JsonParser(std::string_view text, std::string source, size_t base_offset, int max_depth,
             size_t max_values)
      : s_(text), source_(std::move(source)), base_(base_offset), max_depth_(max_depth),
        max_values_(max_values) {}

  JsonValue parse_document() {
    skip_ws();
    JsonValue v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail(pos_, "unexpected trailing character ", describe(pos_), " after the value");
    return v;
  }

 private:
  template <class... A>
  [[noreturn]] void fail(size_t at, A&&... parts) const {
    throw Error(detail::concat("json: ", source_, ": byte ", base_ + at, ": ", std::forward<A>(parts)...));
  }
  std::string describe(size_t at) const {
    if (at >= s_.size()) return "end of input";
    const unsigned char c = static_cast<unsigned char>(s_[at]);
    if (c >= 0x20 && c < 0x7f) return std::string("'") + char(c) + "'";
    return detail::concat("byte 0x", "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]);
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool consume_literal(std::string_view lit) {
    if (s_.substr(pos_, lit.size()) != lit) return false;
    pos_ += lit.size();
    return true;
  }

  JsonValue parse_value(int depth) {
    if (pos_ >= s_.size()) fail(pos_, "unexpected end of input, expected a value");
    if (++values_ > max_values_) fail(pos_, "more than the limit of ", max_values_, " values");
    JsonValue v;
    v.offset_ = base_ + pos_;
    const char c = s_[pos_];
    if (c == '{' || c == '[') {
      if (depth >= max_depth_) fail(pos_, "nesting deeper than the limit of ", max_depth_);
      return c == '{' ? parse_object(depth + 1, v) : parse_array(depth + 1, v);
    }
    if (c == '"') {
      v.kind_ = JsonValue::Kind::String;
      v.string_ = parse_string();
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(v);
    if (consume_literal("true")) {
      v.kind_ = JsonValue::Kind::Bool;
      v.bool_ = true;
      return v;
    }
    if (consume_literal("false")) {
      v.kind_ = JsonValue::Kind::Bool;
      return v;
    }
    if (consume_literal("null")) return v;
    fail(pos_, "unexpected character ", describe(pos_), ", expected a value");
  }

  JsonValue parse_object(int depth, JsonValue v) {
    v.kind_ = JsonValue::Kind::Object;
    v.object_ = std::make_shared<JsonValue::Object>();
    ++pos_;  // '{'
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return v;
    }
    while (true) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"')
        fail(pos_, "expected a string key, got ", describe(pos_));
      const size_t key_at = pos_;
      std::string key = parse_string();
      for (const auto& kv : *v.object_)
        if (kv.first == key) fail(key_at, "duplicate key \"", key, "\"");
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') fail(pos_, "expected ':' after a key, got ", describe(pos_));
      ++pos_;
      skip_ws();
      JsonValue member = parse_value(depth);
      v.object_->emplace_back(std::move(key), std::move(member));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return v;
      }
      fail(pos_, "expected ',' or '}' in an object, got ", describe(pos_));
    }
  }

  JsonValue parse_array(int depth, JsonValue v) {
    v.kind_ = JsonValue::Kind::Array;
    v.array_ = std::make_shared<JsonValue::Array>();
    ++pos_;  // '['
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return v;
    }
    while (true) {
      skip_ws();
      v.array_->push_back(parse_value(depth));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return v;
      }
      fail(pos_, "expected ',' or ']' in an array, got ", describe(pos_));
    }
  }

  JsonValue parse_number(JsonValue v) {
    const size_t start = pos_;
    auto digits = [&] {
      const size_t d0 = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - d0;
    };
    if (s_[pos_] == '-') ++pos_;
    if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') fail(pos_, "expected a digit, got ", describe(pos_));
    if (s_[pos_] == '0') {
      ++pos_;
      if (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') fail(start, "number with a leading zero");
    } else {
      digits();
    }
    bool integral = true;
    if (pos_ < s_.size() && s_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (digits() == 0) fail(pos_, "expected a digit after '.', got ", describe(pos_));
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (digits() == 0) fail(pos_, "expected a digit in the exponent, got ", describe(pos_));
    }
    const char* b = s_.data() + start;
    const char* e = s_.data() + pos_;
    v.kind_ = JsonValue::Kind::Number;
    // from_chars is locale-independent (strtod is not). Out-of-range doubles give +-inf / 0, as
    // most JSON libraries do; the integer value, when present, is exact.
    auto rd = std::from_chars(b, e, v.double_);
    if (rd.ec == std::errc::result_out_of_range) {
      const bool neg = *b == '-';
      bool tiny = false;  // an exponent like 1e-999 underflows; anything else overflows
      for (const char* p = b; p < e; ++p)
        if ((*p == 'e' || *p == 'E') && p + 1 < e && p[1] == '-') tiny = true;
      v.double_ = tiny ? (neg ? -0.0 : 0.0) : (neg ? -HUGE_VAL : HUGE_VAL);
    } else if (rd.ec != std::errc() || rd.ptr != e) {
      fail(start, "malformed number");
    }
    if (integral) {
      auto ri = std::from_chars(b, e, v.int_);
      v.is_int_ = ri.ec == std::errc() && ri.ptr == e;
    }
    return v;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  uint32_t parse_hex4() {
    if (s_.size() - pos_ < 4) fail(pos_, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_];
      uint32_t d;
      if (c >= '0' && c <= '9') d = uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') d = uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = uint32_t(c - 'A' + 10);
      else fail(pos_, "expected a hex digit in a \\u escape, got ", describe(pos_));
      v = v * 16 + d;
      ++pos_;
    }
    return v;
  }

  // Copies one raw UTF-8 sequence starting at pos_, rejecting overlong forms, surrogates and
  // code points past U+10FFFF (the table of RFC 3629, section 4).
  void copy_utf8(std::string& out) {
    const size_t at = pos_;
    const auto b0 = static_cast<unsigned char>(s_[pos_]);
    int n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) n = 1;
    else if (b0 >= 0xE0 && b0 <= 0xEF) {
      n = 2;
      if (b0 == 0xE0) lo = 0xA0;
      if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      n = 3;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;
    } else {
      fail(at, "invalid UTF-8 lead byte in a string (", describe(at), ")");
    }
    if (s_.size() - pos_ - 1 < size_t(n)) fail(at, "truncated UTF-8 sequence in a string");
    for (int i = 1; i <= n; ++i) {
      const auto c = static_cast<unsigned char>(s_[pos_ + size_t(i)]);
      const unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
      if (c < l || c > h) fail(pos_ + size_t(i), "invalid UTF-8 continuation byte in a string");
    }
    out.append(s_.substr(pos_, size_t(n) + 1));
    pos_ += size_t(n) + 1;
  }

  std::string parse_string() {
    const size_t open = pos_;
    ++pos_;  // '"'
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail(open, "unterminated string");
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail(pos_, "raw control character ", describe(pos_), " in a string (escape it)");
      if (c >= 0x80) {
        copy_utf8(out);
        continue;
      }
      if (c != '\\') {
        out += char(c);
        ++pos_;
        continue;
      }
      const size_t esc = pos_;
      ++pos_;
      if (pos_ >= s_.size()) fail(open, "unterminated string");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail(esc, "lone low surrogate \\u", s_.substr(esc + 2, 4));
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(pos_, 2) != "\\u") fail(esc, "high surrogate not followed by a \\u low surrogate");
            pos_ += 2;
            const uint32_t low = parse_hex4();
            if (low < 0xDC00 || low > 0xDFFF) fail(pos_ - 6, "expected a low surrogate after a high surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: fail(esc, "invalid escape ", describe(esc + 1), " in a string");
      }
    }
  }

  std::string_view s_;
  std::string source_;
  size_t base_;
  int max_depth_;
  size_t max_values_;
  size_t values_ = 0;
  size_t pos_ = 0;
};

// Parses one JSON document. `source` names it in errors (a file path); `base_offset` is added to
// every reported byte offset.
inline JsonValue parse_json(std::string_view text, const std::string& source = "<json>",
                            size_t base_offset = 0, int max_depth = 64,
                            size_t max_values = SIZE_MAX) {
  return JsonParser(text, source, base_offset, max_depth, max_values).parse_document();
}

// The JSON string literal for s (with quotes): escapes '"', '\\' and control characters; other
// bytes are copied (s is expected to be UTF-8).
inline std::string json_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += "0123456789abcdef"[c >> 4];
          out += "0123456789abcdef"[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace graft::io
