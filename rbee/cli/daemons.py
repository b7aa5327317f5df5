"""`rbee queen`, `rbee hive`, `rbee worker` and `rbee up`: the daemon entry points."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rbee.cli.paths import default_data_dir
from rbee.common.audit import AuditError, AuditLog
from rbee.common.auth import Keyring, check_bind_policy
from rbee.common.daemon import serve
from rbee.common.exit_codes import WORKER_LOAD_FAILED
from rbee.common.logging_setup import setup_logging
from rbee.common.secrets import SecretError
from rbee.common.tunables import Timings, load_timings

DEFAULT_QUEEN_PORT = 8080
DEFAULT_HIVE_PORT = 9200
DEFAULT_WORKER_PORT = 8081
DEFAULT_WORKER_SLOTS = 2
DEFAULT_CTX_SIZE = 2048
QUEEN_PEERS = ("hive", "worker")
HIVE_PEERS = ("queen", "worker")
WORKER_PEERS = ("hive",)
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 1 and 65535")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _common(parser: argparse.ArgumentParser, peers: tuple[str, ...]) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--token-file", type=Path, default=None,
                        help="file (mode 0600) holding the bearer token callers must present")
    for peer in peers:
        parser.add_argument(f"--{peer}-token-file", type=Path, default=None,
                            help=f"file (mode 0600) holding the {peer}'s token, for calls to it")


def _keyring(args: argparse.Namespace, role: str, peers: tuple[str, ...], name: str) -> Keyring:
    """Load the daemon's tokens and apply the bind policy; exit 1 with the reason on a problem."""
    files = {role: args.token_file, **{peer: getattr(args, f"{peer}_token_file") for peer in peers}}
    keyring = Keyring(role, files)
    try:
        keyring.load()
        check_bind_policy(keyring, args.host, name)
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
    _common(parser, QUEEN_PEERS)
    parser.add_argument("--port", type=_port, default=DEFAULT_QUEEN_PORT)
    parser.add_argument("--hive-port", type=_port, default=DEFAULT_HIVE_PORT,
                        help="port of the local hive (started on demand)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--worker-port-start", type=_port, default=DEFAULT_WORKER_PORT)
    parser.add_argument("--worker-slots", type=_positive, default=DEFAULT_WORKER_SLOTS,
                        help="slots of each worker the queen asks for")
    parser.add_argument("--worker-ctx-size", type=_positive, default=DEFAULT_CTX_SIZE,
                        help="context tokens per slot of the local hive's workers")
    parser.add_argument("--local-hive", action=argparse.BooleanOptionalAction, default=True,
                        help="serve from a hive on this machine (node `localhost`); --no-local-hive "
                        "routes only to the nodes of `rbee setup add-node`")
    parser.add_argument("--advertise-url", default=None,
                        help="URL the hives of other nodes send heartbeats to (default http://HOST:PORT)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the daemon subcommands."""
    queen = sub.add_parser("queen", help="run the control plane")
    _queen_options(queen)
    queen.add_argument("--start-hive", action="store_true",
                       help="start the local hive now instead of at the first request")
    queen.set_defaults(func=run_queen)

    up = sub.add_parser("up", help="run queen and local hive in the foreground; Ctrl+C stops all")
    _queen_options(up)
    up.set_defaults(func=run_up)

    hive = sub.add_parser("hive", help="run the per-machine hive (or report its backends)")
    hive.add_argument("action", nargs="?", choices=["serve", "backends"], default="serve",
                      help="serve (default), or print the inference backends of this node and exit")
    _common(hive, HIVE_PEERS)
    hive.add_argument("--port", type=_port, default=DEFAULT_HIVE_PORT)
    hive.add_argument("--data-dir", type=Path, default=None)
    hive.add_argument("--worker-port-start", type=_port, default=DEFAULT_WORKER_PORT)
    hive.add_argument("--ctx-size", type=_positive, default=DEFAULT_CTX_SIZE)
    hive.add_argument("--queen-url", default=None, help="queen to send heartbeats to")
    hive.add_argument("--advertise-host", default=None,
                      help="address the queen reaches this hive and its workers at "
                      "(default: --host, or 127.0.0.1 when --host is a wildcard)")
    hive.set_defaults(func=run_hive)

    worker = sub.add_parser("worker", help="serve one GGUF model")
    _common(worker, WORKER_PEERS)
    worker.add_argument("--model", required=True, help="path of the GGUF file")
    worker.add_argument("--port", type=_port, required=True)
    worker.add_argument("--worker-id", required=True)
    worker.add_argument("--hive-url", default=None)
    worker.add_argument("--slots", type=_positive, default=1)
    worker.add_argument("--ctx-size", type=_positive, default=DEFAULT_CTX_SIZE)
    worker.add_argument("--threads", type=_positive, default=None)
    worker.add_argument("--backend", choices=["cpu", "cuda", "metal"], default="cpu",
                        help="where the model runs; a GPU backend the engine lacks is an error")
    worker.add_argument("--device", type=int, choices=range(64), default=None, metavar="N",
                        help="GPU index for a GPU backend (default 0)")
    worker.set_defaults(func=run_worker)


def run_queen(args: argparse.Namespace, start_hive: bool | None = None) -> int:
    """Serve the queen until stopped."""
    from rbee.queen.app import QueenSettings, build_app

    setup_logging("queen", args.log_level)
    settings = QueenSettings(
        host=args.host,
        port=args.port,
        hive_port=args.hive_port,
        data_dir=args.data_dir or default_data_dir(),
        worker_port_start=args.worker_port_start,
        worker_slots=args.worker_slots,
        worker_ctx_size=args.worker_ctx_size,
        start_hive=(args.start_hive if start_hive is None else start_hive) and args.local_hive,
        keyring=_keyring(args, "queen", QUEEN_PEERS, "queen"),
        local_hive=args.local_hive,
        advertise_url=_queen_url(args),
    )
    timings = load_timings()
    serve(build_app(settings, timings, _audit_log(settings.data_dir, timings)), args.host, args.port, "queen")
    return 0


def _queen_url(args: argparse.Namespace) -> str:
    """The queen's URL as hives on other nodes see it."""
    from rbee.common.validation import check_http_url

    if args.advertise_url:
        return check_http_url("--advertise-url", args.advertise_url)
    host = "127.0.0.1" if args.host in WILDCARD_HOSTS else args.host
    return f"http://{host}:{args.port}"


def run_up(args: argparse.Namespace) -> int:
    """Queen plus local hive, started together and stopped together."""
    return run_queen(args, start_hive=True)


def run_hive(args: argparse.Namespace) -> int:
    """Serve a hive until stopped (or print this node's backends)."""
    from rbee.hive.app import HiveSettings, build_app

    if args.action == "backends":
        return print_backends()

    setup_logging("hive", args.log_level)
    settings = HiveSettings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir or default_data_dir() / "hive",
        worker_port_start=args.worker_port_start,
        ctx_size=args.ctx_size,
        queen_url=args.queen_url,
        keyring=_keyring(args, "hive", HIVE_PEERS, "hive"),
        advertise_host=_advertise_host(args),
    )
    timings = load_timings()
    serve(build_app(settings, timings, _audit_log(settings.data_dir, timings)), args.host, args.port, "hive")
    return 0


def _advertise_host(args: argparse.Namespace) -> str:
    """The hive's address as others see it: given, else the bind address unless it is a wildcard."""
    from rbee.common.validation import check_node_name

    if args.advertise_host:
        return check_node_name("--advertise-host", args.advertise_host)
    return "127.0.0.1" if args.host in WILDCARD_HOSTS else args.host


def print_backends() -> int:
    """`rbee hive backends`: one line per backend of the installed engine on this node."""
    from rbee.hive import backends

    for backend in backends.detect():
        state = "available" if backend.available else "unavailable"
        print(f"{backend.name:6s} {state:11s} {backend.detail}")
    return 0


def run_worker(args: argparse.Namespace) -> int:
    """Serve a worker until stopped; exit WORKER_LOAD_FAILED when its model failed to load."""
    from rbee.common.validation import check_identifier
    from rbee.worker.app import build_app
    from rbee.worker.engine import engine_offloads_to_gpu
    from rbee.worker.faults import load_faults
    from rbee.worker.routes import RUNTIME
    from rbee.worker.runtime import WorkerSettings

    setup_logging(f"worker {args.worker_id}", args.log_level)
    settings = WorkerSettings(
        worker_id=check_identifier("worker-id", args.worker_id),
        model_path=args.model,
        host=args.host,
        port=args.port,
        slots=args.slots,
        ctx_size=args.ctx_size,
        threads=args.threads,
        hive_url=args.hive_url,
        keyring=_keyring(args, "worker", WORKER_PEERS, "worker"),
        backend=args.backend,
        device=args.device,
    )
    if settings.backend != "cpu" and not engine_offloads_to_gpu():
        print(f"error: the installed llama-cpp-python has no {settings.backend} support; "
              "refusing to fall back to the CPU", file=sys.stderr)
        return 1
    app = build_app(settings, load_timings(), load_faults())
    serve(app, args.host, args.port, "worker")
    return WORKER_LOAD_FAILED if app[RUNTIME].phase == "failed" else 0
