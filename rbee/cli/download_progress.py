"""A download's progress event stream (from a hive, or relayed by the queen) as a progress bar."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

import aiohttp
from tqdm import tqdm

from rbee.cli.failures import CommandFailed, reaching
from rbee.common import sse, wire

EXIT_INTERRUPTED = 130


def follow(call: Coroutine[Any, Any, int], daemon: str, url: str) -> int:
    """Run `call`, which follows a download's progress stream from the `daemon` at `url`: a cut
    stream is a CommandFailed; Ctrl+C stops following (exit 130) while the hive carries on."""
    try:
        with reaching(daemon, url):
            return asyncio.run(call)
    except sse.StreamTruncated:
        raise CommandFailed(f"the {daemon} closed the progress stream before the download ended") from None
    except KeyboardInterrupt:
        print("\nstopped following the download; the hive carries on (run the command again to "
              "follow it)", file=sys.stderr)
        return EXIT_INTERRUPTED


async def show_progress(response: aiohttp.ClientResponse, label: str, total: int | None) -> wire.DownloadDone:
    """Draw the bar on stderr until the `done` event (returned); a `failed` event raises its error."""
    with tqdm(desc=label.rsplit("/", 1)[-1][:40], total=total, unit="B", unit_scale=True,
              unit_divisor=1024, file=sys.stderr, mininterval=0.2) as bar:
        async for received in sse.iter_events(response):
            event = wire.parse_download_event(received)
            if isinstance(event, wire.DownloadFailed):
                bar.refresh()
                raise event.to_api_error()
            _draw(bar, event)
            if isinstance(event, wire.DownloadDone):
                return event
    raise sse.StreamTruncated("progress stream ended without a result")


def _draw(bar: tqdm, event: wire.DownloadProgress | wire.DownloadDone) -> None:
    total = event.bytes_total
    if total and bar.total != total:
        bar.total = total
    bar.n = event.bytes_done
    state = event.state
    if state == "retrying":
        bar.set_postfix_str(f"retrying after attempt {event.attempt}: {event.last_error or ''}",
                            refresh=False)
    elif state in ("downloading", "done"):
        bar.set_postfix_str("", refresh=False)
    bar.refresh()
