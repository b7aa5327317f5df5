"""`POST /v1/embeddings`, OpenAI's: vectors from an embedding worker of the model."""

from __future__ import annotations

import base64
import struct
from typing import Any

from aiohttp import web

from rbee.common.embedding_wire import EmbeddingResult
from rbee.common.errors import correlation_id_of, read_json_object
from rbee.queen.api.embedding_requests import EmbeddingRequest
from rbee.queen.api.keys import BACKEND_POLICY, EMBEDDINGS
from rbee.queen.api.task_stream import request_deadline
from rbee.queen.keys.authentication import require_model
from rbee.queen.routing.tenant import ANONYMOUS, TENANT


def encode(vector: list[float], encoding_format: str) -> list[float] | str:
    """A vector as OpenAI sends it: the floats, or (`base64`) its little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def response(result: EmbeddingResult, model: str, encoding_format: str) -> dict[str, Any]:
    """OpenAI's embedding list: one entry per input, in order, and the tokens embedded."""
    data = [{"object": "embedding", "index": index, "embedding": encode(vector, encoding_format)}
            for index, vector in enumerate(result.embeddings)]
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


async def embeddings(request: web.Request) -> web.Response:
    """POST /v1/embeddings."""
    body = EmbeddingRequest.parse(await read_json_object(request))
    deadline = request_deadline(request)
    require_model(request, body.model)
    backend = request.app[BACKEND_POLICY].resolve(body.model, body.backend)
    result = await request.app[EMBEDDINGS].embed(body.model, body.worker_body(), backend, deadline,
                                                 correlation_id_of(request), request.get(TENANT, ANONYMOUS))
    return web.json_response(response(result, body.model, body.encoding_format))
