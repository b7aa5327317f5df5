"""The `rbee` command: subcommands for operators and daemon entry points.

`rbee --version` answers before the command tree (and aiohttp with it) is imported: the queen's
SSH preflight runs it on every node it adds. Every command's errors end here: `error: …` on
stderr, exit 1, or 2 for a bad setting in the environment.
"""

from __future__ import annotations

import argparse
import sys

from rbee import __version__

VERSION_LINE = f"rbee {__version__}"


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    from rbee.cli import (
        audit,
        chat,
        config,
        daemons,
        deploy,
        infer,
        keys,
        logs,
        models,
        pull,
        setup,
        show,
        status,
        stop,
    )

    parser = argparse.ArgumentParser(prog="rbee", description="rbee: LLM inference on your machines")
    parser.add_argument("--version", action="version", version=VERSION_LINE)
    sub = parser.add_subparsers(dest="command", required=True)
    infer.register(sub)
    chat.register(sub)
    pull.register(sub)
    show.register(sub)
    stop.register(sub)
    daemons.register(sub)
    audit.register(sub)
    models.register(sub)
    setup.register(sub)
    deploy.register(sub)
    config.register(sub)
    status.register(sub)
    keys.register(sub)
    logs.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chosen command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--version"]:
        print(VERSION_LINE)
        return 0
    from rbee.cli.failures import CommandFailed
    from rbee.common.errors import ApiError
    from rbee.common.secrets import SecretError
    from rbee.common.tunables import TunableError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ApiError, CommandFailed, SecretError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TunableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
