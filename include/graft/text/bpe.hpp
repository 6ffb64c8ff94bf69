// graft/text/bpe.hpp - the byte-level BPE tokenizer of GPT-2 and RoBERTa, matching Hugging Face's
// RobertaTokenizerFast (tokenizers 0.15: ByteLevel pre-tokenizer + BPE + RobertaProcessing), read from
// the vocab.json + merges.txt pair those models ship.
//
// Not included by <graft/graft.hpp>: include it on purpose.
//
//   auto tok = graft::text::ByteLevelBpeTokenizer::from_files("vocab.json", "merges.txt");
//   graft::text::Encoding e = tok.encode("Hello world!", 512);      // <s> Hello Ġworld ! </s>
//   graft::text::Encoding p = tok.encode_pair("Question?", "Answer.", 512);  // <s> A </s></s> B </s>
//   graft::text::BatchEncoding b = tok.encode_batch({"a", "longer text"}, 512);  // padded with <pad>
//   std::string s = tok.decode(e.input_ids, /*skip_special_tokens=*/true);       // "Hello world!"
//
// The pipeline, as tokenizers runs it:
//   0. UTF-8 decoding (invalid input throws graft::Error naming the byte offset);
//   1. the special tokens <s> </s> <pad> <unk> <mask> present in the vocabulary are matched literally
//      in the raw text (leftmost, longest); <mask> also swallows the whitespace before it (RoBERTa's
//      lstrip = true); each stretch of text between them is pre-tokenized on its own;
//   2. with add_prefix_space (default false, as RobertaTokenizerFast) a stretch not starting with ' '
//      gets one; then GPT-2's regex splits it:
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      written out by hand over code points (leftmost-first alternation, as the regex engine); \p{L},
//      \p{N} and \s are tokenizers' own answers per code point (kRegexClasses of unicode_tables.hpp);
//   3. each piece's UTF-8 bytes are mapped to printable characters (GPT-2's bytes_to_unicode: ' ' is
//      'Ġ', '\n' is 'Ċ'), then BPE: repeatedly merge the leftmost adjacent pair with the lowest
//      merges.txt rank (what tokenizers' priority queue does), the pieces looked up in vocab.json;
//      results are cached per piece (10000 pieces, as tokenizers);
//   4. truncation (longest_first for pairs, as tokenizers), then <s> A </s> or <s> A </s></s> B </s>;
//      token_type_ids all 0 (RoBERTa has one token type), attention_mask 1.
// decode maps ids back to tokens, the characters back to bytes, and the bytes to UTF-8 (invalid
// sequences become U+FFFD, as Rust's from_utf8_lossy), then transformers' clean_up_tokenization
// (" ." -> "." and the like) unless turned off, as RobertaTokenizerFast.decode does by default.
//
// vocab.json: {"token": id, ...} with ids 0..V-1 each once; merges.txt: an optional "#version" line,
// then "left right" per line, rank = order; both merged parts and the merge's result must be in the
// vocabulary. A bad file throws graft::Error naming the file and the entry or line.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "graft/graft.hpp"
#include "graft/io/json.hpp"
#include "graft/text/tokenizer.hpp"
#include "graft/text/unicode_tables.hpp"

namespace graft::text {

namespace detail_bpe {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order, so every byte is a visible character and BPE never sees a space or control.
inline const std::array<char32_t, 256>& byte_to_unicode() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[size_t(b)] = printable ? char32_t(b) : next++;
    }
    return t;
  }();
  return table;
}

// The inverse: code point -> byte, or -1 for a character no byte maps to.
inline int unicode_to_byte(char32_t c) {
  static const std::unordered_map<char32_t, int> inverse = [] {
    std::unordered_map<char32_t, int> m;
    for (int b = 0; b < 256; ++b) m.emplace(byte_to_unicode()[size_t(b)], b);
    return m;
  }();
  const auto it = inverse.find(c);
  return it == inverse.end() ? -1 : it->second;
}

inline uint8_t regex_flags(char32_t c) { return detail_text::range_lookup(unicode::kRegexClasses, c); }
inline bool is_regex_space(char32_t c) { return regex_flags(c) & unicode::kRegexSpace; }

// GPT-2's pre-tokenization regex over code points: [begin, end) of each piece, in order, covering s.
inline std::vector<std::pair<size_t, size_t>> gpt2_split(std::u32string_view s) {
  using namespace unicode;
  std::vector<std::pair<size_t, size_t>> out;
  const size_t n = s.size();
  enum Cls { Letter, Number, Other, Space };
  auto cls = [&](size_t k) {
    const uint8_t f = regex_flags(s[k]);
    return (f & kRegexSpace) ? Space : (f & kRegexLetter) ? Letter : (f & kRegexNumber) ? Number : Other;
  };
  size_t i = 0;
  while (i < n) {
    // 's 't 're 've 'm 'll 'd (case-sensitive, as GPT-2's)
    if (s[i] == U'\'' && i + 1 < n) {
      const char32_t a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
      size_t len = 0;
      if (a == U's' || a == U't' || a == U'm' || a == U'd') len = 2;
      else if ((a == U'r' && b == U'e') || (a == U'v' && b == U'e') || (a == U'l' && b == U'l')) len = 3;
      if (len) {
        out.emplace_back(i, i + len);
        i += len;
        continue;
      }
    }
    // ' ?\p{L}+' | ' ?\p{N}+' | ' ?[^\s\p{L}\p{N}]+': the optional space only when a run follows it
    const size_t k = (s[i] == U' ' && i + 1 < n && cls(i + 1) != Space) ? i + 1 : i;
    if (const Cls c = cls(k); c != Space) {
      size_t j = k + 1;
      while (j < n && cls(j) == c) ++j;
      out.emplace_back(i, j);
      i = j;
      continue;
    }
    // '\s+(?!\S)' | '\s+': a whitespace run; before a non-space its last character is left over (it
    // can then start the next piece as its optional ' ')
    size_t j = i + 1;
    while (j < n && cls(j) == Space) ++j;
    if (j < n && j - i >= 2) --j;
    out.emplace_back(i, j);
    i = j;
  }
  return out;
}

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
inline std::string utf8_lossy(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
      out.push_back(char(b0));
      ++i;
      continue;
    }
    int len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the valid range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) len = 2;
    else if (b0 >= 0xE0 && b0 <= 0xEF) len = 3, lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
    else if (b0 >= 0xF0 && b0 <= 0xF4) len = 4, lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
    size_t j = i + 1;
    bool ok = len > 0;
    for (int k = 1; ok && k < len; ++k, ++j) {
      if (j >= s.size()) ok = false;
      else {
        const auto b = static_cast<unsigned char>(s[j]);
        if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) ok = false;
      }
      if (!ok) break;
    }
    if (ok) out.append(s.substr(i, size_t(len)));
    else append_utf8(out, 0xFFFD);
    i = ok ? i + size_t(len) : std::max(j, i + 1);
  }
  return out;
}

inline std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}

inline std::string read_text_file(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  GRAFT_CHECK(f.good(), "ByteLevelBpeTokenizer", "cannot open ", what, " '", path, "'");
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace detail_bpe

struct ByteLevelBpeOptions {
  bool add_prefix_space = false;  // RobertaTokenizerFast's default
};

class ByteLevelBpeTokenizer {
 public:
  // vocab: (token, id) with ids 0..V-1 each once; merges in rank order. `vocab_source` and
  // `merges_source` name them in errors.
  ByteLevelBpeTokenizer(const std::vector<std::pair<std::string, int64_t>>& vocab,
                        const std::vector<std::pair<std::string, std::string>>& merges,
                        ByteLevelBpeOptions opts = {}, const std::string& vocab_source = "<vocab>",
                        const std::string& merges_source = "<merges>")
      : options(opts), cache_(std::make_shared<Cache>()) {
    GRAFT_CHECK(!vocab.empty(), "ByteLevelBpeTokenizer", vocab_source, ": empty vocabulary");
    tokens_.assign(vocab.size(), std::string());
    std::vector<bool> seen(vocab.size(), false);
    for (const auto& [tok, id] : vocab) {
      GRAFT_CHECK(id >= 0 && id < int64_t(vocab.size()), "ByteLevelBpeTokenizer", vocab_source, ": token '", tok,
                  "' has id ", id, ", outside [0, ", vocab.size(), ") (ids must be 0..V-1, each once)");
      GRAFT_CHECK(!seen[size_t(id)], "ByteLevelBpeTokenizer", vocab_source, ": id ", id, " is given to both '",
                  tokens_[size_t(id)], "' and '", tok, "'");
      GRAFT_CHECK(!tok.empty(), "ByteLevelBpeTokenizer", vocab_source, ": empty token (id ", id, ")");
      decode_utf8(tok, detail::concat(vocab_source, " token ", id));
      seen[size_t(id)] = true;
      tokens_[size_t(id)] = tok;
      const auto [it, fresh] = ids_.emplace(tok, id);
      GRAFT_CHECK(fresh, "ByteLevelBpeTokenizer", vocab_source, ": duplicate token '", tok, "'");
    }
    for (size_t r = 0; r < merges.size(); ++r) {
      const auto& [a, b] = merges[r];
      const std::string where = detail::concat(merges_source, " merge ", r + 1, " ('", a, " ", b, "')");
      const auto ia = ids_.find(a), ib = ids_.find(b), iab = ids_.find(a + b);
      GRAFT_CHECK(ia != ids_.end() && ib != ids_.end(), "ByteLevelBpeTokenizer", where,
                  ": a part is not in the vocabulary");
      GRAFT_CHECK(iab != ids_.end(), "ByteLevelBpeTokenizer", where, ": the merged token '", a + b,
                  "' is not in the vocabulary");
      const auto [it, fresh] = merges_.emplace(pair_key(ia->second, ib->second), Merge{int64_t(r), iab->second});
      GRAFT_CHECK(fresh, "ByteLevelBpeTokenizer", where, ": duplicate merge (first at rank ", it->second.rank + 1, ")");
    }
    for (const char* tok : {"<s>", "</s>", "<pad>", "<unk>", "<mask>"})
      if (const auto it = ids_.find(tok); it != ids_.end()) specials_.push_back({tok, it->second, tok == std::string("<mask>")});
    auto special = [&](const char* tok) {
      const auto it = ids_.find(tok);
      GRAFT_CHECK(it != ids_.end(), "ByteLevelBpeTokenizer", vocab_source, ": special token '", tok,
                  "' is not in the vocabulary (", vocab.size(), " tokens)");
      return it->second;
    };
    bos_id = special("<s>");
    eos_id = special("</s>");
    pad_id = special("<pad>");
    unk_id = ids_.count("<unk>") ? ids_.at("<unk>") : -1;
    mask_id = ids_.count("<mask>") ? ids_.at("<mask>") : -1;
  }

  // vocab.json text and merges.txt text.
  static ByteLevelBpeTokenizer from_strings(std::string_view vocab_json, std::string_view merges_txt,
                                            ByteLevelBpeOptions opts = {}, const std::string& vocab_source = "vocab.json",
                                            const std::string& merges_source = "merges.txt") {
    const io::JsonValue v = io::parse_json(vocab_json, vocab_source);
    GRAFT_CHECK(v.is_object(), "ByteLevelBpeTokenizer", vocab_source, ": expected a JSON object {token: id}");
    std::vector<std::pair<std::string, int64_t>> vocab;
    for (const auto& [tok, id] : v.as_object()) {
      GRAFT_CHECK(id.is_int(), "ByteLevelBpeTokenizer", vocab_source, ": the id of '", tok, "' is not an integer");
      vocab.emplace_back(tok, id.as_int());
    }
    std::vector<std::pair<std::string, std::string>> merges;
    size_t start = 0, line_no = 0;
    while (start < merges_txt.size()) {
      size_t end = merges_txt.find('\n', start);
      if (end == std::string_view::npos) end = merges_txt.size();
      std::string line(merges_txt.substr(start, end - start));
      start = end + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
      const size_t sp = line.find(' ');
      GRAFT_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < line.size() && line.find(' ', sp + 1) == std::string::npos,
                  "ByteLevelBpeTokenizer", merges_source, " line ", line_no, ": expected 'left right', got '", line, "'");
      merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
    }
    return ByteLevelBpeTokenizer(vocab, merges, opts, vocab_source, merges_source);
  }
  static ByteLevelBpeTokenizer from_files(const std::string& vocab_json_path, const std::string& merges_txt_path,
                                          ByteLevelBpeOptions opts = {}) {
    const std::string vocab = detail_bpe::read_text_file(vocab_json_path, "vocab.json");
    const std::string merges = detail_bpe::read_text_file(merges_txt_path, "merges.txt");
    return from_strings(vocab, merges, opts, vocab_json_path, merges_txt_path);
  }

  int64_t vocab_size() const { return int64_t(tokens_.size()); }
  std::optional<int64_t> token_to_id(const std::string& token) const {
    const auto it = ids_.find(token);
    return it == ids_.end() ? std::nullopt : std::optional<int64_t>(it->second);
  }
  const std::string& id_to_token(int64_t id) const {
    GRAFT_CHECK(id >= 0 && id < vocab_size(), "ByteLevelBpeTokenizer", "id ", id,
                " out of range for a vocabulary of ", vocab_size());
    return tokens_[size_t(id)];
  }
  bool is_special(int64_t id) const {
    return std::any_of(specials_.begin(), specials_.end(), [&](const Special& s) { return s.id == id; });
  }

  // The regex pieces of a stretch of text without special tokens (UTF-8, before the byte mapping).
  std::vector<std::string> pre_tokenize(std::string_view text) const {
    std::u32string s = decode_utf8(text, "input text");
    if (options.add_prefix_space && !s.empty() && s[0] != U' ') s.insert(s.begin(), U' ');
    std::vector<std::string> out;
    for (const auto& [b, e] : detail_bpe::gpt2_split(s)) out.push_back(encode_utf8(std::u32string_view(s).substr(b, e - b)));
    return out;
  }

  // UTF-8 text -> ids, special tokens matched, without <s>/</s> and without truncation.
  std::vector<int64_t> tokenize_to_ids(std::string_view text) const {
    const std::u32string chars = decode_utf8(text, "input text");
    std::vector<int64_t> ids;
    size_t begin = 0, i = 0;
    while (i < chars.size()) {
      const Special* best = nullptr;
      for (const Special& sp : specials_) {
        const size_t n = sp.token.size();  // ASCII: bytes == chars
        if ((best == nullptr || n > best->token.size()) && i + n <= chars.size() &&
            std::equal(sp.token.begin(), sp.token.end(), chars.begin() + long(i),
                       [](char a, char32_t b) { return char32_t(static_cast<unsigned char>(a)) == b; }))
          best = &sp;
      }
      if (best == nullptr) {
        ++i;
        continue;
      }
      size_t stop = i;  // lstrip: the whitespace before the token goes with it
      if (best->lstrip)
        while (stop > begin && detail_bpe::is_regex_space(chars[stop - 1])) --stop;
      encode_stretch(std::u32string_view(chars).substr(begin, stop - begin), ids);
      ids.push_back(best->id);
      i += best->token.size();
      begin = i;
    }
    encode_stretch(std::u32string_view(chars).substr(begin), ids);
    return ids;
  }
  std::vector<std::string> tokenize(std::string_view text) const {
    std::vector<std::string> out;
    for (const int64_t id : tokenize_to_ids(text)) out.push_back(tokens_[size_t(id)]);
    return out;
  }

  // <s> A </s>; with truncation A is cut to max_length - 2 ids, without it a longer text throws.
  Encoding encode(std::string_view text, int64_t max_length = 512, bool truncation = true) const {
    GRAFT_CHECK(max_length >= 2, "ByteLevelBpeTokenizer", "max_length must be >= 2 (room for <s> and </s>), got ",
                max_length);
    std::vector<int64_t> a = tokenize_to_ids(text);
    if (int64_t(a.size()) + 2 > max_length) {
      GRAFT_CHECK(truncation, "ByteLevelBpeTokenizer", "text has ", a.size() + 2,
                  " tokens with <s>/</s>, more than max_length ", max_length, " (pass truncation = true)");
      a.resize(size_t(max_length - 2));
    }
    std::vector<int64_t> ids{bos_id};
    ids.insert(ids.end(), a.begin(), a.end());
    ids.push_back(eos_id);
    return make_encoding(std::move(ids));
  }

  // <s> A </s></s> B </s>; truncation is tokenizers' longest_first: when A and B do not fit in
  // max_length - 4, the longer keeps max(shorter, room - shorter) ids, and when even that is too many
  // both get half the room (the first room / 2, the second the rest). An empty text_b is no pair, as
  // transformers' tokenizer(a, "") (encode(text_a)).
  Encoding encode_pair(std::string_view text_a, std::string_view text_b, int64_t max_length = 512,
                       bool truncation = true) const {
    if (text_b.empty()) return encode(text_a, max_length, truncation);
    GRAFT_CHECK(max_length >= 4, "ByteLevelBpeTokenizer",
                "max_length must be >= 4 for a pair (room for <s> </s></s> </s>), got ", max_length);
    std::vector<int64_t> a = tokenize_to_ids(text_a), b = tokenize_to_ids(text_b);
    const auto room = size_t(max_length - 4);
    if (a.size() + b.size() > room) {
      GRAFT_CHECK(truncation, "ByteLevelBpeTokenizer", "pair has ", a.size() + b.size() + 4,
                  " tokens with the special tokens, more than max_length ", max_length, " (pass truncation = true)");
      const bool swap = a.size() > b.size();
      size_t n1 = std::min(a.size(), b.size()), n2 = std::max(a.size(), b.size());
      n2 = n1 > room ? n1 : std::max(n1, room - n1);
      if (n1 + n2 > room) n1 = room / 2, n2 = n1 + room % 2;
      if (swap) std::swap(n1, n2);
      a.resize(std::min(a.size(), n1));
      b.resize(std::min(b.size(), n2));
    }
    std::vector<int64_t> ids{bos_id};
    ids.insert(ids.end(), a.begin(), a.end());
    ids.push_back(eos_id);
    ids.push_back(eos_id);
    ids.insert(ids.end(), b.begin(), b.end());
    ids.push_back(eos_id);
    return make_encoding(std::move(ids));
  }

  // encode() each text, padded with <pad> (mask 0) to the longest row, or to max_length when
  // pad_to_max_length (HF's padding="max_length"): [B, T] int64 tensors.
  BatchEncoding encode_batch(const std::vector<std::string>& texts, int64_t max_length = 512, bool truncation = true,
                             bool pad_to_max_length = false) const {
    GRAFT_CHECK(!texts.empty(), "ByteLevelBpeTokenizer", "encode_batch: no texts");
    std::vector<Encoding> rows;
    for (const auto& t : texts) rows.push_back(encode(t, max_length, truncation));
    return pad(rows, pad_to_max_length ? max_length : 0);
  }
  BatchEncoding encode_pair_batch(const std::vector<std::pair<std::string, std::string>>& pairs,
                                  int64_t max_length = 512, bool truncation = true,
                                  bool pad_to_max_length = false) const {
    GRAFT_CHECK(!pairs.empty(), "ByteLevelBpeTokenizer", "encode_pair_batch: no pairs");
    std::vector<Encoding> rows;
    for (const auto& [a, b] : pairs) rows.push_back(encode_pair(a, b, max_length, truncation));
    return pad(rows, pad_to_max_length ? max_length : 0);
  }

  // Rows of ids padded with <pad> on the right to `length` (0: the longest row).
  BatchEncoding pad(const std::vector<Encoding>& rows, int64_t length = 0) const {
    size_t T = size_t(std::max<int64_t>(length, 0));
    for (const auto& r : rows) T = std::max(T, r.input_ids.size());
    const auto B = int64_t(rows.size());
    std::vector<int64_t> ids(size_t(B) * T, pad_id), mask(size_t(B) * T, 0), types(size_t(B) * T, 0);
    for (size_t b = 0; b < rows.size(); ++b)
      for (size_t j = 0; j < rows[b].input_ids.size(); ++j) {
        ids[b * T + j] = rows[b].input_ids[j];
        mask[b * T + j] = rows[b].attention_mask[j];
      }
    const Shape shape{B, int64_t(T)};
    return {from_vector(ids, shape, DType::Int64), from_vector(mask, shape, DType::Int64),
            from_vector(types, shape, DType::Int64)};
  }

  // ids -> text (RobertaTokenizerFast.decode).
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false,
                     bool clean_up_tokenization_spaces = true) const {
    std::string bytes;
    for (const int64_t id : ids) {
      const std::string& tok = id_to_token(id);
      if (skip_special_tokens && is_special(id)) continue;
      std::string mapped;
      bool all_mapped = true;
      for (const char32_t c : decode_utf8(tok, "token")) {
        const int b = detail_bpe::unicode_to_byte(c);
        if (b < 0) {
          all_mapped = false;
          break;
        }
        mapped.push_back(char(b));
      }
      bytes += all_mapped ? mapped : tok;  // a token with a character no byte maps to: its own UTF-8
    }
    std::string s = detail_bpe::utf8_lossy(bytes);
    if (clean_up_tokenization_spaces) {  // transformers' clean_up_tokenization, in its order
      for (const auto& [from, to] : {std::pair{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
                                     {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}})
        s = detail_bpe::replace_all(std::move(s), from, to);
    }
    return s;
  }

  ByteLevelBpeOptions options;
  int64_t bos_id = 0, eos_id = 2, pad_id = 1, unk_id = 3, mask_id = 4;  // <s> </s> <pad> <unk> <mask> (-1: absent)

 private:
  struct Merge {
    int64_t rank, id;
  };
  struct Special {
    std::string token;
    int64_t id;
    bool lstrip;
  };
  // Shared by copies (the vocabulary and merges never change after construction).
  struct Cache {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int64_t>> words;
  };
  static constexpr size_t kCacheCapacity = 10000;

  static uint64_t pair_key(int64_t a, int64_t b) { return (uint64_t(a) << 32) | uint64_t(b); }

  static Encoding make_encoding(std::vector<int64_t> ids) {
    Encoding e;
    e.attention_mask.assign(ids.size(), 1);
    e.token_type_ids.assign(ids.size(), 0);
    e.input_ids = std::move(ids);
    return e;
  }

  // One stretch between special tokens: prefix space, regex split, byte mapping, BPE.
  void encode_stretch(std::u32string_view part, std::vector<int64_t>& ids) const {
    if (part.empty()) return;
    std::u32string s(part);
    if (options.add_prefix_space && s[0] != U' ') s.insert(s.begin(), U' ');
    const auto& b2u = detail_bpe::byte_to_unicode();
    for (const auto& [b, e] : detail_bpe::gpt2_split(s)) {
      std::string mapped;
      for (const char byte : encode_utf8(std::u32string_view(s).substr(b, e - b)))
        append_utf8(mapped, b2u[static_cast<unsigned char>(byte)]);
      const std::vector<int64_t> w = bpe_word(mapped);
      ids.insert(ids.end(), w.begin(), w.end());
    }
  }

  // BPE on one byte-mapped piece, through the cache.
  std::vector<int64_t> bpe_word(const std::string& mapped) const {
    {
      std::lock_guard<std::mutex> lock(cache_->mutex);
      if (const auto it = cache_->words.find(mapped); it != cache_->words.end()) return it->second;
    }
    std::vector<int64_t> syms;
    for (const char32_t c : decode_utf8(mapped, "piece")) {
      std::string one;
      append_utf8(one, c);
      // tokenizers' BPE without an unk token (RoBERTa's) drops a character missing from the vocabulary
      if (const auto it = ids_.find(one); it != ids_.end()) syms.push_back(it->second);
    }
    while (syms.size() >= 2) {
      size_t best = 0;
      const Merge* m = nullptr;
      for (size_t k = 0; k + 1 < syms.size(); ++k) {
        const auto it = merges_.find(pair_key(syms[k], syms[k + 1]));
        if (it != merges_.end() && (m == nullptr || it->second.rank < m->rank)) m = &it->second, best = k;
      }
      if (m == nullptr) break;
      syms[best] = m->id;
      syms.erase(syms.begin() + long(best) + 1);
    }
    std::lock_guard<std::mutex> lock(cache_->mutex);
    if (cache_->words.size() < kCacheCapacity) cache_->words.emplace(mapped, syms);
    return syms;
  }

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::vector<Special> specials_;  // matched literally in the raw text
  std::shared_ptr<Cache> cache_;
};

}  // namespace graft::text
