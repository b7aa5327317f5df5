"""TLS on a daemon's listener: the certificate and key from files, swapped on reload without a
restart, and the warning a plain-HTTP public bind gets.

Each new connection gets the certificate loaded last: the listening context's SNI callback hands
the handshake the current context (OpenSSL calls it for every ClientHello, with or without a
server name). A reload builds a whole new context first, so a bad file (missing, unreadable, a
key that does not match) leaves the old certificate serving and says why.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from rbee.common.auth import is_loopback

log = logging.getLogger(__name__)


class TlsError(ValueError):
    """A certificate or key that cannot be used (the message names the file, never its content)."""


@dataclass(frozen=True)
class TlsFiles:
    """Where the listener's PEM certificate chain and private key are."""

    cert: Path
    key: Path

    @classmethod
    def of(cls, cert: Path | None, key: Path | None) -> TlsFiles | None:
        """The files of `--tls-cert` and `--tls-key`: both or neither (TlsError)."""
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise TlsError("--tls-cert and --tls-key go together: give both or neither")
        return cls(Path(cert), Path(key))


def fingerprint(cert_file: Path) -> str:
    """SHA-256 of the first certificate in a PEM file, as hex."""
    pem = cert_file.read_text()
    start = pem.index("-----BEGIN CERTIFICATE-----")
    end = pem.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem[start:end])).hexdigest()


def _server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(files.cert, files.key)
        return context
    except FileNotFoundError as exc:
        raise TlsError(f"{exc.filename} does not exist") from None
    except ssl.SSLError as exc:
        raise TlsError(f"{files.cert} and {files.key} are not a usable certificate and key: "
                       f"{exc.reason or exc.__class__.__name__}") from None
    except OSError as exc:
        raise TlsError(f"cannot read {exc.filename or files.cert}: {exc.strerror or exc}") from None


class ListenerTls:
    """The TLS side of a listener: `context` goes to the server; `reload` re-reads the files."""

    def __init__(self, files: TlsFiles, name: str) -> None:
        self._files, self._name = files, name
        self._current = self.context = _server_context(files)
        self.context.sni_callback = self._pick
        log.info("%s serves TLS with %s (sha256 %s)", name, files.cert, fingerprint(files.cert))

    def reload(self) -> None:
        """Load the files again; on failure keep serving the old certificate and log why."""
        try:
            context = _server_context(self._files)
            digest = fingerprint(self._files.cert)
        except (TlsError, OSError, ValueError) as exc:
            log.error("%s TLS reload failed, the old certificate stays: %s", self._name, exc)
            return
        self._current = context
        log.info("%s reloaded its TLS certificate %s (sha256 %s)", self._name, self._files.cert, digest)

    def _pick(self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        connection.context = self._current


def warn_if_plain_public(host: str, name: str, tls: TlsFiles | None) -> None:
    """A non-loopback bind without TLS sends tokens and prompts in clear: say so."""
    if tls is None and not is_loopback(host):
        log.warning("%s listens on %s without TLS: tokens and prompts cross the network in clear; "
                    "give it --tls-cert and --tls-key", name, host)
