#!/usr/bin/env python3
"""examples/reference/transfer_recipes.py - the transfer demo's three recipes in PyTorch, on the demo's split.

examples/transfer_demo.cpp trains EfficientNet-Lite0 on MNIST with 10 / 50 / 100 labels per class three ways
(scratch, linear probe, fine-tune) and writes OUT/run.json (config, split, results) and
OUT/scratch_init.safetensors. This script replays the same recipes in PyTorch from those files, so Graft's
accuracies can be set next to PyTorch's (examples/reference/compare.py):

    source tools/pyenv.sh
    $GRAFT_PYTHON examples/reference/transfer_recipes.py --run OUT/run.json \\
        --data mnist5k.safetensors --checkpoint lite0.safetensors [--threads 2] [--out OUT/reference.json]

What is the same as Graft (spec: the demo's, and examples/transfer_recipes.hpp):
  data       images [N, 1, 28, 28] in [0, 1] -> bilinear resize to image_size (align_corners=False,
             antialias=True) -> (x - 127/255) / (128/255); no augmentation
  batches    train::batch_plan: epoch after epoch of graft's random_permutation(n, Generator(seed + epoch)),
             batch_size runs, the short last batch as config "last_batch" says (drop / keep / balance; runs
             written before it was recorded kept it) (graft_random.py, checked against graft's C++)
  optimizer  AdamW(lr, betas (0.9, 0.999), eps 1e-8, weight_decay) over every parameter in one group, or
             with weight decay 0 on 1-D parameters (biases, norm weights) when config "no_decay_norm_bias"
  schedule   lr = lr0 * CosineWithWarmup(warmup_steps, steps).factor(step), set before step `step`
             (0-based), so step 0 runs at lr 0 when warmup_steps > 0, exactly as graft
  loss       cross-entropy, mean over the batch
  eval       eval mode, accuracy on the test split (batches of 100) after step s when s % eval_every == 0
             and after the last step, with the training seconds up to it (evaluation excluded);
             steps_to_95 = first evaluated step with accuracy >= 0.95 * final
What differs: dropout and drop-connect masks (torch's RNG, seeded with config seed), float summation order.

Recipes:
  scratch    EfficientNet.from_name('efficientnet-lite0', in_channels=1, num_classes=10, image_size=S) loaded
             from run.json's scratch_init (next to run.json), train mode, all parameters, lr_scratch;
             BatchNorm momentum set to config "bn_momentum" (scratch and finetune), as the demo does
  probe      the checkpoint in eval mode; features = flatten(avg_pool(extract_features(x))) [N, 1280],
             computed once; nn.Linear(1280, 10) initialized from the checkpoint's _fc, lr_probe
  finetune   the whole checkpoint (incl. its _fc), train mode, all parameters, lr_finetune

Writes --out (default: reference.json next to run.json):
  {"results": [{"recipe", "labels_per_class", "accuracy", "steps_to_95",
                "curve": [[step, acc, training seconds up to it], ...], "losses": [training loss of every step],
                "seconds", "train_seconds", "steps"}], "threads", "torch"}
"seconds" is training plus its evaluations, "train_seconds" training alone; the probe's "feature_seconds"
is its share (k / the largest k) of the one feature pass, as Graft's transfer_demo counts it.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from graft_random import batch_plan  # noqa: E402

from efficientnet_lite_pytorch import EfficientNet  # noqa: E402

RECIPES = ("scratch", "probe", "finetune")
LITE_MEAN = 127.0 / 255.0
LITE_STD = 128.0 / 255.0
EVAL_BATCH = 100


def fail(msg):
    sys.exit(f"transfer_recipes: {msg}")


def cosine_with_warmup(step, warmup, total):
    """graft::optim::CosineWithWarmup(warmup, total, min 0).factor(step)."""
    if not (0 <= warmup < total):
        fail(f"need 0 <= warmup_steps < steps, got warmup_steps {warmup} and steps {total}")
    if step < warmup:
        return step / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def preprocess(images, size):
    """[N, 28, 28] in [0, 1] -> [N, 1, S, S], resized (bilinear, antialias) and normalized."""
    x = images.unsqueeze(1).to(torch.get_default_dtype())
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x - LITE_MEAN) / LITE_STD


def lite0(image_size, cfg=None):
    """Lite0 for 1-channel 10-class inputs; dropout / drop-connect from config when given (demo defaults 0.2)."""
    extra = {}
    if cfg is not None and "dropout" in cfg:
        extra["dropout_rate"] = cfg["dropout"]
    if cfg is not None and "drop_connect" in cfg:
        extra["drop_connect_rate"] = cfg["drop_connect"]
    return EfficientNet.from_name("efficientnet-lite0", in_channels=1, num_classes=10, image_size=image_size, **extra)


def set_bn_momentum(model, cfg):
    """BatchNorm's running-stat momentum while training (config "bn_momentum"; the package's own is 0.01)."""
    if "bn_momentum" in cfg:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = cfg["bn_momentum"]


def load_weights(model, path):
    """Loads a safetensors state dict; keys absent from it may only be BatchNorm's num_batches_tracked."""
    sd = load_file(path)
    result = model.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        fail(f"{path}: missing keys {missing[:5]}, unexpected keys {result.unexpected_keys[:5]}")
    return sd


def features(model, x):
    return torch.flatten(model._avg_pooling(model.extract_features(x)), 1)


@torch.no_grad()
def in_batches(fn, x):
    return torch.cat([fn(x[i:i + EVAL_BATCH]) for i in range(0, x.shape[0], EVAL_BATCH)])


def evaluate(model, fn, x, y):
    was_training = model.training
    model.eval()
    logits = in_batches(fn, x)
    model.train(was_training)
    return (logits.argmax(1) == y).double().mean().item()


def make_optimizer(module, lr, weight_decay, no_decay_norm_bias):
    params = [p for p in module.parameters() if p.requires_grad]
    if no_decay_norm_bias:
        groups = [{"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]
    else:
        groups = [{"params": params, "weight_decay": weight_decay}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)


def train(module, fn, train_x, train_y, test_x, test_y, cfg, steps, lr, label, keep_eval=False):
    """examples::train_classifier: `steps` AdamW steps on batch_plan's batches; returns the curve."""
    t0 = time.time()
    opt = make_optimizer(module, lr, cfg["weight_decay"], cfg.get("no_decay_norm_bias", False))
    initial_lr = [g["lr"] for g in opt.param_groups]
    plan = batch_plan(train_x.shape[0], steps, cfg["batch_size"], cfg["seed"], cfg.get("last_batch", "keep"))
    torch.manual_seed(cfg["seed"])
    curve, losses = [], []
    train_seconds = 0.0
    module.train(not keep_eval)
    for step in range(steps):
        ts = time.time()
        idx = torch.tensor(plan[step], dtype=torch.int64)
        factor = cosine_with_warmup(step, cfg["warmup_steps"], steps)
        for g, lr0 in zip(opt.param_groups, initial_lr):
            g["lr"] = lr0 * factor
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(fn(train_x[idx]), train_y[idx])
        if not torch.isfinite(loss):
            fail(f"{label}: loss is {loss.item()} at step {step}")
        loss.backward()
        opt.step()
        losses.append(loss.item())
        train_seconds += time.time() - ts
        if (step + 1) % cfg["eval_every"] == 0 or step + 1 == steps:
            curve.append([step + 1, evaluate(module, fn, test_x, test_y), round(train_seconds, 4)])
            print(f"  {label} step {step + 1}/{steps} loss {loss.item():.4f} acc {curve[-1][1]:.4f}", flush=True)
    return curve, losses, time.time() - t0, train_seconds


def steps_to(curve, frac):
    final = curve[-1][1]
    for step, acc, *_ in curve:
        if acc >= frac * final:
            return step
    return curve[-1][0]


def steps_for(cfg, k):
    s = cfg["steps"]
    if isinstance(s, dict):
        if str(k) not in s:
            fail(f"config steps has no entry for {k} labels per class: {s}")
        return int(s[str(k)])
    return int(s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--run", required=True, help="OUT/run.json written by transfer_demo")
    ap.add_argument("--data", required=True, help="mnist5k.safetensors (tools/prepare_data.py)")
    ap.add_argument("--checkpoint", required=True, help="the converted Lite0 checkpoint (graft-convert)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="reference.json (default: next to run.json)")
    ap.add_argument("--recipes", help="comma-separated subset of " + ",".join(RECIPES) +
                    " (default: config \"recipes\", else all three)")
    ap.add_argument("--labels", help="comma-separated subset of config labels_per_class")
    ap.add_argument("--float64", action="store_true",
                    help="train and evaluate in float64: the near-exact run that float32 runs (Graft's and\n"
                         "PyTorch's) are measured against, to tell float drift from a real difference")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.float64:
        torch.set_default_dtype(torch.float64)

    with open(args.run) as f:
        run = json.load(f)
    cfg, split = run["config"], run["split"]
    recipes = [r for r in (args.recipes or cfg.get("recipes") or ",".join(RECIPES)).split(",") if r]
    for r in recipes:
        if r not in RECIPES:
            fail(f"unknown recipe {r!r} (expected one of {', '.join(RECIPES)})")
    labels = [int(k) for k in cfg["labels_per_class"]]
    if args.labels:
        labels = [int(k) for k in args.labels.split(",")]
    size = int(cfg["image_size"])
    out_path = args.out or os.path.join(os.path.dirname(os.path.abspath(args.run)), "reference.json")

    data = load_file(args.data)
    images, all_labels = data["images"].to(torch.get_default_dtype()), data["labels"].long()
    if images.dim() != 3 or images.shape[0] != all_labels.shape[0]:
        fail(f"{args.data}: expected images [N, 28, 28] and labels [N], got {list(images.shape)}, "
             f"{list(all_labels.shape)}")
    x_all = preprocess(images, size)
    test_idx = torch.tensor(split["test"], dtype=torch.int64)
    test_x, test_y = x_all[test_idx], all_labels[test_idx]
    print(f"data: {images.shape[0]} images -> {size}x{size}, test {len(test_idx)}; "
          f"torch {torch.__version__}, {args.threads} threads")

    ckpt_path = args.checkpoint
    init_path = os.path.join(os.path.dirname(os.path.abspath(args.run)), run.get("scratch_init", "scratch_init.safetensors"))
    results = []
    probe_cache = None  # (backbone, features of all needed images, seconds)
    for k in labels:
        train_idx = torch.tensor(split["train"][str(k)], dtype=torch.int64)
        train_x, train_y = x_all[train_idx], all_labels[train_idx]
        steps = steps_for(cfg, k)
        for recipe in recipes:
            label = f"{recipe} {k}/class"
            feature_seconds = None
            if recipe == "scratch":
                model = lite0(size, cfg)
                load_weights(model, init_path)
                set_bn_momentum(model, cfg)
                curve, losses, secs, train_secs = train(model, model, train_x, train_y, test_x, test_y, cfg, steps, cfg["lr_scratch"],
                                    label)
            elif recipe == "finetune":
                model = lite0(size, cfg)
                load_weights(model, ckpt_path)
                set_bn_momentum(model, cfg)
                curve, losses, secs, train_secs = train(model, model, train_x, train_y, test_x, test_y, cfg, steps, cfg["lr_finetune"],
                                    label)
            else:
                if probe_cache is None:
                    t0 = time.time()
                    backbone = lite0(size)
                    sd = load_weights(backbone, ckpt_path)
                    backbone.eval()
                    needed = sorted(set(split["test"]).union(*[split["train"][str(j)] for j in labels]))
                    feats = torch.zeros(x_all.shape[0], 1280)
                    nidx = torch.tensor(needed, dtype=torch.int64)
                    feats[nidx] = in_batches(lambda x: features(backbone, x), x_all[nidx])
                    probe_cache = (sd, feats, time.time() - t0)
                sd, feats, feature_seconds = probe_cache
                head = nn.Linear(1280, 10)
                with torch.no_grad():
                    head.weight.copy_(sd["_fc.weight"])
                    head.bias.copy_(sd["_fc.bias"])
                curve, losses, secs, train_secs = train(head, head, feats[train_idx], train_y, feats[test_idx], test_y, cfg, steps,
                                    cfg["lr_probe"], label, keep_eval=True)
            r = {"recipe": recipe, "labels_per_class": k, "accuracy": curve[-1][1], "steps_to_95": steps_to(curve, 0.95),
                 "curve": curve, "losses": losses, "seconds": round(secs, 3), "train_seconds": round(train_secs, 3),
                 "steps": steps}
            if feature_seconds is not None:
                r["feature_seconds"] = round(feature_seconds * k / max(labels), 3)
            results.append(r)
            print(f"{label}: accuracy {r['accuracy']:.4f}, 95% at step {r['steps_to_95']}, {secs:.1f} s", flush=True)

    with open(out_path, "w") as f:
        json.dump({"results": results, "threads": args.threads, "torch": torch.__version__}, f, indent=1)
    print(f"\n{'recipe':<10} {'labels':>6} {'steps':>6} {'accuracy':>9} {'steps_to_95':>11} {'seconds':>8}")
    for r in results:
        print(f"{r['recipe']:<10} {r['labels_per_class']:>6} {r['steps']:>6} {r['accuracy']:>9.4f} "
              f"{r['steps_to_95']:>11} {r['seconds']:>8.1f}")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
