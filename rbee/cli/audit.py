"""`rbee audit verify`: prove the audit log intact or name its first bad record."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rbee.common.audit_verify import verify
from rbee.common.config_env import default_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `audit` subcommand and its `verify` action."""
    audit = sub.add_parser("audit", help="check the tamper-evident audit log")
    actions = audit.add_subparsers(dest="audit_action", metavar="ACTION", required=True)
    check = actions.add_parser("verify", help="verify the hash chain of an audit log")
    check.add_argument("path", nargs="?", type=Path, default=None,
                       help="directory of segments or one segment file (default: <data dir>/audit)")
    check.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Print whether the log is intact; 0 when it is, 1 when it is not or cannot be read."""
    path = args.path if args.path is not None else default_data_dir() / "audit"
    if not path.exists():
        print(f"error: no audit log at {path}", file=sys.stderr)
        return 1
    try:
        verdict = verify(path)
    except OSError as exc:
        print(f"error: cannot read the audit log at {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if verdict.ok:
        print(f"audit log intact: {verdict.records} records in {verdict.files} files")
        if verdict.warning:
            print(f"warning: {verdict.warning}", file=sys.stderr)
        return 0
    if verdict.first_bad is None:
        print(f"audit log TAMPERED: {verdict.reason} in {path}")
    else:
        print(f"audit log TAMPERED: first bad record at {verdict.first_bad}: {verdict.reason}")
    return 1
