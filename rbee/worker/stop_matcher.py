"""Streaming detection of stop sequences: text is released only once it cannot start one."""

from __future__ import annotations


class StopMatcher:
    """Feeds generated text through, holding back any tail that might begin a stop sequence."""

    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add generated text; return what is safe to emit now (empty once stopped)."""
        if self.stopped:
            return ""
        self._pending += text
        if not self._stops:
            released, self._pending = self._pending, ""
            return released
        hits = [i for i in (self._pending.find(s) for s in self._stops) if i >= 0]
        if hits:
            self.stopped = True
            released, self._pending = self._pending[: min(hits)], ""
            return released
        keep = self._longest_stop_prefix_suffix()
        cut = len(self._pending) - keep
        released, self._pending = self._pending[:cut], self._pending[cut:]
        return released

    def flush(self) -> str:
        """Release whatever is held back when generation ends without a stop."""
        released, self._pending = ("" if self.stopped else self._pending), ""
        return released

    def _longest_stop_prefix_suffix(self) -> int:
        """Length of the longest suffix of the pending text that is a prefix of a stop."""
        best = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self._pending)), best, -1):
                if self._pending.endswith(stop[:size]):
                    best = size
                    break
        return best
