#!/usr/bin/env bash
# Includes go one way: ops -> kernels -> core (docs/ARCHITECTURE.md, "The kernel layer"). Fails,
# naming the file and line, when a kernels/ file includes anything but core/ and kernels/ headers, or a
# core/ header includes ops/ or kernels/.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r hit; do
  echo "include direction: $hit (kernels/ may include only core/ and kernels/ headers)"
  bad=1
done < <(grep -rnE '#include +"graft/' kernels/ | grep -vE '#include +"graft/(core|kernels)/' || true)
while IFS= read -r hit; do
  echo "include direction: $hit (core/ may not include ops/ or kernels/ headers)"
  bad=1
done < <(grep -rnE '#include +"graft/(ops|kernels)/' include/graft/core/ || true)
[ $bad = 0 ] && echo "include direction ok: ops -> kernels -> core"
exit $bad
