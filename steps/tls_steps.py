"""Steps of the TLS scenarios: a CA and certificates made by trustme, a queen serving HTTPS."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import trustme
from behave import given, then, when

from rbee.testing import raw_http
from rbee.testing.cluster import queen_daemon, wait_until
from steps.auth_steps import _task, _token_path
from steps.cluster_steps import LONG_CONTEXT
from steps.common import TINY_SEED, started, tiny_ref


def _tls_dir(context) -> Path:
    return context.workdir / "tls"


def _issue(context) -> str:
    """A new certificate for 127.0.0.1 from the test CA, written over the cert and key files;
    its SHA-256 fingerprint."""
    issued = context.ca.issue_cert("127.0.0.1", "localhost")
    issued.cert_chain_pems[0].write_to_path(str(context.tls_cert))
    issued.private_key_pem.write_to_path(str(context.tls_key))
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(issued.cert_chain_pems[0].bytes().decode())).hexdigest()


def _context(context) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(context.ca_file))


@given("a test CA with a certificate for 127.0.0.1 in files")
def test_ca(context) -> None:
    folder = _tls_dir(context)
    folder.mkdir(parents=True)
    context.ca = trustme.CA()
    context.ca_file = folder / "ca.pem"
    context.ca.cert_pem.write_to_path(str(context.ca_file))
    context.tls_cert, context.tls_key = folder / "queen.crt", folder / "queen.key"
    context.first_fingerprint = _issue(context)
    context.env["SSL_CERT_FILE"] = str(context.ca_file)


def _https_probe(context):
    def probe(url: str) -> tuple[int, dict]:
        parts = urlsplit(url)
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=2, context=_context(context))
        try:
            conn.request("GET", parts.path)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        except (OSError, ValueError):
            return 0, {}
        finally:
            conn.close()

    return probe


def _start(context, *flags: str, tls: bool = True) -> None:
    token_flags = [item for pair in context.token_flags.items() for item in pair]
    tls_flags = ["--tls-cert", str(context.tls_cert), "--tls-key", str(context.tls_key)] if tls else []
    daemon = queen_daemon(context.workdir, extra=[*LONG_CONTEXT, *token_flags, *tls_flags, *flags])
    if tls:
        daemon.base_url = daemon.base_url.replace("http://", "https://")
        daemon.probe = _https_probe(context)
    context.queen = started(context, daemon)
    context.queen_url = daemon.base_url
    context.hive_url = daemon.hive_url


@given("a queen with those tokens and that certificate on free loopback ports")
def tls_queen(context) -> None:
    _start(context)


@given("a queen with those tokens and that certificate on 0.0.0.0")
def tls_public_queen(context) -> None:
    _start(context, "--host", "0.0.0.0")


@given("a queen with those tokens on 0.0.0.0 without TLS")
def plain_public_queen(context) -> None:
    _start(context, "--host", "0.0.0.0", tls=False)


def _openai(context, verify: ssl.SSLContext | bool) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{context.queen_url}/v1", api_key=context.tokens["queen"], max_retries=0,
                         http_client=httpx.Client(verify=verify, timeout=60))


@when("the openai client trusting the test CA streams a chat completion of the tiny model")
@then("the openai client trusting the test CA streams a chat completion of the tiny model")
def openai_over_tls(context) -> None:
    stream = _openai(context, _context(context)).chat.completions.create(
        model=tiny_ref(context), messages=[{"role": "user", "content": "Say something."}],
        max_tokens=8, stream=True, seed=TINY_SEED)
    context.chunks = list(stream)
    assert context.chunks


@then("the stream has content chunks and ends with a finish reason")
def stream_complete(context) -> None:
    assert any(chunk.choices and chunk.choices[0].delta.content for chunk in context.chunks), context.chunks
    assert any(chunk.choices and chunk.choices[0].finish_reason for chunk in context.chunks), context.chunks


@when("the openai client trusting only the default CAs asks for a chat completion")
def openai_untrusting(context) -> None:
    try:
        _openai(context, True).chat.completions.create(
            model=tiny_ref(context), messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    except openai.APIConnectionError as exc:
        context.failure = exc
    else:
        context.failure = None


@then("it fails with a certificate verification error")
def certificate_refused(context) -> None:
    assert context.failure is not None, "the request succeeded"
    assert "CERTIFICATE_VERIFY_FAILED" in repr(context.failure.__cause__), repr(context.failure.__cause__)


@when("I send a plain HTTP request to the queen's port")
def plain_to_tls(context) -> None:
    plain_url = context.queen_url.replace("https://", "http://")
    context.raw_answer = raw_http.exchange(plain_url, raw_http.head("GET", "/health"))


@then("no HTTP answer came back")
def no_http_answer(context) -> None:
    assert not context.raw_answer.data.startswith(b"HTTP/"), context.raw_answer.data[:200]
    assert context.raw_answer.closed_after_s is not None, "the connection stayed open"


@then("the queen still answers its health check over HTTPS")
def healthy_over_tls(context) -> None:
    assert _https_probe(context)(context.queen.health_url)[0] == 200


def _served_fingerprint(context) -> str:
    parts = urlsplit(context.queen_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock, \
            _context(context).wrap_socket(sock, server_hostname=parts.hostname) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


@given("a long native task is streaming through the queen over HTTPS")
def long_task_over_tls(context) -> None:
    body = {**_task(context), "max_tokens": 400, "ignore_eos": True}
    client = httpx.Client(verify=_context(context), timeout=60)
    request = client.build_request("POST", f"{context.queen_url}/v2/tasks", json=body,
                                   headers={"Authorization": f"Bearer {context.tokens['queen']}"})
    response = client.send(request, stream=True)
    assert response.status_code == 200, response.read()
    context.long_lines = response.iter_lines()
    context.long_response = response
    assert next(line for line in context.long_lines if line.startswith("data:"))


@then('the long task over HTTPS still ends with an "end" event')
def long_task_over_tls_ends(context) -> None:
    events = [json.loads(line[5:]) for line in context.long_lines if line.startswith("data: {")]
    context.long_response.close()
    assert events and events[-1]["type"] == "end", events[-3:]


@when("the certificate files are replaced by a new certificate for 127.0.0.1")
def replace_certificate(context) -> None:
    context.new_fingerprint = _issue(context)
    assert context.new_fingerprint != context.first_fingerprint


@when("the key file is replaced by one that is not a key")
def break_key(context) -> None:
    context.tls_key.write_text("not a key\n")


@then("within {seconds:d} seconds a new connection to the queen is served the new certificate")
def new_certificate_served(context, seconds: int) -> None:
    assert wait_until(lambda: _served_fingerprint(context) == context.new_fingerprint, seconds, 0.2)


@then("the queen's log names the new certificate's fingerprint")
def log_names_fingerprint(context) -> None:
    assert f"(sha256 {context.new_fingerprint})" in context.queen.log_path.read_text()


@then("the queen's log says the TLS reload failed and the old certificate stays")
def reload_failed_logged(context) -> None:
    needle = "TLS reload failed, the old certificate stays"
    assert wait_until(lambda: needle in context.queen.log_path.read_text(), 5), context.queen.log_tail()


@then("a new connection to the queen is still served the first certificate")
def first_certificate_served(context) -> None:
    assert _served_fingerprint(context) == context.first_fingerprint


def _cli(context, *args: str) -> None:
    env = {**os.environ, "SSL_CERT_FILE": str(context.ca_file)}
    context.result = subprocess.run([sys.executable, "-m", "rbee", *args], env=env, capture_output=True,
                                    text=True, timeout=120, check=False)


@when("I run `rbee infer` against the https queen with SSL_CERT_FILE naming the test CA")
def infer_over_tls(context) -> None:
    _cli(context, "infer", "--queen", context.queen_url, "--token-file", str(_token_path(context, "queen")),
         "--model", tiny_ref(context), "--prompt", "Hello", "--max-tokens", "8", "--seed", str(TINY_SEED))


@when("I run `rbee status` against the https queen with SSL_CERT_FILE naming the test CA")
def status_over_tls(context) -> None:
    _cli(context, "status", "--queen", context.queen_url, "--token-file", str(_token_path(context, "queen")))


@then("`rbee status` exits 0")
def status_ok(context) -> None:
    assert context.result.returncode == 0, context.result


@when("I start `rbee queen` with --tls-cert but no --tls-key")
def start_without_key(context) -> None:
    _cli(context, "queen", "--port", "1", "--data-dir", str(context.workdir / "d"),
         "--tls-cert", str(context.tls_cert))


@then("the queen's log warns that it listens on 0.0.0.0 without TLS")
def warns_plain_public(context) -> None:
    assert "listens on 0.0.0.0 without TLS" in context.queen.log_path.read_text(), context.queen.log_tail()


@then("the queen's log does not warn about listening without TLS")
def no_plain_warning(context) -> None:
    time.sleep(0.5)
    assert "without TLS" not in context.queen.log_path.read_text(), context.queen.log_tail()


@then("the local hive's heartbeats reach the queen over HTTPS")
def hive_heartbeats_over_tls(context) -> None:
    """The hive runs (it served the chat) and logged no failed heartbeat over three intervals."""
    hive_log = next(context.workdir.rglob("hive.log"))
    time.sleep(1.5)
    text = hive_log.read_text()
    assert "heartbeat to the queen" not in text and "refused a heartbeat" not in text, text[-2000:]
