"""`hf:` refs: their grammar and which GGUF files of a repository they name.

    hf:org/repo[@revision][:selector]

The selector is a file path (it ends in `.gguf`), a quant tag such as `Q4_K_M` (matched
case-insensitively as a whole word of the file's path, as `ollama pull hf.co/…:Q4_K_M` and
`llama-server -hf` take it), or absent (the repository's only GGUF model). A model split into
`<name>-00001-of-0000N.gguf` parts is one model: every part is fetched and the first is the
one a worker loads (llama.cpp finds the others beside it). `mmproj` files (vision projectors)
are never picked by a tag or by the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rbee.common.errors import ApiError

DEFAULT_REVISION = "main"
MAX_LISTED_FILES = 20
COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$", re.IGNORECASE)


@dataclass(frozen=True)
class HfRef:
    """A parsed `hf:` ref."""

    repo_id: str
    revision: str | None
    selector: str | None

    @property
    def names_file(self) -> bool:
        """True when the selector is a file path rather than a quant tag."""
        return self.selector is not None and self.selector.lower().endswith(".gguf")

    @property
    def revision_or_default(self) -> str:
        """The revision asked for, `main` when none."""
        return self.revision or DEFAULT_REVISION


def parse_hf(ref: str) -> HfRef:
    """The parts of an already validated `hf:org/repo[@revision][:selector]` ref."""
    body = ref.removeprefix("hf:")
    head, _, selector = body.partition(":")
    repo_id, _, revision = head.partition("@")
    return HfRef(repo_id, revision or None, selector or None)


def _is_gguf(name: str) -> bool:
    return name.lower().endswith(".gguf")


def _is_projector(name: str) -> bool:
    return name.rsplit("/", 1)[-1].lower().startswith("mmproj")


def parts_of(name: str) -> list[str]:
    """Every part of the model `name` belongs to, in order (`[name]` for a single file)."""
    match = _SPLIT.match(name)
    if match is None:
        return [name]
    total = int(match.group("total"))
    width = len(match.group("part"))
    stem, ext = match.group("stem"), name[-5:]
    return [f"{stem}-{i:0{width}d}-of-{match.group('total')}{ext}" for i in range(1, total + 1)]


def _models(names: list[str]) -> list[list[str]]:
    """The GGUF models among `names`: each a single file or a complete list of parts."""
    present = set(names)
    found: dict[str, list[str]] = {}
    for name in sorted(n for n in names if _is_gguf(n)):
        parts = parts_of(name)
        if all(p in present for p in parts):
            found.setdefault(parts[0], parts)
    return list(found.values())


def quant_matches(tag: str, name: str) -> bool:
    """True when `tag` stands in `name` as a whole word (so `Q4_K` is not `Q4_K_M`, nor `Q4_0` `IQ4_0`)."""
    word = rf"(?<![A-Za-z0-9]){re.escape(tag)}(?![A-Za-z0-9_])"
    return re.search(word, name, re.IGNORECASE) is not None


def select(ref: HfRef, names: list[str]) -> list[str]:
    """The files (all parts, first part first) of the model `ref` names among a revision's
    files; ApiError when none or several match."""
    if ref.names_file:
        assert ref.selector is not None
        parts = parts_of(ref.selector)
        missing = [p for p in parts if p not in set(names)]
        if missing:
            raise ApiError(404, "MODEL_DOWNLOAD_NOT_FOUND", "the repository has no such file",
                           {"missing": missing[:MAX_LISTED_FILES]})
        return parts
    models = [m for m in _models(names) if not _is_projector(m[0])]
    if ref.selector is not None:
        matching = [m for m in models if quant_matches(ref.selector, m[0])]
        if not matching:
            raise ApiError(404, "MODEL_QUANT_NOT_FOUND", "no GGUF file of the repository has that quant",
                           {"files": [m[0] for m in models][:MAX_LISTED_FILES]})
        if len(matching) > 1:
            raise ApiError(400, "MODEL_QUANT_AMBIGUOUS",
                           "several GGUF files of the repository have that quant: "
                           "name one as hf:org/repo:file.gguf",
                           {"files": [m[0] for m in matching][:MAX_LISTED_FILES]})
        return matching[0]
    if not models:
        raise ApiError(404, "MODEL_DOWNLOAD_NOT_FOUND", "the repository holds no GGUF file")
    if len(models) > 1:
        raise ApiError(400, "MODEL_FILE_AMBIGUOUS",
                       "the repository holds several GGUF files: "
                       "name one as hf:org/repo:file.gguf or hf:org/repo:QUANT",
                       {"files": [m[0] for m in models][:MAX_LISTED_FILES]})
    return models[0]
