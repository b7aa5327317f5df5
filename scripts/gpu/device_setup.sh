#!/usr/bin/env bash
# On a lent GPU machine without internet (see docs/gpu.md): install the staged wheels, get the
# CUDA build of llama.cpp (libllama, llama-server, llama-batched-bench) and write the environment
# that points Python at it to $RBEE_GPU_DIR/env.sh. Source that file afterwards.
# The engine comes from build/gpu/prebuilt/bin.tar.xz.* when a run carries it (the build/bin of an
# earlier run on such a machine; scripts/gpu/keep_build.sh) and loads with CUDA there, else it is
# built from the staged source (~4 minutes). Run scripts/gpu/stage.sh on a machine with internet first.
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
if [ ! -d "$G/src/llama_cpp" ]; then
  source_tarball=build/gpu/llama-src.tar.gz
  [ -f "$source_tarball" ] || source_tarball=build/gpu/llama-py.tar.gz
  mkdir -p "$G/src" && tar -xzf "$source_tarball" -C "$G/src" --strip-components=1
fi

engine_loads() {
  LLAMA_CPP_LIB_PATH="$G/build/bin" PYTHONPATH="$G/site:$G/src" "$PYTHON" -c \
    'import llama_cpp, sys; llama_cpp.llama_backend_init(); sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)' \
    >/dev/null 2>&1
}

if [ ! -f "$G/build/bin/libllama.so" ] && compgen -G "build/gpu/prebuilt/bin.tar.xz.*" >/dev/null; then
  mkdir -p "$G/build/bin"
  cat build/gpu/prebuilt/bin.tar.xz.* | xz -d | tar -x -C "$G/build/bin"
  if engine_loads; then
    echo "device_setup: prebuilt CUDA engine from build/gpu/prebuilt"
  else
    echo "device_setup: the prebuilt engine does not load with CUDA here; building"
    rm -rf "$G/build"
  fi
fi
if [ ! -f "$G/build/bin/libllama.so" ] || [ ! -x "$G/build/bin/llama-server" ]; then
  [ -d "$G/src/vendor/llama.cpp" ] || { echo "device_setup: no build/gpu/llama-src.tar.gz to build from"; exit 1; }
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
