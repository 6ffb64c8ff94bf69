#!/usr/bin/env python3
"""examples/reference/test_compare.py - compare.py on hand-made run.json / reference.json files (CTest:
reference_compare; standard library only).

    python3 examples/reference/test_compare.py
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
COMPARE = os.path.join(HERE, "compare.py")


def write(path, seed, accuracies, losses=None):
    """A results file: accuracies {(recipe, labels): accuracy}; losses {(recipe, labels): [...]}."""
    doc = {"config": {"seed": seed}, "results": []}
    for (recipe, k), acc in accuracies.items():
        r = {"recipe": recipe, "labels_per_class": k, "accuracy": acc}
        if losses and (recipe, k) in losses:
            r["losses"] = losses[(recipe, k)]
        doc["results"].append(r)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


class CompareTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def run_compare(self, *files):
        p = subprocess.run([sys.executable, COMPARE, *files], capture_output=True, text=True)
        return p.returncode, p.stdout + p.stderr

    def test_one_pair_within_and_over_tolerance(self):
        g = write(self.path("g.json"), 0, {("scratch", 10): 0.370, ("probe", 10): 0.702})
        t = write(self.path("t.json"), 0, {("scratch", 10): 0.355, ("probe", 10): 0.702})
        rc, out = self.run_compare(g, t)
        self.assertEqual(rc, 0, out)
        self.assertIn("+1.50", out)
        t2 = write(self.path("t2.json"), 0, {("scratch", 10): 0.349, ("probe", 10): 0.702})
        rc, out = self.run_compare(g, t2)
        self.assertEqual(rc, 1, out)
        self.assertIn("scratch 10/class: Graft 37.00 vs PyTorch 34.90 (+2.10 points", out)

    def test_steps_and_seconds_to_reach_scratch(self):
        def doc(path, probe_curve, feature_seconds):
            d = {"config": {"seed": 0}, "results": [
                {"recipe": "scratch", "labels_per_class": 10, "accuracy": 0.40,
                 "curve": [[10, 0.2, 1.0], [100, 0.40, 10.0]]},
                {"recipe": "probe", "labels_per_class": 10, "accuracy": 0.70, "curve": probe_curve,
                 "feature_seconds": feature_seconds},
                {"recipe": "finetune", "labels_per_class": 10, "accuracy": 0.39,
                 "curve": [[10, 0.1, 2.0], [100, 0.39, 20.0]]}]}
            with open(path, "w") as f:
                json.dump(d, f)
            return path
        g = doc(self.path("g.json"), [[10, 0.30, 0.1], [20, 0.45, 0.2], [100, 0.70, 1.0]], 0.3)
        t = doc(self.path("t.json"), [[10, 0.50, 0.1], [100, 0.70, 1.0]], 0.9)
        rc, out = self.run_compare(g, t)
        self.assertEqual(rc, 0, out)
        lines = [ln for ln in out.splitlines() if ln.startswith("probe") and "x" in ln]
        self.assertEqual(len(lines), 1, out)
        # Graft: step 20, 0.2 + 0.3 s; 100 / 20 = 5.0x steps, 10 / 0.5 = 20.0x time. PyTorch: step 10, 1.0 s.
        self.assertEqual(lines[0].split(), ["probe", "10", "20", "0.5", "5.0x", "20.0x", "10", "1.0", "10.0x", "10.0x"])
        self.assertIn("finetune       10 not reached", out)

    def test_missing_result_is_named(self):
        g = write(self.path("g.json"), 0, {("scratch", 10): 0.37, ("finetune", 10): 0.76})
        t = write(self.path("t.json"), 0, {("scratch", 10): 0.37})
        rc, out = self.run_compare(g, t)
        self.assertEqual(rc, 1, out)
        self.assertIn("finetune 10/class, seed 0: no PyTorch result", out)

    def test_several_seeds_judge_the_mean(self):
        # Per seed +5 and -4 points (each over 2), mean difference +0.5: passes.
        files = [write(self.path("g0.json"), 0, {("scratch", 10): 0.40}),
                 write(self.path("t0.json"), 0, {("scratch", 10): 0.35}),
                 write(self.path("g1.json"), 1, {("scratch", 10): 0.30}),
                 write(self.path("t1.json"), 1, {("scratch", 10): 0.34})]
        rc, out = self.run_compare(*files)
        self.assertEqual(rc, 0, out)
        self.assertIn("seeds 0, 1", out)
        self.assertIn("+0.50  +5.0 -4.0", out)
        # Both seeds +3 points: the mean is over.
        files[3] = write(self.path("t1b.json"), 1, {("scratch", 10): 0.27})
        rc, out = self.run_compare(*files)
        self.assertEqual(rc, 1, out)
        self.assertIn("mean over 2 seeds, +4.00 points", out)

    def test_loss_agreement(self):
        g = write(self.path("g.json"), 0, {("scratch", 10): 0.3},
                  {("scratch", 10): [2.3, 2.2, 2.0, 1.5, 1.0]})
        t = write(self.path("t.json"), 0, {("scratch", 10): 0.3},
                  {("scratch", 10): [2.3000001, 2.2000002, 2.0001, 1.6, 1.0]})
        rc, out = self.run_compare(g, t)
        self.assertEqual(rc, 0, out)
        row = [line for line in out.splitlines() if line.startswith("scratch") and "2.300000" in line]
        self.assertEqual(len(row), 1, out)
        fields = row[0].split()
        self.assertEqual(fields[4], "3")  # steps 1-3 within 1e-3, step 4 (1.5 vs 1.6) is not
        self.assertAlmostEqual(float(fields[5]), 0.1 / 1.6, places=4)

    def test_odd_file_count_and_bad_file(self):
        g = write(self.path("g.json"), 0, {("scratch", 10): 0.3})
        rc, out = self.run_compare(g)
        self.assertEqual(rc, 2, out)
        self.assertIn("expected RUN REFERENCE pairs", out)
        with open(self.path("bad.json"), "w") as f:
            f.write("{not json")
        rc, out = self.run_compare(g, self.path("bad.json"))
        self.assertEqual(rc, 1, out)
        self.assertIn("bad.json (PyTorch)", out)


if __name__ == "__main__":
    unittest.main()
