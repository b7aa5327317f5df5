"""The backend policy: a request's own `backend`, else the model's `model_backends` entry, else the
queen's `backend`; `auto` is served by a worker of any backend, a named backend only by its own."""

import json

import pytest

from rbee.common.auth import Keyring
from rbee.common.config import ConfigSource
from rbee.common.errors import ApiError
from rbee.common.tunables import GpuLimits
from rbee.queen.api.openai_format import parse_request
from rbee.queen.routing.backend_policy import BackendPolicy, serves
from rbee.queen.settings import QueenSettings

MODEL = "file:///models/tiny.gguf"


def test_a_request_that_names_a_backend_gets_it_whatever_the_configuration():
    policy = BackendPolicy("cpu", {MODEL: "cpu"})
    assert policy.resolve(MODEL, "cuda") == "cuda"
    assert policy.resolve(MODEL, "auto") == "auto"


def test_a_request_without_a_backend_gets_its_models_entry_before_the_queens_default():
    policy = BackendPolicy("cpu", {MODEL: "cuda"})
    assert policy.resolve(MODEL) == "cuda"
    assert policy.resolve("default") == "cpu"


def test_without_configuration_every_request_is_auto():
    assert BackendPolicy().resolve("default") == "auto"


@pytest.mark.parametrize(("policy", "worker", "expected"), [
    ("auto", "cpu", True), ("auto", "cuda", True), ("cuda", "cuda", True),
    ("cuda", "cpu", False), ("cpu", "cuda", False), ("metal", "cpu", False),
])
def test_auto_is_served_by_any_worker_and_a_named_backend_only_by_its_own(policy, worker, expected):
    assert serves(policy, worker) is expected


def test_the_queen_settings_carry_the_configured_policy_and_replica_limits():
    flags = {"backend": "cpu", "model_backends": json.dumps({MODEL: "cuda"})}
    environ = {"RBEE_GPU_MAX_REPLICAS": "3", "RBEE_GPU_REPLICA_AFTER_WAIT_S": "0.5"}
    config = ConfigSource("queen", None, flags, environ).resolve()
    settings = QueenSettings.from_config(config, Keyring("queen", {"queen": None}))
    assert settings.backend_policy == BackendPolicy("cpu", {MODEL: "cuda"})
    assert settings.gpu == GpuLimits(max_replicas=3, replica_after_wait_s=0.5)


def test_an_openai_request_may_name_a_backend_and_otherwise_names_none():
    chat = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}
    assert parse_request(chat, chat=True).backend is None
    assert parse_request({**chat, "backend": "cpu"}, chat=True).backend == "cpu"
    completion = {"model": "default", "prompt": "hi", "backend": "cuda"}
    assert parse_request(completion, chat=False).backend == "cuda"


def test_an_openai_request_naming_an_unknown_backend_is_400_invalid_request():
    with pytest.raises(ApiError) as err:
        parse_request({"model": "default", "prompt": "hi", "backend": "tpu"}, chat=False)
    assert (err.value.status, err.value.code) == (400, "INVALID_REQUEST")
    assert err.value.details["field"] == "backend"
