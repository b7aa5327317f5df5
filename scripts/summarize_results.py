"""Count passed, failed and skipped test cases over JUnit XML reports; print one line.

Failed cases are listed first, each with the start of its message, so the tail of a CI log says
why it failed. Exits 1 when anything failed or when no test ran at all.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def report_files(paths: list[str]) -> list[Path]:
    """The XML files named, or found in the folders named."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        found.extend(sorted(path.glob("*.xml")) if path.is_dir() else [path] if path.exists() else [])
    return found


MESSAGE_CHARS = 600


def failure_line(case: ET.Element) -> str:
    """One failed case: its name and the start of its failure message."""
    problem = case.find("failure")
    if problem is None:
        problem = case.find("error")
    message = " ".join(((problem.get("message") or "") + " " + (problem.text or "")).split())
    return f"FAILED {case.get('classname', '')}.{case.get('name', '')}: {message[:MESSAGE_CHARS]}".rstrip()


def count(files: list[Path]) -> tuple[int, int, int, list[str]]:
    """(passed, failed, skipped, failure lines) over every <testcase> in `files`."""
    passed = failed = skipped = 0
    failures: list[str] = []
    for file in files:
        for case in ET.parse(file).getroot().iter("testcase"):
            tags = {child.tag for child in case}
            if tags & {"failure", "error"}:
                failed += 1
                failures.append(failure_line(case))
            elif "skipped" in tags or case.get("status") in {"skipped", "untested"}:
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped, failures


def main(argv: list[str]) -> int:
    """Print the closing line and return the exit code."""
    passed, failed, skipped, failures = count(report_files(argv))
    for line in failures:
        print(line)
    line = f"{passed} passed, {failed} failed"
    print(line + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
