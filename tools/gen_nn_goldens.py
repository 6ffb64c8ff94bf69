#!/usr/bin/env python3
"""tools/gen_nn_goldens.py - PyTorch goldens for Graft's nn layers (tests/test_nn.cpp).

Run (from anywhere; needs PyTorch 1.13, which only /usr/bin/python3 has here):

    /usr/bin/python3 tools/gen_nn_goldens.py

Writes tests/data/nn_golden.bin deterministically (fixed seed, one CPU thread), in the golden format of
tools/gen_goldens.py (whose writer it reuses; reader: tests/golden.hpp).

Each layer case is named after the layer configuration the C++ test builds (the C++ side holds the
constructor arguments for each case name). Keys, in file order:

    sd.<name>       the torch module's state_dict() entries, in torch's order, before the forward
    x, <mask keys>  the inputs (float32 x; bool/float masks; int64 indices for embedding)
    out             forward output (the module in train() mode unless the case name ends in _eval)
    gout            the upstream gradient; the loss is sum(out * gout)
    grad_x          d loss / d x (float inputs only)
    grad.<name>     d loss / d parameter, for every parameter
    after.<name>    buffers after the forward (BatchNorm's running stats and num_batches_tracked)

Name cases hold no tensors: their `op` string is a newline-joined list of names from the nested model
(a ResNet-like stem + two blocks + head):
    names_state_dict     state_dict() keys in order
    names_parameters     named_parameters() names in order
    names_modules        named_modules() names in order (the root is "")
The case `nested_model` holds that model's state dict, an input and its eval-mode output.
Dropout is 0 everywhere, so train-mode outputs are deterministic.
"""
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402  (the shared writer)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_PATH = os.path.join(ROOT, "tests", "data", "nn_golden.bin")

torch.set_num_threads(1)
torch.manual_seed(0)
CASES = []


def randomize(module):
    """Random parameters (never the 0/1 defaults) so that a wrong name or order shows."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape) * 0.5)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape) * 0.3)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape) + 0.5)


def layer_case(name, module, inputs, call=None, float_inputs=("x",), randomize_params=True):
    """inputs: ordered {key: tensor}. call(module, t) -> output; defaults to module(t['x'])."""
    if randomize_params:
        randomize(module)
    c = Case(name, "nn")
    for k, v in module.state_dict().items():
        c.add("sd." + k, v)
    t = {}
    for k, v in inputs.items():
        c.add(k, v)
        v = v.detach().clone()
        if k in float_inputs and v.is_floating_point():
            v.requires_grad_(True)
        t[k] = v
    out = call(module, t) if call else module(t["x"])
    c.add("out", out)
    gout = torch.randn(out.shape)
    c.add("gout", gout)
    (out * gout).sum().backward()
    for k in float_inputs:
        if k in t and t[k].requires_grad:
            c.add("grad_" + k, t[k].grad)
    for k, p in module.named_parameters():
        c.add("grad." + k, p.grad if p.grad is not None else torch.zeros_like(p))
    for k, b in module.named_buffers():
        c.add("after." + k, b)
    CASES.append(c)


def rn(*shape):
    return torch.randn(*shape)


def layer_cases():
    layer_case("linear", nn.Linear(5, 4), {"x": rn(2, 3, 5)})
    layer_case("linear_nobias", nn.Linear(5, 4, bias=False), {"x": rn(3, 5)})
    layer_case("conv2d", nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2),
               {"x": rn(2, 4, 7, 6)})
    layer_case("conv2d_nobias", nn.Conv2d(3, 5, 3, bias=False), {"x": rn(1, 3, 5, 5)})
    bn = nn.BatchNorm2d(3)
    layer_case("batchnorm2d_train", bn, {"x": rn(4, 3, 3, 2)})
    bn = nn.BatchNorm2d(3, momentum=None)  # cumulative average
    randomize(bn)
    with torch.no_grad():
        bn.num_batches_tracked.fill_(2)
    layer_case("batchnorm2d_train_cumulative", bn, {"x": rn(4, 3, 3, 2)}, randomize_params=False)
    bn = nn.BatchNorm2d(3, eps=1e-3)
    randomize(bn)
    bn.eval()
    layer_case("batchnorm2d_eval", bn, {"x": rn(2, 3, 4, 3)}, randomize_params=False)
    layer_case("batchnorm2d_noaffine_notrack", nn.BatchNorm2d(3, affine=False, track_running_stats=False),
               {"x": rn(2, 3, 3, 3)})
    bn = nn.BatchNorm2d(3, affine=False, track_running_stats=False)
    bn.eval()  # no running stats: batch statistics in eval too
    layer_case("batchnorm2d_notrack_eval", bn, {"x": rn(2, 3, 3, 3)})
    layer_case("layernorm", nn.LayerNorm(6), {"x": rn(2, 3, 6)})
    layer_case("layernorm_2d", nn.LayerNorm([3, 4], eps=1e-6), {"x": rn(2, 3, 4)})
    emb = nn.Embedding(7, 4, padding_idx=2)
    randomize(emb)
    with torch.no_grad():
        emb.weight[2].zero_()
    layer_case("embedding", emb, {"x": torch.tensor([[1, 2, 6], [2, 0, 3]])}, randomize_params=False)
    layer_case("maxpool2d", nn.MaxPool2d(3, stride=2, padding=1), {"x": rn(2, 3, 7, 6)})
    layer_case("avgpool2d", nn.AvgPool2d(2, stride=2, padding=1, count_include_pad=False), {"x": rn(2, 3, 5, 6)})
    layer_case("adaptiveavgpool2d", nn.AdaptiveAvgPool2d((2, 3)), {"x": rn(2, 3, 5, 7)})
    layer_case("sequential_activations",
               nn.Sequential(nn.Linear(6, 8), nn.GELU(approximate="tanh"), nn.Linear(8, 8), nn.SiLU(),
                             nn.Linear(8, 8), nn.Hardswish(), nn.Linear(8, 8), nn.ReLU6(), nn.Linear(8, 5),
                             nn.GELU(), nn.Identity(), nn.ReLU()),
               {"x": rn(3, 6) * 2})
    layer_case("flatten", nn.Sequential(nn.Conv2d(2, 3, 2), nn.Flatten(), nn.Linear(3 * 3 * 3, 4)),
               {"x": rn(2, 2, 4, 4)})

    # MultiheadAttention, batch_first with a key padding mask (no query row fully masked).
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    kpm = torch.tensor([[False, False, True, False, True], [False, False, False, False, False]])
    layer_case("mha_kpm", mha, {"x": rn(2, 5, 8), "key_padding_mask": kpm},
               call=lambda m, t: m(t["x"], t["x"], t["x"], key_padding_mask=t["key_padding_mask"],
                                   need_weights=False)[0])
    # Sequence-first cross-attention with a bool attn_mask [L, S] (true = not allowed).
    mha = nn.MultiheadAttention(8, 4)
    am = torch.tensor([[False, True, False, False, True], [False, False, True, False, False],
                       [True, False, False, False, False]])
    layer_case("mha_seqfirst_attn_mask", mha, {"x": rn(3, 2, 8), "kv": rn(5, 2, 8), "attn_mask": am},
               call=lambda m, t: m(t["x"], t["kv"], t["kv"], attn_mask=t["attn_mask"], need_weights=False)[0],
               float_inputs=("x", "kv"))

    # Sequence-first, no biases, bool key padding mask [B, S] and float 3-D attn_mask [B*H, L, S].
    mha = nn.MultiheadAttention(6, 3, bias=False)
    kpm = torch.tensor([[False, True, False, False], [False, False, False, True]])
    layer_case("mha_float_attn_mask_nobias", mha,
               {"x": rn(4, 2, 6), "key_padding_mask": kpm, "attn_mask": rn(6, 4, 4)},
               call=lambda m, t: m(t["x"], t["x"], t["x"], key_padding_mask=t["key_padding_mask"],
                                   attn_mask=t["attn_mask"], need_weights=False)[0])
    # A float key padding mask is added to the scores (torch 1.13 takes it only without attn_mask).
    layer_case("mha_float_kpm", nn.MultiheadAttention(6, 2), {"x": rn(4, 2, 6), "key_padding_mask": rn(2, 4)},
               call=lambda m, t: m(t["x"], t["x"], t["x"], key_padding_mask=t["key_padding_mask"],
                                   need_weights=False)[0])
    # Unbatched [L, E] self-attention.
    layer_case("mha_unbatched", nn.MultiheadAttention(4, 2, batch_first=True), {"x": rn(3, 4)},
               call=lambda m, t: m(t["x"], t["x"], t["x"], need_weights=False)[0])

    enc = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    kpm = torch.tensor([[False, False, False, True], [False, True, False, False]])
    layer_case("transformer_postnorm_relu", enc, {"x": rn(2, 4, 8), "key_padding_mask": kpm},
               call=lambda m, t: m(t["x"], src_key_padding_mask=t["key_padding_mask"]))
    enc = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, activation="gelu", batch_first=True,
                                     norm_first=True)
    layer_case("transformer_prenorm_gelu", enc, {"x": rn(2, 4, 8), "key_padding_mask": kpm},
               call=lambda m, t: m(t["x"], src_key_padding_mask=t["key_padding_mask"]))

    # timm's PatchEmbed (proj conv, flatten(2), transpose(1, 2)) and a learned pos_embed added.
    class PatchEmbedPos(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos_embed = nn.Parameter(torch.zeros(1, 4, 6))
            self.patch_embed = nn.Module()
            self.patch_embed.proj = nn.Conv2d(3, 6, 4, stride=4)
            self.patch_embed.norm = nn.Identity()

        def forward(self, x):
            return self.patch_embed.proj(x).flatten(2).transpose(1, 2) + self.pos_embed

    layer_case("patch_embed_pos", PatchEmbedPos(), {"x": rn(2, 3, 8, 8)})


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.layer1 = nn.Sequential(Block(4, 4, 1), Block(4, 6, 2))
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(self.pool(self.layer1(self.stem(x))).flatten(1))


def name_cases():
    m = Nested()
    CASES.append(Case("names_state_dict", "\n".join(m.state_dict().keys())))
    CASES.append(Case("names_parameters", "\n".join(n for n, _ in m.named_parameters())))
    CASES.append(Case("names_modules", "\n".join(n for n, _ in m.named_modules())))
    randomize(m)
    m.eval()
    c = Case("nested_model", "nn")
    for k, v in m.state_dict().items():
        c.add("sd." + k, v)
    x = rn(2, 3, 6, 6)
    c.add("x", x)
    with torch.no_grad():
        c.add("out", m(x))
    CASES.append(c)


def main():
    layer_cases()
    name_cases()
    write_file(OUT_PATH, CASES)


if __name__ == "__main__":
    main()
