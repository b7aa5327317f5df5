"""Bounds on what one HTTP connection may take from a daemon: connections per client address,
time to send a request's headers and its body.

`ConnectionGuard.protocol_factory` wraps aiohttp's per-connection protocol: a connection over the
address's cap is answered 503 `TOO_MANY_CONNECTIONS` and closed; a connection whose request line
and headers have not all arrived `header_timeout_s` after its accept (or after the first byte of a
later request) is closed. `read_deadline` (a middleware) ends the header clock when aiohttp hands
over a request and reads its body under `body_timeout_s` (slower: 408 and closed). Idle time
between requests is aiohttp's own `keepalive_timeout`. A response being sent, however long it
streams, is never bounded. Each refusal is logged once per address per `refusal_log_window_s`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http import HttpProcessingError

from rbee.common.errors import ApiError, Handler, correlation_id_of, error_body, error_response
from rbee.common.tunables import HttpLimits

log = logging.getLogger(__name__)
CLOSE_GRACE_S = 1.0
"""How long a closed connection may take to flush its last answer (or a TLS goodbye) before it is cut."""
BODY_ENCODINGS = frozenset({"identity", "gzip", "deflate"})
"""Content-Encodings of a request body that aiohttp decodes (before the body size cap applies)."""
LOG_MEMORY = 4096
"""Addresses whose last refusal log time is remembered; the oldest are forgotten beyond this."""


class RefusalLog:
    """Logs a refusal at most once per client address and kind per window, with how many were left out."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._quiet: Counter[tuple[str, str]] = Counter()

    def warn(self, address: str, kind: str, what: str) -> None:
        """Log `what` about `address` unless a refusal of this `kind` from it was logged within the window."""
        key, now = (address, kind), self._clock()
        if now - self._last.get(key, -self._window_s) < self._window_s:
            self._quiet[key] += 1
            return
        quiet = self._quiet.pop(key, 0)
        self._last.pop(key, None)
        self._last[key] = now
        if len(self._last) > LOG_MEMORY:
            del self._last[next(iter(self._last))]
        more = f" ({quiet} more since the last report)" if quiet else ""
        log.warning("connection from %s: %s%s", address, what, more)


class ProtocolLog(logging.LoggerAdapter):
    """aiohttp's server log, where a request it could not parse (bad framing, a header too long)
    is one rate-limited line naming the error's kind: never a traceback, never the bytes it quotes
    (they may hold a token)."""

    def __init__(self, refusals: RefusalLog) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._refusals = refusals

    def log(self, level: int, msg: object, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        """Log as aiohttp asks, except a malformed request (see the class)."""
        if isinstance(exc_info, HttpProcessingError) and level >= logging.WARNING:
            address = str(args[0]) if args else "unknown"
            what = f"malformed request ({type(exc_info).__name__}): answered {exc_info.code}, closed"
            self._refusals.warn(address, "malformed", what)
            return
        super().log(level, msg, *args, exc_info=exc_info, **kwargs)


def _address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "local"


def _refusal(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps(error_body(status, code, message, str(uuid.uuid4()))).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Retry-After: 1\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class GuardedConnection(asyncio.Protocol):
    """One connection: counts it against its address and runs its header clock, passing every
    event on to aiohttp's protocol (`inner`)."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._address = ""
        self._admitted = False
        self._busy = False
        self._header_clock: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment] # uvloop's is not an asyncio.Transport
        self._address = _address(transport)
        if not self._guard.admit(self._address):
            transport.write(self._guard.refusal())
            close_soon(self._transport)
            return
        self._admitted = True
        self._guard.connections[transport] = self
        self._inner.connection_made(transport)
        self._start_header_clock()

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if not self._busy and self._header_clock is None:
            self._start_header_clock()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        if not self._admitted:
            return
        self._guard.release(self._address, self._transport)
        self._inner.connection_lost(exc)

    def headers_received(self) -> None:
        """aiohttp has parsed a request's headers: its header clock stops."""
        self._busy = True
        self._stop_header_clock()

    def request_done(self) -> None:
        """The request was answered: the next byte starts the next request's header clock."""
        self._busy = False

    def refused(self, kind: str, what: str) -> None:
        """Log (rate-limited) why this connection is refused, and close it."""
        self._guard.refusals.warn(self._address, kind, what)
        if self._transport is not None:
            close_soon(self._transport)

    def _start_header_clock(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = self._guard.limits.header_timeout_s
        what = f"request headers not received within {timeout:g} s: closed"
        self._header_clock = loop.call_later(timeout, self.refused, "slow headers", what)

    def _stop_header_clock(self) -> None:
        if self._header_clock is not None:
            self._header_clock.cancel()
            self._header_clock = None


def close_soon(transport: asyncio.Transport) -> None:
    """Close `transport` once what was written to it is sent, and cut it if that takes too long."""
    loop = asyncio.get_running_loop()
    loop.call_soon(transport.close)
    loop.call_later(CLOSE_GRACE_S, transport.abort)  # type: ignore[attr-defined]


class ConnectionGuard:
    """The connections of one daemon's listener, by client address."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.refusals = RefusalLog(limits.refusal_log_window_s)
        self.server_log = ProtocolLog(self.refusals)
        self.connections: dict[asyncio.BaseTransport, GuardedConnection] = {}
        self._per_address: Counter[str] = Counter()

    def refusal(self) -> bytes:
        """The whole answer to a connection over its address's cap."""
        message = f"this address holds {self.limits.max_connections_per_address} connections already"
        return _refusal(503, "Service Unavailable", "TOO_MANY_CONNECTIONS", message)

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for `loop.create_server` that guards each of `inner`'s connections."""
        return lambda: GuardedConnection(self, inner())

    def admit(self, address: str) -> bool:
        """Count a new connection from `address`, or refuse it (logged) when the address is at its cap."""
        cap = self.limits.max_connections_per_address
        if self._per_address[address] >= cap:
            self.refusals.warn(address, "too many", f"more than {cap} connections at once: refused")
            return False
        self._per_address[address] += 1
        return True

    def release(self, address: str, transport: asyncio.BaseTransport | None) -> None:
        """A connection from `address` closed."""
        self.connections.pop(transport, None)  # type: ignore[arg-type]
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]

    def open_from(self, address: str) -> int:
        """Connections `address` holds now."""
        return self._per_address[address]


CONNECTION_GUARD = web.AppKey("connection_guard", ConnectionGuard)


@web.middleware
async def read_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stop the connection's header clock and read the body within `body_timeout_s` before the
    handler runs (handlers then get the body already read). Without a guard (an application not
    served by `rbee.common.daemon`) it only calls the handler."""
    guard = request.config_dict.get(CONNECTION_GUARD)
    connection = guard.connections.get(request.transport) if guard and request.transport else None
    if guard is None or connection is None:
        return await handler(request)
    connection.headers_received()
    timeout = guard.limits.body_timeout_s
    try:
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in BODY_ENCODINGS:
            message = "Content-Encoding must be gzip, deflate or identity"
            raise ApiError(415, "UNSUPPORTED_CONTENT_ENCODING", message, {"field": "Content-Encoding"})
        if request.body_exists:
            try:
                async with asyncio.timeout(timeout):
                    await request.read()
            except TimeoutError:
                message = f"the request body did not arrive within {timeout:g} s"
                error = ApiError(408, "REQUEST_TIMEOUT", message)
                return await _answer_and_close(request, connection, error, "slow body")
            except web.HTTPRequestEntityTooLarge as exc:
                raise ApiError(413, "BODY_TOO_LARGE", "request body is too large") from exc
            except web.RequestPayloadError:
                error = ApiError(400, "INVALID_BODY", "the request body does not match its framing or "
                                 "Content-Encoding", {"field": "body"})
                return await _answer_and_close(request, connection, error, "bad body")
        return await handler(request)
    finally:
        connection.request_done()


async def _answer_and_close(
    request: web.Request, connection: GuardedConnection, error: ApiError, kind: str
) -> web.Response:
    """Send `error` and close the connection: the rest of its body is not waited for."""
    response = error_response(error, correlation_id_of(request))
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    connection.refused(kind, f"{error.message}: answered {error.status}, closed")
    request.protocol.force_close()
    return response


class GuardedSite(web.BaseSite):
    """A TCP listener (plain, or TLS with `ssl_context`) whose connections pass through `guard`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host, self._port, self._guard = host, port, guard

    @property
    def name(self) -> str:
        """The listener's URL."""
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        """Listen (OSError when the address cannot be bound)."""
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server), self._host, self._port,
            ssl=self._ssl_context, backlog=self._backlog)
