"""`profile-sync redrive JOB [--only failed|pending|not_found]`: send a deployed job's rows that did not land.

The rows are read from the job's own batch files and results in the drop bucket (streamed through
this machine: nothing is loaded whole) into a new file, which is dropped under
`incoming/<client>/redrive=<JOB>/`: the stack's ingest starts the new job and links the two (the
new job's parentJobId, the old job's redrivenBy). See profile_sync.redrive for what can be picked.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from profile_sync.aws.s3 import S3ObjectStore
from profile_sync.job_rows import JobFiles, JobFilesError
from profile_sync.redrive import CHOICES, RedriveRefused, build_redrive_file, parse_only, redrive_key
from profile_sync_local.deployed.commands import get_job
from profile_sync_local.deployed.resources import EXIT_OK, CliError, connect, guarded, stack_options
from profile_sync_local.subcommands import Command


@guarded
def cmd_redrive(args: argparse.Namespace) -> int:
    try:
        only = parse_only(args.only)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    deployed = connect(args)
    store = deployed.jobs()
    job = get_job(store, args.job)
    bucket = job.get("sourceBucket") or deployed.bucket
    objects = S3ObjectStore(bucket, client=deployed.s3())
    try:
        files = JobFiles(objects, job, store.list_batches(args.job))
        with tempfile.NamedTemporaryFile(suffix=".csv") as spool:
            result = build_redrive_file(files, only, spool)
            spool.flush()
            for note in result.notes:
                print(f"note: {note}")
            if not result.rows:
                wanted = " or ".join(only)
                print(f"nothing to re-drive: job {args.job} has no {wanted} rows that can be listed")
                return EXIT_OK
            key = redrive_key(job, only, result.api_version)
            picked = ", ".join(f"{name} {n:,}" for name, n in result.by_outcome.items() if n)
            if args.dry_run:
                print(f"would drop {result.rows:,} rows ({picked}) as s3://{bucket}/{key}")
                return EXIT_OK
            deployed.s3().upload_file(spool.name, bucket, key)
    except RedriveRefused as exc:
        raise CliError(str(exc)) from None
    except JobFilesError as exc:
        raise CliError(f"the job's files can't be read together: {exc}") from None
    print(
        f"re-drive of job {args.job}: {result.rows:,} rows ({picked}) from {result.batches} batch(es), "
        f"through {result.api_version}, dropped as s3://{bucket}/{key}"
    )
    child = _wait_for_child(store, args.job, before=job.get("redrivenBy") or [], seconds=args.wait)
    if child:
        print(f"new job {child} (parentJobId {args.job}): profile-sync status {child}")
    else:
        print(
            "The ingest starts the new job from the drop; it records parentJobId and job "
            f"{args.job} lists it in redrivenBy: profile-sync status {args.job}"
        )
    return EXIT_OK


def _wait_for_child(store, job_id: str, *, before: list[str], seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    while True:
        linked = (store.get_job(job_id) or {}).get("redrivenBy") or []
        new = [child for child in linked if child not in before]
        if new:
            return new[-1]
        if time.monotonic() >= deadline:
            return None
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


def _arguments(redrive: argparse.ArgumentParser) -> None:
    redrive.add_argument("job", help="job id (see `profile-sync jobs`)")
    redrive.add_argument(
        "--only",
        action="append",
        metavar="|".join(CHOICES),
        help="which rows (repeatable or comma-separated; default failed,pending)",
    )
    redrive.add_argument("--dry-run", action="store_true", help="say what would be dropped, drop nothing")
    redrive.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for the new job to be linked, and print its id (default 0)",
    )
    stack_options(redrive, bucket=True, table=True)


REDRIVE = Command(
    "redrive",
    "send a deployed job's failed and/or pending rows again, as a new linked job",
    cmd_redrive,
    _arguments,
    description="Write the rows of JOB that did not land (by default failed and pending) from its "
    "batch files into a new file and drop it under incoming/<client>/redrive=JOB/: the stack starts "
    "a new job, linked both ways (parentJobId, redrivenBy). `--only not_found` re-sends whole v1 "
    "batches through v2 (v1 names no not-found rows). A re-drive job can be re-driven in turn.",
)
