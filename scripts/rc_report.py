"""Print the release-candidate checklist with the scenarios that cover each item and their results.

Reads the checklist map (features/rc_checklist.yaml) and a behave JSON report; an item is
`ready` when it has at least one scenario and every one of them passed. Exits 1 unless every
item is ready.

Run: .venv/bin/python scripts/rc_report.py features/rc_checklist.yaml reports/rc/behave.json
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

MARK = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip", "untested": "skip"}


def scenarios_by_feature(report: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """Feature file stem → [(status, scenario name)] from a behave JSON report."""
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for feature in report:
        stem = Path(feature["location"].split(":")[0]).stem
        for element in feature.get("elements", []):
            if element.get("type") == "scenario":
                found[stem].append((element.get("status", "untested"), element["name"]))
    return found


def item_verdict(scenarios: list[tuple[str, str]]) -> str:
    """`ready`, `FAILING` or `NOT COVERED`."""
    if not scenarios:
        return "NOT COVERED"
    return "ready" if all(status == "passed" for status, _ in scenarios) else "FAILING"


def render(items: list[dict[str, Any]], found: dict[str, list[tuple[str, str]]]) -> tuple[list[str], int]:
    """The report's lines and how many items are not ready."""
    lines: list[str] = []
    not_ready = 0
    for item in items:
        scenarios = [s for stem in item["features"] for s in found.get(stem, [])]
        verdict = item_verdict(scenarios)
        not_ready += verdict != "ready"
        passed = sum(status == "passed" for status, _ in scenarios)
        lines.append(f"[{verdict}] {item['priority']} {item['id']}. {item['title']} "
                     f"({passed}/{len(scenarios)} scenarios passed)")
        missing = [stem for stem in item["features"] if stem not in found]
        if missing:
            lines.append(f"    no scenarios from: {', '.join(missing)}")
        lines.extend(f"    {MARK.get(status, status)} {name}" for status, name in scenarios)
    return lines, not_ready


def main(argv: list[str]) -> int:
    """Print the checklist report; exit 1 unless every item is ready."""
    checklist, report_path = Path(argv[0]), Path(argv[1])
    if not report_path.exists():
        print(f"no behave report at {report_path}: run the features first (make rc does)", file=sys.stderr)
        return 1
    items = yaml.safe_load(checklist.read_text())["items"]
    lines, not_ready = render(items, scenarios_by_feature(json.loads(report_path.read_text())))
    print("\n".join(lines))
    print(f"{len(items) - not_ready} of {len(items)} checklist items ready")
    return 1 if not_ready else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
