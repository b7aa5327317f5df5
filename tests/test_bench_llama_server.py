"""How `bench/llama_server.py` finds or builds llama-server, without compiling anything: the
commands it would run are recorded by a fake runner that leaves what pip and ninja would."""

import io
import os
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import llama_server  # noqa: E402

VERSION = "9.8.7"


def _sdist(dest: Path) -> None:
    """A source distribution holding just a vendored llama.cpp's CMakeLists.txt."""
    with tarfile.open(dest / f"llama_cpp_python-{VERSION}.tar.gz", "w:gz") as archive:
        data = b"project(llama.cpp)\n"
        info = tarfile.TarInfo(f"llama_cpp_python-{VERSION}/vendor/llama.cpp/CMakeLists.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


class FakeRunner:
    """Records each command; `pip download` leaves an sdist, ninja leaves a binary."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str]) -> None:
        self.commands.append(command)
        if command[1:4] == ["-m", "pip", "download"]:
            _sdist(Path(command[command.index("--dest") + 1]))
        elif command[0] == "ninja":
            binary = Path(command[2]) / "bin" / "llama-server"
            binary.parent.mkdir(parents=True)
            binary.write_text("#!/bin/sh\n")
            binary.chmod(0o755)


def test_the_cache_is_keyed_by_the_engine_version_under_xdg_cache_home(tmp_path):
    root = llama_server.cache_root({"XDG_CACHE_HOME": str(tmp_path), "HOME": "/nowhere"})
    expected = tmp_path / "rbee/bench/llama-server-9.8.7/llama-server"
    assert llama_server.cached_binary(VERSION, root) == expected
    assert llama_server.cache_root({"HOME": str(tmp_path)}) == tmp_path / ".cache/rbee/bench"


def test_a_build_from_scratch_fetches_the_sdist_with_pip_and_builds_the_server_target(tmp_path):
    runner = FakeRunner()
    binary = llama_server.locate({}, VERSION, tmp_path, runner, log=lambda _: None)
    assert binary == tmp_path / "llama-server-9.8.7" / "llama-server"
    assert os.access(binary, os.X_OK)
    pip, cmake, ninja = runner.commands
    assert pip == [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                   "llama-cpp-python==9.8.7", "--dest", str(tmp_path / "sdist")]
    source = Path(cmake[cmake.index("-S") + 1])
    assert source.parts[-3:] == ("llama_cpp_python-9.8.7", "vendor", "llama.cpp")
    assert cmake[:1] == ["cmake"] and cmake[cmake.index("-G") + 1] == "Ninja"
    for option in ("-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_OPENSSL=OFF",
                   "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_UI=OFF",
                   "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_SERVER=ON"):
        assert option in cmake
    assert ninja == ["ninja", "-C", cmake[cmake.index("-B") + 1], "llama-server"]
    assert not [path for path in binary.parent.iterdir() if path != binary], "the scratch tree is left behind"


def test_a_cached_sdist_is_not_fetched_again(tmp_path):
    (tmp_path / "sdist").mkdir()
    _sdist(tmp_path / "sdist")
    runner = FakeRunner()
    llama_server.locate({}, VERSION, tmp_path, runner, log=lambda _: None)
    assert [command[0] for command in runner.commands] == ["cmake", "ninja"]


def test_a_cached_binary_is_reused_without_running_anything(tmp_path):
    runner = FakeRunner()
    first = llama_server.locate({}, VERSION, tmp_path, runner, log=lambda _: None)
    runner.commands.clear()
    assert llama_server.locate({}, VERSION, tmp_path, runner, log=lambda _: None) == first
    assert runner.commands == []


def test_rbee_llama_server_overrides_the_cache(tmp_path):
    binary = tmp_path / "my-llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    runner = FakeRunner()
    assert llama_server.locate({"RBEE_LLAMA_SERVER": str(binary)}, VERSION, tmp_path, runner) == binary
    assert runner.commands == []
    with pytest.raises(RuntimeError, match="RBEE_LLAMA_SERVER"):
        llama_server.locate({"RBEE_LLAMA_SERVER": str(tmp_path / "missing")}, VERSION, tmp_path, runner)
