"""The queen's OpenAPI 3.1 document, served at `/openapi.json` and checked by schemathesis.

Paths and responses are declared here; every request body's schema is generated from its
pydantic model, so the document states exactly what the handlers accept.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from rbee import __version__
from rbee.common.wire_requests import HiveHeartbeat, ModelPull, NodeRemove, TaskRequest, WorkerRef
from rbee.queen.api.embedding_requests import EmbeddingRequest
from rbee.queen.api.openai_requests import ChatCompletionRequest, CompletionRequest
from rbee.queen.keys.requests import KeyCreate
from rbee.queen.nodes.node_spec_checks import NodeAdd

JSON = "application/json"
SSE = "text/event-stream"
ERROR_STATUSES = {
    "400": "invalid request (validation)",
    "401": "missing, invalid, revoked or expired bearer token",
    "403": "the key's scopes do not include this route, or it may not use this model",
    "404": "unknown model, node, task or worker",
    "409": "conflict (a node or a live key of that name exists)",
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
            "required": ["code", "message", "type", "param", "details", "correlation_id"],
            "properties": {
                "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
                "message": {"type": "string"},
                "type": {"enum": ["invalid_request_error", "authentication_error", "permission_error",
                                  "not_found_error", "rate_limit_error", "server_error"]},
                "param": {"type": ["string", "null"]},
                "details": {"type": "object"},
                "correlation_id": {"type": "string", "format": "uuid"},
            },
        }
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
_MODEL = {
    "type": "object", "required": ["id", "object", "created", "owned_by"],
    "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                   "owned_by": {"type": "string"}},
}
_MODELS = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _MODEL}},
}
_EMBEDDINGS = {
    "type": "object",
    "required": ["object", "data", "model", "usage"],
    "properties": {
        "object": {"const": "list"},
        "data": {"type": "array", "items": {
            "type": "object", "required": ["object", "index", "embedding"],
            "properties": {"object": {"const": "embedding"}, "index": {"type": "integer", "minimum": 0},
                           "embedding": {"anyOf": [{"type": "array", "items": {"type": "number"}},
                                                   {"type": "string", "contentEncoding": "base64"}]}},
        }},
        "model": {"type": "string"},
        "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                  "properties": {"prompt_tokens": {"type": "integer", "minimum": 0},
                                 "total_tokens": {"type": "integer", "minimum": 0}}},
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
_SCRAPE_TARGETS = {"type": "array", "items": {
    "type": "object", "required": ["targets", "labels"],
    "properties": {"targets": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1},
                   "labels": {"type": "object", "required": ["role", "__scheme__"],
                              "additionalProperties": {"type": "string"}}}}}
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
_KEY = {"type": "object", "required": ["name", "fingerprint", "scopes"],
        "properties": {"name": {"type": "string"}, "fingerprint": {"type": "string"},
                       "scopes": {"type": "array", "items": {"type": "string"}}}}
_KEY_CREATED = {**_KEY, "required": [*_KEY["required"], "key"],
                "properties": {**_KEY["properties"], "key": {"type": "string"}}}
_NODE_REMOVED = {"type": "object", "required": ["removed"], "properties": {"removed": {"type": "string"}}}


def _errors(*statuses: str) -> dict[str, Any]:
    return {
        status: {"description": ERROR_STATUSES[status],
                 "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for status in statuses
    }


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    TaskRequest, CompletionRequest, ChatCompletionRequest, EmbeddingRequest, WorkerRef, HiveHeartbeat,
    NodeAdd, NodeRemove, KeyCreate, ModelPull,
)
"""The request bodies of the queen's routes, whose schemas go to `components/schemas`."""
_SCHEMA_REF = "#/components/schemas/{model}"


@cache
def request_schemas() -> dict[str, Any]:
    """The JSON schemas of every request model and of the models they hold, by name."""
    models = [(model, "validation") for model in REQUEST_MODELS]
    _, schemas = models_json_schema(models, ref_template=_SCHEMA_REF)
    return schemas["$defs"]


def _body(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": _SCHEMA_REF.format(model=model.__name__)}
    return {"required": True, "content": {JSON: {"schema": ref}}}


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
            "schemas": {"Error": _ERROR, **request_schemas()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": auth,
        "paths": {
            "/health": {"get": {
                "summary": "liveness (public)", "security": [],
                "responses": _ok("alive", {JSON: {"schema": _HEALTH}}),
            }},
            "/ready": {"get": {
                "summary": "readiness: node registry loads, a hive answers or can start, not draining; "
                           "public with --ready-public",
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
            "/v2/prometheus/targets": {"get": {
                "summary": "Prometheus HTTP service discovery (http_sd): the queen, hives and workers with "
                           "role, node, model and worker labels (scope admin)",
                "responses": {**_ok("target groups", {JSON: {"schema": _SCRAPE_TARGETS}}),
                              **_errors("401", "403", "429")},
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
            "/v1/models/{model}": {"get": {
                "summary": "one model of /v1/models (OpenAI shape); ids may hold ':' and '/'",
                "parameters": [{"name": "model", "in": "path", "required": True,
                                "schema": {"type": "string", "minLength": 1}}],
                "responses": {**_ok("the model", {JSON: {"schema": _MODEL}}),
                              **_errors("401", "404", "429", "503")},
            }},
            "/v1/completions": {"post": {
                "summary": "OpenAI text completion, streaming or not",
                "requestBody": _body(CompletionRequest),
                "responses": {**_ok("completion", {JSON: {"schema": {"type": "object"}}, **_STREAM}),
                              **_errors(*_TASK_ERRORS)},
            }},
            "/v1/chat/completions": {"post": {
                "summary": "OpenAI chat completion, streaming or not",
                "requestBody": _body(ChatCompletionRequest),
                "responses": {**_ok("completion", {JSON: {"schema": {"type": "object"}}, **_STREAM}),
                              **_errors(*_TASK_ERRORS)},
            }},
            "/v1/embeddings": {"post": {
                "summary": "OpenAI embeddings from an embedding worker of the model (pooled, L2-normalised)",
                "requestBody": _body(EmbeddingRequest),
                "responses": {**_ok("embeddings", {JSON: {"schema": _EMBEDDINGS}}), **_errors(*_TASK_ERRORS)},
            }},
            "/v2/tasks": {"post": {
                "summary": "run a prompt, streaming rbee's native events",
                "requestBody": _body(TaskRequest),
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
                "requestBody": _body(WorkerRef),
                "responses": {**_ok("stopping", {JSON: {"schema": {"type": "object"}}}, "202"),
                              **_errors("400", "401", "404", "413", "429", "503")},
            }},
            "/v2/models/pull": {"post": {
                "summary": "download a model onto a node, its hive's progress events relayed (rbee pull)",
                "requestBody": _body(ModelPull),
                "responses": {**_ok("progress events, then done or error", _STREAM),
                              **_errors("400", "401", "403", "404", "413", "429", "503", "507")},
            }},
            "/v2/models/show": {"get": {
                "summary": "a model's GGUF facts, the nodes holding it, the workers running it (rbee show)",
                "parameters": [{"name": "model", "in": "query", "required": True,
                                "schema": {"type": "string", "minLength": 1}}],
                "responses": {**_ok("the model", {JSON: {"schema": {"type": "object"}}}),
                              **_errors("400", "401", "403", "404", "422", "429", "503")},
            }},
            "/v2/registry/beehives/add": {"post": {
                "summary": "register a node after an SSH preflight (update: replace one of that name)",
                "requestBody": _body(NodeAdd),
                "responses": {**_ok("registered", {JSON: {"schema": _NODE_ADDED}}, "201"),
                              **_errors("400", "401", "409", "413", "422", "429", "503", "504")},
            }},
            "/v2/registry/beehives/list": {"get": {
                "summary": "every registered node with its last preflight",
                "responses": {**_ok("nodes", {JSON: {"schema": _NODE_LIST}}), **_errors("401", "429")},
            }},
            "/v2/registry/beehives/remove": {"post": {
                "summary": "forget a node",
                "requestBody": _body(NodeRemove),
                "responses": {**_ok("removed", {JSON: {"schema": _NODE_REMOVED}}),
                              **_errors("400", "401", "404", "413", "429")},
            }},
            "/v2/keys": {
                "post": {
                    "summary": "create a named API key (the answer holds the key, shown only this once)",
                    "requestBody": _body(KeyCreate),
                    "responses": {**_ok("created", {JSON: {"schema": _KEY_CREATED}}, "201"),
                                  **_errors("400", "401", "403", "409", "413", "429")},
                },
                "get": {
                    "summary": "every named key (never a key itself)",
                    "responses": {**_ok("keys", {JSON: {"schema": {"type": "object", "required": ["keys"]}}}),
                                  **_errors("401", "403", "429")},
                },
            },
            "/v2/keys/usage": {"get": {
                "summary": "requests and tokens per key name",
                "parameters": [{"name": "name", "in": "query", "required": False,
                                "schema": {"type": "string"}}],
                "responses": {**_ok("usage", {JSON: {"schema": {"type": "object", "required": ["usage"]}}}),
                              **_errors("400", "401", "403", "404", "429")},
            }},
            "/v2/keys/{name}": {"delete": {
                "summary": "revoke a key: refused from the next request on",
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {**_ok("revoked", {JSON: {"schema": _KEY}}),
                              **_errors("400", "401", "403", "404", "429")},
            }},
            "/v2/heartbeat": {"post": {
                "summary": "a hive reports itself and its workers (internal)",
                "requestBody": _body(HiveHeartbeat),
                "responses": {**_ok("recorded", {JSON: {"schema": {"type": "object"}}}),
                              **_errors("400", "401", "413")},
            }},
        },
    }


async def openapi_document(request: web.Request) -> web.Response:
    """GET /openapi.json: the API description (for clients and schemathesis)."""
    return web.json_response(document())
