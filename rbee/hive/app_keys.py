"""The hive application's shared state, by key (set in app.py, read by the route modules)."""

from __future__ import annotations

from aiohttp import web

from rbee.hive.catalog import ModelCatalog
from rbee.hive.downloads import Downloader
from rbee.hive.supervisor import WorkerSupervisor

CATALOG = web.AppKey("catalog", ModelCatalog)
SUPERVISOR = web.AppKey("supervisor", WorkerSupervisor)
DOWNLOADER = web.AppKey("downloader", Downloader)
