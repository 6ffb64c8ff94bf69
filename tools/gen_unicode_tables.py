#!/usr/bin/env python3
"""Writes include/graft/text/unicode_tables.hpp: the Unicode tables behind graft/text/tokenizer.hpp.

Usage:  source tools/pyenv.sh && $GRAFT_PYTHON tools/gen_unicode_tables.py include/graft/text/unicode_tables.hpp

Deterministic. The tables describe what Hugging Face's BertNormalizer / BertPreTokenizer
(tokenizers 0.15, the Rust library BertTokenizerFast and sentence-transformers run) do to ONE code
point, so Graft's tokenizer reproduces it exactly:

  class flags   kRemove        clean_text drops it (Cc/Cf/Co except \\t \\n \\r, plus U+0000, U+FFFD)
                kToSpace       clean_text turns it into ' ' (Rust char::is_whitespace, \\t \\n \\r)
                kNonspacing    strip_accents drops it (general category Mn)
                kPunctuation   the pre-tokenizer isolates it (ASCII punctuation/symbols, category P*)
  lowercase     the per-character lowercase (Rust char::to_lowercase; U+0130 -> "i\\u0307")
  decomposition the full canonical decomposition (NFD) of one code point, Hangul excluded
                (decomposed algorithmically), and the canonical combining classes for reordering
  regex classes what \\p{L}, \\p{N} and \\s match in tokenizers' regexes (Oniguruma), for the GPT-2 /
                RoBERTa byte-level pre-tokenizer of graft/text/bpe.hpp (probed through
                pre_tokenizers.Split; without tokenizers: categories L*, N* and White_Space)

Source of truth: Python's stdlib unicodedata (Unicode 14.0 under Python 3.11) gives the categories,
lowercase, NFD and combining classes. tokenizers' category tables are older (the unicode_categories
crate, Unicode 8.0): a character assigned in 9.0 or later is an ordinary character to it even when
Unicode 14 calls it Mn or P*. So when the `tokenizers` package is importable (it is in
$GRAFT_PYTHON), every code point is also run through tokenizers' own normalizer pieces and its answer
is used; the script prints how many code points differ from the unicodedata answer, and why.
Without tokenizers (--no-probe) the tables are pure Unicode 14.0.
"""
import argparse
import sys
import unicodedata

# Rust's char::is_whitespace: the Unicode White_Space property.
WHITE_SPACE = {0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
               0x202F, 0x205F, 0x3000}
REMOVE, TO_SPACE, NONSPACING, PUNCT = 1, 2, 4, 8
MAX_CP = 0x110000


def is_surrogate(cp):
    return 0xD800 <= cp <= 0xDFFF


def stdlib_flags(cp):
    c = chr(cp)
    cat = unicodedata.category(c)
    f = 0
    if c in "\t\n\r" or cp in WHITE_SPACE and cat != "Cc":
        f |= TO_SPACE
    elif cp == 0 or cp == 0xFFFD or cat in ("Cc", "Cf", "Co", "Cs"):
        f |= REMOVE
    if cat == "Mn":
        f |= NONSPACING
    if (cp < 128 and (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126)) or cat.startswith("P"):
        f |= PUNCT
    return f


REGEX_LETTER, REGEX_NUMBER, REGEX_SPACE = 1, 2, 4


def stdlib_regex_flags(cp):
    cat = unicodedata.category(chr(cp))
    return (REGEX_LETTER if cat.startswith("L") else 0) | (REGEX_NUMBER if cat.startswith("N") else 0) | (
        REGEX_SPACE if cp in WHITE_SPACE else 0)


def probe_regex_flags():
    """Per code point: does tokenizers' regex engine match it with \\p{L}, \\p{N}, \\s (None: not installed)."""
    try:
        from tokenizers import Regex, pre_tokenizers
    except ImportError:
        return None
    splits = [(REGEX_LETTER, r"\p{L}"), (REGEX_NUMBER, r"\p{N}"), (REGEX_SPACE, r"\s")]
    splits = [(bit, pre_tokenizers.Split(Regex(p), behavior="removed")) for bit, p in splits]
    out = {}
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            continue
        c = chr(cp)
        out[cp] = sum(bit for bit, sp in splits if sp.pre_tokenize_str(c) == [])  # matched: nothing left
    return out


def stdlib_lower(cp):
    return chr(cp).lower()


def stdlib_nfd(cp):
    return unicodedata.normalize("NFD", chr(cp))


def probe_tables():
    """Per code point answers of tokenizers' own normalizer pieces (None when not installed)."""
    try:
        from tokenizers import normalizers, pre_tokenizers
    except ImportError:
        return None
    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False,
                                       lowercase=False)
    # BertNormalizer's own strip_accents (NFD, then drop Mn); the standalone StripAccents
    # normalizer is different: it also drops Mc (spacing marks such as Devanagari vowel signs).
    strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True,
                                       lowercase=False)
    lower = normalizers.Lowercase()
    nfd = normalizers.NFD()
    pre = pre_tokenizers.BertPreTokenizer()
    flags, lowers, nfds = {}, {}, {}
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            continue
        c = chr(cp)
        s = "a" + c + "b"
        f = 0
        cleaned = clean.normalize_str(s)
        if cleaned == "ab":
            f |= REMOVE
        elif cleaned == "a b" and c != " ":
            f |= TO_SPACE
        elif c == " ":
            f |= TO_SPACE
        if strip.normalize_str(s) == "ab":
            f |= NONSPACING
        if [p for p, _ in pre.pre_tokenize_str(s)] == ["a", c, "b"]:
            f |= PUNCT
        flags[cp] = f
        lowers[cp] = lower.normalize_str(c)
        nfds[cp] = nfd.normalize_str(c)
    return flags, lowers, nfds


def hangul_syllable(cp):
    return 0xAC00 <= cp <= 0xD7A3


def ranges(values):
    """[(first, last, value)] for runs of equal nonzero values over code points."""
    out = []
    for cp in range(MAX_CP):
        v = values(cp)
        if v and out and out[-1][1] == cp - 1 and out[-1][2] == v:
            out[-1][1] = cp
        elif v:
            out.append([cp, cp, v])
    return out


def wrap(items, per_line):
    lines = []
    for i in range(0, len(items), per_line):
        lines.append("    " + " ".join(items[i:i + per_line]))
    return "\n".join(lines)


def mapping_table(name, mapping):
    """A sorted {cp: string} as a pool of code points plus (cp, offset, length) entries."""
    pool, entries = [], []
    for cp in sorted(mapping):
        seq = [ord(ch) for ch in mapping[cp]]
        entries.append(f"{{0x{cp:X}, {len(pool)}, {len(seq)}}},")
        pool.extend(seq)
    text = f"inline constexpr uint32_t k{name}Pool[] = {{\n" + wrap([f"0x{v:X}," for v in pool], 12) + "\n};\n"
    text += f"inline constexpr Mapping k{name}[] = {{\n" + wrap(entries, 5) + "\n};\n"
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--no-probe", action="store_true", help="pure unicodedata tables, no tokenizers probe")
    args = ap.parse_args()

    probe = None if args.no_probe else probe_tables()
    flags, lowers, nfds = {}, {}, {}
    diff = {"flags": 0, "lower": 0, "nfd": 0}
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            flags[cp] = REMOVE  # never reaches the tables: UTF-8 decoding rejects surrogates
            continue
        f, lo, d = stdlib_flags(cp), stdlib_lower(cp), stdlib_nfd(cp)
        if probe is not None:
            pf, plo, pd = probe[0][cp], probe[1][cp], probe[2][cp]
            diff["flags"] += pf != f
            diff["lower"] += plo != lo
            diff["nfd"] += pd != d
            f, lo, d = pf, plo, pd
        flags[cp] = f
        if lo != chr(cp):
            lowers[cp] = lo
        if d != chr(cp) and not hangul_syllable(cp):
            nfds[cp] = d
        if hangul_syllable(cp):  # check the algorithm the C++ side uses
            s = cp - 0xAC00
            expect = chr(0x1100 + s // 588) + chr(0x1161 + (s % 588) // 28) + (chr(0x11A7 + s % 28) if s % 28 else "")
            assert d == expect, hex(cp)
    if probe is not None:
        print(f"unicodedata {unicodedata.unidata_version} vs tokenizers: {diff['flags']} code points with other "
              f"class flags (tokenizers' categories are Unicode 8.0), {diff['lower']} other lowercase, "
              f"{diff['nfd']} other NFD; the tables follow tokenizers", file=sys.stderr)

    regex_probe = None if args.no_probe else probe_regex_flags()
    regex_flags, regex_diff = {}, 0
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            regex_flags[cp] = 0
            continue
        f = stdlib_regex_flags(cp)
        if regex_probe is not None:
            regex_diff += regex_probe[cp] != f
            f = regex_probe[cp]
        regex_flags[cp] = f
    if regex_probe is not None:
        print(f"unicodedata {unicodedata.unidata_version} vs tokenizers' regex: {regex_diff} code points with other "
              f"\\p{{L}} / \\p{{N}} / \\s answers; the tables follow tokenizers", file=sys.stderr)

    class_ranges = ranges(lambda cp: flags[cp] if not is_surrogate(cp) else 0)
    regex_ranges = ranges(lambda cp: regex_flags[cp])
    ccc_ranges = ranges(lambda cp: unicodedata.combining(chr(cp)) if not is_surrogate(cp) else 0)
    source = "tokenizers' BertNormalizer/BertPreTokenizer per code point, unicodedata " + unicodedata.unidata_version
    if probe is None:
        source = "unicodedata " + unicodedata.unidata_version + " only (--no-probe)"

    out = []
    out.append("// graft/text/unicode_tables.hpp - GENERATED by tools/gen_unicode_tables.py; do not edit.\n"
               "// Source: " + source + ".\n"
               "// What Hugging Face's BERT normalizer and pre-tokenizer do to one code point (see the script's\n"
               "// docstring); read through the lookups in graft/text/tokenizer.hpp.\n"
               "#pragma once\n#include <cstdint>\n\nnamespace graft::text::unicode {\n\n"
               "enum CharFlags : uint8_t { kRemove = 1, kToSpace = 2, kNonspacingMark = 4, kPunctuation = 8 };\n"
               "struct CodeRange {\n  uint32_t first, last;  // inclusive\n  uint8_t value;\n};\n"
               "struct Mapping {\n  uint32_t cp, offset, length;  // the code points pool[offset, offset + length)\n};\n\n")
    out.append("// Runs of code points with the same nonzero CharFlags, sorted.\n")
    out.append("inline constexpr CodeRange kCharClasses[] = {\n" +
               wrap([f"{{0x{a:X}, 0x{b:X}, {v}}}," for a, b, v in class_ranges], 6) + "\n};\n\n")
    out.append("// Runs with the same nonzero canonical combining class, sorted.\n")
    out.append("inline constexpr CodeRange kCombiningClass[] = {\n" +
               wrap([f"{{0x{a:X}, 0x{b:X}, {v}}}," for a, b, v in ccc_ranges], 6) + "\n};\n\n")
    out.append("// Runs of code points with the same nonzero RegexFlags (tokenizers' \\p{L}, \\p{N}, \\s), sorted.\n")
    out.append("enum RegexFlags : uint8_t { kRegexLetter = 1, kRegexNumber = 2, kRegexSpace = 4 };\n")
    out.append("inline constexpr CodeRange kRegexClasses[] = {\n" +
               wrap([f"{{0x{a:X}, 0x{b:X}, {v}}}," for a, b, v in regex_ranges], 6) + "\n};\n\n")
    out.append("// Per-character lowercase where it differs from the character, sorted by cp.\n")
    out.append(mapping_table("Lowercase", lowers) + "\n")
    out.append("// Full canonical decomposition where it differs (Hangul syllables excluded), sorted by cp.\n")
    out.append(mapping_table("Decomposition", nfds) + "\n")
    out.append("}  // namespace graft::text::unicode\n")
    with open(args.out, "w") as f:
        f.write("".join(out))
    print(f"wrote {args.out}: {len(class_ranges)} class ranges, {len(regex_ranges)} regex class ranges, {len(ccc_ranges)} ccc ranges, {len(lowers)} "
          f"lowercase, {len(nfds)} decompositions", file=sys.stderr)


if __name__ == "__main__":
    main()
