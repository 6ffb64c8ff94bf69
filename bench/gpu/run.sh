#!/usr/bin/env bash
# The one call made on the GPU machine (issue 11): the CUDA tests of a build made on a CPU machine
# with -arch=sm_90a, then the GPU benchmarks (every graft_gpu_*_bench of bench/gpu/CMakeLists.txt)
# and the PyTorch eager baselines (bench/gpu/torch_baselines.py), all written to a results file, a
# short table printed last. GPU time comes in 15-minute allowances, so everything is built before,
# here, and the whole run stays under 8 minutes (each step has its own timeout below).
#
#   bash bench/gpu/run.sh [--build DIR] [--out DIR] [--dry-run] [--quick]
#     --build    the CMake build folder holding tests/graft_cuda_tests and bench/gpu/ (default build)
#     --out      where results.txt and each step's output go (default $OUT when set, else DIR/gpu-results)
#     --dry-run  no GPU needed: checks that the build has what the run needs (sm_90a code in the
#                binary), runs each program in its no-GPU mode (each must exit 77) and prints what a
#                real run would do. CI runs this (ctest gpu_script_dry_run).
#     --quick    the benchmarks' --quick mode (smaller batches, fewer timed runs)
# Order: tests; the GEMM and convolution benchmarks; the PyTorch baselines; the model benchmark, which
# reads their JSON for its baseline column. A benchmark whose shared libraries (cuDNN, cuBLAS) are not
# found is retried with the ones PyTorch's pip packages ship, if python3 has them.
# Exit status: 0 when every step passed (dry: when a real run would have what it needs), 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=build
out=""
dry=0
quick=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --quick) quick="--quick"; shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=${out:-${OUT:-$build/gpu-results}}
mkdir -p "$out"
results="$out/results.txt"
: > "$results"
log() { echo "$*" | tee -a "$results"; }

# Timeouts in seconds (their sum, 480, stays within the 8 minutes).
T_TESTS=200
T_BENCH=60        # each of the GEMM and convolution benchmarks
T_TORCH=90
T_MODEL=70

tests_bin="$build/tests/graft_cuda_tests"
status=0
declare -a table

log "== graft GPU run $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$([ -n "$(git status --porcelain 2>/dev/null | head -1)" ] && echo ' (with uncommitted changes)')"
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
if [ $dry = 0 ] && command -v nvidia-smi >/dev/null 2>&1; then
  log "card: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
fi

# run_step NAME SECONDS FILE CMD...: runs CMD with a timeout, output to FILE (and the results file);
# sets rc.
run_step() {
  local name=$1 secs=$2 file=$3
  shift 3
  log "-- $name: $*"
  set +e
  timeout "$secs" "$@" >"$file" 2>&1
  rc=$?
  set -e
  cat "$file" >> "$results"
}

# Sets `missing` to a program's shared libraries the loader cannot find, after adding to
# LD_LIBRARY_PATH the folders of python3's pip packages (PyTorch's nvidia-* wheels) that hold them.
missing_libs() {
  local bin=$1 lib dir
  missing=$(ldd "$bin" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ' || true)
  [ -z "${missing// /}" ] && { missing=""; return 0; }
  if command -v python3 >/dev/null 2>&1; then
    for lib in $missing; do
      dir=$(python3 -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null |
            while read -r d; do find "$d" -name "$lib" 2>/dev/null; done | head -1 || true)
      [ -n "$dir" ] && export LD_LIBRARY_PATH="$(dirname "$dir")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
  fi
  missing=$(ldd "$bin" 2>/dev/null | awk '/not found/ {print $1}' | tr '\n' ' ' || true)
  [ -z "${missing// /}" ] && missing=""
  return 0
}

# ---- 1. the CUDA tests (Catch2) ---------------------------------------------------------------
total_cases=$("$tests_bin" --list-test-names-only 2>/dev/null | grep -c . || true)
if [ $dry = 1 ]; then
  log "dry run: no GPU used"
  run_step "CUDA tests (no GPU: each must report itself skipped)" 60 "$out/cuda_tests.txt" "$tests_bin"
  if [ $rc = 77 ]; then
    log "graft_cuda_tests without a GPU: exits 77 (skipped), as ctest expects"
    table+=("| CUDA tests | skipped here (no GPU): would run $total_cases test cases of $tests_bin |")
  elif [ $rc = 0 ]; then
    table+=("| CUDA tests | passed (a GPU is visible on this machine) |")
  else
    table+=("| CUDA tests | FAILED (status $rc) |")
    status=1
  fi
  "$tests_bin" --op-table > "$out/op_table.md"
  table+=("| kernel slots with a CUDA kernel | $(grep -c '| yes |$' "$out/op_table.md") of $(grep -c '^| `' "$out/op_table.md") |")
else
  run_step "CUDA tests" $T_TESTS "$out/cuda_tests.txt" "$tests_bin" -r compact --use-colour no -d yes
  # Catch2's summary: "Passed all 40 test cases with ...", "Passed 1 test case ...",
  # "Failed 2 test cases, failed 5 assertions.", "Failed all 3 test cases, ...".
  summary=$(grep -E '^(Passed|Failed) ' "$out/cuda_tests.txt" | tail -1 || true)
  n=$(echo "$summary" | sed -nE 's/^(Passed|Failed) (all |both )?([0-9]+) test case.*/\3/p')
  case "$summary" in
    Passed*) passed=${n:-0}; failed=0 ;;
    Failed*) failed=${n:-0}; passed=$((total_cases - ${n:-0})) ;;
    *) passed="?"; failed="?" ;;
  esac
  case $rc in
    0) table+=("| CUDA tests | $passed of $total_cases test cases passed |") ;;
    77) table+=("| CUDA tests | skipped: no GPU visible |"); status=1 ;;
    124) table+=("| CUDA tests | TIMED OUT after $T_TESTS s (${summary:-no summary}) |"); status=1 ;;
    *) table+=("| CUDA tests | FAILED: status $rc, $passed passed, $failed failed of $total_cases |"); status=1 ;;
  esac
  grep -E '^[^ ].*: failed:' "$out/cuda_tests.txt" | head -20 | sed 's/^/  /' | tee -a "$results" || true
fi

# ---- 2. the benchmarks and the PyTorch baselines ----------------------------------------------
# bench ROW SECONDS BIN ARGS...: one benchmark; its `| ... |` rows (but the header) join the
# benchmark table.
declare -a brows=()
bench_rows() { while IFS= read -r line; do brows+=("$line"); done < <(grep -E '^\| ' "$1" | grep -vE '^\| row \||^\|---' || true); }
bench() {
  local row=$1 secs=$2 bin=$3 file
  shift 3
  file="$out/$(basename "$bin").txt"
  if [ ! -x "$bin" ]; then
    table+=("| $row | not built: $bin missing (bench/gpu/CMakeLists.txt; cuDNN not found?) |")
    status=1
    return
  fi
  missing_libs "$bin"
  if [ -n "$missing" ]; then
    log "-- $row: $bin cannot start, missing $missing"
    table+=("| $row | not run: missing shared libraries $missing |")
    status=1
    return
  fi
  run_step "$row" "$secs" "$file" "$bin" $quick "$@"
  case $rc in
    0) table+=("| $row | passed ($(sed -n 's/^# //p' "$file" | head -1)) |"); bench_rows "$file" ;;
    77) if [ $dry = 1 ]; then table+=("| $row | skipped here (no GPU), as expected |")
        else table+=("| $row | skipped: no GPU visible |"); status=1; fi ;;
    124) table+=("| $row | TIMED OUT after $secs s |"); status=1; bench_rows "$file" ;;
    *) table+=("| $row | FAILED: status $rc (see $file) |"); status=1; bench_rows "$file" ;;
  esac
}

bench_dir="$build/bench/gpu"
for bin in "$bench_dir"/graft_gpu_*_bench; do
  [ -e "$bin" ] || continue
  case "$(basename "$bin")" in graft_gpu_model_bench) continue ;; esac  # after the baselines
  bench "$(basename "$bin")" $T_BENCH "$bin"
done
for expected in graft_gpu_gemm_bench graft_gpu_conv_bench graft_gpu_model_bench; do
  [ -e "$bench_dir/$expected" ] || { table+=("| $expected | not built: $bench_dir/$expected missing |"); status=1; }
done

baselines="$out/torch_baselines.json"
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import torch' >/dev/null 2>&1; then
  why="python3 cannot import torch"
  if [ $dry = 1 ]; then
    python3 -m py_compile bench/gpu/torch_baselines.py 2>>"$results" && why="$why here (the GPU machine has it); the script compiles"
    table+=("| PyTorch baselines | not run: $why |")
  else
    table+=("| PyTorch baselines | not run: $why; the model rows have no baseline |")
  fi
  log "-- PyTorch baselines: $why"
else
  run_step "PyTorch baselines" $T_TORCH "$out/torch_baselines.txt" python3 bench/gpu/torch_baselines.py --out "$baselines" $quick
  case $rc in
    0) table+=("| PyTorch baselines | $(sed -n 's/^# //p' "$out/torch_baselines.txt" | head -1) |")
       while IFS= read -r line; do brows+=("${line% |} | PyTorch | - |"); done < <(grep -E '^\| (matmul|resnet50_train_default)' "$out/torch_baselines.txt" || true) ;;
    77) if [ $dry = 1 ]; then table+=("| PyTorch baselines | skipped here (no GPU), as expected |")
        else table+=("| PyTorch baselines | skipped: torch sees no GPU |"); status=1; fi ;;
    *) table+=("| PyTorch baselines | FAILED: status $rc (see $out/torch_baselines.txt) |"); status=1 ;;
  esac
fi

if [ -e "$bench_dir/graft_gpu_model_bench" ]; then
  if [ -s "$baselines" ]; then
    bench graft_gpu_model_bench $T_MODEL "$bench_dir/graft_gpu_model_bench" --baselines "$baselines"
  else
    bench graft_gpu_model_bench $T_MODEL "$bench_dir/graft_gpu_model_bench"
  fi
fi

log ""
log "| step | result |"
log "|---|---|"
for row in "${table[@]}"; do log "$row"; done
if [ -n "${brows[*]:-}" ]; then  # (an empty array is "unbound" to set -u in bash < 4.4)
  log ""
  log "| row | graft | baseline | ratio |"
  log "|---|---|---|---|"
  for row in "${brows[@]}"; do log "$row"; done
fi
log "results: $results"
exit $status
