#!/usr/bin/env python3
"""examples/reference/compare.py - Graft's transfer-demo accuracies next to PyTorch's.

    python examples/reference/compare.py OUT/run.json OUT/reference.json [--tolerance 2]
    python examples/reference/compare.py S0/run.json S0/reference.json S1/run.json S1/reference.json ...

Prints recipe x labels-per-class: Graft's accuracy (run.json "results", written by transfer_demo),
PyTorch's (reference.json, written by transfer_recipes.py) and the difference in points (Graft - PyTorch).
Given several pairs (one per seed: examples/reference/seeds.sh), it prints each side's mean and
standard deviation over the pairs, the mean difference and the per-seed differences.
Exits 1 when the |difference| (of the means, with several pairs) exceeds the tolerance (2 points), or
when a result of one file has no partner in the other, naming which.

When the curves carry training seconds (curve points [step, accuracy, seconds]), it also prints, for
each framework against its own from-scratch run with as many labels, when each pretrained recipe
first reached the scratch run's final accuracy: the step and the training seconds (plus the probe's
"feature_seconds"), and how many times fewer steps and less time that is than the scratch run's.

When both files carry the training loss of every step ("losses"), it also prints how far the two runs
stay together: both losses at step 1, the last step up to which they agree within 1e-3 relative
(--loss-rtol), and the largest relative difference over the first 10 steps. Identical starting
weights and batches give equal losses at step 1 to float rounding; from there float summation order
(and dropout masks, when on) lets the runs drift apart.
"""
import argparse
import json
import statistics
import sys

ORDER = {"scratch": 0, "probe": 1, "finetune": 2}


def results(path, what):
    """(seed, {(recipe, labels_per_class): (accuracy, losses or None)}) of one file."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"compare: {path} ({what}): {e}")
    if "results" not in doc:
        sys.exit(f"compare: {path} has no \"results\" ({what})")
    out = {}
    for r in doc["results"]:
        try:
            key = (str(r["recipe"]), int(r["labels_per_class"]))
            losses = [float(v) for v in r["losses"]] if "losses" in r else None
            out[key] = (float(r["accuracy"]), losses, r)
        except (KeyError, TypeError, ValueError) as e:
            sys.exit(f"compare: {path}: a result lacks recipe / labels_per_class / accuracy ({e}): {r}")
    return doc.get("config", {}).get("seed"), out


def sd(values):
    return statistics.stdev(values) if len(values) > 1 else 0.0


def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def print_losses(name, keys, graft, torch, rtol):
    """How long the two runs' training losses agree (see the module text)."""
    rows = [k for k in keys if k in graft and k in torch and graft[k][1] and torch[k][1]]
    if not rows:
        return
    print(f"\ntraining loss{name}, Graft vs PyTorch (agree = relative difference <= {rtol:g}):")
    print(f"{'recipe':<10} {'labels':>6} {'step 1 Graft':>13} {'PyTorch':>10} {'agree to step':>13} "
          f"{'max rel, steps 1-10':>19}")
    for key in rows:
        g, t = graft[key][1], torch[key][1]
        n = min(len(g), len(t))
        agree = 0
        while agree < n and rel(g[agree], t[agree]) <= rtol:
            agree += 1
        first10 = max(rel(g[i], t[i]) for i in range(min(n, 10)))
        print(f"{key[0]:<10} {key[1]:>6} {g[0]:>13.6f} {t[0]:>10.6f} {agree:>13} {first10:>19.2e}")


def reach(records, key):
    """(step, seconds) at which records[key] first reached its scratch run's final accuracy, with the
    scratch run's (steps, seconds); None when a piece is missing or the curve has no seconds."""
    scratch = records.get(("scratch", key[1]))
    if key[0] == "scratch" or scratch is None or key not in records:
        return None
    r, s = records[key][2], scratch[2]
    curve, scurve = r.get("curve") or [], s.get("curve") or []
    if not curve or not scurve or len(curve[0]) < 3 or len(scurve[-1]) < 3:
        return None
    target = float(s["accuracy"])
    extra = float(r.get("feature_seconds", 0.0))
    s_steps, s_secs = int(scurve[-1][0]), float(scurve[-1][2]) + float(s.get("feature_seconds", 0.0))
    for step, acc, secs in (p[:3] for p in curve):
        if acc >= target:
            return int(step), float(secs) + extra, s_steps, s_secs
    return "not reached", None, s_steps, s_secs


def print_reach(name, keys, graft, torch):
    rows = [k for k in keys if k[0] != "scratch" and (reach(graft, k) or reach(torch, k))]
    if not rows:
        return
    print(f"\nsteps and seconds to reach the from-scratch run's final accuracy{name} (each framework against its "
          f"own scratch run; x = how many times fewer steps / less time than scratch's whole run):")
    print(f"{'recipe':<10} {'labels':>6} {'Graft steps':>11} {'s':>7} {'x steps':>7} {'x time':>6}   "
          f"{'PyTorch steps':>13} {'s':>7} {'x steps':>7} {'x time':>6}")

    def cells(res, width):
        if res is None:
            return f"{'-':>{width}} {'-':>7} {'-':>7} {'-':>6}"
        step, secs, s_steps, s_secs = res
        if secs is None:
            return f"{'not reached':>{width}} {'-':>7} {'-':>7} {'-':>6}"
        return (f"{step:>{width}} {secs:>7.1f} {s_steps / step:>6.1f}x "
                f"{(s_secs / secs if secs > 0 else float('inf')):>5.1f}x")

    for key in rows:
        print(f"{key[0]:<10} {key[1]:>6} {cells(reach(graft, key), 11)}   {cells(reach(torch, key), 13)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", metavar="RUN REFERENCE",
                    help="pairs: OUT/run.json (Graft) then OUT/reference.json (PyTorch), one pair per seed")
    ap.add_argument("--tolerance", type=float, default=2.0, help="largest allowed |difference|, in points")
    ap.add_argument("--loss-rtol", type=float, default=1e-3, help="relative loss difference counted as agreeing")
    args = ap.parse_args()
    if len(args.files) % 2:
        ap.error(f"expected RUN REFERENCE pairs, got {len(args.files)} files")
    pairs = []
    for i in range(0, len(args.files), 2):
        seed, g = results(args.files[i], "Graft")
        _, t = results(args.files[i + 1], "PyTorch")
        pairs.append((seed if seed is not None else i // 2, g, t))

    keys = sorted({k for _, g, t in pairs for k in list(g) + list(t)},
                  key=lambda k: (ORDER.get(k[0], 9), k[0], k[1]))
    problems = []
    for seed, g, t in pairs:
        for key in keys:
            if (key in g) != (key in t):
                missing = "Graft" if key not in g else "PyTorch"
                problems.append(f"{key[0]} {key[1]}/class, seed {seed}: no {missing} result")
    if not keys:
        problems.append("no results in any file")

    several = len(pairs) > 1
    if several:
        print(f"held-out accuracy in points, mean +- sd over seeds (seeds {', '.join(str(s) for s, _, _ in pairs)})")
        print(f"{'recipe':<10} {'labels':>6} {'seeds':>5} {'Graft':>13} {'PyTorch':>13} {'diff':>7}  per seed")
    else:
        print(f"{'recipe':<10} {'labels':>6} {'Graft':>8} {'PyTorch':>8} {'diff (pts)':>10}")
    for key in keys:
        both = [(s, 100 * g[key][0], 100 * t[key][0]) for s, g, t in pairs if key in g and key in t]
        if not both:
            continue
        gs, ts = [b[1] for b in both], [b[2] for b in both]
        diff = statistics.fmean(gs) - statistics.fmean(ts)
        over = abs(diff) > args.tolerance
        flag = "  <-- over" if over else ""
        if several:
            per_seed = " ".join(f"{a - b:+.1f}" for _, a, b in both)
            print(f"{key[0]:<10} {key[1]:>6} {len(both):>5} {statistics.fmean(gs):>6.2f} +-{sd(gs):>4.1f} "
                  f"{statistics.fmean(ts):>6.2f} +-{sd(ts):>4.1f} {diff:>+7.2f}  {per_seed}{flag}")
        else:
            print(f"{key[0]:<10} {key[1]:>6} {gs[0]:>8.2f} {ts[0]:>8.2f} {diff:>+10.2f}{flag}")
        if over:
            what = f"mean over {len(both)} seeds, " if several else ""
            problems.append(f"{key[0]} {key[1]}/class: Graft {statistics.fmean(gs):.2f} vs PyTorch "
                            f"{statistics.fmean(ts):.2f} ({what}{diff:+.2f} points, tolerance {args.tolerance:g})")

    for seed, g, t in pairs:
        print_reach(f", seed {seed}" if several else "", keys, g, t)
    for seed, g, t in pairs:
        print_losses(f", seed {seed}" if several else "", keys, g, t, args.loss_rtol)
    if problems:
        print("\nFAIL:\n  " + "\n  ".join(problems))
        return 1
    print(f"\nOK: every |difference{' of means' if several else ''}| <= {args.tolerance:g} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
