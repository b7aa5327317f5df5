"""`rbee show MODEL`: a model's architecture, size in weights, quantisation, context, template, file
size, the nodes that hold it and the workers that run it, as the queen gathers them from the hives."""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import urlencode

from rbee.cli.queen_access import call_queen, queen_options
from rbee.common.validation import check_model_ref

SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
COUNT_UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def register(sub: argparse._SubParsersAction) -> None:
    """Add `rbee show`."""
    show = sub.add_parser("show", help="what a model is and where it runs")
    show.add_argument("model", help="catalog name or model ref")
    show.add_argument("--template", action="store_true", help="print the model's whole chat template")
    show.add_argument("--json", action="store_true", help="print the queen's answer as JSON")
    queen_options(show)
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    """Print the model's facts."""
    model = check_model_ref(args.model)
    facts = call_queen(args, "GET", f"/v2/models/show?{urlencode({'model': model})}")
    if args.json:
        print(json.dumps(facts, indent=2))
    elif args.template:
        print(facts["chat_template"] or "(the model has no chat template)")
    else:
        for label, value in lines(facts):
            print(f"{label:<16}{value}")
    return 0


def lines(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the human form."""
    template = facts.get("chat_template")
    name = f" ({facts['display_name']})" if facts.get("display_name") else ""
    context = facts.get("context_length")
    rows = [("alias", facts["alias"])] if facts.get("alias") else []
    rows += [
        ("model", facts["name"]),
        ("architecture", f"{facts.get('architecture') or 'unknown'}{name}"),
        ("parameters", f"{count(facts['parameters'])} ({facts['parameters']})"),
        ("quantisation", facts.get("file_type") or "unknown"),
        ("context", f"{context} tokens (trained)" if context else "unknown"),
        ("chat template", f"yes, {len(template)} characters (--template prints it)" if template
         else "none (rbee's default chat format)"),
        ("size", f"{size(facts['size_bytes'])} ({facts['size_bytes']} bytes)"),
        ("file", facts["path"]),
        ("held on", ", ".join(facts["nodes"])),
    ]
    workers = facts["workers"]
    rows.append(("runs on", "; ".join(_worker(w) for w in workers) if workers else "no worker runs it now"))
    return rows


def _worker(worker: dict[str, Any]) -> str:
    device = "" if worker.get("device") is None else f":{worker['device']}"
    return f"{worker['node']}, worker {worker['worker_id']} ({worker['state']}, {worker['backend']}{device})"


def count(value: int) -> str:
    """270M, 8.0B: a parameter count as model cards write it."""
    for scale, unit in COUNT_UNITS:
        if value >= scale:
            return f"{value / scale:.1f}{unit}"
    return str(value)


def size(value: int) -> str:
    """A byte count in binary units: 512 B, 1.5 KiB, 241.4 MiB."""
    amount, unit = float(value), 0
    while amount >= 1024 and unit < len(SIZE_UNITS) - 1:
        amount, unit = amount / 1024, unit + 1
    return f"{value} B" if unit == 0 else f"{amount:.1f} {SIZE_UNITS[unit]}"
