"""Target's profiles, as its batches and single updates leave them: what profile fetch answers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


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

    def outcomes(
        self,
        client: str,
        id_type: str,
        rows: list[tuple[str, dict[str, str]]],
        fails: list[bool],
        *,
        create: bool,
    ) -> list[str]:
        """Each row's outcome when its batch completes: failed, not_found (no profile and create
        is False) or success."""
        outcomes: list[str] = []
        add = outcomes.append
        with self._lock:
            profiles = self._profiles.get(client, {})
            for (visitor_id, attrs), failed in zip(rows, fails, strict=True):
                if failed:
                    add("failed")
                elif create or not attrs or (id_type, visitor_id) in profiles:
                    add("success")  # (only empty values: nothing to apply, a success)
                else:
                    add("not_found")
        return outcomes

    def apply(
        self, client: str, id_type: str, rows: list[tuple[str, dict[str, str]]], write: list[bool]
    ) -> None:
        """Write the values of the rows marked in write, creating missing profiles, under one lock."""
        now = self._clock()
        # One (value, time) pair per distinct value: a million profiles of repeated values share them.
        pairs: dict[str, tuple[str, float]] = {}
        with self._lock:
            profiles = self._profiles.setdefault(client, {})
            for (visitor_id, attrs), wanted in zip(rows, write, strict=True):
                if not wanted or not attrs:
                    continue
                key = (id_type, visitor_id)
                profile = profiles.get(key)
                if profile is None:
                    profile = profiles[key] = {"modifiedAt": now, "attributes": {}}
                stored = profile["attributes"]
                for name, value in attrs.items():  # the batch's values are never empty
                    pair = pairs.get(value)
                    stored[name] = pair if pair is not None else pairs.setdefault(value, (value, now))
                profile["modifiedAt"] = now

    def exists(self, client: str, id_type: str, visitor_id: str) -> bool:
        with self._lock:
            return (id_type, visitor_id) in self._profiles.get(client, {})

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
