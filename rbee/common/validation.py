"""Validation of client input shared by the queen, the hive, the worker and the CLI.

Every check raises InvalidField (a 400 ApiError) with a message that names the field and the
rule but never echoes the offending value. Request bodies use these checks through the pydantic
field types of `request_fields`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from rbee.common.errors import ApiError

MAX_PROMPT_CHARS = 1_000_000
"""A safety bound on a prompt's (or a chat's) characters, of the order of the 1 MiB body limit and far
above a context's worth of text (a 128k-token context holds about 500,000 characters): the real
limit is the worker's context, checked in tokens (400 `PROMPT_TOO_LONG`)."""
MAX_TOKENS_LIMIT = 8_192
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 64
MAX_SEED = 2**31 - 1
RANDOM_SEED = -1
"""A `seed` of -1 asks for a random one (as llama-server takes it)."""
MAX_TOP_K = 1_000
"""Candidates `top_k` keeps at most (0 keeps them all)."""
MAX_REPEAT_PENALTY = 10.0
"""`repeat_penalty` divides a repeated token's logit; 1 is off."""
MAX_OPENAI_PENALTY = 2.0
"""`presence_penalty` and `frequency_penalty` lie in [-2, 2], as OpenAI bounds them."""
PENALTY_WINDOW_TOKENS = 64
"""Last tokens the penalties look back over (llama-server's `repeat_last_n` default)."""
MAX_LOGIT_BIAS = 100.0
"""A `logit_bias` value lies in [-100, 100], as OpenAI bounds it."""
MAX_LOGIT_BIAS_ENTRIES = 1_024
"""Tokens one `logit_bias` may name."""
MAX_TOKEN_ID_DIGITS = 9
"""Digits of a token id in `logit_bias` (the worker checks it against its vocabulary)."""
MAX_TOP_LOGPROBS = 20
"""Alternatives per token of chat `top_logprobs` (OpenAI's limit)."""
MAX_COMPLETION_LOGPROBS = 5
"""Alternatives per token of the completions API's `logprobs` (OpenAI's limit)."""
MAX_CHOICES = 16
"""Choices (`n`) one request may ask for; each also needs a free slot on its worker."""
MAX_SCHEMA_CHARS = 32_000
"""Characters of a `response_format` JSON schema once serialized."""
MAX_MESSAGES = 256
MAX_TOOLS = 128
"""Functions one chat request may offer (`tools`)."""
MAX_TOOL_DESCRIPTION_CHARS = 8_192
MAX_TOOL_ARGUMENTS_CHARS = 100_000
"""The JSON arguments of one tool call in a chat's history."""
MAX_PARALLEL_TOOL_CALLS = 8
"""Tool calls one answer may make when `parallel_tool_calls` is true (the grammar's bound)."""
MAX_HISTORY_TOOL_CALLS = 128
"""Tool calls one assistant message of a chat's history may carry."""
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""OpenAI's rule for a function name."""
TOOL_CALL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

_FORBIDDEN_PROMPT_CHARS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]"
)
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_CATALOG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_HF_REF = re.compile(
    r"^hf:[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?"
    r"(:[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?$"
)
_FILE_REF = re.compile(r"^file:///[A-Za-z0-9_./+-]+\.gguf$")
_HTTPS_REF = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9_./~%+-]*$")
HTTP_BASE_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_MODEL_REF_CHARS = 512
MAX_URL_QUERY_CHARS = 4096
"""Characters of an `https://` ref's query string (a pre-signed S3/GCS link's signature)."""
_URL_QUERY = re.compile(r"^[A-Za-z0-9_.~%+=&/:-]*$")
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")
_SHELL_OR_SPACE = re.compile(r"[;|&$`()<>*?!{}\[\]'\"\\\s]")
_ENCODED_SEPARATOR = re.compile("%(?:2f|5c|25)", re.IGNORECASE)
_REF_SEGMENT_SEPARATOR = re.compile(r"[/:@\\]")
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
MAX_NODE_NAME_CHARS = 253
MAX_PATH_CHARS = 4096
MAX_DEVICE_ID = 63
MAX_GPU_LAYERS = 4096
"""More layers than any GGUF has; a larger gpu_layers is a typo."""
MAX_SLOTS = 256
MAX_TEMPLATE_CHARS = 65_536
"""A chat template given instead of the GGUF's own (the model table's `chat_template`)."""
MAX_KEEP_ALIVE_S = 7 * 24 * 3600.0
"""The longest idle time a model table's `keep_alive_s` may give."""
MAX_EMBEDDING_INPUTS = 2_048
"""Inputs one `/v1/embeddings` request may hold (OpenAI's own limit)."""
MAX_TOKEN_ID = 2**31 - 1
"""The largest token id a request may name (llama.cpp's token type is a signed 32-bit integer)."""
MAX_EMBEDDING_DIMENSIONS = 65_536
"""More dimensions than any embedding model has; a larger `dimensions` is a typo."""


class InvalidField(ApiError):
    """A 400 error naming the field and the rule it broke; `rule` alone is what request bodies report."""

    def __init__(self, field_name: str, rule: str) -> None:
        super().__init__(400, "INVALID_REQUEST", f"'{field_name}' {rule}", {"field": field_name})
        self.rule = rule


def invalid(field_name: str, rule: str) -> InvalidField:
    """A 400 error naming the field and the rule it broke."""
    return InvalidField(field_name, rule)


def without_forbidden_chars(text: str) -> str:
    """`text` without the control characters and bidi overrides prompts may not hold (so a
    model's answer can be shown on a terminal and sent back as history)."""
    return _FORBIDDEN_PROMPT_CHARS.sub("", text)


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


def check_choice(field_name: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of a fixed set of strings."""
    if value not in choices:
        raise invalid(field_name, "must be one of " + ", ".join(choices))
    return value


def check_http_url(field_name: str, value: Any) -> str:
    """An http(s) base URL such as http://127.0.0.1:9200."""
    if not isinstance(value, str) or not HTTP_BASE_URL.fullmatch(value):
        raise invalid(field_name, "must be an http(s) URL of a host and port")
    return value


def check_identifier(field_name: str, value: Any) -> str:
    """A short DNS-safe-ish identifier (worker ids, task ids, node names)."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise invalid(field_name, "must be 1-63 letters, digits, '.', '_' or '-'")
    return value


def check_node_name(field_name: str, value: Any) -> str:
    """A DNS-safe host or node name (RFC 1123 labels, no trailing dot), returned in lowercase."""
    if not isinstance(value, str) or not value:
        raise invalid(field_name, "must be a non-empty string")
    if len(value) > MAX_NODE_NAME_CHARS:
        raise invalid(field_name, f"must be at most {MAX_NODE_NAME_CHARS} characters")
    if not DNS_NAME.fullmatch(value):
        raise invalid(
            field_name,
            "must be dot-separated labels of 1-63 ASCII letters, digits or '-', "
            "neither starting nor ending with '-'",
        )
    return value.lower()


def check_model_ref(value: Any, field_name: str = "model") -> str:
    """A catalog name, `file:///abs/path.gguf`, `hf:org/repo[@revision][:file-or-quant]` or
    `https://…` URL, the URL maybe with a query string (a pre-signed link).

    Whitespace, control and shell characters and `.`/`..` segments are refused both as written
    and after percent-decoding; percent-encoded `/`, `\\` and `%` are refused outright (in a
    URL's query only control characters, decoded or not, and characters outside `_URL_QUERY`).
    """
    if isinstance(value, str) and value.startswith("https://") and "?" in value:
        base, _, query = value.partition("?")
        _check_url_query(field_name, query)
        return _check_plain_ref(base, field_name) + "?" + query
    return _check_plain_ref(value, field_name)


def _check_url_query(field_name: str, query: str) -> None:
    if len(query) > MAX_URL_QUERY_CHARS:
        raise invalid(field_name, f"must have a query string of at most {MAX_URL_QUERY_CHARS} characters")
    if not _URL_QUERY.fullmatch(query) or _CONTROL_CHARS.search(unquote(query)):
        raise invalid(field_name, "must have a query string of URL-safe characters, no control characters")


def _check_plain_ref(value: Any, field_name: str) -> str:
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
        "must be a catalog name, file:///abs/path.gguf, hf:org/repo[@revision][:file] or an https URL",
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


def check_sha256(field_name: str, value: Any) -> str:
    """A hex SHA-256 digest, returned in lower case."""
    if not isinstance(value, str) or not SHA256_HEX.fullmatch(value):
        raise invalid(field_name, "must be 64 hexadecimal characters")
    return value.lower()
