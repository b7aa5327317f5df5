"""`rbee deploy nomad`: check rbee's Nomad jobs, or submit them to a Nomad cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rbee.deploy.nomad_check import JOB_SUFFIX, JOBS_DIR, check_files, job_files, job_name_of
from rbee.deploy.nomad_client import NomadDeployer, deploy, load_nomad_token, nomad_address
from rbee.deploy.nomad_hcl import NomadError


def register_nomad(targets: argparse._SubParsersAction) -> None:
    """Add `nomad` to the `rbee deploy` subcommands."""
    nomad = targets.add_parser(
        "nomad", help="check the Nomad jobs, or submit them to a Nomad cluster",
        description="Without --check: parse, plan and register the jobs on the Nomad agent at --address "
                    "(default $NOMAD_ADDR, else http://127.0.0.1:4646), then show their allocations.")
    nomad.add_argument("--check", action="store_true",
                       help="only parse each job file and apply rbee's structural rules (no server needed)")
    nomad.add_argument("--jobs-dir", type=Path, default=JOBS_DIR,
                       help=f"folder of *{JOB_SUFFIX} files (default: the jobs shipped in the rbee package)")
    nomad.add_argument("--job", action="append", metavar="NAME",
                       help="only this job: its file name without the suffix, such as rbee-queen; "
                            "repeatable")
    nomad.add_argument("--address", default=None, help="Nomad HTTP API URL")
    nomad.add_argument("--token-file", type=Path, default=None,
                       help="file (mode 0600) holding the Nomad ACL token (default: $NOMAD_TOKEN)")
    nomad.add_argument("--timeout", type=float, default=60.0,
                       help="seconds to wait for each job's evaluation to complete (default 60)")
    nomad.set_defaults(func=run_nomad)


def run_nomad(args: argparse.Namespace) -> int:
    """Check the job files; unless --check, submit them. 0 on success, 1 with a message on stderr."""
    try:
        files = _selected(job_files(args.jobs_dir), args.job)
        if not _check(files):
            return 1
        if args.check:
            return 0
        if args.timeout <= 0:
            raise NomadError("BAD_TIMEOUT", "--timeout must be a positive number of seconds")
        deployer = NomadDeployer(nomad_address(args.address), load_nomad_token(args.token_file),
                                 eval_timeout_s=args.timeout)
        deploy(files, deployer, print)
    except NomadError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _selected(files: list[Path], names: list[str] | None) -> list[Path]:
    if not names:
        return files
    known = {job_name_of(path): path for path in files}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise NomadError("NOMAD_JOB_UNKNOWN",
                         f"no job file for {', '.join(unknown)}; known jobs: {', '.join(sorted(known))}")
    return [known[name] for name in dict.fromkeys(names)]


def _check(files: list[Path]) -> bool:
    """Print the structural check of each file; True when all pass."""
    results = list(check_files(files))
    for result in results:
        if result.ok:
            print(f"ok: {result.file} (job {result.job_name}, type {result.job_type})")
        for problem in result.problems:
            print(problem, file=sys.stderr)
    failed = [result for result in results if not result.ok]
    if failed:
        count = sum(len(result.problems) for result in failed)
        print(f"error: NOMAD_CHECK_FAILED: {count} problem(s) in {len(failed)} of {len(results)} job file(s)",
              file=sys.stderr)
    return not failed
