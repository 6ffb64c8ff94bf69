#!/usr/bin/env python3
"""PyTorch eager baselines for bench/gpu (issue 11), measured on the GPU in the same run as Graft's.

  python3 bench/gpu/torch_baselines.py --out torch_baselines.json [--quick]

Rows (the same as graft_gpu_model_bench's, read from the JSON's "rows" by it):
  resnet50_train_fp32_b64_img_s       ResNet-50 training step (forward, cross-entropy, backward, SGD
                                      momentum 0.9, weight decay 1e-4), batch 64 at 224x224, 1000
                                      classes, float32 with TF32 off (cuDNN and matmul): exact FP32
  resnet50_train_default_b64_img_s    the same with PyTorch's defaults (cuDNN convolutions may use TF32)
  bert_base_infer_fp32_b32_s128_seq_s BERT-base (12 layers, hidden 768) inference, batch 32, sequence 128,
                                      no padding, torch.no_grad, float32 with TF32 off
  matmul_{fp32,tf32}_{4096,8192}_tflops  torch.matmul of square float32 matrices, TF32 off / on: the
                                      cross-check of graft_gpu_gemm_bench's cuBLAS rows
  *_bf16_*                            the same rows under torch.autocast("cuda", torch.bfloat16) (issue 12)
  vit_b16_infer_{fp32,bf16}_b64_img_s ViT-B/16 inference, batch 64 at 224x224 (timm or torchvision)
  sdpa_bf16_b8_h16_s2048_d64_{fwd,fwd_bwd}_tflops  F.scaled_dot_product_attention in bfloat16 (PyTorch
                                      picks its flash kernel), forward and forward + backward
The models are torchvision's resnet50 and transformers' BertModel when those packages import, else
the same architectures defined below (the JSON's "sources" says which). Random weights and inputs.
Timing: 3 warm-up iterations, then the median of the timed ones (--quick: 5, else 20), each ended by
torch.cuda.synchronize(). Exit 0; 77 without a CUDA device (or without torch's CUDA build).
"""
import argparse
import json
import math
import statistics
import sys
import time


def median_seconds(fn, runs, torch):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def resnet50(torch):
    """torchvision.models.resnet50 if importable, else the same network (v1.5: stride on the 3x3)."""
    try:
        import torchvision

        return torchvision.models.resnet50(num_classes=1000), "torchvision " + torchvision.__version__
    except Exception:
        pass
    nn = torch.nn

    class Bottleneck(nn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            out = planes * 4
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or inplanes != out:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

        def forward(self, x):
            identity = self.downsample(x) if self.downsample is not None else x
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            return self.relu(self.bn3(self.conv3(y)) + identity)

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, 2, 1))
            layers, inplanes = [], 64
            for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                for b in range(blocks):
                    layers.append(Bottleneck(inplanes, planes, stride if b == 0 else 1))
                    inplanes = planes * 4
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(2048, 1000)

        def forward(self, x):
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))

    return ResNet50(), "built-in definition (torchvision not importable)"


def vit_b16():
    """timm's vit_base_patch16_224 or torchvision's vit_b_16 (random weights), else (None, why)."""
    try:
        import timm

        return timm.create_model("vit_base_patch16_224", pretrained=False), "timm " + timm.__version__
    except Exception:
        pass
    try:
        import torchvision

        return torchvision.models.vit_b_16(), "torchvision " + torchvision.__version__
    except Exception as e:
        return None, f"skipped (neither timm nor torchvision imports: {e})"


def bert_base(torch):
    """transformers' BertModel (bert-base-uncased config) if importable, else the same encoder."""
    try:
        import transformers

        model = transformers.BertModel(transformers.BertConfig())
        return (lambda ids, mask: model(input_ids=ids, attention_mask=mask).last_hidden_state), model, \
            "transformers " + transformers.__version__
    except Exception:
        pass
    nn, F = torch.nn, torch.nn.functional
    H, L, heads, inter, vocab = 768, 12, 12, 3072, 30522

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(H, 3 * H)
            self.attn_out = nn.Linear(H, H)
            self.ln1 = nn.LayerNorm(H, eps=1e-12)
            self.fc1 = nn.Linear(H, inter)
            self.fc2 = nn.Linear(inter, H)
            self.ln2 = nn.LayerNorm(H, eps=1e-12)

        def forward(self, x, bias):
            B, T, _ = x.shape
            q, k, v = self.qkv(x).view(B, T, 3, heads, H // heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(B, T, H)
            x = self.ln1(self.attn_out(a) + x)
            return self.ln2(self.fc2(F.gelu(self.fc1(x))) + x)

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.word = nn.Embedding(vocab, H)
            self.pos = nn.Embedding(512, H)
            self.type = nn.Embedding(2, H)
            self.ln = nn.LayerNorm(H, eps=1e-12)
            self.layers = nn.ModuleList(Layer() for _ in range(L))
            self.pooler = nn.Linear(H, H)

        def forward(self, ids, mask):
            T = ids.shape[1]
            pos = torch.arange(T, device=ids.device)
            x = self.ln(self.word(ids) + self.pos(pos)[None] + self.type(torch.zeros_like(ids)))
            bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
            for layer in self.layers:
                x = layer(x, bias)
            torch.tanh(self.pooler(x[:, 0]))
            return x

    model = Bert()
    return model, model, "built-in definition (transformers not importable; SDPA attention)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--quick", action="store_true", help="fewer timed iterations")
    args = ap.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"torch_baselines: SKIPPED (cannot import torch: {e})")
        return 77
    if not torch.cuda.is_available():
        print(f"torch_baselines: SKIPPED (torch {torch.__version__} sees no CUDA device)")
        return 77
    runs = 5 if args.quick else 20
    dev = torch.device("cuda:0")
    rows, sources = {}, {}
    torch.manual_seed(0)

    def set_tf32(on):
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on

    defaults = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.benchmark = True

    # ResNet-50 training step, batch 64.
    model, sources["resnet50"] = resnet50(torch)
    model = model.to(dev).train()
    x = torch.randn(64, 3, 224, 224, device=dev)
    y = torch.randint(0, 1000, (64,), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for name, tf32 in (("resnet50_train_fp32_b64_img_s", False), ("resnet50_train_default_b64_img_s", None)):
        if tf32 is None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = defaults
        else:
            set_tf32(tf32)
        rows[name] = 64 / median_seconds(train_step, runs, torch)

    def train_step_bf16():  # issue 12: forward and loss under bfloat16 autocast, backward after it
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    set_tf32(False)
    rows["resnet50_train_bf16_b64_img_s"] = 64 / median_seconds(train_step_bf16, runs, torch)
    del model, opt, x, y
    torch.cuda.empty_cache()

    # BERT-base inference, batch 32, sequence 128.
    set_tf32(False)
    fn, module, sources["bert"] = bert_base(torch)
    module.to(dev).eval()
    ids = torch.randint(1, 30522, (32, 128), device=dev)
    mask = torch.ones(32, 128, dtype=torch.long, device=dev)

    def infer():
        with torch.no_grad():
            fn(ids, mask)

    rows["bert_base_infer_fp32_b32_s128_seq_s"] = 32 / median_seconds(infer, runs, torch)

    def infer_bf16():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            fn(ids, mask)

    rows["bert_base_infer_bf16_b32_s128_seq_s"] = 32 / median_seconds(infer_bf16, runs, torch)
    del module, fn
    torch.cuda.empty_cache()

    # ViT-B/16 inference, batch 64 at 224x224 (issue 12): timm's vit_base_patch16_224 or torchvision's
    # vit_b_16 (the same encoder: 12 layers, width 768, 12 heads, MLP 3072); skipped when neither imports.
    vit, sources["vit"] = vit_b16()
    if vit is not None:
        vit = vit.to(dev).eval()
        imgs = torch.randn(64, 3, 224, 224, device=dev)

        def vit_infer():
            with torch.no_grad():
                vit(imgs)

        def vit_infer_bf16():
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                vit(imgs)

        rows["vit_b16_infer_fp32_b64_img_s"] = 64 / median_seconds(vit_infer, runs, torch)
        rows["vit_b16_infer_bf16_b64_img_s"] = 64 / median_seconds(vit_infer_bf16, runs, torch)
        del vit, imgs
        torch.cuda.empty_cache()

    # Scaled dot-product attention (issue 12): bfloat16, B 8, H 16, S 2048, D 64, no mask; TFLOP/s counted
    # as FlashAttention's benchmarks do: forward 4 B H S^2 D, backward 2.5 times that.
    B, H, S, D = 8, 16, 2048, 64
    q, k, v = (torch.randn(B, H, S, D, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    fwd_flop = 4 * B * H * S * S * D
    F = torch.nn.functional

    def sdpa_fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v)

    def sdpa_fwd_bwd():
        F.scaled_dot_product_attention(q, k, v).backward(gout)

    gout = torch.randn(B, H, S, D, device=dev, dtype=torch.bfloat16)
    rows["sdpa_bf16_b8_h16_s2048_d64_fwd_tflops"] = fwd_flop / median_seconds(sdpa_fwd, runs, torch) / 1e12
    rows["sdpa_bf16_b8_h16_s2048_d64_fwd_bwd_tflops"] = 3.5 * fwd_flop / median_seconds(sdpa_fwd_bwd, runs, torch) / 1e12
    del q, k, v, gout
    torch.cuda.empty_cache()

    # GEMM cross-check.
    for n in (4096, 8192):
        a = torch.randn(n, n, device=dev)
        b = torch.randn(n, n, device=dev)
        for kind, tf32 in (("fp32", False), ("tf32", True)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            s = median_seconds(lambda: torch.matmul(a, b), max(3, runs // 2), torch)
            rows[f"matmul_{kind}_{n}_tflops"] = 2 * n**3 / s / 1e12
        a16, b16 = a.bfloat16(), b.bfloat16()
        s = median_seconds(lambda: torch.matmul(a16, b16), max(3, runs // 2), torch)
        rows[f"matmul_bf16_{n}_tflops"] = 2 * n**3 / s / 1e12
        del a, b, a16, b16
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = defaults

    result = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "device": torch.cuda.get_device_name(0),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": runs,
        "sources": sources,
        "rows": rows,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"# PyTorch {torch.__version__} eager on {result['device']} (CUDA {result['cuda']}, cuDNN {result['cudnn']})")
    print("| row | torch |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.1f} |" if math.isfinite(v) else f"| {k} | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
