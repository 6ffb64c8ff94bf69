#!/usr/bin/env bash
# Includes go one way: ops -> kernels -> core (docs/ARCHITECTURE.md, "The kernel layer"). Fails,
# naming the file and line, when a header under kernels/graft/ includes anything but core/ and
# kernels/ headers, or a core/ header includes ops/ or kernels/. kernels/graft_kernels.cpp is no
# header: it is the unit that compiles every kernel once (GRAFT_COMPILED_KERNELS) and includes graft.hpp.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r hit; do
  echo "include direction: $hit (kernels/ may include only core/ and kernels/ headers)"
  bad=1
done < <(grep -rnE '#include +"graft/' kernels/graft/ | grep -vE '#include +"graft/(core|kernels)/' || true)
while IFS= read -r hit; do
  echo "include direction: $hit (core/ may not include ops/ or kernels/ headers)"
  bad=1
done < <(grep -rnE '#include +"graft/(ops|kernels)/' include/graft/core/ || true)
[ $bad = 0 ] && echo "include direction ok: ops -> kernels -> core"
exit $bad
