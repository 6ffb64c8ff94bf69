#!/usr/bin/env python3
"""examples/reference/graft_random.py - graft's random numbers in Python, bit for bit.

A port of graft::Generator (include/graft/core/random.hpp: xoshiro256++ seeded through splitmix64),
graft::data::uniform_index and graft::data::random_permutation (include/graft/data/dataset.hpp), and the
batch order of examples/transfer_recipes.hpp (batch_plan), so the PyTorch reference replays the demo's
batches exactly. All arithmetic is uint64 (Python ints masked with 2**64 - 1).

    python graft_random.py --selftest    # compares against numbers printed by graft's C++ (see SELFTEST)
"""
import sys

MASK64 = (1 << 64) - 1


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK64


class Generator:
    """graft::Generator: xoshiro256++ whose four state words come from splitmix64(seed)."""

    def __init__(self, seed=0x5EED):
        self.manual_seed(seed)

    def manual_seed(self, seed):
        x = seed & MASK64
        self.s = []
        for _ in range(4):  # splitmix64
            x = (x + 0x9E3779B97F4A7C15) & MASK64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
            self.s.append(z ^ (z >> 31))

    def next_u64(self):
        s = self.s
        result = (_rotl((s[0] + s[3]) & MASK64, 23) + s[0]) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def uniform(self):
        """[0, 1) from the top 53 bits."""
        return float(self.next_u64() >> 11) * 2.0**-53


def uniform_index(gen, n):
    """An unbiased draw from [0, n): rejects x >= the largest multiple of n that fits in uint64."""
    if n < 1:
        raise ValueError(f"uniform_index: n must be >= 1, got {n}")
    limit = MASK64 - MASK64 % n  # [0, limit) holds whole copies of [0, n)
    x = gen.next_u64()
    while x >= limit:
        x = gen.next_u64()
    return x % n


def random_permutation(n, gen):
    """Fisher-Yates from the back, as graft::data::random_permutation."""
    p = list(range(max(n, 0)))
    for i in range(n - 1, 0, -1):
        j = uniform_index(gen, i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def epoch_batch_sizes(n, batch_size, last_batch="keep"):
    """train::epoch_batch_sizes: one epoch's batch sizes. keep: the short last batch kept (PyTorch's
    drop_last=False); drop: dropped (drop_last=True); balance: ceil(n / batch_size) near-equal batches."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"batch_plan: need n >= 1 and batch_size >= 1, got n = {n}, batch_size = {batch_size}")
    if last_batch == "balance":
        m = (n + batch_size - 1) // batch_size
        return [n // m + (1 if b < n % m else 0) for b in range(m)]
    if last_batch not in ("keep", "drop"):
        raise ValueError(f"last batch: expected keep, drop or balance, got {last_batch!r}")
    if last_batch == "drop" and n < batch_size:
        raise ValueError(f"batch_plan: LastBatch::Drop with {n} examples and batch_size {batch_size} leaves no batch")
    sizes = [batch_size] * (n // batch_size)
    if last_batch == "keep" and n % batch_size:
        sizes.append(n % batch_size)
    return sizes


def batch_plan(n, steps, batch_size, seed, last_batch="keep"):
    """train::batch_plan: `steps` batches over n examples, epoch after epoch of
    random_permutation(n, Generator(seed + epoch)) cut into epoch_batch_sizes(n, batch_size, last_batch)."""
    if steps < 0:
        raise ValueError(f"batch_plan: steps must be >= 0, got {steps}")
    sizes = epoch_batch_sizes(n, batch_size, last_batch)
    plan = []
    epoch = 0
    while len(plan) < steps:
        order = random_permutation(n, Generator((seed + epoch) & MASK64))
        start = 0
        for size in sizes:
            if len(plan) >= steps:
                break
            plan.append(order[start:start + size])
            start += size
        epoch += 1
    return plan


# Printed by /tmp/perm_check.cpp (graft's C++: Generator(s), random_permutation(n, gen)), g++ -O1.
SELFTEST_PERMS = [
    (1, 0, [0]),
    (2, 0, [0, 1]),
    (5, 0, [2, 0, 1, 4, 3]),
    (10, 1, [1, 4, 5, 3, 6, 2, 9, 0, 8, 7]),
    (10, 0x5EED, [6, 5, 0, 9, 1, 8, 7, 3, 2, 4]),
    (16, 12345, [13, 12, 3, 9, 15, 2, 6, 7, 14, 10, 0, 5, 11, 1, 4, 8]),
    (7, MASK64, [1, 5, 6, 3, 0, 4, 2]),
    (20, 0x5EED + 7, [3, 13, 1, 6, 9, 19, 14, 12, 8, 16, 18, 10, 7, 11, 0, 17, 2, 4, 15, 5]),
]
# n = 1000: first five entries and sum over i of (i + 1) * p[i].
SELFTEST_LONG = [
    (1000, 0, [981, 929, 66, 110, 768], 246258187),
    (1000, 0x5EED + 7, [968, 695, 776, 660, 513], 250340453),
]
SELFTEST_U64_SEED0 = [5987356902031041503, 7051070477665621255, 6633766593972829180]


def selftest():
    failures = 0
    g = Generator(0)
    got = [g.next_u64() for _ in range(3)]
    if got != SELFTEST_U64_SEED0:
        print(f"FAIL next_u64 seed 0: {got} != {SELFTEST_U64_SEED0}")
        failures += 1
    for n, s, want in SELFTEST_PERMS:
        got = random_permutation(n, Generator(s))
        if got != want:
            print(f"FAIL random_permutation({n}, Generator({s})): {got} != {want}")
            failures += 1
    for n, s, first5, wsum in SELFTEST_LONG:
        p = random_permutation(n, Generator(s))
        got_sum = sum((i + 1) * v for i, v in enumerate(p))
        if p[:5] != first5 or got_sum != wsum or sorted(p) != list(range(n)):
            print(f"FAIL random_permutation({n}, Generator({s})): first5 {p[:5]} (want {first5}), "
                  f"weighted sum {got_sum} (want {wsum})")
            failures += 1
    # batch_plan: epochs concatenate, the short last batch of each epoch is kept.
    plan = batch_plan(5, 4, 2, 0)
    e0, e1 = random_permutation(5, Generator(0)), random_permutation(5, Generator(1))
    if plan != [e0[0:2], e0[2:4], e0[4:5], e1[0:2]]:
        print(f"FAIL batch_plan(5, 4, 2, 0): {plan}")
        failures += 1
    # drop: the epoch's short batch left out; balance: equal batches (tests/test_trainer.cpp checks the C++).
    plan = batch_plan(5, 3, 2, 0, "drop")
    if plan != [e0[0:2], e0[2:4], e1[0:2]]:
        print(f"FAIL batch_plan(5, 3, 2, 0, drop): {plan}")
        failures += 1
    if epoch_batch_sizes(10, 3, "balance") != [3, 3, 2, 2] or epoch_batch_sizes(100, 32, "balance") != [25] * 4:
        print(f"FAIL epoch_batch_sizes balance: {epoch_batch_sizes(10, 3, 'balance')}")
        failures += 1
    total = 5 + len(SELFTEST_PERMS) + len(SELFTEST_LONG)
    print(f"graft_random selftest: {total - failures} of {total} checks passed")
    return failures == 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        sys.exit(0 if selftest() else 1)
    sys.exit(__doc__)
