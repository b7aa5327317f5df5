"""Validation of client input shared by the queen, the hive, the worker and the CLI.

Every check raises ApiError(400, ...) with a message that names the field and the rule but
never echoes the offending value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from rbee.common.errors import ApiError

MAX_PROMPT_CHARS = 32_000
MAX_TOKENS_LIMIT = 8_192
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 64
MAX_SEED = 2**31 - 1
MAX_MESSAGES = 256

_FORBIDDEN_PROMPT_CHARS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]"
)
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_CATALOG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_HF_REF = re.compile(
    r"^hf:[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(:[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?$"
)
_FILE_REF = re.compile(r"^file:///[A-Za-z0-9_./+-]+\.gguf$")
_HTTPS_REF = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9_./~%+-]*$")
_HTTP_BASE_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
MAX_MODEL_REF_CHARS = 512
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")
_SHELL_OR_SPACE = re.compile(r"[;|&$`()<>*?!{}\[\]'\"\\\s]")
_ENCODED_SEPARATOR = re.compile("%(?:2f|5c|25)", re.IGNORECASE)
_REF_SEGMENT_SEPARATOR = re.compile(r"[/:\\]")
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
MAX_NODE_NAME_CHARS = 253
MAX_PATH_CHARS = 4096
MAX_DEVICE_ID = 63
MAX_SLOTS = 64
CHAT_ROLES = ("system", "user", "assistant")
BACKENDS = ("cpu", "cuda", "metal")


def invalid(field_name: str, rule: str) -> ApiError:
    """A 400 error naming the field and the rule it broke."""
    return ApiError(400, "INVALID_REQUEST", f"'{field_name}' {rule}", {"field": field_name})


def check_text(field_name: str, value: Any, max_chars: int, allow_empty: bool = False) -> str:
    """A string without control characters (tab and newlines allowed) or bidi overrides."""
    if not isinstance(value, str):
        raise invalid(field_name, "must be a string")
    if not value and not allow_empty:
        raise invalid(field_name, "must not be empty")
    if len(value) > max_chars:
        raise invalid(field_name, f"must be at most {max_chars} characters")
    if _FORBIDDEN_PROMPT_CHARS.search(value):
        raise invalid(field_name, "must not contain control characters or bidi overrides")
    return value


def check_int(field_name: str, value: Any, low: int, high: int) -> int:
    """An integer (not a bool) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field_name, "must be an integer")
    if not low <= value <= high:
        raise invalid(field_name, f"must be between {low} and {high}")
    return value


def check_float(field_name: str, value: Any, low: float, high: float) -> float:
    """A number (not a bool) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field_name, "must be a number")
    if not low <= value <= high:
        raise invalid(field_name, f"must be between {low} and {high}")
    return float(value)


def check_bool(field_name: str, value: Any) -> bool:
    """A JSON boolean."""
    if not isinstance(value, bool):
        raise invalid(field_name, "must be true or false")
    return value


def check_choice(field_name: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of a fixed set of strings."""
    if value not in choices:
        raise invalid(field_name, "must be one of " + ", ".join(choices))
    return value


def check_http_url(field_name: str, value: Any) -> str:
    """An http(s) base URL such as http://127.0.0.1:9200."""
    if not isinstance(value, str) or not _HTTP_BASE_URL.fullmatch(value):
        raise invalid(field_name, "must be an http(s) URL of a host and port")
    return value


def check_identifier(field_name: str, value: Any) -> str:
    """A short DNS-safe-ish identifier (worker ids, task ids, node names)."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise invalid(field_name, "must be 1-63 letters, digits, '.', '_' or '-'")
    return value


def check_node_name(field_name: str, value: Any) -> str:
    """A DNS-safe host or node name (RFC 1123 labels, no trailing dot), returned in lowercase."""
    if not isinstance(value, str) or not value:
        raise invalid(field_name, "must be a non-empty string")
    if len(value) > MAX_NODE_NAME_CHARS:
        raise invalid(field_name, f"must be at most {MAX_NODE_NAME_CHARS} characters")
    if not _DNS_NAME.fullmatch(value):
        raise invalid(
            field_name,
            "must be dot-separated labels of 1-63 ASCII letters, digits or '-', "
            "neither starting nor ending with '-'",
        )
    return value.lower()


def check_model_ref(value: Any, field_name: str = "model") -> str:
    """A catalog name, `file:///abs/path.gguf`, `hf:org/repo[:file]` or `https://…` URL.

    Whitespace, control and shell characters and `.`/`..` segments are refused both as written
    and after percent-decoding; percent-encoded `/`, `\\` and `%` are refused outright.
    """
    if not isinstance(value, str) or not value:
        raise invalid(field_name, "must be a non-empty string")
    if len(value) > MAX_MODEL_REF_CHARS or not value.isascii():
        raise invalid(field_name, "must be an ASCII model reference of at most 512 characters")
    if _ENCODED_SEPARATOR.search(value):
        raise invalid(field_name, "must not percent-encode '/', '\\' or '%'")
    decoded = unquote(value)
    if not decoded.isascii():
        raise invalid(field_name, "must not percent-encode non-ASCII characters")
    if _CONTROL_CHARS.search(decoded) or _SHELL_OR_SPACE.search(decoded):
        raise invalid(field_name, "must not contain whitespace, control characters or shell metacharacters")
    if {".", ".."} & set(_REF_SEGMENT_SEPARATOR.split(decoded)):
        raise invalid(field_name, "must not contain path traversal")
    for pattern in (_CATALOG_NAME, _FILE_REF, _HF_REF, _HTTPS_REF):
        if pattern.fullmatch(value):
            return value
    raise invalid(
        field_name,
        "must be a catalog name, file:///abs/path.gguf, hf:org/repo[:file] or an https URL",
    )


def check_path_within(field_name: str, base: Path, value: str | Path) -> Path:
    """`value` (relative to `base`, or absolute) resolved, `..` and symlinks included, inside `base`."""
    if not isinstance(value, str | Path) or not str(value):
        raise invalid(field_name, "must be a non-empty path")
    text = str(value)
    if len(text) > MAX_PATH_CHARS:
        raise invalid(field_name, f"must be at most {MAX_PATH_CHARS} characters")
    if _CONTROL_CHARS.search(text):
        raise invalid(field_name, "must not contain control characters")
    root = base.resolve()
    try:
        resolved = (root / text).resolve()
    except (OSError, RuntimeError) as exc:
        raise invalid(field_name, "must be a resolvable path") from exc
    if not resolved.is_relative_to(root):
        raise invalid(field_name, "must stay inside its base directory")
    return resolved


def check_port(field_name: str, value: Any) -> int:
    """A TCP port number, 1-65535."""
    return check_int(field_name, value, 1, 65535)


def check_device_id(field_name: str, value: Any) -> int:
    """A GPU or accelerator index, 0-63."""
    return check_int(field_name, value, 0, MAX_DEVICE_ID)


def check_slots(field_name: str, value: Any) -> int:
    """A worker's number of parallel inference slots, 1-64."""
    return check_int(field_name, value, 1, MAX_SLOTS)


@dataclass(frozen=True)
class SamplingParams:
    """Validated generation settings common to every inference API."""

    max_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    ignore_eos: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The JSON form sent from queen to worker."""
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": list(self.stop),
            "ignore_eos": self.ignore_eos,
        }


def parse_stop(value: Any) -> tuple[str, ...]:
    """OpenAI's `stop`: absent, one string, or a list of up to four strings."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_STOP_SEQUENCES:
        raise invalid("stop", f"must be a string or a list of at most {MAX_STOP_SEQUENCES}")
    return tuple(check_text("stop", item, MAX_STOP_CHARS) for item in items)


def parse_sampling(body: dict[str, Any]) -> SamplingParams:
    """Validate the sampling fields of a request body, applying defaults."""
    defaults = SamplingParams()
    max_tokens = body.get("max_tokens")
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    seed = body.get("seed")
    return SamplingParams(
        max_tokens=defaults.max_tokens
        if max_tokens is None
        else check_int("max_tokens", max_tokens, 1, MAX_TOKENS_LIMIT),
        temperature=defaults.temperature
        if temperature is None
        else check_float("temperature", temperature, 0.0, 2.0),
        top_p=defaults.top_p if top_p is None else check_float("top_p", top_p, 0.0, 1.0),
        seed=None if seed is None else check_int("seed", seed, 0, MAX_SEED),
        stop=parse_stop(body.get("stop")),
        ignore_eos=check_bool("ignore_eos", body.get("ignore_eos", False)),
    )


def parse_prompt(body: dict[str, Any]) -> str:
    """The `prompt` field: required, bounded, no control characters."""
    return check_text("prompt", body.get("prompt"), MAX_PROMPT_CHARS)


def parse_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """OpenAI chat `messages`: a non-empty list of {role, content} with known roles."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "must be a non-empty list")
    if len(messages) > MAX_MESSAGES:
        raise invalid("messages", f"must hold at most {MAX_MESSAGES} messages")
    parsed: list[dict[str, str]] = []
    total = 0
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
            raise invalid("messages", "items need a role of system, user or assistant")
        content = check_text("messages.content", message.get("content"), MAX_PROMPT_CHARS, True)
        total += len(content)
        parsed.append({"role": message["role"], "content": content})
    if total > MAX_PROMPT_CHARS:
        raise invalid("messages", f"must hold at most {MAX_PROMPT_CHARS} characters in all")
    return parsed
