#!/usr/bin/env bash
# Prepare what a lent GPU machine without internet needs, in the ignored folder build/gpu:
# the llama-cpp-python sdist without what a CUDA build does not use (llama-src.tar.gz, ~10 MB), its
# Python package alone (llama-py.tar.gz)
# and py3.12 wheels of rbee's dependencies that machine lacks (wheels/, ~30 MB).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=build/gpu
PIP=${PIP:-.venv/bin/pip}
VERSION=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml | head -1)
mkdir -p "$OUT/sdist" "$OUT/wheels"

if [ ! -f "$OUT/llama-src.tar.gz" ]; then
  [ -f "$OUT/sdist/llama_cpp_python-$VERSION.tar.gz" ] ||
    "$PIP" download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$OUT/sdist"
  work=$(mktemp -d)
  tar -xzf "$OUT/sdist/llama_cpp_python-$VERSION.tar.gz" -C "$work"
  src="$work/llama_cpp_python-$VERSION"
  vendor="$src/vendor/llama.cpp"
  rm -rf "$vendor/models" "$vendor/docs" "$vendor/.git" "$vendor/media" "$vendor/benches" \
    "$vendor/docker" "$vendor/.devops" "$vendor/gguf-py/examples" "$src/docs" "$src/examples" "$src/tests" \
    "$src/.git" "$vendor/tests" "$vendor/tools/mtmd/test-"* "$vendor/tools/ui/tests" "$vendor/tools/ui/src" \
    "$vendor/tools/server/tests"
  find "$vendor/examples" -mindepth 1 -maxdepth 1 ! -name CMakeLists.txt -exec rm -rf {} +
  : > "$vendor/examples/CMakeLists.txt"
  for backend in sycl opencl hexagon metal et cann musa webgpu zdnn openvino vulkan kompute rpc hip blas; do
    rm -rf "$vendor/ggml/src/ggml-$backend"
  done
  tar -czf "$OUT/llama-src.tar.gz" -C "$work" "llama_cpp_python-$VERSION"
  rm -rf "$work"
fi

if [ ! -f "$OUT/llama-py.tar.gz" ]; then
  # The Python package alone, for a run that carries a prebuilt engine (build/gpu/prebuilt).
  work=$(mktemp -d)
  tar -xzf "$OUT/llama-src.tar.gz" -C "$work" "llama_cpp_python-$VERSION/llama_cpp"
  tar -czf "$OUT/llama-py.tar.gz" -C "$work" "llama_cpp_python-$VERSION"
  rm -rf "$work"
fi

if [ ! -f "$OUT/wheels/.done" ]; then
  platforms=()
  for p in manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 \
           manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64 manylinux1_x86_64 any; do
    platforms+=(--platform "$p")
  done
  # What the lent machine's python3 (3.12: torch, numpy, aiohttp, psutil, prometheus-client,
  # pyyaml, rich, tqdm, nvidia-ml-py there already) lacks to run rbee, behave and the bench.
  "$PIP" download -q --only-binary :all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$OUT/wheels" pydantic python-json-logger diskcache fabric python-nomad python-hcl2 gguf \
    behave openai typing-extensions uvloop pytest trustme huggingface-hub
  "$PIP" wheel -q --no-deps sdnotify -w "$OUT/wheels"
  rm -f "$OUT"/wheels/numpy-*.whl "$OUT"/wheels/PyYAML-*.whl "$OUT"/wheels/pyyaml-*.whl \
    "$OUT"/wheels/tqdm-*.whl "$OUT"/wheels/requests-*.whl
  touch "$OUT/wheels/.done"
fi
du -sh "$OUT/llama-src.tar.gz" "$OUT/llama-py.tar.gz" "$OUT/wheels"
