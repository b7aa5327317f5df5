"""Prompt-prefix reuse: what the KV cells of each sequence id hold once its generation is over.

Chat clients resend the whole conversation every turn. The batched engine keeps a finished
sequence's cells instead of clearing them, and this index remembers which tokens they hold and
when the sequence id was last used. A new request is put in the free slot whose cells hold the
longest prefix of its prompt (else the least recently used one, so cached prefixes are evicted
least recently used first), and the decode loop starts it from the longest cached prefix it can
find, in its own cells or copied from another sequence's (`plan`), decoding only the rest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SLOT_SIMILARITY = 0.1
"""The share of a prompt a free slot's cells must hold for the slot to be chosen for it rather than
the least recently used one (llama-server's `--slot-prompt-similarity` default): a shared BOS or a
few words are not worth evicting an older prefix for."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists (slice comparisons run in C)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    low, high = 0, n
    while high - low > 1:
        middle = (low + high) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class Reuse:
    """Where a joining sequence's prompt starts from: `length` leading tokens held by sequence
    `source` (its own id: no copy), 0 when nothing is reused."""

    source: int
    length: int


def plan(seq_id: int, prompt: Sequence[int], own: Sequence[int],
         others: Iterable[tuple[int, Sequence[int]]], copy_min_tokens: int) -> Reuse:
    """The reuse for a prompt joining as `seq_id`, whose cells hold `own`: another sequence's
    cells (`others`) only when they hold at least `copy_min_tokens` more of the prompt's leading
    tokens (a copy costs more than a cut). The last prompt token is always decoded, for its logits."""
    usable = max(0, len(prompt) - 1)
    own_length = min(common_prefix(prompt, own), usable)
    copied = max(((min(common_prefix(prompt, tokens), usable), other_id) for other_id, tokens in others),
                 default=(0, seq_id))
    if copied[0] >= max(own_length + copy_min_tokens, 1):
        return Reuse(copied[1], copied[0])
    return Reuse(seq_id, own_length)


class PrefixIndex:
    """The tokens held by the cells of each idle sequence id and the order they were last used in.

    The decode loop's thread records (`keep` when a sequence ends, `take` when one starts in that
    id); the event loop's thread picks slots (`choose`); a lock keeps the two apart.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, list[int]] = {}
        self._used: dict[int, int] = {}
        self._clock = 0

    def keep(self, seq_id: int, tokens: list[int]) -> None:
        """Sequence `seq_id` ended with these tokens in its cells (the list is not changed later)."""
        with self._lock:
            self._clock += 1
            self._held[seq_id] = tokens
            self._used[seq_id] = self._clock

    def take(self, seq_id: int) -> list[int]:
        """What the cells of `seq_id` hold, for a sequence starting there (no longer idle)."""
        with self._lock:
            return self._held.pop(seq_id, [])

    def idle(self) -> list[tuple[int, list[int]]]:
        """Every idle sequence id with the tokens its cells hold."""
        with self._lock:
            return list(self._held.items())

    def choose(self, prompt: Sequence[int], free: Sequence[int]) -> int:
        """The free slot for `prompt`: the one holding its longest prefix when that is more than
        `SLOT_SIMILARITY` of it, else the least recently used one, a never used one first."""
        with self._lock:
            held = {seq_id: self._held.get(seq_id, ()) for seq_id in free}
            used = {seq_id: self._used.get(seq_id, -1) for seq_id in free}
        best, best_length = None, int(len(prompt) * SLOT_SIMILARITY)
        for seq_id, tokens in held.items():
            length = common_prefix(prompt, tokens)
            if length > best_length:
                best, best_length = seq_id, length
        if best is not None:
            return best
        return min(free, key=used.__getitem__)
