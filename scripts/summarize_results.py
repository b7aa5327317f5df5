"""Count passed, failed and skipped test cases over JUnit XML reports; print one line.

Exits 1 when anything failed or when no test ran at all.
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


def count(files: list[Path]) -> tuple[int, int, int]:
    """(passed, failed, skipped) over every <testcase> in `files`."""
    passed = failed = skipped = 0
    for file in files:
        for case in ET.parse(file).getroot().iter("testcase"):
            tags = {child.tag for child in case}
            if tags & {"failure", "error"}:
                failed += 1
            elif "skipped" in tags or case.get("status") in {"skipped", "untested"}:
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped


def main(argv: list[str]) -> int:
    """Print the closing line and return the exit code."""
    passed, failed, skipped = count(report_files(argv))
    line = f"{passed} passed, {failed} failed"
    print(line + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
