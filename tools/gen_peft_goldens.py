#!/usr/bin/env python3
"""tools/gen_peft_goldens.py - a LoRA adapter written by Hugging Face PEFT, for tests/test_peft_roundtrip.cpp.

Run with the reference environment (Debian's torch 1.13.1 + peft 0.7.1, tools/requirements-reference.txt):

    source tools/pyenv.sh
    $GRAFT_PYTHON tools/gen_peft_goldens.py OUT_DIR     # writes OUT_DIR/peft/ (~0.5 MB)

Deterministic: fixed seeds, one CPU thread (only adapter_config.json's target_modules order follows
Python's string hashing: PEFT keeps them as a set). Golden format: tools/gen_goldens.py (reader
tests/golden.hpp). The other direction (an adapter Graft wrote, loaded by PEFT) is
tools/check_peft_adapter.py.

The model: gen_model_goldens.py's timm-style ViT with img 32, patch 16, dim 32, depth 2, heads 2,
10 classes (vit_small_config's shape; LayerNorms and cls_token randomized), seed 7. It is wrapped by
peft.get_peft_model with LoraConfig(r 4, lora_alpha 8, target_modules ["qkv", "proj", "fc2"],
lora_dropout 0, modules_to_save ["head"]): "proj" names both the patch Conv2d patch_embed.proj
(lora_A a Conv2d 3 -> 4 with kernel and stride 16, lora_B a 1x1 Conv2d 4 -> 32) and each
blocks.{i}.attn.proj; mlp.fc1 is left alone. PEFT starts every lora_B at zero, which would make the
adapted model the base one and the test unable to fail, so each lora_B and the head's trained copy
are set to seeded random values (N(0, 0.5)) before saving.

Into OUT_DIR/peft/:
    base.safetensors                the base model's state dict (timm names), before PEFT wraps it
    adapter/                        PeftModel.save_pretrained: adapter_model.safetensors,
                                    adapter_config.json (and PEFT's README.md model card)
    peft_golden.bin                 one case "vit_lora", eval mode, float32:
        "x" [2, 3, 32, 32]          the input
        "base_out" [2, 10]          the base model's logits
        "out" [2, 10]               the PeftModel's logits (branches unmerged)
        "merged_out" [2, 10]        merge_and_unload()'s logits
        "merged.<key>"              merge_and_unload()'s state dict (the base's keys, W + (alpha / r) B A)
    suffix_adapter/                 PEFT's modules_to_save rule (a plain suffix, no "." boundary) on a
                                    3-Linear net body -> relu(pre_classifier) -> classifier, seed 8:
                                    LoRA r 2, alpha 4 on "body", modules_to_save ["classifier"], which
                                    PEFT applies to pre_classifier as well (both saved, randomized)
        case "suffix" in peft_golden.bin: "base.<key>" the base net's state dict, "x" [4, 8], "out" [4, 3]
"""
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402  (the shared writer)
from gen_model_goldens import randomize_norms, vit, write_safetensors  # noqa: E402  (the timm-style ViT)

from peft import LoraConfig, get_peft_model  # noqa: E402

torch.set_num_threads(1)


def lora_vit():
    """The base ViT every PEFT round-trip test uses (tools/check_peft_adapter.py builds it too)."""
    return vit(32, 2, 2, img=32, classes=10)


class SuffixNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 8)
        self.pre_classifier = nn.Linear(8, 8)
        self.classifier = nn.Linear(8, 3)

    def forward(self, x):
        return self.classifier(torch.relu(self.pre_classifier(self.body(x))))


def suffix_case(out_dir):
    torch.manual_seed(8)
    net = SuffixNet().eval()
    c = Case("suffix", "peft modules_to_save by suffix")
    for k, t in net.state_dict().items():
        c.add("base." + k, t)
    x = torch.randn(4, 8)
    peft_net = get_peft_model(net, LoraConfig(r=2, lora_alpha=4, target_modules=["body"],
                                              modules_to_save=["classifier"]))
    with torch.no_grad():
        for name, p in peft_net.named_parameters():
            if ".lora_B." in name or ".modules_to_save." in name:
                p.normal_(0.0, 0.5)
    saved = sorted(n for n, _ in peft_net.named_modules() if n.endswith(".modules_to_save"))
    assert saved == ["base_model.model.classifier.modules_to_save", "base_model.model.pre_classifier.modules_to_save"], saved
    peft_net.eval()
    with torch.no_grad():
        out = peft_net(x)
    peft_net.save_pretrained(os.path.join(out_dir, "suffix_adapter"))
    c.add("x", x)
    c.add("out", out)
    return c


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_peft_goldens.py OUT_DIR")
    out_dir = os.path.join(sys.argv[1], "peft")
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(7)
    model = lora_vit()
    randomize_norms(model)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        base_out = model(x)
    write_safetensors(os.path.join(out_dir, "base.safetensors"), model.state_dict())

    config = LoraConfig(r=4, lora_alpha=8, target_modules=["qkv", "proj", "fc2"], lora_dropout=0.0,
                        modules_to_save=["head"])
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if ".lora_B." in name or ".modules_to_save." in name:
                p.normal_(0.0, 0.5)
    peft_model.eval()
    with torch.no_grad():
        out = peft_model(x)
    # The adapter must move the logits well past the tests' tolerance, or they could not fail.
    assert (out - base_out).abs().max().item() > 0.5, "the adapter barely changes the logits"
    peft_model.save_pretrained(os.path.join(out_dir, "adapter"))

    merged = peft_model.merge_and_unload()
    merged.eval()
    with torch.no_grad():
        merged_out = merged(x)
    c = Case("vit_lora", "peft LoRA forward (eval)")
    c.add("x", x)
    c.add("base_out", base_out)
    c.add("out", out)
    c.add("merged_out", merged_out)
    for k, t in merged.state_dict().items():
        c.add("merged." + k, t)
    write_file(os.path.join(out_dir, "peft_golden.bin"), [c, suffix_case(out_dir)])
    print(f"  |out| max {out.abs().max().item():.3g}, |out - base_out| max {(out - base_out).abs().max().item():.3g},"
          f" |merged_out - out| max {(merged_out - out).abs().max().item():.3g}")


if __name__ == "__main__":
    main()
