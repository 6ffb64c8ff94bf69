#!/usr/bin/env python3
"""Goldens for Graft's byte-level BPE tokenizer (graft/text/bpe.hpp) and RoBERTa (graft/models/roberta.hpp).

Usage:  source tools/pyenv.sh && $GRAFT_PYTHON tools/gen_roberta_goldens.py OUT_DIR [--committed-only]

Needs the reference venv (tools/requirements-reference.txt): tokenizers 0.15.0, transformers 4.36.2,
chatterbot-corpus (training text). No model hub is reachable, so the tokenizer is TRAINED here, and
the model is a small random-init one. Deterministic: tokenizers' BPE trainer is (one thread, fixed
input order), torch runs seeded on one CPU thread.

Writes, committed (small, tests/data/text/):
  roberta_bpe/vocab.json, roberta_bpe/merges.txt
      ByteLevelBPETokenizer().train_from_iterator(lines of every chatterbot-corpus .yml file, sorted by
      path, plus the stress texts below), vocab_size 2000, min_frequency 2, special tokens
      <s> <pad> </s> <unk> <mask> (ids 0..4, as RoBERTa's), the 256 byte characters as the alphabet.
  roberta_tokenizer_golden.json
      RobertaTokenizerFast(vocab.json, merges.txt) (transformers' converter: ByteLevel pre-tokenizer,
      BPE, RobertaProcessing; <mask> with lstrip):
      "cases":        [{"text", "ids"}]  ids = tok(text)["input_ids"] for ~55 stress texts
      "prefix_cases": the same with add_prefix_space=True for a subset
      "pairs":        [{"a", "b", "ids", "token_type_ids"}]  tok(a, b)
      "truncation":   [{"text", "max_length", "ids"}] and [{"a", "b", "max_length", "ids"}]
                      (truncation=True, longest_first for pairs)
      "batch":        {"texts", "input_ids", "attention_mask"}  tok(texts, padding=True)
      "decode":       [{"ids", "text", "text_skip"}]  tok.decode(ids) / decode(ids, skip_special_tokens=True)
Writes into OUT_DIR (the tests read it through GRAFT_MODEL_DATA=OUT_DIR):
  roberta/roberta_tiny.bin (golden format, tools/gen_goldens.py / tests/golden.hpp):
    case "roberta_tiny_eval": RobertaForSequenceClassification(config below), seeded init with
        LayerNorm affine and biases randomized (so every name matters), float32, eval mode:
        "sd.<key>" its state dict (HF names, "roberta." prefix), "input_ids", "attention_mask" [3, T]
        (the tokenizer's padded batch of EVAL_TEXTS: padding exercises the position ids),
        "position_ids" [3, T] (create_position_ids_from_input_ids), "last_hidden_state" [3, T, 32],
        "logits" [3, 3]
    case "roberta_tiny_train": the same model in float64, training mode with dropout 0; "sd.<key>",
        "input_ids", "attention_mask", "labels" [3]; step 0: "loss0", "logits0", "grad.<key>" of
        cross_entropy(logits, labels); then 3 SGD steps (lr 0.05, momentum 0.9): "loss.<k>" (k = 0..2)
        before each step and "final.<key>" every parameter after the last.
"""
import argparse
import glob
import json
import os
import sys

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before tokenizers loads: one thread (2 shared cores)
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402  (the shared writer)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
VOCAB_SIZE = 2000

LONG_TEXT = " ".join(["Transfer learning reuses a network trained on a large dataset, and fine-tunes it "
                      "on a smaller one; the frozen backbone's features (embeddings) are often enough."] * 8)

TEXTS = [
    "Hello, world!",
    "Hello world",
    " Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Don't stop believing: it's, I'm, you're, we've, they'll, she'd.",
    "DON'T SHOUT IT'S LOUD 'S 'T 'RE",
    "''s '' 'x' don''t it'sn't",
    "Café résumé naïve façade coöperate",
    "ÀÉÎÕÜ ÅNGSTRÖM Ñandú",
    "Combining: e\u0301 a\u0308 n\u0303 (decomposed)",
    "Numbers 3.14159 1,000,000 2024-01-15 12:30pm 1st 007 ½ ² ① ٣",
    "1234567890 12345 x1y2z3",
    "我爱自然语言处理",
    "東京は日本の首都です。",
    "한국어 텍스트도 있습니다",
    "Emoji 😀🎉👍🏽 and ❤️ hearts 🥰 🫠",
    "👨‍👩‍👧‍👦 family, 🇫🇷 flag",
    "Ελληνικά ΣΟΦΙΑ Σοφίας",
    "Русский текст с Ё и й",
    "עברית ועוד العربية",
    "Thai ภาษาไทย and Hindi हिन्दी",
    "Math: ∑ x² ≤ ∞ ± √2 → ∀∃",
    "Quotes “smart” ‘single’ «guillemets» — em dash … ellipsis",
    "Prices: $5.99, €10, £3; 50% off & more #hashtag @user ~tilde `code` ^caret |pipe| \\backslash",
    "e-mail: john.doe@example.com, url: https://www.example.org/path?q=1&x=2",
    "C++ and C# and .NET and node.js",
    "Repeated!!!??? and ..... ,,,",
    "   extra    spaces",
    "trailing spaces   ",
    "tabs\tand\t\ttabs",
    "newlines\nand\n\nmore\r\nwindows",
    "mixed \t\n whitespace \n\t end",
    " \n ",
    "   ",
    " ",
    "\n",
    "",
    "a",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "xqzvjk qwxzpt zzzzzzzzz blorptastic",
    "no-break\u00a0space and ideographic\u3000space and thin\u2009space",
    "zero\u200bwidth\ufeffbom soft\u00adhyphen ctrl\x00\x07chars",
    "Hello <mask>!",
    "Hello   <mask> world <mask><mask>",
    "<s>already</s> special <pad> tokens <unk> and <mask>",
    "not special: <S> </ s> <masks> <mask",
    "full-width ＡＢＣ１２３",
    "Mixed中文English混合text123数字",
    "İstanbul ǅemal ß ẞ ﬁne",
    "I have a new GPU!",
    "What's the weather like today? It's sunny and 25°C.",
    "Vietnamese: Tiếng Việt có dấu",
    LONG_TEXT,
]

PREFIX_TEXTS = ["Hello world", " Hello world", "", "   ", "Hello <mask>!", "<s>x</s>y", "\nnewline first",
                "Café 123"]

PAIRS = [
    ("How are you?", "I am fine, thanks."),
    ("", "empty first"),
    ("empty second", ""),
    ("Café 😀", "東京 123"),
    ("Is this <mask>?", "Yes it is."),
]

TRUNC_SINGLE = [(LONG_TEXT, 16), ("Hello world, this is a longer sentence.", 5), ("short", 10), ("a b c d e f", 2)]
TRUNC_PAIRS = [
    (LONG_TEXT, "short answer", 20),             # only the longer is cut
    ("one two three four five six", "seven eight nine ten eleven twelve thirteen", 11),  # both, odd room
    ("one two three four five six", "seven eight nine ten eleven twelve thirteen", 12),
    ("short", LONG_TEXT, 9),
    ("a", "b", 4),
]

BATCH_TEXTS = ["A short one.", "A much longer sentence, with more tokens in it!", "", "Café 😀"]

EVAL_TEXTS = ["RoBERTa positions skip padding.", "Short.", "A third, medium-length text!"]
LABELS = [2, 0, 1]


def training_lines():
    import chatterbot_corpus
    data = os.path.join(os.path.dirname(chatterbot_corpus.__file__), "data")
    lines = []
    for path in sorted(glob.glob(os.path.join(data, "**", "*.yml"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip().lstrip("- ").strip()
                if line and not line.startswith("categories") and not line.startswith("conversations"):
                    lines.append(line)
    return lines + TEXTS + [a + " " + b for a, b in PAIRS]


def train_tokenizer(out_dir):
    from tokenizers import ByteLevelBPETokenizer
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(training_lines(), vocab_size=VOCAB_SIZE, min_frequency=2, special_tokens=SPECIALS,
                            show_progress=False)
    os.makedirs(out_dir, exist_ok=True)
    tok.save_model(out_dir)
    vocab = json.load(open(os.path.join(out_dir, "vocab.json"), encoding="utf-8"))
    assert [vocab[s] for s in SPECIALS] == [0, 1, 2, 3, 4], [vocab[s] for s in SPECIALS]
    return len(vocab)


def tokenizer_golden(tok_dir):
    from transformers import RobertaTokenizerFast
    tok = RobertaTokenizerFast(os.path.join(tok_dir, "vocab.json"), os.path.join(tok_dir, "merges.txt"))
    tok_prefix = RobertaTokenizerFast(os.path.join(tok_dir, "vocab.json"), os.path.join(tok_dir, "merges.txt"),
                                      add_prefix_space=True)
    g = {"generator": "tools/gen_roberta_goldens.py",
         "tokenizer": f"RobertaTokenizerFast (transformers {__import__('transformers').__version__}, tokenizers "
                      f"{__import__('tokenizers').__version__}) on roberta_bpe/vocab.json + merges.txt"}
    g["cases"] = [{"text": t, "ids": tok(t)["input_ids"]} for t in TEXTS]
    g["prefix_cases"] = [{"text": t, "ids": tok_prefix(t)["input_ids"]} for t in PREFIX_TEXTS]
    g["pairs"] = []
    for a, b in PAIRS:
        e = tok(a, b, return_token_type_ids=True)
        g["pairs"].append({"a": a, "b": b, "ids": e["input_ids"], "token_type_ids": e["token_type_ids"]})
    g["truncation"] = [{"text": t, "max_length": m, "ids": tok(t, truncation=True, max_length=m)["input_ids"]}
                       for t, m in TRUNC_SINGLE]
    g["pair_truncation"] = [{"a": a, "b": b, "max_length": m,
                             "ids": tok(a, b, truncation=True, max_length=m)["input_ids"]} for a, b, m in TRUNC_PAIRS]
    b = tok(BATCH_TEXTS, padding=True)
    g["batch"] = {"texts": BATCH_TEXTS, "input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
    bm = tok(BATCH_TEXTS, padding="max_length", truncation=True, max_length=12)
    g["batch_max_length"] = {"texts": BATCH_TEXTS, "max_length": 12, "input_ids": bm["input_ids"],
                             "attention_mask": bm["attention_mask"]}
    dec = []
    for t in ["Hello, world! It's a test .", "Café 😀 東京", "<s> Hello <mask> </s>", "  spaces  and\nnewline ",
              "isn't it , he said ' yes ' ?", LONG_TEXT[:120]]:
        ids = tok(t)["input_ids"]
        dec.append({"ids": ids, "text": tok.decode(ids), "text_skip": tok.decode(ids, skip_special_tokens=True),
                    "text_raw": tok.decode(ids, clean_up_tokenization_spaces=False)})
    emoji = tok("😀")["input_ids"]  # a cut multi-byte character: U+FFFD
    dec.append({"ids": emoji[:2], "text": tok.decode(emoji[:2]), "text_skip": tok.decode(emoji[:2], skip_special_tokens=True),
                "text_raw": tok.decode(emoji[:2], clean_up_tokenization_spaces=False)})
    g["decode"] = dec
    return g, tok


def tiny_config(vocab_size, dropout):
    from transformers import RobertaConfig
    return RobertaConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=40, type_vocab_size=1, pad_token_id=1,
                         bos_token_id=0, eos_token_id=2, hidden_dropout_prob=dropout,
                         attention_probs_dropout_prob=dropout, num_labels=3, layer_norm_eps=1e-5)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
            elif name.endswith(".bias") or "LayerNorm" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def model_goldens(out_dir, tok, vocab_size):
    from transformers import RobertaForSequenceClassification
    from transformers.models.roberta.modeling_roberta import create_position_ids_from_input_ids
    torch.manual_seed(7)
    model = RobertaForSequenceClassification(tiny_config(vocab_size, 0.0))
    randomize(model, 8)
    model.eval()
    enc = tok(EVAL_TEXTS, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"].to(torch.int64), enc["attention_mask"].to(torch.int64)
    c = Case("roberta_tiny_eval", "RobertaForSequenceClassification tiny, eval, float32")
    for k, v in model.state_dict().items():
        c.add("sd." + k, v)
    c.add("input_ids", ids)
    c.add("attention_mask", mask)
    c.add("position_ids", create_position_ids_from_input_ids(ids, 1))
    with torch.no_grad():
        hidden = model.roberta(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model(input_ids=ids, attention_mask=mask).logits
    c.add("last_hidden_state", hidden)
    c.add("logits", logits)

    t = Case("roberta_tiny_train", "RobertaForSequenceClassification tiny, train mode (dropout 0), float64, SGD")
    model = model.double().train()
    for k, v in model.state_dict().items():
        t.add("sd." + k, v)
    labels = torch.tensor(LABELS, dtype=torch.int64)
    t.add("input_ids", ids)
    t.add("attention_mask", mask)
    t.add("labels", labels)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(3):
        opt.zero_grad()
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits, labels)
        loss.backward()
        t.add(f"loss.{step}", loss)
        if step == 0:
            t.add("loss0", loss)
            t.add("logits0", logits)
            for k, p in model.named_parameters():
                t.add("grad." + k, p.grad)
        opt.step()
    for k, p in model.named_parameters():
        t.add("final." + k, p)
    os.makedirs(os.path.join(out_dir, "roberta"), exist_ok=True)
    write_file(os.path.join(out_dir, "roberta", "roberta_tiny.bin"), [c, t])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", nargs="?")
    ap.add_argument("--committed-only", action="store_true", help="only the committed tokenizer files and golden")
    args = ap.parse_args()
    torch.set_num_threads(1)
    text_dir = os.path.join(ROOT, "tests", "data", "text")
    tok_dir = os.path.join(text_dir, "roberta_bpe")
    vocab_size = train_tokenizer(tok_dir)
    golden, tok = tokenizer_golden(tok_dir)
    with open(os.path.join(text_dir, "roberta_tokenizer_golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print(f"wrote {tok_dir} (vocab {vocab_size}) and roberta_tokenizer_golden.json: {len(golden['cases'])} texts, "
          f"{len(golden['pairs'])} pairs")
    if args.committed_only or not args.out_dir:
        return
    model_goldens(args.out_dir, tok, vocab_size)


if __name__ == "__main__":
    main()
