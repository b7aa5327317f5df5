"""`rbee config check FILE`: validate a daemon's YAML config file without starting anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rbee.common.config import ConfigError, check_file
from rbee.common.config_schema import DAEMONS


def register(sub: argparse._SubParsersAction) -> None:
    """Add `rbee config check`."""
    config = sub.add_parser("config", help="work with daemon config files")
    actions = config.add_subparsers(dest="config_action", required=True)
    check = actions.add_parser("check", help="validate a config file: exit 0 when a daemon would accept it")
    check.add_argument("file", type=Path)
    check.add_argument("--daemon", choices=DAEMONS,
                       help="the daemon the file must configure (default: the one its top-level key names)")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Print `FILE: ok (daemon)` and return 0, or list every problem on stderr and return 1."""
    try:
        daemon = check_file(args.file, args.daemon)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok ({daemon})")
    return 0
