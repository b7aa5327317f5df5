"""Putting rendered units in place: folders, unit files, `systemctl daemon-reload`, enable and start."""

from __future__ import annotations

import subprocess
from pathlib import Path

from rbee.deploy.systemd_units import HIVE_UNIT, QUEEN_UNIT, DeployError, UnitSettings

SYSTEMCTL_TIMEOUT_S = 120
STARTED_UNITS = (HIVE_UNIT, QUEEN_UNIT)


def prepare_dirs(settings: UnitSettings) -> None:
    """Create the folders the units need before they start (0700: they hold models and logs).

    System units get their data dir from systemd (`StateDirectory=`); user units need it to
    exist for `ReadWritePaths=`.
    """
    folders = [settings.log_dir] if settings.log_dir else []
    if settings.user:
        folders += [settings.data_dir, settings.hive_data_dir]
    for folder in folders:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DeployError("CANNOT_CREATE_DIR", f"cannot create {folder}: {exc.strerror}") from None


def write_units(units: dict[str, str], dest: Path) -> list[Path]:
    """Write each unit file into `dest` (mode 0644); return their paths."""
    written = []
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for name, text in units.items():
            path = dest / name
            path.write_text(text)
            path.chmod(0o644)
            written.append(path)
    except OSError as exc:
        raise DeployError("CANNOT_WRITE_UNITS", f"cannot write units into {dest}: {exc.strerror}") from None
    return written


def systemctl(user: bool, *args: str) -> str:
    """Run `systemctl [--user] ARGS`; its output, or DeployError with systemctl's own message."""
    command = ["systemctl", *(["--user"] if user else []), *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S)
    except FileNotFoundError:
        raise DeployError("SYSTEMCTL_MISSING", "systemctl is not installed on this machine") from None
    except subprocess.TimeoutExpired:
        raise DeployError("SYSTEMCTL_FAILED", f"`{' '.join(command)}` took longer than "
                          f"{SYSTEMCTL_TIMEOUT_S} s") from None
    if result.returncode != 0:
        reason = " ".join((result.stderr or result.stdout).split()) or f"exit {result.returncode}"
        raise DeployError("SYSTEMCTL_FAILED", f"`{' '.join(command)}` failed: {reason}")
    return result.stdout


def reload_manager(user: bool) -> None:
    """Make the service manager read the new unit files."""
    systemctl(user, "daemon-reload")


def enable_and_start(user: bool) -> dict[str, str]:
    """Enable hive and queen at boot (or login) and start them now; each unit's state after."""
    systemctl(user, "enable", "--now", *STARTED_UNITS)
    return {unit: systemctl(user, "show", "-p", "ActiveState", "--value", unit).strip()
            for unit in STARTED_UNITS}
