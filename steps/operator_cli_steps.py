"""Steps for the operator's model commands through the queen: pull, show, stop, run, and the
client commands' environment (RBEE_QUEEN_URL, RBEE_TOKEN_FILE, a prompt on stdin)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import gguf
from behave import given, then, when

from rbee.testing.cluster import http_json, wait_until
from rbee.testing.http_client import request
from rbee.testing.tiny_model import build_tiny_gguf
from steps.cluster_steps import start_queen
from steps.common import TINY_SEED, hive_workers, queen_workers_list, tiny_ref
from steps.download_steps import hf_home

CLI_TIMEOUT_S = 120
SHOWN_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}<|assistant|>"
LONG_ANSWER_TOKENS = 6000


def _rbee(context, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> None:
    context.result = subprocess.run(
        [sys.executable, "-m", "rbee", *args], input=stdin, capture_output=True, text=True,
        timeout=CLI_TIMEOUT_S, check=False, env=env,
    )
    context.exit_code = context.result.returncode


def _queen_args(context) -> list[str]:
    return ["--queen", context.queen_url]


def _model(context) -> str:
    return getattr(context, "model_ref", None) or tiny_ref(context)


@given("a queen on free loopback ports that downloads from the file server")
def queen_with_file_server(context) -> None:
    context.env["HF_ENDPOINT"] = context.file_server.url
    context.env["HF_HOME"] = str(hf_home(context))
    start_queen(context)


@given("the tiny model has answered one request through the queen")
def tiny_answered(context) -> None:
    path = build_tiny_gguf(context.workdir / "shown.gguf", context_length=8192, chat_template=SHOWN_TEMPLATE)
    context.model_ref = f"file://{path}"
    answer = request("POST", f"{context.queen_url}/v1/chat/completions",
                     {"model": context.model_ref, "messages": [{"role": "user", "content": "Hi"}],
                      "max_tokens": 4}, timeout=CLI_TIMEOUT_S)
    assert answer.status == 200, (answer.status, answer.body)


@when('I run rbee pull "{ref}" against the queen for node "{node}"')
def pull_on_node(context, ref: str, node: str) -> None:
    _rbee(context, "pull", ref, "--node", node, *_queen_args(context))


@when('I run rbee pull "{ref}" against the queen')
def pull(context, ref: str) -> None:
    _rbee(context, "pull", ref, *_queen_args(context))


@then("stdout names the pulled file and its SHA-256")
def pulled_file(context) -> None:
    served = context.file_server.find("tiny.gguf")[1]
    assert served.sha256 in context.result.stdout, context.result.stdout
    assert str(hf_home(context) / "hub") in context.result.stdout, context.result.stdout


@when("I run rbee show for the tiny model against the queen")
def show_tiny(context) -> None:
    _rbee(context, "show", _model(context), *_queen_args(context))


@when('I run rbee show for model "{model}" against the queen')
def show_model(context, model: str) -> None:
    _rbee(context, "show", model, *_queen_args(context))


def _shown(context) -> dict[str, str]:
    rows = {}
    for line in context.result.stdout.splitlines():
        label, _, value = line.partition("  ")
        rows[label.strip()] = value.strip()
    return rows


@then("stdout shows the tiny model's architecture, parameter count, file type, context length and size")
def shows_facts(context) -> None:
    path = _model(context).removeprefix("file://")
    reader = gguf.GGUFReader(path)
    parameters = sum(int(tensor.n_elements) for tensor in reader.tensors)
    file_type = gguf.LlamaFileType(reader.fields["general.file_type"].contents()).name
    rows = _shown(context)
    assert rows["architecture"].startswith(reader.fields["general.architecture"].contents()), rows
    assert f"({parameters})" in rows["parameters"], rows
    assert rows["quantisation"] == file_type.removeprefix("ALL_").removeprefix("MOSTLY_"), rows
    assert rows["context"].startswith(f"{reader.fields['llama.context_length'].contents()} tokens"), rows
    assert f"({os.path.getsize(path)} bytes)" in rows["size"], rows


@then("stdout says whether the model has a chat template")
def shows_template(context) -> None:
    assert _shown(context)["chat template"].startswith(f"yes, {len(SHOWN_TEMPLATE)} characters"), \
        context.result.stdout


@then('stdout names the worker that runs it on node "{node}"')
def shows_worker(context, node: str) -> None:
    workers = hive_workers(context)
    assert len(workers) == 1, workers
    assert f"{node}, worker {workers[0]['worker_id']}" in _shown(context)["runs on"], context.result.stdout


def _queen_workers(context) -> list[dict]:
    return queen_workers_list(context)["workers"]


@when("I run rbee stop for the tiny model against the queen")
def stop_model(context) -> None:
    assert _queen_workers(context), "no worker to stop"
    _rbee(context, "stop", _model(context), *_queen_args(context))


@when("I run rbee stop for the tiny model's worker id against the queen")
def stop_worker(context) -> None:
    workers = _queen_workers(context)
    assert len(workers) == 1, workers
    _rbee(context, "stop", workers[0]["worker_id"], *_queen_args(context))


@when('I run rbee stop for "{target}" against the queen')
def stop_target(context, target: str) -> None:
    _rbee(context, "stop", target, *_queen_args(context))


@then("the queen lists no worker within {seconds:d} seconds")
def no_worker(context, seconds: int) -> None:
    assert wait_until(lambda: not _queen_workers(context), seconds), _queen_workers(context)
    assert not http_json(f"{context.hive_url}/v1/workers/list")[1]["workers"], "the hive still has workers"


def _run_args(context, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rbee", "run", tiny_ref(context), "--stats", "--seed", str(TINY_SEED),
            *_queen_args(context), *extra]


@when('I chat with the tiny model in rbee run, saying "{first}" and then "{second}"')
def chat_two_turns(context, first: str, second: str) -> None:
    context.result = subprocess.run(_run_args(context, "--max-tokens", "12"), input=f"{first}\n{second}\n",
                                    capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)
    context.exit_code = context.result.returncode


def _turn_reports(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


@then("rbee run printed two answers")
def two_answers(context) -> None:
    answers = [line for line in context.result.stdout.splitlines() if line.strip()]
    assert len(answers) == 2, context.result.stdout
    assert len(_turn_reports(context.result.stderr)) == 2, context.result.stderr


@then("the second turn's prompt was longer than the first turn's prompt and answer together")
def history_sent(context) -> None:
    first, second = _turn_reports(context.result.stderr)
    assert second["prompt_tokens"] > first["prompt_tokens"] + first["completion_tokens"], (first, second)


@when("I start rbee run with the tiny model and ask for a long answer")
def start_long_chat(context) -> None:
    context.cli = subprocess.Popen(
        _run_args(context, "--max-tokens", str(LONG_ANSWER_TOKENS)),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    context.add_cleanup(lambda: context.cli.poll() is None and context.cli.kill())
    context.cli.stdin.write(b"Tell me everything\n")
    context.cli.stdin.flush()


def _read_some(pipe, seconds: float) -> bytes:
    ready, _, _ = select.select([pipe], [], [], seconds)
    return os.read(pipe.fileno(), 4096) if ready else b""


@when("I press Ctrl+C in rbee run once tokens are printed")
def ctrl_c_chat(context) -> None:
    first = _read_some(context.cli.stdout, 60)
    assert first, "rbee run printed nothing"
    time.sleep(0.1)
    context.cli.send_signal(signal.SIGINT)


@then('rbee run still answers "{question}" and exits with code 0 at the end of its input')
def chat_goes_on(context, question: str) -> None:
    _, err = context.cli.communicate(input=f"{question}\n".encode(), timeout=CLI_TIMEOUT_S)
    reports = _turn_reports(err.decode())
    assert context.cli.returncode == 0, (context.cli.returncode, err.decode()[-2000:])
    assert [r["stopped"] for r in reports] == [True, False], reports
    assert "[answer stopped]" in err.decode(), err.decode()
    assert reports[1]["completion_tokens"] > 0, reports


@when("I run rbee status with only RBEE_QUEEN_URL and RBEE_TOKEN_FILE set")
def status_from_env(context) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RBEE_")}
    env |= {"RBEE_QUEEN_URL": context.queen_url, "RBEE_TOKEN_FILE": context.token_flags["--token-file"]}
    _rbee(context, "status", env=env)


@then('stdout shows node "{node}"')
def stdout_node(context, node: str) -> None:
    assert re.search(rf"\b{re.escape(node)}\b", context.result.stdout), context.result.stdout


def _infer_args(context, tokens: int) -> list[str]:
    return ["infer", "--model", tiny_ref(context), "--max-tokens", str(tokens), "--temperature", "0",
            *_queen_args(context)]


@when('I pipe "{prompt}" into rbee infer for the tiny model with {tokens:d} max tokens at temperature 0')
def infer_stdin(context, prompt: str, tokens: int) -> None:
    _rbee(context, *_infer_args(context, tokens), stdin=prompt)
    context.piped = context.result.stdout


@then('it printed the same answer as rbee infer given --prompt "{prompt}" with {tokens:d} max tokens'
      ' at temperature 0')
def same_answer(context, prompt: str, tokens: int) -> None:
    _rbee(context, *_infer_args(context, tokens), "--prompt", prompt)
    assert context.exit_code == 0, context.result.stderr
    assert context.piped.strip(), context.piped
    assert context.result.stdout == context.piped, (context.result.stdout, context.piped)


@then('it printed a different answer from rbee infer given --prompt "{prompt}" with {tokens:d} max tokens'
      ' at temperature 0')
def other_answer(context, prompt: str, tokens: int) -> None:
    _rbee(context, *_infer_args(context, tokens), "--prompt", prompt)
    assert context.exit_code == 0, context.result.stderr
    assert context.result.stdout != context.piped, context.result.stdout


@given('the alias "{alias}" has answered one request through the queen')
def alias_answered(context, alias: str) -> None:
    answer = request("POST", f"{context.queen_url}/v1/chat/completions",
                     {"model": alias, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
                     timeout=CLI_TIMEOUT_S)
    assert answer.status == 200, (answer.status, answer.body)


@then('stdout shows the alias "{alias}" of the tiny model')
def shows_alias(context, alias: str) -> None:
    rows = _shown(context)
    assert rows.get("alias") == alias, context.result.stdout
    assert rows["file"] == str(context.tiny_model), context.result.stdout
