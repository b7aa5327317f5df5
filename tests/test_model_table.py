"""The queen's model table: parsing and validation of `models:`, and what an alias gives its
spawns, requests and `/v1/models` entry."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rbee.common.audit import no_audit
from rbee.common.config import ConfigError, ConfigSource
from rbee.common.config_reload import ConfigReloader, LiveTimings
from rbee.common.config_schema import timings_of
from rbee.common.model_table import ModelSpec
from rbee.common.wire_requests import SpawnRequest, WorkerTuning
from rbee.queen.model_table import Fallbacks, LiveModelTable
from rbee.queen.routing.backend_policy import BackendPolicy

TINY = "file:///models/tiny.gguf"


def _file(tmp_path: Path, models: str) -> Path:
    path = tmp_path / "queen.yaml"
    path.write_text("queen:\n  port: 8500\n  models:\n" + models)
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        ConfigSource("queen", path).resolve()
    return [str(problem) for problem in caught.value.problems]


def test_a_table_with_every_setting_loads_into_the_queen_configuration(tmp_path):
    path = _file(tmp_path, f"""    chat:
      ref: {TINY}
      ctx_size: 4096
      slots: 3
      backend: cpu
      gpu_layers: 10
      chat_template: "{{{{ messages[0].content }}}}"
      sampling: {{temperature: 0.2, top_p: 0.9, top_k: 20, min_p: 0.1, repeat_penalty: 1.1, seed: 7,
                  max_tokens: 64, stop: ["END"]}}
      max_replicas: 2
      keep_alive_s: 30
      owned_by: lab
""")
    spec = ConfigSource("queen", path).resolve().models["chat"]
    assert (spec.ref, spec.ctx_size, spec.slots, spec.backend, spec.gpu_layers) == (TINY, 4096, 3, "cpu", 10)
    assert (spec.max_replicas, spec.keep_alive_s, spec.owned_by) == (2, 30.0, "lab")
    assert spec.chat_template == "{{ messages[0].content }}"
    assert spec.sampling["seed"] == 7 and spec.sampling["stop"] == ["END"]


def test_an_unknown_key_of_an_alias_is_named_with_its_dotted_path_its_line_and_a_suggestion(tmp_path):
    path = _file(tmp_path, f"    chat:\n      ref: {TINY}\n      ctx_sise: 10\n")
    expected = f"{path}:6: queen.models.chat.ctx_sise: unknown key (did you mean `ctx_size`?)"
    assert _problems(path) == [expected]


def test_every_bad_value_of_every_alias_is_listed_with_its_key(tmp_path):
    path = _file(tmp_path, f"""    a:
      ref: {TINY}
      slots: 0
      backend: tpu
    b:
      ctx_size: 10
    "not an alias":
      ref: {TINY}
    c:
      ref: "../etc/passwd"
      keep_alive_s: -1
""")
    keys = sorted(problem.split(": ")[1] for problem in _problems(path))
    assert keys == ["queen.models.a.backend", "queen.models.a.slots", "queen.models.b.ref",
                    "queen.models.c.keep_alive_s", "queen.models.c.ref", "queen.models.not an alias"]


@pytest.mark.parametrize(("sampling", "named"), [
    ({"temperature": 3}, "`temperature` must be at most 2"),
    ({"top_p": 1.5}, "`top_p` must be at most 1"),
    ({"max_tokens": 0}, "`max_tokens` must be at least 1"),
    ({"seed": "x"}, "`seed` must be an integer"),
    ({"logit_bias": {}}, "unknown field `logit_bias`"),
])
def test_a_bad_default_sampling_value_is_refused_by_the_rule_of_its_request_field(sampling, named):
    with pytest.raises(ValueError, match="sampling") as caught:
        ModelSpec.model_validate({"ref": TINY, "sampling": sampling})
    assert named in str(caught.value)


def test_the_table_can_come_as_json_in_the_environment(tmp_path):
    table = {"chat": {"ref": TINY, "slots": 2}}
    config = ConfigSource("queen", environ={"RBEE_QUEEN_MODELS": json.dumps(table)}).resolve()
    assert config.models["chat"].slots == 2


def test_sighup_applies_an_edited_table_and_keeps_the_old_one_when_the_edit_is_bad(tmp_path):
    path = _file(tmp_path, f"    chat:\n      ref: {TINY}\n")
    source = ConfigSource("queen", path)
    config = source.resolve()
    table = LiveModelTable(config.models)
    reload = ConfigReloader(source, config, LiveTimings(timings_of(config)), no_audit, {},
                            applied=lambda fresh: table.replace(fresh.models))
    _file(tmp_path, f"    chat:\n      ref: {TINY}\n    two:\n      ref: {TINY}\n      slots: 4\n")
    reload()
    assert sorted(table.aliases()) == ["chat", "two"]
    _file(tmp_path, f"    chat:\n      ref: {TINY}\n      slots: 0\n")
    reload()
    assert sorted(table.aliases()) == ["chat", "two"]


def _table(**settings) -> LiveModelTable:
    return LiveModelTable({"chat": ModelSpec(ref=TINY, **settings)}, Fallbacks(2048, 2, 1))


def test_an_alias_spawns_its_ref_with_its_settings_and_other_names_spawn_as_themselves():
    table = _table(slots=3, ctx_size=1024, gpu_layers=5, chat_template="T", keep_alive_s=9)
    plan = table.spawn_plan("chat", 2)
    assert (plan.ref, plan.slots, plan.alias) == (TINY, 3, "chat")
    assert plan.tuning == WorkerTuning(ctx_size=1024, gpu_layers=5, chat_template="T", keep_alive_s=9)
    other = _table().spawn_plan("default", 2)
    assert (other.ref, other.slots, other.alias, other.tuning) == ("default", 2, None, WorkerTuning())


def test_the_spawn_plan_travels_as_a_valid_hive_spawn_request():
    plan = _table(ctx_size=1024, keep_alive_s=9).spawn_plan("chat", 2)
    body = SpawnRequest(model=plan.ref, slots=plan.slots, alias=plan.alias, tuning=plan.tuning)
    assert SpawnRequest.parse(body.model_dump(mode="json")) == body


def test_defaults_fill_only_the_fields_a_request_omits_or_sends_as_null():
    table = _table(sampling={"temperature": 0.1, "max_tokens": 5, "seed": 3})
    body = table.with_defaults("chat", {"model": "chat", "temperature": 0.9, "seed": None})
    assert body == {"model": "chat", "temperature": 0.9, "seed": 3, "max_tokens": 5}


def test_max_completion_tokens_counts_as_the_requests_own_max_tokens():
    table = _table(sampling={"max_tokens": 5})
    body = table.with_defaults("chat", {"model": "chat", "max_completion_tokens": 9})
    assert "max_tokens" not in body


def test_a_name_that_is_no_alias_gets_no_defaults():
    table = _table(sampling={"max_tokens": 5})
    assert table.with_defaults(TINY, {"model": TINY}) == {"model": TINY}
    assert table.with_defaults(["chat"], {"model": ["chat"]}) == {"model": ["chat"]}


def test_max_replicas_and_backend_come_from_the_alias_else_the_cluster():
    table = _table(max_replicas=3, backend="cuda")
    assert table.max_replicas("chat", 1) == 3 and table.max_replicas(TINY, 1) == 1
    policy = BackendPolicy("cpu", {TINY: "auto"}, table)
    assert policy.resolve("chat") == "cuda" and policy.resolve("chat", "cpu") == "cpu"
    assert policy.resolve(TINY) == "auto"


def test_only_aliases_whose_model_can_run_are_runnable():
    table = LiveModelTable({name: ModelSpec(ref=ref) for name, ref in [
        ("local", TINY), ("hub", "hf:org/repo"), ("web", "https://example.com/m.gguf"),
        ("demo", "default"), ("named", "my-model")]})
    assert sorted(table.runnable(set())) == ["hub", "local", "web"]
    assert sorted(table.runnable({"default", "my-model"})) == ["demo", "hub", "local", "named", "web"]


def test_an_alias_is_described_with_its_settings_and_the_fallbacks_it_leaves_to_the_cluster():
    described = _table(slots=3, sampling={"temperature": 0.3}).describe("chat", "auto", 600.0)
    assert (described["id"], described["object"], described["owned_by"]) == ("chat", "model", "rbee")
    assert described["context_length"] == 2048
    assert described["rbee"] == {"ref": TINY, "ctx_size": 2048, "slots": 3, "backend": "auto",
                                 "gpu_layers": None, "max_replicas": 1, "keep_alive_s": 600.0,
                                 "chat_template": False, "sampling": {"temperature": 0.3}}


def test_a_reload_log_names_the_aliases_never_their_refs(tmp_path, caplog):
    path = _file(tmp_path, f"    chat:\n      ref: {TINY}\n")
    source = ConfigSource("queen", path)
    config = source.resolve()
    reload = ConfigReloader(source, config, LiveTimings(timings_of(config)), no_audit, {})
    _file(tmp_path, "    chat:\n      ref: https://bucket.example.com/private-model.gguf\n")
    with caplog.at_level(logging.INFO):
        reload()
    assert "models ['chat'] -> ['chat']" in caplog.text and "private-model" not in caplog.text
