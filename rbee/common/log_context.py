"""What each log line is about: the correlation id, task id and worker id of the work in hand.

Handlers and tasks `bind` the ids they know; a logging filter copies them onto every record
logged in that context (asyncio tasks inherit the context they were created in). The queen's
HTTP client forwards the bound correlation id to hives and workers, so one task can be
followed across all three logs.
"""

from __future__ import annotations

import contextvars
import logging
from contextvars import ContextVar
from types import SimpleNamespace

import aiohttp
from pythonjsonlogger.json import JsonFormatter

from rbee.common.errors import CORRELATION_HEADER

FIELDS = ("correlation_id", "task_id", "worker_id", "key_name")
_bound: ContextVar[dict[str, str]] = ContextVar("rbee_log_context", default={})  # noqa: B039


def bind(**fields: str | None) -> None:
    """Attach ids to every line logged from now on in this context (None leaves a field as it is)."""
    known = {name: value for name, value in fields.items() if value}
    _bound.set({**_bound.get(), **known})


def only(**fields: str) -> contextvars.Context:
    """A context carrying just these ids, for a long-lived task started while handling a request
    (so its later lines do not carry that request's correlation id)."""
    context = contextvars.copy_context()
    context.run(_bound.set, dict(fields))
    return context


def bound(name: str) -> str | None:
    """The id bound under `name` in this context, if any."""
    return _bound.get().get(name)


class ContextFilter(logging.Filter):
    """Copies the bound ids (and fixed ones, such as a worker's own id) onto each record."""

    def __init__(self, fixed: dict[str, str]) -> None:
        super().__init__()
        self._fixed = fixed

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in {**self._fixed, **_bound.get()}.items():
            setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """`TIME COMPONENT LEVEL LOGGER: message [correlation_id=… task_id=…]`; ids already in the
    component name (a worker's own id) are left out of the brackets."""

    def __init__(self, fmt: str, shown: tuple[str, ...]) -> None:
        super().__init__(fmt)
        self._shown = shown

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        ids = " ".join(f"{name}={getattr(record, name)}" for name in self._shown if hasattr(record, name))
        line = super().formatMessage(record)
        return f"{line} [{ids}]" if ids else line


def formatter(log_format: str, component: str, worker_id: str | None) -> logging.Formatter:
    """The formatter of `--log-format text|json` for one daemon."""
    if log_format == "json":
        return JsonFormatter(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"component": component},
            timestamp="time",
        )
    name = f"{component} {worker_id}" if worker_id else component
    shown = tuple(field for field in FIELDS if not (worker_id and field == "worker_id"))
    return TextFormatter(f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s", shown)


def forward_correlation() -> aiohttp.TraceConfig:
    """A client trace that adds the bound correlation id to outgoing requests lacking one."""

    async def on_start(
        _session: aiohttp.ClientSession, _context: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        cid = bound("correlation_id")
        if cid and CORRELATION_HEADER not in params.headers:
            params.headers[CORRELATION_HEADER] = cid

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    return trace
