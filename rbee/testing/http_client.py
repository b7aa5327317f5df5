"""A small blocking HTTP client for tests: JSON calls and SSE streams read line by line."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    """A complete HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def _connection(base_url: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(base_url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def request(
    method: str,
    url: str,
    body: Any = None,
    raw: bytes | None = None,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> Answer:
    """Send one request (JSON body, or raw bytes) with extra `headers`; read the whole answer."""
    parts = urlsplit(url)
    conn = _connection(url, timeout)
    payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    sent = {"Content-Type": "application/json"} if payload is not None else {}
    sent.update(headers or {})
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), payload, sent)
        response = conn.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


@dataclass
class EventStream:
    """An SSE answer being read as it arrives; `close` drops the connection."""

    url: str
    body: dict[str, Any] | None = None
    method: str = "POST"
    timeout: float = 60.0
    headers_out: dict[str, str] = field(default_factory=dict)
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    """The text of each SSE comment line (`: …`) read so far."""
    done: bool = False
    saw_done: bool = False
    cut: bool = False
    """True when the server dropped the connection before the end of the chunked body."""

    def open(self) -> EventStream:
        """Send the request and read the status line and headers."""
        parts = urlsplit(self.url)
        self._conn = _connection(self.url, self.timeout)
        payload = None if self.body is None else json.dumps(self.body).encode()
        headers = {} if payload is None else {"Content-Type": "application/json"}
        self._conn.request(self.method, parts.path, payload, {**headers, **self.headers_out})
        self._response = self._conn.getresponse()
        self.status = self._response.status
        self.headers = dict(self._response.getheaders())
        return self

    def raw_body(self) -> bytes:
        """The whole body of a non-stream answer."""
        return self._response.read()

    def error_body(self) -> dict[str, Any]:
        """The JSON error of a non-200 answer."""
        return json.loads(self.raw_body())

    def next_event(self) -> dict[str, Any] | None:
        """The next `data:` event (comment lines on the way are kept in `comments`), or None at
        `[DONE]` or end of stream."""
        while not self.done:
            line = self._response.readline()
            if not line:
                self.done = True
                return None
            text = line.decode("utf-8", errors="replace").strip()
            if text.startswith(":"):
                self.comments.append(text[1:].strip())
            if not text.startswith("data:"):
                continue
            data = text[5:].strip()
            if data == "[DONE]":
                self.done = self.saw_done = True
                return None
            event = json.loads(data)
            self.events.append(event)
            return event
        return None

    def read_all(self) -> list[dict[str, Any]]:
        """Read until the stream ends; returns every event."""
        while self.next_event() is not None:
            pass
        return self.events

    def read_to_end(self, seconds: float) -> list[dict[str, Any]]:
        """Read until the stream ends, `seconds` at most in all (TimeoutError after); a server
        that drops the connection mid-stream ends it too, and sets `cut`."""
        deadline = time.monotonic() + seconds
        try:
            while not self.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the stream did not end within {seconds} s")
                self._conn.sock.settimeout(remaining)
                self.next_event()
        except (http.client.IncompleteRead, ConnectionError):
            self.done = self.cut = True
        return self.events

    def close(self) -> None:
        """Drop the connection (a client disconnect, as the server sees it)."""
        self._conn.close()
