"""Steps for model provisioning: a loopback stand-in of the Hugging Face hub (and plain file
servers), a real hive, real downloads into a per-scenario Hugging Face cache."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from behave import given, then, when

from rbee.testing.cluster import Daemon, hive_daemon, http_json, wait_until
from rbee.testing.file_server import Fault, sha256_of
from rbee.testing.http_client import request
from rbee.testing.hub_standin import HubStandIn
from steps.common import started

MB = 1024 * 1024
KB = 1024
CLI_TIMEOUT_S = 120


def _server(context) -> HubStandIn:
    return context.file_server


def _new_server(context, tls: bool = False) -> HubStandIn:
    server = HubStandIn(tls=tls).start()
    context.add_cleanup(server.stop)
    return server


def _models_dir(context) -> Path:
    return context.workdir / "hive-data" / "models"


def hf_home(context) -> Path:
    """The scenario's Hugging Face home (`HF_HOME`): its cache is `hub/` inside."""
    return context.workdir / "hf-home"


def _download_dirs(context) -> list[Path]:
    """Where the hive's downloads land: its models folder and the Hugging Face cache."""
    return [_models_dir(context), Path(context.env.get("HF_HUB_CACHE") or hf_home(context) / "hub")]


def _partials(context) -> list[Path]:
    return [p for folder in _download_dirs(context) for p in _files(folder, "*.partial")]


def _model_files(context) -> list[Path]:
    """Files of models: anything in the models folder, the blobs of the cache."""
    models, cache = _download_dirs(context)
    return _files(models, "*") + [p for p in _files(cache, "*") if p.parent.name == "blobs"]


def _served(context, ref: str):
    """The served file a ref names (`hf:org/repo:file` or a URL on one of the servers)."""
    if ref.startswith("hf:") and ref.endswith(".gguf"):
        return _server(context).find(ref.rsplit(":", 1)[1])[1]
    path = "/" + ref.split("/", 3)[3]
    return context.tls_server.file(path)


def _cli(context, *args: str) -> None:
    context.result = subprocess.run(
        [sys.executable, "-m", "rbee", "models", *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
    )
    context.exit_code = context.result.returncode


def _progress_events(context, job_id: str) -> list[dict]:
    url = f"{context.hive_url}/v1/models/download/progress?id={job_id}"
    events: list[dict] = []
    with urllib.request.urlopen(url, timeout=120) as response:
        assert response.status == 200, response.status
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return events
            events.append(json.loads(data))
    raise AssertionError(f"progress stream ended without [DONE]: {events}")


def _start_download(context, ref: str, sha256: str | None = None) -> None:
    body: dict[str, str] = {"model": ref}
    if sha256:
        body["sha256"] = sha256
    context.answer = request("POST", f"{context.hive_url}/v1/models/download", body)
    assert context.answer.status in (200, 202), (context.answer.status, context.answer.body)
    context.job_id = context.answer.json()["id"]
    context.ref = ref


def _final_event(context) -> dict:
    context.events = _progress_events(context, context.job_id)
    assert context.events, "no progress event"
    return context.events[-1]


def _files(folder: Path, pattern: str) -> list[Path]:
    return [p for p in folder.rglob(pattern) if p.is_file()] if folder.exists() else []


# -- the file server ------------------------------------------------------------------------


@given('a loopback file server that serves the tiny model as "{org}/{repo}" file "{filename}"')
def file_server_tiny(context, org: str, repo: str, filename: str) -> None:
    context.file_server = _new_server(context)
    context.file_server.add_hf(org, repo, filename, context.tiny_model)


@given('a TLS loopback file server that serves the tiny model at "{path}"')
def tls_server(context, path: str) -> None:
    context.tls_server = _new_server(context, tls=True)
    context.tls_server.add(path, context.tiny_model)


@given('a TLS loopback file server that serves a {size:d} MB model at "{path}"')
def tls_server_sized(context, size: int, path: str) -> None:
    """The TLS server also becomes the scenario's file server (its faults, its hits)."""
    source = context.workdir / Path(path).name
    source.write_bytes(b"GGUF" + os.urandom(size * MB - 4))
    context.tls_server = context.file_server = _new_server(context, tls=True)
    context.tls_server.add(path, source)


@given('a {size:d} MB model file served as "{org}/{repo}" file "{filename}"')
def sized_file(context, size: int, org: str, repo: str, filename: str) -> None:
    path = context.workdir / filename
    path.write_bytes(b"GGUF" + os.urandom(size * MB - 4))
    _server(context).add_hf(org, repo, filename, path)


@given('a sparse model file larger than the free disk space served as "{org}/{repo}" file "{filename}"')
def sparse_file(context, org: str, repo: str, filename: str) -> None:
    path = context.workdir / filename
    path.write_bytes(b"GGUF")
    os.truncate(path, shutil.disk_usage(context.workdir).free + 1024 * MB)
    _server(context).add_hf(org, repo, filename, path, sha256="0" * 64)


@given('the file server gates "{org}/{repo}" behind the token "{token}"')
def gate(context, org: str, repo: str, token: str) -> None:
    _server(context).gate(org, repo, token)


def _inject(context, filename: str, fault: Fault) -> None:
    path, _ = _server(context).find(filename)
    _server(context).inject(path, fault)


@given('the file server resets the connection after {size:d} MB of "{filename}" once')
def reset_once(context, size: int, filename: str) -> None:
    _inject(context, filename, Fault("reset", after_bytes=size * MB))


@given('the file server stalls after {size:d} MB of "{filename}" once')
def stall_once(context, size: int, filename: str) -> None:
    _inject(context, filename, Fault("stall", after_bytes=size * MB))


@given('the file server stalls after {size:d} MB of "{filename}" every time')
def stall_always(context, size: int, filename: str) -> None:
    _inject(context, filename, Fault("stall", after_bytes=size * MB, times=None))


@given('the file server corrupts "{filename}" once')
def corrupt_once(context, filename: str) -> None:
    _inject(context, filename, Fault("corrupt"))


@given('the file server sends "{filename}" without a Content-Length')
def no_length(context, filename: str) -> None:
    _inject(context, filename, Fault("no_length", times=None))


@given('the file server sends "{filename}" at {rate:d} MB/s')
def throttled(context, filename: str, rate: int) -> None:
    path, _ = _server(context).find(filename)
    _server(context).throttle(path, rate * MB)


@when('the file server sends "{filename}" at full speed')
def full_speed(context, filename: str) -> None:
    path, _ = _server(context).find(filename)
    _server(context).throttle(path, None)


# -- hives ----------------------------------------------------------------------------------


def _start_hive(context, daemon: Daemon | None = None) -> None:
    context.env["RBEE_HF_ENDPOINT"] = _server(context).url
    context.env.setdefault("HF_HOME", str(hf_home(context)))
    context.hive = started(context, daemon or hive_daemon(context.workdir))
    context.hive_url = context.hive.base_url


@given("a hive on free loopback ports that downloads from the file server")
def hive_with_server(context) -> None:
    _start_hive(context)


@given("a hive on free loopback ports that trusts the TLS file server")
def hive_trusting_tls(context) -> None:
    context.env["SSL_CERT_FILE"] = str(context.tls_server.ca_file)
    _start_hive(context)


class TmpfsHive(Daemon):
    """A hive in its own mount namespace whose models folder is a small tmpfs.

    `unshare -m` makes the mount private to the hive (it vanishes with the process); the
    shell `exec`s the hive, so the PID stopped by the hooks is the hive's own.
    """

    mount_size: str = "1m"

    def start(self, env: dict[str, str] | None = None) -> Daemon:
        models = Path(self.args[self.args.index("--data-dir") + 1]) / "models"
        models.mkdir(parents=True, exist_ok=True)
        script = 'mount -t tmpfs -o size="$1" rbee-test "$2" && shift 2 && exec "$@"'
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                ["unshare", "-m", "sh", "-c", script, "sh", self.mount_size, str(models),
                 sys.executable, "-m", "rbee", *self.args],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, start_new_session=True,
            )
        return self


@given("a hive whose models folder is a 1 MB tmpfs, downloading from the file server")
def tmpfs_hive(context) -> None:
    if getattr(context, "tls_server", None) is not None:
        context.env["SSL_CERT_FILE"] = str(context.tls_server.ca_file)
    plain = hive_daemon(context.workdir)
    daemon = TmpfsHive(plain.args, plain.base_url, plain.health_path, plain.log_path)
    _start_hive(context, daemon)


@when("I start the hive again on the same data folder")
def restart_hive(context) -> None:
    partials = _partials(context)
    context.partial_bytes = partials[0].stat().st_size if partials else 0
    _start_hive(context)


@when("the hive has written at least {size:d} KB of the partial file")
def partial_written(context, size: int) -> None:
    def grown() -> bool:
        return any(p.stat().st_size >= size * KB for p in _partials(context))

    assert wait_until(grown, 30, 0.02), _download_dirs(context)


@when("I overwrite the hive's catalog database with garbage")
def garbage_catalog(context) -> None:
    context.garbage = b"this is not a database " + os.urandom(4000)
    (context.workdir / "hive-data" / "catalog.sqlite3").write_bytes(context.garbage)


# -- asking for downloads -------------------------------------------------------------------


@when('I ask the hive to download "{ref}"')
def download(context, ref: str) -> None:
    _start_download(context, ref)


@when('I ask the hive to download "{ref}" with a wrong SHA-256')
def download_wrong_digest(context, ref: str) -> None:
    _start_download(context, ref, hashlib.sha256(b"something else").hexdigest())


@when('I ask the hive to download the TLS file server\'s "{path}"')
def download_tls(context, path: str) -> None:
    _start_download(context, context.tls_server.url.replace("127.0.0.1", "localhost") + path)


@given('the hive has downloaded "{ref}"')
def downloaded(context, ref: str) -> None:
    _start_download(context, ref)
    assert _final_event(context)["type"] == "done", context.events


@when('{count:d} clients ask the hive at once to spawn a worker for "{ref}"')
def concurrent_spawns(context, count: int, ref: str) -> None:
    answers: list = [None] * count
    barrier = threading.Barrier(count)

    def spawn(index: int) -> None:
        barrier.wait()
        answers[index] = request("POST", f"{context.hive_url}/v1/workers/spawn", {"model": ref}, timeout=120)

    threads = [threading.Thread(target=spawn, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    context.answers = answers


@when('I run rbee models download "{ref}"')
def cli_download(context, ref: str) -> None:
    _cli(context, "download", ref, "--hive", context.hive_url)


@when("I run rbee models list")
def cli_list(context) -> None:
    _cli(context, "list", "--hive", context.hive_url)


@when('I run rbee models rm "{name}"')
def cli_rm(context, name: str) -> None:
    _cli(context, "rm", name, "--hive", context.hive_url)


# -- outcomes -------------------------------------------------------------------------------


@then("the download answer is 202 with a job id")
def answer_202(context) -> None:
    assert context.answer.status == 202, (context.answer.status, context.answer.body)
    body = context.answer.json()
    assert body["id"] and body["model"] == context.ref, body


@then('the progress stream ends with a "done" event whose SHA-256 matches the served file')
def stream_done(context) -> None:
    final = _final_event(context)
    served = _served(context, context.ref)
    assert final["type"] == "done", context.events
    assert final["sha256"] == served.sha256, (final, served.sha256)
    assert final["bytes_done"] == final["bytes_total"] == served.size, final
    assert sha256_of(Path(final["path"])) == served.sha256, "the file on disk differs"
    print(f"resume evidence: sha256 {final['sha256']} over {served.size} bytes; "
          f"requests {[(h.path, h.range) for h in _server(context).hits()]}")


@then('the progress stream ends with an error "{code}" of status {status:d}')
def stream_error(context, code: str, status: int) -> None:
    final = _final_event(context)
    assert final["type"] == "error", context.events
    assert (final["code"], final["status"]) == (code, status), final
    assert final["message"] and context.ref not in final["message"], final


@then('the hive\'s catalog lists "{ref}" with the served file\'s size')
def catalog_lists(context, ref: str) -> None:
    status, body = http_json(f"{context.hive_url}/v1/models/list")
    entries = {m["name"]: m for m in body.get("models", [])}
    assert status == 200 and ref in entries, body
    assert entries[ref]["size_bytes"] == _served(context, ref).size, entries[ref]


@then('the hive\'s catalog no longer lists "{ref}"')
def catalog_lacks(context, ref: str) -> None:
    status, body = http_json(f"{context.hive_url}/v1/models/list")
    assert status == 200 and ref not in {m["name"] for m in body["models"]}, body


@then('the file server saw the bearer token "{token}"')
def saw_token(context, token: str) -> None:
    assert any(h.authorization == f"Bearer {token}" for h in _server(context).hits()), _server(context).hits()


@then('the hive\'s log does not contain "{text}"')
def log_clean(context, text: str) -> None:
    assert text not in context.hive.log_path.read_text(errors="replace")


def _gets(context, filename: str) -> list:
    path, _ = _server(context).find(filename)
    return _server(context).hits(path)


@then('the file server got {count:d} GET requests for "{filename}",'
      ' the second with a Range from at least {size:d} MB')
def gets_with_range(context, count: int, filename: str, size: int) -> None:
    hits = _gets(context, filename)
    assert len(hits) == count, hits
    assert hits[0].range is None, hits
    start = int(hits[1].range.removeprefix("bytes=").rstrip("-"))
    assert start >= size * MB, hits
    print(f"resume evidence: {[h.range for h in hits]}")


@then('the file server got {count:d} GET requests for "{filename}", the second without a Range')
def gets_without_range(context, count: int, filename: str) -> None:
    hits = _gets(context, filename)
    assert len(hits) == count and hits[1].range is None, hits


@then('the file server got {count:d} GET requests for "{filename}"')
@then('the file server got {count:d} GET request for "{filename}"')
def gets(context, count: int, filename: str) -> None:
    hits = _gets(context, filename)
    assert len(hits) == count, hits


@then('the last GET request for "{filename}" carried a Range from the partial file\'s size')
def last_range(context, filename: str) -> None:
    hits = _gets(context, filename)
    assert context.partial_bytes > 0, "no partial file was left by the killed hive"
    assert hits[-1].range == f"bytes={context.partial_bytes}-", (hits[-1], context.partial_bytes)
    ranges = [h.range for h in hits]
    print(f"resume evidence: partial {context.partial_bytes} bytes kept, request ranges {ranges}")


@then("the hive's models folder holds no partial file")
def no_partial(context) -> None:
    assert not _partials(context), _partials(context)


@then("the hive's models folder holds no model file")
def no_model(context) -> None:
    leftovers = _model_files(context)
    assert not leftovers, leftovers


@then("the hive's tmpfs models folder is empty again")
def tmpfs_empty(context) -> None:
    inside = Path(f"/proc/{context.hive.pid}/root") / _models_dir(context).relative_to("/")
    assert not _files(inside, "*"), _files(inside, "*")
    usage = os.statvfs(inside)
    assert usage.f_bfree == usage.f_blocks, (usage.f_bfree, usage.f_blocks)


@then("the error details give the disk bytes required and available")
def disk_details(context) -> None:
    details = context.answer.json()["error"]["details"]
    assert details["required_bytes"] > details["available_bytes"] >= 0, details


@then("all {count:d} spawn answers are 202")
def all_202(context, count: int) -> None:
    statuses = [a.status if a else None for a in context.answers]
    assert statuses == [202] * count, [(a.status, a.body) if a else None for a in context.answers]


@then("stderr shows a progress bar that reached 100%")
def progress_bar(context) -> None:
    assert "100%" in context.result.stderr, context.result.stderr[-2000:]


@then("stdout names the downloaded file and its SHA-256")
def stdout_file(context) -> None:
    served = _server(context).find("big.gguf")[1]
    assert served.sha256 in context.result.stdout, context.result.stdout
    stdout = context.result.stdout
    assert any(str(folder) in stdout for folder in _download_dirs(context)), stdout


@then('stdout lists "{ref}"')
def stdout_lists(context, ref: str) -> None:
    assert ref in context.result.stdout, context.result.stdout


@then("the garbage catalog was kept as a backup next to the new one")
def backup_kept(context) -> None:
    folder = context.workdir / "hive-data"
    backups = list(folder.glob("catalog.sqlite3.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == context.garbage, list(folder.iterdir())
