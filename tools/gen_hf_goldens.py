#!/usr/bin/env python3
"""tools/gen_hf_goldens.py - transformers 4.36 goldens for Graft's DistilBERT (models/graft/models/distilbert.hpp)
and Hugging Face-named ViT (models/graft/models/hf_vit.hpp); read by tests/test_hf_models.cpp.

Run with the reference environment (Debian's torch 1.13.1, transformers 4.36.2):

    source tools/pyenv.sh
    $GRAFT_PYTHON tools/gen_hf_goldens.py            # the committed keys golden only
    $GRAFT_PYTHON tools/gen_hf_goldens.py OUT_DIR    # only the model data, into OUT_DIR (about 1 MB)

Deterministic: fixed seeds, one CPU thread, no downloads (every model is built from a config).
Golden format: tools/gen_goldens.py (reader tests/golden.hpp).

Committed, tests/data/hf/hf_keys.bin: the state_dict keys and shapes (one int64 1-D tensor per key,
gen_model_goldens.keys_case) of the real base sizes under HF's own names:
    "keys_distilbert_base"        DistilBertModel(DistilBertConfig())   (distilbert-base-uncased)
    "keys_distilbert_base_seqcls" DistilBertForSequenceClassification, num_labels 2 ("distilbert." prefix)
    "keys_vit_base"               ViTModel(ViTConfig())                  (with its pooler)
    "keys_vit_base_cls"           ViTForImageClassification, num_labels 1000 ("vit." prefix, no pooler)

Model data, into OUT_DIR/hf-distilbert/ and OUT_DIR/hf-vit/ (GRAFT_MODEL_DATA=OUT_DIR for the test):
small random configs (dim 32, 2 layers, 4 heads), weights conditioned so nothing is trivially small:
every Linear N(0, 1 / in_features) with bias N(0, 0.1), embeddings, cls_token and position
embeddings N(0, 0.5), LayerNorm weight U(0.5, 1.5) and bias N(0, 0.1) (with HF's init, q and k of std
0.02 make every attention row nearly uniform, which would hide a wrong mask or scale).
  hf-distilbert/config.json        the model's config (save_pretrained's), read by DistilBertConfig::from_json_file
  hf-distilbert/model.safetensors  DistilBertForSequenceClassification (num_labels 3) state dict, HF's names
  hf-distilbert/golden.bin         case "eval": input_ids, attention_mask [3, 12] (rows padded to 12, 9
                                   and 5 real tokens; pad id 0), last_hidden_state [3, 12, 32] (of
                                   model.distilbert), logits [3, 3], and logits_f64 (the same in float64);
                                   case "train": the model in float64, training mode with every dropout 0:
                                   labels [3], loss (cross_entropy), "grad.<name>" every parameter's
                                   gradient (HF's names), then 3 AdamW steps (lr 1e-3, weight decay 0.01):
                                   "loss.<k>" the loss before step k (k = 0, 1, 2, 3) and "after.<name>" every
                                   parameter after the 3 steps
  hf-vit/config.json, model.safetensors, golden.bin: the same for ViTForImageClassification
                                   (image 16, patch 4, 3 channels, num_labels 5): case "eval": pixel_values
                                   [2, 3, 16, 16], last_hidden_state [2, 17, 32], logits [2, 5], logits_f64;
                                   case "train" as above (labels [2]);
  hf-vit/vit_model.safetensors     a ViTModel with its pooler (another seed), and in golden.bin case
                                   "pooler": pixel_values, last_hidden_state, pooler_output [2, 32]
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402  (the shared writer)
from gen_model_goldens import keys_case, write_safetensors  # noqa: E402

import transformers  # noqa: E402
from transformers import (DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel,  # noqa: E402
                          ViTConfig, ViTForImageClassification, ViTModel)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_PATH = os.path.join(ROOT, "tests", "data", "hf", "hf_keys.bin")
STEPS = 3

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()


def condition(model):
    """Weights that make every path matter (see the module text)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 1.0 / math.sqrt(m.in_features))
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1)
            elif isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(0.0, 1.0 / math.sqrt(fan_in))
                m.bias.normal_(0.0, 0.1)
            elif isinstance(m, nn.Embedding):
                m.weight.normal_(0.0, 0.5)
            elif isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
        for name, p in model.named_parameters():
            if name.endswith("cls_token") or name.endswith("position_embeddings"):
                p.normal_(0.0, 0.5)


def save(out_dir, model):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        f.write(model.config.to_json_string())
    write_safetensors(os.path.join(out_dir, "model.safetensors"), model.state_dict())


def train_case(model, inputs, labels, run):
    """float64, training mode (dropouts 0): gradients, then STEPS AdamW steps."""
    model = model.double().train()
    c = Case("train", "forward + backward + AdamW steps, float64")
    c.add("labels", labels)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    for step in range(STEPS + 1):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(run(model, inputs), labels)
        c.add(f"loss.{step}", loss)
        if step == STEPS:
            break
        loss.backward()
        if step == 0:
            c.add("loss", loss)
            for name, p in model.named_parameters():
                c.add("grad." + name, p.grad)
        opt.step()
    for name, p in model.named_parameters():
        c.add("after." + name, p)
    print(f"  train: losses {[round(t.item(), 6) for k, t in c.tensors if k.startswith('loss.')]}")
    return c


def distilbert_data(out_dir):
    torch.manual_seed(300)
    cfg = DistilBertConfig(vocab_size=100, max_position_embeddings=40, n_layers=2, n_heads=4, dim=32, hidden_dim=64,
                           num_labels=3, dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0)
    model = DistilBertForSequenceClassification(cfg)
    condition(model)
    model.eval()
    lengths = [12, 9, 5]
    ids = torch.randint(1, cfg.vocab_size, (3, 12))
    mask = torch.zeros(3, 12, dtype=torch.int64)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = ids * mask  # padded positions hold the pad id 0
    save(out_dir, model)
    with torch.no_grad():
        hidden = model.distilbert(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model(input_ids=ids, attention_mask=mask).logits
        logits64 = model.double()(input_ids=ids, attention_mask=mask).logits
    model.float()
    e = Case("eval", "DistilBertForSequenceClassification forward (eval)")
    e.add("input_ids", ids)
    e.add("attention_mask", mask)
    e.add("last_hidden_state", hidden)
    e.add("logits", logits)
    e.add("logits_f64", logits64)
    print(f"  distilbert: |hidden| max {hidden.abs().max().item():.3g}, |logits| max {logits.abs().max().item():.3g}, "
          f"float32 vs float64 {(logits.double() - logits64).abs().max().item():.3g}")
    t = train_case(model, (ids, mask), torch.tensor([2, 0, 1]),
                   lambda m, x: m(input_ids=x[0], attention_mask=x[1]).logits)
    write_file(os.path.join(out_dir, "golden.bin"), [e, t])


def vit_config(**kw):
    return ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=16,
                     patch_size=4, num_channels=3, **kw)


def vit_data(out_dir):
    torch.manual_seed(400)
    model = ViTForImageClassification(vit_config(num_labels=5))
    condition(model)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    save(out_dir, model)
    with torch.no_grad():
        hidden = model.vit(pixel_values=x).last_hidden_state
        logits = model(pixel_values=x).logits
        logits64 = model.double()(pixel_values=x.double()).logits
    model.float()
    e = Case("eval", "ViTForImageClassification forward (eval)")
    e.add("pixel_values", x)
    e.add("last_hidden_state", hidden)
    e.add("logits", logits)
    e.add("logits_f64", logits64)
    print(f"  vit: |hidden| max {hidden.abs().max().item():.3g}, |logits| max {logits.abs().max().item():.3g}, "
          f"float32 vs float64 {(logits.double() - logits64).abs().max().item():.3g}")
    t = train_case(model, x.double(), torch.tensor([4, 1]), lambda m, inp: m(pixel_values=inp).logits)

    torch.manual_seed(401)
    base = ViTModel(vit_config())  # add_pooling_layer=True
    condition(base)
    base.eval()
    write_safetensors(os.path.join(out_dir, "vit_model.safetensors"), base.state_dict())
    with torch.no_grad():
        o = base(pixel_values=x)
    p = Case("pooler", "ViTModel forward (eval)")
    p.add("pixel_values", x)
    p.add("last_hidden_state", o.last_hidden_state)
    p.add("pooler_output", o.pooler_output)
    write_file(os.path.join(out_dir, "golden.bin"), [e, t, p])


def main():
    if len(sys.argv) == 1:  # only the committed file; with OUT_DIR, only the model data
        os.makedirs(os.path.dirname(SMALL_PATH), exist_ok=True)
        torch.manual_seed(0)
        cases = [keys_case("keys_distilbert_base", DistilBertModel(DistilBertConfig())),
                 keys_case("keys_distilbert_base_seqcls", DistilBertForSequenceClassification(DistilBertConfig())),
                 keys_case("keys_vit_base", ViTModel(ViTConfig())),
                 keys_case("keys_vit_base_cls", ViTForImageClassification(ViTConfig(num_labels=1000)))]
        write_file(SMALL_PATH, cases)
        return
    out_dir = sys.argv[1]
    distilbert_data(os.path.join(out_dir, "hf-distilbert"))
    vit_data(os.path.join(out_dir, "hf-vit"))


if __name__ == "__main__":
    main()
