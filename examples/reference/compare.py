#!/usr/bin/env python3
"""examples/reference/compare.py - Graft's transfer-demo accuracies next to PyTorch's.

    python examples/reference/compare.py OUT/run.json OUT/reference.json [--tolerance 2]

Prints recipe x labels-per-class: Graft's accuracy (run.json "results", written by transfer_demo),
PyTorch's (reference.json, written by transfer_recipes.py) and the difference in points (Graft - PyTorch).
Exits 1 when any |difference| exceeds the tolerance (2 points), or when a result of one file has no
partner in the other, naming which.
"""
import argparse
import json
import sys


def accuracies(path, what):
    with open(path) as f:
        doc = json.load(f)
    if "results" not in doc:
        sys.exit(f"compare: {path} has no \"results\" ({what})")
    out = {}
    for r in doc["results"]:
        try:
            key = (str(r["recipe"]), int(r["labels_per_class"]))
            out[key] = float(r["accuracy"])
        except (KeyError, TypeError, ValueError) as e:
            sys.exit(f"compare: {path}: a result lacks recipe / labels_per_class / accuracy ({e}): {r}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="OUT/run.json (Graft)")
    ap.add_argument("reference", help="OUT/reference.json (PyTorch)")
    ap.add_argument("--tolerance", type=float, default=2.0, help="largest allowed |difference|, in points")
    args = ap.parse_args()
    graft = accuracies(args.run, "Graft")
    torch = accuracies(args.reference, "PyTorch")
    order = {"scratch": 0, "probe": 1, "finetune": 2}
    keys = sorted(set(graft) | set(torch), key=lambda k: (order.get(k[0], 9), k[0], k[1]))
    problems = []
    print(f"{'recipe':<10} {'labels':>6} {'Graft':>8} {'PyTorch':>8} {'diff (pts)':>10}")
    for key in keys:
        g, t = graft.get(key), torch.get(key)
        if g is None or t is None:
            missing = "Graft" if g is None else "PyTorch"
            print(f"{key[0]:<10} {key[1]:>6} {'-' if g is None else f'{100 * g:.2f}':>8} "
                  f"{'-' if t is None else f'{100 * t:.2f}':>8} {'missing':>10}")
            problems.append(f"{key[0]} {key[1]}/class: no {missing} result")
            continue
        diff = 100.0 * (g - t)
        flag = "  <-- over" if abs(diff) > args.tolerance else ""
        print(f"{key[0]:<10} {key[1]:>6} {100 * g:>8.2f} {100 * t:>8.2f} {diff:>+10.2f}{flag}")
        if abs(diff) > args.tolerance:
            problems.append(f"{key[0]} {key[1]}/class: Graft {100 * g:.2f} vs PyTorch {100 * t:.2f} "
                            f"({diff:+.2f} points, tolerance {args.tolerance:g})")
    if not keys:
        problems.append("no results in either file")
    if problems:
        print("\nFAIL:\n  " + "\n  ".join(problems))
        return 1
    print(f"\nOK: every |difference| <= {args.tolerance:g} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
