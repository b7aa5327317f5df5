"""Steps about observability: metrics, readiness, logs, `rbee status`/`rbee logs`, dashboard, UI."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import parse
from behave import given, register_type, then, when
from prometheus_client.parser import text_string_to_metric_families

from rbee.common.ports import free_port
from rbee.common.secrets import generate_token, write_token_file
from rbee.testing.cluster import http_json, wait_until, worker_daemon
from rbee.testing.http_client import EventStream, request
from steps.auth_steps import _bearer
from steps.cluster_steps import start_queen
from steps.common import started, tiny_ref

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "docs" / "grafana" / "rbee.json"
MONITORING_DOC = REPO / "docs" / "monitoring.md"
SCREENSHOT = REPO / "reports" / "ui-status.png"
PROMPT = "Observe me"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


@parse.with_pattern(r"rbee_[a-z_]+(?:\{[^}]*\})?")
def _metric_selector(text: str) -> str:
    return text


register_type(Metric=_metric_selector)


# -- reading metrics ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def _token(context, daemon: str) -> dict[str, str]:
    tokens = getattr(context, "tokens", {})
    return _bearer(tokens[daemon]) if daemon in tokens else {}


def _url(context, daemon: str) -> str:
    if daemon == "queen":
        return context.queen_url
    if daemon == "hive":
        return context.hive_url
    if getattr(context, "worker_url", None):
        return context.worker_url
    answer = request("GET", f"{context.hive_url}/v1/workers/list", headers=_token(context, "hive"))
    workers = answer.json()["workers"]
    assert len(workers) == 1, workers
    return workers[0]["url"]


def _exposition(context, daemon: str) -> str:
    answer = request("GET", f"{_url(context, daemon)}/metrics", headers=_token(context, daemon))
    assert answer.status == 200, (daemon, answer.status, answer.body[:300])
    assert answer.headers.get("Content-Type", "").startswith("text/plain"), answer.headers
    return answer.body.decode()


def _samples(text: str) -> list[Sample]:
    return [Sample(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def _select(selector: str) -> tuple[str, dict[str, str]]:
    name, _, labels = selector.partition("{")
    return name, dict(re.findall(r'(\w+)="([^"]*)"', labels))


def _matching(samples: list[Sample], selector: str) -> list[Sample]:
    name, labels = _select(selector)
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def _value(samples: list[Sample], selector: str) -> float:
    """The sum of the samples the selector matches; a selector nothing matches fails the step."""
    matched = _matching(samples, selector)
    assert matched, f"no sample matches {selector}: {sorted({s.name for s in samples})}"
    return sum(s.value for s in matched)


def _metric(context, daemon: str, selector: str) -> float:
    return _value(_samples(_exposition(context, daemon)), selector)


def _metric_or_none(context, daemon: str, selector: str) -> float | None:
    matched = _matching(_samples(_exposition(context, daemon)), selector)
    return sum(s.value for s in matched) if matched else None


@when("I note the queen's metrics")
def note_queen_metrics(context) -> None:
    context.noted = _samples(_exposition(context, "queen"))


@then("the {daemon}'s metric {selector:Metric} grew by {count:d}")
def metric_grew(context, daemon: str, selector: str, count: int) -> None:
    before = sum(s.value for s in _matching(context.noted, selector))
    after = _metric(context, daemon, selector)
    assert after - before == count, (selector, before, after)


@then("the {daemon}'s metric {selector:Metric} grew by the tokens the stream carried")
def metric_grew_by_tokens(context, daemon: str, selector: str) -> None:
    tokens = sum(1 for event in context.events if event["type"] == "token")
    assert tokens > 0, context.events
    metric_grew(context, daemon, selector, tokens)


@then("the {daemon}'s metric {selector:Metric} is {count:d}")
def metric_is(context, daemon: str, selector: str, count: int) -> None:
    value = _metric(context, daemon, selector)
    assert value == count, (selector, value)


@then("the {daemon}'s metric {selector:Metric} is at least {count:d}")
def metric_at_least(context, daemon: str, selector: str, count: int) -> None:
    value = _metric(context, daemon, selector)
    assert value >= count, (selector, value)


@then("the {daemon}'s metric {selector:Metric} is the stream's tokens_out")
def metric_is_tokens_out(context, daemon: str, selector: str) -> None:
    end = context.events[-1]
    assert end["type"] == "end", context.events[-3:]
    metric_is(context, daemon, selector, end["tokens_out"])


@then("the {daemon}'s metric {selector:Metric} is the tiny model's size")
def metric_is_model_size(context, daemon: str, selector: str) -> None:
    metric_is(context, daemon, selector, context.tiny_model.stat().st_size)


@then("the {daemon}'s metric {selector:Metric} becomes {count:d} within {seconds:d} seconds")
def metric_becomes(context, daemon: str, selector: str, count: int, seconds: int) -> None:
    assert wait_until(lambda: _metric_or_none(context, daemon, selector) == count, seconds, 0.2), \
        (selector, _metric_or_none(context, daemon, selector))


@then("the worker's info metric names the backend and the GPU its hive placed it on")
def worker_info_placement(context) -> None:
    answer = request("GET", f"{context.hive_url}/v1/workers/list", headers=_token(context, "hive"))
    [worker] = answer.json()["workers"]
    [info] = [s for s in _samples(_exposition(context, "worker")) if s.name == "rbee_worker_info"]
    device = "" if worker["device"] is None else str(worker["device"])
    assert info.value == 1 and info.labels["worker_id"] == worker["worker_id"], (info, worker)
    assert (info.labels["backend"], info.labels["device"]) == (worker["backend"], device), (info, worker)


def _nvidia_smi_gpus() -> int:
    """The GPUs `nvidia-smi -L` lists (none without the tool or a driver): the oracle, read apart
    from rbee's own NVML code."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return 0
    listing = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=30, check=False)
    lines = listing.stdout.splitlines() if listing.returncode == 0 else []
    return sum(line.startswith("GPU ") for line in lines)


@then("the hive exports each GPU gauge with one sample per GPU that nvidia-smi lists")
def hive_gpu_samples(context) -> None:
    exposition = _exposition(context, "hive")
    families = {family.name: family for family in text_string_to_metric_families(exposition)}
    expected = _nvidia_smi_gpus()
    for name in ("rbee_hive_gpu_memory_used_bytes", "rbee_hive_gpu_memory_total_bytes",
                 "rbee_hive_gpu_utilization_ratio", "rbee_hive_gpu_temperature_celsius",
                 "rbee_hive_gpu_power_watts"):
        assert name in families and families[name].type == "gauge", sorted(families)
        gpus = {sample.labels["gpu"] for sample in families[name].samples}
        assert len(gpus) <= expected, (name, gpus, expected)
    total = families["rbee_hive_gpu_memory_total_bytes"].samples
    assert len(total) == expected and all(sample.value > 0 for sample in total), (total, expected)


@then("every metric of each daemon starts with its prefix and no label holds the prompt")
def prefixed_and_bounded(context) -> None:
    for daemon in ("queen", "hive", "worker"):
        samples = _samples(_exposition(context, daemon))
        assert samples, daemon
        for sample in samples:
            assert sample.name.startswith(f"rbee_{daemon}_"), (daemon, sample)
            assert not any("Hello" in value for value in sample.labels.values()), (daemon, sample)


@given('a queen with those tokens on free loopback ports, started with "{flags}"')
def queen_with_tokens_and_flags(context, flags: str) -> None:
    start_queen(context, *(item for pair in context.token_flags.items() for item in pair), *flags.split())


@when("I ask the hive to stop that worker")
def stop_that_worker(context) -> None:
    worker_id = context.workers[0]["worker_id"]
    answer = request("POST", f"{context.hive_url}/v1/workers/stop", {"worker_id": worker_id})
    assert answer.status == 202, (answer.status, answer.body)


# -- readiness ------------------------------------------------------------------------------


@given('a queen on free loopback ports started with "{flags}"')
def queen_with_flags(context, flags: str) -> None:
    start_queen(context, *flags.split())
    context.log_format = "json" if "json" in flags.split() else "text"


@when("a worker for the tiny model with {slots:d} slot starts")
def worker_starts(context, slots: int) -> None:
    daemon = worker_daemon(context.workdir, context.tiny_model, slots, ["--ctx-size", "8192"])
    context.worker = started(context, daemon)
    context.worker_url = context.worker.base_url


def _ready(context, daemon: str, path: str = "/ready") -> tuple[int, dict]:
    return http_json(f"{_url(context, daemon)}{path}")


def _checks_pass(body: dict, names: str) -> bool:
    wanted = [name.strip() for name in names.split(",")]
    return body.get("ready") is True and list(body.get("checks", {})) == wanted and all(
        body["checks"][name]["ok"] and body["checks"][name]["detail"] for name in wanted)


@then('the {daemon} answers {path} with {status:d} while /ready answers 503 "{code}" failing "{check}"')
def alive_not_ready(context, daemon: str, path: str, status: int, code: str, check: str) -> None:
    assert http_json(f"{_url(context, daemon)}{path}")[0] == status
    not_ready(context, daemon, code, check)


@then('the {daemon}\'s /ready answers 503 "{code}" failing "{check}"')
def not_ready(context, daemon: str, code: str, check: str) -> None:
    status, body = _ready(context, daemon)
    assert status == 503 and body["ready"] is False, (status, body)
    assert body["error"]["code"] == code and body["error"]["correlation_id"], body
    assert body["checks"][check]["ok"] is False and body["checks"][check]["detail"], body
    assert check in body["error"]["details"]["failing"], body


@then('the {daemon}\'s /ready answers 200 with the checks "{names}" within {seconds:d} seconds')
def ready_within(context, daemon: str, names: str, seconds: int) -> None:
    passed = wait_until(lambda: _checks_pass(_ready(context, daemon)[1], names), seconds, 0.1)
    assert passed, _ready(context, daemon)


@then('the {daemon}\'s /ready answers 200 with the checks "{names}"')
def ready_now(context, daemon: str, names: str) -> None:
    status, body = _ready(context, daemon)
    assert status == 200 and _checks_pass(body, names), (status, body)


@then("the worker's /v1/ready answers 200 as well")
def v1_ready(context) -> None:
    status, body = _ready(context, "worker", "/v1/ready")
    assert status == 200 and body["ready"] is True and body["slots_free"] == 1, (status, body)


@then("the {daemon} answers {path} with {status:d}")
def answers_health(context, daemon: str, path: str, status: int) -> None:
    assert http_json(f"{_url(context, daemon)}{path}")[0] == status


@when("the hive's models folder is replaced by a plain file")
def models_folder_is_a_file(context) -> None:
    models = context.workdir / "hive-data" / "models"
    shutil.rmtree(models)
    models.write_text("not a folder")


@then('the queen\'s readiness says a hive can be started on "{node}"')
def queen_can_start(context, node: str) -> None:
    body = _ready(context, "queen")[1]
    assert body["checks"]["hive_available"]["detail"] == f"a hive can be started on {node}", body
    assert http_json(f"{context.hive_url}/v1/health")[0] == 0, "asking for readiness started a hive"


# -- logs -----------------------------------------------------------------------------------


@given("I stream a native task through the queen with a correlation id of my own")
@when("I stream a native task through the queen with a correlation id of my own")
def stream_with_cid(context) -> None:
    context.cid = str(uuid.uuid4())
    body = {"model": tiny_ref(context), "prompt": PROMPT, "max_tokens": 16, "ignore_eos": True}
    stream = EventStream(f"{context.queen_url}/v2/tasks", body,
                         headers_out={"X-Correlation-ID": context.cid, **_token(context, "queen")}).open()
    context.streams.append(stream)
    assert stream.status == 200, stream.raw_body()
    context.events = stream.read_all()
    assert context.events[-1]["type"] == "end", context.events[-3:]
    context.task_id = context.events[0]["task_id"]


def _daemon_logs(context) -> dict[str, list[str]]:
    """queen/hive/worker → lines of its log (the worker: every worker log of the local hive)."""
    logs_dir = context.workdir / "data" / "hive" / "logs"
    workers = sorted(logs_dir.glob("w-*.log"))
    assert workers, list(logs_dir.iterdir())
    return {
        "queen": context.queen.log_path.read_text().splitlines(),
        "hive": (logs_dir / "hive.log").read_text().splitlines(),
        "worker": [line for path in workers for line in path.read_text().splitlines()],
    }


def _with_cid(context, line: str) -> dict | None:
    """The line as a record when it carries the scenario's correlation id."""
    if context.log_format == "json":
        record = json.loads(line)
        return record if record.get("correlation_id") == context.cid else None
    return {"text": line} if f"correlation_id={context.cid}" in line else None


@then("the queen's, the hive's and the worker's logs each have a {log_format} line with that correlation id")
def followed_by_cid(context, log_format: str) -> None:
    assert context.log_format == log_format
    for daemon, lines in _daemon_logs(context).items():
        found = [record for line in lines if (record := _with_cid(context, line))]
        assert found, (daemon, lines[-10:])
        if log_format == "json":
            assert all(record["component"] == daemon for record in found), found


@then("the worker's line with that correlation id also names the task id and the worker id")
def worker_line_ids(context) -> None:
    lines = _daemon_logs(context)["worker"]
    records = [record for line in lines if (record := _with_cid(context, line))]
    worker_id = context.events[0]["worker_id"]
    if context.log_format == "json":
        assert any(r.get("task_id") == context.task_id and r.get("worker_id") == worker_id
                   for r in records), records
    else:
        assert any(f"task_id={context.task_id}" in r["text"] and f"worker {worker_id} " in r["text"]
                   for r in records), records


@then("every line of the queen's, the hive's and the worker's logs is a JSON object with time, level, "
      "component and message")
def all_json(context) -> None:
    for daemon, lines in _daemon_logs(context).items():
        assert lines, daemon
        for line in lines:
            record = json.loads(line)
            assert {"time", "level", "component", "message"} <= set(record), (daemon, record)


# -- the CLI: rbee logs / rbee status -------------------------------------------------------


def _cli(context, command: str, queen: str | None = None) -> list[str]:
    args = [sys.executable, "-m", "rbee", *command.split(), "--queen", queen or context.queen_url]
    token_file = getattr(context, "token_flags", {}).get("--token-file")
    if token_file and "--token-file" not in command:
        args += ["--token-file", token_file]
    return args


def _run_cli(context, command: str, queen: str | None = None) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    context.result = subprocess.run(_cli(context, command, queen), capture_output=True, text=True,
                                    timeout=60, check=False, env=env)


@when("I run `rbee {command}`")
def run_rbee(context, command: str) -> None:
    _run_cli(context, command)


@when("I run `rbee {command}` against a queen that is not running")
def run_rbee_no_queen(context, command: str) -> None:
    _run_cli(context, command, f"http://127.0.0.1:{free_port()}")


@when("I run `rbee {command}` with a wrong token file")
def run_rbee_wrong_token(context, command: str) -> None:
    wrong = context.workdir / "secrets" / "wrong.token"
    write_token_file(wrong, generate_token())
    _run_cli(context, f"{command} --token-file {wrong}")


@then('it exits 1 and stderr says "{text}"')
def exits_1_saying(context, text: str) -> None:
    result = context.result
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert text in result.stderr and "Traceback" not in result.stderr, result.stderr


@then("it exits 0 and printed lines from the hive's log and from the worker's log")
def printed_logs(context) -> None:
    result = context.result
    assert result.returncode == 0, result.stderr
    sources = {line.split(" | ", 1)[0] for line in result.stdout.splitlines()}
    assert "hive" in sources and any(source.startswith("w-") for source in sources), sources


class _Follower:
    """A running `rbee logs --follow`, stopped by its PID after the scenario."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []

    def read_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready:
                line = self.process.stdout.readline()
                if not line:
                    return False
                self.lines.append(line)
                if predicate(line):
                    return True
        return False

    def stop(self) -> list[int]:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()
        return []


@when("I start `rbee {command}` and it prints its first line")
def start_rbee(context, command: str) -> None:
    context.follower = _Follower(_cli(context, command))
    context.daemons.append(context.follower)
    assert context.follower.read_until(lambda line: True, 15), "the follower printed nothing: not connected"


@then("the following `rbee logs` prints a line with that correlation id within {seconds:d} seconds")
def follower_prints(context, seconds: int) -> None:
    follower = context.follower
    assert follower.read_until(lambda line: context.cid in line, seconds), follower.lines[-10:]


@then("it exits 130 after Ctrl+C")
def exits_on_ctrl_c(context) -> None:
    process = context.follower.process
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=30)  # drained as a terminal would: a full pipe blocks print
    except subprocess.TimeoutExpired:
        raise AssertionError("`rbee logs --follow` still runs 30 s after Ctrl+C") from None
    assert process.returncode == 130, stderr


def _hive_worker(context) -> dict:
    status, body = http_json(f"{context.hive_url}/v1/workers/list")
    assert status == 200 and len(body["workers"]) == 1, body
    return body["workers"][0]


@then('it exits 0 and its tables list node "{node}", the worker in state "{state}" with slots "{slots}" '
      "and the tiny model")
def status_tables(context, node: str, state: str, slots: str) -> None:
    result = context.result
    assert result.returncode == 0, result.stderr
    worker_id = _hive_worker(context)["worker_id"]
    row = next((line for line in result.stdout.splitlines() if worker_id in line), "")
    assert state in row and slots in row and node in row and "tiny.gguf" in row, result.stdout
    for title in ("Nodes", "Hives", "Workers", "Models"):
        assert title in result.stdout, result.stdout


@then("it exits 0 and its JSON lists 1 node, 1 fresh hive, 1 idle worker and 1 model")
def status_json(context) -> None:
    result = context.result
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert [n["name"] for n in status["nodes"]] == ["localhost"], status["nodes"]
    assert [h["stale"] for h in status["hives"]] == [False], status["hives"]
    assert [w["state"] for w in status["workers"]] == ["idle"], status["workers"]
    assert [m["model"] for m in status["models"]] == [tiny_ref(context)], status["models"]
    context.status = status


@then("the JSON's worker shows tokens per second above 0 and 0 restarts")
def status_worker_numbers(context) -> None:
    worker = context.status["workers"][0]
    assert worker["tokens_per_second"] > 0 and worker["restarts"] == 0, worker
    assert worker["node"] == "localhost" and worker["slots_busy"] == 0, worker


# -- dashboard and status page --------------------------------------------------------------


@when("I read /metrics of the queen, the hive and the worker")
def read_all_metrics(context) -> None:
    context.families = {}
    for daemon in ("queen", "hive", "worker"):
        for family in text_string_to_metric_families(_exposition(context, daemon)):
            context.families[family.name] = family.type


def _exported_names(families: dict[str, str]) -> set[str]:
    names = set()
    for name, kind in families.items():
        names.update(name + suffix for suffix in SAMPLE_SUFFIXES.get(kind, ("",)))
    return names


def _panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard["panels"]:
        panels += [panel, *panel.get("panels", [])]
    return panels


@then("every metric name in the expressions of docs/grafana/rbee.json is among them")
def dashboard_names_exported(context) -> None:
    exported = _exported_names(context.families)
    dashboard = json.loads(DASHBOARD.read_text())
    graphs = [panel for panel in _panels(dashboard) if panel.get("type") != "row"]
    expressions = [target["expr"] for panel in graphs for target in panel.get("targets", [])]
    assert len(graphs) >= 12 and len(expressions) >= len(graphs), (len(graphs), len(expressions))
    used = {name for expr in expressions for name in re.findall(r"\brbee_[a-z0-9_]+", expr)}
    missing = sorted(used - exported)
    assert not missing, f"the dashboard plots metrics no daemon exports: {missing}"
    print(f"dashboard: {len(graphs)} panels, {len(expressions)} expressions, {len(used)} metric names, "
          "all exported")


@then("docs/monitoring.md documents every metric they export")
def monitoring_doc_complete(context) -> None:
    text = MONITORING_DOC.read_text()
    names = {name + ("_total" if kind == "counter" else "") for name, kind in context.families.items()}
    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert not missing, f"docs/monitoring.md lacks {missing}"


@then("GET /ui on the queen answers 401 with a Basic challenge")
def ui_challenge(context) -> None:
    answer = request("GET", f"{context.queen_url}/ui")
    assert answer.status == 401, answer.status
    assert answer.headers.get("WWW-Authenticate", "").startswith("Basic "), answer.headers
    assert answer.json()["error"]["code"] == "MISSING_API_KEY", answer.body


@then("GET /ui on the queen answers 200 with the queen's token as the Basic password")
def ui_basic(context) -> None:
    credentials = base64.b64encode(f"admin:{context.tokens['queen']}".encode()).decode()
    answer = request("GET", f"{context.queen_url}/ui", headers={"Authorization": f"Basic {credentials}"})
    assert answer.status == 200 and b"rbee cluster status" in answer.body, (answer.status, answer.body[:200])
    wrong = base64.b64encode(b"admin:not-the-token").decode()
    refused = request("GET", f"{context.queen_url}/ui", headers={"Authorization": f"Basic {wrong}"})
    assert refused.status == 401, refused.status


def _chromium(context, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is not installed (scripts/bootstrap.sh installs it)"
    profile = context.workdir / f"chromium-{uuid.uuid4().hex[:6]}"
    url = context.queen_url.replace("http://", f"http://rbee:{context.tokens['queen']}@") + "/ui"
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                          capture_output=True, text=True, timeout=60, check=False)


@when("headless Chromium opens /ui with the queen's token")
def chromium_opens_ui(context) -> None:
    dom = _chromium(context, "--virtual-time-budget=4000", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    context.dom = dom.stdout
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    shot = _chromium(context, "--window-size=1280,900", "--hide-scrollbars", f"--screenshot={SCREENSHOT}")
    assert shot.returncode == 0, shot.stderr[-2000:]


@then('the page lists the worker, the node "{node}" and the tiny model, refreshed without a problem')
def page_lists_worker(context, node: str) -> None:
    dom = context.dom
    worker_id = context.events[0]["worker_id"]
    for text in (worker_id, f"<td>{node}</td>", f"<td>{tiny_ref(context)}</td>"):
        assert text in dom, (text, dom[-3000:])
    assert re.search(r'<div id="problem" style="display: none;"></div>', dom), dom[:3000]
    assert re.search(r'id="updated">updated \d', dom), "the page never refreshed itself"


@then("a screenshot of the page is kept in reports/ui-status.png")
def screenshot_kept(context) -> None:
    data = SCREENSHOT.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000, len(data)
    print(f"status page screenshot: {SCREENSHOT} ({len(data)} bytes)")
