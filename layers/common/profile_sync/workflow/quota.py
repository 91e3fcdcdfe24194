"""The daily row quota of the bulk API: reserve a batch's rows before it is sent, or wait for the next day."""

from __future__ import annotations

from dataclasses import dataclass

from profile_sync.model import BatchItem, BatchRecord, BatchStatus, JobRecord, QuotaResult
from profile_sync.ports import Clock, DailyRowQuota, JobStore, Notifier
from profile_sync.quota import QuotaDecision, utc_day
from profile_sync.settings import Settings


@dataclass(frozen=True)
class QuotaPorts:
    settings: Settings
    jobs: JobStore
    daily_quota: DailyRowQuota
    notifier: Notifier
    now: Clock


def reserve_quota(ports: QuotaPorts, item: BatchItem) -> QuotaResult:
    """Reserve the batch's rows in the client's daily quota (idempotent per job and batch).

    The batch record remembers the day it was granted on, so a retry after midnight finds it
    instead of counting the rows again on the new day.
    """
    job_id, batch = item["jobId"], item["batch"]
    now = ports.now()
    # A client profile may set a quota where the stack has none (AccountQuota.per_client).
    if ports.settings.daily_row_quota or getattr(ports.daily_quota, "per_client", False):
        reserved_on = (ports.jobs.get_batch(job_id, batch["batchIndex"]) or BatchRecord()).get(
            "quotaReservedOn"
        )
        if reserved_on and reserved_on != utc_day(now):
            # Granted on an earlier day by a try whose answer was lost: not counted again today.
            return QuotaDecision(True, 0, 0, ports.settings.daily_row_quota, reserved_on).to_dict()
    decision = ports.daily_quota.reserve(
        item["clientCode"], f"{job_id}#{batch['batchIndex']}", batch["rows"], now
    )
    if not decision.granted:
        note_quota_wait(ports.jobs, ports.notifier, item, decision)
    elif decision.limit:  # quota on: remember the day it was granted on
        ports.jobs.update_batch(job_id, batch["batchIndex"], {"quotaReservedOn": decision.window})
    return decision.to_dict()


def note_quota_wait(jobs: JobStore, notifier: Notifier, item: BatchItem, decision: QuotaDecision) -> None:
    """The batch waits for quota (daily rows, or single updates' rolling 24 h): on its record, and
    one message per job however many batches wait, marked sent once it was published."""
    job_id, index = item["jobId"], item["batch"]["batchIndex"]
    jobs.update_batch(
        job_id, index, {"status": BatchStatus.WAITING_FOR_QUOTA, "quotaWaitSeconds": decision.wait_seconds}
    )
    job = jobs.get_job(job_id) or JobRecord()
    if not job.get("quotaWaitNotified") and notifier.notify(
        f"target-profile-sync: job {job_id} waits for the daily quota",
        f"Job {job_id} ({job.get('sourceKey', '?')}) has used the client's daily quota "
        f"({decision.used:,} of {decision.limit:,} rows on {decision.window}). Its remaining "
        f"batches wait about {decision.wait_seconds // 3600} h for the next UTC day and then go on "
        "by themselves.",
    ):
        jobs.update_job(job_id, {"quotaWaitNotified": True})
