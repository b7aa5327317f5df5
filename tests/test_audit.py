"""The tamper-evident audit log: writing, rotation, restart, tamper detection, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rbee.common.audit import TORN_TAIL_EVENT, AuditError, AuditLog, prompt_digest
from rbee.common.audit_records import GENESIS, record_hash
from rbee.common.audit_verify import verify

ROOT = Path(__file__).resolve().parent.parent


def _write(directory: Path, count: int, max_bytes: int = 10_000_000) -> list[dict]:
    log = AuditLog(directory, max_bytes=max_bytes, fsync=False)
    try:
        return [log.append("test.event", n=n, client="token:abc123") for n in range(count)]
    finally:
        log.close()


def _segment(directory: Path, number: int) -> Path:
    return directory / f"audit-{number:06d}.jsonl"


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rbee", "audit", "verify", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_the_chain_verifies_intact_after_many_appends(tmp_path):
    records = _write(tmp_path / "audit", 500)
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.records, verdict.files, verdict.first_bad, verdict.warning) == \
        (True, 500, 1, None, None)
    assert [r["seq"] for r in records] == list(range(1, 501))
    assert records[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in zip(records, records[1:], strict=False))


def test_appends_from_many_threads_keep_one_unbroken_chain(tmp_path):
    log = AuditLog(tmp_path, max_bytes=5_000, fsync=False)
    threads = [threading.Thread(target=lambda: [log.append("t", n=n) for n in range(100)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    verdict = verify(tmp_path)
    assert (verdict.ok, verdict.records) == (True, 800)


def test_each_line_is_the_returned_record_with_an_rfc3339_millisecond_utc_timestamp(tmp_path):
    records = _write(tmp_path / "audit", 3)
    on_disk = [json.loads(line) for line in _lines(_segment(tmp_path / "audit", 1))]
    assert on_disk == records
    assert len(records[0]["ts"]) == len("2026-01-01T00:00:00.000Z") and records[0]["ts"].endswith("Z")


def test_segments_are_created_0600_inside_a_0700_directory(tmp_path):
    _write(tmp_path / "audit", 1)
    assert stat.S_IMODE((tmp_path / "audit").stat().st_mode) == 0o700
    assert stat.S_IMODE(_segment(tmp_path / "audit", 1).stat().st_mode) == 0o600


def test_an_existing_segment_with_a_lax_mode_is_tightened_to_0600(tmp_path):
    _write(tmp_path / "audit", 1)
    _segment(tmp_path / "audit", 1).chmod(0o644)
    _write(tmp_path / "audit", 1)
    assert stat.S_IMODE(_segment(tmp_path / "audit", 1).stat().st_mode) == 0o600


def test_rotation_by_size_keeps_one_chain_across_segments(tmp_path):
    _write(tmp_path / "audit", 60, max_bytes=1_000)
    names = sorted(p.name for p in (tmp_path / "audit").iterdir())
    assert len(names) > 3 and names[:2] == ["audit-000001.jsonl", "audit-000002.jsonl"]
    assert all(p.stat().st_size < 1_000 + 300 for p in (tmp_path / "audit").iterdir())
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.records, verdict.files) == (True, 60, len(names))


def test_a_restarted_log_continues_seq_and_prev(tmp_path):
    first = _write(tmp_path / "audit", 3)
    second = _write(tmp_path / "audit", 2)
    assert [r["seq"] for r in second] == [4, 5]
    assert second[0]["prev"] == first[-1]["hash"]
    assert verify(tmp_path / "audit").records == 5


def test_a_restart_after_rotation_continues_in_the_newest_segment(tmp_path):
    _write(tmp_path / "audit", 30, max_bytes=1_000)
    files_before = len(list((tmp_path / "audit").iterdir()))
    _write(tmp_path / "audit", 30, max_bytes=1_000)
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.records) == (True, 60)
    assert verdict.files > files_before


def test_an_edited_record_is_named_as_the_first_bad_one(tmp_path):
    _write(tmp_path / "audit", 10)
    segment = _segment(tmp_path / "audit", 1)
    lines = _lines(segment)
    lines[6] = lines[6].replace(b'"n":6', b'"n":7')
    segment.write_bytes(b"".join(lines))
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.first_bad, verdict.records) == (False, "audit-000001.jsonl line 7", 6)
    assert verdict.reason.startswith("hash mismatch")


def test_an_edited_record_with_a_recomputed_hash_breaks_the_chain_at_the_next_record(tmp_path):
    _write(tmp_path / "audit", 10)
    segment = _segment(tmp_path / "audit", 1)
    lines = _lines(segment)
    forged = json.loads(lines[4])
    forged["client"] = "token:ffffff"
    forged["hash"] = record_hash(forged)
    lines[4] = json.dumps(forged).encode() + b"\n"
    segment.write_bytes(b"".join(lines))
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.first_bad) == (False, "audit-000001.jsonl line 6")
    assert verdict.reason == "chain broken: prev does not match"


def test_a_deleted_middle_record_is_detected(tmp_path):
    _write(tmp_path / "audit", 10)
    segment = _segment(tmp_path / "audit", 1)
    lines = _lines(segment)
    del lines[4]
    segment.write_bytes(b"".join(lines))
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.first_bad) == (False, "audit-000001.jsonl line 5")
    assert verdict.reason.startswith("chain broken") and "1 record missing" in verdict.reason


def test_swapped_records_are_detected(tmp_path):
    _write(tmp_path / "audit", 10)
    segment = _segment(tmp_path / "audit", 1)
    lines = _lines(segment)
    lines[3], lines[4] = lines[4], lines[3]
    segment.write_bytes(b"".join(lines))
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.first_bad) == (False, "audit-000001.jsonl line 4")
    assert verdict.reason.startswith("chain broken")


def test_a_line_that_is_not_json_is_named(tmp_path):
    _write(tmp_path / "audit", 5)
    segment = _segment(tmp_path / "audit", 1)
    lines = _lines(segment)
    lines[1] = b"garbage\n"
    segment.write_bytes(b"".join(lines))
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.first_bad, verdict.reason) == (False, "audit-000001.jsonl line 2", "not JSON")


def test_a_deleted_middle_segment_is_detected_and_named(tmp_path):
    _write(tmp_path / "audit", 60, max_bytes=1_000)
    _segment(tmp_path / "audit", 2).unlink()
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.first_bad) == (False, "audit-000003.jsonl line 1")
    assert "audit-000002.jsonl is missing" in verdict.reason


def test_a_deleted_first_segment_is_detected(tmp_path):
    _write(tmp_path / "audit", 60, max_bytes=1_000)
    _segment(tmp_path / "audit", 1).unlink()
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.first_bad) == (False, "audit-000002.jsonl line 1")


def test_swapped_segment_files_are_detected(tmp_path):
    _write(tmp_path / "audit", 60, max_bytes=1_000)
    two, three = _segment(tmp_path / "audit", 2), _segment(tmp_path / "audit", 3)
    content = two.read_bytes()
    two.write_bytes(three.read_bytes())
    three.write_bytes(content)
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.first_bad) == (False, "audit-000002.jsonl line 1")


def test_a_log_cut_in_the_middle_of_a_record_is_detected(tmp_path):
    _write(tmp_path / "audit", 60, max_bytes=1_000)
    segment = _segment(tmp_path / "audit", 2)
    segment.write_bytes(segment.read_bytes()[:-40])
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.reason) == (False, "not JSON")
    assert verdict.first_bad is not None and verdict.first_bad.startswith("audit-000002.jsonl")


def test_an_empty_directory_has_no_audit_records(tmp_path):
    verdict = verify(tmp_path)
    assert (verdict.ok, verdict.records, verdict.reason) == (False, 0, "no audit records")


def test_one_segment_file_verifies_on_its_own(tmp_path):
    _write(tmp_path / "audit", 60, max_bytes=1_000)
    assert verify(_segment(tmp_path / "audit", 2)).ok
    assert verify(_segment(tmp_path / "audit", 1)).ok


def test_a_torn_last_line_is_a_warning_not_tampering(tmp_path):
    records = _write(tmp_path / "audit", 5)
    segment = _segment(tmp_path / "audit", 1)
    with segment.open("ab") as handle:
        handle.write(b'{"seq":6,"ts":"2026-')
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.records) == (True, len(records))
    assert verdict.warning is not None and "audit-000001.jsonl" in verdict.warning


def test_a_torn_tail_is_removed_on_the_next_open_and_recorded(tmp_path):
    _write(tmp_path / "audit", 5)
    segment = _segment(tmp_path / "audit", 1)
    intact = segment.read_bytes()
    torn = b'{"seq":6,"ts":"2026-'
    with segment.open("ab") as handle:
        handle.write(torn)
    log = AuditLog(tmp_path / "audit", fsync=False)
    log.close()
    content = segment.read_bytes()
    assert content.startswith(intact)
    record = json.loads(content[len(intact):])
    assert (record["event"], record["bytes"], record["seq"]) == (TORN_TAIL_EVENT, len(torn), 6)
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.records, verdict.warning) == (True, 6, None)


def test_a_whole_last_record_missing_only_its_newline_is_kept(tmp_path):
    _write(tmp_path / "audit", 5)
    segment = _segment(tmp_path / "audit", 1)
    segment.write_bytes(segment.read_bytes()[:-1])
    assert verify(tmp_path / "audit").records == 5
    records = _write(tmp_path / "audit", 1)
    assert records[0]["seq"] == 6
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.records) == (True, 6)


def test_a_newest_segment_holding_only_a_torn_line_continues_the_chain_of_the_previous_one(tmp_path):
    _write(tmp_path / "audit", 30, max_bytes=1_000)
    newest = sorted((tmp_path / "audit").iterdir())[-1]
    number = int(newest.name[6:12])
    _segment(tmp_path / "audit", number + 1).write_bytes(b'{"seq":')
    _write(tmp_path / "audit", 1, max_bytes=1_000)
    verdict = verify(tmp_path / "audit")
    assert (verdict.ok, verdict.records, verdict.warning) == (True, 32, None)


@pytest.mark.parametrize("name", ["token", "Authorization", "api_key", "apiKey", "password", "client_secret",
                                  "prompt", "system_prompt", "messages", "access_token"])
def test_secret_and_prompt_field_names_are_refused(tmp_path, name):
    log = AuditLog(tmp_path, fsync=False)
    with pytest.raises(ValueError, match="looks like a secret or a prompt"):
        log.append("x", **{name: "value"})
    log.close()


def test_secret_names_nested_inside_a_value_are_refused(tmp_path):
    log = AuditLog(tmp_path, fsync=False)
    with pytest.raises(ValueError, match="request.messages"):
        log.append("x", request={"model": "m", "messages": [{"role": "user"}]})
    log.close()


def test_fingerprints_digests_and_token_counts_are_allowed(tmp_path):
    log = AuditLog(tmp_path, fsync=False)
    record = log.append("x", token_fingerprint="abc123", prompt_sha256="00", prompt_digest="sha256:00",
                        max_tokens=16, prompt_tokens=5)
    log.close()
    assert record["token_fingerprint"] == "abc123" and record["prompt_tokens"] == 5


def test_a_token_count_name_with_a_non_integer_value_is_refused(tmp_path):
    log = AuditLog(tmp_path, fsync=False)
    with pytest.raises(ValueError, match="looks like a secret or a prompt"):
        log.append("x", prompt_tokens=[1, 2, 3])
    log.close()


def test_a_refused_append_writes_nothing_and_uses_no_sequence_number(tmp_path):
    log = AuditLog(tmp_path, fsync=False)
    for bad in ({"password": "x"}, {"when": object()}, {"seq": 5}, {"ratio": float("nan")}):
        with pytest.raises(ValueError):
            log.append("x", **bad)
    record = log.append("x")
    log.close()
    assert record["seq"] == 1 and verify(tmp_path).records == 1


def test_prompt_digest_is_sha256_of_the_utf8_text():
    digest = prompt_digest("héllo")
    assert digest == "sha256:" + hashlib.sha256("héllo".encode()).hexdigest()
    assert len(digest) == len("sha256:") + 64


def test_a_second_writer_on_the_same_directory_is_refused(tmp_path):
    log = AuditLog(tmp_path, fsync=False)
    with pytest.raises(AuditError, match="another audit log writer"):
        AuditLog(tmp_path, fsync=False)
    log.close()
    AuditLog(tmp_path, fsync=False).close()


def test_appending_to_a_closed_log_is_refused(tmp_path):
    log = AuditLog(tmp_path, fsync=False)
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.append("x")


def test_opening_a_log_whose_newest_record_is_damaged_is_refused(tmp_path):
    _write(tmp_path, 3)
    segment = _segment(tmp_path, 1)
    segment.write_bytes(segment.read_bytes().replace(b'"n":2', b'"n":9'))
    with pytest.raises(AuditError, match="damaged"):
        AuditLog(tmp_path, fsync=False)


def test_the_cli_reports_an_intact_log_and_exits_0(tmp_path):
    _write(tmp_path / "audit", 40, max_bytes=1_000)
    files = len(list((tmp_path / "audit").iterdir()))
    result = _cli(str(tmp_path / "audit"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"audit log intact: 40 records in {files} files\n"


def test_the_cli_names_the_first_bad_record_and_exits_1(tmp_path):
    _write(tmp_path / "audit", 10)
    segment = _segment(tmp_path / "audit", 1)
    segment.write_bytes(segment.read_bytes().replace(b'"n":3', b'"n":4', 1))
    result = _cli(str(tmp_path / "audit"))
    assert result.returncode == 1
    assert result.stdout.startswith("audit log TAMPERED: first bad record at audit-000001.jsonl line 4: ")


def test_the_cli_prints_a_torn_tail_warning_to_stderr_and_exits_0(tmp_path):
    _write(tmp_path / "audit", 2)
    with _segment(tmp_path / "audit", 1).open("ab") as handle:
        handle.write(b'{"se')
    result = _cli(str(tmp_path / "audit"))
    assert result.returncode == 0
    assert result.stdout == "audit log intact: 2 records in 1 files\n"
    assert "incomplete" in result.stderr


def test_the_cli_refuses_a_missing_path_on_stderr_with_exit_1(tmp_path):
    result = _cli(str(tmp_path / "nowhere"))
    assert (result.returncode, result.stdout) == (1, "")
    assert "no audit log" in result.stderr


def test_the_cli_defaults_to_the_audit_directory_of_the_data_dir(tmp_path):
    _write(tmp_path / "audit", 3)
    result = subprocess.run([sys.executable, "-m", "rbee", "audit", "verify"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60, env={**os.environ, "RBEE_DATA_DIR": str(tmp_path)})
    assert (result.returncode, result.stdout) == (0, "audit log intact: 3 records in 1 files\n")


_APPEND_FOREVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from rbee.common.audit import AuditLog

    log = AuditLog(Path(sys.argv[1]), max_bytes=20_000, fsync=False)
    n = 0
    while True:
        log.append("load.test", n=n, note="x" * (n % 50))
        n += 1
""")


def test_a_writer_killed_with_sigkill_mid_loop_leaves_a_log_that_verifies(tmp_path):
    directory = tmp_path / "audit"
    child = subprocess.Popen([sys.executable, "-c", _APPEND_FOREVER, str(directory)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not (_segment(directory, 1).exists() and _segment(directory, 1).stat().st_size):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.01)
        time.sleep(0.3)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    verdict = verify(directory)
    assert verdict.ok and verdict.records > 0, verdict
    reopened = AuditLog(directory, max_bytes=20_000, fsync=False)
    record = reopened.append("after.restart")
    reopened.close()
    after = verify(directory)
    assert (after.ok, after.records, after.warning) == (True, record["seq"], None)
