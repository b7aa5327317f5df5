"""The queen's node registry: remote machines it reaches over SSH, stored in SQLite in its data dir."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rbee.common.defaults import HIVE_PORT

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_SSH_PORT = 22
DEFAULT_INSTALL_PATH = "/opt/rbee"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    ssh_host TEXT NOT NULL,
    ssh_port INTEGER NOT NULL,
    ssh_user TEXT NOT NULL,
    ssh_key TEXT NOT NULL,
    install_path TEXT NOT NULL,
    hive_port INTEGER NOT NULL,
    hive_data_dir TEXT NOT NULL,
    added_at TEXT NOT NULL,
    preflight TEXT NOT NULL
)
"""
_COLUMNS = (
    "name, ssh_host, ssh_port, ssh_user, ssh_key, install_path, hive_port, hive_data_dir, added_at, preflight"
)


@dataclass(frozen=True)
class NodeSpec:
    """How the queen reaches a node: what an operator gives to `rbee setup add-node`."""

    name: str
    ssh_host: str
    ssh_port: int
    ssh_user: str
    ssh_key: str
    install_path: str
    hive_port: int = HIVE_PORT
    hive_data_dir: str = ""
    """Where the node's hive keeps models, logs and tokens; empty = `<install_path>/var/hive`."""

    @property
    def rbee_command(self) -> str:
        """The rbee executable on the node: `<install_path>/bin/rbee` (a virtualenv layout)."""
        return f"{self.install_path.rstrip('/')}/bin/rbee"

    @property
    def data_dir(self) -> str:
        """The hive's data dir on the node."""
        return self.hive_data_dir or f"{self.install_path.rstrip('/')}/var/hive"

    @property
    def hive_url(self) -> str:
        """Where the queen reaches the node's hive."""
        return f"http://{self.ssh_host}:{self.hive_port}"


@dataclass(frozen=True)
class Node:
    """A registered node and the result of the preflight that admitted it."""

    spec: NodeSpec
    added_at: str
    preflight: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        """The JSON form of `/v2/registry/beehives/list`."""
        return {**asdict(self.spec), "added_at": self.added_at, "preflight": self.preflight}


class NodeExists(Exception):
    """A node of that name is already registered (and no update was asked for)."""


def utc_now() -> str:
    """An RFC 3339 UTC timestamp with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class NodeRegistry:
    """SQLite-backed store of nodes; safe to call from several threads (one lock, short calls)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            self.path.rename(aside)
            log.error("node registry %s is unreadable (%s); moved it to %s and started an empty one: "
                      "register the nodes again with `rbee setup add-node`", self.path, exc, aside)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("SELECT count(*) FROM nodes").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        self.path.chmod(0o600)
        return db

    def add(self, node: Node, replace: bool = False) -> bool:
        """Store `node`; returns True when it replaced one of the same name.

        Raises NodeExists when the name is taken and `replace` is false.
        """
        spec = node.spec
        row = (spec.name, spec.ssh_host, spec.ssh_port, spec.ssh_user, spec.ssh_key, spec.install_path,
               spec.hive_port, spec.hive_data_dir, node.added_at, json.dumps(node.preflight))
        with self._lock:
            existed = self._db.execute("SELECT 1 FROM nodes WHERE name = ?", (spec.name,)).fetchone()
            if existed and not replace:
                raise NodeExists(spec.name)
            verb = "INSERT OR REPLACE" if replace else "INSERT"
            try:
                self._db.execute(f"{verb} INTO nodes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            except sqlite3.IntegrityError as exc:
                raise NodeExists(spec.name) from exc
        return existed is not None

    def get(self, name: str) -> Node | None:
        """The node called `name`, or None."""
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM nodes WHERE name = ?", (name,)).fetchone()
        return _node(row) if row else None

    def all(self) -> list[Node]:
        """Every node, by name."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM nodes ORDER BY name").fetchall()
        return [_node(row) for row in rows]

    def remove(self, name: str) -> bool:
        """Delete the node called `name`; False when there was none."""
        with self._lock:
            return self._db.execute("DELETE FROM nodes WHERE name = ?", (name,)).rowcount > 0

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _node(row: tuple[Any, ...]) -> Node:
    spec = NodeSpec(*row[:8])
    return Node(spec, row[8], json.loads(row[9]))
