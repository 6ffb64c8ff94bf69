#!/usr/bin/env python3
"""tools/gen_model_goldens.py - PyTorch goldens for Graft's models (tests/test_models.cpp).

Run with PyTorch 1.13 + torchvision 0.14 (only /usr/bin/python3 has them here):

    /usr/bin/python3 tools/gen_model_goldens.py              # committed small goldens only
    /usr/bin/python3 tools/gen_model_goldens.py OUT_DIR      # only the big files, into OUT_DIR
    /usr/bin/python3 tools/gen_model_goldens.py OUT_DIR --vit-base   # and ViT-B/16 (by hand, 330 MB more)

Deterministic: fixed seeds, one CPU thread. Golden format: tools/gen_goldens.py (reader tests/golden.hpp).

Committed, tests/data/models/models_golden.bin (small, runs without OUT_DIR):
    case "keys_resnet18", "keys_resnet34", "keys_resnet50", "keys_resnet101", "keys_vit_tiny_patch16_224",
    "keys_vit_small_patch16_224", "keys_vit_base_patch16_224":
        one int64 1-D tensor per state_dict entry, in torch's order: key = the state_dict key,
        value = that tensor's shape (empty for 0-dim tensors). Built from torchvision.models.resnetXX()
        and from the timm-compatible reference below.
    case "vit_small_config": a ViT with img 32, patch 16, dim 32, depth 2, heads 2, mlp_ratio 4,
        10 classes: "sd.<key>" for its state dict, "x" [2, 3, 32, 32], "features" [2, 32], "out" [2, 10].
    case "keys_deit_tiny_distilled_patch16_224": the keys case of timm's distilled DeiT-Ti (dist_token, head_dist).
    case "deit_distilled_small_config": a small ViT as above but dim 16, with timm's distillation token
        (VisionTransformerDistilled semantics): "sd.<key>", "x", "tokens" [2, 6, 16] (forward_features,
        all tokens normalized), "pre_logits" [2, 16] ((cls + dist) / 2), "out" [2, 10] (eval: the two
        heads averaged), "out_train" (training mode, distilled_training False: averaged too), "out_cls"
        and "out_dist" (training with distilled_training True: the two heads apart).

Big, into OUT_DIR (set GRAFT_MODEL_DATA=OUT_DIR for the C++ test; ~520 MB, ~850 MB with --vit-base):
    <model>.safetensors (state dict) and <model>_golden.bin, one case named after the model with "x"
    [B, 3, 224, 224], "features" and "out" (eval mode), for resnet18, resnet50, vit_tiny_patch16_224
    (B = 2), resnet34, resnet101, vit_small_patch16_224 (B = 1), and vit_base_patch16_224 (B = 1,
    only with --vit-base).
The safetensors files are written by the tiny writer below (spec: u64 LE header length, JSON header
{name: {dtype, shape, data_offsets}}, raw little-endian data).

Weights: torchvision's seeded init, then BatchNorm weight/bias/running stats randomized (so eval-mode
BatchNorm and every name matter); the ViT reference gets random LayerNorm affine and cls_token too.

The ViT reference follows timm's VisionTransformer (timm 0.9, global_pool='token', class token, no
registers, qkv_bias=True, LayerNorm eps 1e-6, GELU erf, pre-norm blocks): module names patch_embed.proj,
cls_token, pos_embed, pos_drop, blocks.{i}.{norm1, attn.{qkv, proj}, norm2, mlp.{fc1, act, fc2}}, norm, head;
with distilled=True, timm's deit.VisionTransformerDistilled: dist_token and head_dist as well.
"""
import json
import os
import struct
import sys

import torch
import torch.nn as nn
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402  (the shared writer)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_PATH = os.path.join(ROOT, "tests", "data", "models", "models_golden.bin")

torch.set_num_threads(1)


# ---- timm-compatible ViT ------------------------------------------------------------------------
class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = nn.Identity()
        self.num_patches = (img_size // patch_size) ** 2

    def forward(self, x):
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(0.0)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(0.0)

    def forward(self, x):
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = nn.Identity()
        self.drop_path1 = nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = nn.Identity()
        self.drop_path2 = nn.Identity()

    def forward(self, x):
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class VisionTransformer(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4.0, distilled=False):
        super().__init__()
        self.distilled = distilled
        self.distilled_training = False  # timm's default: training forward averages the two heads too
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        prefix = 2 if distilled else 1
        self.pos_embed = nn.Parameter(torch.randn(1, self.patch_embed.num_patches + prefix, embed_dim) * .02)
        if distilled:  # timm's VisionTransformerDistilled registers it after pos_embed
            self.dist_token = nn.Parameter(torch.randn(1, 1, embed_dim) * .02)
        self.pos_drop = nn.Dropout(0.0)
        self.patch_drop = nn.Identity()
        self.norm_pre = nn.Identity()
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc_norm = nn.Identity()
        self.head_drop = nn.Dropout(0.0)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if distilled:
            self.head_dist = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x):
        x = self.patch_embed(x)
        prefix = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.distilled:
            prefix.append(self.dist_token.expand(x.shape[0], -1, -1))
        x = torch.cat(prefix + [x], dim=1)  # timm's _pos_embed (no_embed_class False): concat, then add
        x = self.norm_pre(self.patch_drop(self.pos_drop(x + self.pos_embed)))
        return self.norm(self.blocks(x))

    def forward_head(self, x, pre_logits=False):
        if not self.distilled:
            return self.head(self.head_drop(self.fc_norm(x[:, 0])))
        # timm's VisionTransformerDistilled.forward_head (no head_drop there)
        x, x_dist = x[:, 0], x[:, 1]
        if pre_logits:
            return (x + x_dist) / 2
        x, x_dist = self.head(x), self.head_dist(x_dist)
        if self.distilled_training and self.training:
            return x, x_dist
        return (x + x_dist) / 2

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def vit(dim, depth, heads, img=224, classes=1000, distilled=False):
    return VisionTransformer(img_size=img, patch_size=16, num_classes=classes, embed_dim=dim, depth=depth,
                             num_heads=heads, distilled=distilled)


# ---- weights, safetensors writer ----------------------------------------------------------------
def randomize_norms(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.0)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
        if isinstance(model, VisionTransformer):
            model.cls_token.normal_(0.0, 0.5)
            if model.distilled:
                model.dist_token.normal_(0.0, 0.5)


ST_DTYPES = {torch.float32: "F32", torch.int64: "I64", torch.float64: "F64"}


def write_safetensors(path, state_dict):
    header, blobs, offset = {}, [], 0
    for k, t in state_dict.items():
        b = t.detach().contiguous().numpy().tobytes()
        header[k] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    print(f"wrote {path}: {len(state_dict)} tensors, {8 + len(h) + offset} bytes")


def keys_case(name, model):
    c = Case(name, "state_dict keys and shapes")
    for k, t in model.state_dict().items():
        c.add(k, torch.tensor(list(t.shape), dtype=torch.int64))
    return c


def run_case(name, model, x):
    model.eval()
    with torch.no_grad():
        if isinstance(model, VisionTransformer):
            feats = model.forward_features(x)[:, 0]
        else:
            m = model
            y = m.maxpool(m.relu(m.bn1(m.conv1(x))))
            y = m.layer4(m.layer3(m.layer2(m.layer1(y))))
            feats = torch.flatten(m.avgpool(y), 1)
        out = model(x)
    c = Case(name, "model forward (eval)")
    c.add("x", x)
    c.add("features", feats)
    c.add("out", out)
    return c


def main():
    torch.manual_seed(0)
    cases = [keys_case("keys_resnet18", torchvision.models.resnet18()),
             keys_case("keys_resnet50", torchvision.models.resnet50()),
             keys_case("keys_vit_tiny_patch16_224", vit(192, 12, 3)),
             keys_case("keys_resnet34", torchvision.models.resnet34()),
             keys_case("keys_resnet101", torchvision.models.resnet101()),
             keys_case("keys_vit_small_patch16_224", vit(384, 12, 6)),
             keys_case("keys_vit_base_patch16_224", vit(768, 12, 12))]
    torch.manual_seed(1)
    small = vit(32, 2, 2, img=32, classes=10)
    randomize_norms(small)
    c = run_case("vit_small_config", small, torch.randn(2, 3, 32, 32))
    for k, t in small.state_dict().items():
        c.add("sd." + k, t)
    cases.append(c)
    cases.append(keys_case("keys_deit_tiny_distilled_patch16_224", vit(192, 12, 3, distilled=True)))
    torch.manual_seed(2)
    dist = vit(16, 2, 2, img=32, classes=10, distilled=True)  # dim 16: keeps the committed file small
    randomize_norms(dist)
    x = torch.randn(2, 3, 32, 32)
    c = Case("deit_distilled_small_config", "distilled DeiT forward (eval and train, dropout 0)")
    c.add("x", x)
    with torch.no_grad():
        dist.eval()
        tokens = dist.forward_features(x)
        c.add("tokens", tokens)
        c.add("pre_logits", dist.forward_head(tokens, pre_logits=True))
        c.add("out", dist(x))
        dist.train()
        c.add("out_train", dist(x))
        dist.distilled_training = True
        out_cls, out_dist = dist(x)
        c.add("out_cls", out_cls)
        c.add("out_dist", out_dist)
    for k, t in dist.state_dict().items():
        c.add("sd." + k, t)
    cases.append(c)
    if len(sys.argv) == 1:  # only the committed file; with OUT_DIR, only the big files
        write_file(SMALL_PATH, cases)

    if len(sys.argv) > 1:
        out_dir = sys.argv[1]
        os.makedirs(out_dir, exist_ok=True)
        # (name, builder, batch): seeds 100 + index, so adding a model at the end changes no other file.
        builders = [("resnet18", torchvision.models.resnet18, 2), ("resnet50", torchvision.models.resnet50, 2),
                    ("vit_tiny_patch16_224", lambda: vit(192, 12, 3), 2),
                    ("resnet34", torchvision.models.resnet34, 1), ("resnet101", torchvision.models.resnet101, 1),
                    ("vit_small_patch16_224", lambda: vit(384, 12, 6), 1),
                    ("vit_base_patch16_224", lambda: vit(768, 12, 12), 1)]
        for i, (name, build, batch) in enumerate(builders):
            if name == "vit_base_patch16_224" and "--vit-base" not in sys.argv:
                continue  # ViT-B/16 (330 MB) is checked by hand, not in CI
            torch.manual_seed(100 + i)
            model = build()
            randomize_norms(model)
            x = torch.randn(batch, 3, 224, 224)
            write_safetensors(os.path.join(out_dir, name + ".safetensors"), model.state_dict())
            write_file(os.path.join(out_dir, name + "_golden.bin"), [run_case(name, model, x)])
            o = model(x)
            print(f"  {name}: |out| max {o.abs().max().item():.3g}")


if __name__ == "__main__":
    main()
