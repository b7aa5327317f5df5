"""The `rbee` command: subcommands for operators and daemon entry points."""

from __future__ import annotations

import argparse
import sys

from rbee import __version__
from rbee.cli import audit, config, daemons, deploy, infer, logs, models, setup, status
from rbee.common.errors import ApiError
from rbee.common.tunables import TunableError
from rbee.worker.faults import FaultsRefused


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(prog="rbee", description="rbee: LLM inference on your machines")
    parser.add_argument("--version", action="version", version=f"rbee {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    infer.register(sub)
    daemons.register(sub)
    audit.register(sub)
    models.register(sub)
    setup.register(sub)
    deploy.register(sub)
    config.register(sub)
    status.register(sub)
    logs.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chosen command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except (TunableError, FaultsRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
