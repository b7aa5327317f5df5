"""`rbee deploy systemd`: render rbee's units for this machine, optionally install and start them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rbee.common.defaults import HIVE_PORT, QUEEN_PORT, WORKER_PORT_START
from rbee.common.tunables import TunableError, shared_environment
from rbee.deploy import systemd_install
from rbee.deploy.systemd_units import (
    DEFAULT_WATCHDOG_S,
    DeployError,
    UnitSettings,
    check_values,
    default_config_dir,
    default_deploy_data_dir,
    default_unit_dir,
    find_rbee,
    install_paths,
    render_units,
)
from rbee.deploy.token_init import init_missing_tokens


def register_systemd(targets: argparse._SubParsersAction) -> None:
    """Add `systemd` to the `rbee deploy` subcommands."""
    parser = targets.add_parser(
        "systemd", help="render rbee's systemd units for this machine; optionally install and start them",
        description="Writes rbee-queen.service, rbee-hive.service and rbee-worker@.service with this "
        "machine's paths, ports and token files. RBEE_* tunables set in the environment are pinned in "
        "the units.")
    parser.add_argument("--user", action="store_true",
                        help="units for your own service manager (systemctl --user) instead of the system's")
    parser.add_argument("--dest", type=Path, default=None,
                        help="folder to write the units to (default: ~/.config/systemd/user with --user, "
                        "else /etc/systemd/system)")
    parser.add_argument("--install", action="store_true", help="make the service manager read them now")
    parser.add_argument("--start", action="store_true",
                        help="also enable and start rbee-hive and rbee-queen (implies --install)")
    parser.add_argument("--rbee", type=Path, default=None,
                        help="the rbee executable the units run (default: the one next to this Python)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address the queen binds to (the hive and its workers stay on 127.0.0.1)")
    parser.add_argument("--queen-port", type=int, default=QUEEN_PORT)
    parser.add_argument("--hive-port", type=int, default=HIVE_PORT)
    parser.add_argument("--worker-port-start", type=int, default=WORKER_PORT_START,
                        help="first port of the workers the hive starts")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the queen's data dir; the hive uses its hive/ folder (default: "
                        "~/.local/share/rbee with --user, else /var/lib/rbee)")
    parser.add_argument("--token-dir", type=Path, default=None,
                        help="folder with queen.token, hive.token and worker.token, mode 0600 each "
                        "(default: ~/.config/rbee/tokens with --user, else /etc/rbee/tokens)")
    parser.add_argument("--init-tokens", action="store_true",
                        help="create the token files that do not exist yet (random tokens, mode 0600, "
                        "in a folder of mode 0700) and say where on stderr")
    parser.add_argument("--watchdog-sec", type=float, default=DEFAULT_WATCHDOG_S,
                        help="systemd kills and restarts a daemon that stops petting for this long")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="append each daemon's output to a file here instead of the journal")
    parser.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> UnitSettings:
    """The unit settings the command line asks for, with the scope's defaults."""
    config = default_config_dir(args.user)
    rbee = args.rbee.absolute() if args.rbee else find_rbee()
    return UnitSettings(
        user=args.user,
        rbee=rbee,
        data_dir=(args.data_dir or default_deploy_data_dir(args.user)).absolute(),
        token_dir=(args.token_dir or config / "tokens").absolute(),
        worker_env_dir=config / "workers",
        host=args.host,
        queen_port=args.queen_port,
        hive_port=args.hive_port,
        worker_port_start=args.worker_port_start,
        watchdog_s=args.watchdog_sec,
        log_dir=args.log_dir.absolute() if args.log_dir else None,
        environment=shared_environment(),
        install_paths=install_paths(rbee),
    )


def run(args: argparse.Namespace) -> int:
    """Render, write, and on request install and start; exit 1 with CODE: reason on any problem."""
    try:
        settings = settings_from(args)
        if args.init_tokens:
            check_values(settings)
            for path in init_missing_tokens(settings):
                print(f"created token file {path} (mode 0600)", file=sys.stderr)
        units = render_units(settings)
        systemd_install.prepare_dirs(settings)
        for path in systemd_install.write_units(units, (args.dest or default_unit_dir(args.user)).absolute()):
            print(f"wrote {path}")
        scope = "--user " if args.user else ""
        if not (args.install or args.start):
            print(f"next: systemctl {scope}daemon-reload && "
                  f"systemctl {scope}enable --now rbee-hive rbee-queen")
            return 0
        systemd_install.reload_manager(args.user)
        print("service manager reloaded")
        if args.start:
            for unit, state in systemd_install.enable_and_start(args.user).items():
                print(f"{unit}: {state}")
    except TunableError as exc:
        print(f"error: INVALID_TUNABLE: {exc}", file=sys.stderr)
        return 1
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
