"""Exit codes rbee's processes use to tell their supervisor why they stopped."""

WORKER_LOAD_FAILED = 4
"""A worker whose model could not be loaded (restarting it would fail the same way)."""
