"""Locust load test of the queen's native task API: every request must stream to its end.

Each user posts `/v2/tasks` again and again (no wait), reads the whole event stream and fails the
request unless it ends with an `end` event of the expected token count and `[DONE]`. Locust times
a FastHttpUser request only to the response headers (which the queen sends with the first event,
or with the first `: queued` comment of a request that waits in its admission queue for a second
or more); the whole stream is recorded as its own entry, "stream to [DONE]".

The users also count, from the client side, how many of their requests were streaming at once
(response headers received, body not yet ended); the peak is written at the end of the run as JSON
`{"peak_streaming": N}` to RBEE_LOAD_PEAK_FILE when that is set.

Settings (environment): RBEE_LOAD_MODEL (model reference, required), RBEE_LOAD_TOKENS (8),
RBEE_LOAD_TOKEN (bearer token, optional), RBEE_LOAD_PEAK_FILE (optional).

Run: locust -f loadtest/locustfile.py --headless -u 1000 -r 500 -t 30s --host http://127.0.0.1:8080 --csv out
"""

from __future__ import annotations

import json
import os
import time

from locust import FastHttpUser, constant, events, task

MODEL = os.environ.get("RBEE_LOAD_MODEL", "")
TOKENS = int(os.environ.get("RBEE_LOAD_TOKENS", "8"))
_TOKEN = os.environ.get("RBEE_LOAD_TOKEN")
HEADERS = {"Authorization": f"Bearer {_TOKEN}"} if _TOKEN else {}
PEAK_FILE = os.environ.get("RBEE_LOAD_PEAK_FILE")


class Streaming:
    """Requests of this process streaming right now, and the most seen at once (users are
    greenlets of one thread, so plain counters are enough)."""

    now = 0
    peak = 0

    @classmethod
    def began(cls) -> None:
        cls.now += 1
        cls.peak = max(cls.peak, cls.now)

    @classmethod
    def ended(cls) -> None:
        cls.now -= 1


@events.test_stop.add_listener
def _write_peak(**_: object) -> None:
    if PEAK_FILE:
        with open(PEAK_FILE, "w") as out:
            json.dump({"peak_streaming": Streaming.peak}, out)


def problem_with(body: str) -> str | None:
    """Why an SSE body is not one complete native answer, or None when it is."""
    data = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    if not data or data[-1] != "[DONE]":
        return "the stream did not end with [DONE]"
    events = [json.loads(item) for item in data[:-1]]
    end = events[-1] if events else {}
    if end.get("type") != "end":
        return f"the last event is {end.get('type')!r}: {json.dumps(end)[:200]}"
    if end.get("tokens_out") != TOKENS:
        return f"{end.get('tokens_out')} tokens instead of {TOKENS}"
    return None


class NativeTaskUser(FastHttpUser):
    """One client that keeps one native task in flight at all times."""

    wait_time = constant(0)
    network_timeout = 300.0
    connection_timeout = 30.0

    @task
    def native_task(self) -> None:
        body = {"model": MODEL, "prompt": "Once", "max_tokens": TOKENS, "ignore_eos": True}
        started = time.perf_counter()
        with self.client.post("/v2/tasks", json=body, headers=HEADERS, name="POST /v2/tasks",
                              catch_response=True, stream=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            Streaming.began()
            try:
                text = b"".join(response.iter_content(decode_content=False)).decode("utf-8", "replace")
            finally:
                Streaming.ended()
            problem = problem_with(text)
            if problem:
                response.failure(problem)
                return
        self.environment.events.request.fire(
            request_type="SSE", name="stream to [DONE]", response_time=(time.perf_counter() - started) * 1000,
            response_length=len(text), exception=None, context={})
