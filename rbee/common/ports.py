"""Finding TCP ports that nothing listens on."""

from __future__ import annotations

import socket
from collections.abc import Container

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


def ephemeral_port(host: str = "127.0.0.1") -> int:
    """A port the kernel picks as free (for tests and throwaway clusters)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
