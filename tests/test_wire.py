"""The typed wire messages: every event's JSON form, parsing received objects back, the enums."""

import json
from dataclasses import replace

import pytest

from rbee.common import deadlines, wire

TASK_EVENTS = [
    wire.Started("t1", "w-1", 0, 3, None),
    wire.Started("t1", "w-1", 1, 3, "1700000000000", node="localhost", model="default"),
    wire.Started("t1", "w-1", 0, 3, None, node=None, model="default"),
    wire.Token("Once", 0),
    wire.End(12, wire.StopReason.EOS, 150.5, 79.73),
    wire.End(3, wire.StopReason.STOP, 9.0, 1.0, prompt_tokens_cached=40),
    wire.Error("GENERATION_FAILED", "generation failed"),
]
LOADING_EVENTS = [
    wire.LoadingProgress(wire.WorkerState.LOADING, 0.5),
    wire.LoadingReady(),
    wire.LoadingFailed(),
]
DOWNLOAD_EVENTS = [
    wire.DownloadProgress("d1", "hf:org/repo", "downloading", 10, 100, 1, bytes_per_s=5),
    wire.DownloadProgress("d1", "hf:org/repo", "retrying", 10, None, 2, last_error="HTTP 503"),
    wire.DownloadDone("d1", "hf:org/repo", "done", 100, 100, 1, path="/m/a.gguf", sha256="ab" * 32),
    wire.DownloadFailed("d1", "hf:org/repo", 507, "INSUFFICIENT_DISK", "no room", {"free_bytes": 1}),
]


def _through_json(event: wire.WireEvent) -> dict:
    return json.loads(event.encode())


@pytest.mark.parametrize("event", TASK_EVENTS, ids=repr)
def test_every_token_stream_event_comes_back_the_same_from_its_json(event):
    assert wire.parse_event(_through_json(event)) == event


@pytest.mark.parametrize("event", LOADING_EVENTS, ids=repr)
def test_every_loading_event_comes_back_the_same_from_its_json(event):
    assert wire.parse_loading_event(_through_json(event)) == event


@pytest.mark.parametrize("event", DOWNLOAD_EVENTS, ids=repr)
def test_every_download_event_comes_back_the_same_from_its_json(event):
    assert wire.parse_download_event(_through_json(event)) == event


def test_events_encode_to_the_compact_json_of_the_wire_contract():
    assert wire.Token("Once", 0).encode() == b'{"type":"token","token":"Once","index":0}'
    assert wire.End(1, wire.StopReason.MAX_TOKENS, 2.0, 0.5).encode() == (
        b'{"type":"end","tokens_out":1,"stop_reason":"max_tokens","duration_ms":2.0,"tokens_per_second":0.5}'
    )
    assert wire.LoadingReady().encode() == b'{"type":"ready"}'


def test_a_worker_started_event_carries_no_queen_fields():
    assert "node" not in wire.Started("t1", "w-1", 0, 3, None).to_wire()


def test_the_queen_sends_node_model_and_placement_together_even_without_a_node():
    placed = wire.Started("t1", "w-1", 0, 3, None, node=None, model="default", backend="cpu").to_wire()
    assert list(placed)[-4:] == ["node", "model", "backend", "device"]
    assert placed["node"] is None and placed["device"] is None and placed["backend"] == "cpu"


def test_a_started_event_names_the_gpu_it_was_placed_on_both_ways():
    event = wire.Started("t1", "w-1", 0, 3, None, "gpu-node", "m", "cuda", 1)
    assert wire.Started.from_wire(event.to_wire()) == event


def test_a_download_status_sends_only_the_optional_keys_it_has():
    wire_form = DOWNLOAD_EVENTS[0].to_wire()
    assert "bytes_per_s" in wire_form
    assert not {"last_error", "path", "sha256"} & set(wire_form)


def test_a_received_event_is_encoded_as_the_bytes_it_arrived_as():
    raw = b'{"token": "Once", "type": "token", "index": 0}'
    assert wire.parse_event(json.loads(raw), raw).encode() == raw


def test_a_changed_copy_of_a_received_event_is_encoded_afresh():
    raw = b'{"type": "started", "task_id": "t1", "worker_id": "w-1", "slot": 0, "prompt_tokens": 3}'
    received = wire.parse_event(json.loads(raw), raw)
    assert replace(received, model="default").encode() != raw


def test_keys_an_event_does_not_know_are_ignored():
    assert wire.parse_event({"type": "token", "token": "a", "index": 0, "extra": 1}) == wire.Token("a", 0)


def test_an_unknown_event_type_is_a_clear_error():
    with pytest.raises(wire.WireError, match="unknown event type 'progress'"):
        wire.parse_event({"type": "progress"})


def test_an_object_without_a_type_is_a_clear_error():
    with pytest.raises(wire.WireError, match="unknown event type None"):
        wire.parse_event({"token": "a"})


def test_an_event_missing_a_field_is_a_clear_error():
    with pytest.raises(wire.WireError, match="malformed end event"):
        wire.parse_event({"type": "end", "tokens_out": 1, "duration_ms": 1.0})


def test_an_unknown_stop_reason_is_a_clear_error():
    with pytest.raises(wire.WireError, match="malformed end event"):
        wire.parse_event({"type": "end", "tokens_out": 1, "stop_reason": "bored", "duration_ms": 1.0})


def test_a_wire_error_is_a_value_error_so_relays_treat_it_as_a_broken_stream():
    assert issubclass(wire.WireError, ValueError)


def test_stop_reasons_are_the_ones_design_md_names():
    assert {reason.value for reason in wire.StopReason} == {"max_tokens", "eos", "stop", "cancelled", "error"}


def test_worker_states_are_design_md_lifecycle_plus_failed():
    design = {"loading", "idle", "busy", "draining", "stopped", "crashed", "unhealthy"}
    assert {state.value for state in wire.WorkerState} == design | {"failed"}


def test_enum_values_travel_as_plain_json_strings():
    assert json.dumps([wire.WorkerState.IDLE, wire.StopReason.EOS]) == '["idle", "eos"]'


def test_a_passed_deadline_reads_the_same_as_an_event_and_as_a_response():
    event, response = wire.deadline_exceeded(), deadlines.expired()
    assert (response.status, response.code, response.message) == (504, event.code, event.message)


def test_an_error_event_becomes_the_same_error_response():
    error = wire.worker_crashed().to_api_error(503, {"attempts": 3})
    assert (error.status, error.code, error.details) == (503, "WORKER_CRASHED", {"attempts": 3})


def test_a_failed_download_becomes_the_error_the_hive_answered():
    error = DOWNLOAD_EVENTS[-1].to_api_error()
    assert (error.status, error.code, error.details) == (507, "INSUFFICIENT_DISK", {"free_bytes": 1})
