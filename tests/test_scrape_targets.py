"""Prometheus http_sd target groups of the queen, its hives and their workers."""

from __future__ import annotations

from rbee.common.wire import WorkerState
from rbee.queen.routing.worker_registry import WorkerView
from rbee.queen.scrape_targets import target_groups


def _worker(worker_id: str, hive_url: str, url: str) -> WorkerView:
    return WorkerView(worker_id, hive_url, "hf:org/repo:q4.gguf", url, 2, WorkerState.IDLE)


def test_each_daemon_is_one_group_labelled_with_its_role_node_model_and_worker() -> None:
    groups = target_groups("https://queen.lan:8443", {"http://10.0.0.5:9200": "gpu1"}, ["http://10.0.0.5:9200"],
                           [_worker("w-b", "http://10.0.0.5:9200", "http://10.0.0.5:8082")])
    assert groups == [
        {"targets": ["queen.lan:8443"], "labels": {"role": "queen", "__scheme__": "https"}},
        {"targets": ["10.0.0.5:9200"], "labels": {"role": "hive", "node": "gpu1", "__scheme__": "http"}},
        {"targets": ["10.0.0.5:8082"],
         "labels": {"role": "worker", "node": "gpu1", "model": "hf:org/repo:q4.gguf", "worker": "w-b",
                    "__scheme__": "http"}},
    ]


def test_a_hive_the_queen_has_no_node_name_for_is_named_by_its_host() -> None:
    groups = target_groups("http://127.0.0.1:8080", {}, ["http://gpu7.lan:9200"],
                           [_worker("w-a", "http://gpu7.lan:9200", "http://gpu7.lan:8081")])
    assert [group["labels"].get("node") for group in groups] == [None, "gpu7.lan", "gpu7.lan"]


def test_ipv6_addresses_keep_their_brackets_and_a_url_without_port_gets_the_scheme_default() -> None:
    groups = target_groups("https://queen.lan", {}, ["http://[fd00::5]:9200"], [])
    assert [group["targets"] for group in groups] == [["queen.lan:443"], ["[fd00::5]:9200"]]


def test_workers_are_listed_in_a_stable_order_and_a_hive_heard_twice_once() -> None:
    hive = "http://h:9200"
    groups = target_groups("http://q:8080", {}, [hive, hive],
                           [_worker("w-2", hive, "http://h:8082"), _worker("w-1", hive, "http://h:8081")])
    assert [group["labels"].get("worker") for group in groups] == [None, None, "w-1", "w-2"]
