"""Each function's ports, built from its environment: just the adapters its steps declare, once per
warm container.

A handler asks for its use case's ports (quota_ports(), bulk_ports(), ...) and gets nothing else:
a function that never calls Target builds no Target client, one that never notifies no SNS client.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Any

from profile_sync import clock
from profile_sync.adobe_target.client import CallStats, TargetClient
from profile_sync.adobe_target.ratelimit import RateLimiter
from profile_sync.aws.delta import DynamoSnapshotPointers
from profile_sync.aws.jobs import DynamoJobStore
from profile_sync.aws.notify import SnsNotifier
from profile_sync.aws.profiles import profile_store_from_settings
from profile_sync.aws.quota import DynamoDailyRowQuota, DynamoRollingQuota
from profile_sync.aws.ratelimit import DynamoDBRateLimiter
from profile_sync.aws.s3 import S3ObjectStore
from profile_sync.aws.secrets import token_provider_from_secret
from profile_sync.aws.workflow import StepFunctionsWorkflow
from profile_sync.client_profiles import AccountLimiter, AccountQuota, ProfileStore
from profile_sync.ingest import IngestPorts
from profile_sync.landing_step import LandingPorts
from profile_sync.ports import DailyRowQuota, RollingQuota, Target, TargetFor
from profile_sync.settings import Settings
from profile_sync.workflow.batch_end import RecordPorts
from profile_sync.workflow.bulk import BulkPorts
from profile_sync.workflow.quota import QuotaPorts
from profile_sync.workflow.report import DeltaPorts, ReportPorts
from profile_sync.workflow.single import SinglePorts

_lock = threading.Lock()
# Target clients of this container, one per client code (token cache and call figures included).
_clients: dict[str, TargetClient] = {}


# ------------------------------------------------------------------------------------- each use case
def quota_ports() -> QuotaPorts:
    return QuotaPorts(
        settings=settings(), jobs=_jobs(), daily_quota=_daily_quota(), notifier=_notifier(), now=clock.now
    )


def bulk_ports() -> BulkPorts:
    return BulkPorts(objects=_objects(), jobs=_jobs(), now=clock.now, settings=settings(), target=_targets())


def single_ports() -> SinglePorts:
    return SinglePorts(
        objects=_objects(),
        jobs=_jobs(),
        now=clock.now,
        settings=settings(),
        target=_targets(),
        single_quota=_single_quota(),
        notifier=_notifier(),
    )


def record_ports() -> RecordPorts:
    return RecordPorts(objects=_objects(), jobs=_jobs(), now=clock.now)


def report_ports(*, delta: bool = True, redrive: bool = False) -> ReportPorts:
    """`delta`: a delta sync job's report also updates the client's snapshot (finalize, job_failed);
    `redrive`: REDRIVE_PENDING_AUTO applies (finalize only: a failed job is never re-driven)."""
    return ReportPorts(
        objects=_objects(),
        jobs=_jobs(),
        now=clock.now,
        notifier=_notifier(),
        delta=(
            DeltaPorts(_snapshots(), settings().delta_merge_attempts, settings().delta_cleanup_grace_seconds)
            if delta
            else None
        ),
        redrive_pending_auto=bool(settings().redrive_pending_auto) if redrive else False,
    )


def landing_ports() -> LandingPorts:
    return LandingPorts(
        objects=_objects(), jobs=_jobs(), settings=settings(), target=_targets(), notifier=_notifier()
    )


def ingest_ports(bucket: str) -> IngestPorts:
    """Ingest reads the drop from the bucket its event names and writes the job's files beside it."""
    return IngestPorts(
        settings=settings(),
        objects=S3ObjectStore(bucket),
        jobs=_jobs(),
        workflow=_workflow(),
        notifier=_notifier(),
        profiles=_profiles(),
        snapshots=_snapshots(),
    )


def clear() -> None:
    """Forget every adapter built (tests and the local runner change the environment between runs)."""
    for built in (
        settings,
        _objects,
        _jobs,
        _notifier,
        _profiles,
        _snapshots,
        _workflow,
        _targets,
        _daily_quota,
        _single_quota,
    ):
        built.cache_clear()
    with _lock:
        _clients.clear()


def take_target_stats() -> dict[str, Any]:
    """The call figures of every client since the last take (for this invocation's metrics)."""
    with _lock:
        clients = list(_clients.values())
    total: dict[str, Any] = dict.fromkeys(CallStats.FIELDS, 0) | {"latencies_ms": []}
    for client in clients:
        taken = client.stats.take()
        for field in CallStats.FIELDS:
            total[field] += taken[field]
        total["latencies_ms"] += taken["latencies_ms"]
    return total


# ------------------------------------------------------------------------------------- adapters
@cache
def settings() -> Settings:
    return Settings.from_env()


def _table() -> str:
    return os.environ["JOBS_TABLE"]


@cache
def _objects() -> S3ObjectStore:
    return S3ObjectStore(os.environ["DROP_BUCKET"])


@cache
def _jobs() -> DynamoJobStore:
    return DynamoJobStore(_table(), retention_days=settings().job_retention_days)


@cache
def _workflow() -> StepFunctionsWorkflow:
    return StepFunctionsWorkflow(os.environ["STATE_MACHINE_ARN"])


@cache
def _notifier() -> SnsNotifier:
    return SnsNotifier(os.environ.get("ALERT_TOPIC_ARN", ""))


@cache
def _profiles() -> ProfileStore | None:
    """The client profiles; None: there are none, the stack's settings apply to every client."""
    return profile_store_from_settings(settings())


@cache
def _snapshots() -> DynamoSnapshotPointers:
    """Delta sync's snapshot pointers (profile_sync.delta), in the jobs table."""
    return DynamoSnapshotPointers(_table())


@cache
def _daily_quota() -> DailyRowQuota:
    own = settings()
    quota: DailyRowQuota = DynamoDailyRowQuota(_table(), own.daily_row_quota)
    profiles = _profiles()
    if profiles is not None:
        quota = AccountQuota(
            profiles, quota, lambda limit: DynamoDailyRowQuota(_table(), limit), "daily_row_quota"
        )
    return quota


@cache
def _single_quota() -> RollingQuota:
    quota: RollingQuota = DynamoRollingQuota(_table(), settings().single_update_quota)
    profiles = _profiles()
    if profiles is not None:  # single updates: the stack's limit, counted per account
        quota = AccountQuota(profiles, quota, lambda limit: DynamoRollingQuota(_table(), limit), "")
    return quota


@cache
def _targets() -> TargetFor:
    base = settings()
    table = _table()
    limiter: RateLimiter | None = (
        DynamoDBRateLimiter(table, base.calls_per_minute, clock=clock.now, sleep=clock.pause)
        if base.calls_per_minute
        else None
    )
    with _lock:
        _clients.clear()
    profiles = _profiles()

    def target(client_code: str) -> Target:
        # One client (and token cache) per client code, shared by the threads of this container.
        # With a profile: its token secret, base URL and calls per minute, counted per account; a
        # new profile version gets a new client (its token may have changed).
        profile = profiles.get(client_code) if profiles else None
        key = client_code if profile is None else f"{client_code}#{profile.version}"
        with _lock:
            if key not in _clients:
                own, own_limiter = base, limiter
                if profile is not None:
                    own = profile.settings(base)
                    own_limiter = (
                        AccountLimiter(
                            DynamoDBRateLimiter(
                                table, own.calls_per_minute, clock=clock.now, sleep=clock.pause
                            ),
                            profile.account,
                        )
                        if own.calls_per_minute
                        else None
                    )
                auth = token_provider_from_secret(own.token_secret_id)
                _clients[key] = TargetClient.from_settings(
                    own, client_code, auth=auth, limiter=own_limiter, sleep=clock.pause
                )
            return _clients[key]

    return target
