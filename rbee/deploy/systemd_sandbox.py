"""Which folders a unit's sandboxing hides from its processes, and which of rbee's to bind back.

`PrivateTmp=yes` (implied by `DynamicUser=yes`) gives a unit empty /tmp and /var/tmp of its own;
`ProtectHome=yes` or `tmpfs` empty /home, /root and /run/user (`read-only` hides nothing). An rbee
installed below one of them, such as a checkout and its virtualenv under /tmp, would fail with
203/EXEC, so its units bind those install folders back in with `BindReadOnlyPaths=`, which
system and user managers both accept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"))
HOMES = (Path("/home"), Path("/root"), Path("/run/user"))
TRUE = frozenset({"yes", "true", "on", "1"})
COMMENT = ("#", ";")


def directives(text: str) -> dict[str, str]:
    """The `Key=value` lines of a unit file; the last of a repeated key wins."""
    found = {}
    for line in text.splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.lstrip().startswith(COMMENT):
            found[key.strip()] = value.strip()
    return found


def _on(settings: Mapping[str, str], key: str) -> bool:
    return settings.get(key, "no").lower() in TRUE


def hidden_roots(settings: Mapping[str, str]) -> tuple[Path, ...]:
    """The folders that these unit settings replace with empty ones of the unit's own."""
    private_tmp = _on(settings, "PrivateTmp") or _on(settings, "DynamicUser")
    protect_home = _on(settings, "ProtectHome") or settings.get("ProtectHome", "").lower() == "tmpfs"
    return (PRIVATE_TMP if private_tmp else ()) + (HOMES if protect_home else ())


def read_only_binds(paths: Iterable[Path], settings: Mapping[str, str]) -> list[Path]:
    """The `paths` these unit settings hide, less those inside another of them, sorted."""
    roots = hidden_roots(settings)
    hidden = {path for path in paths if any(path.is_relative_to(root) for root in roots)}
    return sorted(path for path in hidden
                  if not any(path != other and path.is_relative_to(other) for other in hidden))
