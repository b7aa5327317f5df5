"""Loopback TCP peers that watch traffic from outside a daemon.

`TcpRelay` forwards each connection to a real daemon and counts the connections, so a test can
tell whether a client contacted it without asking the daemon. `SilentListener` accepts TCP
handshakes (the kernel does) and never reads or answers, so a client's timeouts are reached.
"""

from __future__ import annotations

import contextlib
import socket
import threading

BUFFER_BYTES = 65536


class TcpRelay:
    """Listens on 127.0.0.1:`port` and pipes every connection to 127.0.0.1:`target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="tcp-relay").start()

    @property
    def url(self) -> str:
        """The relay's http:// base URL."""
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        """Stop accepting; connections already relayed end when either side closes."""
        self._closed.set()
        self._server.close()


class SilentListener:
    """A listening socket on 127.0.0.1 that never accepts: connects succeed, nothing is answered."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port: int = self._server.getsockname()[1]

    def close(self) -> None:
        """Close the socket, resetting the connections waiting in its backlog."""
        self._server.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(BUFFER_BYTES):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
