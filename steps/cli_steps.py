"""Steps running the `rbee` command as an operator would."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from behave import then, when

from rbee.common.ports import free_port
from rbee.testing.cluster import http_json
from steps.common import LONG_TASK_TOKENS, TINY_SEED, tiny_ref


def _run(context, *args: str) -> None:
    context.result = subprocess.run(
        [sys.executable, "-m", "rbee", "infer", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    context.exit_code = context.result.returncode


@when('I run rbee infer for the tiny model with prompt "{prompt}" and {n:d} max tokens')
def infer_tiny(context, prompt: str, n: int) -> None:
    _run(context, "--queen", context.queen_url, "--model", tiny_ref(context),
         "--prompt", prompt, "--max-tokens", str(n), "--seed", str(TINY_SEED))


@when('I run rbee infer for model "{model}" with prompt "{prompt}" and {n:d} max tokens')
def infer_model_prompt(context, model: str, prompt: str, n: int) -> None:
    _run(context, "--queen", context.queen_url, "--model", model, "--prompt", prompt,
         "--max-tokens", str(n), "--temperature", "0")


@when('I run rbee infer for model "{model}"')
def infer_model(context, model: str) -> None:
    _run(context, "--queen", context.queen_url, "--model", model, "--prompt", "Hi")


@when("I run rbee infer against a queen that is not running")
def infer_no_queen(context) -> None:
    _run(context, "--queen", f"http://127.0.0.1:{free_port()}", "--prompt", "Hi")


@when("I start rbee infer for a long answer from the tiny model")
def start_long_infer(context) -> None:
    context.cli = subprocess.Popen(
        [sys.executable, "-m", "rbee", "infer", "--queen", context.queen_url,
         "--model", tiny_ref(context), "--prompt", "Once",
         "--max-tokens", str(LONG_TASK_TOKENS), "--ignore-eos"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@when("I press Ctrl+C once tokens are printed")
def press_ctrl_c(context) -> None:
    first = context.cli.stdout.read(1)
    assert first, context.cli.stderr.read()
    time.sleep(0.1)
    context.cli.send_signal(signal.SIGINT)
    try:
        _, err = context.cli.communicate(timeout=10)
    finally:
        if context.cli.poll() is None:
            context.cli.kill()
    context.exit_code = context.cli.returncode
    context.result = subprocess.CompletedProcess(context.cli.args, context.exit_code, "", err.decode())


@then("the command exits with code {code:d}")
def exit_code(context, code: int) -> None:
    assert context.exit_code == code, (context.exit_code, context.result.stderr[-2000:])


@then("it printed text on stdout")
def printed_text(context) -> None:
    assert context.result.stdout.strip(), context.result


@then("it printed at least {count:d} words on stdout")
def printed_words(context, count: int) -> None:
    words = [w for w in context.result.stdout.split() if any(ch.isalpha() for ch in w)]
    assert len(words) >= count, context.result.stdout
    print(f"default model answered: {context.result.stdout.strip()!r}")


@then('stderr names the error code "{code}"')
def stderr_code(context, code: str) -> None:
    assert code in context.result.stderr, context.result.stderr


@then("stderr says the queen cannot be reached")
def stderr_unreachable(context) -> None:
    assert "cannot reach the queen" in context.result.stderr, context.result.stderr
    assert "Traceback" not in context.result.stderr


@then('the hive\'s catalog lists "{name}" with a file of more than {size:d} MB')
def catalog_lists(context, name: str, size: int) -> None:
    status, body = http_json(f"{context.hive_url}/v1/models/list")
    entries = {m["name"]: m for m in body["models"]}
    assert status == 200 and name in entries, body
    assert entries[name]["size_bytes"] > size * 1_000_000, entries[name]
