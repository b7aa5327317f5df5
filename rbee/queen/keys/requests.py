"""The body of `POST /v2/keys`: what a new key may do, validated before it is created."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from rbee.common.request_body import RequestBody, refusal
from rbee.queen.keys.store import MAX_MODELS, NAME_PATTERN, KeyLimits

Scope = Literal["inference", "admin", "node"]
Limit = Annotated[int, Field(ge=1, le=10_000_000)]


class KeyCreate(RequestBody):
    """`POST /v2/keys`: a named key with its scopes, models, limits, weight and expiry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN.pattern)]
    scopes: Annotated[tuple[Scope, ...], Field(min_length=1, max_length=3)]
    models: Annotated[tuple[Annotated[str, Field(min_length=1, max_length=512)], ...],
                      Field(min_length=1, max_length=MAX_MODELS)] | None = None
    rpm: Limit | None = None
    tokens_per_min: Limit | None = None
    concurrency: Annotated[int, Field(ge=1, le=100_000)] | None = None
    weight: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] = 1.0
    expires_at: datetime | None = None
    """When the key stops working (ISO 8601 with a time zone; must lie in the future)."""

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise refusal("must name its time zone (e.g. 2027-01-01T00:00:00Z)")
        if value <= datetime.now(UTC):
            raise refusal("must lie in the future")
        return value

    def limits(self) -> KeyLimits:
        """The key's limits."""
        return KeyLimits(self.rpm, self.tokens_per_min, self.concurrency)
