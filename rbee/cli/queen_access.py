"""How the keeper commands reach the queen: `--queen` and `--token-file`, and the headers they give."""

from __future__ import annotations

import argparse
from pathlib import Path

from rbee.common.defaults import QUEEN_PORT
from rbee.common.secrets import load_token
from rbee.common.validation import check_http_url

DEFAULT_QUEEN_URL = f"http://127.0.0.1:{QUEEN_PORT}"


def queen_options(parser: argparse.ArgumentParser) -> None:
    """Add `--queen` and `--token-file`."""
    parser.add_argument("--queen", default=DEFAULT_QUEEN_URL, help="queen base URL")
    parser.add_argument("--token-file", type=Path, default=None,
                        help="file (mode 0600) with the queen's token (else credential or RBEE_QUEEN_TOKEN)")


def queen_target(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The queen's base URL and the Authorization header; raises SecretError or ApiError."""
    queen = check_http_url("--queen", args.queen).rstrip("/")
    token = load_token("queen", args.token_file)
    return queen, ({"Authorization": f"Bearer {token.value}"} if token else {})
