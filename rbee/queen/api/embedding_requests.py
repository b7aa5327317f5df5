"""The body of the queen's `POST /v1/embeddings` (OpenAI's), as a pydantic model. Unknown
fields are ignored, as on the other OpenAI routes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from rbee.common.embedding_wire import Dimensions, EmbeddingInputs
from rbee.common.request_body import RequestBody
from rbee.common.request_fields import BackendPolicy, DefaultWhen, ModelRef

MAX_USER_CHARS = 256
"""OpenAI's `user` is an end-user id for its abuse monitoring; longer is not an id."""


class EmbeddingRequest(RequestBody):
    """`POST /v1/embeddings`."""

    model: ModelRef
    input: EmbeddingInputs
    encoding_format: Annotated[Literal["float", "base64"], DefaultWhen()] = "float"
    """`base64`: each vector as the base64 of its little-endian float32 bytes."""
    dimensions: Dimensions | None = None
    """Only the model's own size is accepted (the worker checks it)."""
    user: Annotated[str, Field(max_length=MAX_USER_CHARS)] | None = None
    """Accepted and not used: OpenAI uses it only to monitor abuse, it changes no vector."""
    backend: BackendPolicy | None = None
    """rbee's extension: run on this backend or fail; None: the queen's policy for the model."""

    def worker_body(self) -> dict[str, Any]:
        """What the embedding worker gets: the inputs and the size asked for."""
        return {"input": self.input, "dimensions": self.dimensions}
