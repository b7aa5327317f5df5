#!/usr/bin/env bash
# On a lent GPU machine without internet (see docs/gpu.md): install the staged wheels, build
# llama.cpp with CUDA from the staged source (libllama, llama-server, llama-batched-bench),
# and write the environment that points Python at them to $RBEE_GPU_DIR/env.sh.
# Source that file afterwards. Run scripts/gpu/stage.sh on a machine with internet first.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=${RBEE_GPU_DIR:-/tmp/rbee-gpu}
PYTHON=${PYTHON:-python3}
ARCH=${CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)}
mkdir -p "$G"
if [ ! -d "$G/site" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$G/site" \
    build/gpu/wheels/*.whl
fi
if [ ! -d "$G/src" ]; then
  mkdir -p "$G/src" && tar -xzf build/gpu/llama-src.tar.gz -C "$G/src" --strip-components=1
fi
if [ ! -f "$G/build/bin/libllama.so" ] || [ ! -x "$G/build/bin/llama-server" ]; then
  cmake -S "$G/src/vendor/llama.cpp" -B "$G/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DBUILD_SHARED_LIBS=ON -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_SERVER=ON >"$G/cmake.log" 2>&1 || { tail -30 "$G/cmake.log"; exit 1; }
  ninja -C "$G/build" -j"$(nproc)" llama llama-server llama-batched-bench >"$G/ninja.log" 2>&1 \
    || { tail -30 "$G/ninja.log"; exit 1; }
fi
cat >"$G/env.sh" <<ENV
export PYTHONPATH=$G/site:$G/src:$PWD\${PYTHONPATH:+:\$PYTHONPATH}
export LLAMA_CPP_LIB_PATH=$G/build/bin
export RBEE_LLAMA_SERVER=$G/build/bin/llama-server
export RBEE_LLAMA_BATCHED_BENCH=$G/build/bin/llama-batched-bench
export PYTHONUNBUFFERED=1
ENV
echo "device_setup: CUDA engine for sm_$ARCH in $G/build/bin; source $G/env.sh"
