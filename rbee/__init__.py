"""rbee: a self-hosted LLM inference cluster (queen, hives, workers, CLI)."""

__version__ = "0.1.0"
