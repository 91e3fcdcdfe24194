"""The workflow steps' ports, built from the functions' environment (one set per warm container)."""

from __future__ import annotations

import os
import threading
from functools import cache

from profile_sync import clock
from profile_sync.adobe_target.client import CallStats, TargetClient
from profile_sync.aws.delta import DynamoSnapshotPointers
from profile_sync.aws.jobs import DynamoJobStore
from profile_sync.aws.notify import SnsNotifier
from profile_sync.aws.profiles import profile_store_from_settings
from profile_sync.aws.quota import DynamoDailyRowQuota, DynamoRollingQuota
from profile_sync.aws.ratelimit import DynamoDBRateLimiter
from profile_sync.aws.s3 import S3ObjectStore
from profile_sync.aws.secrets import token_provider_from_secret
from profile_sync.client_profiles import AccountLimiter, AccountQuota
from profile_sync.settings import Settings
from profile_sync.steps import Ports

_lock = threading.Lock()
# Target clients of this container, one per client code (token cache and call figures included).
_clients: dict[str, TargetClient] = {}


def take_target_stats() -> dict:
    """The call figures of every client since the last take (for this invocation's metrics)."""
    with _lock:
        clients = list(_clients.values())
    total: dict = dict.fromkeys(CallStats.FIELDS, 0) | {"latencies_ms": []}
    for client in clients:
        taken = client.stats.take()
        for field in CallStats.FIELDS:
            total[field] += taken[field]
        total["latencies_ms"] += taken["latencies_ms"]
    return total


@cache
def ports_from_env() -> Ports:
    settings = Settings.from_env()
    table = os.environ["JOBS_TABLE"]
    limiter = (
        DynamoDBRateLimiter(table, settings.calls_per_minute, clock=clock.now, sleep=clock.pause)
        if settings.calls_per_minute
        else None
    )
    _clients.clear()
    profiles = profile_store_from_settings(settings)

    def target(client_code: str) -> TargetClient:
        # One client (and token cache) per client code, shared by the threads of this container.
        # With a profile: its token secret, base URL and calls per minute, counted per account; a
        # new profile version gets a new client (its token may have changed).
        profile = profiles.get(client_code) if profiles else None
        key = client_code if profile is None else f"{client_code}#{profile.version}"
        with _lock:
            if key not in _clients:
                own, own_limiter = settings, limiter
                if profile is not None:
                    own = profile.settings(settings)
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

    daily_quota = DynamoDailyRowQuota(table, settings.daily_row_quota)
    single_quota = DynamoRollingQuota(table, settings.single_update_quota)
    if profiles is not None:
        daily_quota = AccountQuota(
            profiles, daily_quota, lambda limit: DynamoDailyRowQuota(table, limit), "daily_row_quota"
        )
        # Single updates: the stack's limit, counted per account.
        single_quota = AccountQuota(profiles, single_quota, lambda limit: None, "")

    return Ports(
        settings=settings,
        objects=S3ObjectStore(os.environ["DROP_BUCKET"]),
        jobs=DynamoJobStore(table, retention_days=settings.job_retention_days),
        target=target,
        daily_quota=daily_quota,
        single_quota=single_quota,
        notifier=SnsNotifier(os.environ.get("ALERT_TOPIC_ARN", "")),
        now=clock.now,
        snapshots=DynamoSnapshotPointers(table),
    )
