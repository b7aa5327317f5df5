"""Steps of the hostile-HTTP suite: raw sockets against a real queen, hive and worker."""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from behave import given, then, when

from rbee.testing import raw_http
from rbee.testing.http_client import EventStream, request
from steps.auth_steps import _bearer, _task, _worker_url
from steps.common import LONG_TASK_TOKENS

DAEMONS = ("queen", "hive", "worker")
CAP = 24
SHORT_LIMITS = {
    "RBEE_HTTP_HEADER_TIMEOUT_S": "1",
    "RBEE_HTTP_BODY_TIMEOUT_S": "1",
    "RBEE_HTTP_KEEPALIVE_TIMEOUT_S": "2",
    "RBEE_HTTP_MAX_CONNECTIONS_PER_ADDRESS": str(CAP),
}
JSON_PATHS = {"queen": "/v1/chat/completions", "hive": "/v1/workers/spawn", "worker": "/v1/inference"}
HEALTH_PATHS = {"queen": "/health", "hive": "/v1/health", "worker": "/health"}
DEEP = b"[" * 50000 + b"]" * 50000


@dataclass(frozen=True)
class Target:
    """One daemon under attack."""

    name: str
    url: str
    token: str
    log: Path

    def head(self, method: str = "POST", path: str | None = None, **headers: str) -> bytes:
        """A request head to this daemon's JSON route with its token (and `Connection: close`)."""
        fields = {"Authorization": f"Bearer {self.token}", "Connection": "close", **headers}
        return raw_http.head(method, path or JSON_PATHS[self.name], fields)


def _json_post(target: Target, body: bytes, **headers: str) -> bytes:
    fields = {"Content-Type": "application/json", "Content-Length": str(len(body)), **headers}
    return target.head(**fields) + body


ATTACKS: dict[str, Callable[[Target], bytes]] = {
    "a request line that is not HTTP": lambda t: b"GARBAGE\r\n\r\n",
    "Content-Length and Transfer-Encoding both": lambda t: t.head(
        **{"Content-Length": "5", "Transfer-Encoding": "chunked"}) + b"0\r\n\r\n",
    "two different Content-Length headers": lambda t: t.head(
        **{"Content-Length": "2"}).replace(b"\r\n\r\n", b"\r\nContent-Length: 3\r\n\r\n") + b"{}",
    "a chunked body with a broken chunk size": lambda t: t.head(
        **{"Transfer-Encoding": "chunked", "Content-Type": "application/json"}) + b"zz\r\n{}\r\n0\r\n\r\n",
    "a header line of 20000 bytes": lambda t: t.head("GET", HEALTH_PATHS[t.name], X_Filler="a" * 20000),
    "an Authorization header of 20000 bytes that starts with the token": lambda t: raw_http.head(
        "GET", "/v1/models", {"Authorization": f"Bearer {t.token}{'x' * 20000}"}),
    "200 header lines": lambda t: t.head("GET", HEALTH_PATHS[t.name], **{f"X-F{i}": "a" for i in range(200)}),
    "a JSON body nested 50000 levels": lambda t: _json_post(t, DEEP),
    "a body that is not UTF-8": lambda t: _json_post(t, b'{"model": "\xff\xfe", "prompt": "\xc3"}'),
    "a gzip body that is not gzip": lambda t: _json_post(t, b"not gzip", **{"Content-Encoding": "gzip"}),
    "a body in an unknown Content-Encoding": lambda t: _json_post(t, b"{}", **{"Content-Encoding": "bogus"}),
}


def _targets(context) -> list[Target]:
    if not hasattr(context, "targets"):
        worker_url = _worker_url(context)
        hive_auth = _bearer(context.tokens["hive"])
        workers = request("GET", f"{context.hive_url}/v1/workers/list", headers=hive_auth)
        worker_id = workers.json()["workers"][0]["worker_id"]
        logs = {"queen": context.queen.log_path, "hive": next(context.workdir.rglob("hive.log")),
                "worker": next(context.workdir.rglob(f"{worker_id}.log"))}
        urls = {"queen": context.queen_url, "hive": context.hive_url, "worker": worker_url}
        context.targets = [Target(name, urls[name], context.tokens[name], logs[name]) for name in DAEMONS]
    return context.targets


def _on_each(context, attack: Callable[[Target], raw_http.RawAnswer]) -> None:
    targets = _targets(context)
    with ThreadPoolExecutor(len(targets)) as pool:
        context.raw_answers = dict(zip(DAEMONS, pool.map(attack, targets), strict=True))


@given("daemons start with short HTTP limits")
def short_limits(context) -> None:
    context.env.update(SHORT_LIMITS)


@when('I send "{attack}" to the queen, the hive and the worker')
def send_attack(context, attack: str) -> None:
    build = ATTACKS[attack]
    _on_each(context, lambda target: raw_http.exchange(target.url, build(target)))


@when("I send request headers without their end to the queen, the hive and the worker")
def send_unfinished_headers(context) -> None:
    _on_each(context, lambda t: raw_http.exchange(t.url, t.head("GET", HEALTH_PATHS[t.name])[:-2]))


@when("I open a connection and send nothing to the queen, the hive and the worker")
def send_nothing(context) -> None:
    _on_each(context, lambda target: raw_http.exchange(target.url))


@when("I send a body one byte a second to the queen, the hive and the worker")
def send_slow_body(context) -> None:
    def slow(target: Target) -> raw_http.RawAnswer:
        body = b'{"prompt": "Hi"}'
        head = target.head(**{"Content-Type": "application/json", "Content-Length": str(len(body))})
        with raw_http.connect(target.url) as sock:
            sock.sendall(head)
            start = time.monotonic()
            for byte in body[:5]:
                sock.sendall(bytes([byte]))
                readable, _, _ = select.select([sock], [], [], 1.0)
                if readable:
                    break
            answer = raw_http.read_until_closed(sock, 5.0)
            answer.closed_after_s = time.monotonic() - start if answer.closed_after_s is not None else None
            return answer

    _on_each(context, slow)


@when("I send one request and then nothing on a kept-alive connection to the queen, the hive and the worker")
def send_then_idle(context) -> None:
    def idle(target: Target) -> raw_http.RawAnswer:
        head = raw_http.head("GET", HEALTH_PATHS[target.name])
        return raw_http.exchange(target.url, head, wait_s=6.0)

    _on_each(context, idle)


@then("each answered {status:d} and closed the connection")
def answered_and_closed(context, status: int) -> None:
    for name, answer in context.raw_answers.items():
        assert answer.status == status, (name, answer.data[:300])
        assert answer.closed_after_s is not None, (name, "still open")


@then('each answer\'s error code is "{code}" with max_depth {depth:d}')
def answers_code_with_depth(context, code: str, depth: int) -> None:
    for name, answer in context.raw_answers.items():
        error = answer.json()["error"]
        assert error["code"] == code and error["details"]["max_depth"] == depth, (name, error)


@then("each closed the connection within {low:d} to {high:d} seconds without an answer")
def closed_without_answer(context, low: int, high: int) -> None:
    for name, answer in context.raw_answers.items():
        assert answer.data == b"", (name, answer.data[:300])
        assert answer.closed_after_s is not None and low - 0.2 <= answer.closed_after_s <= high, (
            name, answer.closed_after_s)


@then('each answered 408 with error code "{code}" within {seconds:d} seconds and closed the connection')
def answered_408(context, code: str, seconds: int) -> None:
    for name, answer in context.raw_answers.items():
        assert answer.status == 408 and answer.json()["error"]["code"] == code, (name, answer.data[:300])
        closed = answer.closed_after_s
        assert closed is not None and closed <= seconds, (name, closed)


@then("each answered 200, then closed the connection within {low:d} to {high:d} seconds")
def answered_then_idle_closed(context, low: int, high: int) -> None:
    for name, answer in context.raw_answers.items():
        assert answer.status == 200, (name, answer.data[:300])
        assert answer.closed_after_s is not None and low - 0.2 <= answer.closed_after_s <= high, (
            name, answer.closed_after_s)


def _serves(context, target: Target) -> None:
    health = request("GET", target.url + HEALTH_PATHS[target.name], timeout=10)
    assert health.status == 200, (target.name, health.status)
    if target.name == "queen":
        auth = _bearer(target.token)
        stream = EventStream(f"{target.url}/v2/tasks", _task(context), headers_out=auth).open()
        context.streams.append(stream)
        events = stream.read_all()
        assert stream.status == 200 and events[-1]["type"] == "end", (stream.status, events[-3:])
    elif target.name == "hive":
        answer = request("GET", f"{target.url}/v1/workers/list", headers=_bearer(target.token))
        assert answer.status == 200 and answer.json()["workers"], answer.body
    else:
        body = {"prompt": "Hi", "max_tokens": 2}
        answer = request("POST", f"{target.url}/v1/inference", body, headers=_bearer(target.token))
        assert answer.status == 200 and b'"end"' in answer.body, answer.body[-300:]


@then("the queen, the hive and the worker still serve their health check and a real request")
@then("after those connections close, the queen, the hive and the worker still serve their health check "
      "and a real request")
def still_serving(context) -> None:
    for sock in getattr(context, "held_sockets", []):
        sock.close()
    for target in _targets(context):
        _serves(context, target)


@then("no daemon's log has a traceback")
def no_traceback_logged(context) -> None:
    for path in context.workdir.rglob("*.log"):
        text = path.read_text(errors="replace")
        assert "Traceback" not in text, (path, text[text.index("Traceback") - 500:][:3000])


@when("I open {count:d} connections at once to the queen, the hive and the worker")
def open_many(context, count: int) -> None:
    context.held_sockets, context.refused = [], {}
    for target in _targets(context):
        sockets = [raw_http.connect(target.url) for _ in range(count)]
        context.held_sockets.extend(sockets)
        time.sleep(0.3)
        readable, _, _ = select.select(sockets, [], [], 0)
        context.refused[target.name] = [raw_http.read_until_closed(sock, 1.0) for sock in readable]


@then('each refused some of them with 503 and error code "{code}"')
def refused_some(context, code: str) -> None:
    for name, answers in context.refused.items():
        assert len(answers) >= 40 - CAP, (name, len(answers))
        for answer in answers:
            assert answer.status == 503 and answer.json()["error"]["code"] == code, (name, answer.data[:300])


@then("each daemon's log reports the refusals from 127.0.0.1 once")
def refusals_logged_once(context) -> None:
    line = f"connection from 127.0.0.1: more than {CAP} connections at once: refused"
    for target in _targets(context):
        assert target.log.read_text(errors="replace").count(line) == 1, target.log


@given("a native task of many tokens streams through the queen")
def long_task(context) -> None:
    body = {**_task(context), "max_tokens": LONG_TASK_TOKENS, "ignore_eos": True}
    context.started_at = time.monotonic()
    stream = EventStream(f"{context.queen_url}/v2/tasks", body, timeout=120,
                         headers_out=_bearer(context.tokens["queen"])).open()
    context.streams.append(stream)
    context.long_stream = stream


@then('it ends with an "end" event after streaming for more than {seconds:d} seconds')
def long_task_ends(context, seconds: int) -> None:
    events = context.long_stream.read_all()
    elapsed = time.monotonic() - context.started_at
    assert events[-1]["type"] == "end", events[-3:]
    assert elapsed > seconds, f"the task streamed only {elapsed:.1f} s"
