"""Daemon configuration: schema coverage, error messages, precedence, reload, docs and examples."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import astuple, fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rbee.cli.main import main
from rbee.common.audit import AuditLog
from rbee.common.config import ConfigError, ConfigSource, check_file
from rbee.common.config_reload import ConfigReloader, LiveTimings
from rbee.common.config_schema import DAEMONS, NO_ENV, OPTIONS, RELOADABLE, env_names, schema, timings_of
from rbee.common.errors import ApiError
from rbee.common.secrets import ROLES
from rbee.common.secrets import env_name as token_variable
from rbee.common.tunables import SshTimings, Timings
from rbee.queen.rate_limits import RateLimiter

DOCS = Path(__file__).resolve().parent.parent / "docs"
SECRET = "s3cr3t-token-value-0123456789abcdef"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _problems(source: ConfigSource) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        source.resolve()
    return [str(problem) for problem in caught.value.problems]


# --- the schema covers everything -------------------------------------------------------------

def _flags(daemon: str, capsys) -> set[str]:
    with pytest.raises(SystemExit):
        main([daemon, "--help"])
    return {flag.replace("-", "_") for flag in re.findall(r"--([a-z][a-z-]+)", capsys.readouterr().out)}


@pytest.mark.parametrize("command,daemon", [("queen", "queen"), ("up", "queen"), ("hive", "hive"),
                                            ("worker", "worker")])
def test_every_flag_of_a_daemon_is_a_key_of_its_schema_and_back(command, daemon, capsys):
    flags = _flags(command, capsys) - {"help", "config", "no_local_hive"}
    keys = set(OPTIONS[daemon].model_fields) - ({"start_hive", "external_hive"} if command == "up" else set())
    assert flags == keys


@pytest.mark.parametrize("daemon", DAEMONS)
def test_every_tunable_is_a_key_of_every_daemon(daemon):
    keys = set(schema(daemon).model_fields)
    assert {item.name for item in fields(Timings)} <= keys
    ssh = {f"ssh_{item.name}" for item in fields(SshTimings)}
    assert (ssh <= keys) if daemon == "queen" else not (ssh & keys)


def test_defaults_of_the_schema_are_the_tunables_defaults():
    assert timings_of(schema("hive")()) == Timings()


def test_environment_names_are_unique_and_never_a_token_variable():
    tokens = {token_variable(role) for role in ROLES}
    meaning: dict[str, str] = {}
    for daemon in DAEMONS:
        names = env_names(daemon)
        assert len(set(names.values())) == len(names), daemon
        assert not tokens & set(names.values())
        for key in OPTIONS[daemon].model_fields:
            assert names.get(key) == (None if (daemon, key) in NO_ENV else f"RBEE_{daemon}_{key}".upper())
        for key, name in names.items():
            what = f"{daemon}.{key}" if key in OPTIONS[daemon].model_fields else key
            assert meaning.setdefault(name, what) == what, f"{name} means both {meaning[name]} and {what}"


# --- errors name the place, the key and the rule, never the value -------------------------------

BAD_FILES = [
    ("queen:\n  prot: 8080\n", ":2: queen.prot: unknown key (did you mean `port`?)"),
    ("queen:\n  port: eighty\n", ":2: queen.port: Input should be a valid integer"),
    ("queen:\n  log_level: loud\n", ":2: queen.log_level: Input should be 'DEBUG'"),
    ("queen:\n  port: 70000\n", ":2: queen.port: Input should be less than or equal to 65535"),
    ("queen:\n  rate_limit_per_s: -1\n", ":2: queen.rate_limit_per_s: Input should be greater than"),
    ("queen:\n  restart_jitter: 1\n", ":2: queen.restart_jitter: Input should be less than 1"),
    ("queen:\n  max_restarts: true\n", ":2: queen.max_restarts: must be a number, not true or false"),
    ("queen:\n  worker_slots: 257\n", ":2: queen.worker_slots: Input should be less than or equal to 256"),
    ("queen:\n  data_dir: ''\n", ":2: queen.data_dir: must not be empty"),
    ("queen:\n  host: 'bad host'\n", ":2: queen.host: must be dot-separated labels"),
    ("queen:\n  advertise_url: ftp://x\n", ":2: queen.advertise_url: must be an http(s) URL"),
    ("queen:\n  ssh_retries: -1\n", ":2: queen.ssh_retries: Input should be greater than or equal to 0"),
    ("queen:\n  port: 1\n  port: 2\n", ":3: queen.port: repeated key (first on line 2)"),
    ("queen:\n  port: [\n", ":3: not valid YAML"),
    ("queen: 5\n", ":1: queen: must be a mapping of keys to values"),
    ("", ": a config file holds exactly one top-level section, `queen:`"),
    ("queen: {}\nhive: {}\n", ": a config file holds exactly one top-level section, `queen:`"),
    ("hive:\n  port: 1\n", ":1: this file configures the hive, not the queen"),
    ("quen:\n  port: 1\n", ":1: the top-level section must be `queen:`"),
]


@pytest.mark.parametrize("text,expected", BAD_FILES)
def test_a_bad_file_names_the_file_line_key_and_rule(tmp_path, text, expected):
    path = _write(tmp_path / "q.yaml", text)
    problems = _problems(ConfigSource("queen", path))
    assert len(problems) == 1 and problems[0].startswith(f"{path}{expected}"), problems


def test_every_problem_is_listed_at_once(tmp_path):
    path = _write(tmp_path / "q.yaml", "queen:\n  prot: 1\n  port: 0\n  log_level: loud\n")
    problems = _problems(ConfigSource("queen", path))
    assert [p.split(": ")[1] for p in problems] == ["queen.prot", "queen.port", "queen.log_level"]


@pytest.mark.parametrize("key,hint", [("token", "token_file"), ("hive_token", "hive_token_file"),
                                      ("api_key", "token_file")])
def test_an_inline_token_is_refused_without_echoing_it(tmp_path, key, hint):
    path = _write(tmp_path / "q.yaml", f"queen:\n  port: 8080\n  {key}: {SECRET}\n")
    problems = _problems(ConfigSource("queen", path))
    assert len(problems) == 1 and f"q.yaml:3: queen.{key}: a token is never written" in problems[0]
    assert f"`{hint}`" in problems[0] and SECRET not in problems[0]


def test_no_message_echoes_a_bad_value(tmp_path):
    path = _write(tmp_path / "q.yaml", f"queen:\n  host: {SECRET}!\n  port: {SECRET}\n  {SECRET}: 1\n")
    env = {"RBEE_QUEEN_ADVERTISE_URL": SECRET}
    with pytest.raises(ConfigError) as caught:
        ConfigSource("queen", path, {"worker_slots": SECRET}, env).resolve()
    assert len(caught.value.problems) == 5
    assert str(caught.value).count(SECRET) == 1  # only as the unknown key's name, which is not a value


def test_problems_from_the_environment_and_flags_name_the_variable_and_the_flag():
    problems = _problems(ConfigSource("queen", None, {"port": "x"}, {"RBEE_RATE_LIMIT_BURST": "0"}))
    assert problems == [
        "--port: queen.port: Input should be a valid integer, unable to parse string as an integer",
        "environment RBEE_RATE_LIMIT_BURST: queen.rate_limit_burst: "
        "Input should be greater than or equal to 1",
    ]


def test_a_missing_required_key_says_where_it_can_come_from():
    problems = _problems(ConfigSource("worker", None, {"model": "/m.gguf", "port": 8081}))
    assert problems == ["worker.worker_id: required: give --worker-id, RBEE_WORKER_WORKER_ID or "
                        "`worker_id:` in the config file"]


def test_an_unreadable_file_is_a_problem_not_a_traceback(tmp_path):
    problems = _problems(ConfigSource("hive", tmp_path / "absent.yaml"))
    assert problems == [f"{tmp_path / 'absent.yaml'}: cannot read it: No such file or directory"]


# --- precedence: flag > environment > file > default --------------------------------------------

def _sources(tmp_path: Path, file: int | None, env: int | None, flag: int | None) -> ConfigSource:
    path = _write(tmp_path / "q.yaml", f"queen:\n  port: {file}\n") if file else None
    return ConfigSource("queen", path, {"port": flag} if flag else {},
                        {"RBEE_QUEEN_PORT": str(env)} if env else {})


@pytest.mark.parametrize("file,env,flag,expected", [
    (None, None, None, 8080), (1001, None, None, 1001), (1001, 1002, None, 1002), (1001, 1002, 1003, 1003),
    (None, 1002, 1003, 1003), (1001, None, 1003, 1003), (None, 1002, None, 1002),
])
def test_each_level_overrides_the_ones_below(tmp_path, file, env, flag, expected):
    assert _sources(tmp_path, file, env, flag).resolve().port == expected


KEYS = {"worker_slots": st.integers(1, 256), "rate_limit_per_s": st.floats(0, 1e6),
        "log_level": st.sampled_from(["DEBUG", "INFO", "WARNING", "ERROR"]), "local_hive": st.booleans()}


@given(st.dictionaries(st.sampled_from(sorted(KEYS)), st.sets(st.sampled_from(["file", "env", "flag"]))),
       st.data())
def test_the_highest_source_that_sets_a_key_wins_for_any_mix(tmp_path_factory, plan, data):
    layers: dict[str, dict[str, object]] = {"file": {}, "env": {}, "flag": {}}
    for key, sources in plan.items():
        for source in sources:
            layers[source][key] = data.draw(KEYS[key])
    folder = tmp_path_factory.mktemp("cfg")
    lines = "".join(f"  {key}: {str(value).lower() if isinstance(value, bool) else value}\n"
                    for key, value in layers["file"].items())
    path = _write(folder / "q.yaml", "queen:\n" + lines) if lines else None
    environ = {f"RBEE_QUEEN_{k}".upper() if k in OPTIONS["queen"].model_fields else f"RBEE_{k}".upper():
               str(v) for k, v in layers["env"].items()}
    config = ConfigSource("queen", path, layers["flag"], environ).resolve()
    for key in KEYS:
        winner = next((layers[s][key] for s in ("flag", "env", "file") if key in layers[s]),
                      schema("queen").model_fields[key].default)
        assert getattr(config, key) == (pytest.approx(winner) if isinstance(winner, float) else winner), key


def test_relative_paths_in_a_file_start_at_its_folder(tmp_path):
    path = _write(tmp_path / "q.yaml", "queen:\n  token_file: tokens/queen.token\n  data_dir: /var/rbee\n")
    config = ConfigSource("queen", path).resolve()
    assert (config.token_file, config.data_dir) == (tmp_path / "tokens/queen.token", Path("/var/rbee"))


def test_tunables_from_the_file_are_exported_for_children_unless_the_environment_set_them(tmp_path):
    path = _write(tmp_path / "q.yaml", "queen:\n  heartbeat_interval_s: 0.5\n  max_restarts: 5\n"
                  "  stall_timeout_s: 4\n  ssh_retries: 0\n")
    source = ConfigSource("queen", path, {}, {"RBEE_STALL_TIMEOUT_S": "7"})
    environ = {"RBEE_MAX_RESTARTS": "9", "RBEE_STALL_TIMEOUT_S": "7"}
    source.export_tunables(source.resolve(), environ)
    assert environ == {"RBEE_HEARTBEAT_INTERVAL_S": "0.5", "RBEE_STALL_TIMEOUT_S": "7",
                       "RBEE_SSH_RETRIES": "0"}


# --- rbee config check and the daemons' --config ------------------------------------------------

@pytest.mark.parametrize("daemon", DAEMONS)
def test_the_documented_examples_pass_the_check(daemon, capsys):
    path = DOCS / "examples" / f"{daemon}.yaml"
    assert main(["config", "check", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: ok ({daemon})\n"
    assert main(["config", "check", str(path), "--daemon", daemon]) == 0


def test_the_check_lists_every_problem_and_exits_1(tmp_path, capsys):
    path = _write(tmp_path / "h.yaml", "hive:\n  port: 0\n  ctx_siz: 5\n")
    assert main(["config", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: CONFIG_INVALID: {path} has 2 problems:\n"), err
    assert f"{path}:2: hive.port: Input should be greater than or equal to 1" in err
    assert f"{path}:3: hive.ctx_siz: unknown key (did you mean `ctx_size`?)" in err


def test_the_check_leaves_a_workers_required_keys_to_its_flags(tmp_path):
    path = _write(tmp_path / "w.yaml", "worker:\n  slots: 2\n")
    assert check_file(path) == "worker"
    with pytest.raises(ConfigError):
        ConfigSource("worker", path).resolve()


def test_the_check_with_another_daemon_fails(tmp_path, capsys):
    assert main(["config", "check", str(DOCS / "examples" / "hive.yaml"), "--daemon", "queen"]) == 1
    assert "configures the hive, not the queen" in capsys.readouterr().err


def test_a_daemon_with_an_invalid_file_exits_1_before_starting(tmp_path, capsys):
    path = _write(tmp_path / "q.yaml", f"queen:\n  data_dir: {tmp_path / 'data'}\n  portt: 1\n")
    with pytest.raises(SystemExit) as caught:
        main(["queen", "--config", str(path)])
    assert caught.value.code == 1
    assert f"{path}:3: queen.portt: unknown key (did you mean `port`?)" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


# --- SIGHUP reload ------------------------------------------------------------------------------

@pytest.fixture
def root_level():
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


def _reloader(tmp_path: Path, text: str):
    path = _write(tmp_path / "q.yaml", text)
    source = ConfigSource("queen", path, {"host": "127.0.0.1"}, {"RBEE_FAILURE_LIMIT": "3"})
    config = source.resolve()
    timings = LiveTimings(timings_of(config))
    audit = AuditLog(tmp_path / "audit", 1_000_000, False)
    environ: dict[str, str] = {}
    return path, timings, audit, environ, ConfigReloader(source, config, timings, audit.append, environ)


def _reloads(audit: AuditLog) -> list[dict]:
    audit.close()
    records = [json.loads(line) for path in sorted(audit.directory.glob("audit-*.jsonl"))
               for line in path.read_text().splitlines()]
    return [record for record in records if record["event"] == "config.reload"]


def test_a_reload_applies_a_new_rate_limit_to_the_limiter_that_holds_the_timings(tmp_path, root_level):
    path, timings, audit, environ, reload = _reloader(tmp_path, "queen:\n  rate_limit_burst: 100\n")
    limiter = RateLimiter(timings)
    for _ in range(3):
        limiter.admit("client")
    _write(path, "queen:\n  rate_limit_burst: 1\n  rate_limit_per_s: 0.001\n  log_level: warning\n")
    reload()
    limiter.admit("client")
    with pytest.raises(ApiError) as caught:
        limiter.admit("client")
    assert caught.value.status == 429
    assert logging.getLogger().level == logging.WARNING
    assert environ == {"RBEE_RATE_LIMIT_BURST": "1", "RBEE_RATE_LIMIT_PER_S": "0.001"}
    [record] = _reloads(audit)
    assert (record["ok"], record["applied"], record["restart_needed"]) == (
        True, ["log_level", "rate_limit_per_s", "rate_limit_burst"], [])


def test_a_reload_names_what_needs_a_restart_and_leaves_it(tmp_path, root_level, caplog):
    path, timings, audit, _, reload = _reloader(tmp_path, "queen:\n  port: 8080\n  heartbeat_interval_s: 2\n")
    _write(path, "queen:\n  port: 8090\n  heartbeat_interval_s: 1\n  stall_timeout_s: 3\n"
           "  host: 0.0.0.0\n  failure_limit: 9\n")
    with caplog.at_level(logging.INFO):
        reload()
    assert (timings.heartbeat_interval_s, timings.stall_timeout_s, timings.failure_limit) == (2.0, 3.0, 3)
    assert "applied stall_timeout_s 10.0 -> 3.0; not applied, needs a restart: port 8080 -> 8090, " \
           "heartbeat_interval_s 2.0 -> 1.0" in caplog.text
    [record] = _reloads(audit)
    assert record["applied"] == ["stall_timeout_s"]
    assert record["restart_needed"] == ["port", "heartbeat_interval_s"]


def test_a_file_that_became_invalid_keeps_every_setting(tmp_path, root_level, caplog):
    path, timings, audit, environ, reload = _reloader(tmp_path, "queen:\n  request_deadline_s: 60\n")
    _write(path, f"queen:\n  request_deadline_s: 5\n  hive_token: {SECRET}\n")
    with caplog.at_level(logging.INFO):
        reload()
    assert timings.request_deadline_s == 60 and environ == {}
    assert "keeping the previous settings" in caplog.text and "queen.hive_token" in caplog.text
    assert SECRET not in caplog.text
    [record] = _reloads(audit)
    assert record["ok"] is False and SECRET not in str(record)


def test_live_timings_are_timings_whose_derived_values_follow_a_reload():
    live = LiveTimings(Timings(heartbeat_interval_s=1.0))
    assert isinstance(live, Timings) and live.stale_after_s == 3.0
    live.replace(Timings(heartbeat_interval_s=2.0, stale_after_missed=2))
    assert live.stale_after_s == 4.0
    assert astuple(live) == astuple(Timings(heartbeat_interval_s=2.0, stale_after_missed=2))


# --- the docs document every key ----------------------------------------------------------------

def _doc_rows() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    heading = ""
    for line in (DOCS / "configuration.md").read_text().splitlines():
        if line.startswith("## "):
            heading = line
        match = re.match(r"^\| `([a-z_]+)` \|(.*)\|$", line)
        if match:
            cells = [cell.strip() for cell in match.group(2).split("|")]
            sections.setdefault(heading, {})[match.group(1)] = cells
    return sections


@pytest.mark.parametrize("daemon", DAEMONS)
def test_the_docs_give_every_key_with_its_env_default_and_reload(daemon):
    sections = _doc_rows()
    own = next(rows for heading, rows in sections.items() if heading.startswith(f"## `{daemon}`"))
    rows = {**own, **sections["## Tunables (every daemon)"]}
    model = schema(daemon)
    assert set(rows) == set(model.model_fields)
    for key, (_, default, _, env, reload) in rows.items():
        assert env.strip("`") == env_names(daemon).get(key, "—"), key
        assert reload == ("yes" if key in RELOADABLE else "no"), key
        value = model.model_fields[key].default
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert float(default) == value, key
