"""The worker puts libstdc++ in the global symbol scope before llama.cpp loads (see
rbee/worker/cxx_runtime.py): checked in fresh interpreters through dlsym(RTLD_DEFAULT)."""

import subprocess
import sys

import pytest

OSTREAM_INSERT_LONG = "_ZNSo9_M_insertIlEERSoT_"
"""std::ostream::_M_insert<long>, the call llama_model::print_info() crashed in."""

PROBE = f"""
import ctypes, sys
def visible():
    return hasattr(ctypes.CDLL(None), "{OSTREAM_INSERT_LONG}")
import frozenlist._frozenlist  # a C++ extension: maps libstdc++ with RTLD_LOCAL
before = visible()
from rbee.worker.cxx_runtime import share_cxx_runtime
shared = share_cxx_runtime()
print(before, shared, visible())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF symbol scopes are Linux's")
def test_a_cxx_runtime_loaded_locally_by_an_extension_becomes_globally_visible():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"]

