"""`hf:` refs through `huggingface_hub`: the hub's file listing at a revision, the token, the
endpoint, offline mode and the standard cache.

A model already in the cache (every part of it in the snapshot the revision names there) is
found without any request: an offline node starts the models it has. Only a model missing from
the cache makes the hub list the revision's files (`HfApi.model_info`, one call that also pins
the commit and gives each file's size and SHA-256); its files are then fetched by the hive's
own downloader into the cache's blobs and linked into the snapshot.

The token is `HF_TOKEN`, else the token file (`$HF_HOME/token`, as `huggingface-cli login`
writes it); it goes to the hub endpoint only. `HF_HUB_OFFLINE=1` forbids every request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from huggingface_hub import HfApi, ModelInfo, constants, get_token, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from rbee.common.errors import ApiError
from rbee.common.tunables import HubSettings
from rbee.hive import hf_cache
from rbee.hive.hf_refs import HfRef, parse_hf, select
from rbee.hive.model_sources import ModelSource

log = logging.getLogger(__name__)
logging.getLogger("httpx2").setLevel(logging.WARNING)
"""huggingface_hub's HTTP client logs every request at INFO; the hive's own log says what it fetches."""


@dataclass(frozen=True)
class HubFile:
    """One file of a model at a pinned commit."""

    filename: str
    etag: str
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class HubPlan:
    """What fetching an `hf:` model takes: its files at one commit and where they go."""

    ref: HfRef
    repo: Path
    commit: str
    files: list[HubFile]
    endpoint: str
    headers: dict[str, str] = field(repr=False)

    @property
    def pointer(self) -> Path:
        """The file a worker loads: the first part's snapshot entry."""
        return hf_cache.snapshot_path(self.repo, self.commit, self.files[0].filename)

    def source(self, file: HubFile, sha256: str | None) -> ModelSource:
        """Where one file's bytes come from (`sha256` overrides the hub's digest)."""
        url = hf_hub_url(self.ref.repo_id, file.filename, revision=self.commit, endpoint=self.endpoint)
        return ModelSource(url, self.headers, True, sha256 or file.sha256)


class Hub:
    """The Hugging Face hub and cache as this hive sees them."""

    def __init__(self, settings: HubSettings, timeout_s: float) -> None:
        self.endpoint = settings.endpoint
        self.cache = Path(constants.HF_HUB_CACHE)
        self._token = settings.token
        self._timeout_s = timeout_s

    @property
    def offline(self) -> bool:
        """True when `HF_HUB_OFFLINE` forbids requests to the hub."""
        return constants.is_offline_mode()

    def cached(self, ref: str) -> Path | None:
        """The file to load for `ref` when every part of it is in the cache (no request made)."""
        parsed = parse_hf(ref)
        repo = hf_cache.repo_dir(self.cache, parsed.repo_id)
        commit = hf_cache.cached_commit(repo, parsed.revision_or_default)
        if commit is None:
            return None
        try:
            files = select(parsed, hf_cache.snapshot_files(repo, commit))
        except ApiError:
            return None
        return hf_cache.snapshot_path(repo, commit, files[0])

    def plan(self, ref: str) -> HubPlan:
        """The files of the model `ref` names, from the hub's listing of its revision (blocking)."""
        parsed = parse_hf(ref)
        if self.offline:
            raise ApiError(404, "MODEL_NOT_CACHED",
                           "HF_HUB_OFFLINE is set and the model is not in the Hugging Face cache",
                           {"cache": str(self.cache)})
        token = self._token or get_token()
        info = self._model_info(parsed, token)
        siblings = info.siblings or []
        chosen = set(select(parsed, [s.rfilename for s in siblings]))
        files = [HubFile(s.rfilename, s.lfs.sha256 if s.lfs else str(s.blob_id), s.size,
                         s.lfs.sha256 if s.lfs else None)
                 for s in siblings if s.rfilename in chosen]
        files.sort(key=lambda f: f.filename)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return HubPlan(parsed, hf_cache.repo_dir(self.cache, parsed.repo_id), str(info.sha), files,
                       self.endpoint, headers)

    def _model_info(self, ref: HfRef, token: str | None) -> ModelInfo:
        api = HfApi(endpoint=self.endpoint, token=token or False)
        try:
            return api.model_info(ref.repo_id, revision=ref.revision, files_metadata=True,
                                  timeout=self._timeout_s)
        except GatedRepoError:
            raise ApiError(403, "MODEL_DOWNLOAD_FORBIDDEN",
                           "the repository is gated: accept its terms on the hub and give the hive "
                           "HF_TOKEN or a token file") from None
        except RevisionNotFoundError:
            raise ApiError(404, "REVISION_NOT_FOUND", "the repository has no such revision",
                           {"revision": ref.revision}) from None
        except RepositoryNotFoundError:
            raise ApiError(404, "MODEL_DOWNLOAD_NOT_FOUND",
                           "the hub has no such repository (a private one needs HF_TOKEN)") from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            raise ApiError(502, "MODEL_DOWNLOAD_FAILED",
                           f"the hub answered HTTP {status} to the file listing",
                           {"upstream_status": status}) from None
        except (httpx2.HTTPError, OSError) as exc:
            raise ApiError(502, "HUB_UNREACHABLE", "cannot reach the Hugging Face hub",
                           {"reason": type(exc).__name__}) from None
