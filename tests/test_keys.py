"""The queen's key store and per-key limits, without a daemon."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from rbee.cli.keys import expiry
from rbee.common.errors import ApiError
from rbee.queen.keys.limits import KeyLimiter
from rbee.queen.keys.node_keys import check_reporter, node_key_name
from rbee.queen.keys.store import ApiKey, KeyLimits, KeyStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _key(**limits: int) -> ApiKey:
    return ApiKey("k", "abcdef", frozenset({"inference"}), limits=KeyLimits(**limits))


def test_a_created_key_is_found_by_its_secret_and_only_its_hash_is_on_disk(tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite")
    key, secret = store.create("alice", frozenset({"inference"}))
    store.close()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in on_disk
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in on_disk
    reopened = KeyStore(tmp_path / "keys.sqlite")
    assert reopened.find(secret).name == "alice"
    assert reopened.find(secret + "x") is None
    assert (tmp_path / "keys.sqlite").stat().st_mode & 0o077 == 0


def test_a_revoked_key_stays_revoked_after_a_restart_and_its_name_can_be_used_again(tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite")
    _, old = store.create("bob", frozenset({"inference"}))
    store.revoke("bob")
    store.close()
    store = KeyStore(tmp_path / "keys.sqlite")
    assert store.find(old).revoked_at is not None
    _, new = store.create("bob", frozenset({"admin"}))
    assert store.find(old) is None and store.find(new).scopes == {"admin"}


def test_a_live_key_name_cannot_be_taken_twice_and_an_unknown_name_cannot_be_revoked(tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite")
    store.create("carol", frozenset({"inference"}))
    with pytest.raises(ApiError) as taken:
        store.create("carol", frozenset({"inference"}))
    assert (taken.value.status, taken.value.code) == (409, "KEY_EXISTS")
    with pytest.raises(ApiError) as unknown:
        store.revoke("dave")
    assert (unknown.value.status, unknown.value.code) == (404, "KEY_NOT_FOUND")


def test_replacing_a_node_key_revokes_the_old_secret(tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite")
    first = store.replace("node-a", frozenset({"node"}))
    second = store.replace("node-a", frozenset({"node"}))
    assert store.find(first) is None
    assert store.find(second).scopes == {"node"} and store.find(second).revoked_at is None


def test_usage_rows_add_up(tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite")
    store.add_usage([("a", 1, 10, 5, 100.0)])
    store.add_usage([("a", 2, 1, 1, 50.0), ("b", 1, 0, 0, 60.0)])
    assert store.usage() == {"a": (3, 11, 6, 100.0), "b": (1, 0, 0, 60.0)}


def test_requests_per_minute_are_counted_over_a_sliding_minute():
    clock = Clock()
    limiter, key = KeyLimiter(clock), _key(rpm=2)
    limiter.admit(key)
    clock.now += 30
    limiter.admit(key)
    with pytest.raises(ApiError) as over:
        limiter.admit(key)
    assert over.value.details["limit"] == "requests per minute"
    assert over.value.headers["Retry-After"] == "30"
    clock.now += 30.5
    limiter.admit(key)


def test_concurrency_counts_requests_until_they_finish():
    limiter, key = KeyLimiter(Clock()), _key(concurrency=1)
    limiter.admit(key)
    with pytest.raises(ApiError) as over:
        limiter.admit(key)
    assert over.value.status == 429 and over.value.details["limit"] == "requests at once"
    limiter.finished(key)
    limiter.admit(key)


def test_tokens_per_minute_refuse_once_the_charged_tokens_reach_the_limit_until_they_age_out():
    clock = Clock()
    limiter, key = KeyLimiter(clock), _key(tokens_per_min=100)
    limiter.admit(key)
    limiter.charge("k", 60)
    clock.now += 10
    limiter.admit(key)
    limiter.charge("k", 50)
    with pytest.raises(ApiError) as over:
        limiter.admit(key)
    assert over.value.details["limit"] == "tokens per minute"
    assert over.value.headers["Retry-After"] == "50"
    clock.now += 50.5
    limiter.admit(key)


def test_a_key_without_limits_is_never_refused():
    limiter, key = KeyLimiter(Clock()), _key()
    for _ in range(1000):
        limiter.admit(key)


def test_expiry_takes_durations_and_iso_times():
    now = datetime(2027, 1, 1, tzinfo=UTC)
    assert expiry("7d", now) == "2027-01-08T00:00:00+00:00"
    assert expiry("90m", now) == "2027-01-01T01:30:00+00:00"
    assert expiry("2027-06-01T12:00:00", now) == "2027-06-01T12:00:00+00:00"


def test_node_key_names_fold_what_key_names_do_not_allow():
    assert node_key_name("GPU Box #1") == "node-gpu-box--1"


def test_a_node_key_reports_only_for_its_own_nodes_hive():
    key = ApiKey("node-gpu1", "abcdef", frozenset({"node"}))
    hives = [("gpu1", "http://10.0.0.5:9200"), ("localhost", "http://127.0.0.1:9200")]
    check_reporter(key, "http://10.0.0.5:9200", hives)
    with pytest.raises(ApiError) as foreign:
        check_reporter(key, "http://127.0.0.1:9200", hives)
    assert (foreign.value.status, foreign.value.code) == (403, "NODE_KEY_MISMATCH")
    check_reporter(ApiKey("node-other", "abcdef", frozenset({"node"})), "http://127.0.0.1:9200", hives)
    check_reporter(ApiKey("bootstrap", "", frozenset({"node", "admin", "inference"})), "http://x:1", hives)
