"""Steps of features/705: the queen's Prometheus service discovery, checked by its JSON and by a
real Prometheus server running the scrape config of docs/monitoring.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

from behave import given, then, when

from rbee.queen.api import openapi
from rbee.testing.cluster import hive_daemon, wait_until
from rbee.testing.http_client import request
from rbee.testing.prometheus import PrometheusServer
from steps.common import matches_schema, started

CHECKOUT = Path(__file__).resolve().parents[1]
TARGETS = "/v2/prometheus/targets"
DOC_CONFIG = re.compile(r"```yaml\n# rbee scrape config\n(.*?)```", re.S)
DASHBOARD = CHECKOUT / "docs" / "grafana" / "rbee.json"
DASHBOARD_ALL_NODES = ".+"
"""The dashboard's `node` variable with every node picked (its allValue)."""


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _hive_worker(context) -> dict:
    answer = request("GET", f"{context.hive_url}/v1/workers/list", headers=_bearer(context.tokens["hive"]))
    workers = answer.json()["workers"]
    assert len(workers) == 1, workers
    return workers[0]


def _address(url: str) -> str:
    return url.split("://", 1)[1].rstrip("/")


@given("a hive with those tokens on free loopback ports")
def hive_with_tokens(context) -> None:
    secrets = context.workdir / "secrets"
    flags = ["--token-file", str(secrets / "hive.token"), "--queen-token-file", str(secrets / "queen.token"),
             "--worker-token-file", str(secrets / "worker.token")]
    context.hive = started(context, hive_daemon(context.workdir, flags))
    context.hive_url = context.hive.base_url


@then("GET {first} and GET {second} on that hive answer {status:d} without a token")
@then("GET {first} on that hive answers {status:d} without a token")
def hive_answers(context, first: str, status: int, second: str | None = None) -> None:
    for path in filter(None, (first, second)):
        answer = request("GET", context.hive_url + path)
        assert answer.status == status, (path, answer.status, answer.body)


@when("I ask the queen for its Prometheus targets with the queen's token")
def ask_targets(context) -> None:
    context.answer = request("GET", context.queen_url + TARGETS, headers=_bearer(context.tokens["queen"]))


@then('the targets are the queen, the hive of node "{node}" and the hive\'s worker with its model and id')
def targets_listed(context, node: str) -> None:
    worker = _hive_worker(context)
    groups = context.answer.json()
    assert groups == [
        {"targets": [_address(context.queen_url)], "labels": {"role": "queen", "__scheme__": "http"}},
        {"targets": [_address(context.hive_url)],
         "labels": {"role": "hive", "node": node, "__scheme__": "http"}},
        {"targets": [_address(worker["url"])],
         "labels": {"role": "worker", "node": node, "model": worker["model"], "worker": worker["worker_id"],
                    "__scheme__": "http"}},
    ], json.dumps(groups)
    schema = openapi.document()["paths"][TARGETS]["get"]["responses"]["200"]["content"]["application/json"]
    assert matches_schema(schema["schema"], groups)


@then('GET {path} on the queen answers {status:d} with the key "{name}"')
def answers_with_key(context, path: str, status: int, name: str) -> None:
    answer = request("GET", context.queen_url + path, headers=_bearer(context.api_keys[name]))
    assert answer.status == status, (answer.status, answer.body)


def _documented_config(context) -> str:
    """docs/monitoring.md's scrape config aimed at this scenario's queen and token files, scraping
    and refreshing every second."""
    found = DOC_CONFIG.search((CHECKOUT / "docs" / "monitoring.md").read_text())
    assert found, "docs/monitoring.md has no `# rbee scrape config` yaml block"
    secrets = context.workdir / "secrets"
    text = found.group(1).replace("http://queen.lan:8080", context.queen_url)
    text = text.replace("/etc/rbee/tokens/", f"{secrets}/")
    text = text.replace("refresh_interval: 30s", "refresh_interval: 1s")
    return "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n" + text


@when("Prometheus runs the scrape config of docs/monitoring.md against the queen")
def run_prometheus(context) -> None:
    context.prometheus = PrometheusServer(context.workdir, _documented_config(context)).start()
    context.daemons.append(context.prometheus)


@then('Prometheus scrapes the queen, the hive and the worker with health "up" within {seconds:d} seconds')
def all_up(context, seconds: int) -> None:
    worker = _hive_worker(context)
    wanted = {("rbee-queen", _address(context.queen_url)), ("rbee-hives", _address(context.hive_url)),
              ("rbee-workers", _address(worker["url"]))}
    seen: list[dict] = []

    def up() -> bool:
        nonlocal seen
        seen = context.prometheus.active_targets()
        healthy = {(t["labels"]["job"], t["labels"]["instance"]) for t in seen if t["health"] == "up"}
        return healthy == wanted and len(seen) == len(wanted)

    assert wait_until(up, seconds, 0.5), (json.dumps(seen)[:3000], context.prometheus.log_tail())


@then('Prometheus\'s series up{{role="worker"}} carries the worker\'s node, model and id')
def worker_series(context) -> None:
    worker = _hive_worker(context)
    result: list[dict] = []

    def found() -> bool:
        nonlocal result
        status, body = context.prometheus.api("query", query='up{role="worker"}')
        result = body.get("data", {}).get("result", []) if status == 200 else []
        return bool(result)

    assert wait_until(found, 10, 0.5), result
    assert [series["metric"] for series in result] == [{
        "__name__": "up", "job": "rbee-workers", "instance": _address(worker["url"]), "role": "worker",
        "node": "localhost", "model": worker["model"], "worker": worker["worker_id"]}], result
    assert result[0]["value"][1] == "1", result


@then("every expression of docs/grafana/rbee.json evaluates in Prometheus")
def dashboard_evaluates(context) -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    expressions = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    assert expressions
    failed = {}
    for expr in expressions:
        status, body = context.prometheus.api("query", query=expr.replace("$node", DASHBOARD_ALL_NODES))
        if status != 200 or body.get("status") != "success":
            failed[expr] = body.get("error", status)
    assert not failed, failed
