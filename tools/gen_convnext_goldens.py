#!/usr/bin/env python3
"""tools/gen_convnext_goldens.py - PyTorch goldens for Graft's ConvNeXt (tests/test_convnext.cpp).

Run with the reference environment (torchvision 0.14.1):

    source tools/pyenv.sh
    $GRAFT_PYTHON tools/gen_convnext_goldens.py                    # committed small golden only
    $GRAFT_PYTHON tools/gen_convnext_goldens.py OUT_DIR            # only the big files, into OUT_DIR (~116 MB)
    $GRAFT_PYTHON tools/gen_convnext_goldens.py OUT_DIR --small    # also convnext_small's (+202 MB)

Deterministic: fixed seeds, one CPU thread. Golden format: tools/gen_goldens.py (reader tests/golden.hpp).
Reference model: torchvision.models.convnext (convnext_tiny(), convnext_small(), and ConvNeXt(block_setting)
for the small custom configurations below).

Committed, tests/data/convnext/convnext_keys.bin:
    cases "keys_convnext_tiny", "keys_convnext_small": one int64 1-D tensor per state_dict entry, in
        torch's order: key = the state_dict key, value = its shape (empty for 0-dim tensors).
    cases "sd_prob_convnext_tiny", "sd_prob_convnext_small": "p" float64 [blocks], every CNBlock's
        stochastic_depth.p in module order (torchvision's linear schedule).
    case "convnext_micro": ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 2)], num_classes 5),
        seeded torchvision init with randomized LayerNorm affine, layer_scale and biases, eval mode:
        "sd.<key>" its state dict (float32), "x" [2, 3, 24, 20] (the downsampling floors 6 x 5 to 3 x 2),
        "features" [2, 16] (avgpool, classifier.0, classifier.1), "out" [2, 5].

Big, into OUT_DIR (set GRAFT_MODEL_DATA=OUT_DIR for the C++ test):
    convnext_tiny.safetensors     convnext_tiny() with seeded init (seed 100), LayerNorm affine,
                                  layer_scale and conv/linear biases randomized (so every name matters)
    convnext_tiny_golden.bin      one case "convnext_tiny", eval mode: "x" [2, 3, 64, 64], "features"
                                  [2, 768], "out" [2, 1000], "inter.features.<i>" the output of each
                                  features.<i> (i = 0..7)
    convnext_train.bin            one case "convnext_mini_train": ConvNeXt([CNBlockConfig(16, 32, 2),
                                  CNBlockConfig(32, 64, 2), CNBlockConfig(64, None, 2)], num_classes 10,
                                  stochastic_depth_prob 0) randomized as above, in float64, training mode:
        "sd.<key>"                its state dict (float64)
        "x" [2, 3, 32, 32], "w" [2, 10]   input and the fixed loss weights, float64
        "out" [2, 10]             logits (training mode)
        "loss" []                 sum(out * w)
        "grad.<name>"             every parameter's gradient of loss
    with --small: convnext_small.safetensors and convnext_small_golden.bin (seed 101, case
    "convnext_small", same keys as convnext_tiny's).
"""
import os
import sys

import torch
import torch.nn as nn
from torchvision.models import convnext_small, convnext_tiny
from torchvision.models.convnext import CNBlock, CNBlockConfig, ConvNeXt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402  (the shared writer)
from gen_model_goldens import keys_case, randomize_norms, write_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_PATH = os.path.join(ROOT, "tests", "data", "convnext", "convnext_keys.bin")

torch.set_num_threads(1)


def randomize_convnext(model):
    """LayerNorm / LayerNorm2d affine (randomize_norms), layer_scale and every conv/linear bias random."""
    randomize_norms(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, CNBlock):
                m.layer_scale.uniform_(0.5, 1.5)
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.normal_(0.0, 0.05)


def forward_features(model, x):
    """Graft's forward_features: avgpool, classifier.0 (LayerNorm2d) and classifier.1 (Flatten)."""
    y = model.avgpool(model.features(x))
    return model.classifier[1](model.classifier[0](y))


def sd_prob_case(name, model):
    c = Case(name, "stochastic depth probability of every CNBlock")
    p = [m.stochastic_depth.p for m in model.modules() if isinstance(m, CNBlock)]
    c.add("p", torch.tensor(p, dtype=torch.float64))
    return c


def micro_case():
    torch.manual_seed(7)
    model = ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 2)], num_classes=5)
    randomize_convnext(model)
    model.eval()
    x = torch.randn(2, 3, 24, 20)
    c = Case("convnext_micro", "ConvNeXt micro block_setting forward (eval)")
    for k, t in model.state_dict().items():
        c.add("sd." + k, t)
    with torch.no_grad():
        c.add("x", x)
        c.add("features", forward_features(model, x))
        c.add("out", model(x))
    return c


def random_arch(out_dir, name, build, seed):
    torch.manual_seed(seed)
    model = build()
    randomize_convnext(model)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    c = Case(name, "model forward (eval)")
    c.add("x", x)
    with torch.no_grad():
        c.add("features", forward_features(model, x))
        out = model(x)
        c.add("out", out)
        y = x
        for i, layer in enumerate(model.features):
            y = layer(y)
            c.add(f"inter.features.{i}", y)
    write_safetensors(os.path.join(out_dir, name + ".safetensors"), model.state_dict())
    write_file(os.path.join(out_dir, name + "_golden.bin"), [c])
    print(f"  {name}: |out| max {out.abs().max().item():.3g}, std {out.std().item():.3g}")


def mini_train(out_dir):
    torch.manual_seed(11)
    model = ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, 64, 2), CNBlockConfig(64, None, 2)],
                     stochastic_depth_prob=0.0, num_classes=10)
    randomize_convnext(model)
    model.double().train()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    w = torch.randn(2, 10, dtype=torch.float64)
    c = Case("convnext_mini_train", "ConvNeXt mini block_setting, one forward + backward in train mode (float64)")
    for k, t in model.state_dict().items():
        c.add("sd." + k, t)
    c.add("x", x)
    c.add("w", w)
    out = model(x)
    loss = (out * w).sum()
    loss.backward()
    c.add("out", out.detach())
    c.add("loss", loss.detach())
    for name, p in model.named_parameters():
        c.add("grad." + name, p.grad)
    write_file(os.path.join(out_dir, "convnext_train.bin"), [c])
    print(f"  convnext mini train (float64): loss {loss.item():.6g}, "
          f"max |grad| {max(p.grad.abs().max().item() for p in model.parameters()):.3g}")


def main():
    if len(sys.argv) == 1:  # only the committed file; with OUT_DIR, only the big files
        tiny, small = convnext_tiny(), convnext_small()
        cases = [keys_case("keys_convnext_tiny", tiny), keys_case("keys_convnext_small", small),
                 sd_prob_case("sd_prob_convnext_tiny", tiny), sd_prob_case("sd_prob_convnext_small", small),
                 micro_case()]
        os.makedirs(os.path.dirname(SMALL_PATH), exist_ok=True)
        write_file(SMALL_PATH, cases)
        return
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    random_arch(out_dir, "convnext_tiny", convnext_tiny, 100)
    mini_train(out_dir)
    if "--small" in sys.argv:
        random_arch(out_dir, "convnext_small", convnext_small, 101)


if __name__ == "__main__":
    main()
