#!/usr/bin/env bash
# Builds and runs the test suite on a fresh Debian machine (run as root; installs what is missing).
#   bash tools/test.sh            # Release build in build/, then ctest
# Environment: BUILD_DIR (default build), CMAKE_ARGS (extra configure flags), JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/install_deps.sh

# Model parity data (tests/test_models.cpp): torchvision ResNet-18/50 and a timm-named ViT-Ti with
# seeded random weights, written by PyTorch (Debian's python3-torch 1.13.1 and python3-torchvision
# 0.14.1) as safetensors plus golden outputs, about 170 MB: generated once and cached, keyed by the
# generator's hash.
if [ -z "${GRAFT_MODEL_DATA:-}" ]; then
  key=$(sha1sum tools/gen_model_goldens.py | cut -c1-12)
  GRAFT_MODEL_DATA="${XDG_CACHE_HOME:-$HOME/.cache}/graft/model-data-$key"
fi
export GRAFT_MODEL_DATA
if [ ! -f "$GRAFT_MODEL_DATA/complete" ]; then
  for pkg in python3-torch python3-torchvision python3-numpy; do
    dpkg -s "$pkg" >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-torchvision python3-numpy >/dev/null; break; }
  done
  mkdir -p "$GRAFT_MODEL_DATA"
  /usr/bin/python3 tools/gen_model_goldens.py "$GRAFT_MODEL_DATA" >/dev/null
  touch "$GRAFT_MODEL_DATA/complete"
fi
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "build took $(( $(date +%s) - start )) s"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS"
