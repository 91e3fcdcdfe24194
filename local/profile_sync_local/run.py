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
from profile_sync.model import JobRecord
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
            progress.validated(_stored(store, job["jobId"]))
            execution = None
            if job.get("executionId"):
                sfn = boto3.client("stepfunctions", region_name=REGION)
                execution_input = json.loads(sfn.describe_execution(executionArn=job["executionId"])["input"])
                execution = run_workflow(
                    execution_input,
                    clock=virtual,
                    handlers=durations.wrap(observed(workflow_handlers(), progress)),
                    # Real time: as long as Target takes (the poll deadline ends every batch).
                    timeout=300.0 if virtual else float("inf"),
                    poll_interval=0.005 if virtual else 0.5,
                )
            requests.on = False  # what follows is this command's reading, not the job's
            if state_dir is not None:
                save_state(state_dir, bucket=local.bucket, table=local.jobs_table, region=REGION)
            record = _stored(store, job["jobId"])
            progress.finished(record)
            batches = store.list_batches(record["jobId"])
            files = _download(local, record, out_dir)
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
                "target_url": target_url,
                "clock": clock,
                # What the run spent: Step Functions bills transitions, Lambda invocations, Target
                # counts calls against the client's minute.
                "state_transitions": execution.transitions if execution else _NO_TRANSITIONS,
                "lambda_invocations": {"Ingest": 1, **(execution.invocations if execution else {})},
                "target_calls": calls.by_endpoint(),
                # What the job would cost in AWS at list prices (profile_sync_local.costs).
                "cost": job_cost(
                    (execution.transitions if execution else _NO_TRANSITIONS)["total"], durations, requests
                ),
                "elapsed_seconds": round(time_source.elapsed),
                "simulated_seconds": round(time_source.elapsed) if virtual else None,
                "real_seconds": round(execution.real_seconds, 2) if execution else 0,
                "files": {**files, "log": str(log_path)},
            }
    finally:
        os.environ.clear()
        os.environ.update(saved_env)


def _landing_not_run(record: JobRecord) -> dict[str, Any]:
    """Why a job's record has no landing check: the setting, or the job never got that far."""
    if Settings.from_env().landing_check_sample_rows <= 0:
        return {"sampled": 0, "reason": "off (LANDING_CHECK_SAMPLE_ROWS is 0)"}
    return {"sampled": 0, "reason": f"not run: the job ended {record.get('status')}"}


_NO_TRANSITIONS = {"total": 0, "parent": 0, "child_executions": 0, "child_states": 0}


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
    lines.append(f"  received   {result['received']:>10,}")
    for name in ("rejected", "skipped", "unchanged", "succeeded", "failed", "not_found", "pending"):
        lines.append(f"  {name:<10} {result.get(name, 0):>10,}")
    if result.get("delta"):
        delta = result["delta"]
        lines.append(
            f"  delta snapshot: version {delta.get('version', '?')}, {delta.get('confirmed', 0):,} confirmed "
            "row(s) merged" + (f" ({delta['skipped']})" if delta.get("skipped") else "")
        )
    lines.append(f"  landed: {landing_line(result['landing_check'])}")
    for batch in result["batches"]:
        lines.append(
            f"  batch {batch['index']}: {batch['rows']:,} rows, {batch['status']}, "
            f"{batch['polls'] or 0} status polls" + (f": {batch['reason']}" if batch.get("reason") else "")
            # Rows Target counted without naming them (v1) are in no rows.csv line: the reason says so.
        )
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


def exit_code(result: dict) -> int:
    return {"COMPLETE": EXIT_COMPLETE, "COMPLETE_WITH_ERRORS": EXIT_WITH_ERRORS}.get(
        result["status"], EXIT_FAILED
    )


def _local_profile(document: dict) -> dict:
    return {k: v for k, v in document.items() if k not in ("token_secret_id", "target_base_url")}
