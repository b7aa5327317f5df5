"""Ansible filter `rbee_units`: a node's systemd units, rendered by rbee itself on the controller.

The unit text comes from the packaged templates (rbee/deploy/jobs/systemd/) through
`rbee.deploy.systemd_units.render_unit`, the code
behind `rbee deploy systemd`, so the playbook and the command install the same units. Ansible runs
filters on the controller: run the playbook from an rbee checkout with its virtualenv
(`.venv/bin/ansible-playbook`). The settings are checked by the same code too
(`check_values`), with messages that name the role's variables. The queen and hive units also get
`--config` with the file the role writes for each (the units' own flags still override it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

try:
    from rbee.deploy.systemd_units import (
        HIVE_UNIT,
        QUEEN_UNIT,
        UNITS,
        DeployError,
        SettingNames,
        UnitSettings,
        check_values,
        render_unit,
    )
except ImportError as exc:
    IMPORT_PROBLEM: str | None = f"{exc}"
else:
    IMPORT_PROBLEM = None

CONFIGURED = {QUEEN_UNIT: "queen", HIVE_UNIT: "hive"} if IMPORT_PROBLEM is None else {}
NAMES = SettingNames(
    data_dir="rbee_data_dir", token_dir="rbee_token_dir", log_dir="rbee_log_dir", rbee="rbee_install_dir",
    worker_env_dir="rbee_config_dir", host="rbee_host",
    ports="rbee_queen_port, rbee_hive_port and rbee_worker_port_start", watchdog="rbee_watchdog_sec",
    environment="rbee_tunables",
) if IMPORT_PROBLEM is None else None
"""The role's variables, for the messages of rbee's own checks."""


def _fail(code: str, message: str) -> AnsibleFilterError:
    return AnsibleFilterError(f"{code}: {message}")


def _number(name: str, value: Any, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise _fail("INVALID_SETTING", f"{name} must be a number, not {value!r}") from None


def unit_settings(settings: dict[str, Any]) -> UnitSettings:
    """The `UnitSettings` of `rbee_unit_settings` (vars/main.yml), checked by `check_values`, the
    checks of `rbee deploy systemd`. The node's virtualenv is the install its units may bind in."""
    scope = settings["scope"]
    if scope not in ("user", "system"):
        raise _fail("INVALID_SCOPE", f"rbee_scope must be user or system, not {scope!r}")
    result = UnitSettings(
        user=scope == "user",
        rbee=Path(str(settings["rbee"])),
        data_dir=Path(str(settings["data_dir"])),
        token_dir=Path(str(settings["token_dir"])),
        worker_env_dir=Path(str(settings["config_dir"])) / "workers",
        host=str(settings["host"]),
        queen_port=int(_number("rbee_queen_port", settings["queen_port"], int)),
        hive_port=int(_number("rbee_hive_port", settings["hive_port"], int)),
        worker_port_start=int(_number("rbee_worker_port_start", settings["worker_port_start"], int)),
        watchdog_s=float(_number("rbee_watchdog_sec", settings["watchdog_s"], float)),
        log_dir=Path(str(settings["log_dir"])) if settings["log_dir"] else None,
        environment={str(key): str(value) for key, value in (settings["environment"] or {}).items()},
        install_paths=(Path(str(settings["install_dir"])),),
    )
    try:
        check_values(result, NAMES)
    except DeployError as exc:
        raise _fail(exc.code, exc.message) from None
    return result


def _with_config(text: str, rbee: Path, daemon: str, config: Path) -> str:
    """The unit with `--config FILE` right after `rbee DAEMON` on its ExecStart line."""
    start = f"ExecStart={rbee} {daemon} "
    if text.count(start) != 1:
        raise _fail("UNIT_TEMPLATE_CHANGED", f"the {daemon} unit has no single `{start}` line to add "
                    "--config to: update filter_plugins/rbee_units.py")
    return text.replace(start, f"{start}--config {config} ")


def rbee_units(settings: dict[str, Any]) -> dict[str, str]:
    """Unit file name → text of rbee-queen.service, rbee-hive.service and rbee-worker@.service."""
    if IMPORT_PROBLEM is not None:
        raise _fail("RBEE_NOT_IMPORTABLE", f"the controller cannot import rbee ({IMPORT_PROBLEM}): run "
                    "ansible-playbook from rbee's virtualenv (.venv/bin/ansible-playbook in a checkout)")
    unit = unit_settings(settings)
    config_dir = Path(str(settings["config_dir"]))
    try:
        texts = {name: render_unit(name, unit) for name in UNITS}
    except DeployError as exc:
        raise _fail(exc.code, exc.message) from None
    for name, daemon in CONFIGURED.items():
        texts[name] = _with_config(texts[name], unit.rbee, daemon, config_dir / f"{daemon}.yaml")
    return texts


class FilterModule:
    """Ansible's entry point for this file's filters."""

    def filters(self) -> dict[str, Any]:
        """The filters this file provides."""
        return {"rbee_units": rbee_units}
