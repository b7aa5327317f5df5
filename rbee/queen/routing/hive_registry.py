"""The hives that send the queen heartbeats, and which of them have gone quiet."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from rbee.common.audit import Audit, no_audit
from rbee.common.tunables import Timings

log = logging.getLogger(__name__)


@dataclass(eq=False)
class HiveView:
    """One hive as the queen sees it."""

    hive_url: str
    version: str
    last_seen: float
    stale: bool = False

    def to_wire(self, now: float) -> dict[str, Any]:
        """JSON form."""
        return {
            "hive_url": self.hive_url,
            "version": self.version,
            "seconds_since_heartbeat": round(now - self.last_seen, 3),
            "stale": self.stale,
        }


class HiveRegistry:
    """Heartbeats update `last_seen`; only the watcher task flips `stale`."""

    def __init__(self, timings: Timings, audit: Audit = no_audit) -> None:
        self._timings = timings
        self._audit = audit
        self._hives: dict[str, HiveView] = {}

    def heard_from(self, hive_url: str, version: str) -> None:
        """Record a heartbeat."""
        hive = self._hives.get(hive_url)
        if hive is None:
            self._hives[hive_url] = HiveView(hive_url, version, time.monotonic())
            log.info("hive %s registered by heartbeat", hive_url)
            self._audit("node.registered", hive_url=hive_url, version=version)
        else:
            hive.last_seen = time.monotonic()
            hive.version = version

    def is_stale(self, hive_url: str) -> bool:
        """True when the hive is known and has missed its heartbeats."""
        hive = self._hives.get(hive_url)
        return hive is not None and hive.stale

    def all(self) -> list[HiveView]:
        """Every hive that ever sent a heartbeat."""
        return list(self._hives.values())

    def check(self, now: float) -> None:
        """Mark hives stale or recovered; logs each transition once."""
        for hive in self._hives.values():
            silent = now - hive.last_seen
            stale = silent > self._timings.stale_after_s
            if stale and not hive.stale:
                log.warning("hive %s is stale: no heartbeat for %.1fs", hive.hive_url, silent)
                self._audit("node.stale", hive_url=hive.hive_url, silent_s=round(silent, 1))
            elif hive.stale and not stale:
                log.info("hive %s recovered: heartbeats are back", hive.hive_url)
                self._audit("node.recovered", hive_url=hive.hive_url)
            hive.stale = stale

    async def watch(self) -> None:
        """The owner task of the `stale` flags: checks at twice the heartbeat rate."""
        while True:
            self.check(time.monotonic())
            await asyncio.sleep(self._timings.heartbeat_interval_s / 2)
