"""In-memory fakes of the ports (profile_sync.ports), no kinder than the adapters they stand for.

What the real thing does and these do too: an S3 body can't be read once closed and a missing key
is an error; DynamoDB hands back copies (a caller's later edit changes nothing stored), refuses
floats, drops None values, and a conditional write whose condition fails writes nothing; Target
reads the whole body it is sent and answers each call from what the test queued, raising the typed
errors; quotas are idempotent per reservation id and spent quota is refused with a wait.
"""

from __future__ import annotations

import copy
import io
import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from profile_sync import clock
from profile_sync.adobe_target.client import SingleUpdateResult, SubmitResult
from profile_sync.adobe_target.responses import BatchStatus
from profile_sync.ingest import IngestPorts
from profile_sync.model import BatchRecord, JobRecord
from profile_sync.model import BatchStatus as RecordStatus
from profile_sync.quota import (
    DAY,
    QuotaDecision,
    check_fits,
    hour_bucket,
    rolling_wait_seconds,
    seconds_until_next_utc_day,
    utc_day,
)
from profile_sync.settings import Settings
from profile_sync.workflow.batch_end import RecordPorts
from profile_sync.workflow.bulk import BulkPorts
from profile_sync.workflow.quota import QuotaPorts
from profile_sync.workflow.report import ReportPorts
from profile_sync.workflow.single import SinglePorts

OFF = "off"


class FakeObjects:
    """One S3 bucket."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}
        self.failing_reads: set[str] = set()  # keys whose GetObject fails (an S3 error)

    def open(self, key: str) -> BinaryIO:
        if key in self.failing_reads:
            raise OSError(f"GetObject {key}: InternalError (injected)")
        if key not in self.objects:
            raise FileNotFoundError(key)
        return io.BufferedReader(io.BytesIO(self.objects[key]))  # read after close: ValueError

    def upload_file(self, path: Path, key: str, content_type: str) -> None:
        self.objects[key] = Path(path).read_bytes()
        self.content_types[key] = content_type

    def put_json(self, key: str, document: object) -> None:
        self.objects[key] = json.dumps(document, separators=(",", ":")).encode()  # TypeError if not JSON
        self.content_types[key] = "application/json"

    def get_json(self, key: str) -> Any:
        if key not in self.objects:
            raise FileNotFoundError(key)
        return json.loads(self.objects[key])

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))  # S3 lists in key order

    def text(self, key: str) -> str:
        return self.objects[key].decode()


def _stored(value: Any) -> Any:
    """A value as DynamoDB stores it: plain JSON types (a StrEnum is its string), floats refused."""

    def check(item: Any) -> None:
        if isinstance(item, float):
            raise TypeError("Float types are not supported. Use Decimal types instead.")
        if isinstance(item, dict):
            for inner in item.values():
                check(inner)
        elif isinstance(item, (list, tuple)):
            for inner in item:
                check(inner)

    check(value)
    return json.loads(json.dumps(value))


class FakeJobs:
    """The jobs table: job and batch records."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.batches: dict[tuple[str, int], dict[str, Any]] = {}
        self.writes = 0

    def create_job(self, job: JobRecord) -> bool:
        if job["jobId"] in self.jobs:
            return False
        self.jobs[job["jobId"]] = _stored(dict(job))
        self.writes += 1
        return True

    def get_job(self, job_id: str) -> JobRecord | None:
        return copy.deepcopy(self.jobs.get(job_id))  # type: ignore[return-value]

    def update_job(
        self, job_id: str, changes: Mapping[str, Any], *, expect: Mapping[str, Any] | None = None
    ) -> bool:
        return self._update(self.jobs, job_id, {"jobId": job_id}, changes, expect)

    def put_batches(self, job_id: str, batches: list[Any]) -> None:
        for batch in batches:
            self.batches[(job_id, batch["batchIndex"])] = _stored({"status": RecordStatus.PENDING, **batch})
            self.writes += 1

    def get_batch(self, job_id: str, index: int) -> BatchRecord | None:
        return copy.deepcopy(self.batches.get((job_id, index)))  # type: ignore[return-value]

    def update_batch(
        self, job_id: str, index: int, changes: Mapping[str, Any], *, expect: Mapping[str, Any] | None = None
    ) -> bool:
        return self._update(
            self.batches, (job_id, index), {"jobId": job_id, "batchIndex": index}, changes, expect
        )

    def list_batches(self, job_id: str) -> list[BatchRecord]:
        found = [copy.deepcopy(b) for (owner, _), b in sorted(self.batches.items()) if owner == job_id]
        return found  # type: ignore[return-value]

    def _update(
        self,
        table: dict[Any, dict[str, Any]],
        key: Any,
        new_item: dict[str, Any],
        changes: Mapping[str, Any],
        expect: Mapping[str, Any] | None,
    ) -> bool:
        # As DynamoJobStore: None values are not written; UpdateItem creates a missing item; a falsy
        # expected value means "absent or equal".
        values = _stored({k: v for k, v in changes.items() if v is not None})
        current = table.get(key)
        for name, wanted in (expect or {}).items():
            held = (current or {}).get(name)
            if not (held == _stored(wanted) or (not wanted and name not in (current or {}))):
                return False
        if not values:
            return True
        table.setdefault(key, dict(new_item)).update(values)
        self.writes += 1
        return True


@dataclass
class FakeWorkflow:
    """Step Functions: an execution per name; a second start of the same name finds the first."""

    started: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    failures: list[Exception] = field(default_factory=list)  # raised by the next starts, in order

    def start(self, name: str, payload: Mapping[str, Any]) -> str:
        if self.failures:
            raise self.failures.pop(0)
        json.dumps(payload)  # the input must be JSON
        self.started.setdefault(name, payload)
        return f"arn:aws:states:us-east-1:123456789012:execution:profile-sync:{name}"


@dataclass
class FakeNotifier:
    """SNS: best-effort; `down` makes every publish fail (False), as SnsNotifier reports it."""

    sent: list[tuple[str, str]] = field(default_factory=list)
    down: bool = False

    def notify(self, subject: str, message: str) -> bool:
        if self.down:
            return False
        self.sent.append((subject[:100], message))  # SNS subjects are at most 100 characters
        return True


class FakeDailyQuota:
    """Rows per client per UTC day; idempotent per reservation id (as DynamoDailyRowQuota)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.days: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)

    def used(self, client_code: str, day: str) -> int:
        return sum(self.days[(client_code, day)].values())

    def reserve(self, client_code: str, reservation_id: str, rows: int, now: float) -> QuotaDecision:
        if not self.limit:
            return QuotaDecision(True, 0, 0, 0, OFF)
        check_fits(rows, self.limit, "rows")
        day = utc_day(now)
        reservations = self.days[(client_code, day)]
        if reservation_id not in reservations:
            if self.used(client_code, day) + rows > self.limit:
                return QuotaDecision(
                    False, seconds_until_next_utc_day(now), self.used(client_code, day), self.limit, day
                )
            reservations[reservation_id] = rows
        return QuotaDecision(True, 0, self.used(client_code, day), self.limit, day)


class FakeRollingQuota:
    """Single updates per client per rolling 24 h, in hourly buckets (as DynamoRollingQuota)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buckets: dict[str, dict[int, int]] = defaultdict(dict)
        self.reserved: dict[str, dict[str, float]] = defaultdict(dict)

    def reserve(self, client_code: str, reservation_id: str, calls: int, now: float) -> QuotaDecision:
        if not self.limit:
            return QuotaDecision(True, 0, 0, 0, OFF)
        check_fits(calls, self.limit, "single updates")
        buckets = {k: v for k, v in self.buckets[client_code].items() if k > now - DAY}
        used = sum(buckets.values())
        if reservation_id in self.reserved[client_code]:
            return QuotaDecision(True, 0, used, self.limit, "rolling-24h")
        if used + calls > self.limit:
            return QuotaDecision(
                False, rolling_wait_seconds(buckets, now, calls, self.limit), used, self.limit, "rolling-24h"
            )
        bucket = hour_bucket(now)
        buckets[bucket] = buckets.get(bucket, 0) + calls
        self.buckets[client_code] = buckets
        self.reserved[client_code][reservation_id] = now
        return QuotaDecision(True, 0, used + calls, self.limit, "rolling-24h")


Answer = Any  # a result to return, an exception to raise, or a callable of the call's arguments


class FakeTarget:
    """Target for one client code: each call takes the next queued answer of its API.

    An answer is returned, raised (an exception) or called (a function of the call's arguments,
    e.g. to look at the clock). With nothing queued: submit accepts, status says incomplete, a
    single update succeeds.
    """

    def __init__(self, client_code: str, base_url: str = "https://mc.adobe.io") -> None:
        self.client_code = client_code
        self.base_url = base_url
        self.submits: list[Answer] = []
        self.statuses: list[Answer] = []
        self.updates: list[Answer] = []
        self.posted: list[bytes] = []  # every body sent to batchUpdate, whole
        self.status_calls: list[str] = []
        self.expected_rows: list[int | None] = []  # what each status call was told was sent
        self.updated: list[tuple[str, str, dict[str, str]]] = []
        self._next_batch = 0

    def batch_url(self, version: str = "v2") -> str:
        return f"{self.base_url}/m2/{self.client_code}/{version}/profile/batchUpdate"

    def update_url(self) -> str:
        return f"{self.base_url}/m2/{self.client_code}/profile/update"

    def submit_batch(self, body: BinaryIO, *, version: str = "v2") -> SubmitResult:
        data = body.read()  # the client streams the whole body (a closed one raises)
        if not data.startswith(b"batch="):
            raise ValueError("a batch file starts with batch=")
        self.posted.append(data)
        self._next_batch += 1
        default = SubmitResult(
            status_url=f"{self.base_url}/m2/{self.client_code}/v2/profile/batchStatus?batchId=b{self._next_batch}",
            message="",
            attempts=1,
            version=version,
        )
        return _answer(self.submits, default, data)

    def batch_status(self, status_url: str, *, expected_rows: int | None = None) -> BatchStatus:
        self.status_calls.append(status_url)
        self.expected_rows.append(expected_rows)
        return _answer(self.statuses, BatchStatus(state="incomplete", attempts=1), status_url)

    def single_update(
        self, id_type: str, visitor_id: str, params: Mapping[str, str], *, encoded: bool = False
    ) -> SingleUpdateResult:
        self.updated.append((id_type, visitor_id, dict(params)))
        default = SingleUpdateResult(success=True, message="", method="GET", request_bytes=100, attempts=1)
        return _answer(self.updates, default, visitor_id)


def _answer(queue: list[Answer], default: Any, argument: Any) -> Any:
    answer = queue.pop(0) if queue else default
    if isinstance(answer, BaseException):
        raise answer
    if callable(answer):
        return answer(argument)
    return answer


class FakeClock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class World:
    """Every fake, and the ports each step takes built from them."""

    clock: FakeClock
    objects: FakeObjects = field(default_factory=FakeObjects)
    jobs: FakeJobs = field(default_factory=FakeJobs)
    workflow: FakeWorkflow = field(default_factory=FakeWorkflow)
    notifier: FakeNotifier = field(default_factory=FakeNotifier)
    daily_quota: FakeDailyQuota = field(default_factory=lambda: FakeDailyQuota(1_000_000))
    single_quota: FakeRollingQuota = field(default_factory=lambda: FakeRollingQuota(1_000_000))
    targets: dict[str, FakeTarget] = field(default_factory=dict)

    def target(self, client_code: str) -> FakeTarget:
        return self.targets.setdefault(client_code, FakeTarget(client_code))

    @property
    def now(self) -> Callable[[], float]:
        return self.clock


def time_left_seen(answer: Any) -> Callable[[Any], Any]:
    """An answer that records what clock.time_left() said in the thread that called Target."""
    seen: list[float | None] = []

    def call(argument: Any) -> Any:
        seen.append(clock.time_left())
        return answer

    call.seen = seen  # type: ignore[attr-defined]
    return call


# ------------------------------------------------------------------------------------- ports of each step
def quota_ports(world: World, settings: Settings) -> QuotaPorts:
    return QuotaPorts(
        settings=settings,
        jobs=world.jobs,
        daily_quota=world.daily_quota,
        notifier=world.notifier,
        now=world.clock,
    )


def bulk_ports(world: World, settings: Settings) -> BulkPorts:
    return BulkPorts(
        objects=world.objects, jobs=world.jobs, now=world.clock, settings=settings, target=world.target
    )


def single_ports(world: World, settings: Settings) -> SinglePorts:
    return SinglePorts(
        objects=world.objects,
        jobs=world.jobs,
        now=world.clock,
        settings=settings,
        target=world.target,
        single_quota=world.single_quota,
        notifier=world.notifier,
    )


def record_ports(world: World) -> RecordPorts:
    return RecordPorts(objects=world.objects, jobs=world.jobs, now=world.clock)


def report_ports(world: World) -> ReportPorts:
    return ReportPorts(objects=world.objects, jobs=world.jobs, now=world.clock, notifier=world.notifier)


def ingest_ports(world: World, settings: Settings) -> IngestPorts:
    return IngestPorts(
        settings=settings,
        objects=world.objects,
        jobs=world.jobs,
        workflow=world.workflow,
        notifier=world.notifier,
    )
