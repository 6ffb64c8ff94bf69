#!/usr/bin/env python3
"""tools/gen_goldens.py - PyTorch golden files for Graft's parity and end-to-end training tests.

Run (from anywhere; needs PyTorch, which the default python3 here lacks):

    /usr/bin/python3 tools/gen_goldens.py

Writes, deterministically (fixed seed, one CPU thread; consecutive runs give identical bytes, another
CPU or torch build may differ in the last float32 bits, far inside the tests' tolerance):

    tests/data/ops_golden.bin    op-level cases, read by tests/test_parity.cpp
    tests/data/train_golden.bin  an MLP and a CNN trained 5 SGD steps, read by tests/test_train_e2e.cpp

and prints the ops registered in include/graft (GRAFT_REGISTER_OP) that have no case here.

File format, version 1, little-endian (reader: tests/golden.hpp):

    file   := magic "GRAFTGLD" (8 bytes), u32 version (1), u32 case_count, case * case_count
    case   := string name, string op, u32 tensor_count, tensor * tensor_count
    tensor := string key, u8 dtype, u8 rank, i64 dims[rank], raw row-major element data
    string := u32 byte length, bytes (UTF-8, no terminator)
    dtype  := graft::DType's enum order: 0 float32, 1 float64, 2 bfloat16, 3 float16, 4 int32,
              5 int64, 6 bool (1 byte per element)

`op` is a name from graft::op_registry() (in the training file: the model name, see train_case).
Keys in an op case:

    <input>         an op input (float32 values, int64/int32 indices, bool masks), stored before the
                    call (for batch_norm: the running stats before their update)
    attr_<name>     an option: int64 scalar or 1-D list, float64 scalar, or bool scalar
    out / out<k>    the expected output(s), out<k> when the op returns several
    gout / gout<k>  the upstream gradient for each float output that requires grad
    grad_<input>    d(sum_k <out_k, gout_k>)/d(input) for each float input that requires grad
                    (zeros when the input does not reach the outputs)

Parity is checked in float32, what users run. Random values, never all zeros or ones; no exact
ties where the gradient would be ambiguous (max/min/relu kinks). Dropout has no golden: its test
checks statistics instead.
"""
import math
import os
import re
import struct
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(ROOT, "tests", "data")
MAGIC = b"GRAFTGLD"
VERSION = 1
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3,
               torch.int32: 4, torch.int64: 5, torch.bool: 6}
REDUCTION = {"none": 0, "mean": 1, "sum": 2}  # graft::Reduction { None, Mean, Sum }

torch.set_num_threads(1)
torch.manual_seed(0)
F32 = torch.float32


# ---- writing ----------------------------------------------------------------------------------------
def pack_string(s):
    b = s.encode("utf-8")
    return struct.pack("<I", len(b)) + b


def pack_tensor(key, t):
    t = t.detach().contiguous()
    assert t.dtype in DTYPE_CODES, (key, t.dtype)
    out = pack_string(key) + struct.pack("<BB", DTYPE_CODES[t.dtype], t.dim())
    out += b"".join(struct.pack("<q", d) for d in t.shape)
    return out + t.numpy().tobytes()


def write_file(path, cases):
    blob = MAGIC + struct.pack("<II", VERSION, len(cases))
    for c in cases:
        blob += pack_string(c.name) + pack_string(c.op) + struct.pack("<I", len(c.tensors))
        for key, t in c.tensors:
            blob += pack_tensor(key, t)
    with open(path, "wb") as f:
        f.write(blob)
    print(f"wrote {path}: {len(cases)} cases, {len(blob)} bytes")


class Case:
    def __init__(self, name, op):
        self.name, self.op, self.tensors = name, op, []

    def add(self, key, t):
        assert all(k != key for k, _ in self.tensors), (self.name, key)
        self.tensors.append((key, t.detach().clone()))


def attr_tensor(v):
    if isinstance(v, bool):
        return torch.tensor(v, dtype=torch.bool)
    if isinstance(v, int):
        return torch.tensor(v, dtype=torch.int64)
    if isinstance(v, float):
        return torch.tensor(v, dtype=torch.float64)
    if isinstance(v, (list, tuple)):
        return torch.tensor(list(v), dtype=torch.int64).reshape(len(v))
    raise TypeError(v)


OPS = []


def case(name, op, inputs, fn, attrs=None, nograd=()):
    """Records one op case. inputs: ordered {key: tensor}; fn(t) -> tensor or tuple, where t maps the
    keys to the inputs (float inputs not in `nograd` require grad)."""
    c = Case(name, op)
    t = {}
    for k, v in inputs.items():
        c.add(k, v)  # before the call: batch_norm updates its running stats in place
        v = v.detach().clone()
        if v.is_floating_point() and k not in nograd:
            v.requires_grad_(True)
        t[k] = v
    for k, v in (attrs or {}).items():
        c.add("attr_" + k, attr_tensor(v))
    outs = fn(t)
    single = isinstance(outs, torch.Tensor)
    outs = [outs] if single else list(outs)
    loss = None
    for i, o in enumerate(outs):
        suffix = "" if single else str(i)
        c.add("out" + suffix, o)
        if o.requires_grad:
            g = torch.randn(o.shape, dtype=o.dtype)
            c.add("gout" + suffix, g)
            term = (o * g).sum()
            loss = term if loss is None else loss + term
    wrt = [k for k, v in t.items() if v.requires_grad]
    if loss is not None and wrt:
        grads = torch.autograd.grad(loss, [t[k] for k in wrt], allow_unused=True)
        for k, g in zip(wrt, grads):
            c.add("grad_" + k, g if g is not None else torch.zeros_like(t[k]))
    OPS.append(c)


# ---- inputs ---------------------------------------------------------------------------------------------
def rn(*shape, scale=1.0):
    return torch.randn(shape) * scale


def pos(*shape):  # in [0.25, 1.75): log, sqrt, pow bases
    return torch.rand(shape) * 1.5 + 0.25


def away_from_zero(*shape):  # |v| in [0.5, 1.5): divisors
    s = torch.randint(0, 2, shape).float() * 2 - 1
    return s * (torch.rand(shape) + 0.5)


def idx(high, *shape, dtype=torch.int64):
    return torch.randint(0, high, shape, dtype=dtype)


# ---- elementwise -------------------------------------------------------------------------------------------
def elementwise_cases():
    for op, fn in [("add", torch.add), ("sub", torch.sub), ("mul", torch.mul)]:
        case(f"{op} broadcast [3,4] and [4]", op, {"a": rn(3, 4), "b": rn(4)}, lambda t, fn=fn: fn(t["a"], t["b"]))
        case(f"{op} broadcast [2,3,4] and [3,1]", op, {"a": rn(2, 3, 4), "b": rn(3, 1)},
             lambda t, fn=fn: fn(t["a"], t["b"]))
        case(f"{op} scalar 2.5", op, {"a": rn(3, 4)}, lambda t, fn=fn: fn(t["a"], 2.5), {"scalar": 2.5})
    case("div broadcast [2,3,4] and [3,1]", "div", {"a": rn(2, 3, 4), "b": away_from_zero(3, 1)},
         lambda t: t["a"] / t["b"])
    case("div scalar -1.5", "div", {"a": rn(3, 4)}, lambda t: t["a"] / -1.5, {"scalar": -1.5})
    case("pow tensor exponent, broadcast", "pow", {"a": pos(3, 4), "b": rn(4)}, lambda t: torch.pow(t["a"], t["b"]))
    case("maximum broadcast", "maximum", {"a": rn(3, 4), "b": rn(4)}, lambda t: torch.maximum(t["a"], t["b"]))
    case("minimum broadcast", "minimum", {"a": rn(2, 3, 4), "b": rn(3, 1)}, lambda t: torch.minimum(t["a"], t["b"]))
    case("where broadcast cond [3,4], a [3,4], b [4]", "where",
         {"cond": torch.rand(3, 4) > 0.5, "a": rn(3, 4), "b": rn(4)}, lambda t: torch.where(t["cond"], t["a"], t["b"]))
    # compare: integer-valued floats so eq/le/ge see real ties. attr cmp: 0 eq 1 ne 2 lt 3 le 4 gt 5 ge
    a, b = torch.randint(-2, 3, (3, 4)).float(), torch.randint(-2, 3, (4,)).float()
    for code, fn in enumerate([torch.eq, torch.ne, torch.lt, torch.le, torch.gt, torch.ge]):
        case(f"compare {fn.__name__} broadcast with ties", "compare", {"a": a, "b": b},
             lambda t, fn=fn: fn(t["a"], t["b"]), {"cmp": code})
    case("compare lt scalar 0.5", "compare", {"a": rn(3, 4)}, lambda t: t["a"] < 0.5, {"cmp": 2, "scalar": 0.5})

    unary = [("neg", torch.neg, rn(3, 5)), ("abs", torch.abs, rn(3, 5)), ("exp", torch.exp, rn(3, 5)),
             ("log", torch.log, pos(3, 5)), ("sqrt", torch.sqrt, pos(3, 5)), ("rsqrt", torch.rsqrt, pos(3, 5)),
             ("tanh", torch.tanh, rn(3, 5, scale=2)), ("sigmoid", torch.sigmoid, rn(3, 5, scale=3)),
             ("relu", torch.relu, rn(3, 5)), ("relu6", F.relu6, rn(4, 5, scale=5)),
             ("gelu", F.gelu, rn(3, 5, scale=2)),
             ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), rn(3, 5, scale=2)),
             ("silu", F.silu, rn(3, 5, scale=2)), ("hardswish", F.hardswish, rn(4, 5, scale=3))]
    for op, fn, x in unary:
        case(f"{op} [{x.shape[0]},{x.shape[1]}]", op, {"x": x}, lambda t, fn=fn: fn(t["x"]))
    case("pow_scalar 2.5 positive base", "pow_scalar", {"x": pos(3, 5)}, lambda t: t["x"] ** 2.5, {"p": 2.5})
    case("pow_scalar 2 signed base", "pow_scalar", {"x": rn(3, 5)}, lambda t: t["x"] ** 2.0, {"p": 2.0})
    case("pow_scalar -1.5", "pow_scalar", {"x": pos(3, 5)}, lambda t: t["x"] ** -1.5, {"p": -1.5})
    case("clamp [-0.5, 0.7]", "clamp", {"x": rn(4, 5)}, lambda t: torch.clamp(t["x"], -0.5, 0.7), {"lo": -0.5, "hi": 0.7})


# ---- copies, reductions, views ------------------------------------------------------------------------------
def view_cases():
    case("clone", "clone", {"x": rn(3, 4)}, lambda t: t["x"].clone())
    case("contiguous of a transpose", "contiguous", {"x": rn(3, 4)}, lambda t: t["x"].t().contiguous())
    case("to_dtype float32 -> float64", "to_dtype", {"x": rn(3, 4)}, lambda t: t["x"].to(torch.float64))
    case("sum all", "sum", {"x": rn(2, 3, 4)}, lambda t: t["x"].sum(), {"dims": []})
    case("sum dims [0,2]", "sum", {"x": rn(2, 3, 4)}, lambda t: t["x"].sum((0, 2)), {"dims": [0, 2]})
    case("sum dim -1 keepdim", "sum", {"x": rn(2, 3, 4)}, lambda t: t["x"].sum(-1, keepdim=True),
         {"dims": [-1], "keepdim": True})
    case("mean all", "mean", {"x": rn(2, 3, 4)}, lambda t: t["x"].mean(), {"dims": []})
    case("mean dims [1] keepdim", "mean", {"x": rn(2, 3, 4)}, lambda t: t["x"].mean(1, keepdim=True),
         {"dims": [1], "keepdim": True})
    case("sum_to [2,3,4] -> [3,1]", "sum_to", {"x": rn(2, 3, 4)}, lambda t: t["x"].sum_to_size(3, 1), {"shape": [3, 1]})
    case("view [2,3,4] -> [6,4]", "view", {"x": rn(2, 3, 4)}, lambda t: t["x"].view(6, 4), {"shape": [6, 4]})
    case("reshape [2,3,4] -> [4,-1]", "reshape", {"x": rn(2, 3, 4)}, lambda t: t["x"].reshape(4, -1), {"shape": [4, -1]})
    case("flatten 1..-1", "flatten", {"x": rn(2, 3, 4)}, lambda t: t["x"].flatten(1), {"start": 1, "end": -1})
    case("permute [2,0,1]", "permute", {"x": rn(2, 3, 4)}, lambda t: t["x"].permute(2, 0, 1), {"dims": [2, 0, 1]})
    case("transpose 0,2", "transpose", {"x": rn(2, 3, 4)}, lambda t: t["x"].transpose(0, 2), {"d0": 0, "d1": 2})
    case("narrow dim 1 start 1 length 2", "narrow", {"x": rn(2, 3, 4)}, lambda t: t["x"].narrow(1, 1, 2),
         {"dim": 1, "start": 1, "length": 2})
    case("slice dim 2 1:4:2", "slice", {"x": rn(2, 3, 5)}, lambda t: t["x"][:, :, 1:4:2],
         {"dim": 2, "start": 1, "end": 4, "step": 2})
    case("select dim 1 index -1", "select", {"x": rn(2, 3, 4)}, lambda t: t["x"].select(1, -1), {"dim": 1, "index": -1})
    case("expand [3,1] -> [2,3,4]", "expand", {"x": rn(3, 1)}, lambda t: t["x"].expand(2, 3, 4), {"shape": [2, 3, 4]})
    case("squeeze all", "squeeze", {"x": rn(3, 1, 4, 1)}, lambda t: t["x"].squeeze())
    case("squeeze dim 1", "squeeze", {"x": rn(3, 1, 4, 1)}, lambda t: t["x"].squeeze(1), {"dim": 1})
    case("unsqueeze dim 1", "unsqueeze", {"x": rn(3, 4)}, lambda t: t["x"].unsqueeze(1), {"dim": 1})


# ---- min/max, var, softmax, normalization ----------------------------------------------------------------------
def reduction_cases():
    for op, fn in [("max", torch.max), ("min", torch.min)]:
        case(f"{op} dim 1", op, {"x": rn(3, 5, 2)}, lambda t, fn=fn: tuple(fn(t["x"], 1)), {"dim": 1})
        case(f"{op} dim -1 keepdim", op, {"x": rn(3, 5)}, lambda t, fn=fn: tuple(fn(t["x"], -1, keepdim=True)),
             {"dim": -1, "keepdim": True})
        case(f"{op}_all", f"{op}_all", {"x": rn(3, 5)}, lambda t, fn=fn: fn(t["x"]))
    for op, fn in [("amax", torch.amax), ("amin", torch.amin)]:
        case(f"{op} dims [1]", op, {"x": rn(3, 5, 2)}, lambda t, fn=fn: fn(t["x"], [1]), {"dims": [1]})
        case(f"{op} dims [0,2] keepdim", op, {"x": rn(3, 5, 2)}, lambda t, fn=fn: fn(t["x"], [0, 2], keepdim=True),
             {"dims": [0, 2], "keepdim": True})
        case(f"{op} all", op, {"x": rn(3, 5)}, lambda t, fn=fn: fn(t["x"], [0, 1]), {"dims": []})
    for op, fn in [("argmax", torch.argmax), ("argmin", torch.argmin)]:
        case(f"{op} dim 1", op, {"x": rn(3, 5, 2)}, lambda t, fn=fn: fn(t["x"], 1), {"dim": 1})
        case(f"{op} dim 0 keepdim", op, {"x": rn(3, 5)}, lambda t, fn=fn: fn(t["x"], 0, keepdim=True),
             {"dim": 0, "keepdim": True})
        case(f"{op} flat", op, {"x": rn(3, 5)}, lambda t, fn=fn: fn(t["x"]))
    case("var dims [1] correction 1", "var", {"x": rn(3, 5, 2)}, lambda t: torch.var(t["x"], 1, unbiased=True),
         {"dims": [1], "correction": 1})
    case("var dims [0,2] correction 0 keepdim", "var", {"x": rn(3, 5, 2)},
         lambda t: torch.var(t["x"], (0, 2), unbiased=False, keepdim=True),
         {"dims": [0, 2], "correction": 0, "keepdim": True})
    case("var all", "var", {"x": rn(4, 5)}, lambda t: torch.var(t["x"]), {"dims": [], "correction": 1})
    for op, fn in [("softmax", F.softmax), ("log_softmax", F.log_softmax)]:
        case(f"{op} dim -1", op, {"x": rn(3, 7, scale=3)}, lambda t, fn=fn: fn(t["x"], -1), {"dim": -1})
        case(f"{op} dim 1 of 3-D", op, {"x": rn(2, 5, 3, scale=3)}, lambda t, fn=fn: fn(t["x"], 1), {"dim": 1})


def norm_cases():
    case("layer_norm [4] affine", "layer_norm", {"x": rn(2, 3, 4, scale=2), "weight": rn(4), "bias": rn(4)},
         lambda t: F.layer_norm(t["x"], [4], t["weight"], t["bias"]), {"normalized_shape": [4], "eps": 1e-5})
    case("layer_norm [3,4] no affine eps 1e-3", "layer_norm", {"x": rn(2, 3, 4)},
         lambda t: F.layer_norm(t["x"], [3, 4], eps=1e-3), {"normalized_shape": [3, 4], "eps": 1e-3})

    def bn(training, momentum, eps, stats=True):
        def fn(t):
            rm, rv = (t["running_mean"], t["running_var"]) if stats else (None, None)
            y = F.batch_norm(t["x"], rm, rv, t.get("weight"), t.get("bias"), training, momentum, eps)
            return (y, rm, rv) if stats else y
        return fn

    def bn_inputs(shape, affine=True, stats=True):
        c = shape[1]
        d = {"x": rn(*shape, scale=2) + 0.5}
        if stats:
            d["running_mean"] = rn(c, scale=0.1)
            d["running_var"] = torch.rand(c) + 0.5
        if affine:
            d["weight"], d["bias"] = rn(c), rn(c)
        return d

    stats = ("running_mean", "running_var")
    bn_attrs = lambda tr, m, e: {"training": tr, "momentum": m, "eps": e}
    case("batch_norm train [4,3,3,3] (out, running_mean, running_var after)", "batch_norm",
         bn_inputs((4, 3, 3, 3)), bn(True, 0.1, 1e-5), bn_attrs(True, 0.1, 1e-5), nograd=stats)
    case("batch_norm eval [4,3,3,3]", "batch_norm", bn_inputs((4, 3, 3, 3)), bn(False, 0.1, 1e-5),
         bn_attrs(False, 0.1, 1e-5), nograd=stats)
    case("batch_norm train [8,5] momentum 0.3 eps 1e-3", "batch_norm", bn_inputs((8, 5)), bn(True, 0.3, 1e-3),
         bn_attrs(True, 0.3, 1e-3), nograd=stats)
    case("batch_norm train [4,3,2,3] no affine", "batch_norm", bn_inputs((4, 3, 2, 3), affine=False),
         bn(True, 0.1, 1e-5), bn_attrs(True, 0.1, 1e-5), nograd=stats)
    case("batch_norm train [4,3,3,3] without running stats", "batch_norm", bn_inputs((4, 3, 3, 3), stats=False),
         bn(True, 0.1, 1e-5, stats=False), bn_attrs(True, 0.1, 1e-5))


# ---- matmul, conv, pool ------------------------------------------------------------------------------------------
def dense_cases():
    for a, b in [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 3)), ((2, 3, 4), (4,)), ((2, 1, 3, 4), (3, 4, 2)),
                 ((5,), (5,))]:
        case(f"matmul {list(a)} @ {list(b)}", "matmul", {"a": rn(*a), "b": rn(*b)}, lambda t: t["a"] @ t["b"])
    case("linear [5,4] -> 3 with bias", "linear", {"x": rn(5, 4), "weight": rn(3, 4), "bias": rn(3)},
         lambda t: F.linear(t["x"], t["weight"], t["bias"]))
    case("linear [2,5,4] -> 3 no bias", "linear", {"x": rn(2, 5, 4), "weight": rn(3, 4)},
         lambda t: F.linear(t["x"], t["weight"]))

    def conv(name, xs, ws, bias, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        inputs = {"x": rn(*xs), "weight": rn(*ws, scale=0.5)}
        if bias:
            inputs["bias"] = rn(ws[0])
        case(f"conv2d {name}", "conv2d", inputs,
             lambda t: F.conv2d(t["x"], t["weight"], t.get("bias"), stride, padding, dilation, groups),
             {"stride": list(stride), "padding": list(padding), "dilation": list(dilation), "groups": groups})

    conv("3x3 with bias", (2, 3, 6, 6), (4, 3, 3, 3), True)
    conv("stride 2 padding 1", (2, 3, 7, 7), (4, 3, 3, 3), True, stride=(2, 2), padding=(1, 1))
    conv("dilation 2 padding 2 no bias", (1, 2, 7, 6), (3, 2, 3, 3), False, padding=(2, 2), dilation=(2, 2))
    conv("groups 2", (2, 4, 5, 5), (6, 2, 3, 3), True, padding=(1, 1), groups=2)
    conv("depthwise", (2, 3, 6, 6), (3, 1, 3, 3), True, padding=(1, 1), groups=3)
    conv("depthwise multiplier 2 stride 2", (1, 3, 7, 7), (6, 1, 3, 3), False, stride=(2, 2), groups=3)
    conv("3x2 kernel stride (2,1) padding (1,0)", (2, 3, 6, 5), (4, 3, 3, 2), True, stride=(2, 1), padding=(1, 0))
    conv("1x1", (2, 5, 4, 4), (3, 5, 1, 1), True)

    def pool(op, name, xs, fn, attrs):
        case(f"{op} {name}", op, {"x": rn(*xs)}, fn, attrs)

    mp = lambda k, s, p, d, c: lambda t: F.max_pool2d(t["x"], k, s, p, d, ceil_mode=c)
    mp_attrs = lambda k, s, p, d, c: {"kernel": list(k), "stride": list(s), "padding": list(p), "dilation": list(d),
                                      "ceil_mode": c}
    for name, k, s, p, d, c, xs in [("2x2", (2, 2), (2, 2), (0, 0), (1, 1), False, (2, 3, 6, 6)),
                                     ("3x3 stride 2 pad 1", (3, 3), (2, 2), (1, 1), (1, 1), False, (2, 2, 7, 7)),
                                     ("3x3 stride 2 ceil_mode", (3, 3), (2, 2), (0, 0), (1, 1), True, (1, 2, 8, 8)),
                                     ("3x3 stride 2 pad 1 ceil_mode", (3, 3), (2, 2), (1, 1), (1, 1), True, (1, 2, 8, 8)),
                                     ("2x2 dilation 2 stride 1", (2, 2), (1, 1), (0, 0), (2, 2), False, (1, 2, 6, 6)),
                                     ("3x2 stride (2,1)", (3, 2), (2, 1), (1, 0), (1, 1), False, (2, 2, 7, 5))]:
        pool("max_pool2d", name, xs, mp(k, s, p, d, c), mp_attrs(k, s, p, d, c))
    ap = lambda k, s, p, c, cip: lambda t: F.avg_pool2d(t["x"], k, s, p, ceil_mode=c, count_include_pad=cip)
    ap_attrs = lambda k, s, p, c, cip: {"kernel": list(k), "stride": list(s), "padding": list(p), "ceil_mode": c,
                                        "count_include_pad": cip}
    for name, k, s, p, c, cip, xs in [("2x2", (2, 2), (2, 2), (0, 0), False, True, (2, 3, 6, 6)),
                                       ("3x3 stride 2 pad 1", (3, 3), (2, 2), (1, 1), False, True, (2, 2, 7, 7)),
                                       ("3x3 stride 2 pad 1 exclude pad", (3, 3), (2, 2), (1, 1), False, False, (2, 2, 7, 7)),
                                       ("3x3 stride 2 ceil_mode", (3, 3), (2, 2), (0, 0), True, True, (1, 2, 8, 8)),
                                       ("3x3 stride 2 pad 1 ceil_mode", (3, 3), (2, 2), (1, 1), True, True, (1, 2, 8, 8)),
                                       ("3x3 stride 2 pad 1 ceil_mode exclude pad", (3, 3), (2, 2), (1, 1), True, False,
                                        (1, 2, 8, 8))]:
        pool("avg_pool2d", name, xs, ap(k, s, p, c, cip), ap_attrs(k, s, p, c, cip))
    for xs, osz in [((2, 3, 7, 5), (3, 2)), ((2, 3, 5, 5), (1, 1)), ((1, 2, 4, 6), (4, 4))]:
        case(f"adaptive_avg_pool2d {list(xs[2:])} -> {list(osz)}", "adaptive_avg_pool2d", {"x": rn(*xs)},
             lambda t, osz=osz: F.adaptive_avg_pool2d(t["x"], osz), {"output_size": list(osz)})


# ---- indexing, embedding, losses, attention ------------------------------------------------------------------------
def index_cases():
    case("cat dim 1 of three", "cat", {"x0": rn(2, 1, 3), "x1": rn(2, 4, 3), "x2": rn(2, 2, 3)},
         lambda t: torch.cat([t["x0"], t["x1"], t["x2"]], 1), {"dim": 1})
    case("cat dim -1 of two", "cat", {"x0": rn(3, 2), "x1": rn(3, 5)}, lambda t: torch.cat([t["x0"], t["x1"]], -1),
         {"dim": -1})
    case("stack dim 1 of three", "stack", {"x0": rn(2, 3), "x1": rn(2, 3), "x2": rn(2, 3)},
         lambda t: torch.stack([t["x0"], t["x1"], t["x2"]], 1), {"dim": 1})
    case("stack dim 0 of two", "stack", {"x0": rn(4), "x1": rn(4)}, lambda t: torch.stack([t["x0"], t["x1"]]), {"dim": 0})
    case("split size 2 dim 1 (uneven)", "split", {"x": rn(3, 5, 2)}, lambda t: tuple(torch.split(t["x"], 2, 1)),
         {"split_size": 2, "dim": 1})
    case("split sizes [1,3,1] dim 1", "split", {"x": rn(3, 5, 2)}, lambda t: tuple(torch.split(t["x"], [1, 3, 1], 1)),
         {"sizes": [1, 3, 1], "dim": 1})
    case("index_select dim 1 with repeats", "index_select",
         {"x": rn(4, 5), "index": torch.tensor([0, 3, 3, 1, 4])},
         lambda t: torch.index_select(t["x"], 1, t["index"]), {"dim": 1})
    case("index_select dim 0 int32 index", "index_select",
         {"x": rn(4, 5), "index": torch.tensor([2, 0, 2], dtype=torch.int32)},
         lambda t: torch.index_select(t["x"], 0, t["index"]), {"dim": 0})
    case("gather dim 1", "gather", {"x": rn(3, 4), "index": idx(4, 3, 5)}, lambda t: torch.gather(t["x"], 1, t["index"]),
         {"dim": 1})
    case("gather dim 0 smaller index", "gather", {"x": rn(4, 3), "index": idx(4, 2, 2)},
         lambda t: torch.gather(t["x"], 0, t["index"]), {"dim": 0})
    case("embedding [2,5] indices with repeats", "embedding",
         {"indices": torch.tensor([[1, 3, 3, 9, 0], [2, 2, 7, 1, 5]]), "weight": rn(10, 4)},
         lambda t: F.embedding(t["indices"], t["weight"]))
    case("embedding padding_idx 2", "embedding",
         {"indices": torch.tensor([[1, 2, 3, 2], [2, 0, 7, 1]]), "weight": rn(10, 4)},
         lambda t: F.embedding(t["indices"], t["weight"], padding_idx=2), {"padding_idx": 2})
    case("embedding int32 indices", "embedding",
         {"indices": torch.tensor([4, 0, 4, 6], dtype=torch.int32), "weight": rn(8, 3)},
         lambda t: F.embedding(t["indices"], t["weight"]))


def loss_cases():
    def ce(name, n, c, reduction="mean", ignore_index=-100, label_smoothing=0.0, weighted=False, ignored=()):
        target = idx(c, n)
        for i in ignored:
            target[i] = ignore_index
        inputs = {"logits": rn(n, c, scale=2), "target": target}
        if weighted:
            inputs["weight"] = torch.rand(c) + 0.5
        case(f"cross_entropy {name}", "cross_entropy", inputs,
             lambda t: F.cross_entropy(t["logits"], t["target"], t.get("weight"), ignore_index=ignore_index,
                                       reduction=reduction, label_smoothing=label_smoothing),
             {"reduction": REDUCTION[reduction], "ignore_index": ignore_index, "label_smoothing": label_smoothing},
             nograd=("weight",))

    ce("mean", 6, 5)
    ce("sum", 6, 5, reduction="sum")
    ce("none", 6, 5, reduction="none")
    ce("label_smoothing 0.1", 6, 5, label_smoothing=0.1)
    ce("ignore_index -100 on two rows", 6, 5, ignored=(1, 4))
    ce("ignore_index 3 custom", 6, 5, ignore_index=3, ignored=(0, 2))
    ce("class weights", 6, 5, weighted=True)
    ce("class weights sum", 6, 5, reduction="sum", weighted=True)
    ce("weights + ignore_index + label_smoothing 0.2", 7, 4, weighted=True, ignored=(3,), label_smoothing=0.2)
    ce("none + ignore_index + label_smoothing 0.1", 6, 5, reduction="none", ignored=(2,), label_smoothing=0.1)

    def bce(name, reduction="mean", pos_weight=False):
        inputs = {"logits": rn(4, 3, scale=2), "target": torch.rand(4, 3)}
        if pos_weight:
            inputs["pos_weight"] = torch.rand(3) + 0.5
        case(f"binary_cross_entropy_with_logits {name}", "binary_cross_entropy_with_logits", inputs,
             lambda t: F.binary_cross_entropy_with_logits(t["logits"], t["target"], reduction=reduction,
                                                          pos_weight=t.get("pos_weight")),
             {"reduction": REDUCTION[reduction]}, nograd=("target", "pos_weight"))

    bce("mean")
    bce("sum", "sum")
    bce("none", "none")
    bce("pos_weight", pos_weight=True)
    for reduction in ["mean", "sum", "none"]:
        case(f"mse_loss {reduction}", "mse_loss", {"input": rn(3, 4), "target": rn(3, 4)},
             lambda t, r=reduction: F.mse_loss(t["input"], t["target"], reduction=r), {"reduction": REDUCTION[reduction]})


def sdpa_reference(q, k, v, attn_mask=None, is_causal=False, scale=None):
    """torch 2.x F.scaled_dot_product_attention (dropout 0), written out: torch 1.13 lacks it.
    A bool mask keeps the True positions; a float mask is added to the scores."""
    L, S = q.size(-2), k.size(-2)
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale
    if is_causal:
        scores = scores.masked_fill(~torch.ones(L, S, dtype=torch.bool).tril(), float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    return torch.softmax(scores, -1) @ v


def attention_cases():
    op = "scaled_dot_product_attention"
    qkv = lambda b, h, l, s, e, ev: {"q": rn(b, h, l, e), "k": rn(b, h, s, e), "v": rn(b, h, s, ev)}
    case("sdpa no mask [2,2,4,8]", op, qkv(2, 2, 4, 4, 8, 8), lambda t: sdpa_reference(t["q"], t["k"], t["v"]))
    pad = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    pad[1, 0, 0, 3:] = False  # batch 1: the last two keys are padding
    case("sdpa bool padding mask [2,1,1,5]", op, {**qkv(2, 2, 3, 5, 4, 6), "attn_mask": pad},
         lambda t: sdpa_reference(t["q"], t["k"], t["v"], t["attn_mask"]))
    case("sdpa causal [1,2,5,4]", op, qkv(1, 2, 5, 5, 4, 4), lambda t: sdpa_reference(t["q"], t["k"], t["v"], is_causal=True),
         {"is_causal": True})
    case("sdpa float mask [4,4] and scale 0.3", op, {**qkv(2, 1, 4, 4, 8, 8), "attn_mask": rn(4, 4)},
         lambda t: sdpa_reference(t["q"], t["k"], t["v"], t["attn_mask"], scale=0.3), {"scale": 0.3},
         nograd=("attn_mask",))
    case("sdpa 3-D cross attention L=3 S=5 Ev=4", op, {"q": rn(2, 3, 6), "k": rn(2, 5, 6), "v": rn(2, 5, 4)},
         lambda t: sdpa_reference(t["q"], t["k"], t["v"]))


# ---- end-to-end training ---------------------------------------------------------------------------------------------
TRAIN_STEPS = 5
SGD_ARGS = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}


def train_case(name, params, forward, batches, buffers=()):
    """Trains `params` (ordered {name: tensor}) for len(batches) SGD steps of cross-entropy and records
    the initial weights (init_<p>), the batches (x<i>, y<i>), the loss of each step (loss), the gradients
    of the first step (grad_step0_<p>), the final weights (final_<p>) and buffers (final_<b>)."""
    c = Case(name, name)
    for k, v in SGD_ARGS.items():
        c.add("attr_" + k, torch.tensor(v, dtype=torch.float64))
    for k, p in params.items():
        c.add("init_" + k, p)
        p.requires_grad_(True)
    for k, b in buffers:
        c.add("init_" + k, b)
    opt = torch.optim.SGD(params.values(), **SGD_ARGS)
    losses = []
    for i, (x, y) in enumerate(batches):
        c.add(f"x{i}", x)
        c.add(f"y{i}", y)
        opt.zero_grad()
        loss = F.cross_entropy(forward(x), y)
        loss.backward()
        if i == 0:
            for k, p in params.items():
                c.add("grad_step0_" + k, p.grad)
        opt.step()
        losses.append(loss.item())
    c.add("loss", torch.tensor(losses, dtype=torch.float32))
    for k, p in params.items():
        c.add("final_" + k, p)
    for k, b in buffers:
        c.add("final_" + k, b)
    return c


def mlp_case():
    # 16 -> 32 (tanh) -> 4, batch 8; PyTorch's default Linear init.
    l1, l2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 4)
    params = {"w1": l1.weight.detach().clone(), "b1": l1.bias.detach().clone(),
              "w2": l2.weight.detach().clone(), "b2": l2.bias.detach().clone()}
    batches = [(torch.randn(8, 16), torch.randint(0, 4, (8,))) for _ in range(TRAIN_STEPS)]
    fwd = lambda x: F.linear(torch.tanh(F.linear(x, params["w1"], params["b1"])), params["w2"], params["b2"])
    return train_case("mlp", params, fwd, batches)


def cnn_case():
    # [N,1,8,8] -> conv 1->4 3x3 pad 1 -> batch_norm (training) -> relu -> max_pool 2 -> [N,64] -> linear 64->3
    conv, fc = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Linear(64, 3)
    params = {"conv_w": conv.weight.detach().clone(), "conv_b": conv.bias.detach().clone(),
              "bn_w": torch.rand(4) + 0.5, "bn_b": torch.randn(4) * 0.1,
              "fc_w": fc.weight.detach().clone(), "fc_b": fc.bias.detach().clone()}
    running_mean, running_var = torch.randn(4) * 0.1, torch.rand(4) + 0.5  # not torch's 0/1: a stronger check
    batches = [(torch.randn(6, 1, 8, 8), torch.randint(0, 3, (6,))) for _ in range(TRAIN_STEPS)]

    def fwd(x):
        h = F.conv2d(x, params["conv_w"], params["conv_b"], padding=1)
        h = F.batch_norm(h, running_mean, running_var, params["bn_w"], params["bn_b"], True, 0.1, 1e-5)
        h = F.max_pool2d(torch.relu(h), 2)
        return F.linear(h.flatten(1), params["fc_w"], params["fc_b"])

    return train_case("cnn", params, fwd, batches, buffers=[("running_mean", running_mean), ("running_var", running_var)])


# ---- padding -----------------------------------------------------------------------------------------------------------
def pad_cases():
    # Own seed, and the global generator left as it was: adding these cases changes no other case's bytes.
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        for name, xs, pads, value in [("(0,1,0,1): TF 'SAME' for a stride-2 conv", (2, 3, 5, 6), [0, 1, 0, 1], 0.0),
                                      ("(1,2,2,1) value 0.5", (1, 2, 4, 5), [1, 2, 2, 1], 0.5),
                                      ("last dim (-1,2): a negative pad crops", (3, 5), [-1, 2], 0.0),
                                      ("three dims (1,0,0,2,1,1)", (2, 3, 4), [1, 0, 0, 2, 1, 1], -1.5)]:
            case(f"pad {list(xs)} {name}", "pad", {"x": rn(*xs)},
                 lambda t, pads=pads, value=value: F.pad(t["x"], pads, "constant", value),
                 {"pads": pads, "value": value})


# ---- main ------------------------------------------------------------------------------------------------------------
def registered_ops():
    names = set()
    for dirpath, _, files in os.walk(os.path.join(ROOT, "include", "graft")):
        for f in files:
            if f.endswith(".hpp"):
                with open(os.path.join(dirpath, f)) as fh:
                    names.update(re.findall(r"^GRAFT_REGISTER_OP\((\w+),", fh.read(), re.M))
    return names


def main():
    elementwise_cases()
    view_cases()
    reduction_cases()
    norm_cases()
    dense_cases()
    index_cases()
    loss_cases()
    attention_cases()
    pad_cases()
    os.makedirs(DATA_DIR, exist_ok=True)
    write_file(os.path.join(DATA_DIR, "ops_golden.bin"), OPS)
    write_file(os.path.join(DATA_DIR, "train_golden.bin"), [mlp_case(), cnn_case()])
    missing = sorted(registered_ops() - {c.op for c in OPS})
    print("registered ops without a case:", ", ".join(missing) if missing else "none")
    unknown = sorted({c.op for c in OPS} - registered_ops())
    print("cases for ops not (yet) registered:", ", ".join(unknown) if unknown else "none")


if __name__ == "__main__":
    sys.exit(main())
