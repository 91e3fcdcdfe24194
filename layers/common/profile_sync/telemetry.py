"""Every metric the pipeline emits: one namespace, names defined once, low-cardinality dimensions.

The handlers emit only names from METRICS; the dashboard and the alarms in template.yaml use the
same names (a test holds the three together). Values are counts, bytes and durations: never an id
or a profile value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from profile_sync.model import BatchEnd, RowOutcome

NAMESPACE = "TargetProfileSync"
REASON_DIMENSION = "reason"

# Ingest
DROP_EVENTS_RECEIVED = "DropEventsReceived"
FILES_RECEIVED = "FilesReceived"
FILES_REJECTED = "FilesRejected"
ROWS_RECEIVED = "RowsReceived"
ROWS_REJECTED = "RowsRejected"
ROWS_REJECTED_BY_REASON = "RowsRejectedByReason"  # dimension: reason (the engine's fixed codes)
ROWS_SKIPPED = "RowsSkipped"
ROWS_UNCHANGED = "RowsUnchanged"  # delta sync: values Target already confirmed, not sent
DUPLICATE_IDS = "DuplicateIds"
BATCHES_CREATED = "BatchesCreated"
# Quota
QUOTA_ROWS_RESERVED = "QuotaRowsReserved"
QUOTA_DEFERRED = "QuotaDeferred"
# Batches
BATCHES_SUBMITTED = "BatchesSubmitted"
STATUS_POLLS = "StatusPolls"
BATCHES_COMPLETED = "BatchesCompleted"
BATCHES_STUCK = "BatchesStuck"
BATCHES_TIMED_OUT = "BatchesTimedOut"
BATCHES_VANISHED = "BatchesVanished"
BATCHES_FAILED = "BatchesFailed"
SINGLE_UPDATE_CHUNKS = "SingleUpdateChunks"
# Row outcomes
ROWS_SUCCEEDED = "RowsSucceeded"
ROWS_FAILED = "RowsFailed"
ROWS_NOT_FOUND = "RowsNotFound"
ROWS_PENDING = "RowsPending"
# Target answers
TARGET_CALLS = "TargetCalls"
TARGET_THROTTLED = "TargetThrottled"  # 503 (Target's rate limit) and 429
TARGET_SERVER_ERRORS = "TargetServerErrors"  # other 5xx
TARGET_TRANSPORT_ERRORS = "TargetTransportErrors"  # time-outs, dropped connections
TARGET_RETRIES = "TargetRetries"
TARGET_REAUTHENTICATIONS = "TargetReauthentications"
TARGET_LATENCY = "TargetLatency"
# Jobs
JOBS_COMPLETED = "JobsCompleted"
JOBS_WITH_ERRORS = "JobsCompletedWithErrors"
JOBS_FAILED = "JobsFailed"
JOB_DURATION = "JobDuration"  # from the drop to the final status
# Did it land? The landing check's sampled profiles, by what Target showed (profile_sync.landing)
LANDING_VERIFIED = "LandingVerified"
LANDING_MISMATCHED = "LandingMismatched"
LANDING_NOT_VISIBLE = "LandingNotVisible"
LANDING_UNCHECKED = "LandingUnchecked"
# Delta sync (profile_sync.delta): confirmed rows merged into a client's snapshot after a job, and
# updates that failed (those rows are sent again next time).
DELTA_ROWS_CONFIRMED = "DeltaRowsConfirmed"
DELTA_UPDATES_FAILED = "DeltaUpdatesFailed"
# Alerts
NOTIFICATIONS_FAILED = "NotificationsFailed"  # SNS publishes that failed (best-effort: jobs go on)

METRICS = frozenset(
    {
        DROP_EVENTS_RECEIVED, FILES_RECEIVED, FILES_REJECTED, ROWS_RECEIVED, ROWS_REJECTED,
        ROWS_REJECTED_BY_REASON, ROWS_SKIPPED, ROWS_UNCHANGED, DUPLICATE_IDS, BATCHES_CREATED,
        QUOTA_ROWS_RESERVED, QUOTA_DEFERRED,
        BATCHES_SUBMITTED, STATUS_POLLS, BATCHES_COMPLETED, BATCHES_STUCK, BATCHES_TIMED_OUT,
        BATCHES_VANISHED, BATCHES_FAILED, SINGLE_UPDATE_CHUNKS,
        ROWS_SUCCEEDED, ROWS_FAILED, ROWS_NOT_FOUND, ROWS_PENDING,
        TARGET_CALLS, TARGET_THROTTLED, TARGET_SERVER_ERRORS, TARGET_TRANSPORT_ERRORS, TARGET_RETRIES,
        TARGET_REAUTHENTICATIONS, TARGET_LATENCY,
        JOBS_COMPLETED, JOBS_WITH_ERRORS, JOBS_FAILED, JOB_DURATION,
        LANDING_VERIFIED, LANDING_MISMATCHED, LANDING_NOT_VISIBLE, LANDING_UNCHECKED,
        DELTA_ROWS_CONFIRMED, DELTA_UPDATES_FAILED,
        NOTIFICATIONS_FAILED,
    }
)  # fmt: skip
# Dimensions beyond the service (Powertools adds "service" to every metric).
EXTRA_DIMENSIONS = {ROWS_REJECTED_BY_REASON: (REASON_DIMENSION,)}

ROW_METRICS = {
    RowOutcome.SUCCEEDED: ROWS_SUCCEEDED,
    RowOutcome.FAILED: ROWS_FAILED,
    RowOutcome.NOT_FOUND: ROWS_NOT_FOUND,
    RowOutcome.PENDING: ROWS_PENDING,
}
# How a batch ended -> its metric (a test holds it to every BatchEnd).
BATCH_END_METRICS = {
    BatchEnd.COMPLETE: BATCHES_COMPLETED,
    BatchEnd.STUCK: BATCHES_STUCK,
    BatchEnd.DEADLINE: BATCHES_TIMED_OUT,
    BatchEnd.VANISHED: BATCHES_VANISHED,
    BatchEnd.STATUS_FAILED: BATCHES_VANISHED,
    BatchEnd.SUBMIT_FAILED: BATCHES_FAILED,
    BatchEnd.MAYBE_ACCEPTED: BATCHES_VANISHED,  # Target may have the batch; its status can't be followed
    BatchEnd.AUTH_FAILED: BATCHES_FAILED,
    BatchEnd.NOT_SENT: BATCHES_FAILED,
    BatchEnd.STEP_FAILED: BATCHES_FAILED,
}
_CALL_METRICS = {
    "calls": TARGET_CALLS,
    "throttled": TARGET_THROTTLED,
    "server_errors": TARGET_SERVER_ERRORS,
    "transport_errors": TARGET_TRANSPORT_ERRORS,
    "retries": TARGET_RETRIES,
    "reauthentications": TARGET_REAUTHENTICATIONS,
}


# The landing check's figures (landing.tally keys) -> their metric.
LANDING_METRICS = {
    "verified": LANDING_VERIFIED,
    "mismatched": LANDING_MISMATCHED,
    "notVisible": LANDING_NOT_VISIBLE,
    "unchecked": LANDING_UNCHECKED,
}


def count(metrics: Metrics, name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def add_row_counts(metrics: Metrics, counts: Mapping[str, int]) -> None:
    """A batch's row outcomes as metrics."""
    for outcome, name in ROW_METRICS.items():
        count(metrics, name, counts.get(outcome, 0))


def add_delta_update(metrics: Metrics, delta: Mapping[str, object] | None) -> None:
    """A job's delta snapshot update (profile_sync.delta); zeros for a job without delta sync."""
    delta = delta or {}
    confirmed = delta.get("confirmed", 0)
    count(metrics, DELTA_ROWS_CONFIRMED, confirmed if isinstance(confirmed, int) else 0)
    count(metrics, DELTA_UPDATES_FAILED, 1 if delta.get("error") else 0)


def add_batch_end(metrics: Metrics, end: BatchEnd, counts: Mapping[str, int]) -> None:
    count(metrics, BATCH_END_METRICS[end])
    add_row_counts(metrics, counts)


def add_rejections_by_reason(reasons: dict[str, int]) -> None:
    """One metric per reason code: a dimension of its own, flushed apart from the handler's set."""
    for reason, rows in reasons.items():
        with single_metric(
            name=ROWS_REJECTED_BY_REASON, unit=MetricUnit.Count, value=rows, namespace=NAMESPACE
        ) as metric:
            metric.add_dimension(name=REASON_DIMENSION, value=reason)


def count_failed_notification() -> None:
    """Flushed at once: the notifier runs inside any handler, whatever metric set that one holds."""
    with single_metric(name=NOTIFICATIONS_FAILED, unit=MetricUnit.Count, value=1, namespace=NAMESPACE):
        pass


def add_target_calls(metrics: Metrics, stats: Mapping[str, Any]) -> None:
    """What the Target client saw during this invocation (CallStats.take())."""
    if not stats.get("calls"):
        return
    for field, name in _CALL_METRICS.items():
        if stats.get(field):
            count(metrics, name, stats[field])
    for latency in stats.get("latencies_ms", []):
        metrics.add_metric(name=TARGET_LATENCY, unit=MetricUnit.Milliseconds, value=latency)


def add_landing_check(metrics: Metrics, result: dict[str, Any]) -> None:
    """A finished landing check's sampled rows by outcome."""
    for key, name in LANDING_METRICS.items():
        count(metrics, name, int(result.get(key, 0)))
