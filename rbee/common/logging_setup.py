"""Logging configuration shared by all daemons."""

from __future__ import annotations

import logging
import sys

from rbee.common.log_context import ContextFilter, formatter


def setup_logging(
    component: str, level: str = "INFO", log_format: str = "text", worker_id: str | None = None
) -> None:
    """Log one line per record to stderr (human-readable text, or JSON lines), tagged with the
    component, the worker's own id and the correlation, task and worker ids bound where it logs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format, component, worker_id))
    handler.addFilter(ContextFilter({"worker_id": worker_id} if worker_id else {}))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def set_log_level(level: str) -> None:
    """Change the level of every record logged from now on (a config reload)."""
    logging.getLogger().setLevel(level.upper())
