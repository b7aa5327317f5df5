"""The closing `N passed, N failed` line of `make test`."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "summarize_results.py"
spec = importlib.util.spec_from_file_location("summarize_results", SCRIPT)
summarize = importlib.util.module_from_spec(spec)
spec.loader.exec_module(summarize)

REPORT = """<testsuites><testsuite>
<testcase name="a"/><testcase name="b"><failure message="x"/></testcase>
<testcase name="c"><skipped/></testcase><testcase name="d"><error/></testcase>
<testcase name="e"/></testsuite></testsuites>"""


def test_cases_are_counted_by_outcome(tmp_path):
    (tmp_path / "r.xml").write_text(REPORT)
    passed, failed, skipped, _ = summarize.count(summarize.report_files([str(tmp_path)]))
    assert (passed, failed, skipped) == (2, 2, 1)


def test_failures_or_an_empty_run_fail_the_summary(tmp_path, capsys):
    (tmp_path / "r.xml").write_text(REPORT)
    assert summarize.main([str(tmp_path)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "2 passed, 2 failed, 1 skipped"
    assert lines[:2] == ["FAILED .b: x", "FAILED .d:"]
    assert summarize.main([str(tmp_path / "missing")]) == 1


def test_a_clean_run_passes(tmp_path, capsys):
    (tmp_path / "r.xml").write_text('<testsuite><testcase name="a"/></testsuite>')
    assert summarize.main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "1 passed, 0 failed"
