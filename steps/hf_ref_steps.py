"""Steps for `hf:` refs against the loopback stand-in of the Hugging Face hub, and for
pre-signed `https://` links."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai
from behave import given, then, when

from rbee.testing.cluster import hive_daemon, http_json
from rbee.testing.file_server import sha256_of
from rbee.testing.tiny_model import build_split_tiny_gguf
from steps.cluster_steps import start_queen
from steps.common import hive_workers, started
from steps.download_steps import _final_event, _new_server, _server, _start_download, hf_home

CLI_TIMEOUT_S = 120
SPLIT_MAX_TENSORS = 6


def _all_hits(context) -> list:
    return [h for method in ("GET", "HEAD") for h in _server(context).hits(method=method)]


def _hub_env(context) -> None:
    context.env["RBEE_HF_ENDPOINT"] = _server(context).url
    context.env.setdefault("HF_HOME", str(hf_home(context)))


# -- the hub stand-in -----------------------------------------------------------------------


@given("a loopback stand-in of the Hugging Face hub")
def hub_standin(context) -> None:
    context.file_server = _new_server(context)


@given('the hub stand-in serves the tiny model as "{org}/{repo}" file "{filename}"')
def serves_tiny(context, org: str, repo: str, filename: str) -> None:
    _server(context).add_hf(org, repo, filename, context.tiny_model)


@given('the hub stand-in serves another model as "{org}/{repo}" file "{filename}"')
def serves_other(context, org: str, repo: str, filename: str) -> None:
    path = context.workdir / f"other-{filename}"
    path.write_bytes(b"GGUF" + os.urandom(64 * 1024))
    _server(context).add_hf(org, repo, filename, path)


@given('the hub stand-in serves the tiny model in {count:d} parts as "{org}/{repo}" files "{pattern}"')
def serves_split(context, count: int, org: str, repo: str, pattern: str) -> None:
    folder = context.workdir / "split"
    folder.mkdir()
    parts = build_split_tiny_gguf(folder / "tiny.gguf", SPLIT_MAX_TENSORS)
    assert len(parts) == count, parts
    for part in parts:
        _server(context).add_hf(org, repo, part.name, part)
    context.parts = [p.name for p in parts]
    assert pattern.replace("N", "1") == parts[0].name, (pattern, parts[0].name)


@given('the hub stand-in\'s branch main of "{org}/{repo}" then gets another "{filename}"')
def branch_moves(context, org: str, repo: str, filename: str) -> None:
    context.first_commit = _server(context).commit_of(org, repo)
    serves_other(context, org, repo, filename)
    assert _server(context).commit_of(org, repo) != context.first_commit


@given('huggingface_hub has downloaded "{filename}" of "{org}/{repo}" into the Hugging Face cache')
def hf_cli_download(context, filename: str, org: str, repo: str) -> None:
    """`hf download`, the command a user runs, with the scenario's HF_HOME and endpoint."""
    env = {**os.environ, "HF_HOME": str(hf_home(context)), "HF_ENDPOINT": _server(context).url,
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    command = [str(Path(sys.executable).with_name("hf")), "download", f"{org}/{repo}", filename]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=env,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    cached = list((hf_home(context) / "hub").glob(f"models--{org}--{repo}/snapshots/*/{filename}"))
    assert len(cached) == 1 and cached[0].is_file(), result.stdout
    context.hits_before = len(_all_hits(context))


@given('the Hugging Face token file holds "{token}"')
def token_file(context, token: str) -> None:
    home = hf_home(context)
    home.mkdir(parents=True, exist_ok=True)
    (home / "token").write_text(token + "\n")
    (home / "token").chmod(0o600)


@when("the hub stand-in stops")
def hub_stops(context) -> None:
    _server(context).stop()
    context.hits_before = len(_all_hits(context))


# -- daemons --------------------------------------------------------------------------------


@given("a queen on free loopback ports whose hive uses the hub stand-in")
def queen_with_hub(context) -> None:
    _hub_env(context)
    start_queen(context)


@given("a hive on free loopback ports whose HF_ENDPOINT is the hub stand-in")
def hive_with_hf_endpoint(context) -> None:
    context.env.pop("RBEE_HF_ENDPOINT", None)
    context.env["HF_ENDPOINT"] = _server(context).url
    context.env.setdefault("HF_HOME", str(hf_home(context)))
    context.hive = started(context, hive_daemon(context.workdir))
    context.hive_url = context.hive.base_url


# -- asking ---------------------------------------------------------------------------------


@when('the openai client asks twice for a chat completion of "{ref}"')
def chat_twice(context, ref: str) -> None:
    client = openai.OpenAI(base_url=f"{context.queen_url}/v1", api_key="x", max_retries=0, timeout=120)
    for _ in range(2):
        completion = client.chat.completions.create(
            model=ref, messages=[{"role": "user", "content": "Say something."}], max_tokens=4)
        assert completion.choices[0].message is not None


@when('I ask the hive to download "{filename}" of "{org}/{repo}" at its first commit')
def download_pinned(context, filename: str, org: str, repo: str) -> None:
    _start_download(context, f"hf:{org}/{repo}@{context.first_commit}:{filename}")


# -- outcomes -------------------------------------------------------------------------------


@then('the hive runs exactly {count:d} worker, named "{ref}"')
def runs_workers(context, count: int, ref: str) -> None:
    workers = hive_workers(context)
    assert [w["model"] for w in workers] == [ref] * count, workers


@then('the hub stand-in sent the bytes of "{filename}" {count:d} time')
@then('the hub stand-in sent the bytes of "{filename}" {count:d} times')
def bytes_sent(context, filename: str, count: int) -> None:
    path, _ = _server(context).find(filename)
    assert len(_server(context).hits(path)) == count, _server(context).hits()


@then("the hub stand-in sent the bytes of each of the {parts:d} parts {count:d} time")
def parts_sent(context, parts: int, count: int) -> None:
    assert len(context.parts) == parts
    for name in context.parts:
        bytes_sent(context, name, count)


@then('the progress stream ends with a "done" event holding the served "{filename}"')
def done_with_served(context, filename: str) -> None:
    final = _final_event(context)
    served = _server(context).find(filename)[1]
    assert final["type"] == "done" and final["sha256"] == served.sha256, final
    assert sha256_of(Path(final["path"])) == served.sha256


@then('the progress stream ends with a "done" event holding the tiny model')
def done_with_tiny(context) -> None:
    final = _final_event(context)
    expected = sha256_of(context.tiny_model)
    assert final["type"] == "done" and final["sha256"] == expected, final
    assert sha256_of(Path(final["path"])) == expected


@then('the worker loaded "{filename}" from the Hugging Face cache')
def loaded_from_cache(context, filename: str) -> None:
    path = Path(context.workers[0]["model_path"])
    assert path.name == filename and path.is_relative_to(hf_home(context) / "hub"), path
    assert sorted(p.name for p in path.parent.iterdir()) == context.parts, list(path.parent.iterdir())


@then("the hub stand-in got no request since the cache was filled")
def no_new_request(context) -> None:
    assert len(_all_hits(context)) == context.hits_before, _all_hits(context)[context.hits_before:]


@then("the hub stand-in got no request at all")
def no_request(context) -> None:
    assert not _all_hits(context), _all_hits(context)


@then('the TLS file server got the query "{query}"')
def got_query(context, query: str) -> None:
    assert any(h.query == query for h in context.tls_server.hits()), context.tls_server.hits()


def _tls_url(context, path: str) -> str:
    return context.tls_server.url.replace("127.0.0.1", "localhost") + path


@then('the hive\'s catalog lists the TLS file server\'s "{path}" without a query')
def catalog_without_query(context, path: str) -> None:
    status, body = http_json(f"{context.hive_url}/v1/models/list")
    assert status == 200 and [m["name"] for m in body["models"]] == [_tls_url(context, path)], body


@then('no answer or progress event of the hive contains "{text}"')
def nowhere(context, text: str) -> None:
    shown = [context.answer.body if isinstance(context.answer.body, str) else repr(context.answer.body),
             json.dumps(context.events), json.dumps(http_json(f"{context.hive_url}/v1/models/list")[1]),
             json.dumps(http_json(f"{context.hive_url}/v1/workers/list")[1])]
    assert not [s for s in shown if text in s], shown
