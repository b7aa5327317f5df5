"""Which backend a request runs on: its own `backend`, else its model table alias's `backend`,
else the model's entry in `model_backends`, else the queen's `backend`.

`auto` is a usable GPU, else the CPU: any worker serves it, and the hive that spawns one picks
the backend. A named backend is that one or an error, never a fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rbee.common.defaults import DEFAULT_BACKEND_POLICY
from rbee.queen.model_table import LiveModelTable

AUTO = "auto"


@dataclass(frozen=True)
class BackendPolicy:
    """The queen's configured policy: a default, per-model overrides and the model table's."""

    default: str = DEFAULT_BACKEND_POLICY
    per_model: Mapping[str, str] = field(default_factory=dict)
    models: LiveModelTable = field(default_factory=LiveModelTable, compare=False)

    def resolve(self, model: str, asked: str | None = None) -> str:
        """The backend of a request for `model` that asked for `asked` (None: nothing asked)."""
        if asked is not None:
            return asked
        return self.models.backend(model) or self.per_model.get(model, self.default)


def serves(policy: str, worker_backend: str) -> bool:
    """True when a worker running on `worker_backend` may serve a request with `policy`."""
    return policy in (AUTO, worker_backend)
