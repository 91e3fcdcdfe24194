"""`profile-sync submit | jobs | status | report`: what each command does, and its options."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from profile_sync.aws.jobs import DynamoJobStore
from profile_sync.ingest import CLIENT_CODE, INCOMING_PREFIX
from profile_sync.model import BatchRecord, JobKeys, JobRecord
from profile_sync.settings import API_VERSIONS, INPUT_MODES
from profile_sync_local.deployed.output import (
    COUNTS,
    account_line,
    batch_progress,
    format_jobs,
    format_status,
    job_counts,
    job_summary,
    landing_line,
)
from profile_sync_local.deployed.resources import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    CliError,
    connect,
    guarded,
    missing,
    stack_options,
)
from profile_sync_local.subcommands import Command

# Under jobs/<jobId>/, what `report` downloads (into --out, flat).
REPORT_FILES = JobKeys.REPORT_FILES


def drop_key(client: str, file_name: str, api: str | None = None, input_mode: str | None = None) -> str:
    """`incoming/<client>/[api=..][mode=..]/<file>`: without the folders the stack's defaults apply."""
    folders = ([f"api={api}"] if api else []) + ([f"mode={input_mode}"] if input_mode else [])
    return INCOMING_PREFIX + "/".join([client, *folders, file_name])


@guarded
def cmd_submit(args: argparse.Namespace) -> int:
    source = Path(args.file)
    if not source.is_file():
        raise CliError(f"{source}: no such file", EXIT_NOT_FOUND)
    client = args.client or os.environ.get("PROFILE_SYNC_CLIENT")
    if not client:
        raise CliError("which Target client? give --client CODE (or set PROFILE_SYNC_CLIENT)")
    if not CLIENT_CODE.match(client):
        raise CliError(f"{client!r} is not a valid Target client code (letters, digits, - and _)")
    deployed = connect(args)
    bucket, key = (
        deployed.bucket,
        drop_key(client, source.name, args.api, args.input_mode),
    )
    s3 = deployed.s3()
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if missing(exc):
            raise CliError(f"bucket {bucket!r} not found in {deployed.region}", EXIT_NOT_FOUND) from exc
        raise
    s3.upload_file(str(source), bucket, key)
    print(f"uploaded {source} ({source.stat().st_size:,} bytes) to s3://{bucket}/{key}")
    print(
        "The ingest function now validates it and starts a job; the job id comes from the upload's S3 "
        "event, so find it by this source key:\n"
        "  profile-sync jobs           recent jobs, newest first\n"
        "  profile-sync status JOB     the job and its batches' progress\n"
        "  profile-sync report JOB     the report files, once it has finished"
    )
    return EXIT_OK


def _batches_if_needed(store: DynamoJobStore, job: Mapping[str, Any]) -> list[BatchRecord] | None:
    if "succeeded" in job or "accepted" not in job:
        return None
    return sorted(store.list_batches(job["jobId"]), key=lambda b: b["batchIndex"])


@guarded
def cmd_jobs(args: argparse.Namespace) -> int:
    store = connect(args).jobs()
    jobs = [job_summary(job, _batches_if_needed(store, job)) for job in store.recent_jobs(args.limit)]
    if args.json:
        print(json.dumps(jobs, indent=2))
    elif not jobs:
        print(f"no jobs yet in {store.table.name}")
    else:
        print(format_jobs(jobs))
    return EXIT_OK


def get_job(store: DynamoJobStore, job_id: str) -> JobRecord:
    job = store.get_job(job_id)
    if job is None:
        raise CliError(
            f"job {job_id!r} not found in {store.table.name} (`profile-sync jobs` lists recent ones)",
            EXIT_NOT_FOUND,
        )
    return job


@guarded
def cmd_status(args: argparse.Namespace) -> int:
    store = connect(args).jobs()
    job = get_job(store, args.job)
    batches = sorted(store.list_batches(args.job), key=lambda b: b["batchIndex"])
    if args.json:
        summary = job_summary(job, batches) | {
            "inputMode": job.get("inputMode"),
            "sourceBucket": job.get("sourceBucket"),
            "updatedAt": job.get("updatedAt"),
            "batchCount": job.get("batchCount"),
            "parentJobId": job.get("parentJobId"),
            "redrivenBy": job.get("redrivenBy") or [],
            "landingCheck": job.get("landingCheck"),
        }
        print(
            json.dumps(
                {"job": summary, "batches": [batch_progress(b) for b in batches]},
                indent=2,
            )
        )
    else:
        print(format_status(job, batches))
    return EXIT_OK


@guarded
def cmd_report(args: argparse.Namespace) -> int:
    deployed = connect(args)
    store = deployed.jobs()
    job = get_job(store, args.job)
    bucket = job.get("sourceBucket") or deployed.bucket  # the job's files sit beside its drop
    s3 = deployed.s3()
    present = []
    for name in REPORT_FILES:
        key = JobKeys(args.job).prefix + name
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if missing(exc):
                continue
            raise
        present.append((name, key))
    if not present:
        raise CliError(
            f"job {args.job} ({job.get('status')}) has no report files yet",
            EXIT_NOT_FOUND,
        )

    out_dir = Path(args.out) if args.out else Path("out") / args.job
    out_dir.mkdir(parents=True, exist_ok=True)
    downloaded = {}
    for name, key in present:
        target = out_dir / Path(name).name
        s3.download_file(bucket, key, str(target))
        downloaded[name] = target

    if "report/summary.json" in downloaded:
        summary = json.loads(downloaded["report/summary.json"].read_text())
        # A summary written before delta sync has no unchanged rows.
        status, counts = summary.get("status"), {"unchanged": 0, **summary.get("account", {})}
    else:
        status, counts = (
            job.get("status"),
            job_counts(job, _batches_if_needed(store, job)),
        )
    print(
        f"job {args.job}  {status}: {len(downloaded)} report file(s) from s3://{bucket}/{JobKeys(args.job).prefix}"
    )
    notes = {
        "report/summary.json": "the row account and every batch",
        "report/rows.csv": "every row that is not a success, with its source line and reason",
        "rejects.csv": "the rows the ingest rejected, with line numbers",
    }
    width = max(len(str(target)) for target in downloaded.values())
    for name, target in downloaded.items():
        print(f"  {str(target).ljust(width)}  {notes[name]}")
    if "report/summary.json" not in downloaded:
        print("  report/summary.json and report/rows.csv are written when the job has finished")
    if all(name in counts for name in COUNTS):
        print(f"  rows: {account_line(counts)}")
    if job.get("landingCheck"):  # summary.json's landingRows: the sampled lines that did not verify
        print(f"  landed: {landing_line(job['landingCheck'])}")
    return EXIT_OK


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="CSV file, plain or .gz")
    parser.add_argument("--client", help="Target client code (default: $PROFILE_SYNC_CLIENT)")
    parser.add_argument("--api", choices=API_VERSIONS, help="Target API (default: the stack's)")
    parser.add_argument(
        "--input-mode",
        choices=INPUT_MODES,
        help="encoded or raw (default: the stack's)",
    )
    stack_options(parser, bucket=True)


def _jobs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=_positive, default=20, metavar="N", help="how many (default 20)")
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    stack_options(parser, table=True)


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="job id (see `profile-sync jobs`)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    stack_options(parser, table=True)


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="job id (see `profile-sync jobs`)")
    parser.add_argument("--out", metavar="DIR", help="where the files go (default out/<jobId>)")
    stack_options(parser, bucket=True, table=True)


COMMANDS = (
    Command(
        "submit",
        "upload a file to the deployed stack's drop bucket",
        cmd_submit,
        _submit_arguments,
        description="Upload FILE to incoming/<client>/[api=..][mode=..]/<name> in the drop bucket; the "
        "stack's ingest function then validates it and starts a job (see `profile-sync jobs`).",
    ),
    Command(
        "jobs",
        "recent jobs of the deployed stack",
        cmd_jobs,
        _jobs_arguments,
        description="Recent jobs, newest first: status, client, created time, the row counts and the "
        "source key. Counts of a job still running are added up from its batches so far.",
    ),
    Command(
        "status",
        "a job's progress and its batches",
        cmd_status,
        _status_arguments,
        description="A job and each batch's progress: status, rows, polls, row counts and reason.",
    ),
    Command(
        "report",
        "download a job's report files",
        cmd_report,
        _report_arguments,
        description="Download report/summary.json, report/rows.csv and rejects.csv (those that exist) "
        "of a job into --out, and print the row account.",
    ),
)
"""`submit`, `jobs`, `status`, `report`."""
