"""`profile-sync submit | jobs | status | report`: the command line against a deployed stack.

boto3 against the stack's resources: the drop bucket and the JobsTable, named by options
(`--bucket`, `--table`) or read from the stack's Outputs (`DropBucketName`, `JobsTableName`).
Errors are one line on stderr and an exit code, never a traceback:
0 done, 1 not found (file, stack, bucket, table, job, report), 2 anything else (no credentials or
region, a bad client code, AWS refused).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from profile_sync.aws.jobs import DynamoJobStore
from profile_sync.ingest import CLIENT_CODE, INCOMING_PREFIX
from profile_sync.model import (
    ACCOUNT_FIELDS,
    BATCH_ROW_OUTCOMES,
    BatchRecord,
    JobKeys,
    JobRecord,
    JobStatus,
    RowOutcome,
)
from profile_sync.settings import API_VERSIONS, INPUT_MODES

DEFAULT_STACK = "target-profile-sync"
EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_ERROR = 2

# The row account, in the order the README writes it: received = rejected + skipped + the rest.
COUNTS = ACCOUNT_FIELDS
# Under jobs/<jobId>/, what `report` downloads (into --out, flat).
REPORT_FILES = JobKeys.REPORT_FILES
NOT_FOUND_CODES = {"404", "NoSuchKey", "NoSuchBucket", "ResourceNotFoundException"}


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ------------------------------------------------------------------------------------- resources
@dataclass
class Deployed:
    """The stack's resources: names from the options, else from the stack's Outputs."""

    session: boto3.Session
    stack: str
    bucket_option: str | None = None
    table_option: str | None = None
    _outputs: dict | None = field(default=None, repr=False)

    @property
    def region(self) -> str:
        return self.session.region_name

    def output(self, name: str, option: str) -> str:
        if self._outputs is None:
            self._outputs = stack_outputs(self.session.client("cloudformation"), self.stack, self.region)
        if name not in self._outputs:
            raise CliError(f"stack {self.stack!r} has no output {name}: give {option}")
        return self._outputs[name]

    @property
    def bucket(self) -> str:
        return self.bucket_option or self.output("DropBucketName", "--bucket")

    @property
    def table(self) -> str:
        return self.table_option or self.output("JobsTableName", "--table")

    def s3(self):
        return self.session.client("s3")

    def jobs(self) -> DynamoJobStore:
        return DynamoJobStore(self.table, resource=self.session.resource("dynamodb"))


def stack_outputs(cloudformation, stack: str, region: str) -> dict[str, str]:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        if "does not exist" in exc.response["Error"].get("Message", ""):
            raise CliError(
                f"stack {stack!r} not found in {region}: name it with --stack, or give --bucket / --table",
                EXIT_NOT_FOUND,
            ) from exc
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def connect(args: argparse.Namespace) -> Deployed:
    # AWS_REGION as the AWS CLI reads it (boto3 itself reads AWS_DEFAULT_REGION and the config).
    session = boto3.Session(region_name=args.region or os.environ.get("AWS_REGION") or None)
    if not session.region_name:
        raise CliError("no AWS region: give --region or set AWS_REGION (or a region in ~/.aws/config)")
    if session.get_credentials() is None:
        raise CliError("no AWS credentials: set AWS_PROFILE, run `aws configure` or `aws sso login`")
    return Deployed(
        session,
        args.stack,
        bucket_option=getattr(args, "bucket", None),
        table_option=getattr(args, "table", None),
    )


def guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """One line on stderr and an exit code for every error a user can meet."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CliError as exc:
            message, code = str(exc), exc.exit_code
        except NoCredentialsError:
            message, code = (
                "no AWS credentials: set AWS_PROFILE, run `aws configure` or `aws sso login`",
                EXIT_ERROR,
            )
        except NoRegionError:
            message, code = "no AWS region: give --region or set AWS_REGION", EXIT_ERROR
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = EXIT_NOT_FOUND if error.get("Code") in NOT_FOUND_CODES else EXIT_ERROR
            message = f"AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message', '')}"
        except (BotoCoreError, S3UploadFailedError) as exc:
            message, code = f"AWS: {exc}", EXIT_ERROR
        print(f"profile-sync: {message}", file=sys.stderr)
        return code

    return run


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in NOT_FOUND_CODES


# ------------------------------------------------------------------------------------- submit
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
    bucket, key = deployed.bucket, drop_key(client, source.name, args.api, args.input_mode)
    s3 = deployed.s3()
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _missing(exc):
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


# ------------------------------------------------------------------------------------- jobs, status
def job_counts(job: Mapping[str, Any], batches: Sequence[Mapping[str, Any]] | None) -> dict:
    """The row account: the job's own once it is final, else added up from its batches so far.

    A batch that has not ended holds its rows as pending. None where nothing is known yet
    (a file still being validated).
    """
    if "succeeded" in job:  # finalize wrote the account
        return {name: job.get(name, 0) for name in COUNTS}
    counts = {name: job.get(name) for name in ("received", "rejected", "skipped")}
    if job.get("status") == JobStatus.REJECTED:
        return counts | dict.fromkeys(BATCH_ROW_OUTCOMES, 0)  # nothing was sent
    if batches is None:
        return counts | dict.fromkeys(BATCH_ROW_OUTCOMES)
    sent = dict.fromkeys(BATCH_ROW_OUTCOMES, 0)
    for batch in batches:
        if batch.get("counts") is None:
            sent[RowOutcome.PENDING] += batch.get("rows", 0)
        else:
            for name in BATCH_ROW_OUTCOMES:
                sent[name] += batch["counts"].get(name, 0)
    return counts | sent


def _batches_if_needed(store: DynamoJobStore, job: Mapping[str, Any]) -> list[BatchRecord] | None:
    if "succeeded" in job or "accepted" not in job:
        return None
    return sorted(store.list_batches(job["jobId"]), key=lambda b: b["batchIndex"])


def job_summary(job: Mapping[str, Any], batches: Sequence[Mapping[str, Any]] | None) -> dict:
    return {
        "jobId": job["jobId"],
        "status": job.get("status"),
        "clientCode": job.get("clientCode"),
        "apiVersion": job.get("apiVersion"),
        "sourceKey": job.get("sourceKey"),
        "createdAt": job.get("createdAt"),
        "finishedAt": job.get("finishedAt"),
        **job_counts(job, batches),
        "reason": job.get("reason"),
    }


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else str(value)


def format_jobs(jobs: Sequence[Mapping[str, Any]]) -> str:
    header = ("JOB", "STATUS", "CLIENT", "CREATED", "RECEIVED", "SUCCEEDED", "FAILED", "REJECTED", "PENDING")
    rows = [header] + [
        tuple(
            _cell(job[name])
            for name in (
                "jobId",
                "status",
                "clientCode",
                "createdAt",
                "received",
                "succeeded",
                "failed",
                "rejected",
                "pending",
            )
        )
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row, job in zip(rows, [None, *jobs], strict=True):
        cells = [
            cell.rjust(width) if i >= 4 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells) + "  " + ("SOURCE" if job is None else _cell(job["sourceKey"])))
    return "\n".join(lines)


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


def batch_progress(batch: Mapping[str, Any]) -> dict:
    return {
        "batchIndex": batch["batchIndex"],
        "status": batch.get("status"),
        "rows": batch.get("rows"),
        "polls": batch.get("polls"),
        "counts": batch.get("counts"),
        "submittedAt": batch.get("submittedAt"),
        "endedAt": batch.get("endedAt"),
        "reason": batch.get("reason"),
    }


def _get_job(store: DynamoJobStore, job_id: str) -> JobRecord:
    job = store.get_job(job_id)
    if job is None:
        raise CliError(
            f"job {job_id!r} not found in {store.table.name} (`profile-sync jobs` lists recent ones)",
            EXIT_NOT_FOUND,
        )
    return job


def _account_line(counts: dict) -> str:
    rest = " + ".join(f"{name} {_cell(counts[name])}" for name in COUNTS[1:])
    return f"received {_cell(counts['received'])} = {rest}"


def landing_line(check: Mapping[str, Any]) -> str:
    """The landing check on one line: where it is, or what the sample showed."""
    if check.get("status") in ("WAITING", "READING"):
        return f"checking: {check.get('sampled', '?')} sampled profiles, read {check.get('round', 0)} done"
    if not check.get("sampled"):
        return str(check.get("reason") or "not checked")
    line = (
        f"{check.get('verified', 0)} of {check['sampled']} sampled profiles verified, "
        f"{check.get('mismatched', 0)} mismatched, {check.get('notVisible', 0)} not yet visible, "
        f"{check.get('unchecked', 0)} unchecked ({check.get('rounds', 0)} read(s))"
    )
    return line + (f": {check['reason']}" if check.get("reason") else "")


def format_status(job: Mapping[str, Any], batches: Sequence[Mapping[str, Any]]) -> str:
    counts = job_counts(job, batches)
    lines = [
        f"job {job['jobId']}  {job.get('status')}",
        f"  source   s3://{job.get('sourceBucket')}/{job.get('sourceKey')}",
        f"  client   {_cell(job.get('clientCode'))}  api {_cell(job.get('apiVersion'))}  "
        f"mode {_cell(job.get('inputMode'))}",
        f"  created  {job.get('createdAt')}"
        + (f"  finished {job['finishedAt']}" if job.get("finishedAt") else ""),
        f"  rows     {_account_line(counts)}",
    ]
    if job.get("reason"):
        lines.append(f"  reason   {job['reason']}")
    if job.get("parentJobId"):
        lines.append(f"  re-drive of job {job['parentJobId']}")
    if job.get("redrivenBy"):
        lines.append(f"  re-driven by {', '.join(job['redrivenBy'])}")
    if job.get("landingCheck"):
        lines.append(f"  landed   {landing_line(job['landingCheck'])}")
    if batches:
        lines.append(f"  batches  {len(batches)}")
        header = ("#", "STATUS", "ROWS", "POLLS", *(name.upper() for name in BATCH_ROW_OUTCOMES))
        table = [header]
        for batch in batches:
            done = batch.get("counts") or {}
            table.append(
                (
                    str(batch["batchIndex"]),
                    _cell(batch.get("status")),
                    _cell(batch.get("rows")),
                    _cell(batch.get("polls")),
                    *(_cell(done.get(name)) for name in BATCH_ROW_OUTCOMES),
                )
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row, listed in zip(table, [None, *batches], strict=True):
            cells = [
                cell.ljust(width) if i == 1 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            reason = "REASON" if listed is None else (listed.get("reason") or "")
            lines.append(("    " + "  ".join(cells) + "  " + reason).rstrip())
    return "\n".join(lines)


@guarded
def cmd_status(args: argparse.Namespace) -> int:
    store = connect(args).jobs()
    job = _get_job(store, args.job)
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
        print(json.dumps({"job": summary, "batches": [batch_progress(b) for b in batches]}, indent=2))
    else:
        print(format_status(job, batches))
    return EXIT_OK


# ------------------------------------------------------------------------------------- report
@guarded
def cmd_report(args: argparse.Namespace) -> int:
    deployed = connect(args)
    store = deployed.jobs()
    job = _get_job(store, args.job)
    bucket = job.get("sourceBucket") or deployed.bucket  # the job's files sit beside its drop
    s3 = deployed.s3()
    present = []
    for name in REPORT_FILES:
        key = JobKeys(args.job).prefix + name
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                continue
            raise
        present.append((name, key))
    if not present:
        raise CliError(f"job {args.job} ({job.get('status')}) has no report files yet", EXIT_NOT_FOUND)

    out_dir = Path(args.out) if args.out else Path("out") / args.job
    out_dir.mkdir(parents=True, exist_ok=True)
    downloaded = {}
    for name, key in present:
        target = out_dir / Path(name).name
        s3.download_file(bucket, key, str(target))
        downloaded[name] = target

    if "report/summary.json" in downloaded:
        summary = json.loads(downloaded["report/summary.json"].read_text())
        status, counts = summary.get("status"), summary.get("account", {})
    else:
        status, counts = job.get("status"), job_counts(job, _batches_if_needed(store, job))
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
        print(f"  rows: {_account_line(counts)}")
    return EXIT_OK


# ------------------------------------------------------------------------------------- parsers
def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _aws_options(parser: argparse.ArgumentParser, *, bucket: bool = False, table: bool = False) -> None:
    group = parser.add_argument_group("the deployed stack")
    group.add_argument(
        "--stack",
        default=DEFAULT_STACK,
        help=f"CloudFormation stack whose Outputs name the resources (default {DEFAULT_STACK})",
    )
    if bucket:
        group.add_argument("--bucket", help="the drop bucket (default: the stack's DropBucketName)")
    if table:
        group.add_argument("--table", help="the jobs table (default: the stack's JobsTableName)")
    group.add_argument("--region", help="AWS region (default: AWS_REGION or your AWS config)")


def add_parsers(commands) -> None:
    """`submit`, `jobs`, `status`, `report` on the CLI's subparsers."""
    submit = commands.add_parser(
        "submit",
        help="upload a file to the deployed stack's drop bucket",
        description="Upload FILE to incoming/<client>/[api=..][mode=..]/<name> in the drop bucket; the "
        "stack's ingest function then validates it and starts a job (see `profile-sync jobs`).",
    )
    submit.add_argument("file", help="CSV file, plain or .gz")
    submit.add_argument("--client", help="Target client code (default: $PROFILE_SYNC_CLIENT)")
    submit.add_argument("--api", choices=API_VERSIONS, help="Target API (default: the stack's)")
    submit.add_argument("--input-mode", choices=INPUT_MODES, help="encoded or raw (default: the stack's)")
    _aws_options(submit, bucket=True)
    submit.set_defaults(handler=cmd_submit)

    jobs = commands.add_parser(
        "jobs",
        help="recent jobs of the deployed stack",
        description="Recent jobs, newest first: status, client, created time, the row counts and the "
        "source key. Counts of a job still running are added up from its batches so far.",
    )
    jobs.add_argument("--limit", type=_positive, default=20, metavar="N", help="how many (default 20)")
    jobs.add_argument("--json", action="store_true", help="print a JSON list")
    _aws_options(jobs, table=True)
    jobs.set_defaults(handler=cmd_jobs)

    status = commands.add_parser(
        "status",
        help="a job's progress and its batches",
        description="A job and each batch's progress: status, rows, polls, row counts and reason.",
    )
    status.add_argument("job", help="job id (see `profile-sync jobs`)")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    _aws_options(status, table=True)
    status.set_defaults(handler=cmd_status)

    report = commands.add_parser(
        "report",
        help="download a job's report files",
        description="Download report/summary.json, report/rows.csv and rejects.csv (those that exist) "
        "of a job into --out, and print the row account.",
    )
    report.add_argument("job", help="job id (see `profile-sync jobs`)")
    report.add_argument("--out", metavar="DIR", help="where the files go (default out/<jobId>)")
    _aws_options(report, bucket=True, table=True)
    report.set_defaults(handler=cmd_report)
