"""`rbee deploy …`: put rbee on machines through a scheduler or service manager.

Each target is one `register_<target>` function, in its own module under rbee/deploy/, adding its
subcommand.
"""

from __future__ import annotations

import argparse

from rbee.deploy.nomad_cli import register_nomad
from rbee.deploy.systemd_cli import register_systemd


def register(sub: argparse._SubParsersAction) -> None:
    """Add `rbee deploy` and its targets."""
    deploy_parser = sub.add_parser("deploy", help="check and deploy rbee's job files and units")
    targets = deploy_parser.add_subparsers(dest="deploy_target", required=True, metavar="TARGET")
    register_nomad(targets)
    register_systemd(targets)
