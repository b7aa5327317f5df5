"""Request bodies as pydantic models: what each refuses, how the refusal reads, what it never says."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import pytest

from rbee.cli.infer import _task_body
from rbee.common.errors import ApiError
from rbee.common.request_body import RequestBody
from rbee.common.validation import MAX_PROMPT_CHARS
from rbee.common.wire_requests import (
    ChatInference,
    HiveHeartbeat,
    ModelDownload,
    ModelRemove,
    NodeRemove,
    PromptInference,
    SamplingParams,
    SpawnRequest,
    TaskRequest,
    WorkerHeartbeat,
    WorkerReady,
    WorkerRef,
    parse_inference,
)
from rbee.queen.api import openapi
from rbee.queen.api.openai_requests import ChatCompletionRequest, CompletionRequest
from rbee.queen.nodes.node_spec_checks import NodeAdd

TASK = {"model": "default", "prompt": "Once"}
CHAT = {"model": "default", "messages": [{"role": "user", "content": "Hi"}]}
SPAWN = {"model": "default"}
BEAT = {"worker_id": "w-1", "state": "idle", "slots_free": 1}
HIVE_BEAT = {"hive_url": "http://127.0.0.1:9200", "workers": []}
REPORT = {"worker_id": "w-1", "model": "default", "url": "http://127.0.0.1:8081", "slots": 1, "state": "idle"}
SECRET = "s3cr3t-$(reboot)"

REFUSALS = [
    (TaskRequest, TASK, "max_tokens", 0),
    (TaskRequest, TASK, "max_tokens", 1_000_000),
    (TaskRequest, TASK, "temperature", 2.5),
    (TaskRequest, TASK, "top_p", 1.5),
    (TaskRequest, TASK, "top_p", -0.01),
    (TaskRequest, TASK, "seed", -2),
    (TaskRequest, TASK, "seed", 2**31),
    (TaskRequest, TASK, "stop", ["a", "b", "c", "d", "e"]),
    (TaskRequest, TASK, "stop", [SECRET * 5]),
    (TaskRequest, TASK, "ignore_eos", "yes"),
    (TaskRequest, TASK, "model", SECRET),
    (TaskRequest, TASK, "prompt", "bell \x07 " + SECRET),
    (TaskRequest, TASK, "node", SECRET),
    (TaskRequest, TASK, "backend", "tpu-" + SECRET),
    (CompletionRequest, TASK, "n", 17),
    (TaskRequest, TASK, "n", 2),
    (CompletionRequest, TASK, "prompt", [SECRET, SECRET]),
    (CompletionRequest, TASK, "stream", "true"),
    (CompletionRequest, TASK, "stream_options", SECRET),
    (ChatCompletionRequest, CHAT, "messages", []),
    (ChatCompletionRequest, CHAT, "messages",
     [{"role": "user", "content": "x" * (MAX_PROMPT_CHARS // 2 + 1)}] * 2),
    (ChatCompletionRequest, CHAT, "messages.role", [{"role": SECRET, "content": "Hi"}]),
    (ChatCompletionRequest, CHAT, "messages.content", [{"role": "user", "content": "\x1b[31m" + SECRET}]),
    (PromptInference, {"prompt": "Hi"}, "task_id", "../../" + SECRET),
    (SpawnRequest, SPAWN, "slots", 0),
    (SpawnRequest, SPAWN, "slots", 257),
    (SpawnRequest, SPAWN, "device", 64),
    (SpawnRequest, SPAWN, "backend", SECRET),
    (SpawnRequest, SPAWN, "model", "file:///tmp/../" + SECRET),
    (WorkerReady, {"worker_id": "w-1"}, "port", 65536),
    (WorkerHeartbeat, BEAT, "slots_free", 257),
    (WorkerHeartbeat, BEAT, "state", SECRET),
    (WorkerRef, {}, "worker_id", SECRET),
    (ModelDownload, {"model": "hf:org/repo:m.gguf"}, "sha256", SECRET),
    (ModelRemove, {}, "name", SECRET),
    (HiveHeartbeat, HIVE_BEAT, "hive_url", "ftp://" + SECRET),
    (HiveHeartbeat, HIVE_BEAT, "workers.slots", [{**REPORT, "slots": SECRET}]),
    (HiveHeartbeat, HIVE_BEAT, "workers.state", [{**REPORT, "state": SECRET}]),
    (NodeRemove, {}, "name", SECRET),
]


def _refusal(model: type[RequestBody], body: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        model.parse(body)
    return caught.value


def _body_with(base: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    return {**base, field.partition(".")[0]: value}


@pytest.mark.parametrize(("model", "base", "field", "value"), REFUSALS,
                         ids=[f"{model.__name__}.{field}" for model, _, field, _ in REFUSALS])
def test_each_model_refuses_a_bad_field_with_400_invalid_request_naming_the_field(model, base, field, value):
    error = _refusal(model, _body_with(base, field, value))
    assert (error.status, error.code, error.details) == (400, "INVALID_REQUEST", {"field": field})
    assert f"'{field}'" in error.message


@pytest.mark.parametrize(("model", "base", "field", "value"), REFUSALS,
                         ids=[f"{model.__name__}.{field}" for model, _, field, _ in REFUSALS])
def test_each_model_refuses_a_bad_field_without_echoing_the_value(model, base, field, value):
    error = _refusal(model, _body_with(base, field, value))
    text = json.dumps(error.body("c"))
    assert SECRET not in error.message and "s3cr3t" not in text
    if len(json.dumps(value)) > 3:
        assert json.dumps(value) not in error.message


def test_a_node_body_is_refused_naming_each_bad_field(tmp_path: Path):
    body = {"name": "gpu-1", "ssh_host": "h", "ssh_user": "Root " + SECRET, "ssh_key": str(tmp_path / "none"),
            "ssh_port": 0, "install_path": "opt/" + SECRET}
    error = _refusal(NodeAdd, body)
    for field in ("ssh_port", "ssh_user", "ssh_key", "install_path"):
        assert f"'{field}'" in error.message
    assert "s3cr3t" not in error.message and "none" not in error.message


def test_a_refusal_lists_every_broken_field_and_details_name_the_first():
    error = _refusal(TaskRequest, {**TASK, "max_tokens": 0, "temperature": 9})
    assert error.message == "'max_tokens' must be at least 1; 'temperature' must be at most 2.0"
    assert error.details == {"field": "max_tokens"}


def test_a_missing_required_field_is_named_as_required():
    assert _refusal(TaskRequest, {"model": "default"}).message == "'prompt' is required"


def test_a_refusal_does_not_chain_the_pydantic_error_that_holds_the_input():
    error = _refusal(TaskRequest, {**TASK, "model": SECRET})
    assert error.__cause__ is None and error.__suppress_context__


@pytest.mark.parametrize("field", ["max_tokens", "temperature", "top_p", "stop"])
def test_null_on_a_sampling_field_means_its_default(field):
    assert getattr(SamplingParams.parse({field: None}), field) == SamplingParams.model_fields[field].default


@pytest.mark.parametrize(("field", "value"), [("temperature", math.nan), ("top_p", math.inf)])
def test_nan_and_infinity_are_refused_as_not_finite(field, value):
    assert "finite" in _refusal(SamplingParams, {field: value}).message


def test_integers_are_numbers_for_temperature_and_top_p():
    params = SamplingParams.parse({"temperature": 1, "top_p": 0})
    assert (params.temperature, params.top_p) == (1.0, 0.0)


def test_booleans_are_neither_integers_nor_numbers():
    assert _refusal(SamplingParams, {"max_tokens": True}).message == "'max_tokens' must be an integer"
    assert _refusal(SamplingParams, {"top_p": False}).message == "'top_p' must be a number"


def test_one_stop_string_stands_for_a_list_of_one():
    assert SamplingParams.parse({"stop": "\n\n"}).stop == ("\n\n",)


@pytest.mark.parametrize(("model", "base"), [(TaskRequest, TASK), (CompletionRequest, TASK),
                                             (ChatCompletionRequest, CHAT)])
def test_unknown_fields_are_ignored(model, base):
    parsed = model.parse({**base, "logit_bias": {"50256": -100}, "x_future_field": {"a": 1}})
    assert "x_future_field" not in parsed.model_dump()


def test_a_completion_prompt_given_as_a_list_of_one_is_that_prompt():
    assert CompletionRequest.parse({**TASK, "prompt": ["Once"]}).prompt == "Once"


def test_max_completion_tokens_stands_for_an_absent_max_tokens():
    assert ChatCompletionRequest.parse({**CHAT, "max_completion_tokens": 9}).max_tokens == 9
    assert ChatCompletionRequest.parse({**CHAT, "max_tokens": 5, "max_completion_tokens": 9}).max_tokens == 5


def test_include_usage_is_read_from_the_stream_options():
    assert CompletionRequest.parse({**TASK, "stream_options": {"include_usage": True}}).include_usage
    assert not CompletionRequest.parse({**TASK, "stream_options": None}).include_usage


def test_the_worker_gets_the_prompt_and_every_sampling_field_of_a_task():
    body = TaskRequest.parse({**TASK, "stop": "x", "node": "GPU-1", "backend": "cuda"}).worker_body()
    assert body == {"prompt": "Once", "max_tokens": None, "temperature": 0.7, "top_p": 0.95, "top_k": 40,
                    "min_p": 0.05, "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
                    "logit_bias": {}, "seed": None, "stop": ["x"], "ignore_eos": False, "n_probs": None,
                    "response_format": None}


def test_a_node_name_in_a_task_is_lowered():
    assert TaskRequest.parse({**TASK, "node": "GPU-1"}).node == "gpu-1"


def test_a_worker_body_with_messages_is_a_chat_and_without_is_a_prompt():
    assert isinstance(parse_inference({"messages": CHAT["messages"]}), ChatInference)
    assert isinstance(parse_inference({"prompt": "Hi"}), PromptInference)


@pytest.mark.parametrize("given", [{}, {"task_id": None}, {"task_id": ""}])
def test_a_worker_body_without_a_task_id_gets_a_fresh_one(given):
    first, second = (PromptInference.parse({"prompt": "Hi", **given}) for _ in range(2))
    assert first.task_id and first.task_id != second.task_id


def test_a_hive_heartbeat_fills_in_the_defaults_of_its_worker_reports():
    report = HiveHeartbeat.parse({**HIVE_BEAT, "workers": [REPORT]}).workers[0].model_dump()
    assert report == {**REPORT, "restarts": 0, "backend": "cpu", "device": None, "embedding": False,
                      "alias": None}


def test_a_digest_is_lowered():
    assert ModelDownload.parse({"model": "hf:o/r:m.gguf", "sha256": "AB" * 32}).sha256 == "ab" * 32


def _infer_args(**changes: Any) -> argparse.Namespace:
    given = {"model": "default", "prompt": "Once", "max_tokens": None, "temperature": None, "seed": None,
             "ignore_eos": False, "node": None, "backend": "cpu", **changes}
    return argparse.Namespace(**given)


def test_rbee_infer_refuses_an_out_of_range_flag_naming_the_flag():
    with pytest.raises(ApiError) as caught:
        _task_body(_infer_args(max_tokens=0, temperature=3.0))
    assert caught.value.message == "'--max-tokens' must be at least 1; '--temperature' must be at most 2.0"


def test_rbee_infer_sends_the_defaults_of_the_flags_it_was_not_given():
    body = _task_body(_infer_args(seed=7))
    assert (body["temperature"], body["seed"]) == (0.7, 7) and "node" not in body and "max_tokens" not in body


def test_every_request_body_in_the_openapi_document_refers_to_a_generated_model_schema():
    document = openapi.document()
    names = {model.__name__ for model in openapi.REQUEST_MODELS}
    bodies = [operation["requestBody"]["content"]["application/json"]["schema"]
              for methods in document["paths"].values() for operation in methods.values()
              if "requestBody" in operation]
    assert sorted(body["$ref"].rsplit("/", 1)[1] for body in bodies) == sorted(names)
    assert names <= set(document["components"]["schemas"])


@pytest.mark.parametrize(("field", "value"), [("slots", 1), ("slots", 256), ("device", 0), ("device", 63)])
def test_a_spawn_request_accepts_the_bounds_of_its_slots_and_device(field, value):
    assert getattr(SpawnRequest.parse({**SPAWN, field: value}), field) == value
