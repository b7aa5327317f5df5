"""Fixed values every part of rbee shares: default ports, backend and engine names, start limits."""

from __future__ import annotations

QUEEN_PORT = 8080
HIVE_PORT = 9200
WORKER_PORT_START = 8081
CTX_SIZE = 2048
"""Context tokens per slot of a worker."""
BACKENDS = ("cpu", "cuda", "metal")
"""Where a worker can run its model."""
BACKEND_POLICIES = ("auto", *BACKENDS)
"""What a request, a model or a node may ask for: `auto` (the default) is a usable GPU, else the CPU;
a named backend is that one or an error, never a fallback."""
DEFAULT_BACKEND_POLICY = BACKEND_POLICIES[0]
SPLIT_MODES = ("none", "layer", "row")
"""How a worker spreads a model over its GPUs (llama.cpp's split modes); one GPU is `none`."""
ENGINES = ("batched", "simple")
"""A worker's engines; the first is the default."""
DEFAULT_ENGINE = ENGINES[0]
HIVE_START_TIMEOUT_S = 30.0
"""How long a hive the queen started (locally or over SSH) may take to answer."""
WILDCARD_HOSTS = ("0.0.0.0", "::")


def reachable(host: str) -> str:
    """The address others use for a daemon bound to `host`: itself, or loopback for a wildcard."""
    return "127.0.0.1" if host in WILDCARD_HOSTS else host
