#!/usr/bin/env python3
"""tools/gen_safetensors_testdata.py - test files for tests/test_io_safetensors.cpp.

Run (needs PyTorch, which the default python3 here lacks, and the `safetensors` package; without
it installed system-wide, `pip install --target DIR safetensors` and put DIR on PYTHONPATH):

    PYTHONPATH=/tmp/st_pkgs /usr/bin/python3 tools/gen_safetensors_testdata.py

Writes, deterministically (fixed seed; the reference file has a single metadata key because the
Rust writer stores metadata in a hash map, whose order would otherwise vary between runs), into
tests/data/safetensors/:

    reference.safetensors   written by safetensors.torch.save_file (the reference implementation):
                            one tensor of each dtype Graft reads (F32 F64 BF16 F16 I32 I64 BOOL),
                            a non-square 3-D tensor, a scalar, a zero-element tensor, and
                            metadata {"format": "pt"}
    reference_expected.bin  the same tensors in the golden format of tests/golden.hpp (one case
                            named "reference", keys = tensor names), read as the expected values
    bad_*.safetensors       crafted invalid files, one per kind of corruption; each is read by the
                            test and must give a graft::Error naming the file and the offset or key
                            (see BAD_FILES below for what each holds)

The bad files are written by the tiny spec writer `raw_file` below (u64 little-endian header length,
header bytes, data bytes), so each corruption is exactly the one intended.
"""
import json
import os
import struct

import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "data", "safetensors")

torch.manual_seed(0)

# ---- the golden-format writer (copied from tools/gen_goldens.py, plus bfloat16 bytes) ---------------
MAGIC = b"GRAFTGLD"
VERSION = 1
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3,
               torch.int32: 4, torch.int64: 5, torch.bool: 6}


def pack_string(s):
    b = s.encode("utf-8")
    return struct.pack("<I", len(b)) + b


def tensor_bytes(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: take the raw 16-bit patterns
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def pack_tensor(key, t):
    out = pack_string(key) + struct.pack("<BB", DTYPE_CODES[t.dtype], t.dim())
    out += b"".join(struct.pack("<q", d) for d in t.shape)
    return out + tensor_bytes(t)


def write_golden(path, case_name, tensors):
    blob = MAGIC + struct.pack("<II", VERSION, 1)
    blob += pack_string(case_name) + pack_string("safetensors") + struct.pack("<I", len(tensors))
    for key, t in tensors.items():
        blob += pack_tensor(key, t)
    with open(path, "wb") as f:
        f.write(blob)


# ---- the reference file --------------------------------------------------------------------------
def reference_tensors():
    return {
        "f32": torch.randn(3, 5),
        "f64": torch.randn(4, 2, dtype=torch.float64),
        "bf16": torch.randn(7).to(torch.bfloat16),
        "f16": torch.randn(2, 3).to(torch.float16),
        "i32": torch.randint(-1000, 1000, (5,), dtype=torch.int32),
        "i64": torch.randint(-2**40, 2**40, (2, 2), dtype=torch.int64),
        "mask": torch.rand(3, 3) > 0.5,
        "block.0.weight": torch.randn(2, 3, 4),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 4),
    }


# ---- crafted bad files -----------------------------------------------------------------------------
def raw_file(header, data=b"", length=None):
    """The spec's layout; `length` overrides the header length field (bytes or int)."""
    h = header.encode("utf-8") if isinstance(header, str) else header
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def hdr(obj):
    return json.dumps(obj, separators=(",", ":"))


F32x2 = struct.pack("<2f", 1.5, -2.0)

BAD_FILES = {
    # 5 bytes: not even the u64 header length
    "bad_truncated_length": b"\x10\x00\x00\x00\x00",
    # header length 1000, file 8 + 2 bytes
    "bad_header_past_end": raw_file("{}", length=1000),
    # header length 200 MB: over the 100 MB limit (the file is tiny)
    "bad_header_too_large": raw_file("{}", length=200_000_000),
    # a doubled comma at file offset 40
    "bad_invalid_json": raw_file('{"a":{"dtype":"F32","shape":[2],,"data_offsets":[0,8]}}', F32x2),
    # dtype "Q4" does not exist
    "bad_unknown_dtype": raw_file(hdr({"a": entry("Q4", [2], 0, 8)}), F32x2),
    # dtype "I8" exists in the format but not in Graft
    "bad_unsupported_dtype": raw_file(hdr({"a": entry("I8", [8], 0, 8)}), F32x2),
    # tensor "a" claims bytes [0, 64) of an 8-byte data section
    "bad_offsets_out_of_range": raw_file(hdr({"a": entry("F32", [16], 0, 64)}), F32x2),
    # "a" is [0, 8), "b" is [4, 12): they share bytes 4..8
    "bad_overlap": raw_file(hdr({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}),
                            F32x2 + struct.pack("<f", 7.0)),
    # bytes [4, 8) belong to no tensor
    "bad_gap": raw_file(hdr({"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)}),
                        F32x2 + struct.pack("<f", 7.0)),
    # 4 bytes after the last tensor
    "bad_trailing_bytes": raw_file(hdr({"a": entry("F32", [1], 0, 4)}), F32x2),
    # shape [3] of F32 needs 12 bytes, data_offsets hold 8
    "bad_shape_size_mismatch": raw_file(hdr({"a": entry("F32", [3], 0, 8)}), F32x2),
    # rank 9 (Graft's limit is 8)
    "bad_absurd_rank": raw_file(hdr({"a": entry("F32", [1] * 8 + [2], 0, 8)}), F32x2),
    # a negative dimension
    "bad_negative_dim": raw_file(hdr({"a": entry("F32", [-2], 0, 8)}), F32x2),
    # 2^40 * 2^40 elements overflow any byte count
    "bad_shape_overflow": raw_file(hdr({"a": entry("F32", [2**40, 2**40], 0, 8)}), F32x2),
    # "__metadata__" value that is not a string
    "bad_metadata_not_string": raw_file(hdr({"__metadata__": {"epoch": 3}, "a": entry("F32", [2], 0, 8)}),
                                        F32x2),
    # 100 nested arrays in the header: past the depth limit of 16
    "bad_deep_nesting": raw_file('{"a":' + "[" * 100 + "]" * 100 + "}"),
    # a BOOL tensor holding byte 2 at data offset 1 (rejected when the tensor is read)
    "bad_bool_value": raw_file(hdr({"m": entry("BOOL", [3], 0, 3)}) + "     ", b"\x01\x02\x00"),
}


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    tensors = reference_tensors()
    save_file(tensors, os.path.join(OUT_DIR, "reference.safetensors"), metadata={"format": "pt"})
    write_golden(os.path.join(OUT_DIR, "reference_expected.bin"), "reference", tensors)
    for name, blob in BAD_FILES.items():
        with open(os.path.join(OUT_DIR, name + ".safetensors"), "wb") as f:
            f.write(blob)
    total = sum(os.path.getsize(os.path.join(OUT_DIR, f)) for f in os.listdir(OUT_DIR))
    print(f"wrote {len(BAD_FILES) + 2} files to {OUT_DIR} ({total} bytes)")


if __name__ == "__main__":
    main()
