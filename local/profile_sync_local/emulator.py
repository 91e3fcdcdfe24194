"""A local Adobe Target that follows TARGET_API.md, over real HTTP on 127.0.0.1.

It serves, for any client code: bulk update v2 and v1, batch status (plain and showDetails=true),
single update (/m2/client/... and /m2/{clientCode}/...), profile fetch, and the IMS and profile
token endpoints. Profiles live in memory: v2 creates them, v1 and single update only update
existing ones, empty values never clear a value.

Answers take the shape of Adobe's documented examples by default: one line, elements separated
by single spaces, a raw `&` inside <batchStatus> (Adobe's v2 example, not well-formed XML), v2
status URLs with a /v2/ segment and `&m2Node=00`. escaped_xml=True gives the escaped,
pretty-printed form instead. Bulk bodies and single-update queries are decoded the way a form
is (`&` splits parameters, `+` is a space, then %XX), as Target's servlet does.

Where Adobe leaves behaviour undocumented, a switch picks the answer (EmulatorConfig): auth,
a calls-per-minute limit answering 503, polls or seconds until `complete`, stuck batches,
failing rows, statuses that vanish, slow answers, 500s, dropped connections, the per-profile
format of 2017-2020 ("all") or today ("failures"), size and row limits. Switches can change
while it runs (configure(), queue_faults(), revoke_token()); randomness is seeded; time comes
from an injectable clock so a virtual-clock test can drive "seconds until complete".

    with TargetEmulator(EmulatorConfig(polls_until_complete=2)) as emu:
        client = TargetClient(emu.url, "demo")
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit
from xml.sax.saxutils import escape

logger = logging.getLogger(__name__)

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
    fail_ids: frozenset[str] = frozenset()  # visitor ids whose rows fail
    fail_share: float = 0.0  # share of other rows that fail
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
        for name in ("stuck_share", "fail_share", "vanish_share", "error_500_share", "drop_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")


def _form_decode(value: str) -> str:
    """unquote_plus, without its cost for the many values that hold no escape."""
    return unquote_plus(value) if "%" in value or "+" in value else value


class ProfileStore:
    """Profiles by client and (id type, visitor id); attribute values keep their modification time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._profiles: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}

    def put(self, client: str, id_type: str, visitor_id: str, attrs: dict[str, str] | None = None) -> None:
        """Create (or extend) a profile: seeds data for v1 and single-update tests."""
        self.update(client, id_type, visitor_id, attrs or {}, create=True)

    def update(
        self, client: str, id_type: str, visitor_id: str, attrs: dict[str, str], *, create: bool
    ) -> bool:
        """Apply non-empty values; False when the profile doesn't exist and create is False."""
        now = self._clock()
        with self._lock:
            profiles = self._profiles.setdefault(client, {})
            profile = profiles.get((id_type, visitor_id))
            if profile is None:
                if not create:
                    return False
                profile = profiles[(id_type, visitor_id)] = {"modifiedAt": now, "attributes": {}}
            for name, value in attrs.items():
                if value != "":  # empty values never clear
                    profile["attributes"][name] = (value, now)
            profile["modifiedAt"] = now
            return True

    def apply(
        self,
        client: str,
        id_type: str,
        rows: list[tuple[str, dict[str, str]]],
        fails: list[bool],
        *,
        create: bool,
    ) -> list[str]:
        """update() for every row of a batch under one lock; each row's outcome."""
        now = self._clock()
        outcomes: list[str] = []
        add = outcomes.append
        # One (value, time) pair per distinct value: a million profiles of repeated values share them.
        pairs: dict[str, tuple[str, float]] = {}
        with self._lock:
            profiles = self._profiles.setdefault(client, {})
            for (visitor_id, attrs), failed in zip(rows, fails, strict=True):
                if failed:
                    add("failed")
                    continue
                if not attrs:
                    add("success")  # only empty values: nothing to apply
                    continue
                key = (id_type, visitor_id)
                profile = profiles.get(key)
                if profile is None:
                    if not create:
                        add("not_found")
                        continue
                    profile = profiles[key] = {"modifiedAt": now, "attributes": {}}
                stored = profile["attributes"]
                for name, value in attrs.items():  # the batch's values are never empty
                    pair = pairs.get(value)
                    stored[name] = pair if pair is not None else pairs.setdefault(value, (value, now))
                profile["modifiedAt"] = now
                add("success")
        return outcomes

    def get(self, client: str, id_type: str, visitor_id: str) -> dict[str, str] | None:
        record = self.record(client, id_type, visitor_id)
        return None if record is None else {k: v for k, (v, _) in record["attributes"].items()}

    def record(self, client: str, id_type: str, visitor_id: str) -> dict[str, Any] | None:
        with self._lock:
            profile = self._profiles.get(client, {}).get((id_type, visitor_id))
            if profile is None:
                return None
            return {"modifiedAt": profile["modifiedAt"], "attributes": dict(profile["attributes"])}

    def count(self, client: str | None = None) -> int:
        with self._lock:
            if client is not None:
                return len(self._profiles.get(client, {}))
            return sum(len(p) for p in self._profiles.values())

    def clear(self) -> None:
        with self._lock:
            self._profiles.clear()


@dataclass
class _Batch:
    batch_id: str
    client: str
    version: str
    id_type: str
    rows: list[tuple[str, dict[str, str]]]
    row_fails: list[bool]
    created_at: float
    polls_until_complete: int
    seconds_until_complete: float
    stuck: bool
    vanish: bool
    vanish_after_polls: int
    polls: int = 0
    evicted: bool = False
    applied: bool = False
    outcomes: list[str] = field(default_factory=list)  # per row: success | failed | not_found


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: TargetEmulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients time out and hang up on purpose in tests: don't print tracebacks.
        logger.debug("emulator connection error", exc_info=True)


def batch_digest(body: bytes) -> str:
    """How received_batches() names a batch: sha256 of the POSTed body."""
    return hashlib.sha256(body).hexdigest()


class EmulatorState:
    """Read-only views of what the emulator received (emulator.state.received_batches())."""

    def __init__(self, emulator: TargetEmulator) -> None:
        self._emulator = emulator

    def received_batches(self) -> dict[str, int]:
        return self._emulator.received_batches()

    def posted_batches(self) -> dict[str, int]:
        return self._emulator.posted_batches()

    def resent_batches(self) -> dict[str, int]:
        return self._emulator.resent_batches()


class TargetEmulator:
    def __init__(
        self, config: EmulatorConfig | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._config = config or EmulatorConfig()
        self.clock = clock
        self._lock = threading.RLock()
        self._rng = random.Random(self._config.seed)
        self.store = ProfileStore(clock)
        self.calls: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []  # one record per request (no bodies, no tokens)
        self.window_calls: Counter[tuple[str, int]] = Counter()  # accepted limited calls per minute
        self._batches: dict[str, _Batch] = {}
        self._faults: dict[str, list[str]] = {}
        self._posted: Counter[str] = Counter()  # batch body digest -> POSTs that arrived
        self._accepted: Counter[str] = Counter()  # batch body digest -> times accepted for processing
        self.state = EmulatorState(self)
        self._ims_tokens: dict[str, float] = {}
        self._sequence = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle ------------------------------------------------------------------------------

    def start(self) -> TargetEmulator:
        if self._server is not None:
            return self
        server = _Server((self._config.host, self._config.port), _Handler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="target-emulator", daemon=True
        )
        self._thread.start()
        logger.info("Target emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> TargetEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        host, port = self._server.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"

    def ims_url(self) -> str:
        return f"{self.url}/ims/token/v3"

    def token_url(self, tenant: str = "{tenant}") -> str:
        return f"{self.url}/{tenant}/target/authentication/token?authorizationScope=profile_api"

    def oauth_secret(self, tenant: str = "emulator") -> dict[str, str]:
        """An OAuth server-to-server secret value that points at this emulator."""
        cfg = self._config
        return {
            "client_id": cfg.oauth_client_id,
            "client_secret": cfg.oauth_client_secret,
            "tenant": tenant,
            "scopes": "openid,AdobeID,target_sdk",
            "ims_url": self.ims_url(),
            "token_url": self.token_url(),
        }

    # Switches -------------------------------------------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        return self._config

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change switches while running (thread-safe); sets may be given as any iterable."""
        for name in ("valid_tokens", "fail_ids"):
            if name in changes:
                changes[name] = frozenset(changes[name])
        with self._lock:
            self._config = replace(self._config, **changes)
            if "seed" in changes:
                self._rng = random.Random(changes["seed"])
            return self._config

    def queue_faults(self, endpoint: str, *kinds: str) -> None:
        """The next requests to endpoint ("*" = any) answer with these faults, one each, in order."""
        if endpoint != "*" and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        for kind in kinds:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
            if kind.startswith("accept_") and endpoint != "batchUpdate":
                raise ValueError(f"fault {kind!r} only applies to batchUpdate")
        with self._lock:
            self._faults.setdefault(endpoint, []).extend(kinds)

    def revoke_token(self, token: str | None = None) -> None:
        """Revoke one profile token, or all of them."""
        with self._lock:
            remaining = set() if token is None else set(self._config.valid_tokens) - {token}
            self._config = replace(self._config, valid_tokens=frozenset(remaining))

    def issue_token(self) -> str:
        """Generate a new profile token; like Target, it replaces every older one."""
        token = f"profile-{secrets.token_hex(16)}"
        with self._lock:
            self._config = replace(self._config, valid_tokens=frozenset({token}))
        return token

    def reset(self) -> None:
        """Forget profiles, batches, counters and queued faults (the config stays)."""
        with self._lock:
            self.store.clear()
            self.calls.clear()
            self.requests.clear()
            self.window_calls.clear()
            self._batches.clear()
            self._faults.clear()
            self._posted.clear()
            self._accepted.clear()

    # Inspection -----------------------------------------------------------------------------

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            b = self._batches.get(batch_id)
            if b is None:
                return None
            return {
                "batch_id": b.batch_id,
                "version": b.version,
                "rows": len(b.rows),
                "polls": b.polls,
                "stuck": b.stuck,
                "vanish": b.vanish,
                "applied": b.applied,
                "outcomes": list(b.outcomes),
            }

    def received_batches(self) -> dict[str, int]:
        """Batch contents Target took for processing (sha256 of the body -> how many times).

        A batch a client sent again after Target accepted it shows a count above 1; POSTs that
        were refused (503, 500, success=false, a drop before accepting) are not counted here.
        """
        with self._lock:
            return dict(self._accepted)

    def posted_batches(self) -> dict[str, int]:
        """Every batch POST that arrived, accepted or not (sha256 of the body -> count)."""
        with self._lock:
            return dict(self._posted)

    def resent_batches(self) -> dict[str, int]:
        """Batch contents accepted more than once: what must never happen."""
        return {digest: n for digest, n in self.received_batches().items() if n > 1}

    def _note_posted(self, body: bytes) -> None:
        with self._lock:
            self._posted[batch_digest(body)] += 1

    def _note_accepted(self, body: bytes) -> None:
        with self._lock:
            self._accepted[batch_digest(body)] += 1

    def max_calls_per_window(self, client: str | None = None) -> int:
        with self._lock:
            counts = [n for (c, _), n in self.window_calls.items() if client is None or c == client]
        return max(counts, default=0)

    # Request handling (called from server threads) -----------------------------------------

    def _next_fault(self, endpoint: str, cfg: EmulatorConfig) -> str | None:
        with self._lock:
            for key in (endpoint, "*"):
                queue = self._faults.get(key)
                if queue:
                    return queue.pop(0)
            if endpoint not in PROFILE_ENDPOINTS:
                return None
            if cfg.drop_share and self._rng.random() < cfg.drop_share:
                return "drop"
            if cfg.error_500_share and self._rng.random() < cfg.error_500_share:
                return "500"
        return None

    def _take_rate_slot(self, client: str, cfg: EmulatorConfig) -> bool:
        if not cfg.calls_per_minute:
            return True
        window = int(self.clock() // 60)
        with self._lock:
            if self.window_calls[(client, window)] >= cfg.calls_per_minute:
                return False
            self.window_calls[(client, window)] += 1
            return True

    def _submit(self, client: str, version: str, body: bytes, cfg: EmulatorConfig) -> tuple[bool, str]:
        """(accepted, status URL or error message)."""
        if not body.startswith(b"batch="):
            return False, "Request body must start with batch="
        if len(body) >= cfg.max_bytes:
            return False, f"Batch file size must be less than {cfg.max_bytes} bytes"
        # The body is a form (application/x-www-form-urlencoded): a raw `&` ends the batch
        # parameter, whatever follows is another parameter and never reaches the batch.
        form_value = body[len(b"batch=") :].split(b"&", 1)[0]
        try:
            text = form_value.decode("utf-8")
        except UnicodeDecodeError:
            return False, "Batch file must be UTF-8"
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            return False, "Batch file has no header"
        header = [unquote_plus(h) for h in lines[0].split(",")]
        id_type, names = header[0], header[1:]
        if id_type not in ("pcId", "thirdPartyId"):
            return False, "First header must be pcId or thirdPartyId"
        if not names or any(not n for n in names) or len(set(names)) != len(names):
            return False, "Invalid parameter names in header"
        data_lines = lines[1:]
        if not data_lines:
            return False, "Batch file has no rows"
        if len(data_lines) > cfg.max_rows:
            return False, f"Batch file has more than {cfg.max_rows} rows"
        rows: list[tuple[str, dict[str, str]]] = []
        bad: list[bool] = []
        for line in data_lines:
            values = line.split(",")
            visitor_id = _form_decode(values[0])
            attrs = {
                name: _form_decode(v) for name, v in zip(names, values[1 : len(names) + 1], strict=False) if v
            }
            invalid = (
                not visitor_id
                or len(values) - 1 > len(names)
                or (
                    id_type == "thirdPartyId"
                    and (len(visitor_id) > THIRD_PARTY_ID_MAX_CHARS or "+" in visitor_id or "/" in visitor_id)
                )
            )
            rows.append((visitor_id, attrs))
            bad.append(invalid)
        with self._lock:
            rng = self._rng
            fails = [
                b or vid in cfg.fail_ids or (cfg.fail_share > 0 and rng.random() < cfg.fail_share)
                for (vid, _), b in zip(rows, bad, strict=True)
            ]
            stuck = cfg.stuck_share > 0 and rng.random() < cfg.stuck_share
            vanish = cfg.vanish_share > 0 and rng.random() < cfg.vanish_share
            self._sequence += 1
            now = self.clock()
            batch_id = f"{client}-{int(now * 1000)}-{self._sequence}"
            batch = _Batch(
                batch_id=batch_id,
                client=client,
                version=version,
                id_type=id_type,
                rows=rows,
                row_fails=fails,
                created_at=now,
                polls_until_complete=cfg.polls_until_complete,
                seconds_until_complete=cfg.seconds_until_complete,
                stuck=stuck,
                vanish=vanish,
                vanish_after_polls=cfg.vanish_after_polls,
            )
            self._batches[batch_id] = batch
            if cfg.keep_statuses:
                mine = [b for b in self._batches.values() if b.client == client and not b.evicted]
                for old in mine[: max(len(mine) - cfg.keep_statuses, 0)]:
                    old.evicted = True
            self._advance(batch)
        logger.debug("batch %s accepted: %d rows", batch_id, len(rows))
        base = cfg.status_url_base.rstrip("/") or self.url
        segment = "/v2" if version == "v2" else ""  # Adobe's v2 status URLs carry /v2/
        return (
            True,
            f"{base}/m2/{client}{segment}/profile/batchStatus?batchId={batch_id}{cfg.status_url_extra}",
        )

    def _is_complete(self, batch: _Batch) -> bool:
        return (
            not batch.stuck
            and (batch.polls_until_complete == 0 or batch.polls > batch.polls_until_complete)
            and self.clock() - batch.created_at >= batch.seconds_until_complete
        )

    def _advance(self, batch: _Batch) -> None:
        """Apply a batch once it is complete (caller holds the lock)."""
        if batch.applied or not self._is_complete(batch):
            return
        batch.applied = True
        batch.outcomes = self.store.apply(
            batch.client, batch.id_type, batch.rows, batch.row_fails, create=batch.version == "v2"
        )
        for _, attrs in batch.rows:
            attrs.clear()  # applied: the store has the values, the batch keeps its ids

    def _advance_all(self) -> None:
        with self._lock:
            for batch in self._batches.values():
                self._advance(batch)

    def _status(self, batch_id: str, details: bool, cfg: EmulatorConfig) -> tuple[int, str]:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is not None:
                batch.polls += 1
            if batch is not None and batch.vanish and batch.polls > batch.vanish_after_polls:
                batch.evicted = True
            if batch is None or batch.evicted:
                if batch is not None:
                    self._advance(batch)  # the data may still land although the status is gone
                if cfg.vanish_style == "empty":
                    return 200, render_xml(cfg, [("batchId", batch_id)])
                return 404, "<response><success>false</success><message>Batch not found</message></response>"
            self._advance(batch)
            state = "stuck" if batch.stuck else ("complete" if batch.applied else "incomplete")
            parts: list[tuple[str, Any]] = [
                ("batchId", batch.batch_id),
                ("status", state),
                ("batchSize", str(len(batch.rows))),
            ]
            if details:
                outcomes = Counter(batch.outcomes)
                parts += [
                    ("consumedCount", str(len(batch.outcomes))),
                    ("successfulUpdates", str(outcomes["success"])),
                    ("profilesNotFound", str(outcomes["not_found"])),
                    ("failedUpdates", str(outcomes["failed"])),
                ]
            if batch.version == "v2" and cfg.profile_format == "failures":
                # Only failed rows are listed (none before the batch is applied).
                failed = [i for i, o in enumerate(batch.outcomes) if o == "failed"] if batch.applied else []
                for index in failed:
                    parts.append(("profile", [("id", batch.rows[index][0]), ("status", "failed")]))
            elif batch.version == "v2":
                for index, (visitor_id, _) in enumerate(batch.rows):
                    word = self._row_word(batch, index, cfg.profile_format)
                    if word:
                        parts.append(("profile", [("id", visitor_id), ("status", word)]))
        return 200, render_xml(cfg, parts)

    @staticmethod
    def _row_word(batch: _Batch, index: int, profile_format: str) -> str:
        outcome = batch.outcomes[index] if batch.applied else "pending"
        if profile_format == "failures":
            return "failed" if outcome == "failed" else ""
        return {"failed": "error", "success": "success", "not_found": "error"}.get(outcome, "pending")

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if len(self.requests) < 100_000:
                self.requests.append(entry)

    def _mint_ims(self) -> str:
        token = f"ims-{secrets.token_hex(16)}"
        with self._lock:
            self._ims_tokens[token] = self.clock() + self._config.ims_token_ttl
        return token

    def _ims_valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._ims_tokens.get(token)
        return expiry is not None and self.clock() < expiry


def render_xml(cfg: EmulatorConfig, children: list[tuple[str, Any]]) -> str:
    """<response> with these (tag, text or [children]) elements, in the configured shape.

    Adobe's examples (default): one line, elements separated by single spaces, `&` left raw
    (only < and > escaped). escaped_xml: a declaration, indentation, everything escaped.
    """

    def text(value: str) -> str:
        if cfg.escaped_xml:
            return escape(value)
        return value.replace("<", "&lt;").replace(">", "&gt;")

    def element(tag: str, value: Any, depth: int) -> str:
        if isinstance(value, list):
            if cfg.escaped_xml:
                pad = "    " * (depth + 1)
                inner = "".join(f"\n{pad}{element(t, v, depth + 1)}" for t, v in value)
                return f"<{tag}>{inner}\n{'    ' * depth}</{tag}>"
            return f"<{tag}>" + "".join(element(t, v, depth + 1) for t, v in value) + f"</{tag}>"
        return f"<{tag}>{text(value)}</{tag}>"

    if cfg.escaped_xml:
        body = "".join(f"\n    {element(t, v, 1)}" for t, v in children)
        return f'<?xml version="1.0" encoding="UTF-8"?>\n<response>{body}\n</response>\n'
    return "<response> " + " ".join(element(t, v, 1) for t, v in children) + " </response>"


_ROUTES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"^/m2/([^/]+)/v2/profile/batchUpdate/?$"), "batchUpdate", "v2"),
    (re.compile(r"^/m2/([^/]+)/profile/batchUpdate/?$"), "batchUpdate", "v1"),
    (re.compile(r"^/m2/([^/]+)(?:/v2)?/profile/batchStatus/?$"), "batchStatus", ""),
    (re.compile(r"^/m2/([^/]+)/profile/update/?$"), "update", ""),
    (re.compile(r"^/rest/v1/profiles/thirdPartyId/([^/]+)$"), "profiles", "thirdPartyId"),
    (re.compile(r"^/rest/v1/profiles/([^/]+)$"), "profiles", "pcId"),
    (re.compile(r"^/ims/token/v\d+$"), "ims", ""),
    (re.compile(r"^/([^/]+)/target/authentication/token$"), "token", ""),
]

XML = "application/xml;charset=UTF-8"
JSON = "application/json;charset=UTF-8"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms a call.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("emulator: " + format, *args)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: str | bytes, content_type: str = XML, headers: dict[str, str] | None = None
    ) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self._status = status
        self._log_request()  # before answering: a test reading the log after the answer sees it
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _log_request(self) -> None:
        if self._entry is not None:
            self._entry["status"] = self._status
            self.server.emulator._record(self._entry)
            self._entry = None

    def _handle(self) -> None:
        emu = self.server.emulator
        cfg = emu.config
        self._status = 0
        body = self._read_body()
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        endpoint, match, variant = "unknown", None, ""
        for pattern, name, kind in _ROUTES:
            match = pattern.match(parts.path)
            if match:
                endpoint, variant = name, kind
                break
        self._entry: dict[str, Any] | None = {
            "endpoint": endpoint,
            "method": self.command,
            "path": parts.path,
            "content_type": self.headers.get("Content-Type", ""),
            "content_length": self.headers.get("Content-Length"),
            "chunked": "chunked" in self.headers.get("Transfer-Encoding", "").lower(),
            "authorized": bool(self.headers.get("Authorization") or self.headers.get("access_token")),
            "body_bytes": len(body),
            "show_details": query.get("showDetails") == "true",
            "query_keys": sorted(query),
        }
        if endpoint == "batchUpdate":
            self._entry["digest"] = batch_digest(body)  # which batch (received_batches' key)
        with emu._lock:
            emu.calls[endpoint] += 1
            if endpoint == "batchUpdate":
                emu.calls[f"batchUpdate.{variant}"] += 1
        try:
            self._dispatch(
                emu, cfg=cfg, endpoint=endpoint, variant=variant, match=match, query=query, body=body
            )
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._log_request()  # no answer was sent (a dropped connection)

    def _dispatch(
        self,
        emu: TargetEmulator,
        *,
        cfg: EmulatorConfig,
        endpoint: str,
        variant: str,
        match: re.Match[str] | None,
        query: dict[str, str],
        body: bytes,
    ) -> None:
        if match is None:
            self._send(404, "<response><success>false</success><message>Not found</message></response>")
            return
        if cfg.delay_seconds:
            time.sleep(cfg.delay_seconds)
        fault = emu._next_fault(endpoint, cfg)
        if fault == "slow":
            time.sleep(cfg.slow_fault_seconds)
        elif fault == "drop":
            self.close_connection = True  # hang up without an answer
            return
        elif fault in ("500", "503", "429"):
            self._send(int(fault), f"<html><body>HTTP {fault}</body></html>", "text/html")
            return
        elif fault in ("401", "403"):
            self._send(
                int(fault), "<response><success>false</success><message>Unauthorized</message></response>"
            )
            return
        elif fault == "garbage":
            self._send(200, "<html><body>Gateway says hello</body></html>", "text/html")
            return

        if endpoint == "ims":
            self._ims(emu, cfg, body)
            return
        if endpoint == "token":
            self._token(emu, cfg, match.group(1))
            return

        # Which client's token came with the call (recorded by client code, never the token itself).
        owners = {token: code for code, token in cfg.client_tokens}
        self._entry["client"] = query.get("client", "") if endpoint == "profiles" else match.group(1)
        self._entry["token_of"] = owners.get(self._token_sent())
        if cfg.require_auth and not self._authorized(cfg):
            self._send(
                cfg.auth_failure_status,
                "<response><success>false</success><message>Authentication failed</message></response>",
            )
            return
        client = match.group(1)
        if endpoint in LIMITED_ENDPOINTS and not emu._take_rate_slot(client, cfg):
            self._send(503, "<html><body>Service Unavailable</body></html>", "text/html")
            return
        if endpoint == "batchUpdate":
            if self.command != "POST":
                self._send(405, "<response><success>false</success><message>Use POST</message></response>")
                return
            emu._note_posted(body)
            accepted, result = emu._submit(client, variant, body, cfg)
            if accepted:
                emu._note_accepted(body)
                if fault == "accept_drop":
                    self.close_connection = True  # took the batch, hung up without an answer
                    return
                if fault == "accept_stall":
                    time.sleep(cfg.slow_fault_seconds)
                if fault == "accept_garbage":
                    self._send(200, "<html><body>Batch received</body></html>", "text/html")
                    return
                answer = render_xml(
                    cfg,
                    [
                        ("success", "true"),
                        ("batchStatus", result),
                        ("message", "Batch submitted for processing"),
                    ],
                )
                if fault == "accept_truncated":
                    answer = answer[: answer.index("<message>") + len("<message>Batch")]
                self._send(200, answer)
            else:
                self._send(
                    cfg.reject_http_status,
                    render_xml(cfg, [("success", "false"), ("batchStatus", ""), ("message", result)]),
                )
        elif endpoint == "batchStatus":
            status, text = emu._status(query.get("batchId", ""), query.get("showDetails") == "true", cfg)
            self._send(status, text)
        elif endpoint == "update":
            self._single_update(emu, cfg, client, query, body)
        elif endpoint == "profiles":
            self._fetch(emu, match.group(1), variant, query)

    def _token_sent(self) -> str:
        header = self.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        return token or self.headers.get("access_token", "")  # older docs' header

    def _authorized(self, cfg: EmulatorConfig) -> bool:
        token = self._token_sent()
        own = dict(cfg.client_tokens).get(self._entry["client"]) if self._entry else None
        if own is not None:
            return token == own
        return bool(token) and token in cfg.valid_tokens

    def _single_update(
        self, emu: TargetEmulator, cfg: EmulatorConfig, client: str, query: dict, body: bytes
    ) -> None:
        if self.command == "GET" and len(self.path.encode()) > cfg.single_get_max_bytes:
            self._send(
                414, "<response><success>false</success><message>Request too large</message></response>"
            )
            return
        if self.command == "POST" and len(body) > cfg.single_post_max_bytes:
            self._send(
                413, "<response><success>false</success><message>Request too large</message></response>"
            )
            return
        params = dict(query)
        if body:
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if client == "client":
            host = (self.headers.get("Host") or "").split(":")[0]
            is_ip = host in LOOPBACK_HOSTS or re.fullmatch(r"[\d.]+", host or "0")
            client = params.get("client") or (cfg.default_client if is_ip else host.split(".")[0])
        if params.get("mboxPC"):
            id_type, visitor_id = "pcId", params["mboxPC"]
        elif params.get("mbox3rdPartyId"):
            id_type, visitor_id = "thirdPartyId", params["mbox3rdPartyId"]
        else:
            self._send(
                cfg.reject_http_status,
                "<response><success>false</success>"
                "<message>mboxPC or mbox3rdPartyId is required</message></response>",
            )
            return
        attrs = {k[len("profile.") :]: v for k, v in params.items() if k.startswith("profile.") and v != ""}
        if not emu.store.update(client, id_type, visitor_id, attrs, create=False):
            with emu._lock:
                emu.calls["update.not_found"] += 1
        self._send(
            200,
            render_xml(
                cfg, [("success", "true"), ("pcId", ""), ("message", "Request successfully submitted")]
            ),
        )

    def _fetch(self, emu: TargetEmulator, raw_id: str, id_type: str, query: dict) -> None:
        client = query.get("client", "")
        visitor_id = unquote_plus(raw_id)
        if not client:
            self._send(400, json.dumps({"status": 400, "message": "client is required"}), JSON)
            return
        emu._advance_all()
        record = emu.store.record(client, id_type, visitor_id)
        if record is None:
            kind = "third party id" if id_type == "thirdPartyId" else "tnt id"
            message = f"No profile found for client {client} with {kind}={visitor_id}"
            self._send(404, json.dumps({"status": 404, "message": message}), JSON)
            return
        answer = {
            "client": client,
            "visitorId": {"tntId" if id_type == "pcId" else "thirdPartyId": visitor_id},
            "modifiedAt": _iso(record["modifiedAt"]),
            "profileAttributes": {
                name: {"value": value, "modifiedAt": _iso(at)}
                for name, (value, at) in record["attributes"].items()
            },
        }
        self._send(200, json.dumps(answer), JSON)

    def _ims(self, emu: TargetEmulator, cfg: EmulatorConfig, body: bytes) -> None:
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        if (
            self.command != "POST"
            or form.get("grant_type") != "client_credentials"
            or form.get("client_id") != cfg.oauth_client_id
            or form.get("client_secret") != cfg.oauth_client_secret
        ):
            self._send(
                401, json.dumps({"error": "invalid_client", "error_description": "invalid client"}), JSON
            )
            return
        answer = {"access_token": emu._mint_ims(), "token_type": "bearer", "expires_in": cfg.ims_token_ttl}
        self._send(200, json.dumps(answer), JSON)

    def _token(self, emu: TargetEmulator, cfg: EmulatorConfig, tenant: str) -> None:
        header = self.headers.get("Authorization", "")
        ims = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not emu._ims_valid(ims) or self.headers.get("X-Api-Key") != cfg.oauth_client_id:
            self._send(401, json.dumps({"error_code": "401013", "message": "Oauth token is not valid"}), JSON)
            return
        if self.command == "POST":
            token = emu.issue_token()
        else:
            token = sorted(cfg.valid_tokens)[0] if cfg.valid_tokens else ""
            if not token:
                self._send(404, json.dumps({"httpStatus": 404, "message": "No token found"}), JSON)
                return
        answer = {
            "accessToken": token,
            "tokenType": "bearer",
            "scope": "profile_api",
            "expiresIn": cfg.profile_token_ttl,
        }
        self._send(200, json.dumps(answer), JSON)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


# Command line (wired into `profile-sync emulator` by the CLI) -----------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = EmulatorConfig()
    parser.add_argument(
        "--host", default=d.host, choices=LOOPBACK_HOSTS, help="loopback address to listen on"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (0 = a free one)")
    parser.add_argument("--require-auth", action="store_true", help="profile API calls need a bearer token")
    parser.add_argument(
        "--token",
        action="append",
        dest="tokens",
        metavar="TOKEN",
        help=f"a valid profile token, repeatable (default {DEFAULT_PROFILE_TOKEN})",
    )
    parser.add_argument("--auth-failure-status", type=int, default=d.auth_failure_status, choices=(401, 403))
    parser.add_argument("--oauth-client-id", default=d.oauth_client_id)
    parser.add_argument("--oauth-client-secret", default=d.oauth_client_secret)
    parser.add_argument(
        "--calls-per-minute", type=int, default=d.calls_per_minute, help="503 above this (0 = off)"
    )
    parser.add_argument("--polls-until-complete", type=int, default=d.polls_until_complete)
    parser.add_argument(
        "--processing-seconds",
        "--seconds-until-complete",
        dest="seconds_until_complete",
        type=float,
        default=d.seconds_until_complete,
        metavar="N",
        help="a batch completes N seconds after it was submitted, on the emulator's clock (with "
        "--polls-until-complete: both must hold)",
    )
    parser.add_argument("--stuck-share", type=float, default=d.stuck_share)
    parser.add_argument("--fail-ids", default="", help="comma-separated visitor ids whose rows fail")
    parser.add_argument("--fail-share", type=float, default=d.fail_share)
    parser.add_argument("--vanish-share", type=float, default=d.vanish_share)
    parser.add_argument("--vanish-after-polls", type=int, default=d.vanish_after_polls)
    parser.add_argument("--vanish-style", choices=("404", "empty"), default=d.vanish_style)
    parser.add_argument("--keep-statuses", type=int, default=d.keep_statuses, help="legacy Target kept 10")
    parser.add_argument("--profile-format", choices=("failures", "all"), default=d.profile_format)
    parser.add_argument(
        "--status-url-extra",
        default=d.status_url_extra,
        help='appended to status URLs (default "&m2Node=00")',
    )
    parser.add_argument(
        "--status-url-base",
        default=d.status_url_base,
        help="status URLs point at this base instead (e.g. a foreign host a client must refuse)",
    )
    parser.add_argument(
        "--escaped-xml",
        action="store_true",
        help="escaped, pretty-printed XML answers instead of Adobe's documented shape (raw &, one line)",
    )
    parser.add_argument("--delay", type=float, default=d.delay_seconds, help="seconds before every answer")
    parser.add_argument("--error-500-share", type=float, default=d.error_500_share)
    parser.add_argument("--drop-share", type=float, default=d.drop_share)
    parser.add_argument("--max-rows", type=int, default=d.max_rows)
    parser.add_argument("--max-bytes", type=int, default=d.max_bytes)
    parser.add_argument("--single-get-max-bytes", type=int, default=d.single_get_max_bytes)
    parser.add_argument("--single-post-max-bytes", type=int, default=d.single_post_max_bytes)
    parser.add_argument("--reject-http-status", type=int, default=d.reject_http_status)
    parser.add_argument("--default-client", default=d.default_client)
    parser.add_argument("--seed", type=int, default=None)


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        require_auth=args.require_auth,
        valid_tokens=frozenset(args.tokens or [DEFAULT_PROFILE_TOKEN]),
        auth_failure_status=args.auth_failure_status,
        oauth_client_id=args.oauth_client_id,
        oauth_client_secret=args.oauth_client_secret,
        calls_per_minute=args.calls_per_minute,
        polls_until_complete=args.polls_until_complete,
        seconds_until_complete=args.seconds_until_complete,
        stuck_share=args.stuck_share,
        fail_ids=frozenset(i for i in args.fail_ids.split(",") if i),
        fail_share=args.fail_share,
        vanish_share=args.vanish_share,
        vanish_after_polls=args.vanish_after_polls,
        vanish_style=args.vanish_style,
        keep_statuses=args.keep_statuses,
        profile_format=args.profile_format,
        status_url_extra=args.status_url_extra,
        status_url_base=args.status_url_base,
        escaped_xml=args.escaped_xml,
        delay_seconds=args.delay,
        error_500_share=args.error_500_share,
        drop_share=args.drop_share,
        max_rows=args.max_rows,
        max_bytes=args.max_bytes,
        single_get_max_bytes=args.single_get_max_bytes,
        single_post_max_bytes=args.single_post_max_bytes,
        reject_http_status=args.reject_http_status,
        default_client=args.default_client,
        seed=args.seed,
    )


def run_from_args(args: argparse.Namespace, *, ready: Callable[[TargetEmulator], None] | None = None) -> int:
    """Run until interrupted; prints the base URL (and the OAuth endpoints) on start."""
    emulator = TargetEmulator(config_from_args(args)).start()
    print(f"Target emulator on {emulator.url}", flush=True)
    print(f"  IMS token:     {emulator.ims_url()}", flush=True)
    print(f"  profile token: {emulator.token_url()}", flush=True)
    if ready is not None:
        ready(emulator)
    try:
        while emulator._thread is not None and emulator._thread.is_alive():
            emulator._thread.join(timeout=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="target-emulator", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
