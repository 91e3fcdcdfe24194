"""TargetEmulator: the switches, the batches and profiles it holds, and what it received."""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from profile_sync_local.emulator.batches import _Batch, batch_digest, parse_body, row_is_empty, status_parts
from profile_sync_local.emulator.http_api import _Handler, _Server
from profile_sync_local.emulator.render import render_xml
from profile_sync_local.emulator.settings import (
    ENDPOINTS,
    FAULT_KINDS,
    PROFILE_ENDPOINTS,
    EmulatorConfig,
)
from profile_sync_local.emulator.store import ProfileStore

logger = logging.getLogger(__name__)


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
        self._lost: dict[str, list[tuple[str, str]]] = {}  # client -> (id type, visitor id) lost
        # Single updates accepted and not yet visible: (visible at, client, id type, id, values).
        self._pending_updates: list[tuple[float, str, str, str, dict[str, str]]] = []
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
        address, port = self._server.server_address[:2]
        host = str(address)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

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
            self._lost.clear()
            self._pending_updates.clear()

    # Inspection -----------------------------------------------------------------------------

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            b = self._batches.get(batch_id)
            if b is None:
                return None
            return {
                "batch_id": b.batch_id,
                "version": b.version,
                "rows": len(b.ids),
                "polls": b.polls,
                "stuck": b.stuck,
                "vanish": b.vanish,
                "applied": b.applied,
                "lost": len(b.lost),
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

    def lost_updates(self, client: str | None = None) -> list[tuple[str, str]]:
        """(id type, visitor id) of updates reported successful and never applied (lose_share),
        in the order they were lost, once their batch completed."""
        with self._lock:
            if client is not None:
                return list(self._lost.get(client, []))
            return [entry for lost in self._lost.values() for entry in lost]

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
        parsed = parse_body(body, cfg)
        if isinstance(parsed, str):
            return False, parsed
        id_type, names, ids, lines, bad = parsed
        with self._lock:
            rng = self._rng
            fail_ids, share = cfg.fail_ids, cfg.fail_share
            fails = [
                b or vid in fail_ids or (share > 0 and rng.random() < share)
                for vid, b in zip(ids, bad, strict=True)
            ]
            stuck = cfg.stuck_share > 0 and rng.random() < cfg.stuck_share
            vanish = cfg.vanish_share > 0 and rng.random() < cfg.vanish_share
            accepted = len(self._batches)  # batches accepted before this one
            stuck = stuck or accepted < cfg.stuck_batches
            vanish = vanish or cfg.stuck_batches <= accepted < cfg.stuck_batches + cfg.vanish_batches
            lost = (
                {i for i, failed in enumerate(fails) if not failed and rng.random() < cfg.lose_share}
                if cfg.lose_share > 0
                else set()
            )
            self._sequence += 1
            now = self.clock()
            batch_id = f"{client}-{int(now * 1000)}-{self._sequence}"
            batch = _Batch(
                batch_id=batch_id,
                client=client,
                version=version,
                id_type=id_type,
                names=names,
                ids=ids,
                lines=lines,
                row_fails=fails,
                created_at=now,
                polls_until_complete=cfg.polls_until_complete,
                seconds_until_complete=cfg.seconds_until_complete,
                stuck=stuck,
                vanish=vanish,
                vanish_after_polls=cfg.vanish_after_polls,
                lost=lost,
            )
            self._batches[batch_id] = batch
            if cfg.keep_statuses:
                mine = [b for b in self._batches.values() if b.client == client and not b.evicted]
                for old in mine[: max(len(mine) - cfg.keep_statuses, 0)]:
                    old.evicted = True
            self._advance(batch)
        logger.debug("batch %s accepted: %d rows", batch_id, len(ids))
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
        """Settle a batch once it is complete, write its values once visible (caller holds the lock)."""
        if not batch.applied:
            if not self._is_complete(batch):
                return
            batch.applied = True
            batch.outcomes = self.store.outcomes(
                batch.client,
                batch.id_type,
                batch.ids,
                batch.lines or [],
                batch.row_fails,
                create=batch.version == "v2",
            )
            batch.counts = Counter(batch.outcomes)
            batch.visible_at = self.clock() + self._config.visibility_seconds
        if batch.visible_at is None or self.clock() < batch.visible_at or batch.lines is None:
            return
        batch.visible_at = None
        write = [o == "success" for o in batch.outcomes]
        for index in sorted(batch.lost):
            if write[index] and not row_is_empty(batch.lines[index]):  # a success with values to apply
                self._lost.setdefault(batch.client, []).append((batch.id_type, batch.ids[index]))
            write[index] = False
        self.store.apply(
            batch.client, batch.id_type, names=batch.names, ids=batch.ids, lines=batch.lines, write=write
        )
        batch.lines = None  # applied: the store has the values, the batch keeps its ids

    def _advance_all(self) -> None:
        """Every batch and single update due (before a profile fetch answers)."""
        with self._lock:
            for batch in self._batches.values():
                self._advance(batch)
            now = self.clock()
            due = [update for update in self._pending_updates if update[0] <= now]
            self._pending_updates = [update for update in self._pending_updates if update[0] > now]
        for _, client, id_type, visitor_id, attrs in due:
            self.store.update(client, id_type, visitor_id, attrs, create=False)

    def _single_update(self, client: str, id_type: str, visitor_id: str, attrs: dict[str, str]) -> bool:
        """A single update accepted: False when there is no such profile (nothing is created)."""
        if not self.store.exists(client, id_type, visitor_id):
            with self._lock:
                self.calls["update.not_found"] += 1
            return False
        cfg = self._config
        with self._lock:
            if cfg.lose_share > 0 and self._rng.random() < cfg.lose_share:
                self._lost.setdefault(client, []).append((id_type, visitor_id))
                return True
            if cfg.visibility_seconds > 0:
                at = self.clock() + cfg.visibility_seconds
                self._pending_updates.append((at, client, id_type, visitor_id, attrs))
                return True
        self.store.update(client, id_type, visitor_id, attrs, create=False)
        return True

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
            parts = status_parts(batch, details, cfg)
        return 200, render_xml(cfg, parts)

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
