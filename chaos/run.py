"""Run rbee's chaos experiments and print each verdict; exit 1 when any failed.

Run: .venv/bin/python chaos/run.py [NAME ...] [--json FILE]     (names: see chaos/experiments.py)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaos.experiments import EXPERIMENTS, as_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", choices=[*EXPERIMENTS, []], help="experiments (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="also write one JSON line per verdict")
    args = parser.parse_args()
    failed = 0
    lines = []
    for name in args.names or list(EXPERIMENTS):
        started = time.monotonic()
        verdict = EXPERIMENTS[name]()
        failed += not verdict.passed
        print(f"{'PASS' if verdict.passed else 'FAIL'} {name} ({time.monotonic() - started:.1f} s)")
        for line in verdict.evidence:
            print(f"    {line}")
        lines.append(as_json(verdict))
    if args.json:
        args.json.write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
