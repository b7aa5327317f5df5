#!/usr/bin/env bash
# Create .venv and install rbee with its dev and demo extras, on a fresh Debian machine too.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

need_apt=()
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v g++ >/dev/null 2>&1 || need_apt+=(build-essential)
[ -x /lib/systemd/systemd ] || need_apt+=(systemd)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)  # features/705: scrape discovery
"$PYTHON" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need_apt+=(python3-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need_apt[*]} with apt-get"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip

# The engine: built with CUDA when a CUDA toolkit (nvcc on PATH or in CUDA_HOME) and an NVIDIA
# GPU (nvidia-smi lists one) are both present, else for the CPU (a CUDA build cannot load where
# no driver is). RBEE_ENGINE_BACKEND=cpu|cuda forces the choice.
NVCC=$(command -v nvcc || true)
[ -n "$NVCC" ] || { [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] && NVCC="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"; } || true
GPU=$(nvidia-smi -L 2>/dev/null | head -1 || true)
backend=${RBEE_ENGINE_BACKEND:-$([ -n "$NVCC" ] && [ -n "$GPU" ] && echo cuda || echo cpu)}
engine_has_gpu() { .venv/bin/python -c 'import llama_cpp, sys; sys.exit(not llama_cpp.llama_supports_gpu_offload())' 2>/dev/null; }
if [ "$backend" = cuda ]; then
  [ -n "$NVCC" ] || { echo "bootstrap: RBEE_ENGINE_BACKEND=cuda but no nvcc found (set CUDA_HOME)"; exit 1; }
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d . || true)
  export CUDACXX="$NVCC"
  export CMAKE_ARGS="-DGGML_CUDA=on ${arch:+-DCMAKE_CUDA_ARCHITECTURES=$arch} ${CMAKE_ARGS:-}"
  if ! engine_has_gpu; then
    echo "bootstrap: building llama-cpp-python with CUDA (${arch:+sm_$arch, }$NVCC); this takes minutes"
    .venv/bin/python -m pip install -q --force-reinstall --no-deps --no-cache-dir --no-binary llama-cpp-python \
      "$(sed -n 's/.*"\(llama-cpp-python==[0-9.]*\)".*/\1/p' pyproject.toml | head -1)"
  fi
fi
.venv/bin/python -m pip install -q -e '.[dev,demo]'
if engine_has_gpu; then
  echo "bootstrap: engine built with GPU offload (cuda); check with: .venv/bin/rbee hive backends"
else
  echo "bootstrap: engine built for the CPU (CUDA toolkit: ${NVCC:-none}; GPU: ${GPU:-none})"
fi
