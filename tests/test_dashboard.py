"""The Grafana dashboard's GPU row plots the hive's GPU gauges and its `node` variable filters
every hive and worker series outside the cluster row (the live-daemon check of every metric
name is features/740-dashboard-and-ui.feature)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rbee.common.metrics import DaemonMetrics
from rbee.hive.gpus import Gpu
from rbee.hive.metrics import HiveMetrics
from rbee.worker.metrics import INFO_LABELS

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "rbee.json"
NODE_MATCHER = 'instance=~"($node):[0-9]+"'
METRIC_NAME = re.compile(r"\brbee_[a-z0-9_]+")
SELECTOR = re.compile(r"\b(rbee_(?:hive|worker)_[a-z0-9_]+)(\{[^}]*\})?")
STAND_IN_GPU = Gpu(0, "GPU-aaaa", "NVIDIA H200", 2**30, 2**29, 2**29, 50.0, 60.0, 300.0)


def _rows() -> dict[str, list[dict]]:
    """Panels by the title of the row they follow."""
    rows: dict[str, list[dict]] = {}
    current = ""
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            rows[current] = []
        else:
            rows[current].append(panel)
    return rows


def _expressions(panels: list[dict]) -> list[str]:
    return [target["expr"] for panel in panels for target in panel["targets"]]


def _hive_gpu_families() -> set[str]:
    """The GPU families a hive exports on a node with one (stand-in) GPU."""
    base = DaemonMetrics("hive")
    HiveMetrics(base, lambda: [STAND_IN_GPU])
    text = generate_latest(base.registry).decode()
    return {family.name for family in text_string_to_metric_families(text)
            if family.name.startswith("rbee_hive_gpu_") and family.samples}


def test_the_gpu_row_plots_every_gpu_gauge_the_hive_exports_and_nothing_else() -> None:
    exported = _hive_gpu_families()
    plotted = {name for expr in _expressions(_rows()["GPUs"]) for name in METRIC_NAME.findall(expr)}
    assert {name for name in plotted if name.startswith("rbee_hive_gpu_")} == exported
    assert len(exported) == 5, exported


def test_the_node_variable_lists_hive_hosts_and_filters_hive_and_worker_series_outside_the_cluster() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    [node] = [item for item in dashboard["templating"]["list"] if item["name"] == "node"]
    assert node["query"]["query"].startswith("label_values(rbee_hive_") and node["includeAll"]
    assert re.match(node["regex"].strip("/"), "gpu1.lan:9200").group(1) == "gpu1.lan"
    scoped = [panel for title, panels in _rows().items() if not title.startswith("Cluster")
              for panel in panels]
    selectors = [match for expr in _expressions(scoped) for match in SELECTOR.finditer(expr)]
    assert len(selectors) >= 20
    unfiltered = [match.group(0) for match in selectors if NODE_MATCHER not in (match.group(2) or "")]
    assert not unfiltered, unfiltered


def test_panels_join_only_labels_the_worker_info_metric_has() -> None:
    joins = [labels for expr in _expressions([p for ps in _rows().values() for p in ps])
             for labels in re.findall(r"group_left \(([^)]*)\) rbee_worker_info", expr)]
    assert joins
    for labels in joins:
        assert {label.strip() for label in labels.split(",")} <= set(INFO_LABELS)


def test_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panels in _rows().values() for panel in panels]
    assert len(ids) == len(set(ids))
