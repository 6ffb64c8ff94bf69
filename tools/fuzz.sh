#!/usr/bin/env bash
# Builds each libFuzzer target in tests/fuzz/ with clang (-fsanitize=fuzzer,address,undefined) and
# runs it for a bounded time on its seed corpus (the crafted good and bad files of the parser's
# tests). A crash, leak, sanitizer report or timeout fails the script. The targets are independent
# single-threaded processes: JOBS of them (default nproc) build and run at once.
#   bash tools/fuzz.sh              # FUZZ_SECONDS per target (default 30)
# Each target names its seed corpus in a line "// corpus: <dir>".
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in clang-14 libclang-rt-14-dev; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
CLANGXX=$(command -v clang++-14 || command -v clang++)
SECONDS_EACH=${FUZZ_SECONDS:-30}
JOBS=${JOBS:-$(nproc)}
out=$(mktemp -d)

# One target: compile, then fuzz for SECONDS_EACH; its log and status land in $out. The targets are
# independent single-threaded processes, so JOBS of them (one per core) run at once.
fuzz_one() {
  local src=$1 name corpus_dir work rc=0
  name=$(basename "$src" .cpp)
  corpus_dir=$(sed -n 's|^// corpus: *||p' "$src" | head -n 1)
  {
    echo "== $name (corpus: ${corpus_dir:-none}, ${SECONDS_EACH}s) =="
    "$CLANGXX" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
      -Iinclude -Ikernels "$src" -o "$out/$name" || rc=1
    work="$out/$name.corpus"
    mkdir -p "$work"
    [ -n "$corpus_dir" ] && [ -d "$corpus_dir" ] && cp -r "$corpus_dir"/. "$work"/ 2>/dev/null || true
    if [ $rc = 0 ] && ! "$out/$name" "$work" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$out/$name-" -print_final_stats=1 2>"$out/$name.log"; then
      rc=1
    fi
    if [ $rc != 0 ]; then
      echo "FUZZ FAILURE in $name:"; tail -n 40 "$out/$name.log" 2>/dev/null || true
    else
      grep -E "stat::number_of_executed_units|Done" "$out/$name.log" | tail -n 2
    fi
  } > "$out/$name.report" 2>&1
  echo $rc > "$out/$name.status"
}
export -f fuzz_one
export CLANGXX SECONDS_EACH out

ls tests/fuzz/fuzz_*.cpp | xargs -P "$JOBS" -I{} bash -c 'fuzz_one "$1"' _ {}
status=0
for src in tests/fuzz/fuzz_*.cpp; do
  name=$(basename "$src" .cpp)
  cat "$out/$name.report"
  [ "$(cat "$out/$name.status" 2>/dev/null)" = 0 ] || status=1
done
exit $status
