#!/usr/bin/env python3
"""tools/gen_efficientnet_b_goldens.py - PyTorch goldens for Graft's EfficientNet-B0..B3
(models/graft/models/efficientnet.hpp, tests/test_efficientnet_b.cpp).

Run with the reference environment (torch 1.13.1 + torchvision 0.14.1):

    source tools/pyenv.sh
    $GRAFT_PYTHON tools/gen_efficientnet_b_goldens.py            # committed small golden only
    $GRAFT_PYTHON tools/gen_efficientnet_b_goldens.py OUT_DIR    # only the big files, into OUT_DIR (~144 MB)

Deterministic: fixed seeds, one CPU thread. Golden format: tools/gen_goldens.py (reader tests/golden.hpp).
Reference models: torchvision.models.efficientnet_b0() .. efficientnet_b3().

Committed, tests/data/efficientnet_b/efficientnet_b_keys.bin:
    cases "keys_efficientnet_b0" .. "keys_efficientnet_b3": one int64 1-D tensor per state_dict entry,
    in torch's order: key = the state_dict key, value = its shape (empty for 0-dim tensors).

Big, into OUT_DIR (set GRAFT_MODEL_DATA=OUT_DIR for the C++ test):
    efficientnet_b{0..3}.safetensors   the state_dict: torchvision's seeded init (seed 200 + N), then
        calibrated (below), float32
    efficientnet_b{0..3}_golden.bin    one case "efficientnet_bN", eval mode:
        "x" [2, 3, 64, 64], "features" [2, F] (pooled features.8 output, F = 1280, 1280, 1408, 1536),
        "out" [2, 1000], "stage4" (features.4's output, [2, 80 w, 4, 4]: forward_intermediates), and
        "features_f64", "out_f64": the same model and input run in float64
    efficientnet_b0_train.bin          one case "efficientnet_b0_train": the b0 backbone above with a
        seeded 10-class head ("classifier.1.weight" / "classifier.1.bias" as initialized, bias
        randomized), in float64, training mode (BatchNorm on batch statistics, momentum 0.1),
        classifier Dropout and every StochasticDepth at p = 0 (deterministic), one forward and
        backward of loss = sum(logits * "w"):
        "x" [2, 3, 64, 64] f64, "w" [2, 10] f64, "out" [2, 10], "loss" [],
        "grad.<name>" for the parameters in GRAD_NAMES, "grad_x" (the input's gradient),
        "after.<key>" for AFTER_KEYS (running statistics after the step)

Calibration. With torchvision's init and BatchNorm running stats at 0 / 1, eval-mode activations
shrink through the depthwise convs (kaiming fan_out gives them std sqrt(2 / (k^2 C))) until the
logits no longer depend on the input (measured: |out[0] - out[1]| 3e-8 for b0), which would make the
check blind; with randomized running statistics instead (gen_model_goldens.randomize_norms), or with
BatchNorm gammas near 1, the eval-mode network is chaotic: PyTorch's own float32 logits miss its
float64 ones by up to 5x (b1..b3: up to 1e5x) the float32 tolerance, so no float32 implementation
could match another. So: BatchNorm weight U(0.2, 0.4), bias N(0, 0.2), conv / Linear biases N(0, 0.1),
then each BatchNorm's running mean / var set to the per-channel mean / unbiased variance of its own
input in one eval-mode pass over a separate seeded batch [64, 3, 64, 64] (earlier layers already
calibrated: a forward pre-hook sets them before the layer runs), num_batches_tracked 7. The
activations then stay O(1), the two inputs' logits differ by about half their size, and PyTorch's
float32 misses its float64 by at most CHAOS_LIMIT of the float32 tolerance (checked and printed here).
"""
import copy
import os
import sys

import torch
import torch.nn as nn
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402  (the shared writer)
from gen_model_goldens import keys_case, write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_PATH = os.path.join(ROOT, "tests", "data", "efficientnet_b", "efficientnet_b_keys.bin")
ARCHS = ["efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3"]
GRAD_NAMES = [
    "features.0.0.weight",            # stem conv
    "features.0.1.weight",            # stem BatchNorm
    "features.1.0.block.1.fc1.bias",  # the first block's squeeze-excitation (no expand conv there)
    "features.4.1.block.0.0.weight",  # expand 1x1
    "features.4.1.block.1.0.weight",  # depthwise 3x3
    "features.4.1.block.1.1.bias",    # depthwise's BatchNorm
    "features.4.1.block.2.fc1.weight",
    "features.4.1.block.2.fc2.bias",
    "features.4.1.block.3.0.weight",  # project 1x1
    "features.6.3.block.3.1.weight",  # a late residual block's project BatchNorm
    "features.8.0.weight",            # head conv
    "classifier.1.weight",
    "classifier.1.bias",
]
AFTER_KEYS = ["features.0.1.running_mean", "features.0.1.running_var", "features.0.1.num_batches_tracked",
              "features.8.1.running_mean", "features.8.1.running_var"]

CHAOS_LIMIT = 0.25

torch.set_num_threads(1)


def deterministic(model):
    """Classifier Dropout and every StochasticDepth off (p = 0)."""
    for m in model.modules():
        if isinstance(m, (nn.Dropout, torchvision.ops.StochasticDepth)):
            m.p = 0.0


def set_running_stats(bn, inputs):
    x = inputs[0]
    bn.running_mean.copy_(x.mean(dim=(0, 2, 3)))
    bn.running_var.copy_(x.var(dim=(0, 2, 3)))


def calibrate(model):
    """See the module text: random affine and biases, running stats from the layers' own inputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.2, 0.4)
                m.bias.normal_(0.0, 0.2)
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.normal_(0.0, 0.1)
        model.eval()
        hooks = [m.register_forward_pre_hook(set_running_stats) for m in model.modules()
                 if isinstance(m, nn.BatchNorm2d)]
        model(torch.randn(64, 3, 64, 64))
        for h in hooks:
            h.remove()


def tol_ratio(actual, expected):
    """max |actual - expected| / (atol + rtol |expected|) with graft_test::kTolF32 (1e-5, 1e-4)."""
    return ((actual.double() - expected).abs() / (1e-5 + 1e-4 * expected.abs())).max().item()


def features(model, x):
    return torch.flatten(model.avgpool(model.features(x)), 1)


def random_arch(out_dir, index):
    name = ARCHS[index]
    torch.manual_seed(200 + index)
    model = getattr(torchvision.models, name)()
    calibrate(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = features(model, x)
        out = model(x)
        stage4 = model.features[:5](x)
        m64 = copy.deepcopy(model).double()
        feats64 = features(m64, x.double())
        out64 = m64(x.double())
    chaos = max(tol_ratio(feats, feats64), tol_ratio(out, out64))
    assert chaos < CHAOS_LIMIT, (name, chaos)
    c = Case(name, "model forward (eval)")
    c.add("x", x)
    c.add("features", feats)
    c.add("out", out)
    c.add("stage4", stage4)
    c.add("features_f64", feats64)
    c.add("out_f64", out64)
    write_safetensors(os.path.join(out_dir, name + ".safetensors"), model.state_dict())
    write_file(os.path.join(out_dir, name + "_golden.bin"), [c])
    print(f"  {name}: |features| max {feats.abs().max().item():.3g}, |out| max {out.abs().max().item():.3g}, "
          f"|out[0] - out[1]| max {(out[0] - out[1]).abs().max().item():.3g}, "
          f"PyTorch float32 vs float64: {chaos:.3g} of the float32 tolerance")
    return model


def b0_train(out_dir, b0):
    """One float64 training-mode forward + backward of the calibrated b0 (see the module text)."""
    torch.manual_seed(300)
    model = torchvision.models.efficientnet_b0(num_classes=10)
    head = {k: v for k, v in model.state_dict().items() if k.startswith("classifier.1.")}
    with torch.no_grad():
        head["classifier.1.bias"].normal_(0.0, 0.1)
    sd = b0.state_dict()
    sd.update(head)  # the seeded 10-class head in place of the 1000-class one
    model.load_state_dict(sd)
    deterministic(model)
    model.double().train()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 10, dtype=torch.float64)
    out = model(x)
    loss = (out * w).sum()
    loss.backward()
    c = Case("efficientnet_b0_train", "efficientnet_b0 train mode forward + backward (float64)")
    c.add("x", x.detach())
    c.add("w", w)
    c.add("classifier.1.weight", head["classifier.1.weight"])
    c.add("classifier.1.bias", head["classifier.1.bias"])
    c.add("out", out.detach())
    c.add("loss", loss.detach())
    params = dict(model.named_parameters())
    for n in GRAD_NAMES:
        c.add("grad." + n, params[n].grad)
    c.add("grad_x", x.grad)
    sd = model.state_dict()
    for k in AFTER_KEYS:
        c.add("after." + k, sd[k])
    write_file(os.path.join(out_dir, "efficientnet_b0_train.bin"), [c])
    print(f"  b0 train (float64): loss {loss.item():.6g}, max |grad| "
          f"{max(params[n].grad.abs().max().item() for n in GRAD_NAMES):.3g}")


def main():
    if len(sys.argv) == 1:  # only the committed file; with OUT_DIR, only the big files
        os.makedirs(os.path.dirname(SMALL_PATH), exist_ok=True)
        write_file(SMALL_PATH, [keys_case("keys_" + a, getattr(torchvision.models, a)()) for a in ARCHS])
        return
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    models = [random_arch(out_dir, i) for i in range(len(ARCHS))]
    b0_train(out_dir, models[0])


if __name__ == "__main__":
    main()
