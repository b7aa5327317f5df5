"""Steps about bearer tokens: authentication, token sources, bind policy, reload."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from aiohttp import web
from behave import given, then, when

from rbee.common.secrets import fingerprint, generate_token, write_token_file
from rbee.hive.api.routes import add_routes as add_hive_routes
from rbee.queen.api.routes import add_routes as add_queen_routes
from rbee.testing.cluster import wait_until
from rbee.testing.http_client import EventStream, request
from rbee.worker.routes import add_routes as add_worker_routes
from steps.cluster_steps import start_queen
from steps.common import TINY_SEED

ROLES = ("queen", "hive", "worker")
TASK = {"model": "", "prompt": "Hello", "max_tokens": 8}
HEALTH_PATHS = {"queen": {"/health"}, "hive": {"/v1/health", "/health"}, "worker": {"/health"}}
"""The only routes of each daemon that answer without a token (DESIGN.md, authentication)."""


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token_path(context, role: str) -> Path:
    return context.workdir / "secrets" / f"{role}.token"


@given("token files for the queen, the hive and the worker")
def token_files(context) -> None:
    context.tokens = getattr(context, "tokens", {})
    context.token_flags = getattr(context, "token_flags", {})
    for role in ROLES:
        if role in context.tokens:
            continue
        context.tokens[role] = generate_token()
        write_token_file(_token_path(context, role), context.tokens[role])
        flag = "--token-file" if role == "queen" else f"--{role}-token-file"
        context.token_flags[flag] = str(_token_path(context, role))


@given("the queen token is a systemd credential")
def queen_token_credential(context) -> None:
    credentials = context.workdir / "credentials"
    context.tokens = {"queen": generate_token()}
    write_token_file(credentials / "queen-token", context.tokens["queen"])
    context.env["CREDENTIALS_DIRECTORY"] = str(credentials)
    token_files(context)
    context.token_flags.pop("--token-file", None)


@given("the queen token is in the environment variable RBEE_QUEEN_TOKEN")
def queen_token_env(context) -> None:
    context.tokens = {"queen": generate_token()}
    context.env["RBEE_QUEEN_TOKEN"] = context.tokens["queen"]
    token_files(context)
    context.token_flags.pop("--token-file", None)


@given("a queen with those tokens on free loopback ports")
def queen_with_tokens(context) -> None:
    start_queen(context, *(item for pair in context.token_flags.items() for item in pair))


def _answer(context, answer) -> None:
    context.answer = answer


@when("I call GET {path} on the queen without a token")
def get_without_token(context, path: str) -> None:
    _answer(context, request("GET", f"{context.queen_url}{path}"))


@when('I call GET {path} on the queen with the token "{token}"')
def get_with_token(context, path: str, token: str) -> None:
    _answer(context, request("GET", f"{context.queen_url}{path}", headers=_bearer(token)))


MALFORMED = {
    'lowercase scheme "bearer <token>"': lambda t: f"bearer {t}",
    'two spaces "Bearer  <token>"': lambda t: f"Bearer  {t}",
    'no space "Bearer<token>"': lambda t: f"Bearer{t}",
    "a control character in the token": lambda t: f"Bearer {t[:8]}\x01{t[8:]}",
    "an oversize token": lambda t: f"Bearer {t * 40}",
    "a Basic scheme": lambda t: f"Basic {t}",
    "the token alone": lambda t: t,
}


@when("I call GET {path} on the queen with the Authorization header {kind}")
def get_with_malformed(context, path: str, kind: str) -> None:
    header = MALFORMED[kind](context.tokens["queen"])
    _answer(context, request("GET", f"{context.queen_url}{path}", headers={"Authorization": header}))


@then('the answer is {status:d} with error code "{code}" and a Bearer challenge')
def refused_with_challenge(context, status: int, code: str) -> None:
    answer = context.answer
    assert answer.status == status, (answer.status, answer.body)
    error = answer.json()["error"]
    assert error["code"] == code and error["correlation_id"], error
    assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer"), answer.headers


@then("the answer is {status:d} and shows no traceback")
def refused_plainly(context, status: int) -> None:
    assert context.answer.status == status, (context.answer.status, context.answer.body)
    assert b"Traceback" not in context.answer.body and b'File "' not in context.answer.body


@then('the answer does not contain "{text}"')
def answer_does_not_contain(context, text: str) -> None:
    assert text.encode() not in context.answer.body, context.answer.body


def _task(context) -> dict:
    return {**TASK, "model": f"file://{context.tiny_model}"}


@given("I stream a native task through the queen with the queen's token")
@when("I stream a native task through the queen with the queen's token")
def stream_with_token(context) -> None:
    stream = EventStream(f"{context.queen_url}/v2/tasks", _task(context),
                         headers_out=_bearer(context.tokens["queen"])).open()
    context.streams.append(stream)
    assert stream.status == 200, stream.raw_body()
    context.stream = stream
    context.events = stream.read_all()


@when('I request embeddings of "{text}" through the queen with the queen\'s token')
def embed_with_token(context, text: str) -> None:
    body = {"model": f"file://{context.tiny_model}", "input": text}
    headers = _bearer(context.tokens["queen"])
    answer = request("POST", f"{context.queen_url}/v1/embeddings", body, headers=headers)
    assert answer.status == 200, answer.body
    context.embedded_text = text


@given("a long native task is streaming through the queen with the queen's token")
def long_stream_with_token(context) -> None:
    body = {**_task(context), "max_tokens": 400, "ignore_eos": True}
    headers = {**_bearer(context.tokens["queen"])}
    stream = EventStream(f"{context.queen_url}/v2/tasks", body, timeout=60, headers_out=headers).open()
    context.streams.append(stream)
    assert stream.status == 200, stream.raw_body()
    assert stream.next_event() is not None
    context.long_stream = stream


@then('the stream ends with an "end" event')
def stream_ends(context) -> None:
    assert context.events and context.events[-1]["type"] == "end", context.events[-3:]


@then('the long task still ends with an "end" event')
def long_stream_ends(context) -> None:
    events = context.long_stream.read_all()
    assert events[-1]["type"] == "end", events[-3:]


def _logs(context) -> dict[Path, str]:
    return {path: path.read_text(errors="replace") for path in context.workdir.rglob("*.log")}


@then("the hive and the worker each refused no internal call")
def no_internal_refusals(context) -> None:
    for path, text in _logs(context).items():
        assert "refused" not in text and "HTTP 401" not in text, (path, text[-2000:])


def _worker_url(context) -> str:
    answer = request("GET", f"{context.hive_url}/v1/workers/list", headers=_bearer(context.tokens["hive"]))
    workers = answer.json()["workers"]
    assert len(workers) == 1, workers
    return workers[0]["url"]


def _daemon_url(context, daemon: str) -> str:
    return {"queen": context.queen_url, "hive": context.hive_url}.get(daemon) or _worker_url(context)


@then("GET {path} on the {daemon} answers {status:d} without a token")
def answers_without_token(context, path: str, daemon: str, status: int) -> None:
    answer = request("GET", f"{_daemon_url(context, daemon)}{path}")
    assert answer.status == status, (answer.status, answer.body)


@then("GET {path} on the {daemon} answers {status:d} with the {role}'s token")
def answers_with_role_token(context, path: str, daemon: str, status: int, role: str) -> None:
    answer = request("GET", f"{_daemon_url(context, daemon)}{path}", headers=_bearer(context.tokens[role]))
    assert answer.status == status, (answer.status, answer.body)


def _registered(add_routes) -> list[tuple[str, str]]:
    app = web.Application()
    add_routes(app)
    routes = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info()
        path = info.get("path") or info["formatter"].replace("{task_id}", "t-1")
        routes.append((route.method, path))
    return routes


@then("every route the queen, hive and worker register answers 401 without a token, except health")
def every_route_guarded(context) -> None:
    checked = 0
    for daemon, add_routes in (("queen", add_queen_routes), ("hive", add_hive_routes),
                               ("worker", add_worker_routes)):
        base = _daemon_url(context, daemon)
        routes = _registered(add_routes)
        assert all(("GET", path) in routes for path in HEALTH_PATHS[daemon]), (daemon, routes)
        for method, path in routes:
            answer = request(method, f"{base}{path}", raw=b"{}" if method == "POST" else None)
            expected = 200 if path in HEALTH_PATHS[daemon] else 401
            assert answer.status == expected, (daemon, method, path, answer.status, answer.body[:200])
            checked += 1
    print(f"auth checked on {checked} routes")
    assert checked >= 20, checked


def _rbee_pids(context) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"rbee" in cmdline and str(context.workdir).encode() in cmdline:
            pids.append(int(entry.name))
    return pids


@then("no daemon's command line in /proc contains a token")
def no_token_in_cmdline(context) -> None:
    pids = _rbee_pids(context)
    assert len(pids) >= 3, pids
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        for token in context.tokens.values():
            assert token.encode() not in cmdline, pid


@then("no log contains a token")
def no_token_in_logs(context) -> None:
    logs = _logs(context)
    assert logs
    for path, text in logs.items():
        for token in context.tokens.values():
            assert token not in text, path


@then("the queen's log names the queen token by its fingerprint")
def fingerprint_in_log(context) -> None:
    assert fingerprint(context.tokens["queen"]) in context.queen.log_path.read_text()


@when("I start `rbee {daemon}` on 0.0.0.0 without a token")
def start_public_without_token(context, daemon: str) -> None:
    extra = {
        "queen": ["--port", "1", "--data-dir", str(context.workdir / "d")],
        "hive": ["--port", "1", "--data-dir", str(context.workdir / "d")],
        "worker": ["--port", "1", "--model", str(context.tiny_model), "--worker-id", "w1"],
    }[daemon]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RBEE_") and k != "CREDENTIALS_DIRECTORY"}
    context.result = subprocess.run(
        [sys.executable, "-m", "rbee", daemon, "--host", "0.0.0.0", *extra],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )


@then("it exits with code 1 saying it refuses to listen without a token")
def refuses_public_bind(context) -> None:
    assert context.result.returncode == 1, context.result
    assert "refuses to listen on 0.0.0.0 without a token" in context.result.stderr, context.result.stderr


@then("the queen's log says it runs in dev mode")
def dev_mode_logged(context) -> None:
    assert "runs in dev mode" in context.queen.log_path.read_text()


BAD_FILES = {
    "readable by the group": ("token-0123456789abcdef\n", 0o640),
    "readable by others": ("token-0123456789abcdef\n", 0o604),
    "missing": (None, 0o600),
    "empty": ("", 0o600),
    "whitespace only": ("  \n\t\n", 0o600),
    "two lines": ("token-0123456789abcdef\nsecond-0123456789abcdef\n", 0o600),
    "too short": ("short\n", 0o600),
}


@given("a queen token file that is {problem}")
def bad_token_file(context, problem: str) -> None:
    content, mode = BAD_FILES[problem]
    context.bad_token = (content or "").strip()
    path = context.workdir / "queen.token"
    if content is not None:
        path.write_text(content)
        path.chmod(mode)
    context.bad_token_file = path


@when("I start `rbee queen` with that token file")
def start_with_bad_file(context) -> None:
    context.result = subprocess.run(
        [sys.executable, "-m", "rbee", "queen", "--port", "1", "--data-dir", str(context.workdir / "d"),
         "--token-file", str(context.bad_token_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )


@then('it exits with code 1 and its message mentions "{hint}"')
def exits_with_hint(context, hint: str) -> None:
    assert context.result.returncode == 1, context.result
    assert hint in context.result.stderr, context.result.stderr


@then("its message does not contain the token")
def message_without_token(context) -> None:
    output = context.result.stdout + context.result.stderr
    for line in context.bad_token.splitlines():
        if line.strip():
            assert line.strip() not in output, output


@then('the queen\'s log says its token comes from "{source}"')
def token_source_logged(context, source: str) -> None:
    assert f"queen={fingerprint(context.tokens['queen'])} ({source})" in context.queen.log_path.read_text()


@then("the queen's log warns that the token comes from the environment")
def env_warning(context) -> None:
    assert "comes from the environment variable RBEE_QUEEN_TOKEN" in context.queen.log_path.read_text()


@when("the queen token file gets a new token")
def rotate_queen_token(context) -> None:
    context.old_queen_token = context.tokens["queen"]
    context.tokens["queen"] = generate_token()
    write_token_file(_token_path(context, "queen"), context.tokens["queen"])


@when("the queen token file is made readable by others")
def loosen_queen_token(context) -> None:
    _token_path(context, "queen").chmod(0o644)


@when("I send SIGHUP to the queen")
def sighup_queen(context) -> None:
    os.kill(context.queen.pid, signal.SIGHUP)


@then("GET {path} on the queen answers {status:d} with the old queen token within {seconds:d} seconds")
def old_token_refused(context, path: str, status: int, seconds: int) -> None:
    def refused() -> bool:
        return request("GET", f"{context.queen_url}{path}",
                       headers=_bearer(context.old_queen_token)).status == status

    assert wait_until(refused, seconds, 0.1)


@then("GET {path} on the queen answers {status:d} with the new queen token")
def new_token_accepted(context, path: str, status: int) -> None:
    answer = request("GET", f"{context.queen_url}{path}", headers=_bearer(context.tokens["queen"]))
    assert answer.status == status, (answer.status, answer.body)


@then("the queen's log says the token reload failed")
def reload_failed_logged(context) -> None:
    def logged() -> bool:
        return "token reload failed" in context.queen.log_path.read_text()

    assert wait_until(logged, 5, 0.1), context.queen.log_tail()


@when("I run `rbee infer` against the queen with the queen's token file")
def infer_with_token(context) -> None:
    _infer(context, ["--token-file", str(_token_path(context, "queen"))])


@when("I run `rbee infer` against the queen without a token")
def infer_without_token(context) -> None:
    _infer(context, [])


def _infer(context, extra: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RBEE_QUEEN_TOKEN"}
    context.result = subprocess.run(
        [sys.executable, "-m", "rbee", "infer", "--queen", context.queen_url,
         "--model", f"file://{context.tiny_model}", "--prompt", "Hello", "--max-tokens", "8",
         "--seed", str(TINY_SEED), *extra],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@then("`rbee infer` exits 0 and printed tokens")
def infer_ok(context) -> None:
    assert context.result.returncode == 0, context.result
    assert context.result.stdout.strip(), context.result


@then('`rbee infer` exits 1 and says "{text}"')
def infer_refused(context, text: str) -> None:
    assert context.result.returncode == 1, context.result
    assert text in context.result.stderr, context.result.stderr
