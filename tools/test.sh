#!/usr/bin/env bash
# Builds and runs the test suite on a fresh Debian machine (run as root; installs what is missing).
#   bash tools/test.sh            # Release build in build/, then ctest
# Environment: BUILD_DIR (default build), CMAKE_ARGS (extra configure flags), JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/install_deps.sh
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "build took $(( $(date +%s) - start )) s"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS"
