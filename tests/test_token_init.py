"""`--init-tokens`: only missing token files are created, each 0600 with a fresh token."""

from __future__ import annotations

import stat
from pathlib import Path

from rbee.common.secrets import read_token_file, write_token_file
from rbee.deploy.systemd_units import UnitSettings
from rbee.deploy.token_init import init_missing_tokens


def _settings(tmp_path: Path) -> UnitSettings:
    return UnitSettings(user=True, rbee=Path("/usr/bin/true"), data_dir=tmp_path / "data",
                        token_dir=tmp_path / "tokens", worker_env_dir=tmp_path / "workers")


def test_every_missing_token_file_is_created_owner_only_in_an_owner_only_folder(tmp_path: Path) -> None:
    created = init_missing_tokens(_settings(tmp_path))
    assert sorted(path.name for path in created) == ["hive.token", "queen.token", "worker.token"]
    assert stat.S_IMODE((tmp_path / "tokens").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in created)
    assert len({read_token_file(path) for path in created}) == 3


def test_an_existing_token_file_is_left_untouched(tmp_path: Path) -> None:
    write_token_file(tmp_path / "tokens" / "queen.token", "queen-token-0123456789abcdef")
    created = init_missing_tokens(_settings(tmp_path))
    assert [path.name for path in created] == ["hive.token", "worker.token"]
    assert (tmp_path / "tokens" / "queen.token").read_text() == "queen-token-0123456789abcdef\n"


def test_a_second_run_creates_nothing(tmp_path: Path) -> None:
    init_missing_tokens(_settings(tmp_path))
    assert init_missing_tokens(_settings(tmp_path)) == []
