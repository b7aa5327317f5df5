"""A stand-in of the Hugging Face hub on loopback, for tests and benchmarks (nothing reaches the
internet, and it shares no code with the hive it serves).

On top of `FileServer` (Range, faults, recorded hits) it speaks the hub's HTTP API for exactly
the calls rbee and `huggingface_hub` make:

- `GET /api/models/{org}/{repo}[/revision/{revision}]`: `id`, `sha` (the commit) and `siblings`
  (`rfilename`; with `?blobs=true` also `size`, `blobId` and `lfs` {`sha256`, `size`,
  `pointerSize`}), as `HfApi.model_info(files_metadata=True)` reads it;
- `GET`/`HEAD /{org}/{repo}/resolve/{revision}/{file}`: 302 to the bytes on another origin
  (`localhost` instead of `127.0.0.1`, as the hub's CDN is another host) with `X-Repo-Commit`,
  `ETag`, `X-Linked-Etag` (the SHA-256) and `X-Linked-Size`, as `hf_hub_download` needs them;
- errors with the hub's `X-Error-Code`: `RepoNotFound`, `RevisionNotFound`, `EntryNotFound`,
  `GatedRepo` (401 without a token, 403 with another one).

Branches move as on the hub: publishing a file makes a new commit on its branch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web

from rbee.testing.file_server import FileServer, json_error, sha256_of

_API_MODEL = re.compile(r"^/api/models/([^/]+)/([^/]+)(?:/revision/(.+))?$")
_RESOLVE = re.compile(r"^/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")
POINTER_SIZE = 134


@dataclass
class _Repo:
    commits: dict[str, dict[str, str]] = field(default_factory=dict)
    """Commit → file name → URL path of its bytes."""
    refs: dict[str, str] = field(default_factory=dict)
    """Branch or tag → commit."""
    token: str | None = None


class HubStandIn(FileServer):
    """The loopback stand-in of the hub; `url` is the endpoint to give the hive."""

    def __init__(self, tls: bool = False) -> None:
        super().__init__(tls)
        self._hub: dict[tuple[str, str], _Repo] = {}
        self._commits = 0

    def add_hf(self, org: str, repo: str, filename: str, source: Path, sha256: str | None = None,
               revision: str = "main") -> str:
        """Publish `source` as `filename` of `org/repo` in a new commit on branch `revision`;
        returns its `hf:org/repo:file` ref."""
        sha = sha256 or sha256_of(Path(source))
        with self._lock:
            self._commits += 1
            number = self._commits
            entry = self._hub.setdefault((org, repo), _Repo())
            base = entry.refs.get(revision) or entry.refs.get("main")
            files = dict(entry.commits.get(base, {})) if base else {}
            commit = hashlib.sha1(f"{org}/{repo}/{number}".encode()).hexdigest()
            files[filename] = f"/cdn/{org}/{repo}/{number}/{filename}"
            entry.commits[commit] = files
            entry.refs[revision] = commit
        self.add(files[filename], source, sha)
        return f"hf:{org}/{repo}:{filename}"

    def cdn_path(self, org: str, repo: str, filename: str, revision: str = "main") -> str:
        """Where the bytes of a file of a branch's head are served (the resolve redirect's target)."""
        with self._lock:
            entry = self._hub[(org, repo)]
            return entry.commits[entry.refs[revision]][filename]

    def commit_of(self, org: str, repo: str, revision: str = "main") -> str:
        """The commit a branch points to now."""
        with self._lock:
            return self._hub[(org, repo)].refs[revision]

    def gate(self, org: str, repo: str, token: str) -> None:
        """Answer 401/403 `GatedRepo` for the repo unless `token` is presented."""
        with self._lock:
            self._hub.setdefault((org, repo), _Repo()).token = token

    @property
    def cdn_url(self) -> str:
        """Where the resolve redirects send the bytes from: the same server under another host
        name (`localhost`), so that clients treat it as the hub's CDN, another origin."""
        return self.url.replace("127.0.0.1", "localhost")

    def api_hits(self) -> list:
        """Requests made to the hub's API and resolve URLs (not to the bytes), any method."""
        return [h for m in ("GET", "HEAD") for h in self.hits(method=m)
                if h.path.startswith("/api/") or "/resolve/" in h.path]

    def _special(self, request: web.Request) -> web.Response | None:
        if match := _API_MODEL.match(request.path):
            org, repo, revision = match.groups()
            return self._api_model(request, org, repo, revision or "main")
        if match := _RESOLVE.match(request.path):
            return self._resolve(request, *match.groups())
        return None

    def _commit(self, request: web.Request, org: str, repo: str, revision: str) -> str | web.Response:
        with self._lock:
            entry = self._hub.get((org, repo))
        if entry is None or not entry.commits:
            return json_error(404, "Repository not found", {"X-Error-Code": "RepoNotFound"})
        given = request.headers.get("Authorization")
        if entry.token is not None and given is None:
            return json_error(401, "Access to this model is restricted. You must be authenticated.",
                          {"X-Error-Code": "GatedRepo"})
        if entry.token is not None and given != f"Bearer {entry.token}":
            return json_error(403, "Access to this model is restricted.", {"X-Error-Code": "GatedRepo"})
        revision = unquote(revision)
        commit = entry.refs.get(revision) or (revision if revision in entry.commits else None)
        if commit is None:
            return json_error(404, "Invalid rev id", {"X-Error-Code": "RevisionNotFound"})
        return commit

    def _files_of(self, org: str, repo: str, commit: str) -> dict[str, str]:
        with self._lock:
            return dict(self._hub[(org, repo)].commits[commit])

    def _api_model(self, request: web.Request, org: str, repo: str, revision: str) -> web.Response:
        commit = self._commit(request, org, repo, revision)
        if isinstance(commit, web.Response):
            return commit
        blobs = request.query.get("blobs", "").lower() == "true"
        siblings = []
        for name, path in sorted(self._files_of(org, repo, commit).items()):
            sibling: dict[str, object] = {"rfilename": name}
            if blobs:
                served = self.file(path)
                blob_id = hashlib.sha1(served.sha256.encode()).hexdigest()
                lfs = {"sha256": served.sha256, "size": served.size, "pointerSize": POINTER_SIZE}
                sibling.update(size=served.size, blobId=blob_id, lfs=lfs)
            siblings.append(sibling)
        return web.json_response({"id": f"{org}/{repo}", "modelId": f"{org}/{repo}", "sha": commit,
                                  "private": False, "siblings": siblings})

    def _resolve(
        self, request: web.Request, org: str, repo: str, revision: str, filename: str
    ) -> web.Response:
        commit = self._commit(request, org, repo, revision)
        if isinstance(commit, web.Response):
            return commit
        path = self._files_of(org, repo, commit).get(filename)
        if path is None:
            return json_error(404, "Entry not found",
                              {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
        served = self.file(path)
        return web.Response(status=302, headers={
            "Location": self.cdn_url + path,
            "X-Repo-Commit": commit,
            "X-Linked-Etag": served.etag,
            "X-Linked-Size": str(served.size),
            "ETag": served.etag,
        })
