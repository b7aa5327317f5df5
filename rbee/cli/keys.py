"""`rbee keys create|list|revoke|usage`: the queen's named API keys, through its admin API."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table

from rbee.cli.failures import CommandFailed
from rbee.cli.queen_access import call_queen, queen_options

DURATION = re.compile(r"^(\d+)([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add `rbee keys` and its subcommands."""
    keys = sub.add_parser("keys", help="create, list, revoke named API keys and show their usage")
    commands = keys.add_subparsers(dest="keys_command", required=True)

    create = commands.add_parser("create", help="create a key and print it (shown only this once)")
    create.add_argument("name", help="the key's name: a-z, 0-9, '.', '_', '-' (what logs and usage show)")
    create.add_argument("--scope", default="inference",
                        help="comma-separated scopes: inference, admin, node (default: inference)")
    create.add_argument("--models", default=None,
                        help="comma-separated models the key may use (default: all)")
    create.add_argument("--rpm", type=int, default=None, help="requests per minute")
    create.add_argument("--tokens-per-min", type=int, default=None,
                        help="prompt + completion tokens per minute")
    create.add_argument("--concurrency", type=int, default=None, help="requests at once")
    create.add_argument("--weight", type=float, default=None,
                        help="share of a model's queue against other keys waiting there (default 1)")
    create.add_argument("--expires", default=None,
                        help="when it stops working: a duration (30m, 12h, 7d, 2w) or an ISO 8601 time")
    create.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    queen_options(create)
    create.set_defaults(func=run_create)

    listing = commands.add_parser("list", help="list the keys (never a key itself)")
    listing.add_argument("--json", action="store_true", help="print the queen's answer as JSON")
    queen_options(listing)
    listing.set_defaults(func=run_list)

    revoke = commands.add_parser("revoke", help="revoke a key: refused from the next request on")
    revoke.add_argument("name")
    queen_options(revoke)
    revoke.set_defaults(func=run_revoke)

    usage = commands.add_parser("usage", help="requests and tokens per key")
    usage.add_argument("name", nargs="?", default=None)
    usage.add_argument("--json", action="store_true", help="print the queen's answer as JSON")
    queen_options(usage)
    usage.set_defaults(func=run_usage)


def expiry(text: str, now: datetime | None = None) -> str:
    """`--expires` as the ISO 8601 time the queen takes: a duration from now, or a time as given."""
    now = now or datetime.now(UTC)
    match = DURATION.match(text.strip())
    if match:
        return (now + timedelta(**{UNITS[match.group(2)]: int(match.group(1))})).isoformat()
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandFailed(f"--expires {text!r} is neither a duration (30m, 12h, 7d, 2w) nor an ISO "
                            "8601 time") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


def create_body(args: argparse.Namespace) -> dict[str, Any]:
    """The `POST /v2/keys` body of `rbee keys create`."""
    scopes = [scope.strip() for scope in args.scope.split(",") if scope.strip()]
    body: dict[str, Any] = {"name": args.name, "scopes": scopes}
    if args.models is not None:
        body["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    for field in ("rpm", "tokens_per_min", "concurrency", "weight"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    if args.expires is not None:
        body["expires_at"] = expiry(args.expires)
    return body


def run_create(args: argparse.Namespace) -> int:
    """Create the key; print it alone on stdout (or the JSON answer), what it is on stderr."""
    answer = call_queen(args, "POST", "/v2/keys", create_body(args))
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(answer["key"])
    print(f"created key '{answer['name']}' (fingerprint {answer['fingerprint']}, scopes "
          f"{', '.join(answer['scopes'])}); it is shown only now: store it", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print the keys as a table, or the queen's JSON."""
    keys = call_queen(args, "GET", "/v2/keys")["keys"]
    if args.json:
        print(json.dumps(keys, indent=2))
        return 0
    table = Table("Name", "Fingerprint", "Scopes", "Models", "Limits", "Weight", "Expires", "Revoked")
    for key in keys:
        limits = ", ".join(f"{name} {key[field]}" for name, field in
                           (("rpm", "rpm"), ("tpm", "tokens_per_min"), ("at once", "concurrency"))
                           if key[field] is not None)
        table.add_row(key["name"], key["fingerprint"], ",".join(key["scopes"]),
                      ",".join(key["models"]) if key["models"] else "all", limits or "-", str(key["weight"]),
                      key["expires_at"] or "-", key["revoked_at"] or "-")
    Console().print(table)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    """Revoke the key."""
    answer = call_queen(args, "DELETE", f"/v2/keys/{quote(args.name, safe='')}")
    print(f"revoked key '{answer['name']}' (fingerprint {answer['fingerprint']})")
    return 0


def run_usage(args: argparse.Namespace) -> int:
    """Print requests and tokens per key."""
    path = "/v2/keys/usage" + (f"?name={quote(args.name, safe='')}" if args.name else "")
    usage = call_queen(args, "GET", path)["usage"]
    if args.json:
        print(json.dumps(usage, indent=2))
        return 0
    table = Table("Name", "Requests", "Prompt tokens", "Completion tokens", "Last used")
    for name, row in sorted(usage.items()):
        table.add_row(name, str(row["requests"]), str(row["prompt_tokens"]), str(row["completion_tokens"]),
                      row["last_used"] or "-")
    Console().print(table)
    return 0
