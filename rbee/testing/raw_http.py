"""Raw-socket HTTP for the hostile-input tests: bytes sent exactly as given, the answer (if any)
read until the server closes the connection or a timeout passes."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RawAnswer:
    """What the server sent back before it closed (or before the wait ended)."""

    data: bytes
    closed_after_s: float | None
    """Seconds from the last byte sent until the server closed; None when it was still open."""

    @property
    def status(self) -> int | None:
        """The status of the first answer, if one arrived."""
        line = self.data.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else None

    def json(self) -> Any:
        """The first answer's body as JSON."""
        return json.loads(self.data.split(b"\r\n\r\n", 1)[1])


def connect(base_url: str, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to the host and port of `base_url`."""
    parts = urlsplit(base_url)
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def read_until_closed(sock: socket.socket, wait_s: float) -> RawAnswer:
    """Read what arrives until the server closes the connection or `wait_s` passes."""
    start, data = time.monotonic(), b""
    sock.settimeout(wait_s)
    try:
        while chunk := sock.recv(65536):
            data += chunk
            sock.settimeout(max(0.01, wait_s - (time.monotonic() - start)))
    except TimeoutError:
        return RawAnswer(data, None)
    except ConnectionResetError:
        pass
    return RawAnswer(data, time.monotonic() - start)


def exchange(base_url: str, *pieces: bytes, pause_s: float = 0.0, wait_s: float = 5.0) -> RawAnswer:
    """Send `pieces` on a new connection (`pause_s` between them), then read until closed."""
    with connect(base_url) as sock:
        for index, piece in enumerate(pieces):
            if index and pause_s:
                time.sleep(pause_s)
            sock.sendall(piece)
        return read_until_closed(sock, wait_s)


def head(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    """A request line and headers (Host included), ended by the blank line."""
    lines = [f"{method} {path} HTTP/1.1", "Host: rbee", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
