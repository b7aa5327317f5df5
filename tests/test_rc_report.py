"""`make rc`'s report: every checklist item with its scenarios, ready only when all of them passed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "rc_report.py"
_spec = importlib.util.spec_from_file_location("rc_report", SCRIPT)
rc_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rc_report)
main, render, scenarios_by_feature = rc_report.main, rc_report.render, rc_report.scenarios_by_feature

REPORT = [
    {"location": "features/010-a.feature:1", "elements": [
        {"type": "scenario", "name": "one", "status": "passed"},
        {"type": "scenario", "name": "two", "status": "passed"},
        {"type": "background", "name": "", "status": "passed"}]},
    {"location": "features/020-b.feature:1", "elements": [
        {"type": "scenario", "name": "three", "status": "failed"}]},
]
ITEMS = [
    {"id": "1", "priority": "P0", "title": "all pass", "features": ["010-a"]},
    {"id": "2", "priority": "P0", "title": "one fails", "features": ["010-a", "020-b"]},
    {"id": "3", "priority": "P1", "title": "nothing yet", "features": ["999-missing"]},
]


def test_each_item_is_ready_failing_or_not_covered_with_its_scenarios() -> None:
    lines, not_ready = render(ITEMS, scenarios_by_feature(REPORT))
    assert not_ready == 2
    assert lines[0] == "[ready] P0 1. all pass (2/2 scenarios passed)"
    assert "[FAILING] P0 2. one fails (2/3 scenarios passed)" in lines
    assert "    FAIL three" in lines
    assert "[NOT COVERED] P1 3. nothing yet (0/0 scenarios passed)" in lines
    assert "    no scenarios from: 999-missing" in lines


def test_the_command_exits_1_unless_every_item_is_ready(tmp_path: Path, capsys) -> None:
    checklist, report = tmp_path / "rc.yaml", tmp_path / "behave.json"
    report.write_text(json.dumps(REPORT))
    checklist.write_text(yaml.safe_dump({"items": ITEMS[:1]}))
    assert main([str(checklist), str(report)]) == 0
    checklist.write_text(yaml.safe_dump({"items": ITEMS}))
    assert main([str(checklist), str(report)]) == 1
    assert "1 of 3 checklist items ready" in capsys.readouterr().out
    assert main([str(checklist), str(tmp_path / "absent.json")]) == 1


def test_the_shipped_checklist_has_every_item_and_p0_p1_items_name_existing_features() -> None:
    root = SCRIPT.parents[1]
    items = yaml.safe_load((root / "features" / "rc_checklist.yaml").read_text())["items"]
    assert [item["id"] for item in items][:17] == [str(n) for n in range(1, 18)]
    stems = {path.stem for path in (root / "features").glob("*.feature")}
    for item in items:
        if item["priority"] in ("P0", "P1"):
            assert set(item["features"]) <= stems, item
