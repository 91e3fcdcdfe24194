"""The workflow's landing check (profile_sync.landing), over the steps' ports.

check_landing runs once per round, called by the state machine after Finalize, which waits
between rounds (a Wait state: the Lambda never sleeps). (The automatic re-drive of pending rows,
REDRIVE_PENDING_AUTO, is Finalize's: profile_sync.redrive.auto_redrive_pending.) Its first call
draws the sample and stores it under the job's prefix (landing/sample.json: ids and the values
sent, like the batch files); each later call reads once what did not verify yet. The last round
writes the figures to the job record and the report (summary.json's landingCheck and
landingRows: lines and attribute names, never values) and sends a notice when the share that
did not verify is above LANDING_CHECK_ALERT_SHARE.

A check that cannot run never changes the job's status: it says why in landingCheck.reason.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from profile_sync import landing
from profile_sync.job_rows import JobFiles
from profile_sync.model import JobKeys, JobStatus, StepError
from profile_sync.ports import JobStore, Notifier, ObjectStore, TargetFor
from profile_sync.settings import Settings
from profile_sync.workflow.common import error_reason

CHECKED_STATUSES = (JobStatus.COMPLETE, JobStatus.COMPLETE_WITH_ERRORS)


@dataclass(frozen=True)
class LandingPorts:
    """The job's files and records, Target's profile fetch, a person to tell."""

    objects: ObjectStore
    jobs: JobStore
    settings: Settings
    target: TargetFor
    notifier: Notifier


Ports = LandingPorts


def sample_key(job_id: str) -> str:
    return f"{JobKeys(job_id).prefix}landing/sample.json"


def check_landing(ports: Ports, job_id: str, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """One round of the check; returns {"done", "round", "waitSeconds"} (and "result" when done)."""
    settings = ports.settings
    job = ports.jobs.get_job(job_id)
    if job is None:
        raise LookupError(f"job {job_id} not found")
    round_ = int((state or {}).get("round") or 0)
    if round_ == 0:
        return _start(ports, job, rng=random.Random())
    sample = landing.Sample.from_dict(_as_dict(ports.objects.get_json(sample_key(job_id))))
    stopped = landing.read_round(sample.rows, ports.target(job["clientCode"]).fetch_profile)
    ports.objects.put_json(sample_key(job_id), sample.to_dict())
    if stopped or not landing.unsettled(sample.rows) or round_ > settings.landing_check_retries:
        result = landing.tally(sample, rounds=round_, stopped=stopped)
        _finish(ports, job, result, landing.rows_report(sample))
        return {"done": True, "round": round_, "waitSeconds": 0, "result": result}
    reading = {"status": "READING", "sampled": len(sample.rows), "round": round_}
    ports.jobs.update_job(job_id, {"landingCheck": reading})
    return {"done": False, "round": round_ + 1, "waitSeconds": max(1, settings.landing_check_delay_seconds)}


def _start(ports: Ports, job: Mapping[str, Any], *, rng: random.Random) -> dict[str, Any]:
    settings = ports.settings
    size = settings.landing_check_sample_rows
    skip = None
    if size <= 0:
        skip = "off (LANDING_CHECK_SAMPLE_ROWS is 0)"
    elif job.get("status") not in CHECKED_STATUSES:
        skip = f"not run: the job ended {job.get('status')}"
    elif not int(job.get("succeeded") or 0):
        skip = "not run: no row of the job succeeded"
    if skip is None:
        files = JobFiles(ports.objects, job, ports.jobs.list_batches(job["jobId"]))
        sample = landing.draw_sample(files, size, rng)
        if not sample.rows:
            skip = "not run: no succeeded row can be told from the others (Target counted them without names)"
    if skip is not None:
        result = {"sampled": 0, "reason": skip}
        _finish(ports, job, result, [], notify=False)
        return {"done": True, "round": 0, "waitSeconds": 0, "result": result}
    ports.objects.put_json(sample_key(job["jobId"]), sample.to_dict())
    ports.jobs.update_job(
        job["jobId"], {"landingCheck": {"status": "WAITING", "sampled": len(sample.rows), "round": 0}}
    )
    return {"done": False, "round": 1, "waitSeconds": max(1, settings.landing_check_delay_seconds)}


def _finish(
    ports: Ports,
    job: Mapping[str, Any],
    result: dict[str, Any],
    rows: list[dict[str, Any]],
    *,
    notify: bool = True,
) -> None:
    record = {"status": "DONE", **result}
    ports.jobs.update_job(job["jobId"], {"landingCheck": record})
    if job.get("reportKey"):
        summary = _as_dict(ports.objects.get_json(job["reportKey"]))
        summary["landingCheck"] = {**record, "notVerifiedShare": round(landing.not_verified_share(result), 4)}
        summary["landingRows"] = rows
        ports.objects.put_json(job["reportKey"], summary)
    share = ports.settings.landing_check_alert_share
    if notify and landing.alert_needed(result, share):
        ports.notifier.notify(landing.alert_subject(job, result), landing.alert_message(job, result, share))


def landing_check_failed(ports: Ports, job_id: str, error: StepError) -> dict[str, Any]:
    """The check's steps failed for good: the reason goes on the job record, its status stays."""
    result = {"sampled": 0, "reason": f"the check failed: {error_reason(error)}"}
    ports.jobs.update_job(job_id, {"landingCheck": {"status": "FAILED", **result}})
    return {"done": True, "round": 0, "waitSeconds": 0, "result": result}


def execution_ended(jobs: JobStore, job: Mapping[str, Any], how: str) -> bool:
    """An execution that ended (stopped by hand, timed out) after its job's final status was in its
    landing check: the job keeps its status, the check says it was cut short. False: the job had
    no final status (the caller fails it)."""
    if job.get("status") not in CHECKED_STATUSES:
        return False
    if (job.get("landingCheck") or {}).get("status") != "DONE":
        reason = f"not finished: the execution ended {how} during the check"
        jobs.update_job(job["jobId"], {"landingCheck": {"status": "FAILED", "sampled": 0, "reason": reason}})
    return True


def _as_dict(document: object) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object")
    return document
