"""`profile-sync run`: the pipeline as deployed, on one machine.

The template's resources in a moto server on loopback (reached over HTTP), the real ingest and step
handlers, the real state machine definition executed by moto, and the Target emulator on loopback
or a Target the user names.
Against the built-in emulator time is virtual: a job that would poll for hours finishes in seconds
and the summary says how long it would have taken. Against any other Target time is real: Target's
minute is a real minute. Credentials reach the functions as in the deployed stack: a secret in
(moto's) Secrets Manager named by TOKEN_SECRET_ID.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from unittest import mock
from urllib.parse import urlsplit

import boto3
import requests
from requests.adapters import HTTPAdapter

from profile_sync.aws.jobs import DynamoJobStore
from profile_sync.aws.s3 import S3ObjectStore
from profile_sync.job_rows import JobFiles
from profile_sync.model import ACCOUNT_FIELDS, JobRecord, JobStatus
from profile_sync.outcomes import PENDING, SUCCEEDED
from profile_sync.redrive import build_redrive_file, redrive_key
from profile_sync.settings import Settings
from profile_sync_local.costs import AwsRequests, LambdaDurations, format_cost, job_cost
from profile_sync_local.deployed.output import landing_line
from profile_sync_local.emulator import DEFAULT_PROFILE_TOKEN, EmulatorConfig, TargetEmulator
from profile_sync_local.progress import Progress, observed
from profile_sync_local.sfn_local.clock import VirtualClock
from profile_sync_local.stack.aws_server import REGION, local_aws
from profile_sync_local.stack.functions import workflow_handlers
from profile_sync_local.stack.resources import LocalResources
from profile_sync_local.stack.workflow import run_workflow, steps_on
from profile_sync_local.state import load_state, save_state

EXIT_COMPLETE, EXIT_WITH_ERRORS, EXIT_FAILED = 0, 1, 2
CLOCKS = ("virtual", "real")
_LOCAL_ENV = {
    # moto's fake credentials: nothing here can reach AWS.
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "POWERTOOLS_SERVICE_NAME": "profile-sync",
    "POWERTOOLS_METRICS_NAMESPACE": "TargetProfileSync",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def run_local(
    source: Path,
    *,
    out_dir: Path,
    client: str = "demo",
    api: str | None = None,
    input_mode: str | None = None,
    target_url: str | None = None,
    emulator_config: EmulatorConfig | None = None,
    settings_env: dict[str, str] | None = None,
    progress_stream: TextIO | None = None,
    auth: str = "none",
    credentials: dict | None = None,
    clock: str | None = None,
    client_profile: dict | None = None,
    delta: bool = False,
    state_dir: Path | None = None,
    redrive: tuple[str, ...] = (),
) -> dict:
    """Run one file through the whole pipeline; returns the job's result (and writes the reports).

    client_profile: stored for ``client`` as `profile-sync clients set` would (its token secret and
    base URL aside: this run's Target and credentials come from its own options).

    auth ("token", "oauth") makes the built-in emulator require credentials it mints itself;
    credentials (a profile token {"profile_token": ...} or OAuth server-to-server credentials) are
    what the functions read from Secrets Manager, for any Target. clock: "virtual" (default for the
    built-in emulator) or "real" (default for any other Target).

    delta: drop the file under `delta=on/` (delta sync). state_dir: the delta snapshots and quota
    counters are loaded from it before the drop and saved into it at the end (profile_sync_local.state),
    so a later run with the same folder diffs against what this one confirmed.

    redrive ("failed", "pending", "not_found"): when the job ends COMPLETE_WITH_ERRORS, its rows of
    those outcomes are re-driven once in the same stack, as `profile-sync redrive` does it (a new
    job, linked both ways), and the result gains "redrive" (the new job) and "combined" (the file's
    rows after both jobs). With REDRIVE_PENDING_AUTO=1 the run follows Finalize's own re-drive instead.
    """
    if target_url is not None and auth != "none":
        raise ValueError("auth configures the built-in emulator: give credentials for another Target")
    clock = clock or ("virtual" if target_url is None else "real")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, not {clock!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    start = datetime.now(UTC).replace(microsecond=0)
    time_source = VirtualClock(start=start) if clock == "virtual" else RealClock()
    progress = Progress(progress_stream or io.StringIO(), time_source.now, simulated=clock == "virtual")
    calls = TargetCalls()
    durations, requests = LambdaDurations(), AwsRequests()
    # Handlers share Powertools' metric set when they run as threads of one process (never so in
    # Lambda); a flush can then find it emptied by another: harmless here, so not shown.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    saved_env = dict(os.environ)
    os.environ.update(_LOCAL_ENV | (settings_env or {}))
    try:
        with local_aws(), contextlib.ExitStack() as stack:
            local = LocalResources().create()
            os.environ.update(local.env())
            if client_profile is not None:
                local.put_profile(client, _local_profile(client_profile))
            if state_dir is not None:
                load_state(state_dir, bucket=local.bucket, table=local.jobs_table, region=REGION)
            if target_url is None:
                emulator = stack.enter_context(
                    TargetEmulator(emulator_config or EmulatorConfig(seed=1), clock=time_source.time)
                )
                target_url = emulator.url
            else:
                emulator = None
            os.environ["TARGET_BASE_URL"] = target_url
            if emulator is not None and auth != "none":
                credentials = _emulator_credentials(emulator, auth)
            elif emulator is not None and credentials:
                # The built-in emulator accepts the given profile token, and only it.
                emulator.configure(require_auth=True, valid_tokens={_profile_token(credentials)})
            if credentials:
                os.environ["TOKEN_SECRET_ID"] = _store_secret(credentials)
            progress.note(_describe_target(target_url, credentials, clock))
            # The handlers' JSON logs and metrics go to a file beside the report, not the terminal.
            log_path = out_dir / "pipeline.log"
            log = stack.enter_context(log_path.open("w"))
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(calls.observing())
            stack.enter_context(requests.observing())
            stack.enter_context(durations.observing_target())
            virtual = time_source if isinstance(time_source, VirtualClock) else None
            if virtual is not None:
                stack.enter_context(steps_on(virtual))  # the ingest's times too
            with durations.timing("Ingest"):
                job = _ingest(
                    local, source, client=client, api=api, mode=input_mode, clock=time_source, delta=delta
                )
            requests.counts["s3_put"] -= 1  # the drop itself (one PutObject) is the user's upload
            store = DynamoJobStore(local.jobs_table)

            def run_job(job: Mapping[str, Any]) -> Any:
                progress.validated(_stored(store, job["jobId"]))
                if not job.get("executionId"):
                    return None
                sfn = boto3.client("stepfunctions", region_name=REGION)
                execution_input = json.loads(sfn.describe_execution(executionArn=job["executionId"])["input"])
                return run_workflow(
                    execution_input,
                    clock=virtual,
                    handlers=durations.wrap(observed(workflow_handlers(), progress)),
                    # Real time: as long as Target takes (the poll deadline ends every batch).
                    timeout=300.0 if virtual else float("inf"),
                    poll_interval=0.005 if virtual else 0.5,
                )

            execution = run_job(job)
            record = _stored(store, job["jobId"])
            progress.finished(record)
            executions = [execution]
            child = None
            follow, redrive_info = _follow_up(local, store, record, redrive, time_source)
            if redrive_info is not None:
                progress.note(_describe_redrive(redrive_info))
            if follow and redrive_info is not None:
                progress.batches.clear()  # the re-drive job's batches are numbered from 1 again
                progress.rows.clear()
                with durations.timing("Ingest"):
                    child = local.deliver(redrive_info["key"], at=time_source.datetime())  # its S3 event
                executions.append(run_job(child))
                progress.finished(_stored(store, child["jobId"]))
            requests.on = False  # what follows is this command's reading, not the job's
            if state_dir is not None:
                save_state(state_dir, bucket=local.bucket, table=local.jobs_table, region=REGION)
            record = _stored(store, job["jobId"])
            files = _download(local, record, out_dir)
            transitions = _transitions(executions)
            invocations: Counter[str] = Counter({"Ingest": len(executions)})
            for run in executions:
                invocations.update(run.invocations if run else {})
            result = _job_result(store, record)
            if child is not None and redrive_info is not None:
                child_record = _stored(store, child["jobId"])
                (out_dir / "redrive").mkdir(exist_ok=True)  # the re-drive job's report
                child_files = _download(local, child_record, out_dir / "redrive")
                result["redrive"] = {**redrive_info, **_job_result(store, child_record), "files": child_files}
                result["combined"] = combined(result, redrive_info, result["redrive"])
            elif redrive_info is not None:
                result["redrive"] = redrive_info
            return {
                **result,
                "target_url": target_url,
                "clock": clock,
                # What the run spent: Step Functions bills transitions, Lambda invocations, Target
                # counts calls against the client's minute.
                "state_transitions": transitions,
                "lambda_invocations": {"Ingest": invocations.pop("Ingest"), **invocations},
                "target_calls": calls.by_endpoint(),
                # What the job would cost in AWS at list prices (profile_sync_local.costs).
                "cost": job_cost(transitions["total"], durations, requests),
                "elapsed_seconds": round(time_source.elapsed),
                "simulated_seconds": round(time_source.elapsed) if virtual else None,
                "real_seconds": round(sum(run.real_seconds for run in executions if run), 2),
                "files": {**files, "log": str(log_path)},
            }
    finally:
        os.environ.clear()
        os.environ.update(saved_env)


def _landing_not_run(record: Mapping[str, Any]) -> dict[str, Any]:
    """Why a job's record has no landing check: the setting, or the job never got that far."""
    if Settings.from_env().landing_check_sample_rows <= 0:
        return {"sampled": 0, "reason": "off (LANDING_CHECK_SAMPLE_ROWS is 0)"}
    return {"sampled": 0, "reason": f"not run: the job ended {record.get('status')}"}


_NO_TRANSITIONS = {"total": 0, "parent": 0, "child_executions": 0, "child_states": 0}


def _transitions(executions: list[Any]) -> dict[str, int]:
    """State transitions of every execution of the run (the job's, and its re-drive's)."""
    total = dict(_NO_TRANSITIONS)
    for execution in executions:
        for name, n in (execution.transitions if execution else {}).items():
            total[name] = total.get(name, 0) + n
    return total


def _job_result(store: DynamoJobStore, record: Mapping[str, Any]) -> dict[str, Any]:
    """One job's status, row account and batches, as the summary shows them."""
    batches = store.list_batches(record["jobId"])
    return {
        "status": record["status"],
        "jobId": record["jobId"],
        "reason": record.get("reason"),
        **{name: record.get(name, 0) for name in ("received", "rejected", "skipped", "unchanged")},
        **{name: record.get(name, 0) for name in ("succeeded", "failed", "not_found", "pending")},
        "duplicate_ids": record.get("duplicateIds", 0),
        "warnings": list(record.get("warnings") or []),
        "profile_version": record.get("profileVersion"),
        "delta": record.get("deltaUpdate"),
        # Did it land? (profile_sync.landing_step): the sample read back after the job ended.
        "landing_check": record.get("landingCheck") or _landing_not_run(record),
        **({"parent_job_id": record["parentJobId"]} if record.get("parentJobId") else {}),
        "duration_seconds": _seconds(record.get("createdAt"), record.get("finishedAt")),
        "batches": [
            {
                "index": b["batchIndex"],
                "rows": b["rows"],
                "status": b.get("status"),
                "polls": b.get("polls"),
                "reason": b.get("reason"),
            }
            for b in sorted(batches, key=lambda b: b["batchIndex"])
        ],
    }


def _seconds(start: str | None, end: str | None) -> int | None:
    """From the drop to the final status, on the run's clock."""
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())


def _follow_up(
    local: LocalResources,
    store: DynamoJobStore,
    record: Mapping[str, Any],
    redrive: tuple[str, ...],
    clock: VirtualClock | RealClock,
) -> tuple[bool, dict[str, Any] | None]:
    """The re-drive that follows the job in this run, and what it took (None: none).

    Finalize's automatic re-drive (REDRIVE_PENDING_AUTO) put its file in the bucket already: the
    stack's S3 event is delivered by the caller. --redrive's file is built and dropped here as
    `profile-sync redrive` does it against a deployed stack.
    """
    auto = record.get("autoRedrive") or {}
    if auto.get("key") and auto.get("rows"):
        picked = {"byOutcome": {PENDING: auto["rows"]}, "resentSucceeded": 0}
        return True, {"automatic": True, "key": auto["key"], "rows": auto["rows"], **picked}
    if not redrive:
        return False, ({"automatic": True, **auto} if auto else None)
    wanted = " or ".join(redrive)
    if record["status"] != JobStatus.COMPLETE_WITH_ERRORS:
        why = {
            JobStatus.COMPLETE: "every row succeeded",
            JobStatus.REJECTED: "the file was rejected: fix it and run it again",
            JobStatus.FAILED: "the job FAILED: fix what its reason names, then run the file again",
        }.get(record["status"], f"the job ended {record['status']}")
        return False, {"rows": 0, "skipped": f"nothing re-driven: {why}"}
    objects = S3ObjectStore(local.bucket)
    files = JobFiles(objects, record, store.list_batches(record["jobId"]))
    with tempfile.NamedTemporaryFile(suffix=".csv") as spool:
        built = build_redrive_file(files, redrive, spool)
        spool.flush()
        if not built.rows:
            skipped = f"nothing re-driven: the job has no {wanted} rows that can be listed"
            return False, {**built.to_dict(), "skipped": skipped}
        key = redrive_key(record, redrive, built.api_version)
        objects.upload_file(Path(spool.name), key, "text/csv; charset=utf-8")
    return True, {"automatic": False, "key": key, **built.to_dict()}


def _describe_redrive(info: Mapping[str, Any]) -> str:
    if info.get("skipped") or info.get("note") or info.get("error"):
        return str(info.get("skipped") or info.get("error") or info.get("note"))
    picked = ", ".join(f"{name} {n:,}" for name, n in info["byOutcome"].items() if n)
    how = "automatic re-drive (REDRIVE_PENDING_AUTO)" if info.get("automatic") else "re-drive"
    return f"{how}: {info['rows']:,} rows ({picked}) dropped as {info['key']}"


def combined(first: Mapping[str, Any], taken: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """The first job's rows after its re-drive: the rows re-driven count as the re-drive job ended them.

    received = rejected + skipped + unchanged + succeeded + failed + not_found + pending still holds
    for the file's rows. Re-sent whole v1 batches (not_found) held rows that had succeeded: those
    are taken out of the first job's succeeded, as the second job counts them again.
    """
    counts = {name: int(first.get(name) or 0) for name in ACCOUNT_FIELDS}
    for outcome, n in (taken.get("byOutcome") or {}).items():
        counts[outcome] -= n
    counts[SUCCEEDED] -= int(taken.get("resentSucceeded") or 0)
    for name in ACCOUNT_FIELDS[1:]:
        counts[name] += int(second.get(name) or 0)
    if second["status"] in (JobStatus.FAILED, JobStatus.REJECTED):
        status, reason = (
            JobStatus.FAILED,
            f"the re-drive job {second['jobId']} ended {second['status']}: {second.get('reason')}",
        )
    elif any(counts[name] for name in ("rejected", "failed", "not_found", "pending")):
        status, reason = JobStatus.COMPLETE_WITH_ERRORS, None
    else:
        status, reason = JobStatus.COMPLETE, None
    return {"status": status, "reason": reason, **counts}


class RealClock:
    """The wall clock, with the parts of VirtualClock's interface the run uses."""

    def __init__(self) -> None:
        self.start = time.time()

    def now(self) -> float:
        return time.time()

    time = now

    def datetime(self) -> datetime:
        return datetime.now(UTC)

    @property
    def elapsed(self) -> float:
        return time.time() - self.start


def _emulator_credentials(emulator: TargetEmulator, auth: str) -> dict:
    """The built-in emulator requires authentication with credentials it made."""
    emulator.configure(require_auth=True)
    return {"profile_token": DEFAULT_PROFILE_TOKEN} if auth == "token" else emulator.oauth_secret("local")


def _profile_token(credentials: dict) -> str:
    return str(credentials.get("profile_token") or "")


def _store_secret(credentials: dict) -> str:
    """The functions find their credentials in Secrets Manager, as in the deployed stack."""
    secrets = boto3.client("secretsmanager", region_name=REGION)
    return secrets.create_secret(Name="profile-sync/target", SecretString=json.dumps(credentials))["ARN"]


def _describe_target(url: str, credentials: dict | None, clock: str) -> str:
    if not credentials:
        auth = "no credentials (no Authorization header)"
    elif credentials.get("client_id"):
        auth = "OAuth server-to-server credentials"
    else:
        auth = "a profile token"
    host = urlsplit(url).netloc
    return f"Target at {host} with {auth}, on the {clock} clock"


class TargetCalls:
    """Target calls by endpoint and answer (HTTP status, or the transport error), seen on the wire.

    Every HTTP call the functions make through requests is a call to Target (its profile APIs,
    IMS and the profile token endpoint); AWS calls go through botocore, not requests.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def record(self, url: str, answer: str) -> None:
        with self._lock:
            self._counts[(endpoint_of(url), answer)] += 1

    def by_endpoint(self) -> dict[str, dict[str, int]]:
        with self._lock:
            counts = dict(self._counts)
        order = [name for _, name in _ENDPOINTS]
        result: dict[str, dict[str, int]] = {}
        for (endpoint, answer), n in sorted(
            counts.items(), key=lambda item: (order.index(item[0][0]), item[0][1])
        ):
            result.setdefault(endpoint, {})[answer] = n
        return result

    @contextlib.contextmanager
    def observing(self) -> Iterator[None]:
        calls = self
        send = HTTPAdapter.send  # moto's mock may have replaced it: wrap whatever is there

        def counted(adapter: HTTPAdapter, request: requests.PreparedRequest, *args, **kwargs):
            try:
                response = send(adapter, request, *args, **kwargs)
            except requests.RequestException as exc:
                calls.record(request.url or "", type(exc).__name__)
                raise
            calls.record(request.url or "", str(response.status_code))
            return response

        with mock.patch.object(HTTPAdapter, "send", counted):
            yield


# Path pattern -> endpoint, in the order the summary lists them.
_ENDPOINTS = (
    (re.compile(r"/ims/token(/v\d+)?$"), "ims"),
    (re.compile(r"/target/authentication/token$"), "token"),
    (re.compile(r"/profile/batchUpdate$"), "batchUpdate"),
    (re.compile(r"/profile/batchStatus$"), "batchStatus"),
    (re.compile(r"/profile/update$"), "update"),
    (re.compile(r"/rest/v1/profiles/"), "profiles"),
    (re.compile(r""), "other"),
)


def endpoint_of(url: str) -> str:
    """Target's endpoint a URL calls (from its path only: the query may hold visitor ids)."""
    path = urlsplit(url).path.rstrip("/")
    return next(name for pattern, name in _ENDPOINTS if pattern.search(path))


def _stored(store: DynamoJobStore, job_id: str) -> JobRecord:
    """The job's record, which the ingest has written."""
    job = store.get_job(job_id)
    if job is None:
        raise RuntimeError(f"job {job_id}: no record in the local jobs table")
    return job


def _ingest(
    local: LocalResources,
    source: Path,
    *,
    client: str,
    api: str | None,
    mode: str | None,
    clock: VirtualClock | RealClock,
    delta: bool = False,
) -> dict:
    options = (("api", api), ("mode", mode), ("delta", "on" if delta else None))
    folders = "".join(f"{name}={value}/" for name, value in options if value)
    return local.drop(f"incoming/{client}/{folders}{source.name}", source.read_bytes(), at=clock.datetime())


def _download(local: LocalResources, job: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    s3 = boto3.client("s3", region_name=REGION)
    files = {}
    for name, key in (
        ("summary", job.get("reportKey")),
        ("rows", job.get("reportRowsKey")),
        ("rejects", job.get("rejectsKey")),
    ):
        if key:
            path = out_dir / Path(key).name
            s3.download_file(local.bucket, key, str(path))
            files[name] = str(path)
    return files


def format_result(result: dict) -> str:
    lines = [f"job {result['jobId']}: {result['status']}"]
    if result.get("profile_version") is not None:
        lines[0] += f" (client profile v{result['profile_version']})"
    if result.get("reason"):
        lines.append(f"  reason: {result['reason']}")
    lines += [f"  warning: {warning}" for warning in result.get("warnings", [])]
    lines += _account_lines(result)
    if result.get("delta"):
        delta = result["delta"]
        lines.append(
            f"  delta snapshot: version {delta.get('version', '?')}, {delta.get('confirmed', 0):,} confirmed "
            "row(s) merged" + (f" ({delta['skipped']})" if delta.get("skipped") else "")
        )
    lines.append(f"  landed: {landing_line(result['landing_check'])}")
    lines += _batch_lines(result)
    if result.get("redrive"):
        lines += _redrive_lines(result)
    t = result["state_transitions"]
    lines.append(
        f"  state transitions {t['total']:,} (parent {t['parent']:,}; child executions started "
        f"{t['child_executions']:,}; in the child executions {t['child_states']:,})"
    )
    invocations = result["lambda_invocations"]
    lines.append(
        f"  Lambda invocations {sum(invocations.values()):,} ("
        + ", ".join(f"{name} {n:,}" for name, n in invocations.items())
        + ")"
    )
    calls = result["target_calls"]
    total = sum(n for answers in calls.values() for n in answers.values())
    per_endpoint = "; ".join(
        f"{endpoint} " + ", ".join(f"{answer} x{n:,}" for answer, n in answers.items())
        for endpoint, answers in calls.items()
    )
    lines.append(f"  Target calls {total:,}" + (f" ({per_endpoint})" if calls else ""))
    lines += format_cost(result["cost"])
    hours, rest = divmod(result["elapsed_seconds"], 3600)
    took = f"{hours}h {rest // 60:02d}m {rest % 60:02d}s"
    if result["clock"] == "virtual":
        lines.append(f"  would have taken {took}; ran in {result['real_seconds']} s")
    else:
        lines.append(f"  took {took}")
    for name, path in result["files"].items():
        lines.append(f"  {name}: {path}")
    return "\n".join(lines)


def _account_lines(result: Mapping[str, Any]) -> list[str]:
    lines = [f"  received   {result['received']:>10,}"]
    for name in ("rejected", "skipped", "unchanged", "succeeded", "failed", "not_found", "pending"):
        lines.append(f"  {name:<10} {result.get(name, 0):>10,}")
    return lines


def _batch_lines(result: Mapping[str, Any]) -> list[str]:
    # Rows Target counted without naming them (v1) are in no rows.csv line: the reason says so.
    return [
        f"  batch {batch['index']}: {batch['rows']:,} rows, {batch['status']}, "
        f"{batch['polls'] or 0} status polls" + (f": {batch['reason']}" if batch.get("reason") else "")
        for batch in result["batches"]
    ]


def _redrive_lines(result: Mapping[str, Any]) -> list[str]:
    redrive = result["redrive"]
    lines = [f"  {_describe_redrive(redrive)}"] + [f"  note: {note}" for note in redrive.get("notes") or ()]
    if not redrive.get("jobId"):
        return lines
    took = f", {redrive['duration_seconds']:,} s" if redrive.get("duration_seconds") is not None else ""
    lines.append(
        f"re-drive job {redrive['jobId']} (parentJobId {result['jobId']}{took}): {redrive['status']}"
    )
    if redrive.get("reason"):
        lines.append(f"  reason: {redrive['reason']}")
    lines += _account_lines(redrive)
    lines.append(f"  landed: {landing_line(redrive['landing_check'])}")
    lines += _batch_lines(redrive)
    lines += [f"  {name}: {path}" for name, path in (redrive.get("files") or {}).items()]
    both = result["combined"]
    lines.append(f"combined: the file's rows after the re-drive: {both['status']}")
    if both.get("reason"):
        lines.append(f"  reason: {both['reason']}")
    return lines + _account_lines(both)


def exit_code(result: dict) -> int:
    """The job's status, or with a re-drive the combined outcome of the file's rows."""
    status = (result.get("combined") or result)["status"]
    return {"COMPLETE": EXIT_COMPLETE, "COMPLETE_WITH_ERRORS": EXIT_WITH_ERRORS}.get(status, EXIT_FAILED)


def _local_profile(document: dict) -> dict:
    return {k: v for k, v in document.items() if k not in ("token_secret_id", "target_base_url")}
