"""Steps about structured errors, the OpenAPI document, rate limits, the audit log, validation."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from behave import given, then, when

from rbee.queen.api.routes import add_routes as add_queen_routes
from rbee.testing.cluster import wait_until
from rbee.testing.http_client import request
from rbee.testing.tcp_relay import TcpRelay
from steps.auth_steps import _bearer, _daemon_url, _registered, queen_with_tokens
from steps.cli_steps import _run
from steps.common import tiny_ref

SCHEMATHESIS_CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)
PROMPT = "Hello"


@when("I post an inference request straight to the worker")
def post_to_worker(context) -> None:
    context.answer = request("POST", f"{context.worker_url}/v1/inference", {"prompt": "Hi", "max_tokens": 2})


@when('I post an inference request with the prompt "{prompt}" straight to the worker')
def post_prompt_to_worker(context, prompt: str) -> None:
    body = {"prompt": json.loads(f'"{prompt}"'), "max_tokens": 2}
    context.answer = request("POST", f"{context.worker_url}/v1/inference", body)


@then("the answer shows no traceback")
def no_traceback(context) -> None:
    assert b"Traceback" not in context.answer.body and b'File "' not in context.answer.body


@then("the worker's log has the traceback under that correlation id")
def traceback_logged(context) -> None:
    cid = context.answer.json()["error"]["correlation_id"]
    log = context.worker.log_path.read_text()
    assert f"correlation_id={cid}" in log and "Traceback" in log, log[-2000:]


@then("the worker still answers its health check")
def worker_healthy(context) -> None:
    assert request("GET", f"{context.worker_url}/health").status == 200


@when("I post 2 MiB to {path} on the {daemon} with its token")
def post_huge(context, path: str, daemon: str) -> None:
    raw = json.dumps({"prompt": "x" * (2 * 1024 * 1024)}).encode()
    url = f"{_daemon_url(context, daemon)}{path}"
    context.answer = request("POST", url, raw=raw, headers=_bearer(context.tokens[daemon]))


@then("GET /openapi.json on the queen lists every route the queen registers")
def openapi_lists_routes(context) -> None:
    answer = request("GET", f"{context.queen_url}/openapi.json", headers=_bearer(context.tokens["queen"]))
    assert answer.status == 200, answer.body
    paths = answer.json()["paths"]
    for method, path in _registered(add_queen_routes):
        template = path.replace("t-1", "{task_id}")
        assert method.lower() in paths.get(template, {}), (method, template)


@when("schemathesis runs against the queen's /openapi.json with the queen's token")
def run_schemathesis(context) -> None:
    junit = context.workdir / "schemathesis.xml"
    context.result = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", f"{context.queen_url}/openapi.json",
         "--checks", SCHEMATHESIS_CHECKS, "--max-examples", "25", "--generation-deterministic",
         "--request-timeout", "30", "--header", f"Authorization: Bearer {context.tokens['queen']}",
         "--report", "junit", "--report-junit-path", str(junit), "--no-color"],
        capture_output=True, text=True, timeout=600, check=False,
    )


@then("schemathesis reports no failure and ran at least {count:d} cases")
def schemathesis_passed(context, count: int) -> None:
    output = context.result.stdout + context.result.stderr
    assert context.result.returncode == 0, output[-4000:]
    cases = sum(int(n) for n in re.findall(r"(\d+) generated", output))
    print(f"schemathesis: {cases} test cases generated")
    print("\n".join(line for line in output.splitlines() if "generated" in line or "passed" in line))
    assert cases >= count, output[-4000:]


@when("I call GET {path} on the queen {times:d} times with the queen's token")
def call_repeatedly(context, path: str, times: int) -> None:
    headers = _bearer(context.tokens["queen"])
    context.answers = [request("GET", f"{context.queen_url}{path}", headers=headers) for _ in range(times)]


@when('I call GET {path} on the queen with the token "{token}" {times:d} times')
def call_wrong_repeatedly(context, path: str, token: str, times: int) -> None:
    url = f"{context.queen_url}{path}"
    context.answers = [request("GET", url, headers=_bearer(token)) for _ in range(times)]
    assert all(answer.status == 401 for answer in context.answers), [a.status for a in context.answers]


@then('the first {ok:d} answers are 200 and the rest 429 "{code}" with a Retry-After of at least 1 second')
def answers_then_limited(context, ok: int, code: str) -> None:
    statuses = [answer.status for answer in context.answers]
    assert statuses == [200] * ok + [429] * (len(statuses) - ok), statuses
    for answer in context.answers[ok:]:
        assert answer.json()["error"]["code"] == code
        assert int(answer.headers["Retry-After"]) >= 1, answer.headers


def _audit_dir(context, daemon: str) -> Path:
    return context.workdir / "data" / ("audit" if daemon == "queen" else "hive/audit")


def _audit_records(context, daemon: str) -> list[dict]:
    records = []
    for path in sorted(_audit_dir(context, daemon).glob("audit-*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


@then('the {daemon}\'s audit log has a "{event}" record')
def has_audit_record(context, daemon: str, event: str) -> None:
    def recorded() -> bool:
        return any(r["event"] == event for r in _audit_records(context, daemon))

    assert wait_until(recorded, 5, 0.1), [r["event"] for r in _audit_records(context, daemon)]


@then('the {daemon}\'s audit log has records "{events}"')
def has_audit_records(context, daemon: str, events: str) -> None:
    seen = {r["event"] for r in _audit_records(context, daemon)}
    missing = [e.strip() for e in events.split(",") if e.strip() not in seen]
    assert not missing, (missing, sorted(seen))


@when("the queen is stopped with SIGTERM")
def stop_queen(context) -> None:
    context.orphans.extend(context.queen.stop())


@when("the queen is started again with the same tokens and data")
def restart_queen(context) -> None:
    queen_with_tokens(context)


def _verify(context, daemon: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rbee", "audit", "verify", str(_audit_dir(context, daemon))],
        capture_output=True, text=True, timeout=60, check=False,
    )


@then("`rbee audit verify` on the {daemon}'s audit log exits 0")
def verify_ok(context, daemon: str) -> None:
    result = _verify(context, daemon)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "audit log intact" in result.stdout, result.stdout


@then("`rbee audit verify` on the {daemon}'s audit log exits 1 naming line {line:d}")
def verify_tampered(context, daemon: str, line: int) -> None:
    result = _verify(context, daemon)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"audit-000001.jsonl line {line}" in result.stdout, result.stdout


@then("the audit task records hold the prompt's SHA-256 and never its text or a token")
def prompt_hashed(context) -> None:
    digest = "sha256:" + hashlib.sha256(PROMPT.encode()).hexdigest()
    submitted = [r for r in _audit_records(context, "queen") if r["event"] == "task.submitted"]
    assert submitted and all(r["prompt_sha256"] == digest for r in submitted), submitted
    for daemon in ("queen", "hive"):
        for path in _audit_dir(context, daemon).glob("audit-*.jsonl"):
            text = path.read_text()
            assert f'"{PROMPT}"' not in text, path
            for token in context.tokens.values():
                assert token not in text, path


@then("the audit embedding records hold the inputs' SHA-256 and never their text")
def embedding_inputs_hashed(context) -> None:
    digest = "sha256:" + hashlib.sha256(json.dumps([context.embedded_text]).encode()).hexdigest()
    records = [r for r in _audit_records(context, "queen") if r["event"].startswith("embedding.")]
    submitted = [r for r in records if r["event"] == "embedding.submitted"]
    assert submitted and all(r["input_sha256"] == digest and r["inputs"] == 1 for r in submitted), records
    completed = [r for r in records if r["event"] == "embedding.completed"]
    assert completed and completed[0]["prompt_tokens"] > 0, records
    for path in _audit_dir(context, "queen").glob("audit-*.jsonl"):
        assert context.embedded_text not in path.read_text(), path


@then("every audit file is mode 0600")
def audit_modes(context) -> None:
    files = [*_audit_dir(context, "queen").glob("*.jsonl"), *_audit_dir(context, "hive").glob("*.jsonl")]
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))


@when("the queen's audit log is tampered with: {how}")
def tamper(context, how: str) -> None:
    path = _audit_dir(context, "queen") / "audit-000001.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) >= 4, lines
    if how == "edited":
        lines[1] = lines[1].replace('"event":"', '"event":"x', 1)
    elif how == "reordered":
        lines[1], lines[2] = lines[2], lines[1]
    elif how == "truncated in the middle":
        del lines[1]
    path.write_text("".join(lines))


@then("the queen's audit log spans more than {count:d} file")
def audit_files(context, count: int) -> None:
    files = list(_audit_dir(context, "queen").glob("audit-*.jsonl"))
    assert len(files) > count, files


@when("I post a native task with {field} set to {value}")
def post_bad_field(context, field: str, value: str) -> None:
    body = {"model": tiny_ref(context), "prompt": "Hi", "max_tokens": 4, field: json.loads(value)}
    context.bad_value = json.loads(value)
    context.answer = request("POST", f"{context.queen_url}/v2/tasks", body)


@when("I post a native task with a prompt of {n:d} characters")
def post_long_prompt(context, n: int) -> None:
    body = {"model": tiny_ref(context), "prompt": "x" * n, "max_tokens": 4}
    context.answer = request("POST", f"{context.queen_url}/v2/tasks", body)


@when("I post a spawn with {field} set to {value} to the hive")
def post_bad_spawn(context, field: str, value: str) -> None:
    body = {"model": tiny_ref(context), "slots": 1, field: json.loads(value)}
    context.bad_value = json.loads(value)
    context.answer = request("POST", f"{context.hive_url}/v1/workers/spawn", body)


@then('the error names the field "{field}" and does not echo {value}')
def error_names_field(context, field: str, value: str) -> None:
    error = context.answer.json()["error"]
    assert f"'{field}'" in error["message"], error
    assert not _echoes(context.answer.body.decode(), context.bad_value), context.answer.body


def _echoes(text: str, value: object) -> bool:
    """Whether `text` holds `value`: a number as a token of its own, a string anywhere (raw or escaped)."""
    if isinstance(value, str):
        return value in text or json.dumps(value)[1:-1] in text
    return re.search(rf"(?<![\w.-]){re.escape(json.dumps(value))}(?![\w.])", text) is not None


@given("a relay in front of the queen that counts the connections it is sent")
def queen_relay(context) -> None:
    context.relay = TcpRelay(urlsplit(context.queen_url).port)
    context.add_cleanup(context.relay.close)


@when('I run rbee infer for model "{model}" through the relay')
def infer_through_relay(context, model: str) -> None:
    _run(context, "--queen", context.relay.url, "--model", model, "--prompt", "Hi")


@then("the relay was sent no connection")
def relay_untouched(context) -> None:
    assert context.relay.connections == 0, context.relay.connections


@then("the relay was sent a connection")
def relay_used(context) -> None:
    assert context.relay.connections > 0, (context.result.returncode, context.result.stderr)


@then('its error output does not contain "{text}"')
def stderr_without(context, text: str) -> None:
    assert text not in context.result.stderr, context.result.stderr
    assert context.result.stderr.strip(), "no error message"
