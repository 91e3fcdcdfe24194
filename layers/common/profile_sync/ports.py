"""The ports: what ingest and the workflow steps need from the world, as Protocols.

profile_sync.aws implements them on S3, DynamoDB, SNS, Step Functions and Target's HTTP API;
tests/unit/fakes.py in memory. Each use case declares the few it takes (ingest.IngestPorts,
workflow.*.…Ports) and profile_sync.aws.ports builds just those for each function, so a function's
code, its adapters and its IAM role name the same resources.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from profile_sync.adobe_target.client import SingleUpdateResult, SubmitResult
from profile_sync.adobe_target.responses import BatchStatus
from profile_sync.model import BatchRecord, JobRecord
from profile_sync.quota import QuotaDecision

Clock = Callable[[], float]  # seconds since the epoch (profile_sync.clock.now: virtual in tests)


class ObjectStore(Protocol):
    """The drop bucket: the dropped files and everything under jobs/<jobId>/."""

    def open(self, key: str) -> BinaryIO:
        """The object, streamed (close it); FileNotFoundError when there is none."""

    def upload_file(self, path: Path, key: str, content_type: str) -> None: ...
    def put_json(self, key: str, document: object) -> None: ...
    def get_json(self, key: str) -> Any: ...
    def list_keys(self, prefix: str) -> list[str]: ...
    def delete_keys(self, keys: list[str]) -> None:
        """Delete these objects (delta sync's replaced snapshot files only: the only grant)."""


class JobStore(Protocol):
    """Job and batch records (the jobs table)."""

    def create_job(self, job: JobRecord) -> bool:
        """Create the job record; False if a record with its id exists already."""

    def get_job(self, job_id: str) -> JobRecord | None: ...
    def update_job(
        self, job_id: str, changes: Mapping[str, Any], *, expect: Mapping[str, Any] | None = None
    ) -> bool:
        """Set fields; with `expect`, only if those fields hold those values (False if not)."""

    def put_batches(self, job_id: str, batches: list[Any]) -> None: ...
    def get_batch(self, job_id: str, index: int) -> BatchRecord | None: ...
    def update_batch(
        self, job_id: str, index: int, changes: Mapping[str, Any], *, expect: Mapping[str, Any] | None = None
    ) -> bool:
        """Set fields on a batch record; with `expect`, only if those fields hold those values."""

    def list_batches(self, job_id: str) -> list[BatchRecord]: ...


class Workflow(Protocol):
    def start(self, name: str, payload: Mapping[str, Any]) -> str:
        """Start (or find, when the name was used already) the execution; return its id."""


class Notifier(Protocol):
    def notify(self, subject: str, message: str) -> bool:
        """Best-effort: True once published; a failure is logged and counted, never raised."""


class DailyRowQuota(Protocol):
    """Target's bulk rows per client per UTC day; idempotent per reservation id."""

    def reserve(self, client_code: str, reservation_id: str, rows: int, now: float) -> QuotaDecision: ...


class RollingQuota(Protocol):
    """Single updates per client per rolling 24 h; idempotent per reservation id."""

    def reserve(self, client_code: str, reservation_id: str, calls: int, now: float) -> QuotaDecision: ...


class Target(Protocol):
    """Adobe Target's profile APIs for one client code (profile_sync.adobe_target.TargetClient).

    Raises the typed errors of profile_sync.adobe_target.errors: TargetRetryLater, TargetRejected,
    TargetAuthError, TargetMaybeAccepted (submit only).
    """

    def batch_url(self, version: str = "v2") -> str: ...
    def update_url(self) -> str: ...
    def submit_batch(self, body: BinaryIO, *, version: str = "v2") -> SubmitResult: ...
    def batch_status(self, status_url: str, *, expected_rows: int | None = None) -> BatchStatus: ...
    def single_update(
        self, id_type: str, visitor_id: str, params: Mapping[str, str], *, encoded: bool = False
    ) -> SingleUpdateResult: ...
    def fetch_profile(self, id_type: str, visitor_id: str) -> dict[str, Any] | None: ...


TargetFor = Callable[[str], Target]  # the Target client of a client code
