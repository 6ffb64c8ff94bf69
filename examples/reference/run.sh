#!/usr/bin/env bash
# The transfer demo's three recipes in PyTorch, on the demo's split, batch order and initial weights,
# then Graft's accuracies next to PyTorch's (exits 1 when any differs by more than 2 points).
#
#   bash tools/demo.sh                        # writes demo-out/run.json and scratch_init.safetensors
#   bash examples/reference/run.sh demo-out   # PyTorch: demo-out/reference.json, then the comparison
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-demo-out}
source tools/pyenv.sh
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/graft/demo-data"   # tools/demo.sh put the data and checkpoint here
for f in "$OUT/run.json" "$CACHE/mnist5k.safetensors" "$CACHE/efficientnet_lite0_mnist.safetensors"; do
  [ -f "$f" ] || { echo "run.sh: $f is missing: run tools/demo.sh first" >&2; exit 1; }
done
"$GRAFT_PYTHON" examples/reference/graft_random.py --selftest
"$GRAFT_PYTHON" examples/reference/transfer_recipes.py --run "$OUT/run.json" --data "$CACHE/mnist5k.safetensors" \
  --checkpoint "$CACHE/efficientnet_lite0_mnist.safetensors" --threads "$(nproc)" --out "$OUT/reference.json"
"$GRAFT_PYTHON" examples/reference/compare.py "$OUT/run.json" "$OUT/reference.json"
