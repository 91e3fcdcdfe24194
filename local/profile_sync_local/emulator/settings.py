"""The emulator's switches (EmulatorConfig) and the constants of Target it stands for."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PROFILE_TOKEN = "emulator-profile-token"  # noqa: S105 - a local test token
DEFAULT_CLIENT_ID = "emulator-client-id"
DEFAULT_CLIENT_SECRET = "emulator-client-secret"  # noqa: S105 - a local test secret
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
# Target's own thirdPartyId limit (TARGET_API.md). Deliberately not imported from profile_sync
# (settings.TARGET_ID_MAX_CHARS): the double stands for Target, so a wrong figure there shows up here.
THIRD_PARTY_ID_MAX_CHARS = 256
# Faults queued per endpoint. Those starting with "accept_" apply to batchUpdate: the batch is
# accepted (and will be applied) and then the answer goes wrong, as a client can meet when
# Target took a batch: "accept_drop" closes the connection without an answer, "accept_stall"
# waits slow_fault_seconds before answering (a client read timeout), "accept_garbage" answers
# 200 with a body that is not XML and holds no status URL, "accept_truncated" answers 200 with
# Target's XML cut short after the status URL (unreadable, but the URL can be found in it).
FAULT_KINDS = (
    "500",
    "503",
    "429",
    "401",
    "403",
    "drop",
    "slow",
    "garbage",
    "accept_drop",
    "accept_stall",
    "accept_garbage",
    "accept_truncated",
)
ENDPOINTS = ("batchUpdate", "batchStatus", "update", "profiles", "ims", "token")
PROFILE_ENDPOINTS = ("batchUpdate", "batchStatus", "update", "profiles")
LIMITED_ENDPOINTS = ("batchUpdate", "batchStatus")  # share the calls-per-minute limit


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    # Auth: when required, profile API calls need "Authorization: Bearer <one of valid_tokens>".
    require_auth: bool = False
    valid_tokens: frozenset[str] = frozenset({DEFAULT_PROFILE_TOKEN})
    # Per client code: (client code, its token) pairs. With require_auth, a call for a listed client
    # needs that client's token and no other (one Target account per client, as for an agency).
    client_tokens: tuple[tuple[str, str], ...] = ()
    auth_failure_status: int = 401
    oauth_client_id: str = DEFAULT_CLIENT_ID
    oauth_client_secret: str = DEFAULT_CLIENT_SECRET
    ims_token_ttl: int = 86399
    profile_token_ttl: int = 7775999
    # Bulk and status calls share this limit per client and minute; above it: HTTP 503 (0 = off).
    calls_per_minute: int = 0
    # Batch lifecycle, decided when a batch is submitted.
    polls_until_complete: int = 0  # status polls answering `incomplete` before `complete`
    # and/or clock seconds after submit: Target's processing time (--processing-seconds)
    seconds_until_complete: float = 0.0
    stuck_share: float = 0.0  # share of batches that end `stuck`
    # The first N batches accepted end `stuck`; the M after them lose their status (as vanish_share
    # does). An incident Target gets over: the batches after them (a re-drive's) are fine.
    stuck_batches: int = 0
    vanish_batches: int = 0
    fail_ids: frozenset[str] = frozenset()  # visitor ids whose rows fail
    fail_share: float = 0.0  # share of other rows that fail
    # Share of rows reported successful (batch status, single update) and never applied: Adobe
    # warns that up to 0.1% of a large batch may be lost. A landing check must catch them.
    lose_share: float = 0.0
    # Applied values show in profile fetch only this many clock seconds after the batch completed
    # (or the single update was accepted): Target applies "usually within an hour".
    visibility_seconds: float = 0.0
    vanish_share: float = 0.0  # share of batches whose status disappears
    vanish_after_polls: int = 0  # ... after this many successful polls
    vanish_style: str = "404"  # "404": HTTP 404; "empty": 200 with a body without <status>
    keep_statuses: int = 0  # keep only the last N statuses per client (legacy Target: 10); 0 = all
    profile_format: str = "failures"  # "failures" (today) or "all" (2017-2020: every row listed)
    status_url_extra: str = "&m2Node=00"  # appended to status URLs (Adobe's v2 example has it)
    # Status URLs point here instead of at the emulator, e.g. "https://status.example.com" (a
    # foreign host a client must refuse to send its token to). "" = the emulator's own URL.
    status_url_base: str = ""
    # Answer shape: False = Adobe's documented examples (one line, raw `&` in URLs and ids);
    # True = escaped (`&amp;`), pretty-printed XML with a declaration.
    escaped_xml: bool = False
    # Transport faults on the profile endpoints.
    delay_seconds: float = 0.0  # every answer waits this long (real time)
    slow_fault_seconds: float = 1.0  # how long a queued "slow" fault waits
    error_500_share: float = 0.0
    drop_share: float = 0.0  # share of requests whose connection is closed without an answer
    # Limits.
    max_rows: int = 500_000
    max_bytes: int = 50 * 1000 * 1000  # a batch body must be smaller than this
    single_get_max_bytes: int = 8 * 1024
    single_post_max_bytes: int = 60 * 1024
    reject_http_status: int = 200  # HTTP status of success=false answers (undocumented by Adobe)
    default_client: str = "demo"  # client of /m2/client/profile/update on a loopback host
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.host not in LOOPBACK_HOSTS:
            raise ValueError("the emulator only listens on loopback")
        if self.profile_format not in ("failures", "all"):
            raise ValueError("profile_format must be 'failures' or 'all'")
        if self.vanish_style not in ("404", "empty"):
            raise ValueError("vanish_style must be '404' or 'empty'")
        for name in (
            "stuck_share",
            "fail_share",
            "lose_share",
            "vanish_share",
            "error_500_share",
            "drop_share",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for name in (
            "polls_until_complete",
            "calls_per_minute",
            "visibility_seconds",
            "stuck_batches",
            "vanish_batches",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more")
