"""`rbee pull MODEL [--node N]`: download a model onto a node through the queen, with a progress bar."""

from __future__ import annotations

import argparse

import aiohttp

from rbee.cli.download_progress import follow, show_progress
from rbee.cli.queen_access import queen_options, queen_target
from rbee.common.http import raise_for_error
from rbee.common.validation import check_model_ref
from rbee.hive.downloads import parse_sha256

LOCAL_NODE = "localhost"


def register(sub: argparse._SubParsersAction) -> None:
    """Add `rbee pull`."""
    pull = sub.add_parser("pull", help="download a model onto a node through the queen, with a progress bar")
    pull.add_argument("model", help="hf:org/repo[:file.gguf|:QUANT], hf:org/repo or an https:// URL")
    pull.add_argument("--node", default=LOCAL_NODE, help=f"the node to download onto (default {LOCAL_NODE})")
    pull.add_argument("--sha256", default=None, help="expected SHA-256 (hex) of the file")
    queen_options(pull)
    pull.set_defaults(func=run_pull)


def run_pull(args: argparse.Namespace) -> int:
    """Ask the queen to have the node's hive download the model; follow the relayed progress."""
    body: dict[str, str] = {"model": check_model_ref(args.model), "node": args.node}
    sha256 = parse_sha256(args.sha256, "--sha256")
    if sha256:
        body["sha256"] = sha256
    queen, headers = queen_target(args)

    async def pull() -> int:
        timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_read=120)
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            async with session.post(f"{queen}/v2/models/pull", json=body) as response:
                await raise_for_error(response, "the queen")
                done = await show_progress(response, body["model"], None)
        print(f"{done.model} -> {done.path} on {args.node} ({done.bytes_total} bytes, sha256 {done.sha256})")
        return 0

    return follow(pull(), "queen", queen)
