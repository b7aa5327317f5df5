"""The standard Hugging Face cache on disk (the layout `huggingface_hub` and `huggingface-cli`
use), read and written by the hive.

    <cache>/models--<org>--<repo>/refs/<revision>        the commit a branch or tag points to
    <cache>/models--<org>--<repo>/blobs/<etag>           file contents (etag: SHA-256 for LFS)
    <cache>/models--<org>--<repo>/snapshots/<commit>/<file> -> ../../blobs/<etag>

The hive keeps its partial downloads as `blobs/<etag>.partial` (resumed after a restart).
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub.file_download import repo_folder_name

from rbee.hive.hf_refs import COMMIT_HASH


def repo_dir(cache: Path, repo_id: str) -> Path:
    """The cache folder of a model repository."""
    return cache / repo_folder_name(repo_id=repo_id, repo_type="model")


def cached_commit(repo: Path, revision: str) -> str | None:
    """The commit `revision` names in the cache: itself when it is a commit hash with a snapshot,
    else what `refs/<revision>` records; None when the cache does not know it."""
    if COMMIT_HASH.fullmatch(revision):
        return revision if (repo / "snapshots" / revision).is_dir() else None
    try:
        commit = (repo / "refs" / revision).read_text().strip()
    except OSError:
        return None
    return commit if COMMIT_HASH.fullmatch(commit) else None


def snapshot_path(repo: Path, commit: str, filename: str) -> Path:
    """Where a file of a commit appears in the cache."""
    return repo / "snapshots" / commit / filename


def snapshot_files(repo: Path, commit: str) -> list[str]:
    """The complete files of a commit's snapshot (relative paths, `/`-separated)."""
    root = repo / "snapshots" / commit
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def blob_path(repo: Path, etag: str) -> Path:
    """Where the contents of a file with this etag live."""
    return repo / "blobs" / etag


def link(repo: Path, commit: str, filename: str, etag: str) -> Path:
    """Point the commit's snapshot entry for `filename` at its blob (a relative symlink)."""
    pointer = snapshot_path(repo, commit, filename)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(blob_path(repo, etag), pointer.parent)
    scratch = pointer.with_name(pointer.name + ".rbee-link")
    scratch.unlink(missing_ok=True)
    scratch.symlink_to(target)
    os.replace(scratch, pointer)
    return pointer


def record_ref(repo: Path, revision: str, commit: str) -> None:
    """Remember which commit a branch or tag named (nothing for a commit hash)."""
    if revision == commit:
        return
    ref = repo / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    scratch = ref.with_name(ref.name + ".rbee-tmp")
    scratch.write_text(commit)
    os.replace(scratch, ref)


def remove(repo: Path, pointers: list[Path]) -> None:
    """Delete snapshot entries and each blob no other snapshot entry of the repository uses."""
    blobs = {p.resolve() for p in pointers if p.is_symlink()}
    for pointer in pointers:
        pointer.unlink(missing_ok=True)
    used = {p.resolve() for p in (repo / "snapshots").rglob("*") if p.is_symlink()}
    for blob in blobs - used:
        if blob.is_relative_to(repo.resolve() / "blobs"):
            blob.unlink(missing_ok=True)
