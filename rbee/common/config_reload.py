"""SIGHUP for a daemon started with `--config`: re-read the file, apply what can change while running.

What changes is the log level and the tunables the daemons read at each use (`RELOADABLE`): the
components hold a `LiveTimings`, whose values are replaced in place. Anything else that changed
(port, host, data dir, token file paths, …) is named as needing a restart and left as it was;
tokens themselves are re-read from their files by the keyring's own reload. A file that became
invalid changes nothing. Each outcome is one log line and one `config.reload` audit record.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, MutableMapping
from dataclasses import fields
from typing import Any

from pydantic import BaseModel

from rbee.common.audit import Audit
from rbee.common.config import ConfigError, ConfigSource
from rbee.common.config_schema import RELOADABLE, timings_of
from rbee.common.logging_setup import set_log_level
from rbee.common.tunables import Timings

log = logging.getLogger(__name__)
_TIMING_FIELDS = frozenset(item.name for item in fields(Timings))


class LiveTimings(Timings):
    """A `Timings` whose values a reload replaces; every reader sees the new values at its next use."""

    def __init__(self, current: Timings) -> None:
        object.__setattr__(self, "_current", current)

    def __getattribute__(self, name: str) -> Any:
        if name in _TIMING_FIELDS:
            return getattr(object.__getattribute__(self, "_current"), name)
        return object.__getattribute__(self, name)

    def replace(self, current: Timings) -> None:
        """Make `current` the values every holder of this object reads from now on."""
        object.__setattr__(self, "_current", current)


def _shown(value: Any) -> Any:
    """A value as a reload log line shows it: a mapping (the model table) by its keys alone, so
    refs that carry credentials (pre-signed URLs) and long templates stay out of the log."""
    return sorted(value) if isinstance(value, dict) else value


def _change(key: str, old: BaseModel, new: BaseModel) -> str:
    return f"{key} {_shown(getattr(old, key))} -> {_shown(getattr(new, key))}"


class ConfigReloader:
    """The SIGHUP action of a daemon with a config file (register it with `on_reload`)."""

    def __init__(
        self,
        source: ConfigSource,
        config: BaseModel,
        timings: LiveTimings,
        audit: Audit,
        environ: MutableMapping[str, str] = os.environ,
        applied: Callable[[BaseModel], None] = lambda _: None,
    ) -> None:
        """`applied` gets the configuration after each reload that applied (for state the daemon
        holds beyond the timings, such as the queen's model table)."""
        self._source = source
        self._applied = applied
        self._config = config
        self._timings = timings
        self._audit = audit
        self._environ = environ

    def __call__(self) -> None:
        file = str(self._source.file)
        try:
            fresh = self._source.resolve()
        except ConfigError as exc:
            problems = [str(problem) for problem in exc.problems]
            log.error("config reload from %s failed, keeping the previous settings: %s",
                      file, "; ".join(problems))
            self._audit("config.reload", what="config", ok=False, file=file, problems=problems)
            return
        old = self._config
        changed = [key for key in type(old).model_fields if getattr(old, key) != getattr(fresh, key)]
        applied = [key for key in changed if key in RELOADABLE]
        restart = [key for key in changed if key not in RELOADABLE]
        self._config = old.model_copy(update={key: getattr(fresh, key) for key in applied})
        set_log_level(self._config.log_level)
        self._timings.replace(timings_of(self._config))
        self._source.export_tunables(self._config, self._environ)
        self._applied(self._config)
        described = ", ".join(_change(key, old, fresh) for key in applied)
        message = f"config reloaded from {file}: " + (f"applied {described}" if applied else "no change")
        if restart:
            pending = ", ".join(_change(key, old, fresh) for key in restart)
            log.warning("%s; not applied, needs a restart: %s", message, pending)
        else:
            log.info("%s", message)
        self._audit("config.reload", what="config", ok=True, file=file, applied=applied,
                    restart_needed=restart)
