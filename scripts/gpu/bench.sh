#!/usr/bin/env bash
# `make bench-gpu`: bench/gpu.py with the arguments given (BENCH_ARGS). On a lent GPU machine
# (scripts/gpu/device_setup.sh wrote $RBEE_GPU_DIR/env.sh) with its python3, else with the venv's.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=${RBEE_GPU_DIR:-/tmp/rbee-gpu}
if [ -f "$G/env.sh" ]; then
  # shellcheck source=/dev/null
  . "$G/env.sh"
  PYTHON=python3
else
  PYTHON=.venv/bin/python
fi
exec "$PYTHON" bench/gpu.py "$@"
