#!/usr/bin/env bash
# `make test-gpu`: the @gpu scenarios (features/900-gpu.feature) against real daemons on this
# node's GPU. On a lent machine prepared by scripts/gpu/device_setup.sh its environment is used;
# elsewhere the project's .venv (built by `make setup`, with CUDA when a toolkit and GPU exist).
set -u
cd "$(dirname "$0")/../.."
G=${RBEE_GPU_DIR:-/tmp/rbee-gpu}
if [ -f "$G/env.sh" ]; then
  . "$G/env.sh"; PY=python3; BEHAVE=(python3 -m behave)
else
  PY=.venv/bin/python; BEHAVE=(.venv/bin/behave)
fi
"$PY" -c 'import llama_cpp, sys; sys.exit(not llama_cpp.llama_supports_gpu_offload())' \
  || { echo "test-gpu: the installed engine has no GPU offload; run make setup on a GPU node"; exit 1; }
mkdir -p reports/gpu
"${BEHAVE[@]}" features --tags=@gpu --no-capture --junit --junit-directory reports/gpu \
  -f progress -o - ${BEHAVE_ARGS:-}
