"""rbee's Nomad client against a loopback server that speaks the Nomad job-run endpoints."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rbee.common.ports import free_port
from rbee.common.secrets import write_token_file
from rbee.deploy.nomad_check import JOBS_DIR, job_files
from rbee.deploy.nomad_client import NomadDeployer, deploy, load_nomad_token, nomad_address
from rbee.deploy.nomad_hcl import NomadError
from rbee.testing.file_server import FileServer
from rbee.testing.nomad_api import LoopbackNomadApi

ACL_TOKEN = "4b1e9a52-6c0d-4f7e-9a63-2f8d1c5b7e90"
QUEEN = JOBS_DIR / "rbee-queen.nomad.hcl"


@pytest.fixture(autouse=True)
def _no_nomad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-nomad reads NOMAD_TOKEN and NOMAD_ADDR itself: keep the caller's out of these tests."""
    for name in [name for name in os.environ if name.startswith("NOMAD_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def api() -> Iterator[LoopbackNomadApi]:
    server = LoopbackNomadApi().start()
    yield server
    server.stop()


def _deployer(url: str, token: str | None = None, timeout_s: float = 10.0) -> NomadDeployer:
    return NomadDeployer(url, token, eval_timeout_s=timeout_s, poll_s=0.05)


def _codes(call) -> str:
    with pytest.raises(NomadError) as caught:
        call()
    return caught.value.code


def test_deploy_registers_the_queen_before_the_hives_with_their_allocations(api: LoopbackNomadApi) -> None:
    lines: list[str] = []
    results = deploy(job_files(JOBS_DIR), _deployer(api.url), lines.append)
    assert [r.job_id for r in results] == ["rbee-queen", "rbee-hive"]
    assert [len(r.allocations) for r in results] == [1, 2]
    assert {a.node for a in results[1].allocations} == {"node-1", "node-2"}
    paths = api.paths()
    registrations = [i for i, p in enumerate(paths) if p == "POST /v1/jobs"]
    plans = [i for i, p in enumerate(paths) if p.endswith("/plan")]
    assert len(registrations) == 2 and max(plans) < min(registrations), paths
    assert sorted(api.registered()) == ["rbee-hive", "rbee-queen"]
    assert api.registered()["rbee-hive"]["Type"] == "system"
    assert "rbee-hive: plan: group hive: place 2" in lines
    assert sum("allocation" in line and "on node" in line for line in lines) == 3


def test_the_evaluation_is_followed_until_it_completes() -> None:
    with LoopbackNomadApi(pending_reads=3) as api:
        deployer = _deployer(api.url)
        result = deployer.register(deployer.plan(QUEEN.read_text(), "queen"))
        reads = [p for p in api.paths() if p == f"GET /v1/evaluation/{result.eval_id}"]
    assert len(reads) == 4
    assert len(result.allocations) == 1


def test_an_evaluation_that_stays_pending_times_out() -> None:
    with LoopbackNomadApi(pending_reads=1000) as api:
        deployer = _deployer(api.url, timeout_s=0.3)
        planned = deployer.plan(QUEEN.read_text(), "queen")
        with pytest.raises(NomadError) as caught:
            deployer.register(planned)
    assert caught.value.code == "NOMAD_EVALUATION_TIMEOUT"
    assert "still pending after 0.3s" in caught.value.message


def test_a_job_the_server_cannot_parse_is_refused_and_nothing_is_registered(api: LoopbackNomadApi) -> None:
    broken = QUEEN.read_text().replace("count = 1", "count = ", 1)
    with pytest.raises(NomadError) as caught:
        _deployer(api.url).plan(broken, "broken.nomad.hcl")
    assert caught.value.code == "NOMAD_JOB_INVALID"
    assert caught.value.message.startswith("Nomad could not parse broken.nomad.hcl: input.hcl: line ")
    assert api.registered() == {}


def test_a_job_the_server_finds_invalid_is_refused_with_its_reasons(api: LoopbackNomadApi) -> None:
    with pytest.raises(NomadError) as caught:
        _deployer(api.url).plan('job "empty" {\n  type = "service"\n}\n', "empty.nomad.hcl")
    assert caught.value.code == "NOMAD_JOB_INVALID"
    assert caught.value.message == "empty.nomad.hcl: Missing job task groups"
    assert "POST /v1/job/empty/plan" not in api.paths()


def test_placements_that_fail_at_plan_time_register_nothing() -> None:
    with LoopbackNomadApi(placement_fails=True) as api:
        with pytest.raises(NomadError) as caught:
            deploy(job_files(JOBS_DIR), _deployer(api.url), lambda _: None)
        assert api.registered() == {}
    assert caught.value.code == "NOMAD_PLACEMENT_FAILED"
    assert "2 node(s) short of memory; nothing was registered" in caught.value.message


def test_placements_that_fail_after_the_plan_are_reported_from_the_evaluation(api: LoopbackNomadApi) -> None:
    deployer = _deployer(api.url)
    planned = deployer.plan(QUEEN.read_text(), "queen")
    api.placement_fails = True
    with pytest.raises(NomadError) as caught:
        deployer.register(planned)
    assert caught.value.code == "NOMAD_PLACEMENT_FAILED"
    assert caught.value.message.startswith("rbee-queen is registered but group queen cannot be placed")


def test_a_job_changed_since_its_plan_is_not_overwritten(api: LoopbackNomadApi) -> None:
    first, second = _deployer(api.url), _deployer(api.url)
    planned = first.plan(QUEEN.read_text(), "queen")
    second.register(second.plan(QUEEN.read_text(), "queen"))
    assert _codes(lambda: first.register(planned)) == "NOMAD_JOB_CHANGED"


def test_acl_token_missing_wrong_and_right() -> None:
    with LoopbackNomadApi(acl_token=ACL_TOKEN) as api:
        text = QUEEN.read_text()
        assert _codes(lambda: _deployer(api.url).plan(text, "q")) == "NOMAD_ACL_TOKEN_REQUIRED"
        assert _codes(lambda: _deployer(api.url, "0" * 36).plan(text, "q")) == "NOMAD_ACL_DENIED"
        deployer = _deployer(api.url, ACL_TOKEN)
        assert deployer.register(deployer.plan(text, "q")).job_id == "rbee-queen"


def test_nothing_listening_is_reported_as_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NomadError) as caught:
        _deployer(url).plan(QUEEN.read_text(), "q")
    assert caught.value.code == "NOMAD_UNREACHABLE"
    assert url in caught.value.message


def test_an_http_server_that_is_not_nomad_is_named_as_such() -> None:
    with FileServer() as server:
        with pytest.raises(NomadError) as caught:
            _deployer(server.url).plan(QUEEN.read_text(), "q")
    assert caught.value.code == "NOMAD_API_NOT_FOUND"
    assert caught.value.message.endswith("is it a Nomad agent?")


@pytest.mark.parametrize("given", ["ftp://h:4646", "127.0.0.1:4646", "http://h:4646/v1", "http://:4646"])
def test_malformed_addresses_are_refused(given: str) -> None:
    assert _codes(lambda: nomad_address(given, {})) == "NOMAD_ADDRESS_INVALID"


def test_the_address_comes_from_the_flag_then_nomad_addr_then_the_local_agent() -> None:
    assert nomad_address("https://n:4646/", {"NOMAD_ADDR": "http://e:1"}) == "https://n:4646"
    assert nomad_address(None, {"NOMAD_ADDR": "http://e:1"}) == "http://e:1"
    assert nomad_address(None, {}) == "http://127.0.0.1:4646"


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nomad-token"
    write_token_file(path, ACL_TOKEN)
    assert load_nomad_token(path) == ACL_TOKEN
    path.chmod(0o644)
    assert _codes(lambda: load_nomad_token(path)) == "NOMAD_TOKEN_FILE"
