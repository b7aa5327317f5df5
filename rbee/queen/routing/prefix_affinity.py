"""Prefix affinity: send a request to the worker most likely to hold its prompt's prefix.

A worker keeps the KV cells of finished requests and starts a new one from the longest prefix
it holds (rbee/worker/prefix_cache.py), so a chat's next turn is fastest on the worker that served
the turn before. The queen cannot tokenize, so it knows a prompt by hashes of its text's first
blocks: each key hashes the text up to the end of one more block. It remembers which worker last
served each key (least recently used keys forgotten first) and prefers the worker of the longest
key a request shares, unless that worker is full or much busier than the least busy one.
"""

from __future__ import annotations

import collections
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from rbee.common.tunables import Timings


def prompt_text(body: Mapping[str, Any]) -> str:
    """The request's prompt as text that a later turn of the same chat starts with: the prompt,
    or one JSON line per message (a line does not change when messages are appended)."""
    if body.get("prompt") is not None:
        return str(body["prompt"])
    return "\n".join(json.dumps(message, sort_keys=True) for message in body.get("messages") or ())


class PrefixAffinity:
    """Which worker last served each prompt prefix; used only from the queen's event loop."""

    def __init__(self, timings: Timings) -> None:
        self._block_chars = timings.prefix_affinity_block_chars
        self._blocks = timings.prefix_affinity_blocks
        self._entries = timings.prefix_affinity_entries
        self._workers: collections.OrderedDict[tuple[str, bytes], str] = collections.OrderedDict()

    def keys(self, body: Mapping[str, Any]) -> tuple[bytes, ...]:
        """One key per whole block at the start of the request's prompt, shortest first."""
        data = prompt_text(body).encode()
        digest = hashlib.blake2b(digest_size=16)
        keys = []
        for start in range(0, min(len(data), self._blocks * self._block_chars), self._block_chars):
            block = data[start:start + self._block_chars]
            if len(block) < self._block_chars:
                break
            digest.update(block)
            keys.append(digest.copy().digest())
        return tuple(keys)

    def worker_of(self, pool: str, keys: tuple[bytes, ...]) -> str | None:
        """The worker that last served the longest of `keys` in `pool`, if any."""
        for key in reversed(keys):
            worker_id = self._workers.get((pool, key))
            if worker_id is not None:
                return worker_id
        return None

    def served(self, pool: str, keys: tuple[bytes, ...], worker_id: str) -> None:
        """`worker_id` serves a request with these keys: it holds their prefixes from now on."""
        for key in keys:
            self._workers[(pool, key)] = worker_id
            self._workers.move_to_end((pool, key))
        while len(self._workers) > self._entries:
            self._workers.popitem(last=False)
