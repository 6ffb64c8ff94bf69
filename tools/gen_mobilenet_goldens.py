#!/usr/bin/env python3
"""tools/gen_mobilenet_goldens.py - PyTorch goldens for Graft's MobileNetV2/V3 (tests/test_mobilenet.cpp).

Run with the reference environment (Debian's torch 1.13.1 + torchvision 0.14.1):

    source tools/pyenv.sh
    $GRAFT_PYTHON tools/gen_mobilenet_goldens.py            # committed small golden only
    $GRAFT_PYTHON tools/gen_mobilenet_goldens.py OUT_DIR    # only the big files, into OUT_DIR (~70 MB)

Deterministic: fixed seeds, one CPU thread. Golden format: tools/gen_goldens.py (reader tests/golden.hpp).
Reference models: torchvision.models.mobilenet_v2(), mobilenet_v3_small(), mobilenet_v3_large().

Committed, tests/data/mobilenet/mobilenet_keys.bin:
    cases "keys_mobilenet_v2", "keys_mobilenet_v3_small", "keys_mobilenet_v3_large" (the defaults),
    "keys_mobilenet_v2_w140" (width_mult 1.4) and "keys_mobilenet_v3_large_w075" (width_mult 0.75):
    one int64 1-D tensor per state_dict entry, in torch's order: key = the state_dict key, value = its
    shape (empty for 0-dim tensors).

Big, into OUT_DIR (set GRAFT_MODEL_DATA=OUT_DIR for the C++ test):
    <arch>.safetensors       the state dict of torchvision's seeded model (seed 100 + index, arch order
                             mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large), conditioned as below
    <arch>_golden.bin        one case "<arch>": "x" [2, 3, 64, 64], "features" (pooled, [2, 1280 | 576 |
                             960]) and "out" [2, 1000], eval mode, float32
    mobilenet_train.bin      one case "mobilenet_v3_small_train": mobilenet_v3_small.safetensors loaded
                             into mobilenet_v3_small(dropout=0.0), converted to float64, training mode
                             (BatchNorm on batch statistics, running stats updated with momentum 0.01),
                             one forward + backward of loss = sum(logits * w), with the squeeze-
                             excitations' Hardsigmoid given a float64-exact backward (train_case says why):
        "x" [4, 3, 64, 64], "w" [4, 1000]   float64, seeded
        "out" [4, 1000], "loss" []          the training-mode logits and loss
        "grad.<name>"                       every parameter's gradient
        "after.<key>"                       every BatchNorm buffer (running_mean, running_var,
                                            num_batches_tracked) after that forward

Weights. torchvision's init gives a random network whose eval-mode BatchNorms (running mean 0, var 1)
do not normalize, so activations shrink layer by layer and the logits end near 1e-3, where an atol of
1e-5 hides almost any error. So the weights are conditioned like a trained network's: BatchNorm
affine randomized (gen_model_goldens.randomize_norms), then the running statistics measured on a
seeded batch of 8 random images (a training-mode pass with cumulative averaging), floored at variance
0.01 and perturbed (variance x U(0.8, 1.25), mean + 0.1 sd N(0, 1)) so that they differ from any batch's
statistics, and every Linear drawn N(0, 1 / in_features) with bias N(0, 0.1). The floor matters:
measured, a few channels' variance comes out near 1e-5, and dividing by its square root amplifies float32
rounding so much that PyTorch's own float32 logits of mobilenet_v2 missed its float64 logits by 1.3x
the float32 tolerance; with the floor, 0.035x.
"""
import copy
import math
import os
import sys

import torch
import torch.nn as nn
import torchvision
from torchvision.ops import SqueezeExcitation

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402  (the shared writer)
from gen_model_goldens import keys_case, randomize_norms, write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_PATH = os.path.join(ROOT, "tests", "data", "mobilenet", "mobilenet_keys.bin")
ARCHS = ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"]
IMAGE = 64  # every arch takes any size >= 1; 64 leaves 2 x 2 after the stride-32 stem-to-head path
VAR_FLOOR = 0.01

torch.set_num_threads(1)


def build(arch, **kwargs):
    return getattr(torchvision.models, arch)(**kwargs)


def features(model, x):
    """Graft's forward_features: the pooled last conv's activations, before the classifier."""
    return torch.flatten(nn.functional.adaptive_avg_pool2d(model.features(x), 1), 1)


def condition(model, calibration):
    """Trained-network-like weights (see the module text)."""
    randomize_norms(model)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one batch, that batch's statistics
    model.train()
    with torch.no_grad():
        model(calibration)
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
            bn.running_var.clamp_(min=VAR_FLOOR).mul_(torch.empty_like(bn.running_var).uniform_(0.8, 1.25))
            bn.running_mean.add_(bn.running_var.sqrt() * torch.randn_like(bn.running_mean) * 0.1)
            bn.num_batches_tracked.fill_(7)
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 1.0 / math.sqrt(m.in_features))
                m.bias.normal_(0.0, 0.1)
    model.eval()


def eval_case(out_dir, index, arch):
    torch.manual_seed(100 + index)
    model = build(arch)
    condition(model, torch.randn(8, 3, IMAGE, IMAGE))
    x = torch.randn(2, 3, IMAGE, IMAGE)
    with torch.no_grad():
        feats = features(model, x)
        out = model(x)
        out64 = model.double()(x.double())
    model.float()
    c = Case(arch, "model forward (eval)")
    c.add("x", x)
    c.add("features", feats)
    c.add("out", out)
    write_safetensors(os.path.join(out_dir, arch + ".safetensors"), model.state_dict())
    write_file(os.path.join(out_dir, arch + "_golden.bin"), [c])
    print(f"  {arch}: |features| max {feats.abs().max().item():.3g}, |out| max {out.abs().max().item():.3g}, "
          f"PyTorch float32 vs float64 max|diff| {(out.double() - out64).abs().max().item():.3g}")
    return model.state_dict()


class ExactHardsigmoid(nn.Module):
    """relu6(x + 3) / 6, torch's Hardsigmoid with a float64-exact backward (see train_case)."""

    def forward(self, x):
        return nn.functional.relu6(x + 3.0) / 6.0


def train_case(out_dir, state_dict):
    torch.manual_seed(200)
    model = build("mobilenet_v3_small", dropout=0.0)
    model.load_state_dict(state_dict)
    model.double().train()
    x = torch.randn(4, 3, IMAGE, IMAGE, dtype=torch.float64)
    w = torch.randn(4, 1000, dtype=torch.float64)
    # torch 1.13's Hardsigmoid backward multiplies by the float32 constant 1.0f / 6.0f in every dtype:
    # in float64 its gradient is 0.16666667163 instead of 0.16666666667, a relative error of 3e-8
    # (measured: every gradient below the last squeeze-excitation moved by up to 1.4e-9, over
    # kTolF64). The squeeze-excitations' scale_activation is therefore replaced by ExactHardsigmoid,
    # whose forward is the same to the last bit (checked below, on a copy that keeps torch's).
    reference = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, SqueezeExcitation):
            assert isinstance(m.scale_activation, nn.Hardsigmoid)
            m.scale_activation = ExactHardsigmoid()
    out = model(x)
    with torch.no_grad():
        assert torch.equal(out, reference(x)), "ExactHardsigmoid changed the forward"
    loss = (out * w).sum()
    loss.backward()
    c = Case("mobilenet_v3_small_train", "mobilenet_v3_small, float64, training mode: forward + backward")
    c.add("x", x)
    c.add("w", w)
    c.add("out", out)
    c.add("loss", loss)
    for name, p in model.named_parameters():
        c.add("grad." + name, p.grad)
    bn_buffers = ("running_mean", "running_var", "num_batches_tracked")
    for key, t in model.state_dict().items():
        if key.rsplit(".", 1)[-1] in bn_buffers:
            c.add("after." + key, t)
    write_file(os.path.join(out_dir, "mobilenet_train.bin"), [c])
    print(f"  mobilenet_v3_small train (float64): loss {loss.item():.6g}, "
          f"max |grad| {max(p.grad.abs().max().item() for p in model.parameters()):.3g}")


def main():
    if len(sys.argv) == 1:  # only the committed file; with OUT_DIR, only the big files
        os.makedirs(os.path.dirname(SMALL_PATH), exist_ok=True)
        cases = [keys_case("keys_" + arch, build(arch)) for arch in ARCHS]
        cases.append(keys_case("keys_mobilenet_v2_w140", build("mobilenet_v2", width_mult=1.4)))
        cases.append(keys_case("keys_mobilenet_v3_large_w075", build("mobilenet_v3_large", width_mult=0.75)))
        write_file(SMALL_PATH, cases)
        return
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    weights = {arch: eval_case(out_dir, i, arch) for i, arch in enumerate(ARCHS)}
    train_case(out_dir, weights["mobilenet_v3_small"])


if __name__ == "__main__":
    main()
