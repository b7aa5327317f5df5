"""Finding TCP ports that nothing listens on."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Container
from pathlib import Path

MAX_PORT = 65535


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a listening socket could bind `host:port` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def next_free_port(start: int, taken: Container[int] = (), host: str = "127.0.0.1") -> int:
    """The first port from `start` upward that is neither in `taken` nor in use."""
    for port in range(start, MAX_PORT + 1):
        if port not in taken and port_is_free(port, host):
            return port
    raise OSError(f"no free port at or above {start}")


LOCAL_PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_LOCAL_PORT_RANGE = (32768, 60999)
SPARE_POOL_SIZE = 12000
MIN_SPARE_POOL = 2000
FIRST_UNPRIVILEGED_PORT = 1024
WORKER_PORT_BLOCK = 64


def _local_port_range() -> tuple[int, int]:
    """The range the kernel draws outgoing connections' source ports from."""
    try:
        low, high = (int(part) for part in LOCAL_PORT_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_LOCAL_PORT_RANGE
    return low, high


def spare_pool(low: int, high: int) -> range:
    """Ports no outgoing connection can take, given the kernel's range `low`..`high`: the larger
    stretch below or above it, at most SPARE_POOL_SIZE long; where the kernel's range leaves
    fewer than MIN_SPARE_POOL ports outside it, a stretch just above 1024 (shared with it)."""
    below = range(max(FIRST_UNPRIVILEGED_PORT, low - SPARE_POOL_SIZE), max(FIRST_UNPRIVILEGED_PORT, low))
    above = range(min(high + 1, MAX_PORT + 1), min(high + SPARE_POOL_SIZE, MAX_PORT) + 1)
    pool = max(below, above, key=len)
    if len(pool) >= MIN_SPARE_POOL:
        return pool
    return range(FIRST_UNPRIVILEGED_PORT, FIRST_UNPRIVILEGED_PORT + SPARE_POOL_SIZE)


class _SparePorts:
    """Hands out free ports from the spare pool in order, from a random first port and around
    again, so no port is handed out twice by this process before the whole pool was, a block is
    always contiguous, and two test runs at once start far apart."""

    def __init__(self) -> None:
        self._pool = spare_pool(*_local_port_range())
        self._next = random.SystemRandom().randrange(self._pool.start, self._pool.stop)
        self._lock = threading.Lock()

    def take(self, block: int, host: str) -> int:
        with self._lock:
            scanned = 0
            while scanned <= len(self._pool) + block:
                start = self._next if self._next + block <= self._pool.stop else self._pool.start
                wanted = range(start, start + block)
                busy = next((port for port in wanted if not port_is_free(port, host)), None)
                self._next = start + block if busy is None else busy + 1
                if self._next >= self._pool.stop:
                    self._next = self._pool.start
                if busy is None:
                    return start
                scanned += busy + 1 - start
        raise OSError(f"no {block} free ports in a row in {self._pool.start}..{self._pool.stop - 1}")


_SPARE = _SparePorts()


def free_port(host: str = "127.0.0.1", block: int = 1) -> int:
    """A free port (the first of `block` free ones) for tests and throwaway clusters.

    Drawn outside the kernel's ephemeral range, so the source port of some outgoing connection
    cannot take it between now and the moment the daemon binds it, from a random place in that
    pool (another process drawing too rarely meets it), and not handed out again by this process
    before the pool has gone round.
    """
    return _SPARE.take(block, host)
