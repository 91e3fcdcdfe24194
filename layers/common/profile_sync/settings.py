"""Every limit and knob of the pipeline, with the stricter documented figure as default.

Functions read them from environment variables (fed by the stack's Parameters); the CLI and
tests build them directly. See TARGET_API.md for where each Target figure comes from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

API_VERSIONS = ("v2", "v1", "single")
INPUT_MODES = ("encoded", "raw")
DELTA_MODES = ("off", "on")
# Target: a visitor id (thirdPartyId) is at most 256 characters (TARGET_API.md). Defined once for the
# pipeline: the ingest's default limit, its fast path (through the setting), the Target client's
# check and the report's cut of a rejected id all use it. Only the emulator keeps its own copy.
TARGET_ID_MAX_CHARS = 256


@dataclass(frozen=True)
class Settings:
    # Batch files (Target: < 50 MB current pages, < 60 MB seed; <= 500,000 rows).
    batch_max_rows: int = 500_000
    batch_max_bytes: int = 50 * 1000 * 1000  # a batch file stays strictly under this
    # Per row: external profile data <= 64 KB (current pages).
    row_max_bytes: int = 64 * 1024
    id_max_chars: int = TARGET_ID_MAX_CHARS
    # A whole dropped file above this is rejected before any work (0 = no limit).
    file_max_bytes: int = 20 * 1024**3
    # Bounds on what one file can make the ingest write or store (0 = no limit).
    header_max_columns: int = 1000  # parameter columns in the header; more rejects the file
    rejects_max_rows: int = 100_000  # rejected rows listed in rejects.csv; the rest are only counted
    rejects_original_max_bytes: int = 4096  # bytes of a rejected line copied into rejects.csv
    # Lambda's retries of a failed ingest (the template's EventInvokeConfig uses the same figure):
    # when the workflow can't be started on the last try, the job ends FAILED and a person is told.
    ingest_retry_attempts: int = 2
    input_mode: str = "encoded"  # "encoded": values already URL-encoded; "raw": we encode them
    api_version: str = "v2"  # "v2" (create + update), "v1" (update only), "single"
    # Delta sync (profile_sync.delta): "on" sends only rows whose values Target has not confirmed
    # yet; per client in its profile or per drop with a delta= folder. A new snapshot is split in
    # delta_partitions files (a power of two; an existing one keeps its count); the update after a
    # job tries its conditional write this many times against other jobs of the client.
    delta: str = "off"
    delta_partitions: int = 256
    delta_merge_attempts: int = 10
    # Quotas and rate (0 = off).
    daily_row_quota: int = 1_000_000  # rows per client per UTC day, all files
    single_update_quota: int = 1_000_000  # single updates per rolling 24 h
    calls_per_minute: int = 50  # Admin + Reporting + bulk profile calls share this
    # Status polls may take only this share of a minute's calls; the rest stays free for submits.
    poll_calls_share: float = 0.8
    single_get_max_bytes: int = 8 * 1024
    single_post_max_bytes: int = 60 * 1024
    # Target endpoint: "{client}" is replaced by the client code.
    target_base_url: str = "https://{client}.tt.omtrdc.net"
    # Secrets Manager secret with a profile token or OAuth credentials ("" = no auth).
    token_secret_id: str = ""
    http_timeout_seconds: float = 30.0
    http_max_attempts: int = 5
    # Inside a Lambda, the Target client never waits (back-off, rate limit) or lets a call run
    # past the invocation's remaining time minus this: the step still has to record what it did
    # (DynamoDB, S3: a few seconds at worst). Beyond it the client asks the state machine to wait.
    lambda_time_margin_seconds: float = 10.0
    # Workflow. max_concurrency is the state machine's (DefinitionSubstitutions), read by no function:
    # the local runner substitutes it from here.
    max_concurrency: int = 4
    single_update_concurrency: int = 8
    # Polls (profile_sync.poll_schedule): the first after the initial delay, then each wait is
    # poll_delay_share of the time since submit, within [min, max]: the report lags Target by at
    # most max(min, share x processing time); a batch polled until the 24 h deadline: 34 polls.
    poll_initial_delay_seconds: int = 60
    poll_min_delay_seconds: int = 60
    poll_delay_share: float = 0.25
    poll_max_delay_seconds: int = 7200
    poll_deadline_seconds: int = 24 * 3600
    # Consecutive polls without a status before a batch counts as vanished (Target kept only the
    # last statuses per client, for at most 24 hours).
    vanished_after_polls: int = 3
    single_update_chunk_rows: int = 1000  # rows per single-update step (one Lambda call)
    # Client profiles (profile_sync.client_profiles): the SSM path holding one parameter per client
    # code ("" = no profiles: every client gets these settings), and how long a read is cached.
    client_profiles_path: str = ""
    client_profiles_max_age_seconds: int = 60
    # Job and batch records expire (DynamoDB TTL) this many days after their last change, like the
    # job's files under jobs/ (the bucket's lifecycle rule, same stack Parameter).
    job_retention_days: int = 30
    # Landing check (profile_sync.landing): after a job ends, this many of its succeeded rows are
    # read back through Target's profile fetch API (0 = off). The first read waits the delay; a row
    # that did not verify is read again up to `retries` times, the same delay apart (updates can
    # take a while to apply). A notice goes out when the share of the sample that did not verify
    # is above the alert share.
    landing_check_sample_rows: int = 20
    landing_check_delay_seconds: int = 300
    landing_check_retries: int = 3
    landing_check_alert_share: float = 0.1
    # Delta sync: a snapshot file replaced by a newer version is deleted by the first merge this many
    # seconds later (a job that read the older pointer streams its files for at most one Lambda
    # invocation, 900 s).
    delta_cleanup_grace_seconds: int = 86400
    # Re-drive (profile_sync.redrive): 1 = a job that ends with pending rows re-drives them once by
    # itself (a new job, linked both ways; a re-drive job never re-drives itself again). 0 = off.
    redrive_pending_auto: int = 0

    def __post_init__(self) -> None:
        if self.api_version not in API_VERSIONS:
            raise ValueError(
                f"api_version must be one of {', '.join(API_VERSIONS)}, not {self.api_version!r}"
            )
        if self.input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {', '.join(INPUT_MODES)}, not {self.input_mode!r}")
        if self.delta not in DELTA_MODES:
            raise ValueError(f"delta must be one of {', '.join(DELTA_MODES)}, not {self.delta!r}")
        if (
            self.delta_partitions < 1
            or self.delta_partitions & (self.delta_partitions - 1)
            or self.delta_partitions > 4096
        ):
            raise ValueError("delta_partitions must be a power of two from 1 to 4096")
        if self.delta_cleanup_grace_seconds < 0:
            raise ValueError("delta_cleanup_grace_seconds must be 0 or more")
        if self.delta_merge_attempts < 1:
            raise ValueError("delta_merge_attempts must be positive")
        for name in ("batch_max_rows", "batch_max_bytes", "row_max_bytes", "id_max_chars"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("landing_check_sample_rows", "landing_check_delay_seconds", "landing_check_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more")
        if not 0.0 <= self.landing_check_alert_share <= 1.0:
            raise ValueError("landing_check_alert_share must be between 0 and 1")
        if self.redrive_pending_auto not in (0, 1):
            raise ValueError("redrive_pending_auto must be 0 (off) or 1 (on)")
        for name in ("poll_delay_share", "poll_calls_share"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be above 0 and at most 1")

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given fields changed; None values are ignored."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read each field from its upper-case environment variable (BATCH_MAX_ROWS, ...)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(field.name.upper())
            if raw is None or raw == "":
                continue
            if not isinstance(field.default, int | float | str):  # parsed by their default's type
                raise TypeError(f"setting {field.name} needs an int, float or str default")
            kind = type(field.default)
            try:
                values[field.name] = kind(raw)
            except ValueError as exc:
                raise ValueError(
                    f"environment variable {field.name.upper()}={raw!r} is not a valid {kind.__name__}"
                ) from exc
        return cls(**values)

    def target_url_for(self, client_code: str) -> str:
        return self.target_base_url.replace("{client}", client_code).rstrip("/")
