#!/usr/bin/env bash
# Builds each libFuzzer target in tests/fuzz/ with clang (-fsanitize=fuzzer,address,undefined) and
# runs it for a bounded time on its seed corpus (the crafted good and bad files of the parser's
# tests). A crash, leak, sanitizer report or timeout fails the script.
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
out=$(mktemp -d)
status=0
for src in tests/fuzz/fuzz_*.cpp; do
  [ -e "$src" ] || continue
  name=$(basename "$src" .cpp)
  corpus_dir=$(sed -n 's|^// corpus: *||p' "$src" | head -n 1)
  echo "== $name (corpus: ${corpus_dir:-none}, ${SECONDS_EACH}s) =="
  "$CLANGXX" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Iinclude -Ikernels "$src" -o "$out/$name"
  work="$out/$name.corpus"
  mkdir -p "$work"
  [ -n "$corpus_dir" ] && [ -d "$corpus_dir" ] && cp -r "$corpus_dir"/. "$work"/ 2>/dev/null || true
  if ! "$out/$name" "$work" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$out/$name-" -print_final_stats=1 2>"$out/$name.log"; then
    echo "FUZZ FAILURE in $name:"; tail -n 40 "$out/$name.log"; status=1
  else
    grep -E "stat::number_of_executed_units|Done" "$out/$name.log" | tail -n 2
  fi
done
exit $status
