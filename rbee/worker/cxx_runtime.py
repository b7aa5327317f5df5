"""Put the process's C++ runtime in the global symbol scope before llama.cpp's libraries load.

Python extension modules load with RTLD_LOCAL. aiohttp's `frozenlist` is C++, so by the time a
worker imports `llama_cpp` the system `libstdc++.so.6` is already mapped, relocated against
itself, but visible only to `frozenlist`. `llama_cpp` then opens `libggml.so` (RTLD_LOCAL too),
whose dependency list puts `libggml-cuda.so` before `libstdc++.so.6`; `libggml-cuda.so`
exports its own instances of libstdc++ templates (`std::ostream::_M_insert<long>` …), so
llama.cpp's references bind to those while libstdc++'s own objects (locales, facets) were
set up by the runtime: `llama_model::print_info()` crashed on a CUDA build. With the runtime
in the global scope every reference binds to libstdc++, as it does under `LD_PRELOAD`.
"""

from __future__ import annotations

import ctypes
import os
import sys

CXX_RUNTIME = "libstdc++.so.6"


def share_cxx_runtime() -> bool:
    """Make libstdc++ globally visible (loading it when no module has yet); False where there is
    none to share (not Linux, or no libstdc++ installed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL(CXX_RUNTIME, mode=os.RTLD_GLOBAL | os.RTLD_NOLOAD)
    except OSError:
        try:
            ctypes.CDLL(CXX_RUNTIME, mode=os.RTLD_GLOBAL)
        except OSError:
            return False
    return True
