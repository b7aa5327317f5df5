"""Every `web.AppKey` of the queen: what its handlers read from the application."""

from __future__ import annotations

from aiohttp import web

from rbee.common.audit import Audit
from rbee.common.tunables import Timings
from rbee.queen.cluster_status import StatusSources
from rbee.queen.keys.store import KeyStore
from rbee.queen.keys.usage import KeyUsage
from rbee.queen.model_table import LiveModelTable
from rbee.queen.nodes.hive_relay import HiveRelay
from rbee.queen.nodes.node_service import NodeService
from rbee.queen.routing.backend_policy import BackendPolicy
from rbee.queen.routing.dispatch import Dispatcher
from rbee.queen.routing.embedding_dispatch import EmbeddingDispatcher
from rbee.queen.routing.hive_registry import HiveRegistry
from rbee.queen.routing.placement import Placement
from rbee.queen.routing.worker_registry import WorkerRegistry

DISPATCHER = web.AppKey("dispatcher", Dispatcher)
EMBEDDINGS = web.AppKey("embeddings", EmbeddingDispatcher)
PLACEMENT = web.AppKey("placement", Placement)
REGISTRY = web.AppKey("registry", WorkerRegistry)
HIVES = web.AppKey("hives", HiveRegistry)
TIMINGS = web.AppKey("timings", Timings)
STATUS = web.AppKey("status", StatusSources)
HIVE_RELAY = web.AppKey("hive_relay", HiveRelay)
NODES = web.AppKey("nodes", NodeService)
BACKEND_POLICY = web.AppKey("backend_policy", BackendPolicy)
MODELS = web.AppKey("models", LiveModelTable)
KEYS = web.AppKey("keys", KeyStore)
KEY_USAGE = web.AppKey("key_usage", KeyUsage)
AUDIT = web.AppKey("audit", Audit)
