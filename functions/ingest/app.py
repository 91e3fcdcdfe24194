"""Ingest: an object created under incoming/<clientCode>/ becomes a validated, split job.

Thin handler: reads the EventBridge event, makes the work idempotent (one S3 event is one job,
however often EventBridge delivers it), and hands it to profile_sync.ingest with its ports.
"""

from __future__ import annotations

import os

from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent, event_source
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import telemetry as m
from profile_sync.aws import ports
from profile_sync.aws.invocation import LambdaFunction
from profile_sync.ingest import Drop, ingest_drop
from profile_sync.model import JobRecord, JobStatus

# The correlation id is the job id, known once the event is read (see lambda_handler). Not a workflow
# step: Lambda retries the event on any error.
function = LambdaFunction(correlation_id_path=None, workflow_step=False)
logger, metrics = function.logger, function.metrics

idempotency = IdempotencyConfig(
    # One S3 event (bucket, key, sequencer) is one job, however often EventBridge delivers it.
    event_key_jmespath="[bucket, key, sequencer, etag]",
    expires_after_seconds=7 * 24 * 3600,
    raise_on_no_idempotency_key=True,
)
persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])


@idempotent_function(data_keyword_argument="drop", persistence_store=persistence, config=idempotency)
def process_drop(drop: Drop) -> dict[str, object]:
    job = ingest_drop(drop, ports.ingest_ports(drop.bucket))
    _record_metrics(job)
    logger.info(
        "ingest finished",
        extra={
            "status": job["status"],
            "received": job.get("received"),
            "accepted": job.get("accepted"),
            "rejected": job.get("rejected"),
            "skipped": job.get("skipped"),
            "unchanged": job.get("unchanged"),
            "batches": job.get("batchCount"),
            "reason": job.get("reason"),
        },
    )
    return {key: job.get(key) for key in ("jobId", "status", "batchCount", "reason", "executionId")}


def _record_metrics(job: JobRecord) -> None:
    m.count(metrics, m.FILES_RECEIVED)
    if job["status"] == JobStatus.REJECTED:
        m.count(metrics, m.FILES_REJECTED)
    elif job["status"] == JobStatus.FAILED:  # its workflow could not be started
        m.count(metrics, m.JOBS_FAILED)
    for name, value in (
        (m.ROWS_RECEIVED, job.get("received")),
        (m.ROWS_REJECTED, job.get("rejected")),
        (m.ROWS_SKIPPED, job.get("skipped")),
        (m.ROWS_UNCHANGED, job.get("unchanged")),
        (m.DUPLICATE_IDS, job.get("duplicateIds")),
        (m.BATCHES_CREATED, job.get("batchCount")),
    ):
        m.count(metrics, name, value or 0)
    m.add_rejections_by_reason(job.get("reasons") or {})


@function.handler
@event_source(data_class=S3EventBridgeNotificationEvent)
def lambda_handler(event: S3EventBridgeNotificationEvent, context: LambdaContext) -> dict[str, object]:
    idempotency.register_lambda_context(context)
    # Events against files: the difference is duplicate deliveries that idempotency absorbed.
    m.count(metrics, m.DROP_EVENTS_RECEIVED)
    detail = event.detail
    drop = Drop(
        bucket=detail.bucket.name,
        key=detail.object.key,  # decoded: spaces, '+' and unicode arrive URL-encoded
        size=detail.object.size,
        sequencer=detail.object.get("sequencer") or "",
        etag=detail.object.etag,
        event_time=event.time,
    )
    # The job id is the correlation id of every log line of this job, here and in each workflow step.
    logger.set_correlation_id(drop.job_id())
    logger.append_keys(source_key=drop.key)
    return process_drop(drop=drop)
