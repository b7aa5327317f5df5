"""`rbee queen`, `rbee hive`, `rbee worker` and `rbee up`: the daemon entry points.

Each option may also come from the daemon's YAML file (`--config`) or its `RBEE_*` variable: the
subcommands leave unset flags out of their namespace (`argument_default=SUPPRESS`), and
`ConfigSource` layers flag > environment > file > default and validates the result.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import BaseModel

from rbee.cli.paths import default_data_dir
from rbee.common.audit import Audit, AuditError, AuditLog, no_audit
from rbee.common.auth import Keyring, check_bind_policy
from rbee.common.config import ConfigError, ConfigSource
from rbee.common.config_reload import ConfigReloader, LiveTimings
from rbee.common.config_schema import (
    DEFAULT_HIVE_PORT as DEFAULT_HIVE_PORT,  # re-exported: rbee.cli.models imports it from here
)
from rbee.common.config_schema import PEERS, timings_of
from rbee.common.daemon import serve
from rbee.common.exit_codes import WORKER_LOAD_FAILED
from rbee.common.logging_setup import setup_logging
from rbee.common.secrets import SecretError
from rbee.common.tunables import Timings

WILDCARD_HOSTS = ("0.0.0.0", "::")
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
CHILDREN = {"queen": ("hive", "worker"), "hive": ("worker",), "worker": ()}
"""The daemons each one starts, which inherit its log format and metrics exposure."""


def _common(parser: argparse.ArgumentParser, peers: tuple[str, ...]) -> None:
    parser.add_argument("--config", type=Path,
                        help="YAML file with this daemon's settings; flags and RBEE_* variables override it")
    parser.add_argument("--host", help="address to bind (default loopback)")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS)
    parser.add_argument("--log-format", choices=["text", "json"],
                        help="text (default) or JSON lines; daemons this one starts log the same way")
    parser.add_argument("--metrics-public", action="store_true",
                        help="serve /metrics without a token (and so do the daemons this one starts)")
    parser.add_argument("--token-file", type=Path,
                        help="file (mode 0600) holding the bearer token callers must present")
    for peer in peers:
        parser.add_argument(f"--{peer}-token-file", type=Path,
                            help=f"file (mode 0600) holding the {peer}'s token, for calls to it")


def _configured(daemon: str, args: argparse.Namespace) -> tuple[ConfigSource, BaseModel]:
    """The daemon's settings from flags, environment and config file; exit 1 listing the problems."""
    source = ConfigSource.from_args(daemon, args, os.environ)
    try:
        config = source.resolve()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    source.export_tunables(config, os.environ)
    for child in CHILDREN[daemon]:
        os.environ.setdefault(f"RBEE_{child.upper()}_LOG_FORMAT", config.log_format)
        os.environ.setdefault(f"RBEE_{child.upper()}_METRICS_PUBLIC", str(config.metrics_public).lower())
    return source, config


def _reloader(
    source: ConfigSource, config: BaseModel, timings: LiveTimings, audit: Audit
) -> ConfigReloader | None:
    """The SIGHUP config reload, for a daemon that has a config file."""
    return ConfigReloader(source, config, timings, audit) if source.file is not None else None


def _keyring(config: BaseModel, role: str, name: str) -> Keyring:
    """Load the daemon's tokens and apply the bind policy; exit 1 with the reason on a problem."""
    files = {role: config.token_file, **{peer: getattr(config, f"{peer}_token_file") for peer in PEERS[role]}}
    keyring = Keyring(role, files)
    try:
        keyring.load()
        check_bind_policy(keyring, config.host, name)
    except SecretError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    return keyring


def _audit_log(data_dir: Path, timings: Timings) -> AuditLog:
    """Open the daemon's audit log under its data dir; exit 1 with the reason when it cannot."""
    try:
        return AuditLog(data_dir / "audit", timings.audit_max_bytes, bool(timings.audit_fsync))
    except (AuditError, OSError) as exc:
        print(f"error: cannot open the audit log in {data_dir / 'audit'}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _queen_options(parser: argparse.ArgumentParser) -> None:
    _common(parser, PEERS["queen"])
    parser.add_argument("--port")
    parser.add_argument("--hive-port", help="port of the local hive (started on demand)")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--worker-port-start")
    parser.add_argument("--worker-slots", help="slots of each worker the queen asks for")
    parser.add_argument("--worker-ctx-size", help="context tokens per slot of the local hive's workers")
    parser.add_argument("--local-hive", action=argparse.BooleanOptionalAction,
                        help="serve from a hive on this machine (node `localhost`); --no-local-hive "
                        "routes only to the nodes of `rbee setup add-node`")
    parser.add_argument("--advertise-url",
                        help="URL the hives of other nodes send heartbeats to (default http://HOST:PORT)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the daemon subcommands (unset flags stay out of the namespace: see the module doc)."""
    unset = argparse.SUPPRESS
    queen = sub.add_parser("queen", help="run the control plane", argument_default=unset)
    _queen_options(queen)
    queen.add_argument("--start-hive", action="store_true",
                       help="start the local hive now instead of at the first request")
    queen.add_argument("--external-hive", action="store_true",
                       help="the local hive is run by systemd (or another supervisor): use it, never "
                       "start one")
    queen.set_defaults(func=run_queen)

    up = sub.add_parser("up", help="run queen and local hive in the foreground; Ctrl+C stops all",
                        argument_default=unset)
    _queen_options(up)
    up.set_defaults(func=run_up)

    hive = sub.add_parser("hive", help="run the per-machine hive (or report its backends)",
                          argument_default=unset)
    hive.add_argument("action", nargs="?", choices=["serve", "backends"], default="serve",
                      help="serve (default), or print the inference backends of this node and exit")
    _common(hive, PEERS["hive"])
    hive.add_argument("--port")
    hive.add_argument("--data-dir", type=Path)
    hive.add_argument("--worker-port-start")
    hive.add_argument("--ctx-size")
    hive.add_argument("--queen-url", help="queen to send heartbeats to")
    hive.add_argument("--advertise-host",
                      help="address the queen reaches this hive and its workers at "
                      "(default: --host, or 127.0.0.1 when --host is a wildcard)")
    hive.set_defaults(func=run_hive)

    worker = sub.add_parser("worker", help="serve one GGUF model", argument_default=unset)
    _common(worker, PEERS["worker"])
    worker.add_argument("--model", help="path of the GGUF file (required here or in the config)")
    worker.add_argument("--port", help="required here or in the config")
    worker.add_argument("--worker-id", help="required here or in the config")
    worker.add_argument("--hive-url")
    worker.add_argument("--slots")
    worker.add_argument("--ctx-size")
    worker.add_argument("--threads")
    worker.add_argument("--backend", choices=["cpu", "cuda", "metal"],
                        help="where the model runs; a GPU backend the engine lacks is an error")
    worker.add_argument("--device", metavar="N", help="GPU index for a GPU backend (default 0)")
    worker.add_argument("--engine", choices=["batched", "simple"],
                        help="batched (default): one context, the active requests decoded together; "
                        "simple: one context and thread per slot")
    worker.set_defaults(func=run_worker)


def run_queen(args: argparse.Namespace, start_hive: bool | None = None) -> int:
    """Serve the queen until stopped."""
    from rbee.queen.app import QueenSettings, build_app

    source, config = _configured("queen", args)
    setup_logging("queen", config.log_level, config.log_format)
    settings = QueenSettings(
        host=config.host,
        port=config.port,
        hive_port=config.hive_port,
        data_dir=config.data_dir or default_data_dir(),
        worker_port_start=config.worker_port_start,
        worker_slots=config.worker_slots,
        worker_ctx_size=config.worker_ctx_size,
        start_hive=(config.start_hive if start_hive is None else start_hive) and config.local_hive,
        keyring=_keyring(config, "queen", "queen"),
        local_hive=config.local_hive,
        manage_local_hive=not config.external_hive,
        advertise_url=config.advertise_url or f"http://{_reachable(config.host)}:{config.port}",
        metrics_public=config.metrics_public,
    )
    timings = LiveTimings(timings_of(config))
    audit_log = _audit_log(settings.data_dir, timings)
    serve(build_app(settings, timings, audit_log), config.host, config.port, "queen",
          _reloader(source, config, timings, audit_log.append))
    return 0


def _reachable(host: str) -> str:
    """The address others use for a daemon bound to `host`: itself, or loopback for a wildcard."""
    return "127.0.0.1" if host in WILDCARD_HOSTS else host


def run_up(args: argparse.Namespace) -> int:
    """Queen plus local hive, started together and stopped together."""
    return run_queen(args, start_hive=True)


def run_hive(args: argparse.Namespace) -> int:
    """Serve a hive until stopped (or print this node's backends)."""
    from rbee.hive.app import HiveSettings, build_app

    if args.action == "backends":
        return print_backends()

    source, config = _configured("hive", args)
    setup_logging("hive", config.log_level, config.log_format)
    settings = HiveSettings(
        host=config.host,
        port=config.port,
        data_dir=config.data_dir or default_data_dir() / "hive",
        worker_port_start=config.worker_port_start,
        ctx_size=config.ctx_size,
        queen_url=config.queen_url,
        keyring=_keyring(config, "hive", "hive"),
        advertise_host=config.advertise_host or _reachable(config.host),
        metrics_public=config.metrics_public,
    )
    timings = LiveTimings(timings_of(config))
    audit_log = _audit_log(settings.data_dir, timings)
    serve(build_app(settings, timings, audit_log), config.host, config.port, "hive",
          _reloader(source, config, timings, audit_log.append))
    return 0


def print_backends() -> int:
    """`rbee hive backends`: one line per backend of the installed engine on this node."""
    from rbee.hive import backends

    for backend in backends.detect():
        state = "available" if backend.available else "unavailable"
        print(f"{backend.name:6s} {state:11s} {backend.detail}")
    return 0


def run_worker(args: argparse.Namespace) -> int:
    """Serve a worker until stopped; exit WORKER_LOAD_FAILED when its model failed to load."""
    from rbee.worker.app import build_app
    from rbee.worker.app_keys import RUNTIME
    from rbee.worker.engine import engine_offloads_to_gpu
    from rbee.worker.faults import load_faults
    from rbee.worker.runtime import WorkerSettings

    source, config = _configured("worker", args)
    setup_logging("worker", config.log_level, config.log_format, config.worker_id)
    settings = WorkerSettings(
        worker_id=config.worker_id,
        model_path=config.model,
        host=config.host,
        port=config.port,
        slots=config.slots,
        ctx_size=config.ctx_size,
        threads=config.threads,
        hive_url=config.hive_url,
        keyring=_keyring(config, "worker", "worker"),
        backend=config.backend,
        device=config.device,
        engine=config.engine,
    )
    if settings.backend != "cpu" and not engine_offloads_to_gpu():
        print(f"error: the installed llama-cpp-python has no {settings.backend} support; "
              "refusing to fall back to the CPU", file=sys.stderr)
        return 1
    timings = LiveTimings(timings_of(config))
    app = build_app(settings, timings, load_faults(), config.metrics_public)
    serve(app, config.host, config.port, "worker", _reloader(source, config, timings, no_audit))
    return WORKER_LOAD_FAILED if app[RUNTIME].phase == "failed" else 0
