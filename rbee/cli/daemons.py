"""`rbee queen`, `rbee hive`, `rbee worker` and `rbee up`: the daemon entry points.

Each option may also come from the daemon's YAML file (`--config`) or its `RBEE_*` variable: the
subcommands leave unset flags out of their namespace (`argument_default=SUPPRESS`), and
`ConfigSource` layers flag > environment > file > default and validates the result.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel

from rbee.common.audit import Audit, AuditError, AuditLog, no_audit
from rbee.common.auth import Keyring, check_bind_policy
from rbee.common.config import ConfigError, ConfigSource
from rbee.common.config_reload import ConfigReloader, LiveTimings
from rbee.common.config_schema import PEERS, timings_of
from rbee.common.daemon import serve
from rbee.common.defaults import BACKEND_POLICIES, BACKENDS, ENGINES, SPLIT_MODES
from rbee.common.logging_setup import setup_logging
from rbee.common.tls import TlsError, TlsFiles, warn_if_plain_public
from rbee.common.tunables import Timings

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
Build = Callable[[Timings, AuditLog], web.Application | Awaitable[web.Application]]
"""Builds a daemon's application from its live timings and its audit log."""
Applied = Callable[[BaseModel], None]
"""What a daemon does with the configuration a SIGHUP reload applied."""


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
    """The daemon's settings from flags, environment and config file, exported to the daemons it
    starts, with its logging set up; exit 1 listing the problems."""
    source = ConfigSource.from_args(daemon, args)
    try:
        config = source.resolve()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    source.export(config)
    setup_logging(daemon, config.log_level, config.log_format, getattr(config, "worker_id", None))
    return source, config


def _reloader(
    source: ConfigSource, config: BaseModel, timings: LiveTimings, audit: Audit,
    applied: Applied = lambda _: None,
) -> ConfigReloader | None:
    """The SIGHUP config reload, for a daemon that has a config file."""
    if source.file is None:
        return None
    return ConfigReloader(source, config, timings, audit, applied=applied)


def _keyring(config: BaseModel, role: str) -> Keyring:
    """Load the daemon's tokens and apply the bind policy (SecretError on a problem)."""
    files = {role: config.token_file, **{peer: getattr(config, f"{peer}_token_file") for peer in PEERS[role]}}
    keyring = Keyring(role, files)
    keyring.load()
    check_bind_policy(keyring, config.host, role)
    return keyring


def _tls_files(config: BaseModel) -> TlsFiles | None:
    """The listener's certificate and key files, if given; exit 1 when only one of them is."""
    try:
        return TlsFiles.of(config.tls_cert, config.tls_key)
    except TlsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _serve_audited(source: ConfigSource, config: BaseModel, data_dir: Path, build: Build,
                   tls: TlsFiles | None = None, applied: Applied = lambda _: None) -> None:
    """Open the audit log under `data_dir` (exit 1 with the reason when it cannot), build the
    application with the live timings and serve it (over TLS with `tls`) until stopped; `applied`
    gets the configuration of each SIGHUP reload."""
    timings = LiveTimings(timings_of(config))
    try:
        audit_log = AuditLog(data_dir / "audit", timings.audit_max_bytes, bool(timings.audit_fsync))
    except (AuditError, OSError) as exc:
        print(f"error: cannot open the audit log in {data_dir / 'audit'}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    serve(build(timings, audit_log), config.host, config.port, source.daemon,
          _reloader(source, config, timings, audit_log.append, applied), tls)


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
    parser.add_argument("--backend", choices=BACKEND_POLICIES,
                        help="backend of a request that names none (default auto: a GPU where one is "
                        "usable, else the CPU)")
    parser.add_argument("--model-backends", metavar="JSON",
                        help='per model ref, the backend its requests get, e.g. {"hf:org/repo": "cuda"}')
    parser.add_argument("--tls-cert", type=Path,
                        help="serve HTTPS with this PEM certificate chain (re-read on SIGHUP)")
    parser.add_argument("--tls-key", type=Path, help="the PEM private key of --tls-cert")
    parser.add_argument("--models", metavar="JSON",
                        help='the model table: per alias, its ref and settings, e.g. '
                        '{"fast": {"ref": "hf:org/repo", "ctx_size": 4096}} (docs/configuration.md)')
    parser.add_argument("--ready-public", action="store_true",
                        help="serve /ready without a token (a load balancer's probe), as /health is")


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
    hive.add_argument("--backend", choices=BACKEND_POLICIES,
                      help="what this node serves on: auto (default: a usable GPU, else the CPU), cpu, cuda")
    hive.add_argument("--model-gpu-layers", metavar="JSON",
                      help='per model ref, the layers offloaded to the GPU, e.g. {"file:///m.gguf": 20}')
    hive.add_argument("--split-gpus", metavar="JSON",
                      help='GPUs (UUIDs or indexes) a model too big for one GPU may be split over, '
                      'e.g. ["0", "1"]')
    hive.add_argument("--split-mode", choices=["layer", "row"],
                      help="how a model split over GPUs is spread (default layer)")
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
    worker.add_argument("--backend", choices=BACKENDS,
                        help="where the model runs; a GPU backend the engine lacks is an error")
    worker.add_argument("--device", metavar="N", help="GPU index for a GPU backend (default 0)")
    worker.add_argument("--gpu-layers", metavar="N",
                        help="layers on the GPU (default: all of them on a GPU backend)")
    worker.add_argument("--split-mode", choices=SPLIT_MODES,
                        help="none (default: one GPU), layer or row (a model over several GPUs)")
    worker.add_argument("--tensor-split", metavar="JSON",
                        help="share of the model on each visible GPU when split, e.g. [0.5, 0.5]")
    worker.add_argument("--engine", choices=ENGINES,
                        help="batched (default): one context, the active requests decoded together; "
                        "simple: one context and thread per slot")
    worker.add_argument("--embedding", type=str.lower, choices=["true", "false"],
                        help="true: serve /v1/embeddings (pooled, L2-normalised vectors) and no generation")
    worker.add_argument("--chat-template", metavar="JINJA",
                        help="chat template used instead of the GGUF's own (a model table alias's)")
    worker.set_defaults(func=run_worker)


def run_queen(args: argparse.Namespace, start_hive: bool | None = None) -> int:
    """Serve the queen until stopped."""
    from rbee.queen.app import build_app
    from rbee.queen.settings import QueenSettings

    source, config = _configured("queen", args)
    settings = QueenSettings.from_config(config, _keyring(config, "queen"), start_hive)
    tls = _tls_files(config)
    warn_if_plain_public(config.host, "queen", tls)
    _serve_audited(source, config, settings.data_dir,
                   lambda timings, log: build_app(settings, timings, log), tls,
                   lambda fresh: settings.models.replace(fresh.models))
    return 0


def run_up(args: argparse.Namespace) -> int:
    """Queen plus local hive, started together and stopped together."""
    return run_queen(args, start_hive=True)


def run_hive(args: argparse.Namespace) -> int:
    """Serve a hive until stopped (or print this node's backends)."""
    from rbee.hive.app import build_app
    from rbee.hive.settings import HiveSettings

    if args.action == "backends":
        return print_backends()
    source, config = _configured("hive", args)
    settings = HiveSettings.from_config(config, _keyring(config, "hive"))
    _serve_audited(source, config, settings.data_dir, lambda timings, log: build_app(settings, timings, log))
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
    from rbee.worker.cxx_runtime import share_cxx_runtime

    share_cxx_runtime()
    from rbee.worker.app import build_app, exit_code
    from rbee.worker.settings import WorkerSettings

    source, config = _configured("worker", args)
    settings = WorkerSettings.from_config(config, _keyring(config, "worker"))
    timings = LiveTimings(timings_of(config))
    app = build_app(settings, timings)
    serve(app, config.host, config.port, "worker", _reloader(source, config, timings, no_audit))
    return exit_code(app)
