"""Quotas: Target's rows per client per UTC day (bulk) and single updates per rolling 24 h.

A reservation is idempotent by its id (job + batch): a retried step never counts twice. When the
quota is spent the answer says how long to wait, so the workflow waits instead of failing. The
quotas themselves are ports (profile_sync.ports: DailyRowQuota, RollingQuota).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from profile_sync.model import QuotaResult

DAY = 24 * 3600
HOUR = 3600


class QuotaTooSmall(Exception):
    """A single reservation is larger than the whole quota: waiting would never help."""


@dataclass(frozen=True)
class QuotaDecision:
    granted: bool
    wait_seconds: int  # 0 when granted
    used: int  # after this decision
    limit: int  # 0 = quota off
    window: str  # the UTC day ("2026-11-28") or "rolling-24h"

    def to_dict(self) -> QuotaResult:
        return {
            "granted": self.granted,
            "waitSeconds": self.wait_seconds,
            "used": self.used,
            "limit": self.limit,
            "window": self.window,
        }


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def seconds_until_next_utc_day(now: float) -> int:
    moment = datetime.fromtimestamp(now, UTC)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    # A minute past midnight, so clocks a little apart still agree that the day has turned.
    return int((midnight - moment).total_seconds()) + 60


def hour_bucket(now: float) -> int:
    return int(now // HOUR) * HOUR


def rolling_wait_seconds(buckets: dict[int, int], now: float, needed: int, limit: int) -> int:
    """How long until enough of the oldest hourly buckets leave the 24 h window to fit `needed`."""
    used = sum(buckets.values())
    for bucket in sorted(buckets):
        used -= buckets[bucket]
        if used + needed <= limit:
            return max(60, int(bucket + DAY - now) + 60)
    return DAY


def check_fits(rows: int, limit: int, what: str) -> None:
    if limit and rows > limit:
        raise QuotaTooSmall(f"{rows:,} {what} can never fit in a quota of {limit:,}: lower the batch size")
