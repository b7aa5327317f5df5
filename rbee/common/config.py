"""A daemon's configuration from its sources: command-line flag > `RBEE_*` variable > YAML file > default.

`ConfigSource.resolve()` layers the sources once for every key, remembering where each value came
from, validates the result against the daemon's schema (`config_schema`) and raises ConfigError
listing every problem with its origin (file and line, variable or flag), the dotted key and the
rule broken. Values are never quoted, and a token written into the file is refused.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from rbee.common.config_schema import CHILDREN, PATH_KEYS, env_names, flag, schema, tunable_keys
from rbee.common.config_yaml import FileUnusable, Problem, Section, read_section
from rbee.common.model_table import known_keys

CODE = "CONFIG_INVALID"
SECRET_KEY = re.compile(r"(^|_)(token|secret|password|api_key)$")


class ConfigError(Exception):
    """A configuration that cannot be used, with every problem found."""

    def __init__(self, subject: str, problems: list[Problem]) -> None:
        self.subject = subject
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) > 1 else "")
        super().__init__(f"{CODE}: {subject} has {count}:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class ConfigSource:
    """Where one daemon's settings come from; `resolve` can be called again (SIGHUP)."""

    daemon: str
    file: Path | None = None
    flags: Mapping[str, Any] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=dict)
    """The environment the daemon started with (not the tunables it exported since)."""

    @classmethod
    def from_args(
        cls, daemon: str, args: argparse.Namespace, environ: Mapping[str, str] = os.environ
    ) -> ConfigSource:
        """The sources of a daemon started with `args` (parsed with SUPPRESS defaults) in `environ`
        (default: this process's environment)."""
        given = vars(args)
        keys = schema(daemon).model_fields
        config = given.get("config")
        return cls(daemon, config.absolute() if config else None,
                   {key: value for key, value in given.items() if key in keys}, dict(environ))

    def resolve(self) -> BaseModel:
        """The validated configuration, or ConfigError listing every problem."""
        config, problems = self.validate()
        if problems or config is None:
            raise ConfigError(f"the {self.daemon} configuration", problems)
        return config

    def validate(self, require_all: bool = True) -> tuple[BaseModel | None, list[Problem]]:
        """The configuration (None when invalid) and the problems found, those in the file in the order
        of its lines; without `require_all`, keys that have no default may be missing."""
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        problems: list[Problem] = []
        lines: dict[str, int] = {}
        if self.file is not None:
            try:
                section = read_section(self.file, self.daemon)
            except FileUnusable as exc:
                return None, [exc.problem]
            lines = section.lines
            problems += section.problems
            problems += self._file_layer(section, values, origins)
        for key, name in env_names(self.daemon).items():
            if self.environ.get(name):
                values[key], origins[key] = self.environ[name], f"environment {name}"
        for key, value in self.flags.items():
            values[key], origins[key] = value, flag(key)
        try:
            config = schema(self.daemon).model_validate(values)
        except ValidationError as exc:
            errors = [e for e in exc.errors() if require_all or e["type"] != "missing" or len(e["loc"]) > 1]
            problems += [self._problem(error, origins, lines) for error in errors]
            config = None
        problems.sort(key=lambda problem: _line_of(problem.key.partition(".")[2], lines) or len(lines) + 1)
        return (None if problems else config), problems

    def _file_layer(self, section: Section, values: dict[str, Any], origins: dict[str, str]) -> list[Problem]:
        assert self.file is not None
        problems = []
        keys = schema(self.daemon).model_fields
        for key, value in section.values.items():
            where = f"{self.file}:{section.lines[key]}" if key in section.lines else str(self.file)
            if SECRET_KEY.search(key):
                target = f"{key}_file" if f"{key}_file" in keys else "token_file"
                problems.append(Problem(where, f"{self.daemon}.{key}", "a token is never written in a config "
                                        f"file: put it in a file of mode 0600 and give that file's path as "
                                        f"`{target}`"))
                continue
            if key in PATH_KEYS and isinstance(value, str) and value and not Path(value).is_absolute():
                value = str(self.file.parent / value)
            values[key], origins[key] = value, where
        return problems

    def _problem(self, error: ErrorDetails, origins: dict[str, str], lines: dict[str, int]) -> Problem:
        """The problem of one validation error; a nested key (the model table's) read from the file
        is placed at its own line (the nearest of its enclosing keys' when it has none)."""
        key = str(error["loc"][0]) if error["loc"] else ""
        dotted = ".".join(str(part) for part in error["loc"] if part != "[key]")
        kind = error["type"]
        if kind == "missing" and len(error["loc"]) > 1:
            message = "required"
        elif kind == "missing":
            env = env_names(self.daemon).get(key)
            message = f"required: give {flag(key)}{f', {env}' if env else ''} or `{key}:` in the config file"
        elif kind == "extra_forbidden":
            known = known_keys(error["loc"]) if key == "models" else list(schema(self.daemon).model_fields)
            close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
            message = "unknown key" + (f" (did you mean `{close[0]}`?)" if close else "")
        elif kind == "value_error":
            message = str(error.get("ctx", {}).get("error", error["msg"]))
        else:
            message = error["msg"]
        where = origins.get(key, "")
        line = _line_of(dotted, lines)
        if self.file is not None and where.startswith(f"{self.file}:") and line:
            where = f"{self.file}:{line}"
        return Problem(where, f"{self.daemon}.{dotted}", message)

    def export(self, config: BaseModel, environ: MutableMapping[str, str] = os.environ) -> None:
        """Set what the daemons this one starts inherit through `environ` (default: this process's
        environment): the tunables the file changed (`export_tunables`), and this daemon's log format
        and metrics exposure as theirs unless their own variables are set."""
        self.export_tunables(config, environ)
        for child in CHILDREN[self.daemon]:
            names = env_names(child)
            environ.setdefault(names["log_format"], config.log_format)
            environ.setdefault(names["metrics_public"], str(config.metrics_public).lower())

    def export_tunables(self, config: BaseModel, environ: MutableMapping[str, str]) -> None:
        """Set `RBEE_*` in `environ` for each tunable the file changed, so the daemons this one starts
        (a local hive, workers, hives over SSH) inherit it; variables set at start stay as they were."""
        names = env_names(self.daemon)
        defaults = schema(self.daemon).model_fields
        for key in tunable_keys(self.daemon):
            name = names[key]
            if self.environ.get(name):
                continue
            value = getattr(config, key)
            if value == defaults[key].default:
                environ.pop(name, None)
            else:
                environ[name] = str(value)


def _line_of(dotted: str, lines: dict[str, int]) -> int | None:
    """The file line of a dotted key, else of the nearest key enclosing it; None when unknown."""
    parts = dotted.split(".")
    prefixes = (".".join(parts[:n]) for n in range(len(parts), 0, -1))
    return next((lines[prefix] for prefix in prefixes if prefix in lines), None)


def inherited_option(daemon: str, key: str) -> str | None:
    """The value of option `key` that the `daemon`s this process starts inherit from its environment
    (for example `RBEE_WORKER_ENGINE`); None when the variable is unset or empty."""
    return os.environ.get(env_names(daemon)[key]) or None


def check_file(path: Path, daemon: str | None = None) -> str:
    """Validate a config file on its own; return the daemon it configures or raise ConfigError.

    Keys a daemon cannot start without (a worker's model, port and worker_id) may be left to its
    flags or environment, so their absence is not a problem here.
    """
    try:
        daemon = read_section(path, daemon).daemon
    except FileUnusable as exc:
        raise ConfigError(str(path), [exc.problem]) from None
    _, problems = ConfigSource(daemon, path).validate(require_all=False)
    if problems:
        raise ConfigError(str(path), problems)
    return daemon
