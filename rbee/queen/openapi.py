"""The queen's OpenAPI 3.1 document, served at `/openapi.json` and checked by schemathesis."""

from __future__ import annotations

from typing import Any

from rbee import __version__
from rbee.common.validation import (
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_STOP_CHARS,
    MAX_STOP_SEQUENCES,
    MAX_TOKENS_LIMIT,
)

JSON = "application/json"
SSE = "text/event-stream"
ERROR_STATUSES = {
    "400": "invalid request (validation)",
    "401": "missing or invalid bearer token",
    "404": "unknown model, node, task or worker",
    "413": "request body too large",
    "429": "rate limited (see Retry-After)",
    "503": "unavailable, draining, or no free slot (see Retry-After)",
    "504": "deadline exceeded",
    "507": "insufficient RAM, VRAM or disk",
}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details", "correlation_id"],
            "properties": {
                "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
                "message": {"type": "string"},
                "details": {"type": "object"},
                "correlation_id": {"type": "string", "format": "uuid"},
            },
        }
    },
}
_STOP = {
    "oneOf": [
        {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS},
        {"type": "array", "maxItems": MAX_STOP_SEQUENCES,
         "items": {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}},
    ]
}
_SAMPLING = {
    "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS_LIMIT},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
    "stop": _STOP,
}
_MODEL_REF = {"type": "string", "minLength": 1, "maxLength": 512,
              "description": "catalog name, hf:org/repo[:file], file:///abs.gguf or https URL"}
_PROMPT = {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS}
_TASK = {
    "type": "object",
    "required": ["model", "prompt"],
    "properties": {
        "node": {"type": "string", "maxLength": 63},
        "model": _MODEL_REF,
        "prompt": _PROMPT,
        **_SAMPLING,
    },
}
_COMPLETION = {
    "type": "object",
    "required": ["model", "prompt"],
    "properties": {"model": _MODEL_REF, "prompt": _PROMPT, "stream": {"type": "boolean"}, **_SAMPLING},
}
_CHAT = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": _MODEL_REF,
        "stream": {"type": "boolean"},
        "messages": {
            "type": "array", "minItems": 1, "maxItems": 256,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"enum": ["system", "user", "assistant"]},
                    "content": {"type": "string", "maxLength": MAX_PROMPT_CHARS},
                },
            },
        },
        **_SAMPLING,
    },
}
_WORKERS = {
    "type": "object",
    "required": ["workers", "hives"],
    "properties": {"workers": {"type": "array", "items": {"type": "object"}},
                   "hives": {"type": "array", "items": {"type": "object"}}},
}
_MODELS = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {
        "object": {"const": "list"},
        "data": {"type": "array", "items": {
            "type": "object", "required": ["id", "object"],
            "properties": {"id": {"type": "string"}, "object": {"const": "model"}},
        }},
    },
}
_HEALTH = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
_HEARTBEAT = {
    "type": "object",
    "required": ["hive_url", "workers"],
    "properties": {
        "hive_url": {"type": "string", "format": "uri"},
        "version": {"type": "string"},
        "workers": {"type": "array", "items": {"type": "object"}},
    },
}


def _errors(*statuses: str) -> dict[str, Any]:
    return {
        status: {"description": ERROR_STATUSES[status],
                 "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for status in statuses
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def _ok(description: str, content: dict[str, Any], status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": content}}


_TASK_ERRORS = ("400", "401", "404", "413", "429", "503", "504", "507")
_STREAM = {SSE: {"schema": {"type": "string"}}}


def document() -> dict[str, Any]:
    """The OpenAPI document of every route the queen serves."""
    auth = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "rbee queen", "version": __version__},
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": auth,
        "paths": {
            "/health": {"get": {
                "summary": "liveness (public)", "security": [],
                "responses": _ok("alive", {JSON: {"schema": _HEALTH}}),
            }},
            "/openapi.json": {"get": {
                "summary": "this document",
                "responses": {**_ok("the document", {JSON: {"schema": {"type": "object"}}}),
                              **_errors("401", "429")},
            }},
            "/v1/models": {"get": {
                "summary": "models known to the cluster (OpenAI shape)",
                "responses": {**_ok("models", {JSON: {"schema": _MODELS}}), **_errors("401", "429", "503")},
            }},
            "/v1/completions": {"post": {
                "summary": "OpenAI text completion, streaming or not",
                "requestBody": _body(_COMPLETION),
                "responses": {**_ok("completion", {JSON: {"schema": {"type": "object"}}, **_STREAM}),
                              **_errors(*_TASK_ERRORS)},
            }},
            "/v1/chat/completions": {"post": {
                "summary": "OpenAI chat completion, streaming or not",
                "requestBody": _body(_CHAT),
                "responses": {**_ok("completion", {JSON: {"schema": {"type": "object"}}, **_STREAM}),
                              **_errors(*_TASK_ERRORS)},
            }},
            "/v2/tasks": {"post": {
                "summary": "run a prompt, streaming rbee's native events",
                "requestBody": _body(_TASK),
                "responses": {**_ok("native event stream", _STREAM), **_errors(*_TASK_ERRORS)},
            }},
            "/v2/tasks/{task_id}": {"delete": {
                "summary": "cancel a task (finished tasks: 204 as well)",
                "parameters": [{"name": "task_id", "in": "path", "required": True,
                                "schema": {"type": "string", "maxLength": 63}}],
                "responses": {"204": {"description": "cancelled"}, **_errors("400", "401", "404", "429")},
            }},
            "/v2/workers/list": {"get": {
                "summary": "every worker and hive the queen knows",
                "responses": {**_ok("workers", {JSON: {"schema": _WORKERS}}), **_errors("401", "429")},
            }},
            "/v2/workers/shutdown": {"post": {
                "summary": "drain and stop one worker",
                "requestBody": _body({"type": "object", "required": ["worker_id"],
                                      "properties": {"worker_id": {"type": "string", "maxLength": 63}}}),
                "responses": {**_ok("stopping", {JSON: {"schema": {"type": "object"}}}, "202"),
                              **_errors("400", "401", "404", "413", "429", "503")},
            }},
            "/v2/heartbeat": {"post": {
                "summary": "a hive reports itself and its workers (internal)",
                "requestBody": _body(_HEARTBEAT),
                "responses": {**_ok("recorded", {JSON: {"schema": {"type": "object"}}}),
                              **_errors("400", "401", "413")},
            }},
        },
    }
