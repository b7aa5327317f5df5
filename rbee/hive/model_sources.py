"""Where a downloadable file comes from: its URL, its headers, the digest it must have.

An `https://` ref is fetched as written (query string included: a pre-signed S3/GCS link) to
`models/https/<host>[_port]/<hash of the URL without its query>/<file name>`, so a link signed
again later finds the same file; the query is a credential and never leaves the fetch (the
catalog, the API and the log show `public_ref`). `hf:` refs are located by `hf_hub`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from rbee.common.model_refs import public_ref

DEFAULT_FILE_NAME = "model.gguf"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


@dataclass(frozen=True)
class ModelSource:
    """One file to fetch: its URL (maybe holding a credential, so never shown), the headers sent
    with it (the hub's token, only to the hub) and the SHA-256 it must have, when known."""

    url: str = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    from_hub: bool = False
    sha256: str | None = None


def is_downloadable(ref: str) -> bool:
    """True for refs the hive fetches over the network."""
    return ref.startswith(("hf:", "https://"))


def https_source(ref: str, sha256: str | None) -> tuple[ModelSource, PurePosixPath]:
    """The source of a validated `https://` ref and its place under the models folder."""
    shown = public_ref(ref)
    parts = urlsplit(shown)
    name = unquote(PurePosixPath(parts.path).name)
    name = name if _SAFE_NAME.fullmatch(name) else DEFAULT_FILE_NAME
    host = f"{parts.hostname}_{parts.port}" if parts.port else str(parts.hostname)
    key = hashlib.sha256(shown.encode()).hexdigest()[:16]
    return ModelSource(ref, sha256=sha256), PurePosixPath("https", host, key, name)
