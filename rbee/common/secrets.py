"""Bearer tokens: where they come from, how strictly they are checked, how they are named in logs.

Each role (queen, hive, worker) has its own token. A daemon reads its own and those of the
peers it calls, from the first source that has one:

1. a file named by a flag (`--token-file`, `--hive-token-file`, …);
2. a systemd credential `$CREDENTIALS_DIRECTORY/<role>-token`;
3. an environment variable `RBEE_<ROLE>_TOKEN` (accepted with a warning: the environment of
   a process is easier to leak than a file).

Files must be owned by the daemon's user, mode 0600 or stricter, and hold exactly one token
on one line. No error message or log line ever contains a token, only its fingerprint.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rbee.common.config_env import environment

log = logging.getLogger(__name__)

ROLES = ("queen", "hive", "worker")
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 256
MAX_FILE_BYTES = 4096
TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


class SecretError(Exception):
    """A token source exists but cannot be used; the message says why and how to fix it."""


def fingerprint(token: str) -> str:
    """The first 6 hex characters of the token's SHA-256: safe to log."""
    return hashlib.sha256(token.encode()).hexdigest()[:6]


def generate_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def credential_name(role: str) -> str:
    """The systemd credential that holds `role`'s token."""
    return f"{role}-token"


def env_name(role: str) -> str:
    """The environment variable that may hold `role`'s token."""
    return f"RBEE_{role.upper()}_TOKEN"


def check_token(token: str, origin: str) -> str:
    """The token itself if it is well formed; `origin` names where it came from."""
    if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS:
        raise SecretError(
            f"{origin}: a token must be {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} characters long"
        )
    if not TOKEN_CHARS.match(token):
        raise SecretError(f"{origin}: a token may only use the characters A-Z a-z 0-9 . _ ~ + / - =")
    return token


def read_token_file(path: Path) -> str:
    """Read one token from a file that only its owner can read."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SecretError(f"token file {path} does not exist") from None
    except OSError as exc:
        raise SecretError(f"token file {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretError(f"token file {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise SecretError(
            f"token file {path} has mode {mode:04o}, readable by group or others; "
            f"run: chmod 600 {path}"
        )
    if info.st_uid != os.geteuid():
        raise SecretError(f"token file {path} belongs to another user; chown it to the daemon's user")
    if info.st_size > MAX_FILE_BYTES:
        raise SecretError(f"token file {path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        raise SecretError(f"token file {path} is not a readable ASCII text file") from None
    lines = text.splitlines()
    if not text.strip():
        raise SecretError(f"token file {path} is empty")
    if len(lines) != 1:
        raise SecretError(f"token file {path} must hold exactly one line (it has {len(lines)})")
    return check_token(lines[0].strip(), f"token file {path}")


def write_token_file(path: Path, token: str) -> None:
    """Write a token file readable only by its owner (created 0600, replaced atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    temporary.replace(path)


@dataclass(frozen=True)
class LoadedToken:
    """A token and a description of its source (never the token) for logs."""

    value: str
    source: str

    @property
    def fingerprint(self) -> str:
        """The token's loggable fingerprint."""
        return fingerprint(self.value)


def load_token(role: str, file: Path | None, environ: Mapping[str, str] | None = None) -> LoadedToken | None:
    """`role`'s token from the first source that has one, or None when no source does."""
    environ = environment() if environ is None else environ
    if file is not None:
        return LoadedToken(read_token_file(file), f"file {file}")
    credentials = environ.get(CREDENTIALS_ENV)
    if credentials:
        path = Path(credentials) / credential_name(role)
        if path.exists():
            return LoadedToken(read_token_file(path), f"systemd credential {credential_name(role)}")
    variable = env_name(role)
    if environ.get(variable):
        token = check_token(environ[variable].strip(), f"environment variable {variable}")
        log.warning("the %s token comes from the environment variable %s; prefer a 0600 token file "
                    "or a systemd credential", role, variable)
        return LoadedToken(token, f"environment variable {variable}")
    return None
