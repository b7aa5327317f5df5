"""The queen's model table while it runs: which alias a request names, what its workers are
spawned with, the sampling its requests get by default, and its `/v1/models` entry.

A SIGHUP that reloads the config replaces the table (`replace`); requests and spawns after it
use the new entries, running workers keep the settings they started with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rbee.common.defaults import CTX_SIZE
from rbee.common.model_refs import public_ref
from rbee.common.model_table import ModelSpec
from rbee.common.wire_requests import WorkerTuning

DOWNLOADABLE = ("hf:", "https://")
"""Refs a node fetches on first use."""
LOCAL_FILE = "file://"
"""Refs of a file on the node, which the queen cannot see: taken as runnable."""


@dataclass(frozen=True)
class Fallbacks:
    """The settings an alias gets for what it leaves out (the queen's own)."""

    ctx_size: int
    slots: int
    max_replicas: int


@dataclass(frozen=True)
class SpawnPlan:
    """What the queen asks a hive to start for a model name."""

    ref: str
    slots: int
    alias: str | None = None
    tuning: WorkerTuning = WorkerTuning()


class LiveModelTable:
    """The model table: alias → ModelSpec, replaced as a whole on reload."""

    def __init__(
        self, specs: Mapping[str, ModelSpec] | None = None, fallbacks: Fallbacks | None = None
    ) -> None:
        self._specs: dict[str, ModelSpec] = dict(specs or {})
        self.fallbacks = fallbacks or Fallbacks(CTX_SIZE, 1, 1)

    def replace(self, specs: Mapping[str, ModelSpec]) -> None:
        """Make `specs` the table from now on."""
        self._specs = dict(specs)

    def get(self, name: object) -> ModelSpec | None:
        """The entry of alias `name`; None when `name` is no alias (a ref, a catalog name, no string)."""
        return self._specs.get(name) if isinstance(name, str) else None

    def aliases(self) -> dict[str, ModelSpec]:
        """Every alias with its entry."""
        return dict(self._specs)

    def spawn_plan(self, name: str, default_slots: int) -> SpawnPlan:
        """The spawn for requests naming `name`: its alias's ref and settings, else `name` itself."""
        spec = self.get(name)
        if spec is None:
            return SpawnPlan(name, default_slots)
        tuning = WorkerTuning(ctx_size=spec.ctx_size, gpu_layers=spec.gpu_layers,
                              chat_template=spec.chat_template, keep_alive_s=spec.keep_alive_s)
        return SpawnPlan(spec.ref, spec.slots or default_slots, name, tuning)

    def max_replicas(self, name: str, default: int) -> int:
        """Workers of `name` at most: its alias's `max_replicas`, else `default`."""
        spec = self.get(name)
        return spec.max_replicas if spec is not None and spec.max_replicas is not None else default

    def backend(self, name: str) -> str | None:
        """The backend the alias `name` gives its requests that name none (None: no alias setting)."""
        spec = self.get(name)
        return spec.backend if spec is not None else None

    def runnable(self, known: set[str]) -> dict[str, ModelSpec]:
        """The aliases whose model can run: in `known` (a node has it or installs it with no
        download), fetched on first use, or a node's local file."""
        return {alias: spec for alias, spec in self._specs.items()
                if spec.ref in known or spec.ref.startswith((*DOWNLOADABLE, LOCAL_FILE))}

    def describe(self, alias: str, backend: str, keep_alive_s: float) -> dict[str, Any]:
        """The alias's `/v1/models` object: OpenAI's fields, `context_length` (tokens per slot) and
        what its workers run with under `rbee` (`backend` and `keep_alive_s` as they resolve now)."""
        spec = self._specs[alias]
        ctx_size = spec.ctx_size or self.fallbacks.ctx_size
        settings = {
            "ref": public_ref(spec.ref), "ctx_size": ctx_size, "slots": spec.slots or self.fallbacks.slots,
            "backend": backend, "gpu_layers": spec.gpu_layers,
            "max_replicas": spec.max_replicas or self.fallbacks.max_replicas,
            "keep_alive_s": spec.keep_alive_s or keep_alive_s,
            "chat_template": spec.chat_template is not None, "sampling": dict(spec.sampling),
        }
        return {"id": alias, "object": "model", "created": 0, "owned_by": spec.owned_by,
                "context_length": ctx_size, "rbee": settings}

    def with_defaults(self, name: object, body: dict[str, Any]) -> dict[str, Any]:
        """`body` (an OpenAI request naming `name`) with the alias's default sampling for each field
        it omits or sends as null; `max_completion_tokens` counts as `max_tokens`."""
        spec = self.get(name)
        if spec is None or not spec.sampling:
            return body
        given = {key for key, value in body.items() if value is not None}
        if "max_completion_tokens" in given:
            given.add("max_tokens")
        return {**body, **{key: value for key, value in spec.sampling.items() if key not in given}}
