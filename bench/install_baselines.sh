#!/usr/bin/env bash
# The baselines of bench/compare.sh, installed once and cached:
#   - PyTorch 2.15 (MKL + oneDNN), torchvision, timm and transformers, pinned in
#     bench/requirements-bench.txt, installed with `pip install --no-deps` into a venv at
#     ${XDG_CACHE_HOME:-$HOME/.cache}/graft/bench-venv-<sha1 of that file>, plus its launcher
#     bin/bench-python, which puts the CUDA toolkit's lib64 and the nvidia wheels' lib folders on
#     LD_LIBRARY_PATH (PyPI's torch is the CUDA build: its libraries must load, even with no GPU);
#   - OpenBLAS (Debian's libopenblas-dev), the second sgemm baseline, linked into bench_models.
# MKL needs no install of its own: the torch wheel links MKL statically, and torch.mm on float32 CPU
# tensors calls MKL's sgemm (MKL_VERBOSE=1 shows the SGEMM calls; see bench/README.md).
#
#   bash bench/install_baselines.sh                 installs what is missing, checks torch, prints its config
#   bash bench/install_baselines.sh --print-python  the same, then prints only the launcher's path on
#                                                   stdout (progress goes to stderr): compare.sh's way
# Needs root for apt-get (python3-venv, libopenblas-dev) when those are missing; PyPI for the wheels
# (about 1.1 GB, 2 minutes to install from a warm cache).
set -euo pipefail
print_python=0
case "${1:-}" in
  --print-python) print_python=1 ;;
  "") ;;
  *) echo "usage: bash bench/install_baselines.sh [--print-python]" >&2; exit 2 ;;
esac
fail() {
  echo "install_baselines: $*" >&2
  exit 1
}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements-bench.txt"

# Debian packages: the venv module and OpenBLAS.
need=()
for pkg in python3-venv libopenblas-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "install_baselines: installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
    fail "apt-get install ${need[*]} failed (run as root)"
fi

base_python="${GRAFT_BENCH_BASE_PYTHON:-/usr/bin/python3}"
[ -x "$base_python" ] || base_python="$(command -v python3)"
"$base_python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  fail "$base_python is older than 3.11 (torch 2.15 needs >= 3.11; set GRAFT_BENCH_BASE_PYTHON)"

key=$(sha1sum "$req" | cut -c1-12)
venv="${XDG_CACHE_HOME:-$HOME/.cache}/graft/bench-venv-$key"
launcher="$venv/bin/bench-python"

# The launcher, rewritten at every call (cheap): LD_LIBRARY_PATH is found at each start, since the
# toolkit may move while the venv does not.
write_launcher() {
  cat >"$launcher" <<'LAUNCHER'
#!/usr/bin/env bash
# bench-python: this venv's python with the libraries PyPI's CUDA-built torch loads on LD_LIBRARY_PATH:
# the CUDA toolkit's lib64 (nvcc's toolkit, else /usr/local/cuda) and the nvidia wheels' lib folders.
venv="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
toolkit=""
if nvcc="$(command -v nvcc 2>/dev/null)"; then toolkit="$(cd "$(dirname "$(readlink -f "$nvcc")")/.." && pwd)"; fi
[ -n "$toolkit" ] || toolkit=/usr/local/cuda
libs=""
for d in "$toolkit/lib64" "$toolkit/lib" "$venv"/lib/python3*/site-packages/nvidia/*/lib; do
  [ -d "$d" ] && libs="$libs${libs:+:}$d"
done
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$venv/bin/python" "$@"
LAUNCHER
  chmod +x "$launcher"
}

if [ ! -f "$venv/complete" ]; then
  echo "install_baselines: making $venv (pip install --no-deps -r bench/requirements-bench.txt)" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$base_python" -m venv "$venv" || fail "python -m venv failed"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$req" >&2 ||
    fail "pip install --no-deps -r $req failed"
  write_launcher
  # torch must load and multiply on the CPU with no GPU present.
  (cd /tmp && "$launcher" -c '
import torch, torchvision, timm, transformers
from transformers import BertModel
c = torch.randn(4, 4) @ torch.randn(4, 4)
assert c.shape == (4, 4) and torch.isfinite(c).all()
') || fail "torch does not load from $venv: it needs a CUDA 13 toolkit (libcudart.so.13, libcublas.so.13, libcudnn.so.9) in nvcc's lib64 or /usr/local/cuda/lib64"
  touch "$venv/complete"
fi
write_launcher

if [ "$print_python" = 1 ]; then
  echo "$launcher"
else
  echo "venv: $venv"
  echo "python launcher: $launcher"
  cd /tmp && "$launcher" -c '
import os, torch, torchvision, timm, transformers
c = torch.randn(4, 4) @ torch.randn(4, 4)
print("torch", torch.__version__, "torchvision", torchvision.__version__, "timm", timm.__version__,
      "transformers", transformers.__version__)
print("torch.randn(4, 4) @ torch.randn(4, 4) ->", tuple(c.shape), "on", c.device, "| cuda available:",
      torch.cuda.is_available(), "| CPU capability:", torch.backends.cpu.get_cpu_capability())
print("LD_LIBRARY_PATH:", os.environ.get("LD_LIBRARY_PATH"))
print(torch.__config__.show())
'
  echo "OpenBLAS: $(dpkg-query -W -f='${Package} ${Version}' libopenblas-dev) ($(readlink -f /usr/lib/x86_64-linux-gnu/libopenblas.so.0 2>/dev/null))"
fi
