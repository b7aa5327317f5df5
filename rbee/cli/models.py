"""`rbee models download|list|rm`: manage a hive's models from the operator's shell."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import aiohttp

from rbee.cli.download_progress import follow, show_progress
from rbee.cli.show import size
from rbee.common import wire
from rbee.common.defaults import HIVE_PORT
from rbee.common.http import get_json, post_json, raise_for_error
from rbee.common.secrets import load_token
from rbee.common.validation import check_http_url, check_model_ref
from rbee.hive.downloads import parse_sha256

DEFAULT_HIVE_URL = f"http://127.0.0.1:{HIVE_PORT}"


def register(sub: argparse._SubParsersAction) -> None:
    """Add `rbee models` and its subcommands."""
    models = sub.add_parser("models", help="download, list and remove a hive's models")
    commands = models.add_subparsers(dest="models_command", required=True)

    download = commands.add_parser("download", help="download a model into the hive, with a progress bar")
    download.add_argument("ref", help="hf:org/repo:file.gguf, hf:org/repo or an https:// URL")
    download.add_argument("--sha256", default=None, help="expected SHA-256 (hex) of the file")
    _hive_options(download)
    download.set_defaults(func=run_download)

    listing = commands.add_parser("list", help="list the hive's catalog")
    _hive_options(listing)
    listing.set_defaults(func=run_list)

    remove = commands.add_parser("rm", help="remove a model from the catalog (and its downloaded file)")
    remove.add_argument("name", help="catalog name or ref as `rbee models list` shows it")
    _hive_options(remove)
    remove.set_defaults(func=run_rm)


def _hive_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hive", default=DEFAULT_HIVE_URL, help="hive base URL")
    parser.add_argument("--token-file", type=Path, default=None,
                        help="file (mode 0600) with the hive's token (else credential or RBEE_HIVE_TOKEN)")


def _run(args: argparse.Namespace, work: Any) -> int:
    """Run one hive call (`work(session, hive)`); its errors end in `main`, but for Ctrl+C."""
    hive = check_http_url("--hive", args.hive).rstrip("/")
    token = load_token("hive", args.token_file)
    headers = {"Authorization": f"Bearer {token.value}"} if token else {}

    async def call() -> int:
        timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_read=120)
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
            return await work(session, hive)

    return follow(call(), "hive", hive)


def run_download(args: argparse.Namespace) -> int:
    """Start the download in the hive and follow its progress stream to the end."""
    body: dict[str, str] = {"model": check_model_ref(args.ref)}
    sha256 = parse_sha256(args.sha256, "--sha256")
    if sha256:
        body["sha256"] = sha256

    async def work(session: aiohttp.ClientSession, hive: str) -> int:
        job = await post_json(session, f"{hive}/v1/models/download", body, "hive")
        final = await _follow(session, hive, job)
        print(f"{final.model} -> {final.path} ({final.bytes_total} bytes, sha256 {final.sha256})")
        return 0

    return _run(args, work)


async def _follow(session: aiohttp.ClientSession, hive: str, job: dict[str, Any]) -> wire.DownloadDone:
    url = f"{hive}/v1/models/download/progress"
    async with session.get(url, params={"id": job["id"]}) as response:
        await raise_for_error(response, "hive")
        return await show_progress(response, job["model"], job.get("bytes_total"))


def run_list(args: argparse.Namespace) -> int:
    """Print the hive's catalog as a table."""

    async def work(session: aiohttp.ClientSession, hive: str) -> int:
        models = (await get_json(session, f"{hive}/v1/models/list", "hive"))["models"]
        if not models:
            print("no models in the hive's catalog", file=sys.stderr)
            return 0
        width = max(len("NAME"), *(len(m["name"]) for m in models))
        print(f"{'NAME':<{width}}  {'SIZE':>10}  PATH")
        for model in models:
            print(f"{model['name']:<{width}}  {size(model['size_bytes']):>10}  {model['path']}")
        return 0

    return _run(args, work)


def run_rm(args: argparse.Namespace) -> int:
    """Remove one model from the hive's catalog."""
    name = check_model_ref(args.name, "name")

    async def work(session: aiohttp.ClientSession, hive: str) -> int:
        answer = await post_json(session, f"{hive}/v1/models/remove", {"name": name}, "hive")
        if answer["file_deleted"]:
            print(f"removed {answer['removed']} and deleted {answer['path']}")
        else:
            print(f"removed {answer['removed']} from the catalog; kept {answer['path']} "
                  "(it is not in the hive's models folder)")
        return 0

    return _run(args, work)
