"""pytorch_models.py: PyTorch's side of the Graft-vs-PyTorch table (bench/compare.sh, bench/README.md).

The same rows as bench_models (bench/bench_models.cpp), timed the same way: warmup calls, then the
median of N calls (N fitted to ~4 s within 3..50, or --reps), one row per process for its peak RSS.

    $(bash bench/install_baselines.sh --print-python) bench/pytorch_models.py --only resnet18_b16 --threads 2

Rows (fp32, random weights, torch's default init; eval() and torch.inference_mode() for forward rows):
  sgemm_{1024,2048,4096}     torch.mm of two [n, n] float32 tensors: on the CPU that is MKL's sgemm
                             (the wheel links MKL statically; MKL_VERBOSE=1 prints the SGEMM calls)
  resnet18_b{1,16}, resnet50_b{1,16}
                             torchvision.models.resnet18 / resnet50 (weights=None), [B, 3, 224, 224]
  efficientnet_lite0_b{1,16} timm tf_efficientnet_lite0: TF "SAME" padding (Conv2dSame), ReLU6, no SE,
                             BatchNorm eps 1e-3, as Graft's models::efficientnet_lite0 (timm's
                             efficientnet_lite0 pads symmetrically instead)
  minilm_l6_b8_s128, bert_base_b8_s128
                             transformers BertModel(BertConfig(...)) with the all-MiniLM-L6-v2 config
                             (6 layers, 384, 12 heads, 1536) / bert-base (12, 768, 12, 3072), ids
                             [8, 128], attention mask of ones; transformers' default attention (sdpa)
  resnet18_train_b16         one SGD step (lr 0.01, momentum 0.9): zero_grad, forward, cross_entropy,
                             backward, step on [16, 3, 224, 224]
bfloat16 rows (the issue-12 targets):
  bgemm_{2048,4096}          torch.mm of two [n, n] bfloat16 tensors (oneDNN's bf16 GEMM: AMX or
                             AVX512_BF16 where the CPU has them)
  resnet50_b16_bf16, minilm_l6_b8_s128_bf16, bert_base_b8_s128_bf16
                             the forward rows under torch.autocast("cpu", dtype=torch.bfloat16), one
                             autocast scope around the timed calls (as Graft's AutocastGuard)
  resnet18_train_b16_bf16    the training step with its forward and loss under autocast, backward after
Each row checks its result before timing (GEMM: 256 sampled entries against float64; models: the
output shape and finite values), and prints the line compare.sh parses:
  RESULT row=... ms=... min_ms=... reps=... threads=... peak_rss_kb=... base_rss_kb=... [gflops=...]
"""
import argparse
import resource
import statistics
import sys
import time


def peak_rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux


def fail(msg):
    print(f"pytorch_models: {msg}", file=sys.stderr)
    sys.exit(1)


def time_it(args, fn):
    """Warmup calls, then reps timed calls (or as many as fit in target seconds): median and min in ms."""
    last = 0.0
    for _ in range(args.warmup):
        t0 = time.perf_counter()
        fn()
        last = time.perf_counter() - t0
    reps = args.reps
    if reps <= 0:
        if args.warmup == 0:
            t0 = time.perf_counter()
            fn()
            last = time.perf_counter() - t0
        reps = min(max(round(args.target_seconds / max(last, 1e-6)), 3), 50)
    ms = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ms.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(ms), min(ms), reps


def print_result(torch, row, median_ms, min_ms, reps, base_rss_kb, extra=""):
    threads = torch.get_num_threads()
    print(f"{row:<24} {median_ms:10.2f} ms (min {min_ms:.2f}, median of {reps}, {threads} threads)  "
          f"peak RSS {peak_rss_kb() / 1024:.1f} MB ({base_rss_kb / 1024:.1f} MB before the row)  {extra}")
    print(f"RESULT row={row} ms={median_ms:.4f} min_ms={min_ms:.4f} reps={reps} threads={threads} "
          f"peak_rss_kb={peak_rss_kb()} base_rss_kb={base_rss_kb}" + (f" {extra}" if extra else ""), flush=True)


def require_finite(torch, out, shape, row):
    if tuple(out.shape) != tuple(shape):
        fail(f"{row}: output shape {tuple(out.shape)}, expected {tuple(shape)}")
    if not torch.isfinite(out).all():
        fail(f"{row}: non-finite output")


def row_sgemm(torch, args, row, n):
    base = peak_rss_kb()
    g = torch.Generator().manual_seed(1)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    c = torch.mm(a, b)
    idx = torch.randint(0, n, (256, 2), generator=torch.Generator().manual_seed(7))
    i, j = idx[:, 0], idx[:, 1]
    prod = a.double()[i, :] * b.double()[:, j].t()  # [256, n]
    ref, mag = prod.sum(1), prod.abs().sum(1)
    bad = ((c.double()[i, j] - ref).abs() > 1e-5 * mag + 1e-6).nonzero()
    if len(bad):
        fail(f"{row}: {len(bad)} of 256 sampled entries differ from the float64 reference")
    median_ms, min_ms, reps = time_it(args, lambda: torch.mm(a, b))
    gflops = 2.0 * n ** 3 / (median_ms * 1e-3) / 1e9
    print_result(torch, row, median_ms, min_ms, reps, base, f"gflops={gflops:.2f} kernel=mkl_sgemm")


def row_bgemm(torch, args, row, n):
    base = peak_rss_kb()
    g = torch.Generator().manual_seed(1)
    a = torch.randn(n, n, generator=g).bfloat16()
    b = torch.randn(n, n, generator=g).bfloat16()
    c = torch.mm(a, b)
    idx = torch.randint(0, n, (256, 2), generator=torch.Generator().manual_seed(7))
    i, j = idx[:, 0], idx[:, 1]
    prod = a.double()[i, :] * b.double()[:, j].t()
    ref, mag = prod.sum(1), prod.abs().sum(1)
    bad = ((c.double()[i, j] - ref).abs() > 1e-5 * mag + ref.abs() / 256 + 1e-6).nonzero()
    if len(bad):
        fail(f"{row}: {len(bad)} of 256 sampled entries differ from the float64 reference")
    median_ms, min_ms, reps = time_it(args, lambda: torch.mm(a, b))
    gflops = 2.0 * n ** 3 / (median_ms * 1e-3) / 1e9
    print_result(torch, row, median_ms, min_ms, reps, base, f"gflops={gflops:.2f} kernel=onednn_bf16")


def autocast(torch, bf16):
    import contextlib
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def image_model(name):
    if name in ("resnet18", "resnet50"):
        import torchvision
        return getattr(torchvision.models, name)(weights=None, num_classes=1000)
    import timm
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)


def row_image_forward(torch, args, row, name, batch, bf16=False):
    base = peak_rss_kb()
    model = image_model(name).eval()
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode(), autocast(torch, bf16):
        require_finite(torch, model(x), (batch, 1000), row)
        median_ms, min_ms, reps = time_it(args, lambda: require_finite(torch, model(x), (batch, 1000), row))
    print_result(torch, row, median_ms, min_ms, reps, base)


BERT_CONFIGS = {
    "minilm_l6": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "bert_base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}


def row_bert_forward(torch, args, row, name, batch, seq, bf16=False):
    from transformers import BertConfig, BertModel
    base = peak_rss_kb()
    cfg = BertConfig(vocab_size=30522, max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu",
                     layer_norm_eps=1e-12, **BERT_CONFIGS[name])
    model = BertModel(cfg).eval()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    with torch.inference_mode(), autocast(torch, bf16):
        def run():
            out = model(input_ids=ids, attention_mask=mask)
            require_finite(torch, out.last_hidden_state, (batch, seq, cfg.hidden_size), row)
        run()
        median_ms, min_ms, reps = time_it(args, run)
    print_result(torch, row, median_ms, min_ms, reps, base, f"attn_implementation={model.config._attn_implementation}")


def row_resnet18_train(torch, args, row, batch, bf16=False):
    import torchvision
    base = peak_rss_kb()
    model = torchvision.models.resnet18(weights=None, num_classes=1000).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(batch, 3, 224, 224, generator=g)
    y = torch.randint(0, 1000, (batch,), generator=g)

    def step():
        opt.zero_grad()
        with autocast(torch, bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if not torch.isfinite(loss):
            fail(f"{row}: non-finite loss")
    step()
    median_ms, min_ms, reps = time_it(args, step)
    print_result(torch, row, median_ms, min_ms, reps, base)


def all_rows():
    rows = {}
    for n in (1024, 2048, 4096):
        rows[f"sgemm_{n}"] = lambda torch, a, r, n=n: row_sgemm(torch, a, r, n)
    for name in ("resnet18", "resnet50", "efficientnet_lite0"):
        for batch in (1, 16):
            rows[f"{name}_b{batch}"] = lambda torch, a, r, name=name, batch=batch: row_image_forward(
                torch, a, r, name, batch)
    rows["minilm_l6_b8_s128"] = lambda torch, a, r: row_bert_forward(torch, a, r, "minilm_l6", 8, 128)
    rows["bert_base_b8_s128"] = lambda torch, a, r: row_bert_forward(torch, a, r, "bert_base", 8, 128)
    rows["resnet18_train_b16"] = lambda torch, a, r: row_resnet18_train(torch, a, r, 16)
    for n in (2048, 4096):
        rows[f"bgemm_{n}"] = lambda torch, a, r, n=n: row_bgemm(torch, a, r, n)
    rows["resnet50_b16_bf16"] = lambda torch, a, r: row_image_forward(torch, a, r, "resnet50", 16, bf16=True)
    rows["minilm_l6_b8_s128_bf16"] = lambda torch, a, r: row_bert_forward(torch, a, r, "minilm_l6", 8, 128, bf16=True)
    rows["bert_base_b8_s128_bf16"] = lambda torch, a, r: row_bert_forward(torch, a, r, "bert_base", 8, 128, bf16=True)
    rows["resnet18_train_b16_bf16"] = lambda torch, a, r: row_resnet18_train(torch, a, r, 16, bf16=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--list", action="store_true")
    p.add_argument("--only", default="", help="rows, comma-separated (default: all, in one process)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--reps", type=int, default=0, help="timed calls (default: as many as fit in 4 s, 3..50)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="warmup 1, reps 2 (smoke test)")
    args = p.parse_args()
    args.target_seconds = 4.0
    if args.quick:
        args.warmup, args.reps = 1, 2
    rows = all_rows()
    if args.list:
        print("\n".join(rows))
        return
    wanted = [w for w in args.only.split(",") if w] or list(rows)
    for w in wanted:
        if w not in rows:
            fail(f"unknown row '{w}' (--list shows them)")

    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"pytorch_models: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}", flush=True)
    for w in wanted:
        rows[w](torch, args, w)


if __name__ == "__main__":
    main()
