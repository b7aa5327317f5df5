"""Request deadlines: the `X-Request-Deadline` header, parsed, checked and forwarded unchanged.

A deadline is absolute: RFC 3339 (`2026-11-21T10:00:00Z`) or epoch milliseconds
(`1795000000000`). Every hop forwards the header it received; none may extend it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from rbee.common import wire
from rbee.common.errors import ApiError

HEADER = "X-Request-Deadline"
_EPOCH_MS = re.compile(r"^[0-9]{10,16}$")
MAX_HEADER_CHARS = 64


@dataclass(frozen=True)
class Deadline:
    """An absolute deadline and the header text that carries it."""

    epoch_s: float
    header: str

    def remaining_s(self) -> float:
        """Seconds left (negative once passed)."""
        return self.epoch_s - time.time()

    def check(self) -> None:
        """Raise 504 DEADLINE_EXCEEDED once the deadline has passed."""
        if self.remaining_s() <= 0:
            raise expired()


def expired() -> ApiError:
    """The error for work whose deadline passed."""
    return wire.deadline_exceeded().to_api_error(504)


def parse(text: str) -> Deadline:
    """Parse a header value; 400 INVALID_DEADLINE when it is neither form."""
    value = text.strip()
    if len(value) <= MAX_HEADER_CHARS:
        if _EPOCH_MS.match(value):
            return Deadline(int(value) / 1000, value)
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return Deadline(moment.timestamp(), value)
    raise ApiError(
        400,
        "INVALID_DEADLINE",
        f"{HEADER} must be RFC 3339 with a time zone or epoch milliseconds",
    )


def from_request(request: web.Request, default_s: float | None = None) -> Deadline | None:
    """The request's deadline; with `default_s`, one is made up when the header is absent."""
    text = request.headers.get(HEADER)
    if text is not None:
        return parse(text)
    if default_s is None:
        return None
    moment = datetime.fromtimestamp(time.time() + default_s, UTC)
    return Deadline(moment.timestamp(), moment.isoformat(timespec="milliseconds"))
