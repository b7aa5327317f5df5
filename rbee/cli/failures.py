"""How a keeper command fails: an exception the `rbee` catch-all (`main`) prints as `error: …` with
exit code 1, and the one message for a queen or hive that cannot be reached."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp

HINTS = {"queen": "is `rbee up` running?", "hive": "is it running?"}
"""What to check when a daemon does not answer."""


class CommandFailed(Exception):
    """A command cannot go on; the message says why (and what to do)."""


@contextmanager
def reaching(daemon: str, url: str) -> Iterator[None]:
    """Inside, a failed connection to the `daemon` at `url` (or a timeout) is a CommandFailed."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CommandFailed(f"cannot reach the {daemon} at {url} ({exc or type(exc).__name__}); "
                            f"{HINTS[daemon]}") from None
