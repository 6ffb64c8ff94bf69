#!/usr/bin/env bash
# The transfer demo and its PyTorch reference over several seeds, then Graft's mean accuracies next to
# PyTorch's. One seed's accuracy is mostly float drift: from the same start and batches, two float32
# implementations part after a few AdamW steps (compare.py prints where), so the demo's parity with
# PyTorch is judged on the mean over seeds (compare.py: |mean difference| <= 2 points).
#
#   bash tools/demo.sh                                       # once: data, checkpoint, build-demo
#   bash examples/reference/seeds.sh OUT "0 1 2"             # the whole grid, seeds 0, 1 and 2
#   bash examples/reference/seeds.sh OUT "3 4" --labels 10 --steps 100   # more seeds at 10 labels/class
#
# Each seed's runs go to OUT/seed-S/ (run.json, reference.json); a seed whose reference.json exists is
# not run again, so a stopped run resumes. Extra flags go to transfer_demo (the reference follows its
# run.json). The comparison covers every OUT/seed-*/ present.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { sed -n 2,13p "$0" >&2; exit 2; }
OUT=$1 SEEDS=$2
shift 2
source tools/pyenv.sh
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/graft/demo-data"   # tools/demo.sh put the data and checkpoint here
DEMO=./build-demo/examples/transfer_demo
for f in "$DEMO" "$CACHE/mnist5k.safetensors" "$CACHE/efficientnet_lite0_mnist.safetensors"; do
  [ -e "$f" ] || { echo "seeds.sh: $f is missing: run tools/demo.sh first" >&2; exit 1; }
done
"$GRAFT_PYTHON" examples/reference/graft_random.py --selftest
for s in $SEEDS; do
  dir="$OUT/seed-$s"
  [ -f "$dir/reference.json" ] && { echo "seed $s: $dir/reference.json exists, kept"; continue; }
  echo "== seed $s: Graft"
  "$DEMO" --data "$CACHE/mnist5k.safetensors" --checkpoint "$CACHE/efficientnet_lite0_mnist.safetensors" \
    --out "$dir" --seed "$s" "$@"
  echo "== seed $s: PyTorch"
  "$GRAFT_PYTHON" examples/reference/transfer_recipes.py --run "$dir/run.json" --data "$CACHE/mnist5k.safetensors" \
    --checkpoint "$CACHE/efficientnet_lite0_mnist.safetensors" --threads "$(nproc)" --out "$dir/reference.json.tmp"
  mv "$dir/reference.json.tmp" "$dir/reference.json"
done
pairs=()
for dir in "$OUT"/seed-*/; do
  [ -f "$dir/run.json" ] && [ -f "$dir/reference.json" ] && pairs+=("$dir/run.json" "$dir/reference.json")
done
"$GRAFT_PYTHON" examples/reference/compare.py "${pairs[@]}"
