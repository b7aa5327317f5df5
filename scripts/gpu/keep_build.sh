#!/usr/bin/env bash
# On the lent GPU machine, after scripts/gpu/device_setup.sh built the engine: pack its build/bin
# into 15 MB chunks under $OUT (the device tool returns files of at most 16 MiB). Copy them into
# build/gpu/prebuilt/ here and carry that folder, and the next run skips the build.
set -euo pipefail
G=${RBEE_GPU_DIR:-/tmp/rbee-gpu}
cd "$G/build/bin"
tar -c ./*.so* llama-server llama-batched-bench | xz -T"$(nproc)" -6 | split -b 15M - "${OUT:?}/bin.tar.xz."
