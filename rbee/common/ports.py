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
WORKER_PORT_BLOCK = 64


def _local_port_range() -> tuple[int, int]:
    """The range the kernel draws outgoing connections' source ports from."""
    try:
        low, high = (int(part) for part in LOCAL_PORT_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_LOCAL_PORT_RANGE
    return low, high


def _spare_pool() -> range:
    """Ports no outgoing connection of this machine can take: below the kernel's range, else above it."""
    low, high = _local_port_range()
    if low - SPARE_POOL_SIZE >= 1024:
        return range(low - SPARE_POOL_SIZE, low)
    return range(high + 1, MAX_PORT + 1)


class _SparePorts:
    """Hands out free ports drawn at random from the spare pool, none twice per process (until
    the pool is spent), so two test runs at once rarely draw the same one."""

    def __init__(self) -> None:
        self._pool = _spare_pool()
        self._given: set[int] = set()
        self._random = random.SystemRandom()
        self._lock = threading.Lock()

    def take(self, block: int, host: str) -> int:
        with self._lock:
            starts = range(self._pool.start, self._pool.stop - block + 1)
            for _ in range(len(self._pool)):
                if len(self._given) + block > len(self._pool):
                    self._given.clear()
                start = self._random.choice(starts)
                wanted = range(start, start + block)
                if self._given.isdisjoint(wanted) and all(port_is_free(port, host) for port in wanted):
                    self._given.update(wanted)
                    return start
        raise OSError("no free block of spare ports")


_SPARE = _SparePorts()


def free_port(host: str = "127.0.0.1", block: int = 1) -> int:
    """A free port (the first of `block` free ones) for tests and throwaway clusters.

    Drawn outside the kernel's ephemeral range, so the source port of some outgoing connection
    cannot take it between now and the moment the daemon binds it, drawn at random (another
    process drawing too rarely meets it) and not handed out again by this process.
    """
    return _SPARE.take(block, host)
