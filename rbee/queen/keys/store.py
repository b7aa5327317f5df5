"""The queen's named API keys: SQLite in its data dir, only a SHA-256 of each key stored.

A key is shown once, when it is created. Lookups go through an in-memory index kept in step
with the table (one queen process owns the file), so a revocation takes effect at the next
request. Usage counters (requests, prompt and completion tokens, last use) live in the same
file and are written by `KeyUsage` (`rbee.queen.keys.usage`).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rbee.common.errors import ApiError

SCOPES = ("inference", "admin", "node")
"""`inference`: the OpenAI routes, `/v2/tasks`, `/v1/models`; `admin`: registries, workers,
status, logs, keys, shutdown, `/ui`; `node`: what a hive calls (heartbeats)."""
BOOTSTRAP_NAME = "bootstrap"
"""The name the queen's token file goes by: every scope, no limits."""
KEY_PREFIX = "rbee_"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_MODELS = 64
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    key_sha256 TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    scopes TEXT NOT NULL,
    models TEXT,
    rpm INTEGER,
    tokens_per_min INTEGER,
    concurrency INTEGER,
    weight REAL NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS key_usage (
    name TEXT PRIMARY KEY,
    requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    last_used REAL
);
"""
_COLUMNS = ("name, key_sha256, fingerprint, scopes, models, rpm, tokens_per_min, concurrency, weight, "
            "created_at, expires_at, revoked_at")


@dataclass(frozen=True)
class KeyLimits:
    """What one key may use: requests and tokens per minute, requests at once (None: no limit)."""

    rpm: int | None = None
    tokens_per_min: int | None = None
    concurrency: int | None = None


@dataclass(frozen=True)
class ApiKey:
    """A key's record (never the key itself): its name, scopes, models, limits and lifetime."""

    name: str
    fingerprint: str
    scopes: frozenset[str]
    models: frozenset[str] | None = None
    """The models it may use (None: every model)."""
    limits: KeyLimits = field(default_factory=KeyLimits)
    weight: float = 1.0
    """Its share of a model's admission queue against the other keys waiting there."""
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None

    def allows_model(self, model: str) -> bool:
        """Whether requests of this key may name `model`."""
        return self.models is None or model in self.models

    def to_wire(self) -> dict[str, Any]:
        """The key's JSON form in `/v2/keys` (no secret, no hash)."""
        return {"name": self.name, "fingerprint": self.fingerprint, "scopes": sorted(self.scopes),
                "models": sorted(self.models) if self.models is not None else None,
                "rpm": self.limits.rpm, "tokens_per_min": self.limits.tokens_per_min,
                "concurrency": self.limits.concurrency, "weight": self.weight,
                "created_at": _iso(self.created_at), "expires_at": _iso(self.expires_at),
                "revoked_at": _iso(self.revoked_at)}


BOOTSTRAP_KEY = ApiKey(BOOTSTRAP_NAME, fingerprint="", scopes=frozenset(SCOPES))


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def key_digest(secret: str) -> str:
    """The SHA-256 (hex) a key is stored and looked up by."""
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: str) -> str:
    """A key name: lower-case letters, digits, `.`, `_`, `-`, at most 63 characters."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ApiError(400, "INVALID_KEY_NAME", "a key name is 1-63 characters of a-z, 0-9, '.', '_', '-', "
                       "starting with a letter or digit", {"field": "name"})
    if name == BOOTSTRAP_NAME:
        raise ApiError(400, "INVALID_KEY_NAME", f"'{BOOTSTRAP_NAME}' names the queen's token file",
                       {"field": "name"})
    return name


class KeyStore:
    """The keys table and its in-memory index by digest; safe to call from the event loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        path.chmod(0o600)
        self._lock = threading.Lock()
        self._by_digest: dict[str, ApiKey] = {}
        self._by_name: dict[str, tuple[str, ApiKey]] = {}
        for row in self._db.execute(f"SELECT {_COLUMNS} FROM api_keys"):
            self._index(row[1], _from_row(row))

    def _index(self, digest: str, key: ApiKey) -> None:
        self._by_digest[digest] = key
        self._by_name[key.name] = (digest, key)

    def create(self, name: str, scopes: frozenset[str], models: frozenset[str] | None = None,
               limits: KeyLimits = KeyLimits(), weight: float = 1.0,
               expires_at: float | None = None) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once); 409 KEY_EXISTS when the name is taken by a live key
        (a revoked key's name may be used again)."""
        check_name(name)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = key_digest(secret)
        key = ApiKey(name, digest[:6], frozenset(scopes), models, limits, weight, time.time(), expires_at)
        with self._lock:
            held = self._by_name.get(name)
            if held is not None and held[1].revoked_at is None:
                raise ApiError(409, "KEY_EXISTS", f"a key named '{name}' exists; revoke it first",
                               {"name": name})
            self._db.execute("DELETE FROM api_keys WHERE name = ?", (name,))
            self._db.execute(
                f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, digest, key.fingerprint, json.dumps(sorted(scopes)),
                 None if models is None else json.dumps(sorted(models)), limits.rpm,
                 limits.tokens_per_min, limits.concurrency, weight, key.created_at, expires_at, None))
            if held is not None:
                self._by_digest.pop(held[0], None)
            self._index(digest, key)
        return key, secret

    def replace(self, name: str, scopes: frozenset[str]) -> str:
        """A fresh secret for `name` (created, or the old one revoked first): a node's key at each
        start of its hive."""
        with self._lock:
            held = self._by_name.get(name)
        if held is not None and held[1].revoked_at is None:
            self.revoke(name)
        return self.create(name, scopes)[1]

    def revoke(self, name: str) -> ApiKey:
        """Mark a key revoked (refused from the next request on); 404 KEY_NOT_FOUND if unknown."""
        with self._lock:
            held = self._by_name.get(name)
            if held is None or held[1].revoked_at is not None:
                raise ApiError(404, "KEY_NOT_FOUND", f"no live key is named '{name}'", {"name": name})
            digest, key = held
            revoked = ApiKey(key.name, key.fingerprint, key.scopes, key.models, key.limits, key.weight,
                             key.created_at, key.expires_at, time.time())
            self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE name = ?", (revoked.revoked_at, name))
            self._index(digest, revoked)
        return revoked

    def find(self, secret: str) -> ApiKey | None:
        """The record of the key `secret` (revoked and expired ones too), None when unknown."""
        return self._by_digest.get(key_digest(secret))

    def get(self, name: str) -> ApiKey | None:
        """The record named `name`, if any."""
        held = self._by_name.get(name)
        return held[1] if held else None

    def all(self) -> list[ApiKey]:
        """Every key, by name."""
        return sorted((key for _, key in self._by_name.values()), key=lambda k: k.name)

    def add_usage(self, rows: list[tuple[str, int, int, int, float]]) -> None:
        """Add (name, requests, prompt tokens, completion tokens, last use) to the usage table."""
        with self._lock:
            self._db.executemany(
                "INSERT INTO key_usage VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "requests = requests + excluded.requests, prompt_tokens = prompt_tokens + "
                "excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, "
                "last_used = max(coalesce(last_used, 0), excluded.last_used)", rows)

    def usage(self) -> dict[str, tuple[int, int, int, float | None]]:
        """Stored usage per key name: requests, prompt tokens, completion tokens, last use."""
        with self._lock:
            rows = self._db.execute("SELECT name, requests, prompt_tokens, completion_tokens, last_used "
                                    "FROM key_usage").fetchall()
        return {row[0]: tuple(row[1:]) for row in rows}

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _from_row(row: tuple[Any, ...]) -> ApiKey:
    (name, _digest, fingerprint, scopes, models, rpm, tokens_per_min, concurrency, weight,
     created_at, expires_at, revoked_at) = row
    return ApiKey(name, fingerprint, frozenset(json.loads(scopes)),
                  None if models is None else frozenset(json.loads(models)),
                  KeyLimits(rpm, tokens_per_min, concurrency), weight, created_at, expires_at, revoked_at)
