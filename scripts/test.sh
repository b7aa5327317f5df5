#!/usr/bin/env bash
# Run every suite (ruff, pytest, behave) and close with one line: N passed, N failed.
set -u
cd "$(dirname "$0")/.."
BIN=.venv/bin
rm -rf reports && mkdir -p reports/junit
status=0

echo "== ruff"
$BIN/ruff check . || status=1

echo "== pytest"
$BIN/python -m pytest -q --junitxml=reports/pytest.xml || status=1

echo "== behave"
$BIN/behave features --no-capture --tags="not @gpu" \
  --junit --junit-directory reports/junit \
  -f json.pretty -o reports/behave.json -f progress -o - || status=1

$BIN/python scripts/summarize_results.py reports/pytest.xml reports/junit || status=1
exit $status
