"""A loopback HTTP server speaking the Nomad agent endpoints that python-nomad uses to run a job.

No Nomad binary can be installed on the test machines, so tests of rbee's Nomad client talk to
this stand-in instead: `POST /v1/jobs/parse` (the JobHCL is parsed with python-hcl2, so a broken
file gets a 400 with a plain-text message, as from Nomad), `POST /v1/validate/job`,
`POST /v1/job/:id/plan`, `POST /v1/jobs` (with EnforceIndex), `GET /v1/evaluation/:id` (pending
for the first reads, then complete) and `GET /v1/evaluation/:id/allocations`. Registered jobs
and every request are recorded. Modes: an ACL token every request must carry (403 otherwise,
as Nomad answers), and placements that fail for lack of memory. It runs its own event loop in a
thread; `stop` ends it.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import hcl2
from aiohttp import web
from lark.exceptions import LarkError, UnexpectedInput

from rbee.common.ports import free_port
from rbee.testing.background_server import BackgroundServer

_HCL_OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


@dataclass
class Evaluation:
    """One evaluation the server created, and the allocations it placed."""

    id: str
    job_id: str
    job_type: str
    failed: dict[str, Any]
    allocations: list[dict[str, Any]]
    pending_reads: int
    blocked_eval: str = ""

    def wire(self) -> dict[str, Any]:
        """The evaluation as `GET /v1/evaluation/:id` shows it; each read brings completion closer."""
        status = "pending" if self.pending_reads > 0 else "complete"
        self.pending_reads -= 1
        return {"ID": self.id, "JobID": self.job_id, "Type": self.job_type, "TriggeredBy": "job-register",
                "Status": status, "StatusDescription": "", "FailedTGAllocs": self.failed or None,
                "BlockedEval": self.blocked_eval}


@dataclass
class Recorded:
    """What the server has seen."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluations: dict[str, Evaluation] = field(default_factory=dict)


class JobspecError(ValueError):
    """A jobspec the stand-in cannot turn into a job; the text is Nomad-like."""


def parse_jobspec(text: str) -> dict[str, Any]:
    """The jobspec through python-hcl2 itself (not rbee's reader, which is under test)."""
    try:
        return hcl2.loads(text, serialization_options=_HCL_OPTIONS)
    except UnexpectedInput as exc:
        raise JobspecError(f"line {exc.line}, column {exc.column}: {type(exc).__name__}") from None
    except LarkError as exc:
        raise JobspecError(str(exc).splitlines()[0]) from None


def _labeled(body: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    """The `key "label" { … }` blocks of a body (python-hcl2 gives `{key: [{label: body}]}`)."""
    items = body.get(key) or []
    return [(label, inner) for item in (items if isinstance(items, list) else [items])
            for label, inner in item.items() if isinstance(inner, dict)]


def api_job(document: dict[str, Any]) -> dict[str, Any]:
    """The JSON job Nomad's parse endpoint returns for a jobspec (the fields rbee's client reads)."""
    jobs = _labeled(document, "job")
    if len(jobs) != 1:
        raise JobspecError(f"expected exactly one job block, found {len(jobs)}")
    defaults = {f"${{var.{name}}}": body["default"] for name, body in _labeled(document, "variable")
                if "default" in body}

    def value(raw: Any) -> Any:
        return defaults.get(raw, raw) if isinstance(raw, str) else raw

    name, body = jobs[0]
    groups = []
    for group_name, group in _labeled(body, "group"):
        tasks = [{"Name": task_name, "Driver": task.get("driver", ""),
                  "Config": {key: value(raw) for config in task.get("config", [])
                             for key, raw in config.items()}}
                 for task_name, task in _labeled(group, "task")]
        groups.append({"Name": group_name, "Count": int(value(group.get("count", 1))), "Tasks": tasks})
    return {"ID": name, "Name": name, "Namespace": "default", "Region": "global", "Priority": 50,
            "Type": body.get("type", "service"), "Datacenters": value(body.get("datacenters")),
            "TaskGroups": groups}


class LoopbackNomadApi:
    """Serves the Nomad job-run endpoints on 127.0.0.1 from a background thread."""

    def __init__(self, acl_token: str | None = None, nodes: tuple[str, ...] = ("node-1", "node-2"),
                 placement_fails: bool = False, pending_reads: int = 1) -> None:
        self.port = free_port()
        self.acl_token = acl_token
        self.nodes = nodes
        self.placement_fails = placement_fails
        self.pending_reads = pending_reads
        self.recorded = Recorded()
        self._index = 10
        self._lock = threading.Lock()
        self._server = BackgroundServer(self._app, self.port, "loopback-nomad-api")

    @property
    def url(self) -> str:
        """Base URL, as NOMAD_ADDR would name it."""
        return f"http://127.0.0.1:{self.port}"

    def registered(self) -> dict[str, dict[str, Any]]:
        """Registered jobs by ID."""
        with self._lock:
            return dict(self.recorded.jobs)

    def paths(self) -> list[str]:
        """`METHOD /path` of every request so far."""
        with self._lock:
            return [f"{method} {path}" for method, path in self.recorded.requests]

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> LoopbackNomadApi:
        """Serve in a background thread; returns once the port accepts connections."""
        self._server.start()
        return self

    def stop(self) -> list[int]:
        """Stop serving and join the thread; no process outlives it (it runs in this one)."""
        self._server.stop()
        return []

    def __enter__(self) -> LoopbackNomadApi:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._acl])
        app.router.add_post("/v1/jobs/parse", self._parse)
        app.router.add_post("/v1/validate/job", self._validate)
        app.router.add_post("/v1/job/{job_id}/plan", self._plan)
        app.router.add_post("/v1/jobs", self._register)
        app.router.add_get("/v1/evaluation/{eval_id}", self._evaluation)
        app.router.add_get("/v1/evaluation/{eval_id}/allocations", self._allocations)
        return app

    # -- handlers -------------------------------------------------------------------------------

    @web.middleware
    async def _acl(self, request: web.Request, handler) -> web.StreamResponse:
        with self._lock:
            self.recorded.requests.append((request.method, request.path))
        if self.acl_token is not None:
            given = request.headers.get("X-Nomad-Token")
            if given is None:
                return web.Response(status=403, text="Permission denied")
            if given != self.acl_token:
                return web.Response(status=403, text="ACL token not found")
        return await handler(request)

    async def _parse(self, request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            job = api_job(parse_jobspec(str(body.get("JobHCL", ""))))
        except (TypeError, ValueError) as exc:
            return web.Response(status=400, text=f"input.hcl: {exc}")
        return web.json_response(job)

    async def _validate(self, request: web.Request) -> web.Response:
        job = (await _json(request)).get("Job") or {}
        errors = [] if job.get("ID") else ["Missing job ID"]
        errors += [] if job.get("TaskGroups") else ["Missing job task groups"]
        errors += [f"Task {task.get('Name')} missing driver" for group in job.get("TaskGroups") or []
                   for task in group.get("Tasks") or [] if not task.get("Driver")]
        return web.json_response({"DriverConfigValidated": True, "ValidationErrors": errors or None,
                                  "Error": "; ".join(errors), "Warnings": ""})

    async def _plan(self, request: web.Request) -> web.Response:
        job = (await _json(request)).get("Job") or {}
        if job.get("ID") != request.match_info["job_id"]:
            return web.Response(status=400, text="Job ID does not match")
        with self._lock:
            known = self.recorded.jobs.get(job["ID"])
        modify_index = known["JobModifyIndex"] if known else 0
        updates = {group["Name"]: {"Place": len(self._placements(job, group)), "Ignore": 0}
                   for group in job.get("TaskGroups") or []}
        return web.json_response({"Annotations": {"DesiredTGUpdates": updates},
                                  "JobModifyIndex": modify_index,
                                  "FailedTGAllocs": self._failures(job) or None, "Warnings": ""})

    async def _register(self, request: web.Request) -> web.Response:
        body = await _json(request)
        job = dict(body.get("Job") or {})
        if not job.get("ID"):
            return web.Response(status=400, text="Job must have an ID")
        with self._lock:
            known = self.recorded.jobs.get(job["ID"])
            current = known["JobModifyIndex"] if known else 0
            if body.get("EnforceIndex") and body.get("JobModifyIndex", 0) != current:
                return web.Response(status=500, text=(
                    f"Enforcing job modify index {body.get('JobModifyIndex')}: job exists with conflicting "
                    f"job modify index: {current}"))
            self._index += 1
            job["JobModifyIndex"] = self._index
            self.recorded.jobs[job["ID"]] = job
            evaluation = self._evaluate(job)
            self.recorded.evaluations[evaluation.id] = evaluation
        return web.json_response({"EvalID": evaluation.id, "EvalCreateIndex": self._index,
                                  "JobModifyIndex": self._index, "Warnings": ""})

    async def _evaluation(self, request: web.Request) -> web.Response:
        with self._lock:
            evaluation = self.recorded.evaluations.get(request.match_info["eval_id"])
            wire = evaluation.wire() if evaluation else None
        if wire is None:
            return web.Response(status=404, text="eval not found")
        return web.json_response(wire)

    async def _allocations(self, request: web.Request) -> web.Response:
        with self._lock:
            evaluation = self.recorded.evaluations.get(request.match_info["eval_id"])
        if evaluation is None:
            return web.Response(status=404, text="eval not found")
        return web.json_response(evaluation.allocations)

    # -- scheduling -----------------------------------------------------------------------------

    def _placements(self, job: dict[str, Any], group: dict[str, Any]) -> list[str]:
        """The node of each allocation: every node for a system job, `Count` spread over them otherwise."""
        if job.get("Type") == "system":
            return list(self.nodes)
        return [self.nodes[index % len(self.nodes)] for index in range(int(group.get("Count", 1)))]

    def _failures(self, job: dict[str, Any]) -> dict[str, Any]:
        if not self.placement_fails:
            return {}
        nodes = len(self.nodes)
        return {group["Name"]: {"NodesEvaluated": nodes, "NodesFiltered": 0, "NodesExhausted": nodes,
                                "DimensionExhausted": {"memory": nodes}, "ConstraintFiltered": None,
                                "ClassFiltered": None, "CoalescedFailures": 0}
                for group in job.get("TaskGroups") or []}

    def _evaluate(self, job: dict[str, Any]) -> Evaluation:
        eval_id = str(uuid.uuid4())
        failed = self._failures(job)
        allocations = []
        for group in job.get("TaskGroups") or []:
            if group["Name"] in failed:
                continue
            for index, node in enumerate(self._placements(job, group)):
                allocations.append({
                    "ID": str(uuid.uuid4()), "EvalID": eval_id,
                    "Name": f"{job['ID']}.{group['Name']}[{index}]",
                    "NodeID": str(uuid.uuid5(uuid.NAMESPACE_DNS, node)), "NodeName": node,
                    "JobID": job["ID"], "TaskGroup": group["Name"], "DesiredStatus": "run",
                    "ClientStatus": "pending",
                })
        return Evaluation(eval_id, job["ID"], str(job.get("Type", "service")), failed, allocations,
                          self.pending_reads, str(uuid.uuid4()) if failed else "")


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        raise web.HTTPBadRequest(text="request body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="request body is not a JSON object")
    return body
