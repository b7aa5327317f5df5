"""Named API keys of the queen: the store, scopes per route, per-key limits and usage."""
