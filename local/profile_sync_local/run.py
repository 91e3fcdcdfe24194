"""`profile-sync run`: the pipeline as deployed, on one machine.

The template's resources in a moto server on loopback (reached over HTTP), the real ingest and step
handlers, the real state machine definition executed by moto on a virtual clock, and the Target
emulator on loopback (or a Target URL the user names). A job that would poll for hours finishes in
seconds; the summary says how long it would have taken.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import boto3

from profile_sync.aws.jobs import DynamoJobStore
from profile_sync_local.emulator import DEFAULT_PROFILE_TOKEN, EmulatorConfig, TargetEmulator
from profile_sync_local.local_stack import (
    REGION,
    LocalStack,
    local_aws,
    run_workflow,
    steps_on,
    workflow_handlers,
)
from profile_sync_local.progress import Progress, observed
from profile_sync_local.sfn_local import VirtualClock

EXIT_COMPLETE, EXIT_WITH_ERRORS, EXIT_FAILED = 0, 1, 2
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
) -> dict:
    """Run one file through the whole pipeline; returns the job's result (and writes the reports)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clock = VirtualClock(start=datetime.now(UTC).replace(microsecond=0))
    progress = Progress(progress_stream or io.StringIO(), clock.now)
    # Handlers share Powertools' metric set when they run as threads of one process (never so in
    # Lambda); a flush can then find it emptied by another: harmless here, so not shown.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    saved_env = dict(os.environ)
    os.environ.update(_LOCAL_ENV | (settings_env or {}))
    try:
        with local_aws(), contextlib.ExitStack() as stack:
            local = LocalStack().create()
            os.environ.update(local.env())
            if target_url is None:
                emulator = stack.enter_context(
                    TargetEmulator(emulator_config or EmulatorConfig(seed=1), clock=clock.time)
                )
                target_url = emulator.url
            else:
                emulator = None
            os.environ["TARGET_BASE_URL"] = target_url
            if emulator is not None and auth != "none":
                os.environ["TOKEN_SECRET_ID"] = _auth_secret(emulator, auth)
            # The handlers' JSON logs and metrics go to a file beside the report, not the terminal.
            log_path = out_dir / "pipeline.log"
            log = stack.enter_context(log_path.open("w"))
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(steps_on(clock))  # the ingest's times too
            job = _ingest(local, source, client=client, api=api, mode=input_mode, clock=clock)
            store = DynamoJobStore(local.jobs_table)
            progress.validated(store.get_job(job["jobId"]))
            execution = None
            if job.get("executionId"):
                sfn = boto3.client("stepfunctions", region_name=REGION)
                execution_input = json.loads(sfn.describe_execution(executionArn=job["executionId"])["input"])
                execution = run_workflow(
                    execution_input, clock=clock, handlers=observed(workflow_handlers(), progress)
                )
            job = store.get_job(job["jobId"])
            progress.finished(job)
            batches = store.list_batches(job["jobId"])
            files = _download(local, job, out_dir)
            return {
                "status": job["status"],
                "jobId": job["jobId"],
                "reason": job.get("reason"),
                **{name: job.get(name, 0) for name in ("received", "rejected", "skipped")},
                **{name: job.get(name, 0) for name in ("succeeded", "failed", "not_found", "pending")},
                "duplicate_ids": job.get("duplicateIds", 0),
                "batches": [
                    {
                        "index": b["batchIndex"],
                        "rows": b["rows"],
                        "status": b.get("status"),
                        "polls": b.get("polls"),
                    }
                    for b in sorted(batches, key=lambda b: b["batchIndex"])
                ],
                "target_calls": dict(emulator.calls) if emulator else None,
                "state_transitions": execution.state_transitions if execution else 0,
                "simulated_seconds": round(clock.elapsed),
                "real_seconds": round(execution.real_seconds, 2) if execution else 0,
                "files": {**files, "log": str(log_path)},
            }
    finally:
        os.environ.clear()
        os.environ.update(saved_env)


def _auth_secret(emulator: TargetEmulator, auth: str) -> str:
    """Target requires authentication; the functions find their credentials in Secrets Manager."""
    emulator.configure(require_auth=True)
    value = {"profile_token": DEFAULT_PROFILE_TOKEN} if auth == "token" else emulator.oauth_secret("local")
    secrets = boto3.client("secretsmanager", region_name=REGION)
    return secrets.create_secret(Name="profile-sync/target", SecretString=json.dumps(value))["ARN"]


def _ingest(
    local: LocalStack, source: Path, *, client: str, api: str | None, mode: str | None, clock: VirtualClock
) -> dict:
    folders = "".join(f"{name}={value}/" for name, value in (("api", api), ("mode", mode)) if value)
    return local.drop(f"incoming/{client}/{folders}{source.name}", source.read_bytes(), at=clock.datetime())


def _download(local: LocalStack, job: dict, out_dir: Path) -> dict[str, str]:
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
    if result.get("reason"):
        lines.append(f"  reason: {result['reason']}")
    lines.append(f"  received   {result['received']:>10,}")
    for name in ("rejected", "skipped", "succeeded", "failed", "not_found", "pending"):
        lines.append(f"  {name:<10} {result[name]:>10,}")
    for batch in result["batches"]:
        lines.append(
            f"  batch {batch['index']}: {batch['rows']:,} rows, {batch['status']}, "
            f"{batch['polls'] or 0} status polls"
        )
    if result["target_calls"] is not None:
        # The emulator also counts calls by version ("batchUpdate.v2"): the totals are enough here.
        calls = ", ".join(f"{k} {v}" for k, v in sorted(result["target_calls"].items()) if "." not in k)
        lines.append(f"  Target calls: {calls}")
    hours, rest = divmod(result["simulated_seconds"], 3600)
    lines.append(f"  would have taken {hours}h {rest // 60:02d}m; ran in {result['real_seconds']} s")
    for name, path in result["files"].items():
        lines.append(f"  {name}: {path}")
    return "\n".join(lines)


def exit_code(result: dict) -> int:
    return {"COMPLETE": EXIT_COMPLETE, "COMPLETE_WITH_ERRORS": EXIT_WITH_ERRORS}.get(
        result["status"], EXIT_FAILED
    )
