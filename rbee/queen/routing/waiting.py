"""What a request is told while it waits for a worker: its place in the admission queue with an
estimate of the wait, or how far its worker has loaded (the text of an SSE comment line).

The estimate divides the request's position by the model's recent service rate: the slots of
its workers released per second over the last `SERVICE_WINDOW_S`, measured from the oldest
release in that window up to now (so the rate decays while nothing finishes). With fewer than
two releases in the window there is no estimate and the note leaves `eta_s` out.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass

SERVICE_WINDOW_S = 60.0
"""Seconds of slot releases the service rate is measured over."""
RELEASES_KEPT = 64
"""Most recent releases kept per model."""
NOTE_INTERVAL_S = 1.0
"""Seconds between two looks at a waiting request (so at most one note a second, and a queen
holding thousands of waiting requests spends little on them); the first look is this long after
the request started waiting."""
NOTE_REPEAT_S = 5.0
"""Seconds after which an unchanged note is sent again (it also keeps idle proxies from closing)."""


@dataclass(frozen=True, slots=True)
class WaitNote:
    """One note for a waiting request: the comment's text and how long it has waited so far."""

    text: str
    waited_ms: int


class ServiceRate:
    """Slot releases of one model, for the rate at which its queue is served."""

    def __init__(self) -> None:
        self._releases: collections.deque[float] = collections.deque(maxlen=RELEASES_KEPT)

    def released(self, now: float | None = None) -> None:
        """Count one slot of the model's workers released (a request finished)."""
        self._releases.append(time.monotonic() if now is None else now)

    def per_second(self, now: float | None = None) -> float | None:
        """Releases per second over the window, or None with fewer than two in it."""
        now = time.monotonic() if now is None else now
        recent = [t for t in self._releases if now - t <= SERVICE_WINDOW_S]
        if len(recent) < 2 or now <= recent[0]:
            return None
        return (len(recent) - 1) / (now - recent[0])

    def eta_s(self, position: int, now: float | None = None) -> int | None:
        """Seconds until the request at `position` (1: next) is served, rounded up; None unknown."""
        rate = self.per_second(now)
        return None if rate is None else math.ceil(position / rate)


def queued_note(position: int, eta_s: int | None) -> str:
    """`queued position=3 eta_s=12` (no `eta_s` while the rate is unknown)."""
    return f"queued position={position}" + ("" if eta_s is None else f" eta_s={eta_s}")


def loading_note(share: float) -> str:
    """`loading 40%`: the share of the model loaded, rounded down."""
    return f"loading {math.floor(max(0.0, min(share, 1.0)) * 100)}%"


class NoteThrottle:
    """Lets a note through when its text changed or `NOTE_REPEAT_S` passed since the last one."""

    def __init__(self) -> None:
        self._last: str | None = None
        self._at = 0.0

    def admit(self, text: str | None, now: float) -> bool:
        """True when `text` should be sent now."""
        if text is None or (text == self._last and now - self._at < NOTE_REPEAT_S):
            return False
        self._last, self._at = text, now
        return True
