"""Ansible filter `rbee_units`: a node's systemd units, rendered by rbee itself on the controller.

The unit text comes from jobs/systemd/ through `rbee.deploy.systemd_units.render_unit`, the code
behind `rbee deploy systemd`, so the playbook and the command install the same units. Ansible runs
filters on the controller: run the playbook from an rbee checkout with its virtualenv
(`.venv/bin/ansible-playbook`). The queen and hive units also get `--config` with the file the
role writes for each (the units' own flags still override it).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

try:
    from rbee.common.tunables import Timings, TunableError, env_name
    from rbee.deploy.systemd_units import (
        HIVE_UNIT,
        QUEEN_UNIT,
        SAFE_HOST,
        SAFE_PATH,
        STATE_ROOT,
        UNITS,
        DeployError,
        UnitSettings,
        render_unit,
    )
except ImportError as exc:
    IMPORT_PROBLEM: str | None = f"{exc}"
else:
    IMPORT_PROBLEM = None

CONFIGURED = {QUEEN_UNIT: "queen", HIVE_UNIT: "hive"} if IMPORT_PROBLEM is None else {}


def _fail(code: str, message: str) -> AnsibleFilterError:
    return AnsibleFilterError(f"{code}: {message}")


def _path(name: str, value: Any) -> Path:
    """An absolute path systemd takes literally, or a filter error naming the variable."""
    text = str(value)
    if not SAFE_PATH.match(text):
        raise _fail("UNSAFE_PATH", f"{name} must be an absolute path of letters, digits and . _ + - / "
                    f"only (systemd would interpret other characters), not {text!r}")
    return Path(text)


def _number(name: str, value: Any, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise _fail("INVALID_SETTING", f"{name} must be a number, not {value!r}") from None


def unit_settings(settings: dict[str, Any]) -> UnitSettings:
    """The `UnitSettings` of `rbee_unit_settings` (vars/main.yml), checked as `rbee deploy systemd` does."""
    scope = settings["scope"]
    if scope not in ("user", "system"):
        raise _fail("INVALID_SCOPE", f"rbee_scope must be user or system, not {scope!r}")
    config_dir = _path("rbee_config_dir", settings["config_dir"])
    result = UnitSettings(
        user=scope == "user",
        rbee=_path("rbee_install_dir", settings["rbee"]),
        data_dir=_path("rbee_data_dir", settings["data_dir"]),
        token_dir=_path("rbee_token_dir", settings["token_dir"]),
        worker_env_dir=config_dir / "workers",
        host=str(settings["host"]),
        queen_port=int(_number("rbee_queen_port", settings["queen_port"], int)),
        hive_port=int(_number("rbee_hive_port", settings["hive_port"], int)),
        worker_port_start=int(_number("rbee_worker_port_start", settings["worker_port_start"], int)),
        watchdog_s=float(_number("rbee_watchdog_sec", settings["watchdog_s"], float)),
        log_dir=_path("rbee_log_dir", settings["log_dir"]) if settings["log_dir"] else None,
        environment={str(key): str(value) for key, value in (settings["environment"] or {}).items()},
    )
    if not SAFE_HOST.match(result.host):
        raise _fail("INVALID_HOST", f"rbee_host must be an IP address or a host name, not {result.host!r}")
    ports = {result.queen_port, result.hive_port, result.worker_port_start}
    if len(ports) != 3 or not all(1 <= port <= 65535 for port in ports):
        raise _fail("INVALID_PORT", "rbee_queen_port, rbee_hive_port and rbee_worker_port_start must be "
                    "distinct, 1 to 65535")
    unknown = sorted(set(result.environment) - {env_name(item.name) for item in fields(Timings)})
    if unknown:
        raise _fail("INVALID_TUNABLE", f"rbee_tunables: {', '.join(unknown)} is not an rbee tunable "
                    "(docs/configuration.md lists them)")
    if result.watchdog_s < 1:
        raise _fail("INVALID_WATCHDOG", "rbee_watchdog_sec must be at least 1")
    if not result.user and not result.data_dir.is_relative_to(STATE_ROOT / "rbee"):
        raise _fail("INVALID_DATA_DIR", "system units keep their data in a StateDirectory: rbee_data_dir "
                    "must be /var/lib/rbee or a folder below it")
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
    except TunableError as exc:
        raise _fail("INVALID_TUNABLE", f"rbee_tunables: {exc}") from None
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
