"""Ingest: an object created under incoming/<clientCode>/ becomes a validated, split job.

Thin handler: reads the EventBridge event, makes the work idempotent, and hands it to
profile_sync.ingest with the AWS adapters.
"""

from __future__ import annotations

import os
from dataclasses import asdict

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent, event_source
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from profile_sync import telemetry as m
from profile_sync.aws.delta import DynamoSnapshotPointers
from profile_sync.aws.jobs import DynamoJobStore
from profile_sync.aws.notify import SnsNotifier
from profile_sync.aws.profiles import profile_store_from_settings
from profile_sync.aws.s3 import S3ObjectStore
from profile_sync.aws.workflow import StepFunctionsWorkflow
from profile_sync.ingest import Drop, ingest_drop
from profile_sync.model import JobStatus
from profile_sync.settings import Settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()

settings = Settings.from_env()
jobs = DynamoJobStore(os.environ["JOBS_TABLE"], retention_days=settings.job_retention_days)
workflow = StepFunctionsWorkflow(os.environ["STATE_MACHINE_ARN"])
notifier = SnsNotifier(os.environ.get("ALERT_TOPIC_ARN", ""))
profiles = profile_store_from_settings(settings)  # None: no client profiles, the stack's defaults
snapshots = DynamoSnapshotPointers(os.environ["JOBS_TABLE"])  # delta sync's snapshot pointers
idempotency = IdempotencyConfig(
    # One S3 event (bucket, key, sequencer) is one job, however often EventBridge delivers it.
    event_key_jmespath="[bucket, key, sequencer, etag]",
    expires_after_seconds=7 * 24 * 3600,
    raise_on_no_idempotency_key=True,
)
persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])


@idempotent_function(data_keyword_argument="drop", persistence_store=persistence, config=idempotency)
def process_drop(drop: dict) -> dict:
    job = ingest_drop(
        Drop(**drop),
        objects=S3ObjectStore(drop["bucket"]),
        jobs=jobs,
        workflow=workflow,
        settings=settings,
        notifier=notifier,
        profiles=profiles,
        snapshots=snapshots,
    )
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


def _record_metrics(job: dict) -> None:
    m.count(metrics, m.FILES_RECEIVED)
    if job["status"] == JobStatus.REJECTED:
        m.count(metrics, m.FILES_REJECTED)
    elif job["status"] == JobStatus.FAILED:  # its workflow could not be started
        m.count(metrics, m.JOBS_FAILED)
    for name, field in (
        (m.ROWS_RECEIVED, "received"),
        (m.ROWS_REJECTED, "rejected"),
        (m.ROWS_SKIPPED, "skipped"),
        (m.ROWS_UNCHANGED, "unchanged"),
        (m.DUPLICATE_IDS, "duplicateIds"),
        (m.BATCHES_CREATED, "batchCount"),
    ):
        m.count(metrics, name, job.get(field) or 0)
    m.add_rejections_by_reason(job.get("reasons") or {})


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@event_source(data_class=S3EventBridgeNotificationEvent)
def lambda_handler(event: S3EventBridgeNotificationEvent, context: LambdaContext) -> dict:
    idempotency.register_lambda_context(context)
    # Events against files: the difference is duplicate deliveries that idempotency absorbed.
    m.count(metrics, m.DROP_EVENTS_RECEIVED)
    detail = event.detail
    drop = Drop(
        bucket=detail.bucket.name,
        key=detail.object.key,  # decoded: spaces, '+' and unicode arrive URL-encoded
        size=detail.object.size,
        sequencer=detail.object.get("sequencer", ""),
        etag=detail.object.etag,
        event_time=event.time,
    )
    # The job id is the correlation id of every log line of this job, here and in each workflow step.
    logger.set_correlation_id(drop.job_id())
    logger.append_keys(source_key=drop.key)
    return process_drop(drop=asdict(drop))
