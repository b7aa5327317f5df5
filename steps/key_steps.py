"""Steps about the queen's named API keys: creation, scopes, node keys, limits, usage, revocation."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import openai
from aiohttp import web
from behave import given, then, when
from prometheus_client.parser import text_string_to_metric_families

from rbee import __version__
from rbee.queen.api.routes import add_routes as add_queen_routes
from rbee.testing.cluster import wait_until
from rbee.testing.http_client import EventStream, request
from steps.common import tiny_ref

PROMPT = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
PATH_VALUES = {"{task_id}": "t-1", "{model}": "m", "{name}": "nobody"}


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _admin(context) -> dict[str, str]:
    return _bearer(context.tokens["queen"])


def _keys(context) -> dict[str, str]:
    context.api_keys = getattr(context, "api_keys", {})
    return context.api_keys


def _rbee_keys(context, *args: str) -> subprocess.CompletedProcess:
    token_file = context.workdir / "secrets" / "queen.token"
    return subprocess.run(
        [sys.executable, "-m", "rbee", "keys", *args, "--queen", context.queen_url, "--token-file",
         str(token_file)], capture_output=True, text=True, timeout=60, env=context.env)


def _listed(context) -> dict[str, dict]:
    done = _rbee_keys(context, "list", "--json")
    assert done.returncode == 0, done.stderr
    return {key["name"]: key for key in json.loads(done.stdout)}


def _make_key(context, body: dict) -> str:
    answer = request("POST", f"{context.queen_url}/v2/keys", body, headers=_admin(context))
    assert answer.status == 201, (answer.status, answer.body)
    secret = answer.json()["key"]
    _keys(context)[body["name"]] = secret
    return secret


def _key_body(name: str, scopes: str, **extra) -> dict:
    return {"name": name, "scopes": [s.strip() for s in scopes.split(",")], **extra}


@given('a key "{name}" with scopes "{scopes}"')
def a_key(context, name: str, scopes: str) -> None:
    _make_key(context, _key_body(name, scopes))


@given('a key "{name}" with scopes "{scopes}" that expires in {seconds:d} seconds')
def an_expiring_key(context, name: str, scopes: str, seconds: int) -> None:
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
    _make_key(context, _key_body(name, scopes, expires_at=expires))


@given('a key "{name}" with scopes "{scopes}" for the tiny model only')
def a_narrow_key(context, name: str, scopes: str) -> None:
    _make_key(context, _key_body(name, scopes, models=[tiny_ref(context)]))


@given('a key "{name}" with scopes "{scopes}" and rpm {count:d}')
def a_key_with_rpm(context, name: str, scopes: str, count: int) -> None:
    _make_key(context, _key_body(name, scopes, rpm=count))


@given('a key "{name}" with scopes "{scopes}" and concurrency {count:d}')
def a_key_with_concurrency(context, name: str, scopes: str, count: int) -> None:
    _make_key(context, _key_body(name, scopes, concurrency=count))


@given('a key "{name}" with scopes "{scopes}" and tokens per minute {count:d}')
def a_key_with_tokens(context, name: str, scopes: str, count: int) -> None:
    _make_key(context, _key_body(name, scopes, tokens_per_min=count))


@when('I run rbee keys create "{name}" --scope {scope} with the queen\'s token')
def run_keys_create(context, name: str, scope: str) -> None:
    context.cli = _rbee_keys(context, "create", name, "--scope", scope)
    assert context.cli.returncode == 0, context.cli.stderr
    _keys(context)[name] = context.cli.stdout.strip()


@then('the command printed a key and `rbee keys list` shows "{name}" only by its fingerprint')
def printed_once(context, name: str) -> None:
    secret = _keys(context)[name]
    assert context.cli.stdout.count("\n") == 1 and len(secret) >= 32, context.cli.stdout
    assert secret not in context.cli.stderr
    done = _rbee_keys(context, "list", "--json")
    assert secret not in done.stdout
    listed = {key["name"]: key for key in json.loads(done.stdout)}
    assert listed[name]["fingerprint"] == hashlib.sha256(secret.encode()).hexdigest()[:6], listed[name]
    assert listed[name]["scopes"] == ["inference"]


@then("the queen's key store on disk does not hold the key")
def store_holds_no_key(context) -> None:
    files = [path for path in (context.workdir / "data").glob("keys.sqlite*") if path.is_file()]
    assert files, list((context.workdir / "data").iterdir())
    for secret in _keys(context).values():
        for path in files:
            assert secret.encode() not in path.read_bytes(), path


@then('the key "{name}" streams a chat completion through the openai client')
def key_streams_chat(context, name: str) -> None:
    client = openai.OpenAI(base_url=f"{context.queen_url}/v1", api_key=_keys(context)[name], max_retries=0)
    chunks = list(client.chat.completions.create(
        model=tiny_ref(context), messages=[{"role": "user", "content": "Hello"}], max_tokens=8, stream=True))
    assert any(c.choices and c.choices[0].delta.content for c in chunks), chunks
    assert chunks[-1].choices[0].finish_reason in {"length", "stop"}, chunks[-1]


def _get_models(context, name: str):
    return request("GET", f"{context.queen_url}/v1/models", headers=_bearer(_keys(context)[name]))


@given('the key "{name}" lists the models')
@then('the key "{name}" lists the models')
def key_lists_models(context, name: str) -> None:
    answer = _get_models(context, name)
    assert answer.status == 200, (answer.status, answer.body)


@when('the key "{name}" lists the models {times:d} times')
def key_lists_models_times(context, name: str, times: int) -> None:
    for _ in range(times):
        key_lists_models(context, name)


@then('a fresh key "{name}" with scopes "{scopes}" lists the models')
def fresh_key_lists(context, name: str, scopes: str) -> None:
    a_key(context, name, scopes)
    key_lists_models(context, name)


@when('I run rbee keys revoke "{name}" with the queen\'s token')
def run_keys_revoke(context, name: str) -> None:
    done = _rbee_keys(context, "revoke", name)
    context.revoked_at = time.monotonic()
    assert done.returncode == 0, done.stderr


@then('within 1 second the key "{name}" is refused with 401 "{code}"')
def refused_within_a_second(context, name: str, code: str) -> None:
    answer = _get_models(context, name)
    elapsed = time.monotonic() - context.revoked_at
    assert answer.status == 401 and answer.json()["error"]["code"] == code, (answer.status, answer.body)
    assert elapsed < 1.0, elapsed


@then('rbee keys list shows "{name}" as revoked')
def listed_revoked(context, name: str) -> None:
    assert _listed(context)[name]["revoked_at"] is not None


@when("{seconds:g} seconds pass")
def seconds_pass(context, seconds: float) -> None:
    time.sleep(seconds)


def _refused(context, name: str, status: int, code: str) -> None:
    context.answer = _get_models(context, name)
    assert context.answer.status == status, (context.answer.status, context.answer.body)
    assert context.answer.json()["error"]["code"] == code, context.answer.body


@then('the key "{name}" is refused with {status:d} "{code}" naming the limit "{limit}"')
def key_refused_naming(context, name: str, status: int, code: str, limit: str) -> None:
    _refused(context, name, status, code)
    assert context.answer.json()["error"]["details"]["limit"] == limit, context.answer.body


@then('the key "{name}" is refused with {status:d} "{code}"')
def key_refused(context, name: str, status: int, code: str) -> None:
    _refused(context, name, status, code)


@then("the answer has a Retry-After of at least 1 second")
def retry_after(context) -> None:
    assert int(context.answer.headers["Retry-After"]) >= 1, context.answer.headers


def _route_url(context, path: str) -> str:
    for placeholder, value in PATH_VALUES.items():
        path = path.replace(placeholder, value)
    return f"{context.queen_url}{path}"


@then("the queen answers each route to the keys as this table says")
def routes_by_scope(context) -> None:
    names = context.table.headings[2:]
    context.route_table = set()
    for row in context.table:
        method, path = row["method"], row["path"]
        context.route_table.add((method, path))
        for name in names:
            answer = request(method, _route_url(context, path), raw=b"{}" if method == "POST" else None,
                             headers=_bearer(_keys(context)[name]), timeout=30)
            if row[name] == "denied":
                assert answer.status == 403, (name, method, path, answer.status, answer.body[:300])
                assert answer.json()["error"]["code"] == "FORBIDDEN_SCOPE", answer.body
            else:
                assert answer.status not in (401, 403), (name, method, path, answer.status, answer.body[:300])


@then("every route the queen registers is in that table")
def every_route_in_table(context) -> None:
    app = web.Application()
    add_queen_routes(app)
    registered = {(route.method, route.resource.canonical) for route in app.router.routes()
                  if route.method != "HEAD"}
    missing, stale = registered - context.route_table, context.route_table - registered
    assert not missing and not stale, (missing, stale)


def _hive_pid(context) -> int:
    port = context.hive_url.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hive" in argv and port.encode() in argv:
            return int(entry.name)
    raise AssertionError("no local hive process found")


@then("the local hive was given a key for the queen that is not the queen's token")
def hive_has_node_key(context) -> None:
    argv = [part.decode() for part in (Path("/proc") / str(_hive_pid(context)) / "cmdline").read_bytes()
            .split(b"\0")]
    path = Path(argv[argv.index("--queen-token-file") + 1])
    assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)
    context.hive_key = path.read_text().strip()
    assert context.hive_key and context.hive_key != context.tokens["queen"]
    _keys(context)["node-localhost"] = context.hive_key


@then('rbee keys list shows that key as "{name}" with scope node')
def node_key_listed(context, name: str) -> None:
    entry = _listed(context)[name]
    assert entry["fingerprint"] == hashlib.sha256(context.hive_key.encode()).hexdigest()[:6], entry
    assert entry["scopes"] == ["node"] and entry["revoked_at"] is None, entry


@then('with the hive\'s key GET {path} on the queen answers {status:d} "{code}"')
def hive_key_refused(context, path: str, status: int, code: str) -> None:
    answer = request("GET", f"{context.queen_url}{path}", headers=_bearer(context.hive_key))
    assert answer.status == status and answer.json()["error"]["code"] == code, (answer.status, answer.body)


@then('with the hive\'s key a heartbeat for another hive\'s URL answers {status:d} "{code}"')
def foreign_heartbeat(context, status: int, code: str) -> None:
    body = {"hive_url": "http://127.0.0.2:9", "version": __version__, "workers": []}
    answer = request("POST", f"{context.queen_url}/v2/heartbeat", body, headers=_bearer(context.hive_key))
    assert answer.status == status and answer.json()["error"]["code"] == code, (answer.status, answer.body)


def _audit_records(context) -> list[dict]:
    records = []
    for path in sorted((context.workdir / "data" / "audit").glob("*")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


def _heartbeats(context) -> list[dict]:
    return [r for r in _audit_records(context) if r.get("path") == "/v2/heartbeat"]


@then("the queen took {count:d} more heartbeats from the hive and refused none")
def heartbeats_taken(context, count: int) -> None:
    seen = len(_heartbeats(context))
    assert wait_until(lambda: len(_heartbeats(context)) >= seen + count, 20), _heartbeats(context)[-3:]
    beats = _heartbeats(context)
    assert all(r["event"] == "auth.success" and r["key_name"] == "node-localhost" for r in beats), beats[-5:]


@then("the key \"{name}\" lists only the tiny model, of the models the queen's token lists")
def lists_only_tiny(context, name: str) -> None:
    mine = [m["id"] for m in _get_models(context, name).json()["data"]]
    everyone = [m["id"] for m in request("GET", f"{context.queen_url}/v1/models",
                                         headers=_admin(context)).json()["data"]]
    assert mine == [tiny_ref(context)], mine
    assert set(everyone) > set(mine), everyone


def _task(context, name: str, model: str, max_tokens: int = 8) -> EventStream:
    body = {"model": model, "prompt": "Hello", "max_tokens": max_tokens, "ignore_eos": True}
    stream = EventStream(f"{context.queen_url}/v2/tasks", body,
                         headers_out=_bearer(_keys(context)[name])).open()
    context.streams.append(stream)
    return stream


def _model(context, which: str) -> str:
    return tiny_ref(context) if which == "the tiny model" else which.removeprefix("the model ").strip('"')


@then('a task of the key "{name}" for {which} is refused with {status:d} "{code}"')
def task_refused(context, name: str, which: str, status: int, code: str) -> None:
    stream = _task(context, name, _model(context, which))
    assert stream.status == status, (stream.status, stream.raw_body())
    assert stream.error_body()["error"]["code"] == code


@then('a task of the key "{name}" streams to its end')
@then('a task of the key "{name}" for the tiny model streams to its end')
def task_streams(context, name: str) -> None:
    stream = _task(context, name, tiny_ref(context))
    assert stream.status == 200, (stream.status, stream.raw_body())
    events = stream.read_all()
    assert events and events[-1]["type"] == "end", events[-3:]


@when('the key "{name}" starts a long native task')
def long_task(context, name: str) -> None:
    context.long_stream = _task(context, name, tiny_ref(context), max_tokens=8000)
    assert context.long_stream.status == 200, context.long_stream.raw_body()
    assert context.long_stream.next_event()["type"] == "started"


def _cancel(context, name: str):
    task_id = context.long_stream.events[0]["task_id"]
    return request("DELETE", f"{context.queen_url}/v2/tasks/{task_id}", headers=_bearer(_keys(context)[name]))


@then('the key "{name}" cancelling that task gets 404 "{code}" and the task goes on')
def foreign_cancel(context, name: str, code: str) -> None:
    answer = _cancel(context, name)
    assert answer.status == 404 and answer.json()["error"]["code"] == code, (answer.status, answer.body)
    seen = len(context.long_stream.events)
    for _ in range(3):
        event = context.long_stream.next_event()
        assert event is not None and event["type"] == "token", event
    assert len(context.long_stream.events) == seen + 3


@then('the key "{name}" cancelling that task gets 204 and its stream ends with stop reason "{reason}"')
def own_cancel(context, name: str, reason: str) -> None:
    answer = _cancel(context, name)
    assert answer.status == 204, (answer.status, answer.body)
    events = context.long_stream.read_all()
    assert events[-1]["type"] == "end" and events[-1]["stop_reason"] == reason, events[-3:]


@then('a second task of the key "{name}" is refused with 429 "{code}" naming the limit "{limit}"')
def second_task_refused(context, name: str, code: str, limit: str) -> None:
    stream = _task(context, name, tiny_ref(context))
    assert stream.status == 429, (stream.status, stream.raw_body())
    error = stream.error_body()["error"]
    assert error["code"] == code and error["details"]["limit"] == limit, error
    assert int(stream.headers["Retry-After"]) >= 1


@then('once the first task of "{name}" is cancelled, a task of the key "{name2}" streams to its end')
def after_cancel(context, name: str, name2: str) -> None:
    context.long_stream.close()

    def admitted() -> bool:
        answer = _get_models(context, name2)
        return answer.status == 200

    assert wait_until(admitted, 10, 0.2), "the cancelled task still counts against the key's concurrency"
    task_streams(context, name2)


def _complete(context, name: str) -> dict:
    answer = request("POST", f"{context.queen_url}/v1/completions",
                     {"model": tiny_ref(context), "prompt": PROMPT, "max_tokens": 16},
                     headers=_bearer(_keys(context)[name]), timeout=120)
    assert answer.status == 200, (answer.status, answer.body)
    return answer.json()["usage"]


@when('the key "{name}" completes a prompt of 16 tokens at most')
def complete_once(context, name: str) -> None:
    context.usages = [_complete(context, name)]


@when('the key "{name}" completes a prompt of 16 tokens at most, {times:d} times')
def complete_times(context, name: str, times: int) -> None:
    context.usages = [_complete(context, name) for _ in range(times)]


@then('rbee keys usage "{name}" shows {requests:d} requests and the prompt and completion tokens the '
      'answers reported')
def usage_matches(context, name: str, requests: int) -> None:
    done = _rbee_keys(context, "usage", name, "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)[name]
    assert row["requests"] == requests, row
    assert row["prompt_tokens"] == sum(u["prompt_tokens"] for u in context.usages) > 0, (row, context.usages)
    assert row["completion_tokens"] == sum(u["completion_tokens"] for u in context.usages) > 0, row


@then('the queen\'s metric rbee_queen_key_tokens_total for "{name}" shows the same tokens')
def metric_matches(context, name: str) -> None:
    text = request("GET", f"{context.queen_url}/metrics", headers=_admin(context)).body.decode()
    seen = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "rbee_queen_key_tokens_total" and sample.labels.get("key") == name:
                seen[sample.labels["kind"]] = sample.value
    assert seen == {"prompt": sum(u["prompt_tokens"] for u in context.usages),
                    "completion": sum(u["completion_tokens"] for u in context.usages)}, seen


@then('the queen\'s audit records of that task carry the key name "{name}"')
def audit_names_key(context, name: str) -> None:
    events = {r["event"]: r for r in _audit_records(context) if r.get("key_name") == name}
    assert {"auth.success", "task.submitted", "task.completed"} <= set(events), sorted(events)
    assert events["task.completed"]["prompt_tokens"] == context.usages[0]["prompt_tokens"], events


@then('the queen\'s access line of that request carries the key name "{name}"')
def access_line_names_key(context, name: str) -> None:
    lines = [line for line in (context.workdir / "queen.log").read_text().splitlines()
             if "rbee.access" in line and "POST /v1/completions 200" in line]
    assert lines and all(f"key_name={name}" in line for line in lines), lines


@then("no log, command line or audit record holds any key made in this scenario")
def no_key_leaks(context) -> None:
    secrets = list(_keys(context).values())
    hive_key = (context.workdir / "data" / "tokens" / "node-localhost.token")
    if hive_key.exists():
        secrets.append(hive_key.read_text().strip())
    texts = {path: path.read_text(errors="replace") for path in context.workdir.rglob("*.log")}
    texts.update({path: path.read_text(errors="replace")
                  for path in (context.workdir / "data" / "audit").glob("*")})
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                texts[entry / "cmdline"] = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
    assert secrets and texts
    for secret in secrets:
        leaked = [str(path) for path, text in texts.items() if secret in text]
        assert not leaked, leaked


@when("I ask the queen for a key with {body}")
def ask_for_key(context, body: str) -> None:
    context.answer = request("POST", f"{context.queen_url}/v2/keys", raw=body.encode(),
                             headers=_admin(context))


@then('the answer is 400 "{code}" naming the field "{field}"')
def refused_naming_field(context, code: str, field: str) -> None:
    error = context.answer.json()["error"]
    assert context.answer.status == 400 and error["code"] == code, (context.answer.status, error)
    assert error["details"]["field"] == field, error
