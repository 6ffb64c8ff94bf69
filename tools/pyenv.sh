#!/usr/bin/env bash
# Sourced by tools/test.sh (and the generators): makes the pinned Python reference environment of
# tools/requirements-reference.txt, once per version of that file, and exports GRAFT_PYTHON (its
# interpreter) and GRAFT_PYENV (its folder). Needs Debian's python3-torch, python3-torchvision,
# python3-numpy, python3-venv and python3-pip; installs them when missing (root, fresh Debian).
_graft_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_need=()
for _pkg in python3-torch python3-torchvision python3-numpy python3-pil python3-venv python3-pip; do
  dpkg -s "$_pkg" >/dev/null 2>&1 || _need+=("$_pkg")
done
if [ ${#_need[@]} -gt 0 ]; then
  echo "installing: ${_need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${_need[@]}" >/dev/null
fi
_key=$(sha1sum "$_graft_root/tools/requirements-reference.txt" | cut -c1-12)
GRAFT_PYENV="${XDG_CACHE_HOME:-$HOME/.cache}/graft/pyenv-$_key"
if [ ! -f "$GRAFT_PYENV/complete" ]; then
  echo "making the Python reference environment in $GRAFT_PYENV"
  rm -rf "$GRAFT_PYENV"
  mkdir -p "$(dirname "$GRAFT_PYENV")"
  /usr/bin/python3 -m venv --system-site-packages "$GRAFT_PYENV"
  "$GRAFT_PYENV/bin/pip" install -q --disable-pip-version-check --no-deps \
    -r "$_graft_root/tools/requirements-reference.txt"
  touch "$GRAFT_PYENV/complete"
fi
GRAFT_PYTHON="$GRAFT_PYENV/bin/python"
export GRAFT_PYENV GRAFT_PYTHON
unset _graft_root _need _pkg _key
