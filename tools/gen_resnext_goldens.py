#!/usr/bin/env python3
"""tools/gen_resnext_goldens.py - PyTorch goldens for the grouped and widened ResNets (tests/test_resnext.cpp).

Run in the reference environment (tools/pyenv.sh: torch 1.13.1, torchvision 0.14.1):

    $GRAFT_PYTHON tools/gen_resnext_goldens.py            # the committed keys file only
    $GRAFT_PYTHON tools/gen_resnext_goldens.py OUT_DIR    # only the big files, into OUT_DIR (~100 MB)

Deterministic: fixed seeds, one CPU thread. Format: tools/gen_goldens.py (reader tests/golden.hpp).

Committed, tests/data/models/resnext_keys.bin: case "keys_<arch>" for resnet152, resnext50_32x4d,
resnext101_32x8d, resnext101_64x4d, wide_resnet50_2, wide_resnet101_2: one int64 1-D tensor per
state_dict entry (key = the key, value = the shape), in torch's order.

Big, into OUT_DIR:
    resnext50_32x4d.safetensors + resnext50_32x4d_golden.bin: torchvision's seeded init with random
        BatchNorm statistics and affine (gen_model_goldens.randomize_norms); case "resnext50_32x4d":
        "x" [2, 3, 64, 64], eval-mode "features" [2, 2048] and "out" [2, 1000].
    resnext_small_train.bin (~30 MB): case "resnext_small": ResNet(Bottleneck, [1, 1, 1, 1], groups 4,
        width_per_group 8, 10 classes) in float64, training mode (batch statistics): "sd.<key>" its
        state dict, "x" [2, 3, 32, 32], "w" [2, 10], "loss" = sum(out * w), "grad.<name>" for the
        parameters in GRAD_NAMES, "running.<key>" the BatchNorm running statistics after the step.
"""
import os
import sys

import torch
import torchvision
from torchvision.models.resnet import Bottleneck, ResNet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402  (the shared writer)
from gen_model_goldens import keys_case, randomize_norms, write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS_PATH = os.path.join(ROOT, "tests", "data", "models", "resnext_keys.bin")

torch.set_num_threads(1)

ARCHS = ["resnet152", "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
         "wide_resnet101_2"]


GRAD_NAMES = ["conv1.weight", "bn1.weight", "layer1.0.conv2.weight", "layer2.0.conv2.weight", "layer3.0.bn2.bias",
              "layer4.0.conv2.weight", "layer4.0.conv3.weight", "fc.weight", "fc.bias"]


def eval_case(name, model, x):
    model.eval()
    with torch.no_grad():
        m = model
        y = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        y = m.layer4(m.layer3(m.layer2(m.layer1(y))))
        feats = torch.flatten(m.avgpool(y), 1)
        out = model(x)
    c = Case(name, "model forward (eval)")
    c.add("x", x)
    c.add("features", feats)
    c.add("out", out)
    return c


def train_case():
    torch.manual_seed(7)
    model = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10, groups=4, width_per_group=8).double()
    randomize_norms(model)
    c = Case("resnext_small", "one training-mode forward and backward (float64)")
    for k, t in model.state_dict().items():
        c.add("sd." + k, t.clone())
    model.train()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    w = torch.randn(2, 10, dtype=torch.float64)
    loss = (model(x) * w).sum()
    loss.backward()
    c.add("x", x)
    c.add("w", w)
    c.add("loss", loss.detach())
    params = dict(model.named_parameters())
    for k in GRAD_NAMES:
        c.add("grad." + k, params[k].grad)
    for k, t in model.state_dict().items():
        if "running_" in k:
            c.add("running." + k, t)
    return c


def main():
    if len(sys.argv) == 1:
        torch.manual_seed(0)
        write_file(KEYS_PATH, [keys_case("keys_" + a, getattr(torchvision.models, a)()) for a in ARCHS])
        return
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(200)
    model = torchvision.models.resnext50_32x4d()
    randomize_norms(model)
    x = torch.randn(2, 3, 64, 64)
    write_safetensors(os.path.join(out_dir, "resnext50_32x4d.safetensors"), model.state_dict())
    write_file(os.path.join(out_dir, "resnext50_32x4d_golden.bin"), [eval_case("resnext50_32x4d", model, x)])
    write_file(os.path.join(out_dir, "resnext_small_train.bin"), [train_case()])


if __name__ == "__main__":
    main()
