"""Each hive's own node key: made when the queen starts that hive, scope `node` only.

A hive holds the key it reports to the queen with, so the node key is all that machine holds of
the queen's keys: it may send heartbeats and nothing else. A fresh key replaces the node's old
one at every start of its hive. In dev mode (the queen has no token) there are no node keys.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from rbee.common.auth import Keyring
from rbee.common.errors import ApiError
from rbee.queen.keys.store import ApiKey, KeyStore

NODE_KEY_PREFIX = "node-"


def node_key_name(node: str) -> str:
    """The key name of `node`'s hive (`node-<name>`, folded to what key names allow)."""
    folded = "".join(c if c.isalnum() or c in "._-" else "-" for c in node.lower())
    return (NODE_KEY_PREFIX + folded)[:63]


def check_reporter(key: ApiKey | None, hive_url: str, hives: Iterable[tuple[str, str]]) -> None:
    """403 `NODE_KEY_MISMATCH` when a node key reports for a hive other than its node's.

    `hives` are (node name, hive URL) of the nodes the queen uses, read only for a node key; a
    node key whose node is none of them (a hive started by its own supervisor, with a key an
    operator made) is not bound."""
    if key is None or key.scopes != {"node"}:
        return
    own = next((url for node, url in hives if node_key_name(node) == key.name), None)
    if own is not None and own != hive_url:
        raise ApiError(403, "NODE_KEY_MISMATCH", f"key '{key.name}' reports for its own node's hive only",
                       {"key": key.name})


class NodeKeys:
    """Issues node keys from the queen's key store."""

    def __init__(self, store: KeyStore, keyring: Keyring, tokens_dir: Path) -> None:
        self._store = store
        self._keyring = keyring
        self._tokens_dir = tokens_dir

    def issue(self, node: str) -> str | None:
        """A fresh node key for `node`'s hive (its old one revoked), None in dev mode."""
        if self._keyring.own is None:
            return None
        return self._store.replace(node_key_name(node), frozenset({"node"}))

    def issue_file(self, node: str) -> Path | None:
        """A fresh node key for `node`'s hive written to a file of mode 0600 (None in dev mode)."""
        secret = self.issue(node)
        if secret is None:
            return None
        self._tokens_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._tokens_dir / f"{node_key_name(node)}.token"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secret + "\n")
        return path
