"""Logging configuration shared by all daemons."""

from __future__ import annotations

import logging
import sys


def setup_logging(component: str, level: str = "INFO") -> None:
    """Log one line per record to stderr, tagged with the component name."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {component} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
