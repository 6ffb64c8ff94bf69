#!/usr/bin/env bash
# The main job for now: builds the examples and trains an MLP from scratch on two spirals.
# (The transfer-learning demo on a real pretrained checkpoint replaces it in a later issue.)
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in cmake g++ make catch2 libbenchmark-dev libstb-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release -DGRAFT_BUILD_TESTS=OFF -DGRAFT_CUDA=OFF >/dev/null
cmake --build build-demo -j "$(nproc)" --target train_mlp
./build-demo/examples/train_mlp "$@"
