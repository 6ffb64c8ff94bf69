#!/usr/bin/env python3
"""tools/check_peft_adapter.py - loads a LoRA adapter Graft wrote into Hugging Face PEFT and checks that PEFT
computes Graft's logits (the Graft -> PEFT half of tests/test_peft_roundtrip.cpp; ctest runs it after
the test case that writes DIR, see tests/CMakeLists.txt).

    source tools/pyenv.sh
    $GRAFT_PYTHON tools/check_peft_adapter.py DIR

DIR (written by Graft's peft::save_adapter and io::save_safetensors):
    base.safetensors            the base ViT's state dict (gen_peft_goldens.lora_vit's shape, timm names)
    adapter/                    adapter_model.safetensors + adapter_config.json
    graft_outputs.safetensors   "x" [2, 3, 32, 32], Graft's "base_out", "out" (LoRA unmerged) and
                                "merged_out" (after peft::merge_lora), eval mode, float32

Checks, each failing with exit status 1 and a message naming what differs:
  - PeftModel.from_pretrained reads the config and every tensor of the file lands in the model
    (PEFT loads with strict=False and says nothing about a key it did not place);
  - the base model gives Graft's base logits, and the adapter changes them (or the test could not fail);
  - PEFT's logits, unmerged and after merge_and_unload(), equal Graft's within float32 parity
    tolerance: |peft - graft| <= 1e-5 + 1e-4 |graft| (tests/harness.hpp's kTolF32).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_peft_goldens import lora_vit  # noqa: E402  (the same base ViT as the PEFT -> Graft direction)

from peft import PeftModel, get_peft_model_state_dict  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

torch.set_num_threads(1)
ATOL, RTOL = 1e-5, 1e-4


def fail(msg):
    print(f"check_peft_adapter: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def compare(what, actual, expected):
    if actual.shape != expected.shape:
        fail(f"{what}: shape {tuple(actual.shape)}, Graft's is {tuple(expected.shape)}")
    diff = (actual - expected).abs()
    bad = diff > ATOL + RTOL * expected.abs()
    if bad.any() or not torch.isfinite(actual).all():
        i = int(bad.flatten().nonzero()[0]) if bad.any() else 0
        fail(f"{what}: element {i} is {actual.flatten()[i].item():.7g} in PEFT, {expected.flatten()[i].item():.7g}"
             f" in Graft (|diff| max {diff.max().item():.3g}, allowed {ATOL} + {RTOL} |graft|)")
    print(f"{what}: max |peft - graft| = {diff.max().item():.3g}")


def main():
    if len(sys.argv) != 2:
        fail("usage: check_peft_adapter.py DIR")
    d = sys.argv[1]
    for f in ("base.safetensors", "adapter/adapter_model.safetensors", "adapter/adapter_config.json",
              "graft_outputs.safetensors"):
        if not os.path.isfile(os.path.join(d, f)):
            fail(f"{os.path.join(d, f)} is missing (run the Graft test case \"[peft-roundtrip]\" that writes it first)")
    graft = load_file(os.path.join(d, "graft_outputs.safetensors"))
    x = graft["x"]

    model = lora_vit()
    model.load_state_dict(load_file(os.path.join(d, "base.safetensors")))  # strict: every timm key
    model.eval()
    with torch.no_grad():
        compare("base model logits", model(x), graft["base_out"])

    peft_model = PeftModel.from_pretrained(model, os.path.join(d, "adapter"))
    peft_model.eval()
    # Every saved tensor placed, unchanged, and nothing of the adapter left out of the file.
    saved = load_file(os.path.join(d, "adapter", "adapter_model.safetensors"))
    placed = get_peft_model_state_dict(peft_model)
    if set(saved) != set(placed):
        fail(f"the adapter's keys are not PEFT's: only in Graft's file {sorted(set(saved) - set(placed))},"
             f" only in PEFT's model {sorted(set(placed) - set(saved))}")
    for k in sorted(saved):
        if not torch.equal(saved[k], placed[k]):
            fail(f"'{k}' in the file is not what PEFT's model holds after loading it")
    print(f"{len(saved)} adapter tensors loaded by PEFT ({', '.join(sorted(peft_model.peft_config['default'].target_modules))})")

    with torch.no_grad():
        out = peft_model(x)
    if (out - graft["base_out"]).abs().max().item() <= 10 * (ATOL + RTOL * graft["base_out"].abs().max().item()):
        fail("the adapter does not change the logits (lora_B zero?): this check could not fail")
    compare("LoRA logits", out, graft["out"])
    merged = peft_model.merge_and_unload()
    merged.eval()
    with torch.no_grad():
        compare("merged LoRA logits", merged(x), graft["merged_out"])
    print("check_peft_adapter: PEFT computes Graft's logits")


if __name__ == "__main__":
    main()
