"""Environment overrides of timings, and fault specs."""

from pathlib import Path

import pytest

from rbee.common.tunables import Timings, TunableError, load_timings
from rbee.worker.faults import Faults, FaultsRefused, load_faults


def test_defaults_match_the_design():
    t = load_timings({})
    assert (t.heartbeat_interval_s, t.stale_after_missed, t.max_restarts) == (2.0, 3, 5)
    assert (t.drain_budget_s, t.sigterm_grace_s, t.loading_timeout_s) == (30.0, 10.0, 300.0)
    assert t.stale_after_s == 6.0


def test_environment_overrides_apply_with_their_types():
    t = load_timings({"RBEE_HEARTBEAT_INTERVAL_S": "0.5", "RBEE_MAX_RESTARTS": "7"})
    assert t == Timings(heartbeat_interval_s=0.5, max_restarts=7)


@pytest.mark.parametrize(
    "env",
    [{"RBEE_HEARTBEAT_INTERVAL_S": "soon"}, {"RBEE_HEARTBEAT_INTERVAL_S": "0"},
     {"RBEE_MAX_RESTARTS": "1.5"}, {"RBEE_RESTART_JITTER": "1"}, {"RBEE_DRAIN_BUDGET_S": "-3"}],
)
def test_bad_overrides_are_refused_naming_the_variable(env):
    with pytest.raises(TunableError) as caught:
        load_timings(env)
    assert next(iter(env)) in str(caught.value)


def test_no_faults_without_the_variable():
    assert load_faults({}) == Faults()


def test_faults_are_refused_unless_allowed():
    with pytest.raises(FaultsRefused):
        load_faults({"RBEE_FAULTS": "crash-on-load"})


def test_fault_specs_are_parsed():
    faults = load_faults({
        "RBEE_ALLOW_FAULTS": "1",
        "RBEE_FAULTS": "stall-after=3, slow=20,no-heartbeat,crash-before-token-once=/tmp/flag,ignore-sigterm",
    })
    assert faults == Faults(
        stall_after=3, slow_ms=20, no_heartbeat=True, crash_before_token_flag=Path("/tmp/flag"),
        ignore_sigterm=True,
    )


@pytest.mark.parametrize("spec", ["explode", "stall-after=many", "slow="])
def test_unknown_or_malformed_faults_are_refused(spec):
    with pytest.raises(FaultsRefused):
        load_faults({"RBEE_ALLOW_FAULTS": "1", "RBEE_FAULTS": spec})
