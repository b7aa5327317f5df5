"""Unit rendering rules: which folders a unit's sandboxing hides, the read-only binds that bring rbee's
install back, the folders rbee runs from, the devices each unit may open, and the value checks
`rbee deploy systemd` and the Ansible role share."""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest
from ansible.errors import AnsibleFilterError

import rbee
from rbee.deploy.systemd_sandbox import HOMES, PRIVATE_TMP, directives, hidden_roots, read_only_binds
from rbee.deploy.systemd_units import (
    HIVE_UNIT,
    QUEEN_UNIT,
    UNITS,
    WORKER_UNIT,
    DeployError,
    SettingNames,
    UnitSettings,
    check_values,
    install_paths,
    render_unit,
)

BIND = "BindReadOnlyPaths="
PROC_DEVICES = {
    "driver 580": "195 nvidia\n195 nvidiactl\n238 nvidia-uvm\n239 nvidia-nvswitch\n240 nvidia-nvlink\n"
                  "241 nvidia-caps\n242 nvidia-caps-imex-channels\n",
    "older naming": "195 nvidia-frontend\n236 nvidia-nvlink\n237 nvidia-caps\n511 nvidia-uvm\n",
}
"""NVIDIA character devices of /proc/devices: as recorded on an H200 node with driver 580 (with two
majors rbee does not need: NVSwitch fabric and IMEX channels), and a listing written in the older
drivers' name for major 195."""
GPU_MAJORS = {"driver 580": {195, 238, 241}, "older naming": {195, 237, 511}}
"""The majors of /dev/nvidiactl, /dev/nvidia0…, /dev/nvidia-uvm(-tools) and /dev/nvidia-caps/* there."""
ROLE = Path(__file__).resolve().parents[1] / "ansible" / "roles" / "rbee_node"


def settings(**changes: object) -> UnitSettings:
    """User-scope settings with the defaults of a test machine."""
    base = {"user": True, "rbee": Path("/opt/rbee/bin/rbee"), "data_dir": Path("/srv/rbee"),
            "token_dir": Path("/etc/rbee/tokens"), "worker_env_dir": Path("/etc/rbee/workers")}
    return UnitSettings(**{**base, **changes})


@pytest.mark.parametrize(("unit", "hidden"), [
    ({}, ()),
    ({"PrivateTmp": "yes"}, PRIVATE_TMP),
    ({"PrivateTmp": "true"}, PRIVATE_TMP),
    ({"PrivateTmp": "no"}, ()),
    ({"DynamicUser": "yes"}, PRIVATE_TMP),
    ({"ProtectHome": "yes"}, HOMES),
    ({"ProtectHome": "tmpfs"}, HOMES),
    ({"ProtectHome": "read-only"}, ()),
    ({"PrivateTmp": "on", "ProtectHome": "1"}, PRIVATE_TMP + HOMES),
])
def test_hidden_roots_follow_private_tmp_and_protect_home(unit: dict[str, str],
                                                          hidden: tuple[Path, ...]) -> None:
    assert hidden_roots(unit) == hidden


def test_directives_skip_comments_and_keep_the_last_value() -> None:
    text = "[Service]\n# PrivateTmp=no\n; ProtectHome=yes\nPrivateTmp=no\nPrivateTmp=yes\nExecStart=/x a=b\n"
    assert directives(text) == {"PrivateTmp": "yes", "ExecStart": "/x a=b"}


def test_only_hidden_install_folders_are_bound_and_nested_ones_once() -> None:
    paths = [Path("/tmp/ci/.venv"), Path("/tmp/ci"), Path("/var/tmp/py"), Path("/tmpfs/rbee"),
             Path("/usr"), Path("/root/.pyenv/versions/3.11.7")]
    assert read_only_binds(paths, {"PrivateTmp": "yes", "ProtectHome": "read-only"}) == [
        Path("/tmp/ci"), Path("/var/tmp/py")]
    assert read_only_binds(paths, {"ProtectHome": "yes"}) == [Path("/root/.pyenv/versions/3.11.7")]
    assert read_only_binds(paths, {}) == []


def test_every_unit_binds_an_install_under_tmp_read_only() -> None:
    install = (Path("/tmp/rbee-ci/.venv"), Path("/root/.pyenv/versions/3.11.7"), Path("/tmp/rbee-ci/rbee"))
    for name in UNITS:
        text = render_unit(name, settings(rbee=install[0] / "bin" / "rbee", install_paths=install))
        assert [line for line in text.splitlines() if line.startswith(BIND)] == [
            f"{BIND}/tmp/rbee-ci/.venv", f"{BIND}/tmp/rbee-ci/rbee"], name


def test_an_install_the_sandbox_leaves_visible_gets_no_bind() -> None:
    for name in UNITS:
        text = render_unit(name, settings(install_paths=(Path("/opt/rbee"), Path("/usr"))))
        assert BIND not in text and "\x00" not in text, name


def test_a_hidden_install_folder_systemd_would_misread_is_refused() -> None:
    with pytest.raises(DeployError) as refused:
        render_unit(UNITS[0], settings(install_paths=(Path("/tmp/my venv"),)))
    assert refused.value.code == "UNSAFE_PATH" and "/tmp/my venv" in refused.value.message


def test_the_running_rbee_reports_its_virtualenv_import_path_and_package() -> None:
    found = install_paths(Path(sys.prefix) / "bin" / "rbee")
    assert Path(sys.prefix) in found and Path(sys.base_prefix) in found
    assert Path(sysconfig.get_path("purelib")) in found
    assert Path(rbee.__file__).parent in found


def test_a_program_that_is_no_python_script_stands_for_itself(tmp_path: Path) -> None:
    program = tmp_path / "rbee"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    assert set(install_paths(program)) == {program, program.resolve()}
    assert install_paths(tmp_path / "missing") == ()


def test_a_python_without_rbee_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "rbee"
    script.write_text(f"#!{sys._base_executable}\n")
    script.chmod(0o755)
    with pytest.raises(DeployError) as refused:
        install_paths(script)
    assert refused.value.code == "RBEE_NOT_RUNNABLE" and "cannot import rbee" in refused.value.message


@pytest.mark.parametrize(("change", "code", "cli", "role"), [
    ({"host": "a b"}, "INVALID_HOST", "--host", "rbee_host"),
    ({"data_dir": Path("/srv/my data")}, "UNSAFE_PATH", "--data-dir", "rbee_data_dir"),
    ({"hive_port": 8080}, "INVALID_PORT", "queen, hive and first worker ports", "rbee_queen_port"),
    ({"watchdog_s": 0.5}, "INVALID_WATCHDOG", "--watchdog-sec", "rbee_watchdog_sec"),
    ({"environment": {"RBEE_NO_SUCH": "1"}}, "INVALID_TUNABLE", "RBEE_* environment", "rbee_tunables"),
    ({"environment": {"RBEE_DRAIN_BUDGET_S": "x"}}, "INVALID_TUNABLE", "RBEE_* environment", "rbee_tunables"),
    ({"user": False}, "INVALID_DATA_DIR", "--data-dir", "rbee_data_dir"),
])
def test_value_checks_name_the_setting_as_each_caller_does(change: dict[str, object], code: str, cli: str,
                                                           role: str) -> None:
    names = SettingNames(data_dir="rbee_data_dir", host="rbee_host", watchdog="rbee_watchdog_sec",
                         ports="rbee_queen_port, rbee_hive_port and rbee_worker_port_start",
                         environment="rbee_tunables")
    for given, expected in ((SettingNames(), cli), (names, role)):
        with pytest.raises(DeployError) as refused:
            check_values(settings(**change), given)
        assert refused.value.code == code and expected in refused.value.message, refused.value.message


def _device_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("Device", "PrivateDevices="))]


def _allowed_majors(text: str, proc_devices: str) -> set[int]:
    """The majors a unit's `DeviceAllow=char-GROUP rw` lines open, as systemd matches GROUP
    (a glob) against the names of /proc/devices."""
    groups = [line.split("=", 1)[1].split()[0].removeprefix("char-") for line in text.splitlines()
              if line.startswith("DeviceAllow=char-") and line.endswith(" rw")]
    return {int(major) for major, name in (row.split() for row in proc_devices.splitlines())
            if any(fnmatch.fnmatchcase(name, group) for group in groups)}


@pytest.mark.parametrize("driver", sorted(PROC_DEVICES))
def test_system_units_running_workers_open_exactly_the_nvidia_gpus_and_the_queen_none(driver: str) -> None:
    system = settings(user=False, data_dir=Path("/var/lib/rbee"))
    for name in (HIVE_UNIT, WORKER_UNIT):
        text = render_unit(name, system)
        assert "DevicePolicy=closed" in text and "PrivateDevices=yes" not in text, name
        assert _allowed_majors(text, PROC_DEVICES[driver]) == GPU_MAJORS[driver], name
    assert _device_lines(render_unit(QUEEN_UNIT, system)) == ["PrivateDevices=yes"]


def test_user_units_set_no_device_policy() -> None:
    for name in UNITS:
        assert _device_lines(render_unit(name, settings())) == [], name


def _ansible_filter() -> ModuleType:
    """The role's filter plugin, loaded as Ansible loads it: from its file."""
    path = ROLE / "filter_plugins" / "rbee_units.py"
    spec = importlib.util.spec_from_file_location("rbee_units_filter", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _role_settings(**changes: object) -> dict[str, object]:
    """`rbee_unit_settings` as vars/main.yml gives it to the filter (strings, as Jinja renders them)."""
    return {"scope": "user", "rbee": "/tmp/node/venv/bin/rbee", "install_dir": "/tmp/node/venv",
            "data_dir": "/srv/rbee", "token_dir": "/etc/rbee/tokens", "config_dir": "/etc/rbee",
            "host": "127.0.0.1", "queen_port": "8080", "hive_port": "9200", "worker_port_start": "8081",
            "watchdog_s": "30", "log_dir": "", "environment": {}, **changes}


def test_the_ansible_filter_binds_the_nodes_virtualenv_like_the_command() -> None:
    units = _ansible_filter().rbee_units(_role_settings())
    assert sorted(units) == sorted(UNITS)
    for text in units.values():
        assert [line for line in text.splitlines() if line.startswith(BIND)] == [f"{BIND}/tmp/node/venv"]


def test_the_ansible_filters_system_units_open_the_gpus_like_the_commands() -> None:
    role = _role_settings(scope="system", data_dir="/var/lib/rbee")
    units = _ansible_filter().rbee_units(role)
    system = settings(user=False, data_dir=Path("/var/lib/rbee"))
    for name in UNITS:
        assert _device_lines(units[name]) == _device_lines(render_unit(name, system)), name
    assert "DevicePolicy=closed" in units[HIVE_UNIT]


@pytest.mark.parametrize(("change", "message"), [
    ({"host": "a b"}, "INVALID_HOST: rbee_host must be"),
    ({"watchdog_s": "0"}, "INVALID_WATCHDOG: rbee_watchdog_sec must be"),
    ({"data_dir": "srv/rbee"}, "UNSAFE_PATH: rbee_data_dir must be"),
    ({"environment": {"RBEE_NO_SUCH": 1}}, "INVALID_TUNABLE: rbee_tunables: RBEE_NO_SUCH"),
])
def test_the_ansible_filter_refuses_with_rbees_checks_naming_its_variables(change: dict[str, object],
                                                                           message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        _ansible_filter().rbee_units(_role_settings(**change))
