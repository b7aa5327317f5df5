"""Submitting rbee's Nomad jobs through the Nomad HTTP API with python-nomad.

The steps are those of `nomad job run`, with a plan first: the server parses each job file
(`POST /v1/jobs/parse`), validates it, plans it (`/v1/job/:id/plan`), and only when every job
got that far are they registered (`POST /v1/jobs`, with the plan's index so a job changed
meanwhile is not overwritten). Each registration's evaluation is followed until it completes,
then its allocations are reported. Every failure becomes a NomadError with an UPPER_SNAKE code:
an unreachable agent, a missing or refused ACL token, a job the server cannot parse or
validate, placements no node can take, an evaluation that fails or does not finish in time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nomad
import requests
from nomad.api import exceptions as nomad_errors

from rbee.common.config_env import environment
from rbee.common.secrets import SecretError, read_token_file
from rbee.deploy.nomad_hcl import NomadError

DEFAULT_ADDRESS = "http://127.0.0.1:4646"
REQUEST_TIMEOUT_S = 10
POLL_INTERVAL_S = 0.25
BODY_CHARS = 400
WAITING_STATUSES = ("pending", "blocked")
PLAN_VERBS = (("Place", "place"), ("DestructiveUpdate", "replace"), ("InPlaceUpdate", "update in place"),
              ("Migrate", "migrate"), ("Stop", "stop"), ("Canary", "canary"))


@dataclass(frozen=True)
class PlannedJob:
    """A job the server parsed, validated and planned, ready to register."""

    job: dict[str, Any]
    modify_index: int
    changes: str
    warnings: str

    @property
    def job_id(self) -> str:
        """The job's ID on the server."""
        return str(self.job["ID"])

    @property
    def job_type(self) -> str:
        """service, system, batch or sysbatch."""
        return str(self.job.get("Type") or "service")


@dataclass(frozen=True)
class Allocation:
    """One allocation an evaluation placed."""

    id: str
    group: str
    node: str
    status: str


@dataclass(frozen=True)
class Deployed:
    """A registered job and what its evaluation placed."""

    job_id: str
    eval_id: str
    allocations: tuple[Allocation, ...]


def nomad_address(given: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The agent's base URL: `given`, else $NOMAD_ADDR, else the local agent; checked for shape."""
    environ = environment() if environ is None else environ
    address = (given or environ.get("NOMAD_ADDR") or DEFAULT_ADDRESS).rstrip("/")
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise NomadError("NOMAD_ADDRESS_INVALID",
                         "the Nomad address must look like http://HOST:4646 or https://HOST:4646")
    return address


def load_nomad_token(path: Path | None) -> str | None:
    """The ACL token from a 0600 file; None leaves python-nomad to use $NOMAD_TOKEN."""
    if path is None:
        return None
    try:
        return read_token_file(path)
    except SecretError as exc:
        raise NomadError("NOMAD_TOKEN_FILE", str(exc)) from None


def _short(identifier: str) -> str:
    return identifier[:8]


def _body_of(response: requests.Response) -> str:
    text = " ".join(response.text.split())
    return text[:BODY_CHARS] if text else response.reason or "no message"


class NomadDeployer:
    """Parses, plans and registers jobs on one Nomad agent."""

    def __init__(self, address: str, token: str | None, eval_timeout_s: float = 60.0,
                 poll_s: float = POLL_INTERVAL_S) -> None:
        self.address = address
        self.eval_timeout_s = eval_timeout_s
        self.poll_s = poll_s
        self._client = nomad.Nomad(address=address, token=token, timeout=REQUEST_TIMEOUT_S,
                                   verify=environment().get("NOMAD_CACERT") or True)
        self._has_token = bool(self._client.token)

    # -- the steps ------------------------------------------------------------------------------

    def plan(self, hcl: str, source: str) -> PlannedJob:
        """Parse, validate and plan one job file; placements that would fail raise NomadError."""
        job = self._call(f"parse {source}", self._client.jobs.parse, hcl, True)
        if not isinstance(job, dict) or not job.get("ID"):
            raise NomadError("NOMAD_BAD_RESPONSE",
                             f"parsing {source} returned no job; is {self.address} a Nomad agent?")
        validation = self._call(f"validate {source}",
                                lambda: self._client.validate.validate_job({"Job": job}).json())
        errors = validation.get("ValidationErrors") or []
        if errors:
            raise NomadError("NOMAD_JOB_INVALID", f"{source}: " + "; ".join(str(e) for e in errors))
        plan = self._call(f"plan {job['ID']}", self._client.job.plan_job, job["ID"], {"Job": job}, True)
        failed = plan.get("FailedTGAllocs") or {}
        if failed:
            raise NomadError("NOMAD_PLACEMENT_FAILED",
                             f"{job['ID']}: {describe_failures(failed)}; nothing was registered")
        return PlannedJob(job, int(plan.get("JobModifyIndex") or 0),
                          describe_plan(plan), str(plan.get("Warnings") or ""))

    def register(self, planned: PlannedJob) -> Deployed:
        """Register a planned job, follow its evaluation and return what it placed."""
        body = {"Job": planned.job, "EnforceIndex": True, "JobModifyIndex": planned.modify_index}
        answer = self._call(f"register {planned.job_id}", self._client.jobs.register_job, body)
        eval_id = str(answer.get("EvalID") or "")
        if not eval_id:
            return Deployed(planned.job_id, "", ())
        self.follow(planned.job_id, eval_id)
        stubs = self._call(f"list the allocations of evaluation {_short(eval_id)}",
                           self._client.evaluation.get_allocations, eval_id)
        allocations = tuple(Allocation(str(a.get("ID", "")), str(a.get("TaskGroup", "")),
                                       str(a.get("NodeName") or _short(str(a.get("NodeID", "")))),
                                       str(a.get("ClientStatus", "")))
                            for a in stubs or [])
        return Deployed(planned.job_id, eval_id, allocations)

    def follow(self, job_id: str, eval_id: str) -> dict[str, Any]:
        """Poll an evaluation until it completes; failure, placements that failed or the timeout raise."""
        deadline = time.monotonic() + self.eval_timeout_s
        while True:
            evaluation = self._call(f"read evaluation {_short(eval_id)}",
                                    self._client.evaluation.get_evaluation, eval_id)
            status = evaluation.get("Status")
            if status == "complete":
                failed = evaluation.get("FailedTGAllocs") or {}
                if failed:
                    raise NomadError("NOMAD_PLACEMENT_FAILED",
                                     f"{job_id} is registered but {describe_failures(failed)}; Nomad "
                                     f"places it when capacity frees up (see `nomad job status {job_id}`)")
                return evaluation
            if status not in WAITING_STATUSES:
                reason = evaluation.get("StatusDescription") or "no reason given"
                raise NomadError("NOMAD_EVALUATION_FAILED",
                                 f"evaluation {_short(eval_id)} of {job_id} ended {status}: {reason}")
            if time.monotonic() >= deadline:
                raise NomadError("NOMAD_EVALUATION_TIMEOUT",
                                 f"evaluation {_short(eval_id)} of {job_id} is still {status} after "
                                 f"{self.eval_timeout_s:g}s; follow it with `nomad eval status {eval_id}`")
            time.sleep(self.poll_s)

    # -- errors ---------------------------------------------------------------------------------

    def _call(self, what: str, function: Callable[..., Any], *args: Any) -> Any:
        """Run one API call; every way it can fail becomes a NomadError naming `what`."""
        try:
            return function(*args)
        except nomad_errors.URLNotAuthorizedNomadException as exc:
            raise self._acl_error(what, exc.nomad_resp) from None
        except nomad_errors.BadRequestNomadException as exc:
            code = "NOMAD_JOB_INVALID" if what.startswith(("parse", "validate")) else "NOMAD_REJECTED"
            raise NomadError(code, f"Nomad could not {what}: {_body_of(exc.nomad_resp)}") from None
        except nomad_errors.URLNotFoundNomadException as exc:
            raise self._not_nomad(what, exc.nomad_resp) from None
        except nomad_errors.BaseNomadException as exc:
            raise self._transport_error(what, exc.nomad_resp) from None
        except requests.RequestException as exc:
            raise self._transport_error(what, exc) from None
        except ValueError:
            raise NomadError("NOMAD_BAD_RESPONSE",
                             f"{self.address} answered {what} without JSON; is it a Nomad agent?") from None

    def _acl_error(self, what: str, response: requests.Response) -> NomadError:
        reason = f"HTTP {response.status_code}: {_body_of(response)}"
        if not self._has_token:
            return NomadError("NOMAD_ACL_TOKEN_REQUIRED",
                              f"Nomad needs an ACL token to {what} ({reason}); pass --token-file FILE "
                              "(mode 0600) or set NOMAD_TOKEN")
        return NomadError("NOMAD_ACL_DENIED",
                          f"Nomad refused the ACL token to {what} ({reason}); the token needs the "
                          "submit-job, read-job and parse-job capabilities in the job's namespace")

    def _not_nomad(self, what: str, response: requests.Response) -> NomadError:
        return NomadError("NOMAD_API_NOT_FOUND",
                          f"{self.address} answered HTTP {response.status_code} to {what} "
                          f"({_body_of(response)}); is it a Nomad agent?")

    def _transport_error(self, what: str, cause: object) -> NomadError:
        if isinstance(cause, requests.Response):
            if cause.status_code == 401:
                return self._acl_error(what, cause)
            if cause.status_code == 405:
                return self._not_nomad(what, cause)
            body = _body_of(cause)
            if "job modify index" in body.lower():
                return NomadError("NOMAD_JOB_CHANGED",
                                  f"the job changed on the server since it was planned ({body}); run again")
            return NomadError("NOMAD_ERROR", f"Nomad failed to {what}: HTTP {cause.status_code}: {body}")
        if isinstance(cause, requests.Timeout):
            return NomadError("NOMAD_TIMEOUT",
                              f"Nomad at {self.address} did not answer {what} within {REQUEST_TIMEOUT_S}s")
        if isinstance(cause, requests.ConnectionError):
            return NomadError("NOMAD_UNREACHABLE",
                              f"cannot reach Nomad at {self.address} to {what} (nothing answers there); "
                              "give --address URL or set NOMAD_ADDR")
        return NomadError("NOMAD_ERROR", f"Nomad request to {what} failed: {type(cause).__name__}")


def describe_plan(plan: dict[str, Any]) -> str:
    """What a plan would do, per group ("group queen: place 1"), or "no change"."""
    updates = (plan.get("Annotations") or {}).get("DesiredTGUpdates") or {}
    parts = []
    for group, counts in sorted(updates.items()):
        done = [f"{verb} {counts[key]}" for key, verb in PLAN_VERBS if counts.get(key)]
        if done:
            parts.append(f"group {group}: {', '.join(done)}")
    return "; ".join(parts) or "no change"


def describe_failures(failed: dict[str, Any]) -> str:
    """Why groups could not be placed, from Nomad's allocation metrics."""
    parts = []
    for group, metric in sorted(failed.items()):
        metric = metric or {}
        if not metric.get("NodesEvaluated"):
            parts.append(f"group {group}: no ready client node in the job's datacenters")
            continue
        reasons = [f"{count} node(s) short of {dim}"
                   for dim, count in (metric.get("DimensionExhausted") or {}).items()]
        reasons += [f"{count} node(s) filtered by {constraint}"
                    for constraint, count in (metric.get("ConstraintFiltered") or {}).items()]
        reasons += [f"{count} node(s) of class {cls} filtered"
                    for cls, count in (metric.get("ClassFiltered") or {}).items()]
        detail = "; ".join(reasons) or f"{metric.get('NodesExhausted', 0)} node(s) exhausted"
        parts.append(f"group {group} cannot be placed on any of {metric['NodesEvaluated']} node(s): {detail}")
    return "; ".join(parts)


def deploy(files: list[Path], deployer: NomadDeployer, say: Callable[[str], None]) -> list[Deployed]:
    """Plan every job file, then register them: the queen's service job before the hives' system job,
    which find the queen through service discovery. Nothing is registered unless every plan passed."""
    planned = []
    for path in files:
        try:
            hcl = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise NomadError("JOB_FILE_UNREADABLE", f"{path}: {exc}") from None
        job = deployer.plan(hcl, str(path))
        say(f"{job.job_id}: plan: {job.changes}")
        if job.warnings:
            say(f"{job.job_id}: warnings: {' '.join(job.warnings.split())}")
        planned.append(job)
    planned.sort(key=lambda job: job.job_type != "service")
    results = []
    for job in planned:
        result = deployer.register(job)
        state = f"evaluation {_short(result.eval_id)} complete" if result.eval_id else "no evaluation"
        say(f"{result.job_id}: registered ({state}, {len(result.allocations)} new allocation(s))")
        for alloc in result.allocations:
            say(f"{result.job_id}: allocation {_short(alloc.id)} of group {alloc.group} "
                f"on node {alloc.node}: {alloc.status}")
        results.append(result)
    return results
