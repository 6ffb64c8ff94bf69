#!/usr/bin/env python3
"""tools/gen_optim_goldens.py - PyTorch goldens for Graft's optimizers, clipping and schedules
(tests/test_optim.cpp).

Run in the reference environment (tools/pyenv.sh; transformers gives the cosine schedule):

    source tools/pyenv.sh && $GRAFT_PYTHON tools/gen_optim_goldens.py

Writes tests/data/optim/optim_golden.bin (format: tools/gen_goldens.py), deterministic (seed 0):

  "adam", "adamw", "sgd_nesterov": two parameter groups (group 0: p0 [3, 4] and p1 [5]; group 1: p2
      [2, 3]) with their own lr and weight_decay (attr_lr0, attr_lr1, attr_wd0, attr_wd1), the
      optimizer's other options as attr_*; the initial values p<k>, the gradients g<s>_<k> fed at step
      s = 0..3, the values after each step p<k>_after<s>, and the final state (state_<k>_<name>).
  "clip_norm2", "clip_norm_inf": gradients g<k>, attr_max_norm, the returned total norm "total" and
      the clipped gradients clipped<k> (torch.nn.utils.clip_grad_norm_).
  "step_lr": factors for steps 0..29 of torch.optim.lr_scheduler.StepLR(step_size 7, gamma 0.5).
  "cosine_warmup": factors for steps 0..39 of transformers.get_cosine_schedule_with_warmup(warmup 5,
      total 30); the test compares steps 0..30 (past the end transformers' curve rises again, Graft's
      stays at its minimum).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_goldens import Case, write_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "optim", "optim_golden.bin")
torch.set_num_threads(1)
STEPS = 4


def optimizer_case(name, make, attrs):
    torch.manual_seed(len(name))
    shapes = [(3, 4), (5,), (2, 3)]
    params = [torch.randn(*s).requires_grad_() for s in shapes]
    c = Case(name, "optimizer")
    for k, p in enumerate(params):
        c.add(f"p{k}", p.detach().clone())
    for key, v in attrs.items():
        c.add("attr_" + key, torch.tensor(float(v), dtype=torch.float64))
    opt = make([{"params": params[:2], "lr": attrs["lr0"], "weight_decay": attrs["wd0"]},
                {"params": params[2:], "lr": attrs["lr1"], "weight_decay": attrs["wd1"]}])
    for s in range(STEPS):
        for k, p in enumerate(params):
            if s == 1 and k == 1:
                p.grad = None  # a parameter without a gradient this step is skipped
                continue
            g = torch.randn_like(p)
            p.grad = g.clone()
            c.add(f"g{s}_{k}", g)
        opt.step()
        for k, p in enumerate(params):
            c.add(f"p{k}_after{s}", p.detach().clone())
    for k, p in enumerate(params):
        for sname, t in opt.state[p].items():
            c.add(f"state_{k}_{sname}", t.detach().clone().double() if sname == "step" else t.detach().clone())
    return c


def clip_case(name, norm_type, max_norm):
    torch.manual_seed(7)
    params = [torch.randn(4, 3, requires_grad=True), torch.randn(6, requires_grad=True)]
    c = Case(name, "clip_grad_norm_")
    for k, p in enumerate(params):
        p.grad = torch.randn_like(p) * 2
        c.add(f"g{k}", p.grad.clone())
    c.add("attr_max_norm", torch.tensor(max_norm, dtype=torch.float64))
    c.add("attr_norm_type", torch.tensor(norm_type, dtype=torch.float64))
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
    c.add("total", total.double().reshape(()))
    for k, p in enumerate(params):
        c.add(f"clipped{k}", p.grad.clone())
    return c


def schedule_case(name, make, steps):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    sched = make(opt)
    factors = []
    for _ in range(steps):
        factors.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    c = Case(name, "schedule")
    c.add("factors", torch.tensor(factors, dtype=torch.float64))
    return c


def main():
    from transformers import get_cosine_schedule_with_warmup
    cases = [
        optimizer_case("adam", lambda g: torch.optim.Adam(g, betas=(0.8, 0.95), eps=1e-6),
                       {"lr0": 0.01, "lr1": 0.05, "wd0": 0.1, "wd1": 0.0, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6}),
        optimizer_case("adamw", lambda g: torch.optim.AdamW(g, betas=(0.9, 0.999), eps=1e-8),
                       {"lr0": 0.02, "lr1": 0.003, "wd0": 0.05, "wd1": 0.5, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
        optimizer_case("sgd_nesterov", lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9, nesterov=True),
                       {"lr0": 0.1, "lr1": 0.02, "wd0": 0.01, "wd1": 0.0, "momentum": 0.9}),
        clip_case("clip_norm2", 2.0, 1.5),
        clip_case("clip_norm_inf", float("inf"), 1.0),
        schedule_case("step_lr", lambda o: torch.optim.lr_scheduler.StepLR(o, 7, 0.5), 30),
        schedule_case("cosine_warmup", lambda o: get_cosine_schedule_with_warmup(o, 5, 30), 40),
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    write_file(OUT, cases)


if __name__ == "__main__":
    main()
