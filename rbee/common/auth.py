"""Bearer-token authentication: the tokens a daemon holds, the middleware that checks them.

A daemon's keyring holds its own token (what callers must present) and the tokens of the
peers it calls (queen → hive → worker, heartbeats and ready callbacks back up). Without an
own token a daemon is in dev mode: it only accepts a loopback bind and lets every request in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from rbee.common.audit import Audit, no_audit
from rbee.common.child_commands import token_flags
from rbee.common.errors import ApiError, Handler
from rbee.common.secrets import ROLES, LoadedToken, SecretError, load_token

log = logging.getLogger(__name__)

MAX_AUTH_HEADER_CHARS = 512
_BEARER = re.compile(r"^Bearer ([A-Za-z0-9._~+/-]+=*)$")
CLIENT = web.RequestKey("client", str)
"""Who made the request: `token:<fingerprint>`, or `dev` in dev mode (for limits and audit)."""
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="rbee"'}
BROWSER_PATH = "/ui"
"""The status page: its routes also take the token as the password of HTTP Basic auth (any user
name) and challenge with Basic, so a browser asks for it."""
_BASIC = re.compile(r"^Basic ([A-Za-z0-9+/]+=*)$")
BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="rbee", charset="UTF-8"'}


class Keyring:
    """The tokens one daemon uses, reloadable as a whole (SIGHUP) without a restart."""

    def __init__(self, own_role: str, files: dict[str, Path | None]) -> None:
        if own_role not in files or not set(files) <= set(ROLES):
            raise ValueError("the keyring needs its own role and only known roles")
        self.own_role = own_role
        self._files = dict(files)
        self._tokens: dict[str, LoadedToken | None] = {}

    def load(self) -> None:
        """Read every token now; raises SecretError and keeps the old ones on any problem."""
        fresh = {role: load_token(role, path) for role, path in self._files.items()}
        self._tokens = fresh

    def reload(self) -> bool:
        """Re-read the tokens (SIGHUP); on failure log why and keep serving with the old ones."""
        try:
            self.load()
        except SecretError as exc:
            log.error("token reload failed, keeping the previous tokens: %s", exc)
            return False
        log.info("tokens reloaded: %s", self.describe())
        return True

    @property
    def own(self) -> LoadedToken | None:
        """The token callers must present, or None in dev mode."""
        return self._tokens.get(self.own_role)

    def describe(self) -> str:
        """Each role's fingerprint and source, for the log."""
        parts = []
        for role, token in self._tokens.items():
            parts.append(f"{role}={token.fingerprint} ({token.source})" if token else f"{role}=none")
        return ", ".join(parts)

    def secret(self, role: str) -> str | None:
        """The token of `role`, to hand to a daemon this one starts on another node (never to log)."""
        token = self._tokens.get(role)
        return token.value if token else None

    def headers_for(self, role: str) -> dict[str, str]:
        """The Authorization header for a call to a `role` daemon ({} when no token is known)."""
        token = self._tokens.get(role)
        return {"Authorization": f"Bearer {token.value}"} if token else {}

    def child_args(self, child_role: str, roles: Iterable[str]) -> list[str]:
        """Token-file flags for a child daemon: paths only, never tokens, on its command line."""
        return token_flags(child_role, {role: self._files.get(role) for role in roles})

    def matches(self, presented: str) -> bool:
        """Constant-time comparison of a presented token with the own token."""
        own = self.own
        if own is None:
            return False
        given = hashlib.sha256(presented.encode()).digest()
        expected = hashlib.sha256(own.value.encode()).digest()
        return hmac.compare_digest(given, expected)


def reload_tokens(keyring: Keyring, audit: Audit) -> Callable[[], None]:
    """The SIGHUP action: re-read the tokens and record the outcome in the audit log."""

    def reload() -> None:
        ok = keyring.reload()
        audit("config.reload", what="tokens", ok=ok, fingerprints=keyring.describe())

    return reload


def is_loopback(host: str) -> bool:
    """True for loopback addresses and `localhost`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_policy(keyring: Keyring, host: str, name: str) -> None:
    """Refuse a non-loopback bind without a token; announce dev mode on loopback."""
    if keyring.own is not None:
        log.info("%s requires bearer token %s", name, keyring.describe())
        return
    if not is_loopback(host):
        raise SecretError(
            f"{name} refuses to listen on {host} without a token: give it --token-file "
            f"(or the systemd credential {keyring.own_role}-token), or bind to 127.0.0.1"
        )
    log.warning("%s runs in dev mode: no token, loopback only, every request is accepted", name)


def presented_token(header: str | None) -> str:
    if header is None:
        raise ApiError(401, "MISSING_API_KEY", "an Authorization: Bearer token is required",
                       headers=WWW_AUTHENTICATE)
    match = _BEARER.match(header) if len(header) <= MAX_AUTH_HEADER_CHARS else None
    if match is None:
        raise ApiError(401, "INVALID_API_KEY",
                       "the Authorization header must be exactly 'Bearer <token>'",
                       headers=WWW_AUTHENTICATE)
    return match.group(1)


def _basic_password(header: str | None) -> str | None:
    """The password of a well-formed HTTP Basic Authorization header, else None."""
    match = _BASIC.match(header) if header and len(header) <= MAX_AUTH_HEADER_CHARS else None
    if match is None:
        return None
    try:
        credentials = base64.b64decode(match.group(1), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return credentials.partition(":")[2] or None


def _is_browser_path(path: str) -> bool:
    return path == BROWSER_PATH or path.startswith(BROWSER_PATH + "/")


def presented_credential(request: web.Request) -> str:
    """The token a request presents: on the status page's routes the HTTP Basic password when
    there is one, else the bearer token; 401 when neither is well-formed."""
    header = request.headers.get("Authorization")
    password = _basic_password(header) if _is_browser_path(request.path) else None
    return password if password is not None else presented_token(header)


def note_refusal(request: web.Request, err: ApiError, audit: Audit) -> None:
    """Log and audit a refused request; a 401 on the status page's routes also challenges with Basic."""
    if _is_browser_path(request.path) and err.status == 401:
        err.headers = {**err.headers, **BASIC_CHALLENGE}
    log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote, err.code)
    audit("auth.failure", method=request.method, path=request.path, remote=request.remote, code=err.code)


def auth_middleware(keyring: Keyring, public_paths: frozenset[str], audit: Audit = no_audit) -> Any:
    """Middleware that lets public paths through and demands the own token everywhere else."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        own = keyring.own
        if own is None:
            request[CLIENT] = "dev"
            return await handler(request)
        if request.path in public_paths:
            request[CLIENT] = "public"
            return await handler(request)
        try:
            if not keyring.matches(presented_credential(request)):
                raise ApiError(401, "INVALID_API_KEY", "the bearer token is not valid here",
                               headers=WWW_AUTHENTICATE)
        except ApiError as err:
            note_refusal(request, err, audit)
            raise
        request[CLIENT] = f"token:{own.fingerprint}"
        audit("auth.success", method=request.method, path=request.path,
              remote=request.remote, token_fingerprint=own.fingerprint)
        return await handler(request)

    return authenticate
