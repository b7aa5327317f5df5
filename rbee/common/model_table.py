"""The schema of the queen's model table (`models:` in its config): alias → ref and settings.

An alias is what clients send as `model`; its entry names the model (`ref`: a catalog name,
`hf:`, `https://` or `file:///` ref) and how its workers run (context per slot, slots, backend,
GPU layers, chat template, replicas, idle keep-alive) plus the sampling a request gets for each
field it omits. Every value is checked with the rules a request or a worker option follows, so
a table that loads is one every worker can start with.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from rbee.common import defaults
from rbee.common.errors import ApiError
from rbee.common.request_body import field_name, rule
from rbee.common.validation import (
    MAX_GPU_LAYERS,
    MAX_KEEP_ALIVE_S,
    MAX_SLOTS,
    MAX_TEMPLATE_CHARS,
    check_model_ref,
    check_text,
)
from rbee.common.wire_requests import SamplingParams

ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
"""An alias is spelled like a catalog name (so any OpenAI client can send it as `model`)."""
SAMPLING_KEYS = ("max_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                 "presence_penalty", "frequency_penalty", "seed", "stop")
"""The request fields an alias may give a default for."""


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


def _ref(value: Any) -> str:
    try:
        return check_model_ref(value, "ref")
    except ApiError as exc:
        raise ValueError(exc.message.removeprefix("'ref' ")) from None


def _template(value: Any) -> str:
    try:
        return check_text("chat_template", value, MAX_TEMPLATE_CHARS)
    except ApiError as exc:
        raise ValueError(exc.message.removeprefix("'chat_template' ")) from None


def _sampling(value: Any) -> dict[str, Any]:
    """Defaults checked by the rules of the request fields they stand in for."""
    if not isinstance(value, dict):
        raise ValueError("must be a mapping of request fields to values")
    unknown = sorted(set(value) - set(SAMPLING_KEYS))
    if unknown:
        allowed = ", ".join(SAMPLING_KEYS)
        raise ValueError(f"unknown field `{unknown[0]}` (defaults may be given for {allowed})")
    try:
        SamplingParams.model_validate(value)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        raise ValueError(f"`{field_name(error['loc'])}` {rule(error)}") from None
    return dict(value)


Number = BeforeValidator(_not_bool)


class ModelSpec(BaseModel):
    """One alias of the model table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: Annotated[str, AfterValidator(_ref)]
    """The model: a catalog name, `hf:org/repo[:file]`, `https://…` or `file:///abs.gguf`."""
    ctx_size: Annotated[int, Number, Field(ge=1)] | None = None
    """Context tokens per slot (None: the hive's `ctx_size`)."""
    slots: Annotated[int, Number, Field(ge=1, le=MAX_SLOTS)] | None = None
    """Requests a worker runs at once (None: the queen's `worker_slots`)."""
    backend: Literal[defaults.BACKEND_POLICIES] | None = None
    """The backend of its requests that name none (None: the queen's `backend`)."""
    gpu_layers: Annotated[int, Number, Field(ge=0, le=MAX_GPU_LAYERS)] | None = None
    """Layers offloaded to the GPU (None: all that fit)."""
    chat_template: Annotated[str, AfterValidator(_template)] | None = None
    """A Jinja chat template used instead of the GGUF's own."""
    sampling: Annotated[dict[str, Any], AfterValidator(_sampling)] = Field(default_factory=dict)
    """Per request field, the value a request that omits it gets (its own value wins)."""
    max_replicas: Annotated[int, Number, Field(ge=1, le=MAX_SLOTS)] | None = None
    """Workers of the alias at most (None: the tunable `gpu_max_replicas`)."""
    keep_alive_s: Annotated[float, Number, Field(gt=0, le=MAX_KEEP_ALIVE_S)] | None = None
    """An idle worker of the alias stops after this long (None: the tunable `idle_unload_s`)."""
    owned_by: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = "rbee"
    """`owned_by` of the alias in `/v1/models`."""


def _alias(value: str) -> str:
    if not ALIAS.fullmatch(value):
        raise ValueError("an alias is 1-128 letters, digits, '_', '.' or '-', starting with a letter or "
                         "digit")
    return value


Alias = Annotated[str, AfterValidator(_alias)]
ModelTable = dict[Alias, ModelSpec]
"""The `models:` key of the queen's config: alias → ModelSpec."""


def known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed where a table error at `loc` (below `models`) points, for suggestions."""
    return list(ModelSpec.model_fields) if len(loc) == 3 else []
