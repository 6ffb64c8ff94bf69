#!/usr/bin/env bash
# compare.sh: Graft against PyTorch 2.15 (and OpenBLAS for the GEMMs) on this CPU, same thread count,
# one run, alternating the two; prints one markdown table (bench/README.md shows one).
#
#   bash bench/compare.sh [--quick] [--only ROW[,ROW...]] [--threads T] [--rounds R] [--build-dir DIR]
#
#   --quick      one round, 1 warmup + 2 timed calls per run (a smoke test, figures rough)
#   --only       rows to run (bench/build-bench/bench/bench_models --list names them); default all
#   --threads    threads for both (GRAFT_NUM_THREADS / torch.set_num_threads / OPENBLAS_NUM_THREADS);
#                default nproc
#   --rounds     how many times each row runs per side, alternating g, p, g, p... (default 2)
#   --build-dir  where bench_models is built (default build-bench)
#
# Steps: installs the baselines (bench/install_baselines.sh: the pinned PyTorch venv, OpenBLAS),
# builds bench_models (Release, -DGRAFT_BUILD_BENCH=ON, tests/examples/CUDA off), measures the FMA
# peak, then for each row runs Graft, PyTorch (and OpenBLAS), Graft, PyTorch... each in a fresh
# process (bench_models --only ROW, pytorch_models.py --only ROW) so its peak RSS is its own.
# A side's figure is the lowest of its rounds' medians (each round: warmup, then the median of N
# calls); every round's line is in the log. Ratio = PyTorch time / Graft time (> 1: Graft faster).
# Output: the table on stdout, and it and the raw log in <build-dir>/compare-<UTC time>.{md,log}.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0 only="" threads="$(nproc)" rounds=2 build_dir=build-bench
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 rounds=1 ;;
    --only) only="$2"; shift ;;
    --threads) threads="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    --build-dir) build_dir="$2"; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
  shift
done
run_args=(--threads "$threads")
[ "$quick" = 1 ] && run_args+=(--quick)

echo "== baselines (bench/install_baselines.sh)" >&2
python="$(bash bench/install_baselines.sh --print-python)"

echo "== building bench_models in $build_dir" >&2
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DGRAFT_BUILD_BENCH=ON -DGRAFT_BUILD_TESTS=OFF \
  -DGRAFT_BUILD_EXAMPLES=OFF -DGRAFT_CUDA=OFF >/dev/null
cmake --build "$build_dir" --target bench_models -j "$(nproc)" >&2
graft="$build_dir/bench/bench_models"

stamp="$(date -u +%Y%m%dT%H%M%SZ)" started="$(date -u '+%Y-%m-%d %H:%M')"
log="$build_dir/compare-$stamp.log" md="$build_dir/compare-$stamp.md"
: >"$log"

all_rows=(sgemm_1024 sgemm_2048 sgemm_4096 resnet18_b1 resnet18_b16 resnet50_b1 resnet50_b16
  efficientnet_lite0_b1 efficientnet_lite0_b16 minilm_l6_b8_s128 bert_base_b8_s128 resnet18_train_b16
  bgemm_2048 bgemm_4096 resnet50_b16_bf16 minilm_l6_b8_s128_bf16 bert_base_b8_s128_bf16 resnet18_train_b16_bf16)
if [ -n "$only" ]; then IFS=, read -r -a rows <<<"$only"; else rows=("${all_rows[@]}"); fi
for r in "${rows[@]}"; do
  [[ " ${all_rows[*]} " == *" $r "* ]] || { echo "compare.sh: unknown row $r (rows: ${all_rows[*]})" >&2; exit 2; }
done
has_openblas=0
"$graft" --list | grep -qx sgemm_openblas_1024 && has_openblas=1

# One run of one side: its output goes to the log; prints its RESULT line (or "RESULT failed").
# OpenBLAS runs without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, so it picks its kernel by CPUID.
run_side() {
  local side="$1" row="$2" out rc=0
  case "$side" in
    graft) out="$(GRAFT_NUM_THREADS="$threads" timeout 1800 "$graft" --only "$row" "${run_args[@]}" 2>&1)" || rc=$? ;;
    pytorch) out="$(OMP_NUM_THREADS="$threads" timeout 1800 "$python" bench/pytorch_models.py --only "$row" "${run_args[@]}" 2>&1)" || rc=$? ;;
    openblas) out="$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS="$threads" GRAFT_NUM_THREADS="$threads" \
      timeout 1800 "$graft" --only "sgemm_openblas_${row#sgemm_}" "${run_args[@]}" 2>&1)" || rc=$? ;;
  esac
  { echo "--- $side $row (exit $rc)"; echo "$out"; } >>"$log"
  local line
  line="$(grep '^RESULT ' <<<"$out" | tail -1 || true)"
  if [ "$rc" != 0 ] || [ -z "$line" ]; then echo "RESULT failed"; else echo "$line"; fi
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }   # field "RESULT ... key=value ..." key

echo "== FMA peak" >&2
peak_line="$(run_side graft fma_peak)"
peak="$(field "$peak_line" gflops)" peak_1t="$(field "$peak_line" gflops_1t)" peak_isa="$(field "$peak_line" isa)"
echo "   $peak_isa: ${peak_1t:-?} GFLOP/s on 1 thread, ${peak:-?} on $threads" >&2

declare -A best_ms rss base gflops_of extra_of
failed=0
sides=(graft pytorch)
for row in "${rows[@]}"; do
  row_sides=("${sides[@]}")
  [ "$has_openblas" = 1 ] && [[ "$row" == sgemm_* ]] && row_sides+=(openblas)
  for ((round = 1; round <= rounds; ++round)); do
    for side in "${row_sides[@]}"; do
      echo "== $row: $side (round $round of $rounds)" >&2
      line="$(run_side "$side" "$row")"
      key="$side/$row"
      if [ "$line" = "RESULT failed" ]; then
        echo "   FAILED (see $log)" >&2
        failed=1
        continue
      fi
      ms="$(field "$line" ms)"
      echo "   $ms ms" >&2
      if [ -z "${best_ms[$key]:-}" ] || awk -v a="$ms" -v b="${best_ms[$key]}" 'BEGIN { exit !(a < b) }'; then
        best_ms[$key]="$ms"
        gflops_of[$key]="$(field "$line" gflops)"
        extra_of[$key]="$(field "$line" openblas_core)$(field "$line" bf16_path)"
      fi
      r="$(field "$line" peak_rss_kb)"
      if [ -z "${rss[$key]:-}" ] || [ "$r" -gt "${rss[$key]}" ]; then rss[$key]="$r"; fi
      base[$key]="$(field "$line" base_rss_kb)"
    done
  done
done

label() {
  case "$1" in
    *_bf16) echo "$(label "${1%_bf16}"), bf16 autocast" ;;
    bgemm_*) echo "bf16 GEMM ${1#bgemm_} (matmul)" ;;
    sgemm_*) echo "SGEMM ${1#sgemm_} (matmul)" ;;
    resnet18_b*) echo "ResNet-18 forward, batch ${1#resnet18_b}, 224x224" ;;
    resnet50_b*) echo "ResNet-50 forward, batch ${1#resnet50_b}, 224x224" ;;
    efficientnet_lite0_b*) echo "EfficientNet-Lite0 forward, batch ${1#efficientnet_lite0_b}, 224x224" ;;
    minilm_l6_b8_s128) echo "all-MiniLM-L6-v2 encoder, batch 8, seq 128" ;;
    bert_base_b8_s128) echo "BERT-base encoder, batch 8, seq 128" ;;
    resnet18_train_b16) echo "ResNet-18 training step (SGD), batch 16" ;;
  esac
}
mb() { [ -n "${1:-}" ] && awk -v k="$1" -v b="${2:-0}" 'BEGIN { printf "%.0f MB (%.0f before)", k / 1024, b / 1024 }' || echo "-"; }
time_cell() {  # side/row -> "12.3 ms" or "234 GFLOP/s (76% of peak)"
  local key="$1" ms="${best_ms[$1]:-}"
  [ -n "$ms" ] || { echo "failed"; return; }
  if [[ "$key" == */bgemm_* ]]; then
    awk -v g="${gflops_of[$key]}" -v ms="$ms" 'BEGIN { printf "%.0f GFLOP/s (%.1f ms)", g, ms }'
  elif [[ "$key" == */sgemm_* ]]; then
    awk -v g="${gflops_of[$key]}" -v p="${peak:-0}" -v ms="$ms" \
      'BEGIN { printf "%.0f GFLOP/s (%.0f%% of peak, %.1f ms)", g, (p > 0 ? 100 * g / p : 0), ms }'
  else
    awk -v ms="$ms" 'BEGIN { if (ms < 100) printf "%.1f ms", ms; else printf "%.0f ms", ms }'
  fi
}
ratio() { [ -n "${best_ms[$1]:-}" ] && [ -n "${best_ms[$2]:-}" ] && awk -v p="${best_ms[$2]}" -v g="${best_ms[$1]}" 'BEGIN { printf "%.2f", p / g }' || echo "-"; }

torch_info="$(cd /tmp && "$python" -c '
import torch, torchvision, timm, transformers
cfg = torch.__config__.show()
mkl = next((l.split("Library Version")[1].split("-Product")[0].strip() for l in cfg.splitlines() if "Math Kernel Library" in l), "?")
dnn = next((l.split("MKL-DNN")[1].split("(")[0].strip() for l in cfg.splitlines() if "MKL-DNN" in l), "?")
print(f"torch {torch.__version__} (MKL {mkl}, oneDNN {dnn}, CPU capability {torch.backends.cpu.get_cpu_capability()}), "
      f"torchvision {torchvision.__version__}, timm {timm.__version__}, transformers {transformers.__version__}")' 2>/dev/null || echo "torch: not loadable")"
# The code path MKL picked, from its verbose banner (torch.mm on float32 is MKL's sgemm).
mkl_path="$(cd /tmp && MKL_VERBOSE=1 "$python" -c 'import torch; torch.mm(torch.randn(64, 64), torch.randn(64, 64))' 2>&1 |
  sed -n 's/^MKL_VERBOSE oneMKL .*architecture Intel(R) [^(]*(Intel(R) \([^)]*\)).*/\1/p' | head -1)"
openblas_core=""
for r in "${rows[@]}"; do [ -n "${extra_of[openblas/$r]:-}" ] && openblas_core="${extra_of[openblas/$r]}"; done

{
  echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs online; vector flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|fma|amx)' | sort -u | tr '\n' ' ' | sed 's/ $//')"
  echo "Threads: $threads (Graft GRAFT_NUM_THREADS, PyTorch torch.set_num_threads, OpenBLAS OPENBLAS_NUM_THREADS)"
  echo "Date: $started to $(date -u '+%H:%M UTC'), load average at the end $(cut -d' ' -f1-3 /proc/loadavg); Graft $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (uncommitted changes)'); $torch_info; MKL sgemm path ${mkl_path:-?} (MKL_VERBOSE); OpenBLAS $(dpkg-query -W -f='${Version}' libopenblas0-pthread 2>/dev/null || echo '?')${openblas_core:+ (kernel $openblas_core)}"
  bf16_path=""
  for r in "${rows[@]}"; do [[ "$r" == bgemm_* ]] && [ -n "${extra_of[graft/$r]:-}" ] && bf16_path="${extra_of[graft/$r]}"; done
  [ -n "$bf16_path" ] && echo "Graft's bfloat16 GEMM path on this CPU: $bf16_path (kernels/cpu/gemm_bf16.hpp; widen = converted to float32 for the fp32 kernels)"
  echo "FMA peak (${peak_isa:-?} loop, fp32): ${peak_1t:-?} GFLOP/s on 1 thread, ${peak:-?} GFLOP/s on $threads threads"
  echo "Command: bash bench/compare.sh $([ "$quick" = 1 ] && echo '--quick ')--threads $threads --rounds $rounds${only:+ --only $only}; each figure the lowest of $rounds round(s)' medians"
  echo
  echo "| workload (fp32 unless it says bf16) | Graft | PyTorch 2.15 | ratio (PyTorch time / Graft time) | Graft peak RSS | PyTorch peak RSS |"
  echo "|---|---|---|---|---|---|"
  for row in "${rows[@]}"; do
    g="graft/$row" p="pytorch/$row"
    echo "| $(label "$row") | $(time_cell "$g") | $(time_cell "$p")$([[ "$row" == sgemm_* ]] && echo ', MKL sgemm')$([[ "$row" == bgemm_* ]] && echo ', oneDNN bf16') | $(ratio "$g" "$p") | $(mb "${rss[$g]:-}" "${base[$g]:-}") | $(mb "${rss[$p]:-}" "${base[$p]:-}") |"
    if [[ "$row" == sgemm_* ]] && [ "$has_openblas" = 1 ]; then
      o="openblas/$row"
      echo "| SGEMM ${row#sgemm_}: OpenBLAS cblas_sgemm${extra_of[$o]:+ ($(tr '[:upper:]' '[:lower:]' <<<"${extra_of[$o]}") kernel)} | $(time_cell "$g") | OpenBLAS: $(time_cell "$o") | $(ratio "$g" "$o") (OpenBLAS time / Graft time) | | |"
    fi
  done
  echo
  echo "Peak RSS: getrusage ru_maxrss of the run's own process; in parentheses before the row built anything (the process and its libraries)."
} | tee "$md"
echo "(table: $md, log: $log)" >&2
exit "$failed"
