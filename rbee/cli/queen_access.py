"""How the client commands reach the queen: `--queen` and `--token-file` (defaults from
`RBEE_QUEEN_URL` and `RBEE_TOKEN_FILE`), and the headers they give."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp

from rbee.cli.failures import reaching
from rbee.common.defaults import QUEEN_PORT
from rbee.common.http import raise_for_error
from rbee.common.secrets import load_token
from rbee.common.validation import check_http_url

DEFAULT_QUEEN_URL = f"http://127.0.0.1:{QUEEN_PORT}"
QUEEN_URL_ENV = "RBEE_QUEEN_URL"
TOKEN_FILE_ENV = "RBEE_TOKEN_FILE"
CALL_TIMEOUT_S = 30


def queen_options(parser: argparse.ArgumentParser) -> None:
    """Add `--queen` and `--token-file`, defaulting to `RBEE_QUEEN_URL` and `RBEE_TOKEN_FILE`."""
    token_file = os.environ.get(TOKEN_FILE_ENV)
    parser.add_argument("--queen", default=os.environ.get(QUEEN_URL_ENV) or DEFAULT_QUEEN_URL,
                        help=f"queen base URL (default: ${QUEEN_URL_ENV}, else {DEFAULT_QUEEN_URL})")
    parser.add_argument("--token-file", type=Path, default=Path(token_file) if token_file else None,
                        help=f"file (mode 0600) with the queen's token (default: ${TOKEN_FILE_ENV}, "
                        "else a systemd credential or RBEE_QUEEN_TOKEN)")


def queen_target(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The queen's base URL and the Authorization header; raises SecretError or ApiError."""
    queen = check_http_url("--queen", args.queen).rstrip("/")
    token = load_token("queen", args.token_file)
    return queen, ({"Authorization": f"Bearer {token.value}"} if token else {})


def call_queen(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One JSON call to the queen (`--queen`, `--token-file`); its error answer raises ApiError."""
    queen, headers = queen_target(args)

    async def call() -> Any:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)) as session:
            async with session.request(method, f"{queen}{path}", json=body, headers=headers) as response:
                await raise_for_error(response, "the queen")
                return await response.json()

    with reaching("queen", queen):
        return asyncio.run(call())
