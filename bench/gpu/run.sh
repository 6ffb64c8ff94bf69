#!/usr/bin/env bash
# The one call made on the GPU machine (issue 11): the CUDA tests of a build made on a CPU machine
# with -arch=sm_90a, the card's name and the driver, all written to a results file, a short table
# printed last. GPU time comes in 15-minute allowances, so everything is built before, here.
#
#   bash bench/gpu/run.sh [--build DIR] [--out DIR] [--dry-run]
#     --build    the CMake build folder holding tests/graft_cuda_tests (default build)
#     --out      where results.txt goes (default $OUT when set, else DIR/gpu-results)
#     --dry-run  no GPU needed: checks that the build has what the run needs (sm_90a code in the
#                binary), runs each program in its no-GPU mode and prints what a real run would do.
#                CI runs this (ctest gpu_script_dry_run).
# Exit status: 0 when every step passed (dry: when a real run would have what it needs), 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=build
out=""
dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=${out:-${OUT:-$build/gpu-results}}
mkdir -p "$out"
results="$out/results.txt"
: > "$results"
log() { echo "$*" | tee -a "$results"; }

tests_bin="$build/tests/graft_cuda_tests"
status=0
declare -a table

log "== graft GPU run $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ ! -x "$tests_bin" ]; then
  log "missing $tests_bin: configure with -DGRAFT_CUDA=ON (nvcc on the PATH) and build first"
  exit 1
fi
# The binary must carry code the Hopper card runs: sm_90a SASS (cuobjdump lists its ELF images).
if command -v cuobjdump >/dev/null 2>&1; then
  archs=$(cuobjdump --list-elf "$tests_bin" 2>/dev/null | sed -n 's/.*\.\(sm_[0-9a-z]*\)\..*/\1/p' | sort -u | tr '\n' ' ')
  log "device code in graft_cuda_tests: ${archs:-none}"
  case " $archs " in
    *" sm_90a "* | *" sm_90 "*) ;;
    *) log "no sm_90 / sm_90a code: build with CMAKE_CUDA_ARCHITECTURES=90a"; status=1 ;;
  esac
else  # no cuobjdump (the toolkit here ships without it): what the build was configured with
  archs=$(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
  log "CMAKE_CUDA_ARCHITECTURES of $build: ${archs:-unknown} (no cuobjdump to read the binary)"
  case ";$archs;" in
    *";90a;"* | *";90;"* | *";90a-real;"* | *";90-real;"*) ;;  # sm_90 machine code in the binary
    *) log "the build does not target sm_90: configure with -DCMAKE_CUDA_ARCHITECTURES=90a"; status=1 ;;
  esac
fi

if [ $dry = 1 ]; then
  log "dry run: no GPU used"
  set +e
  "$tests_bin" >"$out/cuda_tests.txt" 2>&1
  rc=$?
  set -e
  cat "$out/cuda_tests.txt" >> "$results"
  if [ $rc = 77 ]; then
    log "graft_cuda_tests without a GPU: exits 77 (skipped), as ctest expects"
    table+=("| CUDA tests | skipped here (no GPU): would run $tests_bin |")
  elif [ $rc = 0 ]; then
    log "graft_cuda_tests passed (a GPU is visible on this machine)"
    table+=("| CUDA tests | passed |")
  else
    log "graft_cuda_tests failed with status $rc"
    table+=("| CUDA tests | FAILED (status $rc) |")
    status=1
  fi
  "$tests_bin" --op-table > "$out/op_table.md"
  table+=("| kernel slots with a CUDA kernel | $(grep -c '| yes |$' "$out/op_table.md") of $(grep -c '^| `' "$out/op_table.md") |")
else
  if command -v nvidia-smi >/dev/null 2>&1; then
    log "card: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
  fi
  set +e
  timeout 300 "$tests_bin" >"$out/cuda_tests.txt" 2>&1
  rc=$?
  set -e
  cat "$out/cuda_tests.txt" >> "$results"
  passed=$(grep -c '^PASS' "$out/cuda_tests.txt" || true)
  failed=$(grep -c '^FAIL' "$out/cuda_tests.txt" || true)
  case $rc in
    0) table+=("| CUDA tests | $passed passed, $failed failed |") ;;
    77) table+=("| CUDA tests | skipped: no GPU visible |"); status=1 ;;
    124) table+=("| CUDA tests | TIMED OUT after 300 s ($passed passed, $failed failed so far) |"); status=1 ;;
    *) table+=("| CUDA tests | FAILED: status $rc, $passed passed, $failed failed |"); status=1 ;;
  esac
  grep '^FAIL' "$out/cuda_tests.txt" | head -20 | sed 's/^/  /' | tee -a "$results" || true
fi

log ""
log "| step | result |"
log "|---|---|"
for row in "${table[@]}"; do log "$row"; done
log "results: $results"
exit $status
