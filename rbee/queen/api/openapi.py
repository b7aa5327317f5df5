"""The queen's OpenAPI 3.1 document, served at `/openapi.json` and checked by schemathesis."""

from __future__ import annotations

from typing import Any

from aiohttp import web

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
    "409": "conflict (a node of that name exists)",
    "413": "request body too large",
    "422": "the node failed SSH preflight (host key, key, rbee install)",
    "429": "rate limited, or the model's admission queue is full (see Retry-After)",
    "503": "unavailable, draining, or no slot came free within the admission wait (see Retry-After)",
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
    "required": ["workers", "hives", "queue"],
    "properties": {"workers": {"type": "array", "items": {"type": "object"}},
                   "hives": {"type": "array", "items": {"type": "object"}},
                   "queue": {"type": "object", "required": ["waiting", "by_model"],
                             "properties": {"waiting": {"type": "integer", "minimum": 0},
                                            "by_model": {"type": "object"}}}},
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
_CHECKS = {"type": "object", "additionalProperties": {
    "type": "object", "required": ["ok", "detail"],
    "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
}}
_READY = {"type": "object", "required": ["ready", "checks"],
          "properties": {"ready": {"const": True}, "checks": _CHECKS}}
_NOT_READY = {"type": "object", "required": ["ready", "checks", "error"], "properties": {
    "ready": {"const": False}, "checks": _CHECKS, "error": _ERROR["properties"]["error"]}}
_STATUS = {
    "type": "object",
    "required": ["nodes", "hives", "workers", "models", "tasks_running", "queue_depth", "tokens_per_second"],
    "properties": {
        "nodes": {"type": "array", "items": {"type": "object",
                                             "required": ["name", "hive_url", "kind", "hive"]}},
        "hives": {"type": "array", "items": {"type": "object"}},
        "workers": {"type": "array", "items": {"type": "object", "required": [
            "worker_id", "node", "model", "state", "slots", "slots_busy", "tokens_per_second", "restarts"]}},
        "models": {"type": "array", "items": {"type": "object"}},
        "tasks_running": {"type": "integer", "minimum": 0},
        "queue_depth": {"type": "integer", "minimum": 0},
        "tokens_per_second": {"type": "number", "minimum": 0},
    },
}
_LOG_PARAMETERS = [
    {"name": "node", "in": "query", "required": True, "description": "`localhost` or a registered node",
     "schema": {"type": "string", "minLength": 1, "maxLength": 253}},
    {"name": "lines", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 10000},
     "description": "last lines of each log to send first (default 100)"},
    {"name": "follow", "in": "query", "schema": {"enum": ["true", "false"]},
     "description": "keep sending new lines until the client leaves"},
    {"name": "source", "in": "query", "schema": {"type": "string", "maxLength": 63},
     "description": "only this log: `hive` or a worker id"},
]
_HEARTBEAT = {
    "type": "object",
    "required": ["hive_url", "workers"],
    "properties": {
        "hive_url": {"type": "string", "format": "uri"},
        "version": {"type": "string"},
        "workers": {"type": "array", "items": {"type": "object"}},
    },
}


_NODE_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_NODE_FIELDS = {
    "name": _NODE_NAME,
    "ssh_host": _NODE_NAME,
    "ssh_port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "ssh_user": {"type": "string", "minLength": 1, "maxLength": 32},
    "ssh_key": {"type": "string", "minLength": 1, "maxLength": 4096,
                "description": "absolute path of a private key file on the queen's machine"},
    "install_path": {"type": "string", "minLength": 1, "maxLength": 4096,
                     "description": "rbee's prefix on the node; the queen runs <install_path>/bin/rbee"},
    "hive_port": {"type": "integer", "minimum": 1, "maximum": 65535,
                  "description": "port of the node's hive (default 9200)"},
    "hive_data_dir": {"type": "string", "maxLength": 4096,
                      "description": "the hive's data dir on the node (default <install_path>/var/hive)"},
}
_NODE_ADD = {
    "type": "object",
    "required": ["name", "ssh_host", "ssh_user", "ssh_key"],
    "properties": {**_NODE_FIELDS, "update": {"type": "boolean"}, "accept_new_host_key": {"type": "boolean"}},
}
_NODE = {
    "type": "object",
    "required": [*_NODE_FIELDS, "added_at", "preflight"],
    "properties": {**_NODE_FIELDS, "added_at": {"type": "string"}, "preflight": {"type": "object"}},
}
_NODE_ADDED = {"type": "object", "required": ["node", "replaced"],
               "properties": {"node": _NODE, "replaced": {"type": "boolean"}}}
_HIVE_PREFLIGHT = {"type": ["object", "null"],
                   "description": "the node's hive as last checked by this queen (null before first use)"}
_NODE_LIST = {"type": "object", "required": ["nodes"],
              "properties": {"nodes": {"type": "array", "items": {
                  **_NODE, "properties": {**_NODE["properties"], "hive": _HIVE_PREFLIGHT}}}}}
_NODE_REMOVE = {"type": "object", "required": ["name"], "properties": {"name": _NODE_NAME}}
_NODE_REMOVED = {"type": "object", "required": ["removed"], "properties": {"removed": {"type": "string"}}}


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
_TEXT = {"schema": {"type": "string"}}


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
            "/ready": {"get": {
                "summary": "readiness: node registry loads, a hive answers or can start, not draining",
                "responses": {**_ok("ready", {JSON: {"schema": _READY}}),
                              "503": {"description": "not ready: the failing checks and an error object",
                                      "content": {JSON: {"schema": _NOT_READY}}},
                              **_errors("401", "429")},
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics (rbee_queen_*); public with --metrics-public",
                "responses": {**_ok("metrics", {"text/plain": _TEXT, "application/openmetrics-text": _TEXT}),
                              **_errors("401", "429")},
            }},
            "/v2/status": {"get": {
                "summary": "nodes, hives, workers, models, throughput and queue depth (rbee status)",
                "responses": {**_ok("status", {JSON: {"schema": _STATUS}}), **_errors("401", "429")},
            }},
            "/v2/logs": {"get": {
                "summary": "a node's hive and worker logs, relayed from its hive (rbee logs)",
                "parameters": _LOG_PARAMETERS,
                "responses": {**_ok("one {source, line} event per line", _STREAM),
                              **_errors("400", "401", "404", "429", "503")},
            }},
            "/ui": {"get": {
                "summary": "the status page (also takes the token as the HTTP Basic password)",
                "responses": {**_ok("the page", {"text/html": {"schema": {"type": "string"}}}),
                              **_errors("401", "429")},
            }},
            "/ui/status": {"get": {
                "summary": "what the status page refreshes itself from (as /v2/status)",
                "responses": {**_ok("status", {JSON: {"schema": _STATUS}}), **_errors("401", "429")},
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
            "/v2/registry/beehives/add": {"post": {
                "summary": "register a node after an SSH preflight (update: replace one of that name)",
                "requestBody": _body(_NODE_ADD),
                "responses": {**_ok("registered", {JSON: {"schema": _NODE_ADDED}}, "201"),
                              **_errors("400", "401", "409", "413", "422", "429", "503", "504")},
            }},
            "/v2/registry/beehives/list": {"get": {
                "summary": "every registered node with its last preflight",
                "responses": {**_ok("nodes", {JSON: {"schema": _NODE_LIST}}), **_errors("401", "429")},
            }},
            "/v2/registry/beehives/remove": {"post": {
                "summary": "forget a node",
                "requestBody": _body(_NODE_REMOVE),
                "responses": {**_ok("removed", {JSON: {"schema": _NODE_REMOVED}}),
                              **_errors("400", "401", "404", "413", "429")},
            }},
            "/v2/heartbeat": {"post": {
                "summary": "a hive reports itself and its workers (internal)",
                "requestBody": _body(_HEARTBEAT),
                "responses": {**_ok("recorded", {JSON: {"schema": {"type": "object"}}}),
                              **_errors("400", "401", "413")},
            }},
        },
    }


async def openapi_document(request: web.Request) -> web.Response:
    """GET /openapi.json: the API description (for clients and schemathesis)."""
    return web.json_response(document())
