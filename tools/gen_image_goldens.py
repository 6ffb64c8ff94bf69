#!/usr/bin/env python3
"""tools/gen_image_goldens.py - test images and torchvision goldens for tests/test_image.cpp.

Two steps (both deterministic: fixed arithmetic patterns, a fixed crop, fixed encoder settings;
rerunning gives identical bytes with the same PIL/libjpeg and torch builds):

    python3 tools/gen_image_goldens.py photo     # needs scikit-image (pip), any python3
        writes tests/data/images/photo.png: a 48x64 crop of skimage.data.chelsea() (a real photo, CC0
        by its photographer per skimage), so the tests see natural texture without a large file.

    /usr/bin/python3 tools/gen_image_goldens.py  # needs torch 1.13 + torchvision 0.14 + PIL
        writes, under tests/data/images/:
          gradient.png  24x32 RGB: smooth ramps, a hard vertical edge and a 1-px checker block
          gradient.bmp  the same pixels as a 24-bit BMP
          gray.png      21x17 grayscale (L): a diagonal edge and a ramp
          rgba.png      10x12 RGBA: colour ramps with a varying alpha
          photo.jpg     photo.png re-encoded as JPEG, quality 90, 4:2:0 chroma subsampling
          bad/*         the crafted bad files, kept as regression tests (see make_bad_files): a text
                        file, an empty file, a PNG cut inside IDAT, a JPEG cut inside its scan, a
                        PNG whose IDAT is not zlib data, a PNG header declaring 100000 x 100000,
                        a JPEG with an oversized Huffman table. bad/fuzz_undefined_huffman.jpg is
                        not written here: it is a libFuzzer finding (tests/fuzz/fuzz_image.cpp, a
                        scan naming an undefined Huffman table) committed as found
          image_golden.bin  goldens in tools/gen_goldens.py's format (reader: tests/golden.hpp)

Golden cases (`name`, `op` = the source image file; keys as in tools/gen_goldens.py):
    decode_<file>        op=<file>   out: ToTensor(PIL.Image.open(file).convert("RGB")), CHW, stored
                         as float16 to halve the file (round(255 * v) recovers the byte exactly)
    resize_<...>         op=<file>   attr_size (1 or 2 ints), optional attr_max_size, out:
                         torchvision.transforms.functional.resize(x, size, BILINEAR, max_size,
                         antialias=True) on the float32 CHW tensor x decoded from the PNG
    center_crop_<...>    op=<file>   attr_size (2 ints), out: F.center_crop(x, size)
    normalize_<...>      op=<file>   attr_mean, attr_std (float64 lists), out: F.normalize(x, mean, std)
    pipeline_<...>       op=<file>   resize(attr_resize) -> center_crop(attr_crop) -> normalize(ImageNet)
Transform goldens start from PNG pixels (decoded identically by PIL and stb_image), so decoder
differences never enter a transform comparison.
"""
import os
import struct
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMG_DIR = os.path.join(ROOT, "tests", "data", "images")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def make_photo():
    import skimage.data
    from PIL import Image
    cat = skimage.data.chelsea()  # 300x451x3 uint8
    crop = cat[60:108:1, 140:204:1]  # 48x64, the cat's face and whiskers
    Image.fromarray(np.ascontiguousarray(crop)).save(os.path.join(IMG_DIR, "photo.png"), optimize=False)
    print("wrote photo.png", crop.shape)


def make_synthetic():
    from PIL import Image
    h, w = 24, 32
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // (w - 1)).astype(np.uint8)
    g = (y * 255 // (h - 1)).astype(np.uint8)
    b = np.where(x < w // 2, 30, 220).astype(np.uint8)  # hard vertical edge
    rgb = np.stack([r, g, b], axis=-1)
    rgb[4:10, 20:28] = np.where(((y[4:10, 20:28] + x[4:10, 20:28]) % 2 == 0)[..., None], 255, 0)  # checker
    Image.fromarray(rgb, "RGB").save(os.path.join(IMG_DIR, "gradient.png"))

    h, w = 21, 17
    y, x = np.mgrid[0:h, 0:w]
    gray = np.where(x * 3 > y * 2 + 5, (x * 15) % 256, 200 - y * 7).astype(np.uint8)
    Image.fromarray(gray, "L").save(os.path.join(IMG_DIR, "gray.png"))

    h, w = 10, 12
    y, x = np.mgrid[0:h, 0:w]
    rgba = np.stack([x * 20, y * 25, (x * y) % 256, 255 - x * 18], axis=-1).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(os.path.join(IMG_DIR, "rgba.png"))

    Image.fromarray(rgb, "RGB").save(os.path.join(IMG_DIR, "gradient.bmp"))

    photo = Image.open(os.path.join(IMG_DIR, "photo.png")).convert("RGB")
    photo.save(os.path.join(IMG_DIR, "photo.jpg"), quality=90, subsampling=2)


def png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def make_bad_files():
    bad = os.path.join(IMG_DIR, "bad")
    os.makedirs(bad, exist_ok=True)
    with open(os.path.join(bad, "not_an_image.txt"), "wb") as f:
        f.write(b"This is a text file, not an image.\nGraft must say so rather than decode it.\n")
    with open(os.path.join(bad, "empty.png"), "wb") as f:
        pass
    png = open(os.path.join(IMG_DIR, "gradient.png"), "rb").read()
    with open(os.path.join(bad, "truncated.png"), "wb") as f:
        f.write(png[: len(png) // 2])
    jpg = open(os.path.join(IMG_DIR, "photo.jpg"), "rb").read()
    with open(os.path.join(bad, "truncated.jpg"), "wb") as f:
        f.write(jpg[: len(jpg) * 2 // 3])
    # A JPEG whose first Huffman table declares 16 * 255 codes: Debian's stb_image 2.27 would write
    # past its 257-byte table (found by tests/test_image.cpp's corruption test under UBSan).
    dht = jpg.index(b"\xff\xc4")
    with open(os.path.join(bad, "dht_overflow.jpg"), "wb") as f:
        f.write(jpg[:dht + 5] + b"\xff" * 16 + jpg[dht + 21:])
    # Intact chunk structure, but the IDAT payload is not a zlib stream: stb_image's own error.
    ihdr_end = 8 + 12 + 13
    idat_len = struct.unpack(">I", png[ihdr_end:ihdr_end + 4])[0]
    assert png[ihdr_end + 4:ihdr_end + 8] == b"IDAT"
    garbage = bytes((i * 37 + 11) % 256 for i in range(idat_len))
    with open(os.path.join(bad, "corrupt_zlib.png"), "wb") as f:
        f.write(png[:ihdr_end] + png_chunk(b"IDAT", garbage) + png[ihdr_end + 12 + idat_len:])
    # A valid PNG header claiming 100000 x 100000 pixels (40 GB of RGBA): must be refused before
    # any allocation.
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    huge = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    with open(os.path.join(bad, "huge_dims.png"), "wb") as f:
        f.write(huge)


def make_goldens():
    import torch
    import torchvision.transforms.functional as F
    from PIL import Image
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from gen_goldens import Case, write_file  # the shared writer (format documented there)

    torch.set_num_threads(1)

    def load(name):
        return F.to_tensor(Image.open(os.path.join(IMG_DIR, name)).convert("RGB")).contiguous()

    def ints(v):
        return torch.tensor(v, dtype=torch.int64)

    cases = []
    for name in ["gradient.png", "gradient.bmp", "gray.png", "rgba.png", "photo.png", "photo.jpg"]:
        c = Case("decode_" + name, name)
        c.add("out", load(name).half())  # k/255 survives float16 exactly enough to recover k
        cases.append(c)

    resizes = [  # (file, size, max_size)
        ("photo.png", [24], None),        # shorter side, downscale by 2
        ("photo.png", [37, 29], None),    # non-integer downscale factors
        ("photo.png", [20], 30),          # max_size caps the longer side
        ("gradient.png", [37, 45], None), # upscale, non-integer factors
        ("gradient.png", [40, 13], None), # up in H, down in W
        ("gradient.png", [7], None),      # strong downscale (support > 4 pixels)
        ("gray.png", [30], None),         # shorter side up (W is shorter)
    ]
    for fname, size, max_size in resizes:
        x = load(fname)
        tag = "x".join(map(str, size)) + (f"_max{max_size}" if max_size else "")
        c = Case(f"resize_{fname}_{tag}", fname)
        c.add("attr_size", ints(size))
        if max_size:
            c.add("attr_max_size", ints(max_size))
        c.add("out", F.resize(x, size, F.InterpolationMode.BILINEAR, max_size=max_size, antialias=True))
        cases.append(c)

    crops = [("photo.png", [31, 40]), ("gradient.png", [23, 31]), ("gradient.png", [24, 32]),
             ("gradient.png", [21, 29]), ("gray.png", [25, 20]), ("gray.png", [10, 30])]
    for fname, size in crops:
        c = Case(f"center_crop_{fname}_{size[0]}x{size[1]}", fname)
        c.add("attr_size", ints(size))
        c.add("out", F.center_crop(load(fname), size))
        cases.append(c)

    c = Case("normalize_gradient.png", "gradient.png")
    c.add("attr_mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float64))
    c.add("attr_std", torch.tensor(IMAGENET_STD, dtype=torch.float64))
    c.add("out", F.normalize(load("gradient.png"), IMAGENET_MEAN, IMAGENET_STD))
    cases.append(c)

    for fname, rs, cs in [("photo.png", 36, 32), ("rgba.png", 16, 14)]:
        c = Case(f"pipeline_{fname}", fname)
        c.add("attr_resize", ints([rs]))
        c.add("attr_crop", ints([cs, cs]))
        y = F.resize(load(fname), [rs], F.InterpolationMode.BILINEAR, antialias=True)
        c.add("out", F.normalize(F.center_crop(y, [cs, cs]), IMAGENET_MEAN, IMAGENET_STD))
        cases.append(c)

    write_file(os.path.join(IMG_DIR, "image_golden.bin"), cases)


if __name__ == "__main__":
    os.makedirs(IMG_DIR, exist_ok=True)
    if sys.argv[1:] == ["photo"]:
        make_photo()
    else:
        make_synthetic()
        make_bad_files()
        make_goldens()
