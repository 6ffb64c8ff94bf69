#!/usr/bin/env bash
# Installs the Debian packages Graft builds with, if missing (root, fresh Debian). Sourced by
# tools/test.sh and tools/demo.sh. Versions are Debian bookworm's: cmake 3.25, g++ 12,
# catch2 2.13.10, libbenchmark-dev 1.7.1, libstb-dev 0.0~git20220908.
need=()
for pkg in cmake g++ make catch2 libbenchmark-dev libstb-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
