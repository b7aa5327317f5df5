"""Prometheus metrics every daemon shares: a registry per application, the request middleware,
the `/metrics` handler and a sliding-window throughput meter.

Label values are always from a closed set: a route's pattern (never the raw path), an HTTP
method from the standard list, a status code, an error code of rbee's own. Nothing a client
types ends up in a label.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from rbee.common import log_context
from rbee.common.errors import CLIENT_CLOSED, CORRELATION_ID, ApiError, Handler, client_gone

log = logging.getLogger("rbee.access")
disable_created_metrics()  # no `*_created` series: every rbee counter starts with its process

METRICS_PATH = "/metrics"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REJECTION_STATUSES = frozenset({429, 503, 507})
"""Statuses that mean "not now": rate limits, no capacity or draining, no resources."""
UNMATCHED = "unmatched"
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,47}$")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
THROUGHPUT_WINDOW_S = 10.0


class _Scraped(Collector):
    """Metrics read from live state at scrape time."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()

    def describe(self) -> Iterable[Metric]:
        return ()


class DaemonMetrics:
    """One daemon's registry: every name starts with `rbee_<daemon>_`."""

    def __init__(self, daemon: str) -> None:
        self.prefix = f"rbee_{daemon}_"
        self.registry = CollectorRegistry()
        self.requests = self.counter("http_requests_total", "HTTP requests answered, by route pattern and "
                                     "status (499: the client went away)", ("method", "route", "status"))
        self.request_seconds = self.histogram("http_request_duration_seconds", "Time to answer a request "
                                              "(a stream: until its end), by route pattern", ("route",))
        self.rejections = self.counter("admission_rejections_total", "Requests refused for now (429, 503, "
                                       "507), by error code", ("reason",))
        self.auth_failures = self.counter("auth_failures_total", "Requests refused for a missing or wrong "
                                          "token, by error code", ("reason",))

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        """A counter in this registry; `name` without the prefix."""
        return Counter(self.prefix + name, doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        """A gauge in this registry; `name` without the prefix."""
        return Gauge(self.prefix + name, doc, labels, registry=self.registry)

    def histogram(
        self, name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = LATENCY_BUCKETS
    ) -> Histogram:
        """A histogram in this registry; `name` without the prefix."""
        return Histogram(self.prefix + name, doc, labels, registry=self.registry, buckets=buckets)

    def scraped(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Register metrics computed from live state each time /metrics is read."""
        self.registry.register(_Scraped(collect))

    def answered(self, request: web.Request, status: int, seconds: float) -> None:
        """Count one answered request."""
        route = route_of(request)
        method = request.method if request.method in METHODS else "OTHER"
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def refused(self, err: ApiError) -> None:
        """Count a refusal that is an auth failure or an admission rejection."""
        reason = err.code if _CODE.match(err.code) else "OTHER"
        if err.status == 401:
            self.auth_failures.labels(reason).inc()
        elif err.status in REJECTION_STATUSES:
            self.rejections.labels(reason).inc()


METRICS = web.AppKey("metrics", DaemonMetrics)


def route_of(request: web.Request) -> str:
    """The pattern of the route that matched (`/v2/tasks/{task_id}`), or `unmatched`."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def observe_requests(metrics: DaemonMetrics, quiet_paths: frozenset[str]) -> Any:
    """Middleware (right after the error middleware) that binds the correlation id for the log,
    counts and times every request, and logs one access line per request (DEBUG for the
    `quiet_paths` that probes and heartbeats call all the time, INFO otherwise)."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        log_context.bind(correlation_id=request.get(CORRELATION_ID))
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except ApiError as err:
            status = err.status
            metrics.refused(err)
            raise
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        except ConnectionResetError:
            status = CLIENT_CLOSED if client_gone(request) else 500
            raise
        finally:
            seconds = time.perf_counter() - started
            metrics.answered(request, status, seconds)
            level = logging.DEBUG if request.path in quiet_paths else logging.INFO
            log.log(level, "%s %s %d in %.1f ms", request.method, request.path, status, seconds * 1000)

    return observe


async def metrics_handler(request: web.Request) -> web.Response:
    """GET /metrics: the daemon's registry in Prometheus' text format (or OpenMetrics, when the
    scraper's Accept header asks for it)."""
    encode, content_type = choose_encoder(request.headers.get("Accept"))
    return web.Response(body=encode(request.app[METRICS].registry), headers={"Content-Type": content_type})


def public_paths(base: frozenset[str], metrics_public: bool) -> frozenset[str]:
    """The routes answering without a token: `base`, plus /metrics when configured public."""
    return (base | {METRICS_PATH}) if metrics_public else base


class Throughput:
    """Tokens per second over the last `window_s` seconds, from counts added as they happen."""

    def __init__(
        self, window_s: float = THROUGHPUT_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window_s = window_s
        self._clock = clock
        self._events: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, count: int = 1) -> None:
        """Record `count` tokens now."""
        self._events.append((self._clock(), count))
        self._trim()

    def rate(self) -> float:
        """Tokens per second over the window."""
        self._trim()
        return sum(count for _, count in self._events) / self._window_s

    def _trim(self) -> None:
        oldest = self._clock() - self._window_s
        while self._events and self._events[0][0] < oldest:
            self._events.popleft()
