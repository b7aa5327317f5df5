"""Where a downloadable model ref points: its URL, its place under the models folder, its auth.

`hf:org/repo:path/file.gguf` is fetched from `$RBEE_HF_ENDPOINT/org/repo/resolve/main/path/file.gguf`
(default endpoint https://huggingface.co) with `HF_TOKEN` as bearer token when set; the token
goes to the hub only, never to `https://` URLs of other hosts, and is never logged.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from rbee.common.errors import ApiError
from rbee.common.tunables import HubSettings
from rbee.common.validation import invalid

DEFAULT_FILE_NAME = "model.gguf"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_MAX_LISTED_FILES = 20


@dataclass(frozen=True)
class ModelSource:
    """One downloadable file: where it comes from and where it goes under the models folder."""

    ref: str
    url: str
    relative_path: PurePosixPath
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    from_hub: bool = False


def is_downloadable(ref: str) -> bool:
    """True for refs the hive fetches over the network."""
    return ref.startswith(("hf:", "https://"))


def split_hf(ref: str) -> tuple[str, str, str | None]:
    """(org, repo, file or None) of an already validated `hf:` ref."""
    repo_part, _, file = ref.removeprefix("hf:").partition(":")
    org, repo = repo_part.split("/", 1)
    return org, repo, file or None


def locate(ref: str, hub: HubSettings) -> ModelSource:
    """The source of a validated `hf:org/repo:file` or `https://` ref."""
    if ref.startswith("hf:"):
        org, repo, file = split_hf(ref)
        if file is None:
            raise invalid("model", "must name the file to download: hf:org/repo:file.gguf")
        url = f"{hub.endpoint}/{org}/{repo}/resolve/main/{quote(file)}"
        return ModelSource(ref, url, PurePosixPath("hf", org, repo, *file.split("/")), hub.headers(), True)
    if ref.startswith("https://"):
        parts = urlsplit(ref)
        name = unquote(PurePosixPath(parts.path).name)
        name = name if _SAFE_NAME.fullmatch(name) else DEFAULT_FILE_NAME
        host = f"{parts.hostname}_{parts.port}" if parts.port else str(parts.hostname)
        key = hashlib.sha256(ref.encode()).hexdigest()[:16]
        return ModelSource(ref, ref, PurePosixPath("https", host, key, name))
    raise invalid("model", "must be an hf: or https:// reference to download")


def listing_url(ref: str, hub: HubSettings) -> str:
    """The hub API URL that lists the files of an `hf:org/repo` ref's repository."""
    org, repo, _ = split_hf(ref)
    return f"{hub.endpoint}/api/models/{org}/{repo}"


def only_gguf(ref: str, listing: dict[str, Any]) -> str:
    """`hf:org/repo:file` for the repository's one GGUF file, from the hub's repo listing."""
    siblings = listing.get("siblings") if isinstance(listing, dict) else None
    names = [s.get("rfilename") for s in siblings or [] if isinstance(s, dict)]
    ggufs = sorted(n for n in names if isinstance(n, str) and n.endswith(".gguf"))
    if not ggufs:
        raise ApiError(404, "MODEL_DOWNLOAD_NOT_FOUND", "the repository holds no GGUF file")
    if len(ggufs) > 1:
        raise ApiError(
            400, "MODEL_FILE_AMBIGUOUS",
            "the repository holds several GGUF files: name one as hf:org/repo:file.gguf",
            {"files": ggufs[:_MAX_LISTED_FILES]},
        )
    return f"{ref}:{ggufs[0]}"
