"""An offline wheelhouse for installing rbee on a test node: `pip install --no-index --find-links DIR rbee`.

rbee's own wheel is built from a copy of this checkout (so the checkout gets no `build/` folder)
with this virtualenv's setuptools. `pip wheel .` would resolve the dependencies against an index,
and no test may need the network, so each distribution rbee needs is packed again from its
installed copy in this virtualenv: every file its RECORD lists, with a fresh RECORD, without pip's
install markers, compiled files or console scripts (pip writes those again from
`entry_points.txt`). The result is the set of wheels `pip wheel .` would have produced.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import HeaderParser
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path, PurePosixPath

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

INSTALL_MARKERS = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
SOURCE_FILES = ("pyproject.toml", "README.md")
BUILD_TIMEOUT_S = 300


class WheelhouseError(Exception):
    """A wheel that cannot be built or packed; the message names the distribution and why."""


def build_wheelhouse(checkout: Path, dest: Path) -> list[Path]:
    """rbee's wheel and one wheel per distribution it needs (installed here) in `dest`; their paths."""
    dest.mkdir(parents=True, exist_ok=True)
    rbee = build_own_wheel(checkout, dest)
    with zipfile.ZipFile(rbee) as wheel:
        metadata = next(name for name in wheel.namelist() if name.endswith(".dist-info/METADATA"))
        requires = HeaderParser().parsestr(wheel.read(metadata).decode()).get_all("Requires-Dist") or []
    return [rbee, *(pack_installed(dist, dest) for dist in requirement_closure(requires))]


def build_own_wheel(checkout: Path, dest: Path) -> Path:
    """Build rbee's wheel from a copy of `checkout`, without an index or build isolation."""
    with tempfile.TemporaryDirectory(prefix="rbee-wheel-") as tmp:
        source = Path(tmp) / "rbee-src"
        shutil.copytree(checkout / "rbee", source / "rbee", ignore=shutil.ignore_patterns("__pycache__"))
        for name in SOURCE_FILES:
            shutil.copy(checkout / name, source / name)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
             "--no-build-isolation", "--wheel-dir", str(dest), str(source)],
            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
        )
    if result.returncode != 0:
        raise WheelhouseError(f"building rbee's wheel failed: {result.stderr.strip()[-2000:]}")
    return next(dest.glob("rbee-*.whl"))


def requirement_closure(requirements: list[str]) -> list[Distribution]:
    """The installed distributions these requirements need, transitively (markers and extras applied)."""
    found: dict[str, Distribution] = {}
    walked: set[tuple[str, str]] = set()
    pending = [(text, "") for text in requirements]
    while pending:
        text, extra = pending.pop()
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            raise WheelhouseError(f"{requirement.name} is needed but not installed in {sys.prefix}") from None
        if not requirement.specifier.contains(dist.version, prereleases=True):
            raise WheelhouseError(f"{text} is needed but {dist.version} is installed in {sys.prefix}")
        found[name] = dist
        for wanted in ("", *sorted(requirement.extras)):
            if (name, wanted) not in walked:
                walked.add((name, wanted))
                pending += [(dep, wanted) for dep in dist.requires or []]
    return [found[name] for name in sorted(found)]


def _tags(dist: Distribution) -> str:
    """The compressed tag set of the wheel the distribution was installed from (`cp311-cp311-manylinux…`)."""
    tags = [line.split(":", 1)[1].strip().split("-") for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    if not tags:
        raise WheelhouseError(f"{dist.name} was not installed from a wheel (no Tag in its WHEEL file)")
    return "-".join(".".join(sorted({tag[part] for tag in tags})) for part in range(3))


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def pack_installed(dist: Distribution, dest: Path) -> Path:
    """Pack an installed distribution into a wheel in `dest` (stored, not compressed: it stays local)."""
    files = dist.files
    if files is None:
        raise WheelhouseError(f"{dist.name} has no RECORD: it cannot be packed again")
    info_dir = next(f.parent for f in files if f.name == "METADATA" and f.parent.name.endswith(".dist-info"))
    scripts = {entry.name for entry in dist.entry_points if entry.group in ("console_scripts", "gui_scripts")}
    stem = str(info_dir).removesuffix(".dist-info")
    wheel_path = dest / f"{stem}-{_tags(dist)}.whl"
    record = []
    with zipfile.ZipFile(wheel_path, "w", zipfile.ZIP_STORED) as wheel:
        for item in files:
            path = PurePosixPath(str(item))
            if path.parts[0] == "..":
                if path.parent.name == "bin" and path.name in scripts:
                    continue
                raise WheelhouseError(f"{dist.name} installed {path} outside site-packages: not packable")
            if "__pycache__" in path.parts or (path.parent == info_dir and path.name in INSTALL_MARKERS):
                continue
            data = Path(str(dist.locate_file(item))).read_bytes()
            wheel.writestr(str(path), data)
            record.append(_record_line(str(path), data))
        record.append(f"{info_dir}/RECORD,,")
        wheel.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return wheel_path
