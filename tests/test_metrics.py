"""The shared metrics pieces on a real aiohttp server on loopback: request counting by route
pattern, refusals by reason, /metrics behind the token (or public), Basic auth on /ui, and the
throughput window. The output is read with prometheus-client's own parser."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from rbee.common.auth import Keyring, auth_middleware
from rbee.common.daemon import new_app
from rbee.common.errors import ApiError
from rbee.common.metrics import (
    METRICS,
    METRICS_PATH,
    DaemonMetrics,
    Throughput,
    metrics_handler,
    observe_requests,
    public_paths,
)
from rbee.common.secrets import generate_token, write_token_file

TOKEN_HEADER = "Authorization"


async def _item(request: web.Request) -> web.Response:
    return web.json_response({"item": request.match_info["item_id"]})


async def _busy(request: web.Request) -> web.Response:
    raise ApiError(503, "ALL_SLOTS_BUSY", "no slot", headers={"Retry-After": "1"})


async def _invalid(request: web.Request) -> web.Response:
    raise ApiError(400, "INVALID_REQUEST", "bad")


async def _page(request: web.Request) -> web.Response:
    return web.Response(text="<html>page</html>", content_type="text/html")


def _keyring(tmp_path: Path) -> tuple[Keyring, str]:
    token = generate_token()
    write_token_file(tmp_path / "own.token", token)
    keyring = Keyring("queen", {"queen": tmp_path / "own.token"})
    keyring.load()
    return keyring, token


def _app(keyring: Keyring, metrics_public: bool = False) -> web.Application:
    metrics = DaemonMetrics("test")
    public = public_paths(frozenset({"/health"}), metrics_public)
    app = new_app([observe_requests(metrics, frozenset()), auth_middleware(keyring, public)])
    app[METRICS] = metrics
    app.router.add_get("/items/{item_id}", _item)
    app.router.add_get("/busy", _busy)
    app.router.add_get("/invalid", _invalid)
    app.router.add_get("/ui", _page)
    app.router.add_get(METRICS_PATH, metrics_handler)
    return app


def _calls(app: web.Application, calls: list[tuple[str, str, dict[str, str]]]) -> list[tuple[int, str, str]]:
    """(status, body, WWW-Authenticate) of each call, made in order against a live server."""

    async def run() -> list[tuple[int, str, str]]:
        answers = []
        async with TestServer(app) as server, aiohttp.ClientSession() as session:
            for method, path, headers in calls:
                async with session.request(method, server.make_url(path), headers=headers) as response:
                    answers.append((response.status, await response.text(),
                                    response.headers.get("WWW-Authenticate", "")))
        return answers

    return asyncio.run(run())


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_route_pattern_method_and_status_never_by_raw_path(tmp_path):
    keyring, token = _keyring(tmp_path)
    auth = {TOKEN_HEADER: f"Bearer {token}"}
    answers = _calls(_app(keyring), [
        ("GET", "/items/secret-item-42", auth),
        ("GET", "/items/another", auth),
        ("GET", "/no/such/path/secret-path", auth),
        ("PROPFIND", "/items/x", auth),
        ("GET", METRICS_PATH, auth),
    ])
    assert [status for status, _, _ in answers[:4]] == [200, 200, 404, 405]
    text = answers[-1][1]
    samples = _samples(text)
    requests = "rbee_test_http_requests_total"
    assert _value(samples, requests, method="GET", route="/items/{item_id}", status="200") == 2
    assert _value(samples, requests, method="GET", route="unmatched", status="404") == 1
    assert _value(samples, requests, method="OTHER", route="unmatched", status="405") == 1
    assert _value(samples, "rbee_test_http_request_duration_seconds_count", route="/items/{item_id}") == 2
    assert "secret" not in text and "PROPFIND" not in text


def test_refusals_are_counted_as_auth_failures_or_admission_rejections_by_error_code(tmp_path):
    keyring, token = _keyring(tmp_path)
    auth = {TOKEN_HEADER: f"Bearer {token}"}
    answers = _calls(_app(keyring), [
        ("GET", "/items/a", {}),
        ("GET", "/items/a", {TOKEN_HEADER: "Bearer wrong-token-0123456789"}),
        ("GET", "/items/a", {TOKEN_HEADER: "Bearer wrong-token-0123456789"}),
        ("GET", "/busy", auth),
        ("GET", "/invalid", auth),
        ("GET", METRICS_PATH, auth),
    ])
    samples = _samples(answers[-1][1])
    assert _value(samples, "rbee_test_auth_failures_total", reason="MISSING_API_KEY") == 1
    assert _value(samples, "rbee_test_auth_failures_total", reason="INVALID_API_KEY") == 2
    assert _value(samples, "rbee_test_admission_rejections_total", reason="ALL_SLOTS_BUSY") == 1
    rejected = {dict(labels)["reason"] for name, labels in samples
                if name == "rbee_test_admission_rejections_total"}
    assert rejected == {"ALL_SLOTS_BUSY"}, "a 400 is not an admission rejection"


def test_metrics_need_the_token_unless_configured_public(tmp_path):
    keyring, _ = _keyring(tmp_path)
    guarded = _calls(_app(keyring), [("GET", METRICS_PATH, {})])
    public = _calls(_app(keyring, metrics_public=True), [("GET", METRICS_PATH, {}), ("GET", "/items/a", {})])
    assert guarded[0][0] == 401
    assert public[0][0] == 200 and "rbee_test_http_requests_total" in public[0][1]
    assert public[1][0] == 401


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(tmp_path):
    keyring, token = _keyring(tmp_path)

    async def run() -> tuple[str, str]:
        headers = {TOKEN_HEADER: f"Bearer {token}", "Accept": "application/openmetrics-text; version=1.0.0"}
        async with TestServer(_app(keyring)) as server, aiohttp.ClientSession() as session:
            async with session.get(server.make_url(METRICS_PATH), headers=headers) as response:
                return response.headers["Content-Type"], await response.text()

    content_type, body = asyncio.run(run())
    assert content_type.startswith("application/openmetrics-text") and body.rstrip().endswith("# EOF")


def test_the_status_page_takes_the_token_as_basic_password_and_challenges_with_basic(tmp_path):
    keyring, token = _keyring(tmp_path)

    def basic(password: str) -> dict[str, str]:
        return {TOKEN_HEADER: "Basic " + base64.b64encode(f"anyone:{password}".encode()).decode()}

    answers = _calls(_app(keyring), [
        ("GET", "/ui", {}),
        ("GET", "/ui", basic(token)),
        ("GET", "/ui", basic("not-the-token")),
        ("GET", "/ui", {TOKEN_HEADER: f"Bearer {token}"}),
        ("GET", "/items/a", basic(token)),
    ])
    (missing, _, challenge), (ok, page, _), (wrong, _, _), (bearer, _, _), (api, _, api_challenge) = answers
    assert (missing, ok, wrong, bearer) == (401, 200, 401, 200)
    assert challenge.startswith("Basic ") and "page" in page
    assert api == 401 and api_challenge.startswith("Bearer"), "Basic auth must stay limited to /ui"


def test_throughput_counts_only_the_last_window():
    now = [100.0]
    meter = Throughput(window_s=10.0, clock=lambda: now[0])
    for _ in range(30):
        meter.add()
    assert meter.rate() == 3.0
    now[0] += 5
    meter.add(10)
    assert meter.rate() == 4.0
    now[0] += 6
    assert meter.rate() == 1.0
    now[0] += 11
    assert meter.rate() == 0.0
