"""llama.cpp's C++ `llama-server` for the CPU, the peer `bench/serving.py` measures rbee against.

Built once from the llama.cpp vendored in the installed llama-cpp-python (so it runs the same
engine version as rbee's workers): the package's source distribution is fetched with pip into
the cache when it is not there, its `vendor/llama.cpp` configured with cmake and built with
ninja (about 10 minutes on 2 cores), and the binary kept in the cache, keyed by that version:
`${XDG_CACHE_HOME:-~/.cache}/rbee/bench/llama-server-<version>/llama-server`.
`RBEE_LLAMA_SERVER=/path/to/llama-server` uses that binary instead (the GPU scripts set it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

ENV = "RBEE_LLAMA_SERVER"
TARGET = "llama-server"
PACKAGE = "llama-cpp-python"
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
)

Runner = Callable[[list[str]], None]
"""Runs one command to completion, raising when it fails."""


def engine_version() -> str:
    """The installed llama-cpp-python's version (`llama_cpp.__version__`)."""
    import llama_cpp

    return llama_cpp.__version__


def cache_root(env: Mapping[str, str] = os.environ) -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/rbee/bench`."""
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "rbee" / "bench"


def cached_binary(version: str, root: Path) -> Path:
    """Where the binary built from llama-cpp-python `version` is kept."""
    return root / f"llama-server-{version}" / TARGET


def download_command(version: str, dest: Path) -> list[str]:
    """pip fetching llama-cpp-python's source distribution (no wheel, no dependencies)."""
    return [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
            f"{PACKAGE}=={version}", "--dest", str(dest)]


def configure_command(source: Path, build: Path) -> list[str]:
    """cmake configuring the vendored llama.cpp for a Ninja build of the server only."""
    return ["cmake", "-S", str(source), "-B", str(build), "-G", "Ninja", *CMAKE_OPTIONS]


def build_command(build: Path) -> list[str]:
    """ninja building the `llama-server` target."""
    return ["ninja", "-C", str(build), TARGET]


def _sdist(version: str, directory: Path) -> Path | None:
    names = (f"llama_cpp_python-{version}.tar.gz", f"llama-cpp-python-{version}.tar.gz")
    return next((directory / name for name in names if (directory / name).is_file()), None)


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL)


def build(version: str, root: Path, run: Runner = _run, log: Callable[[str], None] = print) -> Path:
    """Fetch the sdist into `root/sdist` unless there, unpack it in a scratch directory, build
    the server and move it to `cached_binary(version, root)`; the path of the binary."""
    sdists = root / "sdist"
    sdists.mkdir(parents=True, exist_ok=True)
    archive = _sdist(version, sdists)
    if archive is None:
        log(f"fetching the {PACKAGE} {version} source distribution into {sdists}")
        run(download_command(version, sdists))
        archive = _sdist(version, sdists)
        if archive is None:
            raise RuntimeError(f"pip left no {PACKAGE} {version} source distribution in {sdists}")
    binary = cached_binary(version, root)
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llama-server-build-", dir=binary.parent) as scratch:
        work = Path(scratch)
        with tarfile.open(archive) as sources:
            sources.extractall(work, filter="data")
        source = work / archive.name.removesuffix(".tar.gz") / "vendor" / "llama.cpp"
        if not (source / "CMakeLists.txt").is_file():
            raise RuntimeError(f"{archive} holds no vendor/llama.cpp")
        log(f"building {TARGET} from {source} (about 10 minutes on 2 cores; cached in {binary.parent})")
        run(configure_command(source, work / "build"))
        run(build_command(work / "build"))
        staged = binary.with_suffix(".partial")
        shutil.copy2(work / "build" / "bin" / TARGET, staged)
        staged.replace(binary)
    return binary


def locate(env: Mapping[str, str] = os.environ, version: str | None = None, root: Path | None = None,
           run: Runner = _run, log: Callable[[str], None] = print) -> Path:
    """The llama-server binary to run: `RBEE_LLAMA_SERVER` when set, else the cached build of
    the installed llama-cpp-python's version, built first when the cache has none."""
    override = env.get(ENV)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise RuntimeError(f"{ENV}={override} is not an executable file")
        return path
    version = version or engine_version()
    root = root or cache_root(env)
    binary = cached_binary(version, root)
    if binary.is_file():
        return binary
    return build(version, root, run, log)


def command(binary: Path, model: Path, port: int, slots: int, ctx_per_slot: int, threads: int) -> list[str]:
    """llama-server sized like an rbee worker: `slots` slots (`-np`) of `ctx_per_slot` tokens each,
    `threads` for decoding and prompts, continuous batching; prompt caching is its default. Where the
    build has AMX kernels it runs without weight repacking (`--no-repack`), as rbee's workers do:
    AMX repacking crashes on Gemma 3 (llama.cpp issue 20824, rbee/worker/engine.py)."""
    from rbee.worker.engine import amx_compiled_in

    repack = ["--no-repack"] if amx_compiled_in() else []
    return [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
            "-np", str(slots), "-c", str(slots * ctx_per_slot), "--threads", str(threads),
            "--threads-batch", str(threads), "--cont-batching", *repack]


if __name__ == "__main__":
    print(locate())
