"""Token sources and checks: files, systemd credentials, the environment; keyring and header parsing."""

from __future__ import annotations

import logging
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rbee.common.auth import Keyring, check_bind_policy, is_loopback, presented_token
from rbee.common.errors import ApiError
from rbee.common.secrets import (
    SecretError,
    fingerprint,
    generate_token,
    load_token,
    read_token_file,
    write_token_file,
)

TOKEN = "abcdefghijklmnop0123456789"


def test_a_written_token_file_is_owner_only_and_reads_back(tmp_path):
    path = tmp_path / "secrets" / "queen.token"
    write_token_file(path, TOKEN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_token_file(path) == TOKEN


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_file_readable_by_group_or_others_is_refused_naming_mode_and_fix(tmp_path, mode):
    path = tmp_path / "t"
    path.write_text(TOKEN)
    path.chmod(mode)
    with pytest.raises(SecretError) as caught:
        read_token_file(path)
    assert f"mode {mode:04o}" in str(caught.value) and "chmod 600" in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "hint"),
    [("", "is empty"), ("  \n\t\n", "is empty"), (f"{TOKEN}\n{TOKEN}\n", "exactly one line"),
     ("short\n", "16 to 256"), ("has space in it 0123456789\n", "may only use")],
)
def test_unusable_file_contents_are_refused_without_echoing_them(tmp_path, content, hint):
    path = tmp_path / "t"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(SecretError) as caught:
        read_token_file(path)
    assert hint in str(caught.value)
    for line in content.split():
        assert line not in str(caught.value).replace(str(path), "")


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(SecretError, match="does not exist"):
        read_token_file(tmp_path / "absent")


def test_a_flag_file_wins_over_credentials_and_environment(tmp_path):
    write_token_file(tmp_path / "flag", TOKEN)
    write_token_file(tmp_path / "creds" / "queen-token", "credential-token-0123456789")
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds"), "RBEE_QUEEN_TOKEN": "env-token-0123456789"}
    assert load_token("queen", tmp_path / "flag", environ).value == TOKEN
    assert load_token("queen", None, environ).value == "credential-token-0123456789"
    assert load_token("queen", None, {"RBEE_QUEEN_TOKEN": "env-token-0123456789"}).source == (
        "environment variable RBEE_QUEEN_TOKEN"
    )
    assert load_token("queen", None, {}) is None


def test_a_token_from_the_environment_is_accepted_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        load_token("hive", None, {"RBEE_HIVE_TOKEN": TOKEN})
    assert "RBEE_HIVE_TOKEN" in caplog.text and TOKEN not in caplog.text


def test_fingerprints_are_six_hex_characters_and_differ_between_tokens():
    assert len(fingerprint(TOKEN)) == 6 and int(fingerprint(TOKEN), 16) >= 0
    assert fingerprint(generate_token()) != fingerprint(generate_token())


def test_a_keyring_compares_tokens_and_builds_headers(tmp_path):
    write_token_file(tmp_path / "q", TOKEN)
    keyring = Keyring("queen", {"queen": tmp_path / "q", "hive": None})
    keyring.load()
    assert keyring.matches(TOKEN) and not keyring.matches(TOKEN + "x")
    assert keyring.headers_for("queen") == {"Authorization": f"Bearer {TOKEN}"}
    assert keyring.headers_for("hive") == {}
    assert keyring.child_args("hive", ("queen", "hive")) == ["--queen-token-file", str(tmp_path / "q")]
    assert TOKEN not in keyring.describe()


def test_a_failed_reload_keeps_the_previous_tokens(tmp_path):
    write_token_file(tmp_path / "q", TOKEN)
    keyring = Keyring("queen", {"queen": tmp_path / "q"})
    keyring.load()
    (tmp_path / "q").chmod(0o644)
    assert keyring.reload() is False
    assert keyring.matches(TOKEN)


def test_a_public_bind_without_a_token_is_refused_and_loopback_is_dev_mode():
    keyring = Keyring("hive", {"hive": None})
    keyring.load()
    with pytest.raises(SecretError, match="refuses to listen on 0.0.0.0"):
        check_bind_policy(keyring, "0.0.0.0", "hive")
    check_bind_policy(keyring, "127.0.0.1", "hive")
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.1")


@pytest.mark.parametrize(
    "header", [f"bearer {TOKEN}", f"Bearer  {TOKEN}", f"Bearer{TOKEN}", f"Basic {TOKEN}", TOKEN,
               f"Bearer {TOKEN} ", f"Bearer {'a' * 600}", "Bearer ", f"Bearer {TOKEN}\x01"],
)
def test_malformed_authorization_headers_are_invalid(header):
    with pytest.raises(ApiError) as caught:
        presented_token(header)
    assert caught.value.code == "INVALID_API_KEY" and caught.value.status == 401


def test_a_missing_authorization_header_is_missing_api_key():
    with pytest.raises(ApiError) as caught:
        presented_token(None)
    assert caught.value.code == "MISSING_API_KEY"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_no_header_other_than_exact_bearer_syntax_yields_a_token(header):
    try:
        token = presented_token(header)
    except ApiError:
        return
    assert header == f"Bearer {token}"
