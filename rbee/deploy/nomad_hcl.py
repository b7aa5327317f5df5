"""Reading Nomad job files: python-hcl2 parsing and the few helpers the checker and tests share.

python-hcl2 serialises a block `kind "label" { … }` as `{"kind": [{"label": {…}}]}` and an
unlabeled one as `{"kind": [{…}]}`; `blocks` and `labeled` hide that shape. Values written as
`var.NAME` come back as the string `${var.NAME}`, which `resolve` replaces by the variable's default.
"""

from __future__ import annotations

import re
from typing import Any

import hcl2
from lark.exceptions import LarkError, UnexpectedInput

_OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
_VAR_REF = re.compile(r"^\$\{var\.([A-Za-z_][A-Za-z0-9_-]*)\}$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class NomadError(Exception):
    """A Nomad deployment step that cannot go on; `code` is UPPER_SNAKE, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def parse_hcl(text: str) -> dict[str, Any]:
    """The HCL document as python-hcl2 serialises it; a syntax error raises NomadError."""
    try:
        return hcl2.loads(text, serialization_options=_OPTIONS)
    except UnexpectedInput as exc:
        near = str(getattr(exc, "token", None) or getattr(exc, "char", "")).strip()
        shown = repr(near.splitlines()[0][:40]) if near else "end of file"
        message = f"line {exc.line}, column {exc.column}: unexpected {shown}"
        raise NomadError("HCL_SYNTAX", message) from None
    except (LarkError, ValueError) as exc:
        raise NomadError("HCL_SYNTAX", str(exc).splitlines()[0]) from None


def blocks(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The unlabeled blocks `key { … }` of a body."""
    value = body.get(key)
    if isinstance(value, dict):
        return [value]
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def labeled(body: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    """The labeled blocks `key "label" { … }` of a body, as (label, body) pairs."""
    return [(label, inner) for item in blocks(body, key) for label, inner in item.items()
            if isinstance(inner, dict)]


def variable_defaults(document: dict[str, Any]) -> dict[str, Any]:
    """The default value of every `variable` block."""
    return {name: body["default"] for name, body in labeled(document, "variable") if "default" in body}


def resolve(value: Any, defaults: dict[str, Any]) -> Any:
    """A value that is exactly `${var.NAME}` replaced by that variable's default."""
    if isinstance(value, str) and (match := _VAR_REF.match(value)) and match.group(1) in defaults:
        return defaults[match.group(1)]
    return value


def duration_s(value: Any) -> float | None:
    """A Go duration ("45s", "1m30s", "500ms") in seconds, or None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    parts = _DURATION_PART.findall(value)
    if "".join(number + unit for number, unit in parts) != value:
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def flag_values(args: list[Any]) -> dict[str, str | None]:
    """`--flag value` and `--flag=value` pairs of an argument list (None for a bare flag)."""
    found: dict[str, str | None] = {}
    items = [str(item) for item in args]
    for index, item in enumerate(items):
        if not item.startswith("--"):
            continue
        if "=" in item:
            name, _, value = item.partition("=")
            found[name] = value
        elif index + 1 < len(items) and not items[index + 1].startswith("--"):
            found[item] = items[index + 1]
        else:
            found[item] = None
    return found
