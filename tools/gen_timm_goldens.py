#!/usr/bin/env python3
"""tools/gen_timm_goldens.py - goldens of the real timm package (0.9.16, pinned in
tools/requirements-reference.txt) for Graft's timm-named models (tests/test_timm_models.cpp):
timm/resnet18/34/50/101, timm/resnet18d/34d/50d, timm/convnext_tiny/small, timm/efficientnet_b0.

Run with the reference environment:

    source tools/pyenv.sh
    $GRAFT_PYTHON tools/gen_timm_goldens.py            # committed small golden only
    $GRAFT_PYTHON tools/gen_timm_goldens.py OUT_DIR    # only the big files, into OUT_DIR (~300 MB)

Deterministic: fixed seeds, one CPU thread. Golden format: tools/gen_goldens.py (reader tests/golden.hpp).
Every model is timm.create_model(name) (its defaults: drop_rate 0, drop_path_rate 0) unless said.

Committed, tests/data/timm/timm_keys.bin:
    cases "keys_<name>" for the ten names above: one int64 1-D tensor per state_dict entry, in torch's
        order: key = the state_dict key, value = its shape (empty for 0-dim tensors).
    cases "drop_path_<name>": "p" float64 [blocks], every block's stochastic depth rate in module order
        (0 where timm has no DropPath), for resnet50d (drop_path_rate 0.05), convnext_tiny (0.1) and
        efficientnet_b0 (0.2).

Big, into OUT_DIR (set GRAFT_MODEL_DATA=OUT_DIR for the C++ test):
    timm_<name>.safetensors      seeded timm init, then every BatchNorm's affine and running statistics,
                                 every LayerNorm's affine, ConvNeXt's gamma and every conv / linear bias
                                 randomized (so every name matters), float32; for resnet50d,
                                 convnext_tiny and efficientnet_b0 (seeds 200, 201, 202)
    timm_<name>_golden.bin       one case <name>, eval mode, float32: "x" [2, 3, S, S] (S = 66, 64, 72:
                                 odd map sizes where the model rounds), "features" [2, F] (Graft's
                                 forward_features: timm's forward_head(forward_features(x), pre_logits=True)),
                                 "out" [2, 1000], "inter.<stage>" each of Graft's feature stages
                                 (resnet: stem, layer1..4; convnext: stem, stages.0..3; efficientnet:
                                 bn1, blocks.0..6, bn2)
    timm_train.bin               three cases, training mode, float64, loss = sum(out * w):
        "resnet_train"           timm ResNet(BasicBlock, [1, 1, 1, 1], stem_width 32, stem_type 'deep',
                                 avg_down, 10 classes); its weights, randomized as above, drawn in float32
                                 and stored as such ("sd.<key>"; the float64 model is their exact copy),
                                 x [2, 3, 36, 36] (avg pools with ceil_mode on odd maps)
        "convnext_train"         timm ConvNeXt(depths (1, 2, 1, 1), dims (16, 32, 48, 64), 10 classes),
                                 x [2, 3, 32, 32]; "sd.<key>" float64
        "efficientnet_train"     timm _gen_efficientnet(channel_multiplier 0.25, depth_multiplier 0.25,
                                 10 classes), x [2, 3, 40, 40]; "sd.<key>" float64
        each: "x", "w" [2, 10], "out" [2, 10], "loss" [], "grad.<name>" every parameter's gradient,
        "after.<key>" every BatchNorm buffer after the forward (running stats updated in training mode)
"""
import os
import sys

import timm
import torch
import torch.nn as nn
from timm.layers import DropPath
from timm.models.convnext import ConvNeXt, ConvNeXtBlock
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from timm.models.efficientnet import _gen_efficientnet
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402  (the shared writer)
from gen_model_goldens import keys_case, randomize_norms, write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_PATH = os.path.join(ROOT, "tests", "data", "timm", "timm_keys.bin")
NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet18d", "resnet34d", "resnet50d",
         "convnext_tiny", "convnext_small", "efficientnet_b0"]

torch.set_num_threads(1)
assert timm.__version__ == "0.9.16", f"expected timm 0.9.16 (tools/requirements-reference.txt), got {timm.__version__}"


def randomize(model):
    """BatchNorm / LayerNorm affine and statistics (randomize_norms), gamma and every bias random."""
    randomize_norms(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ConvNeXtBlock):
                m.gamma.uniform_(0.5, 1.5)
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.normal_(0.0, 0.05)


def stages_of(name, model):
    """Graft's feature stages of a timm model, in order: (name, module or function)."""
    if name.startswith("resnet"):
        return [("stem", lambda x: model.maxpool(model.act1(model.bn1(model.conv1(x)))))] + \
               [(f"layer{i}", getattr(model, f"layer{i}")) for i in range(1, 5)]
    if name.startswith("convnext"):
        return [("stem", model.stem)] + [(f"stages.{i}", s) for i, s in enumerate(model.stages)]
    return [("bn1", lambda x: model.bn1(model.conv_stem(x)))] + \
           [(f"blocks.{i}", b) for i, b in enumerate(model.blocks)] + \
           [("bn2", lambda x: model.bn2(model.conv_head(x)))]


def drop_path_case(name, **kwargs):
    model = timm.create_model(name, **kwargs)
    blocks = (BasicBlock, Bottleneck, ConvNeXtBlock, DepthwiseSeparableConv, InvertedResidual)
    p = [m.drop_path.drop_prob if isinstance(m.drop_path, DropPath) else 0.0
         for m in model.modules() if isinstance(m, blocks)]
    c = Case("drop_path_" + name, "stochastic depth rate of every block")
    c.add("p", torch.tensor(p, dtype=torch.float64))
    return c


def random_arch(out_dir, name, seed, side):
    torch.manual_seed(seed)
    model = timm.create_model(name)
    randomize(model)
    model.eval()
    x = torch.randn(2, 3, side, side)
    c = Case(name, "timm model forward (eval)")
    c.add("x", x)
    with torch.no_grad():
        c.add("features", model.forward_head(model.forward_features(x), pre_logits=True))
        out = model(x)
        c.add("out", out)
        y = x
        for stage, fn in stages_of(name, model):
            y = fn(y)
            c.add("inter." + stage, y)
    write_safetensors(os.path.join(out_dir, f"timm_{name}.safetensors"), model.state_dict())
    write_file(os.path.join(out_dir, f"timm_{name}_golden.bin"), [c])
    print(f"  {name}: |out| max {out.abs().max().item():.3g}, std {out.std().item():.3g}")


def train_case(name, model, x_shape, float32_weights=False):
    randomize(model)
    c = Case(name, "timm model forward + backward in training mode (float64)")
    for k, t in model.state_dict().items():
        c.add("sd." + k, t if float32_weights else t.double() if t.is_floating_point() else t)
    model.double().train()
    x = torch.randn(*x_shape, dtype=torch.float64)
    w = torch.randn(x_shape[0], 10, dtype=torch.float64)
    out = model(x)
    loss = (out * w).sum()
    loss.backward()
    c.add("x", x)
    c.add("w", w)
    c.add("out", out.detach())
    c.add("loss", loss.detach())
    for n, p in model.named_parameters():
        c.add("grad." + n, p.grad)
    for k, t in model.state_dict().items():
        if "running_" in k or "num_batches_tracked" in k:
            c.add("after." + k, t)
    print(f"  {name} (float64): loss {loss.item():.6g}, "
          f"max |grad| {max(p.grad.abs().max().item() for p in model.parameters()):.3g}")
    return c


def train_cases(out_dir):
    torch.manual_seed(300)
    resnet = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10, stem_width=32, stem_type="deep", avg_down=True)
    torch.manual_seed(301)
    convnext = ConvNeXt(depths=(1, 2, 1, 1), dims=(16, 32, 48, 64), num_classes=10)
    torch.manual_seed(302)
    effnet = _gen_efficientnet("efficientnet_b0", channel_multiplier=0.25, depth_multiplier=0.25, num_classes=10)
    cases = [train_case("resnet_train", resnet, (2, 3, 36, 36), float32_weights=True),
             train_case("convnext_train", convnext, (2, 3, 32, 32)),
             train_case("efficientnet_train", effnet, (2, 3, 40, 40))]
    write_file(os.path.join(out_dir, "timm_train.bin"), cases)


def main():
    if len(sys.argv) == 1:  # only the committed file; with OUT_DIR, only the big files
        cases = [keys_case("keys_" + n, timm.create_model(n)) for n in NAMES]
        cases += [drop_path_case("resnet50d", drop_path_rate=0.05),
                  drop_path_case("convnext_tiny", drop_path_rate=0.1),
                  drop_path_case("efficientnet_b0", drop_path_rate=0.2)]
        os.makedirs(os.path.dirname(SMALL_PATH), exist_ok=True)
        write_file(SMALL_PATH, cases)
        return
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    random_arch(out_dir, "resnet50d", 200, 66)
    random_arch(out_dir, "convnext_tiny", 201, 64)
    random_arch(out_dir, "efficientnet_b0", 202, 72)
    train_cases(out_dir)


if __name__ == "__main__":
    main()
