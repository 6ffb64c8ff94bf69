#!/usr/bin/env python3
"""tools/gen_regnet_goldens.py - PyTorch goldens for Graft's RegNet (tests/test_regnet.cpp).

Run with the reference environment (Debian's torch 1.13.1 + torchvision 0.14.1):

    source tools/pyenv.sh
    $GRAFT_PYTHON tools/gen_regnet_goldens.py            # committed small golden only
    $GRAFT_PYTHON tools/gen_regnet_goldens.py OUT_DIR    # only the big files, into OUT_DIR (~40 MB)

Deterministic: fixed seeds, one CPU thread. Golden format: tools/gen_goldens.py (reader tests/golden.hpp).
Reference: torchvision.models.regnet (the regnet_x_* / regnet_y_* builders, RegNet(BlockParams) for the
custom configurations below).

Committed, tests/data/regnet/regnet_keys.bin:
    cases "keys_<arch>" for the archs of KEY_ARCHS (the registered ones) and the custom configurations
        of CUSTOM but micro (keys_custom_<name>, 1000 classes; micro's keys are its "sd." tensors
        below): one int64 1-D tensor per state_dict entry, in torch's order:
        key = the state_dict key, value = its shape (empty for 0-dim tensors).
    cases "block_params_<arch>" for every torchvision RegNet (ALL_ARCHS): "init" float64 [7] (depth,
        w_0, w_a, w_m, group_width, bottleneck_multiplier, se_ratio; se_ratio 0 = none) and
        BlockParams.from_init_params's "depths", "widths", "group_widths", "strides" (int64 [stages]).
    case "block_params_random": RANDOM_CONFIGS seeded random settings, k = 0, 1, ...: "init.<k>" as
        above, "depths.<k>", "widths.<k>", "group_widths.<k>". The settings whose widths a float64
        evaluation of from_init_params gets wrong (torchvision computes them in float32) come first,
        then the others; every one builds a valid RegNet (each stage's bottleneck width divisible by
        its group count).
    case "regnet_micro": RegNet(BlockParams.from_init_params(**MICRO), stem_width 8, num_classes 5),
        conditioned as below, eval mode: "sd.<key>" its state dict (float32), "x" [2, 3, 24, 20],
        "features" [2, C] (pooled trunk), "out" [2, 5].

Big, into OUT_DIR (set GRAFT_MODEL_DATA=OUT_DIR for the C++ test):
    <arch>.safetensors       regnet_y_400mf / regnet_x_400mf, seeded (100 / 101), conditioned as below
    <arch>_golden.bin        one case "<arch>", eval mode, float32: "x" [2, 3, 64, 64], "features"
                             (pooled, [2, 440 | 400]), "out" [2, 1000], "inter.stem" and
                             "inter.trunk_output.block<i>" (i = 1..4) the maps after each stage
    regnet_train.bin         one case "regnet_mini_train": RegNet(BlockParams.from_init_params(**MINI),
                             stem_width 16, num_classes 10), conditioned, float64, training mode
                             (BatchNorm on batch statistics, running stats updated with momentum 0.1):
        "sd.<key>"                          its state dict before the step (float64)
        "x" [4, 3, 32, 32], "w" [4, 10]     float64, seeded
        "out" [4, 10], "loss" []            training-mode logits and loss = sum(out * w)
        "grad.<name>"                       every parameter's gradient
        "after.<key>"                       every BatchNorm buffer after that forward

Weights. torchvision's init gives a random network whose eval-mode BatchNorms (running mean 0, var 1)
do not normalize, so activations drift layer by layer. As tools/gen_mobilenet_goldens.py does, the
weights are conditioned like a trained network's: BatchNorm affine randomized
(gen_model_goldens.randomize_norms), running statistics measured on a seeded calibration batch
(training-mode pass, cumulative average), the variance floored at VAR_FLOOR = 0.1 and both perturbed
(variance x U(0.8, 1.25), mean + 0.1 sd N(0, 1)) so they differ from any batch's statistics; fc drawn
N(0, 1 / in) with bias N(0, 0.1). The squeeze-excitations' fc1 / fc2 keep torch's default (random,
non-zero) biases. The floor is higher than mobilenet's 0.01: under torchvision's fan_out init a grouped
3x3 conv's output has about 2 group_width / w_b of its input's variance, so many channels measure
below 0.01, and dividing by the square root of such a variance amplifies float32 rounding. Measured
(seeds as below, 64 x 64): with the floor at 0.01 PyTorch's own float32 logits of regnet_x_400mf missed
its float64 logits by 3.3x the float32 tolerance (|diff| <= 1e-5 + 1e-4 |ref|); at 0.1, 0.09x.
"""
import math
import os
import random
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision
from torchvision.models.regnet import BlockParams, RegNet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402  (the shared writer)
from gen_model_goldens import keys_case, randomize_norms, write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_PATH = os.path.join(ROOT, "tests", "data", "regnet", "regnet_keys.bin")
VAR_FLOOR = 0.1
RANDOM_CONFIGS = 120

# torchvision 0.14.1's regnet.py, builder by builder (depth, w_0, w_a, w_m, group_width, se_ratio).
ALL_ARCHS = {
    "regnet_y_400mf": (16, 48, 27.89, 2.09, 8, 0.25),
    "regnet_y_800mf": (14, 56, 38.84, 2.4, 16, 0.25),
    "regnet_y_1_6gf": (27, 48, 20.71, 2.65, 24, 0.25),
    "regnet_y_3_2gf": (21, 80, 42.63, 2.66, 24, 0.25),
    "regnet_y_8gf": (17, 192, 76.82, 2.19, 56, 0.25),
    "regnet_y_16gf": (18, 200, 106.23, 2.48, 112, 0.25),
    "regnet_y_32gf": (20, 232, 115.89, 2.53, 232, 0.25),
    "regnet_y_128gf": (27, 456, 160.83, 2.52, 264, 0.25),
    "regnet_x_400mf": (22, 24, 24.48, 2.54, 16, None),
    "regnet_x_800mf": (16, 56, 35.73, 2.28, 16, None),
    "regnet_x_1_6gf": (18, 80, 34.01, 2.25, 24, None),
    "regnet_x_3_2gf": (25, 88, 26.31, 2.25, 48, None),
    "regnet_x_8gf": (23, 80, 49.56, 2.88, 120, None),
    "regnet_x_16gf": (22, 216, 55.59, 2.1, 128, None),
    "regnet_x_32gf": (23, 320, 69.86, 2.0, 168, None),
}
KEY_ARCHS = ["regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf",
             "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf"]
# Small custom settings (from_init_params keywords) and stem widths, keys compared in C++.
MICRO = dict(depth=3, w_0=8, w_a=8.0, w_m=2.0, group_width=8, bottleneck_multiplier=0.5, se_ratio=0.25)
MINI = dict(depth=5, w_0=16, w_a=12.0, w_m=1.8, group_width=8, se_ratio=0.25)
CUSTOM = {
    "micro": (MICRO, 8),
    "mini": (MINI, 16),
    "x_bm2": (dict(depth=6, w_0=24, w_a=20.0, w_m=2.2, group_width=16, bottleneck_multiplier=2.0), 24),
    "y_bm075": (dict(depth=7, w_0=32, w_a=17.5, w_m=2.4, group_width=12, bottleneck_multiplier=0.75,
                     se_ratio=0.3), 16),
}

torch.set_num_threads(1)


def check_arch_table():
    """ALL_ARCHS against the builders themselves: each builder's model equals RegNet(BlockParams(...))."""
    for arch, (d, w0, wa, wm, gw, se) in ALL_ARCHS.items():
        torch.manual_seed(0)
        ours = RegNet(BlockParams.from_init_params(depth=d, w_0=w0, w_a=wa, w_m=wm, group_width=gw, se_ratio=se))
        theirs = getattr(torchvision.models, arch)()
        a = {k: tuple(t.shape) for k, t in ours.state_dict().items()}
        b = {k: tuple(t.shape) for k, t in theirs.state_dict().items()}
        assert a == b, arch


def init_tensor(d, w0, wa, wm, gw, bm, se):
    return torch.tensor([d, w0, wa, wm, gw, bm, se or 0.0], dtype=torch.float64)


def block_params(d, w0, wa, wm, gw, bm=1.0, se=None):
    return BlockParams.from_init_params(depth=d, w_0=w0, w_a=wa, w_m=wm, group_width=gw, bottleneck_multiplier=bm,
                                        se_ratio=se)


def ints(v):
    return torch.tensor(list(v), dtype=torch.int64)


def block_params_case(arch):
    d, w0, wa, wm, gw, se = ALL_ARCHS[arch]
    p = block_params(d, w0, wa, wm, gw, 1.0, se)
    c = Case("block_params_" + arch, "BlockParams.from_init_params")
    c.add("init", init_tensor(d, w0, wa, wm, gw, 1.0, se))
    c.add("depths", ints(p.depths))
    c.add("widths", ints(p.widths))
    c.add("group_widths", ints(p.group_widths))
    c.add("strides", ints(p.strides))
    return c


def widths_float64(d, w0, wa, wm):
    """from_init_params's block widths evaluated in float64 (torchvision's run in float32)."""
    cont = np.arange(d) * wa + w0
    cap = np.round(np.log(cont / w0) / math.log(wm))
    return (np.round(w0 * wm ** cap / 8) * 8).astype(int).tolist()


def widths_float32(d, w0, wa, wm):
    cont = torch.arange(d) * wa + w0
    cap = torch.round(torch.log(cont / w0) / math.log(wm))
    return (torch.round(torch.divide(w0 * torch.pow(wm, cap), 8)) * 8).int().tolist()


def buildable(p):
    """Every stage's bottleneck width (int(round(w * b))) splits into w_b // group_width equal groups."""
    for w, g, b in zip(p.widths, p.group_widths, p.bottleneck_multipliers):
        w_b = int(round(w * b))
        if w_b < 1 or w_b // g < 1 or w_b % (w_b // g) != 0:
            return False
    return True


def random_case():
    rng = random.Random(1234)
    tricky, plain = [], []
    for _ in range(20000):
        if len(plain) >= RANDOM_CONFIGS - len(tricky) and len(tricky) >= 8:
            break
        d = rng.randint(1, 30)
        w0 = 8 * rng.randint(1, 64)
        wa = round(rng.uniform(0.0, 200.0), 2)
        wm = round(rng.uniform(1.05, 3.0), 2)
        gw = rng.choice([1, 8, 16, 24, 48, 56, 64, 120, 232])
        bm = rng.choice([1.0, 1.0, 1.0, 0.5, 0.25, 0.75, 2.0])
        se = rng.choice([None, 0.25])
        p = block_params(d, w0, wa, wm, gw, bm, se)
        if not buildable(p):
            continue
        cfg = (d, w0, wa, wm, gw, bm, se, p)
        if widths_float64(d, w0, wa, wm) != widths_float32(d, w0, wa, wm):
            if len(tricky) < 12:
                tricky.append(cfg)
        elif len(plain) < RANDOM_CONFIGS:
            plain.append(cfg)
    configs = (tricky + plain)[:RANDOM_CONFIGS]
    c = Case("block_params_random", "BlockParams.from_init_params")
    for k, (d, w0, wa, wm, gw, bm, se, p) in enumerate(configs):
        c.add(f"init.{k}", init_tensor(d, w0, wa, wm, gw, bm, se))
        c.add(f"depths.{k}", ints(p.depths))
        c.add(f"widths.{k}", ints(p.widths))
        c.add(f"group_widths.{k}", ints(p.group_widths))
    print(f"  block_params_random: {len(configs)} settings, {len(tricky)} of them wrong in float64")
    return c


def custom_model(name, num_classes=1000):
    kwargs, stem_width = CUSTOM[name]
    return RegNet(BlockParams.from_init_params(**kwargs), num_classes=num_classes, stem_width=stem_width)


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
        model.fc.weight.normal_(0.0, 1.0 / math.sqrt(model.fc.in_features))
        model.fc.bias.normal_(0.0, 0.1)
    model.eval()


def features(model, x):
    """Graft's forward_features: the pooled trunk, before fc."""
    return torch.flatten(model.avgpool(model.trunk_output(model.stem(x))), 1)


def micro_case():
    torch.manual_seed(7)
    model = custom_model("micro", num_classes=5)
    condition(model, torch.randn(8, 3, 24, 20))
    x = torch.randn(2, 3, 24, 20)
    c = Case("regnet_micro", "RegNet micro forward (eval)")
    for k, t in model.state_dict().items():
        c.add("sd." + k, t)
    with torch.no_grad():
        c.add("x", x)
        c.add("features", features(model, x))
        c.add("out", model(x))
    return c


def eval_case(out_dir, arch, seed):
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)()
    condition(model, torch.randn(8, 3, 64, 64))
    x = torch.randn(2, 3, 64, 64)
    c = Case(arch, "model forward (eval)")
    c.add("x", x)
    with torch.no_grad():
        feats = features(model, x)
        out = model(x)
        c.add("features", feats)
        c.add("out", out)
        y = model.stem(x)
        c.add("inter.stem", y)
        for name, stage in model.trunk_output.named_children():
            y = stage(y)
            c.add("inter.trunk_output." + name, y)
        out64 = model.double()(x.double())
    model.float()
    write_safetensors(os.path.join(out_dir, arch + ".safetensors"), model.state_dict())
    write_file(os.path.join(out_dir, arch + "_golden.bin"), [c])
    print(f"  {arch}: |features| max {feats.abs().max().item():.3g}, |out| max {out.abs().max().item():.3g}, "
          f"PyTorch float32 vs float64 max|diff| {(out.double() - out64).abs().max().item():.3g}")


def train_case(out_dir):
    torch.manual_seed(11)
    model = custom_model("mini", num_classes=10)
    condition(model, torch.randn(8, 3, 32, 32))
    model.double().train()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    w = torch.randn(4, 10, dtype=torch.float64)
    c = Case("regnet_mini_train", "RegNet mini, float64, training mode: forward + backward")
    for k, t in model.state_dict().items():
        c.add("sd." + k, t)
    c.add("x", x)
    c.add("w", w)
    out = model(x)
    loss = (out * w).sum()
    loss.backward()
    c.add("out", out)
    c.add("loss", loss)
    for name, p in model.named_parameters():
        c.add("grad." + name, p.grad)
    bn_buffers = ("running_mean", "running_var", "num_batches_tracked")
    for key, t in model.state_dict().items():
        if key.rsplit(".", 1)[-1] in bn_buffers:
            c.add("after." + key, t)
    write_file(os.path.join(out_dir, "regnet_train.bin"), [c])
    print(f"  regnet mini train (float64): loss {loss.item():.6g}, "
          f"max |grad| {max(p.grad.abs().max().item() for p in model.parameters()):.3g}")


def main():
    if len(sys.argv) == 1:  # only the committed file; with OUT_DIR, only the big files
        check_arch_table()
        cases = [keys_case("keys_" + arch, getattr(torchvision.models, arch)()) for arch in KEY_ARCHS]
        cases += [keys_case("keys_custom_" + name, custom_model(name)) for name in CUSTOM if name != "micro"]
        cases += [block_params_case(arch) for arch in ALL_ARCHS]
        cases.append(random_case())
        cases.append(micro_case())
        os.makedirs(os.path.dirname(SMALL_PATH), exist_ok=True)
        write_file(SMALL_PATH, cases)
        print(f"wrote {SMALL_PATH}: {os.path.getsize(SMALL_PATH)} bytes")
        return
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    eval_case(out_dir, "regnet_y_400mf", 100)
    eval_case(out_dir, "regnet_x_400mf", 101)
    train_case(out_dir)


if __name__ == "__main__":
    main()
