"""Per-client request rate and concurrency caps at the queen, and throttling of repeat offenders.

Two middlewares share one `RateLimiter`:
- `failure_throttle` (before authentication): an address that keeps sending requests that fail
  authentication or validation gets 429 for the rest of the window;
- `client_limits` (after authentication): each client token has a token-bucket request rate
  and a cap on requests in flight.
Both answer 429 `RATE_LIMITED` with `Retry-After` and record an audit event.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from rbee.common.audit import Audit
from rbee.common.auth import CLIENT
from rbee.common.errors import ApiError, Handler
from rbee.common.tunables import Timings

FAILURE_STATUSES = frozenset({400, 401, 413})
MAX_TRACKED = 100_000
"""Clients and addresses remembered at once; the least recently seen are forgotten first."""


@dataclass
class _Bucket:
    tokens: float
    updated: float
    in_flight: int = 0


def rate_limited(reason: str, retry_after_s: float) -> ApiError:
    """The 429 answer, with a whole-second Retry-After of at least 1."""
    return ApiError(
        429, "RATE_LIMITED", f"too many requests: {reason}; retry later",
        headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))},
    )


class RateLimiter:
    """Token buckets and in-flight counts per client, failure counts per address."""

    def __init__(self, timings: Timings, clock: Callable[[], float] = time.monotonic) -> None:
        self._timings = timings
        self._clock = clock
        self._buckets: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def _bucket(self, client: str) -> _Bucket:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(float(self._timings.rate_limit_burst), self._clock())
            if len(self._buckets) > MAX_TRACKED:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(client)
        return bucket

    def admit(self, client: str) -> None:
        """Take one request from the client's bucket or raise RATE_LIMITED."""
        rate = self._timings.rate_limit_per_s
        bucket = self._bucket(client)
        if rate > 0:
            now = self._clock()
            bucket.tokens = min(self._timings.rate_limit_burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens < 1:
                raise rate_limited("request rate over the limit", (1 - bucket.tokens) / rate)
            bucket.tokens -= 1
        cap = self._timings.max_concurrent_per_client
        if cap and bucket.in_flight >= cap:
            raise rate_limited(f"more than {cap} requests in flight", 1)

    def started(self, client: str) -> None:
        """Count one more request in flight for the client."""
        self._bucket(client).in_flight += 1

    def finished(self, client: str) -> None:
        """Count one request of the client as finished."""
        bucket = self._buckets.get(client)
        if bucket is not None:
            bucket.in_flight = max(0, bucket.in_flight - 1)

    def _recent_failures(self, address: str) -> collections.deque[float]:
        window = self._failures.get(address)
        if window is None:
            window = self._failures[address] = collections.deque()
            if len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)
        self._failures.move_to_end(address)
        horizon = self._clock() - self._timings.failure_window_s
        while window and window[0] < horizon:
            window.popleft()
        return window

    def note_failure(self, address: str) -> None:
        """Remember that a request from `address` failed authentication or validation."""
        self._recent_failures(address).append(self._clock())

    def check_address(self, address: str) -> None:
        """Raise RATE_LIMITED while `address` has too many recent failures."""
        limit = self._timings.failure_limit
        if not limit:
            return
        window = self._recent_failures(address)
        if len(window) >= limit:
            wait = window[0] + self._timings.failure_window_s - self._clock()
            raise rate_limited("too many failed requests from this address", wait)


def failure_throttle(limiter: RateLimiter, exempt: frozenset[str], audit: Audit) -> Any:
    """Middleware (before auth) refusing addresses with too many recent failed requests."""

    @web.middleware
    async def throttle(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        address = request.remote or "unknown"
        try:
            limiter.check_address(address)
        except ApiError:
            audit("rate.limited", remote=address, path=request.path, reason="failures")
            raise
        try:
            return await handler(request)
        except ApiError as err:
            if err.status in FAILURE_STATUSES:
                limiter.note_failure(address)
            raise

    return throttle


def client_limits(limiter: RateLimiter, exempt: frozenset[str], audit: Audit) -> Any:
    """Middleware (after auth) applying each client's rate and in-flight caps."""

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        client = request.get(CLIENT, "unknown")
        try:
            limiter.admit(client)
        except ApiError:
            audit("rate.limited", client=client, remote=request.remote, path=request.path, reason="rate")
            raise
        limiter.started(client)
        try:
            return await handler(request)
        finally:
            limiter.finished(client)

    return limit
