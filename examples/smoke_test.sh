#!/usr/bin/env bash
# examples/smoke_test.sh EXAMPLE BINARY PYTHON WORKDIR - runs feature_extraction or fine_tune for a few
# steps (CTest: example_feature_extraction, example_fine_tune; see examples/CMakeLists.txt).
#
# Data: a toy ImageFolder written here with Python's standard library (zlib + struct PNGs): classes
# "left" and "right", 6 noisy 32x32 RGB images each, bright on that side. Model: EfficientNet-Lite0
# with random weights (--random-init), so no checkpoint or download is needed.
# Checks: --help exits 0; a run exits 0 and prints the summary table; a folder with a corrupt PNG
# exits 1 naming the file; a bad --arch exits 1 naming it. fine_tune also: a run split by
# --stop-after / --resume ends on the same loss (%.9g) as the uninterrupted run, and --resume with
# other options is refused naming the option.
set -u
example=$1 bin=$2 python=$3 work=$4
rm -rf "$work"
mkdir -p "$work"
fail() {
  echo "smoke_test $example: FAIL: $*" >&2
  exit 1
}

"$python" - "$work/toy" <<'EOF'
import os, random, struct, sys, zlib

def write_png(path, width, height, rgb_rows):
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(row) for row in rgb_rows)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

root, rng = sys.argv[1], random.Random(0)
for label, name in enumerate(["left", "right"]):
    os.makedirs(os.path.join(root, name))
    for i in range(6):
        rows = []
        for y in range(32):
            row = []
            for x in range(32):
                bright = (x < 16) == (label == 0)
                v = max(0, min(255, (190 if bright else 50) + rng.randint(-40, 40)))
                row += [v, v, max(0, v - 20)]
            rows.append(row)
        write_png(os.path.join(root, name, "img%d.png" % i), 32, 32, rows)
EOF
[ $? -eq 0 ] || fail "could not write the toy ImageFolder"
cp -r "$work/toy" "$work/toy_bad"
printf 'this is not a PNG file' >"$work/toy_bad/right/broken.png"

common=(--random-init true --arch efficientnet_lite0 --image-size 32 --val-frac 0.34 --batch 4 --warmup 1 --eval-every 2)

# run NAME ARGS...: runs the example, stdout to $work/NAME.out, stderr to $work/NAME.err; sets rc.
run() {
  local name=$1
  shift
  "$bin" "$@" >"$work/$name.out" 2>"$work/$name.err"
  rc=$?
}
expect_ok() {
  [ "$rc" -eq 0 ] || { cat "$work/$1.out" "$work/$1.err" >&2; fail "$1: exit code $rc, expected 0"; }
}
expect_error() {  # NAME TEXT: exit code 1 and TEXT in stderr
  [ "$rc" -eq 1 ] || { cat "$work/$1.out" "$work/$1.err" >&2; fail "$1: exit code $rc, expected 1"; }
  grep -qF -- "$2" "$work/$1.err" || { cat "$work/$1.err" >&2; fail "$1: the error does not mention '$2'"; }
}
expect_summary() {
  grep -q "held-out acc" "$work/$1.out" && grep -q "^efficientnet_lite0 " "$work/$1.out" ||
    { cat "$work/$1.out" >&2; fail "$1: no summary table"; }
}

run help --help
expect_ok help
grep -q -- "--checkpoint" "$work/help.out" || fail "--help does not list --checkpoint"

run bad_image "${common[@]}" --images "$work/toy_bad" --steps 2
expect_error bad_image "$work/toy_bad/right/broken.png"

run bad_arch --random-init true --arch resnet9 --images "$work/toy" --steps 2
expect_error bad_arch "unknown arch 'resnet9': did you mean 'resnet18'"

case "$example" in
  feature_extraction)
    run probe "${common[@]}" --images "$work/toy" --steps 6 --save-head "$work/head.safetensors"
    expect_ok probe
    expect_summary probe
    grep -q "^features: train \[8, 1280\], held-out \[4, 1280\]" "$work/probe.out" || fail "probe: feature shapes not printed"
    [ -s "$work/head.safetensors" ] || fail "probe: --save-head wrote nothing"
    ;;
  fine_tune)
    tune=("${common[@]}" --images "$work/toy" --augment true --steps 6 --freeze-up-to _blocks.3 --head-lr 1e-2 --backbone-lr 1e-3)
    run whole "${tune[@]}"
    expect_ok whole
    expect_summary whole
    whole_loss=$(sed -n 's/^final loss //p' "$work/whole.out")
    [ -n "$whole_loss" ] || fail "whole: no final loss printed"

    run first_half "${tune[@]}" --stop-after 3 --checkpoint-out "$work/run.safetensors"
    expect_ok first_half
    grep -q "stopped at step 3 of 6" "$work/first_half.out" || fail "first_half: did not stop at step 3"
    run second_half "${tune[@]}" --resume "$work/run.safetensors"
    expect_ok second_half
    expect_summary second_half
    resumed_loss=$(sed -n 's/^final loss //p' "$work/second_half.out")
    [ "$resumed_loss" = "$whole_loss" ] ||
      fail "--resume ended on loss $resumed_loss, the uninterrupted run on $whole_loss"

    run other_options "${tune[@]}" --seed 1 --resume "$work/run.safetensors"
    expect_error other_options "seed=0"

    run layer_decay "${common[@]}" --images "$work/toy" --steps 3 --layer-decay 0.8 --freeze-bn-stats true
    expect_ok layer_decay
    expect_summary layer_decay
    ;;
  *) fail "unknown example '$example'" ;;
esac
echo "smoke_test $example: ok"
