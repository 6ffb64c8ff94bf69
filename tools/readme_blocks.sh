#!/usr/bin/env bash
# Builds every C++ code block of the documentation and runs it, so that no example can rot.
#   bash tools/readme_blocks.sh            # README.md, docs/*.md and */README.md
#   bash tools/readme_blocks.sh FILE.md... # only these
# Also the ctest readme_code_blocks (tests/link/CMakeLists.txt), with the build's compiler and flags.
#
# The convention: every ```cpp (or ```c++) block is a complete program, with main(), compiled and
# linked the way the README tells a user to:
#   $CXX -std=c++20 -I include -I kernels -I models block.cpp -pthread $CXXFLAGS
# and then run from a scratch folder; a non-zero exit fails. A block whose program needs files (a
# checkpoint, model data) says so in an HTML comment on the line right above its fence, invisible
# on the rendered page; its arguments may name ${GRAFT_MODEL_DATA}:
#   <!-- code-block: args ${GRAFT_MODEL_DATA}/resnet50.safetensors -->
# Such a block runs with those arguments when every argument under ${GRAFT_MODEL_DATA} exists;
# otherwise it is compiled and linked only, and the output says so (set GRAFT_MODEL_DATA, see
# tools/test.sh, to run it).
# Environment: CXX (default g++), CXXFLAGS (default none, as the README's command; e.g. sanitizer flags), OUT (work folder,
# default a temporary one, removed at the end).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
CXX=${CXX:-g++}
CXXFLAGS=${CXXFLAGS:-}
keep_out=1
if [ -z "${OUT:-}" ]; then
  OUT=$(mktemp -d)
  keep_out=0
fi
mkdir -p "$OUT"

if [ $# -gt 0 ]; then
  docs=("$@")
else
  docs=(README.md)
  for f in docs/*.md */README.md; do
    [ -f "$f" ] && docs+=("$f")
  done
fi

# Extraction: for each block, OUT/<doc>_<n>.cpp holds its code and OUT/<doc>_<n>.args the arguments
# of its code-block comment (if any); OUT/blocks lists "<name> <doc>:<line of the fence>".
: >"$OUT/blocks"
for doc in "${docs[@]}"; do
  stem=$(echo "$doc" | tr '/.' '__')
  awk -v out="$OUT" -v stem="$stem" -v doc="$doc" '
    !inside && /^```(cpp|c\+\+)[[:space:]]*$/ {
      inside = 1; n++; name = stem "_" n; file = out "/" name ".cpp"
      printf "" > file
      if (prev ~ /^<!-- code-block: args .* -->[[:space:]]*$/) {
        a = prev; sub(/^<!-- code-block: args /, "", a); sub(/[[:space:]]*-->[[:space:]]*$/, "", a)
        print a > (out "/" name ".args"); close(out "/" name ".args")
      }
      print name " " doc ":" NR >> (out "/blocks")
      next
    }
    inside && /^```[[:space:]]*$/ { inside = 0; close(file); prev = ""; next }
    inside { print >> file; next }
    { prev = $0 }
    END { if (inside) { print doc ": unterminated code block" > "/dev/stderr"; exit 1 } }
  ' "$doc"
done

status=0
ran=0
compiled_only=0
while read -r name where; do
  src="$OUT/$name.cpp"
  if ! grep -Eq '^int main\(' "$src"; then
    echo "FAIL $where: a C++ block must be a complete program with main() (tools/readme_blocks.sh)"
    status=1
    continue
  fi
  # shellcheck disable=SC2086  # CXXFLAGS is a list of flags
  if ! "$CXX" -std=c++20 -I include -I kernels -I models "$src" -o "$OUT/$name" -pthread $CXXFLAGS \
      2>"$OUT/$name.log"; then
    echo "FAIL $where: does not compile ($CXX -std=c++20 -I include -I kernels -I models -pthread):"
    head -n 30 "$OUT/$name.log"
    status=1
    continue
  fi
  args=()
  missing=""
  if [ -f "$OUT/$name.args" ]; then
    read -r -a raw <"$OUT/$name.args"
    for a in "${raw[@]}"; do
      if [[ "$a" == *'${GRAFT_MODEL_DATA}'* ]]; then
        if [ -z "${GRAFT_MODEL_DATA:-}" ]; then
          missing="$a (GRAFT_MODEL_DATA is not set)"
          break
        fi
        a=${a//'${GRAFT_MODEL_DATA}'/$GRAFT_MODEL_DATA}
        if [ ! -e "$a" ]; then
          missing="$a"
          break
        fi
      fi
      args+=("$a")
    done
  fi
  if [ -n "$missing" ]; then
    echo "ok   $where: compiled and linked only, not run: needs $missing"
    compiled_only=$((compiled_only + 1))
    continue
  fi
  mkdir -p "$OUT/$name.run"
  if (cd "$OUT/$name.run" && "$OUT/$name" "${args[@]}") >"$OUT/$name.out" 2>&1; then
    echo "ok   $where: compiled and ran (${args[*]:-no arguments})"
    ran=$((ran + 1))
  else
    echo "FAIL $where: compiled, but the program failed (${args[*]:-no arguments}):"
    tail -n 30 "$OUT/$name.out"
    status=1
  fi
done <"$OUT/blocks"

total=$(wc -l <"$OUT/blocks")
echo "code blocks in ${docs[*]}: $total; ran $ran, compiled only $compiled_only, failed $((total - ran - compiled_only))"
[ "$keep_out" = 1 ] || rm -rf "$OUT"
exit $status
