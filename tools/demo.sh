#!/usr/bin/env bash
# The main job for now: builds the examples and trains an MLP from scratch on two spirals.
# (The transfer-learning demo on a real pretrained checkpoint replaces it in a later issue.)
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/install_deps.sh
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release -DGRAFT_BUILD_TESTS=OFF -DGRAFT_CUDA=OFF >/dev/null
cmake --build build-demo -j "$(nproc)" --target train_mlp
./build-demo/examples/train_mlp "$@"
