"""systemd's notification protocol (sd_notify): READY, STATUS, WATCHDOG and STOPPING.

Every call is a no-op when the process was not started with `NOTIFY_SOCKET`, so daemons
call it unconditionally.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping

import sdnotify

from rbee.common.config_env import environment

log = logging.getLogger(__name__)
MICROSECONDS = 1_000_000


class Notifier:
    """Sends sd_notify messages to the service manager, if there is one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = environment() if environ is None else environ
        self.enabled = bool(environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        for_us = not pid or pid == str(os.getpid())
        self.watchdog_interval_s = int(usec) / MICROSECONDS / 2 if usec.isdigit() and for_us else None

    def send(self, *fields: str) -> None:
        """Send `KEY=value` fields in one message."""
        if self._notifier is not None:
            self._notifier.notify("\n".join(fields))

    def ready(self, status: str) -> None:
        """The daemon serves: READY=1 with a status line."""
        self.send("READY=1", f"STATUS={status}")

    def stopping(self) -> None:
        """The daemon began to stop."""
        self.send("STOPPING=1", "STATUS=stopping")

    async def watchdog(self, healthy: Callable[[], bool], status: Callable[[], str]) -> None:
        """Pet the watchdog at half its timeout, but only while `healthy()` holds."""
        if self.watchdog_interval_s is None:
            return
        petting = True
        while True:
            if healthy():
                self.send("WATCHDOG=1", f"STATUS={status()}")
                if not petting:
                    log.info("watchdog: healthy again, petting resumed")
                petting = True
            elif petting:
                log.error("watchdog: own loops are not making progress; no longer petting")
                petting = False
            await asyncio.sleep(self.watchdog_interval_s)
