#!/usr/bin/env python3
"""tools/gen_torch_testdata.py - tiny PyTorch checkpoints for tests/test_io_torch.cpp.

Run (needs PyTorch 1.13, which is /usr/bin/python3 here):

    /usr/bin/python3 tools/gen_torch_testdata.py

Deterministic: fixed seed, one thread, and torch.save's zip writer stores no timestamps, so two runs
give identical bytes. Writes into tests/data/torch/:

  Good checkpoints, each written by torch.save (torch 1.13: the archive directory is the file stem):
    state_dict.pth   Sequential(Conv2d(3,2,3), BatchNorm2d(2), ReLU, Flatten, Linear(8,3)).state_dict()
                     after one training-mode forward (float32 + int64 num_batches_tracked)
    dtypes.pth       {"f64": float64, "f16": float16, "bf16": bfloat16, "i32": int32, "i64": int64,
                      "flag": bool, "scalar": 0-dim float32}
    views.pth        {"base": x (3x4), "t": x.t() (same storage, strides (1,4)), "row": x[1] (offset 4),
                      "col": x[:, 2] (offset 2, stride 4), "alone_t": y.t() (only a transpose saved)}
    module.pth       torch.save(model): the whole pickled nn.Sequential (same model as state_dict.pth)
    legacy_views.pth, legacy_module.pth   views.pth's dict and the trained model (nested.pth's weights)
                     saved with _use_new_zipfile_serialization=False: torch's legacy (pre-1.6) format
    nested.pth       {"epoch": 3, "arch": "tiny", "best": 0.5, "state_dict": ..., "optimizer": SGD state}
  expected.bin     one golden case per good checkpoint (tests/golden.hpp format): the tensors in the
                   order load_torch_checkpoint must return them, keyed by their names, contiguous.
  Crafted bad files (regression tests and fuzz seeds):
    bad_truncated.pth          state_dict.pth cut in half (no end-of-central-directory record)
    bad_cd_offset.pth          central directory offset (EOCD and ZIP64 record) set past the end
    bad_entry_size.pth         the central-directory size of data/0 set to 0x7fffff00
    bad_opcode.pth             a data.pkl with INST ('i', unsupported) at byte offset 2
    bad_memo.pth               a data.pkl with BINGET 7 before any BINPUT
    bad_underflow.pth          a data.pkl with EMPTY_TUPLE REDUCE (REDUCE needs two values)
    bad_storage_small.pth      {"w": a view of size 9 over a 4-element storage}
    bad_dtype.pth              torch.save({"u8": uint8 tensor}): a ByteStorage, which Graft lacks
    bad_no_state_dict.pth      torch.save({"epoch": 3, "arch": "tiny"}): no tensors anywhere
  The crafted pickles are stored with Python's zipfile (STORED) under "archive/", which also covers
  the non-ZIP64 archive layout.
"""
import io
import os
import struct
import zipfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "torch")

# ---- golden writer (format of tests/golden.hpp; copied from tools/gen_goldens.py, plus bfloat16) ----
MAGIC = b"GRAFTGLD"
VERSION = 1
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3,
               torch.int32: 4, torch.int64: 5, torch.bool: 6}


def pack_string(s):
    b = s.encode("utf-8")
    return struct.pack("<I", len(b)) + b


def pack_tensor(key, t):
    t = t.detach().contiguous()
    out = pack_string(key) + struct.pack("<BB", DTYPE_CODES[t.dtype], t.dim())
    out += b"".join(struct.pack("<q", d) for d in t.shape)
    raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t  # numpy has no bfloat16
    return out + raw.numpy().tobytes()


def write_golden(path, cases):
    blob = MAGIC + struct.pack("<II", VERSION, len(cases))
    for name, tensors in cases:
        blob += pack_string(name) + pack_string("torch_checkpoint") + struct.pack("<I", len(tensors))
        for key, t in tensors:
            blob += pack_tensor(key, t)
    with open(path, "wb") as f:
        f.write(blob)
    print(f"wrote {path}: {len(cases)} cases, {len(blob)} bytes")


# ---- good checkpoints ---------------------------------------------------------------------------
def save(name, obj):
    path = os.path.join(OUT, name)
    torch.save(obj, path)
    print(f"wrote {path}: {os.path.getsize(path)} bytes")
    return path


def make_model():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(8, 3))
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 4, 4))  # moves the running stats and num_batches_tracked off their init
    return model


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    cases = []

    model = make_model()
    sd = {k: v.clone() for k, v in model.state_dict().items()}  # a snapshot: training below changes the model
    save("state_dict.pth", model.state_dict())
    cases.append(("state_dict.pth", list(sd.items())))

    dt = {"f64": torch.randn(3, 2, dtype=torch.float64),
          "f16": torch.randn(5).half(),
          "bf16": torch.randn(2, 3).bfloat16(),
          "i32": torch.randint(-1000, 1000, (4,), dtype=torch.int32),
          "i64": torch.tensor([-(2 ** 40), 7, 2 ** 50], dtype=torch.int64),
          "flag": torch.tensor([True, False, True]),
          "scalar": torch.tensor(2.5)}
    save("dtypes.pth", dt)
    cases.append(("dtypes.pth", list(dt.items())))

    x = torch.randn(3, 4)
    y = torch.randn(2, 5)
    views = {"base": x, "t": x.t(), "row": x[1], "col": x[:, 2], "alone_t": y.t()}
    save("views.pth", views)
    cases.append(("views.pth", list(views.items())))

    save("module.pth", model)
    cases.append(("module.pth", list(sd.items())))

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 4, 4)).sum().backward()
    opt.step()
    sd2 = {k: v.clone() for k, v in model.state_dict().items()}
    nested = {"epoch": 3, "arch": "tiny", "best": 0.5, "state_dict": model.state_dict(),
              "optimizer": opt.state_dict()}
    save("nested.pth", nested)
    cases.append(("nested.pth", list(sd2.items())))

    # The legacy (pre-1.6, non-zip) format: pickles back to back, then the raw storages.
    path = os.path.join(OUT, "legacy_views.pth")
    torch.save(views, path, _use_new_zipfile_serialization=False)
    print(f"wrote {path}: {os.path.getsize(path)} bytes")
    cases.append(("legacy_views.pth", list(views.items())))
    path = os.path.join(OUT, "legacy_module.pth")
    torch.save(model, path, _use_new_zipfile_serialization=False)
    print(f"wrote {path}: {os.path.getsize(path)} bytes")
    cases.append(("legacy_module.pth", list(sd2.items())))

    write_golden(os.path.join(OUT, "expected.bin"), cases)
    write_bad_files()


# ---- crafted bad files --------------------------------------------------------------------------
def write_bytes(name, blob):
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(blob)
    print(f"wrote {path}: {len(blob)} bytes")


def stored_zip(entries):
    """A zip (STORED, fixed timestamps) of {name: bytes} under archive/."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries.items():
            info = zipfile.ZipInfo("archive/" + name, date_time=(2020, 1, 1, 0, 0, 0))
            z.writestr(info, data)
    return buf.getvalue()


def torch_pickle_of(obj):
    """(data.pkl bytes, {key: storage bytes}) as torch.save writes them."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    prefix = z.namelist()[0].split("/")[0]
    pkl = z.read(prefix + "/data.pkl")
    data = {n[len(prefix) + 6:]: z.read(n) for n in z.namelist() if n.startswith(prefix + "/data/")}
    return pkl, data


def write_bad_files():
    good = open(os.path.join(OUT, "state_dict.pth"), "rb").read()
    write_bytes("bad_truncated.pth", good[: len(good) // 2])

    # Central directory offset: the EOCD (offset 16) and the ZIP64 record (offset 48) both point past
    # the end of the file.
    blob = bytearray(good)
    eocd = blob.rfind(b"PK\x05\x06")
    z64 = blob.rfind(b"PK\x06\x06")
    assert eocd > 0 and z64 > 0
    struct.pack_into("<I", blob, eocd + 16, 0x7FFFFFF0)
    struct.pack_into("<Q", blob, z64 + 48, 0x7FFFFFF0)
    write_bytes("bad_cd_offset.pth", bytes(blob))

    # Entry size past the end: both sizes of the central-directory record of state_dict/data/0.
    blob = bytearray(good)
    name = b"state_dict/data/0"
    p = blob.find(b"PK\x01\x02")
    while True:
        n = struct.unpack_from("<H", blob, p + 28)[0]
        if bytes(blob[p + 46:p + 46 + n]) == name:
            break
        p = blob.find(b"PK\x01\x02", p + 4)
        assert p > 0
    struct.pack_into("<II", blob, p + 20, 0x7FFFFF00, 0x7FFFFF00)
    write_bytes("bad_entry_size.pth", bytes(blob))

    # Pickles: INST at offset 2 (unsupported), BINGET 7 of an empty memo, REDUCE on a 1-deep stack.
    write_bytes("bad_opcode.pth", stored_zip({"data.pkl": b"\x80\x02i__main__\nX\n.", "version": b"3\n"}))
    write_bytes("bad_memo.pth", stored_zip({"data.pkl": b"\x80\x02h\x07.", "version": b"3\n"}))
    write_bytes("bad_underflow.pth", stored_zip({"data.pkl": b"\x80\x02)R.", "version": b"3\n"}))

    # Storage too small: save {"w": arange(4)}, then make the saved size 9 (BININT1 4 TUPLE1 -> 9).
    pkl, data = torch_pickle_of({"w": torch.arange(4, dtype=torch.float32)})
    assert pkl.count(b"K\x04\x85") == 1, pkl
    pkl = pkl.replace(b"K\x04\x85", b"K\x09\x85")
    entries = {"data.pkl": pkl, "version": b"3\n"}
    entries.update({"data/" + k: v for k, v in data.items()})
    write_bytes("bad_storage_small.pth", stored_zip(entries))

    save("bad_dtype.pth", {"u8": torch.arange(3, dtype=torch.uint8)})
    save("bad_no_state_dict.pth", {"epoch": 3, "arch": "tiny"})


if __name__ == "__main__":
    main()
