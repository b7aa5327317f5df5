"""A real HTTP(S) file server on loopback for download tests and benchmarks.

It serves files with Range and If-Range support (`hub_standin` adds the Hugging Face hub's API
on top) and injects faults on demand: an HTTP status, a connection reset or a stall after N bytes,
corrupted bytes, a body without Content-Length, a throttled rate. It runs its own event loop
in a thread, so blocking test code can drive it; every request is recorded as a `Hit`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from rbee.common.ports import free_port
from rbee.testing.background_server import BackgroundServer

CHUNK_BYTES = 1024 * 1024
THROTTLE_SLICE_S = 0.02
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
FAULT_KINDS = ("status", "reset", "stall", "corrupt", "no_length")


@dataclass
class Fault:
    """A failure the server injects into the next `times` requests for a file (None: all)."""

    kind: str
    status: int = 500
    after_bytes: int = 0
    times: int | None = 1
    stall_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")


@dataclass(frozen=True)
class Hit:
    """One request the server answered."""

    method: str
    path: str
    range: str | None
    if_range: str | None
    authorization: str | None
    query: str = ""


@dataclass
class ServedFile:
    """A file on disk published under a URL path."""

    source: Path
    size: int
    sha256: str
    faults: list[Fault] = field(default_factory=list)
    bytes_per_s: float | None = None

    @property
    def etag(self) -> str:
        """A strong validator: the content's SHA-256, quoted (as the Hugging Face CDN does)."""
        return f'"{self.sha256}"'


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 and localhost, made with the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


class FileServer:
    """Serves registered files on 127.0.0.1; `start` and `stop` run it in its own thread."""

    def __init__(self, tls: bool = False) -> None:
        self.port = free_port()
        self.tls = tls
        self.ca_file: Path | None = None
        self._files: dict[str, ServedFile] = {}
        self._hits: list[Hit] = []
        self._lock = threading.Lock()
        self._server = BackgroundServer(self._app, self.port, "file-server")
        self._tmp = tempfile.TemporaryDirectory(prefix="rbee-file-server-")
        self._stopped = False

    @property
    def url(self) -> str:
        """Base URL."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # -- publishing -------------------------------------------------------------------------

    def add(self, url_path: str, source: Path, sha256: str | None = None) -> str:
        """Publish `source` at `url_path` (its SHA-256 given, or computed); returns its full URL."""
        source = Path(source)
        sha = sha256 or sha256_of(source)
        with self._lock:
            self._files[url_path] = ServedFile(source, source.stat().st_size, sha)
        return self.url + url_path

    def file(self, url_path: str) -> ServedFile:
        """The published file at `url_path`."""
        with self._lock:
            return self._files[url_path]

    def find(self, filename: str) -> tuple[str, ServedFile]:
        """The one published file whose path ends with `/filename`."""
        with self._lock:
            found = [(p, f) for p, f in self._files.items() if p.endswith("/" + filename)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} files named {filename}")
        return found[0]

    def inject(self, url_path: str, fault: Fault) -> None:
        """Queue a fault for requests of `url_path`."""
        with self._lock:
            self._files[url_path].faults.append(fault)

    def throttle(self, url_path: str, bytes_per_s: float | None) -> None:
        """Send `url_path` at about `bytes_per_s` (None: full speed)."""
        with self._lock:
            self._files[url_path].bytes_per_s = bytes_per_s

    def hits(self, url_path: str | None = None, method: str = "GET") -> list[Hit]:
        """Requests answered so far, for one path or all."""
        with self._lock:
            return [h for h in self._hits if h.method == method and url_path in (None, h.path)]

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FileServer:
        """Serve in a background thread; returns once the port accepts connections."""
        ssl_context = None
        if self.tls:
            import ssl

            cert, key = self_signed_cert(Path(self._tmp.name))
            self.ca_file = cert
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(cert, key)
        self._server.start(ssl_context)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (once; later calls do nothing)."""
        if self._stopped:
            return
        self._stopped = True
        self._server.stop()
        self._tmp.cleanup()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    # -- handlers ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self._hits.append(Hit(request.method, request.path, request.headers.get("Range"),
                                  request.headers.get("If-Range"), request.headers.get("Authorization"),
                                  request.query_string))
        if request.method not in ("GET", "HEAD"):
            return json_error(405, "method not allowed")
        special = self._special(request)
        if special is not None:
            return special
        with self._lock:
            served = self._files.get(request.path)
        if served is None:
            return json_error(404, "Entry not found")
        return await self._send(request, served)

    def _special(self, request: web.Request) -> web.Response | None:
        """An answer other than a file's bytes (none here; subclasses add APIs)."""
        return None

    def _next_fault(self, served: ServedFile) -> Fault | None:
        with self._lock:
            if not served.faults:
                return None
            fault = served.faults[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    served.faults.pop(0)
            return fault

    async def _send(self, request: web.Request, served: ServedFile) -> web.StreamResponse:
        fault = self._next_fault(served)
        if fault is not None and fault.kind == "status":
            return json_error(fault.status, f"injected HTTP {fault.status}")
        start, end = 0, served.size - 1
        status = 200
        headers = {"ETag": served.etag, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        wanted = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if wanted and fault is not None and fault.kind == "no_length":
            wanted = None
        if wanted and (if_range is None or if_range == served.etag):
            parsed = _parse_range(wanted, served.size)
            if parsed is None:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{served.size}"})
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{served.size}"
        response = web.StreamResponse(status=status, headers=headers)
        if fault is not None and fault.kind == "no_length":
            response.enable_chunked_encoding()
        else:
            response.content_length = end - start + 1
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        await self._stream_body(request, response, served, start, end, fault)
        return response

    async def _stream_body(
        self,
        request: web.Request,
        response: web.StreamResponse,
        served: ServedFile,
        start: int,
        end: int,
        fault: Fault | None,
    ) -> None:
        sent = 0
        cut = fault.after_bytes if fault is not None and fault.kind in ("reset", "stall") else None
        with served.source.open("rb") as handle:
            handle.seek(start)
            position = start
            while position <= end:
                rate = served.bytes_per_s
                size = min(CHUNK_BYTES, end - position + 1)
                if rate:
                    size = min(size, max(1, int(rate * THROTTLE_SLICE_S)))
                if cut is not None:
                    size = min(size, cut - sent)
                if size > 0:
                    block = handle.read(size)
                    if fault is not None and fault.kind == "corrupt":
                        block = _corrupt(block, position)
                    await response.write(block)
                    sent += len(block)
                    position += len(block)
                    if rate:
                        await asyncio.sleep(len(block) / rate)
                if cut is not None and sent >= cut:
                    await self._cut(request, fault)
                    return
        await response.write_eof()

    @staticmethod
    async def _cut(request: web.Request, fault: Fault) -> None:
        transport = request.transport
        for _ in range(100):
            if transport is None or transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.01)
        if fault.kind == "stall":
            await asyncio.sleep(fault.stall_s)
        if transport is not None:
            transport.abort()


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    match = _RANGE.match(header.strip())
    if match is None or not (match.group(1) or match.group(2)):
        return None
    first, last = match.groups()
    if not first:
        length = int(last)
        return (max(0, size - length), size - 1) if length else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start < size and start <= end else None


def _corrupt(block: bytes, position: int) -> bytes:
    """Flip one byte past the GGUF magic so the file still looks like a model."""
    index = max(0, 8 - position)
    if index >= len(block):
        return block
    changed = bytearray(block)
    changed[index] ^= 0xFF
    return bytes(changed)


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error answer."""
    return web.json_response({"error": message}, status=status, headers=headers)

